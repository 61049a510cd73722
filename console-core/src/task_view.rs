//! What the dashboard's model layer shows for the task the serving model does: the titles of its
//! score charts, the numbers in the tiles (anomaly rate and ROC-AUC for an autoencoder; accuracy,
//! macro F1, log loss and calibration error for a classifier; MAE, RMSE and R² for a regressor),
//! the per-class table and the predicted-class drift. Everything is read from the service's
//! monitoring summary; nothing is recomputed here.

use serde::Serialize;
use serde_json::Value;

use crate::charts::Unit;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Autoencoder,
    /// Two classes: a positive-class probability against a decision threshold.
    Binary,
    Multiclass,
    Regressor,
}

impl Task {
    pub fn of(summary: &Value) -> Task {
        let model = &summary["model"];
        match model["task"].as_str() {
            Some("classifier") => {
                let classes = model["predicted_classes"].as_array().map_or(0, Vec::len);
                if classes == 2 {
                    Task::Binary
                } else {
                    Task::Multiclass
                }
            }
            Some("regressor") => Task::Regressor,
            _ => Task::Autoencoder,
        }
    }

    /// The score the service keeps quantiles and a training baseline of.
    pub fn score_title(self) -> &'static str {
        match self {
            Task::Autoencoder => "Reconstruction error",
            Task::Binary => "Positive-class probability",
            Task::Multiclass => "Top-class probability",
            Task::Regressor => "Prediction",
        }
    }

    /// Rows above the card's threshold: anomalies, or positive predictions.
    pub fn rate_title(self) -> Option<&'static str> {
        match self {
            Task::Autoencoder => Some("Anomaly rate"),
            Task::Binary => Some("Positive rate"),
            _ => None,
        }
    }

    /// Precision, recall and F1 at the threshold make sense.
    pub fn binary_truth(self) -> bool {
        matches!(self, Task::Autoencoder | Task::Binary)
    }

    pub fn is_classifier(self) -> bool {
        matches!(self, Task::Binary | Task::Multiclass)
    }
}

/// One number under the toolbar.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Tile {
    pub label: &'static str,
    pub value: Option<String>,
}

fn finite(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// The tiles for `task`: the system's four, then the model's.
pub fn tiles(summary: &Value, task: Task) -> Vec<Tile> {
    let sys = &summary["system"];
    let model = &summary["model"];
    let gt = &model["ground_truth"];
    let f = |v: &Value, u: Unit| finite(v).map(|x| u.format(x));
    let plain3 = |v: &Value| finite(v).map(|x| format!("{x:.3}"));
    let ratio = |v: &Value| f(v, Unit::Ratio);
    let mut t = vec![
        ("Requests", f(&sys["requests_per_second"], Unit::PerSecond)),
        ("Error rate", ratio(&sys["error_rate"])),
        (
            "Latency p50",
            f(&sys["predict_latency_seconds"]["p50"], Unit::Seconds),
        ),
        (
            "Latency p99",
            f(&sys["predict_latency_seconds"]["p99"], Unit::Seconds),
        ),
    ];
    if let Some(title) = task.rate_title() {
        t.push((title, ratio(&model["anomaly_rate"])));
    }
    if task.is_classifier() {
        t.push(("Class drift (PSI)", plain3(&model["class_drift"]["psi"])));
    }
    t.push((
        "Labelled rows",
        gt["labelled"].as_u64().map(|n| n.to_string()),
    ));
    match task {
        Task::Autoencoder => t.extend([
            ("Precision", ratio(&gt["precision"])),
            ("Recall", ratio(&gt["recall"])),
            ("ROC-AUC", plain3(&gt["roc_auc"])),
        ]),
        Task::Binary | Task::Multiclass => {
            t.push(("Accuracy", ratio(&gt["accuracy"])));
            t.push(("Macro F1", plain3(&gt["macro_f1"])));
            if task == Task::Binary {
                t.push(("ROC-AUC", plain3(&gt["roc_auc"])));
            }
            t.extend([
                ("Log loss", plain3(&gt["log_loss"])),
                (
                    "Calibration error (ECE)",
                    plain3(&gt["expected_calibration_error"]),
                ),
            ]);
        }
        Task::Regressor => t.extend([
            ("MAE", f(&gt["mae"], Unit::Plain)),
            ("RMSE", f(&gt["rmse"], Unit::Plain)),
            ("R²", plain3(&gt["r2"])),
        ]),
    }
    t.into_iter()
        .map(|(label, value)| Tile { label, value })
        .collect()
}

/// A classifier's row per class: what it predicts now against the baseline, and how right it is
/// on the labelled rows.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassRow {
    pub class: String,
    pub predicted: u64,
    pub live_share: Option<f64>,
    pub baseline_share: Option<f64>,
    pub support: Option<u64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

pub fn class_rows(summary: &Value) -> Vec<ClassRow> {
    let model = &summary["model"];
    let Some(predicted) = model["predicted_classes"].as_array() else {
        return Vec::new();
    };
    let total: u64 = predicted.iter().filter_map(|p| p["rows"].as_u64()).sum();
    let baseline = model["class_drift"]["baseline"].as_array();
    let per_class = model["ground_truth"]["per_class"].as_array();
    predicted
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let class = p["class"].as_str().unwrap_or_default().to_string();
            let rows = p["rows"].as_u64().unwrap_or(0);
            let truth =
                per_class.and_then(|a| a.iter().find(|c| c["class"].as_str() == Some(&class)));
            ClassRow {
                live_share: (total > 0).then(|| rows as f64 / total as f64),
                baseline_share: baseline.and_then(|b| b.get(i)).and_then(finite),
                support: truth.and_then(|c| c["support"].as_u64()),
                precision: truth.and_then(|c| finite(&c["precision"])),
                recall: truth.and_then(|c| finite(&c["recall"])),
                f1: truth.and_then(|c| finite(&c["f1"])),
                predicted: rows,
                class,
            }
        })
        .collect()
}

/// The residual histogram of a regressor's labelled rows, as the dashboard's histogram wants it
/// (open end slots added, no baseline), or None before labels arrive.
pub fn residuals(summary: &Value) -> Option<(Vec<f64>, Vec<f64>)> {
    let h = &summary["model"]["ground_truth"]["residuals"]["histogram"];
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (edges, counts) = (nums(&h["bin_edges"]), nums(&h["counts"]));
    if edges.len() < 2 || counts.len() + 1 != edges.len() {
        return None;
    }
    let mut slots = vec![0.0];
    slots.extend(counts);
    slots.push(0.0);
    Some((edges, slots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classifier() -> Value {
        json!({
            "system": {"requests_per_second": 2.0, "error_rate": 0.0, "predict_latency_seconds": {"p50": 0.001, "p99": 0.004}},
            "model": {
                "task": "classifier",
                "predicted_classes": [{"class": "a", "rows": 30}, {"class": "b", "rows": 10}],
                "anomaly_rate": 0.25,
                "class_drift": {"baseline": [0.5, 0.5], "psi": 0.2747, "verdict": "drift"},
                "ground_truth": {"labelled": 40, "accuracy": 0.9, "macro_f1": 0.88, "roc_auc": 0.95,
                    "log_loss": 0.3, "expected_calibration_error": 0.04,
                    "per_class": [{"class": "b", "support": 12, "precision": 0.8, "recall": 0.75, "f1": 0.774}]}
            }
        })
    }

    #[test]
    fn a_binary_classifier_gets_its_own_tiles_and_titles() {
        let s = classifier();
        let task = Task::of(&s);
        assert_eq!(task, Task::Binary);
        assert_eq!(task.score_title(), "Positive-class probability");
        let t = tiles(&s, task);
        let get = |l: &str| {
            t.iter()
                .find(|x| x.label == l)
                .and_then(|x| x.value.clone())
        };
        assert_eq!(get("Positive rate").as_deref(), Some("25%"));
        assert_eq!(get("Accuracy").as_deref(), Some("90%"));
        assert_eq!(get("Class drift (PSI)").as_deref(), Some("0.275"));
        assert_eq!(get("ROC-AUC").as_deref(), Some("0.950"));
        assert!(get("MAE").is_none() && !t.iter().any(|x| x.label == "Anomaly rate"));
    }

    #[test]
    fn class_rows_join_live_baseline_and_truth() {
        let rows = class_rows(&classifier());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].live_share, Some(0.75));
        assert_eq!(rows[0].baseline_share, Some(0.5));
        assert_eq!(rows[0].support, None);
        assert_eq!(rows[1].recall, Some(0.75));
        assert_eq!(rows[1].support, Some(12));
    }

    #[test]
    fn a_regressor_shows_errors_and_residuals() {
        let s = json!({"model": {"task": "regressor", "ground_truth": {"labelled": 3, "mae": 1.5, "rmse": 2.0, "r2": 0.5,
            "residuals": {"histogram": {"bin_edges": [-1.0, 0.0, 1.0], "counts": [1, 2]}}}}});
        let task = Task::of(&s);
        assert_eq!(task, Task::Regressor);
        assert!(task.rate_title().is_none());
        let t = tiles(&s, task);
        assert!(t
            .iter()
            .any(|x| x.label == "R²" && x.value.as_deref() == Some("0.500")));
        assert_eq!(
            residuals(&s),
            Some((vec![-1.0, 0.0, 1.0], vec![0.0, 1.0, 2.0, 0.0]))
        );
        assert_eq!(Task::of(&json!({"model": {}})), Task::Autoencoder);
    }
}
