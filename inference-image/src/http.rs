//! The HTTP API: routes and handlers. Handlers parse and validate on the async workers, then hand
//! the numbers to the engine, which scores them on its own threads.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::access::{Access, Scope};
use crate::card::{MissingPolicy, ModelCard, Task};
use crate::engine::{Engine, Scored};
use crate::error::ApiError;
use crate::monitor::{now_secs, Event, Monitor};
use crate::monitoring_api;
use crate::request::{overflow_issues, to_matrix, Issue, PredictRequest, Schema};
use crate::scorer::Outputs;
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
    pub probe_row: Vec<f64>,
    /// What request validation needs from the card.
    pub schema: Schema,
    /// `/openapi.json`, specialised to this model and these limits.
    pub openapi: String,
    pub monitor: Arc<Monitor>,
    pub alerts: crate::alerts::Alerts,
    pub access: Access,
}

const OPENAPI_TEMPLATE: &str = include_str!("openapi.json");

/// The OpenAPI description with the row schemas filled in from the served model's card.
pub fn openapi_document(
    card: &ModelCard,
    limits: &Limits,
    service_version: &str,
    probe: &serde_json::Value,
) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(OPENAPI_TEMPLATE).expect("openapi.json is valid JSON");
    let width = card.width();
    let names: Vec<&str> = card.feature_names().collect();
    doc["info"]["version"] = json!(service_version);
    let schemas = &mut doc["components"]["schemas"];
    schemas["PredictRequest"]["properties"]["rows"]["maxItems"] = json!(limits.max_batch_rows);
    // A row index points into one scored batch: at most the largest batch this service takes.
    schemas["FeedbackRequest"]["properties"]["feedback"]["items"]["properties"]["row"]["maximum"] =
        json!(limits.max_batch_rows.max(1) - 1);
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
    let metrics: Vec<String> = crate::monitor::series::metric_names(
        &names,
        card.classifier.as_ref().map_or(&[][..], |c| &c.classes[..]),
    );
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
    specialise_to_task(&mut doc, card);
    specialise_alert_rules(&mut doc, probe);
    serde_json::to_string(&doc).expect("serializable")
}

/// A rule as this model's summary (`probe`) can answer it: the metric named among the values the
/// summary has, with an operator and a threshold its kind can be compared with.
fn specialise_alert_rules(doc: &mut serde_json::Value, probe: &serde_json::Value) {
    use crate::alerts::rules::{metric_paths, MAX_RULES, VERDICTS};
    let paths = metric_paths(probe);
    let rule = &mut doc["components"]["schemas"]["AlertRule"];
    let base = rule.clone();
    let shape = |metrics: &[String], ops: serde_json::Value, threshold: serde_json::Value| {
        let mut r = base.clone();
        r["properties"]["metric"]["enum"] = json!(metrics);
        r["properties"]["op"] = json!({"type": "string", "enum": ops});
        r["properties"]["threshold"] = threshold;
        r
    };
    let text = json!({"type": "string", "pattern": "\\S"});
    let mut shapes = vec![
        shape(
            &paths.numeric,
            json!([">", ">=", "<", "<="]),
            json!({"type": "number"}),
        ),
        shape(
            &paths.other,
            json!(["is"]),
            json!({"type": ["number", "string", "boolean"]}),
        ),
    ];
    if !paths.verdicts.is_empty() {
        shapes.push(shape(
            &paths.verdicts,
            json!(["is"]),
            json!({"type": "string", "enum": VERDICTS}),
        ));
    }
    for s in &mut shapes {
        s["properties"]["id"]["pattern"] = text["pattern"].clone();
        s["properties"]["title"]["pattern"] = text["pattern"].clone();
    }
    *rule = json!({"anyOf": shapes, "description": base["description"]});
    doc["components"]["schemas"]["AlertRules"]["properties"]["rules"]["oneOf"][0]["maxItems"] =
        json!(MAX_RULES);
}

/// The predict operation's answer for the card's task, and rows that may leave values out when the
/// card's missing-value policy accepts them.
fn specialise_to_task(doc: &mut serde_json::Value, card: &ModelCard) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["ModelRef"]["properties"]["task"] =
        json!({"type": "string", "enum": [card.task.as_str()]});
    schemas["ModelRef"]["required"] = json!(["name", "version", "task"]);
    let imputed = json!({"type": "array", "items": {"type": "string"}, "description": "Features whose missing value was replaced by the training value (impute policy)."});
    let row =
        json!({"type": "integer", "minimum": 0, "description": "The row's index in the request."});
    let response = &mut schemas["PredictResponse"];
    let (summary, result) = match card.task {
        Task::Autoencoder => {
            let mut r = schemas["RowResult"].clone();
            r["properties"]["imputed"] = imputed;
            ("Score rows: reconstruction error, anomaly score (error / threshold) and the anomaly verdict per row.".to_string(), r)
        }
        Task::Classifier => {
            let classes = card
                .classifier
                .as_ref()
                .map_or(Vec::new(), |c| c.classes.clone());
            let probabilities: serde_json::Map<String, serde_json::Value> = classes
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        json!({"type": "number", "minimum": 0, "maximum": 1}),
                    )
                })
                .collect();
            let binary = card.positive_class().is_some();
            response["required"] = if binary {
                json!([
                    "request_id",
                    "model",
                    "threshold",
                    "positive_class",
                    "results"
                ])
            } else {
                json!(["request_id", "model", "results"])
            };
            response["properties"]["threshold"] = json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "description": "The positive class is predicted when its probability is above this."});
            response["properties"]["positive_class"] = json!({"type": "string", "enum": classes.get(card.positive_class().unwrap_or(0)).map(|c| vec![c.clone()]).unwrap_or_default()});
            if !binary {
                if let Some(p) = response["properties"].as_object_mut() {
                    p.remove("threshold");
                    p.remove("positive_class");
                }
            }
            (
                format!(
                    "Classify rows: the predicted class of the {} and every class's probability.",
                    card.task_phrase()
                ),
                json!({
                    "type": "object",
                    "required": ["row", "label", "probability", "probabilities"],
                    "properties": {
                        "row": row,
                        "label": {"type": "string", "enum": classes},
                        "probability": {"type": "number", "minimum": 0, "maximum": 1, "description": "The predicted class's probability."},
                        "probabilities": {"type": "object", "required": classes, "properties": probabilities, "additionalProperties": false},
                        "imputed": imputed,
                    },
                }),
            )
        }
        Task::Regressor => {
            response["required"] = json!(["request_id", "model", "results"]);
            if let Some(p) = response["properties"].as_object_mut() {
                p.remove("threshold");
            }
            (
                "Predict one value per row.".to_string(),
                json!({
                    "type": "object",
                    "required": ["row", "value"],
                    "properties": {"row": row, "value": {"type": "number"}, "imputed": imputed},
                }),
            )
        }
    };
    schemas["RowResult"] = result;
    schemas["PredictResponse"]["properties"]["errors"] = json!({
        "type": "array",
        "description": "Rows refused one by one (per-row missing-value policy); the other rows are in results.",
        "items": {
            "type": "object",
            "required": ["row", "error", "details"],
            "properties": {
                "row": {"type": "integer", "minimum": 0},
                "error": {"type": "string"},
                "details": {"type": "array", "items": {"$ref": "#/components/schemas/Issue"}},
            },
        },
    });
    doc["paths"]["/v1/predict"]["post"]["summary"] = json!(summary);
    let schemas = &mut doc["components"]["schemas"];
    let label =
        &mut schemas["FeedbackRequest"]["properties"]["feedback"]["items"]["properties"]["label"];
    match (card.task, &card.classifier) {
        (Task::Classifier, Some(c)) => {
            let mut one_of = vec![json!({"type": "string", "enum": c.classes})];
            let numbers: Vec<i64> = c.classes.iter().filter_map(|k| k.parse().ok()).collect();
            if !numbers.is_empty() {
                one_of.push(json!({"type": "integer", "enum": numbers}));
            }
            if c.classes.len() == 2 {
                one_of.push(json!({"type": "boolean", "description": "true = the positive class"}));
            }
            *label = json!({"oneOf": one_of, "description": "The true class."});
        }
        (Task::Regressor, _) => {
            *label = json!({"type": "number", "description": "The true value."})
        }
        _ => {}
    }
    for (j, integer) in card.integer_features().into_iter().enumerate() {
        if integer {
            schemas["RowValues"]["prefixItems"][j]["type"] = json!("integer");
            schemas["RowNamed"]["properties"][&card.features[j].name]["type"] = json!("integer");
        }
    }
    if card.missing_values.policy != MissingPolicy::Reject {
        // Missing values are accepted: a cell may be null and a named row may leave features out.
        let schemas = &mut doc["components"]["schemas"];
        if let Some(items) = schemas["RowValues"]["prefixItems"].as_array_mut() {
            for item in items {
                item["type"] = json!([item["type"].clone(), "null"]);
            }
        }
        if let Some(props) = schemas["RowNamed"]["properties"].as_object_mut() {
            for item in props.values_mut() {
                item["type"] = json!([item["type"].clone(), "null"]);
            }
        }
        schemas["RowNamed"]["required"] = json!([]);
    }
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
        .route("/v1/monitoring/buckets", get(monitoring_api::buckets))
        .route("/v1/monitoring/alerts", get(monitoring_api::alerts))
        .route(
            "/v1/monitoring/alerts/rules",
            put(monitoring_api::put_alert_rules),
        )
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
            "model": {"name": state.card.name, "version": state.card.version, "task": state.card.task.as_str()},
            "probe_ms": started.elapsed().as_secs_f64() * 1e3,
        }))
        .into_response(),
        Ok(Ok(e)) => not_ready(format!(
            "a forward pass on the training means gave a non-finite score ({e})"
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
    /// Autoencoder: the anomaly threshold. Binary classifier: the decision threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    positive_class: Option<&'a str>,
    results: Vec<RowResult<'a>>,
    /// Rows refused under the per-row missing-value policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<RowError<'a>>,
}

#[derive(Serialize)]
struct ModelRef<'a> {
    name: &'a str,
    version: &'a str,
    task: &'static str,
}

#[derive(Serialize)]
struct RowResult<'a> {
    row: usize,
    #[serde(flatten)]
    prediction: Prediction<'a>,
    /// Features whose missing value was replaced (impute policy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    imputed: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Prediction<'a> {
    Anomaly {
        reconstruction_error: f64,
        anomaly_score: f64,
        is_anomaly: bool,
    },
    Class {
        label: &'a str,
        probability: f64,
        probabilities: ClassProbabilities<'a>,
    },
    Value {
        value: f64,
    },
}

/// Every class's probability, keyed by class label.
struct ClassProbabilities<'a> {
    classes: &'a [String],
    values: Vec<f32>,
}

impl Serialize for ClassProbabilities<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.classes.len()))?;
        for (k, v) in self.classes.iter().zip(&self.values) {
            map.serialize_entry(k, &f64::from(*v))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct RowError<'a> {
    row: usize,
    error: String,
    details: &'a [Issue],
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
    let mut parsed = to_matrix(
        &req,
        &state.card,
        &state.schema,
        state.limits.max_batch_rows,
    )?;
    let card = &*state.card;
    let width = card.width();
    let matrix = std::mem::take(&mut parsed.matrix);
    let scored = if matrix.is_empty() {
        // Every row was refused (per-row policy): nothing to score, each row has its error.
        Scored {
            rows: matrix,
            outputs: Outputs::default(),
        }
    } else {
        let permit = state.engine.admit()?;
        let scored = state.engine.score(&permit, matrix).await?;
        drop(permit);
        scored
    };
    let outputs = scored.outputs;
    let overflowed: Vec<Issue> = overflow_issues(&outputs.scores, &scored.rows, card)
        .into_iter()
        .map(|mut issue| {
            issue.row = parsed.request_row(issue.row);
            issue
        })
        .collect();
    if !overflowed.is_empty() {
        return Err(ApiError::Validation(overflowed));
    }
    // Feedback names rows by their index in the request, so refused rows are remembered too (as
    // unscored).
    let request_id = match &parsed.rows {
        None => state
            .monitor
            .remember(&outputs.scores, &outputs.probabilities),
        Some(rows) => {
            let k = outputs.probabilities.len() / outputs.len().max(1);
            let mut scores = vec![f64::NAN; req.rows.len()];
            let mut probabilities = vec![f32::NAN; req.rows.len() * k];
            for (i, &r) in rows.iter().enumerate() {
                scores[r] = outputs.scores[i];
                probabilities[r * k..(r + 1) * k]
                    .copy_from_slice(&outputs.probabilities[i * k..(i + 1) * k]);
            }
            state.monitor.remember(&scores, &probabilities)
        }
    }
    .to_string();
    let threshold = card.score.threshold;
    let classes: &[String] = card.classifier.as_ref().map_or(&[], |c| &c.classes);
    let k = classes.len();
    let mut imputed = parsed.imputed.iter().peekable();
    let results = (0..outputs.len())
        .map(|i| {
            let score = outputs.scores[i];
            let prediction = match card.task {
                Task::Autoencoder => {
                    let t = threshold.unwrap_or(f64::INFINITY);
                    Prediction::Anomaly {
                        reconstruction_error: score,
                        anomaly_score: score / t,
                        is_anomaly: score > t,
                    }
                }
                Task::Classifier => {
                    let class = outputs.classes[i] as usize;
                    let p = outputs.probabilities[i * k..(i + 1) * k].to_vec();
                    Prediction::Class {
                        label: &classes[class],
                        probability: f64::from(p[class]),
                        probabilities: ClassProbabilities { classes, values: p },
                    }
                }
                Task::Regressor => Prediction::Value { value: score },
            };
            let mut names = Vec::new();
            while let Some((_, j)) = imputed.next_if(|(row, _)| *row == i) {
                names.push(card.features[*j].name.as_str());
            }
            RowResult {
                row: parsed.request_row(i),
                prediction,
                imputed: names,
            }
        })
        .collect();
    let mut rows = scored.rows;
    // Imputed cells are not observations: the feature histograms skip them.
    for &(row, j) in &parsed.imputed {
        rows[row * width + j] = f64::NAN;
    }
    state.monitor.record(Event::Scored {
        at: now_secs(),
        rows,
        scores: outputs.scores,
        classes: outputs.classes,
        quality: parsed.quality.take().map(Box::new),
    });
    let errors = parsed
        .refused
        .iter()
        .map(|r| RowError {
            row: r.row,
            error: r
                .issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            details: &r.issues,
        })
        .collect();
    let response = PredictResponse {
        request_id: request_id.clone(),
        model: ModelRef {
            name: &card.name,
            version: &card.version,
            task: card.task.as_str(),
        },
        threshold,
        positive_class: card.positive_class().map(|p| classes[p].as_str()),
        results,
        errors,
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
