//! `GET /v1/monitoring/series`: one metric over time, one point per step, for the console's charts.

use serde_json::{json, Value};

use super::bins;
use super::bucket::Bucket;
use super::summary::{confusion, feature_drift, score_drift, PREDICT_ROUTE};
use super::system::SystemSample;
use super::Monitor;

/// Longest series served, in points.
pub const MAX_POINTS: i64 = 1_500;

/// Every metric name a series can be asked for; `<feature>` is a feature name from the card.
pub const METRICS: &[&str] = &[
    "requests",
    "requests_per_second",
    "error_rate",
    "server_error_rate",
    "overloaded",
    "in_flight_max",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "rows",
    "rejected_requests",
    "anomaly_rate",
    "reconstruction_error_p50",
    "reconstruction_error_p95",
    "reconstruction_error_p99",
    "score_psi",
    "precision",
    "recall",
    "f1",
    "process_cpu_percent",
    "process_rss_bytes",
    "host_cpu_percent",
    "memory_used_bytes",
    "disk_used_bytes",
    "network_rx_bytes_per_second",
    "network_tx_bytes_per_second",
    "feature_mean:<feature>",
    "missing:<feature>",
    "invalid:<feature>",
    "psi:<feature>",
    "wasserstein:<feature>",
];

/// Every valid metric name for a model with these features.
pub fn metric_names(features: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for m in METRICS {
        match m.strip_suffix(":<feature>") {
            Some(kind) => names.extend(features.iter().map(|f| format!("{kind}:{f}"))),
            None => names.push(m.to_string()),
        }
    }
    names
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Simple(&'static str),
    Feature(&'static str, usize),
}

fn parse_metric(monitor: &Monitor, name: &str) -> Result<Metric, String> {
    if let Some((kind, feature)) = name.split_once(':') {
        let kind = METRICS
            .iter()
            .filter_map(|m| m.strip_suffix(":<feature>"))
            .find(|k| *k == kind)
            .ok_or_else(|| format!("unknown metric {name:?}; known: {}", METRICS.join(", ")))?;
        let j = monitor
            .layout
            .feature_names
            .iter()
            .position(|f| f == feature)
            .ok_or_else(|| format!("{feature:?} is not a feature of this model"))?;
        return Ok(Metric::Feature(kind, j));
    }
    METRICS
        .iter()
        .find(|m| **m == name && !m.contains(':'))
        .map(|m| Metric::Simple(m))
        .ok_or_else(|| format!("unknown metric {name:?}; known: {}", METRICS.join(", ")))
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn value(
    monitor: &Monitor,
    metric: Metric,
    b: &Bucket,
    prev: Option<&SystemSample>,
    step: i64,
) -> Option<f64> {
    let layout = &monitor.layout;
    let requests: u64 = b.routes.values().map(|r| r.requests()).sum();
    let class = |c: usize| b.routes.values().map(|r| r.status[c]).sum::<u64>();
    let latency = |q| {
        let r = b.routes.get(PREDICT_ROUTE)?;
        let counts: Vec<f64> = r.latency.iter().map(|&c| c as f64).collect();
        bins::quantile(&layout.latency_bins, &counts, q)
    };
    let score = |q| {
        let counts: Vec<f64> = b.scores.iter().map(|&c| c as f64).collect();
        bins::quantile(&layout.score_bins, &counts, q)
    };
    let rate_of = |f: fn(&super::system::SystemSample) -> u64| {
        let (now, before) = (b.system.as_ref()?, prev?);
        let dt = (now.at - before.at).max(1) as f64;
        Some(f(now).saturating_sub(f(before)) as f64 / dt)
    };
    // Counts only: a point needs no ROC-AUC (whose sort would dominate a day of points).
    let gt = |key: &str| {
        let c = confusion(b, layout.threshold.unwrap_or(f64::INFINITY));
        match key {
            "precision" => c.precision,
            "recall" => c.recall,
            _ => c.f1,
        }
    };
    match metric {
        Metric::Simple(name) => match name {
            "requests" => Some(requests as f64),
            "requests_per_second" => Some(requests as f64 / step as f64),
            "error_rate" => ratio(class(3) + class(4), requests),
            "server_error_rate" => ratio(class(4), requests),
            "overloaded" => Some(b.overloaded as f64),
            "in_flight_max" => Some(b.in_flight_max as f64),
            "latency_p50" => latency(0.5),
            "latency_p95" => latency(0.95),
            "latency_p99" => latency(0.99),
            "rows" => Some(b.rows as f64),
            "rejected_requests" => Some(b.rejected_requests as f64),
            "anomaly_rate" => ratio(b.anomalies, b.rows),
            "reconstruction_error_p50" => score(0.5),
            "reconstruction_error_p95" => score(0.95),
            "reconstruction_error_p99" => score(0.99),
            "score_psi" => (b.rows > 0).then(|| score_drift(monitor, b).psi),
            "precision" | "recall" | "f1" => gt(name),
            "process_cpu_percent" => b.system.as_ref().map(|s| s.process_cpu_percent),
            "process_rss_bytes" => b.system.as_ref().map(|s| s.process_rss_bytes as f64),
            "host_cpu_percent" => b.system.as_ref().map(|s| s.host_cpu_percent),
            "memory_used_bytes" => b.system.as_ref().map(|s| s.memory_used_bytes as f64),
            "disk_used_bytes" => b.system.as_ref().map(|s| s.disk_used_bytes as f64),
            "network_rx_bytes_per_second" => rate_of(|s| s.network_rx_bytes),
            "network_tx_bytes_per_second" => rate_of(|s| s.network_tx_bytes),
            _ => None,
        },
        Metric::Feature(kind, j) => {
            let f = &b.features[j];
            let n: u64 = f.fine.iter().sum();
            match kind {
                "feature_mean" => (n > 0).then(|| f.sum / n as f64),
                "missing" => Some(f.missing as f64),
                "invalid" => Some(f.invalid as f64),
                "psi" => (n > 0).then(|| feature_drift(monitor, j, b).psi),
                "wasserstein" => (n > 0).then(|| feature_drift(monitor, j, b).wasserstein_scaled),
                _ => None,
            }
        }
    }
}

/// Points for `metric` from `from` to `to` (Unix seconds) every `step` seconds (a multiple of 60).
pub fn series(
    monitor: &Monitor,
    metric: &str,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Value, String> {
    let m = parse_metric(monitor, metric)?;
    if step < 60 || step % 60 != 0 {
        return Err(format!(
            "step {step} must be a whole number of minutes (60, 120, ...)"
        ));
    }
    // Only what is kept can be asked for; a longer span gets a larger step (at most MAX_POINTS).
    let now = super::now_secs();
    let to = to.clamp(now - super::RETENTION_MINUTES * 60, now + 60);
    let from = from.clamp(to - super::RETENTION_MINUTES * 60, to);
    let step = step
        .min(super::RETENTION_MINUTES * 60)
        .max(((to - from) / MAX_POINTS + 59) / 60 * 60);
    let (first, last) = (from / 60, to / 60);
    let per = step / 60;
    let empty = monitor.layout.empty_bucket(last);
    let points = monitor.read_range(first, last, |buckets| {
        let mut points = Vec::new();
        let mut prev: Option<SystemSample> = None;
        let mut next = 0;
        let mut start = first;
        while start <= last && from < to {
            let end = (start + per - 1).min(last);
            let begin = next;
            while next < buckets.len() && buckets[next].minute <= end {
                next += 1;
            }
            let merged;
            let window: &Bucket = match &buckets[begin..next] {
                [] => &empty,
                [one] => one,
                [head, rest @ ..] => {
                    let mut m = (*head).clone();
                    rest.iter().for_each(|b| m.merge(b));
                    merged = m;
                    &merged
                }
            };
            let v = value(monitor, m, window, prev.as_ref(), step).filter(|v| v.is_finite());
            points.push(json!({"t": start * 60, "value": v}));
            if let Some(s) = &window.system {
                prev = Some(s.clone());
            }
            start += per;
        }
        points
    });
    Ok(json!({"metric": metric, "from": from, "to": to, "step": step, "points": points}))
}
