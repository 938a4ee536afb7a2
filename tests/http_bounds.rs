//! The listener bounds what clients can hold (issue 10, item 1): with the
//! daemon under a 1,024 file limit, 2,000 sockets that sent half a request
//! line do not keep a valid alert or `/healthz` from being answered.

pub mod support {
    pub mod daemon;
    pub mod fake_wechat;
}

use std::os::unix::process::CommandExt;
use std::time::Duration;

use serde_json::json;
use support::daemon::*;
use support::fake_wechat::*;
use tokio::io::AsyncWriteExt;

const APPID: &str = "wx448f04719cd48f69";
const SECRET: &str = "bounds-secret";

fn limit_files(n: libc::rlim_t) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit reads `lim` only.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// This test process holds 2,000 sockets: its soft limit goes to the hard
/// one, as the daemon's own does.
fn raise_own_limit() {
    let nofile = quotawatch::listener::raise_nofile_limit();
    assert!(nofile >= 4096, "the test needs 4096 files, has {nofile}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_do_not_lock_alerts_out() {
    raise_own_limit();
    let fake = FakeWeChat::start().await;
    fake.add_account(APPID, SECRET);
    let env = Env::new(&format!(
        "[wechat]\napi_base = \"{}\"\n[policy]\nreset_guard = \"0s\"\n\
         [accounts.shop]\nappid = \"{APPID}\"\nkind = \"mini_program\"\nsecret = \"{SECRET}\"\n\
         [sources.alerts]\ntype = \"alertmanager\"\n",
        fake.base_url()
    ));
    let mut cmd = env.command(&["run"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe { cmd.pre_exec(|| limit_files(1024)) };
    let d = Daemon::start_command(&env, cmd).await;

    let mut stalled = Vec::new();
    for _ in 0..2000 {
        let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        // Half a request line, then nothing; a socket the daemon closed to
        // make room may already refuse the write.
        let _ = s.write_all(b"POST /hoo").await;
        stalled.push(s);
    }

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let alert = json!({"version": "4", "status": "firing", "alerts": [{"status": "firing",
        "labels": {"alertname": "WeChat45009", "appid": APPID},
        "startsAt": "2026-11-28T10:00:00Z", "fingerprint": "bounds-1"}]});
    let resp = http
        .post(d.url("/hooks/alerts"))
        .json(&alert)
        .send()
        .await
        .expect("the alert is answered while 2,000 sockets stall");
    assert_eq!(resp.status(), 202);
    eventually(Duration::from_secs(10), "the clear", || {
        fake.clears_effective(APPID) == 1
    })
    .await;
    let health = http.get(d.url("/healthz")).send().await.expect("/healthz");
    assert_eq!(health.status(), 200);
    let logs = d.logs();
    assert!(logs.contains("\"max_connections\":960"), "{logs}");
    assert!(!logs.contains("Too many open files"), "{logs}");
    drop(stalled);
}
