//! The dispatcher: the loop that feeds the decision step and performs what it
//! asks.
//!
//! Signals, finished decisions, reloads and wake-ups go into
//! [`Decider`](crate::decision::Decider) with `now` from the clearer's clock
//! (the wall clock, or a test's); its actions come out: a request for the
//! clearer (run as its own task, so a slow clear for one account never delays
//! decisions for another), a time to wake, a refusal to count. The rules
//! live in [`crate::decision`] and, under the ledger's lock, in
//! [`crate::policy`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clearer::{ClearRequest, Clearer};
use crate::config::Config;
use crate::decision::{Action, Ask, Decider, Finished};
use crate::lockout::{Merged, Recorder};
use crate::metrics::Metrics;
use crate::policy::SkipReason;
use crate::settings::Account;
use crate::signal::Signal;

/// What the dispatcher works with; replaced as a whole on reload.
#[derive(Clone)]
pub struct Runtime {
    pub config: Arc<Config>,
    pub clearer: Arc<Clearer>,
}

struct Done {
    appid: String,
    finished: Finished,
}

pub struct Dispatcher {
    runtime: watch::Receiver<Runtime>,
    metrics: Arc<Metrics>,
    decider: Decider,
    /// Each signal's evidence, for the ledger's lockout episodes.
    lockout: Recorder,
    /// The earliest wake-up the decider asked for.
    wake: Option<DateTime<Utc>>,
    tracker: TaskTracker,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    /// Which of pacing's notes the ledger took.
    merged_rx: mpsc::UnboundedReceiver<Merged>,
    /// The quotas WeChat reported.
    quota_tx: mpsc::UnboundedSender<Quota>,
    quota_rx: mpsc::UnboundedReceiver<Quota>,
}

/// An API's daily limit, as WeChat reported it for an account.
struct Quota {
    appid: String,
    calls: u64,
}

impl Dispatcher {
    pub fn new(
        runtime: watch::Receiver<Runtime>,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (merged_tx, merged_rx) = mpsc::unbounded_channel();
        let (quota_tx, quota_rx) = mpsc::unbounded_channel();
        // This process's name among the replicas that share pacing's memory.
        let replica = crate::store::replica_id();
        let (timezone, store) = {
            let rt = runtime.borrow();
            (rt.config.daemon.timezone, rt.clearer.store.clone())
        };
        Self {
            lockout: Recorder::start(store, &tracker, replica.clone(), merged_tx),
            runtime,
            metrics,
            decider: Decider::shared(timezone, replica),
            wake: None,
            tracker,
            done_tx,
            done_rx,
            merged_rx,
            quota_tx,
            quota_rx,
        }
    }

    /// Runs until `shutdown`; in-flight clears are tracked by the tracker the
    /// caller waits on.
    pub async fn run(mut self, mut signals: mpsc::Receiver<Signal>, shutdown: CancellationToken) {
        self.recall().await;
        loop {
            let sleep = self
                .wake
                .map(|at| (at - self.now()).to_std().unwrap_or_default());
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = self.done_rx.recv() => self.finished(done),
                Some(m) = self.merged_rx.recv() => self.decider.merged(&m.appid, m.seq),
                Some(q) = self.quota_rx.recv() => {
                    let now = self.now();
                    self.decider.quota(&q.appid, now, q.calls);
                    let config = self.runtime.borrow().config.clone();
                    self.remember(&config);
                }
                changed = self.runtime.changed() => {
                    if changed.is_err() { break; }
                    let timezone = self.runtime.borrow().config.daemon.timezone;
                    self.decider.reload(timezone);
                }
                _ = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {
                    self.wake = None;
                    let config = self.runtime.borrow().config.clone();
                    let now = self.now();
                    let actions = self
                        .decider
                        .tick(now, |appid| config.account(appid).map(|a| &a.policy));
                    self.perform(actions);
                }
                signal = signals.recv() => match signal {
                    Some(s) => self.signal(s),
                    None => break,
                },
            }
        }
    }

    /// Pacing's memory as the ledger kept it, before the first signal: a
    /// restart goes on from what the month has shown. Without it (the
    /// ledger does not answer) pacing starts afresh; the ledger's caps hold.
    async fn recall(&mut self) {
        let store = self.runtime.borrow().clearer.store.clone();
        let kept = match tokio::task::spawn_blocking(move || store.pacing_memories()).await {
            Ok(read) => read.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match kept {
            Ok(memories) => {
                for (appid, memory) in memories {
                    match crate::pacing::Pace::from_memory(&memory) {
                        Some(pace) => self.decider.restore(&appid, pace),
                        None => {
                            tracing::warn!(appid = %appid, "Pacing's memory in the ledger cannot be read; starting the month afresh")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read pacing's memory from the ledger; starting afresh")
            }
        }
    }

    /// Hands pacing's notes to the ledger, to merge into its memory.
    fn remember(&mut self, config: &Config) {
        let now = self.now();
        for (appid, notes) in self.decider.take_notes() {
            match config.account(&appid) {
                Some(account) => {
                    let tz = config.daemon.timezone;
                    self.lockout.remember(account, tz, notes, now);
                }
                // Gone with a reload: its notes have nowhere to go.
                None => self.decider.merged(&appid, u64::MAX),
            }
        }
    }

    /// The clearer's clock: the wall clock, or a test's.
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.runtime.borrow().clearer.clock.now()
    }

    fn signal(&mut self, signal: Signal) {
        let config = self.runtime.borrow().config.clone();
        let Some(account) = config.account(&signal.account) else {
            self.metrics
                .decision("skip", SkipReason::UnknownAccount.as_str());
            tracing::warn!(account = %signal.account, source = %signal.source, decision = "skip", reason = "unknown_account", "Signal names no configured account");
            return;
        };
        let actions =
            self.decider
                .signal(&account.appid, &account.policy, &signal, signal.received_at);
        let refused = actions.iter().find_map(|a| match a {
            Action::Skip { reason, .. } => Some(*reason),
            _ => None,
        });
        // A duplicate is evidence already counted.
        if refused != Some(SkipReason::Duplicate) {
            let timezone = config.daemon.timezone;
            self.lockout
                .note(account, timezone, signal.received_at, refused);
        }
        self.remember(&config);
        if let Some(cgi_path) = &signal.cgi_path {
            self.ask_quota(account, cgi_path, signal.received_at);
        }
        self.perform(actions);
    }

    /// Asks WeChat how many calls a day the API a signal names serves,
    /// when the decision step says it is due ([`Decider::quota_due`]: once
    /// per account, API and day). No decision waits for the answer; a
    /// failed read means pacing goes on without it until tomorrow.
    fn ask_quota(&mut self, account: &Arc<Account>, cgi_path: &str, now: DateTime<Utc>) {
        let has_token = account.token_from().is_some();
        let policy = &account.policy;
        if !self
            .decider
            .quota_due(&account.appid, policy, has_token, cgi_path, now)
        {
            return;
        }
        let wechat = self.runtime.borrow().clearer.wechat.clone();
        let (account, cgi_path, tx) =
            (account.clone(), cgi_path.to_string(), self.quota_tx.clone());
        self.tracker.spawn(async move {
            match wechat.daily_limit(&account, &cgi_path).await {
                Ok(calls) => {
                    let appid = account.appid.clone();
                    let _ = tx.send(Quota { appid, calls });
                }
                Err(e) => {
                    let error = crate::error_chain::display(&e);
                    tracing::warn!(account = %account.name, cgi_path, error, "Cannot read the API's quota; pacing goes on without it today");
                }
            }
        });
    }

    fn finished(&mut self, done: Done) {
        let config = self.runtime.borrow().config.clone();
        let Some(account) = config.account(&done.appid) else {
            return;
        };
        let now = self.now();
        let actions = self
            .decider
            .finished(&account.appid, &account.policy, done.finished, now);
        self.remember(&config);
        self.perform(actions);
    }

    fn perform(&mut self, actions: Vec<Action>) {
        let rt = self.runtime.borrow().clone();
        for action in actions {
            match action {
                Action::Decide(ask) => {
                    if let Some(account) = rt.config.account(&ask.appid).cloned() {
                        self.spawn_clear(rt.clearer.clone(), account, ask);
                    }
                }
                Action::Wake(at) => self.wake = Some(self.wake.map_or(at, |w| w.min(at))),
                Action::Skip {
                    appid,
                    reason,
                    evidence,
                } => {
                    self.metrics.decision("skip", reason.as_str());
                    let name = rt
                        .config
                        .account(&appid)
                        .map(|a| a.name.as_str())
                        .unwrap_or(&appid);
                    match reason {
                        SkipReason::Duplicate => {
                            tracing::debug!(account = %name, evidence, "Duplicate signal dropped")
                        }
                        SkipReason::InsufficientEvidence => {
                            tracing::debug!(account = %name, evidence, decision = "skip", reason = "insufficient_evidence", "Waiting for more evidence")
                        }
                        _ => {}
                    }
                }
                Action::Expired { appid, evidence } => {
                    let name = rt
                        .config
                        .account(&appid)
                        .map(|a| a.name.as_str())
                        .unwrap_or(&appid);
                    tracing::warn!(account = %name, evidence, "The ledger was unreachable until this evidence left its window; nothing was decided");
                }
            }
        }
    }

    fn spawn_clear(&self, clearer: Arc<Clearer>, account: Arc<Account>, ask: Ask) {
        let done = self.done_tx.clone();
        let request = ClearRequest::from(ask);
        self.tracker.spawn(async move {
            let finished = match clearer.handle(&account, request).await {
                Ok(report) => Finished::from(report),
                Err(e) => {
                    tracing::error!(account = %account.name, appid = %account.appid, error = %e, "Clear could not be decided; asking again shortly");
                    Finished::LedgerError
                }
            };
            let _ = done.send(Done {
                appid: account.appid.clone(),
                finished,
            });
        });
    }
}
