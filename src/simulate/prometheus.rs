//! A trace from Prometheus (SPEC section 8): `simulate --prometheus URL
//! --query Q` turns range queries into the rows a CSV trace holds.
//!
//! The query is evaluated at a 1-minute step over the minutes [from, to); the
//! sample at t covers the minute [t − 1m, t), so the minute that starts at m
//! takes the sample at m + 1m (what `increase(x[1m])` at t counts). Values are
//! rounded to the nearest integer; NaN or no sample is no row. The range is
//! fetched in chunks of at most [`MAX_STEPS`] evaluations, under the points
//! limit Prometheus enforces per series and query (11,000). Each series names
//! its account (config name or appid) in one label and its API in another.
//! The daily limit comes from a second query with the same labels (its
//! samples map to minutes the same way; a minute takes the latest at or
//! before it), or from `--daily-limit` (for every API or per cgi_path), or
//! both (the constant where the second query has nothing yet).
//!
//! This module only reads: the rows go to [`Trace::from_rows`], and the rest
//! of the backtest cannot tell them from a CSV's.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::trace::{Pair, Trace};
use crate::config::Config;
use crate::secret::mask_userinfo;

/// Evaluations per range query. Prometheus refuses more than 11,000 points
/// per series in one query; 10,000 is a round number under it.
pub const MAX_STEPS: i64 = 10_000;

/// One range query of a month's chunks should answer well within this.
const QUERY_TIMEOUT: StdDuration = StdDuration::from_secs(120);

/// A `--from`/`--to` value: a day in `daemon.timezone`, or an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Moment {
    Day(NaiveDate),
    Time(DateTime<Utc>),
}

/// Parses `YYYY-MM-DD` or RFC 3339 (clap's value parser).
pub fn parse_moment(text: &str) -> Result<Moment, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Moment::Day(day));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Moment::Time(t.with_timezone(&Utc)))
        .map_err(|_| format!("`{text}` is neither YYYY-MM-DD nor RFC 3339 with an offset"))
}

/// 00:00 of `day` in `tz`.
pub fn day_start(tz: Tz, day: NaiveDate) -> Option<DateTime<Utc>> {
    day.and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(tz).earliest())
        .map(|t| t.with_timezone(&Utc))
}

/// A `--daily-limit` value: `N` for every API, or `CGI_PATH=N` for one.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub cgi_path: Option<String>,
    pub limit: u64,
}

/// Parses `N` or `CGI_PATH=N` (clap's value parser).
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    let (cgi_path, n) = match text.rsplit_once('=') {
        Some((path, n)) if path.starts_with('/') => (Some(path.to_string()), n),
        Some(_) => {
            return Err(format!(
                "`{text}`: expected N or CGI_PATH=N (CGI_PATH starts with /)"
            ))
        }
        None => (None, text),
    };
    let limit = n
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: `{n}` is not a count"))?;
    Ok(Limit { cgi_path, limit })
}

/// The constant limit of `cgi_path`: its own `--daily-limit`, else the plain one.
fn constant(limits: &[Limit], cgi_path: &str) -> Option<u64> {
    let own = limits
        .iter()
        .rev()
        .find(|l| l.cgi_path.as_deref() == Some(cgi_path));
    own.or_else(|| limits.iter().rev().find(|l| l.cgi_path.is_none()))
        .map(|l| l.limit)
}

/// Where the trace comes from and how its series read.
#[derive(Debug, Clone)]
pub struct Source {
    /// The server's base URL (a path prefix such as `/prometheus` is kept).
    pub url: String,
    /// Calls attempted per minute, per (account, API).
    pub query: String,
    /// The daily limit, per (account, API), with the same labels.
    pub limit_query: Option<String>,
    /// The daily limit where `limit_query` gives none (or without it).
    pub daily_limit: Vec<Limit>,
    pub account_label: String,
    pub api_label: String,
    /// The first minute, inclusive.
    pub from: DateTime<Utc>,
    /// The end of the last minute.
    pub to: DateTime<Utc>,
}

impl Source {
    /// The source `simulate`'s flags describe. `--from` is needed; `--to`
    /// defaults to `--days` days later. A day in `--from` starts at its 00:00,
    /// a day in `--to` is included (to its 24:00).
    pub fn from_args(args: &super::SimulateArgs, url: &str, tz: Tz) -> anyhow::Result<Source> {
        let query = args
            .query
            .clone()
            .ok_or_else(|| anyhow::anyhow!("--prometheus needs --query"))?;
        anyhow::ensure!(
            args.limit_query.is_some() || !args.daily_limit.is_empty(),
            "--prometheus needs the daily limit: --limit-query Q2 (same labels) or --daily-limit N"
        );
        let day = |d: NaiveDate, flag: &str| {
            day_start(tz, d).ok_or_else(|| anyhow::anyhow!("{flag} {d} is not a day in {tz}"))
        };
        let from = match args.from {
            Some(Moment::Day(d)) => day(d, "--from")?,
            Some(Moment::Time(t)) => t,
            None => anyhow::bail!("--prometheus needs --from (YYYY-MM-DD or RFC 3339)"),
        };
        let to = match args.to {
            Some(Moment::Day(d)) => day(d.succ_opt().unwrap_or(d), "--to")?,
            Some(Moment::Time(t)) => t,
            None => from + Duration::days(i64::from(args.days)),
        };
        for (flag, t) in [("--from", from), ("--to", to)] {
            anyhow::ensure!(
                t.timestamp() % 60 == 0,
                "{flag} {t} is not at a whole minute"
            );
        }
        anyhow::ensure!(to > from, "--to ({to}) must be after --from ({from})");
        Ok(Source {
            url: url.trim_end_matches('/').to_string(),
            query,
            limit_query: args.limit_query.clone(),
            daily_limit: args.daily_limit.clone(),
            account_label: args.account_label.clone(),
            api_label: args.api_label.clone(),
            from,
            to,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus refused {flag} (HTTP {status}): {error_type}: {error}")]
    Api {
        flag: &'static str,
        status: u16,
        error_type: String,
        error: String,
    },
    #[error("Prometheus at {url} answered HTTP {status} to {flag}: {body}")]
    Http {
        url: String,
        flag: &'static str,
        status: u16,
        body: String,
    },
    #[error("{flag} returned a {0}, not a range of series (matrix)", flag = .1)]
    NotMatrix(String, &'static str),
    #[error("Prometheus's answer to {flag} is not a range query result: {reason}")]
    Malformed { flag: &'static str, reason: String },
    #[error(
        "{flag}: the series {series} has no `{label}` label; aggregate by it \
         (sum by ({label}, ...)) or name the label with {option}"
    )]
    MissingLabel {
        flag: &'static str,
        series: String,
        label: String,
        option: &'static str,
    },
    #[error(
        "{flag}: the series {series} names account `{account}`, which is not in the config \
         (a config name or appid; filter the query to configured accounts)"
    )]
    UnknownAccount {
        flag: &'static str,
        series: String,
        account: String,
    },
    #[error("{flag}: the series {series} has cgi_path `{cgi_path}`, which does not start with /")]
    BadApi {
        flag: &'static str,
        series: String,
        cgi_path: String,
    },
    #[error("{flag}: the series {series} has the value {value} at {at}, not a count")]
    BadValue {
        flag: &'static str,
        series: String,
        value: String,
        at: String,
    },
    #[error(
        "{flag}: two series give ({account}, {cgi_path}) at {at}; aggregate the other labels \
         away (sum by (account label, api label))"
    )]
    Duplicate {
        flag: &'static str,
        account: String,
        cgi_path: String,
        at: String,
    },
    #[error(
        "no daily limit for ({account}, {cgi_path}) at {at}: --limit-query has no sample at or \
         before it; give --daily-limit N (or CGI_PATH=N) for such minutes"
    )]
    NoLimit {
        account: String,
        cgi_path: String,
        at: String,
    },
    #[error("--query returned no calls between {from} and {to}")]
    Empty { from: String, to: String },
}

/// The evaluation times (start, end, both inclusive) of each range query
/// that covers the minutes [from, to): minute m takes the sample at m + 1m.
pub fn chunks(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let minutes = (to - from).num_minutes();
    let mut out = Vec::new();
    let mut done = 0;
    while done < minutes {
        let n = (minutes - done).min(MAX_STEPS);
        out.push((
            from + Duration::minutes(done + 1),
            from + Duration::minutes(done + n),
        ));
        done += n;
    }
    out
}

/// Per (account, API), a value per minute (the minute's start), in order.
type Columns = BTreeMap<Pair, Vec<(DateTime<Utc>, u64)>>;

/// Per (account, API), its rows: (minute, calls, daily_limit).
type Rows = BTreeMap<Pair, Vec<(DateTime<Utc>, u64, u64)>>;

/// Runs the queries and builds the trace.
pub async fn fetch(source: &Source, config: &Config) -> Result<Trace, PromError> {
    let client = reqwest::Client::builder()
        .timeout(QUERY_TIMEOUT)
        .user_agent(concat!("quotawatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PromError::Unreachable {
            url: mask_userinfo(&source.url).into_owned(),
            reason: crate::error_chain::display(&e),
        })?;
    let calls = columns(&client, source, &source.query, "--query", config).await?;
    let limits = match &source.limit_query {
        Some(q) => columns(&client, source, q, "--limit-query", config).await?,
        None => Columns::new(),
    };
    let rows = rows(calls, &limits, &source.daily_limit)?;
    let times = || rows.values().flatten().map(|(t, ..)| *t);
    let (Some(first), Some(last)) = (times().min(), times().max()) else {
        return Err(PromError::Empty {
            from: source.from.to_rfc3339(),
            to: source.to.to_rfc3339(),
        });
    };
    Ok(Trace::from_rows(config.daemon.timezone, first, last, rows))
}

/// The trace's rows: minutes with calls, each with its daily limit (the
/// latest limit sample at or before it, else `--daily-limit`). The period of a
/// trace runs from the day of its first row to the day of its last, so rows
/// with no calls are left out: written with `--write-trace`, the trace
/// replays to the same figures.
fn rows(calls: Columns, limits: &Columns, constants: &[Limit]) -> Result<Rows, PromError> {
    let mut out = BTreeMap::new();
    for (pair, minutes) in calls {
        let mut rows = Vec::new();
        for (t, c) in minutes.into_iter().filter(|(_, c)| *c > 0) {
            let sampled = limits.get(&pair).and_then(|l| {
                let after = l.partition_point(|(m, _)| *m <= t);
                after.checked_sub(1).map(|i| l[i].1)
            });
            let limit = sampled
                .or_else(|| constant(constants, &pair.cgi_path))
                .ok_or_else(|| PromError::NoLimit {
                    account: pair.account.clone(),
                    cgi_path: pair.cgi_path.clone(),
                    at: t.to_rfc3339(),
                })?;
            rows.push((t, c, limit));
        }
        if !rows.is_empty() {
            out.insert(pair, rows);
        }
    }
    Ok(out)
}

/// One query over the whole range, chunk by chunk.
async fn columns(
    client: &reqwest::Client,
    source: &Source,
    query: &str,
    flag: &'static str,
    config: &Config,
) -> Result<Columns, PromError> {
    let chunks = chunks(source.from, source.to);
    let mut out = Columns::new();
    for (i, (start, end)) in chunks.iter().enumerate() {
        let series = range(client, &source.url, query, flag, *start, *end).await?;
        eprintln!(
            "simulate: {flag} chunk {} of {}: {} series",
            i + 1,
            chunks.len(),
            series.len()
        );
        for s in series {
            let pair = pair(&s.metric, source, flag, config)?;
            let column = out.entry(pair).or_default();
            for (ts, value) in s.values {
                let minute = minute_of(ts).ok_or_else(|| PromError::Malformed {
                    flag,
                    reason: format!("the timestamp {ts} is not on the 1-minute step"),
                })?;
                let Some(n) = count(&value).map_err(|()| PromError::BadValue {
                    flag,
                    series: labels(&s.metric),
                    value: value.clone(),
                    at: (minute + Duration::minutes(1)).to_rfc3339(),
                })?
                else {
                    continue;
                };
                column.push((minute, n));
            }
        }
    }
    // One series per pair comes in time order already; two series of one
    // pair meet here.
    for (pair, column) in &mut out {
        column.sort_by_key(|(m, _)| *m);
        if let Some(w) = column.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(PromError::Duplicate {
                flag,
                account: pair.account.clone(),
                cgi_path: pair.cgi_path.clone(),
                at: w[0].0.to_rfc3339(),
            });
        }
    }
    Ok(out)
}

/// The minute a sample at `ts` (Unix seconds) covers: [ts − 1m, ts).
fn minute_of(ts: f64) -> Option<DateTime<Utc>> {
    let ms = (ts * 1000.0).round() as i64;
    if ms % 60_000 != 0 {
        return None;
    }
    DateTime::from_timestamp_millis(ms - 60_000)
}

/// A sample's value as a count: `None` for NaN (no row), an error for a
/// negative or infinite value.
fn count(value: &str) -> Result<Option<u64>, ()> {
    let v: f64 = value.parse().map_err(|_| ())?;
    if v.is_nan() {
        return Ok(None);
    }
    let rounded = v.round();
    if !rounded.is_finite() || rounded < 0.0 || rounded > u64::MAX as f64 {
        return Err(());
    }
    Ok(Some(rounded as u64))
}

/// The (account, API) a series names.
fn pair(
    metric: &BTreeMap<String, String>,
    source: &Source,
    flag: &'static str,
    config: &Config,
) -> Result<Pair, PromError> {
    let label = |name: &str, option: &'static str| {
        metric.get(name).ok_or_else(|| PromError::MissingLabel {
            flag,
            series: labels(metric),
            label: name.to_string(),
            option,
        })
    };
    let account = label(&source.account_label, "--account-label")?;
    let cgi_path = label(&source.api_label, "--api-label")?;
    let name = config
        .account(account)
        .ok_or_else(|| PromError::UnknownAccount {
            flag,
            series: labels(metric),
            account: account.clone(),
        })?
        .name
        .clone();
    if !cgi_path.starts_with('/') {
        return Err(PromError::BadApi {
            flag,
            series: labels(metric),
            cgi_path: cgi_path.clone(),
        });
    }
    Ok(Pair {
        account: name,
        cgi_path: cgi_path.clone(),
    })
}

/// A series' labels the way PromQL writes them.
fn labels(metric: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Prometheus's answer envelope: success with data, or an error.
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(rename = "errorType", default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Element>,
}

/// A matrix holds series; a scalar or string's result holds plain values,
/// and a vector's elements have no `values`: both are refused by type first.
#[derive(Deserialize)]
#[serde(untagged)]
enum Element {
    Series(Series),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// One range query: the matrix's series.
async fn range(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    flag: &'static str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Series>, PromError> {
    // A `user:password@` in the URL is sent as basic auth, never shown.
    let shown = mask_userinfo(url).into_owned();
    let unreachable = |e: reqwest::Error| PromError::Unreachable {
        url: shown.clone(),
        reason: crate::error_chain::display(&e.without_url()),
    };
    let reply = client
        .get(format!("{url}/api/v1/query_range"))
        .query(&[
            ("query", query.to_string()),
            ("start", start.timestamp().to_string()),
            ("end", end.timestamp().to_string()),
            ("step", "60".to_string()),
        ])
        .send()
        .await
        .map_err(unreachable)?;
    let status = reply.status();
    let body = reply.bytes().await.map_err(unreachable)?;
    // Prometheus answers errors (400, 422, 503) with the same JSON envelope.
    let answer: Answer = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) if status.is_success() => {
            return Err(PromError::Malformed {
                flag,
                reason: e.to_string(),
            })
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&body);
            return Err(PromError::Http {
                url: shown,
                flag,
                status: status.as_u16(),
                body: text
                    .chars()
                    .take(200)
                    .collect::<String>()
                    .trim()
                    .to_string(),
            });
        }
    };
    for warning in &answer.warnings {
        eprintln!("simulate: Prometheus warns about {flag}: {warning}");
    }
    if answer.status != "success" {
        return Err(PromError::Api {
            flag,
            status: status.as_u16(),
            error_type: answer.error_type.unwrap_or_else(|| "unknown".into()),
            error: answer.error.unwrap_or_default(),
        });
    }
    let data = answer.data.ok_or_else(|| PromError::Malformed {
        flag,
        reason: "no data".into(),
    })?;
    if data.result_type != "matrix" {
        return Err(PromError::NotMatrix(data.result_type, flag));
    }
    data.result
        .into_iter()
        .map(|e| match e {
            Element::Series(s) => Ok(s),
            Element::Other(_) => Err(PromError::Malformed {
                flag,
                reason: "a series without float samples (native histograms are not counts)".into(),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn chunks_cover_every_minute_once_within_the_points_limit() {
        let from = t("2026-11-01T00:00:00+08:00");
        for minutes in [1, 59, 9_999, 10_000, 10_001, 43_200, 44_640] {
            let to = from + Duration::minutes(minutes);
            let chunks = chunks(from, to);
            let mut next = from + Duration::minutes(1);
            for (start, end) in &chunks {
                assert_eq!(*start, next, "{minutes}: contiguous");
                let points = (*end - *start).num_minutes() + 1;
                assert!((1..=MAX_STEPS).contains(&points), "{minutes}: {points}");
                next = *end + Duration::minutes(1);
            }
            assert_eq!(
                next - Duration::minutes(1),
                to,
                "{minutes}: the last sample is at to"
            );
            assert_eq!(chunks.len() as i64, (minutes + MAX_STEPS - 1) / MAX_STEPS);
        }
    }

    #[test]
    fn values_round_to_counts_and_nan_is_no_row() {
        let cases = [
            ("3", Ok(Some(3))),
            ("2.5", Ok(Some(3))),
            ("2.49", Ok(Some(2))),
            ("-0.2", Ok(Some(0))),
            ("NaN", Ok(None)),
            ("-3", Err(())),
            ("+Inf", Err(())),
            ("abc", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(count(text), want, "{text}");
        }
    }

    #[test]
    fn a_limit_of_its_own_beats_the_plain_one() {
        let limits: Vec<Limit> = ["100", "/a=5", "/b=7"]
            .iter()
            .map(|t| parse_limit(t).unwrap())
            .collect();
        assert_eq!(constant(&limits, "/a"), Some(5));
        assert_eq!(constant(&limits, "/c"), Some(100));
        assert_eq!(constant(&limits[1..], "/c"), None);
        for bad in ["x", "a=5", "/a=x", "-1"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sample_covers_the_minute_before_it() {
        let at = t("2026-11-03T10:01:00+08:00").timestamp() as f64;
        assert_eq!(minute_of(at), Some(t("2026-11-03T10:00:00+08:00")));
        assert_eq!(minute_of(at + 30.0), None);
    }
}
