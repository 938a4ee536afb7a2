//! `quotawatch simulate` as an instrument (SPEC section 8, issue 12):
//!
//!     cargo bench --bench simulate -- recovery [SEEDS [FIRST]] [pacing|rules] [caps=3,8] [kinds=K,...]
//!         per kind of generated month, the default policy's recovery over
//!         budget-binding months (`pacing` forces `policy.pacing = true`,
//!         `rules` forces it off: today's rules): SEEDS seeds from FIRST
//!         (default 10 from 1), signal delays 0, 2 and 5 minutes, monthly
//!         caps 3, 5, 8 and 10 (or those given), every kind (or those given:
//!         `kinds=storm,campaign`)
//!     cargo bench --bench simulate -- targets [SEEDS [FIRST]] [caps=3,5,8,10] [kinds=K,...] [quota=off]
//!         issue 20's targets: the same budget-binding months (delays 0, 2
//!         and 5 minutes) under the default (pacing) and today's rules, per
//!         cap and kind the mean and worst month of each, and the worst
//!         month's shortfall of pacing below the rules; `quota=off` gives
//!         the accounts no token (component accounts), so pacing never
//!         reads the trace's daily_limit
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
    config_of(dir, accounts, cap, pacing, "mini_program")
}

/// [`config`] with accounts of `kind` (a `component` has no token to read
/// its quota with).
fn config_of(
    dir: &std::path::Path,
    accounts: usize,
    cap: u32,
    pacing: Option<bool>,
    kind: &str,
) -> Config {
    let pacing = pacing.map_or(String::new(), |p| format!("pacing = {p}\n"));
    let mut text = format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n[policy]\nmonthly_cap = {cap}\n{pacing}",
        dir.join("unused.db").display()
    );
    for i in 0..accounts {
        text.push_str(&format!(
            "[accounts.a{i:04}]\nappid = \"wx{:016x}\"\nkind = \"{kind}\"\nsecret = \"s\"\n",
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

/// One budget-binding month under both policies.
struct Month {
    kind: synthetic::Kind,
    cap: u32,
    seed: u64,
    delay: i64,
    pacing: f64,
    rules: f64,
}

fn targets(
    seeds: std::ops::RangeInclusive<u64>,
    caps: &[u32],
    kinds: &[synthetic::Kind],
    account_kind: &str,
    span: u32,
) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut months = Vec::new();
    for &kind in kinds {
        let accounts = if kind == synthetic::Kind::Mix { 5 } else { 1 };
        for &cap in caps {
            let paced = config_of(dir.path(), accounts, cap, Some(true), account_kind);
            let rules = config_of(dir.path(), accounts, cap, Some(false), account_kind);
            for seed in seeds.clone() {
                // Two months: October and November.
                let (from, days) = match span {
                    2 => (nov() - Duration::days(31), 61),
                    _ => (nov(), 30),
                };
                let trace = synthetic::generate(
                    kind,
                    seed,
                    &names(&paced),
                    paced.daemon.timezone,
                    from,
                    days,
                );
                for delay in [0, 2, 5] {
                    let d = Duration::minutes(delay);
                    let run = |config: &Config| {
                        rt.block_on(simulate::backtest(config, &trace, d)).unwrap()
                    };
                    let p = run(&paced);
                    let oracle = &p.json()["total"]["oracle"];
                    let budget = u64::from(cap * span) * accounts as u64;
                    if oracle["clears"].as_u64().unwrap() < budget {
                        continue;
                    }
                    let r = run(&rules);
                    months.push(Month {
                        kind,
                        cap,
                        seed,
                        delay,
                        pacing: p.recovery(None, "policy"),
                        rules: r.recovery(None, "policy"),
                    });
                }
            }
        }
    }
    let mean = |v: &[&Month], f: fn(&Month) -> f64| {
        v.iter().map(|m| f(m)).sum::<f64>() / v.len().max(1) as f64
    };
    let worst = |v: &[&Month]| {
        let below = v.iter().filter(|m| m.pacing < m.rules - 0.10).count();
        let worst = v
            .iter()
            .min_by(|a, b| (a.pacing - a.rules).total_cmp(&(b.pacing - b.rules)))
            .map_or("-".to_string(), |m| {
                format!(
                    "{:+.3} (seed {} delay {}m: {:.3} vs {:.3})",
                    m.pacing - m.rules,
                    m.seed,
                    m.delay,
                    m.pacing,
                    m.rules
                )
            });
        format!("{worst}; {below} more than 0.10 below")
    };
    println!(
        "targets: seeds {seeds:?}, delays 0/2m/5m, accounts of kind {account_kind}; each cell: pacing mean (min) / rules mean; worst month of pacing against the rules"
    );
    for &cap in caps {
        let of_cap: Vec<&Month> = months.iter().filter(|m| m.cap == cap).collect();
        println!(
            "cap {cap:>2}: {} months, pacing {:.3}, rules {:.3}, worst {}",
            of_cap.len(),
            mean(&of_cap, |m| m.pacing),
            mean(&of_cap, |m| m.rules),
            worst(&of_cap)
        );
        for &kind in kinds {
            let v: Vec<&Month> = of_cap.iter().copied().filter(|m| m.kind == kind).collect();
            if v.is_empty() {
                continue;
            }
            let min = v.iter().map(|m| m.pacing).fold(f64::INFINITY, f64::min);
            println!(
                "  {:<10} {:>3}  {:.3} ({:.3}) / {:.3}  worst {}",
                kind.name(),
                v.len(),
                mean(&v, |m| m.pacing),
                min,
                mean(&v, |m| m.rules),
                worst(&v)
            );
        }
    }
    let all: Vec<&Month> = months.iter().collect();
    println!(
        "all: {} months, pacing {:.3}, rules {:.3}, worst {}",
        all.len(),
        mean(&all, |m| m.pacing),
        mean(&all, |m| m.rules),
        worst(&all)
    );
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

/// `caps=3,8`, else 3, 5, 8 and 10.
fn caps(args: &[String]) -> Vec<u32> {
    args.iter()
        .find_map(|a| a.strip_prefix("caps="))
        .map_or(vec![3, 5, 8, 10], |c| {
            c.split(',').filter_map(|n| n.parse().ok()).collect()
        })
}

/// `kinds=storm,campaign`, else every kind.
fn kinds(args: &[String]) -> Vec<synthetic::Kind> {
    args.iter()
        .find_map(|a| a.strip_prefix("kinds="))
        .map_or(synthetic::KINDS.to_vec(), |k| {
            k.split(',').filter_map(|n| n.parse().ok()).collect()
        })
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
            recovery(first..=first + n - 1, pacing, &caps(&args), &kinds(&args))
        }
        Some("targets") => {
            let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
            let first: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            let (caps, kinds) = (caps(&args), kinds(&args));
            let kind = match args.iter().any(|a| a == "quota=off") {
                true => "component",
                false => "mini_program",
            };
            let months = if args.iter().any(|a| a == "months=2") {
                2
            } else {
                1
            };
            targets(first..=first + n - 1, &caps, &kinds, kind, months)
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
