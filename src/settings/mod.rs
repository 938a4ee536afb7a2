//! The daemon's own settings (`[daemon]`, `[wechat]`, `[policy]`,
//! `[accounts]`) and the machinery every component's settings use: the
//! [`Checker`] that collects each problem with its key and where its value
//! came from, typed [`Choice`]s, [`Table`]s read once their type is known
//! (a component family's `type` key), secrets and the `*_file` rules, and how
//! settings print.
//!
//! It knows no component: each source and notifier holds its own settings
//! beside its code and checks them with this module; [`crate::config`] reads
//! the file and puts the daemon's settings and the components' together.

mod accounts;
mod check;
mod daemon;
mod error;
mod policy;
mod secret;
pub mod ser;
mod table;

pub use accounts::{
    is_appid, token_source, validate as validate_accounts, Account, AccountConfig, AccountKind,
    Accounts, Credential, LiveAccounts, TokenFrom, TokenSource,
};
pub use check::{is_name, Checker, Choice};
pub use daemon::{DaemonConfig, DaemonSettings, LogFormat, WeChatConfig, WeChatSettings};
pub use error::{from_figment, ConfigError, ConfigErrors, Locator};
pub use policy::PolicyConfig;
pub use secret::{read_small, SecretResolver};
pub use table::{keys_of, Table};
