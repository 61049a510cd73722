//! The HTTP floor for the load benchmark (`bench/http_load.sh`): the least any axum service can do
//! for a `POST /v1/predict` — same runtime flavour as the real service (tokio multi-thread, default
//! worker count), same JSON body actually parsed, and a JSON answer of the same shape and (nearly)
//! the same size as the real predict response, with values computed trivially instead of by a model.
//!
//!     cargo run --release -p inference-image --example http_floor -- 127.0.0.1:8090
//!
//! The address comes from the first argument, else `FLOOR_BIND`, else 127.0.0.1:8090.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct FloorRequest {
    rows: Vec<Vec<f64>>,
}

#[derive(Serialize)]
struct FloorResponse {
    request_id: String,
    model: ModelRef,
    threshold: f64,
    results: Vec<RowResult>,
}

#[derive(Serialize)]
struct ModelRef {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct RowResult {
    row: usize,
    reconstruction_error: f64,
    anomaly_score: f64,
    is_anomaly: bool,
}

/// The bundled card's name, version and threshold, so the response has the real one's size.
const MODEL_NAME: &str = "wbc-autoencoder";
const MODEL_VERSION: &str = "1.0.0";
const THRESHOLD: f64 = 0.218_064_16;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

async fn predict(Json(req): Json<FloorRequest>) -> impl IntoResponse {
    // A trivial stand-in for the error, derived from the parsed row (so the parse cannot be skipped)
    // and with as many digits as a real one (about 16 significant digits).
    let results: Vec<RowResult> = req
        .rows
        .iter()
        .enumerate()
        .map(|(row, values)| {
            let e = (values.first().copied().unwrap_or(0.0).abs() + 1.0).sqrt();
            RowResult {
                row,
                reconstruction_error: e,
                anomaly_score: e / THRESHOLD,
                is_anomaly: e > THRESHOLD,
            }
        })
        .collect();
    // A UUID-shaped id (36 characters) without the cost of a random generator.
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("00000000-0000-4000-8000-{n:012x}");
    let header_value = header::HeaderValue::from_str(&request_id).expect("ascii");
    let body = FloorResponse {
        request_id,
        model: ModelRef {
            name: MODEL_NAME,
            version: MODEL_VERSION,
        },
        threshold: THRESHOLD,
        results,
    };
    ([("x-request-id", header_value)], Json(body))
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FLOOR_BIND").ok())
        .unwrap_or_else(|| "127.0.0.1:8090".to_string())
        .parse()
        .map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("bad address: {e}"),
            )
        })?;
    // The same runtime the service builds in `inference::run`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()?;
    runtime.block_on(async move {
        let app = Router::new().route("/v1/predict", post(predict));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("http_floor listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await
    })
}
