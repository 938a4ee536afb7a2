//! The tracing subscriber: pretty on a terminal, JSON otherwise, journald on
//! request. Filter with `QUOTAWATCH_LOG` (tracing's env-filter syntax).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber; `default_level` applies without
/// `QUOTAWATCH_LOG`. Logs go to stderr so command output on stdout stays clean.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("QUOTAWATCH_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let registry = tracing_subscriber::registry().with(filter);
    let format = match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    };
    let result = match format {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => registry
                .with(layer.with_syslog_identifier("quotawatch".into()))
                .try_init(),
            Err(e) => {
                let r = registry.with(json_layer()).try_init();
                tracing::warn!(error = %e, "No journald socket; logging JSON to stderr instead");
                r
            }
        },
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        _ => registry.with(json_layer()).try_init(),
    };
    // A second init (tests, reload) keeps the first subscriber.
    drop(result);
}

fn json_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stderr)
}
