//! Replayed traffic against the sandbox service, with switches for the drift scenario and for
//! missing cells.

use console_core::own_model;
use console_core::sandbox::{companion_binary, Traffic};
use console_core::sandbox_fleet;
use serde::Serialize;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Serialize, Default)]
pub struct TrafficStatus {
    pub running: bool,
    pub scenario: Option<String>,
    pub rate: Option<f64>,
    /// Why the replay tool stopped by itself, if it did.
    pub stopped: Option<String>,
}

impl TrafficStatus {
    fn of(t: &Traffic, running: bool, stopped: Option<String>) -> TrafficStatus {
        TrafficStatus {
            running,
            scenario: Some(t.scenario.clone()),
            rate: Some(t.rate),
            stopped,
        }
    }
}

/// Starts (or restarts with new settings) the replay tool against the sandbox, or against the
/// sandbox fleet's load balancer (`target` = `sandbox-fleet`).
#[tauri::command]
pub async fn traffic_start(
    state: State<'_, AppState>,
    drift: bool,
    missing: Option<bool>,
    rate: f64,
    target: Option<String>,
) -> AppResult<TrafficStatus> {
    let fleet = target.as_deref() == Some(sandbox_fleet::NAME);
    let (port, served_by, token_of) = if fleet {
        (
            state.fleet_ports.front,
            format!("{}/h1", sandbox_fleet::NAME),
            sandbox_fleet::NAME,
        )
    } else {
        (
            state.sandbox_port,
            state.history_name("sandbox")?,
            "sandbox",
        )
    };
    let missing = missing.unwrap_or(false);
    let replay = companion_binary("replay").ok_or_else(|| {
        AppError::new(
            "no-replay",
            "the replay tool is not installed beside the console; build it with `cargo build --release -p traffic-replay` or set MLOPS_REPLAY_BIN",
        )
    })?;
    // An own model is replayed from its own rows, with the scenarios its task and labels allow.
    let own = state
        .engine
        .history()
        .serving(&served_by)?
        .and_then(|d| own_model::replay_data(&state.data_dir, &d.tag));
    let scenario = match &own {
        Some(data) => data.scenario(drift, missing),
        None => {
            let mut s = "normal,anomalies,feedback".to_string();
            if drift {
                s.push_str(",drift");
            }
            if missing {
                s.push_str(",missing");
            }
            s
        }
    };
    let mut g = state.traffic.lock().await;
    if let Some(old) = g.take() {
        old.stop().await;
    }
    let (token, _) = state.api_token(token_of)?;
    let t = Traffic::start(&replay, port, &scenario, rate, Some(&token), own.as_ref())
        .map_err(AppError::invalid)?;
    let status = TrafficStatus::of(&t, true, None);
    *g = Some(t);
    Ok(status)
}

#[tauri::command]
pub async fn traffic_stop(state: State<'_, AppState>) -> AppResult<TrafficStatus> {
    if let Some(t) = state.traffic.lock().await.take() {
        t.stop().await;
    }
    Ok(TrafficStatus::default())
}

#[tauri::command]
pub async fn traffic_status(state: State<'_, AppState>) -> AppResult<TrafficStatus> {
    let mut g = state.traffic.lock().await;
    let Some(t) = g.as_mut() else {
        return Ok(TrafficStatus::default());
    };
    match t.finished().await {
        None => Ok(TrafficStatus::of(t, true, None)),
        Some(why) => {
            let status = TrafficStatus::of(t, false, Some(why));
            *g = None;
            Ok(status)
        }
    }
}
