//! The few model-card fields the replay needs: each feature's name, training mean and standard
//! deviation, in model input order; the task (what a label is, how an answer reads) and the
//! missing-value policy (what a row with a null should get). Read from `GET /v1/model` (so a replay fits whatever model is
//! deployed) or from a model directory's `model_card.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ReplayError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// A label is 1 (anomaly) or 0; an answer has `is_anomaly`.
    #[default]
    Autoencoder,
    /// A label is one of the classes; an answer has `label`.
    Classifier { classes: Vec<String> },
    /// A label is the true value; an answer has `value`.
    Regressor,
}

/// What a row with a missing value gets (the card's `missing_values.policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// The request is refused with 422 naming a null cell.
    #[default]
    Reject,
    /// Every row is scored.
    Impute,
    /// The other rows are scored; each row with a null gets its own error (200).
    PerRow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: Option<String>,
    pub version: Option<String>,
    /// In model input order.
    pub features: Vec<Feature>,
    #[serde(default)]
    pub task: Task,
    #[serde(default)]
    pub missing: MissingPolicy,
}

impl ModelInfo {
    pub fn feature_names(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.name.as_str())
    }

    /// Reads `DIR/model_card.json` (or the file itself when `path` is a file).
    pub fn from_model_dir(path: &Path) -> Result<ModelInfo, ReplayError> {
        let file = if path.is_dir() {
            path.join("model_card.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            ReplayError::Card(format!(
                "cannot read the model card {}: {e}; pass the model directory (the one holding model_card.json) with --model-dir, or leave --model-dir out to use the card of the running service",
                file.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            ReplayError::Card(format!(
                "{} is not valid JSON ({e}); is it a model card?",
                file.display()
            ))
        })?;
        ModelInfo::from_card_json(&value, &file.display().to_string())
    }

    /// Reads a card, or a `GET /v1/model` answer that holds one under `card`. `origin` names where
    /// it came from, for error messages.
    pub fn from_card_json(
        value: &serde_json::Value,
        origin: &str,
    ) -> Result<ModelInfo, ReplayError> {
        let card = value.get("card").unwrap_or(value);
        let bad = |what: String| {
            ReplayError::Card(format!(
                "the model card from {origin} {what}; the replay needs features[].name, features[].mean and features[].std"
            ))
        };
        let features = card
            .get("features")
            .and_then(|f| f.as_array())
            .ok_or_else(|| bad("has no features array".into()))?;
        if features.is_empty() {
            return Err(bad("lists no features".into()));
        }
        let mut out: Vec<Feature> = Vec::with_capacity(features.len());
        for (i, f) in features.iter().enumerate() {
            let name = f
                .get("name")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad(format!("has no name for feature {i}")))?;
            let number = |key: &str| {
                f.get(key)
                    .and_then(|v| v.as_f64())
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(format!("has no finite {key} for feature {name:?}")))
            };
            let mean = number("mean")?;
            let std = number("std")?;
            if std < 0.0 {
                return Err(bad(format!(
                    "gives feature {name:?} a negative std ({std})"
                )));
            }
            if out.iter().any(|o| o.name == name) {
                return Err(bad(format!("names feature {name:?} twice")));
            }
            out.push(Feature {
                name: name.to_string(),
                mean,
                std,
            });
        }
        let text = |key: &str| card.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let task = match card.get("task").and_then(|v| v.as_str()) {
            None | Some("autoencoder") => Task::Autoencoder,
            Some("classifier") => Task::Classifier {
                classes: card
                    .pointer("/classifier/classes")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .filter(|c: &Vec<String>| c.len() >= 2)
                    .ok_or_else(|| bad("is a classifier's without classifier.classes".into()))?,
            },
            Some("regressor") => Task::Regressor,
            Some(other) => return Err(bad(format!("has an unknown task {other:?}"))),
        };
        let missing = match card
            .pointer("/missing_values/policy")
            .and_then(|v| v.as_str())
        {
            None | Some("reject") => MissingPolicy::Reject,
            Some("impute") => MissingPolicy::Impute,
            Some("per_row") => MissingPolicy::PerRow,
            Some(other) => {
                return Err(bad(format!(
                    "has an unknown missing-value policy {other:?}"
                )))
            }
        };
        Ok(ModelInfo {
            name: text("name"),
            version: text("version"),
            features: out,
            task,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_bundled_card_and_a_model_endpoint_answer() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../model/wbc-autoencoder"
        ));
        let m = ModelInfo::from_model_dir(dir).unwrap();
        assert_eq!(m.features.len(), 30);
        assert_eq!(m.features[0].name, "mean_radius");
        assert!(m.features.iter().all(|f| f.std > 0.0));
        let answer = json!({"name": "x", "card": {"name": "m", "version": "2", "features": [
            {"name": "a", "mean": 1.0, "std": 0.5, "min": 0}, {"name": "b", "mean": -1, "std": 2}
        ]}});
        let m = ModelInfo::from_card_json(&answer, "test").unwrap();
        assert_eq!(m.name.as_deref(), Some("m"));
        assert_eq!(m.feature_names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.features[1].mean, -1.0);
        assert_eq!(
            (m.task, m.missing),
            (Task::Autoencoder, MissingPolicy::Reject)
        );
    }

    #[test]
    fn reads_the_task_and_missing_policy_of_the_example_cards() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../model"));
        let wine = ModelInfo::from_model_dir(&dir.join("wine-classifier")).unwrap();
        assert_eq!(
            wine.task,
            Task::Classifier {
                classes: vec!["0".into(), "1".into(), "2".into()]
            }
        );
        let reg = ModelInfo::from_model_dir(&dir.join("diabetes-regressor")).unwrap();
        assert_eq!(reg.task, Task::Regressor);
        let per_row = json!({"task": "regressor", "missing_values": {"policy": "per_row"},
            "features": [{"name": "a", "mean": 1.0, "std": 0.5}]});
        assert_eq!(
            ModelInfo::from_card_json(&per_row, "t").unwrap().missing,
            MissingPolicy::PerRow
        );
    }

    #[test]
    fn a_card_without_std_is_refused_with_what_is_missing() {
        let e =
            ModelInfo::from_card_json(&json!({"features": [{"name": "a", "mean": 1.0}]}), "here")
                .unwrap_err()
                .to_string();
        assert!(e.contains("no finite std for feature \"a\""), "{e}");
        let e = ModelInfo::from_model_dir(Path::new("/nonexistent/dir"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--model-dir"), "{e}");
    }
}
