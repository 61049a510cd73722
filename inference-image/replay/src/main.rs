//! `replay`: the command line over the `replay` library.
//!
//! Exit status: 0 when every answer was what the scenario expects, 1 when something failed (5xx,
//! connection errors, unexpected answers, failed feedback), 2 when the replay could not start,
//! 130 when stopped by Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Parser};
use replay::{parse_duration, CancelToken, ReplayConfig, RowFormat, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "replay",
    version,
    about = "Replays normal, drifted, anomalous and malformed traffic against the inference service",
    long_about = "Replays normal, drifted, anomalous and malformed traffic against the inference service \
                  at a fixed rate, optionally sends the true labels to /v1/feedback, and reports what \
                  the service answered against what each scenario expects. Always bounded: give \
                  --duration and/or --requests.",
    group(ArgGroup::new("bound").args(["duration", "requests"]).multiple(true).required(true))
)]
struct Cli {
    /// Base URL of the inference service.
    #[arg(long, env = "INFERENCE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token, sent as `Authorization: Bearer <token>` on every request.
    #[arg(long, env = "INFERENCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Traffic to send, comma-separated: normal, drift, anomalies, missing, garbage, feedback.
    #[arg(long, value_delimiter = ',', default_value = "normal")]
    scenario: Vec<Scenario>,
    /// Stop sending after this long (e.g. 60s, 5m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many predict requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Predict requests per second.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Rows per predict request.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Seed of the row sampling: the same seed and settings send the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Read feature names/std from DIR/model_card.json instead of the service's GET /v1/model.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Rows to send: a model directory (its holdout.csv and calibration.csv) or a CSV file whose
    /// header names the model's features [default: the bundled wbc-autoencoder directory].
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Column holding the true label (1 = anomaly); a CSV without it counts as all normal.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Features the drift scenario shifts, comma-separated, or `all` [default: the card's first three].
    #[arg(long, value_delimiter = ',')]
    drift_features: Vec<String>,
    /// Drift shift in standard deviations (the card's std).
    #[arg(long, default_value_t = 1.5, allow_negative_numbers = true)]
    drift_k: f64,
    /// Share of rows that are anomalous [default: 1.0 alone, 0.2 with normal or drift].
    #[arg(long)]
    anomaly_fraction: Option<f64>,
    /// Share of cells set to null in a request with missing values (at least one per request).
    #[arg(long, default_value_t = 0.05)]
    missing_fraction: f64,
    /// Share of requests with missing values [default: 1.0 alone, 0.2 with normal, drift or anomalies].
    #[arg(long)]
    missing_requests: Option<f64>,
    /// Share of requests that are malformed [default: 1.0 alone, 0.2 combined].
    #[arg(long)]
    garbage_fraction: Option<f64>,
    /// Delay between a scored request and its labels on /v1/feedback.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    feedback_delay: Duration,
    /// Most predict requests awaiting an answer at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Retries of a request answered 429 (each after the service's retry-after).
    #[arg(long, default_value_t = 3)]
    max_retries: u32,
    /// Rows as arrays in card order or as objects keyed by feature name.
    #[arg(long, default_value = "array")]
    row_format: RowFormat,
    /// Write every predict request (body, status, source rows) to this JSON-lines file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Print a progress line this often (to stderr).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    progress_every: Duration,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Cli {
    fn into_config(self) -> ReplayConfig {
        let defaults = ReplayConfig::default();
        ReplayConfig {
            url: self.url,
            token: self.token.filter(|t| !t.is_empty()),
            model_dir: self.model_dir,
            data: self.data.unwrap_or(defaults.data),
            label_column: self.label_column,
            scenarios: self.scenario,
            drift_features: self.drift_features,
            drift_k: self.drift_k,
            anomaly_fraction: self.anomaly_fraction,
            missing_fraction: self.missing_fraction,
            missing_requests: self.missing_requests,
            garbage_fraction: self.garbage_fraction,
            feedback_delay: self.feedback_delay,
            rate: self.rate,
            batch: self.batch,
            duration: self.duration,
            requests: self.requests,
            seed: self.seed,
            concurrency: self.concurrency,
            timeout: self.timeout,
            max_retries: self.max_retries,
            row_format: self.row_format,
            record: self.record,
            progress_every: self.progress_every,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("replay: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let cancel = CancelToken::new();
        tokio::spawn({
            let cancel = cancel.clone();
            async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("replay: stopping (Ctrl-C again to quit at once)");
                    cancel.cancel();
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            }
        });
        // The last report repeats what the summary says: not printed.
        let progress = |p: replay::Progress| {
            if !p.done {
                eprintln!("{}", p.to_line());
            }
        };
        replay::run(cli.into_config(), progress, cancel).await
    });
    match result {
        Ok(summary) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&summary).expect("serializable")
                );
            } else {
                print!("{}", summary.to_table());
            }
            if summary.cancelled {
                ExitCode::from(130)
            } else if summary.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::from(2)
        }
    }
}
