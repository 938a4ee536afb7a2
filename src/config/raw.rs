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
    pub sources: BTreeMap<String, crate::sources::SourceConfigs>,
    pub notifiers: BTreeMap<String, RawNotifier>,
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
