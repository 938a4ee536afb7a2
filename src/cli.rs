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
use crate::clearer::{ClearRequest, Clearer, EventSink};
use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::read_model::{account_status, history_rows, ClearSummary, HistoryRow};
use crate::settings::Account;
use crate::store::{EpisodeEnd, HistoryFilter};
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
    /// The ledger's attempts, and the decisions that did not clear, newest first
    History(LedgerQuery),
    /// Lockout episodes (newest first) and the decisions in each that did not clear
    Episodes(LedgerQuery),
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

/// Which rows of the ledger `history` and `episodes` show.
#[derive(Debug, Args, Clone)]
pub struct LedgerQuery {
    /// Only this account (name or appid)
    #[arg(long)]
    pub account: Option<String>,
    /// Only this month (for episodes: that started in it), YYYY-MM in daemon.timezone
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// At most this many rows
    #[arg(long)]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Command outcome beyond success: the process exit code.
pub type Exit = i32;

pub fn load_config(cli_path: Option<&Path>) -> Result<Config, crate::settings::ConfigErrors> {
    config::load(&config::discover(cli_path))
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
    let mut err = std::io::stderr().lock();
    for line in sets_report(config) {
        writeln!(err, "{line}")?;
    }
    Ok(0)
}

/// What `check` says of the sets beside the effective config: each list it
/// read, its bad entries, and what the merge left out. It reads no list
/// but a file, and runs nothing.
fn sets_report(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, set) in &config.account_sets {
        let source = match &set.from {
            crate::sets::ListFrom::File(f) => format!("from {}", f.file.display()),
            crate::sets::ListFrom::Wechat(_) => {
                "from WeChat's authorizer list: read when the daemon runs".into()
            }
            crate::sets::ListFrom::Command(c) => {
                format!("from {}: run when the daemon runs", c.command[0])
            }
        };
        match &set.loaded {
            Some(crate::sets::Loaded { error: Some(e), .. }) => lines.push(format!(
                "warning: account set `{name}`: {e}; the daemon keeps the last good list in the ledger"
            )),
            Some(l) => {
                lines.push(format!("account set `{name}`: {} members {source}", l.member_count));
                for s in &l.skipped {
                    lines.push(format!("warning: account set `{name}`: skipped {s}"));
                }
            }
            None => lines.push(format!("account set `{name}`: members {source}")),
        }
    }
    lines.extend(config.notes.iter().map(|n| format!("warning: {n}")));
    lines
}

/// `config` with the members of each account set that `load` could not
/// read (a WeChat or command set, a file that is missing) from the ledger's
/// last good list, so that `status`, `clear`, `quota` and `enable` find them
/// as the daemon does.
pub fn with_ledger_members(mut config: Config) -> anyhow::Result<Config> {
    let unread = config
        .account_sets
        .values()
        .any(|s| s.loaded.as_ref().and_then(|l| l.members.as_ref()).is_none());
    if !unread {
        return Ok(config);
    }
    let store = crate::store::open(&config.daemon.state)?;
    let (accounts, notes) = crate::sets::refresh::Sets::default().adopt(
        &config.configured,
        &config.account_sets,
        store.as_ref(),
    );
    config.accounts = accounts;
    config.notes = notes;
    Ok(config)
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

pub fn status(config: &Config, account: Option<&str>, json: bool) -> anyhow::Result<Exit> {
    let store = crate::store::open(&config.daemon.state)?;
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
        "{:<16} {:<18} {:>9} {:>5} {:>7} {:<16} {:<16} {:>8} {:>7} FLAGS",
        "ACCOUNT",
        "APPID",
        "USED/CAP",
        "LEFT",
        "TODAY",
        "LAST CLEAR",
        "COOLDOWN UNTIL",
        "EPISODES",
        "LOCKED"
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
        if r.locked {
            flags.push("locked-out".into());
        }
        println!(
            "{:<16} {:<18} {:>9} {:>5} {:>7} {:<16} {:<16} {:>8} {:>7} {}",
            r.account,
            r.appid,
            format!("{}/{}", r.used, r.cap),
            r.left,
            format!("{}/{}", r.used_today, r.daily_max),
            local(r.last_clear_at),
            local(r.cooldown_until),
            r.episodes,
            format!("{}m", r.locked_minutes),
            flags.join(", ")
        );
    }
    Ok(0)
}

pub fn history(config: &Config, query: &LedgerQuery) -> anyhow::Result<Exit> {
    let store = crate::store::open(&config.daemon.state)?;
    let tz = config.daemon.timezone;
    let filter = query.filter(config)?;
    if query.json.json {
        // The machine-readable history keeps its shape: attempts only (the
        // refused decisions are in `episodes --json`).
        print_json(&store.history(&filter)?)?;
        return Ok(0);
    }
    let rows = history_rows(store.as_ref(), &filter, Utc::now())?;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S");
    println!(
        "{:>5} {:<19} {:<14} {:<10} {:<9} {:<10} DETAIL",
        "ID", "STARTED", "ACCOUNT", "TARGET", "OUTCOME", "SOURCE"
    );
    for row in rows {
        match row {
            HistoryRow::Attempt(r) => {
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
                    local(r.started_at),
                    r.account,
                    target,
                    r.outcome,
                    r.source,
                    detail
                );
            }
            HistoryRow::Decision(d) => {
                let ended = match d.episode_ended_by {
                    EpisodeEnd::Open => "still open".to_string(),
                    end => format!("ended by {}", end.as_str()),
                };
                println!(
                    "{:>5} {:<19} {:<14} {:<10} {:<9} {:<10} {}: {} decision{} to {} (episode {}, {})",
                    "-",
                    local(d.first_at),
                    d.account,
                    "-",
                    "skip",
                    "-",
                    d.reason,
                    d.count,
                    if d.count == 1 { "" } else { "s" },
                    local(d.last_at),
                    d.episode,
                    ended
                );
            }
        }
    }
    Ok(0)
}

impl LedgerQuery {
    /// The rows `--account`, `--month` and `--limit` select.
    fn filter(&self, config: &Config) -> anyhow::Result<HistoryFilter> {
        let mut filter = HistoryFilter {
            limit: self.limit,
            ..HistoryFilter::default()
        };
        if let Some(a) = &self.account {
            filter.appid = Some(find(config, a)?.appid.clone());
        }
        if let Some(m) = &self.month {
            let period = calendar::named_month(config.daemon.timezone, m)
                .with_context(|| format!("--month `{m}` is not YYYY-MM"))?;
            filter.since = Some(period.start);
            filter.until = Some(period.end);
        }
        Ok(filter)
    }
}

/// `quotawatch episodes`: the lockout episodes, newest first, with the
/// decisions in each that did not clear.
pub fn episodes(config: &Config, query: &LedgerQuery) -> anyhow::Result<Exit> {
    let store = crate::store::open(&config.daemon.state)?;
    let tz = config.daemon.timezone;
    let now = Utc::now();
    let rows = store.episodes(&query.filter(config)?, now)?;
    if query.json.json {
        print_json(&rows)?;
        return Ok(0);
    }
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    println!(
        "{:>5} {:<19} {:<19} {:<6} {:>7} {:<14} DECISIONS",
        "ID", "STARTED", "ENDED", "BY", "LOCKED", "ACCOUNT"
    );
    for e in rows {
        let decisions: Vec<String> = e
            .decisions
            .iter()
            .map(|d| format!("{} x{}", d.reason, d.count))
            .collect();
        println!(
            "{:>5} {:<19} {:<19} {:<6} {:>7} {:<14} {}",
            e.id,
            local(e.started_at),
            e.ended_at.map(local).unwrap_or_else(|| "-".into()),
            e.ended_by.as_str(),
            format!("{}m", e.locked(now).num_minutes()),
            e.account,
            decisions.join(", ")
        );
    }
    Ok(0)
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
        store: crate::store::open(&config.daemon.state)?,
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
        pacing: None,
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
    let store = crate::store::open(&config.daemon.state)?;
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
