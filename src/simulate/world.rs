//! The world a backtest replays (SPEC section 8), pure and deterministic.
//!
//! Each (account, API) has a counter `used`, reset at every 00:00 in the
//! trace's timezone, by a full clear of the account and by a single-API clear
//! of that API. In a minute with demand `c`: `served = min(c, max(0, limit −
//! used))`, `failed = c − served`. A minute with `failed > 0` sends one signal
//! at its end plus the signal delay. A clear decided at T takes effect at the
//! first minute boundary at or after T, before that minute's calls. WeChat's
//! own budget (10 full and 50 single-API clears per account and calendar
//! month of T) answers 48006 past it, and such a clear changes nothing.
//!
//! [`World::next_batch`] serves minutes until signals are due and hands them
//! over in order; the caller decides, calling [`WeChatSide::clear`], and asks
//! for the next batch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::trace::Trace;
use crate::calendar;
use crate::event::ClearTarget;

/// WeChat's monthly budgets (SPEC section 1).
pub const FULL_PER_MONTH: u32 = 10;
pub const API_PER_MONTH: u32 = 50;

/// One signal the world sends.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSignal {
    pub at: DateTime<Utc>,
    /// The account's config name.
    pub account: Arc<str>,
    pub cgi_path: Arc<str>,
    /// The failed calls of the minute.
    pub count: u64,
    /// The API's daily limit that minute (what `openapi/quota/get` says).
    pub daily_limit: u64,
}

/// One clear attempt as `--json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// The decision time.
    pub time: DateTime<Utc>,
    pub account: String,
    #[serde(flatten)]
    pub target: ClearTarget,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errcode: Option<i64>,
}

/// WeChat's side of the world: answers clears and keeps what takes effect.
#[derive(Debug)]
pub struct WeChatSide {
    tz: chrono_tz::Tz,
    /// (account, month label) → (full, single-API) clears that took effect.
    spent: HashMap<(String, String), (u32, u32)>,
    pub attempts: Vec<Attempt>,
    /// Clears that took effect, not yet applied to the counters.
    effects: Vec<(DateTime<Utc>, String, ClearTarget)>,
}

/// The side shared by the world and a caller's WeChat client.
pub type Shared = Arc<Mutex<WeChatSide>>;

/// The shared side, usable after a panic elsewhere (it holds plain counts).
pub fn lock(side: &Shared) -> std::sync::MutexGuard<'_, WeChatSide> {
    side.lock().unwrap_or_else(|e| e.into_inner())
}

impl WeChatSide {
    pub fn new(tz: chrono_tz::Tz) -> Shared {
        Arc::new(Mutex::new(WeChatSide {
            tz,
            spent: HashMap::new(),
            attempts: Vec::new(),
            effects: Vec::new(),
        }))
    }

    /// A clear of `account` decided at `at`: `Err(48006)` past WeChat's
    /// budget for the month.
    pub fn clear(
        &mut self,
        account: &str,
        target: &ClearTarget,
        at: DateTime<Utc>,
    ) -> Result<(), i64> {
        let month = calendar::month_label(self.tz, at);
        let spent = self.spent.entry((account.to_string(), month)).or_default();
        let (used, cap) = match target {
            ClearTarget::Full => (&mut spent.0, FULL_PER_MONTH),
            ClearTarget::Api { .. } => (&mut spent.1, API_PER_MONTH),
        };
        let errcode = (*used >= cap).then_some(48006);
        if errcode.is_none() {
            *used += 1;
            self.effects.push((at, account.to_string(), target.clone()));
        }
        self.attempts.push(Attempt {
            time: at,
            account: account.to_string(),
            target: target.clone(),
            errcode,
        });
        errcode.map_or(Ok(()), Err)
    }
}

/// What a run cost, per account (in the trace's account order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Costs {
    pub account: String,
    pub locked_minutes: u64,
    pub failed_calls: u64,
    /// Full clears that took effect.
    pub clears: u32,
    /// Single-API clears that took effect.
    pub api_clears: u32,
}

pub struct World<'t> {
    trace: &'t Trace,
    delay: Duration,
    side: Shared,
    /// Account index of each pair, and the account names.
    account_of: Vec<usize>,
    /// Each pair's (account, cgi_path), shared by its signals.
    names: Vec<(Arc<str>, Arc<str>)>,
    accounts: Vec<String>,
    used: Vec<u64>,
    /// Per pair, the next demand row to serve.
    next: Vec<usize>,
    /// The next minute to serve.
    minute: u32,
    day_starts: HashSet<u32>,
    due: VecDeque<SimSignal>,
    locked: Vec<u64>,
    failed: Vec<u64>,
    /// Per account, each minute it was locked, when the HTML report asks.
    locked_at: Option<Vec<Vec<u32>>>,
}

impl<'t> World<'t> {
    pub fn new(trace: &'t Trace, delay: Duration, side: Shared) -> Self {
        let accounts = trace.accounts();
        let account_of = trace
            .pairs
            .iter()
            .map(|p| {
                accounts
                    .iter()
                    .position(|a| *a == p.account)
                    .expect("listed")
            })
            .collect();
        let mut day_starts = HashSet::new();
        let mut day = calendar::day(trace.timezone, trace.start);
        while day.start < trace.end() {
            day_starts.insert((day.start - trace.start).num_minutes() as u32);
            day = calendar::day(trace.timezone, day.end);
        }
        let names = trace
            .pairs
            .iter()
            .map(|p| {
                (
                    Arc::from(p.account.as_str()),
                    Arc::from(p.cgi_path.as_str()),
                )
            })
            .collect();
        World {
            trace,
            delay,
            side,
            account_of,
            names,
            used: vec![0; trace.pairs.len()],
            next: vec![0; trace.pairs.len()],
            minute: 0,
            day_starts,
            due: VecDeque::new(),
            locked: vec![0; accounts.len()],
            failed: vec![0; accounts.len()],
            locked_at: None,
            accounts,
        }
    }

    /// Serves minutes until signals are due before the next minute's calls;
    /// returns them, in time then (account, cgi_path) order. `None` once the
    /// period is over (signals due at or after its end are never sent).
    pub fn next_batch(&mut self) -> Option<Vec<SimSignal>> {
        loop {
            let boundary = self.trace.at(self.minute);
            let end = self.trace.end();
            let ready = self
                .due
                .iter()
                .take_while(|s| s.at <= boundary && s.at < end)
                .count();
            if ready > 0 {
                return Some(self.due.drain(..ready).collect());
            }
            if self.minute >= self.trace.minutes {
                return None;
            }
            self.serve();
        }
    }

    /// One minute: the daily reset, the clears that took effect, the calls.
    fn serve(&mut self) {
        let m = self.minute;
        let boundary = self.trace.at(m);
        if self.day_starts.contains(&m) {
            self.used.iter_mut().for_each(|u| *u = 0);
        }
        let effects: Vec<_> = {
            let mut side = lock(&self.side);
            let (now, later) = side.effects.drain(..).partition(|(at, ..)| *at <= boundary);
            side.effects = later;
            now
        };
        for (_, account, target) in effects {
            for (p, pair) in self.trace.pairs.iter().enumerate() {
                let hit = pair.account == account
                    && match &target {
                        ClearTarget::Full => true,
                        ClearTarget::Api { cgi_path } => *cgi_path == pair.cgi_path,
                    };
                if hit {
                    self.used[p] = 0;
                }
            }
        }
        let mut locked: Vec<bool> = vec![false; self.accounts.len()];
        for p in 0..self.trace.pairs.len() {
            let Some(&(row_m, calls, limit)) = self.trace.demand[p].get(self.next[p]) else {
                continue;
            };
            if row_m != m {
                continue;
            }
            self.next[p] += 1;
            let served = calls.min(limit.saturating_sub(self.used[p]));
            let failed = calls - served;
            self.used[p] += served;
            if failed > 0 {
                let a = self.account_of[p];
                locked[a] = true;
                self.failed[a] += failed;
                self.due.push_back(SimSignal {
                    at: self.trace.at(m + 1) + self.delay,
                    account: self.names[p].0.clone(),
                    cgi_path: self.names[p].1.clone(),
                    count: failed,
                    daily_limit: limit,
                });
            }
        }
        for (a, l) in locked.into_iter().enumerate() {
            self.locked[a] += u64::from(l);
            if let (true, Some(at)) = (l, &mut self.locked_at) {
                at[a].push(m);
            }
        }
        self.minute += 1;
    }

    /// Runs out the period (no more decisions) and reports the costs, with
    /// every clear attempt WeChat answered.
    pub fn finish(mut self) -> (Vec<Costs>, Vec<Attempt>) {
        while self.next_batch().is_some() {}
        let side = lock(&self.side);
        let costs = self
            .accounts
            .iter()
            .enumerate()
            .map(|(a, name)| {
                let mine = side
                    .attempts
                    .iter()
                    .filter(|t| t.account == *name && t.errcode.is_none());
                let (full, api) = mine.fold((0, 0), |(f, a), t| match t.target {
                    ClearTarget::Full => (f + 1, a),
                    ClearTarget::Api { .. } => (f, a + 1),
                });
                Costs {
                    account: name.clone(),
                    locked_minutes: self.locked[a],
                    failed_calls: self.failed[a],
                    clears: full,
                    api_clears: api,
                }
            })
            .collect();
        (costs, side.attempts.clone())
    }
}

/// Replays clears at fixed decision times (`--json`'s list, or a reference
/// policy's schedule): each is made at the first signal for its account at
/// or after its time. The costs of that run.
pub fn replay(trace: &Trace, delay: Duration, clears: &[Attempt]) -> (Vec<Costs>, Vec<Attempt>) {
    replayed(trace, delay, clears, false).finish()
}

/// The minutes each account (in the trace's account order) is locked when
/// `clears` are replayed as [`replay`] does.
pub fn locked_minutes(trace: &Trace, delay: Duration, clears: &[Attempt]) -> Vec<Vec<u32>> {
    let mut world = replayed(trace, delay, clears, true);
    world.locked_at.take().unwrap_or_default()
}

/// The world at the end of the period, with `clears` made on their signals.
fn replayed<'t>(trace: &'t Trace, delay: Duration, clears: &[Attempt], record: bool) -> World<'t> {
    let side = WeChatSide::new(trace.timezone);
    let mut world = World::new(trace, delay, side.clone());
    if record {
        world.locked_at = Some(vec![Vec::new(); world.accounts.len()]);
    }
    let mut todo: HashMap<&str, VecDeque<&Attempt>> = HashMap::new();
    for c in clears {
        todo.entry(c.account.as_str()).or_default().push_back(c);
    }
    while let Some(batch) = world.next_batch() {
        for s in batch {
            let Some(queue) = todo.get_mut(&*s.account) else {
                continue;
            };
            while queue.front().is_some_and(|c| c.time <= s.at) {
                let c = queue.pop_front().expect("front");
                let _ = lock(&side).clear(&c.account, &c.target, s.at);
            }
        }
    }
    world
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::simulate::trace::Pair;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-03T{s}+08:00"))
            .unwrap()
            .with_timezone(&Utc)
    }

    /// One account, one API with limit 10, and the given (time, calls).
    fn trace(rows: &[(&str, u64)]) -> Trace {
        let mut map = BTreeMap::new();
        map.insert(
            Pair {
                account: "shop".into(),
                cgi_path: "/a".into(),
            },
            rows.iter().map(|(s, c)| (t(s), *c, 10)).collect(),
        );
        Trace::from_rows(chrono_tz::Asia::Shanghai, t("00:00:00"), t("23:59:00"), map)
    }

    /// Runs `trace`, clearing (full) on the signals at the listed times.
    fn run(trace: &Trace, delay: i64, clear_at: &[&str]) -> (Costs, Vec<DateTime<Utc>>) {
        let side = WeChatSide::new(trace.timezone);
        let mut world = World::new(trace, Duration::seconds(delay), side.clone());
        let mut signals = Vec::new();
        while let Some(batch) = world.next_batch() {
            for s in batch {
                signals.push(s.at);
                if clear_at.iter().any(|c| t(c) == s.at) {
                    let _ = side.lock().unwrap().clear("shop", &ClearTarget::Full, s.at);
                }
            }
        }
        (world.finish().0.remove(0), signals)
    }

    #[test]
    fn the_world_serves_fails_signals_and_clears_as_the_spec_says() {
        // (name, rows, delay s, clears at, locked, failed, signals at)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, u64)>,
            i64,
            Vec<&'a str>,
            u64,
            u64,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "under the limit",
                vec![("10:00:00", 4), ("10:01:00", 6)],
                0,
                vec![],
                0,
                0,
                vec![],
            ),
            (
                "over the limit: a failed minute, a signal at its end",
                vec![("10:00:00", 8), ("10:01:00", 5), ("10:02:00", 1)],
                0,
                vec![],
                2,
                4,
                vec!["10:02:00", "10:03:00"],
            ),
            (
                "a clear on the signal takes effect before the next minute",
                vec![("10:00:00", 12), ("10:01:00", 5)],
                0,
                vec!["10:01:00"],
                1,
                2,
                vec!["10:01:00"],
            ),
            (
                "a delayed signal: the clear lands a minute later",
                vec![("10:00:00", 12), ("10:01:00", 5), ("10:02:00", 5)],
                30,
                vec!["10:01:30"],
                2,
                7,
                vec!["10:01:30", "10:02:30"],
            ),
            (
                "the daily reset",
                vec![("23:59:00", 12)],
                0,
                vec![],
                1,
                2,
                vec![],
            ),
        ];
        for (name, rows, delay, clears, locked, failed, signals) in cases {
            let tr = trace(&rows);
            let (costs, got) = run(&tr, delay, &clears);
            assert_eq!(
                (costs.locked_minutes, costs.failed_calls),
                (locked, failed),
                "{name}"
            );
            let want: Vec<_> = signals.iter().map(|s| t(s)).collect();
            assert_eq!(got, want, "{name}: signals");
            assert_eq!(costs.clears as usize, clears.len(), "{name}: clears");
        }
    }

    #[test]
    fn wechat_answers_48006_past_ten_full_clears_a_month() {
        let side = WeChatSide::new(chrono_tz::Asia::Shanghai);
        let mut side = side.lock().unwrap();
        for i in 0..10 {
            assert_eq!(
                side.clear("shop", &ClearTarget::Full, t("10:00:00")),
                Ok(()),
                "{i}"
            );
        }
        assert_eq!(
            side.clear("shop", &ClearTarget::Full, t("11:00:00")),
            Err(48006)
        );
        assert_eq!(
            side.clear("blog", &ClearTarget::Full, t("11:00:00")),
            Ok(())
        );
        let api = ClearTarget::Api {
            cgi_path: "/a".into(),
        };
        assert_eq!(side.clear("shop", &api, t("11:00:00")), Ok(()));
        let december = DateTime::parse_from_rfc3339("2026-12-01T00:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(side.clear("shop", &ClearTarget::Full, december), Ok(()));
        assert_eq!(
            side.attempts.iter().filter(|a| a.errcode.is_some()).count(),
            1
        );
    }
}
