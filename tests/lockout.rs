//! Lockout accounting (SPEC section 5) end to end: the real daemon on the
//! example config, where the README's test alert must show up in `history`,
//! `episodes`, `status` and `/metrics`. The episodes' contract on each ledger
//! is in `tests/contract/lockout.rs`, run by `tests/store_sqlite.rs` and
//! `tests/store_postgres.rs`.

pub mod support {
    pub mod daemon;
}

use std::time::Duration;

use serde_json::Value;
use support::daemon::*;

/// The test alert of the README's set-up, as the README prints it.
fn readme_alert() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("/hooks/alerts")
        .expect("the README sends a test alert");
    let body = &readme[start..];
    let body = &body[body.find("-d '").unwrap() + 4..];
    body[..body.find('\'').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_test_alert_is_a_dry_run_in_history_status_and_metrics() {
    let env = Env::new("");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/quotawatch.toml"
    ))
    .unwrap();
    std::fs::write(&env.config, example).unwrap();
    let state = env.db.display().to_string();
    let vars = [
        ("QUOTAWATCH_DAEMON__LISTEN", "127.0.0.1:0"),
        ("QUOTAWATCH_DAEMON__STATE", state.as_str()),
    ];
    let d = Daemon::start_with(&env, &vars).await;
    let answer = reqwest::Client::new()
        .post(d.url("/hooks/alerts"))
        .header("content-type", "application/json")
        .body(readme_alert())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    d.wait_log("Policy refused to clear", Duration::from_secs(10))
        .await;

    let with_state = |args: &[&str]| {
        let mut cmd = env.command(args);
        cmd.env("QUOTAWATCH_DAEMON__STATE", &state);
        cmd.output().unwrap()
    };
    let mut text = String::new();
    eventually(Duration::from_secs(10), "the dry run in history", || {
        text = stdout(&with_state(&["history"]));
        text.lines()
            .any(|l| l.contains("shop") && l.contains("dry_run: 1 decision"))
    })
    .await;
    // `history --json` keeps its shape (attempts: there are none).
    let o = with_state(&["history", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
    let o = with_state(&["episodes", "--json"]);
    let episodes: Value = serde_json::from_slice(&o.stdout).unwrap();
    let episode = &episodes[0];
    assert_eq!(episode["account"], "shop", "{episodes}");
    assert_eq!(episode["ended_by"], "open", "{episodes}");
    assert_eq!(episode["decisions"][0]["reason"], "dry_run", "{episodes}");
    assert_eq!(episode["decisions"][0]["count"], 1, "{episodes}");
    assert_eq!(episodes.as_array().unwrap().len(), 1, "{episodes}");
    let text = stdout(&with_state(&["episodes"]));
    assert!(
        text.contains("dry_run x1") && text.contains("open"),
        "{text}"
    );

    let o = with_state(&["status", "shop", "--json"]);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status[0]["episodes"], 1, "{status}");
    assert_eq!(status[0]["locked"], true, "{status}");
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("quotawatch_locked{account=\"shop\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quotawatch_lockout_seconds_total{account=\"shop\"}"),
        "{metrics}"
    );
}
