//! Traffic replay for the inference service: sends normal, drifted, anomalous, incomplete and
//! malformed predict requests at a fixed rate, optionally followed by the true labels on
//! `/v1/feedback`, and counts what the service answered against what each scenario expects.
//!
//! The desktop console calls [`run`] in-process; the `replay` binary is a thin command line over it.
//! The crate talks HTTP only: it does not link the service (nor ONNX Runtime) and reads just the
//! model card fields it needs (feature names, means, standard deviations) from `GET /v1/model` or a
//! model directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), replay::ReplayError> {
//! use std::time::Duration;
//! use replay::{CancelToken, ReplayConfig, Scenario};
//!
//! let cfg = ReplayConfig {
//!     url: "http://127.0.0.1:8080".into(),
//!     scenarios: vec![Scenario::Normal, Scenario::Drift],
//!     duration: Some(Duration::from_secs(30)),
//!     ..ReplayConfig::default()
//! };
//! let cancel = CancelToken::new(); // keep a clone to stop it from elsewhere
//! let summary = replay::run(cfg, |p| println!("{}", p.to_line()), cancel).await?;
//! println!("{}", summary.to_table());
//! # Ok(()) }
//! ```

pub mod cancel;
pub mod client;
pub mod config;
pub mod data;
pub mod error;
pub mod model;
pub mod report;
pub mod rng;
mod runner;
pub mod traffic;

use std::path::PathBuf;

pub use cancel::CancelToken;
pub use config::{parse_duration, Plan, ReplayConfig, RowFormat, Scenario};
pub use error::ReplayError;
pub use report::{ByLabel, Counts, Progress, Summary};
pub use runner::run;

/// The model directory bundled with the service's sources (`inference-image/model/wbc-autoencoder`),
/// the default source of rows. A packaged console passes its own path instead: this one is where the
/// sources were when this crate was compiled.
pub fn bundled_model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../model/wbc-autoencoder"
    ))
}
