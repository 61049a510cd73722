//! Handlers that read monitoring data and take ground truth: `/v1/feedback`,
//! `/v1/monitoring/summary`, `/v1/monitoring/series`, `/v1/monitoring/buckets`,
//! `/v1/monitoring/alerts` and `/metrics`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::access::Scope;
use crate::alerts::RulesRefused;
use crate::error::ApiError;
use crate::http::{body_error, json_error, require_json, AppState};
use crate::monitor::feedback::FeedbackRequest;
use crate::monitor::{now_secs, series, summary};

/// The JSON body of a monitoring-scope write (feedback, alert rules): the token rule, the content
/// type, the size limit, then the parse.
fn json_request<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    state.access.check(headers, Scope::Monitoring)?;
    require_json(headers)?;
    let body = body.map_err(|e| body_error(e, state.limits.max_body_bytes))?;
    serde_json::from_slice(&body).map_err(json_error)
}

pub async fn feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: FeedbackRequest = json_request(&state, &headers, body)?;
    let accepted = state.monitor.label(&req).map_err(ApiError::Feedback)?;
    Ok(Json(json!({ "accepted": accepted })))
}

#[derive(Debug, Deserialize)]
pub struct SummaryQuery {
    window: Option<String>,
}

pub async fn summary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<SummaryQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.access.check(&headers, Scope::Monitoring)?;
    let Query(q) = q.map_err(query_error)?;
    let seconds =
        summary::parse_window(q.window.as_deref().unwrap_or("5m")).map_err(ApiError::BadRequest)?;
    Ok(Json(state.monitor.summary_json(seconds)))
}

/// `GET /v1/monitoring/alerts`: the rules with their state, the events of the last 7 days (oldest
/// first) and the webhook's delivery counts (never its URL).
pub async fn alerts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.access.check(&headers, Scope::Monitoring)?;
    Ok(Json(state.alerts.json()))
}

/// `PUT /v1/monitoring/alerts/rules` with `{"rules": [...]}` replaces the alert rules (checked
/// against this model's summary; 422 names the rule and the field) and `{"rules": null}` brings
/// back the defaults. Answers like `GET /v1/monitoring/alerts`.
pub async fn put_alert_rules(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: serde_json::Value = json_request(&state, &headers, body)?;
    let rules =
        match &req {
            serde_json::Value::Object(map) if map.len() == 1 && map.contains_key("rules") => {
                &map["rules"]
            }
            _ => return Err(ApiError::Unprocessable(
                "the body must be {\"rules\": [ ...rules ]} or {\"rules\": null} for the defaults"
                    .into(),
            )),
        };
    state
        .alerts
        .set_rules((!rules.is_null()).then_some(rules))
        .map_err(|e| match e {
            RulesRefused::Invalid(m) => ApiError::Unprocessable(m),
            RulesRefused::Conflict(m) => ApiError::Conflict(m),
            RulesRefused::Storage(m) => ApiError::Internal(m),
        })?;
    Ok(Json(state.alerts.json()))
}

#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    metric: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    step: Option<i64>,
}

pub async fn series(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.access.check(&headers, Scope::Monitoring)?;
    let Query(q) = q.map_err(query_error)?;
    let metric = q.metric.ok_or_else(|| {
        ApiError::BadRequest(format!(
            "metric is required; one of: {}",
            series::METRICS.join(", ")
        ))
    })?;
    let to = q.to.unwrap_or_else(now_secs);
    let from = q.from.unwrap_or(to - 3600);
    let step = q.step.unwrap_or(60);
    state
        .monitor
        .series(&metric, from, to, step)
        .map(Json)
        .map_err(ApiError::BadRequest)
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::BadRequest(format!("bad query string: {}", e.body_text()))
}

pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.access.check(&headers, Scope::Monitoring)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::monitor::prometheus::render(&state.monitor),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct BucketsQuery {
    from: Option<i64>,
    to: Option<i64>,
    step: Option<i64>,
}

/// `GET /v1/monitoring/buckets`: the minute buckets from `from` to `to` merged step by step, as
/// counts and sums, with the layout's fingerprint. A console merges a fleet's replicas from these
/// and computes the summary and series itself, on the merged histograms.
pub async fn buckets(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<BucketsQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.access.check(&headers, Scope::Monitoring)?;
    let Query(q) = q.map_err(query_error)?;
    let to = q.to.unwrap_or_else(now_secs);
    let from = q.from.unwrap_or(to - 3600);
    let span = series::Span::new(from, to, q.step.unwrap_or(60), now_secs())
        .map_err(ApiError::BadRequest)?;
    let (first, last) = span.minutes();
    let monitor = &state.monitor;
    let groups = monitor.read_range(first, last, |b| series::groups(&span, b));
    Ok(Json(json!({
        "fingerprint": monitor.fingerprint(),
        "from": span.from,
        "to": span.to,
        "step": span.step,
        "in_flight_now": monitor.in_flight(),
        "dropped_events": monitor.dropped_events(),
        "groups": groups,
    })))
}
