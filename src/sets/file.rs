//! `from = "file"`: the list is a JSON file that another system rewrites.
//! It is read at start (and by `check`), whenever it changes (a cheap poll
//! of its size and modification time, see [`super::refresh`]), and every
//! `refresh`.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Serialize;

use super::{parse_list, AccountSetConfig, ListContext, Lister, MemberList};
use crate::settings::Checker;

/// A file's size and modification time.
pub type Stamp = (u64, Option<std::time::SystemTime>);

#[derive(Debug, Clone, Serialize)]
pub struct FileList {
    pub file: PathBuf,
}

impl FileList {
    pub(super) fn validate(raw: &AccountSetConfig, at: &str, ck: &mut Checker<'_>) -> Option<Self> {
        let file = ck.required(&format!("{at}.file"), raw.file.clone())?;
        Some(Self { file })
    }

    /// The list now, without a runtime (`check`).
    pub fn read_now(&self) -> Result<MemberList, String> {
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| format!("cannot read {}: {e}", self.file.display()))?;
        parse_list(&text)
    }

    /// What tells a changed file from the one last read, without reading it.
    pub fn stamp(&self) -> Option<Stamp> {
        let meta = std::fs::metadata(&self.file).ok()?;
        Some((meta.len(), meta.modified().ok()))
    }
}

#[async_trait]
impl Lister for FileList {
    async fn list(&self, _: &ListContext<'_>) -> Result<MemberList, String> {
        let text = tokio::fs::read_to_string(&self.file)
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.file.display()))?;
        parse_list(&text)
    }
}
