//! A deploy target: where the inference service runs and how to reach it.

use std::time::Duration;

use crate::secret::Secret;
use crate::ssh::SshTarget;

#[derive(Clone, Debug)]
pub enum Host {
    /// This computer's Docker engine (the sandbox).
    Local,
    /// A remote host over SSH (an EC2 instance).
    Ssh(SshTarget),
}

/// Credentials for `docker login` on the host (GHCR: the GitHub user and a PAT with read:packages).
#[derive(Clone, Debug)]
pub struct RegistryAuth {
    /// Registry host, e.g. `ghcr.io`.
    pub server: String,
    pub user: String,
    pub token: Secret,
}

/// Where the service publishes its monitoring minutes in CloudWatch (an EC2 host whose instance
/// profile allows it, see [`crate::publisher_role`]): written to the compose directory's .env as
/// INFERENCE_CLOUDWATCH_NAMESPACE, _SERVICE and _REGION, so a deploy by the GitHub workflow
/// publishes the same way. None publishes nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudWatchPublishing {
    pub namespace: String,
    /// The `Service` dimension (the stack's name, so alarms outlive model changes).
    pub service: String,
    pub region: String,
}

#[derive(Clone, Debug)]
pub struct Target {
    /// Unique name in the history, e.g. `sandbox` or `prod-eu`.
    pub name: String,
    pub host: Host,
    /// DOCKER_COMPOSE_DIR on the host: holds docker-compose.yml and .env.
    pub compose_dir: String,
    /// Image repository without tag, e.g. `ghcr.io/owner/repo`.
    pub image: String,
    /// Host port the service is published on (INFERENCE_PORT).
    pub port: u16,
    /// Host address to publish on (INFERENCE_HOST_IP); 127.0.0.1 keeps it off the network and the
    /// console reaches it through SSH.
    pub publish_ip: String,
    /// None: images are already on the host (the sandbox builds them), so no login and no pull.
    pub registry: Option<RegistryAuth>,
    /// The compose program, `docker-compose` (what the seed's hosts run) or `docker compose`.
    pub compose: Vec<String>,
    /// COMPOSE_PROJECT_NAME, written to .env so the GitHub workflow and the console agree.
    pub project: String,
    /// How long a new version has to pass /readyz after `up -d`.
    pub ready_timeout: Duration,
    /// Images of this repository kept on the host (newest healthy versions); older ones are pruned.
    pub keep_images: usize,
    /// Host port for trying a new version beside the live one before switching (127.0.0.1 only).
    /// None skips that and gates only after the switch (then a bad version costs
    /// `ready_timeout` of downtime before the automatic rollback).
    pub candidate_port: Option<u16>,
    /// Limit for any single step (pull included).
    pub step_timeout: Duration,
    /// The bearer token the service requires for monitoring and feedback (INFERENCE_API_TOKEN).
    /// It reaches `docker-compose up` on stdin, never a file or a command line; None starts the
    /// service without one (its monitoring then answers 403 when it listens beyond loopback).
    pub api_token: Option<Secret>,
    /// Where the service POSTs its alert events (INFERENCE_ALERT_WEBHOOK_URL): it reaches
    /// `docker-compose up` on stdin after the token, like it; None leaves the service's alerts on
    /// its own monitoring API only.
    pub alert_webhook: Option<Secret>,
    /// How long to watch a new version's critical alert rules after a deploy's switch
    /// ([`crate::watch`]); a breach rolls the deploy back. None: no watch.
    pub watch: Option<Duration>,
    pub cloudwatch: Option<CloudWatchPublishing>,
}

impl Target {
    pub fn new(
        name: impl Into<String>,
        host: Host,
        compose_dir: impl Into<String>,
        image: impl Into<String>,
        port: u16,
    ) -> Self {
        Target {
            name: name.into(),
            host,
            compose_dir: compose_dir.into(),
            image: image.into(),
            port,
            publish_ip: "127.0.0.1".into(),
            registry: None,
            compose: vec!["docker-compose".into()],
            project: "inference".into(),
            ready_timeout: Duration::from_secs(60),
            keep_images: 3,
            candidate_port: port.checked_add(1),
            step_timeout: Duration::from_secs(600),
            api_token: None,
            alert_webhook: None,
            watch: None,
            cloudwatch: None,
        }
    }

    pub fn secrets(&self) -> Vec<&Secret> {
        let mut v = Vec::new();
        if let Some(r) = &self.registry {
            v.push(&r.token);
        }
        if let Host::Ssh(s) = &self.host {
            v.push(&s.key_pem);
        }
        if let Some(t) = &self.api_token {
            v.push(t);
        }
        if let Some(w) = &self.alert_webhook {
            v.push(w);
        }
        v
    }
}

/// The compose project for a compose directory: its last path component, lower-cased and kept to
/// the characters compose allows (`[a-z0-9_-]`, starting with a letter or digit), which for ordinary
/// directory names is the name `docker-compose` itself picks there. So the GitHub workflow (which runs compose in that directory
/// without a project name) and the console agree even before the console has written `.env`, and two
/// services in different directories of one host stay apart. `/opt/inference` gives `inference`.
pub fn compose_project(compose_dir: &str) -> String {
    let base = compose_dir
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let name: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let name = name.trim_start_matches(['_', '-']);
    if name.is_empty() {
        "inference".into()
    } else {
        name.to_string()
    }
}

/// Docker's rule for a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid image tag: use 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_project_is_the_directory_name_compose_would_pick() {
        assert_eq!(compose_project("/opt/inference"), "inference");
        assert_eq!(compose_project("/opt/inference/"), "inference");
        assert_eq!(compose_project("/srv/My.App_2"), "myapp_2");
        assert_eq!(compose_project("/tmp/x/mlops-e2e-42"), "mlops-e2e-42");
        assert_eq!(compose_project("/srv/_-svc"), "svc");
        assert_eq!(compose_project("/"), "inference");
        assert_eq!(compose_project("/srv/..."), "inference");
    }

    #[test]
    fn tags() {
        for t in ["v1", "1.2.3", "sha-abc123", "_x", "A_b.c-d"] {
            assert!(validate_tag(t).is_ok(), "{t}");
        }
        for t in [
            "",
            "-x",
            ".x",
            "a b",
            "a/b",
            "a:b",
            "$(id)",
            &"x".repeat(129),
        ] {
            assert!(validate_tag(t).is_err(), "{t}");
        }
    }
}
