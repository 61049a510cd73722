//! Debian's HAProxy on loopback, standing in for a fleet's load balancer: one HTTP frontend, one
//! backend `inference` with a server per host, each checked on `/readyz`, and the runtime API on a
//! loopback TCP port with admin level (drain, maint, ready).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, spawn_watchdog, stop_watchdog, tail_file};

pub struct Haproxy {
    child: Child,
    watchdog: Option<Child>,
    pub dir: tempfile::TempDir,
    /// Where clients send their requests.
    pub port: u16,
    /// The runtime API, `127.0.0.1:<port>`.
    pub api: String,
    pub backend: String,
    pub log: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy in front of `servers` (name, loopback port) and waits until its runtime API
    /// answers. Servers that do not answer yet are simply DOWN until they do.
    pub fn start(servers: &[(&str, u16)]) -> Haproxy {
        let dir = tempfile::Builder::new()
            .prefix("mlops-haproxy-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let api_port = free_port();
        let lines: String = servers
            .iter()
            .map(|(name, p)| format!("    server {name} 127.0.0.1:{p} check\n"))
            .collect();
        // Retries on another server cover a connection refused by a host that was just taken out
        // of the pool; the body of a predict request fits in the buffer, so it can be retried.
        let config = format!(
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
    default_backend inference
backend inference
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 2 rise 1
{lines}"
        );
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("haproxy.log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start haproxy (apt install haproxy): {e}"));
        let watchdog = spawn_watchdog(child.id(), dir.path(), None);
        let api = format!("127.0.0.1:{api_port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&api).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not open its runtime API: {}",
                tail_file(&dir.path().join("haproxy.err"), 4000)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy {
            child,
            watchdog,
            dir,
            port,
            api,
            backend: "inference".into(),
            log,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        stop_watchdog(self.watchdog.take());
    }
}
