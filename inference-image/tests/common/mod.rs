//! Test harness: the real server, the real bundled model and the real ONNX Runtime, in-process on a
//! loopback port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inference::config::{LogFormat, RuntimeArgs, ServeArgs};
use inference::http::AppState;

/// A free loopback port below Linux's ephemeral range (32768 and up), so no outgoing connection on
/// this machine can take it as its source port between this check and the server's bind, and a
/// readiness probe cannot connect to itself on it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let seed = RandomState::new();
    (0u64..)
        .map(|i| 20_000 + (seed.hash_one(i) % 12_000) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port")
}

pub fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/model/wbc-autoencoder"
    ))
}

pub fn ort_library() -> PathBuf {
    PathBuf::from(std::env::var("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH must point at libonnxruntime.so (run the tests through scripts/test.sh, which sets it)",
    ))
}

pub fn serve_args() -> ServeArgs {
    ServeArgs {
        model_dir: model_dir(),
        bind: "127.0.0.1:0".parse().unwrap(),
        runtime: RuntimeArgs {
            ort_library: ort_library(),
        },
        workers: 1,
        max_batch_rows: 1024,
        max_body_bytes: 4 * 1024 * 1024,
        max_concurrent: 64,
        shutdown_grace_secs: 5,
        log_format: LogFormat::Text,
        image_tag: Some("test-tag".into()),
        state_dir: None,
        state_flush_secs: 30,
        api_token: None,
        protect_predict: false,
        cloudwatch: Default::default(),
        alerts: Default::default(),
        monitoring: true,
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub async fn start(args: ServeArgs) -> Server {
        let state = inference::build_state(&args).await.expect("service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(inference::serve(
            listener,
            Arc::clone(&state),
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        ));
        Server {
            addr,
            state,
            client: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.state
            .card
            .feature_names()
            .map(str::to_string)
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.expect("every response is JSON"))
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.expect("every response is JSON"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The held-out rows shipped with the model: features and labels (true = malignant = anomaly).
pub fn holdout() -> (Vec<Vec<f64>>, Vec<bool>) {
    let t = inference::card_builder::read_csv(&model_dir().join("holdout.csv")).unwrap();
    let label = t
        .header
        .iter()
        .position(|h| h == "label")
        .expect("holdout.csv has a label column");
    let labels = t.rows.iter().map(|r| r[label] != 0.0).collect();
    let rows = t
        .rows
        .into_iter()
        .map(|mut r| {
            r.remove(label);
            r
        })
        .collect();
    (rows, labels)
}
