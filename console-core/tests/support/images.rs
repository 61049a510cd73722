//! The images a deployment test pulls: `<registry>/acme/inference` with three tags, built once per
//! test process and pushed to a [`Registry`].
//!
//! - `v1`: the real `inference-image/Dockerfile`, built offline (PREBUILT=1) from the host-built
//!   `inference` binary and the venv's libonnxruntime, on the local debootstrap base image.
//! - `v2`: `FROM v1` with another version label and `IMAGE_TAG=v2` (a distinct digest).
//! - `broken`: `FROM v1` with `INFERENCE_MODEL_DIR=/nonexistent`: the service exits at start, so a
//!   container of it never becomes ready.
//! - `shifted`: `FROM v1` with the model card's feature standard deviations halved: healthy, but
//!   every reconstruction error is four times v1's (a release whose predictions moved).
//!
//! After the push the registry-tagged images are removed locally, so a later `docker-compose pull`
//! really pulls. Every image carries the labels `mlops.test=console-core` and `mlops.test.pid=<pid of
//! the test process>`; at start, labelled images of test processes that no longer run are removed.

use super::{proc_info, repo_root, run_ok, run_with_timeout, Registry};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const LABEL: &str = "mlops.test=console-core";
pub const PID_LABEL: &str = "mlops.test.pid";
const DEFAULT_BASE_IMAGE: &str = "mlops-local/debian:bookworm";
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
const DOCKER_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct TestImages {
    /// "127.0.0.1:PORT/acme/inference"
    pub repo: String,
    /// Tag names only: "v1", "v2", "broken", "shifted".
    pub v1: String,
    pub v2: String,
    pub broken: String,
    pub shifted: String,
    /// Wall time of the whole `ensure` (base image, builds, push, clean-up).
    pub build_seconds: f64,
}

impl TestImages {
    /// Builds and pushes the three tags to `registry` the first time it is called for that registry
    /// in this process; later calls (from any thread) return the same value. Panics with the full
    /// command output if anything fails (and every later call panics with the same message).
    pub fn ensure(registry: &Registry) -> &'static TestImages {
        type Entry = (u64, &'static Result<TestImages, String>);
        static BUILT: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match built.iter().find(|(id, _)| *id == registry.instance()) {
            Some((_, r)) => *r,
            None => {
                let r: &'static Result<TestImages, String> = Box::leak(Box::new(
                    std::panic::catch_unwind(|| build_and_push(registry)).map_err(|p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".to_string())
                    }),
                ));
                built.push((registry.instance(), r));
                r
            }
        };
        drop(built);
        match entry {
            Ok(images) => images,
            Err(e) => panic!("TestImages::ensure: {e}"),
        }
    }

    /// "<repo>:<tag>"
    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repo)
    }
}

fn build_and_push(registry: &Registry) -> TestImages {
    let start = Instant::now();
    let repo = format!("{}/acme/inference", registry.addr);
    let pid = std::process::id();
    remove_stale_images();

    // 1. The local base image (debootstrap the first time, ~1 min; then a no-op).
    let root = repo_root();
    let base_image =
        std::env::var("LOCAL_BASE_IMAGE").unwrap_or_else(|_| DEFAULT_BASE_IMAGE.to_string());
    run_ok(
        Command::new("bash")
            .arg(root.join("tests/support/local-base-image.sh"))
            .env("LOCAL_BASE_IMAGE", &base_image),
        None,
        BUILD_TIMEOUT,
    );
    let t_base = start.elapsed();

    // 2. The build context: only what the PREBUILT=1 build reads.
    let binary = inference_binary();
    let dockerfile = root.join("inference-image/Dockerfile");
    let ort_version = dockerfile_arg(&dockerfile, "ORT_VERSION");
    let ort = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
        other => panic!(
            "ORT_DYLIB_PATH ({other:?}) does not name libonnxruntime.so.{ort_version}: run \
             `bash scripts/setup.sh` and `source scripts/env.sh` first"
        ),
    };
    let ctx = tempfile::Builder::new()
        .prefix("mlops-image-ctx-")
        .tempdir()
        .expect("temp dir");
    let c = ctx.path();
    fs::create_dir_all(c.join("inference-image/model")).unwrap();
    fs::create_dir_all(c.join(".prebuilt")).unwrap();
    copy(&dockerfile, &c.join("inference-image/Dockerfile"));
    copy_dir(
        &root.join("inference-image/model/wbc-autoencoder"),
        &c.join("inference-image/model/wbc-autoencoder"),
    );
    copy(&binary, &c.join(".prebuilt/inference"));
    copy(
        &ort,
        &c.join(format!(".prebuilt/libonnxruntime.so.{ort_version}")),
    );

    // 3. v1 from the real Dockerfile with the legacy builder.
    let labels = [
        "--label".to_string(),
        LABEL.to_string(),
        "--label".to_string(),
        format!("{PID_LABEL}={pid}"),
    ];
    let v1 = format!("{repo}:v1");
    let mut build = Command::new("docker");
    build
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--force-rm", "-f"])
        .arg(c.join("inference-image/Dockerfile"))
        .args(["--build-arg", "PREBUILT=1"])
        .arg("--build-arg")
        .arg(format!("RUST_IMAGE={base_image}"))
        .arg("--build-arg")
        .arg(format!("BASE_IMAGE={base_image}"))
        .args(["--build-arg", "IMAGE_TAG=v1"])
        .args(&labels)
        .args(["-t", &v1])
        .arg(c);
    let out = run_with_timeout(&mut build, None, BUILD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stages = stage_images(&stdout, !out.status.success());
    // The legacy builder leaves the build stage's final image dangling; remove it (not forced: an
    // image something else still uses stays).
    for id in stages.iter().rev() {
        let _ = run_with_timeout(
            Command::new("docker").args(["image", "rm", id]),
            None,
            DOCKER_TIMEOUT,
        );
    }
    if !out.status.success() {
        panic!("{}", super::failure_message(&build, &out));
    }
    drop(ctx);
    let t_v1 = start.elapsed();

    // 4. v2, broken and shifted: tiny derived images with distinct digests.
    let v2 = format!("{repo}:v2");
    let broken = format!("{repo}:broken");
    let shifted = format!("{repo}:shifted");
    let mut card: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join("inference-image/model/wbc-autoencoder/model_card.json")).unwrap(),
    )
    .unwrap();
    for f in card["features"].as_array_mut().unwrap() {
        f["std"] = serde_json::json!(f["std"].as_f64().unwrap() / 2.0);
    }
    let shifted_card = serde_json::to_vec_pretty(&card).unwrap();
    for (tag, extra) in [
        (
            &v2,
            "LABEL org.opencontainers.image.version=v2\nENV IMAGE_TAG=v2\n",
        ),
        (&broken, "ENV INFERENCE_MODEL_DIR=/nonexistent\n"),
        (
            &shifted,
            "COPY model_card.json /opt/model/model_card.json\nENV IMAGE_TAG=shifted\n",
        ),
    ] {
        let ctx = tempfile::Builder::new()
            .prefix("mlops-image-ctx-")
            .tempdir()
            .expect("temp dir");
        fs::write(ctx.path().join("model_card.json"), &shifted_card).unwrap();
        fs::write(ctx.path().join("Dockerfile"), format!("FROM {v1}\n{extra}")).unwrap();
        run_ok(
            Command::new("docker")
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "--force-rm"])
                .args(&labels)
                .args(["-t", tag])
                .arg(ctx.path()),
            None,
            BUILD_TIMEOUT,
        );
    }
    let t_derived = start.elapsed();

    // 5. Push with a throw-away docker config, then drop the local registry tags.
    let config = tempfile::Builder::new()
        .prefix("mlops-docker-config-")
        .tempdir()
        .expect("temp dir");
    registry
        .docker_login(config.path())
        .unwrap_or_else(|e| panic!("docker login to the test registry: {e}"));
    for tag in [&v1, &v2, &broken, &shifted] {
        run_ok(
            Command::new("docker")
                .arg("--config")
                .arg(config.path())
                .args(["push", tag]),
            None,
            DOCKER_TIMEOUT,
        );
    }
    run_ok(
        Command::new("docker").args(["image", "rm", &v1, &v2, &broken, &shifted]),
        None,
        DOCKER_TIMEOUT,
    );
    let total = start.elapsed();
    eprintln!(
        "TestImages: {repo}:{{v1,v2,broken,shifted}} ready in {:.1} s (base image {:.1} s, v1 {:.1} s, \
         v2+broken+shifted {:.1} s, push+clean-up {:.1} s)",
        total.as_secs_f64(),
        t_base.as_secs_f64(),
        (t_v1 - t_base).as_secs_f64(),
        (t_derived - t_v1).as_secs_f64(),
        (total - t_derived).as_secs_f64(),
    );
    TestImages {
        repo,
        v1: "v1".to_string(),
        v2: "v2".to_string(),
        broken: "broken".to_string(),
        shifted: "shifted".to_string(),
        build_seconds: total.as_secs_f64(),
    }
}

/// Removes images labelled `mlops.test=console-core` whose test process is gone (earlier runs).
/// Images of a live test process (this one, or a concurrent run) are left alone.
pub fn remove_stale_images() {
    let mut ls = Command::new("docker");
    ls.args([
        "image",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={LABEL}"),
    ]);
    let out = run_ok(&mut ls, None, DOCKER_TIMEOUT);
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let mut inspect = Command::new("docker");
    inspect
        .args([
            "image",
            "inspect",
            "--format",
            &format!("{{{{.Id}}}} {{{{index .Config.Labels \"{PID_LABEL}\"}}}}"),
        ])
        .args(&ids);
    // Best effort: an image may vanish between ls and inspect.
    let Ok(out) = run_with_timeout(&mut inspect, None, DOCKER_TIMEOUT) else {
        return;
    };
    let stale: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, owner) = l.split_once(' ')?;
            // No owner label: an intermediate image of a build in progress (the legacy builder adds
            // `--label`s one step at a time, and a step's parent shows as a dangling image while
            // the step runs). Removing it would break that build ("unknown parent image ID").
            let owner = owner.trim().parse::<u32>().ok()?;
            proc_info(owner).is_none().then(|| id.to_string())
        })
        .collect();
    for id in stale {
        let mut rm = Command::new("docker");
        rm.args(["image", "rm", "-f", &id]);
        match run_with_timeout(&mut rm, None, DOCKER_TIMEOUT) {
            Ok(o) if o.status.success() => eprintln!("TestImages: removed stale test image {id}"),
            Ok(o) => eprintln!(
                "TestImages: could not remove stale test image {id}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("TestImages: {e}"),
        }
    }
}

/// The host-built `inference` binary: `$INFERENCE_BIN`, else `target/<profile>/inference` next to
/// this test executable (`target/<profile>/deps/<test>`).
pub fn inference_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("INFERENCE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "INFERENCE_BIN={} does not exist", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps/");
    let bin = profile_dir.join("inference");
    if !bin.is_file() {
        let profile = profile_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let flag = match profile.as_str() {
            "debug" => String::new(),
            "release" => " --release".to_string(),
            other => format!(" --profile {other}"),
        };
        panic!(
            "{} is missing: run `cargo build{flag} -p inference-image --bin inference` first \
             (or point INFERENCE_BIN at a built binary)",
            bin.display()
        );
    }
    bin
}

/// The default of `ARG <name>=...` in a Dockerfile (the first one).
fn dockerfile_arg(dockerfile: &Path, name: &str) -> String {
    let text = fs::read_to_string(dockerfile)
        .unwrap_or_else(|e| panic!("read {}: {e}", dockerfile.display()));
    let prefix = format!("ARG {name}=");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{} has no `{prefix}...`", dockerfile.display()))
}

/// The final image ids of all stages before the last one, from the legacy builder's output ("Step
/// N/M : FROM ..." starts a stage, " ---> <id>" is the image after a step). With `failed`, the last
/// id seen is included too (the partial image of the stage that failed).
fn stage_images(stdout: &str, failed: bool) -> Vec<String> {
    let mut stages = Vec::new();
    let mut last: Option<String> = None;
    for line in stdout.lines() {
        let is_from = line
            .strip_prefix("Step ")
            .and_then(|r| r.split_once(" : "))
            .is_some_and(|(_, instr)| instr.to_ascii_uppercase().starts_with("FROM "));
        if is_from {
            if let Some(id) = last.take() {
                stages.push(id);
            }
        }
        if let Some(id) = line.strip_prefix(" ---> ") {
            let id = id.trim();
            if id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit()) {
                last = Some(id.to_string());
            }
        }
    }
    if failed {
        stages.extend(last);
    }
    stages
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            copy(&entry.path(), &target);
        }
    }
}
