//! The ledger's contract (SPEC sections 2 and 7), written once and run against
//! every store: SQLite in `tests/store_sqlite.rs`, PostgreSQL in
//! `tests/store_postgres.rs` (under `ci/postgres.sh`). What only one backend
//! has (how a pending row's owner is told alive or dead, whether age alone
//! makes a pending row ambiguous, where the schema version lives) stays in
//! that backend's file.
//!
//! A check that needs a second store on the same ledger (another replica, or
//! the same ledger after a restart) takes `open`, which opens one more.

use std::time::Duration;

use chrono::{DateTime, Utc};
use quotawatch::event::{ClearTarget, Outcome};
use quotawatch::pacing::{Note, Pace};
use quotawatch::policy::{SkipReason, Verdict};
use quotawatch::store::{
    AccountKey, AttemptId, HistoryFilter, Intent, LogPosition, Reservation, Store, StoreError,
};

/// Opens one more store on the ledger under test.
pub type Open<'a> = &'a dyn Fn() -> Box<dyn Store>;

pub const APPID: &str = "wx448f04719cd48f69";

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn key() -> AccountKey<'static> {
    AccountKey {
        appid: APPID,
        name: "shop",
        fingerprint: "fp1",
        timezone: chrono_tz::Asia::Shanghai,
    }
}

pub fn intent() -> Intent {
    Intent {
        source: "test".into(),
        trigger: "t".into(),
        evidence: 1,
        window: Duration::from_secs(300),
        ..Intent::default()
    }
}

pub fn skip(reason: SkipReason) -> Verdict {
    Verdict::Skip {
        reason,
        retry_at: None,
    }
}

/// A clear of `target` reserved; its id.
pub fn reserve_target(
    store: &dyn Store,
    account: &AccountKey<'_>,
    intent: &Intent,
    target: ClearTarget,
    now: DateTime<Utc>,
) -> AttemptId {
    let (_, r) = store
        .reserve(account, intent, now, &mut |_| {
            Verdict::Clear(target.clone())
        })
        .unwrap();
    match r {
        Reservation::Clear { id, target: t } => {
            assert_eq!(t, target);
            id
        }
        other => panic!("{other:?}"),
    }
}

pub fn clear_once(store: &dyn Store, account: &AccountKey<'_>, now: DateTime<Utc>) -> AttemptId {
    reserve_target(store, account, &intent(), ClearTarget::Full, now)
}

/// Reserves with evidence under `keys` (one each) the way the policy
/// would with min_events 1: a clear while some evidence is fresh.
fn reserve_keys(store: &dyn Store, now: DateTime<Utc>, keys: &[&str]) -> Option<AttemptId> {
    let intent = Intent {
        evidence: keys.len() as u32,
        keys: keys.iter().map(|k| (k.to_string(), 1)).collect(),
        ..intent()
    };
    let (_, r) = store
        .reserve(
            &key(),
            &intent,
            now,
            &mut |s| match s.seen_evidence < intent.evidence {
                true => Verdict::Clear(ClearTarget::Full),
                false => skip(SkipReason::Duplicate),
            },
        )
        .unwrap();
    match r {
        Reservation::Clear { id, target } => {
            assert_eq!(target, ClearTarget::Full);
            Some(id)
        }
        Reservation::Skip { .. } => None,
    }
}

/// SPEC section 2: a key acted on by an attempt that counts is known to
/// every replica for the window; a failed attempt's keys are evidence again.
pub fn keys_acted_on_are_known_for_the_window(open: Open<'_>) {
    let (store, other) = (open(), open());
    let (store, other) = (&*store, &*other);
    let now = utc("2026-11-28T02:00:00Z");
    let secs = |s| now + chrono::Duration::seconds(s);
    let a = reserve_keys(store, now, &["alert-1"]).unwrap();
    store.finish(a, &Outcome::Ok, now).unwrap();
    let failed = Outcome::Failed {
        errcode: Some(-1),
        errmsg: "busy".into(),
    };
    let cases: &[(&dyn Store, i64, &[&str], bool)] = &[
        // (store, seconds after, keys, cleared)
        (other, 1, &["alert-1"], false),
        (store, 299, &["alert-1"], false),
        (other, 10, &["alert-1", "alert-2"], true),
        (other, 11, &["alert-1"], false),
    ];
    for (i, (s, after, keys, cleared)) in cases.iter().enumerate() {
        let got = reserve_keys(*s, secs(*after), keys);
        assert_eq!(got.is_some(), *cleared, "case {i}: {keys:?} at +{after}s");
        if let Some(id) = got {
            s.finish(id, &failed, secs(*after)).unwrap();
        }
    }
    // alert-2's attempt failed: it is evidence again; alert-1 kept its
    // first attempt, and is evidence again once the window has passed.
    assert!(reserve_keys(other, secs(20), &["alert-2"]).is_some());
    let b = reserve_keys(store, secs(301), &["alert-1"]).expect("the window has passed");
    store.finish(b, &Outcome::Ok, secs(301)).unwrap();
}

/// Ok and ambiguous attempts count against the budget, failed ones do not;
/// history keeps all three; an unknown attempt is an error; a verified
/// clear says so.
pub fn counts_ok_and_ambiguous_not_failed(store: &dyn Store) {
    let now = utc("2026-11-28T02:00:00Z");
    let a = clear_once(store, &key(), now);
    store.finish(a, &Outcome::Ok, now).unwrap();
    let b = clear_once(store, &key(), now);
    let failed = Outcome::Failed {
        errcode: Some(-1),
        errmsg: "system error".into(),
    };
    store.finish(b, &failed, now).unwrap();
    let c = clear_once(store, &key(), now);
    let ambiguous = Outcome::Ambiguous {
        detail: "timeout".into(),
    };
    store.finish(c, &ambiguous, now).unwrap();
    let snap = store.snapshot(&key(), now).unwrap();
    assert_eq!(snap.month_used, 2);
    assert_eq!(snap.day_used, 2);
    assert_eq!(snap.api_month_used, 0);
    assert!(!snap.in_flight);
    assert_eq!(snap.last_clear_at, Some(now));
    let h = store.history(&HistoryFilter::default()).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[1].errcode, Some(-1));
    assert_eq!(h[1].outcome, "failed");
    assert!(matches!(
        store.finish(9999, &Outcome::Ok, now),
        Err(StoreError::NoSuchAttempt(9999))
    ));
    store.set_verified(a, true).unwrap();
    let h = store.history(&HistoryFilter::default()).unwrap();
    assert_eq!(h.iter().find(|r| r.id == a).unwrap().verified, Some(true));
}

/// Single-API clears have a monthly count of their own.
pub fn api_clears_have_their_own_count(store: &dyn Store) {
    let now = utc("2026-11-28T02:00:00Z");
    let api = ClearTarget::Api {
        cgi_path: "/cgi-bin/message/custom/send".into(),
    };
    let id = reserve_target(store, &key(), &intent(), api.clone(), now);
    store.finish(id, &Outcome::Ok, now).unwrap();
    let snap = store.snapshot(&key(), now).unwrap();
    assert_eq!((snap.month_used, snap.api_month_used), (0, 1));
    let h = store.history(&HistoryFilter::default()).unwrap();
    assert_eq!(h[0].target, api);
}

pub fn months_follow_beijing_time(store: &dyn Store) {
    let nov = utc("2026-11-30T15:59:00Z"); // 23:59 CST 30 Nov
    let dec = utc("2026-11-30T16:01:00Z"); // 00:01 CST 1 Dec
    let id = clear_once(store, &key(), nov);
    store.finish(id, &Outcome::Ok, nov).unwrap();
    assert_eq!(store.snapshot(&key(), nov).unwrap().month_used, 1);
    assert_eq!(store.snapshot(&key(), dec).unwrap().month_used, 0);
    assert_eq!(store.snapshot(&key(), dec).unwrap().day_used, 0);
}

/// A pending attempt (reserved, no outcome yet) counts against the budget
/// and is in flight, to every replica, and no recovery takes it while the
/// store that wrote it lives. How a dead writer is told (a process id, a
/// database session) and whether age alone makes a row ambiguous differ by
/// backend: each backend's own file checks those.
pub fn a_pending_attempt_counts_and_stays_pending_while_its_writer_lives(open: Open<'_>) {
    let (store, other) = (open(), open());
    let now = utc("2026-11-28T02:00:00Z");
    let id = clear_once(&*store, &key(), now);
    for (name, s) in [("writer", &*store), ("other", &*other)] {
        let snap = s.snapshot(&key(), now).unwrap();
        assert!(snap.in_flight, "{name}");
        assert_eq!((snap.month_used, snap.day_used), (1, 1), "{name}");
        assert_eq!(s.recover(now).unwrap(), 0, "{name}: its writer lives");
    }
    let h = other.history(&HistoryFilter::default()).unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!((h[0].id, h[0].outcome.as_str()), (id, "pending"));
    assert_eq!(h[0].finished_at, None);
}

/// A second write of an attempt's outcome is a retry when it is the same,
/// and refused when it is another: the first outcome is kept.
pub fn a_settled_attempt_keeps_its_outcome(store: &dyn Store) {
    let now = utc("2026-11-28T02:00:00Z");
    let id = clear_once(store, &key(), now);
    store.finish(id, &Outcome::Ok, now).unwrap();
    store.finish(id, &Outcome::Ok, now).unwrap();
    let other = Outcome::Failed {
        errcode: Some(-1),
        errmsg: "x".into(),
    };
    assert!(matches!(
        store.finish(id, &other, now),
        Err(StoreError::Settled { .. })
    ));
    let h = store.history(&HistoryFilter::default()).unwrap();
    assert_eq!((h.len(), h[0].outcome.as_str()), (1, "ok"));
    assert_eq!(store.snapshot(&key(), now).unwrap().month_used, 1);
}

/// A month's report is claimed once per account, whichever store asks
/// first: restarts and replicas do not send it twice.
pub fn a_month_report_is_claimed_once(open: Open<'_>) {
    let (store, other) = (open(), open());
    let now = utc("2026-12-01T01:00:00Z");
    assert!(store.claim_report(APPID, "2026-11", now).unwrap());
    assert!(!store.claim_report(APPID, "2026-11", now).unwrap());
    assert!(!other.claim_report(APPID, "2026-11", now).unwrap());
    assert!(other.claim_report(APPID, "2026-10", now).unwrap());
    assert!(other
        .claim_report("wx0000000000000001", "2026-11", now)
        .unwrap());
}

/// Pacing's memory (SPEC section 3) is kept per account and shared by
/// the replicas: each one's notes are merged into it once, in the order
/// they reach the ledger, whichever store merges them; another store on the
/// same ledger reads it back (a restart or a replica goes on from it), and
/// so does the policy's snapshot.
pub fn pacing_notes_merge_into_one_memory(open: Open<'_>) {
    let (store, other) = (open(), open());
    assert_eq!(store.pacing_memories().unwrap(), vec![]);
    let tz = chrono_tz::Asia::Shanghai;
    let now = utc("2026-11-10T02:00:00Z");
    let at = |m: i64| now + chrono::Duration::minutes(m);
    let ev = |m: i64| Note::Evidence {
        at: at(m),
        count: 10,
    };
    let merge = |s: &dyn Store, appid: &str, replica: &str, notes: &[(u64, Note)]| {
        s.merge_pacing_notes(appid, replica, notes, tz, now)
            .unwrap()
    };
    assert_eq!(merge(&*store, APPID, "a", &[(1, ev(0)), (2, ev(1))]), 2);
    assert_eq!(merge(&*other, APPID, "b", &[(1, ev(2))]), 1);
    // "a" weighs its second note again before it hears the ledger took it.
    assert_eq!(merge(&*other, APPID, "a", &[(2, ev(1)), (3, ev(3))]), 3);
    assert_eq!(merge(&*store, "wx0000000000000001", "a", &[(4, ev(0))]), 4);

    let mut want = Pace::default();
    for (replica, seq, note) in [
        ("a", 1, ev(0)),
        ("a", 2, ev(1)),
        ("b", 1, ev(2)),
        ("a", 3, ev(3)),
    ] {
        want.merge(replica, seq, &note, tz);
    }
    let memories = |s: &dyn Store| {
        let mut m = s.pacing_memories().unwrap();
        m.sort();
        m.into_iter()
            .map(|(appid, memory)| {
                (
                    appid,
                    Pace::from_memory(&memory).expect("a readable memory"),
                )
            })
            .collect::<Vec<_>>()
    };
    let kept = memories(&*store);
    assert_eq!(kept.len(), 2, "one memory per account");
    assert_eq!(kept[1], (APPID.to_string(), want.clone()));
    assert_eq!(
        kept[1].1.rate(at(3)),
        10.0,
        "40 failed calls over 4 minutes, each once"
    );
    assert_eq!(memories(&*other), kept);

    let snapshot = other.snapshot(&key(), at(3)).unwrap();
    let seen = snapshot.pacing.as_deref().and_then(Pace::from_memory);
    assert_eq!(seen, Some(want), "the policy weighs the ledger's memory");
}

/// Two replicas merging notes on one account at the same time lose none
/// and count none twice: each merge holds the memory's lock.
pub fn concurrent_pacing_merges_lose_no_note(open: Open<'_>) {
    const EACH: u64 = 40;
    let tz = chrono_tz::Asia::Shanghai;
    let now = utc("2026-11-10T02:00:00Z");
    let note = Note::Evidence { at: now, count: 1 };
    std::thread::scope(|scope| {
        for replica in ["a", "b"] {
            let store = open();
            let note = note.clone();
            scope.spawn(move || {
                for seq in 1..=EACH {
                    store
                        .merge_pacing_notes(APPID, replica, &[(seq, note.clone())], tz, now)
                        .unwrap();
                }
            });
        }
    });
    let memories = open().pacing_memories().unwrap();
    let pace = Pace::from_memory(&memories[0].1).unwrap();
    assert_eq!((pace.merged("a"), pace.merged("b")), (EACH, EACH));
    assert_eq!(pace.rate(now), (2 * EACH) as f64, "every note counted once");
}

pub fn skip_inserts_nothing(store: &dyn Store) {
    let now = utc("2026-11-28T02:00:00Z");
    let (_, r) = store
        .reserve(&key(), &intent(), now, &mut |_| skip(SkipReason::Cooldown))
        .unwrap();
    assert_eq!(
        r,
        Reservation::Skip {
            reason: SkipReason::Cooldown,
            retry_at: None
        }
    );
    assert!(store.history(&HistoryFilter::default()).unwrap().is_empty());
}

pub fn a_panicking_decision_rolls_back_and_releases_the_lock(open: Open<'_>) {
    let store = open();
    let now = utc("2026-11-28T02:00:00Z");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.reserve(&key(), &intent(), now, &mut |_| panic!("decide failed"))
    }));
    assert!(panicked.is_err());
    // The same store, and another one, can still reserve the account.
    clear_once(&*store, &key(), now);
    let (snap, _) = open()
        .reserve(&key(), &intent(), now, &mut |_| skip(SkipReason::Duplicate))
        .unwrap();
    assert_eq!(snap.month_used, 1);
}

pub fn exhausted_until_month_end_and_disabled_until_config_changes(store: &dyn Store) {
    let now = utc("2026-11-28T02:00:00Z");
    store.mark_exhausted(&key(), now).unwrap();
    assert!(store.snapshot(&key(), now).unwrap().exhausted);
    let next_month = utc("2026-11-30T16:00:00Z");
    assert!(!store.snapshot(&key(), next_month).unwrap().exhausted);
    store
        .mark_disabled(&key(), "40164 invalid ip", now)
        .unwrap();
    assert_eq!(
        store.snapshot(&key(), now).unwrap().disabled.as_deref(),
        Some("40164 invalid ip")
    );
    assert!(store.snapshot(&key(), now).unwrap().exhausted, "both flags");
    let changed = AccountKey {
        fingerprint: "fp2",
        ..key()
    };
    assert!(store.snapshot(&changed, now).unwrap().disabled.is_none());
    assert!(store.enable(key().appid).unwrap());
    assert!(
        !store.enable(key().appid).unwrap(),
        "nothing left to enable"
    );
    assert!(store.snapshot(&key(), now).unwrap().disabled.is_none());
}

/// Rows and log positions outlive the store that wrote them. The schema's
/// version is the caller's to check: each backend keeps it in its own place.
pub fn reopening_keeps_rows_and_log_positions(open: Open<'_>) {
    let now = utc("2026-11-28T02:00:00Z");
    {
        let store = open();
        let id = clear_once(&*store, &key(), now);
        store.finish(id, &Outcome::Ok, now).unwrap();
        let pos = LogPosition {
            file_id: "1:2".into(),
            offset: 42,
        };
        store.save_log_position("app", "/x.log", &pos).unwrap();
        let moved = LogPosition {
            file_id: "1:3".into(),
            offset: 7,
        };
        store.save_log_position("app", "/y.log", &moved).unwrap();
        store.save_log_position("app", "/y.log", &moved).unwrap();
    }
    let store = open();
    assert_eq!(store.snapshot(&key(), now).unwrap().month_used, 1);
    let pos = store.log_position("app", "/x.log").unwrap().unwrap();
    assert_eq!((pos.file_id.as_str(), pos.offset), ("1:2", 42));
    assert_eq!(
        store.log_position("app", "/y.log").unwrap().unwrap().offset,
        7
    );
    assert!(store.log_position("other", "/x.log").unwrap().is_none());
}

/// An account set's last good list outlives the store that wrote it; a
/// newer list replaces it, and another set's is apart.
pub fn a_sets_last_good_list_is_kept(open: Open<'_>) {
    let now = utc("2026-11-28T02:00:00Z");
    {
        let store = open();
        assert!(store.set_list("merchants").unwrap().is_none());
        store.save_set_list("merchants", r#"["old"]"#, now).unwrap();
        store
            .save_set_list("merchants", r#"["a","b"]"#, now)
            .unwrap();
        store.save_set_list("shops", "[]", now).unwrap();
    }
    let store = open();
    assert_eq!(
        store.set_list("merchants").unwrap().as_deref(),
        Some(r#"["a","b"]"#)
    );
    assert_eq!(store.set_list("shops").unwrap().as_deref(), Some("[]"));
    assert!(store.set_list("other").unwrap().is_none());
}

pub fn history_filters_by_account_time_and_limit(store: &dyn Store) {
    let other = AccountKey {
        appid: "wx0000000000000002",
        name: "blog",
        ..key()
    };
    let t1 = utc("2026-10-15T02:00:00Z");
    let t2 = utc("2026-11-15T02:00:00Z");
    let t3 = utc("2026-11-20T02:00:00Z");
    for t in [t1, t2, t3] {
        clear_once(store, &key(), t);
    }
    clear_once(store, &other, t2);
    let all = store.history(&HistoryFilter::default()).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].started_at >= w[1].started_at));
    let shop = HistoryFilter {
        appid: Some(APPID.into()),
        ..Default::default()
    };
    assert_eq!(store.history(&shop).unwrap().len(), 3);
    let november = HistoryFilter {
        since: Some(utc("2026-10-31T16:00:00Z")),
        until: Some(utc("2026-11-30T16:00:00Z")),
        ..shop.clone()
    };
    let rows = store.history(&november).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.started_at).collect::<Vec<_>>(),
        vec![t3, t2]
    );
    let latest = HistoryFilter {
        limit: Some(1),
        ..Default::default()
    };
    let rows = store.history(&latest).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].started_at, t3);
    assert_eq!(rows[0].account, "shop");
    assert_eq!(rows[0].outcome, "pending");
}

/// The status page's figures (SPEC section 5): the month's counted clears and
/// episodes summed in the ledger, and only the appids locked, exhausted or
/// disabled named, whatever the fleet's size.
pub fn the_fleet_is_summed_and_the_flagged_few_named(store: &dyn Store) {
    use quotawatch::store::{Flags, LockoutNote};
    let now = utc("2026-11-28T02:00:00Z");
    let month = quotawatch::calendar::month(chrono_tz::Asia::Shanghai, now);
    let other = |appid: &'static str| AccountKey { appid, ..key() };
    clear_once(store, &key(), utc("2026-11-28T01:00:00Z"));
    let ok = clear_once(store, &other("wxB"), utc("2026-11-27T01:00:00Z"));
    store
        .finish(ok, &Outcome::Ok, utc("2026-11-27T01:00:01Z"))
        .unwrap();
    let failed = clear_once(store, &other("wxB"), utc("2026-11-27T05:00:00Z"));
    let no = Outcome::Failed {
        errcode: Some(40164),
        errmsg: "invalid ip".into(),
    };
    store
        .finish(failed, &no, utc("2026-11-27T05:00:01Z"))
        .unwrap();
    clear_once(store, &other("wxB"), utc("2026-10-27T05:00:00Z"));
    store.mark_exhausted(&other("wxC"), now).unwrap();
    store.mark_disabled(&other("wxD"), "40013", now).unwrap();
    let grace = Duration::from_secs(300);
    let evidence = LockoutNote::at(utc("2026-11-28T01:30:00Z"), None, grace);
    store.note_lockout(&other("wxE"), &evidence).unwrap();
    let october = LockoutNote::at(utc("2026-10-28T01:30:00Z"), None, grace);
    store.note_lockout(&other("wxF"), &october).unwrap();

    let fleet = store.fleet(&month, now).unwrap();
    assert_eq!(
        fleet.clears, 2,
        "the pending and the ok one, not the failed or October's"
    );
    assert_eq!((fleet.episodes, fleet.locked_seconds), (1, 1800));
    let flag = |appid: &str, locked, exhausted, disabled: Option<&str>| Flags {
        appid: appid.into(),
        locked,
        exhausted,
        disabled_fingerprint: disabled.map(str::to_string),
    };
    assert_eq!(
        fleet.flagged,
        vec![
            flag("wxC", false, true, None),
            flag("wxD", false, false, Some("fp1")),
            flag("wxE", true, false, None),
        ]
    );
    // After the month: October's figures are another period's; nobody is
    // locked or exhausted any more, and the disable holds.
    let december = utc("2026-12-01T02:00:00Z");
    let next = quotawatch::calendar::month(chrono_tz::Asia::Shanghai, december);
    let fleet = store.fleet(&next, december).unwrap();
    assert_eq!((fleet.clears, fleet.episodes), (0, 0));
    assert_eq!(fleet.flagged, vec![flag("wxD", false, false, Some("fp1"))]);
}
