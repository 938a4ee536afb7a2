//! A real client: Debian's Alertmanager delivers an alert to the daemon's hook
//! with bearer credentials, and the clear arrives at the fake WeChat.
//!
//! Ignored by default because it needs `prometheus-alertmanager` installed;
//! `.ci/run` installs it and runs `cargo test --test alertmanager_real -- --ignored`.

pub mod support {
    pub mod daemon;
    pub mod fake_wechat;
}

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::daemon::*;
use support::fake_wechat::*;

const APPID: &str = "wx448f04719cd48f69";
const TOKEN: &str = "alertmanager-bearer-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's Alertmanager on a free port, routing everything to `hook` with
/// the bearer token; `route` and `webhook` add keys to the route and to the
/// webhook config. Answers the process (killed on drop) and its base URL.
async fn start_alertmanager(env: &Env, hook: &str, route: &str, webhook: &str) -> (Kill, String) {
    let binary = std::env::var("ALERTMANAGER_BIN")
        .unwrap_or_else(|_| "/usr/bin/prometheus-alertmanager".into());
    assert!(
        std::path::Path::new(&binary).exists(),
        "{binary} is not installed (apt-get install prometheus-alertmanager)"
    );
    let am_port = free_port();
    let am_config = env.file(
        "alertmanager.yml",
        &format!(
            "route:\n  receiver: quotawatch\n  group_interval: 1s\n  repeat_interval: 1h\n{route}\
             receivers:\n  - name: quotawatch\n    webhook_configs:\n      - url: {hook}\n        send_resolved: true\n{webhook}\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials: {TOKEN}\n",
        ),
    );
    let storage = env.dir.path().join("am-data");
    let am = Kill(
        Command::new(&binary)
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(Duration::from_secs(20), "alertmanager ready", || {
        std::net::TcpStream::connect(("127.0.0.1", am_port)).is_ok()
    })
    .await;
    (am, format!("http://127.0.0.1:{am_port}"))
}

/// Posts `alerts` to Alertmanager's API, retrying while it starts.
async fn post_alerts(am: &str, alerts: &serde_json::Value) {
    let http = reqwest::Client::new();
    for _ in 0..50 {
        if let Ok(r) = http
            .post(format!("{am}/api/v2/alerts"))
            .json(alerts)
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("Alertmanager did not accept the alerts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's prometheus-alertmanager; run by .ci/run"]
async fn alertmanager_delivers_an_alert_that_clears() {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, "secret-for-alertmanager-test");
    let env = Env::new(&format!(
        "tokens = [\"{TOKEN}\"]\n[wechat]\napi_base = \"{}\"\n[policy]\nreset_guard = \"0s\"\n\
         [accounts.shop]\nappid = \"{APPID}\"\nkind = \"official_account\"\nsecret = \"secret-for-alertmanager-test\"\n\
         [sources.alerts]\ntype = \"alertmanager\"\n",
        fake.base_url()
    ));
    let d = Daemon::start(&env).await;
    let (_am, am) =
        start_alertmanager(&env, &d.url("/hooks/alerts"), "  group_wait: 0s\n", "").await;
    let alert = json!([{
        "labels": {"alertname": "WeChatQuotaExhausted", "appid": APPID},
        "annotations": {"summary": "45009"},
        "startsAt": chrono::Utc::now().to_rfc3339(),
    }]);
    post_alerts(&am, &alert).await;
    eventually(
        Duration::from_secs(30),
        "the clear reaches the fake WeChat",
        || fake.clears_effective(APPID) == 1,
    )
    .await;
    d.wait_log("Signals received", Duration::from_secs(5)).await;
    assert!(fake.violations().is_empty());
}

/// Issue 19, item 1, as it was seen: `group_by: [alertname]`, `max_alerts:
/// 2`, three alerts for `shop` and two for `blog`. Alertmanager sends two
/// alerts of one account and `truncatedAlerts: 3`, with `commonLabels`
/// computed from the two it sent; the three dropped ones are reported and put
/// on no account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's prometheus-alertmanager; run by .ci/run"]
async fn a_truncated_group_is_put_on_no_account_its_group_labels_do_not_name() {
    const BLOG: &str = "wx0000000000000b10";
    let env = Env::new(&format!(
        "tokens = [\"{TOKEN}\"]\n[policy]\ndry_run = true\n\
         [accounts.shop]\nappid = \"{APPID}\"\nkind = \"official_account\"\nsecret = \"s\"\n\
         [accounts.blog]\nappid = \"{BLOG}\"\nkind = \"official_account\"\nsecret = \"s\"\n\
         [sources.alerts]\ntype = \"alertmanager\"\n"
    ));
    let d = Daemon::start(&env).await;
    let (_am, am) = start_alertmanager(
        &env,
        &d.url("/hooks/alerts"),
        "  group_by: [alertname]\n  group_wait: 2s\n",
        "        max_alerts: 2\n",
    )
    .await;
    let now = chrono::Utc::now().to_rfc3339();
    let alerts: Vec<_> = [(APPID, "1"), (APPID, "2"), (APPID, "3"), (BLOG, "1"), (BLOG, "2")]
        .iter()
        .map(|(appid, n)| {
            json!({"labels": {"alertname": "WeChatQuotaExhausted", "appid": appid, "n": n}, "startsAt": now})
        })
        .collect();
    post_alerts(&am, &json!(alerts)).await;
    d.wait_log("Alertmanager truncated the group", Duration::from_secs(30))
        .await;
    let logs: Vec<serde_json::Value> = d
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let truncated = logs
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Alertmanager truncated"))
        })
        .unwrap();
    assert_eq!(truncated["truncated"], 3, "{truncated}");
    assert!(truncated.get("account").is_none(), "{truncated}");
    let received = logs
        .iter()
        .find(|v| v["message"] == "Signals received")
        .unwrap();
    assert_eq!(received["queued"], 2, "{received}");
}
