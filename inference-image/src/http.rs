//! The HTTP API: routes and handlers. Handlers parse and validate on the async workers, then hand
//! the numbers to the engine, which scores them on its own threads.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::access::{Access, Scope};
use crate::card::ModelCard;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::monitor::{now_secs, Event, Monitor};
use crate::monitoring_api;
use crate::request::{overflow_issues, to_matrix, PredictRequest};
use crate::tracking::TrackLayer;

/// Build-time and deploy-time facts reported by `GET /v1/model`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    pub service_version: &'static str,
    pub git_revision: &'static str,
    pub image_tag: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_batch_rows: usize,
    pub max_body_bytes: usize,
}

pub struct AppState {
    pub engine: Engine,
    pub card: Arc<ModelCard>,
    pub info: BuildInfo,
    pub limits: Limits,
    /// The training means: a row that any working model can score, used by `/readyz`.
    pub probe_row: Vec<f32>,
    /// `/openapi.json`, specialised to this model and these limits.
    pub openapi: String,
    pub monitor: Arc<Monitor>,
    pub access: Access,
}

const OPENAPI_TEMPLATE: &str = include_str!("openapi.json");

/// The OpenAPI description with the row schemas filled in from the served model's card.
pub fn openapi_document(card: &ModelCard, limits: &Limits, service_version: &str) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(OPENAPI_TEMPLATE).expect("openapi.json is valid JSON");
    let width = card.width();
    let names: Vec<&str> = card.feature_names().collect();
    doc["info"]["version"] = json!(service_version);
    let schemas = &mut doc["components"]["schemas"];
    schemas["PredictRequest"]["properties"]["rows"]["maxItems"] = json!(limits.max_batch_rows);
    let ranged = |f: &crate::card::FeatureStats| json!({"type": "number", "title": f.name, "minimum": f.valid_min, "maximum": f.valid_max});
    let values = &mut schemas["RowValues"];
    values["minItems"] = json!(width);
    values["maxItems"] = json!(width);
    values["prefixItems"] = card.features.iter().map(ranged).collect();
    values["description"] = json!(format!(
        "The {width} feature values of model {} {} in this order: {}",
        card.name,
        card.version,
        names.join(", ")
    ));
    let metrics: Vec<String> = crate::monitor::series::metric_names(&names);
    let named = &mut schemas["RowNamed"];
    named["required"] = json!(names);
    named["properties"] = card
        .features
        .iter()
        .map(|f| (f.name.clone(), ranged(f)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    doc["paths"]["/v1/monitoring/series"]["get"]["parameters"][0]["schema"]["enum"] =
        json!(metrics);
    serde_json::to_string(&doc).expect("serializable")
}

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .route("/v1/feedback", post(monitoring_api::feedback))
        .route("/v1/monitoring/summary", get(monitoring_api::summary))
        .route("/v1/monitoring/series", get(monitoring_api::series))
        .route("/metrics", get(monitoring_api::metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit));
    let router = if state.monitor.enabled {
        router.layer(TrackLayer::new(Arc::clone(&state.monitor)))
    } else {
        router
    };
    router.with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "alive"}))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let started = std::time::Instant::now();
    let probe = state.engine.probe(state.probe_row.clone());
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(e)) if e.is_finite() => Json(json!({
            "status": "ready",
            "model": {"name": state.card.name, "version": state.card.version},
            "probe_ms": started.elapsed().as_secs_f64() * 1e3,
        }))
        .into_response(),
        Ok(Ok(e)) => not_ready(format!(
            "a forward pass on the training means gave a non-finite error ({e})"
        )),
        Ok(Err(e)) => not_ready(format!("a forward pass failed: {e}")),
        Err(_) => not_ready("a forward pass did not finish within 2 s".to_string()),
    }
}

fn not_ready(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not_ready", "reason": reason})),
    )
        .into_response()
}

async fn model(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({
        "name": state.card.name,
        "version": state.card.version,
        "image_tag": state.info.image_tag,
        "git_revision": state.info.git_revision,
        "service_version": state.info.service_version,
        "limits": {"max_batch_rows": state.limits.max_batch_rows, "max_body_bytes": state.limits.max_body_bytes},
        "card": *state.card,
    }))
}

async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
        .into_response()
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    request_id: String,
    model: ModelRef<'a>,
    threshold: f64,
    results: Vec<RowResult>,
}

#[derive(Serialize)]
struct ModelRef<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct RowResult {
    row: usize,
    reconstruction_error: f64,
    anomaly_score: f64,
    is_anomaly: bool,
}

async fn predict(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let result = score_request(&state, request).await;
    if let Err(e) = &result {
        // Refused for its content (not for load or access): the data layer counts it.
        let status = e.status();
        if status.is_client_error()
            && status != StatusCode::TOO_MANY_REQUESTS
            && status != StatusCode::UNAUTHORIZED
            && status != StatusCode::FORBIDDEN
        {
            let issues = match e {
                ApiError::Validation(issues) => issues.clone(),
                _ => Vec::new(),
            };
            state.monitor.record(Event::Rejected {
                at: now_secs(),
                issues,
            });
        }
    }
    result
}

async fn score_request(state: &Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    // The headers are checked in place (a `HeaderMap` extractor would copy them), and the body is
    // only read once they pass.
    let (parts, body) = request.into_parts();
    state.access.check(&parts.headers, Scope::Predict)?;
    require_json(&parts.headers)?;
    let body = Bytes::from_request(Request::from_parts(parts, body), &())
        .await
        .map_err(|e| body_error(e, state.limits.max_body_bytes))?;
    let req: PredictRequest = serde_json::from_slice(&body).map_err(json_error)?;
    let matrix = to_matrix(&req, &state.card, state.limits.max_batch_rows)?;
    let permit = state.engine.admit()?;
    let scored = state.engine.score(&permit, matrix).await?;
    drop(permit);
    let errors = scored.errors;
    let overflowed = overflow_issues(&errors, &scored.rows, &state.card);
    if !overflowed.is_empty() {
        return Err(ApiError::Validation(overflowed));
    }
    let threshold = state.card.score.threshold;
    let request_id = state.monitor.remember(&errors).to_string();
    let results = errors
        .iter()
        .enumerate()
        .map(|(row, &e)| RowResult {
            row,
            reconstruction_error: e,
            anomaly_score: e / threshold,
            is_anomaly: e > threshold,
        })
        .collect();
    state.monitor.record(Event::Scored {
        at: now_secs(),
        rows: scored.rows,
        errors,
    });
    let response = PredictResponse {
        request_id: request_id.clone(),
        model: ModelRef {
            name: &state.card.name,
            version: &state.card.version,
        },
        threshold,
        results,
    };
    let mut response = Json(response).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    Ok(response)
}

pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(
            "missing Content-Type; send the rows as application/json".into(),
        ));
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {:?} is not supported; send the rows as application/json",
            value.to_str().unwrap_or("(not text)")
        )))
    }
}

pub(crate) fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "the body is larger than this service's limit of {limit} bytes"
        ))
    } else {
        ApiError::BadRequest(format!("cannot read the request body: {}", e.body_text()))
    }
}

pub(crate) fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::Unprocessable(format!(
            "the body does not have the shape {{\"rows\": [...]}}: {e}"
        )),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("the body is not valid JSON: {e}"))
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}
