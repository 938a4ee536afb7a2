//! The WeChat API client: clears, quota reads, tokens, retries.
//!
//! [`WeChat::clear`] picks the endpoint from the account's kind and credential
//! (SPEC section 1), retries what is safe to retry in one bounded loop, refreshes
//! a token once on a token error, and returns a typed [`WeChatError`] that the
//! clearer turns into a ledger outcome. It never calls the legacy
//! `GET /cgi-bin/token`. It does not touch the ledger.

mod error;
mod token;

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

pub use error::{advice, classify, whitelist_ip, Advice, ErrorClass, WeChatError};

use crate::event::ClearTarget;
use crate::settings::{Account, AccountKind, Credential, WeChatSettings};

/// The one call that spends budget, behind a seam so the clearer is tested
/// with a fake (STYLE principle 9); [`WeChat`] is the real one.
#[async_trait::async_trait]
pub trait ClearApi: Send + Sync {
    /// Clears the account's whole quota or one API's.
    async fn clear(&self, account: &Account, target: &ClearTarget) -> Result<(), WeChatError>;

    /// The calls one API serves in a day (`openapi/quota/get`'s
    /// `daily_limit`), for pacing; a seam without the read says so.
    async fn daily_limit(&self, _account: &Account, _cgi_path: &str) -> Result<u64, WeChatError> {
        Err(WeChatError::Unsupported("no quota read here".into()))
    }
}

#[async_trait::async_trait]
impl ClearApi for WeChat {
    async fn clear(&self, account: &Account, target: &ClearTarget) -> Result<(), WeChatError> {
        WeChat::clear(self, account, target).await
    }

    async fn daily_limit(&self, account: &Account, cgi_path: &str) -> Result<u64, WeChatError> {
        let reading = self.quota_reading(account, cgi_path).await?;
        Ok(reading.quota.daily_limit)
    }
}

/// Bounded exponential backoff for transient errors: 3 tries after the first,
/// waiting 250 ms, 500 ms, 1 s.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub retries: u32,
    pub first: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            retries: 3,
            first: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first.saturating_mul(1 << attempt.min(16))
    }
}

/// The HTTP half: base URL, timeouts, JSON in and out, error mapping.
pub struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    async fn post_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, WeChatError> {
        let url = format!("{}{path}", self.base);
        let reply = self
            .client
            .post(url)
            .query(query)
            .json(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = reply.status();
        let bytes = reply.bytes().await.map_err(transport_error)?;
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) if !status.is_success() => return Err(WeChatError::Status(status.as_u16())),
            Err(_) => return Err(WeChatError::Ambiguous("the answer is not JSON".into())),
        };
        let errcode = value.get("errcode").and_then(Value::as_i64).unwrap_or(0);
        if errcode != 0 {
            let errmsg = value
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Err(WeChatError::Api { errcode, errmsg });
        }
        if !status.is_success() {
            return Err(WeChatError::Status(status.as_u16()));
        }
        Ok(value)
    }
}

/// The URL carries tokens and secrets: it never goes into an error.
fn transport_error(e: reqwest::Error) -> WeChatError {
    let connect = e.is_connect();
    let e = e.without_url();
    if connect {
        WeChatError::Unreachable(e.to_string())
    } else if e.is_timeout() {
        WeChatError::Ambiguous("timed out waiting for the answer".into())
    } else {
        WeChatError::Ambiguous(format!("connection lost: {e}"))
    }
}

/// What one `openapi/quota/get` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReading {
    pub quota: Quota,
    pub rate_limit: Option<RateLimit>,
}

/// `rate_limit`: at most `call_count` calls every `refresh_second` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct RateLimit {
    pub call_count: u64,
    pub refresh_second: u64,
}

/// One API's quota as `openapi/quota/get` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Quota {
    pub daily_limit: u64,
    pub used: u64,
    pub remain: u64,
}

/// One page of a component's authorizers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerPage {
    pub total_count: usize,
    pub appids: Vec<String>,
}

/// The answer as WeChat sends it, less the `refresh_token`s: serde skips
/// the fields not named here, so they are never held as strings.
#[derive(Deserialize)]
struct AuthorizerPageReply {
    total_count: usize,
    list: Vec<AuthorizerEntry>,
}

#[derive(Deserialize)]
struct AuthorizerEntry {
    authorizer_appid: String,
}

pub struct WeChat {
    http: Http,
    tokens: token::Tokens,
    backoff: Backoff,
}

impl WeChat {
    pub fn new(settings: &WeChatSettings) -> Result<Self, WeChatError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("quotawatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WeChatError::Unsupported(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http: Http {
                client,
                base: settings.api_base.clone(),
            },
            tokens: token::Tokens::default(),
            backoff: Backoff::default(),
        })
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Clears the account's whole quota or one API's.
    pub async fn clear(&self, account: &Account, target: &ClearTarget) -> Result<(), WeChatError> {
        self.with_retries(account, |force| async move {
            match target {
                ClearTarget::Full => self.clear_full(account, force).await,
                ClearTarget::Api { cgi_path } => self
                    .post_with_token(
                        account,
                        force,
                        "/cgi-bin/openapi/quota/clear",
                        &json!({ "cgi_path": cgi_path }),
                    )
                    .await
                    .map(drop),
            }
        })
        .await
    }

    /// `openapi/quota/get` for one API.
    pub async fn quota(&self, account: &Account, cgi_path: &str) -> Result<Quota, WeChatError> {
        self.quota_reading(account, cgi_path).await.map(|r| r.quota)
    }

    /// One API's quota with its rate limit, when WeChat sends one.
    pub async fn quota_reading(
        &self,
        account: &Account,
        cgi_path: &str,
    ) -> Result<QuotaReading, WeChatError> {
        let body = json!({ "cgi_path": cgi_path });
        let value = self
            .with_retries(account, |force| {
                self.post_with_token(account, force, "/cgi-bin/openapi/quota/get", &body)
            })
            .await?;
        let quota = value
            .get("quota")
            .cloned()
            .and_then(|q| serde_json::from_value(q).ok())
            .ok_or_else(|| WeChatError::Ambiguous("the quota answer has no quota object".into()))?;
        let rate_limit = value
            .get("rate_limit")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok());
        Ok(QuotaReading { quota, rate_limit })
    }

    /// One page of `component/api_get_authorizer_list` for a component, read
    /// with its token. The page's `refresh_token`s are not kept.
    pub async fn authorizer_page(
        &self,
        component: &Account,
        offset: usize,
        count: usize,
    ) -> Result<AuthorizerPage, WeChatError> {
        let body = json!({ "component_appid": component.appid, "offset": offset, "count": count });
        let value = self
            .with_retries(component, |force| {
                self.post_with_token(
                    component,
                    force,
                    "/cgi-bin/component/api_get_authorizer_list",
                    &body,
                )
            })
            .await?;
        let page: AuthorizerPageReply = serde_json::from_value(value).map_err(|_| {
            WeChatError::Ambiguous("the authorizer list answer has no total_count and list".into())
        })?;
        Ok(AuthorizerPage {
            total_count: page.total_count,
            appids: page.list.into_iter().map(|a| a.authorizer_appid).collect(),
        })
    }

    /// SPEC section 1: with a secret, the token-free v2 endpoints (they work when
    /// the token endpoint itself is over quota); with only a token, clear_quota.
    async fn clear_full(&self, account: &Account, force_token: bool) -> Result<(), WeChatError> {
        match (&account.credential, account.kind) {
            (Credential::Secret(secret), AccountKind::Component) => {
                let body =
                    json!({ "component_appid": account.appid, "appsecret": secret.expose() });
                self.http
                    .post_json("/cgi-bin/component/clear_quota/v2", &[], &body)
                    .await
                    .map(drop)
            }
            (Credential::Secret(secret), _) => {
                // Official pages disagree on query string or body: send both.
                let query = [
                    ("appid", account.appid.as_str()),
                    ("appsecret", secret.expose()),
                ];
                let body = json!({ "appid": account.appid, "appsecret": secret.expose() });
                self.http
                    .post_json("/cgi-bin/clear_quota/v2", &query, &body)
                    .await
                    .map(drop)
            }
            (
                Credential::Component {
                    component_appid,
                    secret,
                    ..
                },
                _,
            ) => {
                let body = json!({ "component_appid": component_appid, "appsecret": secret.expose(), "appid": account.appid });
                self.http
                    .post_json("/cgi-bin/component/clear_quota/v2", &[], &body)
                    .await
                    .map(drop)
            }
            (Credential::TokenFile(_) | Credential::TokenCommand(_), _) => self
                .post_with_token(
                    account,
                    force_token,
                    "/cgi-bin/clear_quota",
                    &json!({ "appid": account.appid }),
                )
                .await
                .map(drop),
        }
    }

    /// A call that takes the account's token in the query string: every one
    /// but the token-free v2 clears. `force` after a token error (see
    /// [`token::Tokens::get`]).
    async fn post_with_token(
        &self,
        account: &Account,
        force: bool,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, WeChatError> {
        let token = self.tokens.get(&self.http, account, force).await?;
        self.http
            .post_json(path, &[("access_token", token.expose())], body)
            .await
    }

    /// The one retry loop: transient errors back off and retry (bounded), a
    /// token error refreshes the token once and retries once, everything else
    /// (configuration errors, 48006, ambiguous outcomes) returns at once.
    async fn with_retries<T, F, Fut>(&self, account: &Account, call: F) -> Result<T, WeChatError>
    where
        F: Fn(bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, WeChatError>>,
    {
        let mut transient = 0;
        let mut refreshed = false;
        loop {
            let err = match call(refreshed).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match err.class() {
                ErrorClass::Retry if transient < self.backoff.retries => {
                    tracing::warn!(account = %account.name, appid = %account.appid, error = %err, retry = transient + 1, "WeChat call failed, retrying");
                    tokio::time::sleep(self.backoff.delay(transient)).await;
                    transient += 1;
                }
                ErrorClass::RefreshToken if !refreshed && uses_token(account) => {
                    tracing::info!(account = %account.name, appid = %account.appid, errcode = err.errcode(), "Token rejected, refreshing it once");
                    refreshed = true;
                }
                _ => return Err(err),
            }
        }
    }
}

fn uses_token(account: &Account) -> bool {
    account.token_from().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let b = Backoff::default();
        assert_eq!(b.delay(0), Duration::from_millis(250));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert!(b.delay(100) < Duration::from_secs(60 * 60 * 24 * 365));
    }
}
