//! The `oracle` reference policy (SPEC section 8): with hindsight, the full
//! clears (at most `monthly_cap` per account and calendar month) that
//! minimize locked minutes, each decided when a signal is delivered for the
//! account in the oracle's own world; ties go to fewer clears. It only plans:
//! the plan is replayed in [`super::world`], whose figures are the ones
//! printed, and a test holds both against a brute force.
//!
//! With a signal delay D, a minute m that fails signals at its end plus D,
//! and a clear decided then takes effect at boundary m + 1 + L, where the lag
//! L is D in whole minutes, rounded up (0 without a delay). So a clear can
//! take effect at boundary c exactly when minute c − 1 − L failed in the
//! oracle's own world, whatever clears take effect after that minute. Its
//! decision time lies in the minute before c, so in c's day and month: the
//! month's budget is spent by the clears taking effect in its days. A clear
//! taking effect at 00:00 (the reset does the same) or at the period's end
//! changes nothing and is never planned.
//!
//! # The state the programme carries
//!
//! The programme stands at boundaries: a clear's effect, or a 00:00. From a
//! boundary b on, the world depends on three things only:
//! - b itself: every counter of the account is 0 there, so until the next
//!   clear or 00:00 the minutes fail as in a fresh segment from b;
//! - `pending`, the effect boundaries that signals already sent allow: the
//!   failing minutes among b − L to b − 1 signal after b (clears taking effect
//!   at b + 1 to b + L). Minutes before b − L signalled at or before b, and a
//!   clear decided on one takes effect at or before b: nothing more. Without
//!   a delay `pending` is always empty;
//! - the clears left in the month.
//!
//! A later boundary's `pending` is what of b's is still ahead plus the
//! segment's own failing minutes within L of it, so the state is closed.
//! Across 00:00 `pending` holds the previous day's last L failing minutes
//! ("a 23:59 failure signals in the next day"): a clear on one of them,
//! decided just after 00:00 and counted in the new day's month, takes effect
//! in the day's first L minutes and buys time back when those minutes spent
//! the quota again. With a delay a clear can also follow the previous one
//! by L minutes or fewer, decided on a minute that failed before that one
//! took effect (the decision itself comes after it: signals of successive
//! minutes arrive a minute apart); both need `pending`. So there are no
//! independent days: one programme runs over the whole period, memoized on
//! (boundary, clears left, pending), a 00:00 being a boundary that costs no
//! clear and a month's first 00:00 refilling the budget. Each step spends a clear or reaches the next
//! day, so the recursion is at most days + clears deep.
//!
//! Failing is monotone in the segment's start (a counter that started later
//! holds at most as much, and a minute fails when its counter is high), so a
//! segment with no locked minute gains nothing from a clear: the programme
//! stops there.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use chrono::Duration;

use super::trace::Trace;
use super::world::Attempt;
use crate::calendar;
use crate::event::ClearTarget;

/// What the programme found for one account: the clears' decision times.
pub struct Schedule {
    pub clears: Vec<Attempt>,
    /// The locked minutes the programme expects; the replay must agree.
    pub locked_minutes: u64,
}

/// From a boundary with every counter at 0 to the next 00:00 (or the
/// period's end), no clear.
struct Segment {
    /// The next 00:00, or the period's end.
    end: u32,
    /// `locked[i]`: locked minutes in the first i minutes.
    locked: Vec<u64>,
    /// Boundaries where a clear decided on a signal of this segment takes
    /// effect, in order, before the period's end; those past `end` are the
    /// next day's `pending`.
    candidates: Vec<u32>,
}

/// The first step of a best plan from a boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A clear taking effect at this boundary.
    Clear(u32),
    /// No clear before the segment's end.
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Best {
    locked: u64,
    clears: u32,
    step: Step,
}

impl Best {
    const NOTHING: Best = Best {
        locked: 0,
        clears: 0,
        step: Step::Rest,
    };

    /// `rest` after `locked` more minutes and `clears` more clears, first
    /// taking `step`.
    fn then(locked: u64, clears: u32, step: Step, rest: Best) -> Best {
        Best {
            locked: locked + rest.locked,
            clears: clears + rest.clears,
            step,
        }
    }

    /// Fewer locked minutes, then fewer clears.
    fn beats(&self, other: &Best) -> bool {
        (self.locked, self.clears) < (other.locked, other.clears)
    }

    /// Whether a plan whose first clear leaves `before` locked minutes ahead
    /// of it can still beat `self`: at best it locks nothing more and spends
    /// that one clear. `before` only grows with the clear's boundary, so once
    /// this is false it is false for every later clear in the segment.
    fn reachable(&self, before: u64) -> bool {
        (before, 1) < (self.locked, self.clears)
    }
}

/// The programme's maps are keyed by minutes and counts, looked up a few
/// times per transition: a multiply-rotate hash (rustc's Fx) is enough for
/// such keys and much cheaper than the default SipHash.
#[derive(Default)]
struct MinuteHasher(u64);

impl Hasher for MinuteHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(u64::from(b)));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<MinuteHasher>>;

/// The best plans found, by (boundary, clears left) and `pending`. Most
/// boundaries have nothing pending (all of them without a delay): those need
/// no list to search.
#[derive(Default)]
struct Memo {
    settled: Map<(u32, u32), Best>,
    pending: Map<(u32, u32), Vec<Seen>>,
}

/// A `pending` seen at a boundary, and the best plan from there with it.
type Seen = (Box<[u32]>, Best);

impl Memo {
    fn get(&self, from: u32, k: u32, pending: &[u32]) -> Option<Best> {
        if pending.is_empty() {
            return self.settled.get(&(from, k)).copied();
        }
        let seen = self.pending.get(&(from, k))?;
        seen.iter().find(|(p, _)| **p == *pending).map(|(_, b)| *b)
    }

    fn insert(&mut self, from: u32, k: u32, pending: &[u32], best: Best) {
        if pending.is_empty() {
            self.settled.insert((from, k), best);
        } else {
            let seen = self.pending.entry((from, k)).or_default();
            seen.push((pending.into(), best));
        }
    }
}

/// One account's programme over the whole period.
struct Programme<'t> {
    trace: &'t Trace,
    pairs: Vec<usize>,
    /// Whole minutes from a failing minute's end to its clear's effect.
    lag: u32,
    /// The account's clears per month.
    cap: u32,
    /// Each day's 00:00 as a minute of the trace, in order (the first is 0).
    days: Vec<u32>,
    /// Per day: whether it opens a calendar month (the budget refills).
    opens_month: Vec<bool>,
    segments: Map<u32, Rc<Segment>>,
    memo: Memo,
}

impl Programme<'_> {
    fn segment(&mut self, from: u32) -> Rc<Segment> {
        if let Some(seg) = self.segments.get(&from) {
            return seg.clone();
        }
        let seg = Rc::new(self.simulate(from));
        self.segments.insert(from, seg.clone());
        seg
    }

    fn simulate(&self, from: u32) -> Segment {
        let trace = self.trace;
        let day = self.days.partition_point(|&d| d <= from);
        let end = self.days.get(day).copied().unwrap_or(trace.minutes);
        let mut used = vec![0u64; self.pairs.len()];
        let mut rows: Vec<usize> = self
            .pairs
            .iter()
            .map(|&p| trace.demand[p].partition_point(|r| r.0 < from))
            .collect();
        let mut locked = Vec::with_capacity((end - from) as usize + 1);
        let mut candidates = Vec::new();
        let mut total = 0u64;
        locked.push(0);
        for m in from..end {
            let mut failed = false;
            for (i, &p) in self.pairs.iter().enumerate() {
                let Some(&(row_m, calls, limit)) = trace.demand[p].get(rows[i]) else {
                    continue;
                };
                if row_m != m {
                    continue;
                }
                rows[i] += 1;
                let served = calls.min(limit.saturating_sub(used[i]));
                used[i] += served;
                failed |= served < calls;
            }
            if failed {
                total += 1;
                let effect = (m + 1).saturating_add(self.lag);
                if effect < trace.minutes {
                    candidates.push(effect);
                }
            }
            locked.push(total);
        }
        Segment {
            end,
            locked,
            candidates,
        }
    }

    /// `pending` at boundary `at` of `seg` (a clear's effect in it, or its
    /// end), given `pending` at its start: what is still ahead of `at`, and
    /// the segment's failing minutes before `at` that signal after it.
    fn pending_at(&self, pending: &[u32], seg: &Segment, at: u32) -> Vec<u32> {
        let ahead = &pending[pending.partition_point(|&c| c <= at)..];
        let lo = seg.candidates.partition_point(|&c| c <= at);
        let hi = seg
            .candidates
            .partition_point(|&c| c <= at.saturating_add(self.lag));
        [ahead, &seg.candidates[lo..hi]].concat()
    }

    /// Where the programme goes at `seg`'s end: the next 00:00, with the
    /// budget refilled if a month starts there; `None` at the period's end.
    fn next_day(&self, seg: &Segment, k: u32) -> Option<(u32, u32)> {
        let day = self.days.partition_point(|&d| d < seg.end);
        let opens = *self.opens_month.get(day)?;
        Some((seg.end, if opens { self.cap } else { k }))
    }

    /// The fewest locked minutes from boundary `from` to the period's end
    /// with at most `k` more clears this month (then the fewest clears),
    /// `pending` being the effects that signals already sent allow.
    fn best(&mut self, from: u32, pending: &[u32], k: u32) -> Best {
        if let Some(best) = self.memo.get(from, k, pending) {
            return best;
        }
        let seg = self.segment(from);
        let all = *seg.locked.last().expect("one entry at least");
        let rest = match self.next_day(&seg, k) {
            Some((next, k)) => {
                let pending = self.pending_at(pending, &seg, seg.end);
                self.best(next, &pending, k)
            }
            None => Best::NOTHING,
        };
        let mut best = Best::then(all, 0, Step::Rest, rest);
        if k > 0 && all > 0 {
            // The boundaries come in order (those `pending` allows are at most
            // L minutes on, the segment's own later), so the first that
            // cannot beat the best so far ends the search.
            // On a signal sent before `from`: at most L minutes on.
            for &c in pending.iter().take_while(|&&c| c < seg.end) {
                if !best.reachable(seg.locked[(c - from) as usize]) {
                    self.memo.insert(from, k, pending, best);
                    return best;
                }
                let after = self.pending_at(pending, &seg, c);
                let rest = self.best(c, &after, k - 1);
                let here = Best::then(seg.locked[(c - from) as usize], 1, Step::Clear(c), rest);
                if here.beats(&best) {
                    best = here;
                }
            }
            // On one of the segment's own: nothing of `pending` is ahead.
            for (i, &c) in seg.candidates.iter().enumerate() {
                if c >= seg.end || !best.reachable(seg.locked[(c - from) as usize]) {
                    break;
                }
                let lag = c.saturating_add(self.lag);
                let hi = seg.candidates.partition_point(|&x| x <= lag);
                let rest = self.best(c, &seg.candidates[i + 1..hi], k - 1);
                let here = Best::then(seg.locked[(c - from) as usize], 1, Step::Clear(c), rest);
                if here.beats(&best) {
                    best = here;
                }
            }
        }
        self.memo.insert(from, k, pending, best);
        best
    }

    /// The effect boundaries of the best plan, and its locked minutes.
    fn plan(&mut self) -> (Vec<u32>, u64) {
        let total = self.best(0, &[], self.cap).locked;
        let mut effects = Vec::new();
        let (mut from, mut pending, mut k) = (0, Vec::new(), self.cap);
        loop {
            let seg = self.segment(from);
            match self.best(from, &pending, k).step {
                Step::Clear(c) => {
                    effects.push(c);
                    pending = self.pending_at(&pending, &seg, c);
                    (from, k) = (c, k - 1);
                }
                Step::Rest => {
                    let Some((next, k_next)) = self.next_day(&seg, k) else {
                        break;
                    };
                    pending = self.pending_at(&pending, &seg, seg.end);
                    (from, k) = (next, k_next);
                }
            }
        }
        (effects, total)
    }
}

/// The oracle's schedule for every account of the trace, `cap` giving each
/// account's monthly budget. Accounts are independent: they are planned on
/// as many threads as the machine has cores.
pub fn schedule(trace: &Trace, delay: Duration, cap: impl Fn(&str) -> u32 + Sync) -> Schedule {
    let accounts = trace.accounts();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = accounts.len().div_ceil(threads).max(1);
    let plans: Vec<(Vec<Attempt>, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = accounts
            .chunks(chunk)
            .map(|names| {
                let cap = &cap;
                scope.spawn(move || {
                    names
                        .iter()
                        .map(|a| plan_account(trace, delay, a, cap(a)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an oracle worker panicked"))
            .collect()
    });
    let locked_minutes = plans.iter().map(|(_, l)| l).sum();
    let mut clears: Vec<Attempt> = plans.into_iter().flat_map(|(c, _)| c).collect();
    clears.sort_by(|a, b| (a.time, &a.account).cmp(&(b.time, &b.account)));
    Schedule {
        clears,
        locked_minutes,
    }
}

/// One account's best clears, and the locked minutes they leave.
fn plan_account(trace: &Trace, delay: Duration, account: &str, cap: u32) -> (Vec<Attempt>, u64) {
    // A signal at a failing minute's end plus the delay; its clear takes
    // effect at the next whole minute, `back` after the decision. A delay
    // too long to count in nanoseconds lets no clear take effect.
    const MINUTE_NS: u64 = 60_000_000_000;
    let delay_ns = delay
        .num_nanoseconds()
        .map_or(u64::MAX, |n| n.max(0) as u64);
    let lag_ns = delay_ns.div_ceil(MINUTE_NS).saturating_mul(MINUTE_NS);
    let lag = u32::try_from(delay_ns.div_ceil(MINUTE_NS)).unwrap_or(u32::MAX);
    let back = Duration::nanoseconds((lag_ns.saturating_sub(delay_ns)) as i64);
    let mut days = Vec::new();
    let mut opens_month = Vec::new();
    let mut month = None;
    let mut day = calendar::day(trace.timezone, trace.start);
    while day.start < trace.end() {
        days.push((day.start - trace.start).num_minutes() as u32);
        let label = calendar::month_label(trace.timezone, day.start);
        opens_month.push(month.as_ref() != Some(&label));
        month = Some(label);
        day = calendar::day(trace.timezone, day.end);
    }
    let mut programme = Programme {
        trace,
        pairs: (0..trace.pairs.len())
            .filter(|&p| trace.pairs[p].account == account)
            .collect(),
        lag,
        cap,
        days,
        opens_month,
        segments: Map::default(),
        memo: Memo::default(),
    };
    let (effects, locked_minutes) = programme.plan();
    let clears = effects
        .into_iter()
        .map(|c| Attempt {
            time: trace.at(c) - back,
            account: account.to_string(),
            target: ClearTarget::Full,
            errcode: None,
        })
        .collect();
    (clears, locked_minutes)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::simulate::trace::Pair;
    use crate::simulate::world::replay;

    /// `date` (YYYY-MM-DD) at `hms` (HH:MM or HH:MM:SS) in Asia/Shanghai.
    fn t(date: &str, hms: &str) -> DateTime<Utc> {
        let hms = if hms.len() == 5 {
            format!("{hms}:00")
        } else {
            hms.to_string()
        };
        DateTime::parse_from_rfc3339(&format!("{date}T{hms}+08:00"))
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A trace of account `shop` from `first`'s day to `last`'s.
    fn trace_of(
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        rows: BTreeMap<Pair, Vec<(DateTime<Utc>, u64, u64)>>,
    ) -> Trace {
        Trace::from_rows(chrono_tz::Asia::Shanghai, first, last, rows)
    }

    fn pair(api: &str) -> Pair {
        Pair {
            account: "shop".into(),
            cgi_path: api.into(),
        }
    }

    /// A small random trace: two APIs with limit 5, from 0 to 4 calls in
    /// most minutes of each window (its first minute, its length), so that
    /// the limit runs out within a few minutes, again after a clear.
    fn random_trace(seed: u64, windows: &[(DateTime<Utc>, i64)], last: DateTime<Utc>) -> Trace {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut map = BTreeMap::new();
        for api in ["/a", "/b"] {
            let mut rows = Vec::new();
            for &(first, minutes) in windows {
                for minute in 0..minutes {
                    if rng.u8(..4) > 0 {
                        rows.push((first + Duration::minutes(minute), rng.u64(0..5), 5));
                    }
                }
            }
            map.insert(pair(api), rows);
        }
        trace_of(windows[0].0, last, map)
    }

    /// Every schedule of clears at instants where a signal may be delivered
    /// (a minute with demand ended, plus the delay), at most `max_cap` in any
    /// calendar month of their decision times, replayed in the world, and
    /// kept when WeChat made each clear exactly at its instant, so on a
    /// signal delivered then in that schedule's own world. Per cap from 0 to
    /// `max_cap`: the least (locked minutes, clears).
    fn brute_force(trace: &Trace, delay: Duration, max_cap: u32) -> Vec<(u64, u32)> {
        let times: Vec<DateTime<Utc>> = (1..=trace.minutes)
            .filter(|&m| trace.demand.iter().any(|d| d.iter().any(|r| r.0 + 1 == m)))
            .map(|m| trace.at(m) + delay)
            .filter(|&at| at < trace.end())
            .collect();
        let months: Vec<String> = times
            .iter()
            .map(|&at| calendar::month_label(trace.timezone, at))
            .collect();
        let n = times.len();
        assert!(n <= 12, "{n} candidate instants is too many to brute force");
        let mut best = vec![(u64::MAX, u32::MAX); max_cap as usize + 1];
        for mask in 0u32..(1 << n) {
            let chosen: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
            let mut per_month: HashMap<&str, u32> = HashMap::new();
            for &i in &chosen {
                *per_month.entry(&months[i]).or_default() += 1;
            }
            let need = per_month.values().copied().max().unwrap_or(0);
            if need > max_cap {
                continue;
            }
            let clears: Vec<Attempt> = chosen
                .iter()
                .map(|&i| Attempt {
                    time: times[i],
                    account: "shop".into(),
                    target: ClearTarget::Full,
                    errcode: None,
                })
                .collect();
            let (costs, made) = replay(trace, delay, &clears);
            let exact = made.len() == clears.len()
                && made.iter().zip(&clears).all(|(m, c)| m.time == c.time);
            if exact {
                let got = (costs[0].locked_minutes, clears.len() as u32);
                for b in &mut best[need as usize..] {
                    *b = (*b).min(got);
                }
            }
        }
        best
    }

    /// A clear whose boundary already has `before` locked minutes behind it
    /// is pruned exactly when no plan starting with it, locking at least
    /// that much and spending at least that clear, can beat the best so far.
    #[test]
    fn a_clear_is_pruned_only_when_it_cannot_beat_the_best() {
        let best = |locked, clears| Best {
            locked,
            clears,
            step: Step::Rest,
        };
        // (best so far (locked, clears), locked before the clear, still reachable)
        let cases = [
            ((10, 0), 9, true),
            ((10, 0), 10, false),
            ((10, 0), 11, false),
            // Equal locked minutes with fewer clears still beats...
            ((10, 2), 10, true),
            ((10, 3), 10, true),
            // ...but not with as many: the clear itself is one.
            ((10, 1), 10, false),
            ((0, 0), 0, false),
            ((1, 5), 0, true),
            ((u64::MAX, 0), u64::MAX - 1, true),
        ];
        for ((locked, clears), before, reachable) in cases {
            assert_eq!(
                best(locked, clears).reachable(before),
                reachable,
                "best ({locked}, {clears}), {before} locked before the clear"
            );
            // The rule is the bound itself: a plan that reaches the bound
            // (nothing locked after the clear, no other clear) beats the
            // best exactly when the clear is reachable.
            let bound = Best::then(before, 1, Step::Clear(1), Best::NOTHING);
            assert_eq!(bound.beats(&best(locked, clears)), reachable);
        }
    }

    /// The programme's plan, replayed in the world, makes every clear at its
    /// time and gives exactly the locked minutes it claims; and no schedule
    /// does better, nor as well with fewer clears (brute force). On small
    /// random traces in a morning, across midnight and across a month's end,
    /// with signal delays from none to 5 minutes (whole and not) and caps
    /// from 0 to 3.
    #[test]
    fn the_oracle_is_exact_against_brute_force() {
        let delays = [0, 30, 60, 90, 120, 180, 240, 300].map(Duration::seconds);
        let scenarios = [
            (
                "a morning",
                t("2026-11-03", "10:00"),
                9,
                t("2026-11-03", "10:00"),
            ),
            (
                "midnight",
                t("2026-11-03", "23:55"),
                9,
                t("2026-11-04", "00:00"),
            ),
            (
                "a month's end",
                t("2026-11-30", "23:56"),
                9,
                t("2026-12-01", "00:00"),
            ),
        ];
        // A scenario a thread: the brute force replays a day or two per schedule.
        std::thread::scope(|scope| {
            for (name, first, minutes, last) in scenarios {
                scope.spawn(move || {
                    for seed in 0..8 {
                        let trace = random_trace(seed, &[(first, minutes)], last);
                        for delay in delays {
                            check_against_brute_force(
                                &format!("{name}, seed {seed}"),
                                &trace,
                                delay,
                            );
                        }
                    }
                });
            }
        });
    }

    /// The oracle for caps 0 to 3 on `trace` against the brute force.
    fn check_against_brute_force(name: &str, trace: &Trace, delay: Duration) {
        let brute = brute_force(trace, delay, 3);
        for cap in 0..=3u32 {
            let case = format!("{name}, delay {delay}, cap {cap}");
            let s = schedule(trace, delay, |_| cap);
            let (costs, made) = replay(trace, delay, &s.clears);
            let at: Vec<_> = made.iter().map(|m| (m.time, m.errcode)).collect();
            let want: Vec<_> = s.clears.iter().map(|c| (c.time, None)).collect();
            assert_eq!(at, want, "{case}: every clear made at its time");
            assert_eq!(costs[0].locked_minutes, s.locked_minutes, "{case}: replay");
            assert_eq!(
                (s.locked_minutes, s.clears.len() as u32),
                brute[cap as usize],
                "{case}: optimal, then fewest clears"
            );
        }
    }

    /// What a delay makes possible, one case each: the clears' decision
    /// times and the locked minutes (one API, limit 6).
    #[test]
    fn the_oracle_uses_the_signals_still_under_way() {
        fn day(date: &str, rows: &[(&str, u64)]) -> Vec<(DateTime<Utc>, u64)> {
            rows.iter().map(|&(hm, c)| (t(date, hm), c)).collect()
        }
        /// One call a minute from minute `from` of the day to minute `to`.
        fn ones(date: &str, from: u32, to: u32) -> Vec<(DateTime<Utc>, u64)> {
            (from..=to)
                .map(|m| (t(date, &format!("{:02}:{:02}", m / 60, m % 60)), 1))
                .collect()
        }
        /// 23:59 fails; the next day spends the limit at 00:00, then calls
        /// once a minute.
        fn midnight(d1: &str, d2: &str) -> Vec<(DateTime<Utc>, u64)> {
            [
                day(d1, &[("23:59", 7)]),
                day(d2, &[("00:00", 6)]),
                ones(d2, 1, 5),
            ]
            .concat()
        }
        let morning: Vec<_> = [
            day("2026-11-03", &[("10:00", 6), ("10:04", 6)]),
            ones("2026-11-03", 601, 603),
            ones("2026-11-03", 605, 609),
        ]
        .concat();
        let month_end = [
            day("2026-11-30", &[("10:00", 6)]),
            ones("2026-11-30", 601, 605),
            midnight("2026-11-30", "2026-12-01"),
        ]
        .concat();
        type Case<'a> = (
            &'a str,
            Vec<(DateTime<Utc>, u64)>,
            i64,
            u32,
            u64,
            Vec<DateTime<Utc>>,
        );
        let cases: Vec<Case> = vec![
            // (name, rows, delay s, cap, locked, clears decided at)
            (
                "no delay: the clear follows the first failure",
                day("2026-11-03", &[("10:00", 6), ("10:01", 1), ("10:02", 1)]),
                0,
                1,
                1,
                vec![t("2026-11-03", "10:02")],
            ),
            (
                "a second clear on a minute that failed before the first took effect",
                morning.clone(),
                120,
                2,
                3,
                vec![t("2026-11-03", "10:04"), t("2026-11-03", "10:05")],
            ),
            (
                "one clear: the later one",
                morning,
                120,
                1,
                4,
                vec![t("2026-11-03", "10:05")],
            ),
            (
                "23:59 signals after midnight, and its clear saves the next day",
                midnight("2026-11-03", "2026-11-04"),
                60,
                1,
                1,
                vec![t("2026-11-04", "00:01")],
            ),
            (
                "the same, a delay of 90 s",
                midnight("2026-11-03", "2026-11-04"),
                90,
                1,
                2,
                vec![t("2026-11-04", "00:01:30")],
            ),
            (
                "past a month's end the late signal's clear counts in the new month",
                month_end,
                30,
                1,
                3,
                vec![t("2026-11-30", "10:02:30"), t("2026-12-01", "00:00:30")],
            ),
        ];
        for (name, rows, delay, cap, locked, clears) in cases {
            let first = rows.iter().map(|r| r.0).min().unwrap();
            let last = rows.iter().map(|r| r.0).max().unwrap();
            let mut rows: Vec<_> = rows.into_iter().map(|(at, c)| (at, c, 6)).collect();
            rows.sort();
            let trace = trace_of(first, last, BTreeMap::from([(pair("/a"), rows)]));
            let delay = Duration::seconds(delay);
            let s = schedule(&trace, delay, |_| cap);
            let at: Vec<_> = s.clears.iter().map(|c| c.time).collect();
            assert_eq!((s.locked_minutes, at), (locked, clears), "{name}");
            let (costs, made) = replay(&trace, delay, &s.clears);
            assert_eq!(costs[0].locked_minutes, locked, "{name}: replay");
            assert!(made.iter().all(|m| m.errcode.is_none()), "{name}: no 48006");
        }
    }
}
