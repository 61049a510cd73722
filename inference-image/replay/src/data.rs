//! The rows a replay draws from. Columns are matched to the model's features by header name, so
//! the CSV's column order does not matter; a `label` column (1 = anomaly) splits normal rows from
//! anomalous ones, and a CSV without one counts as all normal.
//!
//! For a model directory (the default is the bundled `wbc-autoencoder/`) the sources are
//! `holdout.csv` (labelled) and `calibration.csv` (normal). `reference.csv` is never used: it is the
//! model's training data, and replaying it would make the service look better than it is.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::ReplayError;
use crate::model::{Feature, Task};

/// The files read from a model directory, in this order. Not `reference.csv` (training data).
pub const DIR_SOURCES: [&str; 2] = ["holdout.csv", "calibration.csv"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceRow {
    /// In model feature order.
    pub values: Vec<f64>,
    /// 0 = normal, 1 = anomaly (always 0 for a classifier's or regressor's rows).
    pub label: u8,
    /// A classifier's or regressor's true label as feedback sends it: the class, or the value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<serde_json::Value>,
    /// `file.csv:line` (1-based, the header is line 1).
    pub origin: String,
}

#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub normal: Vec<SourceRow>,
    pub anomalous: Vec<SourceRow>,
    pub files: Vec<PathBuf>,
}

impl Dataset {
    /// Loads a model directory (its `holdout.csv` and `calibration.csv`) or one CSV file, for an
    /// autoencoder (the label column says 1 = anomaly).
    pub fn load(
        path: &Path,
        features: &[Feature],
        label_column: &str,
    ) -> Result<Dataset, ReplayError> {
        Self::load_for(path, features, &Task::Autoencoder, label_column)
    }

    /// Loads rows for a model of `task`: for a classifier or a regressor the label column holds
    /// the truth (a class, a value) and every row is sent as normal traffic.
    pub fn load_for(
        path: &Path,
        features: &[Feature],
        task: &Task,
        label_column: &str,
    ) -> Result<Dataset, ReplayError> {
        let mut data = Dataset::default();
        if path.is_dir() {
            for name in DIR_SOURCES {
                let file = path.join(name);
                if file.is_file() {
                    data.add_csv(&file, features, task, label_column)?;
                }
            }
            if data.files.is_empty() {
                return Err(ReplayError::Data(format!(
                    "{} has neither holdout.csv nor calibration.csv; pass a CSV file of rows with --data",
                    path.display()
                )));
            }
        } else {
            data.add_csv(path, features, task, label_column)?;
        }
        Ok(data)
    }

    fn add_csv(
        &mut self,
        file: &Path,
        features: &[Feature],
        task: &Task,
        label_column: &str,
    ) -> Result<(), ReplayError> {
        let shown = file.display().to_string();
        let short = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(file)
            .map_err(|e| {
                ReplayError::Data(format!(
                    "cannot read {shown}: {e}; pass an existing CSV or model directory with --data"
                ))
            })?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| ReplayError::Data(format!("cannot read the header of {shown}: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut columns = Vec::with_capacity(features.len());
        for f in features {
            let at = header.iter().position(|h| h == &f.name).ok_or_else(|| {
                ReplayError::Data(format!(
                    "{shown} has no column {:?}, which the model needs (its header: {}); pass a CSV whose header names the model's features",
                    f.name,
                    header.join(",")
                ))
            })?;
            columns.push(at);
        }
        let label_at = header.iter().position(|h| h == label_column);
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record =
                record.map_err(|e| ReplayError::Data(format!("{shown}, line {line}: {e}")))?;
            let cell = |at: usize, what: &str| -> Result<f64, ReplayError> {
                let text = record.get(at).unwrap_or("");
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        ReplayError::Data(format!(
                            "{shown}, line {line}, column {what:?}: {text:?} is not a finite number; fix or drop that row"
                        ))
                    })
            };
            let values = columns
                .iter()
                .zip(features)
                .map(|(&at, f)| cell(at, &f.name))
                .collect::<Result<Vec<f64>, _>>()?;
            let truth = match (task, label_at) {
                (Task::Autoencoder, _) | (_, None) => None,
                (Task::Regressor, Some(at)) => Some(serde_json::json!(cell(at, label_column)?)),
                (Task::Classifier { classes }, Some(at)) => {
                    let text = record.get(at).unwrap_or("").trim();
                    let number = text.parse::<f64>().ok();
                    let class = classes
                        .iter()
                        .find(|c| c.as_str() == text || (number.is_some() && c.parse::<f64>().ok() == number))
                        .ok_or_else(|| {
                            ReplayError::Data(format!(
                                "{shown}, line {line}: label {text:?} is not one of the model's classes ({})",
                                classes.join(", ")
                            ))
                        })?;
                    Some(serde_json::Value::String(class.clone()))
                }
            };
            let label = match label_at {
                _ if *task != Task::Autoencoder => 0,
                None => 0,
                Some(at) => match cell(at, label_column)? {
                    0.0 => 0,
                    1.0 => 1,
                    v => {
                        return Err(ReplayError::Data(format!(
                            "{shown}, line {line}: label {v} is neither 0 (normal) nor 1 (anomaly)"
                        )))
                    }
                },
            };
            let row = SourceRow {
                values,
                label,
                truth,
                origin: format!("{short}:{line}"),
            };
            if label == 1 {
                self.anomalous.push(row);
            } else {
                self.normal.push(row);
            }
        }
        self.files.push(file.to_path_buf());
        Ok(())
    }

    /// The row with this `origin` (`file.csv:line`), if it was loaded.
    pub fn find(&self, origin: &str) -> Option<&SourceRow> {
        self.normal
            .iter()
            .chain(&self.anomalous)
            .find(|r| r.origin == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelInfo;

    fn bundled() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../model/wbc-autoencoder"
        ))
    }

    #[test]
    fn the_bundled_directory_gives_holdout_and_calibration_rows_but_no_training_rows() {
        let card = ModelInfo::from_model_dir(&bundled()).unwrap();
        let d = Dataset::load(&bundled(), &card.features, "label").unwrap();
        // holdout.csv: 72 benign + 212 malignant; calibration.csv: 71 benign.
        assert_eq!(d.anomalous.len(), 212);
        assert_eq!(d.normal.len(), 72 + 71);
        assert!(d
            .normal
            .iter()
            .all(|r| r.values.len() == 30 && r.label == 0));
        assert!(d.files.iter().all(|f| !f.ends_with("reference.csv")));
        assert!(d.find("calibration.csv:2").is_some());
        assert!(d
            .normal
            .iter()
            .chain(&d.anomalous)
            .all(|r| !r.origin.starts_with("reference")));
    }

    #[test]
    fn columns_are_matched_by_name_and_bad_cells_are_located() {
        let dir = std::env::temp_dir().join(format!("replay-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let features = vec![
            Feature {
                name: "a".into(),
                mean: 0.0,
                std: 1.0,
            },
            Feature {
                name: "b".into(),
                mean: 0.0,
                std: 1.0,
            },
        ];
        let file = dir.join("rows.csv");
        std::fs::write(&file, "label,b,extra,a\n0,2,x,1\n1, 4 ,y,3\n").unwrap();
        let d = Dataset::load(&file, &features, "label").unwrap();
        assert_eq!(d.normal[0].values, vec![1.0, 2.0]);
        assert_eq!(d.anomalous[0].values, vec![3.0, 4.0]);
        assert_eq!(d.anomalous[0].origin, "rows.csv:3");

        std::fs::write(&file, "a,b\n1,\n").unwrap();
        let e = Dataset::load(&file, &features, "label")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column \"b\""), "{e}");
        std::fs::write(&file, "a,c\n1,2\n").unwrap();
        let e = Dataset::load(&file, &features, "label")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column \"b\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
