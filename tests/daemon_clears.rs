//! The real daemon on port 0 against the fake WeChat: webhooks to clears,
//! bursts, crashes, reloads and graceful stops (issue 3).

pub mod support {
    pub mod daemon;
    pub mod fake_wechat;
}

use std::time::Duration;

use serde_json::{json, Value};
use support::daemon::*;
use support::fake_wechat::*;

const APPID: &str = "wx448f04719cd48f69";
const SECRET: &str = "shop-app-secret-value";
const TOKEN: &str = "api-token-for-tests";
const HMAC: &str = "grafana-hmac-key";

fn config(fake: &FakeWeChat, policy: &str) -> String {
    format!(
        r#"tokens = ["{TOKEN}"]
shutdown_timeout = "10s"
[wechat]
api_base = "{}"
timeout = "10s"
[policy]
reset_guard = "0s"
{policy}
[accounts.shop]
appid = "{APPID}"
kind = "mini_program"
secret = "{SECRET}"
[sources.alerts]
type = "alertmanager"
[sources.graf]
type = "grafana"
hmac_secret = "{HMAC}"
"#,
        fake.base_url()
    )
}

async fn setup(policy: &str) -> (FakeWeChat, Env) {
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    let env = Env::new(&config(&fake, policy));
    (fake, env)
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// An Alertmanager v4 webhook body, as Alertmanager's documentation shows it.
fn alertmanager_payload(fingerprint: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"WeChatQuotaExhausted\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "quotawatch",
        "groupLabels": {"alertname": "WeChatQuotaExhausted"},
        "commonLabels": {"alertname": "WeChatQuotaExhausted", "severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "WeChatQuotaExhausted", "appid": APPID, "instance": "app-1"},
                "annotations": {"summary": "45009 on app-1"},
                "startsAt": "2026-11-28T10:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local:9090/graph",
                "fingerprint": fingerprint
            },
            {
                "status": "firing",
                "labels": {"alertname": "WeChatQuotaExhausted", "appid": APPID, "instance": "app-2"},
                "annotations": {},
                "startsAt": "2026-11-28T10:00:05.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local:9090/graph",
                "fingerprint": format!("{fingerprint}-2")
            }
        ]
    })
}

fn grafana_payload() -> String {
    json!({
        "receiver": "quotawatch", "status": "firing", "orgId": 1,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "WeChat45009", "appid": APPID},
            "annotations": {}, "startsAt": "2026-11-28T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "57c6d9296de2ad39", "silenceURL": "", "dashboardURL": "",
            "panelURL": "", "values": {"A": 3}, "valueString": "[ var='A' labels={} value=3 ]"
        }],
        "groupLabels": {}, "commonLabels": {"alertname": "WeChat45009"}, "commonAnnotations": {},
        "externalURL": "http://grafana.local:3000/", "version": "1", "groupKey": "{}:{}",
        "truncatedAlerts": 0, "title": "[FIRING:1] WeChat45009", "state": "alerting", "message": "45009"
    })
    .to_string()
}

fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

async fn signal(d: &Daemon, key: &str) -> reqwest::StatusCode {
    client()
        .post(d.url("/api/v1/signals"))
        .bearer_auth(TOKEN)
        .json(&json!({"account": "shop", "reason": "45009 in app", "count": 1, "key": key}))
        .send()
        .await
        .unwrap()
        .status()
}

fn status_json(env: &Env) -> Value {
    let o = env.run(&["status", "shop", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice::<Value>(&o.stdout).unwrap()[0].clone()
}

fn history_json(env: &Env) -> Vec<Value> {
    let o = env.run(&["history", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_payload_leads_to_exactly_one_clear() {
    let (fake, env) = setup("").await;
    let d = Daemon::start(&env).await;
    let resp = client()
        .post(d.url("/hooks/alerts"))
        .bearer_auth(TOKEN)
        .json(&alertmanager_payload("fp1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["queued"], 2);
    eventually(Duration::from_secs(10), "one clear at the fake", || {
        fake.clears_effective(APPID) == 1
    })
    .await;
    // The same alerts again (Alertmanager repeats) and a new one: no second clear.
    client()
        .post(d.url("/hooks/alerts"))
        .bearer_auth(TOKEN)
        .json(&alertmanager_payload("fp1"))
        .send()
        .await
        .unwrap();
    client()
        .post(d.url("/hooks/alerts"))
        .bearer_auth(TOKEN)
        .json(&alertmanager_payload("fp9"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.clears_effective(APPID), 1);
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 1);
    let unauthenticated = client()
        .post(d.url("/hooks/alerts"))
        .json(&alertmanager_payload("fp2"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    d.wait_log("Clear attempt finished", Duration::from_secs(5))
        .await;
    let st = status_json(&env);
    assert_eq!(st["used"], 1);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_signature_gates_the_clear() {
    let (fake, env) = setup("").await;
    let d = Daemon::start(&env).await;
    let body = grafana_payload();
    let ts = chrono::Utc::now().timestamp().to_string();
    let bad = client()
        .post(d.url("/hooks/graf"))
        .header(
            "X-Grafana-Alerting-Signature",
            hmac_hex("wrong-key", &[ts.as_bytes(), b":", body.as_bytes()]),
        )
        .header("X-Grafana-Alerting-Timestamp", &ts)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.clears_effective(APPID), 0);
    let good = client()
        .post(d.url("/hooks/graf"))
        .header(
            "X-Grafana-Alerting-Signature",
            hmac_hex(HMAC, &[ts.as_bytes(), b":", body.as_bytes()]),
        )
        .header("X-Grafana-Alerting-Timestamp", &ts)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 202);
    eventually(Duration::from_secs(10), "the signed alert clears", || {
        fake.clears_effective(APPID) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_300_signals_gives_one_clear() {
    let (fake, env) = setup("").await;
    fake.set_default_delay_after_effect(Some(Duration::from_millis(300)));
    let d = Daemon::start(&env).await;
    let url = d.url("/api/v1/signals");
    let mut tasks = Vec::new();
    for i in 0..300 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"account": APPID, "key": format!("k{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    eventually(Duration::from_secs(10), "a clear", || {
        fake.clears_effective(APPID) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(fake.clears_effective(APPID), 1);
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 1);
    let metrics = client()
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("quotawatch_signals_total{source=\"api\"} 300"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_clear_counts_it_as_ambiguous_and_the_cap_holds() {
    let (fake, env) = setup("monthly_cap = 1\ncooldown = \"0s\"").await;
    fake.set_default_delay_after_effect(Some(Duration::from_secs(30)));
    let mut d = Daemon::start(&env).await;
    assert_eq!(signal(&d, "a").await, 202);
    eventually(
        Duration::from_secs(10),
        "the clear took effect at the fake",
        || fake.clears_effective(APPID) == 1,
    )
    .await;
    d.signal(libc::SIGKILL);
    assert_eq!(
        d.wait(Duration::from_secs(5)).await,
        None,
        "killed by a signal"
    );
    fake.set_default_delay_after_effect(None);
    let d2 = Daemon::start(&env).await;
    d2.wait_log("count as spent", Duration::from_secs(5)).await;
    let history = history_json(&env);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["outcome"], "ambiguous");
    assert_eq!(status_json(&env)["left"], 0);
    assert_eq!(signal(&d2, "b").await, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.clears_effective(APPID),
        1,
        "the cap of 1 holds after the crash"
    );
    assert_eq!(fake.count_exact(CLEAR_QUOTA_V2), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_lower_cap_and_survives_a_broken_config() {
    let (fake, env) = setup("cooldown = \"0s\"\ndaily_max = 10").await;
    let d = Daemon::start(&env).await;
    assert_eq!(signal(&d, "1").await, 202);
    eventually(Duration::from_secs(10), "first clear", || {
        fake.clears_effective(APPID) == 1
    })
    .await;
    d.wait_log("Clear attempt finished", Duration::from_secs(5))
        .await;
    env.write(&config(
        &fake,
        "cooldown = \"0s\"\ndaily_max = 10\nmonthly_cap = 1",
    ));
    d.signal(libc::SIGHUP);
    d.wait_log("Configuration reloaded", Duration::from_secs(5))
        .await;
    assert_eq!(signal(&d, "2").await, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.clears_effective(APPID),
        1,
        "the lowered cap applies without a restart"
    );
    let metrics = client()
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("reason=\"monthly_cap\""), "{metrics}");

    std::fs::write(&env.config, "[daemon]\nthis is not toml").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("Reload refused", Duration::from_secs(5)).await;
    let health = client().get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        signal(&d, "3").await,
        202,
        "still running on the old config, token included"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_the_in_flight_clear() {
    let (fake, env) = setup("").await;
    fake.set_default_delay_after_effect(Some(Duration::from_secs(2)));
    let mut d = Daemon::start(&env).await;
    assert_eq!(signal(&d, "a").await, 202);
    eventually(
        Duration::from_secs(10),
        "the clear reached the fake",
        || fake.clears_effective(APPID) == 1,
    )
    .await;
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(15)).await, Some(0));
    let history = history_json(&env);
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0]["outcome"], "ok",
        "the outcome was recorded before exit: {history:?}"
    );
}
