//! The series and the summary computed from a live `Monitor`'s buckets.

use std::sync::Arc;

use super::series::metric_names;
use super::{drift, Monitor};
use crate::card::{
    BaselineSource, ClassifierSpec, ModelCard, PredictedBaseline, ProbabilityLayout, Task,
    PREDICTED_PROBABILITY,
};
use crate::monitor::{now_secs, Event};

fn series(
    m: &Monitor,
    metric: &str,
    from: i64,
    to: i64,
    step: i64,
) -> Result<serde_json::Value, String> {
    m.series(metric, from, to, step)
}

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
    let s = super::summary::summarize(&m.view(), &merged, minutes, 120, now);
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
