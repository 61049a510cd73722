//! A private OpenSSH server on 127.0.0.1, standing in for the EC2 host.
//!
//! Each instance has its own temp dir holding its config, a fresh ed25519 host key, two client keys
//! (ed25519 in OpenSSH format, RSA 2048 in PKCS#1 PEM like EC2's key pairs), `authorized_keys`, a
//! `known_hosts` for the OpenSSH client and `docker-config/`, which sessions get as `DOCKER_CONFIG`.
//! It never uses the system's sshd (port 22) or the system's host keys.

use super::{
    descendants, failure_message, free_port, kill_pids, pid_alive, processes_with_env, run_ok,
    run_with_timeout, spawn_watchdog, stop_watchdog, tail_file,
};
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Sshd::ssh_command`] lets a remote command run.
pub const SSH_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Set (to the instance's dir) in the environment of every session, next to DOCKER_CONFIG.
pub const SESSION_MARKER_VAR: &str = "MLOPS_TEST_SSHD";

pub struct Sshd {
    pub port: u16,
    /// The user to log in as: the user running the tests (`id -un`).
    pub user: String,
    /// `ssh-keygen -lf` of the host key: "SHA256:...".
    pub host_fingerprint: String,
    /// The host public key line, "ssh-ed25519 AAAA...".
    pub host_public_key: String,
    /// Client private key, ed25519, OpenSSH format (OpenSSH private-key armour).
    pub ed25519_pem: String,
    /// Client private key, RSA 2048, PKCS#1 PEM (RSA private-key armour, EC2's format).
    pub rsa_pem: String,
    pub ed25519_key_file: PathBuf,
    pub rsa_key_file: PathBuf,
    /// `known_hosts` with this server's host key, for the OpenSSH client.
    pub known_hosts: PathBuf,
    /// `DOCKER_CONFIG` of every session (`SetEnv` in sshd_config); `<dir>/docker-config`, empty at start.
    pub docker_config: PathBuf,
    /// The instance's temp dir (removed on drop); usable as the parent of a remote compose dir.
    pub dir: PathBuf,
    /// sshd's own log (`-e`: everything it logs goes here).
    pub log_file: PathBuf,
    /// `MLOPS_TEST_SSHD=<dir>`, set in every session's environment.
    marker: String,
    child: Child,
    watchdog: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1:<free port> and waits until it sends its `SSH-2.0` banner.
    /// Panics (with sshd's log) if it does not come up within 10 s.
    pub fn start() -> Sshd {
        Self::try_start().unwrap_or_else(|e| panic!("Sshd::start: {e}"))
    }

    pub fn try_start() -> Result<Sshd, String> {
        // sshd refuses to start without its privilege-separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let tmp = tempfile::Builder::new()
            .prefix("mlops-sshd-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let dir = tmp.path().to_path_buf();

        let host_key = dir.join("ssh_host_ed25519_key");
        let ed25519_key_file = dir.join("id_ed25519");
        let rsa_key_file = dir.join("id_rsa");
        keygen(&host_key, &["-t", "ed25519"], "mlops-test-host");
        keygen(&ed25519_key_file, &["-t", "ed25519"], "mlops-test-ed25519");
        keygen(
            &rsa_key_file,
            &["-t", "rsa", "-b", "2048", "-m", "PEM"],
            "mlops-test-rsa",
        );
        let read =
            |p: &Path| fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()));
        let ed25519_pem = read(&ed25519_key_file)?;
        let rsa_pem = read(&rsa_key_file)?;
        let host_pub = read(&host_key.with_extension("pub"))?;
        let host_public_key = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let authorized_keys = dir.join("authorized_keys");
        fs::write(
            &authorized_keys,
            format!(
                "{}{}",
                read(&ed25519_key_file.with_extension("pub"))?,
                read(&PathBuf::from(format!("{}.pub", rsa_key_file.display())))?
            ),
        )
        .map_err(|e| format!("write authorized_keys: {e}"))?;

        let fp = run_ok(
            Command::new("ssh-keygen")
                .arg("-lf")
                .arg(host_key.with_extension("pub")),
            None,
            Duration::from_secs(10),
        );
        let host_fingerprint = String::from_utf8_lossy(&fp.stdout)
            .split_whitespace()
            .nth(1)
            .ok_or("ssh-keygen -lf printed no fingerprint")?
            .to_string();

        let user = String::from_utf8_lossy(
            &run_ok(Command::new("id").arg("-un"), None, Duration::from_secs(10)).stdout,
        )
        .trim()
        .to_string();

        let docker_config = dir.join("docker-config");
        fs::create_dir(&docker_config).map_err(|e| format!("mkdir docker-config: {e}"))?;
        let log_file = dir.join("sshd.log");
        let config_file = dir.join("sshd_config");
        let known_hosts = dir.join("known_hosts");
        // Every session (and whatever it starts) carries this, so processes that outlive their
        // connection can still be found and killed.
        let marker = format!("{SESSION_MARKER_VAR}={}", dir.display());

        // free_port() can race with another process taking the port; try a few.
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let config = format!(
                "\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PidFile {pid_file}
Subsystem sftp /usr/lib/openssh/sftp-server
ClientAliveInterval 5
MaxSessions 50
MaxStartups 50
SetEnv DOCKER_CONFIG={docker_config} {marker}
",
                host_key = host_key.display(),
                authorized_keys = authorized_keys.display(),
                pid_file = dir.join("sshd.pid").display(),
                docker_config = docker_config.display(),
            );
            fs::write(&config_file, config).map_err(|e| format!("write sshd_config: {e}"))?;
            fs::write(
                &known_hosts,
                format!("[127.0.0.1]:{port} {host_public_key}\n"),
            )
            .map_err(|e| format!("write known_hosts: {e}"))?;

            let log = fs::File::create(&log_file).map_err(|e| format!("create sshd.log: {e}"))?;
            let log2 = log.try_clone().map_err(|e| format!("sshd.log: {e}"))?;
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config_file)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|e| format!("cannot start {SSHD}: {e} (is openssh-server installed? scripts/setup.sh installs it)"))?;

            match wait_for_banner(&mut child, port) {
                Ok(()) => {
                    let watchdog = spawn_watchdog(child.id(), &dir, Some(&marker));
                    return Ok(Sshd {
                        port,
                        user,
                        host_fingerprint,
                        host_public_key,
                        ed25519_pem,
                        rsa_pem,
                        ed25519_key_file,
                        rsa_key_file,
                        known_hosts,
                        docker_config,
                        dir,
                        log_file,
                        marker,
                        child,
                        watchdog,
                        _tmp: tmp,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = tail_file(&log_file, 4000);
                    last_error = format!("sshd on 127.0.0.1:{port}: {e}\n--- sshd log\n{log}");
                    if !(log.contains("Address already in use") || log.contains("Cannot bind")) {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// The listener's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `[127.0.0.1]:port` as the server address, `127.0.0.1:port` as a socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills every per-connection sshd process (the listener's children and the session processes
    /// under them) with SIGKILL, so each open SSH connection drops at once; the listener keeps
    /// accepting new connections. Commands the sessions were running are not killed: like after a
    /// real dropped connection they lose stdin/stdout and may run on (see
    /// [`Sshd::remote_processes`]); drop kills them. Returns once the killed processes are gone.
    pub fn kill_sessions(&self) {
        let sshds: Vec<u32> = descendants(self.child.id())
            .into_iter()
            .filter(|p| p.comm.starts_with("sshd"))
            .map(|p| p.pid)
            .collect();
        kill_pids(&sshds);
        let deadline = Instant::now() + Duration::from_secs(5);
        while sshds.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pids of the processes started through this server that are still running (session shells,
    /// remote commands and their children, also after their connection dropped), found by the
    /// `MLOPS_TEST_SSHD=<dir>` entry in their environment.
    pub fn remote_processes(&self) -> Vec<u32> {
        processes_with_env(&self.marker)
    }

    /// Number of live per-connection sshd processes (the listener's direct children).
    pub fn session_count(&self) -> usize {
        descendants(self.child.id())
            .iter()
            .filter(|p| p.ppid == self.child.id() && p.state != 'Z')
            .count()
    }

    /// The OpenSSH client command for `remote_cmd` with the given key file, checking the host key
    /// against [`Sshd::known_hosts`] (StrictHostKeyChecking=yes) and ignoring any user ssh config.
    pub fn ssh_client_command(&self, key_file: &Path, remote_cmd: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("/dev/null")
            .arg("-i")
            .arg(key_file)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=10"])
            .args(["-o", "LogLevel=ERROR"])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote_cmd);
        cmd
    }

    /// Runs `remote_cmd` over SSH with the ed25519 key (stdin /dev/null). Panics only if `ssh` cannot
    /// be started or runs longer than [`SSH_COMMAND_TIMEOUT`]; check `status` yourself.
    pub fn ssh_command(&self, remote_cmd: &str) -> Output {
        self.ssh_command_with_key(&self.ed25519_key_file, remote_cmd)
    }

    /// [`Sshd::ssh_command`] with another key file (e.g. [`Sshd::rsa_key_file`]).
    pub fn ssh_command_with_key(&self, key_file: &Path, remote_cmd: &str) -> Output {
        let mut cmd = self.ssh_client_command(key_file, remote_cmd);
        run_with_timeout(&mut cmd, None, SSH_COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Sshd::ssh_command`] but panics (with both streams and sshd's log) unless it exits 0;
    /// returns stdout.
    pub fn ssh_ok(&self, remote_cmd: &str) -> String {
        let cmd = self.ssh_client_command(&self.ed25519_key_file, remote_cmd);
        let out = self.ssh_command(remote_cmd);
        if !out.status.success() {
            panic!(
                "{}\n--- sshd log\n{}",
                failure_message(&cmd, &out),
                tail_file(&self.log_file, 4000)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last few KB of sshd's log.
    pub fn log(&self) -> String {
        tail_file(&self.log_file, 8000)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop_watchdog(self.watchdog.take());
        let below: Vec<u32> = descendants(self.child.id())
            .into_iter()
            .map(|p| p.pid)
            .collect();
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_pids(&below);
        // Commands that outlived their connection are no longer below the listener.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = processes_with_env(&self.marker);
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            kill_pids(&left);
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn keygen(file: &Path, type_args: &[&str], comment: &str) {
    run_ok(
        Command::new("ssh-keygen")
            .arg("-q")
            .args(type_args)
            .args(["-N", "", "-C", comment, "-f"])
            .arg(file),
        None,
        Duration::from_secs(30),
    );
}

/// Waits until 127.0.0.1:port accepts a connection and sends an `SSH-2.0` banner.
fn wait_for_banner(child: &mut Child, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut last;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited during start-up ({status})"));
        }
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 256];
                match s.read(&mut buf) {
                    Ok(n) if buf[..n].starts_with(b"SSH-2.0") => return Ok(()),
                    Ok(n) => {
                        last = format!("unexpected banner {:?}", String::from_utf8_lossy(&buf[..n]))
                    }
                    Err(e) => last = format!("reading the banner: {e}"),
                }
            }
            Err(e) => last = format!("connect: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no SSH-2.0 banner within {STARTUP_TIMEOUT:?} ({last})"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
