//! Debian's HAProxy on loopback as a local fleet's load balancer (the sandbox's fleet, and the
//! tests'): one HTTP frontend, one backend with a server per host, each checked on `/readyz`, and
//! the runtime API on a loopback TCP port with admin level, which [`crate::balancer::Haproxy`]
//! drives (drain, maint, ready). Its pid is kept in its directory: a HAProxy left running by a
//! console that died (its child outlives it) is stopped by the next start in the same directory,
//! which would otherwise find its ports taken.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::balancer::Haproxy;

/// The backend's name in the configuration.
pub const BACKEND: &str = "inference";

/// A running HAProxy, stopped when dropped.
pub struct LocalHaproxy {
    child: Child,
    /// Where clients send their requests: 127.0.0.1:`port`.
    pub port: u16,
    /// The runtime API, `127.0.0.1:<port>`.
    pub api: String,
    /// Its configuration and its error log.
    pub dir: PathBuf,
}

/// The configuration for `servers` (name, loopback port): the first `in_pool` take requests, the
/// others start in maintenance (a fleet's free slots, for hosts it may add). Retries on another
/// server cover a connection refused by a host just taken out of the pool; a predict request's
/// body fits in the buffer, so it can be retried.
pub fn config(port: u16, api_port: u16, servers: &[(String, u16)], in_pool: usize) -> String {
    let lines: String = servers
        .iter()
        .enumerate()
        .map(|(i, (name, p))| {
            let slot = if i < in_pool { "" } else { " disabled" };
            format!("    server {name} 127.0.0.1:{p} check{slot}\n")
        })
        .collect();
    format!(
        "global
    stats socket ipv4@127.0.0.1:{api_port} level admin
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout
frontend web
    bind 127.0.0.1:{port}
    default_backend {BACKEND}
backend {BACKEND}
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 2 rise 1
{lines}"
    )
}

impl LocalHaproxy {
    /// Writes the configuration into `dir` (the first `in_pool` servers in the pool, see
    /// [`config`]), starts `haproxy` and waits until its runtime API answers. Servers that do not
    /// answer yet are simply DOWN until they do. Blocking (it waits up to 20 s): call it from a
    /// blocking context.
    pub fn start(
        dir: &Path,
        port: u16,
        api_port: u16,
        servers: &[(String, u16)],
        in_pool: usize,
    ) -> Result<LocalHaproxy, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cfg = dir.join("haproxy.cfg");
        stop_left_behind(dir, &cfg);
        std::fs::write(&cfg, config(port, api_port, servers, in_pool))
            .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
        let err_log = dir.join("haproxy.err");
        let stderr = std::fs::File::create(&err_log)
            .map_err(|e| format!("cannot write {}: {e}", err_log.display()))?;
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                format!("HAProxy could not start ({e}); install it with `sudo apt install haproxy`")
            })?;
        let api = format!("127.0.0.1:{api_port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&api).is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&err_log).unwrap_or_default();
                let tail: String = log.lines().rev().take(8).collect::<Vec<_>>().join("\n");
                return Err(format!(
                    "HAProxy did not open its runtime API on {api}{}: {tail}",
                    exited.map_or(" within 20 s".to_string(), |s| format!(" ({s})"))
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid_file = dir.join(PID_FILE);
        if let Err(e) = std::fs::write(&pid_file, child.id().to_string()) {
            tracing::warn!(
                "could not keep HAProxy's pid in {}: {e}",
                pid_file.display()
            );
        }
        Ok(LocalHaproxy {
            child,
            port,
            api,
            dir: dir.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of its runtime API.
    pub fn balancer(&self) -> Haproxy {
        Haproxy::new(self.api.clone(), BACKEND)
    }
}

impl Drop for LocalHaproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join(PID_FILE));
    }
}

/// Where a running HAProxy's pid is kept, in its directory.
pub const PID_FILE: &str = "haproxy.pid";

/// Stops the HAProxy whose pid `dir` kept, if that process still runs with `cfg` (a pid reused by
/// another program is left alone), and waits up to 5 s for it to go.
fn stop_left_behind(dir: &Path, cfg: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    let ours = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"haproxy"))
                && args.contains(&cfg.as_os_str().as_encoded_bytes())
        })
    };
    if !ours(pid) {
        return;
    }
    tracing::warn!("stopping HAProxy {pid}, left running by a console that did not exit cleanly");
    // SAFETY: kill(2) with a pid checked above to be this directory's HAProxy; no memory involved.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while ours(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}
