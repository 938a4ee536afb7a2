//! Signal sources: webhook payload parsers (served by [`crate::http`]) and
//! scheduled pollers (log files, Prometheus, WeChat's quota API).
//!
//! Every source turns what it sees into [`crate::signal::Signal`]s on the
//! [`SignalQueue`]; none decides anything. Scheduled sources run on
//! tokio-cron-scheduler in `daemon.timezone`, report errors through
//! [`SourceHealth`] and metrics without stopping the daemon, and stop on the
//! context's shutdown token.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::signal::SignalQueue;
use crate::store::Store;
use crate::wechat::WeChat;

/// What a scheduled source needs from the daemon.
#[derive(Clone)]
pub struct SourceContext {
    pub config: Arc<Config>,
    pub signals: SignalQueue,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub wechat: Arc<WeChat>,
    pub health: SourceHealth,
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

pub mod log_file;
pub mod prometheus;
pub mod scheduler;
pub mod webhook;
pub mod wechat_quota;

pub use scheduler::{start_scheduled, ScheduleError, ScheduledSources};
pub use wechat_quota::QuotaReadings;
