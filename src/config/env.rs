//! Environment overrides: `QUOTAWATCH_POLICY__MONTHLY_CAP=5` sets
//! `policy.monthly_cap`. One figment provider per variable, so that an error can
//! name the exact variable a bad value came from.
//!
//! figment's own `Env` parses every value (`12345` becomes a number, `0123`
//! loses its zero); secrets and other strings-only keys are kept verbatim here.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

pub const PREFIX: &str = "QUOTAWATCH_";

/// Variables with the prefix that are not config keys.
const NOT_KEYS: &[&str] = &["QUOTAWATCH_CONFIG", "QUOTAWATCH_LOG"];

/// Leaf keys whose values are always strings, whatever they look like.
const STRING_KEYS: &[&str] = &[
    "secret",
    "hmac_secret",
    "url",
    "appid",
    "api_base",
    "listen",
    "state",
    "path",
    "pattern",
    "account_pattern",
    "query",
    "account",
    "component",
    "account_label",
    "remain_below",
    "signature_header",
    "timestamp_header",
];

/// One `QUOTAWATCH_` variable as a provider of one key.
pub struct EnvVar {
    name: String,
    key: String,
    value: Value,
}

/// The variables from the process environment, sorted by name for a stable
/// merge order.
pub fn providers() -> Vec<EnvVar> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(PREFIX) && !NOT_KEYS.contains(&k.as_str()))
        .collect();
    vars.sort();
    vars.into_iter()
        .filter_map(|(name, raw)| EnvVar::new(name, &raw))
        .collect()
}

impl EnvVar {
    fn new(name: String, raw: &str) -> Option<Self> {
        let key = name[PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return None;
        }
        let leaf = key.rsplit('.').next().unwrap_or_default();
        let value = parse_value(leaf, raw);
        Some(Self { name, key, value })
    }
}

fn parse_value(leaf: &str, raw: &str) -> Value {
    let is_list = raw.trim_start().starts_with('[');
    if leaf == "tokens" && !is_list {
        return Value::from(vec![Value::from(raw.to_string())]);
    }
    if STRING_KEYS.contains(&leaf) || leaf.ends_with("_file") {
        return Value::from(raw.to_string());
    }
    raw.parse::<Value>()
        .unwrap_or_else(|_| Value::from(raw.to_string()))
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        match figment::util::nest(&self.key, self.value.clone()) {
            Value::Dict(_, dict) => Ok(Profile::Default.collect(dict)),
            _ => Err(Error::from(format!("{} names no key", self.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_strings_and_numbers_parse() {
        assert_eq!(
            parse_value("secret", "0123"),
            Value::from("0123".to_string())
        );
        assert_eq!(parse_value("monthly_cap", "5").to_u128(), Some(5));
        assert_eq!(parse_value("dry_run", "true").to_bool(), Some(true));
        let tokens = parse_value("tokens", "abc");
        assert_eq!(tokens.into_array().map(|a| a.len()), Some(1));
    }

    #[test]
    fn names_map_to_nested_keys() {
        let v = EnvVar::new("QUOTAWATCH_ACCOUNTS__SHOP__SECRET".into(), "12345").unwrap();
        assert_eq!(v.key, "accounts.shop.secret");
        assert!(EnvVar::new("QUOTAWATCH_POLICY____X".into(), "1").is_none());
    }
}
