//! The HTTP listener: serves the [`crate::http`] router under bounds that no
//! client can outgrow, so idle or slow sockets cannot lock alerts out.
//!
//! - A connection waiting for a request's headers (a new connection, or a
//!   keep-alive one between requests) is closed after `header_read_timeout`:
//!   hyper's own timer, which `axum::serve` does not set.
//! - A request, body included, must be answered within `request_timeout`
//!   (408 otherwise), so a body trickled a byte at a time is bounded too.
//! - At most `max_connections` sockets are open: a permit is taken before
//!   each `accept` and given back only once the socket is closed. At the
//!   bound, the oldest connection with no request in progress is closed to
//!   make room, and the next `accept` waits for its socket to be gone: a flood
//!   of stalled sockets displaces itself, not the next alert, and the file
//!   limit is never reached. When every connection is busy, new ones wait in
//!   the kernel's backlog until one finishes (the request timeout bounds it).
//! - `accept` errors (`EMFILE` when the file limit is reached anyway) are
//!   logged once per burst and retried after a pause, never fatal.
//!
//! It does not route, authenticate or decide: that is [`crate::http`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// File descriptors kept free beside the connections: the ledger, log files,
/// the WeChat and chat clients, the journal.
pub const FD_RESERVE: u64 = 64;

/// What a client may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
}

impl Limits {
    /// `max_connections` from the config, lowered to fit under the process's
    /// file limit with [`FD_RESERVE`] to spare.
    pub fn fitted(max_connections: usize, nofile: u64) -> Self {
        let room = nofile.saturating_sub(FD_RESERVE).max(1);
        Self {
            max_connections: max_connections.min(usize::try_from(room).unwrap_or(usize::MAX)),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (systemd's default soft
/// limit is 1024 whatever `LimitNOFILE` allows) and returns the soft limit
/// now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// One open connection, as the admission rule sees it.
struct Open {
    /// Requests in progress; 0 means it waits for headers and may be evicted.
    busy: Arc<AtomicUsize>,
    /// Cancelled to close it at once.
    close: CancellationToken,
}

/// Open connections by accept order (a lower id is older).
#[derive(Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Open>,
}

impl Registry {
    /// Closes the oldest connection with no request in progress; false when
    /// every connection is busy.
    fn evict_idle(&mut self) -> bool {
        let idle = self
            .open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(evicted) => {
                evicted.close.cancel();
                true
            }
            None => false,
        }
    }

    fn admit(&mut self) -> (u64, Arc<AtomicUsize>, CancellationToken) {
        let id = self.next;
        self.next += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let close = CancellationToken::new();
        self.open.insert(
            id,
            Open {
                busy: busy.clone(),
                close: close.clone(),
            },
        );
        (id, busy, close)
    }
}

/// Counts a request in progress for as long as it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `stop`, then lets open connections finish
/// their requests (the caller bounds how long it waits for this to return).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let tracker = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_failing = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !lock(&registry).evict_idle() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "Every connection is busy; new ones wait"
                    );
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !std::mem::replace(&mut accept_failing, true) {
                        tracing::error!(error = %e, "Cannot accept connections; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        accept_failing = false;
        let (id, busy, close) = lock(&registry).admit();
        let conn = Connection {
            builder: builder.clone(),
            app: app.clone(),
            limits,
            busy,
            close,
            stop: stop.clone(),
        };
        let registry = registry.clone();
        tracker.spawn(async move {
            conn.run(stream).await;
            lock(&registry).open.remove(&id);
            // The socket is closed: its place is free.
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

fn lock(registry: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    limits: Limits,
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
    stop: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let (app, busy, timeout) = (self.app, self.busy, self.limits.request_timeout);
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            let busy = Busy::new(&busy);
            async move {
                let answer = tokio::time::timeout(timeout, app.oneshot(req)).await;
                drop(busy);
                Ok::<Response, Infallible>(match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => request_timed_out(),
                })
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            // Evicted to make room: drop the socket.
            _ = self.close.cancelled() => {}
            _ = self.stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

fn request_timed_out() -> Response {
    (
        axum::http::StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({ "error": "the request took too long to arrive" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_limits_stay_under_the_file_limit() {
        let cases = [
            (1024, 20_000, 1024),
            (1024, 1024, 960),
            (10, 1024, 10),
            (5, 10, 1),
        ];
        for (max, nofile, want) in cases {
            assert_eq!(
                Limits::fitted(max, nofile).max_connections,
                want,
                "{max} {nofile}"
            );
        }
    }

    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let mut r = Registry::default();
        let (a, a_busy, a_close) = r.admit();
        let (_, _, b_close) = r.admit();
        let (c, c_busy, c_close) = r.admit();
        a_busy.fetch_add(1, Ordering::SeqCst);
        assert!(r.evict_idle(), "b is idle");
        assert!(b_close.is_cancelled() && !a_close.is_cancelled());
        assert_eq!(r.open.keys().copied().collect::<Vec<_>>(), [a, c]);
        c_busy.fetch_add(1, Ordering::SeqCst);
        assert!(!r.evict_idle(), "all busy: nothing to close");
        assert!(!c_close.is_cancelled());
    }
}
