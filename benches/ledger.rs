//! The ledger under a burst: decisions per second across 1,000 accounts, on a
//! real SQLite file (WAL, `synchronous = FULL`) on disk under
//! `target/bench-ledger/`, not tmpfs.
//!
//! - `reserve/skip`: one decision that refuses (the policy runs inside the
//!   store's exclusive transaction, nothing is written): the cost of asking.
//! - `reserve/skip, 96k history rows`: the same with a year of history for
//!   the 1,000 accounts already in the ledger (8 clears a month each).
//! - `reserve+finish/clear`: a decision that clears: the intent row and its
//!   outcome, two durable commits.
//! - `clearer/burst`: 1,000 `Clearer::handle` calls at once, one per
//!   (dry-run) account, on a multi-threaded runtime: what the daemon does
//!   when an alert storm names every account.
//!
//! `cargo bench --bench ledger`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quotawatch::clearer::{self, ClearRequest, Clearer, NoEvents};
use quotawatch::config::{self, Config};
use quotawatch::event::{ClearTarget, Outcome};
use quotawatch::metrics::Metrics;
use quotawatch::policy::{self, Decision};
use quotawatch::settings::Account;
use quotawatch::store::{Intent, Reservation, SqliteStore, Store};
use quotawatch::wechat::WeChat;

const ACCOUNTS: usize = 1000;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-ledger")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(dir: &Path, dry_run: bool) -> Config {
    let mut text = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n\
         [wechat]\napi_base = \"http://127.0.0.1:9\"\n\
         [policy]\ndry_run = {dry_run}\nreset_guard = \"0s\"\n",
        dir.join("ledger.db").display()
    );
    for i in 0..ACCOUNTS {
        text.push_str(&format!(
            "[accounts.a{i}]\nappid = \"wx{:016x}\"\nkind = \"mini_program\"\nsecret = \"s{i}\"\n",
            0x1ed9_e000_0000_0000u64 + i as u64
        ));
    }
    let path = dir.join("quotawatch.toml");
    std::fs::write(&path, text).unwrap();
    config::load(&path).expect("bench config")
}

fn intent() -> Intent {
    Intent {
        source: "bench".into(),
        trigger: "45009".into(),
        evidence: 1,
        window: Duration::from_secs(300),
        ..Intent::default()
    }
}

/// The policy exactly as the clearer runs it, for a signal with evidence.
fn decide(
    account: &Account,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> impl FnMut(&policy::Snapshot) -> policy::Verdict + '_ {
    move |snapshot| {
        let input = policy::Input {
            settings: &account.policy,
            snapshot,
            evidence: 1,
            manual: false,
            force: false,
            dry_run: false,
            api: false,
            pacing: None,
            timezone: tz,
            now,
        };
        policy::verdict(&input, ClearTarget::Full)
    }
}

/// A year of history: 8 clears a month for every account, all in the past.
fn add_history(db: &Path, accounts: &[Arc<Account>]) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    let start = Utc::now() - chrono::Duration::days(400);
    let mut n = 0;
    for month in 0..12 {
        for a in accounts {
            for k in 0..8 {
                let t = start + chrono::Duration::days(month * 30) + chrono::Duration::hours(k);
                conn.execute(
                    "INSERT INTO attempts (appid, account, scope, started_at, finished_at, outcome, source, trigger, evidence, forced, owner)
                     VALUES (?1, ?2, 'full', ?3, ?3, 'ok', 'bench', '45009', 1, 0, 'bench:1')",
                    rusqlite::params![a.appid, a.name, t.timestamp_millis()],
                )
                .unwrap();
                n += 1;
            }
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    n
}

fn reserve_skip(c: &mut Criterion, label: &str, history: bool) {
    let dir = scratch(&label.replace([' ', ','], "-"));
    let config = load(&dir, true);
    let store = SqliteStore::open(&dir.join("ledger.db")).unwrap();
    let accounts: Vec<Arc<Account>> = config.accounts.values().cloned().collect();
    if history {
        add_history(&dir.join("ledger.db"), &accounts);
    }
    let tz = config.daemon.timezone;
    let intent = intent();
    let mut group = c.benchmark_group("reserve");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let mut i = 0;
    group.bench_function(label, |b| {
        b.iter(|| {
            let account = &accounts[i % ACCOUNTS];
            i += 1;
            let now = Utc::now();
            let key = clearer::key(account, tz);
            let (_, r) = store
                .reserve(&key, &intent, now, &mut decide(account, tz, now))
                .unwrap();
            assert!(matches!(r, Reservation::Skip { .. }));
        })
    });
    group.finish();
}

fn reserve_clear(c: &mut Criterion) {
    let dir = scratch("clear");
    let config = load(&dir, false);
    let store = SqliteStore::open(&dir.join("ledger.db")).unwrap();
    let accounts: Vec<Arc<Account>> = config.accounts.values().cloned().collect();
    let tz = config.daemon.timezone;
    let intent = intent();
    let mut group = c.benchmark_group("reserve+finish");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let mut i = 0;
    group.bench_function("clear", |b| {
        b.iter(|| {
            let account = &accounts[i % ACCOUNTS];
            i += 1;
            let now = Utc::now();
            let key = clearer::key(account, tz);
            // Every decision clears (the policy would stop at the cap): this
            // measures the write path, intent then outcome.
            let (_, r) = store
                .reserve(&key, &intent, now, &mut |_| {
                    policy::Verdict::Clear(ClearTarget::Full)
                })
                .unwrap();
            let Reservation::Clear { id, .. } = r else {
                panic!("{r:?}")
            };
            store.finish(id, &Outcome::Ok, now).unwrap();
        })
    });
    group.finish();
}

fn clearer_burst(c: &mut Criterion) {
    let dir = scratch("burst");
    let config = load(&dir, true);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clearer = Arc::new(Clearer {
        store: Arc::new(SqliteStore::open(&dir.join("ledger.db")).unwrap()),
        wechat: Arc::new(WeChat::new(&config.wechat).unwrap()),
        metrics: Arc::new(Metrics::new()),
        events: Arc::new(NoEvents),
        timezone: config.daemon.timezone,
        outcome_retry: quotawatch::clearer::OUTCOME_RETRY,
        health: Default::default(),
        clock: Default::default(),
    });
    let accounts: Vec<Arc<Account>> = config.accounts.values().cloned().collect();
    let mut group = c.benchmark_group("clearer");
    group.throughput(Throughput::Elements(ACCOUNTS as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("burst of 1000 accounts", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = accounts
                        .iter()
                        .map(|a| {
                            let (clearer, account) = (clearer.clone(), a.clone());
                            tokio::spawn(async move {
                                let request = ClearRequest {
                                    source: "bench".into(),
                                    trigger: "45009".into(),
                                    evidence: 1,
                                    cgi_path: None,
                                    manual: false,
                                    force: false,
                                    dry_run: false,
                                    keys: Vec::new(),
                                    pacing: None,
                                };
                                clearer.handle(&account, request).await.unwrap()
                            })
                        })
                        .collect();
                    for t in tasks {
                        let report = t.await.unwrap();
                        assert!(matches!(report.decision, Decision::Skip(_)));
                    }
                });
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    reserve_skip(c, "skip", false);
    reserve_skip(c, "skip, 96k history rows", true);
    reserve_clear(c);
    clearer_burst(c);
}

criterion_group!(ledger, benches);
criterion_main!(ledger);
