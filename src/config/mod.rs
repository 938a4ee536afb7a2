//! Configuration: one TOML file plus `QUOTAWATCH_` environment variables, read
//! with figment, validated once into runtime types with nothing left to unwrap.
//!
//! This module is the assembly: the daemon's own sections are checked by
//! [`crate::settings`], each `[sources.NAME]` by its source type in
//! [`crate::sources`] and each `[notifiers.NAME]` by its platform in
//! [`crate::notify`], all through one [`crate::settings::Checker`].
//!
//! Loading is [`load`]; everything it returns has been checked (ranges,
//! durations, appid shape, one credential per account, references between
//! sections, a PostgreSQL `daemon.state` as the store reads it) and every
//! secret has been read from its `*_file`. Errors name the key and where its
//! value came from. This module does not open the ledger or talk to WeChat.

mod env;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Serialize;

use crate::policy::PolicySettings;
use crate::settings::{
    Account, Accounts, ConfigErrors, DaemonSettings, SecretResolver, WeChatSettings,
};
use crate::sources::SourceSpec;

/// Where the config file is when neither `--config` nor `$QUOTAWATCH_CONFIG` say.
pub const DEFAULT_PATH: &str = "/etc/quotawatch/quotawatch.toml";

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file it was read from, for reloads and relative paths.
    pub path: PathBuf,
    pub daemon: DaemonSettings,
    pub wechat: WeChatSettings,
    /// The `[policy]` defaults; each account carries its merged copy.
    pub policy: PolicySettings,
    /// Every account signals may name: the configured ones and the account
    /// sets' members.
    #[serde(skip)]
    pub accounts: Accounts,
    /// The `[accounts.NAME]` tables alone, as `check` prints them.
    #[serde(rename = "accounts")]
    pub configured: Accounts,
    pub account_sets: BTreeMap<String, crate::sets::AccountSet>,
    /// What the sets' members came to beside the configured accounts (a
    /// member that is an account of its own, a name taken), for `check` and
    /// the log.
    #[serde(skip)]
    pub notes: Vec<String>,
    pub sources: BTreeMap<String, SourceSpec>,
    pub notifiers: BTreeMap<String, crate::notify::NotifierSpec>,
}

impl Config {
    /// An account by config name or by appid.
    pub fn account(&self, name_or_appid: &str) -> Option<&Arc<Account>> {
        self.accounts.find(name_or_appid)
    }
}

/// `--config`, else `$QUOTAWATCH_CONFIG`, else [`DEFAULT_PATH`].
pub fn discover(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os("QUOTAWATCH_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Reads, merges and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_policy(path, &[])
}

/// [`load`], with `[policy]` keys set on top for every account, over its own
/// overrides too (`quotawatch simulate --set KEY=VALUE`). A value is read as
/// TOML (`3`, `true`), else taken as a string (`30m`, `api`), and validated
/// like the file's.
pub fn load_with_policy(path: &Path, set: &[(String, String)]) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(format!("cannot read config file {}: {e}", path.display()))
    })?;
    let mut figment = Figment::new().merge(Toml::file_exact(path));
    for var in env::providers() {
        figment = figment.merge(var);
    }
    if !set.is_empty() {
        let names: Vec<String> = figment
            .extract_inner::<BTreeMap<String, figment::value::Value>>("accounts")
            .map(|a| a.into_keys().collect())
            .unwrap_or_default();
        for (key, value) in set {
            let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.clone()));
            figment = figment.merge(figment::providers::Serialized::default(
                &format!("policy.{key}"),
                &value,
            ));
            for name in &names {
                figment = figment.merge(figment::providers::Serialized::default(
                    &format!("accounts.{name}.policy.{key}"),
                    &value,
                ));
            }
        }
    }
    let locator = crate::settings::Locator::new(&figment, Some((path, &text)));
    let raw: raw::RawConfig = figment
        .extract()
        .map_err(|e| crate::settings::from_figment(e, &locator))?;
    let resolver = SecretResolver::from_env(Some(path));
    validate::validate(raw, &locator, &resolver)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn a_reload_names_the_daemon_keys_that_need_a_restart_by_value() {
        let dir = tempfile::tempdir().unwrap();
        let load = |listen: &str, state: &str| {
            let path = dir.path().join("q.toml");
            let text = format!(
                "[daemon]\nlisten = \"{listen}\"\nstate = \"{state}\"\n[accounts.shop]\nappid = \"wx448f04719cd48f69\"\nkind = \"mini_program\"\nsecret = \"s\"\n"
            );
            std::fs::write(&path, text).unwrap();
            load(&path).unwrap().daemon
        };
        let pg = |password: &str| format!("postgres://qw:{password}@db.example/qw");
        let base = load("127.0.0.1:9466", &pg("one"));
        // (listen, state, keys that need a restart)
        let table: &[(&str, String, &[&str])] = &[
            ("127.0.0.1:9466", pg("one"), &[]),
            // Masked, the two URLs print the same: compared by value.
            ("127.0.0.1:9466", pg("two"), &["daemon.state"]),
            ("127.0.0.1:9467", pg("one"), &["daemon.listen"]),
            (
                "127.0.0.1:9467",
                "/var/lib/q.db".into(),
                &["daemon.listen", "daemon.state"],
            ),
        ];
        for (listen, state, want) in table {
            let next = load(listen, state);
            assert_eq!(base.restart_needed(&next), *want, "{listen} {state}");
        }
        assert_eq!(
            format!("{:?}", base.state),
            format!("{:?}", load("127.0.0.1:9466", &pg("two")).state)
        );
    }

    /// The keys a section accepts, as the code's serde structs say: an unknown
    /// key's error lists the expected ones.
    fn accepted(prefix_toml: &str) -> Vec<String> {
        let text = format!("{prefix_toml}\nzzz_not_a_key = 1\n");
        let err = Figment::from(Toml::string(&text))
            .extract::<raw::RawConfig>()
            .unwrap_err();
        for e in err {
            if let figment::error::Kind::UnknownField(_, expected) = &e.kind {
                return expected.iter().map(|s| s.to_string()).collect();
            }
        }
        panic!("no unknown-field error for {prefix_toml}");
    }

    fn code_keys() -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for section in ["daemon", "wechat", "policy"] {
            for k in accepted(&format!("[{section}]")) {
                keys.insert(format!("{section}.{k}"));
            }
        }
        let account_policy = accepted("[accounts.a.policy]");
        assert_eq!(
            account_policy,
            accepted("[policy]"),
            "account policy keys are the policy keys"
        );
        for k in accepted("[accounts.a]") {
            keys.insert(if k == "policy" {
                "accounts.NAME.policy.*".into()
            } else {
                format!("accounts.NAME.{k}")
            });
        }
        for &k in crate::settings::keys_of::<crate::sets::AccountSetConfig>() {
            keys.insert(if k == "policy" {
                "account_sets.NAME.policy.*".into()
            } else {
                format!("account_sets.NAME.{k}")
            });
        }
        keys.insert("sources.NAME.type".into());
        // The throwaway type exists in this crate's tests only.
        for &t in crate::sources::SourceType::ALL
            .iter()
            .filter(|t| **t != crate::sources::SourceType::Throwaway)
        {
            for k in t.keys() {
                keys.insert(format!("sources.NAME.{k}"));
            }
        }
        for &kind in crate::notify::NotifierKind::ALL {
            if kind == crate::notify::NotifierKind::Throwaway {
                continue; // registered in tests only, and documented nowhere
            }
            for k in kind.keys() {
                keys.insert(format!("notifiers.NAME.{k}"));
            }
        }
        keys
    }

    fn readme_keys() -> BTreeSet<String> {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = readme
            .split("## Configuration reference")
            .nth(1)
            .expect("README has a configuration reference");
        let section = section.split("\n## ").next().unwrap();
        section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn readme_documents_every_config_key_and_no_other() {
        let code = code_keys();
        let readme = readme_keys();
        let missing: Vec<_> = code.difference(&readme).collect();
        let extra: Vec<_> = readme.difference(&code).collect();
        assert!(
            missing.is_empty(),
            "keys in the code but not in README.md: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "keys in README.md but not in the code: {extra:?}"
        );
        assert!(
            code.len() > 40,
            "the reflection found too few keys: {code:?}"
        );
    }

    #[test]
    fn example_config_is_valid_and_safe() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/quotawatch.toml"
        ));
        let config = load(path).unwrap();
        assert!(config.daemon.listen.ip().is_loopback());
        assert!(
            config.accounts.values().all(|a| a.policy.dry_run),
            "the example must be a dry run"
        );
    }
}
