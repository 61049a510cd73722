//! Integration-test harness: real stand-ins for the EC2 host (a private OpenSSH server), GHCR
//! (Debian's docker-registry with htpasswd auth), the images a deployment pulls, and a TCP proxy that
//! can cut connections. Everything listens on 127.0.0.1 only and is torn down when its value drops.
//!
//! Include it from an integration test with `mod support;`.
//!
//! Processes that outlive their Rust value (the process-wide [`shared_registry`], which is never
//! dropped, or anything left behind when a test binary is killed) are handled by a watchdog: each
//! server is started together with a small `sh` loop that kills it and removes its temp dir within
//! about a second after the test process has gone.
#![allow(dead_code, unused_imports)]

pub mod aws_faults;
pub mod bed;
pub mod github_double;
pub mod haproxy;
pub mod images;
pub mod moto;
pub mod proxy;
pub mod registry;
pub mod sshd;

pub use images::TestImages;
pub use proxy::TcpProxy;
pub use registry::{shared_registry, Registry};
pub use sshd::Sshd;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Env var that turns "Docker is unavailable" from a skip into a failure (CI sets it to 1).
pub const REQUIRE_DOCKER_ENV: &str = "MLOPS_REQUIRE_DOCKER";

/// A free loopback port below Linux's ephemeral range (32768 and up), so no outgoing connection on
/// this machine can take it as its source port between this check and the server's bind, and a
/// readiness probe cannot connect to itself on it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let seed = RandomState::new();
    (0u64..)
        .map(|i| 20_000 + (seed.hash_one(i) % 12_000) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port")
}

/// `Ok` when a Docker engine answers `docker version`; otherwise the reason. Checked once per process.
pub fn docker_available() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let mut cmd = Command::new("docker");
            cmd.args(["version", "--format", "{{.Server.Version}}"]);
            match run_with_timeout(&mut cmd, None, Duration::from_secs(20)) {
                Err(e) => Err(format!("the Docker engine is unavailable: {e}")),
                Ok(out) if !out.status.success() => Err(format!(
                    "`docker version` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Ok(out) if String::from_utf8_lossy(&out.stdout).trim().is_empty() => {
                    Err("`docker version` printed no server version".to_string())
                }
                Ok(_) => Ok(()),
            }
        })
        .clone()
}

/// For tests that need Docker: `true` when the engine is there. Otherwise panics with the reason if
/// `MLOPS_REQUIRE_DOCKER=1` (CI), else prints the reason and returns `false` (the test returns early).
pub fn docker_or_skip(test: &str) -> bool {
    match docker_available() {
        Ok(()) => true,
        Err(reason) => {
            if std::env::var(REQUIRE_DOCKER_ENV).as_deref() == Ok("1") {
                panic!("{test}: Docker is required ({REQUIRE_DOCKER_ENV}=1) but {reason}");
            }
            eprintln!(
                "{test}: SKIPPED, {reason} (set {REQUIRE_DOCKER_ENV}=1 to make this a failure)"
            );
            false
        }
    }
}

/// For the Docker tests scripts/test.sh runs in processes of their own beside the rest of the suite
/// (deploy.rs, fleet.rs): `false` in the `cargo test` of everything else
/// (`MLOPS_DEPLOY_TESTS_RUN_APART=1`), else [`docker_or_skip`].
pub fn run_here_with_docker(test: &str) -> bool {
    if std::env::var("MLOPS_DEPLOY_TESTS_RUN_APART").as_deref() == Ok("1") {
        eprintln!("{test}: skipped here: scripts/test.sh runs it beside the rest of the suite");
        return false;
    }
    docker_or_skip(test)
}

/// The repository root (the Cargo workspace), derived from this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("console-core has a parent directory")
        .to_path_buf()
}

/// `program arg arg ...` for error messages (stdin is never part of it, so passwords never show).
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` with `stdin` fed to it (or /dev/null), capturing stdout and stderr; kills it after
/// `timeout`. `Err` only when it could not be started or timed out (a non-zero exit is in `Output`).
pub fn run_with_timeout(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for `{}`: {e}", describe(cmd))),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "`{}` did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
            describe(cmd),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// Runs `cmd` (see [`run_with_timeout`]) and panics with its full output unless it exits 0.
pub fn run_ok(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let out = run_with_timeout(cmd, stdin, timeout).unwrap_or_else(|e| panic!("{e}"));
    if !out.status.success() {
        panic!("{}", failure_message(cmd, &out));
    }
    out
}

/// "`cmd` exited N" plus both output streams, for panics and `Err`s.
pub fn failure_message(cmd: &Command, out: &Output) -> String {
    format!(
        "`{}` failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A PEM armour line, five dashes each side of "BEGIN <kind> PRIVATE KEY" (`edge` "BEGIN" or "END",
/// `kind` "OPENSSH" or "RSA"), assembled at run time so the source holds nothing key-shaped.
#[allow(dead_code)]
pub fn pem_armour(edge: &str, kind: &str) -> String {
    format!("-----{edge} {kind} {}-----", ["PRIVATE", "KEY"].join(" "))
}

/// `n` random bytes from /dev/urandom as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A throw-away credential-shaped value, made fresh for each run (tests never carry real or
/// real-looking secrets in the source).
pub fn test_token(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex(16))
}

/// A throw-away access-key id (20 upper-case letters and digits), fresh for each run.
pub fn test_key_id() -> String {
    format!("TEST{}", random_hex(8).to_uppercase())
}

/// A fresh SSH key pair made with `ssh-keygen` at test time: (private PEM, public key line).
/// `rsa_pem` selects EC2's PKCS#1 RSA format, else OpenSSH ed25519.
pub fn fresh_ssh_key(rsa_pem: bool) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("key");
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", "test@mlops-console", "-f"])
        .arg(&file);
    if rsa_pem {
        cmd.args(["-t", "rsa", "-b", "2048", "-m", "PEM"]);
    } else {
        cmd.args(["-t", "ed25519"]);
    }
    let out = cmd.output().expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = std::fs::read_to_string(&file).expect("read the private key");
    let public = std::fs::read_to_string(file.with_extension("pub")).expect("read the public key");
    (private, public.trim().to_string())
}

/// Standard base64 (with padding), for HTTP basic auth.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// A plain-HTTP response read by [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` over plain HTTP/1.0 (so the body is never chunked) with optional basic auth and extra
/// headers. A tiny std-only client for the stand-ins; 5 s connect/read timeouts.
pub fn http_get(
    addr: &str,
    path: &str,
    basic_auth: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> Result<HttpResponse, String> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|_| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut req =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: console-core-tests\r\n");
    if let Some((user, password)) = basic_auth {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        ));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "{addr}: no HTTP header in {:?}",
                String::from_utf8_lossy(&raw)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}: bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Polls `check` every 100 ms until it returns `Ok(true)`, returns `Err` early, or `timeout` passes.
pub fn wait_until(
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// One process from /proc: (pid, parent pid, state letter, command name).
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub state: char,
    pub comm: String,
}

/// A snapshot of every process (read from /proc).
pub fn processes() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// /proc/<pid>/stat of one process, `None` if it is gone.
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may contain spaces and parentheses, so split at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        state,
        comm,
    })
}

/// Every descendant of `pid` (children first, then grandchildren, ...), from one /proc snapshot.
pub fn descendants(pid: u32) -> Vec<ProcInfo> {
    let all = processes();
    let mut by_parent: HashMap<u32, Vec<&ProcInfo>> = HashMap::new();
    for p in &all {
        by_parent.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for child in by_parent.get(&parent).into_iter().flatten() {
            out.push((*child).clone());
            frontier.push(child.pid);
        }
    }
    out
}

/// `true` while `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    proc_info(pid).is_some_and(|p| p.state != 'Z')
}

/// SIGKILLs the given pids (best effort; `kill` from procps/util-linux).
pub fn kill_pids(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(|p| p.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts a watchdog for a server process: a `sh` loop that, once this test process has exited
/// (also when it was killed), SIGKILLs `server_pid` and all its descendants, every process whose
/// environment holds the entry `marker` (if given, e.g. `MLOPS_TEST_SSHD=<dir>`), and removes `dir`.
/// Stop it with [`stop_watchdog`] when the server is torn down normally.
pub fn spawn_watchdog(server_pid: u32, dir: &Path, marker: Option<&str>) -> Option<Child> {
    const SCRIPT: &str = r#"
owner=$1 server=$2 dir=$3 marker=$4
while kill -0 "$owner" 2>/dev/null; do sleep 1; done
tree() { for c in $(pgrep -P "$1"); do tree "$c"; done; echo "$1"; }
kill -KILL $(tree "$server") 2>/dev/null
if [ -n "$marker" ]; then
  for f in $(grep -lsxzF -e "$marker" /proc/[0-9]*/environ); do
    p=${f#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null
  done
fi
rm -rf -- "$dir"
"#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("mlops-test-watchdog")
        .arg(std::process::id().to_string())
        .arg(server_pid.to_string())
        .arg(dir)
        .arg(marker.unwrap_or(""))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Pids of the live processes whose environment contains exactly the entry `entry` ("NAME=value").
pub fn processes_with_env(entry: &str) -> Vec<u32> {
    let me = std::process::id();
    processes()
        .into_iter()
        .filter(|p| p.pid != me && p.state != 'Z')
        .filter(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .map(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
                .unwrap_or(false)
        })
        .map(|p| p.pid)
        .collect()
}

/// Stops a watchdog started by [`spawn_watchdog`] (the server is being torn down by its owner).
pub fn stop_watchdog(watchdog: Option<Child>) {
    if let Some(mut w) = watchdog {
        let _ = w.kill();
        let _ = w.wait();
    }
}

/// The last `max` bytes of a log file, for error messages.
pub fn tail_file(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// True when every command in `tools` is on PATH; otherwise says which are missing and skips, or
/// panics when MLOPS_REQUIRE_DOCKER=1 (CI: a missing tool is a failure, not a skip).
#[allow(dead_code)]
/// A shell snippet that waits (at most 5 s) until the keyring daemon owns the Secret Service's
/// name on the session bus. Without it a client can ask before the daemon started by
/// `gnome-keyring-daemon --unlock` has claimed the name, and D-Bus activates a second daemon that
/// knows no password: it then wants a prompt to create the login keyring ("prompt dismissed").
pub const WAIT_FOR_SECRET_SERVICE: &str = "i=0; until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; do i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.05; done";

pub fn tools_or_skip(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "not installed: {} (scripts/setup.sh installs them)",
        missing.join(", ")
    );
    if std::env::var(REQUIRE_DOCKER_ENV).as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    false
}
