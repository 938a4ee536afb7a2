//! Configuration errors that name the key and where its value came from.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use figment::{Figment, Source};

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key, e.g. `accounts.shop.policy.monthly_cap`.
    pub key: Option<String>,
    /// "FILE:LINE", "environment variable NAME", or "default".
    pub origin: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.key, &self.origin) {
            (Some(k), Some(o)) => write!(f, "`{k}` (from {o}): {}", self.message),
            (Some(k), None) => write!(f, "`{k}`: {}", self.message),
            (None, Some(o)) => write!(f, "{o}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// Every problem validation found, so one run of `quotawatch check` shows them
/// all (a syntax or type error stops parsing at the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid configuration:")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub fn single(message: impl Into<String>) -> Self {
        Self(vec![ConfigError {
            key: None,
            origin: None,
            message: message.into(),
        }])
    }
}

/// Finds where a key's value came from: the provider that set it and, for the
/// TOML file, the line.
pub struct Locator<'a> {
    figment: &'a Figment,
    file: Option<(&'a Path, &'a str)>,
    /// The file parsed once, on the first line asked for: a config with
    /// 10,000 errors is located in one parse, not 10,000 (issue 19, item 2).
    index: OnceCell<Option<FileIndex>>,
    /// Every provider merged once: figment's own `find_metadata` merges them
    /// anew on every call, which made locating N errors cost N merges.
    merged: OnceCell<Option<figment::value::Value>>,
}

/// The parsed file and where each of its lines starts.
struct FileIndex {
    /// Owns a copy of the text, so that `Locator` stays covariant in `'a`.
    doc: toml_edit::ImDocument<String>,
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub fn new(figment: &'a Figment, file: Option<(&'a Path, &'a str)>) -> Self {
        Locator {
            figment,
            file,
            index: OnceCell::new(),
            merged: OnceCell::new(),
        }
    }

    pub fn origin(&self, key: &str) -> String {
        let merged = self.merged.get_or_init(|| self.figment.find_value("").ok());
        let meta = merged
            .as_ref()
            .and_then(|value| value.find_ref(key))
            .and_then(|value| self.figment.get_metadata(value.tag()));
        let Some(meta) = meta else {
            // Unset (a required key, say): the table it belongs in, when the
            // file has that table.
            return match (self.file, self.line_of(key)) {
                (Some((path, _)), Some(line)) => format!("{}:{line}", path.display()),
                _ => "default".to_string(),
            };
        };
        match &meta.source {
            Some(Source::File(path)) => match self.line_of(key) {
                Some(line) => format!("{}:{line}", path.display()),
                None => path.display().to_string(),
            },
            _ => meta.name.to_string(),
        }
    }

    /// The 1-based line of `key` (or its nearest present parent) in the file.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        let index = self.index.get_or_init(|| self.parse()).as_ref()?;
        let mut table: &dyn toml_edit::TableLike = index.doc.as_table();
        let mut found = None;
        for part in key.split('.') {
            let Some((k, item)) = table.get_key_value(part) else {
                break;
            };
            if let Some(span) = k.span().or_else(|| item.span()) {
                found = Some(span.start);
            }
            match item.as_table_like() {
                Some(t) => table = t,
                None => break,
            }
        }
        // The number of lines that start at or before the key's offset.
        found.map(|at| index.line_starts.partition_point(|&start| start <= at))
    }

    fn parse(&self) -> Option<FileIndex> {
        let (_, text) = self.file?;
        let doc = toml_edit::ImDocument::parse(text.to_owned()).ok()?;
        let line_starts = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|nl| nl + 1))
            .collect();
        Some(FileIndex { doc, line_starts })
    }

    pub fn path(&self) -> Option<PathBuf> {
        self.file.map(|(p, _)| p.to_path_buf())
    }
}

/// Turns figment's extraction errors (unknown keys, wrong types, TOML syntax)
/// into ours, one per problem.
pub fn from_figment(err: figment::Error, locator: &Locator<'_>) -> ConfigErrors {
    ConfigErrors(err.into_iter().map(|e| convert(e, None, locator)).collect())
}

/// One of figment's errors as ours. `under` is the key of the table the value
/// was read from when that table was read apart ([`super::Table`]): figment's
/// path then starts inside it.
pub(super) fn convert(
    e: figment::Error,
    under: Option<&str>,
    locator: &Locator<'_>,
) -> ConfigError {
    let mut path: Vec<String> = under.map(str::to_string).into_iter().collect();
    path.extend(e.path.iter().cloned());
    let message = match &e.kind {
        figment::error::Kind::UnknownField(field, _) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key `{field}`")
        }
        // The found value may be a secret: name only its type.
        figment::error::Kind::InvalidType(actual, expected) => {
            format!(
                "wrong type: found {}, expected {expected}",
                type_name(actual)
            )
        }
        figment::error::Kind::InvalidValue(actual, expected) => {
            format!("invalid {}, expected {expected}", type_name(actual))
        }
        kind => without_source_lines(&kind.to_string()),
    };
    let key = (!path.is_empty()).then(|| path.join("."));
    let origin = match (&key, &e.metadata) {
        (Some(k), _) => Some(locator.origin(k)),
        (None, Some(m)) => Some(m.name.to_string()),
        (None, None) => None,
    };
    ConfigError {
        key,
        origin,
        message,
    }
}

/// TOML syntax errors quote the offending line, which may hold a secret:
/// keep the position and the complaint, drop the quoted source.
fn without_source_lines(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && l.split_once(" |")
                    .is_none_or(|(n, _)| n.trim().parse::<u32>().is_err())
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// "string", "integer", ...: the first word of serde's description, without
/// the value itself.
fn type_name(actual: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match actual {
        // "signed int `5`": the word alone would say "found signed".
        Actual::Signed(_) | Actual::Unsigned(_) => "integer".to_string(),
        _ => actual
            .to_string()
            .split_whitespace()
            .next()
            .unwrap_or("value")
            .to_string(),
    }
}
