//! `GET /v1/monitoring/series`: one metric over time, one point per step, for the console's charts.

use serde_json::{json, Value};

use super::bins;
use super::bucket::Bucket;
use super::drift;
use super::summary::{class_counts, confusion, feature_drift, score_drift, PREDICT_ROUTE};
use super::system::SystemSample;
use super::Monitor;

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

fn parse_metric(monitor: &Monitor, name: &str) -> Result<Metric, String> {
    if let Some((kind, rest)) = name.split_once(':') {
        if METRICS.contains(&format!("{kind}:<class>").as_str()) {
            let classes = &monitor.layout.classes;
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
        let j = monitor
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
    let per_minute = |n: u64| n as f64 * 60.0 / step as f64;
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
            "score_psi" => (b.rows > 0).then(|| score_drift(monitor, b).psi),
            // PSI of the step's predicted classes against the card's baseline (None without one).
            "class_psi" => {
                let baseline = monitor.card.predicted_baseline()?;
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
                "psi" => (n > 0).then(|| feature_drift(monitor, j, b).psi),
                "wasserstein" => (n > 0).then(|| feature_drift(monitor, j, b).wasserstein_scaled),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::card::{
        BaselineSource, ClassifierSpec, ModelCard, PredictedBaseline, ProbabilityLayout, Task,
        PREDICTED_PROBABILITY,
    };
    use crate::monitor::{now_secs, Event};

    fn bundled() -> ModelCard {
        ModelCard::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/model/wbc-autoencoder"
        )))
        .unwrap()
    }

    /// The bundled card as a 3-class classifier over a, b, c with a baseline of [10, 10, 20].
    fn classifier() -> Arc<Monitor> {
        let mut card = bundled();
        card.task = Task::Classifier;
        card.classifier = Some(ClassifierSpec {
            classes: vec!["a".into(), "b".into(), "c".into()],
            probabilities: ProbabilityLayout::Tensor,
            positive_class: None,
            predicted_baseline: Some(PredictedBaseline {
                source: BaselineSource::Holdout,
                counts: vec![10, 10, 20],
            }),
        });
        card.score.error = PREDICTED_PROBABILITY.into();
        card.score.threshold = None;
        card.check().unwrap();
        Monitor::new(Arc::new(card), None)
    }

    fn scored(at: i64, width: usize, classes: &[u32]) -> Event {
        let row: Vec<f64> = vec![1.0; width];
        Event::Scored {
            at,
            rows: classes.iter().flat_map(|_| row.iter().copied()).collect(),
            scores: vec![0.9; classes.len()],
            classes: classes.to_vec(),
            quality: None,
        }
    }

    fn values(monitor: &Monitor, metric: &str, from: i64, to: i64) -> Vec<(i64, Option<f64>)> {
        let s = series(monitor, metric, from, to, 60).unwrap();
        s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["t"].as_i64().unwrap(), p["value"].as_f64()))
            .collect()
    }

    #[test]
    fn class_shares_and_class_psi_per_step() {
        let m = classifier();
        let width = m.card.width();
        let now = now_secs();
        // The minute before: every row predicted c. This minute: the baseline's proportions.
        let before: Vec<u32> = vec![2; 30];
        let this: Vec<u32> = [vec![0; 10], vec![1; 10], vec![2; 20]].concat();
        m.apply([scored(now - 60, width, &before), scored(now, width, &this)].into_iter());
        let (from, to) = (now - 60 * 5, now);
        let shares: Vec<Vec<(i64, Option<f64>)>> = ["a", "b", "c"]
            .iter()
            .map(|c| values(&m, &format!("class_share:{c}"), from, to))
            .collect();
        let at = |minute: i64| {
            let t = minute * 60;
            shares
                .iter()
                .map(|s| s.iter().find(|p| p.0 == t).unwrap().1)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(now / 60), [Some(0.25), Some(0.25), Some(0.5)]);
        assert_eq!(at(now / 60 - 1), [Some(0.0), Some(0.0), Some(1.0)]);
        // Steps without rows have no share.
        assert_eq!(at(now / 60 - 2), [None, None, None]);
        for i in 0..shares[0].len() {
            let sum: Option<f64> = shares.iter().map(|s| s[i].1).sum();
            assert!(sum.is_none_or(|s| (s - 1.0).abs() < 1e-12), "{sum:?}");
        }

        let psi = values(&m, "class_psi", from, to);
        let get = |minute: i64| psi.iter().find(|p| p.0 == minute * 60).unwrap().1;
        assert_eq!(get(now / 60), Some(0.0));
        // [1e-4, 1e-4, 1] against [0.25, 0.25, 0.5]: 2 (0.25 - 1e-4) ln(0.25 / 1e-4) + 0.5 ln 2.
        let want = 2.0 * (0.25 - 1e-4) * (0.25f64 / 1e-4).ln() + 0.5 * 2f64.ln();
        assert!((get(now / 60 - 1).unwrap() - want).abs() < 1e-12);
        assert_eq!(get(now / 60 - 2), None);

        // Over both minutes: 10, 10 and 50 rows against 10, 10, 20.
        let (merged, minutes) = m.merged(now / 60 - 1, now / 60);
        let s = super::super::summary::summarize(&m, &merged, minutes, 120, now);
        let d = &s["model"]["class_drift"];
        assert_eq!(d["rows"], 70);
        assert_eq!(d["baseline_rows"], 40);
        assert_eq!(d["source"], "holdout");
        assert_eq!(d["baseline"], serde_json::json!([0.25, 0.25, 0.5]));
        let current: Vec<f64> = d["current"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(current, [10.0 / 70.0, 10.0 / 70.0, 50.0 / 70.0]);
        let want = drift::class_drift(&[10, 10, 20], &[10, 10, 50]);
        assert_eq!(d["psi"].as_f64(), Some(want.psi));
        assert_eq!(d["js"].as_f64(), Some(want.js));
        // PSI = 2 (0.25 - 1/7) ln(1.75) + (5/7 - 1/2) ln(10/7) = 0.196348...: a warning.
        let by_hand =
            2.0 * (0.25 - 1.0 / 7.0) * 1.75f64.ln() + (5.0 / 7.0 - 0.5) * (10.0f64 / 7.0).ln();
        assert!((want.psi - by_hand).abs() < 1e-12, "{want:?}");
        assert_eq!(d["verdict"], "warning");
        assert_eq!(s["thresholds"]["class_drift"]["psi_drift"], 0.25);
    }

    /// Data quality per minute: cells summed over the features, rows as scored or refused, and a
    /// five-minute step divides its counts by five.
    #[test]
    fn data_quality_comes_as_rates_per_minute() {
        let m = Monitor::new(Arc::new(bundled()), None);
        let width = m.card.width();
        let now = now_secs();
        let mut missing = vec![0; width];
        let mut imputed = vec![0; width];
        missing[0] = 3;
        missing[4] = 2;
        imputed[0] = 3;
        let with_gaps = |rows: usize| {
            let mut e = scored(now, width, &vec![0; rows]);
            if let Event::Scored { quality, .. } = &mut e {
                *quality = Some(Box::new(crate::request::Quality {
                    missing: missing.clone(),
                    invalid: vec![0; width],
                    imputed: imputed.clone(),
                    refused_rows: 2,
                }));
            }
            e
        };
        m.apply([with_gaps(40), with_gaps(10)].into_iter());
        let at = |metric: &str| {
            let v = values(&m, metric, now - 120, now);
            v.iter().find(|p| p.0 == now / 60 * 60).unwrap().1
        };
        assert_eq!(at("rows_per_minute"), Some(50.0));
        assert_eq!(at("missing_per_minute"), Some(10.0));
        assert_eq!(at("imputed_per_minute"), Some(6.0));
        assert_eq!(at("invalid_per_minute"), Some(0.0));
        assert_eq!(at("refused_rows_per_minute"), Some(4.0));
        let five = series(&m, "missing_per_minute", now - 600, now, 300).unwrap();
        let last = five["points"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["value"].as_f64(), Some(2.0), "{five}");
    }

    #[test]
    fn class_metrics_are_named_by_the_model_s_classes() {
        let m = classifier();
        let now = now_secs();
        let e = series(&m, "class_share:d", now - 60, now, 60).unwrap_err();
        assert!(
            e.contains("unknown metric") && e.contains("not a class") && e.contains("a, b, c"),
            "{e}"
        );
        let names = metric_names(&["x"], &m.layout.classes);
        for want in ["class_psi", "class_share:a", "class_share:c", "psi:x"] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }

        // An autoencoder: no classes, so no class shares; class_psi has no value and the summary
        // no class drift.
        let auto = Monitor::new(Arc::new(bundled()), None);
        let e = series(&auto, "class_share:a", now - 60, now, 60).unwrap_err();
        assert!(
            e.contains("unknown metric") && e.contains("not a classifier"),
            "{e}"
        );
        assert!(values(&auto, "class_psi", now - 120, now)
            .iter()
            .all(|p| p.1.is_none()));
        assert!(auto.summary_json(60)["model"]["class_drift"].is_null());
        assert!(!metric_names(&["x"], &[])
            .iter()
            .any(|n| n.starts_with("class_share:")));
    }
}
