//! Debian's `docker-registry` (distribution 2.x) on 127.0.0.1 with htpasswd auth, standing in for
//! GHCR. Docker treats 127.0.0.0/8 registries as insecure, so plain HTTP works for login/push/pull.

use super::{
    failure_message, free_port, http_get, random_hex, run_ok, run_with_timeout, spawn_watchdog,
    stop_watchdog, tail_file, wait_until, HttpResponse,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

pub struct Registry {
    /// "127.0.0.1:PORT", also the image-name prefix (`<addr>/acme/inference:v1`).
    pub addr: String,
    pub user: String,
    /// 16 random bytes, hex.
    pub password: String,
    /// The instance's temp dir (storage, config, htpasswd, log); removed on drop.
    pub dir: PathBuf,
    pub log_file: PathBuf,
    instance: u64,
    child: Child,
    watchdog: Option<Child>,
    _tmp: tempfile::TempDir,
}

/// One registry for the whole test process, started on first use and never dropped (tests running
/// on parallel threads share it, and [`super::TestImages::ensure`] pushes to it once). Its watchdog
/// kills it and removes its storage about a second after the test process exits.
pub fn shared_registry() -> &'static Registry {
    static SHARED: OnceLock<Result<Registry, String>> = OnceLock::new();
    match SHARED.get_or_init(Registry::try_start) {
        Ok(r) => r,
        Err(e) => panic!("shared_registry: {e}"),
    }
}

impl Registry {
    /// Starts a registry on 127.0.0.1:<free port> and waits until `GET /v2/` answers 401.
    pub fn start() -> Registry {
        Self::try_start().unwrap_or_else(|e| panic!("Registry::start: {e}"))
    }

    pub fn try_start() -> Result<Registry, String> {
        let tmp = tempfile::Builder::new()
            .prefix("mlops-registry-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let user = "mlops-test".to_string();
        let password = random_hex(16);
        let htpasswd = dir.join("htpasswd");
        // -i: the password comes from stdin, never from the command line.
        run_ok(
            Command::new("htpasswd")
                .args(["-iBc"])
                .arg(&htpasswd)
                .arg(&user),
            Some(format!("{password}\n").as_bytes()),
            Duration::from_secs(30),
        );
        let storage = dir.join("storage");
        fs::create_dir(&storage).map_err(|e| format!("mkdir storage: {e}"))?;
        let config_file = dir.join("config.yml");
        let log_file = dir.join("registry.log");

        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "\
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: {secret}
auth:
  htpasswd:
    realm: mlops-test-registry
    path: {htpasswd}
",
                storage = storage.display(),
                secret = random_hex(16),
                htpasswd = htpasswd.display(),
            );
            fs::write(&config_file, config).map_err(|e| format!("write config.yml: {e}"))?;
            let log = fs::File::create(&log_file).map_err(|e| format!("registry.log: {e}"))?;
            let log2 = log.try_clone().map_err(|e| format!("registry.log: {e}"))?;
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_file)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|e| {
                    format!("cannot start {REGISTRY_BIN}: {e} (scripts/setup.sh installs docker-registry)")
                })?;

            let ready = wait_until(STARTUP_TIMEOUT, || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("docker-registry exited during start-up ({status})"));
                }
                Ok(http_get(&addr, "/v2/", None, &[]).is_ok_and(|r| r.status == 401))
            })
            .and_then(|()| {
                // The credentials must work too (checks the htpasswd file end to end).
                let r = http_get(&addr, "/v2/", Some((&user, &password)), &[])?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!(
                        "GET /v2/ with the right credentials answered {}: {}",
                        r.status,
                        r.text()
                    ))
                }
            });
            match ready {
                Ok(()) => {
                    let watchdog = spawn_watchdog(child.id(), &dir, None);
                    return Ok(Registry {
                        addr,
                        user,
                        password,
                        dir,
                        log_file,
                        instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
                        child,
                        watchdog,
                        _tmp: tmp,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = tail_file(&log_file, 4000);
                    last_error = format!("docker-registry on {addr}: {e}\n--- registry log\n{log}");
                    if !log.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// A process-unique id of this instance (ports can be reused after a drop; this cannot).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// `docker --config <docker_config> login <addr> -u <user> --password-stdin`.
    pub fn docker_login(&self, docker_config: &Path) -> Result<(), String> {
        docker_login_as(&self.addr, docker_config, &self.user, &self.password)
    }

    /// `GET path` with this registry's credentials (e.g. "/v2/acme/inference/tags/list").
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<HttpResponse, String> {
        http_get(
            &self.addr,
            path,
            Some((&self.user, &self.password)),
            headers,
        )
    }

    /// The last few KB of the registry's log.
    pub fn log(&self) -> String {
        tail_file(&self.log_file, 8000)
    }
}

/// `docker --config <docker_config> login <addr> -u <user> --password-stdin`, the password on stdin.
pub fn docker_login_as(
    addr: &str,
    docker_config: &Path,
    user: &str,
    password: &str,
) -> Result<(), String> {
    let mut cmd = Command::new("docker");
    cmd.arg("--config")
        .arg(docker_config)
        .args(["login", addr, "-u", user, "--password-stdin"]);
    let out = run_with_timeout(&mut cmd, Some(password.as_bytes()), Duration::from_secs(60))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failure_message(&cmd, &out))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop_watchdog(self.watchdog.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
