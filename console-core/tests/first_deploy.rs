//! One flow from provisioning to the first deploy, wired as the app wires it (src-tauri's
//! `provision_ec2`, `github_configure` and its `remote` target), against the stand-ins: the OS
//! keychain (gnome-keyring on a private D-Bus session), moto_server for EC2 behind a recording
//! proxy, the GitHub double, and the loopback sshd + Docker engine + registry for the host.
//!
//! moto's instance is not reachable, so the test plays two parts of the cloud: cloud-init, which
//! puts the key pair's public key into the login user's `authorized_keys` (here derived from the
//! PEM in the keychain with `ssh-keygen -y`, the key on stdin) and prints the host key
//! fingerprint (here the loopback sshd's), and DNS, which makes the instance's public name reach
//! that sshd (the SSH connection goes to 127.0.0.1; every name, secret and record uses the
//! instance's address as the app does).
//!
//! Every secret of the flow is made at run time: the AWS key pair, the GitHub token, the GHCR token
//! (the loopback registry's password), the PEM (made by EC2, i.e. moto) and the monitoring token
//! (made in the keychain). During the flow every process's command line and environment is
//! scanned for them; afterwards every file the flow wrote, the history database, the progress
//! events, the audit log and the captured logs (tracing and `log`, at debug level) are.
//!
//! The keyring crate picks its store once per process, so the outer test runs the flow in a child
//! process of this test binary inside `dbus-run-session`, with a temporary HOME; the keyring's
//! unlock password travels on stdin.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use console_core::aws::{AwsAuth, AwsTarget};
use console_core::ec2::{HostSpec, Provisioner};
use console_core::github::{GitHub, Repo, Written, FINGERPRINT_VARIABLE};
use console_core::repo_setup::{configure_repository, HostFacts};
use console_core::ssh::{SshError, SshSession, SshTarget};
use console_core::vault::{SecretName, Vault};
use console_core::workflow_file::{WorkflowState, WORKFLOW, WORKFLOW_PATH};
use console_core::{Host, RegistryAuth, Secret, Target, Trigger};

use support::aws_faults::Ec2FaultProxy;
use support::bed::{answering, Bed, SecretWatch};
use support::github_double::Double;
use support::moto::Moto;

const INNER: &str = "MLOPS_FIRST_DEPLOY_INNER";

fn tools_or_skip() -> bool {
    support::tools_or_skip(&["dbus-run-session", "gnome-keyring-daemon", "ssh-keygen"])
}

#[test]
fn provision_configure_and_first_deploy() {
    if !tools_or_skip() || !support::run_here_with_docker("provision_configure_and_first_deploy") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // The throw-away keyring's unlock password: made here, read by `read` (a shell builtin) from
    // stdin and piped by `printf` (a builtin too) to the daemon, so it is in no argv and no file.
    let password = support::random_hex(16);
    let script = format!(
        "IFS= read -r pw || exit 1\n\
         printf '%s' \"$pw\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1\n\
         unset pw\n\
         {}\n\
         exec \"$0\" --exact inner_first_deploy --ignored --nocapture --test-threads 1 </dev/null",
        support::WAIT_FOR_SECRET_SERVICE
    );
    let mut child = Command::new("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env("HOME", home.path())
        .env(INNER, "1")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{password}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the flow failed (output above)"
    );
    assert!(!text.contains(&password));
}

/// The values that must never leave the places they belong (keychain, sealed boxes, stdin of the
/// program that needs them), each with a label for reports that never show the value.
#[derive(Clone, Default)]
struct Needles(Arc<Mutex<Vec<Needle>>>);

/// (label, value)
type Needle = (String, Vec<u8>);

impl Needles {
    fn add(&self, label: &str, value: &str) {
        assert!(value.len() >= 12, "{label} is too short to search for");
        self.0
            .lock()
            .unwrap()
            .push((label.to_string(), value.as_bytes().to_vec()));
    }

    /// A PEM: each base64 line is searched for on its own (a file or log may hold the key with
    /// other line breaks or escapes), except the first, which is the same for every unencrypted
    /// OpenSSH ed25519 key (`openssh-key-v1`, no cipher, the key type).
    fn add_pem(&self, label: &str, pem: &str) {
        self.add(label, pem);
        let body: Vec<&str> = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        assert!(body.len() >= 3, "{label}: an unexpectedly short PEM");
        for (i, line) in body.iter().enumerate().skip(1) {
            if line.len() >= 16 {
                self.add(&format!("{label} (line {})", i + 1), line);
            }
        }
    }

    fn list(&self) -> Vec<Needle> {
        self.0.lock().unwrap().clone()
    }

    /// Labels of the needles found in `hay`.
    fn found_in(&self, hay: &[u8]) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|(_, n)| contains(hay, n))
            .map(|(l, _)| l)
            .collect()
    }

    /// `text` with every needle replaced by `<label>`.
    fn redact(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (l, n) in self.list() {
            t = t.replace(&*String::from_utf8_lossy(&n), &format!("<{l}>"));
        }
        t
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The one value a process may hold in its environment by design: the monitoring token, which a
/// `sh` wrapper reads from stdin and exports to `docker-compose up`, which hands it to the
/// container (the service reads INFERENCE_API_TOKEN). Never in any command line.
const API_TOKEN: &str = "monitoring token";
const API_TOKEN_HOLDERS: &[&str] = &["sh", "docker-compose", "inference"];

/// Watches every process's argv and environment for the needles; the monitoring token is allowed
/// in the environment of its holders, which are recorded in `allowed_env`.
fn watch_processes(needles: Needles, allowed_env: Arc<Mutex<Vec<String>>>) -> SecretWatch {
    SecretWatch::scan(move |p| {
        let mut lines = Vec::new();
        for label in needles.found_in(p.bytes) {
            let comm = p.comm();
            if p.what == "environ"
                && label == API_TOKEN
                && API_TOKEN_HOLDERS.contains(&comm.as_str())
            {
                let mut a = allowed_env.lock().unwrap();
                if !a.contains(&comm) {
                    a.push(comm);
                }
                continue;
            }
            lines.push(format!(
                "pid {} ({comm}) {} holds the {label}: {}",
                p.pid,
                p.what,
                needles.redact(&p.command_line())
            ));
        }
        lines
    })
}

/// What the console and its libraries log (tracing events and spans, and `log` records from
/// russh, keyring and others), at debug level, appended to one file as an app would keep it.
mod capture {
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

    fn write(line: &str) {
        if let Some(f) = FILE.get() {
            let _ = writeln!(f.lock().unwrap_or_else(|e| e.into_inner()), "{line}");
        }
    }

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    struct Tracing(AtomicU64);

    impl tracing::Subscriber for Tracing {
        fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
            *m.level() <= tracing::Level::DEBUG
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::DEBUG)
        }
        fn new_span(&self, a: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            let mut f = Fields(format!(
                "span {} {}",
                a.metadata().target(),
                a.metadata().name()
            ));
            a.record(&mut f);
            write(&f.0);
            tracing::span::Id::from_u64(self.0.fetch_add(1, Ordering::Relaxed) + 1)
        }
        fn record(&self, _: &tracing::span::Id, r: &tracing::span::Record<'_>) {
            let mut f = Fields("span record".into());
            r.record(&mut f);
            write(&f.0);
        }
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, e: &tracing::Event<'_>) {
            let m = e.metadata();
            let mut f = Fields(format!("{} {}:", m.level(), m.target()));
            e.record(&mut f);
            write(&f.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    struct Log;

    impl log::Log for Log {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Debug
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                write(&format!("{} {}: {}", r.level(), r.target(), r.args()));
            }
        }
        fn flush(&self) {}
    }

    /// Sends every tracing event and `log` record at debug level or above to `path`.
    pub fn install(path: &std::path::Path) {
        let file = std::fs::File::create(path).unwrap();
        assert!(FILE.set(Mutex::new(file)).is_ok(), "installed twice");
        tracing::subscriber::set_global_default(Tracing(AtomicU64::new(0))).unwrap();
        log::set_logger(Box::leak(Box::new(Log))).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// The start of a redacted line and 150 characters either side of the first `<label>` in it.
fn around_label(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let at = line.find('<').map_or(0, |b| line[..b].chars().count());
    let head: String = chars.iter().take(80).collect();
    let from = at.saturating_sub(150).max(80);
    let window: String = chars.iter().skip(from).take(300).collect();
    format!("{head} … {window}")
}

/// Every regular file under `dir` (not following symlinks).
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// Larger files (image layers, binaries copied into build contexts) are not read.
const SCAN_LIMIT: u64 = 8 << 20;

/// Files and the labels of the needles found in each.
type Hits = Vec<(PathBuf, Vec<String>)>;

/// Files under `roots`, and files under the temp dir changed since `since`: (path, labels found).
/// Returns the hits, the files read and the number skipped for size.
fn scan_files(
    needles: &Needles,
    roots: &[&Path],
    since: SystemTime,
) -> (Hits, Vec<PathBuf>, usize) {
    let mut files = Vec::new();
    for r in roots {
        files_under(r, &mut files);
    }
    let mut tmp = Vec::new();
    files_under(&std::env::temp_dir(), &mut tmp);
    files.extend(tmp.into_iter().filter(|p| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since)
    }));
    files.sort();
    files.dedup();
    let (mut read, mut skipped, mut hits) = (Vec::new(), 0, Vec::new());
    for f in files {
        let Ok(m) = std::fs::symlink_metadata(&f) else {
            continue;
        };
        if m.len() > SCAN_LIMIT {
            skipped += 1;
            continue;
        }
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let found = needles.found_in(&bytes);
        if !found.is_empty() {
            hits.push((f.clone(), found));
        }
        read.push(f);
    }
    (hits, read, skipped)
}

/// Needles found in the files Docker keeps for the compose project's containers
/// (`<DockerRootDir>/containers/<id>/`: configuration, the service's own log); None when that
/// directory cannot be read (another user's engine).
fn docker_state_hits(project: &str, needles: &Needles) -> Option<Vec<(String, Vec<String>)>> {
    let out = |args: &[&str]| {
        let o = support::run_ok(
            Command::new("docker").args(args),
            None,
            Duration::from_secs(60),
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let root = PathBuf::from(out(&["info", "--format", "{{.DockerRootDir}}"]));
    let label = format!("label=com.docker.compose.project={project}");
    let ids = out(&["ps", "-aq", "--no-trunc", "--filter", &label]);
    assert!(!ids.is_empty(), "no container of project {project}");
    let mut hits = Vec::new();
    for id in ids.split_whitespace() {
        let dir = root.join("containers").join(id);
        std::fs::read_dir(&dir).ok()?;
        let mut files = Vec::new();
        files_under(&dir, &mut files);
        for f in files {
            let found = needles.found_in(&std::fs::read(&f).unwrap_or_default());
            if !found.is_empty() {
                hits.push((f.display().to_string(), found));
            }
        }
    }
    Some(hits)
}

/// `ssh-keygen -y`: the public key of a private key given on stdin (never a file or argv).
fn public_key_of(pem: &Secret) -> String {
    let out = support::run_ok(
        Command::new("ssh-keygen").args(["-y", "-f", "/dev/stdin"]),
        Some(pem.expose().as_bytes()),
        Duration::from_secs(30),
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        line.starts_with("ssh-ed25519 "),
        "not an ed25519 key: {line}"
    );
    line
}

/// `ssh-keygen -lf`: the `SHA256:` fingerprint of a public key line given on stdin.
fn fingerprint_of(public: &str) -> String {
    let out = support::run_ok(
        Command::new("ssh-keygen").args(["-l", "-f", "/dev/stdin"]),
        Some(format!("{public}\n").as_bytes()),
        Duration::from_secs(30),
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "run by provision_configure_and_first_deploy inside a private keychain"]
fn inner_first_deploy() {
    if std::env::var(INNER).as_deref() != Ok("1") {
        return;
    }
    let since = SystemTime::now() - Duration::from_secs(2);
    let logs = tempfile::Builder::new()
        .prefix("mlops-first-deploy-logs-")
        .tempdir()
        .unwrap();
    let log_file = logs.path().join("console.log");
    capture::install(&log_file);
    let t0 = Instant::now();
    // The host (sshd), the registry standing in for GHCR with the images, a compose project on a
    // free port, and an engine with its own history database.
    let b = Bed::new(false);
    let t_bed = t0.elapsed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let needles = Needles::default();
    let allowed_env = Arc::new(Mutex::new(Vec::new()));
    let t1 = Instant::now();
    // The stand-ins for AWS and GitHub (skipped like their own tests when they cannot start).
    let (Some(moto), Some(double)) = (Moto::start(&[]), Double::start()) else {
        return;
    };
    let times = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(600),
            flow(&b, &moto, &double, &needles, allowed_env.clone()),
        )
        .await
        .expect("the flow finished within 10 minutes")
    });
    let t_flow = t1.elapsed();

    // Every file the flow wrote: the keychain's HOME, the history database, the captured logs, the
    // host's directory (compose file, .env, docker config), and whatever appeared in the temp dir.
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        logged.contains("deploy v1 directly on") && logged.lines().count() > 50,
        "the captured log is not what the flow logged ({} lines)",
        logged.lines().count()
    );
    // A canary: a value made now, written to a file the scan must find (the scan can fail).
    let canary = support::test_token("canary-file");
    needles.add("file canary", &canary);
    let canary_file = logs.path().join("canary.txt");
    std::fs::write(&canary_file, format!("x{canary}y")).unwrap();
    let (mut hits, read, skipped) = scan_files(
        &needles,
        &[&home, b.db.path(), logs.path(), &b.sshd.dir],
        since,
    );
    let canaries = hits
        .iter()
        .filter(|(p, l)| *p == canary_file && l == &["file canary"]);
    assert_eq!(canaries.count(), 1, "the file scan missed its canary");
    hits.retain(|(p, _)| *p != canary_file);
    // One known exception, in the AWS SDK (aws-smithy-runtime): at debug level its endpoint
    // resolution logs the resolved identity, whose Debug shows the access key id (an identifier
    // AWS also puts in every request's Authorization header and in CloudTrail) and redacts the
    // secret access key. Allowed only in exactly those lines, with the secret key redacted.
    let sdk_prefix = "DEBUG aws_smithy_runtime::client::orchestrator::endpoints:";
    let mut sdk_lines = 0;
    hits.retain(|(path, labels)| {
        if *path != log_file || labels.as_slice() != ["AWS access key id"] {
            return true;
        }
        let with: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains(times.aws_key_id.as_str()))
            .collect();
        sdk_lines = with.len();
        !with.iter().all(|l| {
            l.starts_with(sdk_prefix) && l.contains("secret_access_key: \"** redacted **\"")
        })
    });
    // Where, with the value replaced by its label (so the report itself holds no secret).
    let report: Vec<String> = hits
        .iter()
        .map(|(p, l)| {
            let text = String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
            let lines: Vec<String> = text
                .lines()
                .filter(|line| !needles.found_in(line.as_bytes()).is_empty())
                .take(3)
                .map(|line| around_label(&needles.redact(line)))
                .collect();
            format!(
                "{}: {}\n  {}",
                p.display(),
                l.join(", "),
                lines.join("\n  ")
            )
        })
        .collect();
    assert!(
        hits.is_empty(),
        "secrets in files written by the flow:\n{}",
        report.join("\n")
    );
    // Where the files read were: the flow's own places must all be among them.
    let mut places: Vec<(String, usize)> = Vec::new();
    for f in &read {
        let place = f
            .strip_prefix(std::env::temp_dir())
            .ok()
            .and_then(|r| r.components().next())
            .map(|c| {
                format!(
                    "{}/{}",
                    std::env::temp_dir().display(),
                    c.as_os_str().to_string_lossy()
                )
            })
            .unwrap_or_else(|| f.parent().unwrap().display().to_string());
        match places.iter_mut().find(|(p, _)| *p == place) {
            Some((_, n)) => *n += 1,
            None => places.push((place, 1)),
        }
    }
    for dir in [
        &home,
        &b.db.path().to_path_buf(),
        &logs.path().to_path_buf(),
        &b.sshd.dir,
    ] {
        assert!(
            read.iter().any(|f| f.starts_with(dir)),
            "no file under {} was read",
            dir.display()
        );
    }
    assert!(read.iter().any(|f| f.ends_with("history.sqlite")));
    assert!(read.iter().any(|f| f.ends_with(".env")));
    assert!(read.contains(&log_file));
    eprintln!("files read, by place: {places:?}");
    // The keychain really is where the values went (its file under HOME, encrypted).
    let mut home_files = Vec::new();
    files_under(&home, &mut home_files);
    assert!(
        home_files
            .iter()
            .any(|f| f.to_string_lossy().contains("keyrings")),
        "no keyring under HOME: {home_files:?}"
    );
    // The history database, events and audit trail of the first deploy.
    let events = format!("{:?}", b.events.lock().unwrap());
    assert!(events.contains("DeploymentFinished"));
    let leaked = needles.found_in(events.as_bytes());
    assert!(leaked.is_empty(), "progress events hold {leaked:?}");
    let audit: String = b
        .history()
        .audit_log(&times.target)
        .unwrap()
        .into_iter()
        .map(|a| a.message + "\n")
        .collect();
    let leaked = needles.found_in(audit.as_bytes());
    assert!(leaked.is_empty(), "the audit log holds {leaked:?}");
    assert!(audit.contains("deploy v1 directly"), "{audit}");
    let labels: Vec<String> = needles.list().into_iter().map(|(l, _)| l).collect();
    eprintln!(
        "first deploy: harness (sshd, registry, images) {:.1} s; flow {:.1} s (provision {:.1} s, \
         repository {:.1} s, deploy {:.1} s); scanned {} files ({skipped} over {} MiB skipped), \
         {} log lines ({sdk_lines} of them the SDK's debug lines with the access key id), {} \
         process scans, for {} values: {}; the monitoring token was in the environment of {:?} \
         only (by design)",
        t_bed.as_secs_f64(),
        t_flow.as_secs_f64(),
        times.provision,
        times.repository,
        times.deploy,
        read.len(),
        SCAN_LIMIT >> 20,
        logged.lines().count(),
        times.scans,
        labels.len(),
        labels.join(", "),
        allowed_env.lock().unwrap(),
    );
}

struct Times {
    target: String,
    aws_key_id: String,
    provision: f64,
    repository: f64,
    deploy: f64,
    scans: usize,
}

async fn flow(
    b: &Bed,
    moto: &Moto,
    double: &Double,
    needles: &Needles,
    allowed_env: Arc<Mutex<Vec<String>>>,
) -> Times {
    let vault = Vault::new();
    vault.check().unwrap();
    assert!(vault.list().unwrap().is_empty(), "a fresh keychain");

    // 1. Credentials, as the wizard's first step stores them: the AWS key pair, the GitHub token,
    //    the GHCR token (the registry standing in for GHCR; its password is made by the harness).
    let (aws_id, aws_secret) = (
        support::test_key_id(),
        support::test_token("aws-test-secret"),
    );
    let gh_token = support::github_double::token().to_string();
    let ghcr = b.registry.password.clone();
    needles.add("AWS access key id", &aws_id);
    needles.add("AWS secret access key", &aws_secret);
    needles.add("GitHub token", &gh_token);
    needles.add("GHCR token", &ghcr);
    let watch = watch_processes(needles.clone(), allowed_env);
    vault
        .put(&SecretName::AwsAccessKeyId, &Secret::new(aws_id.clone()))
        .unwrap();
    vault
        .put(&SecretName::AwsSecretAccessKey, &Secret::new(aws_secret))
        .unwrap();
    vault
        .put(&SecretName::GithubToken, &Secret::new(gh_token))
        .unwrap();
    vault
        .put(&SecretName::GhcrToken, &Secret::new(ghcr))
        .unwrap();

    // 2. Provisioning with the vault's keys (the app's `aws_target` in "keys" mode), through a
    //    proxy that records what reaches "AWS".
    let t = Instant::now();
    let proxy = Ec2FaultProxy::start(([127, 0, 0, 1], moto.port).into());
    let get = |n: SecretName| vault.get(&n).unwrap().expect("stored above");
    let mut aws = AwsTarget::new(
        "us-east-1",
        AwsAuth::Keys {
            access_key_id: get(SecretName::AwsAccessKeyId),
            secret_access_key: get(SecretName::AwsSecretAccessKey),
        },
    );
    aws.endpoint = Some(proxy.url());
    let provisioner = Provisioner::for_config(&aws.load().await);
    let mut spec = HostSpec::new("first-deploy", "203.0.113.7/32");
    spec.user = b.sshd.user.clone();
    spec.compose_dir = b.target.compose_dir.clone();
    // The new key pair's PEM goes straight into the keychain under the stack's name, then under
    // the address once it is known (the app provisions through the same call).
    let mut steps = Vec::new();
    let (host, address) = provisioner
        .provision_into_vault(
            &spec,
            &vault,
            &mut |s| steps.push(s.to_string()),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(host.created.len(), 3, "{:?}", host.created);
    assert!(steps.iter().any(|s| s == "ready"), "{steps:?}");
    assert_eq!(
        Some(address.as_str()),
        host.public_dns.as_deref().or(host.public_ip.as_deref())
    );
    let pem = get(console_core::ec2::stack_key(&spec));
    assert_eq!(
        get(SecretName::SshKey(address.clone())).expose(),
        pem.expose(),
        "the key is filed under the address too"
    );
    needles.add_pem("key pair PEM", pem.expose());
    assert!(
        pem.expose()
            .starts_with(&support::pem_armour("BEGIN", "OPENSSH")),
        "EC2's ed25519 key pair comes as an OpenSSH PEM"
    );
    // What reached "AWS": every request signed with the vault's key id; the secret key never sent.
    let seen = proxy.seen();
    assert!(seen.len() >= 8, "{} requests", seen.len());
    assert!(
        seen.iter().all(|s| s.key_id == aws_id),
        "a request was signed with another key"
    );
    for s in &seen {
        let leaked = needles.found_in(format!("{}\n{}", s.head, s.body).as_bytes());
        assert!(
            leaked.iter().all(|l| l == "AWS access key id"),
            "{} carried {leaked:?}",
            s.action
        );
    }
    // moto prints no cloud-init fingerprint block (a real instance does, a minute after boot).
    let fps = provisioner
        .host_key_fingerprints(&host.instance_id)
        .await
        .unwrap();
    assert!(fps.is_empty(), "moto printed fingerprints: {fps:?}");
    let fingerprint = b.sshd.host_fingerprint.clone(); // cloud-init's block, played
    let provision_s = t.elapsed().as_secs_f64();

    // 3. The repository: secrets sealed for GitHub from what the vault holds.
    let t = Instant::now();
    let gh = GitHub::new(&double.url(), &get(SecretName::GithubToken)).unwrap();
    let repo = Repo::parse("acme/inference").unwrap();
    let facts = HostFacts {
        host: address.clone(),
        user: spec.user.clone(),
        compose_dir: spec.compose_dir.clone(),
        fingerprint: fingerprint.clone(),
    };
    let report = configure_repository(&gh, &vault, &repo, "main", &facts)
        .await
        .unwrap();
    let api_token = get(SecretName::ApiToken(address.clone()));
    needles.add(API_TOKEN, api_token.expose());
    assert_eq!(report.secrets.len(), 6);
    assert!(
        report.secrets.iter().all(|(_, w)| *w == Written::Created),
        "{:?}",
        report.secrets
    );
    assert_eq!(
        (
            report.variable,
            report.workflow_before.clone(),
            report.workflow_written
        ),
        (
            Written::Created,
            WorkflowState::Missing,
            Some(Written::Created)
        )
    );
    let st = double.state();
    let got = &st["repos"]["acme/inference"];
    // What GitHub decrypted (PyNaCl, from the sealed boxes) is what the vault holds.
    let expected: [(&str, Secret); 6] = [
        ("EC2_HOST", Secret::new(address.clone())),
        ("EC2_USER", Secret::new(spec.user.clone())),
        ("DOCKER_COMPOSE_DIR", Secret::new(spec.compose_dir.clone())),
        ("EC2_SSH_KEY", get(SecretName::SshKey(address.clone()))),
        ("GHCR_PAT", get(SecretName::GhcrToken)),
        ("INFERENCE_API_TOKEN", api_token.clone()),
    ];
    for (name, value) in &expected {
        assert!(
            got["secrets"][name].as_str() == Some(value.expose()),
            "GitHub's {name} is not what the vault holds"
        );
    }
    assert!(got["secrets"]["EC2_SSH_KEY"].as_str() == Some(pem.expose()));
    assert_eq!(
        got["variables"][FINGERPRINT_VARIABLE].as_str(),
        Some(fingerprint.as_str())
    );
    assert_eq!(got["files"][WORKFLOW_PATH].as_str(), Some(WORKFLOW));
    // On the wire: the token only in the Authorization header, no value in any body.
    let requests = st["requests"].as_array().unwrap();
    assert!(requests.len() >= 9, "{} requests", requests.len());
    for r in requests {
        assert!(
            r["authorization"].as_str()
                == Some(format!("Bearer {}", support::github_double::token()).as_str()),
            "a request without the vault's token"
        );
        let leaked = needles.found_in(r["body"].to_string().as_bytes());
        assert!(leaked.is_empty(), "{} carried {leaked:?}", r["path"]);
    }
    let repository_s = t.elapsed().as_secs_f64();

    // 4. cloud-init's part: the key pair's public key (which EC2 would put on the instance) into
    //    the login user's authorized_keys, the compose directory made by the user-data.
    let t = Instant::now();
    let key = get(SecretName::SshKey(address.clone()));
    let public = public_key_of(&key);
    let known = moto
        .client("testing")
        .await
        .describe_key_pairs()
        .key_names(&host.key_name)
        .include_public_key(true)
        .send()
        .await
        .unwrap();
    let ec2_public = known.key_pairs()[0].public_key().unwrap_or_default();
    assert_eq!(
        ec2_public.split_whitespace().take(2).collect::<Vec<_>>(),
        public.split_whitespace().take(2).collect::<Vec<_>>(),
        "the PEM in the keychain is not the key pair EC2 holds"
    );
    let ssh = SshTarget::new(
        "127.0.0.1", // the instance's address, resolved by the test's "DNS"
        b.sshd.port,
        facts.user.clone(),
        key,
        facts.fingerprint.clone(),
    );
    // Before cloud-init has run, the host refuses the key pair: only it can open the door.
    match SshSession::connect(&ssh).await {
        Err(SshError::AuthRefused { .. }) => {}
        Err(e) => panic!("expected the key to be refused before cloud-init, got {e}"),
        Ok(_) => panic!("the host accepted the key pair before it was authorized"),
    }
    let authorized = b.sshd.dir.join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&format!("{public}\n"));
    std::fs::write(&authorized, keys).unwrap();
    std::fs::create_dir_all(&facts.compose_dir).unwrap();

    // 5. The first deploy over SSH with the keychain's PEM, GHCR token and monitoring token (the
    //    app's `remote` target).
    let mut target = Target::new(
        address.clone(),
        Host::Ssh(ssh),
        facts.compose_dir.clone(),
        b.images.repo.clone(),
        b.target.port,
    );
    target.project = b.target.project.clone();
    target.candidate_port = b.target.candidate_port;
    target.ready_timeout = Duration::from_secs(45);
    target.registry = Some(RegistryAuth {
        server: b.registry.addr.clone(),
        user: b.registry.user.clone(),
        token: get(SecretName::GhcrToken),
    });
    target.api_token = Some(get(SecretName::ApiToken(address.clone())));
    assert!(b
        .history()
        .deployments(&target.name, 10)
        .unwrap()
        .is_empty());
    let d = b.engine.deploy(&target, &b.images.v1).await.unwrap();
    assert_eq!(
        (d.status.as_str(), d.health.as_str(), d.trigger),
        ("succeeded", "ready", Trigger::Direct),
        "{d:#?}"
    );
    assert_eq!(b.history().deployments(&target.name, 10).unwrap().len(), 1);
    assert_eq!(
        answering(target.port).as_deref(),
        Some(b.images.v1.as_str())
    );
    // The service runs with the keychain's monitoring token: refused without it, open with it.
    let addr = format!("127.0.0.1:{}", target.port);
    let path = "/v1/monitoring/summary?window=5m";
    let bare = support::http_get(&addr, path, None, &[]).unwrap();
    assert_eq!(bare.status, 401, "monitoring without the token");
    let bearer = format!("Bearer {}", api_token.expose());
    let with = support::http_get(&addr, path, None, &[("Authorization", &bearer)]).unwrap();
    assert_eq!(with.status, 200, "monitoring with the keychain's token");
    // The host authenticated exactly the key pair (sshd logs the accepted key's fingerprint).
    let accepted = fingerprint_of(&public);
    assert!(accepted.starts_with("SHA256:"), "{accepted}");
    let log = std::fs::read_to_string(&b.sshd.log_file).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("Accepted publickey") && l.contains(&accepted)),
        "sshd never accepted the key pair's key ({accepted})"
    );
    let deploy_s = t.elapsed().as_secs_f64();
    // Docker's own state of the containers (config, logs): only the monitoring token, and only in
    // the container's configuration (its environment, which is how the service receives it).
    if let Some(hits) = docker_state_hits(&target.project, needles) {
        for (file, labels) in &hits {
            eprintln!("host-side, Docker's container state: {file} holds {labels:?}");
            assert!(
                file.ends_with("/config.v2.json") && labels.iter().all(|l| l == API_TOKEN),
                "{file} holds {labels:?}"
            );
        }
    }

    // A canary for the process watch: a value made now, in a short-lived process's environment.
    let canary = support::test_token("canary-process");
    needles.add("process canary", &canary);
    let mut sleeper = Command::new("sleep")
        .arg("1")
        .env("MLOPS_TEST_CANARY", &canary)
        .spawn()
        .unwrap();
    tokio::task::block_in_place(|| sleeper.wait()).unwrap();
    let (scans, mut exposed) = watch.finish();
    assert!(scans > 50, "only {scans} process scans");
    let before = exposed.len();
    exposed.retain(|e| !(e.contains("(sleep) environ holds the process canary")));
    assert_eq!(
        before - exposed.len(),
        1,
        "the process watch missed its canary"
    );
    assert!(
        exposed.is_empty(),
        "secrets in command lines or environments:\n{}",
        exposed.join("\n")
    );
    // Everything in the keychain, under the names the app uses.
    let mut names = vault.list().unwrap();
    names.sort();
    let mut want = vec![
        SecretName::AwsAccessKeyId,
        SecretName::AwsSecretAccessKey,
        SecretName::GithubToken,
        SecretName::GhcrToken,
        console_core::ec2::stack_key(&spec),
        SecretName::SshKey(address.clone()),
        SecretName::ApiToken(address.clone()),
    ];
    want.sort();
    assert_eq!(names, want);
    Times {
        target: target.name.clone(),
        aws_key_id: aws_id,
        provision: provision_s,
        repository: repository_s,
        deploy: deploy_s,
        scans,
    }
}
