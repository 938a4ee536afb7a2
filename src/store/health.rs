//! Whether the ledger can be reached, as the daemon's last ledger work and
//! its probe found it. While it cannot, hooks and `/api/v1/signals` answer
//! 503 (the sender retries: nothing is accepted that could not be decided)
//! and `/readyz` names the ledger. A change either way is logged once.

use std::sync::Mutex;

use super::StoreError;

#[derive(Debug, Default)]
pub struct LedgerHealth {
    /// Why the ledger is unreachable; `None` while it answers.
    down: Mutex<Option<String>>,
}

impl LedgerHealth {
    /// Takes note of one ledger call's result. Only errors that say the
    /// ledger cannot be reached (or written) count; a missing row does not.
    pub fn observe<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.up(),
            Err(e) if e.unavailable() => self.down(e),
            Err(_) => {}
        }
    }

    /// Why the ledger is unreachable, if it is.
    pub fn unreachable(&self) -> Option<String> {
        self.lock().clone()
    }

    fn up(&self) {
        if self.lock().take().is_some() {
            tracing::info!("The ledger answers again; hooks accept signals");
        }
    }

    fn down(&self, e: &StoreError) {
        let mut down = self.lock();
        if down.is_none() {
            tracing::error!(error = %e, "The ledger is unreachable; hooks answer 503 until it answers again");
        }
        *down = Some(e.to_string());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.down.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StoreError {
    /// Whether the ledger could not be reached or written at all, as opposed
    /// to a question it answered (a missing attempt, a settled row).
    pub fn unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::DiskFull
                    | C::ReadOnly
                    | C::SystemIoFailure
                    | C::CannotOpen
                    | C::PermissionDenied
                    | C::OutOfMemory
            ),
            StoreError::Sqlite(_) => false,
            StoreError::Postgres(super::postgres::PgError::Db(e)) => {
                // No SQLSTATE: the connection, not the statement, failed.
                e.code().is_none() || e.is_closed()
            }
            StoreError::Postgres(_) => true,
            StoreError::Directory { .. } => true,
            StoreError::TooNew { .. }
            | StoreError::NoSuchAttempt(_)
            | StoreError::Settled { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn only_errors_of_reach_mark_the_ledger_down_and_any_answer_lifts_it() {
        let health = LedgerHealth::default();
        let cases: Vec<(Result<(), StoreError>, bool)> = vec![
            (Err(StoreError::NoSuchAttempt(1)), false),
            (Err(sqlite(rusqlite::ffi::SQLITE_CONSTRAINT)), false),
            (Err(sqlite(rusqlite::ffi::SQLITE_FULL)), true),
            (Err(StoreError::NoSuchAttempt(1)), true),
            (Ok(()), false),
            (Err(sqlite(rusqlite::ffi::SQLITE_BUSY)), true),
            (
                Err(StoreError::Postgres(
                    super::super::postgres::PgError::Stopped,
                )),
                true,
            ),
            (Ok(()), false),
        ];
        for (i, (result, down)) in cases.iter().enumerate() {
            health.observe(result);
            assert_eq!(health.unreachable().is_some(), *down, "case {i}");
        }
    }
}
