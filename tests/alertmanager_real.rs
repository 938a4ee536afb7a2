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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's prometheus-alertmanager; run by .ci/run"]
async fn alertmanager_delivers_an_alert_that_clears() {
    let binary = std::env::var("ALERTMANAGER_BIN")
        .unwrap_or_else(|_| "/usr/bin/prometheus-alertmanager".into());
    assert!(
        std::path::Path::new(&binary).exists(),
        "{binary} is not installed (apt-get install prometheus-alertmanager)"
    );
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, "secret-for-alertmanager-test");
    let env = Env::new(&format!(
        "tokens = [\"{TOKEN}\"]\n[wechat]\napi_base = \"{}\"\n[policy]\nreset_guard = \"0s\"\n\
         [accounts.shop]\nappid = \"{APPID}\"\nkind = \"official_account\"\nsecret = \"secret-for-alertmanager-test\"\n\
         [sources.alerts]\ntype = \"alertmanager\"\n",
        fake.base_url()
    ));
    let d = Daemon::start(&env).await;

    let am_port = free_port();
    let am_config = env.file(
        "alertmanager.yml",
        &format!(
            "route:\n  receiver: quotawatch\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: quotawatch\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials: {TOKEN}\n",
            d.url("/hooks/alerts")
        ),
    );
    let storage = env.dir.path().join("am-data");
    let _am = Kill(
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
    let am = format!("http://127.0.0.1:{am_port}");
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(20), "alertmanager ready", || {
        std::net::TcpStream::connect(("127.0.0.1", am_port)).is_ok()
    })
    .await;
    let alert = json!([{
        "labels": {"alertname": "WeChatQuotaExhausted", "appid": APPID},
        "annotations": {"summary": "45009"},
        "startsAt": chrono::Utc::now().to_rfc3339(),
    }]);
    let mut posted = false;
    for _ in 0..50 {
        if let Ok(r) = http
            .post(format!("{am}/api/v2/alerts"))
            .json(&alert)
            .send()
            .await
        {
            if r.status().is_success() {
                posted = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(posted, "Alertmanager did not accept the alert");
    eventually(
        Duration::from_secs(30),
        "the clear reaches the fake WeChat",
        || fake.clears_effective(APPID) == 1,
    )
    .await;
    d.wait_log("Signals received", Duration::from_secs(5)).await;
    assert!(fake.violations().is_empty());
}
