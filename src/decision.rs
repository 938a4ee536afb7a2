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
//! - pacing (`policy.pacing`, on by default): what the month has shown so
//!   far (its episodes and what a clear was worth in each, the account's
//!   quota as the latest eaten clear measured it), to spend the budget
//!   where it buys the most time back (see [`Pace`]).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::calendar;
use crate::clearer::{ClearRequest, Report};
use crate::event::{Budget, ClearTarget, Outcome};
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
        /// The month's budget as the ledger read it: pacing's count of
        /// clears spent, right after a restart and with manual clears.
        budget: Option<Budget>,
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
            budget: Some(report.budget),
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
}

/// Pacing (`policy.pacing`): spend the month's clears where they buy the
/// most locked minutes back, using only what is known when deciding.
///
/// A clear now is worth `min(minutes to the reset, minutes it would last)`.
/// It lasts the account's daily quota over the demand: the quota is learned
/// from the latest clear that was eaten the same day (the failed calls per
/// minute before it and after the next exhaustion, times the minutes it
/// lasted), the demand is the evidence's rate (failed calls per minute,
/// which is the demand while locked); until a clear has been eaten, a clear
/// is taken to last to the reset. Each episode of the month (an exhaustion,
/// until a clear or the reset) is remembered with the best value a clear
/// had in it. A clear is spent when the clears left outnumber the better
/// chances the rest of the month is expected to bring: episodes per day so
/// far, times the whole days left, times the share of the month's past
/// episodes that were worth more, of which [`CHANCES_COUNTED`] are counted.
/// So the bar falls as the month runs out with budget left, and on the
/// month's last day every clear is spent; the month's first episode is
/// spent too (nothing to compare it with). Apart from that, a clear that
/// would be eaten long before the reset (a retry storm: it lasts minutes)
/// waits for the storm to pass, unless the budget is ample. Signals just
/// after the reset that follow an episode just before it are late ones
/// and are not acted on.
///
/// The month's clears spent come from the ledger's answers (restarts and
/// manual clears included). The episodes live in memory: after a restart
/// it knows none of the month so far, spends the first episode it sees and
/// counts the days before it as days without episodes, so it spends more
/// readily (towards today's rules) until it has seen the month again; the
/// ledger's cap holds anyway.
#[derive(Debug, Default)]
struct Pace {
    /// Calls the account's quota serves in a day, as last seen.
    limit: Option<f64>,
    /// The latest clear, until it has taught how long the quota lasts.
    cleared: Option<Cleared>,
    /// Which of `past` the latest full clear ended: how long it lasted is
    /// what it was worth.
    ended: Option<usize>,
    /// The month the figures below are of (its start).
    month: Option<DateTime<Utc>>,
    /// Clears of the month that took effect (or may have), as seen here.
    spent: u32,
    /// The day of `spent_today`, and clears seen to take effect that day.
    today: Option<(DateTime<Utc>, u32)>,
    /// The best value (minutes) a clear had in each closed episode of the month.
    past: Vec<f64>,
    /// The open episode: its day, and the best value a clear had in it so far.
    open: Option<(DateTime<Utc>, f64)>,
    /// The latest evidence's arrival.
    last: Option<DateTime<Utc>>,
    /// Evidence until then is late evidence from before the daily reset.
    stale_until: Option<DateTime<Utc>>,
}

/// A clear that took effect, as pacing learns from it.
#[derive(Debug, Clone, Copy)]
struct Cleared {
    at: DateTime<Utc>,
    /// The evidence rate just before it.
    before: f64,
    /// When the quota ran out again, the same day.
    out: Option<DateTime<Utc>>,
}

/// What [`spend`] weighs: minutes, clears and days.
#[derive(Debug, Clone)]
struct Outlook<'a> {
    /// Minutes to the daily reset.
    to_reset: f64,
    /// Minutes a clear now would last (infinite while the quota is unknown).
    lasts: f64,
    /// Clears left this month.
    budget: u32,
    /// Clears left today.
    today: u32,
    /// Whole days left in the month after today.
    days_left: f64,
    /// Episodes per day in the month so far.
    per_day: f64,
    /// The value of each closed episode of the month.
    past: &'a [f64],
}

/// A clear that lasts less than this share of the time to the reset, while
/// more than [`STORM_MIN_LEFT`] minutes are left, is a retry storm's.
const STORM_SHARE: f64 = 0.25;
const STORM_MIN_LEFT: f64 = 90.0;
/// Of the chances to come, this share is counted: they may not come (a
/// clear held is a clear that may never be spent), so a bird in the hand is
/// worth a little more than one in the bush.
const CHANCES_COUNTED: f64 = 0.7;
/// With no past episode to compare with, one in two is taken to be better.
const PRIOR_BETTER: f64 = 0.5;
/// Clears beyond the episodes expected in the rest of the month that make
/// the budget ample: a storm's short clears are worth spending then.
const AMPLE_SLACK: f64 = 2.0;

/// The pacing rule (see [`Pace`]): spend a clear now?
fn spend(o: &Outlook<'_>) -> bool {
    // With the budget spent the ledger says so (monthly_cap); with no past
    // episode this month, nothing says a later clear would buy more.
    if o.budget == 0 || o.past.is_empty() {
        return true;
    }
    let value = o.lasts.min(o.to_reset);
    let budget = f64::from(o.budget);
    let future = o.per_day * o.days_left;
    let ample = budget >= future + AMPLE_SLACK;
    let storm = o.lasts < o.to_reset * STORM_SHARE && o.to_reset > STORM_MIN_LEFT;
    if storm && !(ample && o.today >= 2) {
        return false;
    }
    let better = o.past.iter().filter(|&&p| p > value).count() as f64;
    let share = (better + PRIOR_BETTER) / (o.past.len() as f64 + 1.0);
    future * share * CHANCES_COUNTED < budget
}

impl Pace {
    /// Takes note of evidence at `now`: the first well after a clear, the
    /// same day, says how long the clear lasted; a new month or day closes
    /// what it must.
    fn observe(&mut self, now: DateTime<Utc>, tz: Tz, rate: f64) {
        let day = calendar::day(tz, now).start;
        let month = calendar::month(tz, now).start;
        if self.month != Some(month) {
            self.month = Some(month);
            self.spent = 0;
            self.past.clear();
            self.ended = None;
            self.open = None;
        }
        if let Some((d, v)) = self.open {
            if d != day {
                self.past.push(v);
                self.open = None;
            }
        }
        // Signals within ten minutes of the clear are late ones from before
        // it (alerting delays); a reset in between says nothing. The rate
        // a few minutes into the new exhaustion, beside the rate before the
        // clear, says what the demand was meanwhile.
        if let Some(c) = self.cleared {
            if calendar::day(tz, c.at).start != day {
                self.cleared = None;
            } else if let Some(out) = c.out {
                if now - out >= chrono::Duration::minutes(4) {
                    self.cleared = None;
                    let served = (c.before + rate) / 2.0 * minutes(out - c.at);
                    if served > 0.0 {
                        self.limit = Some(served);
                    }
                }
            } else if now - c.at >= chrono::Duration::minutes(10) {
                self.cleared = Some(Cleared {
                    out: Some(now),
                    ..c
                });
                if let Some(v) = self.ended.take().and_then(|i| self.past.get_mut(i)) {
                    *v = v.min(minutes(now - c.at));
                }
            }
        }
        // Signals in the first minutes after the reset, when the account
        // was locked just before it, are late ones from before it (alerting
        // delays): the quota has just reset.
        let settle = chrono::Duration::minutes(10);
        if now - day < settle && self.last.is_some_and(|l| l < day && day - l <= settle) {
            self.stale_until = Some(day + settle);
        }
        self.last = Some(now);
        if self.stale(now) {
            return;
        }
        let (value, _, _) = self.value(now, tz, rate);
        let best = self.open.map_or(value, |(_, v)| v.max(value));
        self.open = Some((day, best));
    }

    fn stale(&self, now: DateTime<Utc>) -> bool {
        self.stale_until.is_some_and(|t| now < t)
    }

    /// (value, lasts, to_reset) of a clear now, in minutes.
    fn value(&self, now: DateTime<Utc>, tz: Tz, rate: f64) -> (f64, f64, f64) {
        let to_reset = minutes(calendar::day(tz, now).end - now);
        let lasts = match self.limit {
            Some(limit) if rate > 0.0 => limit / rate,
            _ => f64::INFINITY,
        };
        (lasts.min(to_reset), lasts, to_reset)
    }

    /// A clear took effect (or may have) at `now`; a full one (not a
    /// single-API clear) spends the month's budget and ends the episode.
    fn cleared(&mut self, now: DateTime<Utc>, tz: Tz, rate: f64, full: bool) {
        let day = calendar::day(tz, now).start;
        self.cleared = Some(Cleared {
            at: now,
            before: rate,
            out: None,
        });
        if !full {
            return;
        }
        self.spent += 1;
        self.today = match self.today {
            Some((d, n)) if d == day => Some((d, n + 1)),
            _ => Some((day, 1)),
        };
        if let Some((_, v)) = self.open.take() {
            self.ended = Some(self.past.len());
            self.past.push(v);
        }
    }

    /// The ledger's count of the month's clears, which also knows those
    /// spent before a restart and by hand.
    fn ledger(&mut self, budget: &Budget, now: DateTime<Utc>, tz: Tz) {
        let this_month = self.month == Some(calendar::month(tz, now).start);
        if this_month && budget.month == calendar::month_label(tz, now) {
            self.spent = budget.used;
        }
    }

    /// Whether a clear now is worth spending (see [`spend`]).
    fn worth(&self, now: DateTime<Utc>, tz: Tz, rate: f64, policy: &PolicySettings) -> bool {
        if self.stale(now) {
            return false;
        }
        let day = calendar::day(tz, now);
        let month = calendar::month(tz, now);
        let (_, lasts, to_reset) = self.value(now, tz, rate);
        let today = match self.today {
            Some((d, n)) if d == day.start => n,
            _ => 0,
        };
        let elapsed = ((day.start - month.start).num_hours() as f64 / 24.0).round() + 1.0;
        let episodes = self.past.len() as f64 + 1.0;
        let per_day = episodes / elapsed;
        spend(&Outlook {
            to_reset,
            lasts,
            budget: policy.monthly_cap.saturating_sub(self.spent),
            today: policy.daily_max.saturating_sub(today),
            days_left: ((month.end - day.end).num_hours() as f64 / 24.0).round(),
            per_day,
            past: &self.past,
        })
    }
}

fn minutes(d: chrono::Duration) -> f64 {
    d.num_seconds() as f64 / 60.0
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

    /// Failed calls per minute in the last five minutes of evidence.
    fn rate(&self, now: DateTime<Utc>) -> f64 {
        let since = now - chrono::Duration::minutes(5);
        let recent = self.events.iter().filter(|e| e.at > since);
        let (n, first) = recent.fold((0u64, now), |(n, first), e| {
            (n + u64::from(e.count), first.min(e.at))
        });
        // A signal covers the minute before it: over the minutes the
        // evidence spans, not five, while the episode is younger.
        let span = (minutes(now - first) + 1.0).clamp(1.0, 5.0);
        n as f64 / span
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

    /// The request for the evidence as it stands, marking it in flight.
    fn ask(&mut self, appid: &str) -> Ask {
        self.in_flight = true;
        let (source, trigger) = self.last.clone().unwrap_or_default();
        Ask {
            appid: appid.to_string(),
            source,
            trigger,
            evidence: self.evidence(),
            keys: self.keyed(),
            cgi_path: self.single_cgi_path(),
        }
    }
}

/// The per-account state machine; see the module docs.
#[derive(Debug)]
pub struct Decider {
    timezone: Tz,
    accounts: HashMap<String, AccountState>,
}

impl Decider {
    pub fn new(timezone: Tz) -> Self {
        Self {
            timezone,
            accounts: HashMap::new(),
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
            let rate = state.rate(now);
            state.pace.observe(now, self.timezone, rate);
        }
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
        if policy.pacing {
            let rate = state.rate(now);
            if !state.pace.worth(now, self.timezone, rate, policy) {
                return skip(SkipReason::Pacing, evidence);
            }
        }
        vec![Action::Decide(state.ask(appid))]
    }

    /// The clearer's answer to an [`Ask`] for `appid`.
    pub fn finished(
        &mut self,
        appid: &str,
        policy: &PolicySettings,
        done: Finished,
        now: DateTime<Utc>,
    ) -> Vec<Action> {
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
                budget,
            } => {
                state.retry = None;
                let actions = match (decision, outcome, target) {
                    // A single-API clear that did not work falls back to a
                    // full clear, on the same evidence.
                    (Decision::Clear, Some(o), ClearTarget::Api { cgi_path })
                        if o != Outcome::Ok =>
                    {
                        state.events.iter_mut().for_each(|e| e.cgi_path = None);
                        let mut ask = state.ask(appid);
                        ask.evidence = ask.evidence.max(policy.min_events);
                        ask.source = "fallback".into();
                        ask.trigger = format!("single-API clear of {cgi_path} did not work");
                        vec![Action::Decide(ask)]
                    }
                    (Decision::Clear, Some(Outcome::Ok | Outcome::Ambiguous { .. }), target) => {
                        let rate = state.rate(now);
                        let full = target == ClearTarget::Full;
                        state.pace.cleared(now, self.timezone, rate, full);
                        // The evidence was acted on. Its keys stay known for
                        // the window (here and in the ledger); new evidence
                        // starts a new case that the cooldown then judges.
                        state.events.clear();
                        Vec::new()
                    }
                    (Decision::Skip(reason), ..) => {
                        if let Some(until) = retry_at {
                            state.quiet = Some((until, reason));
                        } else if matches!(reason, SkipReason::AccountDisabled | SkipReason::DryRun)
                        {
                            // Holds until a reload or, for dry-run, until the window moves on.
                            let until = now + chrono::Duration::from_std(QUIET).unwrap_or_default();
                            state.quiet = Some((until, reason));
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
                // After this step's own count of a clear: the ledger's has it.
                if let Some(budget) = budget {
                    state.pace.ledger(&budget, now, self.timezone);
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
            actions.push(Action::Decide(state.ask(appid)));
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
            budget: None,
        }
    }

    fn refused(reason: SkipReason, retry_at: Option<&str>) -> Finished {
        Finished::Decided {
            decision: Decision::Skip(reason),
            target: ClearTarget::Full,
            outcome: None,
            retry_at: retry_at.map(cst),
            budget: None,
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
            budget: None,
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

    /// The pacing rule itself, one case a row.
    #[test]
    fn pacing_rule() {
        let o =
            |to_reset, lasts, budget, today, days_left, per_day, past: &'static [f64]| Outlook {
                to_reset,
                lasts,
                budget,
                today,
                days_left,
                per_day,
                past,
            };
        let inf = f64::INFINITY;
        // (name, outlook, spend)
        let cases = [
            (
                "no budget: the ledger's refusal says why",
                o(100.0, inf, 0, 2, 25.0, 1.0, &[300.0]),
                true,
            ),
            (
                "the month's first episode: nothing to compare it with",
                o(60.0, inf, 3, 2, 28.0, 1.0, &[]),
                true,
            ),
            (
                "early in the month, worth less than most days: wait",
                o(100.0, inf, 3, 2, 25.0, 1.0, &[200.0, 300.0, 150.0]),
                false,
            ),
            (
                "early in the month, worth more than every day so far",
                o(400.0, inf, 3, 2, 25.0, 1.0, &[200.0, 300.0, 150.0]),
                true,
            ),
            (
                "the same value with fewer days left: the bar has fallen",
                o(100.0, inf, 3, 2, 4.0, 1.0, &[200.0, 300.0, 150.0]),
                true,
            ),
            (
                "the month's last day spends whatever it can",
                o(30.0, inf, 3, 2, 0.0, 1.0, &[200.0, 300.0]),
                true,
            ),
            (
                "rare episodes: the budget outlasts them",
                o(100.0, inf, 3, 2, 25.0, 0.1, &[200.0, 300.0]),
                true,
            ),
            (
                "the quota lasts less than the time to the reset: worth what it lasts",
                o(700.0, 120.0, 3, 2, 25.0, 1.0, &[200.0, 300.0, 150.0]),
                false,
            ),
            (
                "a storm eats the clear in 20 minutes: wait for it to pass",
                o(600.0, 20.0, 3, 2, 20.0, 0.2, &[300.0]),
                false,
            ),
            (
                "a storm with an ample budget and two clears left today",
                o(600.0, 20.0, 8, 2, 10.0, 0.1, &[300.0]),
                true,
            ),
            (
                "the same storm, the day's last clear: keep it for after",
                o(600.0, 20.0, 8, 1, 10.0, 0.1, &[300.0]),
                false,
            ),
            (
                "an hour before the reset there is no storm to wait out",
                o(80.0, 10.0, 3, 2, 20.0, 0.2, &[300.0]),
                true,
            ),
            (
                "a sale day: a clear lasts a third of the day left, no storm",
                o(700.0, 250.0, 3, 2, 20.0, 0.3, &[300.0, 250.0]),
                true,
            ),
        ];
        for (name, outlook, want) in cases {
            assert_eq!(spend(&outlook), want, "{name}: {outlook:?}");
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

    /// Feeds `steps` (a signal's time and count, or a decision's answer)
    /// and checks the actions after each.
    fn paced(policy: &PolicySettings, steps: Vec<(&str, Result<u32, Finished>, &[&str])>) {
        let mut decider = Decider::new(chrono_tz::Asia::Shanghai);
        for (i, (t, step, want)) in steps.into_iter().enumerate() {
            let actions = match step {
                Ok(count) => decider.signal("wx1", policy, &signal_at(t, count), cst(t)),
                Err(done) => decider.finished("wx1", policy, done, cst(t)),
            };
            let got: Vec<String> = actions.iter().map(show).collect();
            assert_eq!(got, want, "pacing {}, step {i} at {t}", policy.pacing);
        }
    }

    /// A clear eaten within 20 minutes teaches the quota's size; at a
    /// storm's rate the next clear would go as fast, so it waits until the
    /// rate falls. Without pacing the storm's signal asks at once.
    #[test]
    fn pacing_waits_out_a_storm_that_would_eat_the_clear() {
        let cooldown = || refused(SkipReason::Cooldown, Some("2026-11-10T11:00:00+08:00"));
        for pacing in [true, false] {
            let policy = PolicySettings {
                pacing,
                ..PolicySettings::default()
            };
            let at_11 = match pacing {
                true => "skip pacing 500",
                false => "decide 500 [] full src",
            };
            paced(
                &policy,
                vec![
                    // 500 failed calls a minute: the month's first episode.
                    (
                        "2026-11-10T10:00:00+08:00",
                        Ok(500),
                        &["decide 500 [] full src"],
                    ),
                    ("2026-11-10T10:00:00+08:00", Err(cleared(Outcome::Ok)), &[]),
                    // Out again 20 minutes later; nothing is known yet
                    // of the quota, and the cooldown refuses.
                    (
                        "2026-11-10T10:20:00+08:00",
                        Ok(500),
                        &["decide 500 [] full src"],
                    ),
                    ("2026-11-10T10:20:00+08:00", Err(cooldown()), &[]),
                    (
                        "2026-11-10T10:24:00+08:00",
                        Ok(500),
                        &["skip cooldown 1000"],
                    ),
                    // The quota is about 10,000 calls: 20 minutes of the
                    // 780 to the reset.
                    ("2026-11-10T11:00:00+08:00", Ok(500), &[at_11]),
                ],
            );
            if pacing {
                // The storm is over: 5 a minute, a clear would last the day.
                let mut steps = vec![
                    (
                        "2026-11-10T10:00:00+08:00",
                        Ok(500),
                        &["decide 500 [] full src"][..],
                    ),
                    ("2026-11-10T10:00:00+08:00", Err(cleared(Outcome::Ok)), &[]),
                    (
                        "2026-11-10T10:20:00+08:00",
                        Ok(500),
                        &["decide 500 [] full src"],
                    ),
                    ("2026-11-10T10:20:00+08:00", Err(cooldown()), &[]),
                    (
                        "2026-11-10T10:24:00+08:00",
                        Ok(500),
                        &["skip cooldown 1000"],
                    ),
                    ("2026-11-10T11:00:00+08:00", Ok(500), &["skip pacing 500"]),
                ];
                steps.push((
                    "2026-11-10T16:00:00+08:00",
                    Ok(5),
                    &["decide 5 [] full src"],
                ));
                paced(&policy, steps);
            }
        }
    }

    /// The month's budget: the first episode is spent; a later one worth
    /// less, with most of the month to come, waits; on the month's last day
    /// the clear left is spent. Late signals just after a reset that follow
    /// an episode before it are not acted on.
    #[test]
    fn pacing_keeps_the_budget_for_better_days_and_spends_it_by_the_end() {
        let policy = PolicySettings {
            monthly_cap: 2,
            ..PolicySettings::default()
        };
        paced(
            &policy,
            vec![
                // 19:00: five hours to the reset.
                (
                    "2026-11-02T19:00:00+08:00",
                    Ok(10),
                    &["decide 10 [] full src"],
                ),
                ("2026-11-02T19:00:00+08:00", Err(cleared(Outcome::Ok)), &[]),
                // 22:00 the next day: two hours, with 27 days to come.
                ("2026-11-03T22:00:00+08:00", Ok(10), &["skip pacing 10"]),
                ("2026-11-03T23:58:00+08:00", Ok(10), &["skip pacing 10"]),
                ("2026-11-04T00:03:00+08:00", Ok(10), &["skip pacing 10"]),
                // 21:00 on the last day: three hours, and the last chance.
                (
                    "2026-11-30T21:00:00+08:00",
                    Ok(10),
                    &["decide 10 [] full src"],
                ),
            ],
        );
        let policy = PolicySettings {
            monthly_cap: 10,
            ..PolicySettings::default()
        };
        paced(
            &policy,
            vec![
                (
                    "2026-11-29T23:55:00+08:00",
                    Ok(1),
                    &["decide 1 [] full src"],
                ),
                (
                    "2026-11-29T23:55:00+08:00",
                    Err(refused(
                        SkipReason::ResetGuard,
                        Some("2026-11-30T00:00:00+08:00"),
                    )),
                    &[],
                ),
                ("2026-11-29T23:58:00+08:00", Ok(1), &["skip reset_guard 2"]),
                // Late signals of the minutes before the reset.
                ("2026-11-30T00:03:00+08:00", Ok(1), &["skip pacing 1"]),
                ("2026-11-30T00:09:00+08:00", Ok(1), &["skip pacing 1"]),
                // A real exhaustion: the last day spends.
                (
                    "2026-11-30T00:11:00+08:00",
                    Ok(1),
                    &["decide 2 [] full src"],
                ),
            ],
        );
    }

    /// After a restart the decision step knows only its own clears; the
    /// ledger's answer says how many the month has spent, so a clear past
    /// the cap is refused as `monthly_cap`, not held as `pacing`.
    #[test]
    fn pacing_counts_the_clears_the_ledger_knows() {
        let policy = PolicySettings {
            monthly_cap: 2,
            ..PolicySettings::default()
        };
        let with_budget = |used| Finished::Decided {
            decision: Decision::Clear,
            target: ClearTarget::Full,
            outcome: Some(Outcome::Ok),
            retry_at: None,
            budget: Some(Budget {
                used,
                cap: 2,
                left: 2 - used,
                month: "2026-11".into(),
            }),
        };
        for (used, at_22) in [(1, "skip pacing 10"), (2, "decide 10 [] full src")] {
            paced(
                &policy,
                vec![
                    (
                        "2026-11-02T19:00:00+08:00",
                        Ok(10),
                        &["decide 10 [] full src"],
                    ),
                    ("2026-11-02T19:00:00+08:00", Err(with_budget(used)), &[]),
                    ("2026-11-03T22:00:00+08:00", Ok(10), &[at_22]),
                ],
            );
        }
    }
}
