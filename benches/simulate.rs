//! `quotawatch simulate` as an instrument (SPEC section 8, issue 12):
//!
//!     cargo bench --bench simulate -- recovery [SEEDS [FIRST]] [pacing|rules] [caps=3,8] [kinds=K,...]
//!         per kind of generated month, the default policy's recovery over
//!         budget-binding months (`pacing` forces `policy.pacing = true`,
//!         `rules` forces it off: today's rules): SEEDS seeds from FIRST
//!         (default 10 from 1), signal delays 0, 2 and 5 minutes, monthly
//!         caps 3, 5, 8 and 10 (or those given), every kind (or those given:
//!         `kinds=storm,campaign`)
//!     cargo bench --bench simulate -- speed [PAIRS [DELAY]]
//!         a 30-day trace of 1-minute demand for PAIRS (account, API) pairs
//!         (default 1,000), every policy, timed, with a signal delay of DELAY
//!         (default 0s, e.g. 5m)

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use quotawatch::config::{self, Config};
use quotawatch::simulate::{self, synthetic};

/// A config of `accounts` accounts; `pacing` None keeps the default.
fn config(dir: &std::path::Path, accounts: usize, cap: u32, pacing: Option<bool>) -> Config {
    let pacing = pacing.map_or(String::new(), |p| format!("pacing = {p}\n"));
    let mut text = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n[policy]\nmonthly_cap = {cap}\n{pacing}",
        dir.join("unused.db").display()
    );
    for i in 0..accounts {
        text.push_str(&format!(
            "[accounts.a{i:04}]\nappid = \"wx{:016x}\"\nkind = \"mini_program\"\nsecret = \"s\"\n",
            0x1000 + i
        ));
    }
    let path = dir.join("simulate.toml");
    std::fs::write(&path, text).unwrap();
    config::load(&path).expect("bench config")
}

fn nov() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T00:00:00+08:00")
        .unwrap()
        .with_timezone(&Utc)
}

fn names(config: &Config) -> Vec<String> {
    config.accounts.values().map(|a| a.name.clone()).collect()
}

fn recovery(
    seeds: std::ops::RangeInclusive<u64>,
    pacing: Option<bool>,
    caps: &[u32],
    kinds: &[synthetic::Kind],
) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "kind       binding  mean_recovery  min_recovery  naive_mean  (seeds {seeds:?}, delays 0/2m/5m, caps {caps:?}, pacing {})",
        pacing.map_or("default".to_string(), |p| p.to_string())
    );
    let mut all = Vec::new();
    for &kind in kinds {
        let accounts = if kind == synthetic::Kind::Mix { 5 } else { 1 };
        let mut got = Vec::new();
        let mut naive = Vec::new();
        for &cap in caps {
            let config = config(dir.path(), accounts, cap, pacing);
            for seed in seeds.clone() {
                let trace = synthetic::generate(
                    kind,
                    seed,
                    &names(&config),
                    config.daemon.timezone,
                    nov(),
                    30,
                );
                for delay in [0, 2, 5] {
                    let delay = Duration::minutes(delay);
                    let report = rt
                        .block_on(simulate::backtest(&config, &trace, delay))
                        .unwrap();
                    let json = report.json();
                    let oracle = &json["total"]["oracle"];
                    // Budget-binding: the oracle would spend every clear it may.
                    let binding =
                        oracle["clears"].as_u64().unwrap() >= u64::from(cap) * accounts as u64;
                    if binding {
                        got.push(report.recovery(None, "policy"));
                        naive.push(report.recovery(None, "naive"));
                    }
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let min = got.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{:<10} {:>7}  {:>13.3}  {:>12.3}  {:>10.3}",
            kind.name(),
            got.len(),
            mean(&got),
            if got.is_empty() { f64::NAN } else { min },
            mean(&naive)
        );
        all.extend(got);
    }
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    println!("all        {:>7}  {:>13.3}", all.len(), mean);
}

fn speed(pairs: usize, delay: Duration) {
    let dir = tempfile::tempdir().unwrap();
    // multi_api gives every account three APIs.
    let accounts = pairs.div_ceil(3);
    let config = config(dir.path(), accounts, 8, None);
    let started = Instant::now();
    let trace = synthetic::generate(
        synthetic::Kind::MultiApi,
        1,
        &names(&config),
        config.daemon.timezone,
        nov(),
        30,
    );
    let generated = started.elapsed();
    let rows: usize = trace.demand.iter().map(Vec::len).sum();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let report = rt
        .block_on(simulate::backtest(&config, &trace, delay))
        .unwrap();
    let ran = started.elapsed();
    let part = Instant::now();
    let _ = simulate::world::replay(&trace, delay, &[]);
    let never = part.elapsed();
    let part = Instant::now();
    let _ = simulate::oracle::schedule(&trace, delay, |_| 8);
    let oracle = part.elapsed();
    println!(
        "speed: of which one world run (never) {:.2} s, the oracle's programme {:.2} s",
        never.as_secs_f64(),
        oracle.as_secs_f64()
    );
    println!(
        "speed: {} pairs ({accounts} accounts), 30 days, {rows} demand rows, signal delay {} s: generated in {:.2} s, all four policies in {:.2} s; total recovery {:.3}",
        trace.pairs.len(),
        delay.num_seconds(),
        generated.as_secs_f64(),
        ran.as_secs_f64(),
        report.recovery(None, "policy")
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("recovery") => {
            let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
            let first: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            let pacing = match () {
                _ if args.iter().any(|a| a == "pacing") => Some(true),
                _ if args.iter().any(|a| a == "rules") => Some(false),
                _ => None,
            };
            let caps: Vec<u32> = args
                .iter()
                .find_map(|a| a.strip_prefix("caps="))
                .map_or(vec![3, 5, 8, 10], |c| {
                    c.split(',').filter_map(|n| n.parse().ok()).collect()
                });
            let kinds: Vec<synthetic::Kind> = args
                .iter()
                .find_map(|a| a.strip_prefix("kinds="))
                .map_or(synthetic::KINDS.to_vec(), |k| {
                    k.split(',').filter_map(|n| n.parse().ok()).collect()
                });
            recovery(first..=first + n - 1, pacing, &caps, &kinds)
        }
        Some("speed") => {
            let pairs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
            let delay = args
                .get(2)
                .map(|s| humantime::parse_duration(s).expect("DELAY, e.g. 5m"))
                .map_or(Duration::zero(), |d| Duration::from_std(d).unwrap());
            speed(pairs, delay)
        }
        _ => {
            recovery(1..=3, None, &[3, 8], &synthetic::KINDS);
            speed(100, Duration::zero());
        }
    }
}
