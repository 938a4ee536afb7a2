//! Signals: evidence that an account ran out of quota, from any source.
//!
//! Sources (webhooks, pollers, the API) turn what they see into [`Signal`]s and
//! push them on a bounded queue; the dispatcher groups them per account into
//! evidence windows and asks the clearer. This module holds the type and the
//! queue; it does not decide anything.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One piece of evidence that an account's quota is exhausted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    /// The account as the source named it: a config name or an appid.
    pub account: String,
    /// The `[sources.NAME]` it came from, or "api".
    pub source: String,
    /// Free text: the alert name, the matched pattern, ...
    pub reason: String,
    /// Evidence events this signal stands for (a counter's increase, matched lines).
    pub count: u32,
    /// The one API that is exhausted, when the source knows it.
    pub cgi_path: Option<String>,
    /// Idempotency key: the same key within the window is a duplicate.
    pub key: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// The bounded queue between sources and the dispatcher.
#[derive(Clone)]
pub struct SignalQueue {
    tx: tokio::sync::mpsc::Sender<Signal>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the signal queue is full")]
    Full,
    #[error("the daemon is shutting down")]
    Closed,
}

impl SignalQueue {
    pub fn new(
        capacity: usize,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> (Self, tokio::sync::mpsc::Receiver<Signal>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        (Self { tx, metrics }, rx)
    }

    /// How many signals fit right now: a webhook batch larger than this is
    /// refused before its signals are built.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// For webhooks: never waits, so a full queue becomes a 503 at once.
    pub fn try_push(&self, signal: Signal) -> Result<(), QueueError> {
        let source = signal.source.clone();
        self.tx.try_send(signal).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => QueueError::Full,
            tokio::sync::mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })?;
        self.metrics.signal(&source, 1);
        Ok(())
    }

    /// Reserves room for `n` signals at once, so a webhook batch is queued whole
    /// or not at all.
    pub fn try_push_all(&self, signals: Vec<Signal>) -> Result<(), QueueError> {
        if signals.is_empty() {
            return Ok(());
        }
        let permits = self
            .tx
            .try_reserve_many(signals.len())
            .map_err(|e| match e {
                tokio::sync::mpsc::error::TrySendError::Full(_) => QueueError::Full,
                tokio::sync::mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            })?;
        for (permit, signal) in permits.zip(signals) {
            self.metrics.signal(&signal.source, 1);
            permit.send(signal);
        }
        Ok(())
    }

    /// For pollers: waits for room (back-pressure instead of loss).
    pub async fn push(&self, signal: Signal) -> Result<(), QueueError> {
        let source = signal.source.clone();
        self.tx.send(signal).await.map_err(|_| QueueError::Closed)?;
        self.metrics.signal(&source, 1);
        Ok(())
    }
}
