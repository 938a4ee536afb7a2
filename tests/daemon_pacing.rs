//! Pacing is a rule like the others (SPEC section 3, issue 20): the daemon
//! in process on tokio's paused clock, against fake WeChat and chat servers
//! on 127.0.0.1, with its log lines captured. Inside the cooldown a refusal
//! reads `cooldown`; once pacing has its say, its refusal is logged, counted,
//! notified as `skipped` and kept in the account's episode.

pub mod support {
    pub mod daemon;
    pub mod fake_chat;
    pub mod fake_wechat;
    pub mod in_process;
}

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use quotawatch::store::{HistoryFilter, SqliteStore, Store};
use serde_json::json;
use support::daemon::Env;
use support::fake_chat::{FakeChat, Flavor};
use support::fake_wechat::FakeWeChat;
use support::in_process::InProcess;

const SECRET: &str = "pacing-test-app-secret";
const APPID: &str = "wx448f04719cd48f69";

fn skips(reason: &str) -> String {
    format!(r#"quotawatch_decisions_total{{decision="skip",reason="{reason}"}}"#)
}

/// The log lines of this test binary, as the daemon's subscriber would
/// print them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    fn lines(&self, needle: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains(needle))
            .map(String::from)
            .collect()
    }
}

fn cst(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn signal(d: &InProcess) {
    let body = json!({"account": "shop", "reason": "45009 in orders", "count": 500});
    assert_eq!(d.post("/api/v1/signals", &body).await, 202);
}

async fn until_metric(d: &InProcess, series: &str, n: u64) {
    d.until(&format!("{series} {n}"), || async move {
        d.metric(series).await == n
    })
    .await;
}

fn content(body: &serde_json::Value) -> String {
    body["markdown"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Issue 20's "Silent" and "Out of order": `monthly_cap = 3`, a retry storm
/// of 500 failed calls a minute, a clear at 10:00, then signals within the
/// hour. They read `cooldown` (with its end), not `pacing`. At 11:00 the
/// clear is known to last about 14 minutes at the storm's rate: pacing holds
/// it, and says so in the log, the metric, the chat and the episode.
#[tokio::test(start_paused = true)]
async fn a_pacing_refusal_comes_after_the_cooldown_and_is_heard_and_kept() {
    let logs = Logs::capture();
    let wechat = FakeWeChat::start().await;
    let chat = FakeChat::start(Flavor::WeCom).await;
    wechat.add_account(APPID, SECRET);
    let env = Env::new(&format!(
        r#"[wechat]
api_base = "{}"
[policy]
monthly_cap = 3
[accounts.shop]
appid = "{APPID}"
kind = "mini_program"
secret = "{SECRET}"
[notifiers.ops]
type = "wecom"
url = "{}"
language = "en"
events = ["cleared", "skipped"]
"#,
        wechat.base_url(),
        chat.url()
    ));
    let d = InProcess::start_at(&env, cst("2026-11-10T10:00:00+08:00")).await;
    let minutes = |m: u64| Duration::from_secs(60 * m);

    signal(&d).await;
    until_metric(
        &d,
        r#"quotawatch_clears_total{account="shop",outcome="ok"}"#,
        1,
    )
    .await;
    for (n, wait) in [(1, 5), (2, 2), (3, 2), (4, 11), (5, 4)] {
        d.advance(minutes(wait)).await;
        signal(&d).await;
        until_metric(&d, &skips("cooldown"), n).await;
    }
    assert_eq!(d.metric(&skips("pacing")).await, 0, "not pacing: cooldown");
    let cooldown = logs.lines("Policy refused to clear");
    assert_eq!(
        cooldown.len(),
        1,
        "the ledger's refusal, then its quiet period: {cooldown:?}"
    );
    assert!(cooldown[0].contains(r#"reason="cooldown""#), "{cooldown:?}");

    // 11:00: the cooldown is over; the storm would eat a clear.
    d.advance(minutes(36)).await;
    signal(&d).await;
    until_metric(&d, &skips("pacing"), 1).await;
    let refused = logs.lines("Policy refused to clear");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[1].contains(r#"reason="pacing""#), "{refused:?}");

    let got = chat.wait_for(3, Duration::from_secs(10)).await;
    let texts: Vec<String> = got.iter().map(|r| content(&r.body)).collect();
    assert!(texts[0].contains("Quota cleared: shop"), "{texts:?}");
    assert!(texts[1].contains("Not cleared: cooldown"), "{texts:?}");
    assert!(texts[1].contains("11:00"), "the cooldown's end: {texts:?}");
    assert!(texts[2].contains("Not cleared: pacing"), "{texts:?}");
    assert_eq!(wechat.clears_effective(APPID), 1);

    let ledger = SqliteStore::open(&env.db).unwrap();
    let filter = HistoryFilter {
        appid: Some(APPID.into()),
        ..HistoryFilter::default()
    };
    let episodes = ledger
        .episodes(&filter, cst("2026-11-10T11:01:00+08:00"))
        .unwrap();
    let count = |i: usize, reason: &str| {
        episodes[i]
            .decisions
            .iter()
            .find(|c| c.reason == reason)
            .map_or(0, |c| c.count)
    };
    assert_eq!(
        episodes.len(),
        2,
        "the cleared one and the storm's: {episodes:?}"
    );
    assert_eq!(
        (count(0, "cooldown"), count(0, "pacing")),
        (5, 1),
        "{episodes:?}"
    );
    d.stop().await.expect("a clean stop");
}
