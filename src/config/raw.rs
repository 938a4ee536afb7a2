//! The configuration as written: serde structs that reject unknown keys and
//! leave every check of meaning to [`super::validate`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::Secret;
use crate::settings::{AccountConfig, DaemonConfig, PolicyConfig, WeChatConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub daemon: DaemonConfig,
    pub wechat: WeChatConfig,
    pub policy: PolicyConfig,
    pub accounts: BTreeMap<String, AccountConfig>,
    pub sources: BTreeMap<String, RawSource>,
    pub notifiers: BTreeMap<String, crate::notify::NotifierConfig>,
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
