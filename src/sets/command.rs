//! `from = "command"`: the list is what a program prints, run every
//! `refresh` with a 30 s limit. `check` never runs it.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::{parse_list, AccountSetConfig, ListContext, Lister, MemberList};
use crate::settings::Checker;

/// A list command that takes longer is stopped and its run is a failure.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct CommandList {
    pub command: Vec<String>,
}

impl CommandList {
    pub(super) fn validate(raw: &AccountSetConfig, at: &str, ck: &mut Checker<'_>) -> Option<Self> {
        let key = format!("{at}.command");
        let command = ck.required(&key, raw.command.clone())?;
        ck.program(&key, command).map(|command| Self { command })
    }
}

#[async_trait]
impl Lister for CommandList {
    async fn list(&self, ctx: &ListContext<'_>) -> Result<MemberList, String> {
        let stdout = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Err("stopped".into()),
            out = crate::program::output(&self.command, TIMEOUT, std::process::Stdio::null()) => out?,
        };
        let text = String::from_utf8(stdout)
            .map_err(|_| format!("{} printed something that is not UTF-8", self.command[0]))?;
        parse_list(&text)
    }
}
