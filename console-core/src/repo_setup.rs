//! Wires a provisioned host into the user's repository so the deploy workflow can reach it: the
//! five secrets (SSH key and GHCR token read from the vault, never from anywhere else), the host-key
//! fingerprint variable, and the workflow file when it is missing. An outdated workflow is reported
//! with its diff and left alone until the user confirms (`GitHub::install_workflow`).

use crate::github::{GitHub, GitHubError, Repo, Written, FINGERPRINT_VARIABLE};
use crate::secret::Secret;
use crate::vault::{SecretName, Vault, VaultError};
use crate::workflow_file::WorkflowState;

/// What the workflow needs to know about the host.
#[derive(Clone, Debug)]
pub struct HostFacts {
    /// Public DNS name or address (EC2_HOST); also names the SSH key in the vault.
    pub host: String,
    pub user: String,
    pub compose_dir: String,
    /// `SHA256:…` of the host key (cloud-init's console output, or `ssh-keygen -lf`).
    pub fingerprint: String,
}

#[derive(Debug)]
pub struct SetupReport {
    pub secrets: Vec<(String, Written)>,
    pub variable: Written,
    /// The workflow file as it was found.
    pub workflow_before: WorkflowState,
    /// Set when this run wrote the workflow (it was missing).
    pub workflow_written: Option<Written>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error("the vault has no {0}; store it first")]
    Missing(String),
    #[error("{0}")]
    BadInput(String),
}

fn need(vault: &Vault, name: SecretName) -> Result<Secret, SetupError> {
    vault
        .get(&name)?
        .ok_or_else(|| SetupError::Missing(name.to_string()))
}

/// Sets the secrets and the variable, and installs the workflow on `branch` if it is missing.
pub async fn configure_repository(
    gh: &GitHub,
    vault: &Vault,
    repo: &Repo,
    branch: &str,
    host: &HostFacts,
) -> Result<SetupReport, SetupError> {
    if !host.fingerprint.starts_with("SHA256:") {
        return Err(SetupError::BadInput(format!(
            "`{}` is not a SHA256 host key fingerprint",
            host.fingerprint
        )));
    }
    // Everything is read before anything is written, so a missing value changes nothing.
    let key = need(vault, SecretName::SshKey(host.host.clone()))?;
    let ghcr = need(vault, SecretName::GhcrToken)?;
    let api_token = vault.get_or_create_token(&SecretName::ApiToken(host.host.clone()))?;
    gh.check_secrets_access(repo).await?;
    let (h, u, d) = (
        Secret::new(host.host.clone()),
        Secret::new(host.user.clone()),
        Secret::new(host.compose_dir.clone()),
    );
    let secrets = gh
        .set_secrets(
            repo,
            &[
                ("EC2_HOST", &h),
                ("EC2_USER", &u),
                ("EC2_SSH_KEY", &key),
                ("DOCKER_COMPOSE_DIR", &d),
                ("GHCR_PAT", &ghcr),
                ("INFERENCE_API_TOKEN", &api_token),
            ],
        )
        .await?;
    let variable = gh
        .set_variable(repo, FINGERPRINT_VARIABLE, &host.fingerprint)
        .await?;
    let workflow_before = gh.workflow_state(repo, branch).await?;
    let workflow_written = match workflow_before {
        WorkflowState::Missing => Some(gh.install_workflow(repo, branch, None).await?),
        _ => None,
    };
    Ok(SetupReport {
        secrets,
        variable,
        workflow_before,
        workflow_written,
    })
}
