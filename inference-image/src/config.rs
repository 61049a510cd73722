//! Command line and environment. Every serve flag can also be set by an environment variable, which
//! is how the container and docker-compose configure the service.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::access::Secret;
use crate::card::{ImputeWith, MissingPolicy, Task};

#[derive(Debug, Parser)]
#[command(
    name = "inference",
    version,
    about = "Serves a tabular ONNX model (autoencoder, classifier or regressor) over HTTP, and watches it"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the model over HTTP (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Exit 0 if the service answers 200 on its readiness URL (the container's HEALTHCHECK).
    Health(HealthArgs),
    /// Build a model directory (model.onnx + model_card.json) from your ONNX model and a reference CSV.
    Card(CardArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Directory holding model_card.json and the ONNX file it names.
    #[arg(long, env = "INFERENCE_MODEL_DIR")]
    pub model_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "INFERENCE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Threads running ONNX Runtime, one session each.
    #[arg(long, env = "INFERENCE_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Most rows accepted in one request (and folded into one forward pass).
    #[arg(long, env = "INFERENCE_MAX_BATCH_ROWS", default_value_t = 1024)]
    pub max_batch_rows: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INFERENCE_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Requests scored at once; beyond this the service answers 429.
    #[arg(long, env = "INFERENCE_MAX_CONCURRENT", default_value_t = 256)]
    pub max_concurrent: usize,
    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "INFERENCE_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Log format.
    #[arg(long, env = "INFERENCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The image tag this process runs as (set by the image and docker-compose).
    #[arg(long, env = "IMAGE_TAG")]
    pub image_tag: Option<String>,
    /// Directory for monitoring state that survives restarts (the compose volume); none keeps it in memory.
    #[arg(long, env = "INFERENCE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seconds between writes of the monitoring history (at most this much is lost on a hard kill).
    #[arg(long, env = "INFERENCE_STATE_FLUSH_SECS", default_value_t = 30)]
    pub state_flush_secs: u64,
    /// Bearer token for monitoring and feedback (required for them when listening beyond loopback).
    #[arg(
        long = "api-token",
        env = "INFERENCE_API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<Secret>,
    /// Record monitoring data (turn off only to measure what monitoring costs).
    #[arg(long, env = "INFERENCE_MONITORING", default_value_t = true, action = clap::ArgAction::Set)]
    pub monitoring: bool,
    /// Require the token for predictions too.
    #[arg(long, env = "INFERENCE_PROTECT_PREDICT", default_value_t = false)]
    pub protect_predict: bool,
    // Publishing the key monitoring series to CloudWatch (off unless a namespace is set).
    #[command(flatten)]
    pub cloudwatch: crate::monitor::cloudwatch::CloudWatchArgs,
    // Alert rules, their evaluation and the webhook they are delivered to.
    #[command(flatten)]
    pub alerts: crate::alerts::AlertArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// ONNX Runtime shared library: an absolute path, or a file name found by the dynamic loader.
    #[arg(
        long = "ort-library",
        env = "ORT_DYLIB_PATH",
        default_value = "libonnxruntime.so.1"
    )]
    pub ort_library: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// URL to check; defaults to /readyz on the port of INFERENCE_BIND (8080).
    #[arg(long, env = "INFERENCE_HEALTH_URL")]
    pub url: Option<String>,
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

impl HealthArgs {
    pub fn resolved_url(&self) -> String {
        self.url.clone().unwrap_or_else(|| {
            let port = std::env::var("INFERENCE_BIND")
                .ok()
                .and_then(|b| b.parse::<SocketAddr>().ok())
                .map_or(8080, |a| a.port());
            format!("http://127.0.0.1:{port}/readyz")
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct CardArgs {
    /// What the model predicts.
    #[arg(long, value_enum, default_value_t = Task::Autoencoder)]
    pub task: Task,
    /// Your ONNX model. Autoencoder: one float input [batch, n_features] and an output of the same
    /// shape. Classifier: per-class probabilities (a tensor, or ZipMap's sequence of maps).
    /// Regressor: one number per row. Inputs may be float32, float64 or int64, one tensor or
    /// several (taking the CSV's columns in input order, or one input per feature named like it).
    #[arg(long)]
    pub model: PathBuf,
    /// CSV of reference rows (header = feature names in model input order): the training baseline
    /// (an autoencoder's should be normal rows).
    #[arg(long)]
    pub reference: PathBuf,
    /// CSV of other rows to set the autoencoder's threshold on and to take every task's score
    /// baseline from (default: the reference rows).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// CSV of labelled rows (features + the label column) to report held-out metrics on:
    /// autoencoder: 1 = anomaly; classifier: the class; regressor: the true value. A classifier's
    /// predicted-class baseline is counted on these rows (default: on the reference rows).
    #[arg(long)]
    pub holdout: Option<PathBuf>,
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Autoencoder: the quantile of the calibration errors used as the anomaly threshold.
    #[arg(long, default_value_t = 0.95)]
    pub threshold_quantile: f64,
    /// Classifier: the class labels in probability-column order, comma-separated (default: read
    /// from the graph's ZipMap keys or label output).
    #[arg(long)]
    pub classes: Option<String>,
    /// Binary classifier: the class whose probability is the score (default: the second class).
    #[arg(long)]
    pub positive_class: Option<String>,
    /// Binary classifier: the positive class is predicted when its probability is above this.
    #[arg(long, default_value_t = 0.5)]
    pub decision_threshold: f64,
    /// What a row with a missing value gets: refused with its request, imputed, or refused alone.
    #[arg(long, value_enum, default_value_t = MissingPolicy::Reject)]
    pub missing: MissingPolicy,
    /// The value imputed for a missing one: the training mean or median.
    #[arg(long, value_enum, default_value_t = ImputeWith::Mean)]
    pub impute_with: ImputeWith,
    /// Output directory (created; model.onnx is copied into it).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// Check that the model has this input (the inputs are found from the graph).
    #[arg(long)]
    pub input_name: Option<String>,
    /// The output that carries the answer, when the graph has several that could.
    #[arg(long)]
    pub output_name: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl Cli {
    /// Parses the process arguments; with no subcommand at all the service is served.
    pub fn from_env() -> Self {
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if args.len() == 1 {
            args.push("serve".into());
        }
        Self::parse_from(args)
    }
}
