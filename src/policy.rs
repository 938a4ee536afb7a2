//! The pure decision rules: may quotawatch spend one clear on this account now?
//!
//! [`decide`] is a function of the account's settings, a ledger [`Snapshot`], the
//! evidence gathered for the account and `now`. It reads no clock and does no I/O,
//! so every rule is a row in a table-driven test. It does not know where signals
//! come from (see [`crate::signal`]) or how budget is reserved (see
//! [`crate::clearer`], which runs it inside the ledger's lock). Pacing's own
//! arithmetic is [`crate::pacing`]'s; here it is one rule in the order.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::calendar;
use crate::pacing;

/// What was (or would have been) cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum ClearTarget {
    /// Every daily counter of the account (`clear_quota`, 10 a month).
    Full,
    /// One API's counter (`openapi/quota/clear`, 50 a month).
    Api { cgi_path: String },
}

/// As the log says it: `full`, or `api /cgi-bin/...`.
impl std::fmt::Display for ClearTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClearTarget::Full => f.write_str("full"),
            ClearTarget::Api { cgi_path } => write!(f, "api {cgi_path}"),
        }
    }
}

/// What to try first when a signal names one exhausted API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prefer {
    /// `clear_quota`: resets every counter of the account (10 a month).
    Full,
    /// `openapi/quota/clear` for the one API first (50 a month), then full.
    Api,
}

/// The `[policy]` keys, after defaults and per-account overrides are applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySettings {
    /// Clears per month quotawatch may spend (1..=10); the rest stay for people.
    pub monthly_cap: u32,
    /// Minimum time between two clears of one account.
    #[serde(with = "humantime_serde_compat")]
    pub cooldown: Duration,
    /// Clears per account per calendar day.
    pub daily_max: u32,
    /// No clear this close before the daily reset: the quota resets anyway.
    #[serde(with = "humantime_serde_compat")]
    pub reset_guard: Duration,
    /// Evidence events needed within `window`.
    pub min_events: u32,
    /// The evidence window.
    #[serde(with = "humantime_serde_compat")]
    pub window: Duration,
    /// Alert when this many clears or fewer remain this month.
    pub budget_low: u32,
    /// Full clear, or single-API clear first.
    pub prefer: Prefer,
    /// Single-API clears per month quotawatch may spend (1..=50).
    pub api_monthly_cap: u32,
    /// Decide and notify, never call WeChat.
    pub dry_run: bool,
    /// Spend the month's clears where they buy the most time back (see
    /// [`crate::pacing`]), not on the first exhaustions.
    pub pacing: bool,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            monthly_cap: 8,
            cooldown: Duration::from_secs(3600),
            daily_max: 2,
            reset_guard: Duration::from_secs(20 * 60),
            min_events: 1,
            window: Duration::from_secs(5 * 60),
            budget_low: 2,
            prefer: Prefer::Full,
            api_monthly_cap: 40,
            dry_run: false,
            pacing: true,
        }
    }
}

/// Serialises durations as humantime strings ("1h 30m") for `check` and JSON.
mod humantime_serde_compat {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// What the ledger knows about one account, read under its lock.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Full clears this month that count: `ok`, `ambiguous` and in flight.
    pub month_used: u32,
    /// Full clears today that count.
    pub day_used: u32,
    /// Single-API clears this month that count.
    pub api_month_used: u32,
    /// `openapi/quota/clear` answered 48006 this month: its own budget (50) is
    /// spent upstream. Only single-API clears stop; full clears go on.
    pub api_exhausted: bool,
    /// Start of the latest attempt that counts, for the cooldown.
    pub last_clear_at: Option<DateTime<Utc>>,
    /// An attempt has an intent row but no outcome yet.
    pub in_flight: bool,
    /// WeChat answered 48006 this month.
    pub exhausted: bool,
    /// A configuration error disabled the account (until its config changes).
    pub disabled: Option<String>,
    /// The part of the evidence under idempotency keys that an attempt which
    /// counts already acted on within `window` (durable deduplication, shared
    /// by every replica): not evidence again.
    pub seen_evidence: u32,
    /// Pacing's memory of the account ([`crate::pacing::Pace`] as the
    /// ledger keeps it), for the policy to weigh.
    #[serde(skip)]
    pub pacing: Option<String>,
}

/// Why no clear happens. Names are the SPEC's and appear in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Cooldown,
    MonthlyCap,
    DailyMax,
    ResetGuard,
    InsufficientEvidence,
    DryRun,
    ExhaustedUpstream,
    AccountDisabled,
    UnknownAccount,
    Duplicate,
    /// Pacing: this clear would buy back less than the budget is saved for.
    Pacing,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cooldown => "cooldown",
            Self::MonthlyCap => "monthly_cap",
            Self::DailyMax => "daily_max",
            Self::ResetGuard => "reset_guard",
            Self::InsufficientEvidence => "insufficient_evidence",
            Self::DryRun => "dry_run",
            Self::ExhaustedUpstream => "exhausted_upstream",
            Self::AccountDisabled => "account_disabled",
            Self::UnknownAccount => "unknown_account",
            Self::Duplicate => "duplicate",
            Self::Pacing => "pacing",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Clear,
    Skip(SkipReason),
}

/// Everything [`decide`] looks at, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub settings: &'a PolicySettings,
    pub snapshot: &'a Snapshot,
    /// Evidence events for the account within `settings.window`.
    pub evidence: u32,
    /// An operator asked (`quotawatch clear`, the API): no evidence needed.
    pub manual: bool,
    /// `--force`: skip cooldown, daily_max and reset_guard; never the monthly cap.
    pub force: bool,
    /// `--dry-run` on a manual request, on top of the policy's own `dry_run`.
    pub dry_run: bool,
    /// A single-API clear (`prefer = "api"`): its own budget (`api_monthly_cap`),
    /// and the cooldown and daily_max that guard the full budget do not apply.
    pub api: bool,
    /// What pacing knows, when the request comes from evidence and
    /// `policy.pacing` is on: weighed after the timing rules.
    pub pacing: Option<&'a pacing::Reading>,
    pub timezone: Tz,
    pub now: DateTime<Utc>,
}

/// The rules, in the order an operator reads a refusal: the account's state
/// first, then the budget, then timing, then pacing (a refusal names the
/// first rule that applies, so inside a cooldown it reads `cooldown`), and
/// dry-run last so that a dry run reports what would really have happened.
pub fn decide(input: &Input<'_>) -> Decision {
    use SkipReason::*;
    let s = input.settings;
    let snap = input.snapshot;
    if snap.disabled.is_some() {
        return Decision::Skip(AccountDisabled);
    }
    if snap.exhausted {
        return Decision::Skip(ExhaustedUpstream);
    }
    let (used, cap) = match input.api {
        true => (snap.api_month_used, s.api_monthly_cap),
        false => (snap.month_used, s.monthly_cap),
    };
    if used >= cap || (input.api && snap.api_exhausted) {
        return Decision::Skip(MonthlyCap);
    }
    if snap.in_flight {
        return Decision::Skip(Duplicate);
    }
    if !input.manual {
        let fresh = input.evidence.saturating_sub(snap.seen_evidence);
        if fresh < s.min_events {
            // Enough evidence, but some of it was acted on already.
            return Decision::Skip(match input.evidence >= s.min_events {
                true => Duplicate,
                false => InsufficientEvidence,
            });
        }
    }
    if !input.force {
        if let Some(reason) = timing_rule(input) {
            return Decision::Skip(reason);
        }
    }
    if let Some(reading) = input.pacing.filter(|_| !input.manual) {
        let budget = s.monthly_cap.saturating_sub(snap.month_used);
        let today = s.daily_max.saturating_sub(snap.day_used);
        if !pacing::spend(reading, budget, today, input.now, input.timezone) {
            return Decision::Skip(Pacing);
        }
    }
    if s.dry_run || input.dry_run {
        return Decision::Skip(DryRun);
    }
    Decision::Clear
}

/// The policy's answer under the ledger's lock: clear this target, or why
/// not and when a clear could next be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clear(ClearTarget),
    Skip {
        reason: SkipReason,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// [`decide`] for `target`, with the instant a refusal ends.
pub fn verdict(input: &Input<'_>, target: ClearTarget) -> Verdict {
    match decide(input) {
        Decision::Clear => Verdict::Clear(target),
        Decision::Skip(reason) => Verdict::Skip {
            reason,
            retry_at: next_possible_clear(input, reason),
        },
    }
}

/// `prefer = "api"` with a named API and single-API budget left (as the
/// snapshot under the lock shows it): that API first; otherwise a full clear.
pub fn choose_target(
    settings: &PolicySettings,
    cgi_path: Option<&str>,
    snapshot: &Snapshot,
) -> ClearTarget {
    match cgi_path {
        Some(cgi_path)
            if settings.prefer == Prefer::Api
                && !snapshot.api_exhausted
                && snapshot.api_month_used < settings.api_monthly_cap =>
        {
            ClearTarget::Api {
                cgi_path: cgi_path.to_string(),
            }
        }
        _ => ClearTarget::Full,
    }
}

fn timing_rule(input: &Input<'_>) -> Option<SkipReason> {
    let s = input.settings;
    if !input.api {
        if let Some(end) = cooldown_end(s, input.snapshot) {
            if input.now < end {
                return Some(SkipReason::Cooldown);
            }
        }
        if input.snapshot.day_used >= s.daily_max {
            return Some(SkipReason::DailyMax);
        }
    }
    let reset = calendar::day(input.timezone, input.now).end;
    if reset - input.now < chrono_duration(s.reset_guard) {
        return Some(SkipReason::ResetGuard);
    }
    None
}

/// When the cooldown after the latest counted clear ends, if one applies.
pub fn cooldown_end(settings: &PolicySettings, snapshot: &Snapshot) -> Option<DateTime<Utc>> {
    snapshot.last_clear_at.map(|last| {
        last.checked_add_signed(chrono_duration(settings.cooldown))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    })
}

/// Whether the dispatcher should wait instead of asking: the earliest instant a
/// clear could be decided for a timing skip, for "next possible clear" messages.
pub fn next_possible_clear(input: &Input<'_>, reason: SkipReason) -> Option<DateTime<Utc>> {
    match reason {
        SkipReason::Cooldown => cooldown_end(input.settings, input.snapshot),
        SkipReason::DailyMax | SkipReason::ResetGuard => {
            Some(calendar::day(input.timezone, input.now).end)
        }
        SkipReason::MonthlyCap | SkipReason::ExhaustedUpstream => {
            Some(calendar::month(input.timezone, input.now).end)
        }
        _ => None,
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SkipReason::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// 10:00 CST on 28 November 2026: far from any boundary.
    const NOON: &str = "2026-11-28T02:00:00Z";
    /// 10:00 CST on 3 November 2026: most of the month to come.
    const EARLY: &str = "2026-11-03T02:00:00Z";

    /// Pacing's reading when three days of episodes were each worth more
    /// than a clear now: early in the month it holds the clear.
    fn holding() -> Option<pacing::Reading> {
        Some(pacing::Reading {
            stale: false,
            lasts: f64::INFINITY,
            past: vec![1000.0, 1000.0, 1000.0],
            before: None,
        })
    }

    struct Case {
        name: &'static str,
        settings: PolicySettings,
        snapshot: Snapshot,
        evidence: u32,
        manual: bool,
        force: bool,
        dry_run: bool,
        api: bool,
        pacing: Option<pacing::Reading>,
        now: &'static str,
        want: Decision,
    }

    impl Default for Case {
        fn default() -> Self {
            Self {
                name: "",
                settings: PolicySettings::default(),
                snapshot: Snapshot::default(),
                evidence: 1,
                manual: false,
                force: false,
                dry_run: false,
                api: false,
                pacing: None,
                now: NOON,
                want: Decision::Clear,
            }
        }
    }

    fn run(case: &Case) -> Decision {
        decide(&Input {
            settings: &case.settings,
            snapshot: &case.snapshot,
            evidence: case.evidence,
            manual: case.manual,
            force: case.force,
            dry_run: case.dry_run,
            api: case.api,
            pacing: case.pacing.as_ref(),
            timezone: chrono_tz::Asia::Shanghai,
            now: utc(case.now),
        })
    }

    fn cases() -> Vec<Case> {
        let snap = Snapshot::default;
        vec![
            Case {
                name: "fresh account clears",
                ..Case::default()
            },
            Case {
                name: "disabled account",
                snapshot: Snapshot {
                    disabled: Some("40164".into()),
                    ..snap()
                },
                want: Decision::Skip(AccountDisabled),
                ..Case::default()
            },
            Case {
                name: "exhausted upstream beats everything but disabled",
                snapshot: Snapshot {
                    exhausted: true,
                    month_used: 9,
                    ..snap()
                },
                want: Decision::Skip(ExhaustedUpstream),
                ..Case::default()
            },
            Case {
                name: "monthly cap reached by ambiguous attempts",
                snapshot: Snapshot {
                    month_used: 8,
                    ..snap()
                },
                want: Decision::Skip(MonthlyCap),
                ..Case::default()
            },
            Case {
                name: "one below the cap still clears",
                snapshot: Snapshot {
                    month_used: 7,
                    ..snap()
                },
                ..Case::default()
            },
            Case {
                name: "force never skips the monthly cap",
                snapshot: Snapshot {
                    month_used: 8,
                    ..snap()
                },
                manual: true,
                force: true,
                want: Decision::Skip(MonthlyCap),
                ..Case::default()
            },
            Case {
                name: "lower per-account cap",
                settings: PolicySettings {
                    monthly_cap: 3,
                    ..PolicySettings::default()
                },
                snapshot: Snapshot {
                    month_used: 3,
                    ..snap()
                },
                want: Decision::Skip(MonthlyCap),
                ..Case::default()
            },
            Case {
                name: "a clear in flight is a duplicate",
                snapshot: Snapshot {
                    in_flight: true,
                    ..snap()
                },
                manual: true,
                force: true,
                want: Decision::Skip(Duplicate),
                ..Case::default()
            },
            Case {
                name: "too little evidence",
                settings: PolicySettings {
                    min_events: 3,
                    ..PolicySettings::default()
                },
                evidence: 2,
                want: Decision::Skip(InsufficientEvidence),
                ..Case::default()
            },
            Case {
                name: "exactly enough evidence",
                settings: PolicySettings {
                    min_events: 3,
                    ..PolicySettings::default()
                },
                evidence: 3,
                ..Case::default()
            },
            Case {
                name: "evidence under keys acted on is a duplicate",
                snapshot: Snapshot {
                    seen_evidence: 1,
                    ..snap()
                },
                evidence: 1,
                want: Decision::Skip(Duplicate),
                ..Case::default()
            },
            Case {
                name: "fresh evidence beside a seen key still clears",
                settings: PolicySettings {
                    min_events: 2,
                    ..PolicySettings::default()
                },
                snapshot: Snapshot {
                    seen_evidence: 1,
                    ..snap()
                },
                evidence: 3,
                ..Case::default()
            },
            Case {
                name: "too little fresh evidence beside a seen key",
                settings: PolicySettings {
                    min_events: 3,
                    ..PolicySettings::default()
                },
                snapshot: Snapshot {
                    seen_evidence: 1,
                    ..snap()
                },
                evidence: 2,
                want: Decision::Skip(InsufficientEvidence),
                ..Case::default()
            },
            Case {
                name: "a manual clear ignores seen keys",
                snapshot: Snapshot {
                    seen_evidence: 5,
                    ..snap()
                },
                evidence: 0,
                manual: true,
                ..Case::default()
            },
            Case {
                name: "manual needs no evidence",
                evidence: 0,
                manual: true,
                ..Case::default()
            },
            Case {
                name: "inside the cooldown",
                snapshot: Snapshot {
                    last_clear_at: Some(utc("2026-11-28T01:00:01Z")),
                    month_used: 1,
                    day_used: 1,
                    ..snap()
                },
                want: Decision::Skip(Cooldown),
                ..Case::default()
            },
            Case {
                name: "cooldown ending exactly now",
                snapshot: Snapshot {
                    last_clear_at: Some(utc("2026-11-28T01:00:00Z")),
                    month_used: 1,
                    day_used: 1,
                    ..snap()
                },
                ..Case::default()
            },
            Case {
                name: "force skips the cooldown",
                snapshot: Snapshot {
                    last_clear_at: Some(utc("2026-11-28T01:59:00Z")),
                    month_used: 1,
                    day_used: 1,
                    ..snap()
                },
                manual: true,
                force: true,
                ..Case::default()
            },
            Case {
                name: "daily max reached",
                snapshot: Snapshot {
                    last_clear_at: Some(utc("2026-11-27T20:00:00Z")),
                    month_used: 2,
                    day_used: 2,
                    ..snap()
                },
                want: Decision::Skip(DailyMax),
                ..Case::default()
            },
            Case {
                name: "force skips daily max",
                snapshot: Snapshot {
                    month_used: 2,
                    day_used: 2,
                    ..snap()
                },
                manual: true,
                force: true,
                ..Case::default()
            },
            Case {
                name: "reset guard just before Beijing midnight",
                now: "2026-11-28T15:59:00Z",
                want: Decision::Skip(ResetGuard),
                ..Case::default()
            },
            Case {
                name: "reset guard boundary: exactly 20m before midnight clears",
                now: "2026-11-28T15:40:00Z",
                ..Case::default()
            },
            Case {
                name: "reset guard one second inside",
                now: "2026-11-28T15:40:01Z",
                want: Decision::Skip(ResetGuard),
                ..Case::default()
            },
            Case {
                name: "just after Beijing midnight is a new day",
                now: "2026-11-28T16:01:00Z",
                snapshot: Snapshot {
                    day_used: 0,
                    month_used: 2,
                    last_clear_at: Some(utc("2026-11-28T14:00:00Z")),
                    ..snap()
                },
                ..Case::default()
            },
            Case {
                name: "force skips the reset guard",
                now: "2026-11-28T15:59:00Z",
                manual: true,
                force: true,
                ..Case::default()
            },
            Case {
                name: "policy dry run",
                settings: PolicySettings {
                    dry_run: true,
                    ..PolicySettings::default()
                },
                want: Decision::Skip(DryRun),
                ..Case::default()
            },
            Case {
                name: "dry run reports the real refusal first",
                settings: PolicySettings {
                    dry_run: true,
                    ..PolicySettings::default()
                },
                snapshot: Snapshot {
                    month_used: 8,
                    ..snap()
                },
                want: Decision::Skip(MonthlyCap),
                ..Case::default()
            },
            Case {
                name: "manual --dry-run",
                manual: true,
                dry_run: true,
                want: Decision::Skip(DryRun),
                ..Case::default()
            },
            Case {
                name: "single-API clear ignores the full cooldown and cap",
                snapshot: Snapshot {
                    month_used: 8,
                    day_used: 2,
                    last_clear_at: Some(utc("2026-11-28T01:59:00Z")),
                    ..snap()
                },
                api: true,
                ..Case::default()
            },
            Case {
                name: "single-API budget reached",
                snapshot: Snapshot {
                    api_month_used: 40,
                    ..snap()
                },
                api: true,
                want: Decision::Skip(MonthlyCap),
                ..Case::default()
            },
            Case {
                name: "single-API clear keeps the reset guard",
                now: "2026-11-28T15:59:00Z",
                api: true,
                want: Decision::Skip(ResetGuard),
                ..Case::default()
            },
            Case {
                name: "pacing holds a clear the month's better chances outnumber",
                pacing: holding(),
                now: EARLY,
                want: Decision::Skip(Pacing),
                ..Case::default()
            },
            Case {
                name: "pacing spends the month's first episode",
                pacing: Some(pacing::Reading {
                    past: Vec::new(),
                    ..holding().unwrap()
                }),
                now: EARLY,
                ..Case::default()
            },
            Case {
                name: "pacing never spends on a late signal after the reset",
                pacing: Some(pacing::Reading {
                    stale: true,
                    past: Vec::new(),
                    ..holding().unwrap()
                }),
                want: Decision::Skip(Pacing),
                ..Case::default()
            },
            Case {
                name: "inside the cooldown the refusal reads cooldown, not pacing",
                snapshot: Snapshot {
                    last_clear_at: Some(utc("2026-11-03T01:30:00Z")),
                    month_used: 1,
                    day_used: 1,
                    ..snap()
                },
                pacing: holding(),
                now: EARLY,
                want: Decision::Skip(Cooldown),
                ..Case::default()
            },
            Case {
                name: "daily max comes before pacing",
                snapshot: Snapshot {
                    month_used: 2,
                    day_used: 2,
                    ..snap()
                },
                pacing: holding(),
                now: EARLY,
                want: Decision::Skip(DailyMax),
                ..Case::default()
            },
            Case {
                name: "the reset guard comes before pacing",
                pacing: holding(),
                now: "2026-11-03T15:59:00Z",
                want: Decision::Skip(ResetGuard),
                ..Case::default()
            },
            Case {
                name: "the monthly cap comes before pacing",
                snapshot: Snapshot {
                    month_used: 8,
                    ..snap()
                },
                pacing: holding(),
                now: EARLY,
                want: Decision::Skip(MonthlyCap),
                ..Case::default()
            },
            Case {
                name: "pacing counts the budget the ledger has left",
                settings: PolicySettings {
                    monthly_cap: 10,
                    ..PolicySettings::default()
                },
                pacing: Some(pacing::Reading {
                    past: vec![1000.0],
                    ..holding().unwrap()
                }),
                now: EARLY,
                ..Case::default()
            },
            Case {
                name: "a dry run reports pacing's hold",
                settings: PolicySettings {
                    dry_run: true,
                    ..PolicySettings::default()
                },
                pacing: holding(),
                now: EARLY,
                want: Decision::Skip(Pacing),
                ..Case::default()
            },
            Case {
                name: "a manual clear is not paced",
                manual: true,
                pacing: holding(),
                now: EARLY,
                ..Case::default()
            },
        ]
    }

    #[test]
    fn decision_table() {
        let mut failures = Vec::new();
        for case in cases() {
            let got = run(&case);
            if got != case.want {
                failures.push(format!(
                    "{}: want {:?}, got {:?}",
                    case.name, case.want, got
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn month_rollover_frees_the_cap() {
        // The snapshot is computed per Beijing month by the ledger; here the caller
        // passes the new month's (empty) snapshot at 00:01 on 1 December CST, which
        // is still 30 November in UTC.
        let settings = PolicySettings::default();
        let full = Snapshot {
            month_used: 8,
            ..Snapshot::default()
        };
        let tz = chrono_tz::Asia::Shanghai;
        let before = utc("2026-11-30T15:59:00Z");
        let after = utc("2026-11-30T16:01:00Z");
        assert_ne!(calendar::month(tz, before), calendar::month(tz, after));
        let input = |snapshot, now| Input {
            settings: &settings,
            snapshot,
            evidence: 1,
            manual: true,
            force: true,
            dry_run: false,
            api: false,
            pacing: None,
            timezone: tz,
            now,
        };
        assert_eq!(decide(&input(&full, before)), Decision::Skip(MonthlyCap));
        assert_eq!(decide(&input(&Snapshot::default(), after)), Decision::Clear);
    }

    #[test]
    fn absurd_durations_do_not_overflow() {
        let settings = PolicySettings {
            cooldown: Duration::from_secs(u64::MAX),
            ..PolicySettings::default()
        };
        let snapshot = Snapshot {
            last_clear_at: Some(utc(NOON)),
            ..Snapshot::default()
        };
        assert_eq!(
            cooldown_end(&settings, &snapshot),
            Some(DateTime::<Utc>::MAX_UTC)
        );
    }

    #[test]
    fn next_possible_clear_after_cooldown() {
        let settings = PolicySettings::default();
        let snapshot = Snapshot {
            last_clear_at: Some(utc("2026-11-28T01:30:00Z")),
            ..Snapshot::default()
        };
        let input = Input {
            settings: &settings,
            snapshot: &snapshot,
            evidence: 1,
            manual: false,
            force: false,
            dry_run: false,
            api: false,
            pacing: None,
            timezone: chrono_tz::Asia::Shanghai,
            now: utc(NOON),
        };
        assert_eq!(decide(&input), Decision::Skip(Cooldown));
        assert_eq!(
            next_possible_clear(&input, Cooldown),
            Some(utc("2026-11-28T02:30:00Z"))
        );
        assert_eq!(
            next_possible_clear(&input, ResetGuard),
            Some(utc("2026-11-28T16:00:00Z"))
        );
    }
}
