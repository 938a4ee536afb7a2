//! The daemon's timers over minutes, on tokio's paused clock: a chat platform
//! that asks for minutes before a retry, the cap on what it may ask, the
//! digest that carries what arrived meanwhile, and the policy's cooldown on
//! the daemon's own clock. The daemon runs in process
//! (`support::in_process`) against fake WeChat and chat servers on 127.0.0.1,
//! so every gap below is exact.

pub mod support {
    pub mod daemon;
    pub mod fake_chat;
    pub mod fake_wechat;
    pub mod in_process;
}

use std::time::Duration;

use serde_json::json;
use support::daemon::Env;
use support::fake_chat::{Answer, FakeChat, Flavor};
use support::fake_wechat::FakeWeChat;
use support::in_process::InProcess;

const SECRET: &str = "timing-test-app-secret";
/// The first three are configured at start; a reload adds the fourth.
const ACCOUNTS: [(&str, &str); 4] = [
    ("shop", "wx448f04719cd48f69"),
    ("blog", "wx0123456789abcdef"),
    ("news", "wx00000000000000d7"),
    ("mail", "wx1111111111111111"),
];

const SENT: &str = r#"quotawatch_notifications_total{notifier="ops",outcome="sent"}"#;
const RETRIED: &str = r#"quotawatch_notifications_total{notifier="ops",outcome="retried"}"#;
const DIGESTED: &str = r#"quotawatch_notifications_total{notifier="ops",outcome="digested"}"#;
const FAILED: &str = r#"quotawatch_notifications_total{notifier="ops",outcome="failed"}"#;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `accounts` and one WeCom notifier (one message per 3 s) that hears only
/// of clears, so a monthly report or a budget warning cannot interleave.
fn config(
    wechat: &FakeWeChat,
    chat: &FakeChat,
    accounts: &[(&str, &str)],
    language: &str,
) -> String {
    let mut text = format!(
        "[wechat]\napi_base = \"{}\"\n[policy]\nreset_guard = \"0s\"\n",
        wechat.base_url()
    );
    for (name, appid) in accounts {
        wechat.add_account(appid, SECRET);
        text.push_str(&format!(
            "[accounts.{name}]\nappid = \"{appid}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n"
        ));
    }
    text.push_str(&format!(
        "[notifiers.ops]\ntype = \"wecom\"\nurl = \"{}\"\nlanguage = \"{language}\"\nevents = [\"cleared\"]\n",
        chat.url()
    ));
    text
}

struct World {
    wechat: FakeWeChat,
    chat: FakeChat,
    env: Env,
    d: InProcess,
}

/// The fakes and the daemon; the chat platform gives `first_answer` first.
async fn start(first_answer: Answer) -> World {
    let wechat = FakeWeChat::start().await;
    let chat = FakeChat::start(Flavor::WeCom).await;
    chat.push(first_answer);
    let env = Env::new(&config(&wechat, &chat, &ACCOUNTS[..3], "en"));
    let d = InProcess::start(&env).await;
    World {
        wechat,
        chat,
        env,
        d,
    }
}

async fn signal(d: &InProcess, account: &str) {
    let body = json!({"account": account, "reason": "45009 in orders", "count": 4});
    assert_eq!(d.post("/api/v1/signals", &body).await, 202);
}

async fn until_metric(d: &InProcess, series: &str, n: u64) {
    d.until(&format!("{series} {n}"), || async move {
        d.metric(series).await == n
    })
    .await;
}

fn content(body: &serde_json::Value) -> &str {
    body["markdown"]["content"].as_str().unwrap_or_default()
}

/// A 429 asking for four minutes holds the message exactly that long; the
/// clears announced meanwhile wait in the queue and leave as one digest at
/// the next slot of WeCom's limit, 3 s after the retry.
#[tokio::test(start_paused = true)]
async fn a_platform_delay_of_minutes_holds_the_message_and_the_rest_leave_as_one_digest() {
    let World { chat, d, .. } = start(Answer::RateLimited(240.0)).await;
    signal(&d, "shop").await;
    until_metric(&d, RETRIED, 1).await;
    for account in ["blog", "news"] {
        signal(&d, account).await;
        let cleared = format!(r#"quotawatch_clears_total{{account="{account}",outcome="ok"}}"#);
        until_metric(&d, &cleared, 1).await;
    }

    // Exact arrival times, below, show nothing left early or late: an
    // absence seen just after an advance would prove little.
    d.advance(secs(240)).await;
    until_metric(&d, SENT, 1).await;
    d.advance(secs(3)).await;
    until_metric(&d, SENT, 2).await;

    let got = chat.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].at - got[0].at, secs(240), "the platform's delay");
    assert_eq!(got[2].at - got[1].at, secs(3), "WeCom's next slot");
    assert_eq!(got[0].body, got[1].body, "the retry is the same message");
    assert!(
        content(&got[0].body).contains("Quota cleared: shop"),
        "{}",
        got[0].body
    );
    let digest = content(&got[2].body);
    assert!(
        digest.contains("[quotawatch] 2 events held back by the chat rate limit"),
        "{digest}"
    );
    for (name, appid) in &ACCOUNTS[1..3] {
        assert_eq!(
            digest
                .matches(&format!("Quota cleared: {name} ({appid})"))
                .count(),
            1,
            "{digest}"
        );
    }
    assert_eq!(d.metric(RETRIED).await, 1);
    assert_eq!(d.metric(DIGESTED).await, 2);
    assert_eq!(d.metric(FAILED).await, 0);
    d.stop().await.expect("a clean stop");
    assert_eq!(chat.received().len(), 3, "nothing left for the shutdown");
}

/// A platform that asks for two hours is retried after the 15 minute cap
/// (`Tuning::max_platform_delay`), not before and not later.
#[tokio::test(start_paused = true)]
async fn a_platform_delay_of_hours_is_cut_to_fifteen_minutes() {
    let World { chat, d, .. } = start(Answer::RateLimited(7200.0)).await;
    signal(&d, "shop").await;
    until_metric(&d, RETRIED, 1).await;
    d.advance(secs(15 * 60)).await;
    until_metric(&d, SENT, 1).await;
    let got = chat.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].at - got[0].at, secs(15 * 60));
    assert_eq!(got[0].body, got[1].body);
    d.stop().await.expect("a clean stop");
}

/// A reload replaces the notifiers. What the old one held back still leaves,
/// at its slot of WeCom's limit, within the 5 s the old generation has to
/// drain; what follows goes through the new one. The reload adds an account,
/// whose budget in `/metrics` shows the reload done (and the old notifier
/// closed, in the same step) before the clock moves.
#[tokio::test(start_paused = true)]
async fn a_reload_lets_the_old_notifier_send_what_it_held_back() {
    let World {
        wechat,
        chat,
        env,
        d,
    } = start(Answer::Ok).await;
    signal(&d, "shop").await;
    until_metric(&d, SENT, 1).await;
    signal(&d, "blog").await;
    until_metric(&d, DIGESTED, 1).await;
    env.write(&config(&wechat, &chat, &ACCOUNTS, "zh"));
    d.reload.send(()).await.unwrap();
    until_metric(&d, r#"quotawatch_budget_remaining{account="mail"}"#, 8).await;
    d.advance(secs(3)).await;
    until_metric(&d, SENT, 2).await;
    signal(&d, "news").await;
    until_metric(&d, SENT, 3).await;

    let got = chat.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].at - got[0].at, secs(3), "WeCom's next slot");
    let blog = content(&got[1].body);
    assert!(
        blog.contains("Quota cleared: blog"),
        "the old notifier: {blog}"
    );
    let news = content(&got[2].body);
    assert!(news.contains("已清零：news"), "the new notifier: {news}");
    assert_eq!(d.metric(DIGESTED).await, 1);
    d.stop().await.expect("a clean stop");
}

const CLEARS_SKIPPED_FOR_COOLDOWN: &str =
    r#"quotawatch_decisions_total{decision="skip",reason="cooldown"}"#;

/// The cooldown is measured on the daemon's clock: a second exhaustion 10
/// minutes after a clear is refused, one 31 minutes after it is cleared.
/// (On the wall clock, which a paused test does not move, the third signal
/// would be refused too.)
#[tokio::test(start_paused = true)]
async fn the_cooldown_runs_on_the_daemons_clock() {
    let wechat = FakeWeChat::start().await;
    let (name, appid) = ACCOUNTS[0];
    wechat.add_account(appid, SECRET);
    let env = Env::new(&format!(
        "[wechat]\napi_base = \"{}\"\n[policy]\ncooldown = \"30m\"\npacing = false\n\
         [accounts.{name}]\nappid = \"{appid}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n",
        wechat.base_url()
    ));
    // 10:00 in Beijing: far from the daily reset and its guard.
    let ten = chrono::DateTime::parse_from_rfc3339("2026-11-10T10:00:00+08:00")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let d = InProcess::start_at(&env, ten).await;
    // Counted once WeChat's answer is in the ledger: the clock moves only
    // when no clear is in flight (the module docs of support::in_process).
    let cleared = format!("quotawatch_clears_total{{account=\"{name}\",outcome=\"ok\"}}");

    signal(&d, name).await;
    until_metric(&d, &cleared, 1).await;
    d.advance(secs(10 * 60)).await;
    signal(&d, name).await;
    until_metric(&d, CLEARS_SKIPPED_FOR_COOLDOWN, 1).await;
    assert_eq!(wechat.clears_effective(appid), 1);

    d.advance(secs(21 * 60)).await;
    signal(&d, name).await;
    until_metric(&d, &cleared, 2).await;
    assert_eq!(wechat.clears_effective(appid), 2);
    assert_eq!(d.metric(CLEARS_SKIPPED_FOR_COOLDOWN).await, 1);
    d.stop().await.expect("a clean stop");
}
