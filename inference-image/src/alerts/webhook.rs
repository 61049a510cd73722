//! Delivers alert events to a webhook (`INFERENCE_ALERT_WEBHOOK_URL`, environment only): a Slack
//! incoming webhook (`{"text": "…"}`, the default) or any receiver of the event as JSON
//! (`--alert-webhook-format json`).
//!
//! The URL is a secret (a Slack webhook's path is its credential): it is never logged, never put
//! in an error message and never served; logs name it by scheme and host only.
//!
//! Events wait in a bounded queue ([`QUEUE`]; when it is full the oldest is dropped and counted)
//! and one worker posts them in order. An attempt has a timeout ([`WebhookConfig::timeout`]);
//! connection errors, timeouts, 5xx and 429 are retried with exponential backoff (1, 2, 4, 8, 16 s
//! by default, [`WebhookConfig::max_attempts`] attempts in all), after which the event is given up
//! and counted as failed. Any 2xx is delivered; any other answer (4xx, 3xx) is failed at once, not
//! retried. Delivery is at least once: a receiver that takes an event but answers too late gets it
//! again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::evaluator::AlertEvent;

/// Events waiting for delivery; beyond this the oldest is dropped.
pub const QUEUE: usize = 256;
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookFormat {
    /// `{"text": "one line"}` (Slack, Mattermost, Teams workflows, Discord's /slack endpoint).
    Slack,
    /// The event object itself.
    Json,
}

/// The webhook URL. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub const ENV: &'static str = "INFERENCE_ALERT_WEBHOOK_URL";

    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// `INFERENCE_ALERT_WEBHOOK_URL`, when set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var(Self::ENV)
            .ok()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .map(Self)
    }

    /// The parsed URL, or a sentence that does not contain it.
    fn parse(&self) -> Result<(Uri, String), String> {
        let bad = |why: &str| format!("{} is not a usable webhook URL: {why}", Self::ENV);
        let uri: Uri = self
            .0
            .parse()
            .map_err(|_| bad("it does not parse as a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => return Err(bad("it must start with https:// (or http://)")),
        };
        let Some(authority) = uri.authority() else {
            return Err(bad("it has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; put the secret in the path",
            ));
        }
        let origin = format!("{scheme}://{}", authority.host());
        Ok((uri, origin))
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl([redacted])")
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub format: WebhookFormat,
    /// One attempt, from connecting to the response's status line.
    pub timeout: Duration,
    /// The wait before the first retry; doubled before each next one, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
    /// Attempts per event, the first included.
    pub max_attempts: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            format: WebhookFormat::Slack,
            timeout: Duration::from_secs(5),
            backoff: Duration::from_secs(1),
            max_attempts: 6,
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Webhook {
    uri: Uri,
    /// Scheme and host: what logs may say about the URL.
    origin: String,
    /// The full URL and its path and query, to scrub from any error text.
    secrets: Vec<String>,
    config: WebhookConfig,
    client: HttpClient,
    queue: Mutex<VecDeque<AlertEvent>>,
    wake: tokio::sync::Notify,
    in_flight: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered(u16),
    Retry(String),
    Refused(String),
}

impl Webhook {
    /// Checks the URL and builds the client (TLS with the system's root certificates for https).
    /// Errors never contain the URL.
    pub fn new(url: &WebhookUrl, config: WebhookConfig) -> Result<Arc<Self>, String> {
        let (uri, origin) = url.parse()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = if uri.scheme_str() == Some("https") {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| {
                    format!("cannot load the system's root certificates for the alert webhook: {e}")
                })?
        } else {
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cannot set up TLS for the alert webhook: {e}"))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        };
        let connector = builder.https_or_http().enable_http1().build();
        // No pooling: alerts are rare, and a fresh connection per attempt never meets a stale one.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let mut secrets = vec![url.0.clone()];
        if let Some(pq) = uri.path_and_query().map(|p| p.as_str().to_string()) {
            if pq.len() > 1 {
                secrets.push(pq);
            }
        }
        Ok(Arc::new(Self {
            uri,
            origin,
            secrets,
            config,
            client,
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            in_flight: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }))
    }

    /// Scheme and host of the URL (all that logs say about it).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Queues an event; when the queue is full the oldest waiting one is dropped and counted.
    pub fn enqueue(&self, event: AlertEvent) {
        let mut q = self.queue.lock().expect("not poisoned");
        while q.len() >= QUEUE {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(event);
        drop(q);
        self.wake.notify_one();
    }

    /// `delivery` of `GET /v1/monitoring/alerts` (never the URL).
    pub fn stats(&self) -> Value {
        json!({
            "configured": true,
            "format": match self.config.format { WebhookFormat::Slack => "slack", WebhookFormat::Json => "json" },
            "delivered": self.delivered.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "queued": self.queue.lock().expect("not poisoned").len() as u64 + self.in_flight.load(Ordering::Relaxed),
        })
    }

    /// The body posted for `event`.
    pub fn body(&self, event: &AlertEvent) -> Vec<u8> {
        let v = match self.config.format {
            WebhookFormat::Slack => json!({ "text": sentence(event) }),
            WebhookFormat::Json => json!(event),
        };
        serde_json::to_vec(&v).expect("serializable")
    }

    /// Starts the delivery worker on the current runtime.
    pub fn spawn(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let next = {
                    let mut q = me.queue.lock().expect("not poisoned");
                    let e = q.pop_front();
                    if e.is_some() {
                        me.in_flight.store(1, Ordering::Relaxed);
                    }
                    e
                };
                match next {
                    Some(event) => {
                        me.deliver(&event).await;
                        me.in_flight.store(0, Ordering::Relaxed);
                    }
                    // notify_one keeps a permit when nobody waits, so an event queued between the
                    // check and this wait still wakes the worker.
                    None => me.wake.notified().await,
                }
            }
        });
    }

    /// Posts one event with retries; counts the outcome.
    async fn deliver(&self, event: &AlertEvent) {
        let body = Bytes::from(self.body(event));
        let max = self.config.max_attempts.max(1);
        for attempt in 1..=max {
            match self.attempt(body.clone()).await {
                Attempt::Delivered(status) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(webhook = %self.origin, rule = %event.rule, state = %event.state, status, attempt, "alert delivered to the webhook");
                    return;
                }
                Attempt::Refused(why) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(webhook = %self.origin, rule = %event.rule, state = %event.state, "the alert webhook refused the alert ({why}); not retried, the alert is dropped");
                    return;
                }
                Attempt::Retry(why) if attempt < max => {
                    let wait = self.delay(attempt);
                    tracing::info!(webhook = %self.origin, rule = %event.rule, state = %event.state, attempt, max_attempts = max, retry_in_ms = wait.as_millis() as u64, "alert webhook delivery failed ({why}); retrying");
                    tokio::time::sleep(wait).await;
                }
                Attempt::Retry(why) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(webhook = %self.origin, rule = %event.rule, state = %event.state, attempts = max, "alert webhook delivery failed ({why}); giving up, the alert is dropped");
                }
            }
        }
    }

    /// The wait after failed attempt number `attempt` (1 after the first).
    fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        self.config
            .backoff
            .saturating_mul(1 << exp)
            .min(MAX_BACKOFF.max(self.config.backoff))
    }

    async fn attempt(&self, body: Bytes) -> Attempt {
        let request = hyper::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("inference-alerts/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(_) => return Attempt::Refused("the request could not be built".into()),
        };
        match tokio::time::timeout(self.config.timeout, self.client.request(request)).await {
            Err(_) => Attempt::Retry(format!(
                "no answer within {} ms",
                self.config.timeout.as_millis()
            )),
            Ok(Err(e)) => Attempt::Retry(self.scrub(&crate::error::chain(&e))),
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Attempt::Delivered(status),
                    429 | 500..=599 => Attempt::Retry(format!("HTTP {status}")),
                    _ => Attempt::Refused(format!("HTTP {status}")),
                }
            }
        }
    }

    /// `text` without the URL or its path.
    fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), "[webhook]"))
    }
}

/// A value as a person reads it: whole numbers without decimals, others to 4 significant digits.
fn readable(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{x:.0}")
            } else {
                let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
                let s = format!("{x:.digits$}");
                if s.contains('.') {
                    s.trim_end_matches('0').trim_end_matches('.').to_string()
                } else {
                    s
                }
            }
        }
        Value::Null => "no data".into(),
        other => other.to_string(),
    }
}

/// The one-line message of the Slack format, e.g. "🔴 FIRING critical: Input drift —
/// data.drift.verdict is drift (window 15 min) on wbc-autoencoder 1.0.0 (v1)".
pub fn sentence(e: &AlertEvent) -> String {
    let (mark, what) = match (e.state.as_str(), e.severity.as_str()) {
        ("firing", "critical") => ("🔴", "FIRING"),
        ("firing", _) => ("🟠", "FIRING"),
        _ => ("✅", "RESOLVED"),
    };
    let condition = if e.op == "is" {
        format!("window {} min", e.window_minutes)
    } else if e.state == "firing" {
        format!(
            "{} {}, window {} min",
            e.op,
            readable(&e.threshold),
            e.window_minutes
        )
    } else {
        format!(
            "no longer {} {}, window {} min",
            e.op,
            readable(&e.threshold),
            e.window_minutes
        )
    };
    let tag = e
        .image_tag
        .as_deref()
        .map_or(String::new(), |t| format!(" ({t})"));
    format!(
        "{mark} {what} {}: {} — {} is {} ({condition}) on {} {}{tag}",
        e.severity,
        e.title,
        e.metric,
        readable(&e.value),
        e.model,
        e.model_version
    )
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    fn event(state: &str, metric: &str, op: &str, value: Value, threshold: Value) -> AlertEvent {
        AlertEvent {
            rule: "r".into(),
            title: "Input drift".into(),
            severity: "critical".into(),
            state: state.into(),
            value,
            threshold,
            op: op.into(),
            metric: metric.into(),
            window_minutes: 15,
            at: 1,
            service: "s".into(),
            model: "wbc-autoencoder".into(),
            model_version: "1.0.0".into(),
            image_tag: Some("v1".into()),
        }
    }

    #[test]
    fn sentences_read_like_the_examples() {
        let e = event(
            "firing",
            "data.drift.verdict",
            "is",
            json!("drift"),
            json!("drift"),
        );
        assert_eq!(
            sentence(&e),
            "🔴 FIRING critical: Input drift — data.drift.verdict is drift (window 15 min) on wbc-autoencoder 1.0.0 (v1)"
        );
        let mut e = event(
            "resolved",
            "system.error_rate",
            ">",
            json!(0.0123456),
            json!(0.05),
        );
        e.image_tag = None;
        assert_eq!(
            sentence(&e),
            "✅ RESOLVED critical: Input drift — system.error_rate is 0.01235 (no longer > 0.05, window 15 min) on wbc-autoencoder 1.0.0"
        );
        assert_eq!(readable(&json!(3)), "3");
        assert_eq!(readable(&json!(0.3)), "0.3");
        assert_eq!(readable(&json!(1234.5678)), "1235");
    }

    #[test]
    fn bad_urls_are_refused_without_showing_them() {
        for url in [
            "ftp://example.com/SECRET",
            "not a url SECRET",
            "https://user:SECRET@example.com/x",
        ] {
            let e = Webhook::new(&WebhookUrl::new(url), WebhookConfig::default())
                .err()
                .unwrap();
            assert!(e.contains(WebhookUrl::ENV), "{e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
        assert_eq!(
            format!("{:?}", WebhookUrl::new("https://x/SECRET")),
            "WebhookUrl([redacted])"
        );
    }

    /// Answers each connection with the next status of `statuses` and records the bodies of
    /// the 2xx answers.
    fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Value>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook/SECRET", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&got);
        std::thread::spawn(move || {
            for (status, stream) in statuses.into_iter().zip(listener.incoming()) {
                let mut stream = stream.unwrap();
                let body = read_request(&mut stream);
                if (200..300).contains(&status) {
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (url, got)
    }

    fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + 4 + len {
                    let n = stream.read(&mut chunk).unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                return buf[end + 4..end + 4 + len].to_vec();
            }
        }
    }

    fn fast() -> WebhookConfig {
        WebhookConfig {
            format: WebhookFormat::Json,
            timeout: Duration::from_millis(500),
            backoff: Duration::from_millis(10),
            max_attempts: 3,
        }
    }

    async fn settle(w: &Webhook) -> Value {
        for _ in 0..500 {
            let s = w.stats();
            if s["queued"] == 0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the queue did not drain: {}", w.stats());
    }

    #[tokio::test]
    async fn retries_5xx_and_429_gives_up_on_4xx_and_keeps_order() {
        let (url, got) = receiver(vec![503, 429, 200, 400, 500, 500, 500, 201]);
        let w = Webhook::new(&WebhookUrl::new(url), fast()).unwrap();
        assert_eq!(w.origin(), "http://127.0.0.1");
        w.spawn();
        for (i, v) in [1, 2, 3, 4].into_iter().enumerate() {
            let mut e = event("firing", "m", ">", json!(v), json!(0));
            e.rule = format!("r{i}");
            w.enqueue(e);
        }
        let s = settle(&w).await;
        // r0: 503, 429, 200. r1: 400 (refused). r2: 500 three times (given up). r3: 201.
        assert_eq!(s["delivered"], 2, "{s}");
        assert_eq!(s["failed"], 2, "{s}");
        assert_eq!(s["dropped"], 0, "{s}");
        let rules: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["rule"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(rules, ["r0", "r3"]);
        assert!(!s.to_string().contains("SECRET"));
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest() {
        // Nothing listens: the worker is never started, so everything stays queued.
        let w = Webhook::new(&WebhookUrl::new("http://127.0.0.1:9/x"), fast()).unwrap();
        for i in 0..(QUEUE + 3) {
            let mut e = event("firing", "m", ">", json!(i), json!(0));
            e.rule = format!("r{i}");
            w.enqueue(e);
        }
        let s = w.stats();
        assert_eq!(s["dropped"], 3);
        assert_eq!(s["queued"], QUEUE as u64);
        assert_eq!(w.queue.lock().unwrap().front().unwrap().rule, "r3");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let w = Webhook::new(
            &WebhookUrl::new("http://127.0.0.1:9/x"),
            WebhookConfig::default(),
        )
        .unwrap();
        let secs: Vec<u64> = (1..=8).map(|a| w.delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
