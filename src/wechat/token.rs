//! Access tokens: WeChat's `stable_token` (never the legacy `GET /cgi-bin/token`,
//! which would knock production apps off their token), a file another system
//! keeps fresh, or a command's output.
//!
//! One cache entry per appid behind an async mutex: many callers, one refresh.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::error::WeChatError;
use super::Http;
use crate::secret::Secret;
use crate::settings::{Account, Credential, TokenFrom};

/// How long before WeChat's expiry a stable token is refreshed.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// A command's token is re-run after this, or at once after a token error.
const COMMAND_TTL: Duration = Duration::from_secs(600);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Cached {
    token: Option<Secret>,
    expires: Option<Instant>,
}

#[derive(Default)]
pub struct Tokens {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cached>>>>,
}

#[derive(Deserialize)]
struct StableTokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

impl Tokens {
    /// A token for `account`. `force` after a token error on a token quotawatch
    /// obtained itself: then stable_token is asked with `force_refresh`, which
    /// WeChat limits to 20 a day.
    pub async fn get(
        &self,
        http: &Http,
        account: &Account,
        force: bool,
    ) -> Result<Secret, WeChatError> {
        let entry = {
            let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(account.appid.clone()).or_default().clone()
        };
        let mut cached = entry.lock().await;
        let fresh = cached.expires.is_some_and(|e| Instant::now() < e);
        if let (Some(token), true, false) = (&cached.token, fresh, force) {
            return Ok(token.clone());
        }
        let (token, ttl) = match account.token_from() {
            Some(TokenFrom::StableToken(secret)) => {
                stable_token(http, &account.appid, secret, force).await?
            }
            Some(TokenFrom::File(path)) => (read_file(path)?, Duration::ZERO),
            Some(TokenFrom::Command(argv)) => (run_command(argv).await?, COMMAND_TTL),
            None if matches!(account.credential, Credential::Component { .. }) => {
                return Err(WeChatError::Unsupported(format!(
                    "account `{}` is cleared through its component; token calls (quota reads, single-API clears) need token_file or token_command beside it",
                    account.name
                )))
            }
            None => {
                return Err(WeChatError::Unsupported(format!(
                    "account `{}` is a component with only a secret; a component_access_token needs the component_verify_ticket, so give it token_file or token_command beside the secret for token calls",
                    account.name
                )))
            }
        };
        cached.token = Some(token.clone());
        cached.expires = Some(Instant::now() + ttl);
        Ok(token)
    }
}

async fn stable_token(
    http: &Http,
    appid: &str,
    secret: &Secret,
    force: bool,
) -> Result<(Secret, Duration), WeChatError> {
    let body = serde_json::json!({
        "grant_type": "client_credential",
        "appid": appid,
        "secret": secret.expose(),
        "force_refresh": force,
    });
    let value = http.post_json("/cgi-bin/stable_token", &[], &body).await?;
    let reply: StableTokenReply = serde_json::from_value(value)
        .map_err(|e| WeChatError::Token(format!("unexpected stable_token answer: {e}")))?;
    match (reply.errcode, reply.access_token) {
        (0, Some(token)) => {
            let ttl = Duration::from_secs(reply.expires_in.unwrap_or(7200))
                .saturating_sub(REFRESH_MARGIN);
            Ok((Secret::new(token), ttl))
        }
        (0, None) => Err(WeChatError::Token(
            "stable_token answered without a token".into(),
        )),
        (errcode, _) => Err(WeChatError::Api {
            errcode,
            errmsg: reply.errmsg,
        }),
    }
}

/// Re-read on every use: the file's owner may rotate it at any time.
fn read_file(path: &Path) -> Result<Secret, WeChatError> {
    let text = crate::settings::read_small(path)
        .map_err(|e| WeChatError::Token(format!("cannot read {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(WeChatError::Token(format!("{} is empty", path.display())));
    }
    Ok(Secret::new(token))
}

async fn run_command(argv: &[String]) -> Result<Secret, WeChatError> {
    // Its stderr goes where the daemon's does, as it always has.
    let stdout = crate::program::output(argv, COMMAND_TIMEOUT, std::process::Stdio::inherit())
        .await
        .map_err(WeChatError::Token)?;
    let token = String::from_utf8_lossy(&stdout).trim().to_string();
    if token.is_empty() {
        return Err(WeChatError::Token(format!("{} printed no token", argv[0])));
    }
    Ok(Secret::new(token))
}
