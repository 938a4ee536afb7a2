//! The lockout episodes' contract (SPEC section 5), written once and run
//! against every ledger: SQLite in `tests/store_sqlite.rs`, PostgreSQL in
//! `tests/store_postgres.rs` (under `ci/postgres.sh`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use quotawatch::event::{ClearTarget, Outcome};
use quotawatch::policy::{SkipReason, Verdict};
use quotawatch::store::{
    AccountKey, EpisodeEnd, EpisodeRecord, HistoryFilter, Intent, LockoutNote, LockoutTotal,
    Reservation, Store,
};

const GRACE: Duration = Duration::from_secs(300);

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn key(appid: &str) -> AccountKey<'_> {
    AccountKey {
        appid,
        name: "shop",
        fingerprint: "fp1",
        timezone: chrono_tz::Asia::Shanghai,
    }
}

fn evidence(lockout: bool) -> Intent {
    Intent {
        source: "alerts".into(),
        trigger: "45009".into(),
        evidence: 1,
        window: GRACE,
        lockout,
        ..Intent::default()
    }
}

fn episodes(store: &dyn Store, appid: &str, now: &str) -> Vec<EpisodeRecord> {
    let filter = HistoryFilter {
        appid: Some(appid.into()),
        ..HistoryFilter::default()
    };
    store.episodes(&filter, at(now)).unwrap()
}

/// `(reason, count)` of an episode's decisions.
fn decisions(e: &EpisodeRecord) -> Vec<(String, u32)> {
    e.decisions
        .iter()
        .map(|d| (d.reason.clone(), d.count))
        .collect()
}

fn refuse(store: &dyn Store, intent: &Intent, now: &str, reason: SkipReason) {
    let (_, r) = store
        .reserve(&key("wxA"), intent, at(now), &mut |_| Verdict::Skip {
            reason,
            retry_at: None,
        })
        .unwrap();
    assert!(matches!(r, Reservation::Skip { .. }), "{r:?}");
}

/// An episode opens at the first evidence, takes the decisions that did not
/// clear, moves its start to earlier evidence noted late, ends at a clear
/// that took effect (late reports within the grace stay in it) or at the
/// daily reset; manual requests and failed clears change nothing.
pub fn episodes_follow_evidence_clears_and_resets(store: &dyn Store) {
    let note = |t: &str, reason: Option<SkipReason>| {
        store
            .note_lockout(
                &key("wxA"),
                &LockoutNote::at(at(t), reason.map(SkipReason::as_str), GRACE),
            )
            .unwrap()
    };
    assert!(episodes(store, "wxA", "2026-11-03T10:00:00+08:00").is_empty());

    note(
        "2026-11-03T10:00:00+08:00",
        Some(SkipReason::InsufficientEvidence),
    );
    refuse(
        store,
        &evidence(true),
        "2026-11-03T10:01:00+08:00",
        SkipReason::Cooldown,
    );
    // A manual request is not evidence: not counted in the episode.
    refuse(
        store,
        &evidence(false),
        "2026-11-03T10:01:30+08:00",
        SkipReason::DailyMax,
    );
    note("2026-11-03T09:59:00+08:00", None);
    let open = episodes(store, "wxA", "2026-11-03T10:02:00+08:00");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].started_at, at("2026-11-03T09:59:00+08:00"));
    assert_eq!(
        (open[0].ended_by, open[0].ended_at),
        (EpisodeEnd::Open, None)
    );
    assert_eq!(
        decisions(&open[0]),
        vec![("insufficient_evidence".into(), 1), ("cooldown".into(), 1)]
    );

    // A clear that fails leaves it open; one that takes effect ends it.
    let clear = |now: &str| {
        let (_, r) = store
            .reserve(&key("wxA"), &evidence(true), at(now), &mut |_| {
                Verdict::Clear(ClearTarget::Full)
            })
            .unwrap();
        match r {
            Reservation::Clear { id, .. } => id,
            other => panic!("{other:?}"),
        }
    };
    let failed = clear("2026-11-03T10:04:00+08:00");
    store
        .finish(
            failed,
            &Outcome::Failed {
                errcode: Some(-1),
                errmsg: "busy".into(),
            },
            at("2026-11-03T10:04:01+08:00"),
        )
        .unwrap();
    assert_eq!(
        episodes(store, "wxA", "2026-11-03T10:04:30+08:00")[0].ended_by,
        EpisodeEnd::Open
    );
    let id = clear("2026-11-03T10:05:00+08:00");
    store
        .finish(id, &Outcome::Ok, at("2026-11-03T10:05:02+08:00"))
        .unwrap();
    // A late report of failures before the clear stays in its episode.
    note("2026-11-03T10:07:00+08:00", Some(SkipReason::Cooldown));
    let cleared = episodes(store, "wxA", "2026-11-03T10:08:00+08:00");
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(cleared[0].ended_by, EpisodeEnd::Clear);
    assert_eq!(cleared[0].ended_at, Some(at("2026-11-03T10:05:02+08:00")));
    assert_eq!(cleared[0].attempt, Some(id));
    assert_eq!(
        decisions(&cleared[0]),
        vec![("insufficient_evidence".into(), 1), ("cooldown".into(), 2)]
    );

    // Past the grace: a new lockout, which the reset ends.
    note("2026-11-03T10:20:00+08:00", Some(SkipReason::DryRun));
    note("2026-11-03T10:21:00+08:00", Some(SkipReason::DryRun));
    let two = episodes(store, "wxA", "2026-11-03T12:00:00+08:00");
    assert_eq!(two.len(), 2, "{two:?}");
    assert_eq!(two[0].started_at, at("2026-11-03T10:20:00+08:00"));
    assert_eq!(two[0].ended_by, EpisodeEnd::Open);
    assert_eq!(decisions(&two[0]), vec![("dry_run".into(), 2)]);
    assert_eq!(two[0].decisions[0].last_at, at("2026-11-03T10:21:00+08:00"));
    let first = 6 * 60 + 2; // 09:59 to 10:05:02
    assert_eq!(
        store
            .lockout_totals(at("2026-11-03T12:00:00+08:00"))
            .unwrap(),
        vec![LockoutTotal {
            appid: "wxA".into(),
            locked: true,
            seconds: first + 100 * 60,
        }]
    );
    let next_day = episodes(store, "wxA", "2026-11-04T01:00:00+08:00");
    assert_eq!(next_day[0].ended_by, EpisodeEnd::Reset);
    assert_eq!(next_day[0].ended_at, Some(at("2026-11-04T00:00:00+08:00")));
    assert_eq!(
        store
            .lockout_totals(at("2026-11-04T01:00:00+08:00"))
            .unwrap(),
        vec![LockoutTotal {
            appid: "wxA".into(),
            locked: false,
            seconds: first + (13 * 60 + 40) * 60,
        }]
    );
    // Evidence after the reset opens the next day's episode; evidence from
    // the day before, noted after it, is too late to count.
    note("2026-11-04T01:00:00+08:00", None);
    note("2026-11-03T23:59:00+08:00", Some(SkipReason::ResetGuard));
    let three = episodes(store, "wxA", "2026-11-04T01:00:00+08:00");
    assert_eq!(three.len(), 3, "{three:?}");
    assert!(three[0].decisions.is_empty(), "{three:?}");
    assert_eq!(decisions(&three[1]), vec![("dry_run".into(), 2)]);

    // The filter's period and account; other accounts are apart.
    let nov3 = HistoryFilter {
        appid: Some("wxA".into()),
        since: Some(at("2026-11-03T00:00:00+08:00")),
        until: Some(at("2026-11-04T00:00:00+08:00")),
        limit: None,
    };
    assert_eq!(
        store
            .episodes(&nov3, at("2026-11-04T01:00:00+08:00"))
            .unwrap()
            .len(),
        2
    );
    assert!(episodes(store, "wxB", "2026-11-04T01:00:00+08:00").is_empty());
    store
        .note_lockout(
            &key("wxB"),
            &LockoutNote::at(at("2026-11-04T00:30:00+08:00"), None, GRACE),
        )
        .unwrap();
    let totals = store
        .lockout_totals(at("2026-11-04T01:00:00+08:00"))
        .unwrap();
    assert_eq!(totals.len(), 2, "{totals:?}");
    assert_eq!(
        (
            totals[1].appid.as_str(),
            totals[1].locked,
            totals[1].seconds
        ),
        ("wxB", true, 1800)
    );
}
