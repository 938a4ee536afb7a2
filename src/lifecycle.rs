//! OS signals and systemd notify: SIGTERM/SIGINT cancel the shutdown token,
//! SIGHUP asks for a reload, and the daemon tells systemd READY, RELOADING,
//! STOPPING, STATUS and WATCHDOG. Every notify is a no-op without
//! `$NOTIFY_SOCKET`. Nothing here decides what a reload does: see [`crate::app`].

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Forwards SIGTERM and SIGINT to `shutdown`, SIGHUP to `reload`.
pub fn spawn_os_signals(
    shutdown: CancellationToken,
    reload: mpsc::Sender<()>,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!(signal = "SIGTERM", "Stopping"); shutdown.cancel(); }
                _ = int.recv() => { tracing::info!(signal = "SIGINT", "Stopping"); shutdown.cancel(); }
                _ = hup.recv() => { let _ = reload.try_send(()); }
            }
        }
    });
    Ok(())
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// Half of `$WATCHDOG_USEC`, the keep-alive period systemd recommends, when
/// the watchdog is on. As in libsystemd's `sd_watchdog_enabled`, an unset
/// `$WATCHDOG_PID` means the watchdog is for this process (the sd-notify
/// crate requires it to be set).
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse()
        .ok()
        .filter(|u| *u > 0)?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}
