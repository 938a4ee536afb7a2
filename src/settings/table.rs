//! [`Table`]: a table read apart from the rest of the file, once validation
//! knows which struct it is, as a `[notifiers.NAME]` whose `type` picks the
//! platform. Serde's tagged enums and `flatten` buffer such a table and then
//! report a wrong type inside it at the table's own key; read through
//! [`Checker::table`], every problem keeps its key and line.

use figment::value::{Dict, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::check::Checker;

/// A table as written, its values not yet given a type. Its `Debug` shows
/// the keys only: a value may be a secret not yet wrapped in [`Secret`].
///
/// [`Secret`]: crate::secret::Secret
#[derive(Clone, Default)]
pub struct Table(Dict);

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Dict::deserialize(deserializer).map(Table)
    }
}

impl Table {
    /// Moves the entries named in `keys` to a table of their own.
    pub fn split_off(&mut self, keys: &[&str]) -> Table {
        let (taken, kept) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(k, _)| keys.contains(&k.as_str()));
        self.0 = kept;
        Table(taken)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }
}

/// The keys `T` takes, as its serde struct names them: the list its error for
/// an unknown key gives, so `T` must deny unknown fields.
pub fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let probe = Value::from(Dict::from([("\0probe".to_string(), Value::from(0))]));
    match probe.deserialize::<T>().map_err(|e| e.kind) {
        Err(figment::error::Kind::UnknownField(_, expected)) => expected,
        _ => panic!("{} must deny unknown fields", std::any::type_name::<T>()),
    }
}

impl Checker<'_> {
    /// Reports each key of `table` that none of the `members`' key lists
    /// holds, as serde would have: for a table whose struct cannot be picked
    /// (its `type` is missing or unknown), the keys that no member of its
    /// family takes.
    pub fn unknown_keys(
        &mut self,
        key: &str,
        table: &Table,
        members: impl IntoIterator<Item = &'static [&'static str]>,
    ) {
        let members: Vec<_> = members.into_iter().collect();
        let known = |k: &str| members.iter().any(|keys| keys.contains(&k));
        for k in table.keys().filter(|k| !known(k)) {
            self.err::<()>(&format!("{key}.{k}"), format!("unknown key `{k}`"));
        }
    }

    /// `table` read as `T`, a serde struct that denies unknown fields. A
    /// problem (an unknown key, a wrong type) is reported at its own key
    /// under `key`, the table's, and `None` returned.
    pub fn table<T: DeserializeOwned>(&mut self, key: &str, table: Table) -> Option<T> {
        match Value::from(table.0).deserialize::<T>() {
            Ok(value) => Some(value),
            Err(errors) => {
                self.figment_errors(key, errors);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::super::{Locator, SecretResolver};
    use super::*;

    #[test]
    fn debug_shows_the_keys_and_no_value() {
        let table: Table = Figment::from(Toml::string(
            "url = \"https://h/?key=s3cret\"\nsecret = \"s3cret\"\n",
        ))
        .extract()
        .unwrap();
        let shown = format!("{table:?}");
        assert!(
            shown.contains("\"url\"") && shown.contains("\"secret\""),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        count: Option<i64>,
        names: Option<Vec<String>>,
    }

    #[test]
    fn keys_are_the_structs_fields() {
        assert_eq!(keys_of::<Inner>(), ["count", "names"]);
    }

    /// The point of the type: each problem at its own key and line.
    #[test]
    fn problems_keep_their_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        // (the table's body, the key reported, the message)
        let table: &[(&str, &str, &str)] = &[
            (
                "count = \"x\"",
                "t.a.count",
                "wrong type: found string, expected i64",
            ),
            (
                "names = \"x\"",
                "t.a.names",
                "wrong type: found string, expected a sequence",
            ),
            ("other = 1", "t.a.other", "unknown key `other`"),
        ];
        for (body, key, message) in table {
            let text = format!("[t.a]\nlabel = \"kept apart\"\n{body}\n");
            std::fs::write(&path, &text).unwrap();
            let figment = Figment::from(Toml::file_exact(&path));
            let mut t: Table = figment.extract_inner("t.a").unwrap();
            t.split_off(&["label"]);
            let locator = Locator::new(&figment, Some((&path, &text)));
            let resolver = SecretResolver::default();
            let mut ck = Checker::new(&locator, &resolver);
            assert!(ck.table::<Inner>("t.a", t).is_none());
            let errors = ck.into_errors();
            assert_eq!(errors.len(), 1, "{body}: {errors:?}");
            assert_eq!(errors[0].key.as_deref(), Some(*key), "{body}");
            assert_eq!(errors[0].message, *message, "{body}");
            let origin = errors[0].origin.as_deref().unwrap();
            assert!(origin.ends_with("t.toml:3"), "{body}: {origin}");
        }
    }
}
