//! The SQLite ledger: one file, WAL mode, `synchronous = FULL`, schema versioned
//! by `PRAGMA user_version`.
//!
//! Cross-process safety comes from `BEGIN IMMEDIATE`: [`SqliteStore::reserve`]
//! takes the database's write lock before it reads the snapshot, so two
//! processes (the daemon and `quotawatch clear`, or two daemons) serialise their
//! decisions and neither can spend budget the other has reserved.
//!
//! Its tests are in `tests/store_sqlite.rs`: the store contract every ledger
//! meets, and what only this one has (owners by process id, `user_version`).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::episodes::{self, EpisodeRow, EpisodeTx};
use super::*;
use crate::calendar;

/// Schema migrations, applied in order; `user_version` is the count applied.
const MIGRATIONS: &[&str] = &[
    // 1: attempts, per-account flags, log positions.
    "CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        appid TEXT NOT NULL,
        account TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('full', 'api')),
        cgi_path TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        outcome TEXT NOT NULL CHECK (outcome IN ('pending', 'ok', 'failed', 'ambiguous')),
        errcode INTEGER,
        errmsg TEXT,
        source TEXT NOT NULL,
        trigger TEXT NOT NULL,
        evidence INTEGER NOT NULL,
        forced INTEGER NOT NULL,
        owner TEXT NOT NULL,
        verified INTEGER
    );
    CREATE INDEX attempts_by_appid ON attempts (appid, started_at);
    CREATE TABLE account_flags (
        appid TEXT PRIMARY KEY,
        exhausted_until INTEGER,
        disabled_fingerprint TEXT,
        disabled_reason TEXT,
        disabled_at INTEGER
    );
    CREATE TABLE log_positions (
        source TEXT NOT NULL,
        path TEXT NOT NULL,
        file_id TEXT NOT NULL,
        offset INTEGER NOT NULL,
        PRIMARY KEY (source, path)
    );",
    // 2: every decision looks for pending rows; without this it scans the table.
    "CREATE INDEX attempts_pending ON attempts (appid) WHERE outcome = 'pending';",
    // 3: durable deduplication: the idempotency keys an attempt acted on.
    "CREATE TABLE acted_keys (
        appid TEXT NOT NULL,
        idem_key TEXT NOT NULL,
        attempt INTEGER NOT NULL REFERENCES attempts (id),
        acted_at INTEGER NOT NULL,
        PRIMARY KEY (appid, idem_key)
    );",
    // 4: lockout accounting: episodes and the decisions that did not clear.
    "CREATE TABLE episodes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        appid TEXT NOT NULL,
        account TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        resets_at INTEGER NOT NULL,
        ended_at INTEGER,
        attempt INTEGER REFERENCES attempts (id)
    );
    CREATE INDEX episodes_by_appid ON episodes (appid, started_at);
    CREATE TABLE episode_decisions (
        episode INTEGER NOT NULL REFERENCES episodes (id),
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_at INTEGER NOT NULL,
        last_at INTEGER NOT NULL,
        PRIMARY KEY (episode, reason)
    );
    CREATE TABLE reports (
        appid TEXT NOT NULL,
        month TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (appid, month)
    );",
    SET_LISTS,
    "CREATE TABLE pacing_memory (
        appid TEXT PRIMARY KEY,
        memory TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );",
];

/// Account sets' last good lists (SPEC 4a), one row a set; kept apart from
/// the other migrations, as its own step.
const SET_LISTS: &str = "CREATE TABLE account_set_lists (
        set_name TEXT PRIMARY KEY,
        list TEXT NOT NULL,
        saved_at INTEGER NOT NULL
    );";

/// How long a statement waits for another process's write lock.
const BUSY_WAIT: Duration = Duration::from_secs(30);
/// How long [`Store::ping`] waits for it.
const PING_WAIT: Duration = Duration::from_secs(1);
/// Prepared statements kept per connection: a reserve alone runs about 15,
/// more than rusqlite's default of 16 leaves room for, and re-preparing
/// them was most of a decision's cost.
const STATEMENT_CACHE: usize = 64;

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// `host:pid` written into intent rows, to tell a live owner from a dead one.
    owner: String,
    /// False in memory: no other process, no disk, nothing to wait on.
    on_disk: bool,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = open_busy(path)?;
        Ok(Self {
            conn: Mutex::new(conn),
            owner: owner_id(),
            on_disk: true,
        })
    }

    /// A ledger that lives in memory and dies with the store: for
    /// `quotawatch simulate`, whose decisions must not touch the real one.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            owner: owner_id(),
            on_disk: false,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens the file in WAL mode and migrates it. Switching a new file to WAL
/// can answer "database is locked" at once, without the busy handler, while
/// another process migrates it (processes started together on a new
/// ledger): that is tried again until [`BUSY_WAIT`].
fn open_busy(path: &Path) -> Result<Connection, StoreError> {
    let open = || -> Result<Connection, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.busy_timeout(BUSY_WAIT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(conn)
    };
    let deadline = std::time::Instant::now() + BUSY_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match open() {
            Err(StoreError::Sqlite(e))
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", known)?;
    tx.commit()?;
    Ok(())
}

fn recover_in(conn: &Connection, me: &str, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, owner, started_at FROM attempts WHERE outcome = 'pending'")?;
    let rows: Vec<(i64, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let limit = ms(now) - PENDING_LIMIT.as_millis() as i64;
    let mut n = 0;
    for (id, owner, started) in rows {
        if started < limit || !owner_alive(&owner, me) {
            n += conn.execute(
                "UPDATE attempts SET outcome = 'ambiguous', finished_at = ?2,
                     errmsg = 'the process sending this clear stopped before its outcome was recorded'
                 WHERE id = ?1 AND outcome = 'pending'",
                params![id, ms(now)],
            )?;
        }
    }
    Ok(n)
}

fn snapshot_in(
    conn: &Connection,
    account: &AccountKey<'_>,
    now: DateTime<Utc>,
) -> Result<Snapshot, StoreError> {
    let month = calendar::month(account.timezone, now);
    let day = calendar::day(account.timezone, now);
    let counted = "outcome IN ('pending', 'ok', 'ambiguous')";
    let count = |scope: &str,
                 from: DateTime<Utc>,
                 to: DateTime<Utc>|
     -> Result<u32, rusqlite::Error> {
        conn.prepare_cached(&format!("SELECT COUNT(*) FROM attempts WHERE appid = ?1 AND scope = ?2 AND {counted} AND started_at >= ?3 AND started_at < ?4"))?
            .query_row(params![account.appid, scope, ms(from), ms(to)], |r| r.get(0))
    };
    let last: Option<i64> = conn
        .prepare_cached(&format!("SELECT MAX(started_at) FROM attempts WHERE appid = ?1 AND scope = 'full' AND {counted}"))?
        .query_row(params![account.appid], |r| r.get(0))?;
    let in_flight: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM attempts WHERE appid = ?1 AND outcome = 'pending')",
        )?
        .query_row(params![account.appid], |r| r.get(0))?;
    let api_exhausted: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM attempts WHERE appid = ?1 AND scope = 'api' AND errcode = 48006 AND started_at >= ?2 AND started_at < ?3)")?
        .query_row(params![account.appid, ms(month.start), ms(month.end)], |r| r.get(0))?;
    let flags: Option<(Option<i64>, Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT exhausted_until, disabled_fingerprint, disabled_reason FROM account_flags WHERE appid = ?1",
        )?
        .query_row(params![account.appid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (exhausted_until, disabled_fp, disabled_reason) = flags.unwrap_or((None, None, None));
    Ok(Snapshot {
        month_used: count("full", month.start, month.end)?,
        day_used: count("full", day.start, day.end)?,
        api_month_used: count("api", month.start, month.end)?,
        api_exhausted,
        last_clear_at: last.map(from_ms),
        in_flight,
        exhausted: exhausted_until.is_some_and(|until| ms(now) < until),
        disabled: match disabled_fp {
            Some(fp) if fp == account.fingerprint => Some(disabled_reason.unwrap_or_default()),
            _ => None,
        },
        seen_evidence: 0,
        pacing: conn
            .prepare_cached(super::PACING_MEMORY_OF)?
            .query_row(params![account.appid], |r| r.get(0))
            .optional()?,
    })
}

/// The intent's keys that an attempt which counts acted on since `since`.
fn seen_keys(
    conn: &Connection,
    account: &AccountKey<'_>,
    intent: &Intent,
    since: i64,
) -> Result<Vec<String>, StoreError> {
    if intent.keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM acted_keys k JOIN attempts a ON a.id = k.attempt
         WHERE k.appid = ?1 AND k.idem_key = ?2 AND k.acted_at >= ?3
           AND a.outcome IN ('pending', 'ok', 'ambiguous')",
    )?;
    let mut seen = Vec::new();
    for (k, _) in &intent.keys {
        if stmt.exists(params![account.appid, k, since])? {
            seen.push(k.clone());
        }
    }
    Ok(seen)
}

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttemptRecord> {
    let scope: String = r.get("scope")?;
    let cgi_path: Option<String> = r.get("cgi_path")?;
    Ok(AttemptRecord {
        id: r.get("id")?,
        account: r.get("account")?,
        appid: r.get("appid")?,
        target: target_from_columns(&scope, cgi_path),
        started_at: from_ms(r.get("started_at")?),
        finished_at: r.get::<_, Option<i64>>("finished_at")?.map(from_ms),
        outcome: r.get("outcome")?,
        errcode: r.get("errcode")?,
        errmsg: r.get("errmsg")?,
        source: r.get("source")?,
        trigger: r.get("trigger")?,
        evidence: r.get("evidence")?,
        forced: r.get("forced")?,
        verified: r.get("verified")?,
    })
}

/// The rows of `table` (`attempts` or `episodes`, both keyed by appid and
/// start) that `filter` selects, newest first.
fn filtered<T>(
    conn: &Connection,
    table: &str,
    filter: &HistoryFilter,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM {table}
         WHERE (?1 IS NULL OR appid = ?1) AND (?2 IS NULL OR started_at >= ?2) AND (?3 IS NULL OR started_at < ?3)
         ORDER BY started_at DESC, id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.appid,
            filter.since.map(ms),
            filter.until.map(ms),
            filter.limit.map(i64::from).unwrap_or(-1)
        ],
        row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The episode statements on an open transaction (`BEGIN IMMEDIATE` holds
/// every other writer off).
struct Episodes<'a>(&'a Connection);

fn episode_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EpisodeRow> {
    Ok(EpisodeRow {
        id: r.get("id")?,
        account: r.get("account")?,
        appid: r.get("appid")?,
        started_at: from_ms(r.get("started_at")?),
        resets_at: from_ms(r.get("resets_at")?),
        ended_at: r.get::<_, Option<i64>>("ended_at")?.map(from_ms),
        attempt: r.get("attempt")?,
    })
}

impl EpisodeTx for Episodes<'_> {
    fn latest_episode(&mut self, appid: &str) -> Result<Option<EpisodeRow>, StoreError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT * FROM episodes WHERE appid = ?1 ORDER BY started_at DESC, id DESC LIMIT 1",
            )?
            .query_row(params![appid], episode_row)
            .optional()?)
    }

    fn open_episode(
        &mut self,
        account: &AccountKey<'_>,
        at: DateTime<Utc>,
        resets_at: DateTime<Utc>,
    ) -> Result<EpisodeId, StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO episodes (appid, account, started_at, resets_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![account.appid, account.name, ms(at), ms(resets_at)])?;
        Ok(self.0.last_insert_rowid())
    }

    fn move_episode_start(&mut self, id: EpisodeId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.0
            .prepare_cached("UPDATE episodes SET started_at = MIN(started_at, ?2) WHERE id = ?1")?
            .execute(params![id, ms(at)])?;
        Ok(())
    }

    fn add_decisions(
        &mut self,
        id: EpisodeId,
        reason: &str,
        count: u32,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO episode_decisions (episode, reason, count, first_at, last_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (episode, reason) DO UPDATE SET count = count + excluded.count,
                     first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at)",
            )?
            .execute(params![id, reason, count, ms(first), ms(last)])?;
        Ok(())
    }
}

/// A clear took effect: it ends the account's open episode.
fn end_episode(conn: &Connection, id: AttemptId, at: DateTime<Utc>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE episodes SET ended_at = ?2, attempt = ?1
         WHERE appid = (SELECT appid FROM attempts WHERE id = ?1)
           AND ended_at IS NULL AND resets_at > ?2 AND started_at <= ?2",
    )?
    .execute(params![id, ms(at)])?;
    Ok(())
}

impl Store for SqliteStore {
    fn reserve(
        &self,
        account: &AccountKey<'_>,
        intent: &Intent,
        now: DateTime<Utc>,
        decide: &mut dyn FnMut(&Snapshot) -> Verdict,
    ) -> Result<(Snapshot, Reservation), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        recover_in(&tx, &self.owner, now)?;
        let mut snapshot = snapshot_in(&tx, account, now)?;
        let since = ms(intent.keys_since(now));
        let seen = seen_keys(&tx, account, intent, since)?;
        snapshot.seen_evidence = intent.evidence_under(&seen);
        let reservation = match decide(&snapshot) {
            Verdict::Skip { reason, retry_at } => Reservation::Skip { reason, retry_at },
            Verdict::Clear(target) => {
                let (scope, cgi_path) = target_columns(&target);
                tx.execute(
                    "INSERT INTO attempts (appid, account, scope, cgi_path, started_at, outcome, source, trigger, evidence, forced, owner)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10)",
                    params![account.appid, account.name, scope, cgi_path, ms(now), intent.source, intent.trigger, intent.evidence, intent.forced, self.owner],
                )?;
                let id = tx.last_insert_rowid();
                if !intent.keys.is_empty() {
                    tx.prepare_cached("DELETE FROM acted_keys WHERE appid = ?1 AND acted_at < ?2")?
                        .execute(params![account.appid, since])?;
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO acted_keys (appid, idem_key, attempt, acted_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (appid, idem_key) DO UPDATE SET attempt = excluded.attempt, acted_at = excluded.acted_at",
                    )?;
                    // A seen key keeps the attempt that acted on it first.
                    for (k, _) in intent.keys.iter().filter(|(k, _)| !seen.contains(k)) {
                        insert.execute(params![account.appid, k, id, ms(now)])?;
                    }
                }
                Reservation::Clear { id, target }
            }
        };
        if let Some(note) = intent.lockout_note(now, &reservation) {
            episodes::note(&mut Episodes(&tx), account, &note)?;
        }
        tx.commit()?;
        Ok((snapshot, reservation))
    }

    fn finish(
        &self,
        id: AttemptId,
        outcome: &Outcome,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (label, errcode, errmsg) = outcome_columns(outcome);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE attempts SET outcome = ?2, errcode = ?3, errmsg = ?4, finished_at = ?5
             WHERE id = ?1 AND outcome = 'pending'",
            params![id, label, errcode, errmsg, ms(at)],
        )?;
        if n != 1 {
            let current: Option<String> = tx
                .query_row(
                    "SELECT outcome FROM attempts WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            settle_finished(id, current, outcome, |errmsg| {
                tx.execute(
                    "UPDATE attempts SET outcome = ?2, errcode = ?3, errmsg = ?4, finished_at = ?5 WHERE id = ?1",
                    params![id, label, errcode, errmsg, ms(at)],
                )?;
                Ok(())
            })?;
        }
        if *outcome == Outcome::Ok {
            end_episode(&tx, id, at)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn snapshot(
        &self,
        account: &AccountKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<Snapshot, StoreError> {
        snapshot_in(&self.conn(), account, now)
    }

    fn mark_exhausted(
        &self,
        account: &AccountKey<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let until = calendar::month(account.timezone, now).end;
        self.conn().execute(
            "INSERT INTO account_flags (appid, exhausted_until) VALUES (?1, ?2)
             ON CONFLICT (appid) DO UPDATE SET exhausted_until = excluded.exhausted_until",
            params![account.appid, ms(until)],
        )?;
        Ok(())
    }

    fn mark_disabled(
        &self,
        account: &AccountKey<'_>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO account_flags (appid, disabled_fingerprint, disabled_reason, disabled_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (appid) DO UPDATE SET disabled_fingerprint = excluded.disabled_fingerprint,
                 disabled_reason = excluded.disabled_reason, disabled_at = excluded.disabled_at",
            params![account.appid, account.fingerprint, reason, ms(now)],
        )?;
        Ok(())
    }

    fn enable(&self, appid: &str) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE account_flags SET disabled_fingerprint = NULL, disabled_reason = NULL, disabled_at = NULL
             WHERE appid = ?1 AND disabled_fingerprint IS NOT NULL",
            params![appid],
        )?;
        Ok(n > 0)
    }

    fn set_verified(&self, id: AttemptId, verified: bool) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE attempts SET verified = ?2 WHERE id = ?1",
            params![id, verified],
        )?;
        Ok(())
    }

    fn history(&self, filter: &HistoryFilter) -> Result<Vec<AttemptRecord>, StoreError> {
        filtered(&self.conn(), "attempts", filter, record)
    }

    fn recover(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        recover_in(&self.conn(), &self.owner, now)
    }

    fn log_position(&self, source: &str, path: &str) -> Result<Option<LogPosition>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT file_id, offset FROM log_positions WHERE source = ?1 AND path = ?2",
                params![source, path],
                |r| {
                    Ok(LogPosition {
                        file_id: r.get(0)?,
                        offset: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()?)
    }

    fn save_log_position(
        &self,
        source: &str,
        path: &str,
        pos: &LogPosition,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO log_positions (source, path, file_id, offset) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source, path) DO UPDATE SET file_id = excluded.file_id, offset = excluded.offset",
            params![source, path, pos.file_id, pos.offset as i64],
        )?;
        Ok(())
    }

    fn set_list(&self, set: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(SET_LIST_GET, params![set], |r| r.get(0))
            .optional()?)
    }

    fn save_set_list(&self, set: &str, list: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn()
            .execute(SET_LIST_SAVE, params![set, list, at.timestamp()])?;
        Ok(())
    }

    fn note_lockout(&self, account: &AccountKey<'_>, note: &LockoutNote) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        episodes::note(&mut Episodes(&tx), account, note)?;
        tx.commit()?;
        Ok(())
    }

    fn episodes(
        &self,
        filter: &HistoryFilter,
        now: DateTime<Utc>,
    ) -> Result<Vec<EpisodeRecord>, StoreError> {
        let conn = self.conn();
        let rows = filtered(&conn, "episodes", filter, episode_row)?;
        let mut decisions = conn.prepare_cached(
            "SELECT reason, count, first_at, last_at FROM episode_decisions WHERE episode = ?1 ORDER BY first_at, reason",
        )?;
        rows.into_iter()
            .map(|row| {
                let counts = decisions
                    .query_map(params![row.id], |r| {
                        Ok(DecisionCount {
                            reason: r.get(0)?,
                            count: r.get(1)?,
                            first_at: from_ms(r.get(2)?),
                            last_at: from_ms(r.get(3)?),
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(row.record(now, counts))
            })
            .collect()
    }

    fn lockout_totals(&self, now: DateTime<Utc>) -> Result<Vec<LockoutTotal>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT appid,
                    SUM(MAX(0, MIN(COALESCE(ended_at, resets_at), ?1) - started_at)),
                    MAX(ended_at IS NULL AND resets_at > ?1)
             FROM episodes GROUP BY appid ORDER BY appid",
        )?;
        let rows = stmt.query_map(params![ms(now)], |r| {
            Ok(LockoutTotal {
                appid: r.get(0)?,
                seconds: (r.get::<_, i64>(1)?.max(0) / 1000) as u64,
                locked: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn fleet(&self, period: &calendar::Period, now: DateTime<Utc>) -> Result<Fleet, StoreError> {
        let conn = self.conn();
        let (from, to, now) = (ms(period.start), ms(period.end), ms(now));
        let clears: i64 = conn.query_row(
            "SELECT COUNT(*) FROM attempts WHERE scope = 'full' AND outcome IN ('pending', 'ok', 'ambiguous')
             AND started_at >= ?1 AND started_at < ?2",
            params![from, to],
            |r| r.get(0),
        )?;
        let (episodes, locked): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(MAX(0, MIN(COALESCE(ended_at, resets_at), ?3) - started_at)), 0)
             FROM episodes WHERE started_at >= ?1 AND started_at < ?2",
            params![from, to, now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut stmt = conn.prepare_cached(
            "SELECT appid, MAX(locked), MAX(exhausted), MAX(disabled) FROM (
                 SELECT appid, 1 AS locked, 0 AS exhausted, NULL AS disabled FROM episodes
                 WHERE ended_at IS NULL AND resets_at > ?1 AND started_at <= ?1
                 UNION ALL
                 SELECT appid, 0, COALESCE(exhausted_until > ?1, 0), disabled_fingerprint FROM account_flags
                 WHERE exhausted_until > ?1 OR disabled_fingerprint IS NOT NULL
             ) GROUP BY appid ORDER BY appid",
        )?;
        let flagged = stmt
            .query_map(params![now], |r| {
                Ok(Flags {
                    appid: r.get(0)?,
                    locked: r.get(1)?,
                    exhausted: r.get(2)?,
                    disabled_fingerprint: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Fleet {
            clears: clears.max(0) as u64,
            episodes: episodes.max(0) as u64,
            locked_seconds: (locked.max(0) / 1000) as u64,
            flagged,
        })
    }

    fn claim_report(
        &self,
        appid: &str,
        month: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT INTO reports (appid, month, sent_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![appid, month, ms(now)],
        )?;
        Ok(n == 1)
    }

    fn pacing_memories(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(super::PACING_MEMORIES)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn merge_pacing_notes(
        &self,
        appid: &str,
        replica: &str,
        notes: &[(u64, crate::pacing::Note)],
        timezone: Tz,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let kept: Option<String> = tx
            .query_row(super::PACING_MEMORY_OF, params![appid], |r| r.get(0))
            .optional()?;
        let (memory, merged) = crate::pacing::merge_into(kept.as_deref(), replica, notes, timezone);
        tx.execute(super::SAVE_PACING_MEMORY, params![appid, memory, ms(at)])?;
        tx.commit()?;
        Ok(merged)
    }

    fn ping(&self) -> Result<(), StoreError> {
        // The write lock, as a decision takes it, then nothing written; with
        // a short wait, so a probe never holds the connection for long.
        let conn = self.conn();
        conn.busy_timeout(PING_WAIT)?;
        let result = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;");
        conn.busy_timeout(BUSY_WAIT)?;
        Ok(result?)
    }

    fn may_wait(&self) -> bool {
        self.on_disk
    }
}
