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

/// Where the rules set through the API are kept, in the state directory.
pub const RULES_FILE: &str = "alert-rules.json";

/// The alerting of one service: its evaluator and, when configured, its webhook.
pub struct Alerts {
    pub evaluator: Arc<Evaluator>,
    pub webhook: Option<Arc<Webhook>>,
    /// The empty-window summary the rules are checked against (every metric path this model has).
    probe: Value,
    /// The model's default rules (what `{"rules": null}` brings back).
    defaults: Vec<rules::Rule>,
    /// Where rules set through the API are saved (with a state directory).
    rules_file: Option<PathBuf>,
    /// Where the rules in force come from: "file", "api" or "defaults".
    source: std::sync::Mutex<&'static str>,
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
        let defaults = rules::defaults(&monitor.card, &probe);
        let rules_file = state_dir.map(|d| d.join(RULES_FILE));
        let (rules, source) = match &args.rules {
            Some(path) => (
                rules::load(path, &probe).map_err(anyhow::Error::msg)?,
                "file",
            ),
            None => match rules_file.as_deref().filter(|p| p.exists()) {
                // Rules set through the API by an earlier run. Another model may have started on
                // this state directory since: rules its summary cannot answer give way to the
                // defaults (said in the log) rather than stopping the service.
                Some(path) => match rules::load(path, &probe) {
                    Ok(rules) => (rules, "api"),
                    Err(e) => {
                        tracing::warn!("{e}; using the default rules");
                        (defaults.clone(), "defaults")
                    }
                },
                None => (defaults.clone(), "defaults"),
            },
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
        Ok(Self {
            evaluator,
            webhook,
            probe,
            defaults,
            rules_file,
            source: std::sync::Mutex::new(source),
        })
    }

    /// The empty-window summary rules are checked against.
    pub fn probe(&self) -> &Value {
        &self.probe
    }

    /// `PUT /v1/monitoring/alerts/rules`: `rules` (a JSON list, checked like a rule file) replace
    /// the rules in force; `None` brings back the task's defaults. Saved in the state directory so
    /// a restart keeps them (unless `--alert-rules` names a file, which wins at start-up). The
    /// error is one sentence naming the rule and the field.
    pub fn set_rules(&self, rules: Option<&Value>) -> Result<(), RulesRefused> {
        if let Some(e) = rules
            .and_then(Value::as_array)
            .and_then(|l| rules::duplicate_id(l))
        {
            return Err(RulesRefused::Conflict(e));
        }
        let (parsed, source) = match rules {
            Some(list) => (
                rules::parse(&list.to_string(), &self.probe).map_err(RulesRefused::Invalid)?,
                "api",
            ),
            None => (self.defaults.clone(), "defaults"),
        };
        if let Some(path) = &self.rules_file {
            let written = match source {
                "api" => save_rules(path, &parsed),
                _ => match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            written.map_err(|e| {
                RulesRefused::Storage(format!(
                    "the rules could not be saved in {} ({e}); nothing changed",
                    path.display()
                ))
            })?;
        }
        tracing::info!(rules = parsed.len(), source, "alert rules replaced");
        self.evaluator.replace_rules(parsed);
        *self.source.lock().expect("not poisoned") = source;
        Ok(())
    }

    /// Starts the evaluator and the delivery worker on the current runtime.
    pub fn start(&self, monitor: &Arc<Monitor>, every: Duration) {
        if let Some(w) = &self.webhook {
            w.spawn();
        }
        tracing::info!(
            rules = self.evaluator.rules().len(),
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
        let source = *self.source.lock().expect("not poisoned");
        json!({"rules": rules, "rules_source": source, "events": events, "delivery": delivery})
    }
}

/// Why `PUT /v1/monitoring/alerts/rules` changed nothing.
#[derive(Debug)]
pub enum RulesRefused {
    /// A rule this model cannot evaluate, or a malformed one (422).
    Invalid(String),
    /// Two rules with one id (409).
    Conflict(String),
    /// The state directory could not keep them (500).
    Storage(String),
}

fn save_rules(path: &std::path::Path, rules: &[rules::Rule]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(rules)?)?;
    std::fs::rename(&tmp, path)
}
