//! The sandbox fleet: three hosts on this computer behind HAProxy. Its status (the balancer's view
//! of each host, what each serves, the recent rollouts with a row per host action, which the page
//! polls while a rollout runs) and rolling or canary deploys. Rolling back a fleet is a rolling
//! deploy of an earlier version: no host stops answering.

use std::sync::atomic::Ordering;
use std::time::Duration;

use console_core::balancer::Balancer;
use console_core::canary::Policy;
use console_core::fleet::{canary_deploy, rolling_deploy, RolloutReport};
use console_core::fleet_scale::{scale_down, scale_up, ScaleReport};
use console_core::sandbox_fleet;
use console_core::Deployment;
use serde::Serialize;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Serialize)]
pub struct HostView {
    pub name: String,
    pub port: u16,
    /// HAProxy's status for the host (`UP`, `DOWN`, `DRAIN`, `MAINT`...), or why it is unknown.
    pub balancer: String,
    pub sessions: u64,
    pub serving: Option<Deployment>,
}

#[derive(Serialize)]
pub struct FleetStatus {
    pub name: String,
    /// Where the fleet's clients send requests (HAProxy's frontend on 127.0.0.1).
    pub front_port: u16,
    pub hosts: Vec<HostView>,
    /// Newest first, each with its host actions in order.
    pub rollouts: Vec<RolloutReport>,
    pub busy: bool,
    /// The most hosts the fleet can have on this computer.
    pub max_hosts: usize,
}

/// Where the fleet stands; starts its HAProxy the first time.
#[tauri::command]
pub async fn fleet_status(state: State<'_, AppState>) -> AppResult<FleetStatus> {
    let fleet = state.sandbox_fleet().await?;
    let members = match state.fleet_balancer().await {
        Ok(b) => b.members().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.message),
    };
    let history = state.engine.history();
    let mut hosts = Vec::new();
    for (i, m) in fleet.members.iter().enumerate() {
        let (balancer, sessions) = match &members {
            Ok(all) => all
                .iter()
                .find(|s| s.name == m.name)
                .map(|s| (s.status.clone(), s.sessions))
                .unwrap_or_else(|| ("not in the balancer".into(), 0)),
            Err(e) => (format!("balancer unreachable: {e}"), 0),
        };
        hosts.push(HostView {
            name: m.name.clone(),
            port: state.fleet_ports.host(i),
            balancer,
            sessions,
            serving: history.serving(&m.target.name)?,
        });
    }
    let rollouts = history
        .rollouts(sandbox_fleet::NAME, 10)?
        .into_iter()
        .map(|r| {
            Ok(RolloutReport {
                hosts: history.rollout_hosts(r.id)?,
                rollout: r,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(FleetStatus {
        name: sandbox_fleet::NAME.into(),
        front_port: state.fleet_ports.front,
        hosts,
        rollouts,
        busy: state.fleet_busy.load(Ordering::Acquire),
        max_hosts: sandbox_fleet::MAX_HOSTS,
    })
}

/// Clears the busy flag however the rollout ends.
struct Busy<'a>(&'a std::sync::atomic::AtomicBool);

impl Busy<'_> {
    /// Marks the fleet busy, or says that a rollout already runs on it.
    fn claim(flag: &std::sync::atomic::AtomicBool) -> AppResult<Busy<'_>> {
        if flag.swap(true, Ordering::AcqRel) {
            return Err(AppError::new(
                "busy",
                "a rollout is already running on the fleet; wait for it to finish",
            ));
        }
        Ok(Busy(flag))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Deploys `tag` to the fleet: `rolling` (`max_unavailable` hosts at a time) or `canary` (the
/// first host alone for `watch_s` seconds, compared with the others, then the rest or back).
#[tauri::command]
pub async fn fleet_deploy(
    state: State<'_, AppState>,
    tag: String,
    strategy: String,
    max_unavailable: usize,
    watch_s: u64,
) -> AppResult<RolloutReport> {
    if tag.trim().is_empty() {
        return Err(AppError::invalid("choose a version to deploy"));
    }
    if !(30..=3600).contains(&watch_s) && strategy == "canary" {
        return Err(AppError::invalid(format!(
            "a canary watch of {watch_s} s is not offered: 30 s to 1 hour (the comparison needs whole minutes of traffic)"
        )));
    }
    let mut fleet = state.sandbox_fleet().await?;
    fleet.max_unavailable = max_unavailable;
    fleet.validate().map_err(AppError::invalid)?;
    let balancer = state.fleet_balancer().await?;
    let _busy = Busy::claim(&state.fleet_busy)?;
    let engine = &state.engine;
    let report = match strategy.as_str() {
        "rolling" => rolling_deploy(engine, &fleet, &balancer, &tag).await?,
        "canary" => {
            let token = state.api_token(sandbox_fleet::NAME)?.0;
            let monitors: Vec<_> =
                sandbox_fleet::replicas(state.fleet_ports, fleet.members.len(), Some(token))
                    .into_iter()
                    .map(|r| r.client)
                    .collect();
            canary_deploy(
                engine,
                &fleet,
                &balancer,
                &tag,
                &monitors,
                Duration::from_secs(watch_s),
                &Policy::default(),
            )
            .await?
            .report
        }
        other => {
            return Err(AppError::invalid(format!(
                "unknown strategy `{other}`; use rolling or canary"
            )))
        }
    };
    give_alert_rules(&state, fleet.members.len()).await?;
    Ok(report)
}

/// Every host now serving gets the fleet's alert rules.
async fn give_alert_rules(state: &AppState, hosts: usize) -> AppResult<()> {
    let token = state.api_token(sandbox_fleet::NAME)?.0;
    for r in sandbox_fleet::replicas(state.fleet_ports, hosts, Some(token)) {
        if let Err(e) = console_core::alert_rules::reconcile(
            &r.client,
            state.engine.history(),
            sandbox_fleet::NAME,
            None,
        )
        .await
        {
            tracing::warn!("alert rules not given to {}: {e}", r.name);
        }
    }
    Ok(())
}

/// Resizes the fleet to `hosts`: new hosts get the version the fleet serves (deployed out of the
/// pool, then put in), removed ones (the last first) are drained and stopped.
#[tauri::command]
pub async fn fleet_scale(state: State<'_, AppState>, hosts: usize) -> AppResult<ScaleReport> {
    sandbox_fleet::check_size(hosts).map_err(AppError::invalid)?;
    let now = state.fleet_size()?;
    if hosts == now {
        return Err(AppError::invalid(format!(
            "the fleet already has {hosts} host(s)"
        )));
    }
    let balancer = state.fleet_balancer().await?;
    let _busy = Busy::claim(&state.fleet_busy)?;
    let engine = &state.engine;
    let report = if hosts > now {
        let fleet = state.sandbox_fleet_of(hosts).await?;
        let serving = engine.history().serving(&fleet.members[0].target.name)?;
        let Some(serving) = serving else {
            return Err(AppError::invalid(
                "the fleet serves nothing yet: deploy a version first, then add hosts",
            ));
        };
        scale_up(engine, &fleet, &balancer, now, &serving.tag).await?
    } else {
        let fleet = state.sandbox_fleet_of(now).await?;
        scale_down(engine, &fleet, &balancer, hosts).await?
    };
    sandbox_fleet::set_size(engine.history(), report.hosts)?;
    give_alert_rules(&state, report.hosts).await?;
    Ok(report)
}
