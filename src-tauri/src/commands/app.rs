//! The app itself: version, sandbox engine, remembered settings (the wizard resumes from them).

use serde_json::{json, Value};
use tauri::State;

use crate::error::AppResult;
use crate::settings::Settings;
use crate::state::AppState;

#[tauri::command]
pub async fn app_info(state: State<'_, AppState>) -> AppResult<Value> {
    let sandbox = state.sandbox_engine().await;
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": state.data_dir,
        "sandbox": {
            "docker": sandbox.docker,
            "detail": sandbox.detail,
            "port": state.sandbox_port,
            "image": console_core::sandbox::IMAGE,
        },
        "fleet": {
            "front_port": state.fleet_ports.front,
            "hosts": console_core::sandbox_fleet::host_names(state.fleet_size()?),
        },
        "settings": state.settings(),
    }))
}

#[tauri::command]
pub fn settings_save(state: State<'_, AppState>, settings: Settings) -> AppResult<Settings> {
    settings.save(&state.settings_path)?;
    *state.settings.lock().unwrap() = settings.clone();
    Ok(settings)
}
