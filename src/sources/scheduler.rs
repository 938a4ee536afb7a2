//! Runs the scheduled sources (`log_file`, `prometheus`, `wechat_quota`) on
//! tokio-cron-scheduler, each on its own cron expression in `daemon.timezone`.
//!
//! A run that would overlap the previous run of the same source is skipped,
//! not stacked. [`ScheduledSources::shutdown`] stops the schedule, cancels
//! runs in flight at their next safe point and waits (bounded) for them: the
//! daemon calls it at shutdown and before a reload starts the new set. This
//! module does not read files or talk HTTP; the sources do.
//!
//! tokio-cron-scheduler turns the time zone into its UTC offset when a job is
//! created: right for Asia/Shanghai (no DST); in a zone with DST the schedule
//! is an hour off after a change until the next reload. It also reads the
//! wall clock, so tests of the schedule run in real time with one-second
//! cron expressions; each source's `run_once` is tested directly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{report, Poller, QuotaReadings, RunHealth, SourceContext, SourceSpec};

/// How long [`ScheduledSources::shutdown`] waits for runs in flight. Runs
/// stop at their next safe point once cancelled, so this is only a bound for
/// a stuck filesystem or a peer that ignores the client timeout.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cannot start the source scheduler: {0}")]
    Scheduler(String),
    #[error("source `{source_name}`: cannot schedule `{expr}`: {error}")]
    Job {
        source_name: String,
        expr: String,
        error: String,
    },
    #[error("source `{source_name}`: {error}")]
    Build { source_name: String, error: String },
}

/// The running scheduled sources of one configuration generation.
pub struct ScheduledSources {
    /// A child of the context's shutdown token: cancelled by [`Self::shutdown`]
    /// or by whoever cancels the context's token.
    cancel: CancellationToken,
    /// Owns the scheduler: builds it, starts it, and stops it on `cancel`.
    supervisor: tokio::task::JoinHandle<()>,
    readings: QuotaReadings,
    names: Vec<String>,
}

/// Starts every scheduled source of `sources` on its cron schedule in
/// `ctx.timezone`. Must be called within a tokio runtime; returns at once
/// (the scheduler is built on a task of its own). A source that cannot be
/// built or scheduled is reported in source health and logged; the others
/// run.
///
/// Webhook sources are not started here: the HTTP server serves them.
pub fn start_scheduled(
    ctx: SourceContext,
    sources: &BTreeMap<String, SourceSpec>,
) -> ScheduledSources {
    let cancel = ctx.shutdown.child_token();
    let readings = ctx.readings.clone();
    let ctx = SourceContext {
        shutdown: cancel.clone(),
        ..ctx
    };
    let pollers = build_pollers(&ctx, sources);
    let names = pollers.iter().map(|(p, _)| p.name().to_string()).collect();
    let supervisor = tokio::spawn(supervise(ctx, pollers));
    ScheduledSources {
        cancel,
        supervisor,
        readings,
        names,
    }
}

impl ScheduledSources {
    /// The names of the sources this set runs.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The quota readings this set's `wechat_quota` sources record: give them
    /// to [`crate::verify::QuotaVerifier::with_readings`] so a verification compares
    /// with the last reading before the clear.
    pub fn quota_readings(&self) -> QuotaReadings {
        self.readings.clone()
    }

    /// Stops the schedule, cancels runs in flight and waits (bounded) for
    /// them to reach a safe point: a log position saved, polls not yet sent
    /// dropped.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let mut supervisor = self.supervisor;
        if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), &mut supervisor)
            .await
            .is_err()
        {
            tracing::warn!("Scheduled sources did not stop in time; leaving them");
            supervisor.abort();
        }
    }
}

/// Runs the scheduler until `ctx.shutdown` is cancelled, then stops it and
/// waits for the runs in flight.
async fn supervise(ctx: SourceContext, pollers: Vec<(Arc<dyn Poller>, String)>) {
    if pollers.is_empty() {
        return;
    }
    let runs = TaskTracker::new();
    let mut scheduler = match schedule(&ctx, pollers, &runs).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "Scheduled sources are not running");
            return;
        }
    };
    ctx.shutdown.cancelled().await;
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "Source scheduler did not stop cleanly");
    }
    runs.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, runs.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            runs = runs.len(),
            "Scheduled source runs still busy at shutdown; leaving them"
        );
    }
}

async fn schedule(
    ctx: &SourceContext,
    pollers: Vec<(Arc<dyn Poller>, String)>,
    runs: &TaskTracker,
) -> Result<JobScheduler, ScheduleError> {
    let scheduler = JobScheduler::new()
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    for (poller, expr) in pollers {
        let added = match job(
            ctx,
            poller.clone(),
            &expr,
            ctx.shutdown.clone(),
            runs.clone(),
        ) {
            Ok(job) => scheduler
                .add(job)
                .await
                .map(drop)
                .map_err(|e| ScheduleError::Job {
                    source_name: poller.name().to_string(),
                    expr: expr.clone(),
                    error: e.to_string(),
                }),
            Err(e) => Err(e),
        };
        match added {
            Ok(()) => {
                tracing::info!(source = %poller.name(), schedule = %expr, "Scheduled source started")
            }
            Err(e) => report(ctx, poller.name(), RunHealth::Failed(e.to_string())),
        }
    }
    scheduler
        .start()
        .await
        .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
    Ok(scheduler)
}

fn build_pollers(
    ctx: &SourceContext,
    sources: &BTreeMap<String, SourceSpec>,
) -> Vec<(Arc<dyn Poller>, String)> {
    let mut out: Vec<(Arc<dyn Poller>, String)> = Vec::new();
    for (name, spec) in sources {
        match spec.start(ctx) {
            Ok(Some(s)) => out.push((s.poller, s.schedule)),
            Ok(None) => {}
            Err(error) => {
                let e = ScheduleError::Build {
                    source_name: name.clone(),
                    error,
                };
                report(ctx, name, RunHealth::Failed(e.to_string()));
            }
        }
    }
    out
}

/// A cron job that runs `poller` unless its previous run is still going.
fn job(
    ctx: &SourceContext,
    poller: Arc<dyn Poller>,
    expr: &str,
    cancel: CancellationToken,
    runs: TaskTracker,
) -> Result<Job, ScheduleError> {
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    let source_name = poller.name().to_string();
    Job::new_async_tz(expr, ctx.timezone, move |id, mut scheduler| {
        let poller = poller.clone();
        let busy = busy.clone();
        let cancel = cancel.clone();
        let runs = runs.clone();
        Box::pin(async move {
            let Ok(_running) = busy.try_lock_owned() else {
                tracing::info!(source = %poller.name(), "Previous run still going; skipping this one");
                return;
            };
            if cancel.is_cancelled() {
                return;
            }
            // The scheduler moves a job's next tick on a task of its own
            // after firing it, so right at the start of a run it may still
            // show the tick that fired: ask again briefly.
            let mut interval = Duration::ZERO;
            for _ in 0..10 {
                let next = scheduler.next_tick_for_job(id).await.ok().flatten();
                if let Some(left) = next.and_then(|t| (t - Utc::now()).to_std().ok()) {
                    interval = left;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            runs.track_future(poller.poll(interval)).await;
        })
    })
    .map_err(|e| ScheduleError::Job { source_name, expr: expr.to_string(), error: e.to_string() })
}
