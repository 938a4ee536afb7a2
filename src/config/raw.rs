//! The configuration as written: serde structs that reject unknown keys and
//! leave every check of meaning to [`super::validate`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::settings::{AccountConfig, DaemonConfig, PolicyConfig, WeChatConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub daemon: DaemonConfig,
    pub wechat: WeChatConfig,
    pub policy: PolicyConfig,
    pub accounts: BTreeMap<String, AccountConfig>,
    pub sources: BTreeMap<String, crate::sources::SourceTable>,
    pub notifiers: BTreeMap<String, crate::notify::NotifierConfig>,
}
