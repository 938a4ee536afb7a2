//! The `wechat_quota` source: polls `openapi/quota/get` for each listed
//! account and cgi_path and signals the APIs that are running out, and keeps
//! the last readings that [`crate::verify::QuotaVerifier`] compares a clear
//! with.
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
use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use serde::{Deserialize, Serialize};

use super::{report, Poller, RunHealth, Scheduled, Source, SourceConfig, SourceContext};
use crate::settings::{Account, Accounts, Checker};
use crate::signal::Signal;
use crate::wechat::{Quota, QuotaReading, WeChatError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeChatQuotaConfig {
    pub accounts: Option<Vec<String>>,
    pub cgi_paths: Option<Vec<String>>,
    pub remain_below: Option<WrittenThreshold>,
    pub schedule: Option<String>,
    pub concurrency: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WrittenThreshold {
    Count(i64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemainBelow {
    /// A percentage of `daily_limit`.
    Percent(f64),
    Count(u64),
}

#[derive(Debug, Clone, Serialize)]
pub struct WeChatQuotaSpec {
    pub name: String,
    /// Account config names, and `@NAME` for an account set's members.
    pub accounts: Vec<String>,
    pub cgi_paths: Vec<String>,
    pub remain_below: RemainBelow,
    pub schedule: String,
    /// Quota reads in flight at once.
    pub concurrency: usize,
}

impl SourceConfig for WeChatQuotaConfig {
    type Spec = WeChatQuotaSpec;

    fn validate(
        self,
        name: &str,
        p: &str,
        ck: &mut Checker<'_>,
        accounts: &Accounts,
    ) -> Option<WeChatQuotaSpec> {
        let names = ck
            .required(&format!("{p}.accounts"), self.accounts)
            .unwrap_or_default();
        let mut resolved = Vec::new();
        for a in names {
            // An account set's members change while the daemon runs: the
            // set itself is checked with the other sets.
            if a.starts_with('@') {
                resolved.push(a);
                continue;
            }
            match accounts.find(&a) {
                Some(acc) => resolved.push(acc.name.clone()),
                None => {
                    ck.err::<()>(
                        &format!("{p}.accounts"),
                        format!("names `{a}`, which is not a configured account"),
                    );
                }
            }
        }
        let cgi_paths = ck
            .required(&format!("{p}.cgi_paths"), self.cgi_paths)
            .unwrap_or_default();
        for c in &cgi_paths {
            if !c.starts_with('/') {
                ck.err::<()>(
                    &format!("{p}.cgi_paths"),
                    format!("`{c}` is not a path like /cgi-bin/message/custom/send"),
                );
            }
        }
        let remain_below = match &self.remain_below {
            None => RemainBelow::Percent(1.0),
            Some(written) => written.validate(ck, &format!("{p}.remain_below")),
        };
        let schedule =
            super::schedule(ck, &format!("{p}.schedule"), self.schedule, "0 */5 * * * *");
        let concurrency = ck.count(&format!("{p}.concurrency"), self.concurrency, 256, 8);
        Some(WeChatQuotaSpec {
            name: name.to_string(),
            accounts: resolved,
            cgi_paths,
            remain_below,
            schedule,
            concurrency,
        })
    }
}

impl WrittenThreshold {
    /// A count, or a percentage of `daily_limit` written as "1%".
    fn validate(&self, ck: &mut Checker<'_>, key: &str) -> RemainBelow {
        let fallback = RemainBelow::Percent(1.0);
        match self {
            WrittenThreshold::Count(n) if *n >= 0 => RemainBelow::Count(*n as u64),
            WrittenThreshold::Count(n) => ck
                .err(key, format!("must not be negative, got {n}"))
                .unwrap_or(fallback),
            WrittenThreshold::Text(t) => match parse_remain(t) {
                Some(RemainBelow::Count(n)) if n > MAX_REMAIN_COUNT => ck
                    .err(
                        key,
                        format!(
                            "`{t}` is more than {MAX_REMAIN_COUNT}, the largest count it takes"
                        ),
                    )
                    .unwrap_or(fallback),
                Some(r) => r,
                None => ck
                    .err(
                        key,
                        format!("`{t}` is not a percentage (\"1%\") or a count"),
                    )
                    .unwrap_or(fallback),
            },
        }
    }
}

impl Source for WeChatQuotaSpec {
    fn start(&self, ctx: &SourceContext) -> Result<Option<Scheduled>, String> {
        let source = WeChatQuotaSource::new(self.clone(), ctx.clone(), ctx.readings.clone());
        Ok(Some(Scheduled::new(source, &self.schedule)))
    }
}

/// The largest count `remain_below` takes: TOML's largest integer, so that the
/// string form takes what the integer form does and `check` can print it.
const MAX_REMAIN_COUNT: u64 = i64::MAX as u64;

fn parse_remain(text: &str) -> Option<RemainBelow> {
    let t = text.trim();
    match t.strip_suffix('%') {
        Some(pct) => pct
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| (0.0..=100.0).contains(v))
            .map(RemainBelow::Percent),
        None => t.parse::<u64>().ok().map(RemainBelow::Count),
    }
}

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
/// [`crate::verify::QuotaVerifier`] compares with. Cheap to clone.
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
    result: Result<QuotaReading, WeChatError>,
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
                        r = wechat.quota_reading(&account, &cgi_path) => r,
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
                    Ok(reading) => {
                        let quota = reading.quota;
                        self.ctx
                            .metrics
                            .api_quota(&poll.account.name, &poll.cgi_path, &reading);
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

    /// Each account's cgi_paths, in config order; an account set's
    /// (`@NAME`) members as they are at this run.
    fn targets(&self) -> Vec<(Arc<Account>, Vec<String>)> {
        let accounts = self.ctx.accounts.now();
        let mut names: Vec<&String> = Vec::new();
        for entry in &self.spec.accounts {
            match entry.strip_prefix('@') {
                Some(set) => names.extend(accounts.set_members(set).unwrap_or_default()),
                None => names.push(entry),
            }
        }
        names
            .into_iter()
            .filter_map(|name| accounts.get(name))
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
        let date = now.with_timezone(&self.ctx.timezone).format("%Y-%m-%d");
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
