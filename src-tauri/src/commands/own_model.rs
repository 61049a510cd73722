//! "Your own model" in the wizard: inspect an ONNX file and its reference CSV with the service's
//! card builder (nothing is built yet), then build a sandbox image with that model baked in, and
//! push it to the remote host's registry when it is to run there.

use console_core::image_push::{self, PushTarget};
use console_core::own_model::{self, CardBuilder, Inspection, Request};
use console_core::sandbox::{self, companion_binary};
use console_core::vault::SecretName;
use tauri::{AppHandle, Manager, Runtime, State};

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The version every own-model image derives from (built by scripts/sandbox-images.sh).
const BASE_TAG: &str = "v1";

#[tauri::command]
pub async fn own_model_inspect<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    request: Request,
) -> AppResult<Inspection> {
    let inference = companion_binary("inference").ok_or_else(|| {
        AppError::new(
            "no-inference",
            "the service's card builder (`inference`) is not installed beside the console; build it with `cargo build --release -p inference-image --bin inference` or set MLOPS_INFERENCE_BIN",
        )
    })?;
    let builder = CardBuilder {
        inference,
        bundled_ort: bundled_ort(&app),
    };
    own_model::inspect(&builder, &state.data_dir, &request)
        .await
        .map_err(AppError::invalid)
}

/// ONNX Runtime's library as an installed package carries it (`onnxruntime/` in the app's
/// resources, from src-tauri/tauri.bundle.json); None in a build from source, which uses the
/// library `scripts/env.sh` names.
fn bundled_ort<R: Runtime>(app: &AppHandle<R>) -> Option<std::path::PathBuf> {
    let dir = app.path().resource_dir().ok()?.join("onnxruntime");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || n.starts_with("libonnxruntime.") && n.ends_with(".dylib")
                    || n == "onnxruntime.dll"
            })
        })
}

/// Builds `mlops-sandbox/inference:<tag>` for an inspected model; returns what was done.
#[tauri::command]
pub async fn own_model_build(state: State<'_, AppState>, tag: String) -> AppResult<String> {
    own_model::build_image(&state.data_dir, sandbox::IMAGE, BASE_TAG, &tag)
        .await
        .map_err(|e| AppError::new("docker", e))
}

/// Pushes the built `mlops-sandbox/inference:<tag>` to the remote host's image repository (the
/// registry user and the GHCR token from the keychain, in the Engine API request only), so that a
/// deploy to that host can pull it; returns the digest the registry gave it.
#[tauri::command]
pub async fn own_model_push(state: State<'_, AppState>, tag: String) -> AppResult<String> {
    let remote = state.settings().remote.ok_or_else(|| {
        AppError::new(
            "no-remote",
            "no remote host is set up yet; the image goes to the registry its host pulls from",
        )
    })?;
    if remote.image.is_empty() || remote.registry_user.is_empty() {
        return Err(AppError::invalid(
            "name the remote host's image repository and registry user (GitHub step) first",
        ));
    }
    let token = state.vault.get(&SecretName::GhcrToken)?.ok_or_else(|| {
        AppError::new(
            "missing-credential",
            "no GHCR token in the keychain; add it in the Credentials step",
        )
    })?;
    let local = format!("{}:{tag}", sandbox::IMAGE);
    let target = PushTarget {
        image: &remote.image,
        tag: &tag,
        user: &remote.registry_user,
        token: &token,
    };
    let digest = image_push::push(&local, &target, &mut |_| {})
        .await
        .map_err(|e| AppError::new("docker", e))?;
    Ok(format!("pushed {}:{tag} ({digest})", remote.image))
}
