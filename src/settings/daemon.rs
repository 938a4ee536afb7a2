//! `[daemon]` and `[wechat]`: the daemon's own process settings, as written
//! and as validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::check::{Checker, Choice};
use super::ser;
use crate::secret::Secret;
use crate::store::StateLocation;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    pub listen: Option<String>,
    pub state: Option<String>,
    pub timezone: Option<String>,
    pub log_format: Option<Choice<LogFormat>>,
    pub tokens: Option<Vec<Secret>>,
    pub tokens_file: Option<PathBuf>,
    pub shutdown_timeout: Option<String>,
    pub queue_capacity: Option<i64>,
    pub max_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeChatConfig {
    pub api_base: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonSettings {
    pub listen: SocketAddr,
    pub state: StateLocation,
    #[serde(serialize_with = "ser::tz")]
    pub timezone: Tz,
    pub log_format: LogFormat,
    /// Bearer tokens accepted on hooks and the API.
    pub tokens: Vec<Secret>,
    /// How long SIGTERM waits for an in-flight clear and notifications.
    #[serde(serialize_with = "ser::duration")]
    pub shutdown_timeout: Duration,
    /// Signals the queue holds before hooks answer 503.
    pub queue_capacity: usize,
    /// HTTP connections open at once; lowered at start to fit the file limit.
    pub max_connections: usize,
}

impl DaemonSettings {
    /// The keys that differ in `next` and take effect only at a restart,
    /// compared by value (a masked PostgreSQL URL prints the same whatever
    /// its password).
    pub fn restart_needed(&self, next: &DaemonSettings) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.listen != next.listen {
            keys.push("daemon.listen");
        }
        if self.state != next.state {
            keys.push("daemon.state");
        }
        keys
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
    Journald,
}

#[derive(Debug, Clone, Serialize)]
pub struct WeChatSettings {
    /// Without a trailing slash. Shown with its userinfo masked.
    #[serde(serialize_with = "ser::url")]
    pub api_base: String,
    #[serde(serialize_with = "ser::duration")]
    pub timeout: Duration,
}

impl DaemonConfig {
    pub fn validate(self, ck: &mut Checker<'_>) -> DaemonSettings {
        let listen_text = self.listen.as_deref().unwrap_or("127.0.0.1:9466");
        let listen = listen_text.parse().unwrap_or_else(|_| {
            ck.err::<()>(
                "daemon.listen",
                format!("`{listen_text}` is not an address like 127.0.0.1:9466"),
            );
            SocketAddr::from(([127, 0, 0, 1], 9466))
        });
        let state = state_location(ck, self.state.as_deref());
        let tz_name = self.timezone.as_deref().unwrap_or("Asia/Shanghai");
        let timezone = tz_name.parse::<Tz>().unwrap_or_else(|_| {
            ck.err::<()>(
                "daemon.timezone",
                format!("`{tz_name}` is not an IANA time zone like Asia/Shanghai"),
            );
            chrono_tz::Asia::Shanghai
        });
        let log_format = ck.choice(
            "daemon.log_format",
            self.log_format.as_ref(),
            LogFormat::Auto,
        );
        let tokens = daemon_tokens(ck, self.tokens, self.tokens_file.as_ref());
        if tokens.is_empty() && !listen.ip().is_loopback() {
            ck.err::<()>("daemon.tokens", format!("is required when daemon.listen ({listen}) is not a loopback address: anyone who can reach it could spend the clear budget"));
        }
        let shutdown_timeout = ck.duration(
            "daemon.shutdown_timeout",
            self.shutdown_timeout.as_deref(),
            Duration::from_secs(30),
        );
        let queue_capacity = ck.count(
            "daemon.queue_capacity",
            self.queue_capacity,
            10_000_000,
            10_000,
        );
        let max_connections = ck.count(
            "daemon.max_connections",
            self.max_connections,
            1_000_000,
            1024,
        );
        DaemonSettings {
            listen,
            state,
            timezone,
            log_format,
            tokens,
            shutdown_timeout,
            queue_capacity,
            max_connections,
        }
    }
}

/// `daemon.state`: a PostgreSQL URL, else a SQLite file.
fn state_location(ck: &mut Checker<'_>, state: Option<&str>) -> StateLocation {
    match state {
        Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
            let url = Secret::new(s);
            postgres_target(ck, &url);
            StateLocation::Postgres(url)
        }
        Some("") => ck
            .err("daemon.state", "is empty")
            .unwrap_or(StateLocation::Sqlite("quotawatch.db".into())),
        Some(s) => StateLocation::Sqlite(PathBuf::from(s)),
        None => StateLocation::Sqlite(default_state_path()),
    }
}

/// Refuses here what the PostgreSQL store would refuse at start (the URL, the
/// `sslrootcert` file), so that `check` fails where `run` would. The message
/// never quotes the URL: it may hold a password.
fn postgres_target(ck: &mut Checker<'_>, url: &Secret) {
    use crate::store::postgres::{check_target, PgError, URL_SHAPE};
    match check_target(url) {
        Ok(()) => {}
        Err(PgError::Url) => {
            ck.err::<()>(
                "daemon.state",
                format!("is not a valid PostgreSQL URL; expected {URL_SHAPE}"),
            );
        }
        Err(e) => {
            ck.err::<()>("daemon.state", e.to_string());
        }
    }
}

/// `$STATE_DIRECTORY/quotawatch.db` under systemd, else `./quotawatch.db`.
fn default_state_path() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        // systemd may list several directories separated by colons.
        Some(dirs) if !dirs.is_empty() => {
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            PathBuf::from(first).join("quotawatch.db")
        }
        _ => PathBuf::from("quotawatch.db"),
    }
}

/// `tokens` and `tokens_file` (one token a line, `#` comments) together.
fn daemon_tokens(
    ck: &mut Checker<'_>,
    inline: Option<Vec<Secret>>,
    file: Option<&PathBuf>,
) -> Vec<Secret> {
    let mut tokens = inline.unwrap_or_default();
    if tokens.iter().any(Secret::is_empty) {
        ck.err::<()>("daemon.tokens", "holds an empty token");
    }
    if let Some(path) = file {
        match ck.resolver().read(path) {
            Ok(text) => tokens.extend(
                text.expose()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(Secret::new),
            ),
            Err(e) => {
                ck.err::<()>("daemon.tokens_file", e);
            }
        }
    }
    tokens
}

impl WeChatConfig {
    pub fn validate(self, ck: &mut Checker<'_>) -> WeChatSettings {
        let base = self
            .api_base
            .unwrap_or_else(|| "https://api.weixin.qq.com".to_string());
        ck.http_url("wechat.api_base", &base);
        let timeout = ck.duration(
            "wechat.timeout",
            self.timeout.as_deref(),
            Duration::from_secs(10),
        );
        if timeout.is_zero() {
            ck.err::<()>("wechat.timeout", "must be more than zero");
        }
        WeChatSettings {
            api_base: base.trim_end_matches('/').to_string(),
            timeout,
        }
    }
}
