//! Every error the HTTP API returns, and the one place that maps each kind to a status code.
//! The body is always JSON: `{"error": sentence, "error_type": kind, ...details}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::engine::EngineError;
use crate::monitor::feedback::{ItemProblem, Refusal};
use crate::request::{Issue, RequestError};

/// An error and its causes as one sentence, each cause appended once (`a: b: c`); for logs and
/// delivery reports of outbound calls (CloudWatch, the alert webhook).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", describe_issues(.0))]
    Validation(Vec<Issue>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{}", .0.first().map_or("invalid feedback".to_string(), |p| format!("feedback item {}: {}", p.item, p.problem)))]
    Feedback(Vec<ItemProblem>),
    /// The request contradicts itself or the service's state (two alert rules with one id).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Feedback(problems) => match problems.first().map(|p| p.refusal) {
                Some(Refusal::Unknown) => StatusCode::NOT_FOUND,
                Some(Refusal::Duplicate) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Validation(_) | ApiError::Unprocessable(_) => "validation",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::Feedback(problems) => match problems.first().map(|p| p.refusal) {
                Some(Refusal::Unknown) => "not_found",
                Some(Refusal::Duplicate) => "conflict",
                _ => "validation",
            },
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

fn describe_issues(issues: &[Issue]) -> String {
    match issues {
        [] => "invalid request".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more problems, see details)", rest.len()),
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Empty => {
                ApiError::BadRequest("rows is empty; send at least one row".into())
            }
            RequestError::TooManyRows { rows, limit } => ApiError::Unprocessable(format!(
                "the batch has {rows} rows; this service accepts at most {limit} per request"
            )),
            RequestError::Invalid(issues) => ApiError::Validation(issues),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded(_) => ApiError::Overloaded(format!("{e}; retry shortly")),
            EngineError::Stopped => ApiError::Unavailable(e.to_string()),
            EngineError::Model(m) => ApiError::Internal(m.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, kind = self.kind(), "request failed");
        } else {
            tracing::debug!(error = %self, kind = self.kind(), "request rejected");
        }
        let mut body = json!({"error": self.to_string(), "error_type": self.kind()});
        if let ApiError::Validation(issues) = &self {
            if let Some(first) = issues.first() {
                body["row"] = json!(first.row);
                if let Some(f) = &first.feature {
                    body["feature"] = json!(f);
                }
            }
            body["details"] = json!(issues);
        }
        if let ApiError::Feedback(problems) = &self {
            body["details"] = problems
                .iter()
                .map(|p| json!({"item": p.item, "problem": p.problem}))
                .collect();
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::IssueKind;

    #[test]
    fn each_kind_has_its_status() {
        let cases = [
            (ApiError::Validation(vec![]), 422),
            (ApiError::BadRequest(String::new()), 400),
            (ApiError::PayloadTooLarge(String::new()), 413),
            (ApiError::UnsupportedMediaType(String::new()), 415),
            (ApiError::Overloaded(String::new()), 429),
            (ApiError::Unavailable(String::new()), 503),
            (ApiError::Internal(String::new()), 500),
        ];
        for (err, code) in cases {
            assert_eq!(err.status().as_u16(), code, "{}", err.kind());
        }
    }

    #[test]
    fn several_issues_are_summarised() {
        let issues = vec![
            Issue {
                row: 2,
                feature: Some("a".into()),
                problem: "is NaN".into(),
                kind: IssueKind::Invalid,
            },
            Issue {
                row: 5,
                feature: None,
                problem: "has 3 values".into(),
                kind: IssueKind::Shape,
            },
        ];
        assert_eq!(
            ApiError::Validation(issues).to_string(),
            "row 2, feature \"a\": is NaN (and 1 more problems, see details)"
        );
    }
}
