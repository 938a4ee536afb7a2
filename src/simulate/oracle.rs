//! The `oracle` reference policy (SPEC section 8): with hindsight, the full
//! clears (at most `monthly_cap` per account and calendar month) that
//! minimize locked minutes, each decided when a signal is delivered for the
//! account in the oracle's own world; ties go to fewer clears.
//!
//! Days are independent (every counter resets at 00:00), so per day a
//! dynamic programme over the instant of each clear gives the fewest locked
//! minutes with at most k clears, for every k; a knapsack over the days of
//! each month then shares the month's budget. After a clear every counter of
//! the account is 0, so the day from that boundary on depends on nothing
//! else: the programme's state is the boundary alone.
//!
//! With a signal delay the candidates are the signals that the minutes since
//! the last clear send (a signal from before it, or from the day before, is
//! not a candidate): exact without a delay, and an upper bound on the best
//! possible locked minutes with one.

use std::collections::HashMap;

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

/// One day of one account: its pairs' demand from the day's first minute.
struct Day<'t> {
    trace: &'t Trace,
    pairs: &'t [usize],
    start: u32,
    end: u32,
    /// Whole minutes from a failing minute's end to its clear's effect.
    lag: u32,
    memo: HashMap<(u32, u32), Best>,
    segments: HashMap<u32, Segment>,
}

/// From a boundary with every counter at 0 to the day's end, no clear.
struct Segment {
    /// `locked[i]`: locked minutes in the first i minutes.
    locked: Vec<u64>,
    /// Boundaries where a clear decided on a signal of this segment takes
    /// effect, in order.
    candidates: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Best {
    locked: u64,
    clears: u32,
    /// The next clear's effect boundary, if any.
    next: Option<u32>,
}

impl Day<'_> {
    fn segment(&mut self, from: u32) -> &Segment {
        if !self.segments.contains_key(&from) {
            let seg = self.simulate(from);
            self.segments.insert(from, seg);
        }
        &self.segments[&from]
    }

    fn simulate(&self, from: u32) -> Segment {
        let trace = self.trace;
        let mut used = vec![0u64; self.pairs.len()];
        let mut rows: Vec<usize> = self
            .pairs
            .iter()
            .map(|&p| trace.demand[p].partition_point(|r| r.0 < from))
            .collect();
        let mut locked = Vec::with_capacity((self.end - from) as usize + 1);
        let mut candidates = Vec::new();
        let mut total = 0u64;
        locked.push(0);
        for m in from..self.end {
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
                let effect = m + 1 + self.lag;
                if effect < self.end {
                    candidates.push(effect);
                }
            }
            locked.push(total);
        }
        Segment { locked, candidates }
    }

    /// The fewest locked minutes from `from` to the day's end with at most
    /// `k` more clears (then the fewest clears).
    fn best(&mut self, from: u32, k: u32) -> Best {
        if let Some(b) = self.memo.get(&(from, k)) {
            return *b;
        }
        let seg = self.segment(from);
        let all = *seg.locked.last().expect("one entry at least");
        let mut best = Best {
            locked: all,
            clears: 0,
            next: None,
        };
        if k > 0 && all > 0 {
            let options: Vec<(u32, u64)> = seg
                .candidates
                .iter()
                .map(|&b| (b, seg.locked[(b - from) as usize]))
                .collect();
            for (b, before) in options {
                let rest = self.best(b, k - 1);
                let here = Best {
                    locked: before + rest.locked,
                    clears: rest.clears + 1,
                    next: Some(b),
                };
                if (here.locked, here.clears) < (best.locked, best.clears) {
                    best = here;
                }
            }
        }
        self.memo.insert((from, k), best);
        best
    }

    /// The effect boundaries of the best plan with at most `k` clears.
    fn plan(&mut self, k: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let (mut from, mut k) = (self.start, k);
        while let Some(b) = self.best(from, k).next {
            out.push(b);
            from = b;
            k -= 1;
        }
        out
    }
}

/// A calendar month's days, each with its best plans for 0..=cap clears.
type Month<'t> = (String, Vec<(Day<'t>, Vec<Best>)>);

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
fn plan_account(trace: &Trace, delay: Duration, account: &str, k_max: u32) -> (Vec<Attempt>, u64) {
    // A signal at a failing minute's end plus the delay; its clear takes
    // effect at the next whole minute.
    let delay_ms = delay.num_milliseconds().max(0) as u64;
    let lag = delay_ms.div_ceil(60_000) as u32;
    let back = Duration::milliseconds((u64::from(lag) * 60_000 - delay_ms) as i64);
    let mut clears = Vec::new();
    let mut locked_minutes = 0;
    let pairs: Vec<usize> = (0..trace.pairs.len())
        .filter(|&p| trace.pairs[p].account == account)
        .collect();
    // Per month: each day's best locked minutes for 0..=k_max clears.
    let mut months: Vec<Month> = Vec::new();
    let mut day = calendar::day(trace.timezone, trace.start);
    while day.start < trace.end() {
        let start = (day.start - trace.start).num_minutes() as u32;
        let end = ((day.end - trace.start).num_minutes() as u32).min(trace.minutes);
        let mut d = Day {
            trace,
            pairs: &pairs,
            start,
            end,
            lag,
            memo: HashMap::new(),
            segments: HashMap::new(),
        };
        let row: Vec<Best> = (0..=k_max).map(|k| d.best(start, k)).collect();
        let label = calendar::month_label(trace.timezone, day.start);
        match months.last_mut() {
            Some((l, days)) if *l == label => days.push((d, row)),
            _ => months.push((label, vec![(d, row)])),
        }
        day = calendar::day(trace.timezone, day.end);
    }
    for (_, days) in &mut months {
        let ks = knapsack(days.iter().map(|(_, row)| row.as_slice()), k_max);
        for ((d, row), k) in days.iter_mut().zip(ks) {
            locked_minutes += row[k as usize].locked;
            for b in d.plan(k) {
                clears.push(Attempt {
                    time: trace.at(b) - back,
                    account: account.to_string(),
                    target: ClearTarget::Full,
                    errcode: None,
                });
            }
        }
    }
    (clears, locked_minutes)
}

/// Shares `budget` clears over days: each day's row gives its best with at
/// most k clears. The clears per day of the least locked minutes (then the
/// fewest clears).
fn knapsack<'a>(days: impl Iterator<Item = &'a [Best]>, budget: u32) -> Vec<u32> {
    let b = budget as usize;
    // cost[j]: (locked, clears) of the days so far with at most j clears.
    let mut cost: Vec<(u64, u32)> = vec![(0, 0); b + 1];
    let mut picks: Vec<Vec<u32>> = Vec::new();
    for row in days {
        let mut next = vec![(u64::MAX, u32::MAX); b + 1];
        let mut pick = vec![0u32; b + 1];
        for j in 0..=b {
            for k in 0..=j.min(row.len() - 1) {
                let (l, c) = cost[j - k];
                let cand = (l + row[k].locked, c + row[k].clears);
                if cand < next[j] {
                    next[j] = cand;
                    pick[j] = k as u32;
                }
            }
        }
        cost = next;
        picks.push(pick);
    }
    // Walk back from the whole budget.
    let mut j = b;
    let mut out = vec![0; picks.len()];
    for (d, pick) in picks.iter().enumerate().rev() {
        out[d] = pick[j];
        j -= pick[j] as usize;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::simulate::trace::Pair;
    use crate::simulate::world::replay;

    fn t(day: u32, hm: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-{day:02}T{hm}:00+08:00"))
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A small random trace: `days` days, two APIs, demand in a few
    /// minutes around 10:00, limits small enough to run out.
    fn random_trace(seed: u64, days: u32) -> Trace {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut map = BTreeMap::new();
        for api in ["/a", "/b"] {
            let mut rows = Vec::new();
            for day in 1..=days {
                for minute in 0..8 {
                    if rng.u8(..4) > 0 {
                        let at = t(day, "10:00") + Duration::minutes(minute);
                        rows.push((at, rng.u64(0..6), 6));
                    }
                }
            }
            map.insert(
                Pair {
                    account: "shop".into(),
                    cgi_path: api.into(),
                },
                rows,
            );
        }
        Trace::from_rows(
            chrono_tz::Asia::Shanghai,
            t(1, "00:00"),
            t(days, "23:59"),
            map,
        )
    }

    /// Every schedule of at most `cap` clears among the trace's minutes,
    /// kept when each clear was decided exactly at a signal: the least
    /// locked minutes.
    fn brute_force(trace: &Trace, delay: Duration, cap: usize) -> u64 {
        // A signal can only follow a minute with demand.
        let times: Vec<DateTime<Utc>> = (1..=trace.minutes)
            .filter(|&m| trace.demand.iter().any(|d| d.iter().any(|r| r.0 + 1 == m)))
            .map(|m| trace.at(m) + delay)
            .collect();
        let mut best = u64::MAX;
        let n = times.len();
        assert!(n <= 20, "{n} candidate instants is too many to brute force");
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize > cap {
                continue;
            }
            let chosen: Vec<Attempt> = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| Attempt {
                    time: times[i],
                    account: "shop".into(),
                    target: ClearTarget::Full,
                    errcode: None,
                })
                .collect();
            let (costs, made) = replay(trace, delay, &chosen);
            let exact = made.len() == chosen.len()
                && made.iter().zip(&chosen).all(|(m, c)| m.time == c.time);
            if exact {
                best = best.min(costs[0].locked_minutes);
            }
        }
        best
    }

    /// The programme's plan, replayed in the world, gives exactly the locked
    /// minutes it claims, and no schedule does better (brute force), on
    /// many small random traces and budgets, without a delay.
    #[test]
    fn the_oracle_is_exact_against_brute_force_without_a_delay() {
        for seed in 0..24 {
            let trace = random_trace(seed, 1);
            for cap in 0..=3u32 {
                let s = schedule(&trace, Duration::zero(), |_| cap);
                let (costs, made) = replay(&trace, Duration::zero(), &s.clears);
                assert_eq!(
                    made.len(),
                    s.clears.len(),
                    "seed {seed} cap {cap}: every clear made"
                );
                assert_eq!(
                    costs[0].locked_minutes, s.locked_minutes,
                    "seed {seed} cap {cap}: replay"
                );
                assert!(s.clears.len() <= cap as usize);
                let brute = brute_force(&trace, Duration::zero(), cap as usize);
                assert_eq!(s.locked_minutes, brute, "seed {seed} cap {cap}: optimal");
            }
        }
    }

    /// The monthly budget is shared over days: two days, each wanting a
    /// clear, one clear in the month goes where it buys more.
    #[test]
    fn the_knapsack_spends_the_month_where_it_buys_most() {
        let rows = |row: &[(u64, u32)]| -> Vec<Best> {
            row.iter()
                .map(|&(locked, clears)| Best {
                    locked,
                    clears,
                    next: None,
                })
                .collect()
        };
        let cases: Vec<(Vec<Vec<Best>>, u32, Vec<u32>)> = vec![
            // (days' rows for 0..=budget clears, budget, clears per day)
            (
                vec![rows(&[(10, 0), (4, 1)]), rows(&[(30, 0), (2, 1)])],
                1,
                vec![0, 1],
            ),
            (
                vec![rows(&[(10, 0), (4, 1)]), rows(&[(30, 0), (2, 1)])],
                2,
                vec![1, 1],
            ),
            (
                vec![rows(&[(10, 0), (10, 0)]), rows(&[(0, 0), (0, 0)])],
                2,
                vec![0, 0],
            ),
            (
                vec![
                    rows(&[(9, 0), (5, 1), (1, 2)]),
                    rows(&[(6, 0), (1, 1), (1, 1)]),
                ],
                2,
                vec![1, 1],
            ),
        ];
        for (days, budget, want) in cases {
            assert_eq!(knapsack(days.iter().map(Vec::as_slice), budget), want);
        }
    }
}
