//! One ONNX Runtime session and the arithmetic that turns a reconstruction into a score.
//! A `Scorer` is owned by exactly one worker thread (`Session::run` takes `&mut self`).

use std::path::Path;

use ort::environment::Environment;
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;

use crate::card::ModelCard;

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

pub struct Scorer {
    session: Session,
    width: usize,
    inv_std: Vec<f64>,
}

impl Scorer {
    /// Opens `model_path` with one intra-op thread and checks its input and output against the card.
    pub fn open(
        env: &Environment,
        model_path: &Path,
        card: &ModelCard,
    ) -> Result<Self, ModelError> {
        let session = open_session(env, model_path)?;
        let width = card.width();
        let (input_width, output_width) = io_widths(&session, &card.input_name, &card.output_name)?;
        if input_width != Some(width) {
            return Err(ModelError::Mismatch(format!(
                "input {:?} takes {} features but the card lists {width}",
                card.input_name,
                describe_width(input_width)
            )));
        }
        if output_width != Some(width) {
            return Err(ModelError::Mismatch(format!(
                "output {:?} has {} columns but an autoencoder must reconstruct all {width} features",
                card.output_name,
                describe_width(output_width)
            )));
        }
        let inv_std = card.features.iter().map(|f| 1.0 / f.std).collect();
        Ok(Self {
            session,
            width,
            inv_std,
        })
    }

    /// Runs the model on `rows` (row-major, `width` values per row) and returns each row's
    /// reconstruction error: the mean over features of ((x - x̂) / std)². Rows are independent: a row
    /// far enough outside the training range to overflow the model gets a non-finite error and does
    /// not affect the others.
    pub fn errors(&mut self, rows: &[f32]) -> Result<Vec<f64>, ModelError> {
        let n = rows.len() / self.width;
        let input = TensorRef::from_array_view(([n, self.width], rows))
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![input])
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let (shape, recon) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| ModelError::Run(e.to_string()))?;
        if recon.len() != rows.len() {
            return Err(ModelError::Run(format!(
                "output shape {shape:?} does not match the input's {n}x{}",
                self.width
            )));
        }
        let errors = rows
            .chunks_exact(self.width)
            .zip(recon.chunks_exact(self.width))
            .map(|(x, xhat)| reconstruction_error(x, xhat, &self.inv_std))
            .collect::<Vec<_>>();
        Ok(errors)
    }
}

pub fn reconstruction_error(x: &[f32], xhat: &[f32], inv_std: &[f64]) -> f64 {
    let sum: f64 = x
        .iter()
        .zip(xhat)
        .zip(inv_std)
        .map(|((&a, &b), &s)| {
            let d = (f64::from(a) - f64::from(b)) * s;
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

/// Static widths (last dimension) of the named input and output, `None` when dynamic.
pub fn io_widths(
    session: &Session,
    input: &str,
    output: &str,
) -> Result<(Option<usize>, Option<usize>), ModelError> {
    let find = |outlets: &[ort::value::Outlet], name: &str, what: &str| {
        let names: Vec<_> = outlets.iter().map(|o| o.name().to_string()).collect();
        outlets
            .iter()
            .find(|o| o.name() == name)
            .map(|o| {
                o.dtype()
                    .tensor_shape()
                    .and_then(|s| s.last().copied())
                    .and_then(|d| usize::try_from(d).ok())
            })
            .ok_or_else(|| {
                ModelError::Mismatch(format!(
                    "the model has no {what} named {name:?} (it has {names:?})"
                ))
            })
    };
    Ok((
        find(session.inputs(), input, "input")?,
        find(session.outputs(), output, "output")?,
    ))
}

fn describe_width(w: Option<usize>) -> String {
    w.map_or_else(|| "a dynamic number of".to_string(), |w| w.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_mean_of_squared_standardized_differences() {
        let x = [1.0f32, 2.0, 3.0];
        let xhat = [1.0f32, 0.0, 4.0];
        let inv_std = [1.0, 0.5, 2.0];
        // ((0)^2 + (2*0.5)^2 + (1*2)^2) / 3 = (0 + 1 + 4) / 3
        assert!((reconstruction_error(&x, &xhat, &inv_std) - 5.0 / 3.0).abs() < 1e-12);
    }
}
