//! Runs a program the configuration names (an account's `token_command`, an
//! account set's `command`) for what it prints: its stdin closed, stopped
//! when it outlives its time limit or when the caller stops waiting. A failed
//! run says only the exit status, never what the program wrote: its stderr
//! may hold a token or a secret.

use std::process::Stdio;
use std::time::Duration;

/// `argv`'s stdout, or why there is none. `stderr` is where the program's
/// own messages go.
pub async fn output(argv: &[String], limit: Duration, stderr: Stdio) -> Result<Vec<u8>, String> {
    let program = &argv[0];
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "{program} did not finish within {}",
                humantime::format_duration(limit)
            )
        })?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} exited with {}", out.status));
    }
    Ok(out.stdout)
}
