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
//! The drawing is [`crate::timeline`]'s, the one the status page uses too:
//! this module only says what to draw. Its size is bounded by
//! [`timeline::MAX_BUCKETS`] whatever the trace's length. Locked minutes come
//! from replaying the listed clears in the world, not from a second model of
//! it.

use std::fmt::Write;

use chrono::Duration;

use super::trace::Trace;
use super::world::{self, Attempt};
use super::{Report, POLICIES};
use crate::event::ClearTarget;
use crate::timeline::{self, Band, Line, Mark, Timeline};

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
    let bucket = timeline::bucket_minutes(trace.minutes.max(1));
    let locked = |p: &str| world::locked_minutes(trace, delay, &report.run(p).clears);
    let (locked_policy, locked_oracle) = (locked("policy"), locked("oracle"));
    let mut out = head(report, trace, bucket);
    // The world's accounts and the report's are the trace's, in one order.
    for (a, name) in report.accounts().iter().enumerate() {
        let pairs: Vec<usize> = (0..trace.pairs.len())
            .filter(|p| trace.pairs[*p].account == *name)
            .collect();
        let mut tl = Timeline::new(trace.start, trace.end(), trace.timezone);
        tl.line = Some(Line {
            class: "demand",
            values: share(trace, &pairs, &tl),
            floor: 1.25,
            cap: 4.0,
        });
        tl.locked = tl.count_minutes(locked_policy.get(a).map_or(&[][..], Vec::as_slice));
        tl.strip = tl.count_minutes(locked_oracle.get(a).map_or(&[][..], Vec::as_slice));
        tl.strip_class = "oracle-locked";
        for (policy, band) in [("policy", Band::Chart), ("oracle", Band::Strip)] {
            let clears = report.run(policy).clears.iter();
            tl.marks.extend(
                clears
                    .filter(|c| c.account == *name)
                    .map(|c| mark(c, policy, band, trace)),
            );
        }
        out.push_str(&section(name, &pairs, trace, &tl));
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
    out.push_str(timeline::STYLE);
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
fn section(name: &str, pairs: &[usize], trace: &Trace, timeline: &Timeline) -> String {
    let apis: Vec<String> = pairs
        .iter()
        .map(|p| format!("<code>{}</code>", escape(&trace.pairs[*p].cgi_path)))
        .collect();
    format!(
        "<section class=\"account\">\n<h3>{}</h3>\n<p>APIs: {}</p>\n{}\n</section>\n",
        escape(name),
        apis.join(", "),
        timeline.svg().into_string()
    )
}

/// A clear attempt at its decision time, with a tooltip; a 48006 answer is
/// dashed.
fn mark(c: &Attempt, policy: &str, band: Band, trace: &Trace) -> Mark {
    let scope = match &c.target {
        ClearTarget::Full => "full clear".to_string(),
        ClearTarget::Api { cgi_path } => format!("clear of {cgi_path}"),
    };
    let answer = c
        .errcode
        .map_or(String::new(), |e| format!(", answered {e}"));
    let local = c.time.with_timezone(&trace.timezone);
    Mark {
        at: c.time,
        class: format!(
            "clear {policy}{}",
            if c.errcode.is_some() { " refused" } else { "" }
        ),
        title: format!(
            "{policy}: {scope}{answer} at {}",
            local.format("%Y-%m-%d %H:%M:%S")
        ),
        band,
    }
}

/// The page's own rules; the timeline's are [`timeline::STYLE`].
const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\n\
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}\n\
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}\n\
tr.total td{font-weight:bold}tbody tr:nth-child(4n+1) td{border-top:1px solid #bbb}\n";

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
fn share(trace: &Trace, pairs: &[usize], tl: &Timeline) -> Vec<f64> {
    let (bucket, buckets) = (tl.bucket, tl.buckets());
    let day_starts = tl.day_starts();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            escape(r#"/a<b>&"c'"#),
            "/a&lt;b&gt;&amp;&quot;c&#39;".to_string()
        );
    }
}
