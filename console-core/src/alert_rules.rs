//! The alert rules a person sets for a target, kept with the target in the history database and
//! handed to whatever version serves there.
//!
//! The service is the judge of a rule (it knows which metrics its model's summary has): a list is
//! first sent to it (`PUT /v1/monitoring/alerts/rules`), and only what it accepted is kept, in the
//! form it answered (titles filled in, text trimmed). A new version starts with its own defaults
//! or with the rules its state volume kept, so after every switch, and whenever the Alerts page
//! looks, [`reconcile`] sends the kept rules again if the service evaluates anything else.

use serde_json::Value;

use crate::history::History;
use crate::service::ServiceClient;

/// What the service's answer adds to each rule: its state, not part of its definition.
const STATE_FIELDS: &[&str] = &["state", "since", "value", "evaluated_at"];

/// The rule definitions in the service's answer (`GET /v1/monitoring/alerts`), without state.
pub fn definitions(alerts: &Value) -> Value {
    alerts["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    let mut d = r.as_object().cloned().unwrap_or_default();
                    d.retain(|k, _| !STATE_FIELDS.contains(&k.as_str()));
                    Value::Object(d)
                })
                .collect::<Vec<Value>>()
        })
        .unwrap_or_default()
        .into()
}

/// Sets `target`'s rules (`None`: the served model's defaults): the service checks and takes
/// them, then they are kept (or forgotten) and the change is written to the audit log. Returns
/// the service's answer. Nothing is kept when the service refuses; its sentence names the rule
/// and the field.
pub async fn set(
    client: &ServiceClient,
    history: &History,
    target: &str,
    rules: Option<&Value>,
) -> Result<Value, String> {
    if let Some(list) = rules {
        if !list.is_array() {
            return Err("the alert rules must be a list".into());
        }
    }
    let answer = client.put_alert_rules(rules).await?;
    let kept = rules.map(|_| definitions(&answer));
    history
        .set_alert_rules(target, kept.as_ref().map(Value::to_string).as_deref())
        .map_err(|e| e.to_string())?;
    let message = match &kept {
        Some(list) => format!(
            "alert rules set: {}",
            list.as_array()
                .map(|rules| rules.iter().map(describe).collect::<Vec<_>>().join("; "))
                .unwrap_or_default()
        ),
        None => "alert rules back to the model's defaults".to_string(),
    };
    history
        .audit(target, None, &message)
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

/// One rule in words: `error-rate: system.error_rate > 0.1 over 10 min (critical)`.
pub fn describe(rule: &Value) -> String {
    let threshold = match &rule["threshold"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!(
        "{}: {} {} {} over {} min ({})",
        rule["id"].as_str().unwrap_or("?"),
        rule["metric"].as_str().unwrap_or("?"),
        rule["op"].as_str().unwrap_or("?"),
        threshold,
        rule["window_minutes"],
        rule["severity"].as_str().unwrap_or("?")
    )
}

/// What [`reconcile`] did.
#[derive(Debug, PartialEq)]
pub enum Reconciled {
    /// No rules are kept for the target: the service's own are right.
    NothingKept,
    /// The service already evaluates the kept rules.
    InForce,
    /// The kept rules were sent again and taken.
    Sent,
}

/// Makes the service evaluate `target`'s kept rules if it evaluates anything else (a new version
/// that started with its defaults). `alerts` is the service's `GET /v1/monitoring/alerts` answer
/// when the caller has it. An error says why the service refused them (a model whose summary
/// lacks a metric a rule watches): the rules stay kept, for the user to edit.
pub async fn reconcile(
    client: &ServiceClient,
    history: &History,
    target: &str,
    alerts: Option<&Value>,
) -> Result<Reconciled, String> {
    let Some(kept) = history.alert_rules(target).map_err(|e| e.to_string())? else {
        return Ok(Reconciled::NothingKept);
    };
    let kept: Value = serde_json::from_str(&kept)
        .map_err(|e| format!("the kept alert rules of {target} are not JSON ({e})"))?;
    let fetched;
    let alerts = match alerts {
        Some(a) => a,
        None => {
            fetched = client.get_json("/v1/monitoring/alerts").await?;
            &fetched
        }
    };
    if definitions(alerts) == kept {
        return Ok(Reconciled::InForce);
    }
    client.put_alert_rules(Some(&kept)).await.map_err(|e| {
        format!("the serving version refused the alert rules kept for {target}: {e}")
    })?;
    Ok(Reconciled::Sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definitions_drop_the_state_and_keep_the_order() {
        let answer = json!({"rules": [
            {"id": "b", "title": "B", "metric": "m", "op": ">", "threshold": 1, "window_minutes": 5,
             "severity": "warning", "state": "firing", "since": 3, "value": 2, "evaluated_at": 4},
            {"id": "a", "title": "A", "metric": "v", "op": "is", "threshold": "drift",
             "window_minutes": 15, "severity": "critical", "state": "ok", "since": 1}
        ]});
        assert_eq!(
            definitions(&answer),
            json!([
                {"id": "b", "title": "B", "metric": "m", "op": ">", "threshold": 1, "window_minutes": 5, "severity": "warning"},
                {"id": "a", "title": "A", "metric": "v", "op": "is", "threshold": "drift", "window_minutes": 15, "severity": "critical"}
            ])
        );
        assert_eq!(
            describe(&definitions(&answer)[1]),
            "a: v is drift over 15 min (critical)"
        );
        assert_eq!(definitions(&json!({})), json!([]));
    }
}
