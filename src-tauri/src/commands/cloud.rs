//! EC2 provisioning for the wizard: key pair (its PEM straight into the keychain), security group,
//! instance with Docker via user-data, status checks, and the host key pinned from cloud-init's
//! console output. Progress streams to the page as `provision` events.

use std::time::Duration;

use console_core::aws::{AwsAuth, AwsTarget};
use console_core::ec2::{self, HostSpec, Provisioner};
use console_core::vault::SecretName;
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Runtime, State};

use crate::error::{AppError, AppResult};
use crate::settings::RemoteHost;
use crate::state::AppState;

pub const PROVISION_EVENT: &str = "provision";

#[derive(Debug, Deserialize)]
pub struct ProvisionRequest {
    pub region: String,
    pub name: String,
    pub instance_type: String,
    pub disk_gib: i32,
    /// None: detect this computer's public address.
    pub ssh_cidr: Option<String>,
    pub open_service_port: bool,
    pub allow_anywhere: bool,
}

#[derive(Debug, Serialize)]
pub struct Provisioned {
    pub instance_id: String,
    pub host: String,
    pub fingerprint: String,
    pub created: Vec<String>,
    pub warnings: Vec<String>,
}

/// The AWS settings as an SDK target; `MLOPS_AWS_ENDPOINT` points it at a stand-in (moto) in tests.
pub fn aws_target(state: &AppState, region: &str) -> AppResult<AwsTarget> {
    let s = state.settings().aws;
    let auth = match s.mode.as_str() {
        "profile" => AwsAuth::Profile(s.profile.unwrap_or_default()),
        "keys" => {
            let get = |n: SecretName| {
                state.vault.get(&n)?.ok_or_else(|| {
                    AppError::new(
                        "missing-credential",
                        format!("no {n} in the keychain; add it in the Credentials step or use the AWS credential chain"),
                    )
                })
            };
            AwsAuth::Keys {
                access_key_id: get(SecretName::AwsAccessKeyId)?,
                secret_access_key: get(SecretName::AwsSecretAccessKey)?,
            }
        }
        _ => AwsAuth::DefaultChain,
    };
    let mut t = AwsTarget::new(region, auth);
    t.endpoint = aws_endpoint();
    Ok(t)
}

/// `MLOPS_AWS_ENDPOINT`, when set: the AWS endpoint to use instead of AWS's own.
pub fn aws_endpoint() -> Option<String> {
    std::env::var("MLOPS_AWS_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
}

fn ec2_error(e: ec2::Ec2Error) -> AppError {
    AppError::new("ec2", e.to_string())
}

#[tauri::command]
pub async fn provision_ec2<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    request: ProvisionRequest,
) -> AppResult<Provisioned> {
    let say = |m: &str| {
        let _ = app.emit(PROVISION_EVENT, m.to_string());
    };
    let cidr = match request.ssh_cidr.as_deref().map(str::trim) {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => {
            say("detecting this computer's public address");
            ec2::detect_caller_cidr(ec2::CHECKIP_URL)
                .await
                .map_err(ec2_error)?
        }
    };
    let mut spec = HostSpec::new(&request.name, &cidr);
    spec.instance_type = request.instance_type.clone();
    spec.volume_gib = request.disk_gib;
    spec.allow_ssh_from_anywhere = request.allow_anywhere;
    spec.open_service_port = request.open_service_port.then_some(8080);
    spec.validate().map_err(ec2_error)?;

    let aws = aws_target(&state, &request.region)?;
    let provisioner = Provisioner::for_config(&aws.load().await);
    let mut progress = |m: &str| say(m);
    let (host, address) = provisioner
        .provision_into_vault(&spec, &state.vault, &mut progress, Duration::from_secs(600))
        .await
        .map_err(ec2_error)?;
    say("reading the host key fingerprints from the console output");
    let mut fingerprint = String::new();
    // Twelve tries (a minute at the default 5 s apart): cloud-init prints them within a minute of
    // boot. MLOPS_CONSOLE_OUTPUT_POLL_MS shortens the wait against a stand-in that never prints.
    let poll = std::env::var("MLOPS_CONSOLE_OUTPUT_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    for _ in 0..12 {
        let fps = provisioner
            .host_key_fingerprints(&host.instance_id)
            .await
            .map_err(ec2_error)?;
        if let Some((_, fp)) = fps.into_iter().next() {
            fingerprint = fp;
            break;
        }
        tokio::time::sleep(poll).await;
    }
    let mut warnings = host.warnings.clone();
    if fingerprint.is_empty() {
        warnings.push("cloud-init has not printed the host key fingerprints yet; run provisioning again in a minute to pin them (SSH is refused until then)".into());
    }
    let mut settings = state.settings();
    settings.aws.region = request.region.clone();
    settings.ec2.name = spec.name.clone();
    settings.ec2.instance_type = spec.instance_type.clone();
    settings.ec2.disk_gib = spec.volume_gib;
    settings.ec2.ssh_cidr = Some(cidr);
    settings.ec2.open_service_port = request.open_service_port;
    settings.ec2.instance_id = Some(host.instance_id.clone());
    let old = settings.remote.clone().unwrap_or_default();
    settings.remote = Some(RemoteHost {
        host: address.clone(),
        user: spec.user.clone(),
        compose_dir: spec.compose_dir.clone(),
        fingerprint: fingerprint.clone(),
        ..old
    });
    settings.save(&state.settings_path)?;
    *state.settings.lock().unwrap() = settings;
    say("done");
    Ok(Provisioned {
        instance_id: host.instance_id,
        host: address,
        fingerprint,
        created: host.created,
        warnings,
    })
}
