//! A fake of Prometheus's instant query API (`GET /api/v1/query`) for the
//! `prometheus` source's tests, plus a tiny text-format `/metrics` endpoint for
//! a real Prometheus to scrape.
//!
//! It serves real HTTP on 127.0.0.1 (random port), answers every query with
//! the answer last set (a vector by default: empty), and records the query
//! strings it received. [`FakePrometheus::stop`] closes the listener so the
//! next request finds Prometheus down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    /// HTTP status and JSON body of the next answers.
    answer: Option<(u16, Value)>,
    queries: Vec<String>,
    /// The `/metrics` text.
    exposition: String,
}

#[derive(Clone)]
pub struct FakePrometheus {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl FakePrometheus {
    pub async fn start() -> FakePrometheus {
        let tcp = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Prometheus");
        let addr = tcp.local_addr().expect("local addr");
        let state: Arc<Mutex<State>> = Arc::default();
        let app = Router::new()
            .route("/api/v1/query", get(query))
            .route("/metrics", get(metrics))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(tcp, app).await;
        });
        FakePrometheus {
            addr,
            state,
            server: Arc::new(Mutex::new(Some(server))),
        }
    }

    /// "http://127.0.0.1:PORT", to use as the source's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers with this status and body from now on.
    pub fn answer(&self, status: u16, body: Value) {
        self.st().answer = Some((status, body));
    }

    /// A successful instant vector: (labels, value) per sample.
    pub fn answer_vector(&self, samples: &[(&[(&str, &str)], &str)]) {
        let result: Vec<Value> = samples
            .iter()
            .map(|(labels, value)| {
                let metric: serde_json::Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                json!({"metric": metric, "value": [1_762_000_000.123, value]})
            })
            .collect();
        self.answer(
            200,
            json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
        );
    }

    pub fn answer_matrix(&self) {
        self.answer(
            200,
            json!({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"appid": "wx448f04719cd48f69"}, "values": [[1_762_000_000, "3"], [1_762_000_060, "4"]]}
            ]}}),
        );
    }

    pub fn answer_scalar(&self) {
        self.answer(200, json!({"status": "success", "data": {"resultType": "scalar", "result": [1_762_000_000, "3"]}}));
    }

    /// Prometheus's answer to a query it cannot parse.
    pub fn answer_bad_query(&self) {
        self.answer(
            400,
            json!({"status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\": 1:5: parse error"}),
        );
    }

    /// The query strings received so far.
    pub fn queries(&self) -> Vec<String> {
        self.st().queries.clone()
    }

    /// What `/metrics` serves (Prometheus text format).
    pub fn expose(&self, text: &str) {
        self.st().exposition = text.to_string();
    }

    /// Closes the listener: requests are refused from now on.
    pub async fn stop(&self) {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }
}

#[derive(serde::Deserialize)]
struct QueryParams {
    query: String,
}

async fn query(
    AxState(state): AxState<Arc<Mutex<State>>>,
    Query(params): Query<QueryParams>,
) -> Response {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.queries.push(params.query);
    let (status, body) = st.answer.clone().unwrap_or_else(|| {
        (
            200,
            json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
        )
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

async fn metrics(AxState(state): AxState<Arc<Mutex<State>>>) -> Response {
    let text = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .exposition
        .clone();
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
