//! Wires the daemon from a [`Config`]: ledger, WeChat client, clearer,
//! notifiers, dispatcher, scheduled sources and the HTTP server; owns the main
//! loop with its shutdown, reload and watchdog.
//!
//! [`Daemon::run`] takes the listener and the shutdown token as arguments so
//! tests control both. A reload validates the new config first and keeps the
//! old one when it is bad; evidence windows and in-flight clears survive it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clearer::{Clearer, EventSink};
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::dispatcher::{Dispatcher, Runtime};
use crate::event::Event;
use crate::http::{self, HttpState};
use crate::lifecycle;
use crate::listener::{self, Limits};
use crate::metrics::Metrics;
use crate::notify::{self, Notifiers, NotifyContext};
use crate::sets::{self, refresh::Sets};
use crate::settings::LiveAccounts;
use crate::signal::SignalQueue;
use crate::sources::{self, SourceContext, SourceHealth};
use crate::store::{LedgerHealth, Store};
use crate::wechat::WeChat;

impl EventSink for Notifiers {
    fn publish(&self, event: &Event) {
        Notifiers::publish(self, event);
    }
}

/// Sends each event to several sinks (notifiers, the quota verifier).
pub struct FanOut(pub Vec<Arc<dyn EventSink>>);

impl EventSink for FanOut {
    fn publish(&self, event: &Event) {
        self.0.iter().for_each(|s| s.publish(event));
    }
}

fn notify_context(config: &Config, metrics: Arc<Metrics>) -> NotifyContext {
    NotifyContext {
        metrics,
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        timezone: config.daemon.timezone,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
    }
}

/// Notifiers for a one-shot command such as `quotawatch clear`.
pub fn command_notifiers(config: &Config) -> Notifiers {
    Notifiers::start(
        &config.notifiers,
        notify_context(config, Arc::new(Metrics::new())),
    )
}

pub async fn notify_test(config: &Config, name: &str) -> anyhow::Result<i32> {
    let spec = config
        .notifiers
        .get(name)
        .with_context(|| format!("no notifier `{name}` in the config"))?;
    let ctx = notify_context(config, Arc::new(Metrics::new()));
    match notify::send_test(spec, &ctx).await {
        Ok(answer) => {
            println!("{name}: sent; the platform answered: {answer}");
            Ok(0)
        }
        Err(e) => {
            println!("{name}: failed: {e}");
            Ok(crate::EXIT_FAILURE)
        }
    }
}

/// `quotawatch run`: bind, wire, serve until SIGTERM or SIGINT.
pub async fn run_daemon(config: Config) -> anyhow::Result<i32> {
    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = mpsc::channel(1);
    lifecycle::spawn_os_signals(shutdown.clone(), reload_tx)
        .context("cannot install signal handlers")?;
    let listener = TcpListener::bind(config.daemon.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.daemon.listen))?;
    let daemon = Daemon::start(config).await?;
    daemon.run(listener, shutdown, reload_rx).await?;
    Ok(0)
}

/// The parts rebuilt on reload.
struct Generation {
    runtime: Runtime,
    notifiers: Notifiers,
    /// Taken (and stopped) before a reload starts the next generation's.
    sources: Option<sources::ScheduledSources>,
    /// Cancels this generation's sources and account set refreshes.
    sources_stop: CancellationToken,
    /// Reads the account sets' lists.
    wechat: Arc<WeChat>,
    /// The sources' view of the accounts, which a set's refresh updates.
    accounts: LiveAccounts,
    /// The account sets' refresh tasks, started once the runtime is published.
    set_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the start step set running, for the reload and stop steps.
struct Running {
    gen: Generation,
    /// Shared with the account sets' refreshes, which swap the account map.
    runtime_tx: Arc<watch::Sender<Runtime>>,
    /// In-flight clears and the lockout writer.
    tracker: TaskTracker,
    dispatch_stop: CancellationToken,
    dispatch_task: tokio::task::JoinHandle<()>,
    reports: tokio::task::JoinHandle<()>,
    ready: Arc<AtomicBool>,
    http_stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    probe: tokio::task::JoinHandle<()>,
}

pub struct Daemon {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    health: SourceHealth,
    /// The account sets' last good lists and health; kept across reloads.
    sets: Sets,
    /// Whether the ledger answers; kept across reloads.
    ledger: Arc<LedgerHealth>,
    queue: SignalQueue,
    signal_rx: Option<mpsc::Receiver<crate::signal::Signal>>,
    /// The soft file limit, raised to the hard one at start.
    nofile: u64,
    /// What "now" is for the decision path: the wall clock, or a test's.
    clock: Clock,
}

impl Daemon {
    /// Opens the ledger (recovering attempts a crash left pending).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let store = crate::store::open(&config.daemon.state)?;
        let recovered = store.recover(Utc::now())?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "Attempts left pending by a stopped process are now ambiguous and count as spent"
            );
        }
        let metrics = Arc::new(Metrics::new());
        let (queue, signal_rx) = SignalQueue::new(config.daemon.queue_capacity, metrics.clone());
        Ok(Self {
            config: Arc::new(config),
            store,
            metrics,
            health: SourceHealth::default(),
            sets: Sets::default(),
            ledger: Arc::default(),
            queue,
            signal_rx: Some(signal_rx),
            nofile: listener::raise_nofile_limit(),
            clock: Clock::System,
        })
    }

    /// Decides on `clock` instead of the wall clock: [`Clock::tokio`] lets a
    /// test on tokio's paused clock move cooldowns and windows with
    /// `tokio::time::advance`.
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    fn build(&self, config: Arc<Config>) -> anyhow::Result<Generation> {
        let config = self.with_set_members(config);
        let notifiers = Notifiers::start(
            &config.notifiers,
            notify_context(&config, self.metrics.clone()),
        );
        let wechat = Arc::new(WeChat::new(&config.wechat)?);
        let accounts = LiveAccounts::from(Arc::new(config.accounts.clone()));
        // Sources removed by a reload must not linger in /readyz.
        self.health.remove_all();
        let sources_stop = CancellationToken::new();
        let sources = sources::start_scheduled(
            SourceContext {
                accounts: accounts.clone(),
                timezone: config.daemon.timezone,
                signals: self.queue.clone(),
                metrics: self.metrics.clone(),
                store: self.store.clone(),
                wechat: wechat.clone(),
                health: self.health.clone(),
                readings: Default::default(),
                shutdown: sources_stop.clone(),
            },
            &config.sources,
        );
        // The verifier compares a clear against the pollers' last readings.
        let verifier =
            crate::verify::QuotaVerifier::new(config.clone(), self.store.clone(), wechat.clone())
                .with_readings(sources.quota_readings());
        let events: Arc<dyn EventSink> = Arc::new(FanOut(vec![
            Arc::new(notifiers.clone()),
            Arc::new(verifier),
        ]));
        let clearer = Arc::new(Clearer {
            store: self.store.clone(),
            wechat: wechat.clone(),
            metrics: self.metrics.clone(),
            events,
            timezone: config.daemon.timezone,
            outcome_retry: crate::clearer::OUTCOME_RETRY,
            health: self.ledger.clone(),
            clock: self.clock.clone(),
        });
        self.publish_budgets(&config);
        Ok(Generation {
            runtime: Runtime { config, clearer },
            notifiers,
            sources: Some(sources),
            sources_stop,
            wechat,
            accounts,
            set_tasks: Vec::new(),
        })
    }

    /// `config` with its account sets' members as the daemon knows them: a
    /// reload does not forget a list it cannot read again.
    fn with_set_members(&self, config: Arc<Config>) -> Arc<Config> {
        if config.account_sets.is_empty() {
            return config;
        }
        let (accounts, notes) = self.sets.adopt(
            &config.configured,
            &config.account_sets,
            self.store.as_ref(),
        );
        for note in &notes {
            tracing::warn!(note = %note, "Account set member");
        }
        let mut next = (*config).clone();
        next.accounts = accounts;
        next.notes = notes;
        Arc::new(next)
    }

    /// Starts the account sets' refreshes of `gen`, which publish a changed
    /// list by swapping the runtime's account map (nothing else changes).
    fn start_sets(&self, gen: &mut Generation, runtime_tx: &Arc<watch::Sender<Runtime>>) {
        let (tx, live) = (runtime_tx.clone(), gen.accounts.clone());
        let (store, metrics, clock) =
            (self.store.clone(), self.metrics.clone(), self.clock.clone());
        let publish: sets::refresh::Publish = Arc::new(move |members| {
            let mut added = Vec::new();
            let tz = tx.borrow().config.daemon.timezone;
            tx.send_modify(|rt| {
                let mut config = (*rt.config).clone();
                let (accounts, notes) = sets::merge_with(&config.configured, members);
                added = accounts
                    .values()
                    .filter(|a| !config.accounts.contains_key(&a.name))
                    .cloned()
                    .collect();
                for gone in config
                    .accounts
                    .keys()
                    .filter(|n| !accounts.contains_key(*n))
                {
                    metrics.forget_budget(gone);
                }
                live.replace(Arc::new(accounts.clone()));
                config.accounts = accounts;
                config.notes = notes;
                rt.config = Arc::new(config);
            });
            // New members' budgets, off the refresh's way as at start.
            let (store, metrics, now) = (store.clone(), metrics.clone(), clock.now());
            tokio::task::spawn_blocking(move || {
                publish_budgets(&*store, &metrics, added.iter(), tz, now)
            });
        });
        let ctx = sets::refresh::RefreshContext {
            sets: self.sets.clone(),
            store: self.store.clone(),
            wechat: gen.wechat.clone(),
            metrics: self.metrics.clone(),
            publish,
            shutdown: gen.sources_stop.clone(),
        };
        let config = &gen.runtime.config;
        gen.set_tasks = sets::refresh::start(&ctx, &config.account_sets, &config.configured);
    }

    fn publish_budgets(&self, config: &Config) {
        let (now, tz) = (self.clock.now(), config.daemon.timezone);
        publish_budgets(
            &*self.store,
            &self.metrics,
            config.accounts.values(),
            tz,
            now,
        );
    }

    fn summary(config: &Config) -> String {
        let dry = config
            .accounts
            .values()
            .filter(|a| a.policy.dry_run)
            .count();
        let dry = match dry {
            0 => String::new(),
            n if n == config.accounts.len() => " (all in dry run)".to_string(),
            n => format!(" ({n} in dry run)"),
        };
        format!(
            "watching {}{dry}, {}, {}",
            count(config.accounts.len(), "account"),
            count(config.sources.len(), "source"),
            count(config.notifiers.len(), "notifier"),
        )
    }

    /// Runs until `shutdown`: the start step, then reloads on `reload`, then
    /// the stop step.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
        mut reload: mpsc::Receiver<()>,
    ) -> anyhow::Result<()> {
        let mut running = self.serve(listener)?;
        let mut watchdog = lifecycle::watchdog_period().map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(()) = reload.recv() => self.reload(&mut running).await?,
                _ = tick(&mut watchdog) => lifecycle::watchdog(),
            }
        }
        self.stop(running).await;
        Ok(())
    }

    /// The start step: the first generation, the dispatcher, the HTTP
    /// listener and the background tasks; READY once they are up.
    fn serve(&mut self, listener: TcpListener) -> anyhow::Result<Running> {
        let mut gen = self.build(self.config.clone())?;
        let (runtime_tx, runtime_rx) = watch::channel(gen.runtime.clone());
        let runtime_tx = Arc::new(runtime_tx);
        self.start_sets(&mut gen, &runtime_tx);
        let tracker = TaskTracker::new();
        let dispatch_stop = CancellationToken::new();
        let dispatcher = Dispatcher::new(runtime_rx.clone(), self.metrics.clone(), tracker.clone());
        let signal_rx = self.signal_rx.take().context("the daemon runs once")?;
        let dispatch_task = tokio::spawn(dispatcher.run(signal_rx, dispatch_stop.clone()));
        let reports = tokio::spawn(crate::report::run(
            runtime_rx.clone(),
            dispatch_stop.clone(),
        ));

        let ready = Arc::new(AtomicBool::new(false));
        let app = http::router(HttpState {
            runtime: runtime_rx,
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            sets: self.sets.clone(),
            ready: ready.clone(),
        });
        let http_stop = CancellationToken::new();
        let addr = listener.local_addr()?;
        let limits = Limits::fitted(self.config.daemon.max_connections, self.nofile);
        tracing::info!(
            max_connections = limits.max_connections,
            file_limit = self.nofile,
            "Connection bounds set"
        );
        let server = tokio::spawn(listener::serve(listener, app, limits, http_stop.clone()));
        let probe = tokio::spawn(probe_ledger(
            self.store.clone(),
            self.ledger.clone(),
            http_stop.clone(),
        ));
        ready.store(true, Ordering::SeqCst);
        let summary = Self::summary(&self.config);
        tracing::info!(listen = %addr, state = %self.config.daemon.state, summary = %summary, "quotawatch is ready");
        lifecycle::ready(&summary);
        Ok(Running {
            gen,
            runtime_tx,
            tracker,
            dispatch_stop,
            dispatch_task,
            reports,
            ready,
            http_stop,
            server,
            probe,
        })
    }

    /// The reload step (SIGHUP): a valid new config replaces the generation;
    /// an invalid one keeps the old.
    async fn reload(&mut self, running: &mut Running) -> anyhow::Result<()> {
        let Some(next) = self.reload_config(&running.gen.runtime.config) else {
            return Ok(());
        };
        // Stop the old pollers first: two log readers on one file would count twice.
        running.gen.sources_stop.cancel();
        if let Some(old_sources) = running.gen.sources.take() {
            old_sources.shutdown().await;
        }
        for task in running.gen.set_tasks.drain(..) {
            let _ = task.await;
        }
        let next_gen = match self.build(next.clone()) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %crate::error_chain::display(e.as_ref()), "Reload failed; keeping the old configuration");
                self.build(running.gen.runtime.config.clone())?
            }
        };
        let old = std::mem::replace(&mut running.gen, next_gen);
        self.config = running.gen.runtime.config.clone();
        running.runtime_tx.send_replace(running.gen.runtime.clone());
        let runtime_tx = running.runtime_tx.clone();
        self.start_sets(&mut running.gen, &runtime_tx);
        old.notifiers.shutdown(Duration::from_secs(5)).await;
        // The old generation's configuration goes before its memory is
        // given back (the dispatcher may hold its runtime a moment longer).
        drop(old);
        let summary = Self::summary(&self.config);
        tracing::info!(summary = %summary, "Configuration reloaded");
        crate::memory::release();
        lifecycle::ready(&summary);
        Ok(())
    }

    /// The stop step (SIGTERM): stop taking signals, let in-flight clears
    /// record their outcomes, flush notifications, all within
    /// `shutdown_timeout`.
    async fn stop(&self, mut running: Running) {
        lifecycle::stopping();
        running.ready.store(false, Ordering::SeqCst);
        let timeout = self.config.daemon.shutdown_timeout;
        running.http_stop.cancel();
        running.gen.sources_stop.cancel();
        if let Some(s) = running.gen.sources.take() {
            s.shutdown().await;
        }
        for task in running.gen.set_tasks.drain(..) {
            let _ = task.await;
        }
        running.dispatch_stop.cancel();
        let _ = running.dispatch_task.await;
        running.tracker.close();
        if tokio::time::timeout(timeout, running.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(timeout = %humantime::format_duration(timeout), "In-flight clears did not finish in time; the ledger keeps them pending and the next start counts them as ambiguous");
        }
        running.gen.notifiers.shutdown(timeout).await;
        if tokio::time::timeout(Duration::from_secs(5), running.server)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections did not close in time");
        }
        let _ = running.probe.await;
        let _ = running.reports.await;
        tracing::info!("quotawatch stopped");
    }

    /// SIGHUP: the new config must load and validate, else the old one stays.
    fn reload_config(&self, current: &Config) -> Option<Arc<Config>> {
        lifecycle::reloading();
        let next = match config::load(&current.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(config = %current.path.display(), error = %e, "Reload refused: the new config is invalid; keeping the old one");
                lifecycle::ready(&format!("{} (last reload failed)", Self::summary(current)));
                return None;
            }
        };
        let restart = current.daemon.restart_needed(&next.daemon);
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "daemon.listen and daemon.state take effect at the next restart, not on reload"
            );
        }
        Some(Arc::new(next))
    }
}

/// `quotawatch_budget_remaining` of each account, from its ledger snapshot
/// alone: the rest of the status (its episodes) is not needed here, and this
/// runs per account at every start, reload, and for a set's new members.
fn publish_budgets<'a>(
    store: &dyn Store,
    metrics: &Metrics,
    accounts: impl Iterator<Item = &'a Arc<crate::settings::Account>>,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
) {
    for account in accounts {
        if let Ok(s) = store.snapshot(&crate::clearer::key(account, tz), now) {
            let budget = crate::clearer::budget(account, &s, tz, now);
            metrics.budget(&account.name, budget.left);
        }
    }
}

/// How often the ledger is checked while it answers, and while it does not.
const PROBE_UP: Duration = Duration::from_secs(5);
const PROBE_DOWN: Duration = Duration::from_secs(1);

/// Checks the ledger on a timer, so that a lost database is noticed (and
/// hooks refuse signals) before a decision needs it, and a returned one is
/// noticed without waiting for a signal that hooks are refusing.
async fn probe_ledger(store: Arc<dyn Store>, health: Arc<LedgerHealth>, stop: CancellationToken) {
    loop {
        let wait = match health.unreachable() {
            Some(_) => PROBE_DOWN,
            None => PROBE_UP,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let store = store.clone();
        if let Ok(result) = tokio::task::spawn_blocking(move || store.ping()).await {
            health.observe(&result);
        }
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// "1 account", "2 accounts": the summary is read by people (the log,
/// `systemctl status`).
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_read_as_words() {
        for (n, want) in [(0, "0 accounts"), (1, "1 account"), (2, "2 accounts")] {
            assert_eq!(super::count(n, "account"), want);
        }
    }
}
