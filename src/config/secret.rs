//! The masked secret newtype and how `*_file` values are read.

use std::path::{Path, PathBuf};

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
/// environment provider in [`super::env`] keeps secret keys as raw strings, so
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

/// Where a relative `*_file` path is looked up: `$CREDENTIALS_DIRECTORY`
/// (systemd `LoadCredential=`) when set, else the config file's directory.
#[derive(Debug, Clone, Default)]
pub struct SecretResolver {
    pub credentials_dir: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
}

impl SecretResolver {
    pub fn from_env(config_path: Option<&Path>) -> Self {
        Self {
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            config_dir: config_path.and_then(|p| p.parent()).map(Path::to_path_buf),
        }
    }

    pub fn path(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            return file.to_path_buf();
        }
        match (&self.credentials_dir, &self.config_dir) {
            (Some(dir), _) => dir.join(file),
            (None, Some(dir)) => dir.join(file),
            (None, None) => file.to_path_buf(),
        }
    }

    /// Reads a secret file; one trailing newline is not part of the secret.
    pub fn read(&self, file: &Path) -> Result<Secret, String> {
        let path = self.path(file);
        let text = read_small(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.trim().is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(Secret(value.to_string()))
    }
}

/// Secrets, tokens and URLs are short: a larger file is a mistake (or
/// `/dev/zero`), not something to read to the end.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Reads a file of at most [`MAX_SECRET_FILE`] bytes as UTF-8.
pub fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_SECRET_FILE} bytes"
        )));
    }
    Ok(text)
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

    #[test]
    fn relative_files_resolve_in_credentials_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shop-secret"), "abc123\n").unwrap();
        let r = SecretResolver {
            credentials_dir: Some(dir.path().to_path_buf()),
            config_dir: Some("/nonexistent".into()),
        };
        assert_eq!(r.read(Path::new("shop-secret")).unwrap().expose(), "abc123");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(r.read(&empty).unwrap_err().contains("empty"));
        assert!(r.read(Path::new("missing")).is_err());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE as usize + 1]).unwrap();
        assert!(r.read(&big).unwrap_err().contains("larger than"));
    }
}
