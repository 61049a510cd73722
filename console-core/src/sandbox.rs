//! The local sandbox: this computer's Docker engine as a deploy target, images built locally (no
//! registry, no pull), and the replay tool feeding the deployed service traffic so the dashboard
//! moves. Needs no cloud account.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::process::{Child, Command};

use crate::target::{Host, Target};

/// The image repository the sandbox deploys from (built by `scripts/sandbox-images.sh`).
pub const IMAGE: &str = "mlops-sandbox/inference";
pub const DEFAULT_PORT: u16 = 8080;

/// What the sandbox can run on, said plainly to the user.
#[derive(Clone, Debug, Serialize)]
pub struct Engine {
    pub docker: bool,
    /// Docker's server version, or why Docker cannot be used.
    pub detail: String,
    /// The compose program found (`docker-compose` or `docker compose`), if any.
    pub compose: Option<Vec<String>>,
}

async fn output(argv: &[&str]) -> Result<String, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| format!("`{}` did not answer within 10 s", argv.join(" ")))?
    .map_err(|e| format!("`{}` could not start: {e}", argv[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Looks for a usable Docker engine and compose program.
pub async fn detect() -> Engine {
    let server = output(&["docker", "version", "--format", "{{.Server.Version}}"]).await;
    let compose = if output(&["docker-compose", "version"]).await.is_ok() {
        Some(vec!["docker-compose".to_string()])
    } else if output(&["docker", "compose", "version"]).await.is_ok() {
        Some(vec!["docker".to_string(), "compose".to_string()])
    } else {
        None
    };
    match server {
        Ok(v) if compose.is_some() => Engine {
            docker: true,
            detail: format!("Docker Engine {v}"),
            compose,
        },
        Ok(v) => Engine {
            docker: false,
            detail: format!(
                "Docker Engine {v} is running but neither `docker-compose` nor `docker compose` is installed"
            ),
            compose,
        },
        Err(e) => Engine {
            docker: false,
            detail: format!("no Docker engine answers: {e}"),
            compose,
        },
    }
}

/// The sandbox target: local Docker, images already present, the service on 127.0.0.1:`port`.
pub fn target(data_dir: &Path, port: u16, compose: Vec<String>) -> Target {
    let mut t = Target::new(
        "sandbox",
        Host::Local,
        data_dir.join("sandbox").to_string_lossy().into_owned(),
        IMAGE,
        port,
    );
    t.compose = compose;
    t.project = "mlops-sandbox".into();
    // Local images start in about a second: a version not ready in 20 s is not going to be.
    t.ready_timeout = Duration::from_secs(20);
    t
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LocalImage {
    pub tag: String,
    pub id: String,
    pub created: String,
}

/// Tags of `image` present in the local engine, newest first.
pub async fn local_tags(image: &str) -> Result<Vec<LocalImage>, String> {
    let out = output(&[
        "docker",
        "image",
        "ls",
        "--format",
        "{{.Tag}}\t{{.ID}}\t{{.CreatedAt}}",
        image,
    ])
    .await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut p = l.split('\t');
            let (tag, id, created) = (p.next()?, p.next()?, p.next()?);
            (tag != "<none>").then(|| LocalImage {
                tag: tag.into(),
                id: id.into(),
                created: created.into(),
            })
        })
        .collect())
}

/// Where a companion binary (the replay tool) is: `$MLOPS_<NAME>_BIN`, else beside this program.
pub fn companion_binary(name: &str) -> Option<PathBuf> {
    let var = format!("MLOPS_{}_BIN", name.to_ascii_uppercase());
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let here = std::env::current_exe().ok()?;
    let p = here.parent()?.join(name);
    p.is_file().then_some(p)
}

/// Share of anomalous rows in the sandbox's steady traffic.
pub const SANDBOX_ANOMALY_FRACTION: &str = "0.05";

/// Replayed traffic against the sandbox service: a child process, stopped on drop.
pub struct Traffic {
    child: Child,
    pub scenario: String,
    pub rate: f64,
}

impl Traffic {
    /// Starts `replay --url http://127.0.0.1:<port> --scenario <s> --rate <r>` for up to an hour.
    /// `scenario` is a comma list of the replay tool's scenarios (normal, anomalies, feedback,
    /// drift, ...).
    /// `token` is the service's monitoring token (the feedback scenario posts labels); it reaches
    /// the tool in its environment (INFERENCE_TOKEN), not its arguments.
    pub fn start(
        replay: &Path,
        port: u16,
        scenario: &str,
        rate: f64,
        token: Option<&crate::Secret>,
        data: Option<&crate::own_model::ReplayData>,
    ) -> Result<Traffic, String> {
        if scenario.is_empty()
            || !scenario
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b',' || b == b'-')
        {
            return Err(format!(
                "scenario {scenario:?} must be a comma list of names such as normal,anomalies,drift"
            ));
        }
        if !(rate > 0.0 && rate <= 1000.0) {
            return Err(format!("rate {rate} must be between 0 and 1000 requests/s"));
        }
        let mut cmd = Command::new(replay);
        if let Some(t) = token {
            cmd.env("INFERENCE_TOKEN", t.expose());
        }
        let child = cmd
            .args(["--url", &format!("http://127.0.0.1:{port}")])
            .args(["--scenario", scenario])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", "60m"])
            // Steady traffic as production sees it: a few anomalous rows, not the tool's 20 %
            // (which alone moves most features' distributions far enough to read as input drift),
            // and a drift scenario that moves every feature, so that the input as a whole drifts.
            .args(
                scenario
                    .split(',')
                    .any(|s| s == "anomalies")
                    .then_some(["--anomaly-fraction", SANDBOX_ANOMALY_FRACTION])
                    .into_iter()
                    .flatten(),
            )
            .args(
                scenario
                    .split(',')
                    .any(|s| s == "drift")
                    .then_some(["--drift-features", "all"])
                    .into_iter()
                    .flatten(),
            )
            // An own model's rows (the bundled autoencoder's are the tool's default).
            .args(data.iter().flat_map(|d| {
                let mut a = vec!["--data".to_string(), d.dir.display().to_string()];
                if let Some(l) = &d.label_column {
                    a.extend(["--label-column".to_string(), l.clone()]);
                }
                a
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start the replay tool {}: {e}", replay.display()))?;
        Ok(Traffic {
            child,
            scenario: scenario.into(),
            rate,
        })
    }

    /// None while running; the exit status and the tool's last error lines once it stopped.
    pub async fn finished(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = tokio::time::timeout(
                        Duration::from_millis(200),
                        e.read_to_string(&mut err),
                    )
                    .await;
                }
                let tail: Vec<&str> = err.lines().rev().take(3).collect();
                Some(format!(
                    "{status}{}",
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                        )
                    }
                ))
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Stops the replay tool (SIGINT-like kill; it keeps no state).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_target_is_local_and_loopback() {
        let t = target(Path::new("/tmp/x"), 18080, vec!["docker-compose".into()]);
        assert!(matches!(t.host, Host::Local));
        assert_eq!(t.compose_dir, "/tmp/x/sandbox");
        assert_eq!(t.publish_ip, "127.0.0.1");
        assert_eq!(t.candidate_port, Some(18081));
        assert!(t.registry.is_none());
    }

    #[tokio::test]
    async fn traffic_refuses_bad_input() {
        let e = Traffic::start(Path::new("/bin/true"), 1, "normal;rm", 5.0, None, None)
            .err()
            .unwrap();
        assert!(e.contains("comma list"), "{e}");
        let e = Traffic::start(Path::new("/bin/true"), 1, "normal", 0.0, None, None)
            .err()
            .unwrap();
        assert!(e.contains("between 0 and 1000"), "{e}");
    }
}
