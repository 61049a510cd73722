//! "Your own model" in the wizard: inspect an ONNX file and its reference CSV with the service's
//! card builder (nothing is built yet), then build a sandbox image with that model baked in.

use console_core::own_model::{self, Inspection, Request};
use console_core::sandbox::{self, companion_binary};
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The version every own-model image derives from (built by scripts/sandbox-images.sh).
const BASE_TAG: &str = "v1";

#[tauri::command]
pub async fn own_model_inspect(
    state: State<'_, AppState>,
    request: Request,
) -> AppResult<Inspection> {
    let inference = companion_binary("inference").ok_or_else(|| {
        AppError::new(
            "no-inference",
            "the service's card builder (`inference`) is not installed beside the console; build it with `cargo build --release -p inference-image --bin inference` or set MLOPS_INFERENCE_BIN",
        )
    })?;
    own_model::inspect(&inference, &state.data_dir, &request)
        .await
        .map_err(AppError::invalid)
}

/// Builds `mlops-sandbox/inference:<tag>` for an inspected model; returns what was done.
#[tauri::command]
pub async fn own_model_build(state: State<'_, AppState>, tag: String) -> AppResult<String> {
    own_model::build_image(&state.data_dir, sandbox::IMAGE, BASE_TAG, &tag)
        .await
        .map_err(|e| AppError::new("docker", e))
}
