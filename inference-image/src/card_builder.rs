//! `inference card`: bring your own model. Builds a model directory (model.onnx + model_card.json)
//! from a user's ONNX autoencoder and CSVs of reference rows, computing the same statistics as
//! `model/train.py` does for the bundled model.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;

use crate::card::{
    Evaluation, FeatureStats, Histogram, ModelCard, ScoreBaseline, ScoreSpec, CARD_FILE,
    ERROR_KIND, SCHEMA_VERSION,
};
use crate::config::CardArgs;
use crate::scorer::{init_runtime, io_widths, open_session, Scorer};
use crate::stats::{histogram_counts, mean_std, quantile_sorted, roc_auc};

pub const QUANTILES: [(&str, f64); 7] = [
    ("p01", 0.01),
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
];
const MODEL_FILE: &str = "model.onnx";

/// A CSV of numbers: its header and its rows.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

pub fn read_csv(path: &Path) -> anyhow::Result<Table> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record
            .with_context(|| format!("{}: cannot read data row {}", path.display(), i + 1))?;
        let row = record
            .iter()
            .zip(&header)
            .map(|(v, col)| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .with_context(|| {
                        format!(
                            "{}: data row {}, column {col:?}: {v:?} is not a finite number",
                            path.display(),
                            i + 1
                        )
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("{} has a header but no data rows", path.display());
    }
    Ok(Table { header, rows })
}

pub fn build(args: &CardArgs) -> anyhow::Result<String> {
    let env = init_runtime(&args.runtime.ort_library)?;
    let session = open_session(&env, &args.model)?;
    let input_name = match &args.input_name {
        Some(n) => n.clone(),
        None => session
            .inputs()
            .first()
            .context("the model has no inputs")?
            .name()
            .to_string(),
    };
    let output_name = match &args.output_name {
        Some(n) => n.clone(),
        None => session
            .outputs()
            .first()
            .context("the model has no outputs")?
            .name()
            .to_string(),
    };
    let (in_width, out_width) = io_widths(&session, &input_name, &output_name)?;
    drop(session);
    let Some(width) = in_width else {
        bail!("the model's input {input_name:?} has a dynamic feature dimension; export it with a fixed number of features")
    };
    let reference = read_csv(&args.reference)?;
    if reference.header.len() != width {
        bail!(
            "{} has {} columns ({}) but the model's input {input_name:?} takes {width} features; the CSV header must name exactly the model's features, in input order",
            args.reference.display(),
            reference.header.len(),
            reference.header.join(", ")
        );
    }
    if out_width != Some(width) {
        bail!("the model's output {output_name:?} does not have {width} columns; an autoencoder must reconstruct its input");
    }
    let features = reference
        .header
        .iter()
        .enumerate()
        .map(|(j, name)| {
            feature_stats(
                name,
                &reference.rows.iter().map(|r| r[j]).collect::<Vec<_>>(),
            )
        })
        .collect::<Vec<_>>();

    let mut card = ModelCard {
        schema_version: SCHEMA_VERSION,
        name: args.name.clone(),
        version: args.version.clone(),
        description: format!(
            "Autoencoder {} with a card built by `inference card`",
            args.name
        ),
        model_file: MODEL_FILE.to_string(),
        input_name,
        output_name,
        features,
        score: ScoreSpec {
            error: ERROR_KIND.to_string(),
            threshold: 1.0,
            threshold_rule: String::new(),
            baseline: ScoreBaseline {
                quantiles: BTreeMap::new(),
                histogram: Histogram {
                    bin_edges: vec![0.0, 1.0],
                    counts: vec![0],
                },
            },
        },
        evaluation: None,
        training: None,
    };
    let mut scorer = Scorer::open(&env, &args.model, &card)?;

    let (calibration, calibration_name) = match &args.calibration {
        Some(path) => {
            let t = read_csv(path)?;
            same_header(&t.header, &reference.header, path)?;
            (t.rows, "calibration")
        }
        None => (reference.rows.clone(), "reference"),
    };
    let mut errors = scorer.errors(&flatten(&calibration))?;
    errors.sort_by(f64::total_cmp);
    card.score.threshold = quantile_sorted(&errors, args.threshold_quantile);
    card.score.threshold_rule = format!(
        "p{} of reconstruction error on the {} rows",
        args.threshold_quantile * 100.0,
        calibration_name
    );
    card.score.baseline = ScoreBaseline {
        quantiles: quantiles(&errors),
        histogram: decile_histogram(&errors),
    };

    if let Some(path) = &args.holdout {
        let t = read_csv(path)?;
        let label_at = t
            .header
            .iter()
            .position(|h| h == &args.label_column)
            .with_context(|| {
                format!(
                    "{} has no label column {:?}",
                    path.display(),
                    args.label_column
                )
            })?;
        let mut header = t.header.clone();
        header.remove(label_at);
        same_header(&header, &reference.header, path)?;
        let labels: Vec<bool> = t.rows.iter().map(|r| r[label_at] != 0.0).collect();
        let rows: Vec<Vec<f64>> = t
            .rows
            .into_iter()
            .map(|mut r| {
                r.remove(label_at);
                r
            })
            .collect();
        let scores = scorer.errors(&flatten(&rows))?;
        let flagged = |want: bool| {
            scores
                .iter()
                .zip(&labels)
                .filter(|(s, &l)| l == want && **s > card.score.threshold)
                .count() as f64
        };
        let positives = labels.iter().filter(|&&l| l).count();
        let negatives = labels.len() - positives;
        card.evaluation = Some(Evaluation {
            holdout_roc_auc: roc_auc(&scores, &labels),
            holdout_benign_rows: Some(negatives as u64),
            holdout_malignant_rows: Some(positives as u64),
            holdout_recall_at_threshold: (positives > 0).then(|| flagged(true) / positives as f64),
            holdout_false_positive_rate: (negatives > 0).then(|| flagged(false) / negatives as f64),
        });
    }
    card.training = Some(json!({
        "source": format!("built by `inference card` from {}", file_name(&args.reference)),
        "train_rows": reference.rows.len(),
        "calibration_rows": calibration.len(),
    }));
    card.check()
        .map_err(|e| anyhow::anyhow!("the card built is inconsistent: {e}"))?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::copy(&args.model, args.out.join(MODEL_FILE))
        .with_context(|| format!("cannot copy the model into {}", args.out.display()))?;
    let text = serde_json::to_string_pretty(&card)? + "\n";
    std::fs::write(args.out.join(CARD_FILE), text)
        .with_context(|| format!("cannot write the card into {}", args.out.display()))?;
    let auc = card
        .evaluation
        .as_ref()
        .and_then(|e| e.holdout_roc_auc)
        .map_or_else(
            || "not measured (no --holdout)".to_string(),
            |a| format!("{a:.4}"),
        );
    Ok(format!(
        "wrote {} ({} features, threshold {:.6}, held-out ROC-AUC {auc})",
        args.out.display(),
        card.width(),
        card.score.threshold
    ))
}

fn feature_stats(name: &str, values: &[f64]) -> FeatureStats {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (mean, std) = mean_std(values);
    let std = if std > 0.0 { std } else { 1.0 };
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    FeatureStats {
        name: name.to_string(),
        mean,
        std,
        min,
        max,
        // A bound for gross errors (units, signs, sentinels), not for anomalies.
        valid_min: if min >= 0.0 {
            0.0
        } else {
            min - 100.0 * (max - min)
        },
        valid_max: max + 100.0 * (max - min),
        quantiles: quantiles(&sorted),
        histogram: decile_histogram(&sorted),
    }
}

/// The drift baseline: bins between the deciles of `sorted` (repeated edges merged).
fn decile_histogram(sorted: &[f64]) -> Histogram {
    let mut edges: Vec<f64> = (0..=10)
        .map(|i| quantile_sorted(sorted, i as f64 / 10.0))
        .collect();
    edges.dedup();
    if edges.len() < 2 {
        edges = vec![sorted[0] - 0.5, sorted[0] + 0.5];
    }
    Histogram {
        counts: histogram_counts(sorted, &edges),
        bin_edges: edges,
    }
}

fn quantiles(sorted: &[f64]) -> BTreeMap<String, f64> {
    QUANTILES
        .iter()
        .map(|(k, q)| (k.to_string(), quantile_sorted(sorted, *q)))
        .collect()
}

fn flatten(rows: &[Vec<f64>]) -> Vec<f32> {
    rows.iter().flatten().map(|&v| v as f32).collect()
}

fn same_header(got: &[String], want: &[String], path: &Path) -> anyhow::Result<()> {
    if got != want {
        bail!(
            "{} has columns ({}) but the reference CSV has ({}); they must match",
            path.display(),
            got.join(", "),
            want.join(", ")
        );
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
