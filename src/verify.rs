//! After a clear: re-reads the quota of an account that a `wechat_quota`
//! source watches, and records in the ledger, on the attempt the clear's
//! event names, whether the clear took effect.

use std::sync::Arc;
use std::time::Duration;

use crate::clearer::EventSink;
use crate::config::Config;
use crate::event::{ClearTarget, Event, EventKind};
use crate::settings::Account;
use crate::sources::wechat_quota::RemainBelow;
use crate::sources::wechat_quota::{is_low, QuotaReadings};
use crate::sources::SourceSpec;
use crate::store::{AttemptId, Store};
use crate::wechat::{Quota, WeChat};

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
    /// ([`crate::sources::ScheduledSources::quota_readings`]).
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
        let (EventKind::Cleared, Some(attempt)) = (event.kind, event.attempt) else {
            return;
        };
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
            attempt,
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
    /// The ledger's attempt that cleared.
    attempt: AttemptId,
    delay: Duration,
}

impl Verification {
    async fn run(self) {
        tokio::time::sleep(self.delay).await;
        let Some(verified) = self.reread().await else {
            return;
        };
        let (account, appid, id) = (&self.account.name, &self.account.appid, self.attempt);
        match self.record(verified).await {
            Ok(()) if verified => {
                tracing::info!(account = %account, appid = %appid, attempt = id, "Clear verified: used dropped")
            }
            Ok(()) => {
                tracing::warn!(account = %account, appid = %appid, attempt = id, "Clear not verified: used did not drop")
            }
            Err(e) => {
                tracing::warn!(account = %account, appid = %appid, attempt = id, error = %e, "Cannot record the clear's verification")
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

    /// Marks the attempt the clear's event names.
    async fn record(&self, verified: bool) -> Result<(), String> {
        let (store, id) = (self.store.clone(), self.attempt);
        tokio::task::spawn_blocking(move || store.set_verified(id, verified))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}
