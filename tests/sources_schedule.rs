//! `start_scheduled` against real files and the fake WeChat: sources run on
//! their cron schedule, a run that would overlap the previous one is skipped,
//! and shutdown stops them promptly. These run on real time (the scheduler
//! reads the wall clock), with one-second schedules.

pub mod support {
    pub mod fake_wechat;
    pub mod sources;
}

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use quotawatch::sources::start_scheduled;
use support::fake_wechat::{FakeWeChat, Fault, QUOTA_GET};
use support::sources::{Harness, SHOP};

const SEND: &str = "/cgi-bin/message/custom/send";

fn append(h: &Harness, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(h.path("app.log"))
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn wait_for<T>(timeout: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = poll() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_file_runs_on_schedule_and_stops_at_shutdown() {
    let extra = r#"
[sources.app_log]
type = "log_file"
path = "{dir}/app.log"
pattern = '45009'
account = "shop"
schedule = "* * * * * *"
"#;
    let mut h = Harness::new("http://127.0.0.1:9", extra);
    append(&h, "old 45009\n");
    let sources = start_scheduled(h.ctx.clone(), &h.config.sources);
    assert_eq!(sources.names(), ["app_log".to_string()]);
    // The first run starts at the end of the existing file.
    wait_for(Duration::from_secs(4), || {
        h.ctx.health.snapshot().get("app_log").cloned()
    })
    .await
    .expect("a first run");
    append(&h, "new 45009\nnew 45009\n");
    let signal = wait_for(Duration::from_secs(4), || h.signals.try_recv().ok())
        .await
        .expect("a scheduled run");
    assert_eq!((signal.account.as_str(), signal.count), ("shop", 2));

    sources.shutdown().await;
    append(&h, "after 45009\n");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(h.signals.try_recv().is_err(), "no run after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_run_is_skipped_and_shutdown_does_not_wait_for_it() {
    let fake = FakeWeChat::start().await;
    fake.add_account(SHOP, "shop-secret");
    fake.set_quota(SHOP, SEND, 100_000, 10);
    for _ in 0..10 {
        fake.push_fault(Some(QUOTA_GET), Fault::Hang);
    }
    let extra = format!(
        r#"
[sources.quota]
type = "wechat_quota"
accounts = ["shop"]
cgi_paths = ["{SEND}"]
schedule = "* * * * * *"
"#
    );
    let h = Harness::new(&fake.base_url(), &extra);
    let sources = start_scheduled(h.ctx.clone(), &h.config.sources);
    wait_for(Duration::from_secs(4), || {
        (fake.count_exact(QUOTA_GET) > 0).then_some(())
    })
    .await
    .expect("a first poll");
    // The read hangs until the 3 s client timeout; the ticks meanwhile find
    // the previous run still going and skip.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    assert_eq!(fake.count_exact(QUOTA_GET), 1, "runs were stacked");

    let t = Instant::now();
    sources.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?} for a hung read",
        t.elapsed()
    );
}

#[tokio::test]
async fn no_scheduled_sources_is_fine() {
    let h = Harness::new("http://127.0.0.1:9", "");
    let sources = start_scheduled(h.ctx.clone(), &h.config.sources);
    assert!(sources.names().is_empty());
    sources.shutdown().await;
}
