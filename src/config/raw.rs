//! The configuration as written: serde structs that reject unknown keys and
//! leave every check of meaning to [`super::validate`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub daemon: RawDaemon,
    pub wechat: RawWeChat,
    pub policy: RawPolicy,
    pub accounts: BTreeMap<String, RawAccount>,
    pub sources: BTreeMap<String, RawSource>,
    pub notifiers: BTreeMap<String, RawNotifier>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDaemon {
    pub listen: Option<String>,
    pub state: Option<String>,
    pub timezone: Option<String>,
    pub log_format: Option<String>,
    pub tokens: Option<Vec<Secret>>,
    pub tokens_file: Option<PathBuf>,
    pub shutdown_timeout: Option<String>,
    pub queue_capacity: Option<i64>,
    pub max_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeChat {
    pub api_base: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    pub monthly_cap: Option<i64>,
    pub cooldown: Option<String>,
    pub daily_max: Option<i64>,
    pub reset_guard: Option<String>,
    pub min_events: Option<i64>,
    pub window: Option<String>,
    pub budget_low: Option<i64>,
    pub prefer: Option<String>,
    pub api_monthly_cap: Option<i64>,
    pub dry_run: Option<bool>,
    pub pacing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccount {
    pub appid: Option<String>,
    pub kind: Option<String>,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub token_command: Option<Vec<String>>,
    pub component: Option<String>,
    pub notify: Option<Vec<String>>,
    pub policy: RawPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RawSource {
    Alertmanager(RawWebhookSource),
    Grafana(RawWebhookSource),
    Generic(RawWebhookSource),
    LogFile(RawLogFile),
    Prometheus(RawPrometheus),
    WechatQuota(RawWeChatQuota),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWebhookSource {
    pub account_label: Option<String>,
    pub hmac_secret: Option<Secret>,
    pub hmac_secret_file: Option<PathBuf>,
    /// `grafana` or `github`; default: accept either.
    pub signature: Option<String>,
    /// Grafana's signature and timestamp headers, when the contact point
    /// renames them.
    pub signature_header: Option<String>,
    pub timestamp_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogFile {
    pub path: Option<PathBuf>,
    pub pattern: Option<String>,
    pub account_pattern: Option<String>,
    pub account: Option<String>,
    pub schedule: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPrometheus {
    pub url: Option<String>,
    pub query: Option<String>,
    pub account_label: Option<String>,
    pub threshold: Option<f64>,
    pub schedule: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeChatQuota {
    pub accounts: Option<Vec<String>>,
    pub cgi_paths: Option<Vec<String>>,
    pub remain_below: Option<RawThreshold>,
    pub schedule: Option<String>,
    pub concurrency: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawThreshold {
    Count(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotifier {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
    pub events: Option<Vec<String>>,
    pub language: Option<String>,
    pub skipped_interval: Option<String>,
    /// Feishu only: `post` (rich text, default) or `card` (interactive card).
    pub format: Option<String>,
}
