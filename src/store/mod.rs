//! The ledger: every clear attempt, recorded before the request leaves the
//! process and completed with its outcome after, so that no crash, restart or
//! second process can spend more than the monthly cap.
//!
//! [`Store`] is the interface; [`sqlite::SqliteStore`] the embedded default and
//! [`postgres::PostgresStore`] the store several replicas share. A
//! store does not decide: [`Store::reserve`] runs the caller's decision inside
//! its exclusive transaction, which is what makes the decision and the intent
//! row one atomic step across processes.

pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::event::{ClearTarget, Outcome};
use crate::policy::{Decision, Snapshot};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The row id of an attempt.
pub type AttemptId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ledger database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL ledger: {0}")]
    Postgres(#[from] postgres::PgError),
    #[error("ledger schema version {found} is newer than this quotawatch understands ({known}); upgrade quotawatch")]
    TooNew { found: i64, known: i64 },
    #[error("cannot create the ledger's directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("attempt {0} does not exist")]
    NoSuchAttempt(AttemptId),
}

/// Pending rows older than this are ambiguous whoever owns them: no request
/// waits this long.
pub(crate) const PENDING_LIMIT: Duration = Duration::from_secs(3600);

/// `host:pid`, written into intent rows to tell a live owner from a dead one.
pub(crate) fn owner_id() -> String {
    format!(
        "{}:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    )
}

/// Whether the process that wrote `owner` still runs on this host.
pub(crate) fn owner_alive(owner: &str, me: &str) -> bool {
    let host = |o: &str| o.rsplit_once(':').map(|(h, _)| h.to_string());
    if owner == me {
        return true;
    }
    if host(owner) != host(me) {
        // Another machine (a shared store): only the age limit applies.
        return true;
    }
    let Some(pid) = owner
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<i32>().ok())
    else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Which account a ledger query is about, and the calendar to count in.
#[derive(Debug, Clone)]
pub struct AccountKey<'a> {
    /// WeChat's budget is per appid, so the ledger keys on it.
    pub appid: &'a str,
    /// The config name, stored for people reading the history.
    pub name: &'a str,
    /// The account's current config fingerprint: a disable holds while it matches.
    pub fingerprint: &'a str,
    pub timezone: Tz,
}

/// What an intent row says about the attempt it opens.
#[derive(Debug, Clone)]
pub struct Intent {
    pub target: ClearTarget,
    pub source: String,
    pub trigger: String,
    pub evidence: u32,
    pub forced: bool,
}

/// One attempt as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub id: AttemptId,
    pub account: String,
    pub appid: String,
    #[serde(flatten)]
    pub target: ClearTarget,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `pending`, `ok`, `failed` or `ambiguous`.
    pub outcome: String,
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    pub source: String,
    pub trigger: String,
    pub evidence: u32,
    pub forced: bool,
    /// After a clear, whether a quota read showed `used` dropped.
    pub verified: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub appid: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// Where a `log_file` source stopped reading, so a restart neither misses nor
/// recounts lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPosition {
    /// Identity of the file (device and inode) the offset belongs to.
    pub file_id: String,
    pub offset: u64,
}

pub trait Store: Send + Sync {
    /// Atomically: read the account's snapshot at `now`, ask `decide`, and when
    /// it says [`Decision::Clear`] commit an intent row before returning its id.
    /// `decide` gets the intent's target to change: the target is chosen
    /// under the lock too (`prefer = "api"` falls back to a full clear when
    /// the single-API budget went in the meantime), and the row records the
    /// target it left.
    fn reserve(
        &self,
        account: &AccountKey<'_>,
        intent: &Intent,
        now: DateTime<Utc>,
        decide: &mut dyn FnMut(&Snapshot, &mut ClearTarget) -> Decision,
    ) -> Result<(Snapshot, Decision, Option<AttemptId>), StoreError>;

    /// Records an attempt's outcome.
    fn finish(&self, id: AttemptId, outcome: &Outcome, at: DateTime<Utc>)
        -> Result<(), StoreError>;

    fn snapshot(
        &self,
        account: &AccountKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<Snapshot, StoreError>;

    /// WeChat answered 48006: no clears for this appid until the month ends.
    fn mark_exhausted(
        &self,
        account: &AccountKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// A configuration error: no clears until the account's config changes or
    /// an operator runs `quotawatch enable`.
    fn mark_disabled(
        &self,
        account: &AccountKey<'_>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Lifts a disable (`quotawatch enable`).
    fn enable(&self, appid: &str) -> Result<bool, StoreError>;

    fn set_verified(&self, id: AttemptId, verified: bool) -> Result<(), StoreError>;

    fn history(&self, filter: &HistoryFilter) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Marks attempts left pending by a process that no longer runs as
    /// `ambiguous`; returns how many.
    fn recover(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;

    fn log_position(&self, source: &str, path: &str) -> Result<Option<LogPosition>, StoreError>;

    fn save_log_position(
        &self,
        source: &str,
        path: &str,
        pos: &LogPosition,
    ) -> Result<(), StoreError>;
}

/// The `scope` and `cgi_path` columns that store a target.
pub(crate) fn target_columns(target: &ClearTarget) -> (&'static str, Option<&str>) {
    match target {
        ClearTarget::Full => ("full", None),
        ClearTarget::Api { cgi_path } => ("api", Some(cgi_path.as_str())),
    }
}

/// The target the `scope` and `cgi_path` columns store.
pub(crate) fn target_from_columns(scope: &str, cgi_path: Option<String>) -> ClearTarget {
    match (scope, cgi_path) {
        ("api", Some(cgi_path)) => ClearTarget::Api { cgi_path },
        _ => ClearTarget::Full,
    }
}

/// The `outcome`, `errcode` and `errmsg` columns of a finished attempt.
pub(crate) fn outcome_columns(outcome: &Outcome) -> (&'static str, Option<i64>, Option<&str>) {
    match outcome {
        Outcome::Ok => ("ok", None, None),
        Outcome::Failed { errcode, errmsg } => ("failed", *errcode, Some(errmsg.as_str())),
        Outcome::Ambiguous { detail } => ("ambiguous", None, Some(detail.as_str())),
    }
}
