//! Lockout accounting (SPEC section 5): the episodes in which an account was
//! locked out, kept in the ledger beside the attempts.
//!
//! An episode opens at the first 45009 evidence while none is open and ends
//! at a clear that took effect or at the next daily reset (00:00 in the
//! account's timezone), whichever comes first. A row stores the reset that
//! ends it (`resets_at`), so no write is needed at midnight; a clear writes
//! `ended_at` in the same transaction as its outcome. Decisions that did not
//! clear are kept per episode and reason, with a count, not per signal.
//!
//! The rules live here once, for both ledgers: [`plan`] says what a note of
//! evidence does to the latest episode, and [`note`] carries it out through
//! the few statements an [`EpisodeTx`] gives.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{AccountKey, AttemptId, StoreError};
use crate::calendar;

/// The row id of an episode.
pub type EpisodeId = i64;

/// Evidence of a lockout for one account, as the daemon reports it: the
/// earliest and latest evidence of a batch, and the decisions taken on it
/// that did not clear.
#[derive(Debug, Clone, PartialEq)]
pub struct LockoutNote {
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// Skip reasons (`SkipReason::as_str`) with how many decisions gave each.
    pub decisions: Vec<(String, u32)>,
    /// Evidence this soon after a clear that took effect is a late report of
    /// failures before it (alerting delays), not a new lockout.
    pub grace: Duration,
}

impl LockoutNote {
    /// One piece of evidence at `at`, with the decision taken on it.
    pub fn at(at: DateTime<Utc>, reason: Option<&str>, grace: Duration) -> Self {
        Self {
            first_at: at,
            last_at: at,
            decisions: reason.map(|r| vec![(r.to_string(), 1)]).unwrap_or_default(),
            grace,
        }
    }

    /// Folds a later note for the same account into this one.
    pub fn merge(&mut self, other: LockoutNote) {
        self.first_at = self.first_at.min(other.first_at);
        self.last_at = self.last_at.max(other.last_at);
        for (reason, n) in other.decisions {
            match self.decisions.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, count)) => *count = count.saturating_add(n),
                None => self.decisions.push((reason, n)),
            }
        }
    }
}

/// How an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeEnd {
    /// Still locked out.
    Open,
    /// A clear took effect.
    Clear,
    /// The daily reset.
    Reset,
}

impl EpisodeEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Clear => "clear",
            Self::Reset => "reset",
        }
    }
}

/// Decisions of one reason in one episode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionCount {
    pub reason: String,
    pub count: u32,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// One episode as `status` and `history` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpisodeRecord {
    pub id: EpisodeId,
    pub account: String,
    pub appid: String,
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while it is open.
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: EpisodeEnd,
    /// The clear that ended it.
    pub attempt: Option<AttemptId>,
    pub decisions: Vec<DecisionCount>,
}

impl EpisodeRecord {
    /// Locked time up to `now`.
    pub fn locked(&self, now: DateTime<Utc>) -> chrono::Duration {
        (self.ended_at.unwrap_or(now).min(now) - self.started_at).max(chrono::Duration::zero())
    }
}

/// An episode as its row stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EpisodeRow {
    pub id: EpisodeId,
    pub account: String,
    pub appid: String,
    pub started_at: DateTime<Utc>,
    pub resets_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub attempt: Option<AttemptId>,
}

impl EpisodeRow {
    /// When it ends or ended, whatever ends it.
    fn end(&self) -> DateTime<Utc> {
        self.ended_at.unwrap_or(self.resets_at)
    }

    pub(crate) fn record(self, now: DateTime<Utc>, decisions: Vec<DecisionCount>) -> EpisodeRecord {
        let (ended_at, ended_by) = match self.ended_at {
            Some(at) => (Some(at), EpisodeEnd::Clear),
            None if self.resets_at <= now => (Some(self.resets_at), EpisodeEnd::Reset),
            None => (None, EpisodeEnd::Open),
        };
        EpisodeRecord {
            id: self.id,
            account: self.account,
            appid: self.appid,
            started_at: self.started_at,
            ended_at,
            ended_by,
            attempt: self.attempt,
            decisions,
        }
    }
}

/// What a note of evidence at `at` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// It belongs to this episode; `start` moves its start earlier (evidence
    /// recorded after a later decision opened it).
    Attach {
        id: EpisodeId,
        start: Option<DateTime<Utc>>,
    },
    /// A new episode, ended by the reset at `resets_at` unless a clear comes first.
    Open { resets_at: DateTime<Utc> },
    /// Evidence from a day before the latest episode's: too late to count.
    Ignore,
}

/// The rules of an episode's start, given the account's latest episode.
pub(crate) fn plan(
    latest: Option<&EpisodeRow>,
    at: DateTime<Utc>,
    tz: Tz,
    grace: Duration,
) -> Plan {
    let resets_at = calendar::day(tz, at).end;
    let Some(latest) = latest else {
        return Plan::Open { resets_at };
    };
    if at < latest.end() {
        if latest.resets_at != resets_at {
            return Plan::Ignore;
        }
        let start = (at < latest.started_at).then_some(at);
        return Plan::Attach {
            id: latest.id,
            start,
        };
    }
    if let Some(cleared) = latest.ended_at {
        if at < cleared + chrono::Duration::from_std(grace).unwrap_or_default() {
            return Plan::Attach {
                id: latest.id,
                start: None,
            };
        }
    }
    Plan::Open { resets_at }
}

/// The statements [`note`] needs, in a transaction that holds the account's
/// episodes against other writers.
pub(crate) trait EpisodeTx {
    fn latest_episode(&mut self, appid: &str) -> Result<Option<EpisodeRow>, StoreError>;
    fn open_episode(
        &mut self,
        account: &AccountKey<'_>,
        at: DateTime<Utc>,
        resets_at: DateTime<Utc>,
    ) -> Result<EpisodeId, StoreError>;
    fn move_episode_start(&mut self, id: EpisodeId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Adds `count` decisions of `reason` between `first` and `last`.
    fn add_decisions(
        &mut self,
        id: EpisodeId,
        reason: &str,
        count: u32,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// Records `note` for `account`: opens an episode or attaches to one, and
/// counts its decisions there.
pub(crate) fn note(
    tx: &mut dyn EpisodeTx,
    account: &AccountKey<'_>,
    note: &LockoutNote,
) -> Result<(), StoreError> {
    let latest = tx.latest_episode(account.appid)?;
    let id = match plan(latest.as_ref(), note.first_at, account.timezone, note.grace) {
        Plan::Ignore => return Ok(()),
        Plan::Attach { id, start } => {
            if let Some(at) = start {
                tx.move_episode_start(id, at)?;
            }
            id
        }
        Plan::Open { resets_at } => tx.open_episode(account, note.first_at, resets_at)?,
    };
    for (reason, count) in &note.decisions {
        tx.add_decisions(id, reason, *count, note.first_at, note.last_at)?;
    }
    Ok(())
}

/// Per account, for `/metrics`: whether it is locked out now, and the
/// locked time of every episode in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutTotal {
    pub appid: String,
    pub locked: bool,
    pub seconds: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn row(start: &str, ended: Option<&str>) -> EpisodeRow {
        EpisodeRow {
            id: 7,
            account: "shop".into(),
            appid: "wx1".into(),
            started_at: at(start),
            resets_at: calendar::day(chrono_tz::Asia::Shanghai, at(start)).end,
            ended_at: ended.map(at),
            attempt: ended.map(|_| 3),
        }
    }

    #[test]
    fn evidence_opens_attaches_or_is_ignored() {
        let tz = chrono_tz::Asia::Shanghai;
        let grace = Duration::from_secs(300);
        let midnight = at("2026-11-04T00:00:00+08:00");
        let attach = |start: Option<&str>| Plan::Attach {
            id: 7,
            start: start.map(at),
        };
        // (latest episode, evidence at, plan)
        let table: &[(Option<EpisodeRow>, &str, Plan)] = &[
            (
                None,
                "2026-11-03T10:00:00+08:00",
                Plan::Open {
                    resets_at: midnight,
                },
            ),
            // Open today: attach; earlier evidence moves the start.
            (
                Some(row("2026-11-03T10:00:00+08:00", None)),
                "2026-11-03T11:00:00+08:00",
                attach(None),
            ),
            (
                Some(row("2026-11-03T10:00:00+08:00", None)),
                "2026-11-03T09:59:00+08:00",
                attach(Some("2026-11-03T09:59:00+08:00")),
            ),
            // Open from yesterday: the reset ended it.
            (
                Some(row("2026-11-02T22:00:00+08:00", None)),
                "2026-11-03T00:00:30+08:00",
                Plan::Open {
                    resets_at: midnight,
                },
            ),
            // Cleared at 10:30: before it, within the grace, well after.
            (
                Some(row(
                    "2026-11-03T10:00:00+08:00",
                    Some("2026-11-03T10:30:00+08:00"),
                )),
                "2026-11-03T10:29:00+08:00",
                attach(None),
            ),
            (
                Some(row(
                    "2026-11-03T10:00:00+08:00",
                    Some("2026-11-03T10:30:00+08:00"),
                )),
                "2026-11-03T10:34:59+08:00",
                attach(None),
            ),
            (
                Some(row(
                    "2026-11-03T10:00:00+08:00",
                    Some("2026-11-03T10:30:00+08:00"),
                )),
                "2026-11-03T10:35:00+08:00",
                Plan::Open {
                    resets_at: midnight,
                },
            ),
            // Evidence of a day before the latest episode's.
            (
                Some(row("2026-11-03T10:00:00+08:00", None)),
                "2026-11-02T23:59:00+08:00",
                Plan::Ignore,
            ),
        ];
        for (latest, when, want) in table {
            assert_eq!(
                plan(latest.as_ref(), at(when), tz, grace),
                *want,
                "{latest:?} at {when}"
            );
        }
    }

    #[test]
    fn a_row_reads_as_open_cleared_or_reset() {
        let now = at("2026-11-03T12:00:00+08:00");
        let open = row("2026-11-03T10:00:00+08:00", None).record(now, vec![]);
        assert_eq!((open.ended_by, open.ended_at), (EpisodeEnd::Open, None));
        assert_eq!(open.locked(now), chrono::Duration::hours(2));
        let cleared = row(
            "2026-11-03T10:00:00+08:00",
            Some("2026-11-03T10:30:00+08:00"),
        )
        .record(now, vec![]);
        assert_eq!(cleared.ended_by, EpisodeEnd::Clear);
        assert_eq!(cleared.locked(now), chrono::Duration::minutes(30));
        let reset = row("2026-11-02T22:00:00+08:00", None).record(now, vec![]);
        assert_eq!(
            (reset.ended_by, reset.ended_at),
            (EpisodeEnd::Reset, Some(at("2026-11-03T00:00:00+08:00")))
        );
        assert_eq!(reset.locked(now), chrono::Duration::hours(2));
    }

    #[test]
    fn notes_merge_their_span_and_counts() {
        let grace = Duration::from_secs(300);
        let mut a = LockoutNote::at(at("2026-11-03T10:01:00+08:00"), Some("cooldown"), grace);
        a.merge(LockoutNote::at(
            at("2026-11-03T10:00:00+08:00"),
            None,
            grace,
        ));
        a.merge(LockoutNote::at(
            at("2026-11-03T10:02:00+08:00"),
            Some("cooldown"),
            grace,
        ));
        a.merge(LockoutNote::at(
            at("2026-11-03T10:03:00+08:00"),
            Some("dry_run"),
            grace,
        ));
        assert_eq!(a.first_at, at("2026-11-03T10:00:00+08:00"));
        assert_eq!(a.last_at, at("2026-11-03T10:03:00+08:00"));
        assert_eq!(
            a.decisions,
            vec![("cooldown".into(), 2), ("dry_run".into(), 1)]
        );
    }
}
