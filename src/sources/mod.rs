//! Signal sources: webhook payload parsers (served by [`crate::http`]) and
//! scheduled pollers (log files, Prometheus, WeChat's quota API).
//!
//! Every source turns what it sees into [`crate::signal::Signal`]s on the
//! [`SignalQueue`]; none decides anything. Scheduled sources run on
//! tokio-cron-scheduler in `daemon.timezone` ([`scheduler`]), report errors
//! through [`SourceHealth`] and metrics without stopping the daemon, and stop
//! on the context's shutdown token.
//!
//! # Layout
//!
//! - this file: the family. [`SourceConfig`] (what a type's `[sources.NAME]`
//!   table is and how it validates), [`Source`] (how a validated source
//!   starts), [`Poller`] (one scheduled run), the [`SourceContext`] every
//!   source runs with, [`SourceHealth`], and the registry: one line per type,
//!   which makes the `type = "..."` names, [`SourceType`] and
//!   [`SourceSpec`].
//! - one file per member, each holding its config struct, validation, start
//!   and behaviour: [`webhook`] (`alertmanager`, `grafana`, `generic`),
//!   [`log_file`], [`prometheus`], [`wechat_quota`].
//! - [`scheduler`]: runs the pollers on their cron schedules.
//!
//! A new source type is a copy of a sibling file, its `mod` line and one
//! line in the registry below.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::settings::{is_name, keys_of, Accounts, Checker, Choice, LiveAccounts, Table};
use crate::signal::SignalQueue;
use crate::store::Store;
use crate::wechat::WeChat;

pub mod log_file;
pub mod prometheus;
pub mod scheduler;
pub mod webhook;
pub mod wechat_quota;

pub use scheduler::{start_scheduled, ScheduleError, ScheduledSources};
pub use wechat_quota::QuotaReadings;

/// A source type's `[sources.NAME]` table as written (less `type`): a serde
/// struct with `deny_unknown_fields`, checked into the type's settings.
pub trait SourceConfig: DeserializeOwned {
    /// The validated settings, with nothing left to unwrap: what the source
    /// runs with and `check` prints.
    type Spec: Source;

    /// Checks the table; `at` is its key (`sources.NAME`), for errors.
    fn validate(
        self,
        name: &str,
        at: &str,
        ck: &mut Checker<'_>,
        accounts: &Accounts,
    ) -> Option<Self::Spec>;
}

/// A validated source.
pub trait Source: std::fmt::Debug + Clone + Serialize {
    /// Builds the running source: a poller and its cron schedule, or `None`
    /// for a source the HTTP surface serves. An error is reported in source
    /// health; the other sources run.
    fn start(&self, ctx: &SourceContext) -> Result<Option<Scheduled>, String>;

    /// The webhook settings, for a source served at `/hooks/NAME`.
    fn webhook(&self) -> Option<&webhook::WebhookSpec> {
        None
    }
}

/// A poller and when it runs.
pub struct Scheduled {
    pub poller: Arc<dyn Poller>,
    /// Cron with seconds, in `daemon.timezone`.
    pub schedule: String,
}

impl Scheduled {
    pub fn new(poller: impl Poller + 'static, schedule: &str) -> Self {
        Self {
            poller: Arc::new(poller),
            schedule: schedule.to_string(),
        }
    }
}

/// One scheduled source, as the scheduler sees it.
#[async_trait]
pub trait Poller: Send + Sync {
    /// The `[sources.NAME]` key.
    fn name(&self) -> &str;

    /// One run. `interval` is the time until the next scheduled run (zero when
    /// unknown): a source that spreads its work (`wechat_quota`) stays within
    /// it. A run stops early when the context's shutdown token is cancelled.
    async fn poll(&self, interval: Duration);
}

/// `[sources.NAME]` as written, kept whole until its `type` is known: read
/// as a serde enum tagged by `type`, the table would be buffered and a wrong
/// type inside it reported at `sources.NAME`, without its key or line, and
/// the rest of the file left unchecked.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct SourceTable(Table);

/// The key every source has.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TypeKey {
    #[serde(rename = "type")]
    kind: Option<Choice<SourceType>>,
}

/// The registry: `Variant(member::Config)`, one line a source type; the
/// variant's snake_case name is the `type` users write.
macro_rules! registry {
    ($($(#[$attr:meta])* $variant:ident($config:ty),)+) => {
        /// A source's `type`: one per registered member.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum SourceType {
            $($(#[$attr])* $variant,)+
        }

        /// A validated source of any type.
        #[derive(Debug, Clone, Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum SourceSpec {
            $($(#[$attr])* $variant(<$config as SourceConfig>::Spec),)+
        }

        impl SourceType {
            /// Every registered type, in the order of the list.
            pub const ALL: &'static [SourceType] = &[$($(#[$attr])* Self::$variant,)+];

            /// The keys a source of this type takes besides `type`.
            pub fn keys(self) -> &'static [&'static str] {
                match self {
                    $($(#[$attr])* Self::$variant => keys_of::<$config>(),)+
                }
            }

            fn validate(
                self,
                name: &str,
                at: &str,
                ck: &mut Checker<'_>,
                accounts: &Accounts,
                table: Table,
            ) -> Option<SourceSpec> {
                match self {
                    $($(#[$attr])* Self::$variant => {
                        let config: $config = ck.table(at, table)?;
                        config.validate(name, at, ck, accounts).map(SourceSpec::$variant)
                    })+
                }
            }
        }

        impl SourceSpec {
            pub fn start(&self, ctx: &SourceContext) -> Result<Option<Scheduled>, String> {
                match self {
                    $($(#[$attr])* Self::$variant(s) => s.start(ctx),)+
                }
            }

            pub fn webhook(&self) -> Option<&webhook::WebhookSpec> {
                match self {
                    $($(#[$attr])* Self::$variant(s) => s.webhook(),)+
                }
            }
        }
    };
}

registry! {
    Alertmanager(webhook::AlertmanagerConfig),
    Grafana(webhook::GrafanaConfig),
    Generic(webhook::GenericConfig),
    LogFile(log_file::LogFileConfig),
    Prometheus(prometheus::PrometheusConfig),
    WechatQuota(wechat_quota::WeChatQuotaConfig),
    #[cfg(test)]
    Throwaway(throwaway::ThrowawayConfig),
}

#[cfg(test)]
mod throwaway;

/// Checks every `[sources.NAME]` table; the ones with a problem are left out
/// (the problem is in `ck`).
pub fn validate(
    ck: &mut Checker<'_>,
    raw: BTreeMap<String, SourceTable>,
    accounts: &Accounts,
) -> BTreeMap<String, SourceSpec> {
    let mut out = BTreeMap::new();
    for (name, SourceTable(mut table)) in raw {
        let at = format!("sources.{name}");
        if !is_name(&name) {
            ck.err::<()>(
                &at,
                "source names use letters, digits, '-' and '_' (they appear in /hooks/NAME)",
            );
        }
        let Some(written) = ck.table::<TypeKey>(&at, table.split_off(&["type"])) else {
            continue;
        };
        let key = format!("{at}.type");
        let Some(kind) = ck
            .required(&key, written.kind)
            .and_then(|kind| ck.known(&key, &kind))
        else {
            ck.unknown_keys(&at, &table, SourceType::ALL.iter().map(|t| t.keys()));
            continue;
        };
        if let Some(spec) = kind.validate(&name, &at, ck, accounts, table) {
            out.insert(name, spec);
        }
    }
    out
}

/// A `schedule` key: cron with seconds as the scheduler reads it, `default`
/// when unset.
pub fn schedule(ck: &mut Checker<'_>, key: &str, value: Option<String>, default: &str) -> String {
    let text = value.unwrap_or_else(|| default.to_string());
    if let Err(e) = validate_schedule(&text) {
        ck.err::<()>(
            key,
            format!("`{text}` is not a cron expression with seconds (\"0 */5 * * * *\"): {e}"),
        );
    }
    text
}

/// What a scheduled source needs from the daemon.
#[derive(Clone)]
pub struct SourceContext {
    /// The accounts signals may name, by name or appid, as they are now
    /// (account sets change them while sources run).
    pub accounts: LiveAccounts,
    /// `daemon.timezone`: schedules run in it; WeChat's day ends in it.
    pub timezone: chrono_tz::Tz,
    pub signals: SignalQueue,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub wechat: Arc<WeChat>,
    pub health: SourceHealth,
    /// Where this generation's `wechat_quota` sources record their readings,
    /// for the verifier to compare a clear with.
    pub readings: QuotaReadings,
    /// Cancelled at shutdown and before a reload rebuilds the sources.
    pub shutdown: CancellationToken,
}

impl SourceContext {
    /// Queues a poller's signal, waiting for room; false once the source
    /// should stop (shutdown, or the queue closed).
    pub async fn send(&self, signal: crate::signal::Signal) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            r = self.signals.push(signal) => r.is_ok(),
        }
    }
}

/// The last error of each source (None when its last run worked), for
/// `/readyz` details. Cheap to clone.
#[derive(Clone, Default)]
pub struct SourceHealth(Arc<Mutex<BTreeMap<String, Option<String>>>>);

impl SourceHealth {
    /// Records a run's result; returns true when the state changed, so callers
    /// log once per change rather than once per tick.
    pub fn set(&self, source: &str, error: Option<String>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let changed = map.get(source) != Some(&error);
        map.insert(source.to_string(), error);
        changed
    }

    pub fn snapshot(&self) -> BTreeMap<String, Option<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn remove_all(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Checks a cron expression with a seconds field, as the scheduler reads it.
pub fn validate_schedule(expr: &str) -> Result<(), String> {
    tokio_cron_scheduler::Job::new(expr, |_, _| {})
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What a run found out about its source, for `/readyz` and `/metrics`.
pub(crate) enum RunHealth {
    Ok,
    /// Expected to pass (a log file not created yet): logged at info.
    Waiting(String),
    Failed(String),
}

/// Records a run's health; logs only when the state changes, so a Prometheus
/// that stays down is one line in the log, not one per tick.
pub(crate) fn report(ctx: &SourceContext, source: &str, health: RunHealth) {
    let error = match &health {
        RunHealth::Ok => None,
        RunHealth::Waiting(e) | RunHealth::Failed(e) => Some(e.clone()),
    };
    ctx.metrics.source_state(source, error.is_none());
    if !ctx.health.set(source, error) {
        return;
    }
    match health {
        RunHealth::Ok => tracing::info!(source, "Source works"),
        RunHealth::Waiting(e) => tracing::info!(source, state = %e, "Source waiting"),
        RunHealth::Failed(e) => {
            tracing::warn!(source, error = %e, "Source failed; retrying on schedule")
        }
    }
}
