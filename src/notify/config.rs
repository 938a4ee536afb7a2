//! What every notifier is configured with: the keys of `[notifiers.NAME]`
//! that all platforms share (`type`, `url`/`url_file`, `events`, `language`,
//! `skipped_interval`), checked once here into a [`NotifierSpec`]; the rest
//! of the table goes to the platform its `type` names, whose file checks its
//! own keys ([`PlatformConfig`]). `platforms!` turns the registration list
//! in [`super`] into the `type` names and the dispatch to each platform.
//!
//! A table is read apart ([`Table`]) rather than as a serde enum tagged by
//! `type`: such an enum buffers the table and would report a wrong type
//! inside it at `notifiers.NAME`, without the key or its line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::render::Language;
use super::{NotifierKind, Platform, PlatformConfig, PlatformSettings};
use crate::event::EventKind;
use crate::secret::Secret;
use crate::settings::{keys_of, ser, Checker, Choice, Table};

/// `[notifiers.NAME]` as written, kept whole until its `type` is known.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct NotifierConfig(Table);

/// The keys every platform takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SharedConfig {
    #[serde(rename = "type")]
    kind: Option<Choice<NotifierKind>>,
    url: Option<Secret>,
    url_file: Option<PathBuf>,
    events: Option<Vec<Choice<EventKind>>>,
    language: Option<Choice<Language>>,
    skipped_interval: Option<String>,
}

/// A checked notifier.
#[derive(Debug, Clone, Serialize)]
pub struct NotifierSpec {
    pub name: String,
    /// The platform, printed as `kind`, and its own settings.
    #[serde(flatten)]
    pub platform: PlatformSettings,
    /// The webhook URL: it carries the platform's key, so it is a secret.
    pub url: Secret,
    pub events: Vec<EventKind>,
    pub language: Language,
    /// At most one `skipped` message per account and reason in this interval.
    #[serde(serialize_with = "ser::duration")]
    pub skipped_interval: Duration,
}

impl NotifierSpec {
    /// The platform that sends this notifier's messages.
    pub fn build(&self) -> Box<dyn Platform> {
        self.platform.build(self)
    }
}

impl NotifierKind {
    /// Every key a notifier of this type takes: the shared ones and its own.
    pub fn keys(self) -> Vec<&'static str> {
        let mut keys = keys_of::<SharedConfig>().to_vec();
        keys.extend(self.own_keys());
        keys
    }
}

/// Every `[notifiers.NAME]`, checked; the ones with a problem are left out
/// (the problem is in `ck`).
pub fn validate(
    ck: &mut Checker<'_>,
    raw: BTreeMap<String, NotifierConfig>,
) -> BTreeMap<String, NotifierSpec> {
    raw.into_iter()
        .filter_map(|(name, config)| Some((name.clone(), config.validate(ck, name)?)))
        .collect()
}

impl NotifierConfig {
    fn validate(self, ck: &mut Checker<'_>, name: String) -> Option<NotifierSpec> {
        let key = format!("notifiers.{name}");
        let k = |part: &str| format!("{key}.{part}");
        let mut own = self.0;
        let shared: SharedConfig = ck.table(&key, own.split_off(keys_of::<SharedConfig>()))?;
        let kind = ck
            .required(&k("type"), shared.kind)
            .and_then(|kind| ck.known(&k("type"), &kind));
        let url = ck.secret(&k("url"), shared.url, shared.url_file.as_ref());
        let url = ck.required(&k("url"), url);
        if let Some(url) = &url {
            if !(url.expose().starts_with("https://") || url.expose().starts_with("http://")) {
                ck.err::<()>(&k("url"), "is not an http(s) URL");
            }
        }
        let events = match shared.events {
            None => EventKind::ALL.to_vec(),
            Some(list) => list
                .iter()
                .filter_map(|e| ck.known(&k("events"), e))
                .collect(),
        };
        let language = ck.choice(&k("language"), shared.language.as_ref(), Language::Zh);
        let skipped_interval = ck.duration(
            &k("skipped_interval"),
            shared.skipped_interval.as_deref(),
            Duration::from_secs(3600),
        );
        let Some(kind) = kind else {
            ck.unknown_keys(&key, &own, NotifierKind::ALL.iter().map(|k| k.own_keys()));
            return None;
        };
        let platform = kind.validate(ck, &key, own)?;
        Some(NotifierSpec {
            name,
            platform,
            url: url?,
            events,
            language,
            skipped_interval,
        })
    }
}

/// The keys of a notifier's table that are not shared, read as platform
/// `C`'s.
pub(super) fn own<C: PlatformConfig>(
    ck: &mut Checker<'_>,
    key: &str,
    kind: NotifierKind,
    mut own: Table,
) -> Option<C::Settings> {
    sibling_keys(ck, key, kind, &mut own);
    let config: C = ck.table(key, own)?;
    Some(config.validate(ck, key))
}

/// Reports, and takes out of `own`, each key that this platform does not
/// take but another does (`secret` on `wecom`), naming those that take it.
/// Any other key is left for the platform's struct to call unknown.
fn sibling_keys(ck: &mut Checker<'_>, key: &str, kind: NotifierKind, own: &mut Table) {
    let misplaced: Vec<String> = own
        .keys()
        .filter(|k| !kind.own_keys().contains(k))
        .map(str::to_string)
        .collect();
    for k in misplaced {
        let takers: Vec<&str> = NotifierKind::ALL
            .iter()
            .copied()
            .filter(|other| other.own_keys().contains(&k.as_str()))
            .map(NotifierKind::name)
            .collect();
        let Some((last, first)) = takers.split_last() else {
            continue;
        };
        let names = match first {
            [] => last.to_string(),
            _ => format!("{} and {last}", first.join(", ")),
        };
        let message = format!(
            "is not a {} key; only {names} notifiers take it",
            kind.name()
        );
        ck.err::<()>(&format!("{key}.{k}"), message);
        own.remove(&k);
    }
}

/// Generates, from the registration list in [`super`] (one line per
/// platform, `Kind(module::Config),` where the module's name is the `type`
/// name): the module, [`NotifierKind`], [`PlatformSettings`], and the
/// dispatch of validation and build to each platform's [`PlatformConfig`].
macro_rules! platforms {
    ($($(#[$attr:meta])* $kind:ident($module:ident::$config:ident),)*) => {
        $($(#[$attr])* pub mod $module;)*

        /// A notifier's `type`: one per registered platform.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum NotifierKind {
            $($(#[$attr])* $kind,)*
        }

        /// The checked settings of a notifier's platform (its signing secret,
        /// Feishu's format), printed as `kind` and its keys.
        #[derive(Debug, Clone, serde::Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum PlatformSettings {
            $($(#[$attr])* $kind(<$module::$config as PlatformConfig>::Settings),)*
        }

        impl NotifierKind {
            /// Every registered platform, in the order of the list.
            pub const ALL: &'static [NotifierKind] = &[$($(#[$attr])* Self::$kind,)*];

            /// The `type` name, which is the name of the platform's file.
            pub fn name(self) -> &'static str {
                match self {
                    $($(#[$attr])* Self::$kind => stringify!($module),)*
                }
            }

            /// The settings of a notifier that sets none of its platform's
            /// own keys.
            pub fn default_settings(self) -> PlatformSettings {
                match self {
                    $($(#[$attr])* Self::$kind => PlatformSettings::$kind(Default::default()),)*
                }
            }

            /// The keys the platform takes besides the shared ones.
            pub fn own_keys(self) -> &'static [&'static str] {
                match self {
                    $($(#[$attr])* Self::$kind => $crate::settings::keys_of::<$module::$config>(),)*
                }
            }

            fn validate(
                self,
                ck: &mut $crate::settings::Checker<'_>,
                key: &str,
                own: $crate::settings::Table,
            ) -> Option<PlatformSettings> {
                match self {
                    $($(#[$attr])* Self::$kind => {
                        config::own::<$module::$config>(ck, key, self, own).map(PlatformSettings::$kind)
                    })*
                }
            }
        }

        impl PlatformSettings {
            pub fn kind(&self) -> NotifierKind {
                match self {
                    $($(#[$attr])* Self::$kind(_) => NotifierKind::$kind,)*
                }
            }

            fn build(&self, spec: &NotifierSpec) -> Box<dyn Platform> {
                match self {
                    $($(#[$attr])* Self::$kind(settings) => {
                        <$module::$config as PlatformConfig>::build(settings, spec)
                    })*
                }
            }
        }
    };
}
pub(super) use platforms;
