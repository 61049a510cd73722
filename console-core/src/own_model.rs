//! "Your own model": the user's ONNX file and reference CSV become a model directory (the service's
//! own card builder, `inference card`, inspects the graph and writes the card), the user sees what
//! it found, and only then an image is built for the sandbox with that directory baked in. The tag
//! says which model it is: `<name>-<version>-<first 12 hex of the sha256 of model and card>`, so
//! the same files always give the same tag and a changed model never reuses one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Files of a model directory, as the service reads them.
pub const MODEL_FILE: &str = "model.onnx";
pub const CARD_FILE: &str = "model_card.json";
/// What the sandbox's traffic replays for an own model, kept beside it (never in the image).
pub const REPLAY_FILE: &str = "replay.json";
/// Where the sandbox's images look for their model (the Dockerfile's INFERENCE_MODEL_DIR is
/// /opt/model; an own model goes beside it so no file of the bundled one is left mixed in).
const IMAGE_MODEL_DIR: &str = "/opt/own-model";
/// Card building reads every reference row through the model: a minute is generous.
const CARD_TIMEOUT: Duration = Duration::from_secs(120);
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// What the user picked in the wizard.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Request {
    /// classifier, regressor or autoencoder.
    pub task: String,
    pub model: PathBuf,
    pub reference: PathBuf,
    #[serde(default)]
    pub holdout: Option<PathBuf>,
    #[serde(default)]
    pub label_column: Option<String>,
    pub name: String,
    pub version: String,
    /// reject, impute or per-row.
    #[serde(default)]
    pub missing: Option<String>,
    /// Classifier: class labels in probability-column order, comma-separated.
    #[serde(default)]
    pub classes: Option<String>,
    #[serde(default)]
    pub positive_class: Option<String>,
    #[serde(default)]
    pub decision_threshold: Option<f64>,
}

/// What the card builder found, shown before anything is built.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The image tag a build will get.
    pub tag: String,
    /// The card builder's own one-line summary.
    pub summary: String,
    pub task: String,
    pub features: Vec<String>,
    pub classes: Vec<String>,
    pub threshold: Option<f64>,
    pub missing_policy: String,
    /// Held-out metrics the card recorded (empty without a holdout file).
    pub evaluation: Value,
    pub card: Value,
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches(|c| c == '-' || c == '.').to_string()
}

fn check_request(r: &Request) -> Result<(), String> {
    if !["classifier", "regressor", "autoencoder"].contains(&r.task.as_str()) {
        return Err(format!(
            "task {:?} is not one the service serves: classifier, regressor or autoencoder",
            r.task
        ));
    }
    for (what, p) in [
        ("model", Some(&r.model)),
        ("reference CSV", Some(&r.reference)),
    ]
    .into_iter()
    .chain([("holdout CSV", r.holdout.as_ref())])
    {
        if let Some(p) = p {
            if !p.is_file() {
                return Err(format!("the {what} {} is not a readable file", p.display()));
            }
        }
    }
    if slug(&r.name).is_empty() {
        return Err(
            "name the model (letters, digits, dots, dashes): it goes into the image tag".into(),
        );
    }
    if slug(&r.version).is_empty() {
        return Err("give the model a version such as 1.0.0: it goes into the image tag".into());
    }
    if let Some(m) = &r.missing {
        if !["reject", "impute", "impute-median", "per-row"].contains(&m.as_str()) {
            return Err(format!(
                "missing-value policy {m:?} is not one of reject, impute, impute-median, per-row"
            ));
        }
    }
    Ok(())
}

/// `inference card`'s arguments for `r`, writing into `out`.
fn card_args(r: &Request, out: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "card".into(),
        "--task".into(),
        r.task.clone(),
        "--model".into(),
        r.model.display().to_string(),
        "--reference".into(),
        r.reference.display().to_string(),
        "--name".into(),
        r.name.trim().to_string(),
        "--version".into(),
        r.version.trim().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(h) = &r.holdout {
        a.extend(["--holdout".into(), h.display().to_string()]);
        let label = r.label_column.as_deref().map(str::trim).unwrap_or("");
        a.extend([
            "--label-column".into(),
            if label.is_empty() { "label" } else { label }.to_string(),
        ]);
    }
    match r.missing.as_deref() {
        // The form's "impute the median": the card builder's impute policy with the median.
        Some("impute-median") => a.extend([
            "--missing".into(),
            "impute".into(),
            "--impute-with".into(),
            "median".into(),
        ]),
        Some(m) => a.extend(["--missing".into(), m.to_string()]),
        None => {}
    }
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(c) = nonempty(&r.classes) {
        a.extend(["--classes".into(), c]);
    }
    if let Some(p) = nonempty(&r.positive_class) {
        a.extend(["--positive-class".into(), p]);
    }
    if let Some(t) = r.decision_threshold {
        a.extend(["--decision-threshold".into(), t.to_string()]);
    }
    a
}

/// The tag for a model directory: name, version and the content hash of model and card.
pub fn tag_for(dir: &Path, name: &str, version: &str) -> Result<String, String> {
    let mut h = Sha256::new();
    for f in [MODEL_FILE, CARD_FILE] {
        let bytes = std::fs::read(dir.join(f))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(f).display()))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let mut tag = format!("{}-{}-{}", slug(name), slug(version), &hex[..12]);
    // Docker tags are at most 128 characters: long names give way, the hash stays.
    if tag.len() > 128 {
        tag = format!("{}-{}", &slug(name)[..60.min(slug(name).len())], &hex[..12]);
    }
    Ok(tag)
}

/// Where the model directory of `tag` is kept (the image is built from it).
pub fn model_dir(data_dir: &Path, tag: &str) -> PathBuf {
    data_dir.join("own-models").join(tag)
}

/// A tag Docker accepts, in lower case as the console makes them (it names a directory here too).
fn valid_tag(tag: &str) -> bool {
    crate::image_push::valid_tag(tag) && !tag.bytes().any(|b| b.is_ascii_uppercase())
}

/// The card builder: the service's binary and, for an installed console, the ONNX Runtime library
/// bundled beside it (`ORT_DYLIB_PATH` set by the user wins).
#[derive(Clone, Debug)]
pub struct CardBuilder {
    pub inference: PathBuf,
    pub bundled_ort: Option<PathBuf>,
}

/// Runs the card builder on `r` and keeps the model directory under `data_dir`, named by its tag.
pub async fn inspect(
    builder: &CardBuilder,
    data_dir: &Path,
    r: &Request,
) -> Result<Inspection, String> {
    check_request(r)?;
    let root = data_dir.join("own-models");
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let staging = tempfile_dir(&root)?;
    let result = run_card(builder, r, &staging).await;
    let out = match result {
        Ok(()) => finish(&staging, data_dir, r),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&staging);
    out
}

fn tempfile_dir(root: &Path) -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let p = root.join(format!(".staging-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    Ok(p)
}

async fn run_card(builder: &CardBuilder, r: &Request, out: &Path) -> Result<(), String> {
    let inference = &builder.inference;
    let mut command = Command::new(inference);
    if let Some(ort) = &builder.bundled_ort {
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            command.env("ORT_DYLIB_PATH", ort);
        }
    }
    let child = command
        .args(card_args(r, &out.join("model")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let o = tokio::time::timeout(CARD_TIMEOUT, child)
        .await
        .map_err(|_| {
            format!(
                "the card builder did not finish within {} s",
                CARD_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| {
            format!(
                "could not start the card builder {}: {e}",
                inference.display()
            )
        })?;
    if o.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let text = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the card builder failed without a message")
        .trim();
    Err(text
        .strip_prefix("inference card: ")
        .unwrap_or(text)
        .to_string())
}

/// The rows the sandbox's traffic sends to an own model: its labelled holdout (then labels are
/// posted back as feedback), else its reference rows, unlabelled.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplayData {
    /// A directory the replay tool reads: holdout.csv (labelled) or calibration.csv.
    pub dir: PathBuf,
    pub task: String,
    /// The holdout's label column; None when only unlabelled rows are there.
    pub label_column: Option<String>,
}

impl ReplayData {
    /// The replay tool's scenarios for this model: anomalies only where an autoencoder has
    /// labelled anomalous rows, feedback only where there are labels; drift and missing cells
    /// when asked.
    pub fn scenario(&self, drift: bool, missing: bool) -> String {
        let mut s = vec!["normal"];
        if self.label_column.is_some() {
            if self.task == "autoencoder" {
                s.push("anomalies");
            }
            s.push("feedback");
        }
        if drift {
            s.push("drift");
        }
        if missing {
            s.push("missing");
        }
        s.join(",")
    }
}

/// The replay data of the own model behind `tag`, if `tag` is one.
pub fn replay_data(data_dir: &Path, tag: &str) -> Option<ReplayData> {
    if !valid_tag(tag) {
        return None;
    }
    let text = std::fs::read(model_dir(data_dir, tag).join(REPLAY_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn keep_replay_rows(dir: &Path, r: &Request) -> Result<(), String> {
    let copy = |from: &Path, to: &str| {
        std::fs::copy(from, dir.join(to))
            .map(|_| ())
            .map_err(|e| format!("cannot copy {}: {e}", from.display()))
    };
    let label_column = match &r.holdout {
        Some(h) => {
            copy(h, "holdout.csv")?;
            Some(
                r.label_column
                    .as_deref()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .unwrap_or("label")
                    .to_string(),
            )
        }
        None => {
            copy(&r.reference, "calibration.csv")?;
            None
        }
    };
    let meta = ReplayData {
        dir: dir.to_path_buf(),
        task: r.task.clone(),
        label_column,
    };
    std::fs::write(
        dir.join(REPLAY_FILE),
        serde_json::to_vec_pretty(&meta).unwrap_or_default(),
    )
    .map_err(|e| format!("cannot write {}: {e}", dir.join(REPLAY_FILE).display()))
}

fn finish(staging: &Path, data_dir: &Path, r: &Request) -> Result<Inspection, String> {
    let built = staging.join("model");
    let tag = tag_for(&built, &r.name, &r.version)?;
    let dir = model_dir(data_dir, &tag);
    if !dir.join(CARD_FILE).is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&built, &dir).map_err(|e| format!("cannot keep {}: {e}", dir.display()))?;
    }
    keep_replay_rows(&dir, r)?;
    let card: Value = serde_json::from_slice(
        &std::fs::read(dir.join(CARD_FILE)).map_err(|e| format!("cannot read the card: {e}"))?,
    )
    .map_err(|e| format!("the card builder wrote a card that is not JSON: {e}"))?;
    Ok(describe(tag, &card))
}

/// What the wizard shows of a card.
pub fn describe(tag: String, card: &Value) -> Inspection {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let features = card["features"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let evaluation = match &card["evaluation"] {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => Value::Object(Default::default()),
    };
    Inspection {
        summary: card["description"].as_str().unwrap_or_default().to_string(),
        task: card["task"].as_str().unwrap_or("autoencoder").to_string(),
        features,
        classes: strings(&card["classifier"]["classes"]),
        threshold: card["score"]["threshold"].as_f64(),
        missing_policy: match (
            card["missing_values"]["policy"].as_str(),
            card["missing_values"]["impute_with"].as_str(),
        ) {
            (Some("impute"), Some(with)) => format!("impute ({with})"),
            (policy, _) => policy.unwrap_or("reject").to_string(),
        },
        evaluation,
        card: card.clone(),
        tag,
    }
}

/// Builds `image:tag` from the sandbox's base version with the model directory of `tag` in it.
/// An image of that tag already present is kept (same tag, same files).
pub async fn build_image(
    data_dir: &Path,
    image: &str,
    base_tag: &str,
    tag: &str,
) -> Result<String, String> {
    if !valid_tag(tag) {
        return Err(format!("{tag:?} is not an image tag the console made"));
    }
    let dir = model_dir(data_dir, tag);
    if !dir.join(CARD_FILE).is_file() || !dir.join(MODEL_FILE).is_file() {
        return Err(format!(
            "no inspected model for {tag}: inspect the model again"
        ));
    }
    let full = format!("{image}:{tag}");
    if docker(
        &["image", "inspect", full.as_str()],
        Duration::from_secs(20),
    )
    .await
    .is_ok()
    {
        return Ok(format!("{full} is already built"));
    }
    let base = format!("{image}:{base_tag}");
    docker(&["image", "inspect", base.as_str()], Duration::from_secs(20))
        .await
        .map_err(|_| format!("the sandbox's base image {base} is missing: scripts/run.sh builds it (scripts/sandbox-images.sh)"))?;
    let ctx = data_dir.join("own-models").join(format!(".context-{tag}"));
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(ctx.join("model"))
        .map_err(|e| format!("cannot create {}: {e}", ctx.display()))?;
    for f in [MODEL_FILE, CARD_FILE] {
        std::fs::copy(dir.join(f), ctx.join("model").join(f))
            .map_err(|e| format!("cannot stage {f}: {e}"))?;
    }
    let dockerfile = format!(
        "FROM {base}\nCOPY model/ {IMAGE_MODEL_DIR}/\nENV INFERENCE_MODEL_DIR={IMAGE_MODEL_DIR} IMAGE_TAG={tag}\nLABEL org.opencontainers.image.version={tag} mlops.own-model=1\n"
    );
    std::fs::write(ctx.join("Dockerfile"), dockerfile)
        .map_err(|e| format!("cannot write the Dockerfile: {e}"))?;
    let ctx_s = ctx.display().to_string();
    let r = docker(
        &[
            "build",
            "-q",
            "--force-rm",
            "-t",
            full.as_str(),
            ctx_s.as_str(),
        ],
        BUILD_TIMEOUT,
    )
    .await;
    let _ = std::fs::remove_dir_all(&ctx);
    r.map_err(|e| format!("docker build of {full} failed: {e}"))?;
    Ok(format!("built {full}"))
}

async fn docker(args: &[&str], timeout: Duration) -> Result<String, String> {
    let o = tokio::time::timeout(
        timeout,
        Command::new("docker")
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| {
        format!(
            "`docker {}` did not finish within {} s",
            args[0],
            timeout.as_secs()
        )
    })?
    .map_err(|e| format!("could not start docker: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(task: &str) -> Request {
        Request {
            task: task.into(),
            model: PathBuf::from("/etc/hostname"),
            reference: PathBuf::from("/etc/hostname"),
            holdout: None,
            label_column: None,
            name: "Churn model".into(),
            version: "2.1".into(),
            missing: None,
            classes: None,
            positive_class: None,
            decision_threshold: None,
        }
    }

    #[test]
    fn tags_are_docker_safe_and_follow_the_content() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(MODEL_FILE), b"graph").unwrap();
        std::fs::write(d.path().join(CARD_FILE), b"{}").unwrap();
        let a = tag_for(d.path(), "Churn model / EU", "2.1").unwrap();
        assert!(a.starts_with("churn-model-eu-2.1-"), "{a}");
        assert!(valid_tag(&a), "{a}");
        assert_eq!(a, tag_for(d.path(), "Churn model / EU", "2.1").unwrap());
        std::fs::write(d.path().join(MODEL_FILE), b"graph2").unwrap();
        assert_ne!(a, tag_for(d.path(), "Churn model / EU", "2.1").unwrap());
        assert!(!valid_tag("../etc"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag("UPPER"));
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let mut r = request("ranker");
        assert!(check_request(&r).unwrap_err().contains("\"ranker\""));
        r.task = "classifier".into();
        r.model = PathBuf::from("/nonexistent/m.onnx");
        assert!(check_request(&r)
            .unwrap_err()
            .contains("the model /nonexistent/m.onnx"));
        let mut r = request("regressor");
        r.name = " / ".into();
        assert!(check_request(&r).unwrap_err().contains("name the model"));
        let mut r = request("regressor");
        r.missing = Some("drop".into());
        assert!(check_request(&r).unwrap_err().contains("\"drop\""));
    }

    #[test]
    fn card_arguments_carry_every_choice() {
        let mut r = request("classifier");
        r.holdout = Some(PathBuf::from("/h.csv"));
        r.missing = Some("per-row".into());
        r.positive_class = Some(" yes ".into());
        r.decision_threshold = Some(0.7);
        r.classes = Some("".into());
        let a = card_args(&r, Path::new("/out"));
        let s = a.join(" ");
        assert!(s.contains("--task classifier"), "{s}");
        assert!(s.contains("--holdout /h.csv --label-column label"), "{s}");
        assert!(s.contains("--missing per-row"), "{s}");
        assert!(s.contains("--positive-class yes"), "{s}");
        assert!(s.contains("--decision-threshold 0.7"), "{s}");
        assert!(!s.contains("--classes"), "{s}");
        r.missing = Some("impute-median".into());
        let s = card_args(&r, Path::new("/out")).join(" ");
        assert!(s.contains("--missing impute --impute-with median"), "{s}");
        let mut ok = request("regressor");
        ok.missing = Some("impute-median".into());
        assert_eq!(check_request(&ok), Ok(()));
    }

    #[test]
    fn replayed_scenarios_follow_the_task_and_the_labels() {
        let mut d = ReplayData {
            dir: PathBuf::from("/x"),
            task: "classifier".into(),
            label_column: Some("y".into()),
        };
        assert_eq!(d.scenario(false, false), "normal,feedback");
        assert_eq!(d.scenario(true, true), "normal,feedback,drift,missing");
        d.task = "autoencoder".into();
        assert_eq!(d.scenario(false, false), "normal,anomalies,feedback");
        d.label_column = None;
        assert_eq!(d.scenario(true, false), "normal,drift");
        let data = tempfile::tempdir().unwrap();
        assert!(replay_data(data.path(), "../../etc").is_none());
        assert!(replay_data(data.path(), "v1").is_none());
    }

    #[test]
    fn describe_reads_what_the_wizard_shows() {
        let card = json!({
            "task": "classifier", "description": "Binary classifier x",
            "features": [{"name": "a"}, {"name": "b"}],
            "classifier": {"classes": ["0", "1"]},
            "score": {"threshold": 0.5},
            "missing_values": {"policy": "impute"},
            "evaluation": {"holdout_accuracy": 0.95, "holdout_mae": null},
        });
        let i = describe("t".into(), &card);
        assert_eq!(i.features, ["a", "b"]);
        assert_eq!(i.classes, ["0", "1"]);
        assert_eq!(i.threshold, Some(0.5));
        assert_eq!(i.missing_policy, "impute");
        assert_eq!(i.evaluation, json!({"holdout_accuracy": 0.95}));
    }
}
