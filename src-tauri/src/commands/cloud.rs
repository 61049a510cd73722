//! EC2 provisioning for the wizard: key pair (its PEM straight into the keychain), security group,
//! the role the service publishes to CloudWatch with, instance with Docker via user-data, status
//! checks, the host key pinned from cloud-init's console output, and the stack's CloudWatch alarms
//! (mailed through an SNS topic); the teardown removes all of it. Progress streams to the page as
//! `provision` events.

use std::time::Duration;

use console_core::alarms::{self, Alarms, StackAlarms};
use console_core::aws::{AwsAuth, AwsTarget};
use console_core::ec2::{self, HostSpec, Provisioner};
use console_core::publisher_role::{self, PublisherRole};
use console_core::target::CloudWatchPublishing;
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
    /// Who CloudWatch's alarms mail; empty: the alarms exist but mail nobody.
    #[serde(default)]
    pub alert_emails: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Provisioned {
    pub instance_id: String,
    pub host: String,
    pub fingerprint: String,
    pub created: Vec<String>,
    pub warnings: Vec<String>,
    /// The CloudWatch alarms in place (the host's; the service's follow its first deploy).
    pub alarms: Vec<String>,
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

/// One line of provisioning or teardown progress, for the page.
fn emit_progress<R: Runtime>(app: &AppHandle<R>, line: &str) {
    let _ = app.emit(PROVISION_EVENT, line.to_string());
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
    let say = |m: &str| emit_progress(&app, m);
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
    let emails: Vec<String> = request
        .alert_emails
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    alarms::validate(&alarm_stack(&spec.name), &[], &emails)
        .map_err(|e| AppError::invalid(format!("alert e-mail: {e}")))?;

    let aws = aws_target(&state, &request.region)?;
    let config = aws.load().await;
    let provisioner = Provisioner::for_config(&config);
    say("IAM role for publishing the service's metrics to CloudWatch");
    let (profile, role_created) = PublisherRole::for_config(&config)
        .ensure(&spec.name)
        .await
        .map_err(ec2_error)?;
    spec.instance_profile = Some(profile);
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
    say("CloudWatch alarms for the host, mailed through an SNS topic");
    let stack = StackAlarms {
        stack: alarm_stack(&spec.name),
        namespace: publisher_role::NAMESPACE.into(),
        service: spec.name.clone(),
        model_version: String::new(),
        instance_id: Some(host.instance_id.clone()),
        autoencoder: false,
    };
    let applied = Alarms::for_config(&config)
        .apply(&stack, &stack.rules(), &emails)
        .await
        .map_err(|e| AppError::new("alarms", e.to_string()))?;
    for e in &applied.subscribed {
        say(&format!(
            "AWS mailed {e} a link to confirm the alert subscription"
        ));
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
    settings.ec2.alert_emails = emails;
    settings.ec2.alarms_for = None;
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
        created: role_created.into_iter().chain(host.created).collect(),
        warnings,
        alarms: applied.alarms,
    })
}

/// The stack's name as alarm and topic names take it (lower case).
fn alarm_stack(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The provisioned EC2 stack the remote target is, if it is one.
fn ec2_stack(state: &AppState) -> Option<(String, String, String)> {
    let s = state.settings();
    let instance = s.ec2.instance_id.clone()?;
    (s.platform.as_deref() == Some("ec2") && s.remote.is_some())
        .then(|| (s.ec2.name.clone(), instance, s.aws.region.clone()))
}

/// How the remote target's service publishes to CloudWatch: on a provisioned EC2 stack, into the
/// namespace its instance profile allows, with the stack's name as the `Service` dimension.
pub fn publishing(state: &AppState) -> Option<CloudWatchPublishing> {
    ec2_stack(state).map(|(name, _, region)| CloudWatchPublishing {
        namespace: publisher_role::NAMESPACE.into(),
        service: name,
        region,
    })
}

/// The stack's CloudWatch alarms for the version serving now, put again when it changed since the
/// last time (each version publishes under its own `ModelVersion`). Returns the alarm names and
/// the version they watch; None when the remote target is not a provisioned EC2 stack.
pub async fn refresh_alarms(state: &AppState) -> AppResult<Option<(Vec<String>, String)>> {
    let Some((name, instance, region)) = ec2_stack(state) else {
        return Ok(None);
    };
    let client = state.service("remote").await?;
    let model = client
        .model()
        .await
        .map_err(|e| AppError::new("monitoring", e))?;
    let version = model["version"].as_str().unwrap_or_default().to_string();
    let stack = StackAlarms {
        stack: alarm_stack(&name),
        namespace: publisher_role::NAMESPACE.into(),
        service: name,
        model_version: version.clone(),
        instance_id: Some(instance),
        autoencoder: model["task"].as_str().unwrap_or("autoencoder") == "autoencoder",
    };
    let config = aws_target(state, &region)?.load().await;
    let a = Alarms::for_config(&config);
    let settings = state.settings();
    if settings.ec2.alarms_for.as_deref() == Some(version.as_str()) {
        let names = a
            .stack_alarms(&stack.stack)
            .await
            .map_err(|e| AppError::new("alarms", e.to_string()))?
            .into_iter()
            .filter_map(|m| m.alarm_name)
            .collect();
        return Ok(Some((names, version)));
    }
    // The alarms follow the rules the service evaluates (the user's, or its defaults).
    let answer = client
        .get_json("/v1/monitoring/alerts")
        .await
        .map_err(|e| AppError::new("monitoring", e))?;
    let definitions = console_core::alert_rules::definitions(&answer);
    let rules = console_core::alarms::follow_service_rules(stack.rules(), &definitions);
    let applied = a
        .apply(&stack, &rules, &settings.ec2.alert_emails)
        .await
        .map_err(|e| AppError::new("alarms", e.to_string()))?;
    let mut settings = state.settings();
    settings.ec2.alarms_for = Some(version.clone());
    settings.save(&state.settings_path)?;
    *state.settings.lock().unwrap() = settings;
    Ok(Some((applied.alarms, version)))
}

/// Makes the next [`refresh_alarms`] put the alarms again (the rules they follow changed).
pub fn forget_applied_alarms(state: &AppState) -> AppResult<()> {
    let mut settings = state.settings();
    if settings.ec2.alarms_for.take().is_some() {
        settings.save(&state.settings_path)?;
        *state.settings.lock().unwrap() = settings;
    }
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct TornDown {
    pub removed: Vec<String>,
}

/// Removes the provisioned stack: its alarms and topic, the instance (and with it the volume), the
/// security group, the key pair, the publishing role; forgets the host and its SSH key. `name`
/// must be the stack's, as the page's confirmation asks for it.
#[tauri::command]
pub async fn teardown_ec2<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    name: String,
) -> AppResult<TornDown> {
    let say = |m: &str| emit_progress(&app, m);
    let settings = state.settings();
    if settings.ec2.instance_id.is_none() || name != settings.ec2.name {
        return Err(AppError::invalid(format!(
            "`{name}` is not the stack this console provisioned (`{}`); type its name to confirm",
            settings.ec2.name
        )));
    }
    let config = aws_target(&state, &settings.aws.region)?.load().await;
    let mut removed = Vec::new();
    say("CloudWatch alarms and the alert topic");
    let stack = alarm_stack(&name);
    removed.extend(
        Alarms::for_config(&config)
            .remove(&stack)
            .await
            .map_err(|e| AppError::new("alarms", e.to_string()))?,
    );
    let spec = HostSpec::new(
        &name,
        settings.ec2.ssh_cidr.as_deref().unwrap_or("0.0.0.0/32"),
    );
    let mut progress = |m: &str| say(m);
    removed.extend(
        Provisioner::for_config(&config)
            .teardown(&spec, &mut progress, Duration::from_secs(600))
            .await
            .map_err(ec2_error)?,
    );
    say("IAM role and instance profile");
    removed.extend(
        PublisherRole::for_config(&config)
            .remove(&name)
            .await
            .map_err(ec2_error)?,
    );
    state.vault.delete(&ec2::stack_key(&spec))?;
    let mut settings = state.settings();
    if let Some(r) = settings.remote.take() {
        state.vault.delete(&SecretName::SshKey(r.host))?;
    }
    settings.ec2.instance_id = None;
    settings.ec2.alarms_for = None;
    settings.save(&state.settings_path)?;
    *state.settings.lock().unwrap() = settings;
    say("done");
    Ok(TornDown { removed })
}
