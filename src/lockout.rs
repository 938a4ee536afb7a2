//! Lockout accounting in the daemon (SPEC section 5): every signal's
//! evidence, with the decision the dispatcher took on it, goes to the ledger's
//! episodes ([`crate::store::episodes`]); and pacing's notes on the account
//! go to the ledger beside them, merged into its memory (SPEC section 3).
//!
//! The dispatcher must not wait on the ledger, so [`Recorder::note`] and
//! [`Recorder::remember`] only queue; one blocking task writes, merging what
//! queued meanwhile into one note and one batch of pacing notes per account
//! (a storm of signals is a few transactions, not one per signal), and says
//! back which pacing notes the ledger took ([`Merged`]). While the ledger
//! does not answer, both are kept and written when it does: the lockout
//! notes merged per account, pacing's notes one per signal (the decision
//! step keeps them too, until the ledger has them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio_util::task::TaskTracker;

use crate::clearer;
use crate::pacing::Note;
use crate::policy::SkipReason;
use crate::settings::Account;
use crate::store::{LockoutNote, Store};

/// How long the writer waits before trying a ledger that refused a note.
const RETRY: Duration = Duration::from_secs(1);

struct Noted {
    account: Arc<Account>,
    timezone: Tz,
    note: Option<LockoutNote>,
    /// Pacing's notes, in order, and when the latest was handed over.
    pacing: Option<(Notes, DateTime<Utc>)>,
}

/// Pacing's notes with their numbers ([`crate::decision::Decider::take_notes`]).
type Notes = Vec<(u64, Note)>;

/// Where the writer merges pacing's notes from: this process's name among
/// the replicas, and who hears which notes the ledger took.
struct Merging {
    replica: String,
    merged: mpsc::UnboundedSender<Merged>,
}

/// The ledger's memory of an account holds this process's pacing notes up
/// to `seq` ([`crate::decision::Decider::merged`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub appid: String,
    pub seq: u64,
}

/// The dispatcher's handle on the writer; the writer stops, after writing
/// what is queued, once the handle is dropped.
pub struct Recorder {
    tx: mpsc::UnboundedSender<Noted>,
}

impl Recorder {
    /// Starts the writer on `tracker` (so a graceful stop waits for it);
    /// it merges pacing's notes as `replica`'s and says on `merged` which
    /// the ledger took.
    pub fn start(
        store: Arc<dyn Store>,
        tracker: &TaskTracker,
        replica: String,
        merged: mpsc::UnboundedSender<Merged>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let merging = Merging { replica, merged };
        tracker.spawn_blocking(move || write(store.as_ref(), rx, &merging));
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
            pacing: None,
        });
    }

    /// Pacing's notes on `account` as of `at`, for the ledger to merge
    /// into its memory.
    pub fn remember(&self, account: &Arc<Account>, timezone: Tz, notes: Notes, at: DateTime<Utc>) {
        let _ = self.tx.send(Noted {
            account: account.clone(),
            timezone,
            note: None,
            pacing: Some((notes, at)),
        });
    }
}

fn write(store: &dyn Store, mut rx: mpsc::UnboundedReceiver<Noted>, merging: &Merging) {
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
        pending.retain(|_, n| match save(store, n, merging) {
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
fn save(
    store: &dyn Store,
    n: &mut Noted,
    merging: &Merging,
) -> Result<(), crate::store::StoreError> {
    if let Some(note) = &n.note {
        store.note_lockout(&clearer::key(&n.account, n.timezone), note)?;
        n.note = None;
    }
    if let Some((notes, at)) = &n.pacing {
        let (appid, replica) = (&n.account.appid, &merging.replica);
        let seq = store.merge_pacing_notes(appid, replica, notes, n.timezone, *at)?;
        n.pacing = None;
        let appid = appid.clone();
        let _ = merging.merged.send(Merged { appid, seq });
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
            p.pacing = match (p.pacing.take(), n.pacing) {
                (Some((mut notes, _)), Some((more, at))) => {
                    notes.extend(more);
                    Some((notes, at))
                }
                (a, b) => a.or(b),
            };
            p.account = n.account;
            p.timezone = n.timezone;
        }
        None => {
            pending.insert(n.account.appid.clone(), n);
        }
    }
}
