//! Deploys, rollbacks and their history. Progress streams to the page as `engine` events while the
//! command runs; `deploy_cancel` stops a deploy before its next step.

use console_core::history::Step;
use console_core::registry;
use console_core::sandbox;
use console_core::sandbox_fleet;
use console_core::vault::SecretName;
use console_core::Deployment;
use serde::Serialize;
use tauri::State;

use crate::error::AppResult;
use crate::state::AppState;

#[derive(Serialize)]
pub struct Image {
    pub tag: String,
    pub detail: String,
}

/// The versions that can be deployed: the sandbox's local images; for a remote target the tags
/// deployed before, then the image's other tags in its registry (a tag can also be typed in the
/// page). A registry that cannot be read leaves a `note` saying why; the list still comes.
#[derive(Serialize)]
pub struct Images {
    pub images: Vec<Image>,
    pub note: Option<String>,
}

#[tauri::command]
pub async fn images_list(state: State<'_, AppState>, target: String) -> AppResult<Images> {
    // The fleet's hosts run this computer's images, like the sandbox.
    if target == "sandbox" || target == sandbox_fleet::NAME {
        let tags = sandbox::local_tags(sandbox::IMAGE)
            .await
            .map_err(|e| crate::error::AppError::new("docker", e))?;
        let images = tags
            .into_iter()
            .map(|i| Image {
                detail: format!("built {} · {}", i.created, i.id),
                tag: i.tag,
            })
            .collect();
        return Ok(Images { images, note: None });
    }
    let name = state.history_name(&target)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut images: Vec<Image> = state
        .engine
        .history()
        .deployments(&name, 200)?
        .into_iter()
        .filter(|d| seen.insert(d.tag.clone()))
        .map(|d| Image {
            detail: format!("deployed before ({})", d.status),
            tag: d.tag,
        })
        .collect();
    let mut note = None;
    if let Some(remote) = state.settings().remote.filter(|r| !r.image.is_empty()) {
        let token = state.vault.get(&SecretName::GhcrToken).ok().flatten();
        match registry::list_tags(&remote.image, &remote.registry_user, token.as_ref()).await {
            // Newest-looking last in most registries' (lexical) order: list them from the end.
            Ok(tags) => images.extend(
                tags.into_iter()
                    .rev()
                    .filter(|t| seen.insert(t.clone()))
                    .map(|tag| Image {
                        detail: format!("in {}", remote.image),
                        tag,
                    }),
            ),
            Err(e) => note = Some(e.to_string()),
        }
    }
    Ok(Images { images, note })
}

#[tauri::command]
pub async fn deploy(
    state: State<'_, AppState>,
    target: String,
    tag: String,
) -> AppResult<Deployment> {
    let t = state.target(&target).await?;
    let d = state.engine.deploy(&t, &tag).await?;
    follow_with_alarms(&state, &target).await;
    Ok(d)
}

/// After a deploy or a rollback: the version now serving gets the alert rules kept for the
/// target, and on a provisioned EC2 stack the CloudWatch alarms move to it. A failure does not undo
/// the deploy: it is logged, and the Alerts page (which tries again) shows it.
async fn follow_with_alarms(state: &AppState, target: &str) {
    if let (Ok(client), Ok(name)) = (state.service(target).await, state.history_name(target)) {
        if let Err(e) =
            console_core::alert_rules::reconcile(&client, state.engine.history(), &name, None).await
        {
            tracing::warn!("alert rules not given to the new version: {e}");
        }
    }
    if target != "remote" {
        return;
    }
    if let Err(e) = super::cloud::refresh_alarms(state).await {
        tracing::warn!(
            "CloudWatch alarms not moved to the new version: {}",
            e.message
        );
    }
}

/// Rolls back to deployment `to`, or to the newest healthy version before the serving one.
#[tauri::command]
pub async fn rollback(
    state: State<'_, AppState>,
    target: String,
    to: Option<i64>,
) -> AppResult<Deployment> {
    let t = state.target(&target).await?;
    let d = state.engine.rollback(&t, to).await?;
    follow_with_alarms(&state, &target).await;
    Ok(d)
}

#[tauri::command]
pub fn deploy_cancel(state: State<'_, AppState>, target: String) -> AppResult<bool> {
    let name = state.history_name(&target)?;
    Ok(state.engine.cancel(&name))
}

#[derive(Serialize)]
pub struct HistoryView {
    pub serving: Option<Deployment>,
    pub deployments: Vec<Deployment>,
}

#[tauri::command]
pub fn history_list(state: State<'_, AppState>, target: String) -> AppResult<HistoryView> {
    let name = match target.as_str() {
        // A fleet's history is its rollouts (fleet_status); here, its first host's deployments.
        sandbox_fleet::NAME => format!("{}/h1", sandbox_fleet::NAME),
        _ => state.history_name(&target)?,
    };
    let h = state.engine.history();
    Ok(HistoryView {
        serving: h.serving(&name)?,
        deployments: h.deployments(&name, 100)?,
    })
}

#[tauri::command]
pub fn deployment_steps(state: State<'_, AppState>, id: i64) -> AppResult<Vec<Step>> {
    Ok(state.engine.history().steps(id)?)
}
