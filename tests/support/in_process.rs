//! The daemon inside the test's own runtime, on tokio's paused clock:
//! `Daemon::start`, then `Daemon::run` on 127.0.0.1:0 with the test holding
//! its shutdown token and reload channel. For behaviour that takes minutes of
//! timers (rate limits, retries, backoff) or of the daemon's clock
//! (cooldowns, evidence windows: the daemon decides on a `Clock::tokio`);
//! crashes, systemd and the CLI keep the real binary ([`super::daemon`]).
//!
//! Determinism: a paused current-thread runtime with no task to run polls its
//! I/O once without waiting, and if that woke no task and no `spawn_blocking`
//! task is running, it jumps the clock to the next timer (`tokio::time::pause`,
//! "Auto-advance" and "Preventing auto-advance"). Loopback I/O between tasks
//! of one runtime is usually ready by then, but nothing promises it, and a
//! jump during a request can fire its timeout. So the launcher keeps one
//! blocking task waiting for the daemon's life: the clock moves only in
//! [`InProcess::advance`], which a test calls once the daemon is quiescent
//! (what it waited for has been seen at a fake or in `/metrics`); waits for
//! effects run on the real clock ([`InProcess::until`]); and each request the
//! test sends has its own connection, so no idle keep-alive connection is
//! closed by a timer an advance passes.
//!
//! Tests run with `#[tokio::test(start_paused = true)]`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use quotawatch::app::Daemon;
use quotawatch::clock::Clock;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::daemon::Env;

/// How long [`InProcess::until`] and [`InProcess::stop`] wait on the real clock.
const REAL_WAIT: Duration = Duration::from_secs(10);

/// A daemon running in the test's runtime; stopped (without waiting) when dropped.
pub struct InProcess {
    pub addr: SocketAddr,
    /// Each send is a SIGHUP: reload the config file.
    pub reload: tokio::sync::mpsc::Sender<()>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
    /// Dropping it ends the blocking task that stops auto-advance.
    _hold: mpsc::Sender<()>,
}

impl InProcess {
    /// Loads `env`'s config (its `daemon.listen` is ignored) and runs the
    /// daemon until [`InProcess::stop`], deciding on a clock that starts at
    /// the wall clock's now and follows tokio's.
    pub async fn start(env: &Env) -> InProcess {
        Self::start_at(env, chrono::Utc::now()).await
    }

    /// [`InProcess::start`] with the daemon's clock starting at `at`: its
    /// cooldowns, windows and day boundaries follow [`InProcess::advance`].
    pub async fn start_at(env: &Env, at: chrono::DateTime<chrono::Utc>) -> InProcess {
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC"] {
            assert!(
                std::env::var_os(var).is_none(),
                "${var} is set: the in-process daemon would talk to the test runner's systemd"
            );
        }
        let (hold, held) = mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        });
        let config = quotawatch::config::load(&env.config).expect("the test's config is valid");
        let daemon = Daemon::start(config)
            .await
            .expect("daemon starts")
            .with_clock(Clock::tokio(at));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let (reload, reload_rx) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(daemon.run(listener, shutdown.clone(), reload_rx));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let d = InProcess {
            addr,
            reload,
            shutdown,
            task: Some(task),
            http,
            _hold: hold,
        };
        let (http, url) = (&d.http, &d.url("/readyz"));
        d.until("the daemon answers /readyz", || async move {
            let answer = http.get(url).send().await;
            answer.is_ok_and(|r| r.status().is_success())
        })
        .await;
        d
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a JSON body (a hook's payload, an API signal); returns the status.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> u16 {
        let response = self.http.post(self.url(path)).json(body).send().await;
        response.expect("the daemon answers").status().as_u16()
    }

    /// The value of one `/metrics` series, written as it appears there
    /// (`name{label="value",...}`); 0 when it has not been counted yet.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("the daemon answers")
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().expect("a counter"))
    }

    /// Moves the paused clock; the timers it makes due fire at the runtime's
    /// next turn, so what they do shows only later: assert arrival times
    /// rather than an absence seen just after. Call it only when the daemon
    /// is quiescent (see the module docs).
    pub async fn advance(&self, by: Duration) {
        tokio::time::advance(by).await;
    }

    /// Waits on the real clock, the paused one standing still, until `check`
    /// holds; panics naming `what` after 10 s.
    pub async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + REAL_WAIT;
        while !check().await {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            real_pause().await;
        }
    }

    /// The stop step (SIGTERM): cancels the shutdown token and returns what
    /// `Daemon::run` returned. Panics if it takes 10 s of real time: a stop
    /// that waits for a timer needs an [`InProcess::advance`] first.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("stopped once");
        let deadline = std::time::Instant::now() + REAL_WAIT;
        while !task.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not stop"
            );
            real_pause().await;
        }
        task.await.expect("the daemon's task did not panic")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A few milliseconds of real time, during which the runtime serves I/O.
async fn real_pause() {
    tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(5)))
        .await
        .unwrap();
}
