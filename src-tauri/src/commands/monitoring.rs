//! The live dashboard: one call fetches every layer from the serving version and draws the charts;
//! for an EC2 host, CloudWatch's view of the instance is fetched alongside; for the fleet, every
//! host's buckets merged (or one host's own view).

use console_core::cloud_charts;
use console_core::dashboard::{self, Dashboard, Request};
use console_core::fleet_monitor::FleetView;
use console_core::sandbox_fleet;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[tauri::command]
pub async fn dashboard(
    state: State<'_, AppState>,
    target: String,
    range_s: i64,
    utc_offset_s: i64,
    feature: Option<String>,
    host: Option<String>,
) -> AppResult<Dashboard> {
    if ![900, 3600, 86_400].contains(&range_s) {
        return Err(AppError::invalid(format!(
            "time range {range_s} s is not offered (900, 3600 or 86400)"
        )));
    }
    if utc_offset_s.abs() > 14 * 3600 {
        return Err(AppError::invalid(format!(
            "UTC offset {utc_offset_s} s is out of range"
        )));
    }
    let now = console_core::history::now_ms() / 1000;
    let req = Request {
        range_s,
        utc_offset_s,
        feature,
        now,
    };
    if target == sandbox_fleet::NAME {
        return fleet_dashboard(&state, host.as_deref(), &req).await;
    }
    let client = state.service(&target).await?;
    let name = state.history_name(&target)?;
    let markers = dashboard::markers(&state.engine.history().deployments(&name, 500)?);
    let settings = state.settings();
    let instance = settings
        .ec2
        .instance_id
        .clone()
        .filter(|_| target == "remote" && settings.platform.as_deref() == Some("ec2"));
    let Some(instance) = instance else {
        return dashboard::refresh(&client, &markers, &req)
            .await
            .map_err(|e| AppError::new("monitoring", e));
    };
    let reader = state.cloudwatch_reader().await?;
    let (service, (charts, alerts)) = tokio::join!(
        dashboard::refresh(&client, &markers, &req),
        cloud_charts::host_charts(&reader, &instance, &markers, &req)
    );
    let mut board = service.map_err(|e| AppError::new("monitoring", e))?;
    board.charts.extend(charts);
    board.alerts.extend(alerts);
    Ok(board)
}

/// The fleet's dashboard: every host merged (`host` None or `fleet`), or one host's own.
async fn fleet_dashboard(
    state: &AppState,
    host: Option<&str>,
    req: &Request,
) -> AppResult<Dashboard> {
    let token = state.api_token(sandbox_fleet::NAME)?.0;
    let hosts = state.fleet_size()?;
    let replicas = sandbox_fleet::replicas(state.fleet_ports, hosts, Some(token));
    // Each rollout starts on the first host: its deployments mark the fleet's versions.
    let first = format!("{}/{}", sandbox_fleet::NAME, replicas[0].name);
    let markers = dashboard::markers(&state.engine.history().deployments(&first, 500)?);
    let board = match host.filter(|h| *h != "fleet") {
        None => {
            let view = FleetView::read(
                &replicas,
                req.range_s,
                dashboard::step_for(req.range_s),
                req.now,
            )
            .await
            .map_err(|e| AppError::new("monitoring", e))?;
            dashboard::refresh(&view, &markers, req).await
        }
        Some(h) => {
            let r = replicas.iter().find(|r| r.name == h).ok_or_else(|| {
                AppError::invalid(format!(
                    "the fleet has no host `{h}`; its hosts are {}",
                    sandbox_fleet::host_names(hosts).join(", ")
                ))
            })?;
            dashboard::refresh(&r.client, &markers, req).await
        }
    };
    board.map_err(|e| AppError::new("monitoring", e))
}

#[derive(serde::Serialize)]
pub struct Verified {
    pub ready: bool,
    pub ready_ms: f64,
    pub detail: String,
    pub model: serde_json::Value,
}

/// Readiness (a real forward pass behind /readyz) and the model card of what now serves.
#[tauri::command]
pub async fn service_verify(state: State<'_, AppState>, target: String) -> AppResult<Verified> {
    let client = state.service(&target).await?;
    let t0 = std::time::Instant::now();
    let ready = client.get_json("/readyz").await;
    let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    let model = client
        .model()
        .await
        .map_err(|e| AppError::new("monitoring", e))?;
    Ok(Verified {
        ready: ready.is_ok(),
        ready_ms,
        detail: ready.err().unwrap_or_default(),
        model,
    })
}
