//! `quotawatch simulate`: a backtest of the configured policy (SPEC section 8).
//!
//! A trace of demand ([`trace`]) is replayed in the world of section 8
//! ([`world`]) four times: with no clears (`never`), with what retry
//! wrappers do (`naive`), with the hindsight optimum ([`oracle`]), and with
//! the configured policy, run through the daemon's own decision step
//! ([`crate::decision`]) and clearer ([`crate::clearer`]) on a simulated
//! clock, with a throwaway in-memory ledger. There is no second copy of the
//! rules: a backtest cannot disagree with the daemon.
//!
//! The trace is a CSV file, a generated month ([`synthetic`]) or Prometheus's
//! range queries ([`prometheus`]); the report is the table, `--json`, and
//! optionally a self-contained HTML page ([`html`]).

pub mod html;
pub mod oracle;
pub mod prometheus;
pub mod synthetic;
pub mod trace;
pub mod world;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::clearer::{ClearRequest, Clearer, NoEvents};
use crate::clock::Clock;
use crate::config::Config;
use crate::decision::{Action, Decider, Finished};
use crate::event::ClearTarget;
use crate::metrics::Metrics;
use crate::settings::Account;
use crate::signal::Signal;
use crate::store::SqliteStore;
use crate::wechat::{ClearApi, WeChatError};
use trace::Trace;
use world::{lock, Attempt, Costs, Shared, WeChatSide, World};

/// `quotawatch simulate`'s options.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["trace", "synthetic", "prometheus"])))]
pub struct SimulateArgs {
    /// A CSV trace: time,account,cgi_path,calls,daily_limit (SPEC section 8)
    #[arg(long, value_name = "FILE")]
    pub trace: Option<std::path::PathBuf>,
    /// A generated month instead of a trace, for every account of the config:
    /// steady, storm, campaign, late, multi_api, mix or quiet
    #[arg(long, value_name = "KIND")]
    pub synthetic: Option<synthetic::Kind>,
    /// A trace from Prometheus's range queries at this URL (SPEC section 8), with --query
    #[arg(long, value_name = "URL", requires = "query")]
    pub prometheus: Option<String>,
    /// PromQL: calls attempted per minute per account and API, e.g.
    /// 'sum by (appid, cgi_path) (increase(wechat_api_requests_total[1m]))'
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub query: Option<String>,
    /// PromQL: the daily limit per account and API (the same labels as --query)
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub limit_query: Option<String>,
    /// The daily limit: N for every API, CGI_PATH=N for one (repeatable); where
    /// --limit-query has no sample yet, or without it
    #[arg(long, value_name = "[CGI_PATH=]N", requires = "prometheus", value_parser = prometheus::parse_limit)]
    pub daily_limit: Vec<prometheus::Limit>,
    /// The label naming the account (a config name or appid) in the series
    #[arg(long, value_name = "LABEL", default_value = "appid")]
    pub account_label: String,
    /// The label naming the API (its cgi_path) in the series
    #[arg(long, value_name = "LABEL", default_value = "cgi_path")]
    pub api_label: String,
    /// The generator's seed
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The first day, YYYY-MM-DD (--prometheus also takes RFC 3339; --synthetic's
    /// default: the 1st of this month)
    #[arg(long, value_name = "TIME", value_parser = prometheus::parse_moment)]
    pub from: Option<prometheus::Moment>,
    /// With --prometheus, the end: a day is included to its 24:00, an RFC 3339
    /// time is the end of the last minute (default: --days after --from)
    #[arg(long, value_name = "TIME", value_parser = prometheus::parse_moment, requires = "prometheus")]
    pub to: Option<prometheus::Moment>,
    /// Days the generated (or fetched, without --to) trace covers
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Write the generated or fetched trace to FILE as CSV (to replay it with --trace)
    #[arg(long, value_name = "FILE")]
    pub write_trace: Option<std::path::PathBuf>,
    /// Delay from a failing minute's end to its signal, e.g. 2m (an alert's for: and group_wait)
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub signal_delay: std::time::Duration,
    /// Override a [policy] key for this run, for every account (repeatable), e.g. cooldown=30m
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run once per value and print one row each, e.g. monthly_cap=4,6,8
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub sweep: Option<String>,
    /// Print JSON (the figures and every clear of every policy) instead of the table
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report (per account a timeline, and the table)
    #[arg(long, value_name = "FILE", conflicts_with = "sweep")]
    pub html: Option<std::path::PathBuf>,
}

/// `KEY=VALUE` split at the first `=`.
fn key_value(text: &str, flag: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = text
        .split_once('=')
        .with_context(|| format!("{flag} {text}: expected KEY=VALUE"))?;
    anyhow::ensure!(
        !k.trim().is_empty() && !v.trim().is_empty(),
        "{flag} {text}: expected KEY=VALUE"
    );
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// The config with `set` applied to every account's policy, live (a
/// backtest asks what the policy would do if it were on: `dry_run` is
/// ignored).
fn live_config(config: &Config, set: &[(String, String)]) -> anyhow::Result<Config> {
    let mut config = match set.is_empty() {
        true => config.clone(),
        false => crate::config::load_with_policy(&config.path, set).map_err(|e| {
            anyhow::anyhow!("{}", e.to_string().replace("&toml::value::Value", "--set"))
        })?,
    };
    config.accounts.edit_policies(|p| p.dry_run = false);
    Ok(config)
}

/// Runs `quotawatch simulate`.
pub async fn command(config: &Config, args: &SimulateArgs) -> anyhow::Result<i32> {
    let set: Vec<(String, String)> = args
        .set
        .iter()
        .map(|s| key_value(s, "--set"))
        .collect::<anyhow::Result<_>>()?;
    let base = config;
    let config = &live_config(base, &set)?;
    let trace = input_trace(config, args).await?;
    if let Some(path) = &args.write_trace {
        std::fs::write(path, trace.to_csv())
            .with_context(|| format!("cannot write the trace to {}", path.display()))?;
    }
    let delay = Duration::from_std(args.signal_delay).context("--signal-delay is too long")?;
    let demand_rows: usize = trace.demand.iter().map(Vec::len).sum();
    eprintln!(
        "simulate: {} accounts, {} APIs, {} days, {demand_rows} demand rows",
        trace.accounts().len(),
        trace.pairs.len(),
        trace.minutes / 1440
    );
    if let Some(sweep_arg) = &args.sweep {
        print!(
            "{}",
            sweep(base, &set, sweep_arg, &trace, delay, args.json).await?
        );
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let report = backtest(config, &trace, delay).await?;
    eprintln!(
        "simulate: four policies in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.html {
        std::fs::write(path, html::report(&report, &trace, delay))
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{}", report.table());
    }
    Ok(0)
}

/// The demand to replay: `--trace FILE`, `--synthetic KIND` or
/// `--prometheus URL`.
async fn input_trace(config: &Config, args: &SimulateArgs) -> anyhow::Result<Trace> {
    match (&args.trace, args.synthetic) {
        (Some(path), _) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open the trace {}", path.display()))?;
            Ok(Trace::read(
                std::io::BufReader::new(file),
                &path.display().to_string(),
                config,
            )?)
        }
        (None, Some(kind)) => synthetic_trace(config, args, kind),
        (None, None) => match &args.prometheus {
            Some(url) => {
                let source = prometheus::Source::from_args(args, url, config.daemon.timezone)?;
                Ok(prometheus::fetch(&source, config).await?)
            }
            None => anyhow::bail!("give --trace FILE, --synthetic KIND or --prometheus URL"),
        },
    }
}

/// `--synthetic KIND [--seed N] [--from DAY] [--days N]` over the config's
/// accounts.
fn synthetic_trace(
    config: &Config,
    args: &SimulateArgs,
    kind: synthetic::Kind,
) -> anyhow::Result<Trace> {
    let tz = config.daemon.timezone;
    let first = match args.from {
        Some(prometheus::Moment::Day(date)) => {
            prometheus::day_start(tz, date).context("--from is not a day in daemon.timezone")?
        }
        Some(prometheus::Moment::Time(_)) => {
            anyhow::bail!("--from with --synthetic takes a day, YYYY-MM-DD")
        }
        None => crate::calendar::month(tz, Utc::now()).start,
    };
    anyhow::ensure!(args.days >= 1, "--days must be at least 1");
    let names: Vec<String> = config.accounts.values().map(|a| a.name.clone()).collect();
    anyhow::ensure!(
        !names.is_empty(),
        "the config has no accounts to generate demand for"
    );
    Ok(synthetic::generate(
        kind, args.seed, &names, tz, first, args.days,
    ))
}

/// `--sweep KEY=V1,V2,...`: the backtest once per value, on top of `set`.
async fn sweep(
    base: &Config,
    set: &[(String, String)],
    sweep: &str,
    trace: &Trace,
    delay: Duration,
    json: bool,
) -> anyhow::Result<String> {
    let (key, values) = key_value(sweep, "--sweep")?;
    let mut rows = Vec::new();
    for value in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let mut with = set.to_vec();
        with.push((key.clone(), value.to_string()));
        let config = live_config(base, &with)?;
        let started = std::time::Instant::now();
        let report = backtest(&config, trace, delay).await?;
        eprintln!(
            "simulate: {key} = {value} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        rows.push((value.to_string(), report));
    }
    sweep_output(&key, &rows, json)
}

/// One row per swept value: the policy's totals beside never's and the
/// oracle's (which moves with `monthly_cap`).
fn sweep_output(key: &str, rows: &[(String, Report)], json: bool) -> anyhow::Result<String> {
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(v, r)| serde_json::json!({ "value": v, "total": r.json()["total"] }))
            .collect();
        let out = serde_json::json!({ "sweep": key, "rows": rows });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&out)?));
    }
    let mut out = format!(
        "{:<16} {:>7} {:>14} {:>13} {:>9} {:>13} {:>13}\n",
        key,
        "clears",
        "locked_minutes",
        "failed_calls",
        "recovery",
        "never_locked",
        "oracle_locked"
    );
    for (value, r) in rows {
        let (locked, failed, clears) = r.figures("policy", None);
        out.push_str(&format!(
            "{:<16} {:>7} {:>14} {:>13} {:>9.3} {:>13} {:>13}\n",
            value,
            clears,
            locked,
            failed,
            r.recovery(None, "policy"),
            r.figures("never", None).0,
            r.figures("oracle", None).0
        ));
    }
    Ok(out)
}

/// The reference policies and the configured one, in table order.
pub const POLICIES: [&str; 4] = ["never", "naive", "oracle", "policy"];

/// One policy's run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub policy: &'static str,
    pub costs: Vec<Costs>,
    pub clears: Vec<Attempt>,
}

/// Everything `simulate` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub signal_delay_seconds: i64,
    pub runs: Vec<Run>,
}

/// Runs every policy over `trace`.
pub async fn backtest(config: &Config, trace: &Trace, delay: Duration) -> anyhow::Result<Report> {
    let cap = |name: &str| config.account(name).map_or(0, |a| a.policy.monthly_cap);
    // The reference runs are independent: never and naive run beside the
    // oracle's programme.
    let ((never, naive), oracle) = std::thread::scope(|scope| {
        let references = scope.spawn(|| (world::replay(trace, delay, &[]), naive(trace, delay)));
        let schedule = oracle::schedule(trace, delay, cap);
        let oracle = world::replay(trace, delay, &schedule.clears);
        (
            references.join().expect("the reference runs panicked"),
            oracle,
        )
    });
    let policy = policy(config, trace, delay).await?;
    let runs = vec![
        Run {
            policy: "never",
            costs: never.0,
            clears: never.1,
        },
        Run {
            policy: "naive",
            costs: naive.0,
            clears: naive.1,
        },
        Run {
            policy: "oracle",
            costs: oracle.0,
            clears: oracle.1,
        },
        Run {
            policy: "policy",
            costs: policy.0,
            clears: policy.1,
        },
    ];
    Ok(Report {
        from: trace.start,
        to: trace.end(),
        signal_delay_seconds: delay.num_seconds(),
        runs,
    })
}

/// `naive`: a full clear on a signal whenever 60 s have passed since the
/// account's previous attempt, until WeChat answers 48006, then nothing more
/// that month.
fn naive(trace: &Trace, delay: Duration) -> (Vec<Costs>, Vec<Attempt>) {
    let side = WeChatSide::new(trace.timezone);
    let mut world = World::new(trace, delay, side.clone());
    let mut last: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut stopped: HashMap<String, String> = HashMap::new();
    while let Some(batch) = world.next_batch() {
        for s in batch {
            let month = crate::calendar::month_label(trace.timezone, s.at);
            if stopped.get(&*s.account) == Some(&month) {
                continue;
            }
            if last
                .get(&*s.account)
                .is_some_and(|t| s.at - *t < Duration::seconds(60))
            {
                continue;
            }
            last.insert(s.account.to_string(), s.at);
            let answer = lock(&side).clear(&s.account, &ClearTarget::Full, s.at);
            if answer.is_err() {
                stopped.insert(s.account.to_string(), month);
            }
        }
    }
    world.finish()
}

/// WeChat as the simulated world answers it.
struct SimWeChat {
    side: Shared,
    clock: Clock,
}

#[async_trait::async_trait]
impl ClearApi for SimWeChat {
    async fn clear(&self, account: &Account, target: &ClearTarget) -> Result<(), WeChatError> {
        let at = self.clock.now();
        lock(&self.side)
            .clear(&account.name, target, at)
            .map_err(|errcode| WeChatError::Api {
                errcode,
                errmsg: "reach max api daily quota limit (simulated)".into(),
            })
    }
}

/// The configured policy: signals go through the daemon's decision step and
/// clearer, on a clock set to each signal's time, with a ledger in memory.
async fn policy(
    config: &Config,
    trace: &Trace,
    delay: Duration,
) -> anyhow::Result<(Vec<Costs>, Vec<Attempt>)> {
    let side = WeChatSide::new(trace.timezone);
    let clock = Clock::manual(trace.start);
    let clearer = Clearer {
        store: Arc::new(SqliteStore::open_in_memory().context("the simulation's ledger")?),
        wechat: Arc::new(SimWeChat {
            side: side.clone(),
            clock: clock.clone(),
        }),
        metrics: Arc::new(Metrics::new()),
        events: Arc::new(NoEvents),
        timezone: config.daemon.timezone,
        outcome_retry: crate::clearer::OUTCOME_RETRY,
        health: Default::default(),
        clock: clock.clone(),
    };
    let tz = config.daemon.timezone;
    let mut decider = Decider::new(tz);
    let mut world = World::new(trace, delay, side.clone());
    while let Some(batch) = world.next_batch() {
        for s in batch {
            clock.set(s.at);
            let account = config
                .account(&s.account)
                .with_context(|| format!("account `{}` left the config", s.account))?
                .clone();
            let signal = Signal {
                account: account.name.clone(),
                source: "simulate".into(),
                reason: "45009".into(),
                count: u32::try_from(s.count).unwrap_or(u32::MAX),
                cgi_path: Some(s.cgi_path.to_string()),
                key: None,
                received_at: s.at,
            };
            let mut actions = decider.signal(&account.appid, &account.policy, &signal, s.at);
            while let Some(action) = actions.pop() {
                let Action::Decide(ask) = action else {
                    continue;
                };
                let report = clearer
                    .handle(&account, ClearRequest::from(ask))
                    .await
                    .context("the simulation's ledger failed")?;
                let done = Finished::from(report);
                actions.extend(decider.finished(&account.appid, &account.policy, done, s.at));
            }
            // As the daemon does: the API's daily limit is read when due,
            // and the answer comes after the signal's decision.
            let has_token = account.token_from().is_some();
            let (appid, policy) = (&account.appid, &account.policy);
            if decider.quota_due(appid, policy, has_token, &s.cgi_path, s.at) {
                decider.quota(appid, s.at, s.daily_limit);
            }
        }
    }
    Ok(world.finish())
}

/// Recovery = (never − policy) / (never − oracle) on locked minutes; 1 when
/// never = oracle.
pub fn recovery(never: u64, policy: u64, oracle: u64) -> f64 {
    if never == oracle {
        return 1.0;
    }
    (never as f64 - policy as f64) / (never as f64 - oracle as f64)
}

impl Report {
    fn run(&self, policy: &str) -> &Run {
        self.runs
            .iter()
            .find(|r| r.policy == policy)
            .expect("every policy runs")
    }

    /// The trace's accounts, in order.
    fn accounts(&self) -> Vec<String> {
        let never = &self.run("never").costs;
        never.iter().map(|c| c.account.clone()).collect()
    }

    /// (locked minutes, failed calls, clears) of `policy`, for one account or
    /// (None) in total.
    fn figures(&self, policy: &str, account: Option<&str>) -> (u64, u64, u32) {
        self.run(policy)
            .costs
            .iter()
            .filter(|c| account.is_none_or(|a| c.account == a))
            .fold((0, 0, 0), |(l, f, n), c| {
                (
                    l + c.locked_minutes,
                    f + c.failed_calls,
                    n + c.clears + c.api_clears,
                )
            })
    }

    /// The configured policy's recovery, for one account or in total.
    pub fn recovery(&self, account: Option<&str>, policy: &str) -> f64 {
        let locked = |p| self.figures(p, account).0;
        recovery(locked("never"), locked(policy), locked("oracle"))
    }

    /// The table: per account and in total, each policy's figures.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<16} {:<7} {:>7} {:>14} {:>13} {:>9}\n",
            "account", "policy", "clears", "locked_minutes", "failed_calls", "recovery"
        );
        let accounts = self.accounts();
        let mut rows: Vec<Option<&str>> = accounts.iter().map(|a| Some(a.as_str())).collect();
        rows.push(None);
        for account in rows {
            for policy in POLICIES {
                let (locked, failed, clears) = self.figures(policy, account);
                out.push_str(&format!(
                    "{:<16} {:<7} {:>7} {:>14} {:>13} {:>9.3}\n",
                    account.unwrap_or("TOTAL"),
                    policy,
                    clears,
                    locked,
                    failed,
                    self.recovery(account, policy)
                ));
            }
        }
        out
    }

    /// `--json`: the table's figures and every clear attempt of every policy.
    pub fn json(&self) -> serde_json::Value {
        let accounts = self.accounts();
        let figures = |account: Option<&str>| {
            let mut m = serde_json::Map::new();
            for policy in POLICIES {
                let (locked, failed, clears) = self.figures(policy, account);
                m.insert(
                    policy.to_string(),
                    serde_json::json!({
                        "clears": clears,
                        "locked_minutes": locked,
                        "failed_calls": failed,
                        "recovery": self.recovery(account, policy),
                    }),
                );
            }
            serde_json::Value::Object(m)
        };
        let per_account: Vec<serde_json::Value> = accounts
            .iter()
            .map(|a| serde_json::json!({ "account": a, "policies": figures(Some(a)) }))
            .collect();
        let clears: serde_json::Map<String, serde_json::Value> = self
            .runs
            .iter()
            .map(|r| (r.policy.to_string(), serde_json::json!(r.clears)))
            .collect();
        serde_json::json!({
            "from": self.from,
            "to": self.to,
            "signal_delay_seconds": self.signal_delay_seconds,
            "accounts": per_account,
            "total": figures(None),
            "clears": clears,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policy: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        let text = format!(
            "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\n[policy]\n{policy}\n\
             [accounts.shop]\nappid = \"wx448f04719cd48f69\"\nkind = \"mini_program\"\nsecret = \"s\"\n\
             [accounts.blog]\nappid = \"wx448f04719cd48f70\"\nkind = \"mini_program\"\nsecret = \"s\"\n",
            dir.path().join("l.db").display()
        );
        std::fs::write(&path, text).unwrap();
        let config = crate::config::load(&path).unwrap();
        (dir, config)
    }

    fn nov() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// SPEC section 8: every figure is reproducible from the trace and the
    /// clears listed. Each policy's clears, replayed in the world, give its
    /// figures exactly; the oracle is at least as good as every policy that
    /// keeps to the same cap, and `never` spends nothing.
    #[tokio::test]
    async fn the_clears_listed_replay_to_the_figures_printed() {
        let (_dir, config) = config("monthly_cap = 4\ncooldown = \"30m\"");
        let names: Vec<String> = config.accounts.values().map(|a| a.name.clone()).collect();
        for kind in [
            synthetic::Kind::Steady,
            synthetic::Kind::Storm,
            synthetic::Kind::MultiApi,
        ] {
            for delay in [0, 90] {
                let trace = synthetic::generate(kind, 5, &names, config.daemon.timezone, nov(), 10);
                let delay = Duration::seconds(delay);
                let report = backtest(&config, &trace, delay).await.unwrap();
                for run in &report.runs {
                    let (costs, attempts) = world::replay(&trace, delay, &run.clears);
                    assert_eq!(costs, run.costs, "{} {}: replay", kind.name(), run.policy);
                    assert_eq!(
                        attempts,
                        run.clears,
                        "{} {}: the same answers",
                        kind.name(),
                        run.policy
                    );
                }
                let locked = |p| report.figures(p, None).0;
                assert_eq!(report.figures("never", None).2, 0);
                assert!(locked("oracle") <= locked("policy"), "{}", kind.name());
                assert!(locked("policy") <= locked("never"), "{}", kind.name());
                for account in &names {
                    let clears = report
                        .run("policy")
                        .clears
                        .iter()
                        .filter(|c| c.account == *account && c.errcode.is_none())
                        .count();
                    assert!(clears <= 4, "{account}: the policy keeps to its cap");
                }
            }
        }
    }

    #[test]
    fn recovery_is_one_when_nothing_could_be_won_and_is_not_clipped() {
        let cases = [
            // (never, policy, oracle, recovery)
            (100, 100, 40, 0.0),
            (100, 40, 40, 1.0),
            (100, 70, 40, 0.5),
            (100, 30, 40, 70.0 / 60.0),
            (50, 50, 50, 1.0),
        ];
        for (never, policy, oracle, want) in cases {
            assert!(
                (recovery(never, policy, oracle) - want).abs() < 1e-9,
                "{never} {policy} {oracle}"
            );
        }
    }
}
