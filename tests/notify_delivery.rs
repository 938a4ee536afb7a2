//! Notifiers end to end over real HTTP against fake chat platforms on
//! 127.0.0.1: message shapes and signatures per platform, routing, rate limits
//! and digests, retries, configuration errors, isolation and shutdown.
//!
//! These use real time; waits are kept to the platforms' own limits (WeCom's
//! 3 s is the longest). Delays of minutes, through the whole daemon on a
//! paused clock, are in `daemon_timing.rs`.

pub mod support {
    pub mod fake_chat;
}

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{TimeZone, Utc};
use hmac::{Hmac, Mac};
use quotawatch::event::{Budget, ClearTarget, Event, EventKind, Outcome};
use quotawatch::metrics::Metrics;
use quotawatch::notify::dingtalk::DingTalkSettings;
use quotawatch::notify::feishu::{FeishuFormat, FeishuSettings};
use quotawatch::notify::webhook::WebhookSettings;
use quotawatch::notify::{
    send_test, Language, NotifierKind, NotifierSpec, Notifiers, NotifyContext, NotifyError,
    PlatformSettings,
};
use quotawatch::policy::SkipReason;
use quotawatch::secret::Secret;
use serde_json::Value;
use sha2::Sha256;
use support::fake_chat::{Answer, FakeChat, Flavor, Received};

const DINGTALK_SECRET: &str = "SEC-fake-dingtalk-secret";
const FEISHU_SECRET: &str = "fake-feishu-secret";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A notifier of `kind` that sets none of its platform's own keys.
fn spec(name: &str, kind: NotifierKind, fake: &FakeChat) -> NotifierSpec {
    NotifierSpec {
        name: name.into(),
        platform: kind.default_settings(),
        url: Secret::new(fake.url()),
        events: EventKind::ALL.to_vec(),
        language: Language::En,
        skipped_interval: Duration::from_secs(3600),
    }
}

fn context(metrics: &Arc<Metrics>) -> NotifyContext {
    NotifyContext {
        metrics: metrics.clone(),
        hostname: "qw-test-host".into(),
        timezone: chrono_tz::Asia::Shanghai,
        http: reqwest::Client::new(),
    }
}

fn start(specs: Vec<NotifierSpec>) -> (Notifiers, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let specs: BTreeMap<String, NotifierSpec> =
        specs.into_iter().map(|s| (s.name.clone(), s)).collect();
    (Notifiers::start(&specs, context(&metrics)), metrics)
}

fn event(kind: EventKind) -> Event {
    Event {
        kind,
        account: "shop".into(),
        appid: "wx448f04719cd48f69".into(),
        at: Utc.with_ymd_and_hms(2026, 11, 3, 6, 5, 0).unwrap(),
        source: "alerts".into(),
        trigger: "WeChatQuotaExhausted".into(),
        evidence: 3,
        target: ClearTarget::Full,
        attempt: None,
        skip_reason: None,
        outcome: (kind == EventKind::Cleared).then_some(Outcome::Ok),
        errcode: None,
        errmsg: None,
        budget: Budget {
            used: 5,
            cap: 8,
            left: 3,
            month: "2026-11".into(),
        },
        next_clear_at: None,
        report: None,
        route: vec![],
    }
}

fn skipped(account: &str, reason: SkipReason) -> Event {
    Event {
        account: account.into(),
        attempt: None,
        skip_reason: Some(reason),
        ..event(EventKind::Skipped)
    }
}

fn count(metrics: &Metrics, notifier: &str, outcome: &str) -> u64 {
    metrics
        .notifications
        .get_or_create(&vec![
            ("notifier", notifier.to_string()),
            ("outcome", outcome.to_string()),
        ])
        .get()
}

async fn wait_count(metrics: &Metrics, notifier: &str, outcome: &str, n: u64) {
    let deadline = Instant::now() + secs(5.0);
    while count(metrics, notifier, outcome) < n {
        assert!(
            Instant::now() < deadline,
            "{notifier} {outcome} stayed at {}",
            count(metrics, notifier, outcome)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hmac_b64(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    BASE64.encode(mac.finalize().into_bytes())
}

fn str_at<'a>(body: &'a Value, pointer: &str) -> &'a str {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {body}"))
}

/// A signature timestamp must be the sender's current time.
fn assert_recent(unix_secs: i64) {
    assert!(
        (Utc::now().timestamp() - unix_secs).abs() < 60,
        "timestamp {unix_secs} is not now"
    );
}

fn check_wecom(r: &Received) {
    assert_eq!(r.query_param("key").as_deref(), Some("fake-wecom-key"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["msgtype"], "markdown");
    let content = str_at(&r.body, "/markdown/content");
    assert!(content.contains("[quotawatch] 已清零：shop"), "{content}");
    assert!(
        content.contains("额度：2026-11 还剩 3 次清零（共 8 次）"),
        "{content}"
    );
}

fn check_dingtalk(r: &Received) {
    assert_eq!(
        r.query_param("access_token").as_deref(),
        Some("fake-dingtalk-token")
    );
    let ts = r.query_param("timestamp").expect("timestamp");
    let sign = r.query_param("sign").expect("sign");
    assert_recent(ts.parse::<i64>().unwrap() / 1000);
    let expected = hmac_b64(
        DINGTALK_SECRET.as_bytes(),
        format!("{ts}\n{DINGTALK_SECRET}").as_bytes(),
    );
    assert_eq!(sign, expected, "DingTalk signature verifies");
    assert_eq!(r.body["msgtype"], "markdown");
    assert_eq!(
        str_at(&r.body, "/markdown/title"),
        "[quotawatch] Quota cleared: shop"
    );
    assert!(str_at(&r.body, "/markdown/text").contains("3 of 8 clears left in 2026-11"));
}

fn check_feishu_post(r: &Received) {
    let ts = str_at(&r.body, "/timestamp");
    assert_recent(ts.parse().unwrap());
    let expected = hmac_b64(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"");
    assert_eq!(
        str_at(&r.body, "/sign"),
        expected,
        "Feishu signature verifies"
    );
    assert_eq!(r.body["msg_type"], "post");
    assert_eq!(
        str_at(&r.body, "/content/post/en_us/title"),
        "[quotawatch] Quota cleared: shop"
    );
    let lines: Vec<&str> = r.body["content"]["post"]["en_us"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0]["text"].as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"Budget: 3 of 8 clears left in 2026-11"),
        "{lines:?}"
    );
}

fn check_feishu_card(r: &Received) {
    assert_eq!(r.body["msg_type"], "interactive");
    assert_eq!(
        str_at(&r.body, "/card/header/title/content"),
        "[quotawatch] Quota cleared: shop"
    );
    assert!(str_at(&r.body, "/card/elements/0/text/content").contains("3 of 8 clears left"));
    assert!(r.body.get("sign").is_none(), "no secret, no signature");
}

fn check_slack(r: &Received) {
    assert_eq!(r.path, "/services/T0000/B0000/fake-slack-key");
    assert_eq!(r.body["text"], "[quotawatch] Quota cleared: shop");
    assert_eq!(r.body["blocks"][0]["type"], "header");
    assert_eq!(r.body["blocks"][1]["type"], "section");
    assert_eq!(r.body["blocks"][1]["text"]["type"], "mrkdwn");
    assert!(str_at(&r.body, "/blocks/1/text/text").contains("3 of 8 clears left in 2026-11"));
}

fn check_discord(r: &Received) {
    // Pinned to an API version whose `retry_after` is seconds.
    assert_eq!(r.path, "/api/v10/webhooks/1/fake-discord-token");
    assert_eq!(r.body["content"], "[quotawatch] Quota cleared: shop");
    assert_eq!(
        r.body["embeds"][0]["title"],
        "[quotawatch] Quota cleared: shop"
    );
    assert!(str_at(&r.body, "/embeds/0/description").contains("3 of 8 clears left in 2026-11"));
    assert!(r.body["embeds"][0]["color"].is_u64());
}

fn check_webhook(r: &Received) {
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    assert_recent(ts.parse().unwrap());
    let key = BASE64
        .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&r.raw);
    let expected = format!("v1,{}", hmac_b64(&key, &signed));
    assert_eq!(
        r.header("webhook-signature"),
        Some(expected.as_str()),
        "Standard Webhooks signature verifies"
    );
    assert_eq!(r.body["type"], "event");
    assert_eq!(r.body["id"], id);
    assert_eq!(r.body["kind"], "cleared");
    assert_eq!(r.body["appid"], "wx448f04719cd48f69");
    assert_eq!(r.body["budget"]["left"], 3);
    assert_eq!(r.body["host"], "qw-test-host");
    assert!(str_at(&r.body, "/text").contains("3 of 8 clears left in 2026-11"));
}

#[tokio::test]
async fn every_platform_gets_one_correctly_shaped_message() {
    let flavors = [
        ("wecom", Flavor::WeCom, NotifierKind::Wecom),
        ("dingtalk", Flavor::DingTalk, NotifierKind::Dingtalk),
        ("feishu", Flavor::Feishu, NotifierKind::Feishu),
        ("feishu_card", Flavor::Feishu, NotifierKind::Feishu),
        ("slack", Flavor::Slack, NotifierKind::Slack),
        ("discord", Flavor::Discord, NotifierKind::Discord),
        ("webhook", Flavor::Webhook, NotifierKind::Webhook),
    ];
    let mut fakes = Vec::new();
    let mut specs = Vec::new();
    for (name, flavor, kind) in flavors {
        let fake = FakeChat::start(flavor).await;
        let mut s = spec(name, kind, &fake);
        match name {
            "wecom" => s.language = Language::Zh,
            "dingtalk" => {
                s.platform = PlatformSettings::Dingtalk(DingTalkSettings {
                    secret: Some(Secret::new(DINGTALK_SECRET)),
                })
            }
            "feishu" => {
                s.platform = PlatformSettings::Feishu(FeishuSettings {
                    secret: Some(Secret::new(FEISHU_SECRET)),
                    format: FeishuFormat::Post,
                })
            }
            "feishu_card" => {
                s.platform = PlatformSettings::Feishu(FeishuSettings {
                    secret: None,
                    format: FeishuFormat::Card,
                })
            }
            "webhook" => {
                s.platform = PlatformSettings::Webhook(WebhookSettings {
                    secret: Some(Secret::new(WEBHOOK_SECRET)),
                })
            }
            _ => {}
        }
        specs.push(s);
        fakes.push((name, fake));
    }
    let (notifiers, metrics) = start(specs);
    notifiers.publish(&event(EventKind::Cleared));
    for (name, fake) in &fakes {
        let got = fake.wait_for(1, secs(3.0)).await;
        match *name {
            "wecom" => check_wecom(&got[0]),
            "dingtalk" => check_dingtalk(&got[0]),
            "feishu" => check_feishu_post(&got[0]),
            "feishu_card" => check_feishu_card(&got[0]),
            "slack" => check_slack(&got[0]),
            "discord" => check_discord(&got[0]),
            _ => check_webhook(&got[0]),
        }
        wait_count(&metrics, name, "sent", 1).await;
    }
    notifiers.shutdown(secs(2.0)).await;
    for (name, fake) in &fakes {
        assert_eq!(fake.received().len(), 1, "{name}: exactly one message");
    }
}

#[tokio::test]
async fn only_listed_events_reach_only_routed_notifiers() {
    let fake_a = FakeChat::start(Flavor::Webhook).await;
    let fake_b = FakeChat::start(Flavor::Webhook).await;
    let a = NotifierSpec {
        events: vec![EventKind::Cleared],
        ..spec("a", NotifierKind::Webhook, &fake_a)
    };
    let b = NotifierSpec {
        events: vec![EventKind::Cleared, EventKind::Failed],
        ..spec("b", NotifierKind::Webhook, &fake_b)
    };
    let (notifiers, metrics) = start(vec![a, b]);
    notifiers.publish(&event(EventKind::Failed));
    notifiers.publish(&Event {
        route: vec!["a".into()],
        ..event(EventKind::Cleared)
    });
    notifiers.publish(&event(EventKind::Cleared));
    notifiers.shutdown(secs(2.0)).await;
    let kinds = |fake: &FakeChat| -> Vec<String> {
        fake.received()
            .iter()
            .map(|r| r.body["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(kinds(&fake_a), ["cleared", "cleared"]);
    let mut got_b = kinds(&fake_b);
    got_b.sort();
    assert_eq!(got_b, ["cleared", "failed"]);
    assert_eq!(count(&metrics, "a", "sent"), 2);
    assert_eq!(count(&metrics, "b", "sent"), 2);
}

#[tokio::test]
async fn wecom_burst_sends_one_then_a_digest_three_seconds_later() {
    let fake = FakeChat::start(Flavor::WeCom).await;
    let (notifiers, metrics) = start(vec![spec("ops", NotifierKind::Wecom, &fake)]);
    for _ in 0..5 {
        notifiers.publish(&event(EventKind::Cleared));
    }
    let got = fake.wait_for(2, secs(6.0)).await;
    // Arrival times: the first request also paid for the TCP connect, so allow
    // a little less than the 3 s the sender waits between starts.
    let gap = got[1].at - got[0].at;
    assert!(gap >= secs(2.9), "{gap:?}");
    assert!(str_at(&got[0].body, "/markdown/content").contains("Quota cleared: shop"));
    let digest = str_at(&got[1].body, "/markdown/content");
    assert!(
        digest.contains("[quotawatch] 4 events held back by the chat rate limit"),
        "{digest}"
    );
    assert_eq!(
        digest
            .matches("Quota cleared: shop (wx448f04719cd48f69)")
            .count(),
        4,
        "{digest}"
    );
    wait_count(&metrics, "ops", "sent", 2).await;
    assert_eq!(count(&metrics, "ops", "digested"), 4);
    notifiers.shutdown(secs(1.0)).await;
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let webhook = FakeChat::start(Flavor::Webhook).await;
    webhook.push(Answer::RateLimited(1.0));
    let discord = FakeChat::start(Flavor::Discord).await;
    // The JSON says 1.2 s, the header (rounded up) 2 s: the JSON is the one to follow.
    discord.push(Answer::RateLimited(1.2));
    let (notifiers, metrics) = start(vec![
        spec("hook", NotifierKind::Webhook, &webhook),
        spec("discord", NotifierKind::Discord, &discord),
    ]);
    notifiers.publish(&event(EventKind::Cleared));
    let got = webhook.wait_for(2, secs(4.0)).await;
    assert!(
        got[1].at - got[0].at >= secs(1.0),
        "{:?}",
        got[1].at - got[0].at
    );
    let got = discord.wait_for(2, secs(4.0)).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= secs(1.2) && gap < secs(2.0), "{gap:?}");
    for name in ["hook", "discord"] {
        wait_count(&metrics, name, "sent", 1).await;
        assert_eq!(count(&metrics, name, "retried"), 1);
    }
    notifiers.shutdown(secs(1.0)).await;
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let fake = FakeChat::start(Flavor::Slack).await;
    fake.push(Answer::Status(503, "service unavailable".into()));
    let (notifiers, metrics) = start(vec![spec("ops", NotifierKind::Slack, &fake)]);
    notifiers.publish(&event(EventKind::Failed));
    let got = fake.wait_for(2, secs(4.0)).await;
    assert!(got[1].at - got[0].at >= secs(1.0));
    assert_eq!(got[0].body, got[1].body);
    wait_count(&metrics, "ops", "sent", 1).await;
    assert_eq!(count(&metrics, "ops", "retried"), 1);
    notifiers.shutdown(secs(1.0)).await;
}

#[tokio::test]
async fn configuration_error_codes_are_not_retried() {
    let dingtalk = FakeChat::start(Flavor::DingTalk).await;
    dingtalk.push(Answer::Code(310000, "keywords not in content".into()));
    let feishu = FakeChat::start(Flavor::Feishu).await;
    feishu.push(Answer::Code(
        19021,
        "sign match fail or timestamp is not within one hour from current time".into(),
    ));
    let (notifiers, metrics) = start(vec![
        spec("ding", NotifierKind::Dingtalk, &dingtalk),
        spec("lark", NotifierKind::Feishu, &feishu),
    ]);
    notifiers.publish(&event(EventKind::Exhausted));
    wait_count(&metrics, "ding", "config_error", 1).await;
    wait_count(&metrics, "lark", "config_error", 1).await;
    // Feishu's limit would allow a retry after the 1 s backoff; none may come.
    tokio::time::sleep(secs(1.5)).await;
    for (name, fake) in [("ding", &dingtalk), ("lark", &feishu)] {
        assert_eq!(fake.received().len(), 1, "{name}");
        assert_eq!(count(&metrics, name, "retried"), 0, "{name}");
        assert_eq!(count(&metrics, name, "sent"), 0, "{name}");
    }
    notifiers.shutdown(secs(1.0)).await;
}

#[tokio::test]
async fn a_200_with_an_error_code_is_a_failure() {
    let fake = FakeChat::start(Flavor::WeCom).await;
    fake.push(Answer::Code(40008, "invalid message type".into()));
    let (notifiers, metrics) = start(vec![spec("ops", NotifierKind::Wecom, &fake)]);
    notifiers.publish(&event(EventKind::Cleared));
    wait_count(&metrics, "ops", "failed", 1).await;
    assert_eq!(count(&metrics, "ops", "sent"), 0);
    notifiers.shutdown(secs(1.0)).await;
}

#[tokio::test]
async fn a_hanging_notifier_does_not_delay_another() {
    let slow = FakeChat::start(Flavor::Webhook).await;
    slow.set_default(Answer::Hang);
    let fast = FakeChat::start(Flavor::Webhook).await;
    let (notifiers, metrics) = start(vec![
        spec("slow", NotifierKind::Webhook, &slow),
        spec("fast", NotifierKind::Webhook, &fast),
    ]);
    notifiers.publish(&event(EventKind::Cleared));
    slow.wait_for(1, secs(2.0)).await;
    let published = tokio::time::Instant::now();
    notifiers.publish(&Event {
        account: "blog".into(),
        ..event(EventKind::Cleared)
    });
    let got = fast.wait_for(2, secs(1.0)).await;
    assert!(got[1].at - published < secs(1.0));
    assert_eq!(got[1].body["account"], "blog");
    let stopping = Instant::now();
    notifiers.shutdown(secs(0.5)).await;
    assert!(stopping.elapsed() < secs(2.0), "{:?}", stopping.elapsed());
    assert_eq!(count(&metrics, "fast", "sent"), 2);
    assert_eq!(count(&metrics, "slow", "sent"), 0);
    assert_eq!(
        count(&metrics, "slow", "dropped"),
        2,
        "the hanging one and the queued one"
    );
}

#[tokio::test]
async fn skipped_messages_are_limited_per_account_and_reason() {
    let fake = FakeChat::start(Flavor::Webhook).await;
    let s = NotifierSpec {
        events: vec![EventKind::Skipped],
        ..spec("ops", NotifierKind::Webhook, &fake)
    };
    let (notifiers, metrics) = start(vec![s]);
    for _ in 0..3 {
        notifiers.publish(&skipped("shop", SkipReason::Cooldown));
    }
    notifiers.publish(&skipped("shop", SkipReason::DailyMax));
    notifiers.publish(&skipped("blog", SkipReason::Cooldown));
    notifiers.shutdown(secs(2.0)).await;
    let mut got: Vec<String> = fake
        .received()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r.body["account"].as_str().unwrap(),
                r.body["skip_reason"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, ["blog/cooldown", "shop/cooldown", "shop/daily_max"]);
    assert_eq!(count(&metrics, "ops", "rate_limited_skip"), 2);
}

#[tokio::test]
async fn shutdown_flushes_the_queue_within_its_timeout() {
    let fake = FakeChat::start(Flavor::Slack).await;
    let (notifiers, metrics) = start(vec![spec("ops", NotifierKind::Slack, &fake)]);
    for _ in 0..3 {
        notifiers.publish(&event(EventKind::BudgetLow));
    }
    fake.wait_for(1, secs(2.0)).await;
    let stopping = Instant::now();
    notifiers.shutdown(secs(5.0)).await;
    assert!(stopping.elapsed() < secs(2.5), "{:?}", stopping.elapsed());
    let got = fake.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1].body["text"],
        "[quotawatch] 2 events held back by the chat rate limit"
    );
    assert_eq!(count(&metrics, "ops", "sent"), 2);
    assert_eq!(count(&metrics, "ops", "dropped"), 0);
}

#[tokio::test]
async fn shutdown_drops_what_does_not_fit_its_timeout() {
    let fake = FakeChat::start(Flavor::WeCom).await;
    let (notifiers, metrics) = start(vec![spec("ops", NotifierKind::Wecom, &fake)]);
    for _ in 0..3 {
        notifiers.publish(&event(EventKind::Cleared));
    }
    fake.wait_for(1, secs(2.0)).await;
    let stopping = Instant::now();
    notifiers.shutdown(secs(0.5)).await;
    let took = stopping.elapsed();
    assert!(took >= secs(0.5) && took < secs(1.5), "{took:?}");
    assert_eq!(fake.received().len(), 1);
    assert_eq!(count(&metrics, "ops", "dropped"), 2);
    notifiers.publish(&event(EventKind::Cleared));
    assert_eq!(
        count(&metrics, "ops", "dropped"),
        3,
        "published after shutdown"
    );
}

#[tokio::test]
async fn notify_test_reports_the_platform_answer() {
    let metrics = Arc::new(Metrics::new());
    let ctx = context(&metrics);
    let wecom = FakeChat::start(Flavor::WeCom).await;
    let s = spec("ops", NotifierKind::Wecom, &wecom);
    let answer = send_test(&s, &ctx).await.expect("sent");
    assert!(
        answer.contains("HTTP 200") && answer.contains(r#""errcode":0"#),
        "{answer}"
    );
    assert!(str_at(&wecom.received()[0].body, "/markdown/content")
        .contains("Test message from notifier ops"));

    wecom.push(Answer::Code(93000, "invalid webhook url".into()));
    let err = send_test(&s, &ctx).await.unwrap_err();
    assert!(
        matches!(&err, NotifyError::Config(a) if a.contains("93000")),
        "{err}"
    );

    let discord = FakeChat::start(Flavor::Discord).await;
    discord.push(Answer::Status(502, "bad gateway".into()));
    let err = send_test(&spec("d", NotifierKind::Discord, &discord), &ctx)
        .await
        .unwrap_err();
    assert!(matches!(err, NotifyError::Unavailable(_)), "{err}");
    assert_eq!(discord.received().len(), 1, "no retries");
}

#[tokio::test]
async fn unreachable_platform_errors_do_not_show_the_url() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let metrics = Arc::new(Metrics::new());
    let s = NotifierSpec {
        url: Secret::new(format!(
            "http://127.0.0.1:{port}/cgi-bin/webhook/send?key=very-secret-key"
        )),
        ..spec(
            "ops",
            NotifierKind::Wecom,
            &FakeChat::start(Flavor::WeCom).await,
        )
    };
    let err = send_test(&s, &context(&metrics)).await.unwrap_err();
    assert!(matches!(err, NotifyError::Transport(_)), "{err}");
    assert!(!err.to_string().contains("very-secret-key"), "{err}");
}
