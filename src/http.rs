//! The daemon's HTTP surface: webhook sources, the signal and account API,
//! health and metrics, and the status page ([`crate::ui`]) behind the same
//! tokens. [`router`] builds it from an [`HttpState`], so tests drive it with
//! `oneshot` and no socket.
//!
//! Authentication: a bearer token from `daemon.tokens`, compared in constant
//! time; a webhook source with an HMAC secret is authenticated by its
//! signature instead; the status page also takes a token as the password of
//! HTTP Basic, so that a browser can ask for it. Every rejection is a JSON body `{"error": "..."}` made in
//! one place, [`ApiError`]. This module does not decide: it queues signals for
//! the dispatcher, or hands a manual clear to the clearer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::header::AsHeaderName;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::clearer::ClearRequest;
use crate::dispatcher::Runtime;
use crate::metrics::Metrics;
use crate::policy::Decision;
use crate::read_model::{list_accounts, AccountQuery, ClearSummary, StateFilter};
use crate::signal::{QueueError, SignalQueue};
use crate::sources::webhook::WebhookSpec;
use crate::sources::webhook::{self, Parsed, PayloadError, SignatureHeaders};
use crate::sources::SourceHealth;

/// Bodies over this get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub runtime: watch::Receiver<Runtime>,
    pub queue: SignalQueue,
    pub metrics: Arc<Metrics>,
    pub health: SourceHealth,
    /// The account sets' health: a set whose list fails is shown, and the
    /// daemon stays ready (its last good list is watched).
    pub sets: crate::sets::refresh::Sets,
    /// Set once the daemon is up; cleared when it starts stopping.
    pub ready: Arc<AtomicBool>,
}

/// Every way a request fails, mapped to a status and a JSON body here only.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the signal queue is full; retry later")]
    QueueFull,
    #[error("the daemon is shutting down")]
    Stopping,
    #[error("the ledger is unreachable ({0}); retry later")]
    LedgerDown(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::QueueFull | Self::Stopping | Self::LedgerDown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // Client errors are the client's business; server errors are logged once.
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "Request failed");
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<PayloadError> for ApiError {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::TooMany { .. } => Self::QueueFull,
            other => Self::BadRequest(other.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full => Self::QueueFull,
            QueueError::Closed => Self::Stopping,
        }
    }
}

pub fn router(state: HttpState) -> Router {
    let pages = crate::ui::router(crate::ui::UiState {
        runtime: state.runtime.clone(),
        health: state.health.clone(),
        sets: state.sets.clone(),
    })
    .route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        page_access,
    ));
    Router::new()
        .route("/hooks/{name}", post(hook))
        .route("/api/v1/signals", post(api_signals))
        .route("/api/v1/accounts", get(api_accounts))
        .route("/api/v1/accounts/{name}/clear", post(api_clear))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(pages)
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

fn runtime(state: &HttpState) -> Runtime {
    state.runtime.borrow().clone()
}

/// Checks `Authorization: Bearer T` against every configured token.
fn authorize(rt: &Runtime, headers: &HeaderMap) -> Result<(), ApiError> {
    let tokens = &rt.config.daemon.tokens;
    if tokens.is_empty() {
        // Validation allows this only on a loopback listener.
        return Ok(());
    }
    let given = credential(headers, "bearer")
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    if token_matches(tokens, given.trim()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid bearer token".into()))
    }
}

/// The credentials of `Authorization: SCHEME ...` when the scheme is `scheme`.
fn credential<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
        .map(|(_, credentials)| credentials)
}

/// Whether `given` is one of `tokens`, checking every one without stopping
/// at the first match and comparing digests, so that neither timing nor
/// length tells anything.
fn token_matches(tokens: &[crate::secret::Secret], given: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let mut ok = subtle::Choice::from(0);
    for t in tokens {
        ok |= Sha256::digest(t.expose().as_bytes()).ct_eq(&given);
    }
    bool::from(ok)
}

/// The status page's access (SPEC section 5): a token as bearer, or as the
/// password of HTTP Basic with any user name; without one, 401 with the
/// challenge that makes a browser ask. Open without tokens (loopback only).
async fn page_access(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let rt = runtime(&state);
    let tokens = &rt.config.daemon.tokens;
    let headers = request.headers();
    let basic_password = || {
        let decoded = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            credential(headers, "basic")?.trim(),
        )
        .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':')
            .map(|(_, password)| password.to_string())
    };
    let given = credential(headers, "bearer")
        .map(|t| t.trim().to_string())
        .or_else(basic_password);
    if tokens.is_empty() || given.is_some_and(|g| token_matches(tokens, &g)) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, r#"Basic realm="quotawatch""#),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "The status page takes one of daemon.tokens, as the password (any user name).\n",
    )
        .into_response()
}

fn header_str(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn authenticate_hook(
    rt: &Runtime,
    spec: &WebhookSpec,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let Some(secret) = &spec.hmac_secret else {
        return authorize(rt, headers);
    };
    let sig = SignatureHeaders {
        grafana_signature: header_str(headers, &spec.signature_header),
        grafana_timestamp: spec
            .timestamp_headers
            .iter()
            .find_map(|name| header_str(headers, name)),
        github_signature: header_str(headers, "x-hub-signature-256"),
    };
    webhook::verify_signature(
        spec.signature,
        secret.expose().as_bytes(),
        &sig,
        body,
        Utc::now(),
    )
    .map_err(|e| ApiError::Unauthorized(format!("signature check failed: {e}")))
}

async fn hook(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rt = runtime(&state);
    let spec = match rt.config.sources.get(&name).and_then(|s| s.webhook()) {
        Some(spec) => spec,
        None => return Err(ApiError::NotFound(format!("no webhook source `{name}`"))),
    };
    authenticate_hook(&rt, spec, &headers, &body)?;
    ledger_up(&rt)?;
    let parsed = webhook::parse(
        spec,
        &rt.config.accounts,
        &body,
        rt.clearer.clock.now(),
        state.queue.room(),
    )?;
    enqueue(&state, &name, parsed)
}

/// Signals are accepted only while the ledger answers: one that could not
/// be decided must be sent again, not answered 202 and lost.
fn ledger_up(rt: &Runtime) -> Result<(), ApiError> {
    match rt.clearer.health.unreachable() {
        Some(why) => Err(ApiError::LedgerDown(why)),
        None => Ok(()),
    }
}

/// Queues a batch whole or not at all, and answers what happened to each item.
fn enqueue(state: &HttpState, source: &str, parsed: Parsed) -> Result<Response, ApiError> {
    let Parsed {
        signals,
        resolved,
        rejected,
        truncated,
    } = parsed;
    let queued = signals.len();
    for r in &rejected {
        state.metrics.decision("skip", "unknown_account");
        tracing::warn!(source, index = r.index, account = r.account.as_deref(), reason = %r.reason, decision = "skip", "Alert names no known account");
    }
    if let Some(t) = &truncated {
        tracing::warn!(
            source, group = %t.group, truncated = t.alerts, account = t.account.as_deref(),
            "Alertmanager truncated the group (the receiver's max_alerts); set max_alerts: 0 for quotawatch"
        );
    }
    state.queue.try_push_all(signals)?;
    tracing::info!(
        source,
        queued,
        resolved,
        rejected = rejected.len(),
        "Signals received"
    );
    let mut body = json!({ "queued": queued, "resolved_ignored": resolved, "rejected": rejected });
    if let Some(t) = truncated {
        body["truncated"] = json!(t);
    }
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn api_signals(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rt = runtime(&state);
    authorize(&rt, &headers)?;
    ledger_up(&rt)?;
    let parsed = webhook::parse_generic(
        "api",
        "account",
        &rt.config.accounts,
        &body,
        rt.clearer.clock.now(),
        state.queue.room(),
    )?;
    enqueue(&state, "api", parsed)
}

/// `?state=&q=&limit=&offset=` of `GET /api/v1/accounts`. Other parameters
/// are ignored, as they were before paging (a script's cache-buster).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AccountsQuery {
    state: Option<StateFilter>,
    q: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn api_accounts(
    State(state): State<HttpState>,
    headers: HeaderMap,
    query: Result<Query<AccountsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let rt = runtime(&state);
    authorize(&rt, &headers)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // Without paging the answer is the one scripts have always read.
    let paged = query.state.is_some()
        || query.q.is_some()
        || query.limit.is_some()
        || query.offset.is_some();
    let filter = AccountQuery {
        state: query.state.unwrap_or_default(),
        q: query.q.filter(|q| !q.is_empty()),
        offset: query.offset.unwrap_or(0),
        limit: query.limit,
        locked_first: false,
    };
    let offset = query.offset;
    let body = tokio::task::spawn_blocking(move || {
        let page = list_accounts(
            rt.clearer.store.as_ref(),
            &rt.config,
            &filter,
            rt.clearer.clock.now(),
        )?;
        let answer = AccountsAnswer {
            accounts: &page.accounts,
            total: paged.then_some(page.total),
            offset: paged.then_some(offset.unwrap_or(0)),
            limit: paged.then_some(filter.limit),
        };
        let body = serde_json::to_vec(&answer)?;
        drop(page);
        if !paged {
            // Every account's status was built for this answer.
            crate::memory::release();
        }
        anyhow::Ok(body)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(crate::error_chain::display(e.as_ref())))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/v1/accounts`: `total`, `offset` and `limit` only when asked
/// to page or filter, so the unpaged answer keeps its old shape.
#[derive(Serialize)]
struct AccountsAnswer<'a> {
    accounts: &'a [crate::read_model::AccountStatus],
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<Option<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClearBody {
    reason: Option<String>,
    force: bool,
    dry_run: bool,
}

async fn api_clear(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rt = runtime(&state);
    authorize(&rt, &headers)?;
    let args: ClearBody = if body.iter().all(u8::is_ascii_whitespace) {
        ClearBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid clear request: {e}")))?
    };
    let account = rt
        .config
        .account(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no account `{name}`")))?;
    let request = ClearRequest {
        source: "api".into(),
        trigger: args.reason.unwrap_or_else(|| "manual (API)".into()),
        evidence: 0,
        cgi_path: None,
        manual: true,
        force: args.force,
        dry_run: args.dry_run,
        keys: Vec::new(),
        pacing: None,
    };
    let report = rt
        .clearer
        .handle(&account, request)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let summary = ClearSummary::new(&account, &report);
    let status = match (report.decision, summary.exit_code()) {
        (_, 0) => StatusCode::OK,
        (Decision::Skip(_), _) => StatusCode::CONFLICT,
        (Decision::Clear, _) => StatusCode::BAD_GATEWAY,
    };
    Ok((status, Json(summary)).into_response())
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let ledger = runtime(&state).clearer.health.unreachable();
    let ready = state.ready.load(Ordering::SeqCst) && ledger.is_none();
    let sources = state.health.snapshot();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "ledger": { "ok": ledger.is_none(), "error": ledger },
        "sources": sources.iter().map(|(k, v)| (k.clone(), json!({ "ok": v.is_none(), "error": v }))).collect::<serde_json::Map<_, _>>(),
        "sets": state.sets.health(),
    });
    (status, Json(body)).into_response()
}

/// How long a scrape waits for the ledger's lockout figures; past it the
/// scrape shows the last ones read.
const LOCKOUT_READ: std::time::Duration = std::time::Duration::from_secs(2);

async fn metrics(State(state): State<HttpState>) -> Response {
    refresh_lockout(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `quotawatch_locked` and `quotawatch_lockout_seconds_total` come from the
/// ledger, so every replica shows the same, whoever cleared.
async fn refresh_lockout(state: &HttpState) {
    let rt = runtime(state);
    let (store, now) = (rt.clearer.store.clone(), rt.clearer.clock.now());
    let read = tokio::task::spawn_blocking(move || store.lockout_totals(now));
    let totals = match tokio::time::timeout(LOCKOUT_READ, read).await {
        Ok(Ok(Ok(totals))) => totals,
        Ok(Ok(Err(e))) => {
            tracing::debug!(error = %e, "Cannot read the lockout figures for /metrics");
            return;
        }
        _ => return,
    };
    let by_appid: std::collections::HashMap<&str, _> =
        totals.iter().map(|t| (t.appid.as_str(), t)).collect();
    for account in rt.config.accounts.values() {
        let (locked, seconds) = by_appid
            .get(account.appid.as_str())
            .map_or((false, 0), |t| (t.locked, t.seconds));
        state.metrics.lockout(&account.name, locked, seconds);
    }
}

/// The surface over `config` and `store`, with a queue of `capacity`, for
/// router tests here and in [`crate::ui`].
#[cfg(test)]
pub(crate) fn test_state(
    config: Arc<crate::config::Config>,
    store: Arc<dyn crate::store::Store>,
    clock: crate::clock::Clock,
    capacity: usize,
) -> (
    HttpState,
    tokio::sync::mpsc::Receiver<crate::signal::Signal>,
) {
    use crate::clearer::{Clearer, NoEvents};
    let metrics = Arc::new(Metrics::new());
    let clearer = Arc::new(Clearer {
        store,
        wechat: Arc::new(crate::wechat::WeChat::new(&config.wechat).unwrap()),
        metrics: metrics.clone(),
        events: Arc::new(NoEvents),
        timezone: config.daemon.timezone,
        outcome_retry: crate::clearer::OUTCOME_RETRY,
        health: Default::default(),
        clock,
    });
    let (tx, runtime) = watch::channel(Runtime { config, clearer });
    // The surface outlives the test's borrow of the sender: keep it open.
    std::mem::forget(tx);
    let (queue, rx) = SignalQueue::new(capacity, metrics.clone());
    let state = HttpState {
        runtime,
        queue,
        metrics,
        health: SourceHealth::default(),
        sets: Default::default(),
        ready: Arc::new(AtomicBool::new(true)),
    };
    (state, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use crate::store::SqliteStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        state: HttpState,
        _rx: tokio::sync::mpsc::Receiver<crate::signal::Signal>,
    }

    fn fixture(extra: &str, capacity: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        std::fs::write(
            &path,
            format!(
                "[daemon]\nlisten = \"127.0.0.1:0\"\nstate = \"{}\"\ntokens = [\"good-token\"]\n\
                 [wechat]\napi_base = \"http://127.0.0.1:9\"\n[policy]\nreset_guard = \"0s\"\n\
                 [accounts.shop]\nappid = \"wx448f04719cd48f69\"\nkind = \"mini_program\"\nsecret = \"s3cret\"\n\
                 [sources.alerts]\ntype = \"alertmanager\"\n\
                 [sources.signed]\ntype = \"grafana\"\nhmac_secret = \"hmac-key\"\n{extra}",
                dir.path().join("l.db").display()
            ),
        )
        .unwrap();
        let config = Arc::new(crate::config::load(&path).unwrap());
        let store = Arc::new(SqliteStore::open(&dir.path().join("l.db")).unwrap());
        let (state, rx) = test_state(config, store, Default::default(), capacity);
        Fixture {
            _dir: dir,
            state,
            _rx: rx,
        }
    }

    const ALERT: &str = r#"{"version":"4","status":"firing","commonLabels":{},"alerts":[{"status":"firing","labels":{"alertname":"Quota","appid":"wx448f04719cd48f69"},"startsAt":"2026-11-28T10:00:00Z","fingerprint":"f1"}]}"#;

    async fn call(
        state: &HttpState,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(state.clone())
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    const AUTH: (&str, &str) = ("authorization", "Bearer good-token");

    #[tokio::test]
    async fn status_codes() {
        let f = fixture("", 10);
        let s = &f.state;
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Body, StatusCode);
        let cases: Vec<Case> = vec![
            (
                "POST",
                "/hooks/alerts",
                vec![AUTH],
                ALERT.into(),
                StatusCode::ACCEPTED,
            ),
            (
                "POST",
                "/hooks/alerts",
                vec![],
                ALERT.into(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "POST",
                "/hooks/alerts",
                vec![("authorization", "Bearer wrong")],
                ALERT.into(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "POST",
                "/hooks/alerts",
                vec![("authorization", "Basic Z29vZC10b2tlbg==")],
                ALERT.into(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "POST",
                "/hooks/alerts",
                vec![AUTH],
                "{not json".into(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/hooks/alerts",
                vec![AUTH],
                r#"{"alerts": 3}"#.into(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/hooks/nope",
                vec![AUTH],
                ALERT.into(),
                StatusCode::NOT_FOUND,
            ),
            (
                "POST",
                "/hooks/alerts",
                vec![AUTH],
                vec![b' '; BODY_LIMIT + 1].into(),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "POST",
                "/hooks/signed",
                vec![AUTH],
                ALERT.into(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "POST",
                "/api/v1/signals",
                vec![AUTH],
                r#"{"account":"shop","reason":"45009","count":3}"#.into(),
                StatusCode::ACCEPTED,
            ),
            (
                "POST",
                "/api/v1/signals",
                vec![AUTH],
                r#"{"account":"shop","bogus":1}"#.into(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/api/v1/signals",
                vec![],
                r#"{"account":"shop"}"#.into(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "GET",
                "/api/v1/accounts",
                vec![AUTH],
                Body::empty(),
                StatusCode::OK,
            ),
            (
                "GET",
                "/api/v1/accounts",
                vec![],
                Body::empty(),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "POST",
                "/api/v1/accounts/nobody/clear",
                vec![AUTH],
                Body::empty(),
                StatusCode::NOT_FOUND,
            ),
            (
                "POST",
                "/api/v1/accounts/shop/clear",
                vec![AUTH],
                r#"{"dry_run": true}"#.into(),
                StatusCode::OK,
            ),
            (
                "POST",
                "/api/v1/accounts/shop/clear",
                vec![AUTH],
                r#"{"dry_run": "x"}"#.into(),
                StatusCode::BAD_REQUEST,
            ),
            ("GET", "/healthz", vec![], Body::empty(), StatusCode::OK),
            ("GET", "/readyz", vec![], Body::empty(), StatusCode::OK),
            (
                "GET",
                "/elsewhere",
                vec![],
                Body::empty(),
                StatusCode::NOT_FOUND,
            ),
        ];
        for (method, uri, headers, body, want) in cases {
            let (got, json) = call(s, method, uri, &headers, body).await;
            assert_eq!(got, want, "{method} {uri} {headers:?}: {json}");
            if !got.is_success() {
                assert!(
                    json["error"].is_string() || got == StatusCode::PAYLOAD_TOO_LARGE,
                    "{method} {uri}: rejection without a JSON error: {json}"
                );
            }
        }
    }

    #[tokio::test]
    async fn full_queue_is_503_and_batches_are_all_or_nothing() {
        let f = fixture("", 1);
        let two = r#"[{"account":"shop","key":"a"},{"account":"shop","key":"b"}]"#;
        let (status, _) = call(&f.state, "POST", "/api/v1/signals", &[AUTH], two).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _) = call(
            &f.state,
            "POST",
            "/api/v1/signals",
            &[AUTH],
            r#"{"account":"shop"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, body) = call(
            &f.state,
            "POST",
            "/api/v1/signals",
            &[AUTH],
            r#"{"account":"shop"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }

    #[tokio::test]
    async fn alertmanager_reports_unknown_and_resolved() {
        let f = fixture("", 10);
        let body = r#"{"version":"4","commonLabels":{"appid":"wx448f04719cd48f69"},"alerts":[
            {"status":"firing","labels":{"alertname":"A"}},
            {"status":"firing","labels":{"appid":"wx0000000000000001"}},
            {"status":"firing","labels":{"alertname":"nolabel"}},
            {"status":"resolved","labels":{"appid":"wx448f04719cd48f69"}}]}"#;
        let (status, json) = call(&f.state, "POST", "/hooks/alerts", &[AUTH], body).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // The first and third alerts take the account from commonLabels.
        assert_eq!(json["queued"], 2, "{json}");
        assert_eq!(json["resolved_ignored"], 1);
        assert_eq!(json["rejected"][0]["account"], "wx0000000000000001");
    }

    /// Issue 10, item 3: a group cut by `max_alerts` is reported, and its
    /// truncated alerts count as evidence for the account `groupLabels` name.
    #[tokio::test]
    async fn truncated_alertmanager_groups_are_reported_and_counted() {
        let mut f = fixture("", 10);
        let body = r#"{"version":"4","groupKey":"{}:{appid=\"wx448f04719cd48f69\"}","truncatedAlerts":7,
            "groupLabels":{"alertname":"Quota","appid":"wx448f04719cd48f69"},
            "commonLabels":{"alertname":"Quota","appid":"wx448f04719cd48f69"},
            "alerts":[{"status":"firing","labels":{"alertname":"Quota","appid":"wx448f04719cd48f69"},"fingerprint":"f1"}]}"#;
        let (status, json) = call(&f.state, "POST", "/hooks/alerts", &[AUTH], body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        assert_eq!(json["queued"], 2, "{json}");
        assert_eq!(json["truncated"]["alerts"], 7, "{json}");
        assert_eq!(
            json["truncated"]["group"], "{}:{appid=\"wx448f04719cd48f69\"}",
            "{json}"
        );
        assert_eq!(json["truncated"]["account"], "wx448f04719cd48f69", "{json}");
        let counts: Vec<u32> = std::iter::from_fn(|| f._rx.try_recv().ok())
            .map(|s| s.count)
            .collect();
        assert_eq!(counts, [1, 7]);

        // Without an account in groupLabels: still reported, nothing counted.
        let body = r#"{"version":"4","groupKey":"g2","truncatedAlerts":3,"commonLabels":{},
            "alerts":[{"status":"firing","labels":{"appid":"wx448f04719cd48f69"},"fingerprint":"f2"}]}"#;
        let (_, json) = call(&f.state, "POST", "/hooks/alerts", &[AUTH], body).await;
        assert_eq!(json["queued"], 1, "{json}");
        assert_eq!(json["truncated"]["alerts"], 3, "{json}");
        assert!(json["truncated"]["account"].is_null(), "{json}");
    }

    /// Issue 19, item 1: Alertmanager truncates before it computes
    /// `commonLabels`, so with `group_by: [alertname]` the labels common to the
    /// alerts it kept name their account, not the dropped alerts'. Those are
    /// reported, never counted for the account of the alerts that were sent.
    #[tokio::test]
    async fn truncated_alerts_are_not_put_on_the_account_of_the_alerts_kept() {
        let mut f = fixture("", 10);
        let body = r#"{"version":"4","groupKey":"{}:{alertname=\"Quota\"}","truncatedAlerts":3,
            "groupLabels":{"alertname":"Quota"},
            "commonLabels":{"alertname":"Quota","appid":"wx448f04719cd48f69"},
            "alerts":[
              {"status":"firing","labels":{"alertname":"Quota","appid":"wx448f04719cd48f69","i":"1"},"fingerprint":"b1"},
              {"status":"firing","labels":{"alertname":"Quota","appid":"wx448f04719cd48f69","i":"2"},"fingerprint":"b2"}]}"#;
        let (status, json) = call(&f.state, "POST", "/hooks/alerts", &[AUTH], body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        assert_eq!(json["queued"], 2, "{json}");
        assert_eq!(json["truncated"]["alerts"], 3, "{json}");
        assert!(json["truncated"]["account"].is_null(), "{json}");
        let counts: Vec<u32> = std::iter::from_fn(|| f._rx.try_recv().ok())
            .map(|s| s.count)
            .collect();
        assert_eq!(counts, [1, 1]);
    }

    #[tokio::test]
    async fn grafana_hmac_signature() {
        let f = fixture("", 10);
        let ts = Utc::now().timestamp().to_string();
        let sig = hex::encode(webhook::hmac_sha256(
            b"hmac-key",
            &[ts.as_bytes(), b":", ALERT.as_bytes()],
        ));
        let good = [
            ("x-grafana-alerting-signature", sig.as_str()),
            ("x-grafana-alerting-timestamp", ts.as_str()),
        ];
        assert_eq!(
            call(&f.state, "POST", "/hooks/signed", &good, ALERT)
                .await
                .0,
            StatusCode::ACCEPTED
        );
        let tampered = ALERT.replace("Quota", "Quot4");
        assert_eq!(
            call(&f.state, "POST", "/hooks/signed", &good, tampered)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let old = (Utc::now().timestamp() - 600).to_string();
        let old_sig = hex::encode(webhook::hmac_sha256(
            b"hmac-key",
            &[old.as_bytes(), b":", ALERT.as_bytes()],
        ));
        let stale = [
            ("x-grafana-alerting-signature", old_sig.as_str()),
            ("x-grafana-alerting-timestamp", old.as_str()),
        ];
        assert_eq!(
            call(&f.state, "POST", "/hooks/signed", &stale, ALERT)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let github = format!(
            "sha256={}",
            hex::encode(webhook::hmac_sha256(b"hmac-key", &[ALERT.as_bytes()]))
        );
        assert_eq!(
            call(
                &f.state,
                "POST",
                "/hooks/signed",
                &[("x-hub-signature-256", github.as_str())],
                ALERT
            )
            .await
            .0,
            StatusCode::ACCEPTED
        );
    }

    /// Grafana lets operators rename both headers of its HMAC signature.
    #[tokio::test]
    async fn grafana_signature_headers_can_be_renamed() {
        let f = fixture(
            "[sources.renamed]\ntype = \"grafana\"\nhmac_secret = \"hmac-key\"\n\
             signature_header = \"X-Ops-Signature\"\ntimestamp_header = \"x-ops-timestamp\"\n",
            10,
        );
        let ts = Utc::now().timestamp().to_string();
        let sig = hex::encode(webhook::hmac_sha256(
            b"hmac-key",
            &[ts.as_bytes(), b":", ALERT.as_bytes()],
        ));
        let post = |uri: &'static str, headers: Vec<(&'static str, String)>| {
            let state = f.state.clone();
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                call(&state, "POST", uri, &headers, ALERT).await.0
            }
        };
        let renamed = vec![
            ("x-ops-signature", sig.clone()),
            ("X-OPS-TIMESTAMP", ts.clone()),
        ];
        let default = vec![
            ("x-grafana-alerting-signature", sig.clone()),
            ("x-grafana-alerting-timestamp", ts.clone()),
        ];
        assert_eq!(
            post("/hooks/renamed", renamed.clone()).await,
            StatusCode::ACCEPTED
        );
        assert_eq!(
            post("/hooks/renamed", default.clone()).await,
            StatusCode::UNAUTHORIZED,
            "the default names are not read once renamed"
        );
        // The timestamp is read from the renamed header: without it the
        // signature (over `ts:body`) does not match.
        assert_eq!(
            post(
                "/hooks/renamed",
                vec![
                    ("x-ops-signature", sig.clone()),
                    ("x-grafana-alerting-timestamp", ts.clone())
                ]
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(post("/hooks/signed", default).await, StatusCode::ACCEPTED);
        assert_eq!(
            post("/hooks/signed", renamed).await,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn metrics_and_readyz_details() {
        let f = fixture("", 10);
        f.state
            .health
            .set("prom", Some("connection refused".into()));
        let (status, json) = call(&f.state, "GET", "/readyz", &[], Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["sources"]["prom"]["error"], "connection refused");
        f.state.ready.store(false, Ordering::SeqCst);
        assert_eq!(
            call(&f.state, "GET", "/readyz", &[], Body::empty()).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        call(
            &f.state,
            "POST",
            "/api/v1/signals",
            &[AUTH],
            r#"{"account":"shop"}"#,
        )
        .await;
        let resp = router(f.state.clone())
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let text = String::from_utf8(
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap();
        assert!(
            text.contains("quotawatch_signals_total{source=\"api\"} 1"),
            "{text}"
        );
    }
}
