//! Ground-truth metrics of a window's labelled rows, per task: a classifier's accuracy, per-class
//! precision, recall and F1, log loss and calibration (expected calibration error on ten
//! equal-width confidence bins), and a regressor's MAE, RMSE, R² and residuals. Each is defined as
//! scikit-learn defines it (checked against it in `tests/test_task_models.py`).

use serde_json::{json, Value};

use crate::bucket::Labelled;

/// Confidence bins of the calibration table.
pub const CALIBRATION_BINS: usize = 10;
/// Bins of the residual histogram.
pub const RESIDUAL_BINS: usize = 20;

/// Accuracy, per-class precision / recall / F1 (None where undefined), macro F1 (undefined counted
/// as 0, like scikit-learn), log loss and the calibration table of a classifier's labelled rows.
/// `binary` holds the positive class: then confidence is the probability of the predicted class
/// derived from the positive class's score.
pub fn classification(rows: &[Labelled], classes: &[String], binary: Option<usize>) -> Value {
    let k = classes.len();
    let n = rows.len();
    let mut tp = vec![0u64; k];
    let mut predicted = vec![0u64; k];
    let mut actual = vec![0u64; k];
    let mut correct = 0u64;
    let mut loss = 0.0;
    for r in rows {
        let (t, p) = (r.truth as usize, r.predicted as usize);
        if t >= k || p >= k {
            continue;
        }
        actual[t] += 1;
        predicted[p] += 1;
        if t == p {
            tp[t] += 1;
            correct += 1;
        }
        loss -= f64::from(r.p_true).clamp(1e-15, 1.0 - 1e-15).ln();
    }
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let per_class: Vec<Value> = (0..k)
        .map(|c| {
            let precision = ratio(tp[c], predicted[c]);
            let recall = ratio(tp[c], actual[c]);
            let f1 = (predicted[c] + actual[c] > 0)
                .then(|| 2.0 * tp[c] as f64 / (predicted[c] + actual[c]) as f64);
            json!({"class": classes[c], "support": actual[c], "predicted": predicted[c],
                   "precision": precision, "recall": recall, "f1": f1})
        })
        .collect();
    let macro_f1 = (k > 0 && n > 0).then(|| {
        (0..k)
            .map(|c| {
                if predicted[c] + actual[c] > 0 {
                    2.0 * tp[c] as f64 / (predicted[c] + actual[c]) as f64
                } else {
                    0.0
                }
            })
            .sum::<f64>()
            / k as f64
    });
    let (table, ece) = calibration(rows, binary);
    json!({
        "accuracy": ratio(correct, n as u64),
        "log_loss": (n > 0).then(|| loss / n as f64),
        "macro_f1": macro_f1,
        "per_class": per_class,
        "expected_calibration_error": ece,
        "calibration": table,
    })
}

/// The predicted class's probability (confidence) against how often it was right, on ten
/// equal-width bins of confidence; ECE = Σ (rows in bin / rows) · |accuracy − mean confidence|.
fn calibration(rows: &[Labelled], binary: Option<usize>) -> (Vec<Value>, Option<f64>) {
    let mut count = [0u64; CALIBRATION_BINS];
    let mut confidence = [0.0f64; CALIBRATION_BINS];
    let mut right = [0u64; CALIBRATION_BINS];
    for r in rows {
        let c = match binary {
            // The score is the positive class's probability; the predicted class's is this or 1 − it.
            Some(positive) if r.predicted as usize == positive => r.error,
            Some(_) => 1.0 - r.error,
            None => r.error,
        };
        if !c.is_finite() {
            continue;
        }
        // Bins (i/10, (i+1)/10], the first one closed at 0.
        let bin = ((c * CALIBRATION_BINS as f64).ceil() as usize).clamp(1, CALIBRATION_BINS) - 1;
        count[bin] += 1;
        confidence[bin] += c;
        if r.truth as u32 == r.predicted {
            right[bin] += 1;
        }
    }
    let total: u64 = count.iter().sum();
    let mut ece = 0.0;
    let table = (0..CALIBRATION_BINS)
        .map(|b| {
            let n = count[b];
            let (conf, acc) = if n > 0 {
                let (conf, acc) = (confidence[b] / n as f64, right[b] as f64 / n as f64);
                ece += n as f64 / total as f64 * (acc - conf).abs();
                (Some(conf), Some(acc))
            } else {
                (None, None)
            };
            json!({"from": b as f64 / CALIBRATION_BINS as f64, "to": (b + 1) as f64 / CALIBRATION_BINS as f64,
                   "rows": n, "confidence": conf, "accuracy": acc})
        })
        .collect();
    (table, (total > 0).then_some(ece))
}

/// MAE, RMSE, R² (None when the true values are constant) and the residuals (true − predicted) of
/// a regressor's labelled rows: quantiles and a histogram over their range.
pub fn regression(rows: &[Labelled]) -> Value {
    let n = rows.len();
    if n == 0 {
        return json!({"mae": null, "rmse": null, "r2": null, "residuals": null});
    }
    let truth: Vec<f64> = rows.iter().map(|r| r.truth).collect();
    let predicted: Vec<f64> = rows.iter().map(|r| r.error).collect();
    let (mae, rmse, r2) = crate::stats::regression_metrics(&truth, &predicted);
    let mut residuals: Vec<f64> = truth.iter().zip(&predicted).map(|(t, p)| t - p).collect();
    residuals.sort_by(f64::total_cmp);
    let (lo, hi) = (residuals[0], residuals[n - 1]);
    let width = ((hi - lo) / RESIDUAL_BINS as f64).max(f64::EPSILON);
    let edges: Vec<f64> = (0..=RESIDUAL_BINS).map(|i| lo + width * i as f64).collect();
    let counts = crate::stats::histogram_counts(&residuals, &edges);
    let q = |p| crate::stats::quantile_sorted(&residuals, p);
    json!({
        "mae": mae, "rmse": rmse, "r2": r2,
        "residuals": {"mean": residuals.iter().sum::<f64>() / n as f64,
                      "p05": q(0.05), "p50": q(0.5), "p95": q(0.95),
                      "histogram": {"bin_edges": edges, "counts": counts}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(truth: usize, predicted: usize, p_true: f32, confidence: f64) -> Labelled {
        Labelled {
            error: confidence,
            label: false,
            truth: truth as f64,
            predicted: predicted as u32,
            p_true,
        }
    }

    /// sklearn: accuracy_score([0,1,2,2], [0,2,2,2]) = 0.75; precision_recall_fscore_support gives
    /// precision [1, undefined, 0.667], recall [1, 0, 1], f1 [1, 0, 0.8]; macro F1 0.6.
    #[test]
    fn multi_class_metrics_on_a_fixed_case() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|c| c.to_string()).collect();
        let rows = [
            row(0, 0, 0.8, 0.8),
            row(1, 2, 0.3, 0.6),
            row(2, 2, 0.7, 0.7),
            row(2, 2, 0.9, 0.9),
        ];
        let m = classification(&rows, &classes, None);
        assert_eq!(m["accuracy"], 0.75);
        assert_eq!(m["per_class"][1]["precision"], Value::Null);
        assert_eq!(m["per_class"][1]["recall"], 0.0);
        assert!((m["per_class"][2]["precision"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m["per_class"][2]["f1"].as_f64().unwrap() - 0.8).abs() < 1e-12);
        assert!((m["macro_f1"].as_f64().unwrap() - 0.6).abs() < 1e-12);
        let want_loss = -[0.8f32, 0.3, 0.7, 0.9]
            .iter()
            .map(|&p| f64::from(p).ln())
            .sum::<f64>()
            / 4.0;
        assert!((m["log_loss"].as_f64().unwrap() - want_loss).abs() < 1e-12);
        // Bins: 0.6 (wrong), 0.7 (right), 0.8 (right), 0.9 (right) each alone:
        // ECE = (0.6 + 0.3 + 0.2 + 0.1) / 4.
        let ece = m["expected_calibration_error"].as_f64().unwrap();
        assert!((ece - 0.3).abs() < 1e-12, "{ece}");
    }

    #[test]
    fn regression_metrics_and_residuals() {
        let rows: Vec<Labelled> = [(3.0, 2.5), (-0.5, 0.0), (2.0, 2.0), (7.0, 8.0)]
            .iter()
            .map(|&(t, p)| Labelled {
                error: p,
                truth: t,
                ..Labelled::default()
            })
            .collect();
        let m = regression(&rows);
        assert!((m["mae"].as_f64().unwrap() - 0.5).abs() < 1e-12);
        assert!((m["r2"].as_f64().unwrap() - 0.948_608_137_044_967_9).abs() < 1e-12);
        let counts = m["residuals"]["histogram"]["counts"].as_array().unwrap();
        assert_eq!(counts.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 4);
        assert_eq!(regression(&[])["mae"], Value::Null);
    }
}
