//! Lockout accounting in the daemon (SPEC section 5): every signal's
//! evidence, with the decision the dispatcher took on it, goes to the ledger's
//! episodes ([`crate::store::episodes`]).
//!
//! The dispatcher must not wait on the ledger, so [`Recorder::note`] only
//! queues; one blocking task writes, merging what queued meanwhile into one
//! note per account (a storm of signals is a few transactions, not one per
//! signal). While the ledger does not answer, notes are kept (merged, so per
//! account, not per signal) and written when it does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio_util::task::TaskTracker;

use crate::clearer;
use crate::policy::SkipReason;
use crate::settings::Account;
use crate::store::{LockoutNote, Store};

/// How long the writer waits before trying a ledger that refused a note.
const RETRY: Duration = Duration::from_secs(1);

struct Noted {
    account: Arc<Account>,
    timezone: Tz,
    note: LockoutNote,
}

/// The dispatcher's handle on the writer; the writer stops, after writing
/// what is queued, once the handle is dropped.
pub struct Recorder {
    tx: mpsc::UnboundedSender<Noted>,
}

impl Recorder {
    /// Starts the writer on `tracker` (so a graceful stop waits for it).
    pub fn start(store: Arc<dyn Store>, tracker: &TaskTracker) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tracker.spawn_blocking(move || write(store.as_ref(), rx));
        Self { tx }
    }

    /// Evidence for `account` at `at`, and the refusal it met here if any
    /// (`None`: it was asked about, or counted by a decision in flight).
    pub fn note(
        &self,
        account: &Arc<Account>,
        timezone: Tz,
        at: DateTime<Utc>,
        refused: Option<SkipReason>,
    ) {
        let note = LockoutNote::at(at, refused.map(SkipReason::as_str), account.policy.window);
        let _ = self.tx.send(Noted {
            account: account.clone(),
            timezone,
            note,
        });
    }
}

fn write(store: &dyn Store, mut rx: mpsc::UnboundedReceiver<Noted>) {
    let mut pending: BTreeMap<String, Noted> = BTreeMap::new();
    let mut failing = false;
    loop {
        let mut closed = false;
        if pending.is_empty() {
            match rx.blocking_recv() {
                Some(n) => add(&mut pending, n),
                None => break,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(n) => add(&mut pending, n),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        pending.retain(|_, n| {
            match store.note_lockout(&clearer::key(&n.account, n.timezone), &n.note) {
                Ok(()) => false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(account = %n.account.name, error = %e, "Cannot record the lockout episode yet; keeping it until the ledger answers");
                    }
                    true
                }
            }
        });
        failing = !pending.is_empty();
        if failing && closed {
            tracing::warn!(
                accounts = pending.len(),
                "Stopping with lockout evidence the ledger did not take; its episodes start later or not at all"
            );
            break;
        }
        if failing {
            std::thread::sleep(RETRY);
        }
    }
}

fn add(pending: &mut BTreeMap<String, Noted>, n: Noted) {
    match pending.get_mut(&n.account.appid) {
        Some(p) => {
            p.note.merge(n.note);
            p.account = n.account;
            p.timezone = n.timezone;
        }
        None => {
            pending.insert(n.account.appid.clone(), n);
        }
    }
}
