//! The dispatcher: from the signal queue to the clearer.
//!
//! Per account it keeps an evidence window (`min_events` within `window`),
//! drops duplicates (the same idempotency key or alert fingerprint within the
//! window), allows one clear in flight at a time, and remembers until when the
//! policy's last refusal holds so a storm of signals does not become a storm of
//! ledger transactions. Clears run as their own tasks: a slow clear for one
//! account never delays decisions for another. The policy itself runs in the
//! clearer, under the ledger's lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calendar;
use crate::clearer::{ClearRequest, Clearer, Report};
use crate::config::{Account, Config};
use crate::event::{ClearTarget, Outcome};
use crate::metrics::Metrics;
use crate::policy::{Decision, SkipReason};
use crate::signal::Signal;

/// For refusals without a natural end (disabled, dry-run): stay quiet this
/// long, so a storm is absorbed but a change is noticed soon.
const QUIET_SECS: i64 = 60;

/// What the dispatcher works with; replaced as a whole on reload.
#[derive(Clone)]
pub struct Runtime {
    pub config: Arc<Config>,
    pub clearer: Arc<Clearer>,
}

/// Evidence and state for one account (keyed by appid, like the ledger).
#[derive(Default)]
struct AccountState {
    /// (arrival, count, cgi_path) within the window.
    events: VecDeque<(DateTime<Utc>, u32, Option<String>)>,
    /// Idempotency keys seen, with their arrival.
    keys: HashMap<String, DateTime<Utc>>,
    in_flight: bool,
    /// The policy refused until then; signals before it are counted, not asked.
    quiet: Option<(DateTime<Utc>, SkipReason)>,
}

impl AccountState {
    /// Drops evidence older than `window`, and evidence from before the
    /// latest daily reset (00:00 in `tz`): the quota has reset since, so a
    /// 23:59 signal must not spend a clear at 00:00 (SPEC section 2).
    /// Idempotency keys live for the whole window, across the reset.
    fn prune(&mut self, now: DateTime<Utc>, window: Duration, tz: Tz) {
        let start = chrono::Duration::from_std(window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let fresh = start.max(calendar::day(tz, now).start);
        while self.events.front().is_some_and(|(t, ..)| *t < fresh) {
            self.events.pop_front();
        }
        self.keys.retain(|_, t| *t >= start);
    }

    /// Adds evidence; signals for the same API within a second share one
    /// entry, so a flood without keys costs memory per second, not per signal.
    fn push(&mut self, now: DateTime<Utc>, count: u32, cgi_path: Option<String>) {
        if let Some((t, n, p)) = self.events.back_mut() {
            if *p == cgi_path && now - *t < chrono::Duration::seconds(1) {
                *n = n.saturating_add(count);
                return;
            }
        }
        self.events.push_back((now, count, cgi_path));
    }

    fn evidence(&self) -> u32 {
        self.events
            .iter()
            .map(|(_, n, _)| *n)
            .fold(0u32, u32::saturating_add)
    }

    /// The one API named by every signal in the window, if they agree; more
    /// than one exhausted API (or any signal without one) means a full clear.
    fn single_cgi_path(&self) -> Option<String> {
        let mut paths = self.events.iter().map(|(_, _, p)| p.as_ref());
        let first = paths.next()??;
        paths.all(|p| p == Some(first)).then(|| first.clone())
    }
}

struct Done {
    appid: String,
    report: Option<Report>,
    cgi_path: Option<String>,
}

pub struct Dispatcher {
    runtime: watch::Receiver<Runtime>,
    metrics: Arc<Metrics>,
    accounts: HashMap<String, AccountState>,
    tracker: TaskTracker,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
}

impl Dispatcher {
    pub fn new(
        runtime: watch::Receiver<Runtime>,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            runtime,
            metrics,
            accounts: HashMap::new(),
            tracker,
            done_tx,
            done_rx,
        }
    }

    /// Runs until `shutdown`; in-flight clears are tracked by the tracker the
    /// caller waits on.
    pub async fn run(mut self, mut signals: mpsc::Receiver<Signal>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = self.done_rx.recv() => self.finished(done),
                changed = self.runtime.changed() => {
                    if changed.is_err() { break; }
                    // New policy settings or credentials: earlier refusals may no longer hold.
                    self.accounts.values_mut().for_each(|s| s.quiet = None);
                }
                signal = signals.recv() => match signal {
                    Some(s) => self.signal(s),
                    None => break,
                },
            }
        }
    }

    fn signal(&mut self, signal: Signal) {
        let rt = self.runtime.borrow().clone();
        let Some(account) = rt.config.account(&signal.account).cloned() else {
            self.metrics
                .decision("skip", SkipReason::UnknownAccount.as_str());
            tracing::warn!(account = %signal.account, source = %signal.source, decision = "skip", reason = "unknown_account", "Signal names no configured account");
            return;
        };
        let now = signal.received_at;
        let state = self.accounts.entry(account.appid.clone()).or_default();
        state.prune(now, account.policy.window, rt.config.daemon.timezone);
        if let Some(key) = &signal.key {
            if state.keys.contains_key(key) {
                self.metrics
                    .decision("skip", SkipReason::Duplicate.as_str());
                tracing::debug!(account = %account.name, source = %signal.source, key = %key, "Duplicate signal dropped");
                return;
            }
            state.keys.insert(key.clone(), now);
        }
        state.push(now, signal.count, signal.cgi_path.clone());
        if state.in_flight {
            return;
        }
        if let Some((until, reason)) = state.quiet {
            if now < until {
                self.metrics.decision("skip", reason.as_str());
                return;
            }
            state.quiet = None;
        }
        let evidence = state.evidence();
        if evidence < account.policy.min_events {
            self.metrics
                .decision("skip", SkipReason::InsufficientEvidence.as_str());
            tracing::debug!(account = %account.name, source = %signal.source, evidence, min_events = account.policy.min_events, decision = "skip", reason = "insufficient_evidence", "Waiting for more evidence");
            return;
        }
        let cgi_path = state.single_cgi_path();
        state.in_flight = true;
        self.spawn_clear(rt.clearer, account, signal, evidence, cgi_path);
    }

    fn spawn_clear(
        &self,
        clearer: Arc<Clearer>,
        account: Arc<Account>,
        signal: Signal,
        evidence: u32,
        cgi_path: Option<String>,
    ) {
        let done = self.done_tx.clone();
        let request = ClearRequest {
            source: signal.source,
            trigger: signal.reason,
            evidence,
            cgi_path: cgi_path.clone(),
            manual: false,
            force: false,
            dry_run: false,
        };
        self.tracker.spawn(async move {
            let report = match clearer.handle(&account, request).await {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(account = %account.name, appid = %account.appid, error = %e, "Clear could not be decided or recorded");
                    None
                }
            };
            let _ = done.send(Done { appid: account.appid.clone(), report, cgi_path });
        });
    }

    fn finished(&mut self, done: Done) {
        let Some(state) = self.accounts.get_mut(&done.appid) else {
            return;
        };
        state.in_flight = false;
        let Some(report) = done.report else { return };
        match (report.decision, &report.outcome, &report.target) {
            // A single-API clear that did not work falls back to a full clear.
            (Decision::Clear, Some(o), ClearTarget::Api { .. }) if *o != Outcome::Ok => {
                self.refire_full(&done.appid, done.cgi_path);
            }
            (Decision::Clear, Some(Outcome::Ok | Outcome::Ambiguous { .. }), _) => {
                // The evidence was acted on; new evidence, even under a key seen
                // before (a quota still low, an alert still firing), starts a
                // new case that the cooldown then judges.
                state.events.clear();
                state.keys.clear();
            }
            (Decision::Skip(reason), _, _) => {
                if let Some(until) = report.next_clear_at {
                    state.quiet = Some((until, reason));
                } else if matches!(reason, SkipReason::AccountDisabled | SkipReason::DryRun) {
                    // Holds until a reload or, for dry-run, until the window moves on.
                    state.quiet =
                        Some((Utc::now() + chrono::Duration::seconds(QUIET_SECS), reason));
                }
            }
            _ => {}
        }
    }

    fn refire_full(&mut self, appid: &str, cgi_path: Option<String>) {
        let rt = self.runtime.borrow().clone();
        let Some(account) = rt.config.account(appid).cloned() else {
            return;
        };
        let Some(state) = self.accounts.get_mut(appid) else {
            return;
        };
        // Forget the API names so the next decision is a full clear.
        state.events.iter_mut().for_each(|(_, _, p)| *p = None);
        state.in_flight = true;
        let evidence = state.evidence().max(account.policy.min_events);
        let signal = Signal {
            account: account.name.clone(),
            source: "fallback".into(),
            reason: format!(
                "single-API clear of {} did not work",
                cgi_path.unwrap_or_default()
            ),
            count: 0,
            cgi_path: None,
            key: None,
            received_at: Utc::now(),
        };
        self.spawn_clear(rt.clearer, account, signal, evidence, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Evidence that survives a prune at `now` with a 5-minute window, in
    /// Beijing time.
    #[test]
    fn evidence_is_fresh_only_within_the_window_and_since_the_reset() {
        let cases = [
            // (evidence at, prune at, kept)
            (
                "2026-11-28T10:58:00+08:00",
                "2026-11-28T11:00:00+08:00",
                true,
            ),
            (
                "2026-11-28T10:54:00+08:00",
                "2026-11-28T11:00:00+08:00",
                false,
            ),
            (
                "2026-11-28T23:59:00+08:00",
                "2026-11-29T00:00:00+08:00",
                false,
            ),
            (
                "2026-11-28T23:59:59+08:00",
                "2026-11-29T00:00:30+08:00",
                false,
            ),
            (
                "2026-11-29T00:00:00+08:00",
                "2026-11-29T00:00:30+08:00",
                true,
            ),
            (
                "2026-11-30T23:58:00+08:00",
                "2026-12-01T00:01:00+08:00",
                false,
            ),
        ];
        for (evidence, now, kept) in cases {
            let mut state = AccountState::default();
            state.push(at(evidence), 3, None);
            state.keys.insert("k".into(), at(evidence));
            state.prune(at(now), Duration::from_secs(300), chrono_tz::Asia::Shanghai);
            let want = if kept { 3 } else { 0 };
            assert_eq!(state.evidence(), want, "{evidence} pruned at {now}");
            let in_window = at(now) - at(evidence) <= chrono::Duration::minutes(5);
            assert_eq!(
                state.keys.contains_key("k"),
                in_window,
                "{evidence} key at {now}"
            );
        }
    }
}
