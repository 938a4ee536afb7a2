//! The command line: clap definitions (also the source of the man page and
//! shell completions) and the commands other than `run`.
//!
//! Commands read the config and the ledger directly; `clear` goes through the
//! same [`Clearer`] as the daemon, so the ledger's lock keeps a manual clear
//! and the daemon from spending the same budget twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::calendar;
use crate::clearer::{self, ClearRequest, Clearer, EventSink};
use crate::config::{self, Account, Config, StateLocation};
use crate::metrics::Metrics;
use crate::policy::{self, Decision};
use crate::store::{HistoryFilter, PostgresStore, SqliteStore, Store};
use crate::wechat::WeChat;

#[derive(Debug, Parser)]
#[command(
    name = "quotawatch",
    version,
    about = "Watches WeChat API quota signals and spends the monthly clear_quota budget wisely"
)]
pub struct Cli {
    /// Config file [default: $QUOTAWATCH_CONFIG, else /etc/quotawatch/quotawatch.toml]
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd runs this)
    Run,
    /// Validate the config, resolve secrets, print the effective config (secrets masked)
    Check(JsonFlag),
    /// Per account: clears used and left this month, last clear, cooldown, flags
    Status {
        /// One account, by name or appid
        account: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The ledger's attempts, newest first
    History {
        /// Only this account (name or appid)
        #[arg(long)]
        account: Option<String>,
        /// Only this month, YYYY-MM in daemon.timezone
        #[arg(long, value_name = "YYYY-MM")]
        month: Option<String>,
        /// At most this many rows
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Clear an account's quota now, through the policy, ledger and notifiers
    Clear {
        /// The account, by name or appid
        account: String,
        /// Why, for the ledger and the notification
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Decide and report, do not call WeChat
        #[arg(long)]
        dry_run: bool,
        /// Skip cooldown, daily_max and reset_guard (never the monthly cap)
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show the live quota of one API of an account
    Quota {
        account: String,
        /// e.g. /cgi-bin/message/custom/send
        cgi_path: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Lift a disable caused by a WeChat configuration error (40013, 40125, 40164)
    Enable { account: String },
    /// Send a test message through one notifier and show the platform's answer
    NotifyTest { notifier: String },
    /// Backtest the policy against never, naive and the hindsight optimum
    Simulate(Box<crate::simulate::SimulateArgs>),
    /// Write shell completions and the man page into DIR (for packaging)
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

#[derive(Debug, Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Command outcome beyond success: the process exit code.
pub type Exit = i32;

pub fn load_config(cli_path: Option<&Path>) -> Result<Config, config::ConfigErrors> {
    config::load(&config::discover(cli_path))
}

pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.daemon.state {
        StateLocation::Sqlite(path) => {
            Ok(Arc::new(SqliteStore::open(path).with_context(|| {
                format!("cannot open the ledger {}", path.display())
            })?))
        }
        // The URL may hold a password: the context names no part of it.
        StateLocation::Postgres(url) => Ok(Arc::new(
            PostgresStore::open(url).context("cannot open the PostgreSQL ledger (daemon.state)")?,
        )),
    }
}

fn find<'a>(config: &'a Config, account: &str) -> anyhow::Result<&'a Arc<Account>> {
    config
        .account(account)
        .with_context(|| format!("no account `{account}` in the config (give its name or appid)"))
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub fn check(config: &Config, json: bool) -> anyhow::Result<Exit> {
    // Rendered whole before anything is printed: `check` never says "valid"
    // and then fails (systemd's ExecStartPre reads the exit code).
    let text = if json {
        serde_json::to_string_pretty(config)? + "\n"
    } else {
        let mut value = serde_json::to_value(config)?;
        drop_nulls(&mut value);
        let body = toml::to_string_pretty(&value)
            .context("cannot render the effective configuration as TOML")?;
        format!(
            "# {} is valid; effective configuration (secrets masked):\n{body}",
            config.path.display()
        )
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(0)
}

/// TOML has no null: unset options are left out of `check`'s output.
fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// One account's state, as `status` and `GET /api/v1/accounts` show it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub account: String,
    pub appid: String,
    pub kind: config::AccountKind,
    pub month: String,
    pub used: u32,
    pub cap: u32,
    pub left: u32,
    pub used_today: u32,
    pub daily_max: u32,
    pub api_used: u32,
    pub api_cap: u32,
    pub last_clear_at: Option<DateTime<Utc>>,
    pub cooldown_until: Option<DateTime<Utc>>,
    pub in_flight: bool,
    pub exhausted: bool,
    pub disabled: Option<String>,
    pub dry_run: bool,
}

pub fn account_status(
    store: &dyn Store,
    config: &Config,
    account: &Account,
    now: DateTime<Utc>,
) -> anyhow::Result<AccountStatus> {
    let tz = config.daemon.timezone;
    let snap = store.snapshot(&clearer::key(account, tz), now)?;
    let p = &account.policy;
    Ok(AccountStatus {
        account: account.name.clone(),
        appid: account.appid.clone(),
        kind: account.kind,
        month: calendar::month_label(tz, now),
        used: snap.month_used,
        cap: p.monthly_cap,
        left: p.monthly_cap.saturating_sub(snap.month_used),
        used_today: snap.day_used,
        daily_max: p.daily_max,
        api_used: snap.api_month_used,
        api_cap: p.api_monthly_cap,
        last_clear_at: snap.last_clear_at,
        cooldown_until: policy::cooldown_end(p, &snap).filter(|end| *end > now),
        in_flight: snap.in_flight,
        exhausted: snap.exhausted,
        disabled: snap.disabled,
        dry_run: p.dry_run,
    })
}

pub fn status(config: &Config, account: Option<&str>, json: bool) -> anyhow::Result<Exit> {
    let store = open_store(config)?;
    let now = Utc::now();
    let accounts: Vec<&Arc<Account>> = match account {
        Some(a) => vec![find(config, a)?],
        None => config.accounts.values().collect(),
    };
    let rows = accounts
        .iter()
        .map(|a| account_status(store.as_ref(), config, a, now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if json {
        print_json(&rows)?;
        return Ok(0);
    }
    let tz = config.daemon.timezone;
    let local = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<16} {:<18} {:>9} {:>5} {:>7} {:<16} {:<16} FLAGS",
        "ACCOUNT", "APPID", "USED/CAP", "LEFT", "TODAY", "LAST CLEAR", "COOLDOWN UNTIL"
    );
    for r in rows {
        let mut flags = Vec::new();
        if r.exhausted {
            flags.push("exhausted".to_string());
        }
        if let Some(why) = &r.disabled {
            flags.push(format!("disabled ({why})"));
        }
        if r.in_flight {
            flags.push("in-flight".into());
        }
        if r.dry_run {
            flags.push("dry-run".into());
        }
        println!(
            "{:<16} {:<18} {:>9} {:>5} {:>7} {:<16} {:<16} {}",
            r.account,
            r.appid,
            format!("{}/{}", r.used, r.cap),
            r.left,
            format!("{}/{}", r.used_today, r.daily_max),
            local(r.last_clear_at),
            local(r.cooldown_until),
            flags.join(", ")
        );
    }
    Ok(0)
}

pub fn history(
    config: &Config,
    account: Option<&str>,
    month: Option<&str>,
    limit: Option<u32>,
    json: bool,
) -> anyhow::Result<Exit> {
    let store = open_store(config)?;
    let tz = config.daemon.timezone;
    let mut filter = HistoryFilter {
        limit,
        ..HistoryFilter::default()
    };
    if let Some(a) = account {
        filter.appid = Some(find(config, a)?.appid.clone());
    }
    if let Some(m) = month {
        let period = calendar::named_month(tz, m)
            .with_context(|| format!("--month `{m}` is not YYYY-MM"))?;
        filter.since = Some(period.start);
        filter.until = Some(period.end);
    }
    let rows = store.history(&filter)?;
    if json {
        print_json(&rows)?;
        return Ok(0);
    }
    println!(
        "{:>5} {:<19} {:<14} {:<10} {:<9} {:<10} DETAIL",
        "ID", "STARTED", "ACCOUNT", "TARGET", "OUTCOME", "SOURCE"
    );
    for r in rows {
        let target = match &r.target {
            crate::event::ClearTarget::Full => "full".to_string(),
            crate::event::ClearTarget::Api { cgi_path } => cgi_path.clone(),
        };
        let detail = match (r.errcode, &r.errmsg) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (None, Some(m)) => m.clone(),
            _ => String::new(),
        };
        println!(
            "{:>5} {:<19} {:<14} {:<10} {:<9} {:<10} {}",
            r.id,
            r.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S"),
            r.account,
            target,
            r.outcome,
            r.source,
            detail
        );
    }
    Ok(0)
}

/// A clear's result for `clear --json` and `POST /api/v1/accounts/NAME/clear`.
#[derive(Debug, Serialize)]
pub struct ClearSummary {
    pub account: String,
    pub appid: String,
    /// `clear` or `skip`.
    pub decision: &'static str,
    pub reason: Option<policy::SkipReason>,
    pub target: crate::event::ClearTarget,
    pub attempt: Option<i64>,
    pub outcome: Option<crate::event::Outcome>,
    pub budget: crate::event::Budget,
    pub next_clear_at: Option<DateTime<Utc>>,
}

impl ClearSummary {
    pub fn new(account: &Account, report: &clearer::Report) -> Self {
        let (decision, reason) = match report.decision {
            Decision::Clear => ("clear", None),
            Decision::Skip(r) => ("skip", Some(r)),
        };
        Self {
            account: account.name.clone(),
            appid: account.appid.clone(),
            decision,
            reason,
            target: report.target.clone(),
            attempt: report.attempt,
            outcome: report.outcome.clone(),
            budget: report.budget.clone(),
            next_clear_at: report.next_clear_at,
        }
    }

    /// 0 cleared (or a requested dry run), [`crate::EXIT_REFUSED`] refused by the
    /// policy, [`crate::EXIT_FAILURE`] attempted and not cleared.
    pub fn exit_code(&self) -> Exit {
        match (&self.reason, &self.outcome) {
            (Some(policy::SkipReason::DryRun), _) => 0,
            (Some(_), _) => crate::EXIT_REFUSED,
            (None, Some(crate::event::Outcome::Ok)) => 0,
            (None, _) => crate::EXIT_FAILURE,
        }
    }

    pub fn human(&self) -> String {
        let budget = format!(
            "{} of {} clears left in {}",
            self.budget.left, self.budget.cap, self.budget.month
        );
        match (&self.reason, &self.outcome) {
            (Some(policy::SkipReason::DryRun), _) => {
                format!("{}: dry run, would clear now ({budget})", self.account)
            }
            (Some(r), _) => {
                let next = self
                    .next_clear_at
                    .map(|t| format!("; next possible at {}", t.to_rfc3339()))
                    .unwrap_or_default();
                format!("{}: not cleared: {r}{next} ({budget})", self.account)
            }
            (None, Some(crate::event::Outcome::Ok)) => {
                format!("{}: cleared ({budget})", self.account)
            }
            (None, Some(crate::event::Outcome::Failed { errcode, errmsg })) => {
                let fix = errcode
                    .and_then(|c| crate::wechat::advice(c, errmsg))
                    .map(|a| format!("\n  fix: {a}"))
                    .unwrap_or_default();
                format!("{}: clear failed: {errmsg} ({budget}){fix}", self.account)
            }
            (None, Some(crate::event::Outcome::Ambiguous { detail })) => format!(
                "{}: outcome unknown, counted as spent: {detail} ({budget})",
                self.account
            ),
            (None, None) => format!("{}: no outcome recorded", self.account),
        }
    }
}

pub struct ClearArgs<'a> {
    pub account: &'a str,
    pub reason: &'a str,
    pub dry_run: bool,
    pub force: bool,
    pub json: bool,
}

pub async fn clear(
    config: &Config,
    args: ClearArgs<'_>,
    events: Arc<dyn EventSink>,
) -> anyhow::Result<Exit> {
    let account = find(config, args.account)?.clone();
    let clearer = Clearer {
        store: open_store(config)?,
        wechat: Arc::new(WeChat::new(&config.wechat)?),
        metrics: Arc::new(Metrics::new()),
        events,
        timezone: config.daemon.timezone,
        outcome_retry: crate::clearer::OUTCOME_RETRY,
        health: Default::default(),
        clock: Default::default(),
    };
    let request = ClearRequest {
        source: "cli".into(),
        trigger: args.reason.to_string(),
        evidence: 0,
        cgi_path: None,
        manual: true,
        force: args.force,
        dry_run: args.dry_run,
        keys: Vec::new(),
    };
    let report = clearer.handle(&account, request).await?;
    let summary = ClearSummary::new(&account, &report);
    if args.json {
        print_json(&summary)?;
    } else {
        println!("{}", summary.human());
    }
    Ok(summary.exit_code())
}

pub async fn quota(
    config: &Config,
    account: &str,
    cgi_path: &str,
    json: bool,
) -> anyhow::Result<Exit> {
    let account = find(config, account)?;
    let wechat = WeChat::new(&config.wechat)?;
    let q = wechat.quota(account, cgi_path).await?;
    if json {
        print_json(
            &serde_json::json!({ "account": account.name, "appid": account.appid, "cgi_path": cgi_path, "quota": q }),
        )?;
    } else {
        println!(
            "{} {cgi_path}: used {} of {} today, {} remain",
            account.name, q.used, q.daily_limit, q.remain
        );
    }
    Ok(0)
}

pub fn enable(config: &Config, account: &str) -> anyhow::Result<Exit> {
    let account = find(config, account)?;
    let store = open_store(config)?;
    if store.enable(&account.appid)? {
        println!("{}: enabled again", account.name);
    } else {
        println!("{}: was not disabled", account.name);
    }
    Ok(0)
}

pub fn generate_assets(dir: &Path) -> anyhow::Result<Exit> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    for (shell, file) in [
        (Shell::Bash, "quotawatch.bash"),
        (Shell::Zsh, "_quotawatch"),
        (Shell::Fish, "quotawatch.fish"),
    ] {
        let mut out = std::fs::File::create(dir.join(file))?;
        clap_complete::generate(shell, &mut cmd, "quotawatch", &mut out);
    }
    let mut man = std::fs::File::create(dir.join("quotawatch.1"))?;
    clap_mangen::Man::new(Cli::command()).render(&mut man)?;
    Ok(0)
}
