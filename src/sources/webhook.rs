//! Webhook payloads to signals: Alertmanager (v4), Grafana unified alerting,
//! and a generic JSON shape; plus the signature checks a source may require.
//!
//! Parsing is pure: bytes in, signals and a list of rejected alerts out. The
//! HTTP layer ([`crate::http`]) authenticates, queues and answers. Firing
//! alerts become signals; resolved ones are ignored; alerts that name no known
//! account are reported back, never silently dropped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{Config, SignatureScheme, WebhookFormat, WebhookSpec};
use crate::signal::Signal;

/// Grafana timestamps older or newer than this are replays.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the payload does not have the expected shape: {0}")]
    Shape(String),
}

/// An alert or item that produced no signal, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub account: Option<String>,
    pub reason: String,
}

#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub signals: Vec<Signal>,
    pub resolved: usize,
    pub rejected: Vec<Rejected>,
}

/// Alertmanager's webhook (version 4) and Grafana's, which extends it.
#[derive(Debug, Deserialize)]
struct AlertGroup {
    #[serde(default, rename = "commonLabels")]
    common_labels: BTreeMap<String, String>,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// The generic shape, also `POST /api/v1/signals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSignal {
    pub account: Option<String>,
    pub appid: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub cgi_path: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

pub fn parse(
    spec: &WebhookSpec,
    config: &Config,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Parsed, PayloadError> {
    match spec.format {
        WebhookFormat::Alertmanager | WebhookFormat::Grafana => {
            parse_alerts(spec, config, body, now)
        }
        WebhookFormat::Generic => parse_generic(&spec.name, &spec.account_label, config, body, now),
    }
}

fn parse_alerts(
    spec: &WebhookSpec,
    config: &Config,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Parsed, PayloadError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let group: AlertGroup =
        serde_json::from_value(value).map_err(|e| PayloadError::Shape(e.to_string()))?;
    let mut out = Parsed::default();
    for (index, alert) in group.alerts.into_iter().enumerate() {
        if alert.status == "resolved" {
            out.resolved += 1;
            continue;
        }
        let named = alert
            .labels
            .get(&spec.account_label)
            .or_else(|| group.common_labels.get(&spec.account_label));
        let Some(name) = named else {
            out.rejected.push(Rejected {
                index,
                account: None,
                reason: format!("no `{}` label", spec.account_label),
            });
            continue;
        };
        if config.account(name).is_none() {
            out.rejected.push(Rejected {
                index,
                account: Some(name.clone()),
                reason: "unknown account".into(),
            });
            continue;
        }
        let key = alert
            .fingerprint
            .as_ref()
            .map(|f| format!("{f}@{}", alert.starts_at.as_deref().unwrap_or("")));
        out.signals.push(Signal {
            account: name.clone(),
            source: spec.name.clone(),
            reason: alert
                .labels
                .get("alertname")
                .cloned()
                .unwrap_or_else(|| "alert".into()),
            count: 1,
            cgi_path: alert.labels.get("cgi_path").cloned(),
            key,
            received_at: now,
        });
    }
    Ok(out)
}

/// One object or an array of them; `account_field` names the account field.
pub fn parse_generic(
    source: &str,
    account_field: &str,
    config: &Config,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Parsed, PayloadError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        obj @ serde_json::Value::Object(_) => vec![obj],
        _ => {
            return Err(PayloadError::Shape(
                "expected a JSON object or an array of objects".into(),
            ))
        }
    };
    let mut out = Parsed::default();
    for (index, mut item) in items.into_iter().enumerate() {
        let Some(obj) = item.as_object_mut() else {
            return Err(PayloadError::Shape(format!(
                "item {index} is not an object"
            )));
        };
        // The configured account field is read as `account`.
        if account_field != "account" && account_field != "appid" {
            if let Some(v) = obj.remove(account_field) {
                obj.insert("account".into(), v);
            }
        }
        let s: GenericSignal = serde_json::from_value(item)
            .map_err(|e| PayloadError::Shape(format!("item {index}: {e}")))?;
        let Some(name) = s.account.or(s.appid) else {
            out.rejected.push(Rejected {
                index,
                account: None,
                reason: format!("no `{account_field}`, `account` or `appid` field"),
            });
            continue;
        };
        if config.account(&name).is_none() {
            out.rejected.push(Rejected {
                index,
                account: Some(name),
                reason: "unknown account".into(),
            });
            continue;
        }
        if s.count == Some(0) {
            out.rejected.push(Rejected {
                index,
                account: Some(name),
                reason: "count is 0".into(),
            });
            continue;
        }
        out.signals.push(Signal {
            account: name,
            source: source.to_string(),
            reason: s.reason.unwrap_or_else(|| "reported".into()),
            count: s.count.unwrap_or(1),
            cgi_path: s.cgi_path,
            key: s.key,
            received_at: now,
        });
    }
    Ok(out)
}

/// Where Grafana puts its HMAC signature unless the contact point renames
/// the headers (`signature_header`, `timestamp_header`).
pub const GRAFANA_SIGNATURE_HEADER: &str = "x-grafana-alerting-signature";
pub const GRAFANA_TIMESTAMP_HEADER: &str = "x-grafana-alerting-timestamp";
/// Also read for the timestamp while `timestamp_header` is not set.
pub const GRAFANA_TIMESTAMP_HEADER_ALT: &str = "x-grafana-alerting-signature-timestamp";

/// The signature headers' values in one request.
pub struct SignatureHeaders<'a> {
    pub grafana_signature: Option<&'a str>,
    pub grafana_timestamp: Option<&'a str>,
    pub github_signature: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature header")]
    Missing,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the signature timestamp is missing, malformed or more than 5 minutes away")]
    Stale,
}

/// Checks the raw body against the source's HMAC secret, before any parsing.
pub fn verify_signature(
    scheme: SignatureScheme,
    secret: &[u8],
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let grafana = matches!(scheme, SignatureScheme::Grafana | SignatureScheme::Any);
    let github = matches!(scheme, SignatureScheme::Github | SignatureScheme::Any);
    if let (true, Some(sig)) = (grafana, headers.grafana_signature) {
        return verify_grafana(secret, sig, headers.grafana_timestamp, body, now);
    }
    if let (true, Some(sig)) = (github, headers.github_signature) {
        let hex_sig = sig
            .strip_prefix("sha256=")
            .ok_or(SignatureError::Mismatch)?;
        return compare_hex(&hmac_sha256(secret, &[body]), hex_sig);
    }
    Err(SignatureError::Missing)
}

fn verify_grafana(
    secret: &[u8],
    sig: &str,
    timestamp: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let mac = match timestamp {
        Some(ts) => {
            let secs: i64 = ts.trim().parse().map_err(|_| SignatureError::Stale)?;
            if now.timestamp().abs_diff(secs) > SIGNATURE_WINDOW_SECS as u64 {
                return Err(SignatureError::Stale);
            }
            hmac_sha256(secret, &[ts.trim().as_bytes(), b":", body])
        }
        // Grafana signs the body alone when no timestamp header is configured.
        None => hmac_sha256(secret, &[body]),
    };
    compare_hex(&mac, sig)
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn compare_hex(expected: &[u8], given: &str) -> Result<(), SignatureError> {
    let given = hex::decode(given.trim()).map_err(|_| SignatureError::Mismatch)?;
    if given.len() == expected.len() && bool::from(expected.ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}
