//! What happened to an account: the one record that logs, metrics and chat
//! notifications are all made from.
//!
//! The [`crate::clearer`] produces events; [`crate::notify`] renders and delivers
//! them. This module holds only the data and its vocabulary.

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::policy::ClearTarget;
use crate::policy::SkipReason;

/// The event names of SPEC section 4 (`notifiers.*.events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A clear took effect.
    Cleared,
    /// A clear was attempted and did not take effect (or may not have).
    Failed,
    /// The policy refused to clear.
    Skipped,
    /// The policy would have cleared, but dry-run is on.
    DryRun,
    /// The month's remaining clears fell to `policy.budget_low`.
    BudgetLow,
    /// WeChat answered 48006: no more clears this month.
    Exhausted,
    /// WeChat rejected the account's configuration (40013, 40125, 40164, ...).
    ConfigError,
    /// On the first day of a month: the month before, per account.
    MonthlyReport,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        Self::Cleared,
        Self::Failed,
        Self::Skipped,
        Self::DryRun,
        Self::BudgetLow,
        Self::Exhausted,
        Self::ConfigError,
        Self::MonthlyReport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cleared => "cleared",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::DryRun => "dry_run",
            Self::BudgetLow => "budget_low",
            Self::Exhausted => "exhausted",
            Self::ConfigError => "config_error",
            Self::MonthlyReport => "monthly_report",
        }
    }

    /// Whether a notifier whose `events` are `listed` receives this kind. A
    /// dry run is a skip with reason `dry_run` (SPEC section 5), so `skipped`
    /// selects it as `dry_run` does.
    pub fn is_selected_by(self, listed: &[EventKind]) -> bool {
        listed.contains(&self) || (self == Self::DryRun && listed.contains(&Self::Skipped))
    }
}

/// The month's budget after the event, as messages show it ("3 of 8 clears left
/// in 2026-11").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub used: u32,
    pub cap: u32,
    pub left: u32,
    /// `YYYY-MM` in `daemon.timezone`.
    pub month: String,
}

/// One account's month, as the `monthly_report` event tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthReport {
    /// `YYYY-MM` in `daemon.timezone`.
    pub month: String,
    /// Clears that count against the month's budget.
    pub clears: u32,
    /// Lockout episodes that started in the month.
    pub episodes: u32,
    /// Minutes locked out in them.
    pub locked_minutes: u64,
}

/// The outcome of one clear attempt as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed {
        errcode: Option<i64>,
        errmsg: String,
    },
    /// Sent but unanswered (timeout, connection lost): it may have taken effect.
    Ambiguous {
        detail: String,
    },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed { .. } => "failed",
            Self::Ambiguous { .. } => "ambiguous",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub kind: EventKind,
    /// The account's config name.
    pub account: String,
    pub appid: String,
    pub at: DateTime<Utc>,
    /// The source that triggered it ("cli", "api", or a `[sources.NAME]`).
    pub source: String,
    /// The trigger's own words (alert name, "manual", ...).
    pub trigger: String,
    /// Evidence events that supported the decision.
    pub evidence: u32,
    pub target: ClearTarget,
    /// The ledger's id of the attempt, for attempts (`cleared`, `failed`,
    /// `exhausted`, `config_error`, `budget_low`): what the history shows.
    pub attempt: Option<i64>,
    /// Set for `skipped` and `dry_run`.
    pub skip_reason: Option<SkipReason>,
    /// Set for attempts: what the ledger recorded.
    pub outcome: Option<Outcome>,
    /// WeChat's error code and message, when it answered one.
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    pub budget: Budget,
    /// When the next clear may happen, for timing skips.
    pub next_clear_at: Option<DateTime<Utc>>,
    /// For `monthly_report`: the month before's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<MonthReport>,
    /// The notifiers this account routes to (`accounts.NAME.notify`); empty
    /// means every notifier.
    #[serde(skip)]
    pub route: Vec<String>,
}
