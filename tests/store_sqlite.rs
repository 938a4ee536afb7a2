//! The SQLite ledger on a real file in a temp dir: the store contracts
//! (`tests/contract/`), the same ones `tests/store_postgres.rs` runs against
//! PostgreSQL. What only SQLite has (owners told alive by process id, the
//! schema in `user_version`) is checked by the unit tests in
//! `src/store/sqlite.rs`.

#[path = "contract/lockout.rs"]
mod lockout_contract;
#[path = "contract/store.rs"]
mod store_contract;

use std::path::PathBuf;

use quotawatch::store::{SqliteStore, Store};

/// A temp dir holding one ledger file.
struct TestFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestFile {
    fn new() -> TestFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        TestFile { _dir: dir, path }
    }

    fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path).unwrap()
    }

    /// Opens one more store on the file, as another process would.
    fn opener(&self) -> impl Fn() -> Box<dyn Store> + '_ {
        || Box::new(self.open())
    }
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
fn reopening_keeps_rows_and_log_positions() {
    let file = TestFile::new();
    store_contract::reopening_keeps_rows_and_log_positions(&file.opener());
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
