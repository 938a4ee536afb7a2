//! A fake of Prometheus's range query API (`GET /api/v1/query_range`) for
//! `simulate --prometheus`.
//!
//! It serves real HTTP on 127.0.0.1 (random port). Each query string has its
//! series (labels and samples at Unix seconds); a request gets the samples at
//! its evaluation times (start, start + step, ... up to end), like
//! Prometheus, series with none left out. It refuses, with Prometheus's own
//! error, a query over 11,000 points per series, and records every request.
//! [`FakeRangePrometheus::answer`] replaces the model with a fixed answer
//! (an error, a vector, a body that is not JSON).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Prometheus's limit on points per series in one range query.
pub const POINTS_LIMIT: i64 = 11_000;

/// One range query as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRequest {
    pub query: String,
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl RangeRequest {
    /// Evaluation times in the request: what the points limit counts.
    pub fn points(&self) -> i64 {
        (self.end - self.start) / self.step + 1
    }
}

/// Labels and (Unix seconds, value) samples.
type Series = (BTreeMap<String, String>, BTreeMap<i64, String>);

#[derive(Default)]
struct State {
    series: HashMap<String, Vec<Series>>,
    /// A fixed answer (status, raw body, content type) instead of the model.
    answer: Option<(u16, String, &'static str)>,
    requests: Vec<RangeRequest>,
}

#[derive(Clone)]
pub struct FakeRangePrometheus {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeRangePrometheus {
    pub async fn start() -> FakeRangePrometheus {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Prometheus");
        let addr = tcp.local_addr().expect("local addr");
        let state: Arc<Mutex<State>> = Arc::default();
        let app = Router::new()
            .route("/api/v1/query_range", get(query_range))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(tcp, app).await;
        });
        FakeRangePrometheus { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a series to what `query` returns.
    pub fn series(&self, query: &str, labels: &[(&str, &str)], samples: &[(i64, &str)]) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let samples = samples.iter().map(|(t, v)| (*t, v.to_string())).collect();
        self.st()
            .series
            .entry(query.to_string())
            .or_default()
            .push((labels, samples));
    }

    /// Answers every request with this status and JSON body from now on.
    pub fn answer(&self, status: u16, body: Value) {
        self.st().answer = Some((status, body.to_string(), "application/json"));
    }

    /// Answers every request with this status and plain text.
    pub fn answer_text(&self, status: u16, body: &str) {
        self.st().answer = Some((status, body.to_string(), "text/plain"));
    }

    pub fn requests(&self) -> Vec<RangeRequest> {
        self.st().requests.clone()
    }
}

#[derive(serde::Deserialize)]
struct Params {
    query: String,
    start: String,
    end: String,
    step: String,
}

fn seconds(text: &str) -> Option<i64> {
    text.parse::<f64>().ok().map(|s| s as i64)
}

async fn query_range(
    AxState(state): AxState<Arc<Mutex<State>>>,
    Query(p): Query<Params>,
) -> Response {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(start), Some(end), Some(step)) =
        (seconds(&p.start), seconds(&p.end), seconds(&p.step))
    else {
        return error(400, "bad_data", "invalid parameter: start, end or step");
    };
    let request = RangeRequest {
        query: p.query.clone(),
        start,
        end,
        step,
    };
    st.requests.push(request.clone());
    if let Some((status, body, content_type)) = st.answer.clone() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, [("content-type", content_type)], body).into_response();
    }
    if step <= 0 || end < start {
        return error(
            400,
            "bad_data",
            "invalid parameter: end before start or step <= 0",
        );
    }
    if request.points() > POINTS_LIMIT {
        return error(
            400,
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        );
    }
    let result: Vec<Value> = st
        .series
        .get(&p.query)
        .into_iter()
        .flatten()
        .filter_map(|(labels, samples)| {
            let values: Vec<Value> = samples
                .range(start..=end)
                .filter(|(t, _)| (*t - start) % step == 0)
                .map(|(t, v)| json!([*t, v]))
                .collect();
            (!values.is_empty()).then(|| json!({"metric": labels, "values": values}))
        })
        .collect();
    axum::Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
        .into_response()
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(json!({"status": "error", "errorType": kind, "error": message})),
    )
        .into_response()
}
