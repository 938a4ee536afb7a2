//! Month and day boundaries in the configured time zone.
//!
//! WeChat resets daily quotas at 00:00 Beijing time and counts clears per calendar
//! month in the same zone, so every "this month" and "today" in quotawatch is a
//! period in `daemon.timezone`, never in UTC. This module only does arithmetic.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// A half-open interval `[start, end)` of instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    // A zone may skip midnight on a DST change; the earliest instant of the day
    // is then the first valid one after it.
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&naive)),
    }
}

/// The calendar day containing `now` in `tz`.
pub fn day(tz: Tz, now: DateTime<Utc>) -> Period {
    let date = now.with_timezone(&tz).date_naive();
    let next = date.succ_opt().expect("date in range");
    Period {
        start: local_midnight(tz, date),
        end: local_midnight(tz, next),
    }
}

/// `now` less `window`: where an evidence window (or the keys a clear acted
/// on) starts; the earliest instant when the window reaches past it.
pub fn window_start(now: DateTime<Utc>, window: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The calendar month containing `now` in `tz`.
pub fn month(tz: Tz, now: DateTime<Utc>) -> Period {
    let date = now.with_timezone(&tz).date_naive();
    let first = date.with_day(1).expect("day 1 exists");
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .expect("date in range");
    Period {
        start: local_midnight(tz, first),
        end: local_midnight(tz, next),
    }
}

/// The month named `YYYY-MM` in `tz`.
pub fn named_month(tz: Tz, name: &str) -> Option<Period> {
    let (y, m) = name.split_once('-')?;
    let date = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)?;
    Some(month(tz, local_midnight(tz, date)))
}

/// `YYYY-MM` of the month containing `now` in `tz`, as messages show it.
pub fn month_label(tz: Tz, now: DateTime<Utc>) -> String {
    now.with_timezone(&tz).format("%Y-%m").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn beijing_month_rolls_over_at_local_midnight() {
        let tz = chrono_tz::Asia::Shanghai;
        // 23:59 on 30 November CST and 00:01 on 1 December CST: same UTC day.
        let late = utc("2026-11-30T15:59:00Z");
        let early = utc("2026-11-30T16:01:00Z");
        assert_eq!(month_label(tz, late), "2026-11");
        assert_eq!(month_label(tz, early), "2026-12");
        assert!(!month(tz, late).contains(early));
        assert_eq!(month(tz, early).start, utc("2026-11-30T16:00:00Z"));
    }

    #[test]
    fn day_is_local() {
        let tz = chrono_tz::Asia::Shanghai;
        let p = day(tz, utc("2026-11-28T20:00:00Z"));
        assert_eq!(p.start, utc("2026-11-28T16:00:00Z"));
        assert_eq!(p.end, utc("2026-11-29T16:00:00Z"));
    }

    #[test]
    fn named_month_parses_and_rejects() {
        let tz = chrono_tz::Asia::Shanghai;
        let p = named_month(tz, "2026-12").unwrap();
        assert_eq!(p.start, utc("2026-11-30T16:00:00Z"));
        assert_eq!(p.end, utc("2026-12-31T16:00:00Z"));
        assert!(named_month(tz, "2026-13").is_none());
        assert!(named_month(tz, "soon").is_none());
    }
}
