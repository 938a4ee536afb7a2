//! How `*_file` values are read.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

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
        Ok(Secret::new(value))
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
