//! Pacing (`policy.pacing`): spend the month's clears where they buy the most
//! locked minutes back, using only what is known when deciding.
//!
//! Two parts, both pure. [`Pace`] is what pacing has learned of one account:
//! the month's episodes and the value a clear had in each, the account's
//! quota as the latest eaten clear measured it, the demand's rate, and
//! whether signals are late ones from before the daily reset. It learns
//! from [`Note`]s (evidence, clears) that the decision step takes; the
//! ledger merges every replica's notes into one memory ([`merge_into`]),
//! and a request carries the process's own notes the ledger may not have
//! yet ([`Asked`]), so the reading weighed under the ledger's lock is the
//! same whichever replica decides. [`spend`] is the
//! rule: given the reading and the budget the ledger counts under its lock,
//! is a clear now worth spending? It is applied by [`crate::policy::decide`]
//! at its place in the order (after `cooldown`, `daily_max` and
//! `reset_guard`, before `dry_run`), so its refusal is heard like any other.
//! This module reads no clock, does no I/O and does not count the budget.
//!
//! A clear now is worth `min(minutes to the reset, minutes it would last)`.
//! It lasts the account's daily quota over the demand: the quota is read
//! from WeChat ([`Note::Quota`]) or learned from the latest clear that was
//! eaten the same day (the failed calls per minute before it and after the
//! next exhaustion, times the minutes it lasted), whichever is newer; the
//! demand is the evidence's rate (failed calls per minute, which is the
//! demand while locked); until the quota is known, a clear
//! is taken to last to the reset. Each episode of the month (an exhaustion,
//! until a clear or the reset) is remembered with the best value a clear
//! had in it. A clear is spent when the clears left outnumber the better
//! chances the rest of the month is expected to bring: episodes per day so
//! far, times the whole days left, times the share of the past episodes
//! that were worth more, of which [`CHANCES_COUNTED`] are counted. The
//! month before, when pacing saw it, weighs in ([`Before`]): its episodes
//! per day as [`BEFORE_DAYS`] days of this month's, and its episodes among
//! the past ones. So the bar falls as the month runs out with budget left,
//! and on the month's last day every clear is spent; with no month before,
//! the month's first episode is spent too (nothing to compare it with). Apart from that, a clear that
//! would be eaten long before the reset (a retry storm: it lasts minutes)
//! waits for the storm to pass, unless the budget is ample. Signals just
//! after the reset that follow an episode just before it are late ones
//! and are not acted on.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::calendar;

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
/// Signals this soon after a clear are late reports of failures before it
/// (alerting delays), and say nothing of how long it lasted.
const LATE_AFTER_CLEAR: i64 = 10;
/// Minutes into a new exhaustion at which its rate says what the demand was
/// while the clear lasted.
const RATE_SETTLES: i64 = 4;
/// Minutes either side of the daily reset within which signals after it,
/// following an episode before it, are late ones from before it.
const RESET_SETTLES: i64 = 10;

/// What pacing knows when a clear is asked for, apart from the budget (the
/// ledger counts that under its lock): the input [`spend`] weighs.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The evidence is a late report from before the daily reset: the
    /// quota has just reset, a clear would buy nothing.
    pub stale: bool,
    /// Minutes a clear now would last (infinite while the quota is unknown).
    pub lasts: f64,
    /// The value (minutes) of each closed episode of the month.
    pub past: Vec<f64>,
    /// The month before's, as the ledger kept them: the value of each of
    /// its episodes, and its episodes per day (none without it).
    pub before: Option<Box<Before>>,
}

/// What pacing kept of the month before (the months before, SPEC section 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Before {
    pub past: Vec<f64>,
    pub per_day: f64,
}

/// Days of the month before that the month's own episode rate is blended
/// with: early in a month its few days say little.
const BEFORE_DAYS: f64 = 7.0;

/// The pacing rule: spend a clear now, at `now`, with `budget` clears left
/// this month and `today` left today (as the ledger counts them)?
pub fn spend(reading: &Reading, budget: u32, today: u32, now: DateTime<Utc>, tz: Tz) -> bool {
    if reading.stale {
        return false;
    }
    let day = calendar::day(tz, now);
    let month = calendar::month(tz, now);
    let elapsed = ((day.start - month.start).num_hours() as f64 / 24.0).round() + 1.0;
    let episodes = reading.past.len() as f64 + 1.0;
    // The month before says what a month brings while this one has said
    // little: its episodes per day weigh as [`BEFORE_DAYS`] days, and its
    // episodes' values join the month's own.
    let before = reading.before.as_deref();
    let per_day = match before {
        Some(b) => (episodes + b.per_day * BEFORE_DAYS) / (elapsed + BEFORE_DAYS),
        None => episodes / elapsed,
    };
    let pool: Vec<f64>;
    let past = match before {
        Some(b) => {
            pool = reading.past.iter().chain(&b.past).copied().collect();
            &pool
        }
        None => &reading.past,
    };
    worth_spending(&Outlook {
        to_reset: minutes(day.end - now),
        lasts: reading.lasts,
        budget,
        today,
        days_left: ((month.end - day.end).num_hours() as f64 / 24.0).round(),
        per_day,
        past,
    })
}

/// What [`worth_spending`] weighs: minutes, clears and days.
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

fn worth_spending(o: &Outlook<'_>) -> bool {
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

/// Minutes of evidence the demand's rate is taken over.
const RATE_MINUTES: i64 = 5;
/// How long the ledger's memory keeps a replica's count of merged notes:
/// its notes reach the ledger within seconds, or with the ledger's outage.
const MERGED_KEPT_DAYS: i64 = 3;

/// One thing a process saw that pacing learns from. Each replica notes what
/// it sees; the ledger's memory is every replica's notes applied once, in
/// the order they reached it ([`Pace::merge`]), so replicas that split an
/// account's signals share one account of its month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// `count` failed calls reported at `at`.
    Evidence { at: DateTime<Utc>, count: u32 },
    /// A clear took effect (or may have) at `at`; a full one (not a
    /// single-API clear) ends the episode.
    Cleared { at: DateTime<Utc>, full: bool },
    /// WeChat said at `at` that the API the evidence names serves `calls`
    /// a day (`openapi/quota/get`'s `daily_limit`).
    Quota { at: DateTime<Utc>, calls: u64 },
}

impl Note {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Note::Evidence { at, .. } | Note::Cleared { at, .. } | Note::Quota { at, .. } => *at,
        }
    }
}

/// What pacing has learned of one account's month (see the module docs).
/// The ledger keeps it (as JSON), so a restart goes on from it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pace {
    /// Calls the account's quota serves in a day, as last seen: read from
    /// WeChat, or measured by an eaten clear, whichever is newer.
    limit: Option<f64>,
    /// The latest clear, until it has taught how long the quota lasts.
    cleared: Option<Cleared>,
    /// Which of `past` the latest full clear ended: how long it lasted is
    /// what it was worth.
    ended: Option<usize>,
    /// The month the figures below are of (its start).
    month: Option<DateTime<Utc>>,
    /// The best value (minutes) a clear had in each closed episode of the month.
    past: Vec<f64>,
    /// The open episode: its day, and the best value a clear had in it so far.
    open: Option<(DateTime<Utc>, f64)>,
    /// The latest evidence's arrival.
    last: Option<DateTime<Utc>>,
    /// Evidence until then is late evidence from before the daily reset.
    stale_until: Option<DateTime<Utc>>,
    /// The evidence of the last [`RATE_MINUTES`], since the latest clear and
    /// the daily reset: (arrival, failed calls), one entry per second.
    recent: VecDeque<(DateTime<Utc>, u64)>,
    /// The latest note applied: a note that reaches the memory after a
    /// later one (another replica's) counts as of then.
    seen: Option<DateTime<Utc>>,
    /// Per replica, the last of its notes merged, and when.
    merged: BTreeMap<String, (u64, DateTime<Utc>)>,
    /// The month before, when it was the one just before this one.
    before: Option<Before>,
}

/// A clear that took effect, as pacing learns from it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Cleared {
    at: DateTime<Utc>,
    /// The evidence rate just before it.
    before: f64,
    /// When the quota ran out again, the same day.
    out: Option<DateTime<Utc>>,
}

impl Pace {
    /// Learns from `note` (times in `tz`).
    pub fn apply(&mut self, note: &Note, tz: Tz) {
        let at = self.seen.map_or(note.at(), |seen| seen.max(note.at()));
        self.seen = Some(at);
        match *note {
            Note::Evidence { count, .. } => self.observe(at, tz, count),
            Note::Cleared { full, .. } => self.clear(at, full),
            Note::Quota { calls, .. } if calls > 0 => self.limit = Some(calls as f64),
            Note::Quota { .. } => {}
        }
    }

    /// Learns from `replica`'s `seq`-th note unless it was merged already:
    /// a process hands its notes to the ledger and may weigh them again
    /// before it hears they were taken. True if the note was new.
    pub fn merge(&mut self, replica: &str, seq: u64, note: &Note, tz: Tz) -> bool {
        if self.merged.get(replica).is_some_and(|(s, _)| *s >= seq) {
            return false;
        }
        self.apply(note, tz);
        let at = self.seen.unwrap_or(note.at());
        let kept = at - chrono::Duration::days(MERGED_KEPT_DAYS);
        self.merged.retain(|_, (_, t)| *t >= kept);
        self.merged.insert(replica.to_string(), (seq, at));
        true
    }

    /// The sum, over the replicas this memory still counts, of the last
    /// note merged from each: a process numbers its notes across all its
    /// accounts, so this is the number of notes merged only where each
    /// process noted on this account alone (as in the tests).
    pub fn notes(&self) -> u64 {
        self.merged.values().map(|(seq, _)| seq).sum()
    }

    /// The last of `replica`'s notes this memory holds.
    pub fn merged(&self, replica: &str) -> u64 {
        self.merged.get(replica).map_or(0, |(s, _)| *s)
    }

    /// Takes note of `count` failed calls at `now`: the first evidence well
    /// after a clear, the same day, says how long the clear lasted; a new
    /// month or day closes what it must.
    fn observe(&mut self, now: DateTime<Utc>, tz: Tz, count: u32) {
        let day = calendar::day(tz, now).start;
        let month = calendar::month(tz, now).start;
        if self.month != Some(month) {
            if let Some((_, v)) = self.open.take() {
                self.past.push(v);
            }
            let past = std::mem::take(&mut self.past);
            self.before = self.month.and_then(|m| {
                let days = ((month - m).num_hours() as f64 / 24.0).round();
                let next = calendar::month(tz, m).end == month;
                next.then(|| Before {
                    per_day: past.len() as f64 / days,
                    past,
                })
            });
            self.month = Some(month);
            self.ended = None;
        }
        if let Some((d, v)) = self.open {
            if d != day {
                self.past.push(v);
                self.open = None;
            }
        }
        self.record(now, day, count);
        let rate = self.rate(now);
        self.learn(now, day, rate);
        // The first minutes after the reset, when the account was locked
        // just before it: late signals (an alert's `for:` and `group_wait`).
        let settle = chrono::Duration::minutes(RESET_SETTLES);
        if now - day < settle && self.last.is_some_and(|l| l < day && day - l <= settle) {
            self.stale_until = Some(day + settle);
        }
        self.last = Some(now);
        if self.stale(now) {
            return;
        }
        let value = self
            .lasts(rate)
            .min(minutes(calendar::day(tz, now).end - now));
        let best = self.open.map_or(value, |(_, v)| v.max(value));
        self.open = Some((day, best));
    }

    /// Keeps `count` in the evidence the rate is taken over.
    fn record(&mut self, now: DateTime<Utc>, day: DateTime<Utc>, count: u32) {
        let since = now - chrono::Duration::minutes(RATE_MINUTES);
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| *t <= since || *t < day)
        {
            self.recent.pop_front();
        }
        match self.recent.back_mut() {
            Some((t, n)) if now - *t < chrono::Duration::seconds(1) => *n += u64::from(count),
            _ => self.recent.push_back((now, u64::from(count))),
        }
    }

    /// Failed calls per minute in the last [`RATE_MINUTES`] of evidence: a
    /// signal covers the minute before it, so over the minutes the evidence
    /// spans while the episode is younger.
    pub fn rate(&self, now: DateTime<Utc>) -> f64 {
        let since = now - chrono::Duration::minutes(RATE_MINUTES);
        let recent = self.recent.iter().filter(|(t, _)| *t > since);
        let (n, first) = recent.fold((0u64, now), |(n, first), (t, c)| (n + c, first.min(*t)));
        let span = (minutes(now - first) + 1.0).clamp(1.0, RATE_MINUTES as f64);
        n as f64 / span
    }

    /// What the latest clear teaches, from evidence at `now` on `day`. The
    /// rate a few minutes into the new exhaustion, beside the rate before
    /// the clear, says what the demand was meanwhile; a reset in between
    /// says nothing.
    fn learn(&mut self, now: DateTime<Utc>, day: DateTime<Utc>, rate: f64) {
        let Some(c) = self.cleared else {
            return;
        };
        if c.at < day {
            self.cleared = None;
        } else if let Some(out) = c.out {
            if now - out >= chrono::Duration::minutes(RATE_SETTLES) {
                self.cleared = None;
                let served = (c.before + rate) / 2.0 * minutes(out - c.at);
                if served > 0.0 {
                    self.limit = Some(served);
                }
            }
        } else if now - c.at >= chrono::Duration::minutes(LATE_AFTER_CLEAR) {
            self.cleared = Some(Cleared {
                out: Some(now),
                ..c
            });
            if let Some(v) = self.ended.take().and_then(|i| self.past.get_mut(i)) {
                *v = v.min(minutes(now - c.at));
            }
        }
    }

    fn stale(&self, now: DateTime<Utc>) -> bool {
        self.stale_until.is_some_and(|t| now < t)
    }

    /// Minutes a clear would last at `rate`.
    fn lasts(&self, rate: f64) -> f64 {
        match self.limit {
            Some(limit) if rate > 0.0 => limit / rate,
            _ => f64::INFINITY,
        }
    }

    /// A clear took effect (or may have) at `now`: the evidence before it
    /// is spent; a full one ends the episode.
    fn clear(&mut self, now: DateTime<Utc>, full: bool) {
        self.cleared = Some(Cleared {
            at: now,
            before: self.rate(now),
            out: None,
        });
        self.recent.clear();
        if !full {
            return;
        }
        if let Some((_, v)) = self.open.take() {
            self.ended = Some(self.past.len());
            self.past.push(v);
        }
    }

    /// The memory as the ledger keeps it.
    pub fn to_memory(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The memory the ledger kept; an unreadable one is forgotten (pacing
    /// then starts the month afresh, as it did before it had a memory).
    pub fn from_memory(memory: &str) -> Option<Pace> {
        serde_json::from_str(memory).ok()
    }

    /// What a request at `now` carries to the policy.
    pub fn reading(&self, now: DateTime<Utc>) -> Reading {
        Reading {
            stale: self.stale(now),
            lasts: self.lasts(self.rate(now)),
            past: self.past.clone(),
            before: self.before.clone().map(Box::new),
        }
    }
}

/// The ledger's memory `kept` (an unreadable one starts afresh, with a
/// warning: it may be a later version's) with
/// `replica`'s `notes` merged in, each once; and the last of the
/// replica's notes it then holds. Each store runs this under a lock that
/// every writer of the account's memory takes.
pub fn merge_into(
    kept: Option<&str>,
    replica: &str,
    notes: &[(u64, Note)],
    tz: Tz,
) -> (String, u64) {
    let read = kept.map(Pace::from_memory);
    if let Some(None) = read {
        tracing::warn!(
            replica,
            "Pacing's memory in the ledger cannot be read; starting the month afresh"
        );
    }
    let mut pace = read.flatten().unwrap_or_default();
    for (seq, note) in notes {
        pace.merge(replica, *seq, note, tz);
    }
    (pace.to_memory(), pace.merged(replica))
}

/// What a request carries for pacing: the reading as this process knows
/// it, and its notes the ledger may not have merged yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub reading: Reading,
    /// This process's name among the replicas, with its notes the ledger
    /// had not confirmed when it asked (none without a shared memory).
    pub replica: String,
    pub unsynced: Vec<(u64, Note)>,
}

impl Asked {
    /// The reading at `now` under the ledger's lock: its memory (every
    /// replica's notes), with this process's notes it does not hold yet.
    /// Without a memory, or with one that cannot be read, the reading as
    /// this process knows it.
    pub fn reading_on(&self, memory: Option<&str>, now: DateTime<Utc>, tz: Tz) -> Reading {
        let Some(mut pace) = memory.and_then(Pace::from_memory) else {
            return self.reading.clone();
        };
        for (seq, note) in &self.unsynced {
            pace.merge(&self.replica, *seq, note, tz);
        }
        pace.reading(now)
    }
}

fn minutes(d: chrono::Duration) -> f64 {
    d.num_seconds() as f64 / 60.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(worth_spending(&outlook), want, "{name}: {outlook:?}");
        }
    }

    fn cst(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{s}+08:00"))
            .unwrap()
            .with_timezone(&Utc)
    }

    /// [`spend`] turns the calendar into the outlook: days gone and left,
    /// episodes per day, minutes to the reset; a stale reading never spends.
    #[test]
    fn the_calendar_sets_the_bar() {
        let tz = chrono_tz::Asia::Shanghai;
        let reading = |stale, past: &[f64]| Reading {
            stale,
            lasts: f64::INFINITY,
            past: past.to_vec(),
            before: None,
        };
        // (name, reading, budget, today, now, spend)
        let cases = [
            (
                "the 3rd, two hours to go, three better days behind",
                reading(false, &[200.0, 300.0, 150.0]),
                3,
                2,
                "2026-11-03T22:00:00",
                false,
            ),
            (
                "the same evening on the month's last day",
                reading(false, &[200.0, 300.0, 150.0]),
                3,
                2,
                "2026-11-30T22:00:00",
                true,
            ),
            (
                "the 3rd at 08:00, worth more than any day so far, four left",
                reading(false, &[200.0, 300.0, 150.0]),
                4,
                2,
                "2026-11-03T08:00:00",
                true,
            ),
            (
                "a late signal after the reset, on the last day",
                reading(true, &[200.0]),
                3,
                2,
                "2026-11-30T00:03:00",
                false,
            ),
            (
                "the month's first episode",
                reading(false, &[]),
                1,
                1,
                "2026-11-03T22:00:00",
                true,
            ),
            (
                "the month's first episode, a month before of better days",
                Reading {
                    before: Some(Box::new(Before {
                        past: vec![800.0, 900.0, 700.0],
                        per_day: 0.5,
                    })),
                    ..reading(false, &[])
                },
                3,
                2,
                "2026-11-03T22:00:00",
                false,
            ),
            (
                "the same with a month before that saw few episodes",
                Reading {
                    before: Some(Box::new(Before {
                        past: vec![800.0, 900.0, 700.0],
                        per_day: 0.05,
                    })),
                    ..reading(false, &[])
                },
                3,
                2,
                "2026-11-03T22:00:00",
                true,
            ),
        ];
        for (name, reading, budget, today, now, want) in cases {
            assert_eq!(spend(&reading, budget, today, cst(now), tz), want, "{name}");
        }
    }

    /// What [`Pace`] learns: a clear eaten in 20 minutes at 500 failed
    /// calls a minute measures a quota of about 10,000 calls; the episode
    /// it ended is worth the 20 minutes it lasted; a new day closes the
    /// open episode; the minutes after a reset that follow an episode
    /// before it are stale.
    #[test]
    fn pace_learns_the_quota_and_the_episodes() {
        let tz = chrono_tz::Asia::Shanghai;
        let mut pace = Pace::default();
        let evidence = |pace: &mut Pace, at: &str, count| {
            pace.apply(&Note::Evidence { at: cst(at), count }, tz);
            pace.reading(cst(at))
        };
        let r = evidence(&mut pace, "2026-11-10T10:00:00", 500);
        assert_eq!(r.lasts, f64::INFINITY);
        pace.apply(
            &Note::Cleared {
                at: cst("2026-11-10T10:00:00"),
                full: true,
            },
            tz,
        );
        assert_eq!(pace.reading(cst("2026-11-10T10:00:00")).past, [840.0]);
        let r = evidence(&mut pace, "2026-11-10T10:20:00", 500);
        assert_eq!(r.past, [20.0], "the clear was worth what it lasted");
        // 2,500 failed calls over the 5 minutes since 10:20: 500 a minute.
        let r = evidence(&mut pace, "2026-11-10T10:24:00", 2000);
        assert_eq!(r.lasts, 20.0, "10,000 calls at 500 a minute");
        let r = evidence(&mut pace, "2026-11-10T23:58:00", 5);
        assert_eq!(r.lasts, 2000.0, "10,000 calls at 5 a minute");

        let r = evidence(&mut pace, "2026-11-11T00:03:00", 5);
        assert!(r.stale, "late signals after the reset");
        assert_eq!(r.past, [20.0, 820.0], "yesterday's open episode closed");
        assert!(!evidence(&mut pace, "2026-11-11T00:11:00", 5).stale);
        let r = evidence(&mut pace, "2026-12-01T09:00:00", 5);
        assert!(r.past.is_empty(), "a new month starts afresh");
        let november = Before {
            past: vec![20.0, 820.0, 1429.0],
            per_day: 0.1,
        };
        assert_eq!(
            r.before,
            Some(Box::new(november)),
            "and keeps the month before"
        );
        let r = evidence(&mut pace, "2027-02-01T09:00:00", 5);
        assert_eq!(r.before, None, "a month between: nothing of it");
    }

    /// The demand's rate, one case a row: (name, evidence as (minute,
    /// failed calls), then a clear's minute if any, minute read, rate).
    #[test]
    fn the_rate_is_the_last_five_minutes_of_evidence() {
        let tz = chrono_tz::Asia::Shanghai;
        let at = |m: i64| cst("2026-11-10T10:00:00") + chrono::Duration::minutes(m);
        type Case = (&'static str, &'static [(i64, u32)], Option<i64>, i64, f64);
        let cases: [Case; 5] = [
            ("one signal covers its minute", &[(0, 300)], None, 0, 300.0),
            (
                "over the minutes the evidence spans",
                &[(0, 300), (2, 300)],
                None,
                2,
                200.0,
            ),
            (
                "never over more than five",
                &[(0, 100), (2, 100), (4, 100), (8, 100)],
                None,
                8,
                100.0 / 5.0 * 2.0,
            ),
            (
                "a clear spends the evidence before it",
                &[(0, 300), (3, 300)],
                Some(3),
                4,
                0.0,
            ),
            (
                "the daily reset too",
                &[(838, 300), (841, 100)],
                None,
                841,
                100.0,
            ),
        ];
        for (name, evidence, clear, read, want) in cases {
            let mut pace = Pace::default();
            for &(m, count) in evidence {
                pace.apply(&Note::Evidence { at: at(m), count }, tz);
            }
            if let Some(m) = clear {
                pace.apply(
                    &Note::Cleared {
                        at: at(m),
                        full: true,
                    },
                    tz,
                );
            }
            assert_eq!(pace.rate(at(read)), want, "{name}");
        }
    }

    /// Two replicas' notes, merged by the ledger in the order they reach
    /// it, make the memory one process would have made; a note merged
    /// twice (a process weighs its own notes again before it hears the
    /// ledger took them) counts once.
    #[test]
    fn merged_notes_make_one_memory() {
        let tz = chrono_tz::Asia::Shanghai;
        let notes: Vec<Note> = [
            ("10:00", 500, false),
            ("10:00", 0, true),
            ("10:05", 500, false),
            ("10:20", 500, false),
            ("10:24", 2000, false),
            ("11:00", 500, false),
        ]
        .iter()
        .map(|&(t, count, clear)| {
            let at = cst(&format!("2026-11-10T{t}:00"));
            match clear {
                true => Note::Cleared { at, full: true },
                false => Note::Evidence { at, count },
            }
        })
        .collect();
        let mut one = Pace::default();
        notes.iter().for_each(|n| one.apply(n, tz));

        let mut shared = Pace::default();
        for (i, note) in notes.iter().enumerate() {
            let (replica, seq) = if i % 2 == 0 {
                ("a", i + 1)
            } else {
                ("b", i + 1)
            };
            assert!(shared.merge(replica, seq as u64, note, tz));
            assert!(!shared.merge(replica, seq as u64, note, tz), "once only");
        }
        let now = cst("2026-11-10T11:00:00");
        assert_eq!(shared.reading(now), one.reading(now));
        assert_eq!(shared.limit, Some(10_000.0));
        assert_eq!(
            (shared.merged("a"), shared.merged("b"), shared.merged("c")),
            (5, 6, 0)
        );

        // A note that reaches the memory after a later one counts as of it.
        let mut late = one.clone();
        late.apply(
            &Note::Evidence {
                at: cst("2026-11-10T10:59:00"),
                count: 500,
            },
            tz,
        );
        assert_eq!(late.seen, Some(now));
    }
}
