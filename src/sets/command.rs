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
        match ck.required(&key, raw.command.clone())? {
            command if !command.is_empty() && !command[0].is_empty() => Some(Self { command }),
            _ => ck.err(
                &key,
                "must name a program: [\"/path/to/program\", \"arg\", ...]",
            ),
        }
    }
}

#[async_trait]
impl Lister for CommandList {
    async fn list(&self, ctx: &ListContext<'_>) -> Result<MemberList, String> {
        let program = &self.command[0];
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&self.command[1..])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Err("stopped".into()),
            out = tokio::time::timeout(TIMEOUT, cmd.output()) => out,
        };
        let out = out
            .map_err(|_| {
                format!(
                    "{program} did not finish within {}",
                    humantime::format_duration(TIMEOUT)
                )
            })?
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if !out.status.success() {
            // Its stderr may hold anything the program knows: only the status.
            return Err(format!("{program} exited with {}", out.status));
        }
        let text = String::from_utf8(out.stdout)
            .map_err(|_| format!("{program} printed something that is not UTF-8"))?;
        parse_list(&text)
    }
}
