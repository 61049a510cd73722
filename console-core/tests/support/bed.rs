//! One deploy test's world, shared by the deploy tests and the deploy benchmark: the host (sshd),
//! the registry, the images, a compose project on a free port, and an engine with its own history.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use console_core::engine::Progress;
use console_core::ssh::SshTarget;
use console_core::{Deployment, Engine, Event, History, Host, RegistryAuth, Secret, Target};

use super::{Registry, Sshd, TestImages};

static PROJECTS: AtomicUsize = AtomicUsize::new(0);

/// One test's world: the host (sshd), registry, images, a compose project on a free port, and an
/// engine with its own history database.
pub struct Bed {
    pub sshd: Sshd,
    pub registry: &'static Registry,
    pub images: &'static TestImages,
    pub target: Target,
    pub engine: Engine,
    pub db: tempfile::TempDir,
    pub events: Arc<Mutex<Vec<Event>>>,
}

impl Bed {
    pub fn new(rsa: bool) -> Bed {
        let registry = super::shared_registry();
        let images = TestImages::ensure(registry);
        let sshd = Sshd::start();
        let n = PROJECTS.fetch_add(1, Ordering::SeqCst);
        let project = format!("cctest{}x{n}", std::process::id());
        let pem = if rsa {
            sshd.rsa_pem.clone()
        } else {
            sshd.ed25519_pem.clone()
        };
        let ssh = SshTarget::new(
            "127.0.0.1",
            sshd.port,
            sshd.user.clone(),
            Secret::new(pem),
            sshd.host_fingerprint.clone(),
        );
        let compose_dir = sshd.dir.join(&project).to_string_lossy().into_owned();
        let mut target = Target::new(
            format!("test-{project}"),
            Host::Ssh(ssh),
            compose_dir,
            images.repo.clone(),
            super::free_port(),
        );
        target.project = project;
        target.registry = Some(RegistryAuth {
            server: registry.addr.clone(),
            user: registry.user.clone(),
            token: Secret::new(registry.password.clone()),
        });
        target.ready_timeout = Duration::from_secs(45);
        target.keep_images = 10;
        target.candidate_port = Some(super::free_port());
        let db = tempfile::tempdir().unwrap();
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let engine = new_engine(&db, events.clone(), None);
        Bed {
            sshd,
            registry,
            images,
            target,
            engine,
            db,
            events,
        }
    }

    pub fn history(&self) -> &History {
        self.engine.history()
    }

    /// The recorded step `name` of deployment `d` (panics if it did not run).
    pub fn step(&self, d: &Deployment, name: &str) -> console_core::history::Step {
        self.history()
            .steps(d.id)
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("deployment #{} has no step {name:?}", d.id))
    }

    pub fn step_names(&self, d: &Deployment) -> Vec<String> {
        self.history()
            .steps(d.id)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    /// GET /v1/model on the published port: Some(image tag) if ready.
    pub fn answering(&self) -> Option<String> {
        answering(self.target.port)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let label = format!("label=com.docker.compose.project={}", self.target.project);
        for (kind, list) in [
            ("container", vec!["ps", "-aq"]),
            ("volume", vec!["volume", "ls", "-q"]),
            ("network", vec!["network", "ls", "-q"]),
        ] {
            let out = std::process::Command::new("docker")
                .args(&list)
                .args(["--filter", &label])
                .output();
            let ids: Vec<String> = out
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                continue;
            }
            let rm: Vec<&str> = match kind {
                "container" => vec!["rm", "-f", "-v"],
                "volume" => vec!["volume", "rm", "-f"],
                _ => vec!["network", "rm"],
            };
            let _ = std::process::Command::new("docker")
                .args(&rm)
                .args(&ids)
                .output();
        }
    }
}

pub fn new_engine(
    db: &tempfile::TempDir,
    events: Arc<Mutex<Vec<Event>>>,
    hook: Option<Progress>,
) -> Engine {
    let history = Arc::new(History::open(&db.path().join("history.sqlite")).unwrap());
    let p: Progress = Arc::new(move |e: &Event| {
        if let Some(h) = &hook {
            h(e);
        }
        events.lock().unwrap().push(e.clone());
    });
    Engine::new(history).unwrap().with_progress(p)
}

pub fn answering(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(300),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /v1/model HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let r = console_core::health::parse_response(&raw).ok()?;
    if r.status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
    Some(v["image_tag"].as_str()?.to_string())
}

/// Polls the service every 50 ms in a thread; records what answered and when.
/// (seconds since start, the tag that answered)
pub type Samples = Vec<(f64, Option<String>)>;

pub struct Prober {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Samples>>,
}

impl Prober {
    pub fn start(port: u16) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut seen = Vec::new();
            while !s.load(Ordering::SeqCst) {
                seen.push((t0.elapsed().as_secs_f64(), answering(port)));
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Prober {
            stop,
            handle: Some(handle),
        }
    }

    /// (samples, windows of no answer in seconds)
    pub fn finish(mut self) -> (Samples, Vec<f64>) {
        self.stop.store(true, Ordering::SeqCst);
        let seen = self.handle.take().unwrap().join().unwrap();
        let mut windows = Vec::new();
        let mut down_since: Option<f64> = None;
        for (t, a) in &seen {
            match (a, down_since) {
                (None, None) => down_since = Some(*t),
                (Some(_), Some(s)) => {
                    windows.push(t - s);
                    down_since = None;
                }
                _ => {}
            }
        }
        if let (Some(s), Some((t, _))) = (down_since, seen.last()) {
            windows.push(t - s);
        }
        (seen, windows)
    }
}

/// Scans every process's command line and environment on this machine every 10 ms while a deploy
/// runs (the EC2 host's processes are this machine's processes here), collecting what an inspector
/// reports of them.
pub struct SecretWatch {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

/// One process's `cmdline` or `environ` as a scan saw it.
pub struct ProcBytes<'a> {
    pub pid: &'a str,
    /// "cmdline" or "environ".
    pub what: &'static str,
    pub bytes: &'a [u8],
    dir: &'a std::path::Path,
}

impl ProcBytes<'_> {
    /// The process's name (`comm`).
    pub fn comm(&self) -> String {
        std::fs::read_to_string(self.dir.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Its command line with spaces between the arguments.
    pub fn command_line(&self) -> String {
        let cmd = std::fs::read(self.dir.join("cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmd).replace('\0', " ")
    }
}

impl SecretWatch {
    /// Reports every process holding `secret` in its argv or environment.
    pub fn start(secret: &str) -> SecretWatch {
        let secret = secret.to_string();
        SecretWatch::scan(move |p| {
            if p.bytes
                .windows(secret.len())
                .any(|w| w == secret.as_bytes())
            {
                vec![format!(
                    "pid {} {}: {}",
                    p.pid,
                    p.what,
                    p.command_line().replace(&secret, "<SECRET>")
                )]
            } else {
                Vec::new()
            }
        })
    }

    /// Runs `inspect` on every process's argv and environment each scan; distinct reports are kept.
    pub fn scan(
        mut inspect: impl FnMut(&ProcBytes<'_>) -> Vec<String> + Send + 'static,
    ) -> SecretWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let me = std::process::id().to_string();
        let handle = std::thread::spawn(move || {
            let mut scans = 0;
            let mut found: Vec<String> = Vec::new();
            while !s.load(Ordering::SeqCst) {
                scans += 1;
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let pid = e.file_name().to_string_lossy().into_owned();
                    if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                        continue;
                    }
                    let dir = e.path();
                    for what in ["cmdline", "environ"] {
                        let Ok(bytes) = std::fs::read(dir.join(what)) else {
                            continue;
                        };
                        let seen = ProcBytes {
                            pid: &pid,
                            what,
                            bytes: &bytes,
                            dir: &dir,
                        };
                        for line in inspect(&seen) {
                            if !found.contains(&line) {
                                found.push(line);
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (scans, found)
        });
        SecretWatch {
            stop,
            handle: Some(handle),
        }
    }

    /// (number of scans, processes seen holding the secret in argv or environment)
    pub fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}
