//! The `monthly_report` notification (SPEC section 5): on the first day of a
//! month, per account, the month before: clears used, lockout episodes and
//! minutes locked out.
//!
//! The ledger records that a month's report went out, so a restart on the
//! first day, or a second replica, does not send it twice.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::calendar;
use crate::clearer;
use crate::dispatcher::Runtime;
use crate::event::{ClearTarget, Event, EventKind, MonthReport};
use crate::read_model::month_lockout;
use crate::settings::Account;
use crate::store::{Store, StoreError};

/// How long to wait before trying again when the ledger did not answer.
const RETRY: Duration = Duration::from_secs(60);

/// The report of the month before `now`'s for `account`, when `now` is on the
/// first day of a month and no report of that month went out yet (this call
/// claims it).
pub fn monthly(
    store: &dyn Store,
    account: &Account,
    timezone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<Option<Event>, StoreError> {
    if now.with_timezone(&timezone).day() != 1 {
        return Ok(None);
    }
    let this = calendar::month(timezone, now);
    let last_instant = this.start - chrono::Duration::milliseconds(1);
    let before = calendar::month(timezone, last_instant);
    let label = calendar::month_label(timezone, last_instant);
    let snapshot = store.snapshot(&clearer::key(account, timezone), last_instant)?;
    let lockout = month_lockout(store, &account.appid, before, now)?;
    // Claimed last: a ledger that fails before this leaves the report to the
    // next try.
    if !store.claim_report(&account.appid, &label, now)? {
        return Ok(None);
    }
    let budget = clearer::budget(account, &snapshot, timezone, last_instant);
    Ok(Some(Event {
        kind: EventKind::MonthlyReport,
        account: account.name.clone(),
        appid: account.appid.clone(),
        at: now,
        source: String::new(),
        trigger: String::new(),
        evidence: 0,
        target: ClearTarget::Full,
        attempt: None,
        skip_reason: None,
        outcome: None,
        errcode: None,
        errmsg: None,
        next_clear_at: None,
        report: Some(MonthReport {
            month: label,
            clears: budget.used,
            episodes: lockout.episodes,
            locked_minutes: lockout.locked_minutes,
        }),
        budget,
        route: account.notify.clone(),
    }))
}

/// Sends each account's report on the first day of every month, until `stop`.
pub async fn run(runtime: watch::Receiver<Runtime>, stop: CancellationToken) {
    loop {
        let rt = runtime.borrow().clone();
        let timezone = rt.config.daemon.timezone;
        let now = rt.clearer.clock.now();
        let mut wait = (calendar::day(timezone, now).end - now)
            .to_std()
            .unwrap_or_default()
            + Duration::from_secs(1);
        for account in rt.config.accounts.values() {
            let (store, owned) = (rt.clearer.store.clone(), account.clone());
            let work = move || monthly(store.as_ref(), &owned, timezone, now);
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(Some(event))) => {
                    tracing::info!(account = %account.name, month = %event.budget.month, "Sending the monthly report");
                    rt.clearer.events.publish(&event);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(account = %account.name, error = %e, "Cannot prepare the monthly report yet; trying again");
                    wait = wait.min(RETRY);
                }
                Err(e) => tracing::error!(error = %e, "The monthly report task failed"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Outcome;
    use crate::policy::{PolicySettings, Verdict};
    use crate::secret::Secret;
    use crate::settings::{AccountKind, Credential};
    use crate::store::{Intent, LockoutNote, Reservation, SqliteStore};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn account() -> Account {
        Account {
            name: "shop".into(),
            appid: "wx448f04719cd48f69".into(),
            kind: AccountKind::MiniProgram,
            credential: Credential::Secret(Secret::new("s")),
            token: None,
            notify: vec!["ops".into()],
            policy: PolicySettings::default(),
            fingerprint: "fp".into(),
        }
    }

    #[test]
    fn the_first_day_reports_the_month_before_once() {
        let tz = chrono_tz::Asia::Shanghai;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ledger.db")).unwrap();
        let account = account();
        let key = clearer::key(&account, tz);
        let window = Duration::from_secs(300);
        let intent = Intent {
            source: "alerts".into(),
            evidence: 1,
            window,
            lockout: true,
            ..Intent::default()
        };
        // November: 10:00-10:30 ended by a clear, 22:00 until the reset;
        // December's first minutes are not November's.
        let note = |t: &str| {
            store
                .note_lockout(&key, &LockoutNote::at(at(t), None, window))
                .unwrap()
        };
        note("2026-11-03T10:00:00+08:00");
        let (_, r) = store
            .reserve(&key, &intent, at("2026-11-03T10:30:00+08:00"), &mut |_| {
                Verdict::Clear(ClearTarget::Full)
            })
            .unwrap();
        let Reservation::Clear { id, .. } = r else {
            panic!("{r:?}")
        };
        store
            .finish(id, &Outcome::Ok, at("2026-11-03T10:30:00+08:00"))
            .unwrap();
        note("2026-11-05T22:00:00+08:00");
        note("2026-12-01T00:00:01+08:00");

        let now = at("2026-12-01T00:00:05+08:00");
        let event = monthly(&store, &account, tz, now)
            .unwrap()
            .expect("a report");
        assert_eq!(event.kind, EventKind::MonthlyReport);
        assert_eq!(
            event.report,
            Some(MonthReport {
                month: "2026-11".into(),
                clears: 1,
                episodes: 2,
                locked_minutes: 30 + 120,
            })
        );
        assert_eq!((event.budget.used, event.budget.left), (1, 7));
        assert_eq!(event.route, vec!["ops".to_string()]);
        // Once: a restart or a second replica the same day sends nothing.
        assert_eq!(monthly(&store, &account, tz, now).unwrap(), None);
        // Not on other days.
        let other = Account {
            appid: "wx0000000000000002".into(),
            ..account.clone()
        };
        assert_eq!(
            monthly(&store, &other, tz, at("2026-12-02T09:00:00+08:00")).unwrap(),
            None
        );
        assert!(monthly(&store, &other, tz, at("2026-12-01T09:00:00+08:00"))
            .unwrap()
            .is_some());
    }
}
