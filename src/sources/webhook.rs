//! Webhook payloads to signals: Alertmanager (v4), Grafana unified alerting,
//! and a generic JSON shape; plus the signature checks a source may require.
//!
//! Parsing is pure: bytes in, signals and a list of rejected alerts out. The
//! HTTP layer ([`crate::http`]) authenticates, queues and answers. Firing
//! alerts become signals; resolved ones are ignored; alerts that name no known
//! account are reported back, never silently dropped.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use std::path::PathBuf;

use axum::http::HeaderName;

use super::{Scheduled, Source, SourceConfig, SourceContext};
use crate::secret::Secret;
use crate::settings::{ser, Accounts, Checker, Choice};
use crate::signal::Signal;

/// `[sources.NAME]` of type `alertmanager`, `grafana` or `generic`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub account_label: Option<String>,
    pub hmac_secret: Option<Secret>,
    pub hmac_secret_file: Option<PathBuf>,
    /// `grafana` or `github`; default: accept either.
    pub signature: Option<Choice<WrittenScheme>>,
    /// Grafana's signature and timestamp headers, when the contact point
    /// renames them.
    pub signature_header: Option<String>,
    pub timestamp_header: Option<String>,
}

/// The `signature` names a user may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WrittenScheme {
    Grafana,
    Github,
}

/// The three webhook types share their keys; the type is the payload format.
macro_rules! webhook_type {
    ($name:ident, $format:expr) => {
        #[derive(Debug, Deserialize)]
        #[serde(transparent)]
        pub struct $name(WebhookConfig);

        impl SourceConfig for $name {
            type Spec = WebhookSpec;

            fn validate(
                self,
                name: &str,
                at: &str,
                ck: &mut Checker<'_>,
                _: &Accounts,
            ) -> Option<WebhookSpec> {
                Some(self.0.validate(name, at, $format, ck))
            }
        }
    };
}

webhook_type!(AlertmanagerConfig, WebhookFormat::Alertmanager);
webhook_type!(GrafanaConfig, WebhookFormat::Grafana);
webhook_type!(GenericConfig, WebhookFormat::Generic);

impl Source for WebhookSpec {
    fn start(&self, _: &SourceContext) -> Result<Option<Scheduled>, String> {
        Ok(None)
    }

    fn webhook(&self) -> Option<&WebhookSpec> {
        Some(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    Alertmanager,
    Grafana,
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// `X-Grafana-Alerting-Signature`: hex HMAC-SHA256 of `timestamp:body`.
    Grafana,
    /// `X-Hub-Signature-256: sha256=hex`.
    Github,
    /// Whichever header the request carries.
    Any,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookSpec {
    pub name: String,
    pub format: WebhookFormat,
    /// Label (alertmanager, grafana) or JSON field (generic) naming the account.
    pub account_label: String,
    pub hmac_secret: Option<Secret>,
    pub signature: SignatureScheme,
    /// The header a Grafana signature is read from (`signature_header`).
    #[serde(serialize_with = "ser::header")]
    pub signature_header: HeaderName,
    /// The headers its timestamp is read from, the first present wins: the
    /// `timestamp_header`, else Grafana's name and an older spelling.
    #[serde(serialize_with = "ser::headers")]
    pub timestamp_headers: Vec<HeaderName>,
}

impl WebhookConfig {
    fn validate(
        self,
        name: &str,
        p: &str,
        format: WebhookFormat,
        ck: &mut Checker<'_>,
    ) -> WebhookSpec {
        let default_label = if format == WebhookFormat::Generic {
            "account"
        } else {
            "appid"
        };
        let hmac_secret = ck.secret(
            &format!("{p}.hmac_secret"),
            self.hmac_secret,
            self.hmac_secret_file.as_ref(),
        );
        let signature = match self.signature.as_ref() {
            None => SignatureScheme::Any,
            Some(written) => match ck.known(&format!("{p}.signature"), written) {
                Some(WrittenScheme::Grafana) => SignatureScheme::Grafana,
                Some(WrittenScheme::Github) => SignatureScheme::Github,
                None => SignatureScheme::Any,
            },
        };
        let (signature_header, timestamp_headers) = grafana_headers(
            ck,
            p,
            [self.signature_header, self.timestamp_header],
            hmac_secret.is_some(),
            signature,
        );
        WebhookSpec {
            name: name.to_string(),
            format,
            account_label: self
                .account_label
                .unwrap_or_else(|| default_label.to_string()),
            hmac_secret,
            signature,
            signature_header,
            timestamp_headers,
        }
    }
}

/// `signature_header` and `timestamp_header`: legal header names (matched
/// case-insensitively, as HTTP does), and only where a Grafana signature is
/// checked.
fn grafana_headers(
    ck: &mut Checker<'_>,
    p: &str,
    [signature_header, timestamp_header]: [Option<String>; 2],
    signed: bool,
    scheme: SignatureScheme,
) -> (HeaderName, Vec<HeaderName>) {
    let mut name = |key: &str, value: Option<String>| -> Option<HeaderName> {
        let key = format!("{p}.{key}");
        let value = value?;
        if !signed {
            return ck.err(&key, "has no effect without hmac_secret");
        }
        if scheme == SignatureScheme::Github {
            return ck.err(
                &key,
                "renames a Grafana header; signature = \"github\" reads X-Hub-Signature-256",
            );
        }
        match HeaderName::from_bytes(value.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => ck.err(&key, format!("`{value}` is not a valid HTTP header name")),
        }
    };
    let signature = name("signature_header", signature_header)
        .unwrap_or(HeaderName::from_static(GRAFANA_SIGNATURE_HEADER));
    let timestamp = match name("timestamp_header", timestamp_header) {
        Some(h) => vec![h],
        None => vec![
            HeaderName::from_static(GRAFANA_TIMESTAMP_HEADER),
            HeaderName::from_static(GRAFANA_TIMESTAMP_HEADER_ALT),
        ],
    };
    (signature, timestamp)
}

/// Grafana timestamps older or newer than this are replays.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the payload does not have the expected shape: {0}")]
    Shape(String),
    /// More signals than the queue has room for: refused before they are
    /// built, so a huge batch costs no more memory than its body.
    #[error("the batch holds more than the {room} signals the queue has room for")]
    TooMany { room: usize },
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
    /// Alerts Alertmanager truncated from the group (`truncatedAlerts`).
    pub truncated: Option<Truncated>,
}

/// A group Alertmanager sent only in part (the receiver's `max_alerts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truncated {
    /// `groupKey`, naming the group in the log.
    pub group: String,
    pub alerts: u64,
    /// The account the group's `groupLabels` name, when they name a known
    /// one: the truncated alerts counted as evidence for it. Never taken from
    /// `commonLabels`: Alertmanager computes those after truncating, from the
    /// alerts it kept, so they may name another account than the dropped ones.
    pub account: Option<String>,
}

/// Pushes onto `out`, refusing past `room` before building the next signal.
fn push_signal(
    out: &mut Parsed,
    room: usize,
    signal: impl FnOnce() -> Signal,
) -> Result<(), PayloadError> {
    if out.signals.len() >= room {
        return Err(PayloadError::TooMany { room });
    }
    out.signals.push(signal());
    Ok(())
}

/// Alertmanager's webhook (version 4) and Grafana's, which extends it, as
/// far as quotawatch reads it. Parsed straight from the body by [`GroupSeed`]:
/// no `serde_json::Value` in between, and of each alert only the three labels
/// that matter (the account label, `alertname`, `cgi_path`) are kept, so a
/// 15,000-alert body costs a few small strings per alert, not a map of every
/// label.
#[derive(Debug, Default)]
struct AlertGroup {
    group_key: Option<String>,
    common_labels: Labels,
    /// The route's `group_by` labels: the only ones that hold for every alert
    /// of the group, including those truncated away.
    group_labels: Labels,
    /// Alerts Alertmanager left out because of the receiver's `max_alerts`.
    truncated_alerts: u64,
    alerts: Vec<Alert>,
}

#[derive(Debug, Default)]
struct Alert {
    status: Option<String>,
    labels: Labels,
    starts_at: Option<String>,
    fingerprint: Option<String>,
}

/// The labels quotawatch reads; every other label is skipped unread.
#[derive(Debug, Default)]
struct Labels {
    account: Option<String>,
    alertname: Option<String>,
    cgi_path: Option<String>,
}

/// Reads an object's key as its index in `names` (None: not wanted), with
/// no allocation.
struct Field(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Field {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Field {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == key))
    }
}

/// A label map, keeping the account label (named by the source's config)
/// and the two others quotawatch reads.
struct LabelsSeed<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for LabelsSeed<'_> {
    type Value = Labels;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Labels, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LabelsSeed<'_> {
    type Value = Labels;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of label names to strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
        struct Key<'s>(&'s str);
        impl<'de> DeserializeSeed<'de> for Key<'_> {
            type Value = [bool; 3];
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<[bool; 3], D::Error> {
                d.deserialize_str(self)
            }
        }
        impl Visitor<'_> for Key<'_> {
            type Value = [bool; 3];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label name")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> Result<[bool; 3], E> {
                Ok([k == self.0, k == "alertname", k == "cgi_path"])
            }
        }
        let mut labels = Labels::default();
        while let Some(wanted) = map.next_key_seed(Key(self.0))? {
            if wanted == [false; 3] {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: String = map.next_value()?;
            let slots = [
                &mut labels.account,
                &mut labels.alertname,
                &mut labels.cgi_path,
            ];
            for (slot, want) in slots.into_iter().zip(wanted) {
                if want {
                    *slot = Some(value.clone());
                }
            }
        }
        Ok(labels)
    }
}

/// One alert group; `.0` is the source's `account_label`.
struct GroupSeed<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for GroupSeed<'_> {
    type Value = AlertGroup;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AlertGroup, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for GroupSeed<'_> {
    type Value = AlertGroup;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an Alertmanager or Grafana alert group")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AlertGroup, A::Error> {
        const FIELDS: &[&str] = &[
            "groupKey",
            "commonLabels",
            "groupLabels",
            "truncatedAlerts",
            "alerts",
        ];
        let mut group = AlertGroup::default();
        let mut alerts = None;
        while let Some(field) = map.next_key_seed(Field(FIELDS))? {
            match field {
                Some(0) => group.group_key = map.next_value()?,
                Some(1) => group.common_labels = map.next_value_seed(LabelsSeed(self.0))?,
                Some(2) => group.group_labels = map.next_value_seed(LabelsSeed(self.0))?,
                Some(3) => group.truncated_alerts = map.next_value::<Option<u64>>()?.unwrap_or(0),
                Some(_) => alerts = Some(map.next_value_seed(AlertsSeed(self.0))?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        group.alerts = alerts.ok_or_else(|| de::Error::missing_field("alerts"))?;
        Ok(group)
    }
}

struct AlertsSeed<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for AlertsSeed<'_> {
    type Value = Vec<Alert>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Alert>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AlertsSeed<'_> {
    type Value = Vec<Alert>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of alerts")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Alert>, A::Error> {
        let mut alerts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(alert) = seq.next_element_seed(AlertSeed(self.0))? {
            alerts.push(alert);
        }
        Ok(alerts)
    }
}

struct AlertSeed<'s>(&'s str);

impl<'de> DeserializeSeed<'de> for AlertSeed<'_> {
    type Value = Alert;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Alert, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AlertSeed<'_> {
    type Value = Alert;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an alert")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Alert, A::Error> {
        const FIELDS: &[&str] = &["status", "labels", "startsAt", "fingerprint"];
        let mut alert = Alert::default();
        while let Some(field) = map.next_key_seed(Field(FIELDS))? {
            match field {
                Some(0) => alert.status = map.next_value()?,
                Some(1) => alert.labels = map.next_value_seed(LabelsSeed(self.0))?,
                Some(2) => alert.starts_at = map.next_value()?,
                Some(_) => alert.fingerprint = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(alert)
    }
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

/// Parses a hook's body into at most `room` signals (the queue's free
/// capacity); a batch that needs more is refused whole.
pub fn parse(
    spec: &WebhookSpec,
    accounts: &Accounts,
    body: &[u8],
    now: DateTime<Utc>,
    room: usize,
) -> Result<Parsed, PayloadError> {
    match spec.format {
        WebhookFormat::Alertmanager | WebhookFormat::Grafana => {
            parse_alerts(spec, accounts, body, now, room)
        }
        WebhookFormat::Generic => {
            parse_generic(&spec.name, &spec.account_label, accounts, body, now, room)
        }
    }
}

fn parse_alerts(
    spec: &WebhookSpec,
    accounts: &Accounts,
    body: &[u8],
    now: DateTime<Utc>,
    room: usize,
) -> Result<Parsed, PayloadError> {
    let group = parse_group(body, &spec.account_label)?;
    let mut out = Parsed::default();
    let common = group.common_labels.account.as_ref();
    for (index, alert) in group.alerts.into_iter().enumerate() {
        if alert.status.as_deref() == Some("resolved") {
            out.resolved += 1;
            continue;
        }
        let Some(name) = alert.labels.account.as_ref().or(common) else {
            out.rejected.push(Rejected {
                index,
                account: None,
                reason: format!("no `{}` label", spec.account_label),
            });
            continue;
        };
        if accounts.find(name).is_none() {
            out.rejected.push(Rejected {
                index,
                account: Some(name.clone()),
                reason: "unknown account".into(),
            });
            continue;
        }
        push_signal(&mut out, room, || Signal {
            account: name.clone(),
            source: spec.name.clone(),
            reason: alert.labels.alertname.unwrap_or_else(|| "alert".into()),
            count: 1,
            cgi_path: alert.labels.cgi_path,
            key: alert
                .fingerprint
                .map(|f| format!("{f}@{}", alert.starts_at.as_deref().unwrap_or(""))),
            received_at: now,
        })?;
    }
    if group.truncated_alerts > 0 {
        let labels = &group.group_labels;
        let account = labels
            .account
            .as_ref()
            .filter(|name| accounts.find(name).is_some())
            .cloned();
        if let Some(name) = &account {
            push_signal(&mut out, room, || Signal {
                account: name.clone(),
                source: spec.name.clone(),
                reason: format!(
                    "{} (truncated alerts)",
                    labels.alertname.as_deref().unwrap_or("alert")
                ),
                count: u32::try_from(group.truncated_alerts).unwrap_or(u32::MAX),
                cgi_path: labels.cgi_path.clone(),
                // A re-delivery of the same group within the window is a duplicate.
                key: group.group_key.as_ref().map(|g| format!("{g}#truncated")),
                received_at: now,
            })?;
        }
        out.truncated = Some(Truncated {
            group: group.group_key.unwrap_or_default(),
            alerts: group.truncated_alerts,
            account,
        });
    }
    Ok(out)
}

fn parse_group(body: &[u8], account_label: &str) -> Result<AlertGroup, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    GroupSeed(account_label)
        .deserialize(&mut de)
        .and_then(|group| de.end().map(|()| group))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => PayloadError::Shape(e.to_string()),
            _ => PayloadError::Json(e.to_string()),
        })
}

/// One object or an array of them; `account_field` names the account field.
pub fn parse_generic(
    source: &str,
    account_field: &str,
    accounts: &Accounts,
    body: &[u8],
    now: DateTime<Utc>,
    room: usize,
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
        if accounts.find(&name).is_none() {
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
        push_signal(&mut out, room, || Signal {
            account: name,
            source: source.to_string(),
            reason: s.reason.unwrap_or_else(|| "reported".into()),
            count: s.count.unwrap_or(1),
            cgi_path: s.cgi_path,
            key: s.key,
            received_at: now,
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sources::SourceSpec;

    fn config() -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        std::fs::write(
            &path,
            format!(
                "[daemon]\nstate = \"{}\"\n[accounts.shop]\nappid = \"wx448f04719cd48f69\"\n\
                 kind = \"mini_program\"\nsecret = \"s\"\n[sources.alerts]\ntype = \"alertmanager\"\n",
                dir.path().join("l.db").display()
            ),
        )
        .unwrap();
        crate::config::load(&path).unwrap()
    }

    fn alerts(n: usize) -> String {
        let alert = r#"{"status":"firing","labels":{"appid":"wx448f04719cd48f69","alertname":"Q\u0041"},"fingerprint":"f","startsAt":"t"}"#;
        format!(
            r#"{{"version":"4","alerts":[{}]}}"#,
            vec![alert; n].join(",")
        )
    }

    /// Issue 10, item 2: a batch over the queue's room is refused before its
    /// signals are built; one that fits parses straight into signals.
    #[test]
    fn batches_over_the_queue_room_are_refused_while_parsing() {
        let config = config();
        let Some(SourceSpec::Alertmanager(spec)) = config.sources.get("alerts") else {
            panic!("no webhook source")
        };
        let now = Utc::now();
        let cases = [
            (3, 3, Ok(3)),
            (3, 2, Err(PayloadError::TooMany { room: 2 })),
            (0, 0, Ok(0)),
        ];
        for (n, room, want) in cases {
            let got = parse(spec, &config.accounts, alerts(n).as_bytes(), now, room)
                .map(|p| p.signals.len());
            assert_eq!(got, want, "{n} alerts, room {room}");
        }
        let parsed = parse(spec, &config.accounts, alerts(1).as_bytes(), now, 1).unwrap();
        assert_eq!(
            parsed.signals[0].reason, "QA",
            "escaped strings are unescaped"
        );
        assert_eq!(parsed.signals[0].key.as_deref(), Some("f@t"));
    }
}
