//! The daemon speaks systemd's notify protocol: READY=1 once listening,
//! RELOADING=1 then READY=1 around a SIGHUP, WATCHDOG=1 keep-alives when
//! `WATCHDOG_USEC` is set, STOPPING=1 on SIGTERM (issue 3).

pub mod support {
    pub mod daemon;
}

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::daemon::*;

/// Reads datagrams until one contains `needle`; returns everything read.
fn wait_for(sock: &UnixDatagram, needle: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l == needle);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {needle} within {timeout:?}; got {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_protocol_through_start_reload_watchdog_and_stop() {
    let env = Env::new("[accounts.shop]\nappid = \"wx448f04719cd48f69\"\nkind = \"mini_program\"\nsecret = \"s\"\n");
    let socket_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let socket = socket_path.to_str().unwrap().to_string();
    let mut d = Daemon::start_with(
        &env,
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "200000")],
    )
    .await;

    let start = wait_for(&sock, "READY=1", Duration::from_secs(10));
    // Issue 19, item 4: the summary reads as words, not "1 accounts (0 dry-run)".
    assert!(
        start.iter().any(|m| m
            .lines()
            .any(|l| l == "STATUS=watching 1 account, 0 sources, 0 notifiers")),
        "{start:?}"
    );
    // The ready line names the ledger as the config wrote it, not
    // `Sqlite("...")`.
    let ready: serde_json::Value = d
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "quotawatch is ready")
        .expect("the ready line");
    assert_eq!(ready["state"], env.db.display().to_string(), "{ready}");
    wait_for(&sock, "WATCHDOG=1", Duration::from_secs(2));

    d.signal(libc::SIGHUP);
    let reload = wait_for(&sock, "READY=1", Duration::from_secs(10));
    let reloading = reload
        .iter()
        .position(|m| m.lines().any(|l| l == "RELOADING=1"));
    assert!(
        reloading.is_some(),
        "RELOADING=1 before READY=1: {reload:?}"
    );
    assert!(
        reload.iter().any(|m| m.contains("MONOTONIC_USEC=")),
        "{reload:?}"
    );

    d.signal(libc::SIGTERM);
    wait_for(&sock, "STOPPING=1", Duration::from_secs(10));
    assert_eq!(d.wait(Duration::from_secs(10)).await, Some(0));
}
