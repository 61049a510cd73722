//! Optional publisher of the key monitoring series to Amazon CloudWatch (`PutMetricData`).
//!
//! Off unless `--cloudwatch-namespace` (`INFERENCE_CLOUDWATCH_NAMESPACE`) is set. Then a task of its
//! own wakes [`SETTLE_SECS`] after every minute boundary, reads the completed minute buckets it has
//! not published yet (only through [`Monitor::buckets`], a short lock and a copy: request handling
//! never waits on it) and sends one datum per metric and minute, timestamped with the bucket's
//! minute. It starts from the minute the process started in, so history loaded from the state
//! directory is not published again. A minute that cannot be sent after [`Backoff::max_attempts`]
//! attempts is dropped with a warning and never retried, so a CloudWatch outage costs those minutes
//! and nothing else.
//!
//! Every datum carries two dimensions: `Service` (`--cloudwatch-service`, default the model card's
//! name) and `ModelVersion` (the card's version). The metrics, derived with the same functions as
//! `GET /v1/monitoring/summary` for a one-minute window (see [`minute_metrics`]):
//!
//! | metric                  | unit         | what                                                        |
//! |-------------------------|--------------|-------------------------------------------------------------|
//! | `RequestCount`          | Count        | responses on every route                                    |
//! | `ErrorRate`             | Percent      | 4xx + 5xx responses per response, 0–100 (summary `error_rate` × 100) |
//! | `ServerErrorCount`      | Count        | 5xx responses                                               |
//! | `OverloadedCount`       | Count        | 429 responses (too many requests in flight)                 |
//! | `LatencyP50/P95/P99`    | Seconds      | `/v1/predict` latency quantiles                             |
//! | `RowsScored`            | Count        | rows scored                                                 |
//! | `RejectedRequests`      | Count        | predict requests refused for their content                  |
//! | `MissingValues`         | Count        | missing values, summed over the features                    |
//! | `InvalidValues`         | Count        | invalid values, summed over the features                    |
//! | `AnomalyRate`           | Percent      | rows above the card's threshold per row scored, 0–100       |
//! | `ReconstructionErrorP95`| None         | 95th percentile of the reconstruction error                 |
//! | `DriftedFeatures`       | Count        | features whose drift verdict is `drift`                     |
//! | `ProcessCpuPercent`     | Percent      | this process, 100 = one core (last sample of the minute)    |
//! | `ProcessRssBytes`       | Bytes        | this process's resident memory                              |
//! | `HostMemoryUsedBytes`   | Bytes        | the host's memory in use                                    |
//! | `StateDiskUsedBytes`    | Bytes        | used space on the filesystem of the state directory         |
//! | `HostMemoryUsedPercent` | Percent      | the host's memory in use per memory installed, 0–100        |
//! | `StateDiskUsedPercent`  | Percent      | used space per size of the state directory's filesystem     |
//!
//! A value that does not exist for a minute is not sent: rates without a denominator, quantiles
//! without observations, `DriftedFeatures` when no feature had enough rows to be judged, the
//! system metrics when no sample was taken; NaN and infinities are never sent. Counts are sent as 0
//! when nothing happened, so alarms see a quiet minute as 0 rather than as missing data.
//!
//! Credentials come from the standard AWS chain (environment, shared profile, SSO, web identity,
//! ECS, IMDS on EC2) and are never logged. Errors are logged with `tracing` as one sentence with
//! the HTTP status, CloudWatch's error code and message, or the chain of causes of a transport
//! error (what `DisplayErrorContext` shows, without its dump of the raw response).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::config::http::HttpResponse;
use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_cloudwatch::Client;
use clap::Args;

use super::bucket::Bucket;
use super::drift::{self, Verdict};
use super::{bins, summary, Monitor, RETENTION_MINUTES};

/// CloudWatch publishing; flattened into `ServeArgs`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "CloudWatch publishing")]
pub struct CloudWatchArgs {
    /// CloudWatch namespace to publish the key monitoring series to every minute; setting it
    /// turns publishing on (credentials come from the standard AWS chain).
    #[arg(long = "cloudwatch-namespace", env = "INFERENCE_CLOUDWATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Value of the `Service` dimension (default: the model card's name).
    #[arg(long = "cloudwatch-service", env = "INFERENCE_CLOUDWATCH_SERVICE")]
    pub service: Option<String>,
    /// AWS region to publish in (default: the SDK's chain, e.g. AWS_REGION or the profile).
    #[arg(long = "cloudwatch-region", env = "INFERENCE_CLOUDWATCH_REGION")]
    pub region: Option<String>,
    /// CloudWatch endpoint URL, for VPC endpoints or a local stand-in (default: the region's).
    #[arg(long = "cloudwatch-endpoint", env = "INFERENCE_CLOUDWATCH_ENDPOINT")]
    pub endpoint: Option<String>,
}

impl CloudWatchArgs {
    /// The namespace when publishing is on (an empty value means off).
    pub fn enabled_namespace(&self) -> Option<&str> {
        non_empty(&self.namespace)
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// PutMetricData accepts at most 1000 `MetricDatum` per call (across MetricData and
/// EntityMetricData) and a 1 MB request body; calls are cut at 1000 datums and at
/// [`MAX_PAYLOAD_BYTES`] of estimated (uncompressed) body.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// Datums' share of a call's body: 1 MB (read as 1,000,000 bytes) less 10 kB for the envelope
/// (`Action`, `Version`, a namespace of at most 255 characters). [`estimated_bytes`] is an upper
/// bound, so a call never exceeds the limit even before the SDK gzips it.
pub const MAX_PAYLOAD_BYTES: usize = 990_000;
/// Seconds after a minute ends before it counts as complete (lets the recorder drain events stamped
/// in that minute).
pub const SETTLE_SECS: i64 = 10;
/// CloudWatch rejects values beyond ±2^360.
const MAX_ABS_VALUE: f64 = 2.348_542_582_773_833e108;

/// Retries of one PutMetricData call: exponential backoff with "equal jitter".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Step before the first retry.
    pub base: Duration,
    /// Largest step.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 4 attempts, waiting 0.5–1 s, 1–2 s and 2–4 s between them (at most 7 s of waiting, so a
    /// failing minute is given up well before the next one is due).
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(16),
        }
    }
}

impl Backoff {
    /// The wait before retry number `retry` (1 after the first failure): with
    /// `step = min(cap, base · 2^(retry-1))`, `step/2 + jitter · step/2` for `jitter` in [0, 1).
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let step = self.base.saturating_mul(1 << exp).min(self.cap);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A uniform number in [0, 1) from the standard library's randomly keyed hasher.
fn jitter() -> f64 {
    let h = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a failed response is worth retrying: 5xx, 429 and throttling codes.
pub fn retryable_response(status: u16, code: Option<&str>) -> bool {
    status >= 500
        || status == 429
        || matches!(
            code,
            Some(
                "Throttling"
                    | "ThrottlingException"
                    | "ThrottledException"
                    | "RequestThrottled"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
                    | "ServiceUnavailable"
                    | "InternalFailure"
            )
        )
}

/// Throttling, 5xx, timeouts and transport errors are retried; a request CloudWatch refuses for
/// its content (4xx) or that cannot be built is not.
fn retryable<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(f) => !f.is_user(),
        SdkError::ResponseError(r) => r.raw().status().as_u16() >= 500,
        SdkError::ServiceError(s) => retryable_response(s.raw().status().as_u16(), s.err().code()),
        _ => false,
    }
}

/// One readable sentence for a failed call: the HTTP status, error code and message CloudWatch
/// answered with, or the chain of causes of a transport failure (never the request, so never a
/// signature or a key).
fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(s) = e {
        let status = s.raw().status().as_u16();
        let code = s.err().code().unwrap_or("no error code");
        let message = s.err().message().unwrap_or("no message");
        return format!("CloudWatch answered HTTP {status} {code}: {message}");
    }
    crate::error::chain(e)
}

/// Minutes as UTC times, for logs.
fn minute_times(minutes: &[i64]) -> Vec<String> {
    minutes
        .iter()
        .map(|m| {
            DateTime::from_secs(m * 60)
                .fmt(aws_sdk_cloudwatch::primitives::DateTimeFormat::DateTime)
                .unwrap_or_else(|_| m.to_string())
        })
        .collect()
}

/// Splits `groups` (the datums of one minute each, in order) into calls of at most `max_items`
/// items and `max_bytes` estimated bytes. A minute stays within one call whenever it fits in one,
/// so a failed call drops whole minutes; a minute larger than a call alone is split.
pub fn batches<T>(
    groups: Vec<Vec<T>>,
    bytes: impl Fn(&T) -> usize,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut current_bytes = 0;
    for group in groups {
        let group_bytes: usize = group.iter().map(&bytes).sum();
        if !current.is_empty()
            && (current.len() + group.len() > max_items || current_bytes + group_bytes > max_bytes)
        {
            out.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        for item in group {
            let b = bytes(&item);
            if !current.is_empty()
                && (current.len() + 1 > max_items || current_bytes + b > max_bytes)
            {
                out.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current_bytes += b;
            current.push(item);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// An upper bound of one datum's size in a query-protocol body: each field's key at its longest
/// (`&MetricData.member.1000.Dimensions.member.30.Value=`, 51 bytes; 52 counted), strings as if every byte
/// were percent-encoded (3 bytes), a value of at most 24 characters, a unit of at most 16 and a
/// timestamp of at most 30.
pub fn estimated_bytes(d: &MetricDatum) -> usize {
    const KEY: usize = 52;
    let strings = d.metric_name().map_or(0, str::len)
        + d.dimensions()
            .iter()
            .map(|x| x.name().map_or(0, str::len) + x.value().map_or(0, str::len))
            .sum::<usize>();
    // MetricName, Value, Unit, Timestamp, and a name and a value per dimension.
    KEY * (4 + 2 * d.dimensions().len()) + 3 * strings + 24 + 3 * 16 + 30
}

/// A value CloudWatch accepts, or `None`.
pub fn publishable(v: f64) -> Option<f64> {
    (v.is_finite() && v.abs() <= MAX_ABS_VALUE).then_some(v)
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

/// The metrics of one minute's bucket: name, unit and value, values that do not exist left out.
pub fn minute_metrics(monitor: &Monitor, b: &Bucket) -> Vec<(&'static str, StandardUnit, f64)> {
    let layout = &monitor.layout;
    let mut status = [0u64; 5];
    for r in b.routes.values() {
        for (a, s) in status.iter_mut().zip(r.status) {
            *a += s;
        }
    }
    let requests: u64 = status.iter().sum();
    let predict = b
        .routes
        .get(summary::PREDICT_ROUTE)
        .cloned()
        .unwrap_or_default();
    let latency = summary::latency_quantiles(&layout.latency_bins, &predict);
    let score_counts: Vec<f64> = b.scores.iter().map(|&c| c as f64).collect();
    let view = monitor.view();
    let verdicts: Vec<Verdict> = (0..layout.feature_names.len().min(b.features.len()))
        .map(|j| drift::verdict(&summary::feature_drift(&view, j, b)))
        .collect();
    let drifted = (drift::overall(&verdicts) != Verdict::InsufficientData)
        .then(|| verdicts.iter().filter(|v| **v == Verdict::Drift).count() as f64);
    let system = b.system.as_ref();

    let count = |n: u64| Some(n as f64);
    let metrics: [(&'static str, StandardUnit, Option<f64>); 20] = [
        ("RequestCount", StandardUnit::Count, count(requests)),
        (
            "ErrorRate",
            StandardUnit::Percent,
            percent(status[3] + status[4], requests),
        ),
        ("ServerErrorCount", StandardUnit::Count, count(status[4])),
        ("OverloadedCount", StandardUnit::Count, count(b.overloaded)),
        ("LatencyP50", StandardUnit::Seconds, latency["p50"].as_f64()),
        ("LatencyP95", StandardUnit::Seconds, latency["p95"].as_f64()),
        ("LatencyP99", StandardUnit::Seconds, latency["p99"].as_f64()),
        ("RowsScored", StandardUnit::Count, count(b.rows)),
        (
            "RejectedRequests",
            StandardUnit::Count,
            count(b.rejected_requests),
        ),
        (
            "MissingValues",
            StandardUnit::Count,
            count(b.features.iter().map(|f| f.missing).sum()),
        ),
        (
            "InvalidValues",
            StandardUnit::Count,
            count(b.features.iter().map(|f| f.invalid).sum()),
        ),
        (
            "AnomalyRate",
            StandardUnit::Percent,
            percent(b.anomalies, b.rows),
        ),
        (
            "ReconstructionErrorP95",
            StandardUnit::None,
            bins::quantile(&layout.score_bins, &score_counts, 0.95),
        ),
        ("DriftedFeatures", StandardUnit::Count, drifted),
        (
            "ProcessCpuPercent",
            StandardUnit::Percent,
            system.map(|s| s.process_cpu_percent),
        ),
        (
            "ProcessRssBytes",
            StandardUnit::Bytes,
            system.map(|s| s.process_rss_bytes as f64),
        ),
        (
            "HostMemoryUsedBytes",
            StandardUnit::Bytes,
            system.map(|s| s.memory_used_bytes as f64),
        ),
        (
            "StateDiskUsedBytes",
            StandardUnit::Bytes,
            system.map(|s| s.disk_used_bytes as f64),
        ),
        // As percentages too, for the host-memory and host-disk alarms (EC2 publishes neither).
        (
            "HostMemoryUsedPercent",
            StandardUnit::Percent,
            system.and_then(|s| percent(s.memory_used_bytes, s.memory_total_bytes)),
        ),
        (
            "StateDiskUsedPercent",
            StandardUnit::Percent,
            system.and_then(|s| percent(s.disk_used_bytes, s.disk_total_bytes)),
        ),
    ];
    metrics
        .into_iter()
        .filter_map(|(name, unit, v)| v.and_then(publishable).map(|v| (name, unit, v)))
        .collect()
}

/// What one [`Publisher::publish_once`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Completed minutes with data that were sent (or attempted), oldest first.
    pub minutes: Vec<i64>,
    /// Datums CloudWatch accepted.
    pub datums_sent: usize,
    /// PutMetricData calls made (successful or not), retries not counted.
    pub calls: usize,
    /// HTTP attempts, retries included.
    pub attempts: usize,
    /// Minutes given up after failures (logged as a warning; never retried).
    pub dropped_minutes: Vec<i64>,
}

pub struct Publisher {
    client: Client,
    monitor: Arc<Monitor>,
    namespace: String,
    dimensions: Vec<Dimension>,
    backoff: Backoff,
    /// The first minute not yet published (or dropped); the lock also keeps two publishes apart.
    next_minute: tokio::sync::Mutex<i64>,
}

/// A CloudWatch client from the standard AWS configuration chain, with `args`' region and endpoint
/// when set. `credentials` replaces the credential chain (tests); the SDK's own retries are off
/// because [`Backoff`] does them.
pub async fn client(
    args: &CloudWatchArgs,
    credentials: Option<Credentials>,
) -> anyhow::Result<Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = non_empty(&args.region) {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(c) = credentials {
        loader = loader.credentials_provider(c);
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        anyhow::bail!(
            "CloudWatch publishing needs an AWS region: set --cloudwatch-region \
             (INFERENCE_CLOUDWATCH_REGION) or AWS_REGION"
        );
    }
    let mut conf = aws_sdk_cloudwatch::config::Builder::from(&shared)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(15))
                .build(),
        );
    if let Some(endpoint) = non_empty(&args.endpoint) {
        conf = conf.endpoint_url(endpoint);
    }
    Ok(Client::from_conf(conf.build()))
}

/// Checks what CloudWatch would refuse for every call, so it fails at start-up instead.
fn validate(namespace: &str, dimensions: &[(&str, &str)]) -> anyhow::Result<()> {
    let printable = |s: &str| s.bytes().all(|b| b.is_ascii() && !b.is_ascii_control());
    if namespace.len() > 255 || !printable(namespace) || namespace.starts_with("AWS/") {
        anyhow::bail!(
            "CloudWatch namespace {namespace:?} is not allowed: use at most 255 printable ASCII \
             characters, not starting with \"AWS/\""
        );
    }
    for (name, value) in dimensions {
        if value.trim().is_empty() || value.len() > 1024 || !printable(value) {
            anyhow::bail!(
                "CloudWatch dimension {name}={value:?} is not allowed: use 1 to 1024 printable \
                 ASCII characters (set --cloudwatch-service for Service)"
            );
        }
    }
    Ok(())
}

impl Publisher {
    /// A publisher whose first minute is `first_minute` (a service starts at its current minute).
    /// `service` defaults to the model card's name.
    pub fn new(
        client: Client,
        monitor: Arc<Monitor>,
        namespace: &str,
        service: Option<&str>,
        first_minute: i64,
    ) -> anyhow::Result<Self> {
        let service = service.unwrap_or(&monitor.card.name).to_string();
        let version = monitor.card.version.clone();
        validate(
            namespace,
            &[("Service", &service), ("ModelVersion", &version)],
        )?;
        let dimensions = vec![
            Dimension::builder().name("Service").value(service).build(),
            Dimension::builder()
                .name("ModelVersion")
                .value(version)
                .build(),
        ];
        Ok(Self {
            client,
            monitor,
            namespace: namespace.to_string(),
            dimensions,
            backoff: Backoff::default(),
            next_minute: tokio::sync::Mutex::new(first_minute),
        })
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The datums of one minute.
    pub fn datums(&self, bucket: &Bucket) -> Vec<MetricDatum> {
        let at = DateTime::from_secs(bucket.minute * 60);
        minute_metrics(&self.monitor, bucket)
            .into_iter()
            .map(|(name, unit, value)| {
                MetricDatum::builder()
                    .metric_name(name)
                    .unit(unit)
                    .value(value)
                    .timestamp(at)
                    .set_dimensions(Some(self.dimensions.clone()))
                    .build()
            })
            .collect()
    }

    /// Publishes every minute that ended at least [`SETTLE_SECS`] before `now` (Unix seconds) and
    /// has not been published yet. Failures are logged and the minutes dropped; nothing is returned
    /// as an error because there is nobody to hand it to.
    pub async fn publish_once(&self, now: i64) -> Outcome {
        let mut next = self.next_minute.lock().await;
        let last_complete = (now - SETTLE_SECS).div_euclid(60) - 1;
        let mut outcome = Outcome::default();
        if last_complete < *next {
            return outcome;
        }
        let from = (*next).max(last_complete - RETENTION_MINUTES);
        let buckets = self.monitor.buckets(from, last_complete);
        // Whatever happens below, these minutes are done: sent, or dropped with a warning.
        *next = last_complete + 1;
        let groups: Vec<(i64, Vec<MetricDatum>)> = buckets
            .iter()
            .map(|b| (b.minute, self.datums(b)))
            .filter(|(_, d)| !d.is_empty())
            .collect();
        outcome.minutes = groups.iter().map(|(m, _)| *m).collect();
        let calls = batches(
            groups.into_iter().map(|(_, d)| d).collect(),
            estimated_bytes,
            MAX_DATUMS_PER_CALL,
            MAX_PAYLOAD_BYTES,
        );
        for batch in calls {
            outcome.calls += 1;
            let n = batch.len();
            let mut minutes: Vec<i64> = batch
                .iter()
                .filter_map(|d| d.timestamp().map(|t| t.secs() / 60))
                .collect();
            minutes.dedup();
            match self.send(batch, &mut outcome.attempts).await {
                Ok(()) => outcome.datums_sent += n,
                Err(e) => {
                    tracing::warn!(
                        namespace = %self.namespace,
                        minutes = ?minute_times(&minutes),
                        datums = n,
                        "could not publish monitoring metrics to CloudWatch ({e}); these minutes are dropped"
                    );
                    outcome.dropped_minutes.extend(minutes);
                }
            }
        }
        outcome.dropped_minutes.dedup();
        if outcome.datums_sent > 0 {
            tracing::debug!(
                minutes = outcome.minutes.len(),
                datums = outcome.datums_sent,
                calls = outcome.calls,
                "published monitoring metrics to CloudWatch"
            );
        }
        outcome
    }

    /// One PutMetricData call with retries; the error is a readable sentence.
    async fn send(&self, batch: Vec<MetricDatum>, attempts: &mut usize) -> Result<(), String> {
        let max = self.backoff.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            *attempts += 1;
            let result = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(batch.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            let again = retryable(&err);
            let text = describe(&err);
            if !again || attempt >= max {
                return Err(format!(
                    "PutMetricData failed after {attempt} attempt(s){}: {text}",
                    if again { "" } else { " (not retryable)" }
                ));
            }
            let wait = self.backoff.delay(attempt, jitter());
            tracing::info!(
                attempt,
                max_attempts = max,
                retry_in_ms = wait.as_millis() as u64,
                error = %text,
                "CloudWatch PutMetricData failed; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Publishes [`SETTLE_SECS`] after every minute boundary until the runtime stops.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(until_next_run(epoch_millis())).await;
                self.publish_once(super::now_secs()).await;
            }
        })
    }
}

fn epoch_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Time from `now_ms` (Unix milliseconds) to the next instant [`SETTLE_SECS`] past a minute.
fn until_next_run(now_ms: i64) -> Duration {
    let offset = SETTLE_SECS * 1000;
    let next = ((now_ms - offset).div_euclid(60_000) + 1) * 60_000 + offset;
    Duration::from_millis((next - now_ms) as u64)
}

/// Starts the publisher when a namespace is configured (from `build_state`): checks the
/// configuration and resolves the region now, so mistakes stop the start-up; credentials are
/// resolved on the first publish.
pub async fn start(
    args: &CloudWatchArgs,
    monitor: &Arc<Monitor>,
) -> anyhow::Result<Option<Arc<Publisher>>> {
    let Some(namespace) = args.enabled_namespace() else {
        return Ok(None);
    };
    let client = client(args, None).await?;
    let region = client
        .config()
        .region()
        .map(ToString::to_string)
        .unwrap_or_default();
    let publisher = Publisher::new(
        client,
        Arc::clone(monitor),
        namespace,
        non_empty(&args.service),
        super::now_secs() / 60,
    )?;
    tracing::info!(
        namespace,
        region,
        endpoint = non_empty(&args.endpoint).unwrap_or("default"),
        dimensions = ?publisher.dimensions.iter().map(|d| format!("{}={}", d.name().unwrap_or(""), d.value().unwrap_or(""))).collect::<Vec<_>>(),
        "publishing monitoring metrics to CloudWatch every minute"
    );
    let publisher = Arc::new(publisher);
    Arc::clone(&publisher).spawn();
    Ok(Some(publisher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter_and_a_cap() {
        let b = Backoff::default();
        assert_eq!(b.max_attempts, 4);
        for (retry, step) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (9, 16.0)] {
            let lo = b.delay(retry, 0.0).as_secs_f64();
            let hi = b.delay(retry, 0.999_999).as_secs_f64();
            assert!((lo - step / 2.0).abs() < 1e-9, "retry {retry}: {lo}");
            assert!(hi < step + 1e-9 && hi > step * 0.99, "retry {retry}: {hi}");
        }
        // Out-of-range jitter is clamped; huge retry numbers do not overflow.
        assert_eq!(b.delay(2, 7.0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(8));
        // The default gives up within 7 s of waiting in total.
        let total: f64 = (1..b.max_attempts)
            .map(|r| b.delay(r, 1.0).as_secs_f64())
            .sum();
        assert!(total <= 7.0, "{total}");
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn retries_only_throttling_and_server_errors() {
        assert!(retryable_response(500, Some("InternalFailure")));
        assert!(retryable_response(503, None));
        assert!(retryable_response(429, None));
        assert!(retryable_response(400, Some("Throttling")));
        assert!(!retryable_response(400, Some("InvalidParameterValue")));
        assert!(!retryable_response(403, Some("AccessDenied")));
        assert!(!retryable_response(404, None));
    }

    #[test]
    fn batches_split_beyond_a_thousand_datums() {
        let groups: Vec<Vec<u32>> = (0..2500).map(|i| vec![i]).collect();
        let b = batches(groups, |_| 1, MAX_DATUMS_PER_CALL, MAX_PAYLOAD_BYTES);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert_eq!(b.concat(), (0..2500).collect::<Vec<_>>());
    }

    #[test]
    fn batches_keep_a_minute_together_and_respect_the_byte_budget() {
        // 150 minutes of 17 datums: 58 whole minutes (986 datums) per call.
        let groups: Vec<Vec<(u32, u32)>> = (0..150)
            .map(|m| (0..17).map(|k| (m, k)).collect())
            .collect();
        let b = batches(groups, |_| 100, MAX_DATUMS_PER_CALL, MAX_PAYLOAD_BYTES);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [986, 986, 578]);
        for call in &b {
            let first = call.first().unwrap().0;
            let last = call.last().unwrap().0;
            assert_eq!(
                call.len() as u32,
                (last - first + 1) * 17,
                "a minute was split"
            );
        }
        // Bytes: 10 items of 300 in a budget of 1000 → 3 per call.
        let b = batches(vec![vec![0u8; 10]], |_| 300, 1000, 1000);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        // A group larger than a whole call is split; nothing is empty or lost.
        let b = batches(vec![vec![1u8; 5], vec![2u8; 2500]], |_| 1, 1000, 1 << 20);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            [5, 1000, 1000, 500]
        );
        assert!(batches(Vec::<Vec<u8>>::new(), |_| 1, 1000, 1000).is_empty());
    }

    #[test]
    fn a_full_call_of_real_datums_fits_the_byte_budget() {
        let d = MetricDatum::builder()
            .metric_name("ReconstructionErrorP95")
            .unit(StandardUnit::None)
            .value(1.0)
            .timestamp(DateTime::from_secs(0))
            .dimensions(
                Dimension::builder()
                    .name("Service")
                    .value("x".repeat(64))
                    .build(),
            )
            .dimensions(
                Dimension::builder()
                    .name("ModelVersion")
                    .value("1.0.0")
                    .build(),
            )
            .build();
        let per = estimated_bytes(&d);
        // A full call of these (a 64-character service name) still fits.
        assert!(per * MAX_DATUMS_PER_CALL <= MAX_PAYLOAD_BYTES, "{per}");
        // At least the real encoding: 8 keys like `&MetricData.member.1000.Dimensions.member.2.Value=`
        // (49 bytes at most, 30 at least) and the strings once.
        assert!(per > 8 * 49 + 22 + 7 + 64 + 12 + 5, "{per}");
        // Long dimension values make the byte budget, not the count, cut the calls.
        let long = MetricDatum::builder()
            .metric_name("LatencyP99")
            .dimensions(
                Dimension::builder()
                    .name("Service")
                    .value("s".repeat(1024))
                    .build(),
            )
            .build();
        let calls = batches(
            vec![vec![long; 1000]],
            estimated_bytes,
            MAX_DATUMS_PER_CALL,
            MAX_PAYLOAD_BYTES,
        );
        assert!(calls.len() > 1);
        assert!(calls
            .iter()
            .all(|c| c.iter().map(estimated_bytes).sum::<usize>() <= MAX_PAYLOAD_BYTES));
    }

    #[test]
    fn only_values_cloudwatch_accepts_are_sent() {
        assert_eq!(publishable(0.0), Some(0.0));
        assert_eq!(publishable(12.5), Some(12.5));
        assert_eq!(publishable(f64::NAN), None);
        assert_eq!(publishable(f64::INFINITY), None);
        assert_eq!(publishable(1e200), None);
        assert_eq!(percent(1, 4), Some(25.0));
        assert_eq!(percent(0, 0), None);
    }

    #[test]
    fn runs_settle_seconds_after_each_minute() {
        let m = 29_000_000 * 60_000;
        assert_eq!(until_next_run(m), Duration::from_secs(10));
        assert_eq!(until_next_run(m + 9_000), Duration::from_secs(1));
        assert_eq!(until_next_run(m + 10_000), Duration::from_secs(60));
        assert_eq!(until_next_run(m + 59_500), Duration::from_millis(10_500));
    }

    #[test]
    fn configuration_cloudwatch_refuses_is_refused_at_start() {
        assert!(validate(
            "MLOps/Inference",
            &[("Service", "wbc"), ("ModelVersion", "1")]
        )
        .is_ok());
        assert!(validate("AWS/EC2", &[]).is_err());
        assert!(validate("ns", &[("Service", " ")]).is_err());
        assert!(validate("ns", &[("Service", "naïve")]).is_err());
        let args = CloudWatchArgs {
            namespace: Some("  ".into()),
            ..CloudWatchArgs::default()
        };
        assert_eq!(args.enabled_namespace(), None);
    }
}
