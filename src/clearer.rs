//! The one entry point that spends budget. Every caller (the CLI, the HTTP API,
//! the signal dispatcher) goes through [`Clearer::handle`]:
//!
//! 1. under the ledger's exclusive lock, read the snapshot, run the pure policy
//!    and, if it says clear, commit an intent row (one atomic step, so neither a
//!    burst nor a second process can overspend);
//! 2. call WeChat;
//! 3. record the outcome, mark the month exhausted (48006) or the account
//!    disabled (configuration errors);
//! 4. log, count, and publish [`Event`]s for the notifiers.
//!
//! It does not gather evidence or deduplicate signals: see [`crate::signal`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::calendar;
use crate::clock::Clock;
use crate::event::{Budget, ClearTarget, Event, EventKind, Outcome};
use crate::metrics::Metrics;
use crate::policy::{self, Decision, SkipReason, Snapshot};
use crate::settings::Account;
use crate::store::{AccountKey, AttemptId, Intent, LedgerHealth, Reservation, Store, StoreError};
use crate::wechat::{ClearApi, ErrorClass, WeChatError};

/// Where events go: the notifiers in the daemon, a collector in tests.
pub trait EventSink: Send + Sync {
    fn publish(&self, event: &Event);
}

/// Drops events: for commands run without notifiers.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&self, _: &Event) {}
}

/// Why a clear is asked for.
#[derive(Debug, Clone)]
pub struct ClearRequest {
    /// "cli", "api", or the `[sources.NAME]` that gathered the evidence.
    pub source: String,
    /// Free text: the alert name, `--reason`, ...
    pub trigger: String,
    pub evidence: u32,
    /// The one exhausted API, when the signal named it (for `prefer = "api"`).
    pub cgi_path: Option<String>,
    /// An operator asked: no evidence needed.
    pub manual: bool,
    /// Skip cooldown, daily_max and reset_guard (never the monthly cap).
    pub force: bool,
    /// Decide and report, never call WeChat.
    pub dry_run: bool,
    /// The idempotency keys behind `evidence`, with the evidence each carries:
    /// the ledger knows which were acted on already (SPEC section 2).
    pub keys: Vec<(String, u32)>,
    /// What pacing knows, for the policy to weigh under the lock (requests
    /// from evidence with `policy.pacing` only).
    pub pacing: Option<crate::pacing::Asked>,
}

/// What happened, for the caller's exit code or HTTP answer.
#[derive(Debug, Clone)]
pub struct Report {
    pub decision: Decision,
    pub target: ClearTarget,
    pub attempt: Option<AttemptId>,
    pub outcome: Option<Outcome>,
    pub budget: Budget,
    pub next_clear_at: Option<DateTime<Utc>>,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClearError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ledger task failed: {0}")]
    Join(String),
}

pub struct Clearer {
    pub store: Arc<dyn Store>,
    pub wechat: Arc<dyn ClearApi>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<dyn EventSink>,
    pub timezone: Tz,
    /// The first wait before an outcome write that failed is tried again
    /// (doubling up to 30 s); [`OUTCOME_RETRY`] in the daemon.
    pub outcome_retry: std::time::Duration,
    /// Whether the ledger answers, as this clearer's ledger work finds it.
    pub health: Arc<LedgerHealth>,
    /// What "now" is: the wall clock, or a simulation's.
    pub clock: Clock,
}

/// The daemon's first wait before retrying an outcome write.
pub const OUTCOME_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Clearer {
    pub async fn handle(
        &self,
        account: &Arc<Account>,
        req: ClearRequest,
    ) -> Result<Report, ClearError> {
        let now = self.clock.now();
        let (snapshot, reservation) = self.reserve(account, &req, now).await?;
        let (decision, target, attempt) = match &reservation {
            Reservation::Clear { id, target } => (Decision::Clear, target.clone(), Some(*id)),
            Reservation::Skip { reason, .. } => (
                Decision::Skip(*reason),
                policy::choose_target(&account.policy, req.cgi_path.as_deref(), &snapshot),
                None,
            ),
        };
        let (outcome_label, reason) = match decision {
            Decision::Clear => ("clear", "policy"),
            Decision::Skip(r) => ("skip", r.as_str()),
        };
        self.metrics.decision(outcome_label, reason);
        let mut report = Report {
            decision,
            target,
            attempt,
            outcome: None,
            budget: self.budget(account, &snapshot, now),
            next_clear_at: None,
            events: Vec::new(),
        };
        match reservation {
            Reservation::Skip { reason, retry_at } => {
                report.next_clear_at = retry_at;
                self.skipped(account, &req, reason, now, &mut report)
            }
            Reservation::Clear { id, .. } => {
                self.attempt(account, &req, &snapshot, id, &mut report)
                    .await?
            }
        }
        for event in &report.events {
            self.events.publish(event);
        }
        Ok(report)
    }

    fn ledger(&self) -> Ledger {
        Ledger {
            store: self.store.clone(),
            health: self.health.clone(),
            timezone: self.timezone,
        }
    }

    pub async fn snapshot(
        &self,
        account: &Arc<Account>,
        now: DateTime<Utc>,
    ) -> Result<Snapshot, ClearError> {
        self.with_store(account, move |store, key| store.snapshot(key, now))
            .await
    }

    async fn with_store<T, F>(&self, account: &Arc<Account>, work: F) -> Result<T, ClearError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store, &AccountKey<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.ledger().run(account.clone(), work).await
    }

    /// The policy under the ledger's lock, choosing the target there too.
    async fn reserve(
        &self,
        account: &Arc<Account>,
        req: &ClearRequest,
        now: DateTime<Utc>,
    ) -> Result<(Snapshot, Reservation), ClearError> {
        let settings = account.clone();
        let tz = self.timezone;
        let req = req.clone();
        let intent = Intent {
            source: req.source.clone(),
            trigger: req.trigger.clone(),
            evidence: req.evidence,
            forced: req.force,
            keys: req.keys.clone(),
            window: account.policy.window,
            lockout: !req.manual,
        };
        self.with_store(account, move |store, key| {
            store.reserve(key, &intent, now, &mut |snapshot| {
                let target =
                    policy::choose_target(&settings.policy, req.cgi_path.as_deref(), snapshot);
                // Pacing weighs the ledger's memory: every replica's notes.
                let reading = (req.pacing.as_ref())
                    .map(|p| p.reading_on(snapshot.pacing.as_deref(), now, tz));
                let input = policy_input(
                    &settings,
                    &req,
                    &target,
                    snapshot,
                    reading.as_ref(),
                    tz,
                    now,
                );
                policy::verdict(&input, target)
            })
        })
        .await
    }

    fn skipped(
        &self,
        account: &Account,
        req: &ClearRequest,
        reason: SkipReason,
        now: DateTime<Utc>,
        report: &mut Report,
    ) {
        tracing::info!(
            account = %account.name, appid = %account.appid, source = %req.source, decision = "skip",
            reason = reason.as_str(), budget_left = report.budget.left, evidence = req.evidence,
            "Policy refused to clear"
        );
        let kind = if reason == SkipReason::DryRun {
            EventKind::DryRun
        } else {
            EventKind::Skipped
        };
        let mut event = self.event(kind, account, req, report, now);
        event.skip_reason = Some(reason);
        report.events.push(event);
    }

    async fn attempt(
        &self,
        account: &Arc<Account>,
        req: &ClearRequest,
        before: &Snapshot,
        id: AttemptId,
        report: &mut Report,
    ) -> Result<(), ClearError> {
        tracing::info!(
            account = %account.name, appid = %account.appid, source = %req.source, decision = "clear",
            target = %report.target, attempt = id, evidence = req.evidence, "Clearing quota"
        );
        let result = self.wechat.clear(account, &report.target).await;
        let outcome = outcome_of(&result);
        let done = self.clock.now();
        let flags = Flags::of(&report.target, &result);
        let recorded = self
            .ledger()
            .record_outcome(account.clone(), id, outcome.clone(), flags.clone(), done)
            .await;
        let after = match recorded {
            Ok(()) => self.snapshot(account, done).await.ok(),
            Err(e) => {
                // WeChat has answered: the clear is spent (or not) whatever
                // the ledger says. Keep the outcome, retry the write until it
                // lands, and tell people now, with the budget as it will read;
                // the row stays pending (single-flight holds) until then.
                tracing::error!(
                    account = %account.name, appid = %account.appid, attempt = id, outcome = outcome.label(),
                    error = %e, "Cannot record the clear's outcome; retrying until the ledger takes it"
                );
                self.finish_later(account.clone(), id, outcome.clone(), flags, done);
                None
            }
        };
        self.metrics.clear(&account.name, outcome.label());
        let after = after.unwrap_or_else(|| counted(before, &report.target, &outcome));
        report.budget = self.budget(account, &after, done);
        report.outcome = Some(outcome.clone());
        self.metrics.budget(&account.name, report.budget.left);
        let err = result.as_ref().err();
        tracing::info!(
            account = %account.name, appid = %account.appid, source = %req.source, outcome = outcome.label(),
            errcode = err.and_then(WeChatError::errcode), error = err.map(|e| e.to_string()),
            budget_left = report.budget.left, attempt = id, "Clear attempt finished"
        );
        self.attempt_events(account, req, before, &result, done, report);
        if req.manual && matches!(outcome, Outcome::Ok | Outcome::Ambiguous { .. }) {
            self.teach_pacing(account, &report.target, done).await;
        }
        Ok(())
    }

    /// A clear by hand (`quotawatch clear`, the API) that took effect, or
    /// may have, is a note in pacing's memory like the daemon's own clears
    /// (SPEC section 3, "Its memory is the ledger's"). Failing to write it
    /// is said, and spends nothing: the clear is in the ledger's count.
    async fn teach_pacing(&self, account: &Arc<Account>, target: &ClearTarget, at: DateTime<Utc>) {
        if !account.policy.pacing {
            return;
        }
        let full = *target == ClearTarget::Full;
        let note = crate::pacing::Note::Cleared { at, full };
        let tz = self.timezone;
        let taught = self
            .with_store(account, move |store, key| {
                let replica = crate::store::replica_id();
                store.merge_pacing_notes(key.appid, &replica, &[(1, note)], tz, at)
            })
            .await;
        if let Err(e) = taught {
            tracing::warn!(account = %account.name, error = %e, "Cannot note the clear in pacing's memory; pacing learns of it only as a clear spent");
        }
    }

    /// Retries [`record_outcome`] with bounded backoff until the ledger takes
    /// it. Runs on its own task: the caller's events and answer do not wait.
    /// A process that dies first leaves the row pending, and the next start
    /// recovers it as ambiguous (counted as spent): never an overspend.
    fn finish_later(
        &self,
        account: Arc<Account>,
        id: AttemptId,
        outcome: Outcome,
        flags: Flags,
        at: DateTime<Utc>,
    ) {
        let (ledger, mut delay) = (self.ledger(), self.outcome_retry);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(delay).await;
                let (o, f) = (outcome.clone(), flags.clone());
                match ledger.record_outcome(account.clone(), id, o, f, at).await {
                    Ok(()) => {
                        tracing::info!(account = %account.name, attempt = id, outcome = outcome.label(), "The clear's outcome is recorded");
                        return;
                    }
                    Err(ClearError::Store(e @ StoreError::Settled { .. })) => {
                        // Someone else settled the row another way: nothing
                        // a retry could change.
                        tracing::error!(account = %account.name, attempt = id, error = %e, "The clear's outcome conflicts with the ledger");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(account = %account.name, attempt = id, error = %e, "The ledger still refuses the outcome");
                        delay = (delay * 2).min(OUTCOME_RETRY_MAX);
                    }
                }
            }
        });
    }

    /// The attempt's own event (`report.outcome` is already set), and
    /// `budget_low` when this attempt crossed the threshold.
    fn attempt_events(
        &self,
        account: &Account,
        req: &ClearRequest,
        before: &Snapshot,
        result: &Result<(), WeChatError>,
        now: DateTime<Utc>,
        report: &mut Report,
    ) {
        let kind = match result.as_ref().err().map(|e| class_for(&report.target, e)) {
            None => EventKind::Cleared,
            Some(ErrorClass::Exhausted) => EventKind::Exhausted,
            Some(ErrorClass::Config) => EventKind::ConfigError,
            Some(_) => EventKind::Failed,
        };
        let mut event = self.event(kind, account, req, report, now);
        event.outcome = report.outcome.clone();
        if let Err(e) = result {
            event.errcode = e.errcode();
            event.errmsg = Some(match e {
                WeChatError::Api { errmsg, .. } => errmsg.clone(),
                other => other.to_string(),
            });
        }
        report.events.push(event);
        let low = account.policy.budget_low;
        let left_before = account.policy.monthly_cap.saturating_sub(before.month_used);
        if report.target == ClearTarget::Full && left_before > low && report.budget.left <= low {
            report
                .events
                .push(self.event(EventKind::BudgetLow, account, req, report, now));
        }
    }

    fn event(
        &self,
        kind: EventKind,
        account: &Account,
        req: &ClearRequest,
        report: &Report,
        now: DateTime<Utc>,
    ) -> Event {
        Event {
            kind,
            account: account.name.clone(),
            appid: account.appid.clone(),
            at: now,
            source: req.source.clone(),
            trigger: req.trigger.clone(),
            evidence: req.evidence,
            target: report.target.clone(),
            attempt: report.attempt,
            skip_reason: None,
            outcome: None,
            errcode: None,
            errmsg: None,
            budget: report.budget.clone(),
            next_clear_at: report.next_clear_at,
            report: None,
            route: account.notify.clone(),
        }
    }

    fn budget(&self, account: &Account, snapshot: &Snapshot, now: DateTime<Utc>) -> Budget {
        budget(account, snapshot, self.timezone, now)
    }
}

/// The month's budget at `now` as the ledger's `snapshot` counts it, as
/// messages show it.
pub fn budget(account: &Account, snapshot: &Snapshot, timezone: Tz, now: DateTime<Utc>) -> Budget {
    let cap = account.policy.monthly_cap;
    Budget {
        used: snapshot.month_used,
        cap,
        left: cap.saturating_sub(snapshot.month_used),
        month: calendar::month_label(timezone, now),
    }
}

pub fn key(account: &Account, timezone: Tz) -> AccountKey<'_> {
    AccountKey {
        appid: &account.appid,
        name: &account.name,
        fingerprint: &account.fingerprint,
        timezone,
    }
}

fn policy_input<'a>(
    account: &'a Account,
    req: &'a ClearRequest,
    target: &ClearTarget,
    snapshot: &'a Snapshot,
    pacing: Option<&'a crate::pacing::Reading>,
    tz: Tz,
    now: DateTime<Utc>,
) -> policy::Input<'a> {
    policy::Input {
        settings: &account.policy,
        snapshot,
        evidence: req.evidence,
        manual: req.manual,
        force: req.force,
        dry_run: req.dry_run,
        api: matches!(target, ClearTarget::Api { .. }),
        pacing,
        timezone: tz,
        now,
    }
}

/// The ledger as the clearer uses it: work runs on the blocking pool (SQLite
/// waits on its lock and fsync, which must not stall the runtime's workers)
/// unless the store never waits ([`Store::may_wait`]), and every result tells
/// [`LedgerHealth`] whether the ledger answers.
#[derive(Clone)]
struct Ledger {
    store: Arc<dyn Store>,
    health: Arc<LedgerHealth>,
    timezone: Tz,
}

impl Ledger {
    async fn run<T, F>(&self, account: Arc<Account>, work: F) -> Result<T, ClearError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store, &AccountKey<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (store, timezone) = (self.store.clone(), self.timezone);
        let result = if store.may_wait() {
            tokio::task::spawn_blocking(move || work(store.as_ref(), &key(&account, timezone)))
                .await
                .map_err(|e| ClearError::Join(e.to_string()))?
        } else {
            work(store.as_ref(), &key(&account, timezone))
        };
        self.health.observe(&result);
        result.map_err(ClearError::from)
    }

    /// Records the outcome, then the account flags a WeChat answer implies.
    async fn record_outcome(
        &self,
        account: Arc<Account>,
        id: AttemptId,
        outcome: Outcome,
        flags: Flags,
        at: DateTime<Utc>,
    ) -> Result<(), ClearError> {
        self.run(account, move |store, key| {
            store.finish(id, &outcome, at)?;
            match flags {
                Flags::Exhausted => store.mark_exhausted(key, at),
                Flags::Disabled(why) => store.mark_disabled(key, &why, at),
                Flags::None => Ok(()),
            }
        })
        .await
    }
}

/// The longest wait between two tries of an outcome write.
const OUTCOME_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The account flags a WeChat answer sets beside the outcome.
#[derive(Debug, Clone)]
enum Flags {
    None,
    /// 48006 on a full clear: no more clears this month.
    Exhausted,
    /// A configuration error, with WeChat's words.
    Disabled(String),
}

impl Flags {
    fn of(target: &ClearTarget, result: &Result<(), WeChatError>) -> Self {
        match result {
            Err(e) => match class_for(target, e) {
                ErrorClass::Exhausted => Self::Exhausted,
                ErrorClass::Config => Self::Disabled(e.to_string()),
                _ => Self::None,
            },
            Ok(()) => Self::None,
        }
    }
}

/// The snapshot as it will read once `outcome` is recorded, for the budget
/// an event shows while the ledger cannot be read.
fn counted(before: &Snapshot, target: &ClearTarget, outcome: &Outcome) -> Snapshot {
    let spent = matches!(outcome, Outcome::Ok | Outcome::Ambiguous { .. });
    let mut after = before.clone();
    if spent && *target == ClearTarget::Full {
        after.month_used += 1;
        after.day_used += 1;
    }
    after
}

/// How an answer is handled for this target. A 48006 from `openapi/quota/clear`
/// means only its own budget (50 a month) is spent (SPEC section 1): the
/// single-API attempt failed, the month is not exhausted, and a full clear may
/// follow. The ledger keeps the errcode, which is what stops later single-API
/// clears ([`Snapshot::api_exhausted`]).
fn class_for(target: &ClearTarget, e: &WeChatError) -> ErrorClass {
    match (target, e.class()) {
        (ClearTarget::Api { .. }, ErrorClass::Exhausted) => ErrorClass::Fatal,
        (_, class) => class,
    }
}

fn outcome_of(result: &Result<(), WeChatError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(e) if e.class() == ErrorClass::Ambiguous => Outcome::Ambiguous {
            detail: e.to_string(),
        },
        Err(e) => Outcome::Failed {
            errcode: e.errcode(),
            errmsg: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::policy::PolicySettings;
    use crate::secret::Secret;
    use crate::settings::{AccountKind, Credential};
    use crate::store::{
        AttemptRecord, EpisodeRecord, HistoryFilter, Intent, LockoutNote, LockoutTotal,
        LogPosition, SqliteStore,
    };

    /// A real SQLite ledger whose outcome writes fail while `failing` > 0
    /// (a full disk, an unreachable database).
    struct FlakyLedger {
        inner: SqliteStore,
        failing: AtomicU32,
        /// Reads outside the lock see an empty month: what another process
        /// changes between a read and the lock.
        stale_reads: bool,
    }

    impl Store for FlakyLedger {
        fn reserve(
            &self,
            a: &AccountKey<'_>,
            i: &Intent,
            now: DateTime<Utc>,
            d: &mut dyn FnMut(&Snapshot) -> policy::Verdict,
        ) -> Result<(Snapshot, Reservation), StoreError> {
            self.inner.reserve(a, i, now, d)
        }
        fn finish(&self, id: AttemptId, o: &Outcome, at: DateTime<Utc>) -> Result<(), StoreError> {
            let failing = self.failing.load(Ordering::SeqCst);
            if failing > 0 {
                self.failing.store(failing - 1, Ordering::SeqCst);
                return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                    Some("database or disk is full".into()),
                )));
            }
            self.inner.finish(id, o, at)
        }
        fn snapshot(&self, a: &AccountKey<'_>, now: DateTime<Utc>) -> Result<Snapshot, StoreError> {
            match self.stale_reads {
                true => Ok(Snapshot::default()),
                false => self.inner.snapshot(a, now),
            }
        }
        fn mark_exhausted(&self, a: &AccountKey<'_>, now: DateTime<Utc>) -> Result<(), StoreError> {
            self.inner.mark_exhausted(a, now)
        }
        fn mark_disabled(
            &self,
            a: &AccountKey<'_>,
            why: &str,
            now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            self.inner.mark_disabled(a, why, now)
        }
        fn enable(&self, appid: &str) -> Result<bool, StoreError> {
            self.inner.enable(appid)
        }
        fn set_verified(&self, id: AttemptId, v: bool) -> Result<(), StoreError> {
            self.inner.set_verified(id, v)
        }
        fn history(&self, f: &HistoryFilter) -> Result<Vec<AttemptRecord>, StoreError> {
            self.inner.history(f)
        }
        fn recover(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
            self.inner.recover(now)
        }
        fn log_position(&self, s: &str, p: &str) -> Result<Option<LogPosition>, StoreError> {
            self.inner.log_position(s, p)
        }
        fn save_log_position(&self, s: &str, p: &str, pos: &LogPosition) -> Result<(), StoreError> {
            self.inner.save_log_position(s, p, pos)
        }
        fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping()
        }
        fn set_list(&self, set: &str) -> Result<Option<String>, StoreError> {
            self.inner.set_list(set)
        }
        fn save_set_list(&self, s: &str, l: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
            self.inner.save_set_list(s, l, at)
        }
        fn note_lockout(&self, a: &AccountKey<'_>, n: &LockoutNote) -> Result<(), StoreError> {
            self.inner.note_lockout(a, n)
        }
        fn episodes(
            &self,
            f: &HistoryFilter,
            now: DateTime<Utc>,
        ) -> Result<Vec<EpisodeRecord>, StoreError> {
            self.inner.episodes(f, now)
        }
        fn lockout_totals(&self, now: DateTime<Utc>) -> Result<Vec<LockoutTotal>, StoreError> {
            self.inner.lockout_totals(now)
        }
        fn claim_report(&self, a: &str, m: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
            self.inner.claim_report(a, m, now)
        }
        fn fleet(
            &self,
            p: &crate::calendar::Period,
            now: DateTime<Utc>,
        ) -> Result<crate::store::Fleet, StoreError> {
            self.inner.fleet(p, now)
        }
        fn pacing_memories(&self) -> Result<Vec<(String, String)>, StoreError> {
            self.inner.pacing_memories()
        }
        fn merge_pacing_notes(
            &self,
            a: &str,
            r: &str,
            n: &[(u64, crate::pacing::Note)],
            tz: Tz,
            at: DateTime<Utc>,
        ) -> Result<u64, StoreError> {
            self.inner.merge_pacing_notes(a, r, n, tz, at)
        }
    }

    /// WeChat that clears every time and counts the calls.
    #[derive(Default)]
    struct FakeWeChat(AtomicU32);

    #[async_trait::async_trait]
    impl ClearApi for FakeWeChat {
        async fn clear(&self, _: &Account, _: &ClearTarget) -> Result<(), WeChatError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[derive(Default)]
    struct Collected(Mutex<Vec<EventKind>>);

    impl EventSink for Collected {
        fn publish(&self, event: &Event) {
            self.0.lock().unwrap().push(event.kind);
        }
    }

    fn account() -> Arc<Account> {
        Arc::new(Account {
            name: "shop".into(),
            appid: "wx448f04719cd48f69".into(),
            kind: AccountKind::MiniProgram,
            credential: Credential::Secret(Secret::new("s")),
            token: None,
            notify: Vec::new(),
            policy: PolicySettings {
                reset_guard: Duration::ZERO,
                ..PolicySettings::default()
            },
            fingerprint: "fp".into(),
        })
    }

    /// The clearer under test, in Beijing time, retrying outcome writes fast.
    fn clearer(
        store: Arc<FlakyLedger>,
        wechat: Arc<FakeWeChat>,
        events: Arc<dyn EventSink>,
    ) -> Clearer {
        Clearer {
            store,
            wechat,
            metrics: Arc::new(Metrics::new()),
            events,
            timezone: chrono_tz::Asia::Shanghai,
            outcome_retry: Duration::from_millis(20),
            health: Default::default(),
            clock: Default::default(),
        }
    }

    fn request() -> ClearRequest {
        ClearRequest {
            source: "test".into(),
            trigger: "45009".into(),
            evidence: 1,
            cgi_path: None,
            manual: false,
            force: false,
            dry_run: false,
            keys: Vec::new(),
            pacing: None,
        }
    }

    /// Issue 11: WeChat cleared but the ledger refused the outcome. The
    /// `cleared` event still goes out, the write is retried until it lands,
    /// and single-flight holds meanwhile (the row is pending, not forgotten).
    #[tokio::test]
    async fn an_outcome_the_ledger_refuses_is_notified_and_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(FlakyLedger {
            inner: SqliteStore::open(&dir.path().join("l.db")).unwrap(),
            failing: AtomicU32::new(3),
            stale_reads: false,
        });
        let wechat = Arc::new(FakeWeChat::default());
        let events = Arc::new(Collected::default());
        let clearer = clearer(ledger.clone(), wechat.clone(), events.clone());
        let account = account();
        let report = clearer.handle(&account, request()).await.unwrap();
        assert_eq!(report.outcome, Some(Outcome::Ok));
        assert_eq!(report.budget.left, 7, "the spent clear is counted");
        assert_eq!(*events.0.lock().unwrap(), [EventKind::Cleared]);

        let again = clearer.handle(&account, request()).await.unwrap();
        assert_eq!(
            again.decision,
            Decision::Skip(SkipReason::Duplicate),
            "still in flight"
        );

        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let history = loop {
            let h = ledger.history(&HistoryFilter::default()).unwrap();
            if h[0].outcome != "pending" || std::time::Instant::now() > deadline {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!((history.len(), history[0].outcome.as_str()), (1, "ok"));
        assert_eq!(
            ledger.failing.load(Ordering::SeqCst),
            0,
            "tried until it landed"
        );
        assert_eq!(wechat.0.load(Ordering::SeqCst), 1, "one clear, never two");
    }

    /// Issue 11: with `prefer = "api"`, the single-API budget spent by
    /// another process after a read outside the lock must not turn into
    /// `monthly_cap` for the month: the target is chosen under the lock and
    /// falls back to a full clear.
    #[tokio::test]
    async fn the_target_is_chosen_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(FlakyLedger {
            inner: SqliteStore::open(&dir.path().join("l.db")).unwrap(),
            failing: AtomicU32::new(0),
            stale_reads: true,
        });
        let mut settings = (*account()).clone();
        settings.policy.prefer = policy::Prefer::Api;
        settings.policy.api_monthly_cap = 1;
        let account = Arc::new(settings);
        // The other process's single-API clear, the last one allowed.
        let tz = chrono_tz::Asia::Shanghai;
        let api = ClearTarget::Api {
            cgi_path: "/cgi-bin/message/custom/send".into(),
        };
        let intent = Intent {
            source: "other".into(),
            evidence: 1,
            ..Intent::default()
        };
        let (_, reservation) = ledger
            .inner
            .reserve(&key(&account, tz), &intent, Utc::now(), &mut |_| {
                policy::Verdict::Clear(api.clone())
            })
            .unwrap();
        let Reservation::Clear { id, .. } = reservation else {
            panic!("{reservation:?}")
        };
        ledger.inner.finish(id, &Outcome::Ok, Utc::now()).unwrap();

        let clearer = clearer(ledger.clone(), Arc::default(), Arc::new(NoEvents));
        let req = ClearRequest {
            cgi_path: Some("/cgi-bin/message/custom/send".into()),
            ..request()
        };
        let report = clearer.handle(&account, req).await.unwrap();
        assert_eq!(report.decision, Decision::Clear);
        assert_eq!(report.target, ClearTarget::Full);
        let rows = ledger.inner.history(&HistoryFilter::default()).unwrap();
        assert_eq!(
            rows[0].target,
            ClearTarget::Full,
            "the row records the chosen target"
        );
    }
}
