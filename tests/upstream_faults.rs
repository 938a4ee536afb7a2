//! Upstream faults (issue 7): for each way WeChat can misbehave, the real
//! daemon is sent one signal and the test checks all four traces the attempt
//! leaves: the ledger rows (`history --json`), the requests WeChat received
//! (retries), the notification a `webhook` notifier delivered to a fake chat
//! server, and the JSON log line `Clear attempt finished`.
//!
//! | fault | requests | ledger | notification | budget |
//! |---|---|---|---|---|
//! | -1 on every try | 4 (1 + 3 retries) | failed, -1 | failed | not spent |
//! | 45011 once | 2 | ok | cleared | 1 spent |
//! | HTTP 503 once | 2 | ok | cleared | 1 spent |
//! | a body that is not JSON | 1 | ambiguous | failed | 1 spent (pessimistic) |
//! | connection reset after sending | 1 | ambiguous | failed | 1 spent |
//! | no answer (1 s timeout) | 1 | ambiguous | failed | 1 spent |
//! | 42001 on a token_file token, file then rotated | 2 (old, new token) | ok | cleared | 1 spent |
//! | 48006 | 1 | failed, 48006 | exhausted | month exhausted, no more calls |
//! | 40164 | 1 | failed, 40164 | config_error naming the IP | account disabled, no more calls |

pub mod support {
    pub mod daemon;
    pub mod fake_chat;
    pub mod fake_wechat;
}

use std::time::Duration;

use serde_json::{json, Value};
use support::daemon::*;
use support::fake_chat::{FakeChat, Flavor};
use support::fake_wechat::*;

const APPID: &str = "wx5a5a5a5a5a5a5a5a";
const SECRET: &str = "fault-proof-app-secret";
const TOKEN: &str = "fault-proof-bearer";

/// How the account proves itself.
#[derive(Clone, Copy, PartialEq)]
enum Credential {
    Secret,
    /// `token_file` pointing at a FIFO the test feeds.
    TokenFifo,
}

/// What one fault must leave behind.
struct Case {
    faults: Vec<Fault>,
    credential: Credential,
    /// Requests to the clear endpoint.
    requests: usize,
    outcome: &'static str,
    errcode: Option<i64>,
    /// The notification's `kind`.
    kind: &'static str,
    /// Clears that took effect at the fake.
    effective: u32,
    /// `status --json` `used` afterwards.
    used: u32,
}

struct Run {
    fake: FakeWeChat,
    chat: FakeChat,
    env: Env,
    daemon: Daemon,
}

fn config(fake: &FakeWeChat, chat: &FakeChat, credential: Credential) -> String {
    let account = match credential {
        Credential::Secret => format!("kind = \"mini_program\"\nsecret = \"{SECRET}\""),
        Credential::TokenFifo => "kind = \"official_account\"\ntoken_file = \"shop-token\"".into(),
    };
    format!(
        "tokens = [\"{TOKEN}\"]\nshutdown_timeout = \"5s\"\n\
         [wechat]\napi_base = \"{}\"\ntimeout = \"1s\"\n\
         [policy]\ncooldown = \"0s\"\nreset_guard = \"0s\"\ndaily_max = 10\n\
         [accounts.shop]\nappid = \"{APPID}\"\n{account}\n\
         [notifiers.chat]\ntype = \"webhook\"\nurl = \"{}\"\nlanguage = \"en\"\n",
        fake.base_url(),
        chat.url()
    )
}

fn clear_path(credential: Credential) -> &'static str {
    match credential {
        Credential::Secret => CLEAR_QUOTA_V2,
        Credential::TokenFifo => CLEAR_QUOTA,
    }
}

async fn start(case: &Case) -> Run {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    let chat = FakeChat::start(Flavor::Webhook).await;
    let env = Env::new(&config(&fake, &chat, case.credential));
    if case.credential == Credential::TokenFifo {
        env.fifo("shop-token");
    }
    for fault in &case.faults {
        fake.push_fault(Some(clear_path(case.credential)), fault.clone());
    }
    let daemon = Daemon::start(&env).await;
    Run {
        fake,
        chat,
        env,
        daemon,
    }
}

async fn signal(d: &Daemon, key: &str) {
    let resp = reqwest::Client::new()
        .post(d.url("/api/v1/signals"))
        .bearer_auth(TOKEN)
        .json(&json!({"account": "shop", "reason": "45009 seen", "count": 1, "key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
}

/// The daemon's JSON log lines with this message.
fn log_lines(d: &Daemon, message: &str) -> Vec<Value> {
    d.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

fn json_out(env: &Env, args: &[&str]) -> Value {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One signal, then every trace the attempt left is checked against `case`.
async fn prove(case: Case) -> Run {
    let run = start(&case).await;
    let path = clear_path(case.credential);
    signal(&run.daemon, "k1").await;
    if case.credential == Credential::TokenFifo {
        // The first read gets a token that the fault expires; the refresh
        // re-reads the file, which the other system has rotated by then.
        let fifo = run.env.dir.path().join("shop-token");
        let (old, new) = (run.fake.issue_token(APPID), run.fake.issue_token(APPID));
        feed_fifo(&fifo, &old).await;
        eventually(Duration::from_secs(10), "the first clear_quota", || {
            run.fake.count_exact(path) == 1
        })
        .await;
        feed_fifo(&fifo, &new).await;
        run.daemon
            .wait_log("Clear attempt finished", Duration::from_secs(10))
            .await;
        let tokens: Vec<_> = run
            .fake
            .requests_to(path)
            .iter()
            .map(|r| r.query_param("access_token").unwrap())
            .collect();
        assert_eq!(tokens, [old, new], "the refresh used the rotated token");
        assert_eq!(
            log_lines(&run.daemon, "Token rejected, refreshing it once").len(),
            1
        );
    }
    run.daemon
        .wait_log("Clear attempt finished", Duration::from_secs(10))
        .await;

    // The log line.
    let finished = log_lines(&run.daemon, "Clear attempt finished");
    assert_eq!(finished.len(), 1, "{finished:?}");
    let line = &finished[0];
    assert_eq!(line["outcome"], case.outcome, "{line}");
    assert_eq!(line["errcode"].as_i64(), case.errcode, "{line}");
    assert_eq!(line["account"], "shop");
    assert_eq!(line["appid"], APPID);
    assert_eq!(line["source"], "api");
    let retries = log_lines(&run.daemon, "WeChat call failed, retrying").len();
    let transient = case.requests.saturating_sub(1);
    if case.credential == Credential::Secret {
        assert_eq!(retries, transient, "one warning per retry");
    }

    // The requests (retries) and what took effect.
    assert_eq!(
        run.fake.count_exact(path),
        case.requests,
        "requests to {path}"
    );
    assert_eq!(run.fake.clears_effective(APPID), case.effective);
    assert!(
        run.fake.violations().is_empty(),
        "{:?}",
        run.fake.violations()
    );

    // The ledger.
    let history = json_out(&run.env, &["history", "--json"]);
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 1, "one attempt, retries inside it: {rows:?}");
    assert_eq!(rows[0]["outcome"], case.outcome, "{rows:?}");
    assert_eq!(rows[0]["errcode"].as_i64(), case.errcode, "{rows:?}");
    assert_eq!(rows[0]["scope"], "full");
    let status = json_out(&run.env, &["status", "shop", "--json"]);
    assert_eq!(status[0]["used"], case.used, "{status}");

    // The notification.
    run.chat.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got: Vec<Value> = run.chat.received().into_iter().map(|r| r.body).collect();
    assert_eq!(got.len(), 1, "exactly one notification: {got:?}");
    let doc = &got[0];
    assert_eq!(doc["type"], "event");
    assert_eq!(doc["kind"], case.kind, "{doc}");
    assert_eq!(doc["appid"], APPID);
    assert_eq!(doc["errcode"].as_i64(), case.errcode, "{doc}");
    assert_eq!(doc["outcome"]["outcome"], case.outcome, "{doc}");
    assert_eq!(doc["budget"]["used"], case.used, "{doc}");
    run
}

/// After 48006 or 40164 a new signal is refused by the policy: no request,
/// one `skipped` notification with the reason.
async fn next_signal_is_refused(run: &Run, key: &str, reason: &str, path: &str) {
    let before = run.fake.count_exact(path);
    signal(&run.daemon, key).await;
    let got = run.chat.wait_for(2, Duration::from_secs(10)).await;
    let doc = &got[1].body;
    assert_eq!(doc["kind"], "skipped", "{doc}");
    assert_eq!(doc["skip_reason"], reason, "{doc}");
    assert_eq!(
        run.fake.count_exact(path),
        before,
        "no further call to WeChat"
    );
    let refused = log_lines(&run.daemon, "Policy refused to clear");
    assert!(refused.iter().any(|l| l["reason"] == reason), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_error_is_retried_three_times_then_failed() {
    prove(Case {
        faults: vec![Fault::errcode(-1); 4],
        credential: Credential::Secret,
        requests: 4,
        outcome: "failed",
        errcode: Some(-1),
        kind: "failed",
        effective: 0,
        used: 0,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minute_quota_is_retried_then_cleared() {
    prove(Case {
        faults: vec![Fault::errcode(45011)],
        credential: Credential::Secret,
        requests: 2,
        outcome: "ok",
        errcode: None,
        kind: "cleared",
        effective: 1,
        used: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_5xx_is_retried_then_cleared() {
    prove(Case {
        faults: vec![Fault::Status(503)],
        credential: Credential::Secret,
        requests: 2,
        outcome: "ok",
        errcode: None,
        kind: "cleared",
        effective: 1,
        used: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_ambiguous_and_never_retried() {
    prove(Case {
        faults: vec![Fault::Garbage],
        credential: Credential::Secret,
        requests: 1,
        outcome: "ambiguous",
        errcode: None,
        kind: "failed",
        effective: 0,
        used: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_after_sending_is_ambiguous() {
    prove(Case {
        faults: vec![Fault::Reset],
        credential: Credential::Secret,
        requests: 1,
        outcome: "ambiguous",
        errcode: None,
        kind: "failed",
        effective: 0,
        used: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_times_out_as_ambiguous() {
    let started = std::time::Instant::now();
    let run = prove(Case {
        faults: vec![Fault::Hang],
        credential: Credential::Secret,
        requests: 1,
        outcome: "ambiguous",
        errcode: None,
        kind: "failed",
        effective: 0,
        used: 1,
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "wechat.timeout = 1s bounds the wait"
    );
    let line = &log_lines(&run.daemon, "Clear attempt finished")[0];
    assert!(
        line["error"].as_str().unwrap().contains("timed out"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_from_the_rotated_file_and_cleared() {
    prove(Case {
        faults: vec![Fault::ExpireToken],
        credential: Credential::TokenFifo,
        requests: 2,
        outcome: "ok",
        errcode: None,
        kind: "cleared",
        effective: 1,
        used: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_limit_48006_marks_the_month_exhausted() {
    let run = prove(Case {
        faults: vec![Fault::errcode(48006)],
        credential: Credential::Secret,
        requests: 1,
        outcome: "failed",
        errcode: Some(48006),
        kind: "exhausted",
        effective: 0,
        used: 0,
    })
    .await;
    let status = json_out(&run.env, &["status", "shop", "--json"]);
    assert_eq!(status[0]["exhausted"], true, "{status}");
    next_signal_is_refused(&run, "k2", "exhausted_upstream", CLEAR_QUOTA_V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_not_whitelisted_40164_disables_and_names_the_ip() {
    let run = prove(Case {
        faults: vec![Fault::ip_not_whitelisted()],
        credential: Credential::Secret,
        requests: 1,
        outcome: "failed",
        errcode: Some(40164),
        kind: "config_error",
        effective: 0,
        used: 0,
    })
    .await;
    let doc = &run.chat.received()[0].body;
    assert!(
        doc["text"].as_str().unwrap().contains("203.0.113.5"),
        "the alert shows the IP to whitelist: {doc}"
    );
    let status = json_out(&run.env, &["status", "shop", "--json"]);
    assert!(status[0]["disabled"].is_string(), "{status}");
    next_signal_is_refused(&run, "k2", "account_disabled", CLEAR_QUOTA_V2).await;
}
