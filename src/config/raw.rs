//! The configuration file's tables as written. The daemon's own sections are
//! serde structs that reject unknown keys; each source and notifier table is
//! kept whole until its `type` is known and read by its family, which reports
//! unknown keys there. Every check of meaning is left to [`super::validate`].

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
    pub account_sets: BTreeMap<String, crate::sets::SetTable>,
    pub sources: BTreeMap<String, crate::sources::SourceTable>,
    pub notifiers: BTreeMap<String, crate::notify::NotifierConfig>,
}
