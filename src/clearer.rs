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
use crate::config::Account;
use crate::event::{Budget, ClearTarget, Event, EventKind, Outcome};
use crate::metrics::Metrics;
use crate::policy::{self, Decision, Prefer, SkipReason, Snapshot};
use crate::store::{AccountKey, AttemptId, Intent, Store, StoreError};
use crate::wechat::{ErrorClass, WeChat, WeChatError};

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
    pub wechat: Arc<WeChat>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<dyn EventSink>,
    pub timezone: Tz,
}

impl Clearer {
    pub async fn handle(
        &self,
        account: &Arc<Account>,
        req: ClearRequest,
    ) -> Result<Report, ClearError> {
        let now = Utc::now();
        let target = self.choose_target(account, &req, now).await?;
        let (snapshot, decision, attempt) = self.reserve(account, &req, &target, now).await?;
        let outcome_label = match decision {
            Decision::Clear => "clear",
            Decision::Skip(_) => "skip",
        };
        let reason = match decision {
            Decision::Clear => "policy",
            Decision::Skip(r) => r.as_str(),
        };
        self.metrics.decision(outcome_label, reason);
        let mut report = Report {
            decision,
            target: target.clone(),
            attempt,
            outcome: None,
            budget: self.budget(account, &snapshot, now),
            next_clear_at: None,
            events: Vec::new(),
        };
        match (decision, attempt) {
            (Decision::Skip(reason), _) => {
                self.skipped(account, &req, &snapshot, reason, now, &mut report)
            }
            (Decision::Clear, Some(id)) => {
                self.attempt(account, &req, &snapshot, id, &mut report)
                    .await?
            }
            (Decision::Clear, None) => {
                unreachable!("the store returns an attempt id with every clear decision")
            }
        }
        for event in &report.events {
            self.events.publish(event);
        }
        Ok(report)
    }

    /// `prefer = "api"` with a named API and single-API budget left: that API
    /// first; otherwise a full clear.
    async fn choose_target(
        &self,
        account: &Arc<Account>,
        req: &ClearRequest,
        now: DateTime<Utc>,
    ) -> Result<ClearTarget, ClearError> {
        let Some(cgi_path) = req.cgi_path.clone() else {
            return Ok(ClearTarget::Full);
        };
        if account.policy.prefer != Prefer::Api {
            return Ok(ClearTarget::Full);
        }
        let snapshot = self.snapshot(account, now).await?;
        if snapshot.api_exhausted || snapshot.api_month_used >= account.policy.api_monthly_cap {
            return Ok(ClearTarget::Full);
        }
        Ok(ClearTarget::Api { cgi_path })
    }

    pub async fn snapshot(
        &self,
        account: &Arc<Account>,
        now: DateTime<Utc>,
    ) -> Result<Snapshot, ClearError> {
        self.with_store(account, move |store, key| store.snapshot(key, now))
            .await
    }

    /// Runs ledger work for `account` on the blocking pool: SQLite waits on
    /// its lock and fsync, which must not stall the runtime's workers.
    async fn with_store<T, F>(&self, account: &Arc<Account>, work: F) -> Result<T, ClearError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store, &AccountKey<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        let account = account.clone();
        let tz = self.timezone;
        tokio::task::spawn_blocking(move || work(store.as_ref(), &key(&account, tz)))
            .await
            .map_err(|e| ClearError::Join(e.to_string()))?
            .map_err(ClearError::from)
    }

    async fn reserve(
        &self,
        account: &Arc<Account>,
        req: &ClearRequest,
        target: &ClearTarget,
        now: DateTime<Utc>,
    ) -> Result<(Snapshot, Decision, Option<AttemptId>), ClearError> {
        let settings = account.clone();
        let tz = self.timezone;
        let req = req.clone();
        let intent = Intent {
            target: target.clone(),
            source: req.source.clone(),
            trigger: req.trigger.clone(),
            evidence: req.evidence,
            forced: req.force,
        };
        self.with_store(account, move |store, key| {
            store.reserve(key, &intent, now, &mut |snapshot| {
                policy::decide(&policy_input(
                    &settings,
                    &req,
                    &intent.target,
                    snapshot,
                    tz,
                    now,
                ))
            })
        })
        .await
    }

    fn skipped(
        &self,
        account: &Account,
        req: &ClearRequest,
        snapshot: &Snapshot,
        reason: SkipReason,
        now: DateTime<Utc>,
        report: &mut Report,
    ) {
        let input = policy_input(account, req, &report.target, snapshot, self.timezone, now);
        report.next_clear_at = policy::next_possible_clear(&input, reason);
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
            target = ?report.target, attempt = id, evidence = req.evidence, "Clearing quota"
        );
        let result = self.wechat.clear(account, &report.target).await;
        let outcome = outcome_of(&result);
        let done = Utc::now();
        self.finish(account, id, &report.target, &outcome, &result, done)
            .await?;
        self.metrics.clear(&account.name, outcome.label());
        let after = self.snapshot(account, done).await?;
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
        Ok(())
    }

    /// Records the outcome, then the account flags a WeChat answer implies.
    async fn finish(
        &self,
        account: &Arc<Account>,
        id: AttemptId,
        target: &ClearTarget,
        outcome: &Outcome,
        result: &Result<(), WeChatError>,
        at: DateTime<Utc>,
    ) -> Result<(), ClearError> {
        let outcome = outcome.clone();
        let class = result
            .as_ref()
            .err()
            .map(|e| (class_for(target, e), e.to_string()));
        self.with_store(account, move |store, key| {
            store.finish(id, &outcome, at)?;
            match class {
                Some((ErrorClass::Exhausted, _)) => store.mark_exhausted(key, at),
                Some((ErrorClass::Config, why)) => store.mark_disabled(key, &why, at),
                _ => Ok(()),
            }
        })
        .await
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
            skip_reason: None,
            outcome: None,
            errcode: None,
            errmsg: None,
            budget: report.budget.clone(),
            next_clear_at: report.next_clear_at,
            route: account.notify.clone(),
        }
    }

    fn budget(&self, account: &Account, snapshot: &Snapshot, now: DateTime<Utc>) -> Budget {
        let cap = account.policy.monthly_cap;
        Budget {
            used: snapshot.month_used,
            cap,
            left: cap.saturating_sub(snapshot.month_used),
            month: calendar::month_label(self.timezone, now),
        }
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
    req: &ClearRequest,
    target: &ClearTarget,
    snapshot: &'a Snapshot,
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
        timezone: tz,
        now,
    }
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
