//! The ledger: every clear attempt, recorded before the request leaves the
//! process and completed with its outcome after, so that no crash, restart or
//! second process can spend more than the monthly cap.
//!
//! [`Store`] is the interface; [`sqlite::SqliteStore`] the embedded default and
//! [`postgres::PostgresStore`] the store several replicas share. A
//! store does not decide: [`Store::reserve`] runs the caller's decision inside
//! its exclusive transaction, which is what makes the decision and the intent
//! row one atomic step across processes.

pub mod episodes;
pub mod health;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::event::{ClearTarget, Outcome};
use crate::policy::{SkipReason, Snapshot, Verdict};

pub use episodes::{
    DecisionCount, EpisodeEnd, EpisodeId, EpisodeRecord, LockoutNote, LockoutTotal,
};
pub use health::LedgerHealth;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The row id of an attempt.
pub type AttemptId = i64;

/// Where the ledger is: `daemon.state`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateLocation {
    Sqlite(std::path::PathBuf),
    /// `postgres://…`: masked, it may hold a password.
    Postgres(crate::secret::Secret),
}

/// The ledger as a user writes it, for the log: the path, or the URL with
/// its password (in the userinfo or a `password=` parameter) masked.
impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(url) => f.write_str(&without_password(url.expose())),
        }
    }
}

fn without_password(url: &str) -> String {
    const MASK: &str = "********";
    let Some(start) = url.find("://").map(|i| i + 3) else {
        // Not a URL after all: nothing of it can be shown safely.
        return MASK.to_string();
    };
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}={MASK}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{}{authority}{tail}", &url[..start])
}

/// Opens the ledger `daemon.state` names.
pub fn open(state: &StateLocation) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    use anyhow::Context;
    match state {
        StateLocation::Sqlite(path) => Ok(std::sync::Arc::new(
            SqliteStore::open(path)
                .with_context(|| format!("cannot open the ledger {}", path.display()))?,
        )),
        // The URL may hold a password: the context names no part of it.
        StateLocation::Postgres(url) => Ok(std::sync::Arc::new(
            PostgresStore::open(url).context("cannot open the PostgreSQL ledger (daemon.state)")?,
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite's message is said here and the error is not a `source()`:
    /// its own source is only the result code's generic text ("Error code
    /// 14: Unable to open the database file"), which would say it again.
    #[error("ledger database error: {0}")]
    Sqlite(rusqlite::Error),
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
    #[error("attempt {id} is already recorded as {found}; its outcome {ours} was not written")]
    Settled {
        id: AttemptId,
        found: String,
        ours: &'static str,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
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

/// A name for this process among the writers of pacing's memory
/// ([`Store::merge_pacing_notes`]): unique to each call, so a restart's
/// notes are never taken for ones the ledger already has.
pub(crate) fn replica_id() -> String {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Utc::now().timestamp_micros();
    format!("{}:{started}:{n}", owner_id())
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
#[derive(Debug, Clone, Default)]
pub struct Intent {
    pub source: String,
    pub trigger: String,
    pub evidence: u32,
    pub forced: bool,
    /// The idempotency keys behind the evidence, with the evidence each
    /// carries. A key that an attempt which counts acted on within `window`
    /// is not evidence again ([`Snapshot::seen_evidence`]); a clear decided
    /// here stores its keys in the same transaction (SPEC section 2).
    pub keys: Vec<(String, u32)>,
    /// How long a key acted on stays known.
    pub window: Duration,
    /// The decision is about evidence of a lockout (not a manual request):
    /// it opens or joins the account's episode, and a refusal is counted
    /// there (SPEC section 5).
    pub lockout: bool,
}

impl Intent {
    /// The oldest acted-on key that still counts as seen at `now`.
    pub(crate) fn keys_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        crate::calendar::window_start(now, self.window)
    }

    /// What a decision at `now` tells the account's episode: nothing for a
    /// manual request, or for evidence already acted on (a duplicate).
    pub(crate) fn lockout_note(
        &self,
        now: DateTime<Utc>,
        reservation: &Reservation,
    ) -> Option<LockoutNote> {
        let reason = match reservation {
            Reservation::Skip {
                reason: SkipReason::Duplicate,
                ..
            } => return None,
            Reservation::Skip { reason, .. } => Some(reason.as_str()),
            Reservation::Clear { .. } => None,
        };
        self.lockout
            .then(|| LockoutNote::at(now, reason, self.window))
    }

    /// The evidence under the keys in `seen`.
    pub(crate) fn evidence_under(&self, seen: &[String]) -> u32 {
        self.keys
            .iter()
            .filter(|(k, _)| seen.contains(k))
            .map(|(_, n)| *n)
            .fold(0, u32::saturating_add)
    }
}

/// What [`Store::reserve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The policy said clear: the intent row `id` is committed for `target`.
    Clear { id: AttemptId, target: ClearTarget },
    /// The policy refused; nothing was written but recovery.
    Skip {
        reason: SkipReason,
        retry_at: Option<DateTime<Utc>>,
    },
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

/// The whole fleet as the ledger sees it, for the status page: figures
/// summed in the ledger and the few accounts flagged now, so that a page
/// never reads every account's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    /// Full clears that count (`ok`, `ambiguous`, `pending`) started in the period.
    pub clears: u64,
    /// Episodes started in the period.
    pub episodes: u64,
    /// Their locked time up to `now`.
    pub locked_seconds: u64,
    /// Every appid locked, exhausted or disabled at `now`, by appid.
    pub flagged: Vec<Flags>,
}

/// What holds for one appid at `now`, beside its counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub appid: String,
    /// An episode is open.
    pub locked: bool,
    /// WeChat answered 48006 this month.
    pub exhausted: bool,
    /// A disable holds only while the account's config fingerprint is this
    /// one; the caller compares.
    pub disabled_fingerprint: Option<String>,
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
    /// Atomically: read the account's snapshot at `now` (with the intent's
    /// keys already acted on), ask `decide`, and when it says
    /// [`Verdict::Clear`] commit an intent row for the target it chose, and the
    /// intent's keys, before returning the row's id. The target is chosen
    /// under the lock too: `prefer = "api"` falls back to a full clear when the
    /// single-API budget went in the meantime.
    fn reserve(
        &self,
        account: &AccountKey<'_>,
        intent: &Intent,
        now: DateTime<Utc>,
        decide: &mut dyn FnMut(&Snapshot) -> Verdict,
    ) -> Result<(Snapshot, Reservation), StoreError>;

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

    /// Checks that the ledger can be reached and written now (reconnecting
    /// when needed), for [`LedgerHealth`].
    fn ping(&self) -> Result<(), StoreError>;

    /// Whether a call can wait (on another process's lock, the disk or the
    /// network), so the clearer runs it on the blocking pool. A ledger in
    /// memory never waits, and `quotawatch simulate` makes hundreds of
    /// thousands of calls, each a thread hand-off on the pool.
    fn may_wait(&self) -> bool {
        true
    }

    /// Records evidence of a lockout and the decisions taken on it
    /// ([`episodes`]): opens the account's episode when none is open.
    fn note_lockout(&self, account: &AccountKey<'_>, note: &LockoutNote) -> Result<(), StoreError>;

    /// The episodes that started in the filter's period, newest first, each
    /// as it reads at `now`.
    fn episodes(
        &self,
        filter: &HistoryFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<EpisodeRecord>, StoreError>;

    /// Per appid with episodes: locked now, and the locked time of them all.
    fn lockout_totals(&self, now: DateTime<Utc>) -> Result<Vec<LockoutTotal>, StoreError>;

    /// The fleet's figures for `period` and its flagged appids at `now`.
    fn fleet(
        &self,
        period: &crate::calendar::Period,
        now: DateTime<Utc>,
    ) -> Result<Fleet, StoreError>;

    /// An account set's last good list: the document
    /// [`save_set_list`](Store::save_set_list) kept, so that a start while
    /// the set's source is down still watches every member.
    fn set_list(&self, set: &str) -> Result<Option<String>, StoreError>;

    /// Keeps `set`'s last good list (a JSON document of its entries: appids,
    /// names, policies; never a refresh token), replacing the one before.
    fn save_set_list(&self, set: &str, list: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Claims the `monthly_report` of `month` (`YYYY-MM`) for `appid`: true
    /// the first time only, whichever process asks.
    fn claim_report(
        &self,
        appid: &str,
        month: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Pacing's memory of every account that has one, as (appid, memory):
    /// what the decision step learned, so a restart goes on from it (SPEC
    /// section 3, "Its memory is the ledger's"). The memory is
    /// [`crate::pacing::Pace`] as JSON.
    fn pacing_memories(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Merges `replica`'s pacing `notes` on `appid` (times in `timezone`)
    /// into the memory the ledger keeps ([`crate::pacing::merge_into`]), as
    /// of `at`, under a lock every writer of that memory takes: replicas
    /// share one memory, and no note is lost or counted twice. Returns the
    /// last of the replica's notes the memory holds.
    fn merge_pacing_notes(
        &self,
        appid: &str,
        replica: &str,
        notes: &[(u64, crate::pacing::Note)],
        timezone: Tz,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// The account set lists' statements, the same in both dialects (`$n` is a
/// parameter in SQLite too); each store keeps only its table's DDL.
pub(crate) const SET_LIST_GET: &str = "SELECT list FROM account_set_lists WHERE set_name = $1";
pub(crate) const SET_LIST_SAVE: &str =
    "INSERT INTO account_set_lists (set_name, list, saved_at) VALUES ($1, $2, $3)
     ON CONFLICT (set_name) DO UPDATE SET list = excluded.list, saved_at = excluded.saved_at";

/// Pacing's memory, the same statements on every store (`$N` is a
/// positional parameter to SQLite and PostgreSQL alike; `updated_at` is
/// bound in each store's own time type).
pub(crate) const PACING_MEMORIES: &str = "SELECT appid, memory FROM pacing_memory ORDER BY appid";
pub(crate) const PACING_MEMORY_OF: &str = "SELECT memory FROM pacing_memory WHERE appid = $1";
pub(crate) const SAVE_PACING_MEMORY: &str =
    "INSERT INTO pacing_memory (appid, memory, updated_at) VALUES ($1, $2, $3)
     ON CONFLICT (appid) DO UPDATE SET memory = excluded.memory, updated_at = excluded.updated_at";

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

/// What [`Store::finish`] does with a row that is no longer `pending`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The same outcome is there: an earlier write landed (a retry).
    Already,
    /// Recovery marked it `ambiguous` while its clear was still in flight
    /// (the ledger session was lost): WeChat's answer replaces the guess.
    Reconcile,
    /// Another outcome that is not a guess: kept, and the caller told.
    Conflict(String),
}

impl Settled {
    pub(crate) fn of(current: &str, ours: &Outcome) -> Self {
        let (label, ..) = outcome_columns(ours);
        match current {
            c if c == label => Settled::Already,
            "ambiguous" => Settled::Reconcile,
            c => Settled::Conflict(c.to_string()),
        }
    }
}

/// The rest of [`Store::finish`] when no `pending` row took the outcome:
/// `current` is the row's outcome (`None`: no such row), and `rewrite` puts
/// ours over recovery's guess with this `errmsg`.
pub(crate) fn settle_finished(
    id: AttemptId,
    current: Option<String>,
    outcome: &Outcome,
    rewrite: impl FnOnce(&str) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let current = current.ok_or(StoreError::NoSuchAttempt(id))?;
    let (label, _, errmsg) = outcome_columns(outcome);
    match Settled::of(&current, outcome) {
        Settled::Already => Ok(()),
        Settled::Reconcile => rewrite(&reconciled(errmsg)),
        Settled::Conflict(found) => Err(StoreError::Settled {
            id,
            found,
            ours: label,
        }),
    }
}

/// The note kept in `errmsg` when an outcome replaces recovery's guess.
fn reconciled(errmsg: Option<&str>) -> String {
    let note = "recovered as ambiguous while in flight, then recorded from WeChat's answer";
    match errmsg {
        Some(m) => format!("{m} ({note})"),
        None => note.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    /// Issue 19, item 4: the log names the ledger as a user wrote it, never
    /// a Rust `Debug` value, and never a password.
    #[test]
    fn the_ledger_is_shown_as_written_without_its_password() {
        let pg = |url: &str| StateLocation::Postgres(Secret::new(url)).to_string();
        let cases = [
            (
                StateLocation::Sqlite("quotawatch.db".into()).to_string(),
                "quotawatch.db",
            ),
            (
                pg("postgres://qw:s3cret@db.internal:5432/ledger?sslmode=require"),
                "postgres://qw:********@db.internal:5432/ledger?sslmode=require",
            ),
            (pg("postgresql://qw@db/ledger"), "postgresql://qw@db/ledger"),
            (
                pg("postgres://db/ledger?user=qw&password=s3cret"),
                "postgres://db/ledger?user=qw&password=********",
            ),
            (pg("postgres://a:b@c@host"), "postgres://a:********@host"),
            (pg("s3cret"), "********"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
            assert!(!got.contains("s3cret"), "{got}");
        }
    }
}
