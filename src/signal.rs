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
