//! `GET /ui/`: the fleet at a glance. A summary of the month (accounts
//! watched, locked now, clears spent against the budget, episodes and
//! locked minutes), the health of the ledger, the sources and the account
//! sets, then the accounts, locked ones first, filtered and a hundred a page.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::layout::{self, account_href};
use super::{OverviewQuery, PAGE_SIZE};
use crate::calendar;
use crate::dispatcher::Runtime;
use crate::read_model::{self, AccountPage, AccountQuery, AccountStatus, StateFilter};
use crate::sets::refresh::SetHealth;

/// The filters offered, with their `?state=` values.
const STATES: [(StateFilter, &str); 5] = [
    (StateFilter::All, "all"),
    (StateFilter::Locked, "locked"),
    (StateFilter::Exhausted, "exhausted"),
    (StateFilter::Disabled, "disabled"),
    (StateFilter::DryRun, "dry_run"),
];

pub(super) fn render(
    rt: &Runtime,
    sources: &BTreeMap<String, Option<String>>,
    sets: &BTreeMap<String, SetHealth>,
    query: &OverviewQuery,
) -> anyhow::Result<Markup> {
    let now = rt.clearer.clock.now();
    let page = query.page.unwrap_or(1).max(1);
    let q = query.q.clone().filter(|q| !q.trim().is_empty());
    let listing = read_model::list_accounts(
        rt.clearer.store.as_ref(),
        &rt.config,
        &AccountQuery {
            state: query.state,
            q: q.clone(),
            offset: (page - 1) * PAGE_SIZE,
            limit: Some(PAGE_SIZE),
            locked_first: true,
        },
        now,
    )?;
    let month = calendar::month_label(rt.config.daemon.timezone, now);
    let content = html! {
        h1 { "quotawatch: " (month) }
        (summary(rt, &listing))
        (health(rt, sources, sets))
        h2 { "Accounts" }
        (filter(query.state, q.as_deref()))
        (accounts(rt, &listing))
        (pages(query.state, q.as_deref(), page, listing.total))
    };
    Ok(layout::page("quotawatch status", content))
}

fn summary(rt: &Runtime, listing: &AccountPage) -> Markup {
    let accounts = &rt.config.accounts;
    let flagged = &listing.fleet.flagged;
    let watched: std::collections::HashSet<&str> =
        accounts.values().map(|a| a.appid.as_str()).collect();
    let locked = flagged
        .iter()
        .filter(|f| f.locked && watched.contains(f.appid.as_str()))
        .count();
    let budget: u64 = accounts
        .values()
        .map(|a| u64::from(a.policy.monthly_cap))
        .sum();
    let fleet = &listing.fleet;
    let figures = [
        ("Accounts watched", accounts.len().to_string()),
        ("Locked now", locked.to_string()),
        (
            "Clears spent this month",
            format!("{} of {budget}", fleet.clears),
        ),
        ("Episodes this month", fleet.episodes.to_string()),
        (
            "Minutes locked this month",
            (fleet.locked_seconds / 60).to_string(),
        ),
    ];
    html! {
        dl.summary id="summary" {
            @for (label, value) in figures {
                div { dt { (label) } dd { (value) } }
            }
        }
    }
}

/// The ledger, each source, and each account set with its members (a set
/// whose list fails keeps its last good one: the row says how many).
fn health(
    rt: &Runtime,
    sources: &BTreeMap<String, Option<String>>,
    sets: &BTreeMap<String, SetHealth>,
) -> Markup {
    let ledger = rt.clearer.health.unreachable();
    html! {
        h2 { "Health" }
        table id="health" {
            thead { tr { th { "part" } th { "name" } th { "state" } } }
            tbody {
                tr { td { "ledger" } td { (ledger_name(rt)) } (state_cell(ledger.as_deref())) }
                @for (name, error) in sources {
                    tr { td { "source" } td { (name) } (state_cell(error.as_deref())) }
                }
                @if sources.is_empty() {
                    tr { td { "source" } td.muted colspan="2" { "none reporting" } }
                }
                @for (name, set) in sets {
                    tr {
                        td { "account set" } td { (name) }
                        @match &set.error {
                            None => td.ok { "ok, " (set.members) " members" },
                            Some(e) => td.bad { "error: " (e) " (watching the last good list: " (set.members) " members)" },
                        }
                    }
                }
                @if sets.is_empty() {
                    tr { td { "account set" } td.muted colspan="2" { "none configured" } }
                }
            }
        }
    }
}

fn ledger_name(rt: &Runtime) -> &'static str {
    match rt.config.daemon.state {
        crate::store::StateLocation::Sqlite(_) => "SQLite",
        crate::store::StateLocation::Postgres(_) => "PostgreSQL",
    }
}

fn state_cell(error: Option<&str>) -> Markup {
    html! {
        @match error {
            None => td.ok { "ok" },
            Some(e) => td.bad { "error: " (e) },
        }
    }
}

fn filter(state: StateFilter, q: Option<&str>) -> Markup {
    html! {
        form.filter method="get" action="/ui/" {
            label { "State " select name="state" {
                @for (s, value) in STATES {
                    option value=(value) selected[s == state] { (value) }
                }
            } }
            " "
            label { "Name or appid " input type="search" name="q" value=(q.unwrap_or("")); }
            " "
            button type="submit" { "Filter" }
        }
    }
}

fn accounts(rt: &Runtime, listing: &AccountPage) -> Markup {
    let tz = rt.config.daemon.timezone;
    html! {
        p.muted { (listing.total) " accounts match." }
        table id="accounts" {
            thead { tr {
                th { "account" } th { "appid" } th { "budget used" } th { "left" } th { "today" }
                th { "cooldown until" } th { "episodes" } th { "locked min" } th { "last clear" } th { "flags" }
            } }
            tbody {
                @for a in &listing.accounts {
                    tr.locked[a.locked] {
                        td { a href=(account_href(&a.account)) { (a.account) } }
                        td { code { (a.appid) } }
                        td.n { (a.used) " / " (a.cap) }
                        td.n { (a.left) }
                        td.n { (a.used_today) " / " (a.daily_max) }
                        td { (layout::opt_time(tz, a.cooldown_until)) }
                        td.n { (a.episodes) }
                        td.n { (a.locked_minutes) }
                        td { (layout::opt_time(tz, a.last_clear_at)) }
                        td { (flags(a)) }
                    }
                }
            }
        }
    }
}

/// The account's flags as badges; a disable shows its reason on hover.
pub(super) fn flags(a: &AccountStatus) -> Markup {
    html! {
        @if a.locked { span.flag.locked { "locked" } }
        @if a.exhausted { span.flag.exhausted { "exhausted" } }
        @if let Some(why) = &a.disabled { span.flag.disabled title=(why) { "disabled" } }
        @if a.dry_run { span.flag.dry_run { "dry run" } }
        @if a.in_flight { span.flag.in_flight { "clearing" } }
    }
}

fn pages(state: StateFilter, q: Option<&str>, page: usize, total: usize) -> Markup {
    let last = total.div_ceil(PAGE_SIZE).max(1);
    let state = STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map_or("all", |(_, v)| v);
    let href = |p: usize| {
        let mut href = format!("/ui/?state={state}&page={p}");
        if let Some(q) = q {
            href.push_str(&format!("&q={}", urlencoding::encode(q)));
        }
        href
    };
    html! {
        p.pages {
            @if page > 1 { a rel="prev" href=(href(page - 1)) { "← previous" } }
            span { "page " (page) " of " (last) }
            @if page < last { a rel="next" href=(href(page + 1)) { "next →" } }
        }
    }
}
