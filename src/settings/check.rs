//! The [`Checker`]: every component's validation reports through it, so one
//! run of `quotawatch check` lists every problem, each with its key and where
//! its value came from.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::error::{ConfigError, Locator};
use super::secret::SecretResolver;
use crate::secret::Secret;

/// Collects problems while validation goes on. Each helper returns a usable
/// value (the default) after an error, so checking goes on to the next key.
pub struct Checker<'a> {
    locator: &'a Locator<'a>,
    resolver: &'a SecretResolver,
    errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub fn new(locator: &'a Locator<'a>, resolver: &'a SecretResolver) -> Self {
        Self {
            locator,
            resolver,
            errors: Vec::new(),
        }
    }

    /// Every problem found, in the order found.
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// Where relative `*_file` paths are read from.
    pub fn resolver(&self) -> &SecretResolver {
        self.resolver
    }

    /// Records a problem with `key`; `None`, so `return ck.err(..)` reads well.
    pub fn err<T>(&mut self, key: &str, message: impl Into<String>) -> Option<T> {
        let origin = Some(self.locator.origin(key));
        self.errors.push(ConfigError {
            key: Some(key.to_string()),
            origin,
            message: message.into(),
        });
        None
    }

    /// Records what figment found wrong in a table read apart
    /// ([`super::Table`]), under that table's `key`.
    pub(super) fn figment_errors(&mut self, key: &str, errors: figment::Error) {
        let locator = self.locator;
        self.errors.extend(
            errors
                .into_iter()
                .map(|e| super::error::convert(e, Some(key), locator)),
        );
    }

    pub fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => d,
                Err(e) => self
                    .err(
                        key,
                        format!("`{text}` is not a duration like \"90s\" or \"2h30m\": {e}"),
                    )
                    .unwrap_or(default),
            },
        }
    }

    pub fn range(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        match value {
            None => default,
            Some(v) if v >= min as i64 && v <= max as i64 => v as u32,
            Some(v) => self
                .err(key, format!("must be between {min} and {max}, got {v}"))
                .unwrap_or(default),
        }
    }

    /// A count between 1 and `max`, `default` when unset.
    pub fn count(&mut self, key: &str, value: Option<i64>, max: i64, default: usize) -> usize {
        match value {
            None => default,
            Some(n) if (1..=max).contains(&n) => n as usize,
            Some(n) => self
                .err(key, format!("must be between 1 and {max}, got {n}"))
                .unwrap_or(default),
        }
    }

    /// The inline value or the `*_file` one; both set is an error.
    pub fn secret(
        &mut self,
        key: &str,
        inline: Option<Secret>,
        file: Option<&PathBuf>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.err(key, format!("set either `{key}` or `{key}_file`, not both"))
            }
            (Some(s), None) if s.is_empty() => self.err(key, "is empty"),
            (Some(s), None) => Some(s),
            (None, Some(path)) => match self.resolver.read(path) {
                Ok(s) => Some(s),
                Err(e) => self.err(&format!("{key}_file"), e),
            },
            (None, None) => None,
        }
    }

    /// A command line to run (`token_command`, an account set's `command`):
    /// it names a program.
    pub fn program(&mut self, key: &str, argv: Vec<String>) -> Option<Vec<String>> {
        match argv.first() {
            Some(program) if !program.is_empty() => Some(argv),
            _ => self.err(
                key,
                "must name a program: [\"/path/to/program\", \"arg\", ...]",
            ),
        }
    }

    pub fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        match value {
            Some(v) => Some(v),
            None => self.err(key, "is required"),
        }
    }

    /// `value`'s variant, or `default` when unset; an unknown name is an
    /// error listing the names the enum takes.
    pub fn choice<T: Clone>(&mut self, key: &str, value: Option<&Choice<T>>, default: T) -> T {
        match value {
            None => default,
            Some(v) => self.known(key, v).unwrap_or(default),
        }
    }

    /// `value`'s variant; an unknown name is an error listing the names the
    /// enum takes.
    pub fn known<T: Clone>(&mut self, key: &str, value: &Choice<T>) -> Option<T> {
        match value {
            Choice::Known(v) => Some(v.clone()),
            Choice::Unknown { text, expected } => self.err(
                key,
                format!("`{text}` is not one of {}", expected.join(", ")),
            ),
        }
    }

    /// Checks that `url` parses as an http(s) URL, so that
    /// [`crate::secret::mask_userinfo`] finds its userinfo where the HTTP
    /// client does. The error does not quote the value: a URL that does not
    /// parse may hide a password where the mask cannot find it.
    pub fn http_url(&mut self, key: &str, url: &str) {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            _ => {
                self.err::<()>(key, "is not an http(s) URL like https://host:port/path");
            }
        }
    }

    pub fn regex(&mut self, key: &str, text: &str) -> Option<regex::Regex> {
        match regex::Regex::new(text) {
            Ok(r) => Some(r),
            Err(e) => self.err(key, format!("is not a valid regular expression: {e}")),
        }
    }
}

/// Letters, digits, `-` and `_`: account, source and notifier names.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A key whose value names one variant of `T` (a serde enum with
/// `rename_all`). An unknown name is kept, not refused while parsing, so that
/// [`Checker::choice`] reports it beside every other problem of the file.
#[derive(Debug, Clone)]
pub enum Choice<T> {
    Known(T),
    Unknown {
        text: String,
        expected: &'static [&'static str],
    },
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Choice<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let variant = serde::de::value::StrDeserializer::<UnknownVariant>::new(&text);
        Ok(match T::deserialize(variant) {
            Ok(v) => Choice::Known(v),
            Err(UnknownVariant(expected)) => Choice::Unknown { text, expected },
        })
    }
}

/// The names an enum takes, caught from serde's unknown-variant error.
#[derive(Debug)]
struct UnknownVariant(&'static [&'static str]);

impl std::fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected one of {}", self.0.join(", "))
    }
}

impl std::error::Error for UnknownVariant {}

impl serde::de::Error for UnknownVariant {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        UnknownVariant(&[])
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        UnknownVariant(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Colour {
        Red,
        DarkBlue,
    }

    #[test]
    fn a_choice_keeps_an_unknown_name_with_the_names_it_takes() {
        let parse = |t: &str| -> Choice<Colour> {
            Choice::deserialize(
                serde::de::value::StrDeserializer::<serde::de::value::Error>::new(t),
            )
            .unwrap()
        };
        // (written, the variant or the names listed)
        let table: &[(&str, Result<Colour, &[&str]>)] = &[
            ("red", Ok(Colour::Red)),
            ("dark_blue", Ok(Colour::DarkBlue)),
            ("DarkBlue", Err(&["red", "dark_blue"])),
            ("", Err(&["red", "dark_blue"])),
        ];
        for (text, want) in table {
            match (parse(text), want) {
                (Choice::Known(got), Ok(want)) => assert_eq!(&got, want, "{text}"),
                (Choice::Unknown { text: t, expected }, Err(want)) => {
                    assert_eq!(&t, text);
                    assert_eq!(expected, *want, "{text}");
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
