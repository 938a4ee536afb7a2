//! A trace of API demand (SPEC section 8): per (account, API), the calls
//! attempted in each minute and the API's daily limit then.
//!
//! CSV with the header `time,account,cgi_path,calls,daily_limit`, one row per
//! minute with demand, in time order; `time` is RFC 3339 with an offset, at a
//! whole minute. The period runs from 00:00 of the first row's day to 24:00
//! of the last row's day in the daemon's timezone.

use std::collections::BTreeMap;
use std::io::BufRead;

use chrono::{DateTime, Duration, Timelike, Utc};
use chrono_tz::Tz;

use crate::calendar;
use crate::config::Config;

/// One (account, API) of the trace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pair {
    /// The account's config name.
    pub account: String,
    pub cgi_path: String,
}

/// Demand in one minute: (minute index, calls, daily_limit).
pub type Demand = (u32, u64, u64);

#[derive(Debug, Clone)]
pub struct Trace {
    pub timezone: Tz,
    /// 00:00 of the first day: minute 0.
    pub start: DateTime<Utc>,
    /// Minutes in the period (to 24:00 of the last day).
    pub minutes: u32,
    /// Sorted by (account, cgi_path): the order signals due together go in.
    pub pairs: Vec<Pair>,
    /// Per pair, its minutes with demand, in order.
    pub demand: Vec<Vec<Demand>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{source_name}:{line}: {reason}")]
    Row {
        source_name: String,
        line: usize,
        reason: String,
    },
    #[error("{0}: the trace has no rows")]
    Empty(String),
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
}

const HEADER: &str = "time,account,cgi_path,calls,daily_limit";

impl Trace {
    /// Reads a CSV trace; `account` cells may be config names or appids.
    pub fn read(
        reader: impl BufRead,
        source_name: &str,
        config: &Config,
    ) -> Result<Trace, TraceError> {
        let tz = config.daemon.timezone;
        let err = |line: usize, reason: String| TraceError::Row {
            source_name: source_name.to_string(),
            line,
            reason,
        };
        let mut rows: BTreeMap<Pair, Vec<(DateTime<Utc>, u64, u64)>> = BTreeMap::new();
        let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
        for (i, line) in reader.lines().enumerate() {
            let n = i + 1;
            let line = line.map_err(|e| TraceError::Io(source_name.to_string(), e))?;
            let line = line.trim_end_matches('\r');
            if n == 1 {
                if line.trim() != HEADER {
                    return Err(err(n, format!("the header must be `{HEADER}`")));
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let [time, account, cgi_path, calls, limit] = cells[..] else {
                return Err(err(
                    n,
                    format!("expected 5 cells ({HEADER}), found {}", cells.len()),
                ));
            };
            let time = DateTime::parse_from_rfc3339(time)
                .map_err(|e| err(n, format!("time `{time}`: {e} (RFC 3339 with an offset)")))?
                .with_timezone(&Utc);
            if time.second() != 0 || time.nanosecond() != 0 {
                return Err(err(n, format!("time {time} is not at a whole minute")));
            }
            if last.is_some_and(|l| time < l) {
                return Err(err(n, "rows must be in time order".into()));
            }
            let name = config
                .account(account)
                .map(|a| a.name.clone())
                .ok_or_else(|| err(n, format!("account `{account}` is not in the config")))?;
            if !cgi_path.starts_with('/') {
                return Err(err(n, format!("cgi_path `{cgi_path}` must start with /")));
            }
            let calls: u64 = calls
                .parse()
                .map_err(|_| err(n, format!("calls `{calls}` is not a count")))?;
            let limit: u64 = limit
                .parse()
                .map_err(|_| err(n, format!("daily_limit `{limit}` is not a count")))?;
            first.get_or_insert(time);
            last = Some(time);
            let pair = Pair {
                account: name,
                cgi_path: cgi_path.to_string(),
            };
            let minutes = rows.entry(pair).or_default();
            if minutes.last().is_some_and(|(t, ..)| *t == time) {
                return Err(err(n, "a second row for the same minute and API".into()));
            }
            minutes.push((time, calls, limit));
        }
        let (Some(first), Some(last)) = (first, last) else {
            return Err(TraceError::Empty(source_name.to_string()));
        };
        Ok(Self::from_rows(tz, first, last, rows))
    }

    /// A trace from rows per pair, each (time at a whole minute, calls, limit).
    pub fn from_rows(
        timezone: Tz,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        rows: BTreeMap<Pair, Vec<(DateTime<Utc>, u64, u64)>>,
    ) -> Trace {
        let start = calendar::day(timezone, first).start;
        let end = calendar::day(timezone, last).end;
        let minutes = ((end - start).num_minutes()).max(0) as u32;
        let (pairs, demand) = rows
            .into_iter()
            .map(|(pair, rows)| {
                let demand = rows
                    .into_iter()
                    .filter(|(_, calls, _)| *calls > 0)
                    .map(|(t, calls, limit)| ((t - start).num_minutes() as u32, calls, limit))
                    .collect();
                (pair, demand)
            })
            .unzip();
        Trace {
            timezone,
            start,
            minutes,
            pairs,
            demand,
        }
    }

    /// The instant minute `m` starts.
    pub fn at(&self, m: u32) -> DateTime<Utc> {
        self.start + Duration::minutes(i64::from(m))
    }

    /// The end of the period.
    pub fn end(&self) -> DateTime<Utc> {
        self.at(self.minutes)
    }

    /// The account names of the trace, in order.
    pub fn accounts(&self) -> Vec<String> {
        let mut names: Vec<String> = self.pairs.iter().map(|p| p.account.clone()).collect();
        names.dedup();
        names
    }

    /// The trace as CSV, the way [`Trace::read`] takes it.
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<(u32, usize, u64, u64)> = Vec::new();
        for (p, demand) in self.demand.iter().enumerate() {
            rows.extend(demand.iter().map(|&(m, c, l)| (m, p, c, l)));
        }
        rows.sort();
        let mut out = format!("{HEADER}\n");
        for (m, p, calls, limit) in rows {
            let t = self.at(m).with_timezone(&self.timezone);
            let pair = &self.pairs[p];
            out.push_str(&format!(
                "{},{},{},{calls},{limit}\n",
                t.format("%Y-%m-%dT%H:%M:%S%:z"),
                pair.account,
                pair.cgi_path
            ));
        }
        out
    }
}
