//! The model card: what the service knows about the model it serves (its task, feature order and
//! how features reach the graph's inputs, training statistics, the score and its threshold, what to
//! do with missing values). It is the contract between `model/train.py`, the `card` subcommand and
//! the scoring code. Cards written before tasks existed are autoencoder cards and read unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const CARD_FILE: &str = "model_card.json";
pub const SCHEMA_VERSION: u32 = 1;
/// The only reconstruction-error definition the scorer implements.
pub const ERROR_KIND: &str = "mean_squared_standardized";
/// The score of a binary classifier: the probability of the positive class.
pub const POSITIVE_PROBABILITY: &str = "positive_class_probability";
/// The score of a multi-class classifier: the probability of the predicted class.
pub const PREDICTED_PROBABILITY: &str = "predicted_class_probability";
/// The score of a regressor: the predicted value.
pub const PREDICTION: &str = "prediction";

/// What the model predicts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Reconstructs its input; a row is anomalous when the reconstruction error is large.
    #[default]
    Autoencoder,
    /// Predicts a class with per-class probabilities (binary or multi-class).
    Classifier,
    /// Predicts one number.
    Regressor,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Autoencoder => "autoencoder",
            Task::Classifier => "classifier",
            Task::Regressor => "regressor",
        }
    }
}

/// The element type a graph input takes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    Float32,
    Float64,
    Int64,
}

/// One graph input and the features it takes, in column order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: InputType,
    pub features: Vec<String>,
}

/// How a classifier's probabilities come out of the graph.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProbabilityLayout {
    /// A float tensor [batch, classes], columns in `classes` order.
    Tensor,
    /// A sequence of maps int64 -> float (ZipMap over integer labels).
    MapInt64,
    /// A sequence of maps string -> float (ZipMap over string labels).
    MapString,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassifierSpec {
    /// The class labels as the graph names them, in the order of the probability columns.
    pub classes: Vec<String>,
    pub probabilities: ProbabilityLayout,
    /// Binary only: the class whose probability is the score and is compared with the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
    /// How often each class was predicted on known rows: the baseline the live predicted-class
    /// distribution is compared with (`model.class_drift`). Cards without it get no class drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_baseline: Option<PredictedBaseline>,
}

/// Which rows a classifier's predicted-class baseline was counted on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    /// The labelled held-out rows (`inference card --holdout`).
    Holdout,
    /// The reference rows (when there is no holdout).
    Reference,
}

/// The classes a classifier predicted on the baseline rows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PredictedBaseline {
    pub source: BaselineSource,
    /// Rows predicted as each class, in `classes` order (a binary classifier's prediction is at
    /// its decision threshold, as the service predicts).
    pub counts: Vec<u64>,
}

/// What happens to a row with a missing value (null or left out).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// The whole request is refused (422), naming every missing value.
    #[default]
    Reject,
    /// The value is replaced by the training mean or median and the row is scored.
    Impute,
    /// The rows without problems are scored; each refused row gets its own error (status 200).
    PerRow,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum ImputeWith {
    #[default]
    Mean,
    Median,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MissingValues {
    #[serde(default)]
    pub policy: MissingPolicy,
    #[serde(default)]
    pub impute_with: ImputeWith,
}

impl MissingValues {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    pub schema_version: u32,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Cards without a task are autoencoder cards.
    #[serde(default)]
    pub task: Task,
    pub model_file: String,
    /// The graph input when `inputs` is empty: one float32 tensor [batch, features].
    pub input_name: String,
    /// Autoencoder: the reconstruction. Classifier: the probabilities. Regressor: the prediction.
    pub output_name: String,
    /// How the features reach the graph when it is not one float32 matrix (several inputs,
    /// float64 or int64 inputs, one named input per feature).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<ClassifierSpec>,
    #[serde(default, skip_serializing_if = "MissingValues::is_default")]
    pub missing_values: MissingValues,
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
    /// The reference's distinct values when there are few of them (a flag, a category code, a
    /// small count), one per histogram bin in order; empty for a continuous feature, whose
    /// histogram is between deciles. Cards written before it have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    pub bin_edges: Vec<f64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreSpec {
    /// What the per-row score is: the reconstruction error's definition (autoencoder), the
    /// positive or predicted class's probability (classifier), the prediction (regressor).
    pub error: String,
    /// Autoencoder: a row is anomalous above it. Binary classifier: the positive class is
    /// predicted above it. None for multi-class classifiers and regressors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub threshold_rule: String,
    pub baseline: ScoreBaseline,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreBaseline {
    pub quantiles: BTreeMap<String, f64>,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_log_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_mae: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_rmse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_r2: Option<f64>,
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
        self.check_score()?;
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
            check_levels(&f.levels, &f.histogram)
                .map_err(|e| format!("feature {:?}: {e}", f.name))?;
        }
        self.check_inputs()?;
        check_histogram(&self.score.baseline.histogram).map_err(|e| format!("score baseline: {e}"))
    }

    fn check_score(&self) -> Result<(), String> {
        match (self.task, &self.classifier) {
            (Task::Classifier, None) => return Err(
                "a classifier card needs a \"classifier\" section (classes and probability layout)"
                    .into(),
            ),
            (Task::Classifier, Some(c)) => check_classes(c)?,
            (_, Some(_)) => {
                return Err(format!(
                    "the card has a \"classifier\" section but its task is {}",
                    self.task.as_str()
                ))
            }
            (_, None) => {}
        }
        let s = &self.score;
        let classes = self.classifier.as_ref().map_or(0, |c| c.classes.len());
        let want = match (self.task, classes) {
            (Task::Autoencoder, _) => ERROR_KIND,
            (Task::Classifier, 2) => POSITIVE_PROBABILITY,
            (Task::Classifier, _) => PREDICTED_PROBABILITY,
            (Task::Regressor, _) => PREDICTION,
        };
        if s.error != want {
            return Err(format!(
                "score.error is {:?}; for a {} this service computes {want:?}",
                s.error,
                self.task_phrase()
            ));
        }
        match (self.task, classes) {
            (Task::Autoencoder, _) => match s.threshold {
                Some(t) if t.is_finite() && t > 0.0 => {}
                other => {
                    return Err(format!(
                        "score.threshold must be a positive number, got {}",
                        describe(other)
                    ))
                }
            },
            (Task::Classifier, 2) => match s.threshold {
                Some(t) if t > 0.0 && t < 1.0 => {}
                other => {
                    return Err(format!(
                        "score.threshold (the decision threshold) must be between 0 and 1, got {}",
                        describe(other)
                    ))
                }
            },
            _ => {
                if let Some(t) = s.threshold {
                    return Err(format!(
                        "score.threshold is {t}, but a {} has no threshold",
                        self.task_phrase()
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_inputs(&self) -> Result<(), String> {
        if self.inputs.is_empty() {
            return Ok(());
        }
        let mut names = std::collections::HashSet::new();
        let mut fed = std::collections::HashSet::new();
        for input in &self.inputs {
            if !names.insert(input.name.as_str()) {
                return Err(format!("input {:?} is listed twice", input.name));
            }
            if input.features.is_empty() {
                return Err(format!("input {:?} takes no features", input.name));
            }
            for f in &input.features {
                if !self.features.iter().any(|c| &c.name == f) {
                    return Err(format!(
                        "input {:?} takes {f:?}, which is not a feature of the card",
                        input.name
                    ));
                }
                if !fed.insert(f.as_str()) {
                    return Err(format!("feature {f:?} is fed to more than one input"));
                }
            }
        }
        if let Some(f) = self
            .features
            .iter()
            .find(|f| !fed.contains(f.name.as_str()))
        {
            return Err(format!("feature {:?} is not fed to any input", f.name));
        }
        Ok(())
    }

    /// "binary classifier", "3-class classifier", "regressor", "autoencoder".
    pub fn task_phrase(&self) -> String {
        match (&self.task, &self.classifier) {
            (Task::Classifier, Some(c)) if c.classes.len() == 2 => "binary classifier".into(),
            (Task::Classifier, Some(c)) => format!("{}-class classifier", c.classes.len()),
            (task, _) => task.as_str().into(),
        }
    }

    /// The graph's inputs: `inputs`, or one float32 matrix named `input_name` with every feature.
    pub fn graph_inputs(&self) -> Vec<InputSpec> {
        if !self.inputs.is_empty() {
            return self.inputs.clone();
        }
        vec![InputSpec {
            name: self.input_name.clone(),
            dtype: InputType::Float32,
            features: self.features.iter().map(|f| f.name.clone()).collect(),
        }]
    }

    /// Per feature, whether the graph takes it as an integer (int64 input).
    pub fn integer_features(&self) -> Vec<bool> {
        let ints: std::collections::HashSet<&str> = self
            .inputs
            .iter()
            .filter(|i| i.dtype == InputType::Int64)
            .flat_map(|i| i.features.iter().map(String::as_str))
            .collect();
        self.features
            .iter()
            .map(|f| ints.contains(f.name.as_str()))
            .collect()
    }

    /// Per feature, the value a missing one is replaced by under the `impute` policy.
    pub fn impute_values(&self) -> Vec<f64> {
        let integer = self.integer_features();
        self.features
            .iter()
            .zip(integer)
            .map(|(f, int)| {
                let v = match self.missing_values.impute_with {
                    ImputeWith::Mean => f.mean,
                    ImputeWith::Median => f.quantiles.get("p50").copied().unwrap_or(f.mean),
                };
                if int {
                    v.round()
                } else {
                    v
                }
            })
            .collect()
    }

    /// A classifier's predicted-class baseline, if its card has one.
    pub fn predicted_baseline(&self) -> Option<&PredictedBaseline> {
        self.classifier.as_ref()?.predicted_baseline.as_ref()
    }

    /// The binary classifier's positive class index, if this is one.
    pub fn positive_class(&self) -> Option<usize> {
        let c = self.classifier.as_ref()?;
        if c.classes.len() != 2 {
            return None;
        }
        Some(
            c.positive_class
                .as_ref()
                .and_then(|p| c.classes.iter().position(|k| k == p))
                .unwrap_or(1),
        )
    }

    pub fn feature_names(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.name.as_str())
    }

    pub fn width(&self) -> usize {
        self.features.len()
    }
}

fn describe(t: Option<f64>) -> String {
    t.map_or_else(|| "none".to_string(), |t| t.to_string())
}

fn check_classes(c: &ClassifierSpec) -> Result<(), String> {
    if c.classes.len() < 2 {
        return Err(format!(
            "a classifier needs at least 2 classes, the card lists {}",
            c.classes.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for k in &c.classes {
        if !seen.insert(k.as_str()) {
            return Err(format!("class {k:?} is listed twice"));
        }
        if c.probabilities == ProbabilityLayout::MapInt64 && k.parse::<i64>().is_err() {
            return Err(format!(
                "class {k:?} is not an integer, but the probabilities are a map keyed by int64"
            ));
        }
    }
    if let Some(p) = &c.positive_class {
        if c.classes.len() != 2 {
            return Err("positive_class is only for binary classifiers".into());
        }
        if !c.classes.contains(p) {
            return Err(format!(
                "positive_class {p:?} is not one of the classes {:?}",
                c.classes
            ));
        }
    }
    if let Some(b) = &c.predicted_baseline {
        if b.counts.len() != c.classes.len() {
            return Err(format!(
                "classifier.predicted_baseline has {} counts for {} classes; it needs one per class, in class order",
                b.counts.len(),
                c.classes.len()
            ));
        }
        if b.counts.iter().all(|&n| n == 0) {
            return Err("classifier.predicted_baseline counts no rows".into());
        }
    }
    Ok(())
}

/// Levels, when given, are one per histogram bin, each inside its own bin.
fn check_levels(levels: &[f64], h: &Histogram) -> Result<(), String> {
    if levels.is_empty() {
        return Ok(());
    }
    if levels.len() != h.counts.len() {
        return Err(format!(
            "has {} levels for {} histogram bins; it needs one level per bin",
            levels.len(),
            h.counts.len()
        ));
    }
    for (i, &l) in levels.iter().enumerate() {
        let (lo, hi) = (h.bin_edges[i], h.bin_edges[i + 1]);
        if !(lo < l && l < hi) {
            return Err(format!(
                "level {l} is not inside its histogram bin ({lo}, {hi})"
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> ModelCard {
        ModelCard::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../model/wbc-autoencoder"
        )))
        .unwrap()
    }

    #[test]
    fn levels_must_match_the_histogram_bin_for_bin() {
        let mut card = bundled();
        assert!(card.features[0].levels.is_empty());
        card.features[0].levels = vec![1.0];
        let err = card.check().unwrap_err();
        assert!(err.contains("1 levels for 10 histogram bins"), "{err}");
        let h = &card.features[0].histogram;
        // One per bin, but each on its bin's lower edge: a value there would be binned by convention.
        card.features[0].levels = h.bin_edges[..h.counts.len()].to_vec();
        let err = card.check().unwrap_err();
        assert!(err.contains("is not inside its histogram bin"), "{err}");
        let e = &card.features[0].histogram.bin_edges;
        card.features[0].levels = e.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        card.check().unwrap();
    }

    #[test]
    fn a_card_written_before_tasks_reads_as_an_autoencoder_and_writes_back_the_same() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/wbc-autoencoder/model_card.json"),
        )
        .unwrap();
        assert!(!text.contains("\"task\""));
        let card = bundled();
        assert_eq!(card.task, Task::Autoencoder);
        assert_eq!(card.missing_values, MissingValues::default());
        assert_eq!(card.graph_inputs().len(), 1);
        let written: serde_json::Value = serde_json::to_value(&card).unwrap();
        for absent in ["inputs", "classifier", "missing_values"] {
            assert!(
                written.get(absent).is_none(),
                "{absent} written for an old card"
            );
        }
    }

    fn classifier(classes: &[&str], layout: ProbabilityLayout) -> ModelCard {
        let mut card = bundled();
        card.task = Task::Classifier;
        card.classifier = Some(ClassifierSpec {
            classes: classes.iter().map(|c| c.to_string()).collect(),
            probabilities: layout,
            positive_class: None,
            predicted_baseline: None,
        });
        card.score.error = if classes.len() == 2 {
            POSITIVE_PROBABILITY
        } else {
            PREDICTED_PROBABILITY
        }
        .into();
        card.score.threshold = (classes.len() == 2).then_some(0.5);
        card
    }

    #[test]
    fn each_task_checks_its_score_threshold_and_classes() {
        classifier(&["no", "yes"], ProbabilityLayout::Tensor)
            .check()
            .unwrap();
        classifier(&["0", "1", "2"], ProbabilityLayout::MapInt64)
            .check()
            .unwrap();
        let err = |card: ModelCard| card.check().unwrap_err();

        let mut c = classifier(&["no", "yes"], ProbabilityLayout::Tensor);
        c.score.threshold = Some(1.5);
        assert!(err(c).contains("between 0 and 1"));
        let mut c = classifier(&["a", "b", "c"], ProbabilityLayout::Tensor);
        c.score.threshold = Some(0.5);
        assert!(err(c).contains("has no threshold"));
        assert!(
            err(classifier(&["a", "b"], ProbabilityLayout::MapInt64)).contains("not an integer")
        );
        assert!(err(classifier(&["a", "a"], ProbabilityLayout::Tensor)).contains("twice"));
        assert!(err(classifier(&["a"], ProbabilityLayout::Tensor)).contains("at least 2"));
        let mut c = classifier(&["no", "yes"], ProbabilityLayout::Tensor);
        c.classifier.as_mut().unwrap().positive_class = Some("maybe".into());
        assert!(err(c).contains("not one of the classes"));
        let mut c = classifier(&["no", "yes"], ProbabilityLayout::Tensor);
        c.classifier = None;
        assert!(err(c).contains("needs a \"classifier\" section"));
        let with_baseline = |counts: &[u64]| {
            let mut c = classifier(&["a", "b", "c"], ProbabilityLayout::Tensor);
            c.classifier.as_mut().unwrap().predicted_baseline = Some(PredictedBaseline {
                source: BaselineSource::Holdout,
                counts: counts.to_vec(),
            });
            c
        };
        with_baseline(&[3, 0, 5]).check().unwrap();
        assert!(err(with_baseline(&[3, 5])).contains("2 counts for 3 classes"));
        assert!(err(with_baseline(&[0, 0, 0])).contains("counts no rows"));

        let mut r = bundled();
        r.task = Task::Regressor;
        assert!(err(r.clone()).contains("\"prediction\""));
        r.score.error = PREDICTION.into();
        assert!(err(r.clone()).contains("has no threshold"));
        r.score.threshold = None;
        r.check().unwrap();
    }

    #[test]
    fn the_predicted_class_baseline_is_optional_and_written_only_when_present() {
        let old: ClassifierSpec =
            serde_json::from_str(r#"{"classes": ["a", "b"], "probabilities": "tensor"}"#).unwrap();
        assert_eq!(old.predicted_baseline, None);
        assert!(serde_json::to_value(&old)
            .unwrap()
            .get("predicted_baseline")
            .is_none());
        let new: ClassifierSpec = serde_json::from_str(
            r#"{"classes": ["a", "b"], "probabilities": "tensor",
                "predicted_baseline": {"source": "reference", "counts": [7, 3]}}"#,
        )
        .unwrap();
        assert_eq!(
            new.predicted_baseline,
            Some(PredictedBaseline {
                source: BaselineSource::Reference,
                counts: vec![7, 3]
            })
        );
        assert_eq!(
            serde_json::to_value(&new).unwrap()["predicted_baseline"],
            serde_json::json!({"source": "reference", "counts": [7, 3]})
        );
    }

    #[test]
    fn inputs_must_feed_every_feature_once() {
        let mut card = bundled();
        let names: Vec<String> = card.features.iter().map(|f| f.name.clone()).collect();
        card.inputs = names
            .iter()
            .map(|n| InputSpec {
                name: n.clone(),
                dtype: InputType::Float64,
                features: vec![n.clone()],
            })
            .collect();
        card.check().unwrap();
        assert_eq!(card.graph_inputs().len(), names.len());
        let mut twice = card.clone();
        twice.inputs[1].features = vec![names[0].clone()];
        assert!(twice.check().unwrap_err().contains("more than one input"));
        let mut unfed = card.clone();
        unfed.inputs.pop();
        assert!(unfed.check().unwrap_err().contains("not fed to any input"));
        let mut unknown = card;
        unknown.inputs[0].features = vec!["nope".into()];
        assert!(unknown
            .check()
            .unwrap_err()
            .contains("not a feature of the card"));
    }
}
