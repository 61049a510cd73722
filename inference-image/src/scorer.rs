//! One ONNX Runtime session and what turns its outputs into the task's predictions: a
//! reconstruction into an error (autoencoder), probabilities into a class (classifier), one column
//! into a value (regressor). A `Scorer` is owned by exactly one worker thread (`Session::run` takes
//! `&mut self`).

use std::path::Path;

use ort::environment::Environment;
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::{DynMapValueType, DynValue, Tensor, TensorElementType, TensorRef, ValueType};

use crate::card::{InputType, ModelCard, ProbabilityLayout, Task};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot load ONNX Runtime from {path}: {reason}. Set ORT_DYLIB_PATH (or --ort-library) to the absolute path of libonnxruntime.so (it ships in the onnxruntime PyPI wheel under onnxruntime/capi/)")]
    Runtime { path: String, reason: String },
    #[error("cannot load the ONNX model {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("the ONNX model does not match its model card: {0}")]
    Mismatch(String),
    #[error("ONNX Runtime failed to run the model: {0}")]
    Run(String),
}

/// Loads the ONNX Runtime shared library and creates the process-wide environment, once.
/// Later calls return the same environment whatever path they pass.
pub fn init_runtime(library: &Path) -> Result<Environment, ModelError> {
    static ENV: std::sync::OnceLock<Result<Environment, String>> = std::sync::OnceLock::new();
    let result = ENV.get_or_init(|| {
        let bare_name = library.components().count() == 1;
        if !bare_name && !library.is_file() {
            return Err("no such file".to_string());
        }
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("inference")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    });
    result.clone().map_err(|reason| ModelError::Runtime {
        path: library.display().to_string(),
        reason,
    })
}

/// What a forward pass gives for a batch of rows, in row order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    /// The one number per row that monitoring watches: the reconstruction error (autoencoder),
    /// the positive class's probability (binary classifier), the predicted class's probability
    /// (multi-class classifier), the predicted value (regressor).
    pub scores: Vec<f64>,
    /// Classifier: the predicted class per row (an index into the card's classes).
    pub classes: Vec<u32>,
    /// Classifier: every class's probability, row-major.
    pub probabilities: Vec<f32>,
}

impl Outputs {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The rows in `start..end`.
    pub fn slice(&self, start: usize, end: usize) -> Outputs {
        let per_row = if self.scores.is_empty() {
            0
        } else {
            self.probabilities.len() / self.scores.len()
        };
        Outputs {
            scores: self.scores[start..end].to_vec(),
            classes: if self.classes.is_empty() {
                Vec::new()
            } else {
                self.classes[start..end].to_vec()
            },
            probabilities: self.probabilities[start * per_row..end * per_row].to_vec(),
        }
    }
}

/// How the rows become the graph's inputs.
struct Feed {
    inputs: Vec<FeedInput>,
    /// The one float32 input takes every feature in card order: the rows are fed as they are.
    plain: bool,
}

struct FeedInput {
    name: String,
    dtype: InputType,
    /// Card feature indices, in the input's column order.
    columns: Vec<usize>,
}

/// How the task's answer is read from the outputs.
enum Decode {
    Reconstruction {
        output: String,
        inv_std: Vec<f64>,
    },
    Probabilities {
        output: String,
        layout: ProbabilityLayout,
        classes: Vec<String>,
        /// Binary: the positive class and the decision threshold.
        binary: Option<(usize, f64)>,
    },
    Value {
        output: String,
    },
}

pub struct Scorer {
    session: Session,
    width: usize,
    feed: Feed,
    decode: Decode,
}

impl Scorer {
    /// Opens `model_path` with one intra-op thread and checks its inputs and outputs against the card.
    pub fn open(
        env: &Environment,
        model_path: &Path,
        card: &ModelCard,
    ) -> Result<Self, ModelError> {
        let session = open_session(env, model_path)?;
        let width = card.width();
        let feed = feed(&session, card)?;
        let decode = decode(&session, card)?;
        Ok(Self {
            session,
            width,
            feed,
            decode,
        })
    }

    /// Runs the model on `rows` (row-major, the card's width per row, card order). Rows are
    /// independent: a row far enough outside the training range to overflow an autoencoder gets a
    /// non-finite error and does not affect the others.
    pub fn score(&mut self, rows: &[f64]) -> Result<Outputs, ModelError> {
        let n = rows.len() / self.width;
        let run = |e: ort::Error| ModelError::Run(e.to_string());
        let mut feeds: Vec<(String, DynValue)> = Vec::with_capacity(self.feed.inputs.len());
        let plain32: Vec<f32>;
        let outputs = if self.feed.plain {
            plain32 = rows.iter().map(|&v| v as f32).collect();
            let input = TensorRef::from_array_view(([n, self.width], &plain32[..])).map_err(run)?;
            self.session.run(ort::inputs![input]).map_err(run)?
        } else {
            for input in &self.feed.inputs {
                let k = input.columns.len();
                let column = |r: usize, c: usize| rows[r * self.width + c];
                let cells = (0..n).flat_map(|r| input.columns.iter().map(move |&c| (r, c)));
                let value: DynValue = match input.dtype {
                    InputType::Float32 => {
                        let data: Vec<f32> = cells.map(|(r, c)| column(r, c) as f32).collect();
                        Tensor::from_array(([n, k], data)).map_err(run)?.into_dyn()
                    }
                    InputType::Float64 => {
                        let data: Vec<f64> = cells.map(|(r, c)| column(r, c)).collect();
                        Tensor::from_array(([n, k], data)).map_err(run)?.into_dyn()
                    }
                    InputType::Int64 => {
                        let data: Vec<i64> = cells.map(|(r, c)| column(r, c) as i64).collect();
                        Tensor::from_array(([n, k], data)).map_err(run)?.into_dyn()
                    }
                };
                feeds.push((input.name.clone(), value));
            }
            self.session.run(feeds).map_err(run)?
        };
        match &self.decode {
            Decode::Reconstruction { output, inv_std } => {
                let recon = floats(&outputs[output.as_str()], output)?;
                if recon.len() != rows.len() {
                    return Err(ModelError::Run(format!(
                        "output {output:?} has {} values for {n} rows of {} features",
                        recon.len(),
                        self.width
                    )));
                }
                let scores = rows
                    .chunks_exact(self.width)
                    .zip(recon.chunks_exact(self.width))
                    .map(|(x, xhat)| reconstruction_error(x, xhat, inv_std))
                    .collect();
                Ok(Outputs {
                    scores,
                    ..Outputs::default()
                })
            }
            Decode::Value { output } => {
                let values = floats(&outputs[output.as_str()], output)?;
                if values.len() != n {
                    return Err(ModelError::Run(format!(
                        "output {output:?} has {} values for {n} rows",
                        values.len()
                    )));
                }
                Ok(Outputs {
                    scores: values.iter().map(|&v| f64::from(v)).collect(),
                    ..Outputs::default()
                })
            }
            Decode::Probabilities {
                output,
                layout,
                classes,
                binary,
            } => {
                let value = &outputs[output.as_str()];
                let probabilities = match layout {
                    ProbabilityLayout::Tensor => floats(value, output)?,
                    ProbabilityLayout::MapInt64 | ProbabilityLayout::MapString => {
                        from_maps(value, *layout, classes)?
                    }
                };
                let k = classes.len();
                if probabilities.len() != n * k {
                    return Err(ModelError::Run(format!(
                        "output {output:?} has {} probabilities for {n} rows of {k} classes",
                        probabilities.len()
                    )));
                }
                let mut scores = Vec::with_capacity(n);
                let mut predicted = Vec::with_capacity(n);
                for p in probabilities.chunks_exact(k) {
                    let (class, score) = match binary {
                        Some((positive, threshold)) => {
                            let score = f64::from(p[*positive]);
                            let class = if score > *threshold {
                                *positive
                            } else {
                                1 - *positive
                            };
                            (class, score)
                        }
                        None => {
                            let class = argmax(p);
                            (class, f64::from(p[class]))
                        }
                    };
                    scores.push(score);
                    predicted.push(class as u32);
                }
                Ok(Outputs {
                    scores,
                    classes: predicted,
                    probabilities,
                })
            }
        }
    }
}

/// The index of the largest value, the first one on ties (as ONNX's ArgMax).
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// A float32 or float64 tensor's values as float32 (probabilities, reconstructions, predictions).
fn floats(value: &DynValue, name: &str) -> Result<Vec<f32>, ModelError> {
    if let Ok((_, v)) = value.try_extract_tensor::<f32>() {
        return Ok(v.to_vec());
    }
    if let Ok((_, v)) = value.try_extract_tensor::<f64>() {
        return Ok(v.iter().map(|&x| x as f32).collect());
    }
    Err(ModelError::Run(format!(
        "output {name:?} is {}, not a float tensor",
        value.dtype()
    )))
}

/// ZipMap's sequence of maps (one per row) as row-major probabilities in `classes` order.
fn from_maps(
    value: &DynValue,
    layout: ProbabilityLayout,
    classes: &[String],
) -> Result<Vec<f32>, ModelError> {
    let run = |e: ort::Error| ModelError::Run(e.to_string());
    let maps = value
        .try_extract_sequence::<DynMapValueType>()
        .map_err(run)?;
    let mut out = Vec::with_capacity(maps.len() * classes.len());
    for map in &maps {
        let row_start = out.len();
        match layout {
            ProbabilityLayout::MapInt64 => {
                let pairs = map.try_extract_key_values::<i64, f32>().map_err(run)?;
                for class in classes {
                    let key: i64 = class.parse().unwrap_or(i64::MIN);
                    out.push(pairs.iter().find(|(k, _)| *k == key).map_or(0.0, |p| p.1));
                }
            }
            _ => {
                let pairs = map.try_extract_key_values::<String, f32>().map_err(run)?;
                for class in classes {
                    out.push(pairs.iter().find(|(k, _)| k == class).map_or(0.0, |p| p.1));
                }
            }
        }
        debug_assert_eq!(out.len() - row_start, classes.len());
    }
    Ok(out)
}

pub fn reconstruction_error(x: &[f64], xhat: &[f32], inv_std: &[f64]) -> f64 {
    let sum: f64 = x
        .iter()
        .zip(xhat)
        .zip(inv_std)
        .map(|((&a, &b), &s)| {
            // The model saw the float32 value, so the difference is taken on it too.
            let d = (f64::from(a as f32) - f64::from(b)) * s;
            d * d
        })
        .sum();
    sum / x.len() as f64
}

pub fn open_session(env: &Environment, model_path: &Path) -> Result<Session, ModelError> {
    let load_err = |e: &dyn std::fmt::Display| ModelError::Load {
        path: model_path.display().to_string(),
        reason: e.to_string(),
    };
    if !model_path.is_file() {
        return Err(load_err(&"no such file"));
    }
    Session::builder(env)
        .map_err(|e| load_err(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| load_err(&e))?
        .with_intra_threads(1)
        .map_err(|e| load_err(&e))?
        .commit_from_file(model_path)
        .map_err(|e| load_err(&e))
}

/// The graph's inputs, matched with the card's: every one exists, takes [batch, n] of its type,
/// and the graph has no input the card does not feed.
fn feed(session: &Session, card: &ModelCard) -> Result<Feed, ModelError> {
    let specs = card.graph_inputs();
    let graph: Vec<(&str, &ValueType)> = session
        .inputs()
        .iter()
        .map(|o| (o.name(), o.dtype()))
        .collect();
    let names: Vec<&str> = graph.iter().map(|(n, _)| *n).collect();
    if let Some((missing, _)) = graph
        .iter()
        .find(|(n, _)| !specs.iter().any(|s| s.name == *n))
    {
        return Err(ModelError::Mismatch(format!(
            "the model has an input {missing:?} that the card does not feed (the model's inputs are {names:?})"
        )));
    }
    let mut inputs = Vec::with_capacity(specs.len());
    for spec in &specs {
        let Some((_, dtype)) = graph.iter().find(|(n, _)| *n == spec.name) else {
            return Err(ModelError::Mismatch(format!(
                "the model has no input named {:?} (it has {names:?})",
                spec.name
            )));
        };
        let (ty, shape) = tensor_of(dtype).ok_or_else(|| {
            ModelError::Mismatch(format!("input {:?} is {dtype}, not a tensor", spec.name))
        })?;
        let want = element_type(spec.dtype);
        if ty != want {
            return Err(ModelError::Mismatch(format!(
                "input {:?} takes {ty} but the card feeds it {want}",
                spec.name
            )));
        }
        let k = spec.features.len();
        if shape.len() != 2 || (shape[1] >= 0 && shape[1] as usize != k) {
            return Err(ModelError::Mismatch(format!(
                "input {:?} has shape {shape:?}; the card feeds it [batch, {k}]",
                spec.name
            )));
        }
        if shape[1] < 0 {
            return Err(ModelError::Mismatch(format!(
                "input {:?} takes a dynamic number of features; the card needs it fixed at {k}",
                spec.name
            )));
        }
        let columns = spec
            .features
            .iter()
            .map(|f| {
                card.features
                    .iter()
                    .position(|c| &c.name == f)
                    .expect("checked by the card")
            })
            .collect();
        inputs.push(FeedInput {
            name: spec.name.clone(),
            dtype: spec.dtype,
            columns,
        });
    }
    let plain = inputs.len() == 1
        && inputs[0].dtype == InputType::Float32
        && inputs[0].columns.iter().enumerate().all(|(i, &c)| i == c);
    Ok(Feed { inputs, plain })
}

fn decode(session: &Session, card: &ModelCard) -> Result<Decode, ModelError> {
    let output = card.output_name.clone();
    let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let dtype = session
        .outputs()
        .iter()
        .find(|o| o.name() == output)
        .map(|o| o.dtype().clone())
        .ok_or_else(|| {
            ModelError::Mismatch(format!(
                "the model has no output named {output:?} (it has {names:?})"
            ))
        })?;
    let width = card.width();
    let float_columns = |what: &str| -> Result<Option<i64>, ModelError> {
        match tensor_of(&dtype) {
            Some((TensorElementType::Float32 | TensorElementType::Float64, shape)) => {
                Ok(match shape.len() {
                    1 => Some(1),
                    2 => Some(shape[1]),
                    _ => None,
                })
            }
            _ => Err(ModelError::Mismatch(format!(
                "output {output:?} is {dtype}; {what} must be a float tensor"
            ))),
        }
    };
    Ok(match card.task {
        Task::Autoencoder => {
            let cols = float_columns("a reconstruction")?;
            if cols != Some(width as i64) {
                return Err(ModelError::Mismatch(format!(
                    "output {output:?} has {} columns but an autoencoder must reconstruct all {width} features",
                    cols.map_or_else(|| "a dynamic number of".to_string(), |c| c.to_string())
                )));
            }
            Decode::Reconstruction {
                output,
                inv_std: card.features.iter().map(|f| 1.0 / f.std).collect(),
            }
        }
        Task::Regressor => {
            if float_columns("a prediction")? != Some(1) {
                return Err(ModelError::Mismatch(format!(
                    "output {output:?} has shape {dtype}; a regressor's prediction must be one number per row"
                )));
            }
            Decode::Value { output }
        }
        Task::Classifier => {
            let spec = card.classifier.as_ref().expect("checked by the card");
            let k = spec.classes.len() as i64;
            match spec.probabilities {
                ProbabilityLayout::Tensor => {
                    let cols = float_columns("the probabilities")?;
                    if cols != Some(k) && cols != Some(-1) {
                        return Err(ModelError::Mismatch(format!(
                            "output {output:?} has shape {dtype} but the card lists {k} classes"
                        )));
                    }
                }
                layout => {
                    let key = if layout == ProbabilityLayout::MapInt64 {
                        TensorElementType::Int64
                    } else {
                        TensorElementType::String
                    };
                    let ok = matches!(&dtype, ValueType::Sequence(inner)
                        if matches!(**inner, ValueType::Map { key: k, value: TensorElementType::Float32 } if k == key));
                    if !ok {
                        return Err(ModelError::Mismatch(format!(
                            "output {output:?} is {dtype}; the card expects a sequence of maps from {key} to float"
                        )));
                    }
                }
            }
            let threshold = card.score.threshold.unwrap_or(0.5);
            Decode::Probabilities {
                output,
                layout: spec.probabilities,
                classes: spec.classes.clone(),
                binary: card.positive_class().map(|p| (p, threshold)),
            }
        }
    })
}

/// A tensor type's element type and shape (-1 for dynamic dimensions).
pub fn tensor_of(t: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match t {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    }
}

pub fn element_type(t: InputType) -> TensorElementType {
    match t {
        InputType::Float32 => TensorElementType::Float32,
        InputType::Float64 => TensorElementType::Float64,
        InputType::Int64 => TensorElementType::Int64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_mean_of_squared_standardized_differences() {
        let x = [1.0f64, 2.0, 3.0];
        let xhat = [1.0f32, 0.0, 4.0];
        let inv_std = [1.0, 0.5, 2.0];
        // ((0)^2 + (2*0.5)^2 + (1*2)^2) / 3 = (0 + 1 + 4) / 3
        assert!((reconstruction_error(&x, &xhat, &inv_std) - 5.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn argmax_takes_the_first_of_equal_values() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        assert_eq!(argmax(&[0.1, 0.2, 0.7]), 2);
    }

    #[test]
    fn outputs_slice_keeps_rows_together() {
        let o = Outputs {
            scores: vec![0.9, 0.2, 0.6],
            classes: vec![1, 0, 1],
            probabilities: vec![0.1, 0.9, 0.8, 0.2, 0.4, 0.6],
        };
        let s = o.slice(1, 3);
        assert_eq!(s.scores, vec![0.2, 0.6]);
        assert_eq!(s.classes, vec![0, 1]);
        assert_eq!(s.probabilities, vec![0.8, 0.2, 0.4, 0.6]);
        let plain = Outputs {
            scores: vec![1.0, 2.0],
            ..Outputs::default()
        };
        assert_eq!(plain.slice(1, 2).scores, vec![2.0]);
    }
}
