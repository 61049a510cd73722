//! The model card: what the service knows about the model it serves (feature order, training
//! statistics, the anomaly threshold). It is the contract between `model/train.py`, the `card`
//! subcommand and the scoring code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const CARD_FILE: &str = "model_card.json";
pub const SCHEMA_VERSION: u32 = 1;
/// The only reconstruction-error definition the scorer implements.
pub const ERROR_KIND: &str = "mean_squared_standardized";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    pub schema_version: u32,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub model_file: String,
    pub input_name: String,
    pub output_name: String,
    pub features: Vec<FeatureStats>,
    pub score: ScoreSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FeatureStats {
    pub name: String,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    pub valid_min: f64,
    pub valid_max: f64,
    pub quantiles: BTreeMap<String, f64>,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    pub bin_edges: Vec<f64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreSpec {
    pub error: String,
    pub threshold: f64,
    pub threshold_rule: String,
    pub baseline: ScoreBaseline,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreBaseline {
    pub quantiles: BTreeMap<String, f64>,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    pub holdout_roc_auc: Option<f64>,
    #[serde(default)]
    pub holdout_benign_rows: Option<u64>,
    #[serde(default)]
    pub holdout_malignant_rows: Option<u64>,
    #[serde(default)]
    pub holdout_recall_at_threshold: Option<f64>,
    #[serde(default)]
    pub holdout_false_positive_rate: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("cannot read the model card {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the model card {path} is not valid JSON for schema version {SCHEMA_VERSION}: {source}"
    )]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the model card {path} is inconsistent: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl ModelCard {
    /// Reads and checks `<dir>/model_card.json`.
    pub fn load(dir: &Path) -> Result<Self, CardError> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| CardError::Read {
            path: path.clone(),
            source,
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|source| CardError::Parse {
            path: path.clone(),
            source,
        })?;
        card.check()
            .map_err(|reason| CardError::Invalid { path, reason })?;
        Ok(card)
    }

    /// Structural checks that the scorer relies on.
    pub fn check(&self) -> Result<(), String> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema_version is {}, this service reads {SCHEMA_VERSION}",
                self.schema_version
            ));
        }
        if self.score.error != ERROR_KIND {
            return Err(format!(
                "score.error is {:?}, this service computes {ERROR_KIND:?}",
                self.score.error
            ));
        }
        if !(self.score.threshold.is_finite() && self.score.threshold > 0.0) {
            return Err(format!(
                "score.threshold must be a positive number, got {}",
                self.score.threshold
            ));
        }
        if self.features.is_empty() {
            return Err("features is empty".into());
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            if !seen.insert(f.name.as_str()) {
                return Err(format!("feature {:?} is listed twice", f.name));
            }
            if !(f.std.is_finite() && f.std > 0.0) {
                return Err(format!(
                    "feature {:?} has std {}, expected > 0",
                    f.name, f.std
                ));
            }
            check_histogram(&f.histogram).map_err(|e| format!("feature {:?}: {e}", f.name))?;
        }
        check_histogram(&self.score.baseline.histogram).map_err(|e| format!("score baseline: {e}"))
    }

    pub fn feature_names(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.name.as_str())
    }

    pub fn width(&self) -> usize {
        self.features.len()
    }
}

fn check_histogram(h: &Histogram) -> Result<(), String> {
    if h.bin_edges.len() < 2 || h.counts.len() + 1 != h.bin_edges.len() {
        return Err(format!(
            "histogram has {} edges and {} counts; expected counts = edges - 1 >= 1",
            h.bin_edges.len(),
            h.counts.len()
        ));
    }
    if h.bin_edges
        .windows(2)
        .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
    {
        return Err("histogram bin edges are not strictly increasing".into());
    }
    Ok(())
}
