//! Lockout accounting in the daemon (SPEC section 5): every signal's
//! evidence, with the decision the dispatcher took on it, goes to the ledger's
//! episodes ([`crate::store::episodes`]); and pacing's memory of the account
//! goes to the ledger beside them (SPEC section 3).
//!
//! The dispatcher must not wait on the ledger, so [`Recorder::note`] and
//! [`Recorder::remember`] only queue; one blocking task writes, merging what
//! queued meanwhile into one note and one memory per account (a storm of
//! signals is a few transactions, not one per signal). While the ledger does
//! not answer, notes are kept (merged, so per account, not per signal) and
//! written when it does.

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
    note: Option<LockoutNote>,
    /// Pacing's memory, and when it was taken: the latest replaces the rest.
    memory: Option<(String, DateTime<Utc>)>,
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
            note: Some(note),
            memory: None,
        });
    }

    /// Pacing's memory of `account` as of `at`, for the ledger to keep.
    pub fn remember(
        &self,
        account: &Arc<Account>,
        timezone: Tz,
        memory: String,
        at: DateTime<Utc>,
    ) {
        let _ = self.tx.send(Noted {
            account: account.clone(),
            timezone,
            note: None,
            memory: Some((memory, at)),
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
        pending.retain(|_, n| match save(store, n) {
            Ok(()) => false,
            Err(e) => {
                if !failing {
                    tracing::warn!(account = %n.account.name, error = %e, "Cannot record the lockout episode yet; keeping it until the ledger answers");
                }
                true
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

/// Writes what `n` holds, dropping each part the ledger took.
fn save(store: &dyn Store, n: &mut Noted) -> Result<(), crate::store::StoreError> {
    if let Some(note) = &n.note {
        store.note_lockout(&clearer::key(&n.account, n.timezone), note)?;
        n.note = None;
    }
    if let Some((memory, at)) = &n.memory {
        store.save_pacing_memory(&n.account.appid, memory, *at)?;
        n.memory = None;
    }
    Ok(())
}

fn add(pending: &mut BTreeMap<String, Noted>, n: Noted) {
    match pending.get_mut(&n.account.appid) {
        Some(p) => {
            p.note = match (p.note.take(), n.note) {
                (Some(mut a), Some(b)) => {
                    a.merge(b);
                    Some(a)
                }
                (a, b) => a.or(b),
            };
            p.memory = n.memory.or(p.memory.take());
            p.account = n.account;
            p.timezone = n.timezone;
        }
        None => {
            pending.insert(n.account.appid.clone(), n);
        }
    }
}
