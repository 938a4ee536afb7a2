//! The ledger under faults and replicas, with the real binary (issue 11):
//! the same alert delivered to two daemons that share one ledger buys one
//! clear whatever the cooldown, and an outcome the ledger cannot take is
//! notified at once and recorded once the ledger returns, while hooks and
//! `/readyz` say the ledger is unreachable instead of accepting signals.

pub mod support {
    pub mod daemon;
    pub mod fake_chat;
    pub mod fake_wechat;
}

use std::time::Duration;

use serde_json::{json, Value};
use support::daemon::*;
use support::fake_chat::*;
use support::fake_wechat::*;

const APPID: &str = "wx448f04719cd48f69";
const SECRET: &str = "faults-app-secret-value";
const TOKEN: &str = "faults-api-token";

fn config(fake: &FakeWeChat, extra: &str) -> String {
    format!(
        r#"tokens = ["{TOKEN}"]
shutdown_timeout = "10s"
[wechat]
api_base = "{}"
timeout = "10s"
[policy]
reset_guard = "0s"
cooldown = "0s"
daily_max = 10
[accounts.shop]
appid = "{APPID}"
kind = "mini_program"
secret = "{SECRET}"
[sources.alerts]
type = "alertmanager"
{extra}"#,
        fake.base_url()
    )
}

/// One firing alert, as each Alertmanager of an HA pair sends it: the same
/// fingerprint and `startsAt`.
fn alert() -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"WeChatQuotaExhausted\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "quotawatch",
        "groupLabels": {"alertname": "WeChatQuotaExhausted"},
        "commonLabels": {"alertname": "WeChatQuotaExhausted"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "WeChatQuotaExhausted", "appid": APPID},
            "annotations": {},
            "startsAt": "2026-11-28T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.local:9090/graph",
            "fingerprint": "6f1a2b3c4d5e6f70"
        }]
    })
}

async fn post_alert(client: &reqwest::Client, d: &Daemon) -> reqwest::StatusCode {
    client
        .post(d.url("/hooks/alerts"))
        .bearer_auth(TOKEN)
        .json(&alert())
        .send()
        .await
        .unwrap()
        .status()
}

/// SPEC section 2: deduplication is durable and shared. Two daemons on one
/// ledger, cooldown 0: the alert delivered to both at once, then again to
/// one of them a second after the clear, is cleared once.
#[tokio::test]
async fn the_same_alert_to_two_replicas_clears_once_with_no_cooldown() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    // The clear answers late, so the second replica's decision may land
    // while it is in flight or just after it.
    fake.set_default_delay_after_effect(Some(Duration::from_millis(300)));
    let env = Env::new(&config(&fake, ""));
    let (a, b) = (Daemon::start(&env).await, Daemon::start(&env).await);
    let client = reqwest::Client::new();
    let (ra, rb) = tokio::join!(post_alert(&client, &a), post_alert(&client, &b));
    assert_eq!((ra.as_u16(), rb.as_u16()), (202, 202));
    eventually(Duration::from_secs(10), "a clear at the fake", || {
        fake.clears_effective(APPID) >= 1
    })
    .await;
    // The clear is over; now the delivery skew of an HA pair (the alert
    // reaches B after A cleared) and a re-delivery to A a second later.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for d in [&b, &a, &b] {
        assert_eq!(post_alert(&client, d).await.as_u16(), 202);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.count_exact(CLEAR_QUOTA_V2) + fake.count_exact(CLEAR_QUOTA),
        1,
        "one alert, one clear\nA:\n{}\nB:\n{}",
        a.logs(),
        b.logs()
    );
    let out = env.run_async(&["history", "--json"]).await;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "ok");
}

/// WeChat clears, and the ledger cannot take the outcome (another process
/// holds its write lock past the busy timeout). The `cleared` message goes
/// out at once; hooks answer 503 and `/readyz` names the ledger; once the
/// lock is gone the outcome is recorded, hooks accept signals again, and
/// nothing was cleared twice.
#[tokio::test]
async fn an_outcome_the_ledger_cannot_take_is_notified_and_recorded_when_it_returns() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    fake.set_default_delay_after_effect(Some(Duration::from_secs(2)));
    let chat = FakeChat::start(Flavor::Webhook).await;
    let notifier = format!(
        "[notifiers.ops]\ntype = \"webhook\"\nurl = \"{}\"\nevents = [\"cleared\"]\n",
        chat.url()
    );
    let env = Env::new(&config(&fake, &notifier));
    let d = Daemon::start(&env).await;
    let client = reqwest::Client::new();
    assert_eq!(post_alert(&client, &d).await.as_u16(), 202);
    eventually(Duration::from_secs(10), "the clear to take effect", || {
        fake.clears_effective(APPID) == 1
    })
    .await;
    // While WeChat's answer is on its way, another process takes the
    // ledger's write lock and keeps it.
    let db = env.db.clone();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    // The daemon waits out its busy timeout (30 s), then gives up on the write.
    d.wait_log("Cannot record the clear's outcome", Duration::from_secs(60))
        .await;
    let sent = chat.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(sent[0].body["kind"], "cleared", "{:?}", sent[0].body);
    assert!(sent[0].body["attempt"].is_i64(), "{:?}", sent[0].body);
    assert_eq!(
        post_alert(&client, &d).await.as_u16(),
        503,
        "signals are refused while the ledger cannot decide them"
    );
    let ready = client.get(d.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["ledger"]["ok"], false, "{body}");
    assert!(
        body["ledger"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("locked"),
        "{body}"
    );

    release_tx.send(()).unwrap();
    holder.join().unwrap();
    d.wait_log("The clear's outcome is recorded", Duration::from_secs(45))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.get(d.url("/readyz")).send().await.unwrap().status();
        if status.as_u16() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz stays {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        post_alert(&client, &d).await.as_u16(),
        202,
        "hooks accept again"
    );
    let out = env.run_async(&["history", "--json"]).await;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "ok", "{rows:?}");
    assert_eq!(rows[0]["id"], sent[0].body["attempt"]);
    assert_eq!(fake.clears_effective(APPID), 1);
    assert_eq!(chat.received().len(), 1, "one clear, one message");
}

/// Issue 19, item 3: a ledger that cannot be opened is explained with each
/// cause once, on the command line of `run` and of a read command, for
/// SQLite and for PostgreSQL.
#[test]
fn an_unopenable_ledger_says_each_cause_once() {
    let env = Env::new(&format!(
        "[accounts.shop]\nappid = \"{APPID}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n"
    ));
    // A directory where the database file should be: SQLite cannot open it.
    std::fs::create_dir(&env.db).unwrap();
    let once = |text: &str, cause: &str| {
        assert_eq!(text.matches(cause).count(), 1, "`{cause}` once in: {text}");
    };
    for args in [&["run"][..], &["status"][..]] {
        let o = env.run(args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        once(&err, "unable to open database file");
        assert!(!err.contains("Error code 14"), "{err}");
    }
    // Nothing listens on port 1 of the loopback: the connection is refused.
    let o = env
        .command(&["status"])
        .env(
            "QUOTAWATCH_DAEMON__STATE",
            "postgres://quotawatch:pg-password-5150@127.0.0.1:1/ledger?sslmode=disable",
        )
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    once(&err, "Connection refused");
    assert!(!err.contains("pg-password-5150"), "{err}");
}
