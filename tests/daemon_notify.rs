//! The real daemon's clear produces one correctly shaped message per notifier,
//! a hanging chat platform does not delay clears, and `notify-test` reports
//! the platform's answer (issue 5).

pub mod support {
    pub mod daemon;
    pub mod fake_chat;
    pub mod fake_wechat;
}

use std::time::{Duration, Instant};

use serde_json::json;
use support::daemon::*;
use support::fake_chat::*;
use support::fake_wechat::*;

const APPID: &str = "wx448f04719cd48f69";
const OTHER: &str = "wx0123456789abcdef";
const TRIAL: &str = "wx00000000000000d7";
const SECRET: &str = "notify-test-app-secret";

struct Chats {
    all: Vec<(&'static str, FakeChat)>,
}

async fn chats() -> Chats {
    let mut all = Vec::new();
    for (name, flavor) in [
        ("wecom", Flavor::WeCom),
        ("dingtalk", Flavor::DingTalk),
        ("feishu", Flavor::Feishu),
        ("slack", Flavor::Slack),
        ("discord", Flavor::Discord),
        ("webhook", Flavor::Webhook),
    ] {
        all.push((name, FakeChat::start(flavor).await));
    }
    Chats { all }
}

fn notifiers(chats: &Chats) -> String {
    let mut out = String::new();
    for (name, chat) in &chats.all {
        let secret = match *name {
            "dingtalk" | "feishu" | "webhook" => "secret = \"sign-secret-value\"\n",
            _ => "",
        };
        // The SPEC's example list: `skipped`, and no `dry_run`.
        let events = match *name {
            "webhook" => "events = [\"cleared\", \"failed\", \"skipped\", \"budget_low\", \"exhausted\", \"config_error\"]\n",
            _ => "",
        };
        out.push_str(&format!(
            "[notifiers.{name}]\ntype = \"{name}\"\nurl = \"{}\"\n{secret}{events}language = \"en\"\n",
            chat.url()
        ));
    }
    out
}

fn config(fake: &FakeWeChat, chats: &Chats) -> String {
    format!(
        "[wechat]\napi_base = \"{}\"\n[policy]\nreset_guard = \"0s\"\n\
         [accounts.shop]\nappid = \"{APPID}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n\
         [accounts.other]\nappid = \"{OTHER}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\nnotify = [\"webhook\"]\n\
         [accounts.trial]\nappid = \"{TRIAL}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\nnotify = [\"webhook\"]\n\
         [accounts.trial.policy]\ndry_run = true\n{}",
        fake.base_url(),
        notifiers(chats)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clear_one_message_per_notifier() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    let chats = chats().await;
    let env = Env::new(&config(&fake, &chats));
    let d = Daemon::start(&env).await;
    let resp = reqwest::Client::new()
        .post(d.url("/api/v1/signals"))
        .json(&json!({"account": "shop", "reason": "45009 in orders", "count": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    for (name, chat) in &chats.all {
        let got = chat.wait_for(1, Duration::from_secs(10)).await;
        let body = &got[0].body;
        let text = body.to_string();
        match *name {
            "wecom" => assert_eq!(body["msgtype"], "markdown", "{text}"),
            "dingtalk" => {
                assert_eq!(body["msgtype"], "markdown", "{text}");
                assert!(
                    got[0].query_param("sign").is_some()
                        && got[0].query_param("timestamp").is_some()
                );
            }
            "feishu" => assert!(
                body["sign"].is_string() && body["timestamp"].is_string(),
                "{text}"
            ),
            "slack" => assert!(
                body["text"].is_string() && body["blocks"].is_array(),
                "{text}"
            ),
            "discord" => assert!(
                body["content"].is_string() && body["embeds"].is_array(),
                "{text}"
            ),
            "webhook" => {
                assert_eq!(body["kind"], "cleared", "{text}");
                assert_eq!(body["budget"]["left"], 7);
                assert!(got[0]
                    .header("webhook-signature")
                    .is_some_and(|s| s.starts_with("v1,")));
            }
            _ => unreachable!(),
        }
        assert!(
            text.contains("shop") && text.contains(APPID),
            "{name} names the account: {text}"
        );
        assert!(text.contains("7 of 8"), "{name} shows the budget: {text}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, chat) in &chats.all {
        assert_eq!(chat.received().len(), 1, "{name} got exactly one message");
    }

    // A dry run reaches the notifier whose events list `skipped` but not
    // `dry_run` (SPEC section 5), and calls nothing.
    let resp = reqwest::Client::new()
        .post(d.url("/api/v1/signals"))
        .json(&json!({"account": "trial", "reason": "45009 in orders"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let webhook = &chats.all.iter().find(|(n, _)| *n == "webhook").unwrap().1;
    let got = webhook.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].body["kind"], "dry_run", "{}", got[1].body);
    assert_eq!(got[1].body["account"], "trial", "{}", got[1].body);
    assert_eq!(fake.clears_effective(TRIAL), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_chat_platform_does_not_delay_clears() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    fake.add_account(OTHER, SECRET);
    let chats = chats().await;
    for (_, chat) in &chats.all {
        chat.set_default(Answer::Hang);
    }
    let env = Env::new(&config(&fake, &chats));
    let d = Daemon::start(&env).await;
    let http = reqwest::Client::new();
    let start = Instant::now();
    for account in ["shop", "other"] {
        http.post(d.url("/api/v1/signals"))
            .json(&json!({"account": account}))
            .send()
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(5), "both clears", || {
        fake.clears_effective(APPID) == 1 && fake.clears_effective(OTHER) == 1
    })
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "clears waited for chat: {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reports_the_platform_answer() {
    let fake = FakeWeChat::start().await;
    let chats = chats().await;
    let env = Env::new(&config(&fake, &chats));
    let wecom = &chats.all[0].1;
    let ok = env.run_async(&["notify-test", "wecom"]).await;
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert_eq!(wecom.received().len(), 1);
    wecom.push(Answer::Code(93000, "invalid webhook url".into()));
    let bad = env.run_async(&["notify-test", "wecom"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("93000"), "{}", stdout(&bad));
    let none = env.run_async(&["notify-test", "nope"]).await;
    assert_eq!(none.status.code(), Some(1));
    let all = format!(
        "{}{}{}{}",
        stdout(&ok),
        stderr(&ok),
        stdout(&bad),
        stderr(&bad)
    );
    assert!(
        !all.contains("fake-wecom-key"),
        "the URL's key leaked: {all}"
    );
}
