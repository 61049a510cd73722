//! What `GET /v1/monitoring/summary` reports for a window: the three layers with verdicts and the
//! thresholds behind them.

use serde_json::{json, Value};

use crate::bins::{self, Bins};
use crate::bucket::{Bucket, RouteStats};
use crate::card::{Histogram, Task};
use crate::drift::{self, DriftStats, Verdict};
use crate::stats::roc_auc;
use crate::truth;
use crate::View;

pub const PREDICT_ROUTE: &str = "/v1/predict";

/// Parses "90s", "5m", "1h", "24h", "1d" into seconds.
pub fn parse_window(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    if n.is_empty() {
        return Err(format!("window {text:?} must look like 5m, 1h or 24h"));
    }
    // Digits only, so a parse can fail only by overflow: a window that long is the retention.
    let n: i64 = n.parse::<i64>().unwrap_or(i64::MAX).min(1_000_000);
    let secs = match unit {
        "s" => n,
        "m" | "" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "window {text:?} has an unknown unit {unit:?}; use s, m, h or d"
            ))
        }
    };
    // Clamped to what is kept: at least one minute, at most the retention.
    Ok(secs.clamp(60, crate::RETENTION_MINUTES * 60))
}

pub fn latency_quantiles(layout_bins: &Bins, r: &RouteStats) -> Value {
    let counts: Vec<f64> = r.latency.iter().map(|&c| c as f64).collect();
    let q = |p| bins::quantile(layout_bins, &counts, p);
    json!({"p50": q(0.5), "p95": q(0.95), "p99": q(0.99)})
}

/// A live histogram beside its training baseline on the same slots: `edges` are the closed bins'
/// boundaries, and `baseline` and `current` have one more entry at each end for the open bins.
/// The baseline is the card's histogram spread over these slots (training row counts); charts
/// compare shares, not counts.
fn distribution(bins: &Bins, baseline: &[f64], current: &[u64]) -> Value {
    json!({"edges": bins.edges, "baseline": baseline, "current": current})
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Drift of one count vector against a baseline histogram laid on the same bins.
pub fn feature_drift(view: &View, j: usize, merged: &Bucket) -> DriftStats {
    let layout = &view.layout;
    let f = &view.card.features[j];
    let fine_bins = &layout.feature_bins[j];
    let current: Vec<f64> = merged.features[j].fine.iter().map(|&c| c as f64).collect();
    let baseline = bins::feature_baseline(fine_bins, f);
    let mut stats = drift::drift_stats(&fine_bins.points(), &baseline, &current, f.std);
    // PSI on the card's own decile bins: coarse bins keep it stable on small windows.
    let decile_current: Vec<f64> = merged.features[j]
        .deciles
        .iter()
        .map(|&c| c as f64)
        .collect();
    stats.psi = drift::psi(&bins::decile_baseline(&f.histogram), &decile_current);
    stats
}

/// Drift of the reconstruction-error distribution against the calibration errors in the card.
pub fn score_drift(view: &View, merged: &Bucket) -> DriftStats {
    let b = &view.layout.score_bins;
    let baseline_hist: &Histogram = &view.card.score.baseline.histogram;
    let baseline = b.spread(baseline_hist);
    let points = b.points();
    let total: f64 = baseline.iter().sum();
    let mean = baseline
        .iter()
        .zip(&points)
        .map(|(c, p)| c * p)
        .sum::<f64>()
        / total.max(1.0);
    let var = baseline
        .iter()
        .zip(&points)
        .map(|(c, p)| c * (p - mean).powi(2))
        .sum::<f64>()
        / total.max(1.0);
    let current: Vec<f64> = merged.scores.iter().map(|&c| c as f64).collect();
    let mut stats = drift::drift_stats(&points, &baseline, &current, var.sqrt().max(f64::EPSILON));
    // PSI on the card's decile bins of the calibration errors.
    let deciles = Bins::new(baseline_hist.bin_edges.clone());
    let mut decile_current = vec![0.0; deciles.len()];
    for (slot, &c) in merged.scores.iter().enumerate() {
        if c > 0 {
            decile_current[deciles.index(points[slot])] += c as f64;
        }
    }
    stats.psi = drift::psi(&bins::decile_baseline(baseline_hist), &decile_current);
    stats
}

/// The window's predicted classes against the card's predicted-class baseline (`model.class_drift`):
/// the shares on both sides, PSI, the Jensen–Shannon distance (base 2), the window's rows and a
/// verdict ([`drift::class_drift`]), and which rows the baseline was counted on. None for a card
/// without a baseline (every task but a classifier, and classifier cards built before it existed).
pub fn class_drift(view: &View, merged: &Bucket) -> Option<Value> {
    let baseline = view.card.predicted_baseline()?;
    let d = drift::class_drift(
        &baseline.counts,
        &class_counts(merged, baseline.counts.len()),
    );
    let mut v = serde_json::to_value(d).ok()?;
    v["source"] = json!(baseline.source);
    Some(v)
}

/// The window's rows per predicted class, for `k` classes.
pub fn class_counts(merged: &Bucket, k: usize) -> Vec<u64> {
    (0..k)
        .map(|i| merged.predicted.get(i).copied().unwrap_or(0))
        .collect()
}

/// Most labelled rows ROC-AUC is computed on (its sort dominates a long window's summary); its
/// standard error at this size is about 0.002.
pub const AUC_MAX_ROWS: usize = 50_000;

/// Confusion counts of the labelled rows at `threshold`, and precision, recall and F1 from them.
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fnn: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

pub fn confusion(merged: &Bucket, threshold: f64) -> Confusion {
    let (mut tp, mut fp, mut tn, mut fnn) = (0u64, 0u64, 0u64, 0u64);
    for l in &merged.feedback {
        match (l.label, l.error > threshold) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
            (true, false) => fnn += 1,
        }
    }
    let precision = rate(tp, tp + fp);
    let recall = rate(tp, tp + fnn);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    Confusion {
        tp,
        fp,
        tn,
        fnn,
        precision,
        recall,
        f1,
    }
}

pub fn ground_truth(merged: &Bucket, threshold: f64) -> Value {
    let c = confusion(merged, threshold);
    // ROC-AUC sorts its rows: past AUC_MAX_ROWS it is computed on an even stride through them
    // (the labels arrive in time order, so the stride spans the whole window). The counts above
    // stay exact.
    let stride = merged.feedback.len().div_ceil(AUC_MAX_ROWS).max(1);
    let (scores, labels): (Vec<f64>, Vec<bool>) = merged
        .feedback
        .iter()
        .step_by(stride)
        .map(|l| (l.error, l.label))
        .unzip();
    json!({
        "labelled": merged.feedback.len() as u64 + merged.feedback_dropped,
        "labelled_kept": merged.feedback.len(),
        "true_positives": c.tp, "false_positives": c.fp, "true_negatives": c.tn, "false_negatives": c.fnn,
        "precision": c.precision, "recall": c.recall, "f1": c.f1,
        "roc_auc": roc_auc(&scores, &labels),
        "roc_auc_rows": scores.len(),
    })
}

/// The ground truth of the window for the served task: the binary metrics at the threshold
/// (autoencoder, binary classifier), the classification metrics (classifier) or the regression
/// metrics (regressor).
pub fn task_ground_truth(view: &View, merged: &Bucket) -> Value {
    let layout = &view.layout;
    let card = &view.card;
    let mut gt = match (card.task, card.positive_class()) {
        (Task::Autoencoder, _) | (Task::Classifier, Some(_)) => {
            ground_truth(merged, layout.threshold.unwrap_or(f64::INFINITY))
        }
        _ => json!({
            "labelled": merged.feedback.len() as u64 + merged.feedback_dropped,
            "labelled_kept": merged.feedback.len(),
        }),
    };
    let extra = match card.task {
        Task::Autoencoder => return gt,
        Task::Classifier => {
            truth::classification(&merged.feedback, &layout.classes, card.positive_class())
        }
        Task::Regressor => truth::regression(&merged.feedback),
    };
    if let (Some(gt), Value::Object(extra)) = (gt.as_object_mut(), extra) {
        gt.extend(extra);
    }
    gt
}

/// The window's last system sample, with what rules compare: the host CPU's mean over the window's
/// samples, and memory and disk use as fractions (null when the total is unknown).
fn resources(merged: &Bucket) -> Value {
    let Some(sample) = &merged.system else {
        return Value::Null;
    };
    let mut out = serde_json::to_value(sample).unwrap_or(Value::Null);
    let fraction = |used: u64, total: u64| (total > 0).then(|| used as f64 / total as f64);
    if let Value::Object(map) = &mut out {
        map.insert(
            "host_cpu_percent_mean".into(),
            json!((merged.system_samples > 0)
                .then(|| merged.host_cpu_percent_sum / merged.system_samples as f64)),
        );
        map.insert(
            "memory_used_fraction".into(),
            json!(fraction(
                sample.memory_used_bytes,
                sample.memory_total_bytes
            )),
        );
        map.insert(
            "disk_used_fraction".into(),
            json!(fraction(sample.disk_used_bytes, sample.disk_total_bytes)),
        );
    }
    out
}

/// The whole summary of `merged`, which covers `seconds` ending at `to` (Unix seconds).
pub fn summarize(
    view: &View,
    merged: &Bucket,
    minutes_with_data: usize,
    seconds: i64,
    to: i64,
) -> Value {
    let layout = &view.layout;
    let mut all = RouteStats {
        latency: vec![0; layout.latency_bins.len()],
        ..RouteStats::default()
    };
    for r in merged.routes.values() {
        for (a, b) in all.status.iter_mut().zip(r.status) {
            *a += b;
        }
    }
    let requests = all.requests();
    let predict = merged
        .routes
        .get(PREDICT_ROUTE)
        .cloned()
        .unwrap_or_default();
    let routes: serde_json::Map<String, Value> = merged
        .routes
        .iter()
        .map(|(name, r)| {
            (
                name.clone(),
                json!({
                    "requests": r.requests(),
                    "by_status": {"2xx": r.status[1], "4xx": r.status[3], "5xx": r.status[4]},
                    "latency_seconds": latency_quantiles(&layout.latency_bins, r),
                }),
            )
        })
        .collect();

    let feature_stats: Vec<(usize, DriftStats, Verdict)> = (0..layout.feature_names.len())
        .map(|j| {
            let s = feature_drift(view, j, merged);
            let v = drift::verdict(&s);
            (j, s, v)
        })
        .collect();
    let verdicts: Vec<Verdict> = feature_stats.iter().map(|(_, _, v)| *v).collect();
    let features: Vec<Value> = feature_stats
        .iter()
        .map(|(j, s, v)| {
            let f = &merged.features[*j];
            let n: u64 = f.fine.iter().sum();
            json!({
                "name": layout.feature_names[*j],
                "rows": n,
                "missing": f.missing,
                "imputed": f.imputed,
                "invalid": f.invalid,
                "mean": (n > 0).then(|| f.sum / n as f64),
                "baseline_mean": view.card.features[*j].mean,
                "drift": s,
                "verdict": v,
                "distribution": distribution(
                    &layout.feature_bins[*j],
                    &bins::feature_baseline(&layout.feature_bins[*j], &view.card.features[*j]),
                    &f.fine,
                ),
            })
        })
        .collect();
    let drifted: Vec<&str> = feature_stats
        .iter()
        .filter(|(_, _, v)| *v == Verdict::Drift)
        .map(|(j, _, _)| layout.feature_names[*j].as_str())
        .collect();

    let score_counts: Vec<f64> = merged.scores.iter().map(|&c| c as f64).collect();
    let q = |p| bins::quantile(&layout.score_bins, &score_counts, p);
    let score = score_drift(view, merged);
    let system = resources(merged);

    json!({
        "window": {"seconds": seconds, "from": to - seconds, "to": to, "minutes_with_data": minutes_with_data},
        "system": {
            "requests": requests,
            "requests_per_second": requests as f64 / seconds as f64,
            "by_status": {"1xx": all.status[0], "2xx": all.status[1], "3xx": all.status[2], "4xx": all.status[3], "5xx": all.status[4]},
            "error_rate": rate(all.status[3] + all.status[4], requests),
            "server_error_rate": rate(all.status[4], requests),
            "overloaded": merged.overloaded,
            "in_flight_now": view.in_flight,
            "in_flight_max": merged.in_flight_max,
            "predict_latency_seconds": latency_quantiles(&layout.latency_bins, &predict),
            "routes": routes,
            "resources": system,
            "dropped_events": view.dropped_events,
        },
        "data": {
            "rows": merged.rows,
            "rows_in_feature_histograms": merged.features.first().map_or(0, |f| f.fine.iter().sum::<u64>()),
            "rejected_requests": merged.rejected_requests,
            "refused_rows": merged.refused_rows,
            "features": features,
            "drift": {
                "verdict": drift::overall(&verdicts),
                "drifted_features": drifted,
                "drifted_share": if verdicts.is_empty() { 0.0 } else { drifted.len() as f64 / verdicts.len() as f64 },
            },
        },
        "model": {
            "task": view.card.task.as_str(),
            "score_kind": view.card.score.error,
            "score": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "mean": (merged.rows > 0).then(|| merged.error_sum / merged.rows as f64)},
            "predicted_classes": layout.classes.iter().enumerate().map(|(i, c)| json!({"class": c, "rows": merged.predicted.get(i).copied().unwrap_or(0)})).collect::<Vec<_>>(),
            "class_drift": class_drift(view, merged),
            "rows": merged.rows,
            "anomalies": merged.anomalies,
            "anomaly_rate": rate(merged.anomalies, merged.rows),
            "threshold": layout.threshold,
            "reconstruction_error": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "mean": (merged.rows > 0).then(|| merged.error_sum / merged.rows as f64)},
            "score_drift": {"stats": score, "verdict": drift::verdict(&score)},
            "score_distribution": distribution(
                &layout.score_bins,
                &layout.score_bins.spread(&view.card.score.baseline.histogram),
                &merged.scores,
            ),
            "ground_truth": task_ground_truth(view, merged),
        },
        "thresholds": thresholds(),
    })
}

pub fn thresholds() -> Value {
    json!({
        "drift": {
            "min_samples": drift::MIN_SAMPLES,
            "rule": "a feature drifts when (PSI >= 0.25 or Wasserstein/std >= 0.5) and KS p < 0.01; warns when (PSI >= 0.1 or Wasserstein/std >= 0.25) and KS p < 0.05; the input drifts when at least half of the features drift",
            "psi_bins": "the model card's training deciles, or one bin per value for a feature of few values (the card's levels) (PSI bands 0.1 / 0.25)",
            "ks_wasserstein_js_bins": format!("{} equal-width bins over the training range widened by half a span each side, plus open ends", bins::FINE_BINS),
        },
        "anomaly": {"rule": "reconstruction error > the model card's threshold"},
        "class_drift": {
            "min_samples": drift::MIN_SAMPLES,
            "psi_warn": drift::PSI_WARNING,
            "psi_drift": drift::PSI_DRIFT,
            "psi_epsilon": drift::PSI_EPSILON,
            "rule": format!(
                "classifiers: the window's predicted classes drift when their PSI against the model card's predicted-class baseline (classifier.predicted_baseline) is >= {}, warn when it is >= {}, are ok below; insufficient_data with fewer than {} rows; class shares are floored at {} in PSI as for the features; js is the Jensen-Shannon distance in base 2 (0 to 1) and does not enter the verdict",
                drift::PSI_DRIFT, drift::PSI_WARNING, drift::MIN_SAMPLES, drift::PSI_EPSILON
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::parse_window;
    use crate::RETENTION_MINUTES;

    /// Whatever the published pattern (`^[0-9]+[smhd]?$`) allows is answered, clamped to what is
    /// kept; anything else is a sentence.
    #[test]
    fn windows_the_document_allows_are_clamped_not_refused() {
        assert_eq!(parse_window("5m"), Ok(300));
        assert_eq!(parse_window("90"), Ok(5400));
        assert_eq!(parse_window("0s"), Ok(60));
        assert_eq!(parse_window("2d"), Ok(RETENTION_MINUTES * 60));
        assert_eq!(
            parse_window("99999999999999999999999h"),
            Ok(RETENTION_MINUTES * 60)
        );
        assert!(parse_window("m").unwrap_err().contains("must look like"));
        assert!(parse_window("5w").unwrap_err().contains("unknown unit"));
    }
}
