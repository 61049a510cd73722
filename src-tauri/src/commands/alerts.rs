//! The Alerts page: the serving version's rules, their state and 7 days of firings; desktop
//! notifications for new firings while the app is open; the alert webhook URL in the keychain.

use console_core::alert_rules::{self, Reconciled};
use console_core::alert_view::{self, AlertsView, Notice};
use console_core::vault::{webhook_problem, SecretName};
use console_core::Secret;
use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime, State};
use tauri_plugin_notification::NotificationExt;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Serialize)]
pub struct AlertsPage {
    #[serde(flatten)]
    pub view: AlertsView,
    /// Firings newer than `notify_after`, oldest first (each shown as a desktop notification).
    pub notices: Vec<Notice>,
    /// Why the desktop could not show them (no notification service), if it could not.
    pub notify_error: Option<String>,
    /// Whether a webhook URL is in the keychain for this target (the value never leaves it).
    pub webhook_stored: bool,
    /// On a provisioned EC2 stack: the CloudWatch alarms that mail the stack's addresses.
    pub cloudwatch: Option<CloudAlarms>,
    /// The rules as the service takes them (for the editor), and where they come from: "defaults",
    /// "file" or "api".
    pub definitions: serde_json::Value,
    pub rules_source: String,
    /// Rules are kept for this target in the console's database.
    pub rules_kept: bool,
    /// Why the kept rules are not in force (the serving version refused them).
    pub rules_error: Option<String>,
}

#[derive(Serialize)]
pub struct CloudAlarms {
    pub alarms: Vec<String>,
    /// The `ModelVersion` the service's alarms watch.
    pub version: String,
    pub emails: Vec<String>,
    /// Why they could not be read or moved to the serving version.
    pub error: Option<String>,
}

/// The target's alerts now. With `notify_after` (unix seconds), every firing after it is also shown
/// as a native desktop notification.
#[tauri::command]
pub async fn alerts<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    target: String,
    utc_offset_s: i64,
    notify_after: Option<i64>,
) -> AppResult<AlertsPage> {
    if utc_offset_s.abs() > 14 * 3600 {
        return Err(AppError::invalid(format!(
            "UTC offset {utc_offset_s} s is out of range"
        )));
    }
    let client = state.service(&target).await?;
    let mut answer = alert_view::fetch(&client)
        .await
        .map_err(|e| AppError::new("monitoring", e))?;
    let name = state.history_name(&target)?;
    let history = state.engine.history();
    let mut rules_error = None;
    // A version that started with its defaults gets the rules kept for this target.
    match alert_rules::reconcile(&client, history, &name, Some(&answer)).await {
        Ok(Reconciled::Sent) => {
            answer = alert_view::fetch(&client)
                .await
                .map_err(|e| AppError::new("monitoring", e))?;
        }
        Ok(_) => {}
        Err(e) => rules_error = Some(e),
    }
    let rules_kept = history
        .alert_rules(&name)
        .map_err(|e| AppError::new("history", e.to_string()))?
        .is_some();
    let now = console_core::history::now_ms() / 1000;
    let view =
        alert_view::view(&answer, now, utc_offset_s).map_err(|e| AppError::new("monitoring", e))?;
    let notices = notify_after
        .map(|after| alert_view::new_firings(&answer, after))
        .unwrap_or_default();
    let mut notify_error = None;
    if !notices.is_empty() {
        match app.try_state::<tauri_plugin_notification::Notification<R>>() {
            None => {
                notify_error = Some("desktop notifications are not set up in this build".into())
            }
            Some(_) => {
                for n in &notices {
                    if let Err(e) = app
                        .notification()
                        .builder()
                        .title(&n.title)
                        .body(&n.body)
                        .show()
                    {
                        notify_error =
                            Some(format!("the desktop did not show the notification: {e}"));
                    }
                }
            }
        }
    }
    let webhook_stored = state.alert_webhook(&state.history_name(&target)?).is_some();
    let cloudwatch = if target == "remote" {
        let emails = state.settings().ec2.alert_emails;
        match super::cloud::refresh_alarms(&state).await {
            Ok(None) => None,
            Ok(Some((alarms, version))) => Some(CloudAlarms {
                alarms,
                version,
                emails,
                error: None,
            }),
            Err(e) => Some(CloudAlarms {
                alarms: Vec::new(),
                version: String::new(),
                emails,
                error: Some(e.message),
            }),
        }
    } else {
        None
    };
    Ok(AlertsPage {
        view,
        notices,
        notify_error,
        webhook_stored,
        cloudwatch,
        definitions: alert_rules::definitions(&answer),
        rules_source: answer["rules_source"]
            .as_str()
            .unwrap_or("defaults")
            .to_string(),
        rules_kept,
        rules_error,
    })
}

/// Sets the target's alert rules (None: the served model's defaults). The serving version checks
/// them against its model and evaluates them from now on; the console keeps what it took, gives
/// them to every later version, and on an EC2 stack moves the CloudWatch alarms to them. Returns
/// how many rules are in force.
#[tauri::command]
pub async fn alert_rules_save(
    state: State<'_, AppState>,
    target: String,
    rules: Option<serde_json::Value>,
) -> AppResult<usize> {
    let client = state.service(&target).await?;
    let name = state.history_name(&target)?;
    let answer = alert_rules::set(&client, state.engine.history(), &name, rules.as_ref())
        .await
        .map_err(AppError::invalid)?;
    if target == "remote" {
        super::cloud::forget_applied_alarms(&state)?;
        if let Err(e) = super::cloud::refresh_alarms(&state).await {
            return Err(AppError::new(
                "alarms",
                format!(
                    "the service took the rules, but the CloudWatch alarms were not moved: {}",
                    e.message
                ),
            ));
        }
    }
    Ok(answer["rules"].as_array().map_or(0, Vec::len))
}

/// Stores the target's alert webhook URL in the keychain (None or empty removes it). The service
/// receives it at its next deploy, on stdin with the monitoring token.
#[tauri::command]
pub fn alert_webhook_save(
    state: State<'_, AppState>,
    target: String,
    url: Option<String>,
) -> AppResult<bool> {
    let name = SecretName::AlertWebhook(state.history_name(&target)?);
    let url = Secret::new(url.unwrap_or_default().trim().to_string());
    if url.is_empty() {
        state.vault.delete(&name)?;
        return Ok(false);
    }
    if let Some(why) = webhook_problem(url.expose()) {
        return Err(AppError::invalid(why));
    }
    state.vault.put(&name, &url)?;
    Ok(true)
}
