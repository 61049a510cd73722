//! What a replay reports: [`Progress`] while it runs, [`Summary`] at the end. Both serialize to JSON
//! (the console forwards them to its UI as they are).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::Plan;
use crate::traffic::DriftShift;

/// Running totals. Predict requests are counted once, with their final answer (a request answered
/// 429 and retried counts once; its 429s are in `throttled`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Predict requests answered (or failed) so far.
    pub requests_sent: u64,
    /// HTTP attempts, retries included.
    pub attempts: u64,
    /// Rows in well-formed predict requests (garbage requests carry no counted rows).
    pub rows_sent: u64,
    /// Requests answered 200.
    pub accepted: u64,
    pub rows_scored: u64,
    /// Rows with a null refused one by one (a 200 with an error per row, per-row policy).
    #[serde(default)]
    pub rows_refused: u64,
    /// Rows the service flagged `is_anomaly`.
    pub anomalies_flagged: u64,
    /// Final 4xx answers (429s that were retried are not in here).
    pub rejected: u64,
    /// Rejections the scenario asked for (nulls → 422 naming the cell, garbage → any 4xx).
    pub expected_rejections: u64,
    /// Every final status other than 200, with its count (e.g. {"422": 12, "415": 2}).
    pub rejected_by_status: BTreeMap<u16, u64>,
    /// 429 answers (each was retried after its retry-after, up to the retry limit).
    pub throttled: u64,
    /// Requests still answered 429 after the last retry, or whose retry fell after the end.
    pub gave_up: u64,
    /// 5xx answers other than 429.
    pub server_errors: u64,
    /// No HTTP answer: refused, reset, timed out.
    pub connection_errors: u64,
    /// Answers that contradict the scenario: 200 for garbage or nulls, 4xx for valid rows, a 422
    /// that names a cell that was not null, a 200 with the wrong number of results.
    pub unexpected: u64,
    /// Feedback requests sent and the labels in them.
    pub feedback_requests: u64,
    pub feedback_sent: u64,
    /// Labels the service reported as accepted (`{"accepted": n}`).
    pub feedback_accepted: u64,
    /// Feedback requests not answered 200, by status (0 = no HTTP answer).
    pub feedback_failed_by_status: BTreeMap<u16, u64>,
    /// Median and 99th percentile of the 200 predict answers' latency, in ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub elapsed_secs: f64,
}

impl Counts {
    /// Failures: server errors, connection errors, unexpected answers, failed feedback.
    pub fn failures(&self) -> u64 {
        self.server_errors
            + self.connection_errors
            + self.unexpected
            + self.feedback_failed_by_status.values().sum::<u64>()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(flatten)]
    pub counts: Counts,
    /// Predict requests awaiting an answer.
    pub in_flight: usize,
    /// Labels waiting for their feedback delay.
    pub feedback_pending: usize,
    /// The run's bounds, for a progress bar.
    pub target_requests: Option<u64>,
    pub target_secs: Option<f64>,
    /// The last report: the run is over and its [`Summary`] follows.
    pub done: bool,
}

/// Flag rates by true label: how the model did on what was sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ByLabel {
    pub normal_scored: u64,
    pub normal_flagged: u64,
    pub anomalous_scored: u64,
    pub anomalous_flagged: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub counts: Counts,
    pub by_label: ByLabel,
    pub url: String,
    pub model_name: Option<String>,
    pub model_version: Option<String>,
    pub plan: Plan,
    pub drift: Vec<DriftShift>,
    pub seed: u64,
    pub target_rate: f64,
    /// Predict requests per second actually achieved.
    pub achieved_rate: f64,
    /// Stopped by the cancellation token (Ctrl-C) rather than by its bounds.
    pub cancelled: bool,
    /// Requests abandoned in flight by a cancellation.
    pub cancelled_in_flight: u64,
    /// Labels whose feedback was still waiting when the run was cancelled.
    pub feedback_dropped: u64,
    /// The first few failures and unexpected answers, as sentences.
    pub problems: Vec<String>,
    /// Things worth knowing that are not failures (e.g. the service has no /v1/feedback).
    pub warnings: Vec<String>,
}

impl Summary {
    /// True when nothing failed: no 5xx, no connection errors, no unexpected answers, no failed
    /// feedback. (Throttling is reported but is not a failure: the service said so politely.)
    pub fn is_success(&self) -> bool {
        self.counts.failures() == 0
    }

    /// A plain-text table, for the terminal.
    pub fn to_table(&self) -> String {
        let c = &self.counts;
        let mut t = String::new();
        let model = match (&self.model_name, &self.model_version) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.clone(),
            _ => "(unnamed model)".into(),
        };
        let scenarios: Vec<&str> = self.plan.scenarios.iter().map(|s| s.name()).collect();
        let _ = writeln!(
            t,
            "replay of {} against {} ({model}), seed {}",
            scenarios.join(","),
            self.url,
            self.seed
        );
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<22} {v}");
        };
        row(
            "elapsed",
            format!(
                "{:.1} s, {:.2} requests/s (target {})",
                c.elapsed_secs, self.achieved_rate, self.target_rate
            ),
        );
        row(
            "requests sent",
            format!(
                "{} ({} rows, {} attempts)",
                c.requests_sent, c.rows_sent, c.attempts
            ),
        );
        row(
            "accepted (200)",
            if c.rows_refused > 0 {
                format!(
                    "{} ({} rows scored, {} refused one by one)",
                    c.accepted, c.rows_scored, c.rows_refused
                )
            } else {
                format!("{} ({} rows scored)", c.accepted, c.rows_scored)
            },
        );
        let by_status = if c.rejected_by_status.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = c
                .rejected_by_status
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            format!("; by status {}", parts.join(", "))
        };
        row(
            "rejected (4xx)",
            format!(
                "{} ({} expected){by_status}",
                c.rejected, c.expected_rejections
            ),
        );
        row(
            "throttled (429)",
            format!("{} (gave up on {})", c.throttled, c.gave_up),
        );
        row("server errors (5xx)", c.server_errors.to_string());
        row("connection errors", c.connection_errors.to_string());
        row("unexpected answers", c.unexpected.to_string());
        let b = &self.by_label;
        row(
            "anomalies flagged",
            format!(
                "{} of {} rows (normal rows {}/{}, anomalous rows {}/{})",
                c.anomalies_flagged,
                c.rows_scored,
                b.normal_flagged,
                b.normal_scored,
                b.anomalous_flagged,
                b.anomalous_scored
            ),
        );
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
        row(
            "latency p50 / p99",
            format!("{} / {}", ms(c.latency_p50_ms), ms(c.latency_p99_ms)),
        );
        if !self.drift.is_empty() {
            let parts: Vec<String> = self
                .drift
                .iter()
                .map(|d| {
                    format!(
                        "{} {:+.4} ({:+} std)",
                        d.feature, d.shift, self.plan.drift_k
                    )
                })
                .collect();
            row("drift", parts.join(", "));
        }
        if self.plan.feedback {
            let failed: u64 = c.feedback_failed_by_status.values().sum();
            row(
                "feedback",
                format!(
                    "{} requests, {} labels sent, {} accepted, {failed} failed{}",
                    c.feedback_requests,
                    c.feedback_sent,
                    c.feedback_accepted,
                    if self.feedback_dropped > 0 {
                        format!(", {} dropped", self.feedback_dropped)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        let verdict = if self.cancelled {
            format!(
                "cancelled ({} requests abandoned in flight)",
                self.cancelled_in_flight
            )
        } else if self.is_success() {
            "OK: every answer was what the scenario expects".to_string()
        } else {
            format!("FAILED: {} failures", c.failures())
        };
        row("result", verdict);
        for p in &self.problems {
            let _ = writeln!(t, "  problem: {p}");
        }
        for w in &self.warnings {
            let _ = writeln!(t, "  note: {w}");
        }
        t
    }
}

impl Progress {
    /// One line, for the terminal.
    pub fn to_line(&self) -> String {
        let c = &self.counts;
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let mut line = format!(
            "[{:>6.1}s] {} requests ({} rows): {} ok, {} rejected ({} expected), {} throttled, {} failures, {} flagged, p50/p99 {}/{} ms",
            c.elapsed_secs,
            c.requests_sent,
            c.rows_sent,
            c.accepted,
            c.rejected,
            c.expected_rejections,
            c.throttled,
            c.failures(),
            c.anomalies_flagged,
            ms(c.latency_p50_ms),
            ms(c.latency_p99_ms),
        );
        if c.feedback_requests > 0 || self.feedback_pending > 0 {
            let _ = write!(
                line,
                ", feedback {}/{} accepted",
                c.feedback_accepted, c.feedback_sent
            );
        }
        line
    }
}

/// Nearest-rank percentile (q in 0..=1) of samples sorted ascending, in seconds; the result in ms.
pub(crate) fn percentile_ms(sorted_secs: &[f64], q: f64) -> Option<f64> {
    if sorted_secs.is_empty() {
        return None;
    }
    let rank = (q * sorted_secs.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_secs.len()) - 1;
    Some(sorted_secs[i] * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(|i| f64::from(i) / 1e3).collect();
        assert_eq!(percentile_ms(&xs, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&xs, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&[0.002], 0.99), Some(2.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn counts_serialize_with_statuses_as_keys() {
        let mut c = Counts::default();
        c.rejected_by_status.insert(422, 3);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["rejected_by_status"]["422"], 3);
        assert_eq!(v["latency_p50_ms"], serde_json::Value::Null);
    }
}
