//! HTTP to the service: one `reqwest` client, the bearer token on every request, and answers reduced
//! to what the replay counts.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::error::{root_cause, ReplayError};

/// Longest `retry-after` honoured; a longer one is capped (the run has its own bounds).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    timeout: Duration,
}

/// One HTTP exchange, reduced.
#[derive(Debug, Clone)]
pub enum Answer {
    Response {
        status: u16,
        latency: Duration,
        /// The body, if it was JSON.
        body: Option<Value>,
        retry_after: Option<Duration>,
    },
    /// No HTTP answer: refused, reset, timed out.
    Transport(String),
}

impl Client {
    pub fn new(base: &str, token: Option<&str>, timeout: Duration) -> Result<Client, ReplayError> {
        let base = base.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            ReplayError::config(format!(
                "{base:?} is not a URL ({e}); pass the service's base URL, e.g. http://127.0.0.1:8080"
            ))
        })?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .user_agent(concat!("traffic-replay/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&parsed) {
            // Never send loopback traffic through an HTTP(S)_PROXY from the environment.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| {
            ReplayError::config(format!("cannot set up the HTTP client: {}", root_cause(&e)))
        })?;
        if let Some(t) = token {
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                ReplayError::config("the token contains characters an HTTP header cannot carry; check --token / INFERENCE_TOKEN")
            })?;
        }
        Ok(Client {
            http,
            base,
            token: token.map(str::to_string),
            timeout,
        })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every request goes through here, so every one carries the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// `GET /v1/model`, with start-up problems turned into sentences.
    pub async fn model(&self) -> Result<Value, ReplayError> {
        let path = "/v1/model";
        let response = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let body: Option<Value> = response.json().await.ok();
        match status {
            StatusCode::OK => body.ok_or_else(|| {
                ReplayError::Service(format!(
                    "GET {} answered 200 but not with JSON; is {} the inference service?",
                    self.url(path),
                    self.base
                ))
            }),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ReplayError::Auth {
                url: self.base.clone(),
                path: path.into(),
                status: status.as_u16(),
                hint: if self.token.is_some() {
                    "it refused the token; pass the service's token with --token or INFERENCE_TOKEN"
                } else {
                    "it requires a token; pass it with --token or INFERENCE_TOKEN"
                },
            }),
            StatusCode::NOT_FOUND => Err(ReplayError::Service(format!(
                "{} has no {path} (404); is this the inference service's base URL (without a path)?",
                self.base
            ))),
            other => Err(ReplayError::Service(format!(
                "GET {} answered {other}{}; check the service's logs",
                self.url(path),
                body.as_ref()
                    .and_then(|b| b.get("error").or_else(|| b.get("reason")))
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ))),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> ReplayError {
        let reason = if e.is_timeout() {
            format!("no answer within {:.1} s", self.timeout.as_secs_f64())
        } else {
            root_cause(e)
        };
        ReplayError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    /// Sends a body as-is (the garbage scenario needs exact control over bytes and Content-Type).
    pub async fn post(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = self.request(Method::POST, path).body(body);
        if let Some(ct) = content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        let started = Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(parse_retry_after);
                let bytes = response.bytes().await;
                let latency = started.elapsed();
                match bytes {
                    Ok(bytes) => Answer::Response {
                        status,
                        latency,
                        body: serde_json::from_slice(&bytes).ok(),
                        retry_after,
                    },
                    Err(e) => Answer::Transport(format!(
                        "the answer ({status}) was cut off: {}",
                        root_cause(&e)
                    )),
                }
            }
            Err(e) if e.is_timeout() => Answer::Transport(format!(
                "no answer within {:.1} s",
                self.timeout.as_secs_f64()
            )),
            Err(e) => Answer::Transport(root_cause(&e)),
        }
    }
}

/// `retry-after` in seconds (the service's form); an HTTP date or anything unreadable means 1 s.
pub fn parse_retry_after(value: &str) -> Duration {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(1), |s| {
            Duration::from_secs_f64(s).min(MAX_RETRY_AFTER)
        })
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        None => false,
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_carries_the_bearer_token() {
        let c = Client::new("http://127.0.0.1:9/", Some("t0k"), Duration::from_secs(1)).unwrap();
        for (method, path) in [
            (Method::GET, "/v1/model"),
            (Method::POST, "/v1/predict"),
            (Method::POST, "/v1/feedback"),
        ] {
            let r = c.request(method, path).build().unwrap();
            assert_eq!(r.url().as_str(), format!("http://127.0.0.1:9{path}"));
            let auth = r.headers().get("authorization").unwrap();
            assert_eq!(auth.to_str().unwrap(), "Bearer t0k");
            assert!(auth.is_sensitive());
        }
        let c = Client::new("http://127.0.0.1:9", None, Duration::from_secs(1)).unwrap();
        let r = c.request(Method::GET, "/v1/model").build().unwrap();
        assert!(r.headers().get("authorization").is_none());
        assert!(Client::new("http://127.0.0.1:9", Some("a\nb"), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(parse_retry_after("1"), Duration::from_secs(1));
        assert_eq!(parse_retry_after(" 0.5 "), Duration::from_millis(500));
        assert_eq!(parse_retry_after("3600"), MAX_RETRY_AFTER);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Duration::from_secs(1)
        );
    }
}
