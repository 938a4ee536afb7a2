//! The `wechat_quota` source: polls `openapi/quota/get` for each listed
//! account and cgi_path and signals the APIs that are running out; and
//! [`QuotaVerifier`], which re-reads the quota after a clear and records in
//! the ledger whether the clear took effect.
//!
//! When an API is low: `remain < threshold + 1% of daily_limit`, where the
//! threshold is `remain_below` (a percentage of `daily_limit`, or a count).
//! The margin is WeChat's documented ~1% error of real-time counts, taken on
//! the side of signalling early. An API with `daily_limit = 0` has no quota to
//! run out of and is never low. A low API's signal names its `cgi_path` (for
//! `prefer = "api"`) and carries the key `quota:{account}:{cgi_path}:{date}`
//! (date in `daemon.timezone`), so repeated polls within the dispatcher's
//! window are duplicates, not extra evidence.
//!
//! Polls are spread over 80% of the time until the next run, evenly with
//! jitter, at most `concurrency` at once, so a thousand accounts do not fire at
//! once. This module does not decide anything about clears.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::scheduler::{report, Poller, RunHealth};
use super::SourceContext;
use crate::clearer::EventSink;
use crate::config::{Account, Config, RemainBelow, SourceSpec, WeChatQuotaSpec};
use crate::event::{ClearTarget, Event, EventKind};
use crate::signal::Signal;
use crate::store::{HistoryFilter, Store};
use crate::wechat::{Quota, WeChat, WeChatError};

/// WeChat's real-time counts can be off by about this share of `daily_limit`.
const COUNT_ERROR: f64 = 0.01;

/// The share of the interval polls are spread over; the rest is slack so a
/// run ends before the next one is due.
const SPREAD: f64 = 0.8;

/// Whether a quota reading means the API is running out (see the module docs).
pub fn is_low(rule: RemainBelow, quota: &Quota) -> bool {
    if quota.daily_limit == 0 {
        return false;
    }
    let limit = quota.daily_limit as f64;
    let threshold = match rule {
        RemainBelow::Percent(p) => limit * p / 100.0,
        RemainBelow::Count(n) => n as f64,
    };
    (quota.remain as f64) < threshold + limit * COUNT_ERROR
}

/// The latest quota reading of each (appid, cgi_path): the "before" that
/// [`QuotaVerifier`] compares with. Cheap to clone.
#[derive(Clone, Default)]
pub struct QuotaReadings(Arc<Mutex<HashMap<(String, String), Quota>>>);

impl QuotaReadings {
    pub fn get(&self, appid: &str, cgi_path: &str) -> Option<Quota> {
        self.lock()
            .get(&(appid.to_string(), cgi_path.to_string()))
            .copied()
    }

    pub fn record(&self, appid: &str, cgi_path: &str, quota: Quota) {
        self.lock()
            .insert((appid.to_string(), cgi_path.to_string()), quota);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Quota>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct WeChatQuotaSource {
    spec: WeChatQuotaSpec,
    ctx: SourceContext,
    readings: QuotaReadings,
}

/// One quota read's result.
struct Poll {
    account: Arc<Account>,
    cgi_path: String,
    result: Result<Quota, WeChatError>,
}

impl WeChatQuotaSource {
    pub fn new(spec: WeChatQuotaSpec, ctx: SourceContext, readings: QuotaReadings) -> Self {
        Self {
            spec,
            ctx,
            readings,
        }
    }

    /// One run: every account, spread over `spread`; an account's APIs are
    /// read together so that one signal can say how many of them are low.
    pub async fn run_once(&self, spread: Duration) {
        let targets = self.targets();
        let n = targets.len().max(1) as f64;
        let permits = Arc::new(Semaphore::new(self.spec.concurrency.max(1)));
        let mut polls = JoinSet::new();
        for (i, (account, cgi_paths)) in targets.into_iter().enumerate() {
            let delay = spread.mul_f64((i as f64 + fastrand::f64()) / n);
            let (wechat, permits, cancel) = (
                self.ctx.wechat.clone(),
                permits.clone(),
                self.ctx.shutdown.clone(),
            );
            polls.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                let _permit = permits.acquire_owned().await.ok()?;
                let mut out = Vec::with_capacity(cgi_paths.len());
                for cgi_path in cgi_paths {
                    let result = tokio::select! {
                        _ = cancel.cancelled() => return None,
                        r = wechat.quota(&account, &cgi_path) => r,
                    };
                    out.push(Poll {
                        account: account.clone(),
                        cgi_path,
                        result,
                    });
                }
                Some(out)
            });
        }
        let (mut failed, mut total, mut first_error) = (0, 0, None);
        while let Some(joined) = polls.join_next().await {
            let Ok(Some(account_polls)) = joined else {
                continue;
            };
            let mut low = Vec::new();
            for poll in account_polls {
                total += 1;
                match poll.result {
                    Ok(quota) => {
                        self.readings
                            .record(&poll.account.appid, &poll.cgi_path, quota);
                        if is_low(self.spec.remain_below, &quota) {
                            low.push((poll.account, poll.cgi_path, quota));
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::debug!(source = %self.spec.name, account = %poll.account.name, cgi_path = %poll.cgi_path, error = %e, "Quota read failed");
                        first_error.get_or_insert_with(|| {
                            format!("{} {}: {e}", poll.account.name, poll.cgi_path)
                        });
                    }
                }
            }
            self.signal_low(low).await;
        }
        let health = match first_error {
            None => RunHealth::Ok,
            Some(e) => RunHealth::Failed(format!(
                "{failed} of {total} quota reads failed, first: {e}"
            )),
        };
        report(&self.ctx, &self.spec.name, health);
    }

    /// Each account's cgi_paths, in config order.
    fn targets(&self) -> Vec<(Arc<Account>, Vec<String>)> {
        self.spec
            .accounts
            .iter()
            .filter_map(|name| self.ctx.config.accounts.get(name))
            .map(|account| (account.clone(), self.spec.cgi_paths.clone()))
            .collect()
    }

    /// One signal per account: naming the API when exactly one is low (so
    /// `prefer = "api"` can clear just it), naming none when several are (a
    /// full clear serves them all).
    async fn signal_low(&self, low: Vec<(Arc<Account>, String, Quota)>) {
        let Some((account, _, _)) = low.first() else {
            return;
        };
        let account = account.clone();
        for (_, cgi_path, quota) in &low {
            tracing::info!(source = %self.spec.name, account = %account.name, appid = %account.appid, cgi_path = %cgi_path, remain = quota.remain, daily_limit = quota.daily_limit, "API quota low");
        }
        let now = Utc::now();
        let date = now
            .with_timezone(&self.ctx.config.daemon.timezone)
            .format("%Y-%m-%d");
        let paths: Vec<&str> = low.iter().map(|(_, p, _)| p.as_str()).collect();
        let (cgi_path, reason) = match low.as_slice() {
            [(_, path, quota)] => (
                Some(path.clone()),
                format!(
                    "quota: {} of {} left for {path}",
                    quota.remain, quota.daily_limit
                ),
            ),
            _ => (
                None,
                format!("quota low for {} APIs: {}", low.len(), paths.join(", ")),
            ),
        };
        let signal = Signal {
            account: account.name.clone(),
            source: self.spec.name.clone(),
            reason,
            count: low.len() as u32,
            cgi_path,
            key: Some(format!("quota:{}:{}:{date}", account.name, paths.join(","))),
            received_at: now,
        };
        self.ctx.send(signal).await;
    }
}

#[async_trait]
impl Poller for WeChatQuotaSource {
    fn name(&self) -> &str {
        &self.spec.name
    }

    async fn poll(&self, interval: Duration) {
        self.run_once(interval.mul_f64(SPREAD)).await;
    }
}

/// Re-reads the quota after a clear of an account that a `wechat_quota`
/// source watches and records in the ledger whether `used` dropped.
///
/// "Dropped" compares with the last reading of that API before the clear
/// (from [`QuotaVerifier::with_readings`]); without one, the API must no
/// longer be low by the source's rule. A full clear is verified when every
/// watched API dropped, a single-API clear when its API did. When a read
/// fails, nothing is recorded (verified stays unknown).
///
/// It is an [`EventSink`] for the daemon's event fan-out, built per
/// configuration generation. Verification runs on a task of its own;
/// `publish` never waits.
pub struct QuotaVerifier {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    wechat: Arc<WeChat>,
    readings: QuotaReadings,
    /// Wait this long after the clear before reading: WeChat's counts are
    /// near real time, not instant.
    delay: Duration,
}

impl QuotaVerifier {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>, wechat: Arc<WeChat>) -> Self {
        Self {
            config,
            store,
            wechat,
            readings: QuotaReadings::default(),
            delay: Duration::from_secs(3),
        }
    }

    /// Shares the readings the `wechat_quota` sources record
    /// ([`super::ScheduledSources::quota_readings`]).
    pub fn with_readings(mut self, readings: QuotaReadings) -> Self {
        self.readings = readings;
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl EventSink for QuotaVerifier {
    fn publish(&self, event: &Event) {
        if event.kind != EventKind::Cleared {
            return;
        }
        let Some((account, paths, rule)) = watched(&self.config, &event.appid, &event.target)
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Taken now: by the time the re-read runs, a poll may already have
        // recorded the post-clear counts.
        let before = paths
            .iter()
            .map(|p| self.readings.get(&account.appid, p))
            .collect();
        let job = Verification {
            store: self.store.clone(),
            wechat: self.wechat.clone(),
            readings: self.readings.clone(),
            before,
            account,
            paths,
            rule,
            target: event.target.clone(),
            cleared_at: event.at,
            delay: self.delay,
        };
        runtime.spawn(job.run());
    }
}

/// Which APIs to re-read after a clear of `appid`, and the low rule for them;
/// None when no `wechat_quota` source watches the account.
fn watched(
    config: &Config,
    appid: &str,
    target: &ClearTarget,
) -> Option<(Arc<Account>, Vec<String>, RemainBelow)> {
    let account = config.account(appid)?.clone();
    let mut paths: Vec<String> = Vec::new();
    let mut rule = None;
    for spec in config.sources.values() {
        let SourceSpec::WechatQuota(q) = spec else {
            continue;
        };
        if !q.accounts.contains(&account.name) {
            continue;
        }
        rule.get_or_insert(q.remain_below);
        for p in &q.cgi_paths {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
    }
    let rule = rule?;
    if let ClearTarget::Api { cgi_path } = target {
        paths = vec![cgi_path.clone()];
    }
    Some((account, paths, rule))
}

struct Verification {
    store: Arc<dyn Store>,
    wechat: Arc<WeChat>,
    readings: QuotaReadings,
    /// The last reading of each of `paths` when the clear was reported.
    before: Vec<Option<Quota>>,
    account: Arc<Account>,
    paths: Vec<String>,
    rule: RemainBelow,
    target: ClearTarget,
    cleared_at: DateTime<Utc>,
    delay: Duration,
}

impl Verification {
    async fn run(self) {
        tokio::time::sleep(self.delay).await;
        let Some(verified) = self.reread().await else {
            return;
        };
        let (account, appid) = (&self.account.name, &self.account.appid);
        match self.record(verified).await {
            Ok(Some(id)) if verified => {
                tracing::info!(account = %account, appid = %appid, attempt = id, "Clear verified: used dropped")
            }
            Ok(Some(id)) => {
                tracing::warn!(account = %account, appid = %appid, attempt = id, "Clear not verified: used did not drop")
            }
            Ok(None) => {
                tracing::warn!(account = %account, appid = %appid, "No ledger attempt matches the clear to verify")
            }
            Err(e) => {
                tracing::warn!(account = %account, appid = %appid, error = %e, "Cannot record the clear's verification")
            }
        }
    }

    /// Reads every API again; None when a read failed.
    async fn reread(&self) -> Option<bool> {
        let mut all_dropped = true;
        for (cgi_path, before) in self.paths.iter().zip(&self.before) {
            let after = match self.wechat.quota(&self.account, cgi_path).await {
                Ok(q) => q,
                Err(e) => {
                    tracing::warn!(account = %self.account.name, cgi_path = %cgi_path, error = %e, "Cannot read the quota to verify a clear");
                    return None;
                }
            };
            self.readings.record(&self.account.appid, cgi_path, after);
            all_dropped &= match before {
                Some(b) => after.used < b.used,
                None => !is_low(self.rule, &after),
            };
        }
        Some(all_dropped)
    }

    /// Marks the latest successful attempt of this target at or before the clear.
    async fn record(&self, verified: bool) -> Result<Option<i64>, String> {
        let store = self.store.clone();
        let filter = HistoryFilter {
            appid: Some(self.account.appid.clone()),
            until: Some(self.cleared_at + chrono::Duration::milliseconds(1)),
            limit: Some(10),
            ..HistoryFilter::default()
        };
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || {
            let history = store.history(&filter).map_err(|e| e.to_string())?;
            let Some(attempt) = history
                .iter()
                .find(|a| a.outcome == "ok" && a.target == target)
            else {
                return Ok(None);
            };
            store
                .set_verified(attempt.id, verified)
                .map_err(|e| e.to_string())?;
            Ok(Some(attempt.id))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(daily_limit: u64, remain: u64) -> Quota {
        Quota {
            daily_limit,
            used: daily_limit - remain,
            remain,
        }
    }

    #[test]
    fn low_allows_for_the_one_percent_error() {
        let cases = [
            // (rule, daily_limit, remain, low)
            (RemainBelow::Percent(1.0), 100_000, 0, true),
            (RemainBelow::Percent(1.0), 100_000, 999, true),
            (RemainBelow::Percent(1.0), 100_000, 1_999, true),
            (RemainBelow::Percent(1.0), 100_000, 2_000, false),
            (RemainBelow::Percent(10.0), 1_000, 109, true),
            (RemainBelow::Percent(10.0), 1_000, 110, false),
            (RemainBelow::Count(500), 100_000, 1_499, true),
            (RemainBelow::Count(500), 100_000, 1_500, false),
            (RemainBelow::Count(0), 50, 0, true),
            (RemainBelow::Count(0), 50, 1, false),
            (RemainBelow::Count(10), 0, 0, false),
        ];
        for (rule, limit, remain, low) in cases {
            assert_eq!(
                is_low(rule, &q(limit, remain)),
                low,
                "{rule:?} limit {limit} remain {remain}"
            );
        }
    }
}
