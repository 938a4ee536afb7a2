//! The masked secret: a leaf every module may use (config, the store's
//! PostgreSQL URL, the WeChat client, the notifiers) without depending on
//! the configuration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that must never reach a log, an error, `check` output or a chat
/// message. `Debug`, `Display` and `Serialize` print a mask; only
/// [`Secret::expose`] gives the value, at the one place that sends it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

const MASK: &str = "********";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

/// `url` with the userinfo of its authority (`user:password@`) replaced by the
/// mask, for `check` output: an origin such as `wechat.api_base` may carry a
/// password. The authority ends where the HTTP client's parser ends it (at
/// `/`, `?`, `#` or `\\`) and the userinfo at its last `@`, so the mask
/// covers what the client would send as credentials.
pub fn mask_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.into();
    };
    let authority = url[start..]
        .find(['/', '?', '#', '\\'])
        .map_or(&url[start..], |end| &url[start..start + end]);
    match authority.rfind('@') {
        Some(at) => format!("{}{MASK}{}", &url[..start], &url[start + at..]).into(),
        None => url.into(),
    }
}

/// Accepts a string, or a number or boolean that an environment variable's
/// parser made of a numeric-looking secret (`QUOTAWATCH_..._SECRET=12345`). The
/// environment provider in [`crate::config`] keeps secret keys as raw strings, so
/// this is a second line of defence for other providers.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Int(i64),
            UInt(u64),
            Float(f64),
            Bool(bool),
        }
        Ok(Secret(match Raw::deserialize(d)? {
            Raw::Str(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::UInt(u) => u.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_masked_and_the_rest_kept() {
        for (url, masked) in [
            ("http://u:pw@h:9/p", "http://********@h:9/p"),
            ("https://pw@h", "https://********@h"),
            ("http://u:p@ss@h/x@y", "http://********@h/x@y"),
            ("http://h:9/p?q=a@b", "http://h:9/p?q=a@b"),
            ("https://api.weixin.qq.com", "https://api.weixin.qq.com"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(mask_userinfo(url), masked, "{url}");
        }
    }

    #[test]
    fn secret_is_masked_everywhere() {
        let s = Secret::new("hunter2-app-secret");
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{MASK}\""));
        assert_eq!(s.expose(), "hunter2-app-secret");
    }
}
