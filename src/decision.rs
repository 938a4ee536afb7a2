//! The decision step: per account, from signals to a request the clearer
//! decides under the ledger's lock.
//!
//! [`Decider`] is a pure state machine. Its inputs are a signal, a finished
//! decision, a reload and a tick, each with `now`; its outputs are
//! [`Action`]s: ask the clearer, wake me at T, or count a refusal made here
//! without the ledger. It reads no clock and does no I/O, so the daemon's
//! dispatcher and a backtest on a simulated clock run the same code.
//!
//! Per account it keeps:
//! - the evidence within `window`, none from before the latest daily reset
//!   (00:00 in the daemon's timezone: the quota has reset since);
//! - the idempotency keys seen within `window` (the ledger keeps the keys
//!   that were acted on, for every replica: see [`crate::store::Intent`]);
//! - single flight: one request at a time;
//! - a quiet period after a refusal, so a storm of signals is not a storm of
//!   ledger transactions;
//! - the fallback from a failed single-API clear to a full clear;
//! - retries with backoff of a decision the ledger could not take, while its
//!   evidence is in the window;
//! - pacing's memory (`policy.pacing`, on by default, see [`crate::pacing`]):
//!   it learns from the evidence and the clears, and each request carries
//!   its [`Reading`]; the policy weighs it under the ledger's lock, after the
//!   rules that come before it, so a refusal for `pacing` comes back like
//!   any other.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::calendar;
use crate::clearer::{ClearRequest, Report};
use crate::event::{ClearTarget, Outcome};
use crate::pacing::{Asked, Note, Pace};
use crate::policy::{Decision, PolicySettings, SkipReason};
use crate::signal::Signal;

/// For refusals without a natural end (disabled, dry run): stay quiet this
/// long, so a storm is absorbed but a change is noticed soon.
pub const QUIET: Duration = Duration::from_secs(60);

/// The first wait before a decision the ledger refused is asked again;
/// it doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the caller should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Ask the clearer to decide (and maybe clear) for this account.
    Decide(Ask),
    /// Call [`Decider::tick`] at this instant.
    Wake(DateTime<Utc>),
    /// A refusal made here, without the ledger: count it.
    Skip {
        appid: String,
        reason: SkipReason,
        evidence: u32,
    },
    /// A decision the ledger never took: its evidence left the window first.
    Expired { appid: String, evidence: u32 },
}

/// A request for a decision: the evidence, and what it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub appid: String,
    /// The source of the latest signal, or "fallback".
    pub source: String,
    pub trigger: String,
    pub evidence: u32,
    /// The idempotency keys behind `evidence`, with the evidence of each.
    pub keys: Vec<(String, u32)>,
    /// The one API every signal in the window named, if they agree.
    pub cgi_path: Option<String>,
    /// What pacing knows, for the policy to weigh (`None` without pacing,
    /// and for a fallback: its clear was already judged worth spending).
    pub pacing: Option<Asked>,
}

/// What became of an [`Ask`].
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// The clearer decided; for a clear, with WeChat's outcome.
    Decided {
        decision: Decision,
        target: ClearTarget,
        outcome: Option<Outcome>,
        /// For a refusal: when a clear could next be decided.
        retry_at: Option<DateTime<Utc>>,
    },
    /// The ledger could not decide (unreachable, locked, full).
    LedgerError,
}

impl From<Ask> for ClearRequest {
    /// A request from evidence: never manual, forced or a dry run of its own.
    fn from(ask: Ask) -> Self {
        ClearRequest {
            source: ask.source,
            trigger: ask.trigger,
            evidence: ask.evidence,
            cgi_path: ask.cgi_path,
            manual: false,
            force: false,
            dry_run: false,
            keys: ask.keys,
            pacing: ask.pacing,
        }
    }
}

impl From<Report> for Finished {
    fn from(report: Report) -> Self {
        Finished::Decided {
            decision: report.decision,
            target: report.target,
            outcome: report.outcome,
            retry_at: report.next_clear_at,
        }
    }
}

/// One piece of evidence in the window.
#[derive(Debug, Clone)]
struct Evidence {
    at: DateTime<Utc>,
    count: u32,
    cgi_path: Option<String>,
    key: Option<String>,
}

/// Evidence and state for one account (keyed by appid, like the ledger).
#[derive(Debug, Default)]
struct AccountState {
    events: VecDeque<Evidence>,
    /// Idempotency keys seen, with their arrival.
    keys: HashMap<String, DateTime<Utc>>,
    in_flight: bool,
    /// The policy refused until then; signals before it are counted, not asked.
    quiet: Option<(DateTime<Utc>, SkipReason)>,
    /// A decision the ledger refused is asked again then (the tries so far).
    retry: Option<(DateTime<Utc>, u32)>,
    /// The latest signal's source and reason, for the request.
    last: Option<(String, String)>,
    /// What pacing has learned (only used with `policy.pacing`).
    pace: Pace,
    /// With a shared memory: the notes the ledger has not confirmed, and
    /// the last one handed to it.
    unsynced: Vec<(u64, Note)>,
    sent: u64,
    /// Per API, the day (its start) its quota was last asked for.
    quota_asked: HashMap<String, DateTime<Utc>>,
}

impl AccountState {
    /// Drops evidence older than `window`, and evidence from before the
    /// latest daily reset (00:00 in `tz`): the quota has reset since, so a
    /// 23:59 signal must not spend a clear at 00:00 (SPEC section 2).
    /// Idempotency keys live for the whole window, across the reset.
    fn prune(&mut self, now: DateTime<Utc>, window: Duration, tz: Tz) {
        let start = calendar::window_start(now, window);
        let fresh = start.max(calendar::day(tz, now).start);
        while self.events.front().is_some_and(|e| e.at < fresh) {
            self.events.pop_front();
        }
        self.keys.retain(|_, t| *t >= start);
    }

    /// Adds evidence; signals without a key for the same API within a second
    /// share one entry, so a flood without keys costs memory per second, not
    /// per signal.
    fn push(
        &mut self,
        now: DateTime<Utc>,
        count: u32,
        cgi_path: Option<String>,
        key: Option<String>,
    ) {
        if let Some(e) = self.events.back_mut() {
            if key.is_none()
                && e.key.is_none()
                && e.cgi_path == cgi_path
                && now - e.at < chrono::Duration::seconds(1)
            {
                e.count = e.count.saturating_add(count);
                return;
            }
        }
        self.events.push_back(Evidence {
            at: now,
            count,
            cgi_path,
            key,
        });
    }

    fn evidence(&self) -> u32 {
        self.events
            .iter()
            .map(|e| e.count)
            .fold(0u32, u32::saturating_add)
    }

    fn keyed(&self) -> Vec<(String, u32)> {
        self.events
            .iter()
            .filter_map(|e| e.key.clone().map(|k| (k, e.count)))
            .collect()
    }

    /// The one API named by every signal in the window, if they agree; more
    /// than one exhausted API (or any signal without one) means a full clear.
    fn single_cgi_path(&self) -> Option<String> {
        let mut paths = self.events.iter().map(|e| e.cgi_path.as_ref());
        let first = paths.next()??;
        paths.all(|p| p == Some(first)).then(|| first.clone())
    }

    /// The request for the evidence as it stands at `now`, marking it in
    /// flight; with pacing, what it knows goes with it.
    fn ask(
        &mut self,
        appid: &str,
        policy: &PolicySettings,
        now: DateTime<Utc>,
        replica: &str,
    ) -> Ask {
        let pacing = policy.pacing.then(|| Asked {
            reading: self.pace.reading(now),
            replica: replica.to_string(),
            unsynced: self.unsynced.clone(),
        });
        self.in_flight = true;
        let (source, trigger) = self.last.clone().unwrap_or_default();
        Ask {
            appid: appid.to_string(),
            source,
            trigger,
            evidence: self.evidence(),
            keys: self.keyed(),
            cgi_path: self.single_cgi_path(),
            pacing,
        }
    }
}

/// The per-account state machine; see the module docs.
#[derive(Debug)]
pub struct Decider {
    timezone: Tz,
    accounts: HashMap<String, AccountState>,
    /// With a memory shared through the ledger ([`Decider::shared`]): this
    /// process's name among the replicas, and its last note's number.
    replica: Option<(String, u64)>,
    /// Accounts with notes since [`Decider::take_notes`].
    remember: BTreeSet<String>,
}

impl Decider {
    /// A decision step whose pacing memory is its own (a backtest).
    pub fn new(timezone: Tz) -> Self {
        Self {
            timezone,
            accounts: HashMap::new(),
            replica: None,
            remember: BTreeSet::new(),
        }
    }

    /// A decision step whose pacing memory the ledger merges with other
    /// replicas' ([`crate::pacing::Note`]): it keeps its notes until
    /// [`Decider::merged`] says the ledger has them, and each request
    /// carries them, for the policy to weigh on the ledger's memory.
    pub fn shared(timezone: Tz, replica: String) -> Self {
        Self {
            replica: Some((replica, 0)),
            ..Self::new(timezone)
        }
    }

    /// Takes back pacing's memory of `appid` as the ledger kept it (at start).
    pub fn restore(&mut self, appid: &str, pace: Pace) {
        self.accounts.entry(appid.to_string()).or_default().pace = pace;
    }

    /// Pacing's notes of each account since the last call, for the ledger
    /// to merge into its memory (with [`Decider::replica`]'s name).
    pub fn take_notes(&mut self) -> Vec<(String, Vec<(u64, Note)>)> {
        std::mem::take(&mut self.remember)
            .into_iter()
            .filter_map(|appid| {
                let state = self.accounts.get_mut(&appid)?;
                let sent = state.sent;
                let notes: Vec<_> = state
                    .unsynced
                    .iter()
                    .filter(|(seq, _)| *seq > sent)
                    .cloned()
                    .collect();
                state.sent = notes.last().map_or(sent, |(seq, _)| *seq);
                Some((appid, notes))
            })
            .filter(|(_, notes)| !notes.is_empty())
            .collect()
    }

    /// This process's name among the replicas (empty without a shared
    /// memory).
    fn replica(&self) -> String {
        self.replica
            .as_ref()
            .map_or_else(String::new, |(name, _)| name.clone())
    }

    /// The ledger's memory of `appid` holds this process's notes up to `seq`.
    pub fn merged(&mut self, appid: &str, seq: u64) {
        if let Some(state) = self.accounts.get_mut(appid) {
            state.unsynced.retain(|(s, _)| *s > seq);
        }
    }

    /// Whether to ask WeChat now, at `now`, how many calls a day `cgi_path`
    /// serves for `appid` (SPEC section 3, "The quota can be known"): when
    /// pacing weighs it, the account has a token to ask with, and it was
    /// not asked today; true marks it asked. The daemon and `simulate`
    /// both ask here, and give the answer to [`Decider::quota`].
    pub fn quota_due(
        &mut self,
        appid: &str,
        policy: &PolicySettings,
        has_token: bool,
        cgi_path: &str,
        now: DateTime<Utc>,
    ) -> bool {
        if !policy.pacing || !has_token {
            return false;
        }
        let day = calendar::day(self.timezone, now).start;
        let state = self.accounts.entry(appid.to_string()).or_default();
        state.quota_asked.insert(cgi_path.to_string(), day) != Some(day)
    }

    /// WeChat said at `at` that the API `appid`'s evidence names serves
    /// `calls` a day: pacing knows how long a clear lasts before one is eaten.
    pub fn quota(&mut self, appid: &str, at: DateTime<Utc>, calls: u64) {
        self.note(appid, Note::Quota { at, calls });
    }

    /// Pacing learns from `note` on `appid`; with a shared memory, the note
    /// waits for the ledger.
    fn note(&mut self, appid: &str, note: Note) {
        let tz = self.timezone;
        let state = self.accounts.entry(appid.to_string()).or_default();
        state.pace.apply(&note, tz);
        if let Some((_, seq)) = &mut self.replica {
            *seq += 1;
            state.unsynced.push((*seq, note));
            self.remember.insert(appid.to_string());
        }
    }

    /// A signal for the account `appid`, with its `policy`, arrived at `now`.
    pub fn signal(
        &mut self,
        appid: &str,
        policy: &PolicySettings,
        signal: &Signal,
        now: DateTime<Utc>,
    ) -> Vec<Action> {
        let state = self.accounts.entry(appid.to_string()).or_default();
        state.prune(now, policy.window, self.timezone);
        let skip = |reason, evidence| {
            vec![Action::Skip {
                appid: appid.to_string(),
                reason,
                evidence,
            }]
        };
        if let Some(key) = &signal.key {
            if state.keys.contains_key(key) {
                return skip(SkipReason::Duplicate, state.evidence());
            }
            state.keys.insert(key.clone(), now);
        }
        state.push(
            now,
            signal.count,
            signal.cgi_path.clone(),
            signal.key.clone(),
        );
        state.last = Some((signal.source.clone(), signal.reason.clone()));
        if policy.pacing {
            let count = signal.count;
            self.note(appid, Note::Evidence { at: now, count });
        }
        let replica = self.replica();
        let state = self.accounts.entry(appid.to_string()).or_default();
        if state.in_flight || state.retry.is_some() {
            // Counted: the answer in flight, or the retry, sees it.
            return Vec::new();
        }
        if let Some((until, reason)) = state.quiet {
            if now < until {
                return skip(reason, state.evidence());
            }
            state.quiet = None;
        }
        let evidence = state.evidence();
        if evidence < policy.min_events {
            return skip(SkipReason::InsufficientEvidence, evidence);
        }
        vec![Action::Decide(state.ask(appid, policy, now, &replica))]
    }

    /// The clearer's answer to an [`Ask`] for `appid`.
    pub fn finished(
        &mut self,
        appid: &str,
        policy: &PolicySettings,
        done: Finished,
        now: DateTime<Utc>,
    ) -> Vec<Action> {
        let replica = self.replica();
        let Some(state) = self.accounts.get_mut(appid) else {
            return Vec::new();
        };
        state.in_flight = false;
        match done {
            Finished::LedgerError => {
                state.prune(now, policy.window, self.timezone);
                if state.evidence() < policy.min_events {
                    return vec![Action::Expired {
                        appid: appid.to_string(),
                        evidence: state.evidence(),
                    }];
                }
                let tries = state.retry.map_or(0, |(_, n)| n);
                let wait = RETRY_FIRST
                    .saturating_mul(1u32 << tries.min(16))
                    .min(RETRY_MAX);
                let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                state.retry = Some((at, tries + 1));
                vec![Action::Wake(at)]
            }
            Finished::Decided {
                decision,
                target,
                outcome,
                retry_at,
            } => {
                state.retry = None;
                let mut cleared = None;
                let actions = match (decision, outcome, target) {
                    // A single-API clear that did not work falls back to a
                    // full clear, on the same evidence.
                    (Decision::Clear, Some(o), ClearTarget::Api { cgi_path })
                        if o != Outcome::Ok =>
                    {
                        state.events.iter_mut().for_each(|e| e.cgi_path = None);
                        let mut ask = state.ask(appid, policy, now, &replica);
                        ask.pacing = None;
                        ask.evidence = ask.evidence.max(policy.min_events);
                        ask.source = "fallback".into();
                        ask.trigger = format!("single-API clear of {cgi_path} did not work");
                        vec![Action::Decide(ask)]
                    }
                    (Decision::Clear, Some(Outcome::Ok | Outcome::Ambiguous { .. }), target) => {
                        cleared = Some(target == ClearTarget::Full);
                        // The evidence was acted on. Its keys stay known for
                        // the window (here and in the ledger); new evidence
                        // starts a new case that the cooldown then judges.
                        state.events.clear();
                        Vec::new()
                    }
                    (Decision::Skip(reason), ..) => {
                        if let Some(until) = retry_at {
                            state.quiet = Some((until, reason));
                        } else if matches!(
                            reason,
                            SkipReason::AccountDisabled | SkipReason::DryRun | SkipReason::Pacing
                        ) {
                            // Holds until a reload or, for dry-run, until the
                            // window moves on; pacing weighs again a minute on.
                            let until = now + chrono::Duration::from_std(QUIET).unwrap_or_default();
                            state.quiet = Some((until, reason));
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                if let Some(full) = cleared.filter(|_| policy.pacing) {
                    self.note(appid, Note::Cleared { at: now, full });
                }
                actions
            }
        }
    }

    /// New policy settings or credentials: earlier refusals may no longer hold.
    pub fn reload(&mut self, timezone: Tz) {
        self.timezone = timezone;
        self.accounts.values_mut().for_each(|s| s.quiet = None);
    }

    /// Time has passed: asks again for decisions whose retry is due. `policy`
    /// finds an account's current settings by appid (gone after a reload:
    /// its evidence is dropped).
    pub fn tick<'a>(
        &mut self,
        now: DateTime<Utc>,
        policy: impl Fn(&str) -> Option<&'a PolicySettings>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let tz = self.timezone;
        let replica = self.replica();
        self.accounts.retain(|appid, state| {
            let Some((at, _)) = state.retry else {
                return true;
            };
            let Some(settings) = policy(appid) else {
                return false;
            };
            if state.in_flight {
                // Its answer comes through `finished`.
                return true;
            }
            if now < at {
                actions.push(Action::Wake(at));
                return true;
            }
            state.prune(now, settings.window, tz);
            if state.evidence() < settings.min_events {
                state.retry = None;
                actions.push(Action::Expired {
                    appid: appid.clone(),
                    evidence: state.evidence(),
                });
                return true;
            }
            actions.push(Action::Decide(state.ask(appid, settings, now, &replica)));
            true
        });
        actions
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
            state.push(at(evidence), 3, None, None);
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

    /// One input to the machine, at a time of 28 November 2026 (CST).
    enum Step {
        /// (time, count, key, cgi_path)
        Signal(
            &'static str,
            u32,
            Option<&'static str>,
            Option<&'static str>,
        ),
        /// The clearer decided at that time.
        Done(&'static str, Finished),
        LedgerError(&'static str),
        Tick(&'static str),
        Reload,
    }

    fn cst(t: &str) -> DateTime<Utc> {
        match t.len() {
            8 => at(&format!("2026-11-28T{t}+08:00")),
            _ => at(t),
        }
    }

    fn cleared(outcome: Outcome) -> Finished {
        Finished::Decided {
            decision: Decision::Clear,
            target: ClearTarget::Full,
            outcome: Some(outcome),
            retry_at: None,
        }
    }

    fn refused(reason: SkipReason, retry_at: Option<&str>) -> Finished {
        Finished::Decided {
            decision: Decision::Skip(reason),
            target: ClearTarget::Full,
            outcome: None,
            retry_at: retry_at.map(cst),
        }
    }

    fn api_failed() -> Finished {
        Finished::Decided {
            decision: Decision::Clear,
            target: ClearTarget::Api {
                cgi_path: "/cgi-bin/a".into(),
            },
            outcome: Some(Outcome::Failed {
                errcode: Some(48006),
                errmsg: "forbid".into(),
            }),
            retry_at: None,
        }
    }

    /// An action as the tables read it.
    fn show(a: &Action) -> String {
        match a {
            Action::Decide(ask) => {
                let keys: Vec<String> = ask.keys.iter().map(|(k, n)| format!("{k}={n}")).collect();
                format!(
                    "decide {} [{}] {} {}",
                    ask.evidence,
                    keys.join(","),
                    ask.cgi_path.as_deref().unwrap_or("full"),
                    ask.source
                )
            }
            Action::Wake(t) => format!(
                "wake {}",
                t.with_timezone(&chrono_tz::Asia::Shanghai)
                    .format("%H:%M:%S")
            ),
            Action::Skip {
                reason, evidence, ..
            } => format!("skip {} {evidence}", reason.as_str()),
            Action::Expired { evidence, .. } => format!("expired {evidence}"),
        }
    }

    /// (name, min_events, each input with the actions it gives)
    type Case = (&'static str, u32, Vec<(Step, &'static [&'static str])>);

    /// Every transition: a sequence of inputs, and the actions after each.
    #[test]
    fn transitions() {
        use Step::*;
        let ok = || cleared(Outcome::Ok);
        let cases: Vec<Case> = vec![
            (
                "one signal asks at once",
                1,
                vec![(Signal("10:00:00", 1, None, None), &["decide 1 [] full src"])],
            ),
            (
                "too little evidence waits, then asks",
                3,
                vec![
                    (
                        Signal("10:00:00", 1, None, None),
                        &["skip insufficient_evidence 1"],
                    ),
                    (
                        Signal("10:00:01", 1, Some("b"), None),
                        &["skip insufficient_evidence 2"],
                    ),
                    (
                        Signal("10:00:02", 1, Some("c"), None),
                        &["decide 3 [b=1,c=1] full src"],
                    ),
                ],
            ),
            (
                "evidence past the window is gone",
                2,
                vec![
                    (
                        Signal("10:00:00", 1, None, None),
                        &["skip insufficient_evidence 1"],
                    ),
                    (
                        Signal("10:05:01", 1, None, None),
                        &["skip insufficient_evidence 1"],
                    ),
                ],
            ),
            (
                "a 23:59 signal does not count at 00:00",
                2,
                vec![
                    (
                        Signal("23:59:00", 1, None, None),
                        &["skip insufficient_evidence 1"],
                    ),
                    (
                        Signal("2026-11-29T00:00:00+08:00", 1, None, None),
                        &["skip insufficient_evidence 1"],
                    ),
                ],
            ),
            (
                "a key seen in the window is a duplicate",
                1,
                vec![
                    (
                        Signal("10:00:00", 1, Some("a"), None),
                        &["decide 1 [a=1] full src"],
                    ),
                    (
                        Signal("10:00:01", 1, Some("a"), None),
                        &["skip duplicate 1"],
                    ),
                ],
            ),
            (
                "single flight: signals meanwhile are counted, not asked",
                1,
                vec![
                    (Signal("10:00:00", 1, None, None), &["decide 1 [] full src"]),
                    (Signal("10:00:05", 4, None, None), &[]),
                    (Done("10:00:06", refused(SkipReason::Duplicate, None)), &[]),
                    (Signal("10:00:07", 1, None, None), &["decide 6 [] full src"]),
                ],
            ),
            (
                "a clear uses up the evidence but keeps the keys",
                1,
                vec![
                    (
                        Signal("10:00:00", 1, Some("a"), None),
                        &["decide 1 [a=1] full src"],
                    ),
                    (Done("10:00:01", ok()), &[]),
                    (
                        Signal("10:00:02", 1, Some("a"), None),
                        &["skip duplicate 0"],
                    ),
                    (
                        Signal("10:00:03", 1, Some("b"), None),
                        &["decide 1 [b=1] full src"],
                    ),
                ],
            ),
            (
                "a refusal with an end is quiet until then",
                1,
                vec![
                    (Signal("10:00:00", 1, None, None), &["decide 1 [] full src"]),
                    (
                        Done("10:00:00", refused(SkipReason::Cooldown, Some("10:30:00"))),
                        &[],
                    ),
                    (Signal("10:10:00", 1, None, None), &["skip cooldown 1"]),
                    (Signal("10:30:00", 1, None, None), &["decide 1 [] full src"]),
                ],
            ),
            (
                "a dry run is quiet for a minute",
                1,
                vec![
                    (Signal("10:00:00", 1, None, None), &["decide 1 [] full src"]),
                    (Done("10:00:00", refused(SkipReason::DryRun, None)), &[]),
                    (Signal("10:00:59", 1, None, None), &["skip dry_run 2"]),
                    (Signal("10:01:00", 1, None, None), &["decide 3 [] full src"]),
                ],
            ),
            (
                "a reload lifts a quiet period",
                1,
                vec![
                    (Signal("10:00:00", 1, None, None), &["decide 1 [] full src"]),
                    (
                        Done("10:00:00", refused(SkipReason::AccountDisabled, None)),
                        &[],
                    ),
                    (Reload, &[]),
                    (Signal("10:00:10", 1, None, None), &["decide 2 [] full src"]),
                ],
            ),
            (
                "signals for one API ask for it; a failed single-API clear falls back",
                2,
                vec![
                    (
                        Signal("10:00:00", 1, Some("a"), Some("/cgi-bin/a")),
                        &["skip insufficient_evidence 1"],
                    ),
                    (
                        Signal("10:00:01", 1, Some("b"), Some("/cgi-bin/a")),
                        &["decide 2 [a=1,b=1] /cgi-bin/a src"],
                    ),
                    (
                        Done("10:00:02", api_failed()),
                        &["decide 2 [a=1,b=1] full fallback"],
                    ),
                ],
            ),
            (
                "two APIs mean a full clear",
                1,
                vec![
                    (
                        Signal("10:00:00", 1, None, Some("/cgi-bin/a")),
                        &["decide 1 [] /cgi-bin/a src"],
                    ),
                    (Signal("10:00:01", 1, None, Some("/cgi-bin/b")), &[]),
                    (Done("10:00:02", refused(SkipReason::Duplicate, None)), &[]),
                    (
                        Signal("10:00:03", 1, None, Some("/cgi-bin/a")),
                        &["decide 3 [] full src"],
                    ),
                ],
            ),
            (
                "a ledger error is asked again with backoff",
                1,
                vec![
                    (
                        Signal("10:00:00", 1, Some("a"), None),
                        &["decide 1 [a=1] full src"],
                    ),
                    (LedgerError("10:00:00"), &["wake 10:00:01"]),
                    (Signal("10:00:00", 1, Some("b"), None), &[]),
                    (Tick("10:00:00"), &["wake 10:00:01"]),
                    (Tick("10:00:01"), &["decide 2 [a=1,b=1] full src"]),
                    (LedgerError("10:00:01"), &["wake 10:00:03"]),
                    (Tick("10:00:03"), &["decide 2 [a=1,b=1] full src"]),
                    (Done("10:00:03", ok()), &[]),
                    (Tick("10:00:10"), &[]),
                ],
            ),
            (
                "a retry gives up when the evidence has left the window",
                1,
                vec![
                    (Signal("10:00:00", 1, None, None), &["decide 1 [] full src"]),
                    (LedgerError("10:00:00"), &["wake 10:00:01"]),
                    (Tick("10:05:01"), &["expired 0"]),
                    (Tick("10:05:02"), &[]),
                ],
            ),
            (
                "a ledger error after the evidence left is not retried",
                1,
                vec![
                    (Signal("10:00:00", 1, None, None), &["decide 1 [] full src"]),
                    (LedgerError("10:06:00"), &["expired 0"]),
                ],
            ),
        ];
        for (name, min_events, steps) in cases {
            let policy = PolicySettings {
                min_events,
                ..PolicySettings::default()
            };
            let mut decider = Decider::new(chrono_tz::Asia::Shanghai);
            for (i, (step, want)) in steps.into_iter().enumerate() {
                let actions = match step {
                    Signal(t, count, key, cgi_path) => {
                        let signal = crate::signal::Signal {
                            account: "shop".into(),
                            source: "src".into(),
                            reason: "r".into(),
                            count,
                            cgi_path: cgi_path.map(String::from),
                            key: key.map(String::from),
                            received_at: cst(t),
                        };
                        decider.signal("wx1", &policy, &signal, cst(t))
                    }
                    Done(t, f) => decider.finished("wx1", &policy, f, cst(t)),
                    LedgerError(t) => {
                        decider.finished("wx1", &policy, Finished::LedgerError, cst(t))
                    }
                    Tick(t) => decider.tick(cst(t), |_| Some(&policy)),
                    Reload => {
                        decider.reload(chrono_tz::Asia::Shanghai);
                        Vec::new()
                    }
                };
                let got: Vec<String> = actions.iter().map(show).collect();
                assert_eq!(got, want, "{name}, step {i}");
            }
        }
    }

    fn signal_at(t: &str, count: u32) -> crate::signal::Signal {
        crate::signal::Signal {
            account: "shop".into(),
            source: "src".into(),
            reason: "r".into(),
            count,
            cgi_path: None,
            key: None,
            received_at: cst(t),
        }
    }

    /// The ledger's side, pure: the policy on a snapshot of the clears it
    /// has granted (and those made by hand), as the clearer runs it under
    /// the lock, every clear taking effect.
    #[derive(Default)]
    struct PureLedger {
        clears: Vec<DateTime<Utc>>,
    }

    impl PureLedger {
        fn answer(&mut self, ask: &Ask, policy: &PolicySettings, now: DateTime<Utc>) -> Finished {
            let tz = chrono_tz::Asia::Shanghai;
            let (day, month) = (calendar::day(tz, now), calendar::month(tz, now));
            let count =
                |p: calendar::Period| self.clears.iter().filter(|t| p.contains(**t)).count();
            let snapshot = crate::policy::Snapshot {
                month_used: count(month) as u32,
                day_used: count(day) as u32,
                last_clear_at: self.clears.last().copied(),
                ..Default::default()
            };
            let input = crate::policy::Input {
                settings: policy,
                snapshot: &snapshot,
                evidence: ask.evidence,
                manual: false,
                force: false,
                dry_run: false,
                api: false,
                pacing: ask.pacing.as_ref().map(|p| &p.reading),
                timezone: tz,
                now,
            };
            match crate::policy::verdict(&input, ClearTarget::Full) {
                crate::policy::Verdict::Clear(target) => {
                    self.clears.push(now);
                    Finished::Decided {
                        decision: Decision::Clear,
                        target,
                        outcome: Some(Outcome::Ok),
                        retry_at: None,
                    }
                }
                crate::policy::Verdict::Skip { reason, retry_at } => Finished::Decided {
                    decision: Decision::Skip(reason),
                    target: ClearTarget::Full,
                    outcome: None,
                    retry_at,
                },
            }
        }
    }

    /// Feeds signals (time, failed calls) through the decision step and
    /// `ledger`; each reads "clear" or "skip REASON" (the policy's answer
    /// under the lock), or "quiet REASON" (counted here, in the quiet period
    /// after a refusal).
    fn paced(policy: &PolicySettings, ledger: &mut PureLedger, steps: &[(&str, u32, &str)]) {
        let mut decider = Decider::new(chrono_tz::Asia::Shanghai);
        for (i, (t, count, want)) in steps.iter().enumerate() {
            let now = cst(t);
            let mut actions = decider.signal("wx1", policy, &signal_at(t, *count), now);
            let mut got = Vec::new();
            while let Some(action) = actions.pop() {
                match action {
                    Action::Decide(ask) => {
                        let done = ledger.answer(&ask, policy, now);
                        if let Finished::Decided { decision, .. } = &done {
                            got.push(match decision {
                                Decision::Clear => "clear".to_string(),
                                Decision::Skip(r) => format!("skip {r}"),
                            });
                        }
                        actions.extend(decider.finished("wx1", policy, done, now));
                    }
                    Action::Skip { reason, .. } => got.push(format!("quiet {reason}")),
                    other => got.push(show(&other)),
                }
            }
            assert_eq!(
                got.join(", "),
                *want,
                "pacing {}, step {i} at {t}",
                policy.pacing
            );
        }
    }

    /// Issue 20, "Out of order": a clear, then signals within the hour.
    /// They read `cooldown` (the first rule in the order), never `pacing`,
    /// and the quiet period that follows repeats the ledger's reason.
    #[test]
    fn inside_a_cooldown_the_refusal_reads_cooldown() {
        let policy = PolicySettings {
            monthly_cap: 3,
            ..PolicySettings::default()
        };
        paced(
            &policy,
            &mut PureLedger::default(),
            &[
                ("2026-11-02T19:00:00+08:00", 1, "clear"),
                ("2026-11-02T19:05:00+08:00", 1, "skip cooldown"),
                ("2026-11-02T19:07:00+08:00", 1, "quiet cooldown"),
                ("2026-11-02T19:09:00+08:00", 1, "quiet cooldown"),
                // The next evening, pacing has its say.
                ("2026-11-03T22:00:00+08:00", 1, "skip pacing"),
                ("2026-11-03T22:00:30+08:00", 1, "quiet pacing"),
                ("2026-11-03T22:01:00+08:00", 1, "skip pacing"),
            ],
        );
    }

    /// A clear eaten within 20 minutes teaches the quota's size; at a
    /// storm's rate the next clear would go as fast, so it waits until the
    /// rate falls. Without pacing the storm's signal clears at once.
    #[test]
    fn pacing_waits_out_a_storm_that_would_eat_the_clear() {
        for pacing in [true, false] {
            let policy = PolicySettings {
                pacing,
                ..PolicySettings::default()
            };
            let at_11 = match pacing {
                true => "skip pacing",
                false => "clear",
            };
            let mut steps = vec![
                // 500 failed calls a minute: the month's first episode.
                ("2026-11-10T10:00:00+08:00", 500, "clear"),
                // Out again 20 minutes later, inside the cooldown.
                ("2026-11-10T10:20:00+08:00", 500, "skip cooldown"),
                ("2026-11-10T10:24:00+08:00", 500, "quiet cooldown"),
                // The quota is about 7,000 calls: 14 minutes of the 780
                // to the reset, at the storm's rate.
                ("2026-11-10T11:00:00+08:00", 500, at_11),
            ];
            if pacing {
                // The storm is over: 5 a minute, a clear would last the day.
                steps.push(("2026-11-10T16:00:00+08:00", 5, "clear"));
            }
            paced(&policy, &mut PureLedger::default(), &steps);
        }
    }

    /// The month's budget: the first episode is spent; a later one worth
    /// less, with most of the month to come, waits; on the month's last day
    /// the clear left is spent. The reset guard comes before pacing; late
    /// signals just after a reset that follow an episode before it are not
    /// acted on.
    #[test]
    fn pacing_keeps_the_budget_for_better_days_and_spends_it_by_the_end() {
        let policy = PolicySettings {
            monthly_cap: 2,
            ..PolicySettings::default()
        };
        paced(
            &policy,
            &mut PureLedger::default(),
            &[
                // 19:00: five hours to the reset.
                ("2026-11-02T19:00:00+08:00", 10, "clear"),
                // 22:00 the next day: two hours, with 27 days to come.
                ("2026-11-03T22:00:00+08:00", 10, "skip pacing"),
                ("2026-11-03T23:58:00+08:00", 10, "skip reset_guard"),
                ("2026-11-04T00:03:00+08:00", 10, "skip pacing"),
                // 21:00 on the last day: three hours, and the last chance.
                ("2026-11-30T21:00:00+08:00", 10, "clear"),
            ],
        );
        let policy = PolicySettings {
            monthly_cap: 10,
            ..PolicySettings::default()
        };
        paced(
            &policy,
            &mut PureLedger::default(),
            &[
                ("2026-11-29T23:55:00+08:00", 1, "skip reset_guard"),
                ("2026-11-29T23:58:00+08:00", 1, "quiet reset_guard"),
                // Late signals of the minutes before the reset.
                ("2026-11-30T00:03:00+08:00", 1, "skip pacing"),
                ("2026-11-30T00:09:00+08:00", 1, "skip pacing"),
                // A real exhaustion: the last day spends.
                ("2026-11-30T00:11:00+08:00", 1, "clear"),
            ],
        );
    }

    /// The budget pacing weighs is the ledger's: with a clear made by hand
    /// this month, the cap is reached and the refusal reads `monthly_cap`,
    /// not `pacing`.
    #[test]
    fn pacing_counts_the_clears_the_ledger_knows() {
        let policy = PolicySettings {
            monthly_cap: 2,
            ..PolicySettings::default()
        };
        for (by_hand, at_22) in [(0, "skip pacing"), (1, "skip monthly_cap")] {
            let mut ledger = PureLedger {
                clears: vec![cst("2026-11-01T09:00:00+08:00"); by_hand],
            };
            paced(
                &policy,
                &mut ledger,
                &[
                    ("2026-11-02T19:00:00+08:00", 10, "clear"),
                    ("2026-11-03T22:00:00+08:00", 10, at_22),
                ],
            );
        }
    }

    /// With a shared memory, each note pacing takes waits for the ledger:
    /// handed over once by [`Decider::take_notes`], carried by each request
    /// until [`Decider::merged`] says the ledger has it. A backtest's
    /// decision step keeps no notes.
    #[test]
    fn notes_wait_for_the_ledger() {
        let policy = PolicySettings::default();
        let at = |t: &str| cst(&format!("2026-11-10T{t}+08:00"));
        let unsynced = |actions: &[Action]| match actions {
            [Action::Decide(ask)] => ask.pacing.as_ref().map(|p| {
                let seqs: Vec<u64> = p.unsynced.iter().map(|(s, _)| *s).collect();
                (p.replica.clone(), seqs)
            }),
            other => panic!("{other:?}"),
        };
        let mut d = Decider::shared(chrono_tz::Asia::Shanghai, "r1".into());
        let a = d.signal("wx1", &policy, &signal_at("10:00:00", 5), at("10:00:00"));
        assert_eq!(unsynced(&a), Some(("r1".into(), vec![1])));
        let notes = d.take_notes();
        let evidence = Note::Evidence {
            at: at("10:00:00"),
            count: 5,
        };
        assert_eq!(notes, vec![("wx1".to_string(), vec![(1, evidence)])]);
        assert_eq!(d.take_notes(), vec![], "handed over once");
        let skip = Finished::Decided {
            decision: Decision::Skip(SkipReason::Pacing),
            target: ClearTarget::Full,
            outcome: None,
            retry_at: None,
        };
        d.finished("wx1", &policy, skip, at("10:00:00"));
        let a = d.signal("wx1", &policy, &signal_at("10:02:00", 5), at("10:02:00"));
        assert_eq!(
            unsynced(&a),
            Some(("r1".into(), vec![1, 2])),
            "not yet merged"
        );
        d.merged("wx1", 1);
        let later = Finished::Decided {
            decision: Decision::Skip(SkipReason::Cooldown),
            target: ClearTarget::Full,
            outcome: None,
            retry_at: Some(at("11:00:00")),
        };
        d.finished("wx1", &policy, later, at("10:02:00"));
        let a = d.signal("wx1", &policy, &signal_at("10:03:00", 5), at("10:03:00"));
        assert!(matches!(a[..], [Action::Skip { .. }]), "{a:?}");
        let seqs: Vec<u64> = d.take_notes()[0].1.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [2, 3], "only the notes not handed over");
        d.reload(chrono_tz::Asia::Shanghai);
        let a = d.signal("wx1", &policy, &signal_at("10:04:00", 5), at("10:04:00"));
        assert_eq!(unsynced(&a), Some(("r1".into(), vec![2, 3, 4])));

        let mut own = Decider::new(chrono_tz::Asia::Shanghai);
        let a = own.signal("wx1", &policy, &signal_at("10:00:00", 5), at("10:00:00"));
        assert_eq!(unsynced(&a), Some((String::new(), vec![])));
        assert_eq!(own.take_notes(), vec![]);
    }

    /// The quota is asked for once per account, API and day, and only
    /// when pacing weighs it and the account has a token to ask with.
    #[test]
    fn the_quota_is_due_once_per_account_api_and_day() {
        let on = PolicySettings::default();
        let off = PolicySettings {
            pacing: false,
            ..PolicySettings::default()
        };
        let mut d = Decider::new(chrono_tz::Asia::Shanghai);
        // (appid, policy, token, cgi_path, time, due)
        let cases = [
            ("wx1", &on, true, "/a", "2026-11-10T10:00:00+08:00", true),
            ("wx1", &on, true, "/a", "2026-11-10T23:59:00+08:00", false),
            ("wx1", &on, true, "/b", "2026-11-10T23:59:00+08:00", true),
            ("wx2", &on, true, "/a", "2026-11-10T23:59:00+08:00", true),
            ("wx1", &on, true, "/a", "2026-11-11T00:00:00+08:00", true),
            ("wx3", &off, true, "/a", "2026-11-10T10:00:00+08:00", false),
            ("wx3", &on, false, "/a", "2026-11-10T10:00:00+08:00", false),
        ];
        for (i, (appid, policy, token, path, t, due)) in cases.into_iter().enumerate() {
            assert_eq!(
                d.quota_due(appid, policy, token, path, cst(t)),
                due,
                "case {i}"
            );
        }
    }
}
