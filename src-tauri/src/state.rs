//! Everything the commands share: the data directory, remembered settings, the deployment
//! history and engine, the keychain, the sandbox's traffic and the SSH tunnel to a remote service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use console_core::balancer::Haproxy;
use console_core::cloudwatch::Reader;
use console_core::engine::Progress;
use console_core::fleet::Fleet;
use console_core::local_balancer::LocalHaproxy;
use console_core::sandbox::{self, Traffic};
use console_core::sandbox_fleet;
use console_core::service::ServiceClient;
use console_core::ssh::{Forward, SshSession, SshTarget};
use console_core::target::{Host, RegistryAuth};
use console_core::vault::{SecretName, Vault};
use console_core::{Engine, History, Secret, Target};

use crate::error::{AppError, AppResult};
use crate::settings::{RemoteHost, Settings};

pub struct AppState {
    pub data_dir: PathBuf,
    pub settings_path: PathBuf,
    pub settings: Mutex<Settings>,
    pub engine: Arc<Engine>,
    pub vault: Vault,
    pub sandbox_port: u16,
    pub sandbox: tokio::sync::Mutex<Option<sandbox::Engine>>,
    pub traffic: tokio::sync::Mutex<Option<Traffic>>,
    pub tunnel: tokio::sync::Mutex<Option<Tunnel>>,
    /// Monitoring tokens by target, read once (every dashboard refresh needs one), with whether
    /// the keychain keeps them: one made without a keychain lives only while this console runs.
    pub tokens: Mutex<std::collections::HashMap<String, (Secret, bool)>>,
    /// The dashboard's CloudWatch reader, kept between refreshes (its SDK client caches the
    /// credentials it resolved) under the AWS settings it was made for; see `cloudwatch_reader`.
    pub cloudwatch: tokio::sync::Mutex<Option<(AwsKey, Reader)>>,
    /// Bumped whenever a credential is saved or deleted, so cached AWS clients are made anew.
    pub credentials_changed: AtomicU64,
    /// The sandbox fleet's loopback ports and, once the fleet is first used, its HAProxy.
    pub fleet_ports: sandbox_fleet::Ports,
    pub fleet_balancer: tokio::sync::Mutex<Option<LocalHaproxy>>,
    /// Set while a fleet rollout runs: a second one is refused rather than interleaved.
    pub fleet_busy: std::sync::atomic::AtomicBool,
}

/// What an AWS client was made from, without any secret: region, credential source, profile,
/// endpoint, and the keychain's generation (the keys themselves stay in the keychain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsKey {
    region: String,
    mode: String,
    profile: Option<String>,
    endpoint: Option<String>,
    credentials: u64,
}

/// An open SSH connection forwarding a loopback port to the remote service.
pub struct Tunnel {
    pub key: String,
    pub session: SshSession,
    pub forward: Forward,
}

/// `$MLOPS_CONSOLE_DATA_DIR`, else `$XDG_DATA_HOME/mlops-console`, else ~/.local/share/mlops-console.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MLOPS_CONSOLE_DATA_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    History::default_path()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".mlops-console"))
}

impl AppState {
    pub fn open(data_dir: PathBuf, progress: Progress) -> AppResult<AppState> {
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            AppError::new(
                "data-dir",
                format!(
                    "cannot create the data directory {}: {e}",
                    data_dir.display()
                ),
            )
        })?;
        let history = Arc::new(History::open(&data_dir.join("history.sqlite"))?);
        let engine = Arc::new(Engine::new(history)?.with_progress(progress));
        let settings_path = data_dir.join("console.json");
        let settings = Settings::load(&settings_path)?;
        let sandbox_port = std::env::var("MLOPS_SANDBOX_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(sandbox::DEFAULT_PORT);
        let vault = match std::env::var("MLOPS_VAULT_SERVICE") {
            Ok(s) if !s.is_empty() => Vault::with_service(&s),
            _ => Vault::new(),
        };
        Ok(AppState {
            data_dir,
            settings_path,
            settings: Mutex::new(settings),
            engine,
            vault,
            sandbox_port,
            sandbox: tokio::sync::Mutex::new(None),
            traffic: tokio::sync::Mutex::new(None),
            tunnel: tokio::sync::Mutex::new(None),
            tokens: Mutex::new(Default::default()),
            cloudwatch: tokio::sync::Mutex::new(None),
            credentials_changed: AtomicU64::new(0),
            fleet_ports: sandbox_fleet::Ports::from_env(),
            fleet_balancer: tokio::sync::Mutex::new(None),
            fleet_busy: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A CloudWatch reader for the current AWS settings: the one made for the previous refresh
    /// while the settings and the keychain are unchanged, else a new one.
    pub async fn cloudwatch_reader(&self) -> AppResult<Reader> {
        let aws = self.settings().aws;
        let key = AwsKey {
            region: aws.region.clone(),
            mode: aws.mode.clone(),
            profile: aws.profile.clone(),
            endpoint: crate::commands::cloud::aws_endpoint(),
            credentials: self.credentials_changed.load(Ordering::Acquire),
        };
        let mut cached = self.cloudwatch.lock().await;
        if let Some((k, reader)) = cached.as_ref() {
            if *k == key {
                return Ok(reader.clone());
            }
        }
        let target = crate::commands::cloud::aws_target(self, &aws.region)?;
        let reader = Reader::for_config(&target.load().await);
        *cached = Some((key, reader.clone()));
        Ok(reader)
    }

    pub fn settings(&self) -> Settings {
        self.settings.lock().unwrap().clone()
    }

    /// Docker and compose on this computer, looked up once.
    pub async fn sandbox_engine(&self) -> sandbox::Engine {
        let mut g = self.sandbox.lock().await;
        if g.is_none() {
            *g = Some(sandbox::detect().await);
        }
        g.clone().expect("set above")
    }

    fn remote(&self) -> AppResult<RemoteHost> {
        self.settings().remote.ok_or_else(|| {
            AppError::new(
                "no-remote",
                "no remote host is set up yet; finish the Platform and Provision steps of the wizard",
            )
        })
    }

    fn ssh_target(&self, r: &RemoteHost) -> AppResult<SshTarget> {
        if r.fingerprint.is_empty() {
            return Err(AppError::new(
                "no-fingerprint",
                format!("the host key of {} is not pinned yet; enter its SHA256 fingerprint in the Platform step", r.host),
            ));
        }
        let key = self
            .vault
            .get(&SecretName::SshKey(r.host.clone()))?
            .ok_or_else(|| {
                AppError::new(
                    "missing-credential",
                    format!(
                        "no SSH key for {} in the keychain; add it in the Credentials step",
                        r.host
                    ),
                )
            })?;
        Ok(SshTarget::new(
            r.host.clone(),
            r.port,
            r.user.clone(),
            key,
            r.fingerprint.clone(),
        ))
    }

    /// The compose program of this computer's Docker engine, or why the sandbox cannot deploy.
    async fn compose(&self) -> AppResult<Vec<String>> {
        let e = self.sandbox_engine().await;
        match (e.docker, e.compose) {
            (true, Some(compose)) => Ok(compose),
            _ => Err(AppError::new(
                "no-docker",
                format!("the sandbox deploys containers, but {}. Start Docker (and install docker-compose), then try again", e.detail),
            )),
        }
    }

    /// The sandbox fleet's size: three hosts until the user resizes it.
    pub fn fleet_size(&self) -> AppResult<usize> {
        Ok(sandbox_fleet::size(self.engine.history())?)
    }

    /// The sandbox fleet: its hosts on this computer, each a sandbox target with the fleet's
    /// monitoring token, alert webhook and post-switch watch.
    pub async fn sandbox_fleet(&self) -> AppResult<Fleet> {
        self.sandbox_fleet_of(self.fleet_size()?).await
    }

    /// The sandbox fleet as if it had `hosts` hosts (a resize's view of it).
    pub async fn sandbox_fleet_of(&self, hosts: usize) -> AppResult<Fleet> {
        let prefix = std::env::var("MLOPS_SANDBOX_PROJECT")
            .map(|p| format!("{p}-fleet"))
            .unwrap_or_else(|_| "mlops-sandbox-fleet".into());
        let mut fleet = sandbox_fleet::fleet(
            &self.data_dir,
            self.fleet_ports,
            &self.compose().await?,
            &prefix,
            hosts,
        );
        let token = self.api_token(sandbox_fleet::NAME)?.0;
        for m in &mut fleet.members {
            m.target.api_token = Some(token.clone());
            m.target.alert_webhook = self.alert_webhook(sandbox_fleet::NAME);
            m.target.watch = self.watch();
        }
        Ok(fleet)
    }

    /// The fleet's load balancer: its HAProxy, started on first use and kept while the console
    /// runs.
    pub async fn fleet_balancer(&self) -> AppResult<Haproxy> {
        let mut g = self.fleet_balancer.lock().await;
        if g.is_none() {
            let (dir, ports, hosts) = (self.data_dir.clone(), self.fleet_ports, self.fleet_size()?);
            let started = tokio::task::spawn_blocking(move || {
                sandbox_fleet::start_balancer(&dir, ports, hosts)
            })
            .await
            .map_err(|e| AppError::new("haproxy", e.to_string()))?
            .map_err(|e| AppError::new("haproxy", e))?;
            *g = Some(started);
        }
        Ok(g.as_ref().expect("started above").balancer())
    }

    /// The deploy target called `name`: "sandbox" or "remote".
    pub async fn target(&self, name: &str) -> AppResult<Target> {
        match name {
            "sandbox" => {
                let mut t =
                    sandbox::target(&self.data_dir, self.sandbox_port, self.compose().await?);
                if let Ok(p) = std::env::var("MLOPS_SANDBOX_PROJECT") {
                    t.project = p;
                }
                t.api_token = Some(self.api_token(&t.name)?.0);
                t.alert_webhook = self.alert_webhook(&t.name);
                t.watch = self.watch();
                Ok(t)
            }
            sandbox_fleet::NAME => Err(AppError::invalid(
                "the fleet deploys host by host through its load balancer: use the fleet's deploy (fleet_deploy)",
            )),
            "remote" => {
                let r = self.remote()?;
                let ssh = self.ssh_target(&r)?;
                let mut t = Target::new(
                    r.host.clone(),
                    Host::Ssh(ssh),
                    r.compose_dir.clone(),
                    r.image.clone(),
                    r.service_port,
                );
                t.project = console_core::target::compose_project(&r.compose_dir);
                if r.image.contains('/') && !r.registry_user.is_empty() {
                    let token = self.vault.get(&SecretName::GhcrToken)?.ok_or_else(|| {
                        AppError::new(
                            "missing-credential",
                            "no GHCR token in the keychain; add it in the Credentials step",
                        )
                    })?;
                    t.registry = Some(RegistryAuth {
                        server: r.image.split('/').next().unwrap_or("ghcr.io").to_string(),
                        user: r.registry_user.clone(),
                        token,
                    });
                }
                t.api_token = Some(self.api_token(&t.name)?.0);
                t.alert_webhook = self.alert_webhook(&t.name);
                t.watch = self.watch();
                t.cloudwatch = crate::commands::cloud::publishing(self);
                Ok(t)
            }
            other => Err(AppError::invalid(format!(
                "unknown target `{other}`; use sandbox, sandbox-fleet or remote"
            ))),
        }
    }

    /// A client for the target's service: the sandbox's loopback port, or an SSH tunnel to the
    /// remote host's loopback-published port (opened once and reused while it lives).
    pub async fn service(&self, name: &str) -> AppResult<ServiceClient> {
        let token = Some(self.api_token(&self.history_name(name)?)?.0);
        if name == "sandbox" {
            return Ok(
                ServiceClient::new(SocketAddr::from(([127, 0, 0, 1], self.sandbox_port)))
                    .with_token(token),
            );
        }
        if name == sandbox_fleet::NAME {
            // The fleet's first host: what a single-service page (verify, alerts) looks at.
            return Ok(client_on(self.fleet_ports.host(0)).with_token(token));
        }
        let r = self.remote()?;
        let key = format!("{}@{}:{}>{}", r.user, r.host, r.port, r.service_port);
        let mut g = self.tunnel.lock().await;
        if let Some(t) = g.as_ref() {
            if t.key == key && !t.session.is_closed() {
                return Ok(client_on(t.forward.local_port).with_token(token));
            }
        }
        *g = None;
        let ssh = self.ssh_target(&r)?;
        let session = SshSession::connect(&ssh)
            .await
            .map_err(|e| AppError::new("ssh", e.to_string()))?;
        let forward = session
            .forward_local(r.service_port)
            .await
            .map_err(|e| AppError::new("ssh", e.to_string()))?;
        let port = forward.local_port;
        *g = Some(Tunnel {
            key,
            session,
            forward,
        });
        Ok(client_on(port).with_token(token))
    }

    /// The monitoring token of a target (its history name): from the keychain, or made and stored
    /// there on first use. Without a keychain it lives in memory for this run (the second value is
    /// false then), and a version deployed by an earlier run must be redeployed to be watched again.
    pub fn api_token(&self, name: &str) -> AppResult<(Secret, bool)> {
        let mut m = self.tokens.lock().unwrap();
        if let Some(t) = m.get(name) {
            return Ok(t.clone());
        }
        let t = match self
            .vault
            .get_or_create_token(&SecretName::ApiToken(name.to_string()))
        {
            Ok(t) => (t, true),
            Err(_) => (
                Secret::random_hex(24).map_err(|e| {
                    AppError::new("random", format!("no random source for a token: {e}"))
                })?,
                false,
            ),
        };
        m.insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// The post-switch watch the settings ask for.
    fn watch(&self) -> Option<std::time::Duration> {
        let m = self.settings().watch_minutes;
        (m > 0).then(|| std::time::Duration::from_secs(60 * u64::from(m)))
    }

    /// The alert webhook URL of a target (its history name) from the keychain; None when none is
    /// stored or there is no keychain (the service then keeps its alerts on its own API).
    pub fn alert_webhook(&self, name: &str) -> Option<Secret> {
        self.vault
            .get(&SecretName::AlertWebhook(name.to_string()))
            .ok()
            .flatten()
    }

    /// The history's name for a target ("sandbox", or the remote host).
    pub fn history_name(&self, name: &str) -> AppResult<String> {
        match name {
            "sandbox" => Ok("sandbox".into()),
            // The fleet's tokens and rules are the fleet's; its hosts' histories are h1... (the
            // header's serving version is the first host's).
            sandbox_fleet::NAME => Ok(sandbox_fleet::NAME.into()),
            "remote" => Ok(self.remote()?.host),
            other => Err(AppError::invalid(format!("unknown target `{other}`"))),
        }
    }
}

fn client_on(port: u16) -> ServiceClient {
    ServiceClient::new(SocketAddr::from(([127, 0, 0, 1], port)))
}
