//! The SQLite ledger on a real file in a temp dir: the store contracts
//! (`tests/contract/`), the same ones `tests/store_postgres.rs` runs against
//! PostgreSQL, and what only SQLite has: pending rows owned by a process id
//! (and ambiguous once older than an hour, whoever owns them), the schema in
//! `PRAGMA user_version`, the ledger's directory made on open.

#[path = "contract/lockout.rs"]
mod lockout_contract;
#[path = "contract/store.rs"]
mod store_contract;

use std::path::PathBuf;

use quotawatch::store::{HistoryFilter, SqliteStore, Store, StoreError};
use store_contract::{clear_once, key, utc};

/// The number of migrations `SqliteStore` knows (its `user_version`).
const SCHEMA_VERSION: i64 = 6;

/// A temp dir holding one ledger file.
struct TestFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestFile {
    fn new() -> TestFile {
        TestFile::at("ledger.db")
    }

    /// A ledger at `relative` in a new temp dir; its directories are left
    /// for the store to make.
    fn at(relative: &str) -> TestFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(relative);
        TestFile { _dir: dir, path }
    }

    fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path).unwrap()
    }

    /// Opens one more store on the file, as another process would.
    fn opener(&self) -> impl Fn() -> Box<dyn Store> + '_ {
        || Box::new(self.open())
    }

    /// A direct connection, to do what the store never does.
    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).unwrap()
    }
}

#[test]
fn pacing_notes_merge_into_one_memory() {
    let file = TestFile::new();
    store_contract::pacing_notes_merge_into_one_memory(&file.opener());
}

#[test]
fn concurrent_pacing_merges_lose_no_note() {
    let file = TestFile::new();
    store_contract::concurrent_pacing_merges_lose_no_note(&file.opener());
}

#[test]
fn keys_acted_on_are_known_for_the_window() {
    let file = TestFile::new();
    store_contract::keys_acted_on_are_known_for_the_window(&file.opener());
}

#[test]
fn counts_ok_and_ambiguous_not_failed() {
    let file = TestFile::new();
    store_contract::counts_ok_and_ambiguous_not_failed(&file.open());
}

#[test]
fn api_clears_have_their_own_count() {
    let file = TestFile::new();
    store_contract::api_clears_have_their_own_count(&file.open());
}

#[test]
fn months_follow_beijing_time() {
    let file = TestFile::new();
    store_contract::months_follow_beijing_time(&file.open());
}

#[test]
fn a_settled_attempt_keeps_its_outcome() {
    let file = TestFile::new();
    store_contract::a_settled_attempt_keeps_its_outcome(&file.open());
}

#[test]
fn a_month_report_is_claimed_once() {
    let file = TestFile::new();
    store_contract::a_month_report_is_claimed_once(&file.opener());
}

#[test]
fn skip_inserts_nothing() {
    let file = TestFile::new();
    store_contract::skip_inserts_nothing(&file.open());
}

#[test]
fn a_panicking_decision_rolls_back_and_releases_the_lock() {
    let file = TestFile::new();
    store_contract::a_panicking_decision_rolls_back_and_releases_the_lock(&file.opener());
}

#[test]
fn exhausted_until_month_end_and_disabled_until_config_changes() {
    let file = TestFile::new();
    store_contract::exhausted_until_month_end_and_disabled_until_config_changes(&file.open());
}

#[test]
fn a_pending_attempt_counts_and_stays_pending_while_its_writer_lives() {
    let file = TestFile::new();
    store_contract::a_pending_attempt_counts_and_stays_pending_while_its_writer_lives(
        &file.opener(),
    );
}

/// A pending row whose owner names a process of this host that does not run
/// is recovered as ambiguous, and still counts.
#[test]
fn a_dead_owners_pending_attempt_becomes_ambiguous() {
    let file = TestFile::new();
    let store = file.open();
    let now = utc("2026-11-28T02:00:00Z");
    let id = clear_once(&store, &key(), now);
    let snap = store.snapshot(&key(), now).unwrap();
    assert!(snap.in_flight);
    assert_eq!(snap.month_used, 1);
    // Pretend the row was written by a process that has exited.
    let dead = format!("{}:999999999", gethostname::gethostname().to_string_lossy());
    let n = file
        .raw()
        .execute(
            "UPDATE attempts SET owner = ?2 WHERE id = ?1",
            rusqlite::params![id, dead],
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(store.recover(now).unwrap(), 1);
    let h = store.history(&HistoryFilter::default()).unwrap();
    assert_eq!(h[0].outcome, "ambiguous");
    let snap = store.snapshot(&key(), now).unwrap();
    assert_eq!(snap.month_used, 1);
    assert!(!snap.in_flight);
}

/// A live owner's pending row is recovered once it is older than any
/// request waits (an hour). PostgreSQL differs here: a row belongs to the
/// database session that wrote it and is never recovered while that session
/// lives, however old (`pending_rows_belong_to_the_session_that_wrote_them`
/// in `tests/store_postgres.rs`).
#[test]
fn a_live_owners_pending_attempt_is_recovered_once_too_old() {
    let file = TestFile::new();
    let store = file.open();
    let now = utc("2026-11-28T02:00:00Z");
    clear_once(&store, &key(), now);
    assert_eq!(store.recover(now).unwrap(), 0);
    let nearly = now + chrono::Duration::minutes(59);
    assert_eq!(store.recover(nearly).unwrap(), 0, "still within the hour");
    let later = now + chrono::Duration::hours(2);
    assert_eq!(store.recover(later).unwrap(), 1, "too old to be in flight");
}

#[test]
fn a_sets_last_good_list_is_kept() {
    let file = TestFile::new();
    store_contract::a_sets_last_good_list_is_kept(&file.opener());
}

/// The contract, on a file whose directory does not exist yet; the schema
/// version is kept across the reopening.
#[test]
fn reopening_keeps_rows_log_positions_and_schema() {
    let file = TestFile::at("sub/ledger.db");
    assert!(!file.path.parent().unwrap().exists());
    store_contract::reopening_keeps_rows_and_log_positions(&file.opener());
    let version: i64 = file
        .raw()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn newer_schema_is_refused() {
    let file = TestFile::new();
    drop(file.open());
    file.raw().pragma_update(None, "user_version", 99).unwrap();
    assert!(matches!(
        SqliteStore::open(&file.path),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn history_filters_by_account_time_and_limit() {
    let file = TestFile::new();
    store_contract::history_filters_by_account_time_and_limit(&file.open());
}

#[test]
fn sqlite_episodes_follow_evidence_clears_and_resets() {
    let file = TestFile::new();
    lockout_contract::episodes_follow_evidence_clears_and_resets(&file.open());
}

/// The in-memory ledger `quotawatch simulate` decides on keeps the same
/// rules as the file, and each one is a ledger of its own.
#[test]
fn an_in_memory_ledger_keeps_the_contract_and_to_itself() {
    let store = SqliteStore::open_in_memory().unwrap();
    store_contract::counts_ok_and_ambiguous_not_failed(&store);
    store_contract::a_settled_attempt_keeps_its_outcome(&SqliteStore::open_in_memory().unwrap());
    lockout_contract::episodes_follow_evidence_clears_and_resets(
        &SqliteStore::open_in_memory().unwrap(),
    );
    let other = SqliteStore::open_in_memory().unwrap();
    assert_eq!(store.history(&HistoryFilter::default()).unwrap().len(), 3);
    assert!(other.history(&HistoryFilter::default()).unwrap().is_empty());
}

#[test]
fn the_fleet_is_summed_and_the_flagged_few_named() {
    let file = TestFile::new();
    store_contract::the_fleet_is_summed_and_the_flagged_few_named(&file.open());
}
