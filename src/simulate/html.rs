//! `simulate --html FILE`: the backtest as one self-contained HTML page.
//!
//! Per account, a timeline of the period as inline SVG: the day's demand so
//! far against the daily limit (the busiest API's calls attempted since
//! 00:00 as a share of its limit, so 100% is where it runs out without a
//! clear), the minutes the policy left it locked shaded in the chart, the
//! oracle's locked minutes in a strip below, and every clear attempt of the
//! policy and the oracle as a mark at its decision time. Then the table the
//! text output prints, figure for figure. No scripts, no external assets.
//!
//! Size: the period is cut into at most [`MAX_BUCKETS`] buckets of a whole
//! number of minutes, so an account's SVG holds at most that many points and
//! shaded runs, plus its clear marks, whatever the trace's length. Locked
//! minutes come from replaying the listed clears in the world, not from a
//! second model of it.

use std::fmt::Write;

use chrono::Duration;

use super::trace::Trace;
use super::world::{self, Attempt};
use super::{Report, POLICIES};
use crate::calendar;
use crate::event::ClearTarget;

/// Buckets per account timeline: the resolution and the size bound.
pub const MAX_BUCKETS: u32 = 720;

/// Bucket widths in minutes, finest first; each divides a day.
const WIDTHS: [u32; 13] = [1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 360, 720, 1440];

/// SVG geometry (viewBox units).
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const CHART: f64 = 120.0;
const STRIP_TOP: f64 = TOP + CHART + 6.0;
const STRIP: f64 = 10.0;
const HEIGHT: f64 = STRIP_TOP + STRIP + 18.0;

/// The width of a bucket for a period of `minutes`.
pub fn bucket_minutes(minutes: u32) -> u32 {
    WIDTHS
        .iter()
        .copied()
        .find(|w| minutes.div_ceil(*w) <= MAX_BUCKETS)
        .unwrap_or_else(|| minutes.div_ceil(MAX_BUCKETS).div_ceil(1440) * 1440)
}

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page.
pub fn report(report: &Report, trace: &Trace, delay: Duration) -> String {
    let bucket = bucket_minutes(trace.minutes.max(1));
    let locked = |p: &str| world::locked_minutes(trace, delay, &report.run(p).clears);
    let (locked_policy, locked_oracle) = (locked("policy"), locked("oracle"));
    let mut out = head(report, trace, bucket);
    // The world's accounts and the report's are the trace's, in one order.
    for (a, name) in report.accounts().iter().enumerate() {
        let pairs: Vec<usize> = (0..trace.pairs.len())
            .filter(|p| trace.pairs[*p].account == *name)
            .collect();
        let timeline = Timeline {
            trace,
            bucket,
            share: share(trace, &pairs, bucket),
            locked_policy: locked_policy.get(a).map_or(&[][..], Vec::as_slice),
            locked_oracle: locked_oracle.get(a).map_or(&[][..], Vec::as_slice),
        };
        out.push_str(&section(report, name, &pairs, &timeline));
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// The document's head, the period, the table and the key to the timelines.
fn head(report: &Report, trace: &Trace, bucket: u32) -> String {
    let tz = trace.timezone;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>quotawatch backtest</title>\n<style>\n",
    );
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<h1>quotawatch backtest</h1>\n");
    let _ = writeln!(
        out,
        "<p>From {} to {} ({}), signal delay {} s. The table is the one <code>quotawatch \
         simulate</code> prints; recovery = (never − policy) / (never − oracle) on locked \
         minutes.</p>",
        escape(&report.from.with_timezone(&tz).to_rfc3339()),
        escape(&report.to.with_timezone(&tz).to_rfc3339()),
        escape(tz.name()),
        report.signal_delay_seconds
    );
    out.push_str(&table(report, &report.accounts()));
    let _ = writeln!(
        out,
        "<h2>Timelines</h2>\n<p>One point per {bucket} minutes. Line: the busiest API's calls \
         attempted since 00:00 as a share of its daily limit (dashed: 100%, where it runs out \
         without a clear; clipped at 400%). Red: minutes the policy left the account locked \
         (darker: more of the {bucket} minutes). Green strip below: the oracle's locked \
         minutes. Marks at the decision times: <span class=\"key-policy\">policy clears</span> \
         (across the chart), <span class=\"key-oracle\">oracle clears</span> (on the strip); \
         dashed: answered 48006.</p>"
    );
    out
}

/// One account: its name, its APIs and its timeline.
fn section(report: &Report, name: &str, pairs: &[usize], timeline: &Timeline) -> String {
    let apis: Vec<String> = pairs
        .iter()
        .map(|p| {
            format!(
                "<code>{}</code>",
                escape(&timeline.trace.pairs[*p].cgi_path)
            )
        })
        .collect();
    let mine = |p: &str| -> Vec<Attempt> {
        let clears = report.run(p).clears.iter();
        clears.filter(|c| c.account == name).cloned().collect()
    };
    format!(
        "<section class=\"account\">\n<h3>{}</h3>\n<p>APIs: {}</p>\n{}</section>\n",
        escape(name),
        apis.join(", "),
        timeline.svg(&mine("policy"), &mine("oracle"))
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\n\
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}\n\
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}\n\
tr.total td{font-weight:bold}tbody tr:nth-child(4n+1) td{border-top:1px solid #bbb}\n\
svg{width:100%;max-width:1000px;height:auto;display:block}\n\
.grid{stroke:#ddd;stroke-width:1}.limit{stroke:#888;stroke-dasharray:4 3}\n\
.demand{fill:none;stroke:#333;stroke-width:1.2}.axis{font-size:10px;fill:#555}\n\
.locked{fill:#d33}.strip{fill:#f3f3f3}.oracle-locked{fill:#393}\n\
.clear{stroke-width:1.5}.policy{stroke:#1552b8}.oracle{stroke:#0a7a2a}\n\
.refused{stroke-dasharray:2 2}.key-policy{color:#1552b8}.key-oracle{color:#0a7a2a}\n";

/// The table of the text output, as HTML: the same rows, the same figures.
fn table(report: &Report, accounts: &[String]) -> String {
    let mut out = String::from(
        "<table class=\"figures\">\n<thead><tr><th>account</th><th>policy</th><th>clears</th>\
         <th>locked_minutes</th><th>failed_calls</th><th>recovery</th></tr></thead>\n<tbody>\n",
    );
    let mut rows: Vec<Option<&str>> = accounts.iter().map(|a| Some(a.as_str())).collect();
    rows.push(None);
    for account in rows {
        for policy in POLICIES {
            let (locked, failed, clears) = report.figures(policy, account);
            let _ = writeln!(
                out,
                "<tr{}><td>{}</td><td>{policy}</td><td>{clears}</td><td>{locked}</td>\
                 <td>{failed}</td><td>{:.3}</td></tr>",
                if account.is_none() {
                    " class=\"total\""
                } else {
                    ""
                },
                escape(account.unwrap_or("TOTAL")),
                report.recovery(account, policy)
            );
        }
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// Per bucket, the largest share of its daily limit any of `pairs` has
/// used (calls attempted since 00:00 over `daily_limit`) by the bucket's
/// end. A limit of 0 with calls counts as far over.
fn share(trace: &Trace, pairs: &[usize], bucket: u32) -> Vec<f64> {
    let buckets = trace.minutes.div_ceil(bucket) as usize;
    let day_starts = day_starts(trace);
    let day_of = |m: u32| day_starts.partition_point(|s| *s <= m);
    let mut out = vec![0.0_f64; buckets];
    for &p in pairs {
        let mut at_end: Vec<Option<f64>> = vec![None; buckets];
        let (mut cum, mut day) = (0_u64, 0);
        for &(m, calls, limit) in &trace.demand[p] {
            if day_of(m) != day {
                (cum, day) = (0, day_of(m));
            }
            cum += calls;
            let share = match limit {
                0 => f64::INFINITY,
                l => cum as f64 / l as f64,
            };
            at_end[(m / bucket) as usize] = Some(share);
        }
        // A bucket without calls keeps the day's share so far.
        let mut last = 0.0;
        for (b, value) in at_end.into_iter().enumerate() {
            let start = b as u32 * bucket;
            if b > 0 && day_of(start) != day_of(start - bucket) {
                last = 0.0;
            }
            if let Some(v) = value {
                last = v;
            }
            out[b] = out[b].max(last);
        }
    }
    out
}

/// The minute index of each 00:00 in the period after the first.
fn day_starts(trace: &Trace) -> Vec<u32> {
    let mut out = Vec::new();
    let mut day = calendar::day(trace.timezone, trace.start);
    while day.end < trace.end() {
        out.push((day.end - trace.start).num_minutes() as u32);
        day = calendar::day(trace.timezone, day.end);
    }
    out
}

/// One account's timeline.
struct Timeline<'a> {
    trace: &'a Trace,
    bucket: u32,
    /// Per bucket, the day's share of the limit so far.
    share: Vec<f64>,
    locked_policy: &'a [u32],
    locked_oracle: &'a [u32],
}

impl Timeline<'_> {
    fn x(&self, minute: f64) -> f64 {
        LEFT + minute / f64::from(self.trace.minutes.max(1)) * (WIDTH - LEFT - RIGHT)
    }

    fn svg(&self, policy: &[Attempt], oracle: &[Attempt]) -> String {
        let ymax = self
            .share
            .iter()
            .copied()
            .fold(0.0, f64::max)
            .clamp(1.25, 4.0);
        let y = |share: f64| TOP + CHART - share.min(ymax) / ymax * CHART;
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             role=\"img\">\n<rect class=\"strip\" x=\"{LEFT}\" y=\"{STRIP_TOP}\" width=\"{:.1}\" \
             height=\"{STRIP}\"/>\n",
            WIDTH - LEFT - RIGHT
        );
        out.push_str(&self.days());
        out.push_str(&self.shading(self.locked_policy, "locked", TOP, CHART));
        out.push_str(&self.shading(self.locked_oracle, "oracle-locked", STRIP_TOP, STRIP));
        for (share, label) in [(0.0, "0%".to_string()), (1.0, "100%".into())]
            .into_iter()
            .chain(std::iter::once((ymax, format!("{:.0}%", ymax * 100.0))))
        {
            let _ = writeln!(
                out,
                "<line class=\"{}\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
                 <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
                if share == 1.0 { "limit" } else { "grid" },
                WIDTH - RIGHT,
                y(share),
                y(share),
                LEFT - 3.0,
                y(share) + 3.0
            );
        }
        let points: Vec<String> = self
            .share
            .iter()
            .enumerate()
            .map(|(b, s)| {
                let end = ((b as u32 + 1) * self.bucket).min(self.trace.minutes);
                format!("{:.1},{:.1}", self.x(f64::from(end)), y(*s))
            })
            .collect();
        let _ = writeln!(
            out,
            "<polyline class=\"demand\" points=\"{:.1},{:.1} {}\"/>",
            LEFT,
            y(0.0),
            points.join(" ")
        );
        out.push_str(&self.marks(policy, "policy", TOP, TOP + CHART));
        out.push_str(&self.marks(oracle, "oracle", STRIP_TOP - 4.0, STRIP_TOP + STRIP + 2.0));
        out.push_str("</svg>\n");
        out
    }

    /// A gridline at each 00:00, labelled with the date often enough to read.
    fn days(&self) -> String {
        let mut starts = vec![0];
        starts.extend(day_starts(self.trace));
        let every = starts.len().div_ceil(15).max(1);
        let mut out = String::new();
        for (i, m) in starts.into_iter().enumerate() {
            let x = self.x(f64::from(m));
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/>",
                TOP + CHART
            );
            if i % every == 0 {
                let date = self.trace.at(m).with_timezone(&self.trace.timezone);
                let _ = write!(
                    out,
                    "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    x + 2.0,
                    HEIGHT - 4.0,
                    date.format("%m-%d")
                );
            }
        }
        out.push('\n');
        out
    }

    /// Runs of buckets holding locked minutes, darker the more they hold
    /// (four levels, so neighbouring buckets merge).
    fn shading(&self, locked: &[u32], class: &str, top: f64, height: f64) -> String {
        let buckets = self.trace.minutes.div_ceil(self.bucket) as usize;
        let mut count = vec![0_u32; buckets];
        for m in locked {
            count[(m / self.bucket) as usize] += 1;
        }
        let level = |n: u32| match n {
            0 => 0,
            n => (n * 4).div_ceil(self.bucket).min(4),
        };
        let mut out = String::new();
        let mut b = 0;
        while b < buckets {
            let l = level(count[b]);
            let start = b;
            while b < buckets && level(count[b]) == l {
                b += 1;
            }
            if l == 0 {
                continue;
            }
            let (x0, x1) = (
                self.x(f64::from(start as u32 * self.bucket)),
                self.x(f64::from((b as u32 * self.bucket).min(self.trace.minutes))),
            );
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" \
                 height=\"{height:.1}\" fill-opacity=\"{:.2}\"/>",
                (x1 - x0).max(0.5),
                0.15 + 0.15 * f64::from(l)
            );
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }

    /// A vertical mark per clear attempt, at its decision time, with a
    /// tooltip; a 48006 answer is dashed.
    fn marks(&self, clears: &[Attempt], policy: &str, y1: f64, y2: f64) -> String {
        let mut out = String::new();
        for c in clears {
            let minute = (c.time - self.trace.start).num_seconds() as f64 / 60.0;
            let x = self.x(minute);
            let scope = match &c.target {
                ClearTarget::Full => "full clear".to_string(),
                ClearTarget::Api { cgi_path } => format!("clear of {cgi_path}"),
            };
            let answer = c
                .errcode
                .map_or(String::new(), |e| format!(", answered {e}"));
            let local = c.time.with_timezone(&self.trace.timezone);
            let _ = writeln!(
                out,
                "<line class=\"clear {policy}{}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y1:.1}\" \
                 y2=\"{y2:.1}\"><title>{policy}: {}{} at {}</title></line>",
                if c.errcode.is_some() { " refused" } else { "" },
                escape(&scope),
                answer,
                local.format("%Y-%m-%d %H:%M:%S")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_a_timeline_under_the_bound() {
        for (minutes, want) in [
            (1440, 2),
            (7 * 1440, 15),
            (30 * 1440, 60),
            (31 * 1440, 120),
            (720, 1),
        ] {
            assert_eq!(bucket_minutes(minutes), want, "{minutes}");
        }
        let year: u32 = 1000 * 1440;
        assert!(year.div_ceil(bucket_minutes(year)) <= MAX_BUCKETS);
    }

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            escape(r#"/a<b>&"c'"#),
            "/a&lt;b&gt;&amp;&quot;c&#39;".to_string()
        );
    }
}
