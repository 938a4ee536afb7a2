//! What `status`, `history`, `GET /api/v1/accounts`, the status page and a
//! clear's summary show: one read model over the ledger, used by the CLI and
//! the HTTP surface alike.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::calendar;
use crate::clearer;
use crate::config::Config;
use crate::policy::{self, Decision};
use crate::settings::Account;
use crate::store::{AttemptRecord, EpisodeEnd, Fleet, HistoryFilter, Store, StoreError};

/// One account's state, as `status` and `GET /api/v1/accounts` show it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub account: String,
    pub appid: String,
    pub kind: crate::settings::AccountKind,
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
    /// Lockout episodes that started this month (SPEC section 5).
    pub episodes: u32,
    /// Minutes locked out this month, the open episode's so far included.
    pub locked_minutes: u64,
    /// An episode is open now.
    pub locked: bool,
}

pub fn account_status(
    store: &dyn Store,
    config: &Config,
    account: &Account,
    now: DateTime<Utc>,
) -> anyhow::Result<AccountStatus> {
    let tz = config.daemon.timezone;
    let snap = store.snapshot(&clearer::key(account, tz), now)?;
    let lockout = month_lockout(store, &account.appid, calendar::month(tz, now), now)?;
    let budget = clearer::budget(account, &snap, tz, now);
    let p = &account.policy;
    Ok(AccountStatus {
        account: account.name.clone(),
        appid: account.appid.clone(),
        kind: account.kind,
        month: budget.month,
        used: budget.used,
        cap: budget.cap,
        left: budget.left,
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
        episodes: lockout.episodes,
        locked_minutes: lockout.locked_minutes,
        locked: lockout.open,
    })
}

/// Which accounts a listing shows: `?state=` of the status page and of
/// `GET /api/v1/accounts` (SPEC section 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    #[default]
    All,
    Locked,
    Exhausted,
    Disabled,
    DryRun,
}

/// A listing's filters and page.
#[derive(Debug, Clone, Default)]
pub struct AccountQuery {
    pub state: StateFilter,
    /// Part of a name or an appid, in any case.
    pub q: Option<String>,
    pub offset: usize,
    /// `None`: every account that matches, as the API answered before paging.
    pub limit: Option<usize>,
    /// The page lists locked accounts first; the API keeps the config's order.
    pub locked_first: bool,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct AccountPage {
    /// Accounts that match the filters, on every page.
    pub total: usize,
    pub accounts: Vec<AccountStatus>,
    /// The ledger's figures for this month, read once for the filters and
    /// kept for the page's summary.
    pub fleet: Fleet,
}

/// The accounts `query` selects, with the ledger read only for the ones on
/// the page: which accounts are locked, exhausted or disabled comes from
/// [`Store::fleet`], a few rows whatever the fleet's size.
pub fn list_accounts(
    store: &dyn Store,
    config: &Config,
    query: &AccountQuery,
    now: DateTime<Utc>,
) -> anyhow::Result<AccountPage> {
    let tz = config.daemon.timezone;
    let fleet = store.fleet(&calendar::month(tz, now), now)?;
    let flags: std::collections::HashMap<&str, &crate::store::Flags> = fleet
        .flagged
        .iter()
        .map(|f| (f.appid.as_str(), f))
        .collect();
    let locked = |a: &Account| flags.get(a.appid.as_str()).is_some_and(|f| f.locked);
    let wanted = |a: &Account| {
        let f = flags.get(a.appid.as_str());
        match query.state {
            StateFilter::All => true,
            StateFilter::Locked => locked(a),
            StateFilter::Exhausted => f.is_some_and(|f| f.exhausted),
            StateFilter::Disabled => {
                f.and_then(|f| f.disabled_fingerprint.as_deref()) == Some(a.fingerprint.as_str())
            }
            StateFilter::DryRun => a.policy.dry_run,
        }
    };
    let needle = query.q.as_deref().map(str::to_lowercase);
    let matches = |a: &Account| {
        needle
            .as_deref()
            .is_none_or(|n| a.name.to_lowercase().contains(n) || a.appid.to_lowercase().contains(n))
    };
    let mut selected: Vec<&Account> = config
        .accounts
        .values()
        .map(|a| a.as_ref())
        .filter(|a| wanted(a) && matches(a))
        .collect();
    if query.locked_first {
        // Stable: the config's order within each group.
        selected.sort_by_key(|a| !locked(a));
    }
    let total = selected.len();
    let accounts = selected
        .into_iter()
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|a| account_status(store, config, a, now))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AccountPage {
        total,
        accounts,
        fleet,
    })
}

/// An account's lockout in one period: what `status` (this month) and the
/// `monthly_report` (the month before) show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthLockout {
    /// Episodes that started in the period.
    pub episodes: u32,
    /// Minutes locked out in them, up to `now`.
    pub locked_minutes: u64,
    /// One of them is still open.
    pub open: bool,
}

pub fn month_lockout(
    store: &dyn Store,
    appid: &str,
    period: calendar::Period,
    now: DateTime<Utc>,
) -> Result<MonthLockout, StoreError> {
    let filter = HistoryFilter {
        appid: Some(appid.to_string()),
        since: Some(period.start),
        until: Some(period.end),
        limit: None,
    };
    let episodes = store.episodes(&filter, now)?;
    let locked: i64 = episodes.iter().map(|e| e.locked(now).num_seconds()).sum();
    Ok(MonthLockout {
        episodes: episodes.len() as u32,
        locked_minutes: (locked.max(0) / 60) as u64,
        open: episodes.iter().any(|e| e.ended_by == EpisodeEnd::Open),
    })
}

/// One row of `history`: an attempt, or the decisions of one reason in one
/// lockout episode that did not clear (dry runs included).
#[derive(Debug, Clone)]
pub enum HistoryRow {
    Attempt(AttemptRecord),
    Decision(DecisionRow),
}

/// The decisions of one reason in one episode, as `history` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    pub account: String,
    pub appid: String,
    pub reason: String,
    pub count: u32,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub episode: i64,
    pub episode_started_at: DateTime<Utc>,
    pub episode_ended_by: EpisodeEnd,
}

impl HistoryRow {
    fn at(&self) -> DateTime<Utc> {
        match self {
            HistoryRow::Attempt(a) => a.started_at,
            HistoryRow::Decision(d) => d.first_at,
        }
    }
}

/// Attempts and refused decisions in `filter`, newest first.
pub fn history_rows(
    store: &dyn Store,
    filter: &HistoryFilter,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<HistoryRow>> {
    let mut rows: Vec<HistoryRow> = store
        .history(filter)?
        .into_iter()
        .map(HistoryRow::Attempt)
        .collect();
    for e in store.episodes(filter, now)? {
        rows.extend(e.decisions.iter().map(|d| {
            HistoryRow::Decision(DecisionRow {
                account: e.account.clone(),
                appid: e.appid.clone(),
                reason: d.reason.clone(),
                count: d.count,
                first_at: d.first_at,
                last_at: d.last_at,
                episode: e.id,
                episode_started_at: e.started_at,
                episode_ended_by: e.ended_by,
            })
        }));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.at()));
    if let Some(limit) = filter.limit {
        rows.truncate(limit as usize);
    }
    Ok(rows)
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
    pub fn exit_code(&self) -> i32 {
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
                    .and_then(|c| {
                        let single_api =
                            matches!(self.target, crate::event::ClearTarget::Api { .. });
                        crate::wechat::advice(c, errmsg, &self.account, single_api)
                    })
                    .map(|a| format!("\n  fix: {}", a.en))
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
