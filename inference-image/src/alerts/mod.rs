//! Alerts that reach a person with no console open: rules over the monitoring summary
//! ([`rules`]), evaluated on a task of their own ([`evaluator`]), transitions delivered to a
//! webhook ([`webhook`]) and served by `GET /v1/monitoring/alerts`.

pub mod evaluator;
pub mod rules;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use crate::monitor::Monitor;
use evaluator::{Evaluator, Origin};
use webhook::{Webhook, WebhookConfig, WebhookFormat, WebhookUrl};

/// Alerting; flattened into `ServeArgs`. The webhook URL is read from `INFERENCE_ALERT_WEBHOOK_URL`
/// only (it is a secret: no flag, so it never shows in a process list).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Alerts")]
pub struct AlertArgs {
    /// JSON list of alert rules replacing the defaults for the served task (see the README).
    #[arg(long = "alert-rules", env = "INFERENCE_ALERT_RULES")]
    pub rules: Option<PathBuf>,
    /// Seconds between two evaluations of the alert rules.
    #[arg(
        long = "alert-interval-secs",
        env = "INFERENCE_ALERT_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub interval_secs: u64,
    /// Body posted to the webhook (INFERENCE_ALERT_WEBHOOK_URL): slack = {"text": "one line"},
    /// json = the event object.
    #[arg(
        long = "alert-webhook-format",
        env = "INFERENCE_ALERT_WEBHOOK_FORMAT",
        value_enum,
        default_value_t = WebhookFormat::Slack
    )]
    pub webhook_format: WebhookFormat,
    /// Timeout of one webhook attempt, in milliseconds.
    #[arg(
        long = "alert-webhook-timeout-ms",
        env = "INFERENCE_ALERT_WEBHOOK_TIMEOUT_MS",
        default_value_t = 5000,
        hide = true
    )]
    pub webhook_timeout_ms: u64,
    /// Wait before the first webhook retry, in milliseconds (doubled for each next one).
    #[arg(
        long = "alert-webhook-backoff-ms",
        env = "INFERENCE_ALERT_WEBHOOK_BACKOFF_MS",
        default_value_t = 1000,
        hide = true
    )]
    pub webhook_backoff_ms: u64,
    /// From `INFERENCE_ALERT_WEBHOOK_URL` (environment only).
    #[arg(skip = WebhookUrl::from_env())]
    pub webhook_url: Option<WebhookUrl>,
}

impl Default for AlertArgs {
    /// The defaults of the flags, and no webhook.
    fn default() -> Self {
        Self {
            rules: None,
            interval_secs: 60,
            webhook_format: WebhookFormat::Slack,
            webhook_timeout_ms: 5000,
            webhook_backoff_ms: 1000,
            webhook_url: None,
        }
    }
}

/// The alerting of one service: its evaluator and, when configured, its webhook.
pub struct Alerts {
    pub evaluator: Arc<Evaluator>,
    pub webhook: Option<Arc<Webhook>>,
}

impl Alerts {
    /// Loads and checks the rules (the file's, or the task's defaults) and the webhook URL, and
    /// loads the saved alert state. Every error is one sentence naming the problem (never the URL).
    pub fn build(
        args: &AlertArgs,
        monitor: &Monitor,
        origin: Origin,
        state_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let probe = rules::probe_summary(monitor);
        let rules = match &args.rules {
            Some(path) => rules::load(path, &probe).map_err(anyhow::Error::msg)?,
            None => rules::defaults(monitor.card.task, &probe),
        };
        let webhook = match &args.webhook_url {
            Some(url) => Some(
                Webhook::new(
                    url,
                    WebhookConfig {
                        format: args.webhook_format,
                        timeout: Duration::from_millis(args.webhook_timeout_ms.max(1)),
                        backoff: Duration::from_millis(args.webhook_backoff_ms),
                        ..WebhookConfig::default()
                    },
                )
                .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        let evaluator = Arc::new(Evaluator::new(
            rules,
            origin,
            state_dir,
            webhook.as_ref().map(Arc::clone),
        ));
        Ok(Self { evaluator, webhook })
    }

    /// Starts the evaluator and the delivery worker on the current runtime.
    pub fn start(&self, monitor: &Arc<Monitor>, every: Duration) {
        if let Some(w) = &self.webhook {
            w.spawn();
        }
        tracing::info!(
            rules = self.evaluator.rules.len(),
            interval_secs = every.as_secs_f64(),
            webhook = self.webhook.as_ref().map_or("none", |w| w.origin()),
            "alerting started"
        );
        Arc::clone(&self.evaluator).spawn(Arc::clone(monitor), every);
    }

    /// `GET /v1/monitoring/alerts`.
    pub fn json(&self) -> Value {
        let (rules, events) = self.evaluator.snapshot();
        let delivery = match &self.webhook {
            Some(w) => w.stats(),
            None => {
                json!({"configured": false, "delivered": 0, "failed": 0, "dropped": 0, "queued": 0})
            }
        };
        json!({"rules": rules, "events": events, "delivery": delivery})
    }
}
