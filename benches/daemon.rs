//! Whole-daemon figures for BENCHMARKS.md, measured on the release binary
//! (`cargo bench` builds it with the bench profile):
//!
//! - `reaction [SAMPLES] [HISTORY_ROWS]`: from the moment a client sends a signal to
//!   `POST /api/v1/signals` to the moment the clear request reaches a fake
//!   WeChat on loopback; one fresh account per sample (`secret` accounts use
//!   `clear_quota/v2`, which needs no token), so neither the cooldown nor the
//!   monthly cap interferes. The ledger is on disk (`synchronous = FULL`), so
//!   every sample includes the intent row's fsync.
//! - `startup [ACCOUNTS] [RUNS]`: from exec to systemd `READY=1` on a
//!   `NOTIFY_SOCKET` the bench listens on.
//! - `footprint [IDLE_SECS]`: resident memory once idle, and CPU time over
//!   IDLE_SECS of idling (from `/proc/PID/stat`) scaled to an hour, with 10
//!   accounts and with 10,000 accounts plus their scheduled sources.
//!
//! - `large-bodies [BODIES]`: resident memory before and after BODIES (100)
//!   authenticated Alertmanager bodies of 15,000 firing alerts each (about
//!   870 KB, under the 1 MiB limit), more than the queue's 10,000 free
//!   places: each is refused with 503 while it is parsed.
//!
//! - `status-page [ACCOUNTS] [LOADS]`: the status page (issue 22) with
//!   ACCOUNTS (10,000) accounts and a ledger holding this month's episodes and
//!   flags across the fleet plus a year of daily history for one account:
//!   the size and serve time of `/ui/`, of that account's page and of
//!   `/api/v1/accounts` paged and whole, and resident memory idle and after
//!   LOADS (60) loads of each kind of page.
//!
//! Without a subcommand (as under `cargo bench`) it runs all of them with their
//! defaults. Scratch files go under `target/bench-daemon/` (disk, not tmpfs).

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_quotawatch");
const TOKEN: &str = "bench-bearer-token";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let num =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match args.first().map(String::as_str) {
        Some("reaction") => runtime.block_on(reaction(num(1, 1000), num(2, 0))),
        Some("startup") => startup(num(1, 1000), num(2, 20)),
        Some("footprint") => runtime.block_on(footprint(num(1, 60) as u64)),
        Some("large-bodies") => runtime.block_on(large_bodies(num(1, 100))),
        Some("status-page") => runtime.block_on(status_page(num(1, 10_000), num(2, 60))),
        _ => {
            runtime.block_on(reaction(1000, 0));
            runtime.block_on(reaction(1000, 96_000));
            startup(1000, 20);
            runtime.block_on(footprint(60));
            runtime.block_on(large_bodies(100));
            runtime.block_on(status_page(10_000, 60));
        }
    }
}

// ---- scratch directories, configs, the daemon process --------------------------------

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-daemon")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn appid(i: usize) -> String {
    format!("wx{:016x}", 0xbe00_0000_0000_0000u64 + i as u64)
}

/// `[daemon]` on a free loopback port, the ledger in `dir`, then `body`.
fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("quotawatch.toml");
    let text = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\ntokens = [\"{TOKEN}\"]\n{body}",
        dir.join("ledger.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn accounts(n: usize, extra: &str) -> String {
    let mut s = String::with_capacity(n * 120);
    for i in 0..n {
        s.push_str(&format!(
            "[accounts.a{i}]\nappid = \"{}\"\nkind = \"mini_program\"\nsecret = \"secret-{i}\"\n{extra}",
            appid(i)
        ));
    }
    s
}

struct Running {
    child: Child,
    log: PathBuf,
    /// Exec to READY=1.
    ready_after: Duration,
}

impl Running {
    /// The `listen` address from the "quotawatch is ready" log line.
    fn addr(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "quotawatch is ready")
            .and_then(|v| v["listen"].as_str().map(str::to_string))
            .expect("a ready line with the listen address")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Execs `quotawatch run` and waits for `READY=1` on a notify socket.
fn start(dir: &Path, config: &Path) -> Running {
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let log = dir.join(format!("daemon-{}.log", fastrand::u32(..)));
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).arg("run");
    for (k, _) in std::env::vars() {
        if k.starts_with("QUOTAWATCH_") || k == "CREDENTIALS_DIRECTORY" || k == "STATE_DIRECTORY" {
            cmd.env_remove(k);
        }
    }
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn quotawatch");
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no READY=1 ({e}); log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let msg = String::from_utf8_lossy(&buf[..n]);
        if msg.lines().any(|l| l == "READY=1") {
            break;
        }
    }
    let ready_after = started.elapsed();
    Running {
        child,
        log,
        ready_after,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

// ---- reaction time --------------------------------------------------------------------

type Arrivals = mpsc::UnboundedSender<(String, Instant)>;

/// A fake WeChat that reports when each clear arrives and answers ok.
async fn fake_wechat() -> (String, mpsc::UnboundedReceiver<(String, Instant)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/cgi-bin/clear_quota/v2",
            post(|State(tx): State<Arrivals>, body: Bytes| async move {
                let at = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let _ = tx.send((v["appid"].as_str().unwrap_or_default().to_string(), at));
                Json(json!({"errcode": 0, "errmsg": "ok"}))
            }),
        )
        .fallback(|| async { Json(json!({"errcode": 0, "errmsg": "ok"})) })
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, rx)
}

/// Past months of `ok` attempts spread over the accounts, as a ledger holds
/// after a year of use (they do not count against this month's budget).
fn add_history(db: &Path, accounts: usize, rows: usize) {
    drop(quotawatch::store::SqliteStore::open(db).expect("create the ledger"));
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(400);
    for r in 0..rows {
        let at = long_ago + chrono::Duration::minutes(r as i64);
        tx.execute(
            "INSERT INTO attempts (appid, account, scope, started_at, finished_at, outcome, source, trigger, evidence, forced, owner)
             VALUES (?1, ?2, 'full', ?3, ?3, 'ok', 'bench', '45009', 1, 0, 'bench:1')",
            rusqlite::params![appid(r % accounts), format!("a{}", r % accounts), at.timestamp_millis()],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

async fn reaction(samples: usize, history: usize) {
    const WARMUP: usize = 20;
    let n = samples + WARMUP;
    let (base, mut arrivals) = fake_wechat().await;
    let dir = scratch("reaction");
    let body = format!(
        "[wechat]\napi_base = \"{base}\"\n[policy]\nreset_guard = \"0s\"\n{}",
        accounts(n, "")
    );
    let config = write_config(&dir, &body);
    if history > 0 {
        add_history(&dir.join("ledger.db"), n, history);
    }
    let daemon = start(&dir, &config);
    let url = format!("http://{}/api/v1/signals", daemon.addr());
    let client = reqwest::Client::new();
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let appid = appid(i);
        let sent = Instant::now();
        let post = client
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({"appid": appid, "reason": "45009"}))
            .send();
        let post = tokio::spawn(post);
        let arrived = loop {
            let (who, at) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .expect("the clear reached the fake within 10 s")
                .unwrap();
            if who == appid {
                break at;
            }
        };
        assert_eq!(post.await.unwrap().unwrap().status(), 202);
        if i >= WARMUP {
            took.push(arrived.duration_since(sent));
        }
    }
    took.sort();
    let mean = took.iter().sum::<Duration>() / took.len() as u32;
    println!(
        "reaction: {} samples (after {WARMUP} warm-up), {history} past attempts in the ledger, \
         signal sent -> clear at WeChat: p50 {} p90 {} p99 {} max {} mean {}",
        took.len(),
        ms(percentile(&took, 0.50)),
        ms(percentile(&took, 0.90)),
        ms(percentile(&took, 0.99)),
        ms(*took.last().unwrap()),
        ms(mean)
    );
    drop(daemon);
}

// ---- start-up -------------------------------------------------------------------------

fn startup(accounts_n: usize, runs: usize) {
    let dir = scratch("startup");
    let body = format!(
        "[wechat]\napi_base = \"http://127.0.0.1:9\"\n{}",
        accounts(accounts_n, "")
    );
    let config = write_config(&dir, &body);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let daemon = start(&dir, &config);
        times.push(daemon.ready_after);
    }
    let first = times[0];
    let mut warm = times[1..].to_vec();
    warm.sort();
    println!(
        "startup: {accounts_n} accounts, exec -> READY=1: first start (new ledger) {}; \
         {} restarts: min {} p50 {} max {}",
        ms(first),
        warm.len(),
        ms(warm[0]),
        ms(percentile(&warm, 0.5)),
        ms(*warm.last().unwrap())
    );
}

// ---- footprint ------------------------------------------------------------------------

fn proc_status(pid: u32) -> HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// utime + stime of the whole process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may contain spaces.
    let after = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

async fn idle(label: &str, dir: &Path, config: &Path, idle_secs: u64) {
    let daemon = start(dir, config);
    let pid = daemon.pid();
    // Let start-up work (budget gauges, first scheduled runs) settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_seconds(pid);
    let status = proc_status(pid);
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu = cpu_seconds(pid) - before;
    let after = proc_status(pid);
    println!(
        "footprint {label}: ready after {}; RSS idle {} (peak {}, threads {}); \
         RSS after {idle_secs} s idle {}; CPU {cpu:.2} s in {idle_secs} s = {:.1} s per idle hour",
        ms(daemon.ready_after),
        status["VmRSS"],
        after["VmHWM"],
        status["Threads"],
        after["VmRSS"],
        cpu / idle_secs as f64 * 3600.0
    );
}

async fn footprint(idle_secs: u64) {
    let (base, _arrivals) = fake_wechat().await;
    let dir = scratch("footprint-10");
    let body = format!("[wechat]\napi_base = \"{base}\"\n{}", accounts(10, ""));
    let config = write_config(&dir, &body);
    idle("10 accounts", &dir, &config, idle_secs).await;

    // 10,000 accounts and their schedules: every account polled by a
    // wechat_quota source (daily, so it stays idle here), a log_file source
    // on the default 5 s schedule, a prometheus source every minute.
    let dir = scratch("footprint-10000");
    let n = 10_000;
    let log = dir.join("app.log");
    std::fs::write(&log, "started\n").unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("\"a{i}\"")).collect();
    let body = format!(
        "[wechat]\napi_base = \"{base}\"\n\
         [sources.quota]\ntype = \"wechat_quota\"\naccounts = [{}]\n\
         cgi_paths = [\"/cgi-bin/message/custom/send\"]\nschedule = \"0 0 3 * * *\"\n\
         [sources.app_log]\ntype = \"log_file\"\npath = \"{}\"\n\
         pattern = 'errcode\"?\\s*[:=]\\s*45009'\naccount_pattern = '(wx[0-9a-f]{{16}})'\n\
         [sources.prom]\ntype = \"prometheus\"\nurl = \"{base}\"\n\
         query = 'sum by (appid) (increase(wechat_api_errors_total{{errcode=\"45009\"}}[5m]))'\n{}",
        names.join(", "),
        log.display(),
        accounts(n, "")
    );
    let config = write_config(&dir, &body);
    idle("10,000 accounts + schedules", &dir, &config, idle_secs).await;
}

// ---- large bodies ---------------------------------------------------------------------

async fn large_bodies(bodies: usize) {
    let (base, _arrivals) = fake_wechat().await;
    let dir = scratch("large-bodies");
    let body = format!(
        "[wechat]\napi_base = \"{base}\"\n[policy]\ndry_run = true\n\
         [sources.alerts]\ntype = \"alertmanager\"\n{}",
        accounts(10, "")
    );
    let config = write_config(&dir, &body);
    let daemon = start(&dir, &config);
    let pid = daemon.pid();
    let alert = format!(
        r#"{{"status":"firing","labels":{{"appid":"{}"}}}}"#,
        appid(0)
    );
    let payload = format!(
        r#"{{"version":"4","status":"firing","alerts":[{}]}}"#,
        vec![alert.as_str(); 15_000].join(",")
    );
    let http = reqwest::Client::new();
    let url = format!("http://{}/hooks/alerts", daemon.addr());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proc_status(pid);
    let mut statuses = HashMap::new();
    for _ in 0..bodies {
        let status = http
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(payload.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        *statuses.entry(status).or_insert(0) += 1;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = proc_status(pid);
    println!(
        "large bodies: {bodies} bodies of 15,000 alerts ({} bytes each), answers {statuses:?}; \
         RSS before {}, after {} (peak {})",
        payload.len(),
        before["VmRSS"],
        after["VmRSS"],
        after["VmHWM"]
    );
}

// ---- the status page ------------------------------------------------------------------

/// A ledger as a fleet has it mid-month: for this month, an ended episode
/// (with a refused decision and its clear) for every third account, an open
/// one for every 200th, 48006 for every 500th, a disable for every 1,000th;
/// for account `a0`, a day's episode, a failed and an ok clear every day of
/// the year before. Written in one transaction, straight into the tables.
fn status_history(db: &Path, accounts: usize) {
    drop(quotawatch::store::SqliteStore::open(db).expect("create the ledger"));
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    let now = chrono::Utc::now();
    let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
    let tz = chrono_tz::Asia::Shanghai;
    let month = quotawatch::calendar::month(tz, now);
    let episode = |appid: &str, name: &str, start, end: Option<_>, with_clear: bool| {
        let reset = quotawatch::calendar::day(tz, start).end;
        let mut attempt: Option<i64> = None;
        if with_clear {
            let at = end.unwrap_or(start);
            tx.execute(
                "INSERT INTO attempts (appid, account, scope, started_at, finished_at, outcome, errcode, errmsg, source, trigger, evidence, forced, owner)
                 VALUES (?1, ?2, 'full', ?3, ?3, 'failed', 40164, 'invalid ip 203.0.113.9, not in whitelist', 'bench', '45009', 1, 0, 'bench:1'),
                        (?1, ?2, 'full', ?4, ?4, 'ok', NULL, NULL, 'bench', '45009', 3, 0, 'bench:1')",
                rusqlite::params![appid, name, ms(at) - 60_000, ms(at)],
            )
            .unwrap();
            attempt = Some(tx.last_insert_rowid());
        }
        tx.execute(
            "INSERT INTO episodes (appid, account, started_at, resets_at, ended_at, attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![appid, name, ms(start), ms(reset), end.map(ms), attempt],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO episode_decisions (episode, reason, count, first_at, last_at) VALUES (?1, 'cooldown', 4, ?2, ?2)",
            rusqlite::params![tx.last_insert_rowid(), ms(start) + 60_000],
        )
        .unwrap();
    };
    let minutes = |m: i64| chrono::Duration::minutes(m);
    // Early this month, whatever day it is: start plus an hour.
    let earlier = (now - minutes(120)).max(month.start + minutes(60));
    for i in 0..accounts {
        let (id, name) = (appid(i), format!("a{i}"));
        if i % 3 == 0 {
            episode(&id, &name, earlier - minutes(45), Some(earlier), true);
        }
        if i % 200 == 7 {
            episode(&id, &name, now - minutes(5), None, false);
        }
        if i % 500 == 11 {
            tx.execute(
                "INSERT INTO account_flags (appid, exhausted_until) VALUES (?1, ?2)",
                rusqlite::params![id, ms(month.end)],
            )
            .unwrap();
        }
        if i % 1000 == 13 {
            tx.execute(
                "INSERT INTO account_flags (appid, disabled_fingerprint, disabled_reason, disabled_at) VALUES (?1, 'x', '40164', ?2)",
                rusqlite::params![id, ms(now)],
            )
            .unwrap();
        }
    }
    for d in 1..=365 {
        let day = quotawatch::calendar::day(tz, month.start - chrono::Duration::days(d));
        let start = day.start + minutes(600);
        episode(&appid(0), "a0", start, Some(start + minutes(30)), true);
    }
    tx.commit().unwrap();
}

/// `GET url` with the token `samples` times: the body's size, the median
/// and slowest times.
async fn serve_times(
    http: &reqwest::Client,
    url: &str,
    samples: usize,
) -> (usize, Duration, Duration) {
    let mut times = Vec::with_capacity(samples);
    let mut size = 0;
    for _ in 0..samples {
        let started = Instant::now();
        let resp = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        size = resp.bytes().await.unwrap().len();
        times.push(started.elapsed());
    }
    times.sort();
    (size, percentile(&times, 0.5), times[times.len() - 1])
}

async fn status_page(n: usize, loads: usize) {
    let (base, _arrivals) = fake_wechat().await;
    let dir = scratch("status-page");
    let config = write_config(
        &dir,
        &format!("[wechat]\napi_base = \"{base}\"\n{}", accounts(n, "")),
    );
    let seeding = Instant::now();
    status_history(&dir.join("ledger.db"), n);
    println!(
        "status page: {n} accounts, ledger seeded in {}",
        ms(seeding.elapsed())
    );
    let daemon = start(&dir, &config);
    let (pid, addr) = (daemon.pid(), daemon.addr());
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = proc_status(pid)["VmRSS"].clone();
    for (label, path) in [
        ("/ui/", "/ui/".to_string()),
        ("/ui/ page 50", "/ui/?page=50".to_string()),
        ("/ui/?state=locked", "/ui/?state=locked".to_string()),
        ("/ui/?q=a99", "/ui/?q=a99".to_string()),
        (
            "account page, a year of history",
            "/ui/accounts/a0".to_string(),
        ),
        (
            "/api/v1/accounts?limit=100",
            "/api/v1/accounts?limit=100".to_string(),
        ),
    ] {
        let (size, p50, max) = serve_times(&http, &url(&path), 20).await;
        println!(
            "status page: {label}: {size} bytes, p50 {}, max {} (20 loads)",
            ms(p50),
            ms(max)
        );
    }
    let rss = |what: &str| {
        let s = proc_status(pid);
        println!(
            "status page: RSS idle {idle}; after {what}: {} (peak {})",
            s["VmRSS"], s["VmHWM"]
        );
    };
    rss("the serve-time loads above");
    for i in 0..loads {
        let page = i % n.div_ceil(100) + 1;
        serve_times(&http, &url(&format!("/ui/?page={page}")), 1).await;
    }
    rss(&format!("{loads} more overview pages"));
    for i in 0..loads {
        serve_times(&http, &url(&format!("/ui/accounts/a{}", i * 3)), 1).await;
    }
    rss(&format!("{loads} account pages"));
    let (size, p50, max) = serve_times(&http, &url("/api/v1/accounts"), 5).await;
    println!(
        "status page: /api/v1/accounts unpaged: {size} bytes, p50 {}, max {} (5 loads)",
        ms(p50),
        ms(max)
    );
    rss("5 unpaged /api/v1/accounts");
}
