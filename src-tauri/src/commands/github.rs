//! The GitHub step: repository secrets, the host-key variable and the deploy workflow.
//! `MLOPS_GITHUB_API` points the client at a test double; the default is api.github.com.

use console_core::github::{GitHub, Repo};
use console_core::repo_setup::{configure_repository, HostFacts};
use console_core::vault::SecretName;
use console_core::workflow_file::WorkflowState;
use serde::Serialize;
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

fn client(state: &AppState) -> AppResult<GitHub> {
    let token = state.vault.get(&SecretName::GithubToken)?.ok_or_else(|| {
        AppError::new(
            "missing-credential",
            "no GitHub token in the keychain; add it in the Credentials step",
        )
    })?;
    let base = std::env::var("MLOPS_GITHUB_API")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "https://api.github.com".into());
    GitHub::new(&base, &token).map_err(|e| AppError::new("github", e.to_string()))
}

fn repo(s: &str) -> AppResult<Repo> {
    Repo::parse(s).map_err(|e| AppError::invalid(e.to_string()))
}

fn gh_err(e: impl std::fmt::Display) -> AppError {
    AppError::new("github", e.to_string())
}

#[derive(Serialize)]
pub struct WorkflowStatus {
    /// missing, up-to-date or outdated
    pub state: &'static str,
    pub diff: Option<String>,
    pub sha: Option<String>,
}

#[tauri::command]
pub async fn github_workflow_status(
    state: State<'_, AppState>,
    repo: String,
    branch: String,
) -> AppResult<WorkflowStatus> {
    let gh = client(&state)?;
    let s = gh
        .workflow_state(&self::repo(&repo)?, &branch)
        .await
        .map_err(gh_err)?;
    Ok(match s {
        WorkflowState::Missing => WorkflowStatus {
            state: "missing",
            diff: None,
            sha: None,
        },
        WorkflowState::UpToDate => WorkflowStatus {
            state: "up-to-date",
            diff: None,
            sha: None,
        },
        WorkflowState::Outdated { diff, sha } => WorkflowStatus {
            state: "outdated",
            diff: Some(diff),
            sha: Some(sha),
        },
    })
}

/// Replaces the repository's workflow with the console's, after the page showed the difference
/// for blob `sha` (refused if the file changed since).
#[tauri::command]
pub async fn github_install_workflow(
    state: State<'_, AppState>,
    repo: String,
    branch: String,
    sha: Option<String>,
) -> AppResult<String> {
    let gh = client(&state)?;
    let w = gh
        .install_workflow(&self::repo(&repo)?, &branch, sha.as_deref())
        .await
        .map_err(gh_err)?;
    Ok(format!("{w:?}").to_lowercase())
}

#[derive(Serialize)]
pub struct Configured {
    pub lines: Vec<String>,
}

#[tauri::command]
pub async fn github_configure(
    state: State<'_, AppState>,
    repo: String,
    branch: String,
) -> AppResult<Configured> {
    let r = self::repo(&repo)?;
    let mut settings = state.settings();
    let remote = settings.remote.clone().ok_or_else(|| {
        AppError::new(
            "no-remote",
            "set up the host first (Platform and Provision steps)",
        )
    })?;
    let gh = client(&state)?;
    let facts = HostFacts {
        host: remote.host.clone(),
        user: remote.user.clone(),
        compose_dir: remote.compose_dir.clone(),
        fingerprint: remote.fingerprint.clone(),
    };
    let report = configure_repository(&gh, &state.vault, &r, &branch, &facts)
        .await
        .map_err(gh_err)?;
    let mut lines: Vec<String> = report
        .secrets
        .iter()
        .map(|(n, w)| format!("secret {n}: {}", format!("{w:?}").to_lowercase()))
        .collect();
    lines.push(format!(
        "variable EC2_HOST_FINGERPRINT: {}",
        format!("{:?}", report.variable).to_lowercase()
    ));
    lines.push(match (&report.workflow_before, &report.workflow_written) {
        (_, Some(w)) => format!("workflow .github/workflows/deploy.yml: {}", format!("{w:?}").to_lowercase()),
        (WorkflowState::UpToDate, None) => "workflow: up to date".into(),
        (WorkflowState::Outdated { .. }, None) => "workflow: the repository has another version; use Check the workflow to see the difference and replace it".into(),
        (WorkflowState::Missing, None) => "workflow: missing".into(),
    });
    settings.github.repo = Some(repo);
    settings.github.branch = branch;
    settings.github.configured = true;
    settings.save(&state.settings_path)?;
    *state.settings.lock().unwrap() = settings;
    Ok(Configured { lines })
}

/// Deploys `tag` through the repository's workflow (dispatch, follow the run and its job logs),
/// then gates it from here over SSH like a direct deploy; recorded with its run id.
#[tauri::command]
pub async fn deploy_github(
    state: State<'_, AppState>,
    target: String,
    tag: String,
) -> AppResult<console_core::Deployment> {
    let g = state.settings().github;
    let r = g.repo.filter(|_| g.configured).ok_or_else(|| {
        AppError::new(
            "github-not-set-up",
            "the repository is not set up yet; finish the GitHub step of the wizard (or deploy directly over SSH)",
        )
    })?;
    let runner = console_core::github_workflow::GitHubWorkflow::new(
        std::sync::Arc::new(client(&state)?),
        repo(&r)?,
        "deploy.yml",
        &g.branch,
    );
    let t = state.target(&target).await?;
    Ok(state.engine.deploy_via_workflow(&t, &tag, &runner).await?)
}
