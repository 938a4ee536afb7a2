//! A fake WeChat API server for integration tests.
//!
//! It serves real HTTP on 127.0.0.1 (random port) and models the parts of WeChat
//! quotawatch relies on (SPEC.md section 1): stable tokens, the three full clear
//! endpoints with their shared 10-per-month budget, the single-API clear with its
//! 50-per-month budget, quota queries, and the legacy token endpoint that must never
//! be called. Tests inject faults per endpoint and inspect a log of every request.
//!
//! Choices where WeChat is vague, made strict so daemon bugs show up:
//! - `clear_quota` with a token of another appid answers 40013, including a
//!   component_access_token presented for an authorizer's appid (the platform must
//!   use the authorizer_access_token).
//! - `stable_token` serves plain accounts only (added with `add_account`); a
//!   third-party platform appid answers 40013.
//! - Errmsgs are the short forms from the test brief, without WeChat's " rid: …"
//!   suffix, except the 40164 helper which copies WeChat's full format.
//! - Month and day boundaries use Asia/Shanghai on the fake's clock (`set_now`);
//!   request timestamps use the real wall clock so tests can measure backoff.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, Request, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Asia::Shanghai;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub const STABLE_TOKEN: &str = "/cgi-bin/stable_token";
pub const LEGACY_TOKEN: &str = "/cgi-bin/token";
pub const CLEAR_QUOTA: &str = "/cgi-bin/clear_quota";
pub const CLEAR_QUOTA_V2: &str = "/cgi-bin/clear_quota/v2";
pub const COMPONENT_CLEAR_QUOTA_V2: &str = "/cgi-bin/component/clear_quota/v2";
pub const QUOTA_GET: &str = "/cgi-bin/openapi/quota/get";
pub const QUOTA_CLEAR: &str = "/cgi-bin/openapi/quota/clear";
pub const AUTHORIZER_LIST: &str = "/cgi-bin/component/api_get_authorizer_list";

/// WeChat's most authorizers per `api_get_authorizer_list` page.
pub const AUTHORIZER_PAGE: u64 = 500;

/// Full clears per appid per calendar month, shared by every full clear endpoint.
pub const MONTHLY_CLEARS: usize = 10;
/// Single-API clears (`openapi/quota/clear`) per appid per calendar month.
pub const MONTHLY_API_CLEARS: usize = 50;
/// WeChat limits `force_refresh=true` on stable_token to 20 per day.
pub const DAILY_FORCE_REFRESHES: usize = 20;

const ERRMSG_40164: &str = "invalid ip 203.0.113.5 ipv6 ::ffff:203.0.113.5, \
                            not in whitelist rid: 64f0a1b2-1c2d3e4f-5a6b7c8d";

/// One injected misbehaviour, consumed by one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 200 with `{"errcode": N, "errmsg": S}`; nothing takes effect.
    Errcode(i64, String),
    /// That HTTP status with a short text body; nothing takes effect.
    Status(u16),
    /// HTTP 200 with a body that is not JSON; nothing takes effect.
    Garbage,
    /// The request is read, then the TCP connection is aborted (RST) without a
    /// response; nothing takes effect.
    Reset,
    /// The request is read and never answered.
    Hang,
    /// Sleep, then process the request normally.
    Delay(Duration),
    /// Process the request (a clear takes effect), sleep, then answer: lets a
    /// client time out on a clear that did happen.
    DelayAfterEffect(Duration),
    /// Answer 42001 and expire the presented access_token.
    ExpireToken,
}

impl Fault {
    /// An errcode fault with WeChat's usual errmsg for that code.
    pub fn errcode(code: i64) -> Fault {
        Fault::Errcode(code, default_errmsg(code).to_string())
    }

    /// 40164 with an errmsg in WeChat's format, naming 203.0.113.5.
    pub fn ip_not_whitelisted() -> Fault {
        Fault::Errcode(40164, ERRMSG_40164.to_string())
    }
}

/// WeChat's usual errmsg for the codes quotawatch classifies.
pub fn default_errmsg(code: i64) -> &'static str {
    match code {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40125 => "invalid appsecret",
        40164 => ERRMSG_40164,
        41002 => "appid missing",
        41004 => "appsecret missing",
        42001 => "access_token expired",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        48006 => "forbid to clear quota because of reaching the limit",
        61003 => "component is not authorized by this account",
        76021 => "cgi_path not found",
        _ => "fake error",
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// The body parsed as JSON, if it was JSON.
    pub body: Option<Value>,
    /// The body as text (lossy UTF-8).
    pub raw_body: String,
    /// Real wall-clock arrival time (not the `set_now` clock).
    pub at: DateTime<Utc>,
}

impl Recorded {
    /// A decoded query-string parameter.
    pub fn query_param(&self, key: &str) -> Option<String> {
        parse_query(self.query.as_deref()).remove(key)
    }

    /// A string field of the JSON body.
    pub fn body_str(&self, key: &str) -> Option<String> {
        self.body.as_ref()?.get(key)?.as_str().map(str::to_string)
    }
}

/// A clear that took effect (counted against a budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearEvent {
    pub appid: String,
    /// The endpoint path, or "console" for `record_console_clears`.
    pub endpoint: String,
    /// The cgi_path for single-API clears.
    pub cgi_path: Option<String>,
    /// On the fake's clock.
    pub at: DateTime<Utc>,
}

/// Where `clear_quota/v2` found its parameters (SPEC: send both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V2Params {
    pub appid_in_query: bool,
    pub appid_in_body: bool,
    pub secret_in_query: bool,
    pub secret_in_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Account,
    Component,
    Authorizer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenStatus {
    Valid,
    /// Answers 42001.
    Expired,
    /// Replaced by a force refresh; answers 40001.
    Revoked,
}

#[derive(Debug, Clone)]
struct TokenInfo {
    appid: String,
    status: TokenStatus,
}

#[derive(Debug, Clone, Default)]
struct Account {
    /// None for an authorizer added only through `authorize`.
    secret: Option<String>,
    /// The component managing this account, if any.
    component: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Quota {
    daily_limit: u64,
    used: u64,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, Account>,
    /// (component, authorizer) in the order of authorization, as WeChat's
    /// authorizer list pages them.
    authorizations: Vec<(String, String)>,
    /// Authorizers the list counts in `total_count` but never pages: a list
    /// that ends early.
    authorizers_unlisted: usize,
    components: HashMap<String, String>,
    tokens: HashMap<String, TokenInfo>,
    /// appid -> the token stable_token currently hands out.
    stable: HashMap<String, String>,
    next_token: u64,
    clears: Vec<ClearEvent>,
    api_clears: Vec<ClearEvent>,
    quotas: HashMap<(String, String), Quota>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    /// Key None is the any-endpoint queue.
    faults: HashMap<Option<String>, VecDeque<Fault>>,
    /// (appid, fake-clock time) of every force_refresh=true call.
    force_refreshes: Vec<(String, DateTime<Utc>)>,
    v2_params: Vec<V2Params>,
    default_delay_after_effect: Option<Duration>,
    now_override: Option<DateTime<Utc>>,
}

/// The fake server. Clones share state; the server lives as long as the runtime.
#[derive(Clone)]
pub struct FakeWeChat {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeWeChat {
    /// Binds 127.0.0.1:0 and serves in a background task of the current runtime.
    pub async fn start() -> FakeWeChat {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = tcp.local_addr().expect("fake local addr");
        let fake = FakeWeChat {
            addr,
            state: Arc::default(),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        let make = app.into_make_service_with_connect_info::<ConnHandle>();
        tokio::spawn(async move {
            let _ = axum::serve(KillableListener(tcp), make).await;
        });
        fake
    }

    /// "http://127.0.0.1:PORT", to use as `wechat.api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    // A poisoned mutex only means another test thread panicked; the data is fine.
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- accounts and tokens -------------------------------------------------

    /// An account (official account or mini program) with its appsecret.
    pub fn add_account(&self, appid: &str, secret: &str) {
        let mut st = self.st();
        let acct = st.accounts.entry(appid.to_string()).or_default();
        acct.secret = Some(secret.to_string());
    }

    /// A third-party platform with its component_appsecret.
    pub fn add_component(&self, component_appid: &str, secret: &str) {
        let mut st = self.st();
        st.components
            .insert(component_appid.to_string(), secret.to_string());
    }

    /// Makes `authorizer_appid` an account managed by the component; creates the
    /// account (without a secret) if it was not added.
    pub fn authorize(&self, component_appid: &str, authorizer_appid: &str) {
        let mut st = self.st();
        assert!(
            st.components.contains_key(component_appid),
            "fake: authorize with unknown component {component_appid}"
        );
        let acct = st.accounts.entry(authorizer_appid.to_string()).or_default();
        acct.component = Some(component_appid.to_string());
        st.authorizations
            .push((component_appid.to_string(), authorizer_appid.to_string()));
    }

    /// The account withdraws its authorization: it leaves the component's
    /// list and the component may no longer clear it.
    pub fn deauthorize(&self, component_appid: &str, authorizer_appid: &str) {
        let mut st = self.st();
        st.authorizations
            .retain(|(c, a)| !(c == component_appid && a == authorizer_appid));
        if let Some(acct) = st.accounts.get_mut(authorizer_appid) {
            acct.component = None;
        }
    }

    /// Makes the authorizer list end `n` entries before its `total_count`
    /// (0: whole again).
    pub fn set_authorizers_unlisted(&self, n: usize) {
        self.st().authorizers_unlisted = n;
    }

    /// The `refresh_token` the authorizer list hands out for an authorizer:
    /// a secret quotawatch must never log, store or show.
    pub fn refresh_token_of(authorizer_appid: &str) -> String {
        format!("refreshtoken@@@{authorizer_appid}-5ecret")
    }

    /// A new valid token for the appid, as if obtained elsewhere: a
    /// component_access_token for a component, an authorizer_access_token for a
    /// managed account, else an access_token. Panics for an unknown appid.
    pub fn issue_token(&self, appid: &str) -> String {
        let mut st = self.st();
        let kind = if st.components.contains_key(appid) {
            TokenKind::Component
        } else {
            match st.accounts.get(appid) {
                Some(a) if a.component.is_some() => TokenKind::Authorizer,
                Some(_) => TokenKind::Account,
                None => panic!("fake: issue_token for unknown appid {appid}"),
            }
        };
        st.new_token(appid, kind)
    }

    /// Expires one token (it then answers 42001), as WeChat does after 2 hours.
    pub fn expire_token(&self, token: &str) {
        self.st().set_token_status(token, TokenStatus::Expired);
    }

    /// Whether WeChat would accept this token now.
    pub fn token_is_valid(&self, token: &str) -> bool {
        let st = self.st();
        matches!(st.tokens.get(token), Some(t) if t.status == TokenStatus::Valid)
    }

    /// stable_token calls with force_refresh=true for the appid (refused included).
    pub fn force_refreshes(&self, appid: &str) -> u32 {
        let st = self.st();
        st.force_refreshes
            .iter()
            .filter(|(a, _)| a == appid)
            .count() as u32
    }

    // ---- quotas and budgets --------------------------------------------------

    /// Sets one API's daily quota for an appid (also makes the cgi_path known).
    pub fn set_quota(&self, appid: &str, cgi_path: &str, daily_limit: u64, used: u64) {
        let key = (appid.to_string(), cgi_path.to_string());
        let quota = Quota { daily_limit, used };
        self.st().quotas.insert(key, quota);
    }

    /// One API's `used` counter, if the cgi_path is known for the appid.
    pub fn quota_used(&self, appid: &str, cgi_path: &str) -> Option<u64> {
        let key = (appid.to_string(), cgi_path.to_string());
        self.st().quotas.get(&key).map(|q| q.used)
    }

    /// Full clears that took effect for the appid in the current Beijing month.
    pub fn clears_effective(&self, appid: &str) -> u32 {
        let st = self.st();
        st.in_month(&st.clears, appid) as u32
    }

    /// Single-API clears that took effect for the appid in the current month.
    pub fn api_clears_effective(&self, appid: &str) -> u32 {
        let st = self.st();
        st.in_month(&st.api_clears, appid) as u32
    }

    /// Every full clear that took effect, any month, in order.
    pub fn clear_events(&self) -> Vec<ClearEvent> {
        self.st().clears.clone()
    }

    /// Every single-API clear that took effect, in order.
    pub fn api_clear_events(&self) -> Vec<ClearEvent> {
        self.st().api_clears.clone()
    }

    /// Spends `n` of this month's budget as if people clicked "clear" in the
    /// console (SPEC: console clears count too).
    pub fn record_console_clears(&self, appid: &str, n: u32) {
        let mut st = self.st();
        let at = st.now();
        for _ in 0..n {
            st.clears.push(ClearEvent {
                appid: appid.to_string(),
                endpoint: "console".to_string(),
                cgi_path: None,
                at,
            });
        }
    }

    /// Freezes the fake's clock (month/day budgets); None returns to real time.
    pub fn set_now(&self, now: Option<DateTime<Utc>>) {
        self.st().now_override = now;
    }

    // ---- faults ----------------------------------------------------------------

    /// Queues a fault for one endpoint path (exact match) or, with None, for any
    /// request. A path's own queue is consumed before the any-endpoint queue.
    pub fn push_fault(&self, path: Option<&str>, fault: Fault) {
        let key = path.map(str::to_string);
        self.st().faults.entry(key).or_default().push_back(fault);
    }

    /// Faults still queued (all queues).
    pub fn pending_faults(&self) -> usize {
        self.st().faults.values().map(VecDeque::len).sum()
    }

    /// Slows every clear endpoint: apply the clear, sleep, then answer. Lets a
    /// test kill the daemon while a clear is in flight.
    pub fn set_default_delay_after_effect(&self, delay: Option<Duration>) {
        self.st().default_delay_after_effect = delay;
    }

    // ---- observation -------------------------------------------------------------

    /// Every request received, in arrival order (faulted ones included).
    pub fn requests(&self) -> Vec<Recorded> {
        self.st().requests.clone()
    }

    /// Requests whose path starts with the prefix. Note "/cgi-bin/clear_quota"
    /// also matches "/cgi-bin/clear_quota/v2"; use `count_exact` to tell them apart.
    pub fn count(&self, path_prefix: &str) -> usize {
        let st = self.st();
        st.requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    /// Requests to exactly this path.
    pub fn count_exact(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    /// Requests to exactly this path, in order.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        let st = self.st();
        let hits = st.requests.iter().filter(|r| r.path == path);
        hits.cloned().collect()
    }

    /// Where each clear_quota/v2 request carried appid and appsecret.
    pub fn v2_params(&self) -> Vec<V2Params> {
        self.st().v2_params.clone()
    }

    /// Things quotawatch must never do: the legacy token endpoint, unknown
    /// endpoints, wrong methods. Tests assert this stays empty.
    pub fn violations(&self) -> Vec<String> {
        self.st().violations.clone()
    }

    // ---- request handling ------------------------------------------------------

    fn record_and_take_fault(&self, inc: &Incoming) -> Option<Fault> {
        let mut st = self.st();
        st.requests.push(inc.recorded());
        let own = st.faults.get_mut(&Some(inc.path.clone()));
        if let Some(fault) = own.and_then(VecDeque::pop_front) {
            return Some(fault);
        }
        st.faults.get_mut(&None).and_then(VecDeque::pop_front)
    }

    /// Applies the request to the state and builds the answer; no awaits inside.
    fn process(&self, inc: &Incoming) -> Response {
        let mut st = self.st();
        let (status, body) = st.route(inc);
        (status, axum::Json(body)).into_response()
    }

    /// Processes normally, honouring the default delay on clear endpoints.
    async fn answer(&self, inc: &Incoming) -> Response {
        let response = self.process(inc);
        let delay = self.st().default_delay_after_effect;
        if let (Some(d), true) = (delay, is_clear_path(&inc.path)) {
            tokio::time::sleep(d).await;
        }
        response
    }

    fn expire_presented_token(&self, inc: &Incoming) -> Response {
        if let Some(token) = inc.query.get("access_token") {
            self.expire_token(token);
        }
        wechat_json(err(42001))
    }
}

fn is_clear_path(path: &str) -> bool {
    matches!(
        path,
        CLEAR_QUOTA | CLEAR_QUOTA_V2 | COMPONENT_CLEAR_QUOTA_V2 | QUOTA_CLEAR
    )
}

fn month_of(t: DateTime<Utc>) -> (i32, u32) {
    let local = t.with_timezone(&Shanghai);
    (local.year(), local.month())
}

fn day_of(t: DateTime<Utc>) -> chrono::NaiveDate {
    t.with_timezone(&Shanghai).date_naive()
}

fn err(code: i64) -> Value {
    json!({"errcode": code, "errmsg": default_errmsg(code)})
}

fn ok() -> Value {
    err(0)
}

fn wechat_json(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let uri = format!("/?{}", query.unwrap_or_default());
    let parsed = uri.parse().ok().and_then(|u| Query::try_from_uri(&u).ok());
    parsed.map(|Query(map)| map).unwrap_or_default()
}

/// A request reduced to what the endpoints need.
struct Incoming {
    method: String,
    path: String,
    raw_query: Option<String>,
    query: HashMap<String, String>,
    /// Parsed JSON; None when the body is not JSON (an empty body counts as {}).
    body: Option<Value>,
    raw_body: String,
}

impl Incoming {
    async fn read(req: Request) -> Incoming {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let raw_body = String::from_utf8_lossy(&bytes).into_owned();
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Some(json!({}))
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        let raw_query = parts.uri.query().map(str::to_string);
        Incoming {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parse_query(raw_query.as_deref()),
            raw_query,
            body,
            raw_body,
        }
    }

    fn recorded(&self) -> Recorded {
        Recorded {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.raw_query.clone(),
            body: serde_json::from_str(&self.raw_body).ok(),
            raw_body: self.raw_body.clone(),
            at: Utc::now(),
        }
    }

    /// A non-empty string field of the JSON body.
    fn field(&self, key: &str) -> Option<String> {
        let v = self.body.as_ref()?.get(key)?.as_str()?;
        (!v.is_empty()).then(|| v.to_string())
    }

    fn param(&self, key: &str) -> Option<String> {
        self.query.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

/// The answer to a request after any fault: status and WeChat JSON.
type Answer = (StatusCode, Value);

fn answer(body: Value) -> Answer {
    (StatusCode::OK, body)
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        self.now_override.unwrap_or_else(Utc::now)
    }

    fn in_month(&self, events: &[ClearEvent], appid: &str) -> usize {
        let month = month_of(self.now());
        let same = |e: &&ClearEvent| e.appid == appid && month_of(e.at) == month;
        events.iter().filter(same).count()
    }

    fn new_token(&mut self, appid: &str, kind: TokenKind) -> String {
        self.next_token += 1;
        let prefix = match kind {
            TokenKind::Account => "ACCESS",
            TokenKind::Component => "COMPONENT",
            TokenKind::Authorizer => "AUTHORIZER",
        };
        let token = format!("{prefix}_{appid}_{:06}", self.next_token);
        let info = TokenInfo {
            appid: appid.to_string(),
            status: TokenStatus::Valid,
        };
        self.tokens.insert(token.clone(), info);
        token
    }

    fn set_token_status(&mut self, token: &str, status: TokenStatus) {
        if let Some(info) = self.tokens.get_mut(token) {
            info.status = status;
        }
    }

    fn violation(&mut self, inc: &Incoming, why: &str) -> Answer {
        let line = format!("{} {}: {why}", inc.method, inc.path);
        self.violations.push(line);
        let body = json!({"errcode": -1, "errmsg": format!("fake: {why}")});
        (StatusCode::NOT_FOUND, body)
    }

    fn route(&mut self, inc: &Incoming) -> Answer {
        if inc.path == LEGACY_TOKEN {
            // Real WeChat would answer and knock production off its token.
            return self.violation(inc, "legacy /cgi-bin/token must never be called");
        }
        let known = [
            STABLE_TOKEN,
            CLEAR_QUOTA,
            CLEAR_QUOTA_V2,
            COMPONENT_CLEAR_QUOTA_V2,
            QUOTA_GET,
            QUOTA_CLEAR,
            AUTHORIZER_LIST,
        ];
        if !known.contains(&inc.path.as_str()) {
            return self.violation(inc, "unknown endpoint");
        }
        if inc.method != "POST" {
            return self.violation(inc, "require POST method");
        }
        if inc.body.is_none() {
            return answer(json!({"errcode": 47001, "errmsg": "data format error"}));
        }
        answer(self.endpoint(inc))
    }

    fn endpoint(&mut self, inc: &Incoming) -> Value {
        match inc.path.as_str() {
            STABLE_TOKEN => self.stable_token(inc),
            CLEAR_QUOTA => self.clear_quota(inc),
            CLEAR_QUOTA_V2 => self.clear_quota_v2(inc),
            COMPONENT_CLEAR_QUOTA_V2 => self.component_clear(inc),
            QUOTA_GET => self.quota_get(inc),
            QUOTA_CLEAR => self.quota_clear(inc),
            AUTHORIZER_LIST => self.authorizer_list(inc),
            other => unreachable!("route checked {other}"),
        }
    }

    fn stable_token(&mut self, inc: &Incoming) -> Value {
        if inc.field("grant_type").as_deref() != Some("client_credential") {
            return json!({"errcode": 40002, "errmsg": "invalid grant_type"});
        }
        let (appid, secret) = match (inc.field("appid"), inc.field("secret")) {
            (None, _) => return err(41002),
            (_, None) => return err(41004),
            (Some(a), Some(s)) => (a, s),
        };
        if let Err(e) = self.check_account_secret(&appid, &secret) {
            return e;
        }
        let force = inc.body.as_ref().and_then(|b| b.get("force_refresh"));
        if force.and_then(Value::as_bool) == Some(true) {
            if let Err(e) = self.note_force_refresh(&appid) {
                return e;
            }
        }
        let token = self.stable_token_for(&appid);
        json!({"access_token": token, "expires_in": 7200})
    }

    /// Records a force refresh and revokes the current stable token (WeChat
    /// invalidates it); refuses past the daily limit.
    fn note_force_refresh(&mut self, appid: &str) -> Result<(), Value> {
        let now = self.now();
        self.force_refreshes.push((appid.to_string(), now));
        let today = |(a, t): &&(String, DateTime<Utc>)| a == appid && day_of(*t) == day_of(now);
        if self.force_refreshes.iter().filter(today).count() > DAILY_FORCE_REFRESHES {
            return Err(err(45009));
        }
        if let Some(old) = self.stable.remove(appid) {
            self.set_token_status(&old, TokenStatus::Revoked);
        }
        Ok(())
    }

    /// The current stable token, or a new one once the old one stopped working.
    fn stable_token_for(&mut self, appid: &str) -> String {
        let current = self.stable.get(appid).cloned();
        let valid = |t: &String| self.tokens[t].status == TokenStatus::Valid;
        if let Some(token) = current.filter(valid) {
            return token;
        }
        let token = self.new_token(appid, TokenKind::Account);
        self.stable.insert(appid.to_string(), token.clone());
        token
    }

    fn check_account_secret(&self, appid: &str, secret: &str) -> Result<(), Value> {
        match self.accounts.get(appid) {
            None => Err(err(40013)),
            Some(a) if a.secret.as_deref() == Some(secret) => Ok(()),
            Some(_) => Err(err(40125)),
        }
    }

    fn check_token(&self, inc: &Incoming) -> Result<TokenInfo, Value> {
        let Some(token) = inc.param("access_token") else {
            return Err(json!({"errcode": 41001, "errmsg": "access_token missing"}));
        };
        match self.tokens.get(&token) {
            Some(t) if t.status == TokenStatus::Valid => Ok(t.clone()),
            Some(t) if t.status == TokenStatus::Expired => Err(err(42001)),
            _ => Err(err(40001)),
        }
    }

    fn clear_quota(&mut self, inc: &Incoming) -> Value {
        let token = match self.check_token(inc) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let Some(appid) = inc.field("appid") else {
            return err(41002);
        };
        // Strict: only the appid's own token (access, authorizer or, for the
        // platform itself, component token) may clear it.
        if token.appid != appid {
            return err(40013);
        }
        self.spend_clear(&appid, CLEAR_QUOTA)
    }

    fn clear_quota_v2(&mut self, inc: &Incoming) -> Value {
        let seen = V2Params {
            appid_in_query: inc.param("appid").is_some(),
            appid_in_body: inc.field("appid").is_some(),
            secret_in_query: inc.param("appsecret").is_some(),
            secret_in_body: inc.field("appsecret").is_some(),
        };
        self.v2_params.push(seen);
        // The body wins when both carry a value.
        let appid = inc.field("appid").or_else(|| inc.param("appid"));
        let secret = inc.field("appsecret").or_else(|| inc.param("appsecret"));
        let (appid, secret) = match (appid, secret) {
            (None, _) => return err(41002),
            (_, None) => return err(41004),
            (Some(a), Some(s)) => (a, s),
        };
        match self.check_account_secret(&appid, &secret) {
            Ok(()) => self.spend_clear(&appid, CLEAR_QUOTA_V2),
            Err(e) => e,
        }
    }

    fn component_clear(&mut self, inc: &Incoming) -> Value {
        let (component, secret) = match (inc.field("component_appid"), inc.field("appsecret")) {
            (None, _) => return err(41002),
            (_, None) => return err(41004),
            (Some(c), Some(s)) => (c, s),
        };
        match self.components.get(&component) {
            None => return err(40013),
            Some(s) if *s != secret => return err(40125),
            Some(_) => {}
        }
        let target = inc.field("appid").unwrap_or_else(|| component.clone());
        if target != component && !self.manages(&component, &target) {
            return err(61003);
        }
        self.spend_clear(&target, COMPONENT_CLEAR_QUOTA_V2)
    }

    /// A page of the component's authorizers, for its component_access_token
    /// only; `count` above 500 is refused as WeChat does.
    fn authorizer_list(&mut self, inc: &Incoming) -> Value {
        let token = match self.check_token(inc) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let Some(component) = inc.field("component_appid") else {
            return err(41002);
        };
        if token.appid != component || !self.components.contains_key(&component) {
            return err(40013);
        }
        let number = |key: &str| {
            inc.body
                .as_ref()
                .and_then(|b| b.get(key))
                .and_then(Value::as_u64)
        };
        let (Some(offset), Some(count)) = (number("offset"), number("count")) else {
            return json!({"errcode": 40097, "errmsg": "invalid args"});
        };
        if count == 0 || count > AUTHORIZER_PAGE {
            return json!({"errcode": 40097, "errmsg": "invalid args: count must be 1 to 500"});
        }
        let all: Vec<&String> = self
            .authorizations
            .iter()
            .filter(|(c, _)| *c == component)
            .map(|(_, a)| a)
            .collect();
        let list: Vec<Value> = all
            .iter()
            .skip(offset as usize)
            .take(count as usize)
            .map(|a| json!({"authorizer_appid": a, "refresh_token": FakeWeChat::refresh_token_of(a), "auth_time": 1_700_000_000}))
            .collect();
        json!({"total_count": all.len() + self.authorizers_unlisted, "list": list})
    }

    fn manages(&self, component: &str, appid: &str) -> bool {
        let acct = self.accounts.get(appid);
        acct.and_then(|a| a.component.as_deref()) == Some(component)
    }

    /// One full clear against the shared monthly budget; resets every API counter.
    fn spend_clear(&mut self, appid: &str, endpoint: &str) -> Value {
        if self.in_month(&self.clears, appid) >= MONTHLY_CLEARS {
            return err(48006);
        }
        let at = self.now();
        self.clears.push(ClearEvent {
            appid: appid.to_string(),
            endpoint: endpoint.to_string(),
            cgi_path: None,
            at,
        });
        let own = self.quotas.iter_mut().filter(|((a, _), _)| a == appid);
        own.for_each(|(_, q)| q.used = 0);
        ok()
    }

    /// The token's appid and the requested cgi_path, which must be known.
    fn quota_target(&self, inc: &Incoming) -> Result<(String, String), Value> {
        let token = self.check_token(inc)?;
        let Some(cgi_path) = inc.field("cgi_path") else {
            return Err(json!({"errcode": 40097, "errmsg": "invalid args"}));
        };
        let key = (token.appid, cgi_path);
        if !self.quotas.contains_key(&key) {
            return Err(err(76021));
        }
        Ok(key)
    }

    fn quota_get(&mut self, inc: &Incoming) -> Value {
        let key = match self.quota_target(inc) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let q = self.quotas[&key];
        let limit = json!({"call_count": 100, "refresh_second": 60});
        json!({
            "errcode": 0,
            "errmsg": "ok",
            "quota": {
                "daily_limit": q.daily_limit,
                "used": q.used,
                "remain": q.daily_limit.saturating_sub(q.used),
            },
            "rate_limit": limit,
            "component_rate_limit": limit,
        })
    }

    fn quota_clear(&mut self, inc: &Incoming) -> Value {
        let (appid, cgi_path) = match self.quota_target(inc) {
            Ok(k) => k,
            Err(e) => return e,
        };
        if self.in_month(&self.api_clears, &appid) >= MONTHLY_API_CLEARS {
            return err(48006);
        }
        let at = self.now();
        let key = (appid.clone(), cgi_path.clone());
        self.quotas.get_mut(&key).expect("checked").used = 0;
        self.api_clears.push(ClearEvent {
            appid,
            endpoint: QUOTA_CLEAR.to_string(),
            cgi_path: Some(cgi_path),
            at,
        });
        ok()
    }
}

// ---- HTTP plumbing ---------------------------------------------------------------

/// The single handler: every request goes through the log and the fault queues
/// before the endpoint logic, so faults work the same on every path.
async fn handle(
    AxState(fake): AxState<FakeWeChat>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
) -> Response {
    let inc = Incoming::read(req).await;
    let Some(fault) = fake.record_and_take_fault(&inc) else {
        return fake.answer(&inc).await;
    };
    match fault {
        Fault::Errcode(code, msg) => wechat_json(json!({"errcode": code, "errmsg": msg})),
        Fault::Status(code) => status_response(code),
        Fault::Garbage => garbage_response(),
        Fault::Reset => conn.reset(),
        Fault::Hang => std::future::pending().await,
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            fake.answer(&inc).await
        }
        Fault::DelayAfterEffect(d) => {
            let response = fake.process(&inc);
            tokio::time::sleep(d).await;
            response
        }
        Fault::ExpireToken => fake.expire_presented_token(&inc),
    }
}

fn status_response(code: u16) -> Response {
    let status = StatusCode::from_u16(code).expect("fake: valid HTTP status");
    (status, format!("fake status {code}")).into_response()
}

fn garbage_response() -> Response {
    let html = "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>";
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html")
        .body(Body::from(html))
        .expect("static response")
}

/// Per-connection kill switch, handed to the handler through ConnectInfo.
/// axum hides the socket from handlers, so `Reset` flips this flag and returns a
/// dummy response: when hyper tries to write it, the stream sets SO_LINGER 0 and
/// fails, hyper drops the connection, and the kernel sends RST. The client sees a
/// connection error after it sent the whole request, as with a real reset.
#[derive(Clone, Default)]
struct ConnHandle {
    killed: Arc<AtomicBool>,
}

impl ConnHandle {
    fn reset(&self) -> Response {
        self.killed.store(true, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.io().handle.clone()
    }
}

struct KillableListener(TcpListener);

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        let io = KillableStream {
            tcp,
            handle: ConnHandle::default(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

struct KillableStream {
    tcp: TcpStream,
    handle: ConnHandle,
}

impl KillableStream {
    /// Once killed, arm an abortive close and fail every operation.
    fn check(&self) -> io::Result<()> {
        if !self.handle.killed.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Linger 0 makes close() send RST and never blocks.
        #[allow(deprecated)]
        let _ = self.tcp.set_linger(Some(Duration::ZERO));
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "fake reset"))
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
