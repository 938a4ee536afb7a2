//! A fake chat platform for integration tests.
//!
//! It serves real HTTP on 127.0.0.1 (random port), records every request (path,
//! query, headers, raw and JSON body, arrival time) and answers like the chosen
//! platform: its success body, an error code in a 200 (WeCom, DingTalk, Feishu),
//! an HTTP error, a 429 with `Retry-After` (and Discord's JSON `retry_after`), or
//! no answer at all. Answers queued with `push` are used once each, in order;
//! then the default (success unless `set_default` says otherwise). Arrival
//! times are on tokio's clock, so a test on a paused clock reads exact gaps.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Which platform the fake imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    WeCom,
    DingTalk,
    Feishu,
    Slack,
    Discord,
    Webhook,
}

impl Flavor {
    /// The path and query of the webhook URL, shaped like the real one: the key
    /// sits where the platform puts it.
    fn endpoint(self) -> &'static str {
        match self {
            Flavor::WeCom => "/cgi-bin/webhook/send?key=fake-wecom-key",
            Flavor::DingTalk => "/robot/send?access_token=fake-dingtalk-token",
            Flavor::Feishu => "/open-apis/bot/v2/hook/fake-feishu-hook",
            Flavor::Slack => "/services/T0000/B0000/fake-slack-key",
            Flavor::Discord => "/api/webhooks/1/fake-discord-token",
            Flavor::Webhook => "/hooks/quota",
        }
    }
}

/// How the fake answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The platform's success answer.
    Ok,
    /// The platform's error body for this code: HTTP 200 with `errcode`
    /// (WeCom, DingTalk) or `code` (Feishu); HTTP 400 with JSON elsewhere.
    Code(i64, String),
    /// This status with a text body.
    Status(u16, String),
    /// HTTP 429 with `Retry-After` (whole seconds, rounded up) and, for
    /// Discord, the exact seconds as JSON `retry_after`.
    RateLimited(f64),
    /// Read the request, never answer.
    Hang,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The exact body bytes (what a signature covers).
    pub raw: Vec<u8>,
    /// The body parsed as JSON (`Null` if it was not JSON).
    pub body: Value,
    /// Tokio's clock: the real one unless the test paused it.
    pub at: tokio::time::Instant,
}

impl Received {
    /// A percent-decoded query parameter.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| urlencoding::decode(v).expect("UTF-8 query").into_owned())
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

struct State {
    answers: VecDeque<Answer>,
    default: Answer,
    received: Vec<Received>,
}

/// The fake server. Clones share state; the server lives as long as the runtime.
#[derive(Clone)]
pub struct FakeChat {
    addr: SocketAddr,
    flavor: Flavor,
    state: Arc<Mutex<State>>,
}

impl FakeChat {
    /// Binds 127.0.0.1:0 and serves in a background task of the current runtime.
    pub async fn start(flavor: Flavor) -> FakeChat {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake chat");
        let state = State {
            answers: VecDeque::new(),
            default: Answer::Ok,
            received: Vec::new(),
        };
        let fake = FakeChat {
            addr: tcp.local_addr().expect("local addr"),
            flavor,
            state: Arc::new(Mutex::new(state)),
        };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(tcp, app).await;
        });
        fake
    }

    /// The webhook URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.flavor.endpoint())
    }

    /// The path part of [`FakeChat::url`].
    pub fn path(&self) -> &'static str {
        self.flavor.endpoint().split('?').next().unwrap_or_default()
    }

    // A poisoned mutex only means another test thread panicked; the data is fine.
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an answer for the next request that has none queued before it.
    pub fn push(&self, answer: Answer) {
        self.st().answers.push_back(answer);
    }

    /// The answer once the queue is empty.
    pub fn set_default(&self, answer: Answer) {
        self.st().default = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.st().received.clone()
    }

    /// Waits until `n` requests arrived and returns them, or panics after `within`.
    /// Its waits are tokio timers: on a paused clock use `InProcess::until`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "fake chat: expected {n} requests within {within:?}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn record(&self, received: Received) -> Answer {
        let mut st = self.st();
        st.received.push(received);
        st.answers.pop_front().unwrap_or_else(|| st.default.clone())
    }

    fn respond(&self, answer: Answer) -> Response {
        match answer {
            Answer::Ok => self.success(),
            Answer::Code(code, msg) => self.error_code(code, &msg),
            Answer::Status(status, text) => (status_code(status), text).into_response(),
            Answer::RateLimited(secs) => self.rate_limited(secs),
            Answer::Hang => unreachable!("handled before responding"),
        }
    }

    fn success(&self) -> Response {
        match self.flavor {
            Flavor::WeCom | Flavor::DingTalk => {
                axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
            }
            Flavor::Feishu => axum::Json(json!({
                "StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"
            }))
            .into_response(),
            Flavor::Slack => "ok".into_response(),
            Flavor::Discord | Flavor::Webhook => StatusCode::NO_CONTENT.into_response(),
        }
    }

    fn error_code(&self, code: i64, msg: &str) -> Response {
        match self.flavor {
            Flavor::WeCom | Flavor::DingTalk => {
                axum::Json(json!({"errcode": code, "errmsg": msg})).into_response()
            }
            Flavor::Feishu => {
                axum::Json(json!({"code": code, "data": {}, "msg": msg})).into_response()
            }
            _ => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"code": code, "message": msg})),
            )
                .into_response(),
        }
    }

    fn rate_limited(&self, secs: f64) -> Response {
        let header = [("retry-after", (secs.ceil() as u64).to_string())];
        let body = match self.flavor {
            Flavor::Discord => {
                json!({"message": "You are being rate limited.", "retry_after": secs, "global": false})
            }
            _ => json!({"message": "rate limited"}),
        };
        (StatusCode::TOO_MANY_REQUESTS, header, axum::Json(body)).into_response()
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).expect("valid status")
}

async fn handle(AxState(fake): AxState<FakeChat>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 1 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let received = Received {
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
        at: tokio::time::Instant::now(),
    };
    match fake.record(received) {
        Answer::Hang => std::future::pending().await,
        answer => fake.respond(answer),
    }
}
