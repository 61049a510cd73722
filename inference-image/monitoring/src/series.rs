//! `GET /v1/monitoring/series`: one metric over time, one point per step, for the console's charts.

use serde_json::{json, Value};

use crate::bins;
use crate::bucket::Bucket;
use crate::drift;
use crate::sample::SystemSample;
use crate::summary::{class_counts, confusion, feature_drift, score_drift, PREDICT_ROUTE};
use crate::{View, RETENTION_MINUTES};

/// Longest series served, in points.
pub const MAX_POINTS: i64 = 1_500;

/// Every metric name a series can be asked for; `<feature>` is a feature name from the card and
/// `<class>` one of a classifier's classes.
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
    "rows_per_minute",
    "missing_per_minute",
    "imputed_per_minute",
    "invalid_per_minute",
    "refused_rows_per_minute",
    "anomaly_rate",
    "reconstruction_error_p50",
    "reconstruction_error_p95",
    "reconstruction_error_p99",
    "score_psi",
    "class_psi",
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
    "class_share:<class>",
];

/// Every valid metric name for a model with these features and classes (a classifier's; none
/// for other tasks).
pub fn metric_names(features: &[&str], classes: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for m in METRICS {
        if let Some(kind) = m.strip_suffix(":<feature>") {
            names.extend(features.iter().map(|f| format!("{kind}:{f}")));
        } else if let Some(kind) = m.strip_suffix(":<class>") {
            names.extend(classes.iter().map(|c| format!("{kind}:{c}")));
        } else {
            names.push(m.to_string());
        }
    }
    names
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Simple(&'static str),
    Feature(&'static str, usize),
    /// `class_share:<class>`: the class's index.
    ClassShare(usize),
}

fn unknown(name: &str) -> String {
    format!("unknown metric {name:?}; known: {}", METRICS.join(", "))
}

fn parse_metric(view: &View, name: &str) -> Result<Metric, String> {
    if let Some((kind, rest)) = name.split_once(':') {
        if METRICS.contains(&format!("{kind}:<class>").as_str()) {
            let classes = &view.layout.classes;
            let i = classes.iter().position(|c| c == rest).ok_or_else(|| {
                if classes.is_empty() {
                    format!("unknown metric {name:?}: this model is not a classifier, so it has no classes")
                } else {
                    format!(
                        "unknown metric {name:?}: {rest:?} is not a class of this model; its classes are {}",
                        classes.join(", ")
                    )
                }
            })?;
            return Ok(Metric::ClassShare(i));
        }
        let kind = METRICS
            .iter()
            .filter_map(|m| m.strip_suffix(":<feature>"))
            .find(|k| *k == kind)
            .ok_or_else(|| unknown(name))?;
        let j = view
            .layout
            .feature_names
            .iter()
            .position(|f| f == rest)
            .ok_or_else(|| format!("{rest:?} is not a feature of this model"))?;
        return Ok(Metric::Feature(kind, j));
    }
    METRICS
        .iter()
        .find(|m| **m == name && !m.contains(':'))
        .map(|m| Metric::Simple(m))
        .ok_or_else(|| unknown(name))
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn value(
    view: &View,
    metric: Metric,
    b: &Bucket,
    prev: Option<&SystemSample>,
    step: i64,
) -> Option<f64> {
    let layout = &view.layout;
    let requests: u64 = b.routes.values().map(|r| r.requests()).sum();
    let class = |c: usize| b.routes.values().map(|r| r.status[c]).sum::<u64>();
    let latency = |q| {
        let r = b.routes.get(PREDICT_ROUTE)?;
        let counts: Vec<f64> = r.latency.iter().map(|&c| c as f64).collect();
        bins::quantile(&layout.latency_bins, &counts, q)
    };
    let per_minute = |n: u64| n as f64 * 60.0 / step as f64;
    let score = |q| {
        let counts: Vec<f64> = b.scores.iter().map(|&c| c as f64).collect();
        bins::quantile(&layout.score_bins, &counts, q)
    };
    let rate_of = |f: fn(&SystemSample) -> u64| {
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
            // Data quality as rates, whatever the step: cells (summed over the features) and rows.
            "rows_per_minute" => Some(per_minute(b.rows)),
            "missing_per_minute" => Some(per_minute(b.features.iter().map(|f| f.missing).sum())),
            "imputed_per_minute" => Some(per_minute(b.features.iter().map(|f| f.imputed).sum())),
            "invalid_per_minute" => Some(per_minute(b.features.iter().map(|f| f.invalid).sum())),
            "refused_rows_per_minute" => Some(per_minute(b.refused_rows)),
            "anomaly_rate" => ratio(b.anomalies, b.rows),
            "reconstruction_error_p50" => score(0.5),
            "reconstruction_error_p95" => score(0.95),
            "reconstruction_error_p99" => score(0.99),
            "score_psi" => (b.rows > 0).then(|| score_drift(view, b).psi),
            // PSI of the step's predicted classes against the card's baseline (None without one).
            "class_psi" => {
                let baseline = view.card.predicted_baseline()?;
                let counts = class_counts(b, baseline.counts.len());
                let as_f64 = |v: &[u64]| v.iter().map(|&c| c as f64).collect::<Vec<_>>();
                (counts.iter().sum::<u64>() > 0)
                    .then(|| drift::psi(&as_f64(&baseline.counts), &as_f64(&counts)))
            }
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
                "psi" => (n > 0).then(|| feature_drift(view, j, b).psi),
                "wasserstein" => (n > 0).then(|| feature_drift(view, j, b).wasserstein_scaled),
                _ => None,
            }
        }
        // The class's share of the step's scored rows (None without rows).
        Metric::ClassShare(i) => {
            let counts = class_counts(b, layout.classes.len());
            ratio(counts[i], counts.iter().sum())
        }
    }
}

/// The time span a series covers, clamped to what is kept: `from` to `to` (Unix seconds) every
/// `step` seconds, a multiple of 60 (a longer span gets a larger step, at most `MAX_POINTS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub from: i64,
    pub to: i64,
    pub step: i64,
}

impl Span {
    pub fn new(from: i64, to: i64, step: i64, now: i64) -> Result<Span, String> {
        if step < 60 || step % 60 != 0 {
            return Err(format!(
                "step {step} must be a whole number of minutes (60, 120, ...)"
            ));
        }
        // Only what is kept can be asked for.
        let to = to.clamp(now - RETENTION_MINUTES * 60, now + 60);
        let from = from.clamp(to - RETENTION_MINUTES * 60, to);
        let step = step
            .min(RETENTION_MINUTES * 60)
            .max(((to - from) / MAX_POINTS + 59) / 60 * 60);
        Ok(Span { from, to, step })
    }

    /// The first and last minute whose buckets the series reads.
    pub fn minutes(&self) -> (i64, i64) {
        (self.from / 60, self.to / 60)
    }
}

/// Points for `metric` over `span`, one per step, from `buckets`: the buckets of
/// `span.minutes()`, oldest first (a replica's own, or a fleet's merged minute by minute).
pub fn series(
    view: &View,
    metric: &str,
    span: &Span,
    buckets: &[&Bucket],
) -> Result<Value, String> {
    let m = parse_metric(view, metric)?;
    let Span { from, to, step } = *span;
    let (first, last) = span.minutes();
    let per = step / 60;
    let empty = view.layout.empty_bucket(last);
    let mut points = Vec::new();
    let mut prev: Option<SystemSample> = None;
    let mut next = buckets.partition_point(|b| b.minute < first);
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
        let v = value(view, m, window, prev.as_ref(), step).filter(|v| v.is_finite());
        points.push(json!({"t": start * 60, "value": v}));
        if let Some(s) = &window.system {
            prev = Some(s.clone());
        }
        start += per;
    }
    Ok(json!({"metric": metric, "from": from, "to": to, "step": step, "points": points}))
}

/// One step of buckets merged into one (its minute is the step's first) and how many minutes of
/// it had data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub minutes: usize,
    pub bucket: Bucket,
}

/// `buckets` (oldest first) merged step by step over `span`, skipping steps without data: what a
/// replica sends a console that merges a fleet (`GET /v1/monitoring/buckets`). A series over the
/// groups is the series over the buckets, since merging is associative.
pub fn groups(span: &Span, buckets: &[&Bucket]) -> Vec<Group> {
    let (first, last) = span.minutes();
    let per = span.step / 60;
    let mut out: Vec<Group> = Vec::new();
    for b in buckets
        .iter()
        .filter(|b| b.minute >= first && b.minute <= last)
    {
        let start = first + (b.minute - first) / per * per;
        match out.last_mut() {
            Some(g) if g.bucket.minute == start => {
                g.bucket.merge(b);
                g.minutes += 1;
            }
            _ => {
                let mut bucket = (*b).clone();
                bucket.minute = start;
                out.push(Group { minutes: 1, bucket });
            }
        }
    }
    out
}
