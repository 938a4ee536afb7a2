//! Generated months of demand, for tests and for users without data
//! (`quotawatch simulate --synthetic KIND --seed N`): the kinds of month real
//! accounts live through. Deterministic from the seed.
//!
//! Demand per minute follows a daily curve (quiet at night, peaking in the
//! evening), scaled so that the day's total is `level` times the API's daily
//! limit, with ±20% noise per minute.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::trace::{Pair, Trace};
use crate::calendar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A little over the limit most weekdays, exhausting in the evening.
    Steady,
    /// A bug burns the limit within minutes and keeps hammering for hours.
    Storm,
    /// Sale days at several times normal demand: out before noon, and again
    /// after a clear.
    Campaign,
    /// Exhaustion between 22:00 and midnight.
    Late,
    /// Several APIs with different limits.
    MultiApi,
    /// Each account a kind of its own.
    Mix,
    /// Never over the limit.
    Quiet,
}

pub const KINDS: [Kind; 7] = [
    Kind::Steady,
    Kind::Storm,
    Kind::Campaign,
    Kind::Late,
    Kind::MultiApi,
    Kind::Mix,
    Kind::Quiet,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Steady => "steady",
            Kind::Storm => "storm",
            Kind::Campaign => "campaign",
            Kind::Late => "late",
            Kind::MultiApi => "multi_api",
            Kind::Mix => "mix",
            Kind::Quiet => "quiet",
        }
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KINDS.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
            format!("unknown kind `{s}`; one of {}", names.join(", "))
        })
    }
}

/// The share of a day's calls in each hour (sums to 1 after normalising).
const HOURLY: [f64; 24] = [
    0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1.0, 1.2, 1.3, 1.3, 1.3, 1.2, 1.2, 1.2, 1.3, 1.4, 1.6,
    1.8, 1.9, 1.7, 1.2, 0.6,
];

/// One API's month: per day, the demand level and any storm.
struct ApiPlan {
    cgi_path: &'static str,
    limit: u64,
    /// Per day: total demand as a multiple of the limit.
    level: Vec<f64>,
    /// Per day: a storm (start minute, minutes, calls per minute).
    storm: Vec<Option<(u32, u32, f64)>>,
}

/// A generated trace of `days` days from `first` (00:00 in `tz`), for
/// `accounts` (config names).
pub fn generate(
    kind: Kind,
    seed: u64,
    accounts: &[String],
    tz: Tz,
    first: DateTime<Utc>,
    days: u32,
) -> Trace {
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = calendar::day(tz, first).start;
    let weights: f64 = HOURLY.iter().sum();
    let mut rows: BTreeMap<Pair, Vec<(DateTime<Utc>, u64, u64)>> = BTreeMap::new();
    for (i, account) in accounts.iter().enumerate() {
        let kind = match kind {
            Kind::Mix => KINDS[i % 5],
            k => k,
        };
        for plan in plans(kind, &mut rng, start, tz, days) {
            let mut minutes = Vec::new();
            for day in 0..days {
                let base = plan.level[day as usize] * plan.limit as f64;
                for m in 0..1440u32 {
                    let share = HOURLY[(m / 60) as usize] / weights / 60.0;
                    let mut rate = base * share * (0.8 + 0.4 * rng.f64());
                    if let Some((from, len, calls)) = plan.storm[day as usize] {
                        if m >= from && m < from + len {
                            rate += calls;
                        }
                    }
                    let calls = rate.round() as u64;
                    if calls > 0 {
                        let at = start + Duration::minutes(i64::from(day * 1440 + m));
                        minutes.push((at, calls, plan.limit));
                    }
                }
            }
            rows.insert(
                Pair {
                    account: account.clone(),
                    cgi_path: plan.cgi_path.into(),
                },
                minutes,
            );
        }
    }
    let last = start + Duration::minutes(i64::from(days.max(1) * 1440 - 1));
    Trace::from_rows(tz, start, last, rows)
}

fn weekend(start: DateTime<Utc>, tz: Tz, day: u32) -> bool {
    use chrono::Datelike;
    let date = (start + Duration::days(i64::from(day))).with_timezone(&tz);
    matches!(date.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun)
}

fn plans(
    kind: Kind,
    rng: &mut fastrand::Rng,
    start: DateTime<Utc>,
    tz: Tz,
    days: u32,
) -> Vec<ApiPlan> {
    let n = days as usize;
    let one = |cgi_path, limit, level: Vec<f64>, storm| ApiPlan {
        cgi_path,
        limit,
        level,
        storm,
    };
    let send = "/cgi-bin/message/custom/send";
    match kind {
        Kind::Steady => {
            let level = (0..days)
                .map(|d| match weekend(start, tz, d) {
                    true => 0.8,
                    false => 1.05 + 0.2 * rng.f64(),
                })
                .collect();
            vec![one(send, 10_000, level, vec![None; n])]
        }
        Kind::Storm => {
            let mut storm = vec![None; n];
            for _ in 0..(3 + rng.u32(0..3)) {
                let day = rng.usize(0..n);
                let from = rng.u32(8 * 60..20 * 60);
                storm[day] = Some((from, rng.u32(120..360), 200.0 + 300.0 * rng.f64()));
            }
            vec![one(send, 10_000, vec![0.7; n], storm)]
        }
        Kind::Campaign => {
            let mut level: Vec<f64> = (0..n).map(|_| 0.8 + 0.1 * rng.f64()).collect();
            for _ in 0..(2 + rng.u32(0..2)) {
                level[rng.usize(0..n)] = 3.0 + rng.f64();
            }
            vec![one(send, 10_000, level, vec![None; n])]
        }
        Kind::Late => {
            let level = (0..n).map(|_| 1.01 + 0.05 * rng.f64()).collect();
            vec![one(send, 10_000, level, vec![None; n])]
        }
        Kind::MultiApi => [
            (send, 10_000u64),
            ("/wxa/msg_sec_check", 2_000),
            ("/cgi-bin/user/info", 500),
        ]
        .into_iter()
        .map(|(path, limit)| {
            let level = (0..n)
                .map(|_| match rng.u8(..3) {
                    0 => 1.1 + 0.3 * rng.f64(),
                    _ => 0.6,
                })
                .collect();
            one(path, limit, level, vec![None; n])
        })
        .collect(),
        Kind::Quiet | Kind::Mix => vec![one(send, 10_000, vec![0.5; n], vec![None; n])],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nov() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_same_seed_gives_the_same_month_and_kinds_differ() {
        let accounts = vec!["shop".to_string()];
        let tz = chrono_tz::Asia::Shanghai;
        for kind in KINDS {
            let a = generate(kind, 7, &accounts, tz, nov(), 30);
            let b = generate(kind, 7, &accounts, tz, nov(), 30);
            assert_eq!(a.to_csv(), b.to_csv(), "{}", kind.name());
            assert_eq!(a.minutes, 30 * 1440);
            assert_eq!(a.start, nov());
        }
        let c = generate(Kind::Steady, 8, &accounts, tz, nov(), 30);
        assert_ne!(
            generate(Kind::Steady, 7, &accounts, tz, nov(), 30).to_csv(),
            c.to_csv()
        );
        assert_eq!("storm".parse::<Kind>(), Ok(Kind::Storm));
        assert!("nope".parse::<Kind>().is_err());
    }

    /// What each kind is for, checked in the world without clears.
    #[test]
    fn each_kind_locks_out_the_way_its_name_says() {
        let accounts = vec!["shop".to_string()];
        let tz = chrono_tz::Asia::Shanghai;
        let locked = |kind| {
            let trace = generate(kind, 3, &accounts, tz, nov(), 30);
            let (costs, _) = super::super::world::replay(&trace, Duration::zero(), &[]);
            costs[0].locked_minutes
        };
        assert_eq!(locked(Kind::Quiet), 0, "quiet");
        for kind in [
            Kind::Steady,
            Kind::Storm,
            Kind::Campaign,
            Kind::Late,
            Kind::MultiApi,
        ] {
            assert!(locked(kind) > 60, "{}: {}", kind.name(), locked(kind));
        }
    }
}
