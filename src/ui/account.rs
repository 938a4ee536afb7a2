//! `GET /ui/accounts/NAME`: one account's month. Its figures, the month as a
//! [`Timeline`] (episodes shaded, each clear marked by its outcome, refusals
//! on the strip below with their reasons, the budget used as it went), the
//! month's attempts, episodes and refusals as tables, then the twelve months
//! before in figures. It reads this account's rows only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};

use super::layout::{self, opt_time, time};
use crate::calendar::{self, Period};
use crate::dispatcher::Runtime;
use crate::event::ClearTarget;
use crate::read_model::{self, AccountStatus};
use crate::settings::Account;
use crate::store::{AttemptRecord, EpisodeRecord, HistoryFilter};
use crate::timeline::{Band, Line, Mark, Timeline};

/// How far back "the months before" go.
const MONTHS_BEFORE: usize = 12;

/// Outcomes that use a clear of the month's budget (SPEC section 2).
fn counts(outcome: &str) -> bool {
    matches!(outcome, "ok" | "ambiguous" | "pending")
}

pub(super) fn render(rt: &Runtime, account: &Account) -> anyhow::Result<Markup> {
    let store = rt.clearer.store.as_ref();
    let tz = rt.config.daemon.timezone;
    let now = rt.clearer.clock.now();
    let status = read_model::account_status(store, &rt.config, account, now)?;
    let month = calendar::month(tz, now);
    let filter = |p: Period| HistoryFilter {
        appid: Some(account.appid.clone()),
        since: Some(p.start),
        until: Some(p.end),
        limit: None,
    };
    let attempts = store.history(&filter(month))?;
    let episodes = store.episodes(&filter(month), now)?;
    let before = months_before(tz, month, MONTHS_BEFORE);
    let earlier = Period {
        start: before.last().map_or(month.start, |p| p.start),
        end: month.start,
    };
    let old_attempts = store.history(&filter(earlier))?;
    let old_episodes = store.episodes(&filter(earlier), now)?;

    let tl = timeline(month, tz, now, &status, &attempts, &episodes);
    let content = html! {
        h1 { (account.name) " " code.muted { (account.appid) } }
        (figures(tz, &status))
        h2 { "This month (" (status.month) ")" }
        (key())
        div id="timeline" { (tl.svg()) }
        h2 { "Attempts" }
        (attempts_table(tz, &attempts))
        h2 { "Episodes and refused decisions" }
        (episodes_table(tz, now, &episodes))
        h2 { "The months before" }
        (months_table(tz, now, &before, &old_attempts, &old_episodes))
    };
    Ok(layout::page(
        &format!("quotawatch: {}", account.name),
        content,
    ))
}

fn figures(tz: Tz, s: &AccountStatus) -> Markup {
    let rows = [
        (
            "Budget used",
            format!("{} of {} ({} left)", s.used, s.cap, s.left),
        ),
        ("Today", format!("{} of {}", s.used_today, s.daily_max)),
        (
            "Single-API clears",
            format!("{} of {}", s.api_used, s.api_cap),
        ),
        ("Episodes", s.episodes.to_string()),
        ("Minutes locked", s.locked_minutes.to_string()),
        ("Last clear", opt_time(tz, s.last_clear_at)),
        ("Cooldown until", opt_time(tz, s.cooldown_until)),
    ];
    html! {
        p { "Kind: " (serde_json::to_value(s.kind).ok().and_then(|k| k.as_str().map(str::to_string)).unwrap_or_default()) " " (super::overview::flags(s)) }
        @if let Some(why) = &s.disabled { p.error { "Disabled: " (why) } }
        dl.summary id="figures" {
            @for (label, value) in rows { div { dt { (label) } dd { (value) } } }
        }
    }
}

fn key() -> Markup {
    html! {
        p.key {
            span.k-locked { "■ locked (episodes)" }
            span.k-ok { "│ clear ok" }
            span.k-failed { "┆ clear failed" }
            span.k-ambiguous { "┊ clear ambiguous" }
            span.k-refusal { "| refused (strip below)" }
            span { "line: clears used against the monthly cap (dashed)" }
        }
    }
}

/// The month drawn: what the page and `simulate --html` share.
fn timeline(
    month: Period,
    tz: Tz,
    now: DateTime<Utc>,
    status: &AccountStatus,
    attempts: &[AttemptRecord],
    episodes: &[EpisodeRecord],
) -> Timeline {
    let mut tl = Timeline::new(month.start, month.end, tz);
    tl.now = Some(now);
    let spans: Vec<_> = episodes
        .iter()
        .map(|e| (e.started_at, e.ended_at.unwrap_or(now).min(now)))
        .collect();
    tl.locked = tl.count_spans(&spans);
    // Budget as it went: full clears that count, up to each bucket's end.
    let mut spent: Vec<DateTime<Utc>> = attempts
        .iter()
        .filter(|a| matches!(a.target, ClearTarget::Full) && counts(&a.outcome))
        .map(|a| a.started_at)
        .collect();
    spent.sort();
    let cap = f64::from(status.cap.max(1));
    let values = (0..tl.buckets())
        .map(|b| {
            let end = tl.at(((b as u32 + 1) * tl.bucket).min(tl.minutes));
            spent.partition_point(|t| *t < end) as f64 / cap
        })
        .collect();
    tl.line = Some(Line {
        class: "budget",
        values,
        floor: 1.1,
        cap: 1.5,
    });
    tl.marks.extend(attempts.iter().map(|a| Mark {
        at: a.started_at,
        class: format!("clear {}", a.outcome),
        title: attempt_title(tz, a),
        band: Band::Chart,
    }));
    for e in episodes {
        tl.marks.extend(e.decisions.iter().map(|d| Mark {
            at: d.first_at,
            class: "refusal".into(),
            title: format!(
                "refused {}× for {} ({} – {})",
                d.count,
                d.reason,
                time(tz, d.first_at),
                time(tz, d.last_at)
            ),
            band: Band::Strip,
        }));
    }
    tl
}

fn scope(target: &ClearTarget) -> String {
    match target {
        ClearTarget::Full => "full clear".into(),
        ClearTarget::Api { cgi_path } => format!("clear of {cgi_path}"),
    }
}

fn attempt_title(tz: Tz, a: &AttemptRecord) -> String {
    let code = a.errcode.map(|c| format!(" {c}")).unwrap_or_default();
    let msg = a
        .errmsg
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!(
        "{} at {}: {}{code}{msg}",
        scope(&a.target),
        time(tz, a.started_at),
        a.outcome
    )
}

fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "ok",
        "failed" => "bad",
        "ambiguous" => "ambiguous",
        _ => "muted",
    }
}

fn attempts_table(tz: Tz, attempts: &[AttemptRecord]) -> Markup {
    html! {
        @if attempts.is_empty() { p.muted { "No attempts this month." } }
        @else {
            table id="attempts" {
                thead { tr {
                    th { "#" } th { "started" } th { "what" } th { "outcome" } th { "errcode" }
                    th { "errmsg" } th { "source" } th { "trigger" } th { "evidence" } th { "verified" }
                } }
                tbody {
                    @for a in attempts {
                        tr class=(format!("attempt-{}", a.outcome)) {
                            td.n { (a.id) }
                            td { (time(tz, a.started_at)) }
                            td { (scope(&a.target)) @if a.forced { " (forced)" } }
                            td class=(outcome_class(&a.outcome)) { (a.outcome) }
                            td.n { (a.errcode.map(|c| c.to_string()).unwrap_or_default()) }
                            td.errmsg { (a.errmsg.as_deref().unwrap_or("")) }
                            td { (a.source) }
                            td { (a.trigger) }
                            td.n { (a.evidence) }
                            td { (match a.verified { Some(true) => "yes", Some(false) => "no", None => "—" }) }
                        }
                    }
                }
            }
        }
    }
}

fn episodes_table(tz: Tz, now: DateTime<Utc>, episodes: &[EpisodeRecord]) -> Markup {
    html! {
        @if episodes.is_empty() { p.muted { "No lockout this month." } }
        @else {
            table id="episodes" {
                thead { tr {
                    th { "started" } th { "ended" } th { "ended by" } th { "locked min" } th { "refused decisions" }
                } }
                tbody {
                    @for e in episodes {
                        tr {
                            td { (time(tz, e.started_at)) }
                            td { (opt_time(tz, e.ended_at)) }
                            td { (e.ended_by.as_str()) }
                            td.n { (e.locked(now).num_minutes()) }
                            td.refusals {
                                @for d in &e.decisions {
                                    span.refusal { (d.reason) " ×" (d.count) " (" (time(tz, d.first_at)) ")" } " "
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `n` months before `month`, newest first.
fn months_before(tz: Tz, month: Period, n: usize) -> Vec<Period> {
    let mut out = Vec::with_capacity(n);
    let mut end = month.start;
    for _ in 0..n {
        let p = calendar::month(tz, end - chrono::Duration::seconds(1));
        end = p.start;
        out.push(p);
    }
    out
}

/// Per month: clears that counted, failed attempts, episodes, locked
/// minutes and refused decisions.
#[derive(Default)]
struct MonthFigures {
    clears: u32,
    failed: u32,
    episodes: u32,
    locked_minutes: i64,
    refused: u32,
}

fn months_table(
    tz: Tz,
    now: DateTime<Utc>,
    months: &[Period],
    attempts: &[AttemptRecord],
    episodes: &[EpisodeRecord],
) -> Markup {
    let label = |t: DateTime<Utc>| calendar::month_label(tz, t);
    let mut by: BTreeMap<String, MonthFigures> = BTreeMap::new();
    for a in attempts {
        let f = by.entry(label(a.started_at)).or_default();
        match a.outcome.as_str() {
            "failed" => f.failed += 1,
            o if counts(o) && matches!(a.target, ClearTarget::Full) => f.clears += 1,
            _ => {}
        }
    }
    for e in episodes {
        let f = by.entry(label(e.started_at)).or_default();
        f.episodes += 1;
        f.locked_minutes += e.locked(now).num_minutes();
        f.refused += e.decisions.iter().map(|d| d.count).sum::<u32>();
    }
    html! {
        table id="months" {
            thead { tr {
                th { "month" } th { "clears used" } th { "failed" } th { "episodes" } th { "locked min" } th { "refused" }
            } }
            tbody {
                @for p in months {
                    @let m = label(p.start);
                    @let f = by.remove(&m).unwrap_or_default();
                    tr {
                        td { (m) } td.n { (f.clears) } td.n { (f.failed) } td.n { (f.episodes) }
                        td.n { (f.locked_minutes) } td.n { (f.refused) }
                    }
                }
            }
        }
    }
}
