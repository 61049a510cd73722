//! The inference service as a library: `main.rs` parses arguments and calls in here, and the tests
//! start the same server in-process.

pub mod access;
pub mod alerts;
pub mod card_builder;
pub mod config;
pub mod engine;
pub mod error;
pub mod health;
pub mod http;
pub mod monitor;
pub mod monitoring_api;
pub mod request;
pub mod scorer;
pub mod tracking;

// The model card and the small statistics live in `monitoring-core`, shared with the console.
pub use monitoring_core::{card, stats};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::access::Access;
use crate::card::ModelCard;
use crate::config::{LogFormat, ServeArgs};
use crate::engine::{Engine, EngineConfig};
use crate::http::{AppState, BuildInfo, Limits};
use crate::monitor::Monitor;

pub const GIT_REVISION: &str = env!("INFERENCE_GIT_REVISION");

/// Loads ONNX Runtime, the card and the model, starts the scoring workers and runs one forward pass,
/// so that every start-up problem surfaces here as a readable error.
pub async fn build_state(args: &ServeArgs) -> anyhow::Result<Arc<AppState>> {
    let env = scorer::init_runtime(&args.runtime.ort_library)?;
    let card = ModelCard::load(&args.model_dir)?;
    let model_path = args.model_dir.join(&card.model_file);
    let engine = Engine::start(
        &env,
        &model_path,
        &card,
        &EngineConfig {
            workers: args.workers,
            max_batch_rows: args.max_batch_rows,
            max_concurrent: args.max_concurrent,
        },
    )?;
    let probe_row: Vec<f64> = card.impute_values();
    let warmup = engine
        .probe(probe_row.clone())
        .await
        .context("the first forward pass failed")?;
    tracing::info!(
        model = %card.name,
        version = %card.version,
        task = %card.task_phrase(),
        features = card.width(),
        threshold = ?card.score.threshold,
        missing_values = ?card.missing_values.policy,
        warmup_score = warmup,
        "model loaded"
    );
    let limits = Limits {
        max_batch_rows: args.max_batch_rows,
        max_body_bytes: args.max_body_bytes,
    };
    let service_version = env!("CARGO_PKG_VERSION");
    let token = args.api_token.clone().filter(|t| !t.is_empty());
    if args.protect_predict && token.is_none() {
        anyhow::bail!("--protect-predict needs an API token: set INFERENCE_API_TOKEN");
    }
    let access = Access {
        token,
        public: !args.bind.ip().is_loopback(),
        protect_predict: args.protect_predict,
    };
    if access.public && access.token.is_none() {
        tracing::warn!(bind = %args.bind, "no API token: monitoring and feedback answer 403 to every caller until INFERENCE_API_TOKEN is set");
    }
    let card = Arc::new(card);
    let monitor = Monitor::with_switch(Arc::clone(&card), args.state_dir.clone(), args.monitoring);
    // Rules and the webhook URL are checked before anything starts.
    let alerts = alerts::Alerts::build(
        &args.alerts,
        &monitor,
        alerts::evaluator::Origin {
            service: args
                .cloudwatch
                .service
                .clone()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| card.name.clone()),
            model: card.name.clone(),
            model_version: card.version.clone(),
            image_tag: args.image_tag.clone(),
        },
        args.state_dir.as_deref(),
    )?;
    monitor.load_state()?;
    monitor.start();
    monitor.start_flushing(Duration::from_secs(args.state_flush_secs.max(1)));
    monitor::cloudwatch::start(&args.cloudwatch, &monitor).await?;
    if monitor.enabled {
        alerts.start(
            &monitor,
            Duration::from_secs(args.alerts.interval_secs.max(1)),
        );
    }
    Ok(Arc::new(AppState {
        engine,
        openapi: http::openapi_document(&card, &limits, service_version, alerts.probe()),
        monitor,
        alerts,
        access,
        schema: request::Schema::new(&card),
        card,
        info: BuildInfo {
            service_version,
            git_revision: GIT_REVISION,
            image_tag: args.image_tag.clone(),
        },
        limits,
        probe_row,
    }))
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
/// (for at most `grace`).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, http::router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = begun_tx.send(());
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        _ = async { let _ = begun_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; exiting");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; draining in-flight requests");
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `inference serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let state = build_state(&args).await?;
        let listener = TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        tracing::info!(addr = %listener.local_addr()?, revision = GIT_REVISION, "serving");
        serve(
            listener,
            Arc::clone(&state),
            shutdown_signal(),
            Duration::from_secs(args.shutdown_grace_secs),
        )
        .await
        .context("the HTTP server failed")?;
        let monitor = Arc::clone(&state.monitor);
        let _ = tokio::task::spawn_blocking(move || monitor.flush()).await;
        tracing::info!("stopped");
        Ok(())
    })
}
