//! The baseline for the webhook ingestion benchmark: a bare axum server on the
//! same tokio runtime flavour as the daemon, whose `POST /hooks/{name}` reads
//! the body and answers 200. `bench/webhook_ingest.sh` runs wrk against it and
//! against quotawatch's `/hooks/NAME` in the same run.
//!
//! It serves only when asked: `bare_axum --serve 127.0.0.1:PORT` (until
//! killed). Under a plain `cargo bench` it prints a note and exits, so it
//! never blocks the other benchmarks.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(addr) = args
        .iter()
        .position(|a| a == "--serve")
        .and_then(|i| args.get(i + 1))
    else {
        println!(
            "bare_axum: the baseline server for bench/webhook_ingest.sh; run with --serve ADDR"
        );
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(serve(addr));
}

async fn serve(addr: &str) {
    let app = Router::new().route(
        "/hooks/{name}",
        post(|_body: Bytes| async { StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    eprintln!("bare_axum listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.expect("serve");
}
