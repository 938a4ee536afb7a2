//! An error with its causes, as every surface shows it (the command line,
//! the log, `/readyz`): `: `-separated, each cause once.
//!
//! Many errors both print their cause in their own message and return it
//! from `source()` (thiserror's `#[error("...: {0}")]` with `#[from]`, an
//! `io::Error` wrapping another error, the PostgreSQL driver). Walking the
//! chain naively then says each of them twice; so a cause whose text is
//! already in what was said is left out. It does not mask secrets: callers
//! strip URLs (`reqwest::Error::without_url`) before they get here.

use std::error::Error;

/// `e` and its causes, each said once.
pub fn display(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let more = cause.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        /// Says its cause and returns it: the shape that repeated itself.
        #[error("ledger database error: {0}")]
        Said(#[from] Inner),
        #[error("cannot reach the server")]
        Kept(#[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Inner(&'static str, #[source] Option<Leaf>);

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Leaf(&'static str);

    #[test]
    fn each_cause_is_said_once() {
        let cases: Vec<(Outer, &str)> = vec![
            (
                Outer::Said(Inner("unable to open database file: /x", None)),
                "ledger database error: unable to open database file: /x",
            ),
            (
                Outer::Kept(Inner("connection refused", None)),
                "cannot reach the server: connection refused",
            ),
            (
                Outer::Said(Inner(
                    "db error",
                    Some(Leaf("password authentication failed")),
                )),
                "ledger database error: db error: password authentication failed",
            ),
            (
                Outer::Kept(Inner("timed out", Some(Leaf("")))),
                "cannot reach the server: timed out",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(display(&error), want);
        }
    }

    #[test]
    fn anyhow_context_is_shown_with_the_chain_once() {
        let e = anyhow::Error::new(Outer::Said(Inner("unable to open database file", None)))
            .context("cannot open the ledger /x");
        assert_eq!(
            display(e.as_ref()),
            "cannot open the ledger /x: ledger database error: unable to open database file"
        );
    }
}
