//! What a replay does: [`ReplayConfig`] as the caller (the CLI or the console) gives it, and
//! [`Plan`], the same settings with the scenario defaults resolved and checked.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ReplayError;

/// One kind of traffic. Several can be combined (`normal,drift,anomalies,feedback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Normal (label 0) rows, drawn at random.
    Normal,
    /// Rows with some features shifted by k standard deviations.
    Drift,
    /// Anomalous (label 1) rows mixed in.
    Anomalies,
    /// Some cells set to null: the service must answer 422 naming the row and feature.
    Missing,
    /// Malformed requests of several kinds: the service must answer 4xx.
    Garbage,
    /// The true labels of every scored request, sent to `/v1/feedback` after a delay.
    Feedback,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Normal,
        Scenario::Drift,
        Scenario::Anomalies,
        Scenario::Missing,
        Scenario::Garbage,
        Scenario::Feedback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Normal => "normal",
            Scenario::Drift => "drift",
            Scenario::Anomalies => "anomalies",
            Scenario::Missing => "missing",
            Scenario::Garbage => "garbage",
            Scenario::Feedback => "feedback",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s || (s == "anomaly" && *sc == Scenario::Anomalies))
            .ok_or_else(|| {
                format!(
                    "unknown scenario {s:?}; choose from {}",
                    Scenario::ALL.map(Scenario::name).join(", ")
                )
            })
    }
}

/// How rows are written in a predict body: `[v1, v2, ...]` in card order, or `{"name": v, ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowFormat {
    #[default]
    Array,
    Object,
}

impl FromStr for RowFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "array" => Ok(RowFormat::Array),
            "object" => Ok(RowFormat::Object),
            other => Err(format!(
                "unknown row format {other:?}; choose array or object"
            )),
        }
    }
}

/// Everything a replay needs. `ReplayConfig::default()` replays 5 requests/s of normal traffic from
/// the bundled model directory to `http://127.0.0.1:8080` — but has no bound yet: set `duration`
/// and/or `requests`.
#[derive(Clone)]
pub struct ReplayConfig {
    /// Base URL of the service, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` on every request.
    pub token: Option<String>,
    /// Read the card from `DIR/model_card.json` instead of `GET /v1/model`.
    pub model_dir: Option<PathBuf>,
    /// A model directory (its holdout.csv and calibration.csv) or one CSV file.
    pub data: PathBuf,
    /// Column of `data` holding the true label (1 = anomaly). A CSV without it is all normal.
    pub label_column: String,
    pub scenarios: Vec<Scenario>,
    /// Features shifted by the drift scenario; empty = the card's first three.
    pub drift_features: Vec<String>,
    /// Shift, in standard deviations (the card's `std`), added to each drifted feature.
    pub drift_k: f64,
    /// Share of rows drawn from the anomalous rows. Default: 1.0 when `anomalies` is the only
    /// source of rows, 0.2 when combined with `normal` or `drift`.
    pub anomaly_fraction: Option<f64>,
    /// Share of cells set to null in a request with missing values (at least one per such request).
    pub missing_fraction: f64,
    /// Share of requests with missing values. Default: 1.0 when `missing` is the only source of
    /// rows, 0.2 when combined with `normal`, `drift` or `anomalies`.
    pub missing_requests: Option<f64>,
    /// Share of requests that are malformed. Default: 1.0 when `garbage` is alone, 0.2 otherwise.
    pub garbage_fraction: Option<f64>,
    /// How long after a scored request its labels are sent to `/v1/feedback`.
    pub feedback_delay: Duration,
    /// Predict requests per second (open loop: the schedule does not wait for answers).
    pub rate: f64,
    /// Rows per predict request.
    pub batch: usize,
    /// Stop sending after this long. At least one of `duration` and `requests` is required.
    pub duration: Option<Duration>,
    /// Stop after this many predict requests.
    pub requests: Option<u64>,
    pub seed: u64,
    /// Most predict requests awaiting an answer at once; the schedule slips beyond it.
    pub concurrency: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of a request answered 429, each after the `retry-after` the service asked for.
    pub max_retries: u32,
    pub row_format: RowFormat,
    /// Write every predict request (body, status, source rows) to this JSON-lines file.
    pub record: Option<PathBuf>,
    /// How often `progress` is called (it is also called once at the end).
    pub progress_every: Duration,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            url: "http://127.0.0.1:8080".into(),
            token: None,
            model_dir: None,
            data: crate::bundled_model_dir(),
            label_column: "label".into(),
            scenarios: vec![Scenario::Normal],
            drift_features: Vec::new(),
            drift_k: 1.5,
            anomaly_fraction: None,
            missing_fraction: 0.05,
            missing_requests: None,
            garbage_fraction: None,
            feedback_delay: Duration::from_secs(2),
            rate: 5.0,
            batch: 8,
            duration: None,
            requests: None,
            seed: 1,
            concurrency: 16,
            timeout: Duration::from_secs(10),
            max_retries: 3,
            row_format: RowFormat::Array,
            record: None,
            progress_every: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for ReplayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("model_dir", &self.model_dir)
            .field("data", &self.data)
            .field("label_column", &self.label_column)
            .field("scenarios", &self.scenarios)
            .field("drift_features", &self.drift_features)
            .field("drift_k", &self.drift_k)
            .field("anomaly_fraction", &self.anomaly_fraction)
            .field("missing_fraction", &self.missing_fraction)
            .field("missing_requests", &self.missing_requests)
            .field("garbage_fraction", &self.garbage_fraction)
            .field("feedback_delay", &self.feedback_delay)
            .field("rate", &self.rate)
            .field("batch", &self.batch)
            .field("duration", &self.duration)
            .field("requests", &self.requests)
            .field("seed", &self.seed)
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("row_format", &self.row_format)
            .field("record", &self.record)
            .field("progress_every", &self.progress_every)
            .finish()
    }
}

/// The traffic mix with every default resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub scenarios: Vec<Scenario>,
    pub batch: usize,
    pub anomaly_fraction: f64,
    pub drift: bool,
    pub drift_k: f64,
    /// Share of cells nulled in a request with missing values, and share of such requests.
    pub missing_fraction: f64,
    pub missing_requests: f64,
    pub garbage_fraction: f64,
    pub feedback: bool,
    pub row_format: RowFormat,
}

impl ReplayConfig {
    /// Checks the settings and resolves the scenario defaults.
    pub fn plan(&self) -> Result<Plan, ReplayError> {
        let url = self.url.trim();
        if url.starts_with("https://") {
            return Err(ReplayError::config(format!(
                "{url}: https is not supported by the replay (it carries no TLS stack); use the service's http:// address on the local network"
            )));
        }
        if !url.starts_with("http://") {
            return Err(ReplayError::config(format!(
                "{url:?} is not an http:// URL; pass the service's base URL, e.g. http://127.0.0.1:8080"
            )));
        }
        if self.duration.is_none() && self.requests.is_none() {
            return Err(ReplayError::config(
                "the replay needs a bound: set a duration (e.g. --duration 60s) and/or a number of requests (--requests N)",
            ));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(ReplayError::config(
                "the duration is zero; give a positive duration, e.g. --duration 60s",
            ));
        }
        if self.requests == Some(0) {
            return Err(ReplayError::config(
                "--requests is 0; send at least one request",
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 100_000.0) {
            return Err(ReplayError::config(format!(
                "the rate {} is not a positive number of requests per second (at most 100000); e.g. --rate 5",
                self.rate
            )));
        }
        if self.batch == 0 {
            return Err(ReplayError::config(
                "--batch is 0; send at least one row per request",
            ));
        }
        if self.concurrency == 0 {
            return Err(ReplayError::config(
                "--concurrency is 0; allow at least one request in flight",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ReplayError::config(
                "the request timeout is zero; give e.g. --timeout 10s",
            ));
        }
        if self.progress_every.is_zero() {
            return Err(ReplayError::config(
                "the progress interval is zero; give e.g. 1s",
            ));
        }
        if !self.drift_k.is_finite() {
            return Err(ReplayError::config(
                "--drift-k must be a finite number of standard deviations, e.g. 1.5",
            ));
        }
        let fraction = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(ReplayError::config(format!(
                    "{name} is {v}; give a fraction between 0 and 1"
                )))
            }
        };
        let mut scenarios = self.scenarios.clone();
        scenarios.sort();
        scenarios.dedup();
        if scenarios.is_empty() {
            return Err(ReplayError::config(format!(
                "no scenario chosen; pass --scenario with one or more of {}",
                Scenario::ALL.map(Scenario::name).join(",")
            )));
        }
        let has = |s: Scenario| scenarios.contains(&s);
        let with_normal = has(Scenario::Normal) || has(Scenario::Drift);
        let rows = scenarios.iter().any(|&s| s != Scenario::Garbage);

        let anomaly_fraction = match (self.anomaly_fraction, has(Scenario::Anomalies)) {
            (Some(f), true) => fraction("--anomaly-fraction", f)?,
            (Some(_), false) => {
                return Err(ReplayError::config(
                    "--anomaly-fraction only applies to the anomalies scenario; add anomalies to --scenario",
                ))
            }
            (None, true) if with_normal => 0.2,
            (None, true) => 1.0,
            (None, false) => 0.0,
        };
        let garbage_fraction = match (self.garbage_fraction, has(Scenario::Garbage)) {
            (Some(f), true) => fraction("--garbage-fraction", f)?,
            (Some(_), false) => {
                return Err(ReplayError::config(
                    "--garbage-fraction only applies to the garbage scenario; add garbage to --scenario",
                ))
            }
            (None, true) if rows => 0.2,
            (None, true) => 1.0,
            (None, false) => 0.0,
        };
        let (missing_fraction, missing_requests) = match (self.missing_requests, has(Scenario::Missing)) {
            (Some(_), false) => {
                return Err(ReplayError::config(
                    "--missing-requests only applies to the missing scenario; add missing to --scenario",
                ))
            }
            (_, false) => (0.0, 0.0),
            (share, true) => (
                fraction("--missing-fraction", self.missing_fraction)?,
                match share {
                    Some(f) => fraction("--missing-requests", f)?,
                    None if with_normal || has(Scenario::Anomalies) => 0.2,
                    None => 1.0,
                },
            ),
        };
        Ok(Plan {
            batch: self.batch,
            anomaly_fraction,
            drift: has(Scenario::Drift),
            drift_k: self.drift_k,
            missing_fraction,
            missing_requests,
            garbage_fraction,
            feedback: has(Scenario::Feedback),
            row_format: self.row_format,
            scenarios,
        })
    }
}

/// Parses `500ms`, `2s`, `1.5s`, `3m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 2s, 1.5m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1e3,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(scenarios: &[Scenario]) -> ReplayConfig {
        ReplayConfig {
            scenarios: scenarios.to_vec(),
            requests: Some(1),
            ..ReplayConfig::default()
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn scenarios_parse_by_name() {
        assert_eq!("Drift".parse::<Scenario>().unwrap(), Scenario::Drift);
        let e = "chaos".parse::<Scenario>().unwrap_err();
        assert!(
            e.contains("normal, drift, anomalies, missing, garbage, feedback"),
            "{e}"
        );
    }

    #[test]
    fn a_replay_without_a_bound_is_refused() {
        let e = ReplayConfig::default().plan().unwrap_err().to_string();
        assert!(e.contains("--duration") && e.contains("--requests"), "{e}");
    }

    #[test]
    fn mix_defaults_depend_on_the_combination() {
        use Scenario::*;
        assert_eq!(bounded(&[Anomalies]).plan().unwrap().anomaly_fraction, 1.0);
        assert_eq!(
            bounded(&[Normal, Anomalies])
                .plan()
                .unwrap()
                .anomaly_fraction,
            0.2
        );
        assert_eq!(
            bounded(&[Drift, Anomalies])
                .plan()
                .unwrap()
                .anomaly_fraction,
            0.2
        );
        assert_eq!(bounded(&[Normal]).plan().unwrap().anomaly_fraction, 0.0);
        assert_eq!(bounded(&[Garbage]).plan().unwrap().garbage_fraction, 1.0);
        assert_eq!(
            bounded(&[Normal, Garbage]).plan().unwrap().garbage_fraction,
            0.2
        );
        assert_eq!(bounded(&[Normal]).plan().unwrap().missing_requests, 0.0);
        let p = bounded(&[Missing, Feedback]).plan().unwrap();
        assert_eq!((p.missing_fraction, p.missing_requests), (0.05, 1.0));
        let p = bounded(&[Missing, Anomalies]).plan().unwrap();
        assert_eq!((p.missing_requests, p.anomaly_fraction), (0.2, 1.0));
        assert_eq!(
            bounded(&[Normal, Missing]).plan().unwrap().missing_requests,
            0.2
        );
        let p = bounded(&[Feedback, Normal, Normal]).plan().unwrap();
        assert!(p.feedback && !p.drift);
        assert_eq!(p.scenarios, vec![Normal, Feedback]);
        let mut c = bounded(&[Normal]);
        c.anomaly_fraction = Some(0.5);
        assert!(c.plan().unwrap_err().to_string().contains("add anomalies"));
        let mut c = bounded(&[Anomalies]);
        c.anomaly_fraction = Some(1.5);
        assert!(c.plan().is_err());
    }

    #[test]
    fn urls_must_be_plain_http() {
        let mut c = bounded(&[Scenario::Normal]);
        c.url = "https://example.com".into();
        assert!(c
            .plan()
            .unwrap_err()
            .to_string()
            .contains("https is not supported"));
        c.url = "127.0.0.1:8080".into();
        assert!(c
            .plan()
            .unwrap_err()
            .to_string()
            .contains("not an http:// URL"));
    }

    #[test]
    fn the_token_does_not_show_in_debug_output() {
        let c = ReplayConfig {
            token: Some("s3cret".into()),
            ..ReplayConfig::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
