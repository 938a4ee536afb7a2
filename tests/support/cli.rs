//! What the CLI tests assert about a finished command: its exit code and both
//! streams in one printable block, and that no secret reached either stream.

use std::process::Output;

use super::daemon::{stderr, stdout};

/// The exit code, stdout and stderr of `o`, for an assertion's message.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// No output's stdout or stderr contains any of `secrets`.
pub fn assert_no_secrets(outputs: &[&Output], secrets: &[&str]) {
    for o in outputs {
        for s in secrets {
            assert!(
                !stdout(o).contains(s),
                "secret {s:?} in stdout:\n{}",
                show(o)
            );
            assert!(
                !stderr(o).contains(s),
                "secret {s:?} in stderr:\n{}",
                show(o)
            );
        }
    }
}
