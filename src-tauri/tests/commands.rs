//! The command layer through Tauri's mock runtime, with the app's real configuration and
//! capability (so the ACL is enforced as in the window): arguments in, `{code, message}` errors out,
//! settings that survive a restart, the keychain's absence said plainly, and a dashboard drawn from
//! a live inference service.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};

/// The app reads its data directory and ports from the environment: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Console {
    app: App<MockRuntime>,
    window: WebviewWindow<MockRuntime>,
}

fn console(data: &Path, env: &[(&str, &str)]) -> Console {
    std::env::set_var("MLOPS_CONSOLE_DATA_DIR", data);
    // No keychain unless a test brings one: nothing here may touch the developer's own keyring.
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", data.join("no-session-bus").display()),
    );
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let app = mlops_console::app_builder(mock_builder())
        .build(tauri::generate_context!())
        .expect("the app builds on the mock runtime");
    mlops_console::init(&app).expect("the console opens its data directory");
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("main window");
    Console { app, window }
}

impl Console {
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        get_ipc_response(
            &self.window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|b| b.deserialize::<Value>().unwrap())
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_window_may_call_exactly_the_app_commands() {
    let _g = lock();
    let cap: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("capabilities/main.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut granted: Vec<String> = cap["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .filter(|p| p.starts_with("allow-"))
        .collect();
    granted.sort();
    let mut expected: Vec<String> = mlops_console::command_names::ALL
        .iter()
        .map(|c| format!("allow-{}", c.replace('_', "-")))
        .collect();
    expected.sort();
    assert_eq!(
        granted, expected,
        "capabilities/main.json and command_names::ALL differ"
    );

    let data = tempfile::tempdir().unwrap();
    let c = console(data.path(), &[]);
    // Every granted command has a handler: a call with no arguments fails on its arguments (or
    // runs), never with "not found" or "not allowed".
    for cmd in mlops_console::command_names::ALL {
        if [
            "traffic_start",
            "deploy",
            "deploy_github",
            "rollback",
            "provision_ec2",
            "github_configure",
            // The fleet's status starts its HAProxy (on the sandbox fleet's ports).
            "fleet_status",
        ]
        .contains(cmd)
        {
            continue; // these act; their refusals are covered below
        }
        if let Err(e) = c.invoke(cmd, json!({})) {
            let text = e.to_string();
            assert!(
                !text.contains("not found") && !text.contains("not allowed"),
                "{cmd}: {text}"
            );
        }
    }
    // Anything else, core commands included, is refused by the ACL.
    for cmd in [
        "plugin:window|close",
        "plugin:webview|print",
        "plugin:app|version",
    ] {
        let e = c.invoke(cmd, json!({})).unwrap_err().to_string();
        assert!(e.contains("not allowed"), "{cmd}: {e}");
    }
}

#[test]
fn settings_are_checked_kept_and_resumed() {
    let _g = lock();
    let data = tempfile::tempdir().unwrap();
    let c = console(data.path(), &[]);
    let info = c.invoke("app_info", json!({})).unwrap();
    assert_eq!(info["settings"]["wizard_step"], 0);
    assert_eq!(info["data_dir"], json!(data.path()));

    let mut s = info["settings"].clone();
    s["github"]["repo"] = json!("no-slash");
    let e = c
        .invoke("settings_save", json!({"settings": s}))
        .unwrap_err();
    assert_eq!(e["code"], "invalid");
    assert!(e["message"].as_str().unwrap().contains("owner/name"), "{e}");

    let mut s = info["settings"].clone();
    s["github_token"] = json!("pasted in the wrong place");
    let e = c
        .invoke("settings_save", json!({"settings": s}))
        .unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");

    let mut s = info["settings"].clone();
    s["wizard_step"] = json!(4);
    s["platform"] = json!("sandbox");
    c.invoke("settings_save", json!({"settings": s})).unwrap();
    drop(c);

    // A closed and reopened app resumes where it was.
    let c = console(data.path(), &[]);
    let info = c.invoke("app_info", json!({})).unwrap();
    assert_eq!(info["settings"]["wizard_step"], 4);
    assert_eq!(info["settings"]["platform"], "sandbox");
}

#[test]
fn no_keychain_is_a_sentence_with_the_fix() {
    let _g = lock();
    let data = tempfile::tempdir().unwrap();
    // `console` points the session bus at a socket that does not exist.
    let c = console(data.path(), &[]);
    let e = c.invoke("credentials_list", json!({})).unwrap_err();
    let e2 = c
        .invoke(
            "credential_save",
            json!({"name": "github-token", "value": "x"}),
        )
        .unwrap_err();
    let e3 = c
        .invoke("credential_save", json!({"name": "password", "value": "x"}))
        .unwrap_err();
    assert_eq!(e["code"], "keychain-unavailable", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("gnome-keyring"),
        "{e}"
    );
    assert_eq!(e2["code"], "keychain-unavailable", "{e2}");
    assert_eq!(e3["code"], "invalid", "{e3}");
    assert!(
        e3["message"].as_str().unwrap().contains("ssh-key/<host>"),
        "{e3}"
    );
    // Nothing was written in place of the keychain.
    let files = walk(data.path());
    assert!(
        files.iter().all(|f| f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("history.sqlite")),
        "only the history may exist: {files:?}"
    );
}

#[test]
fn requests_are_checked_before_anything_runs() {
    let _g = lock();
    let data = tempfile::tempdir().unwrap();
    let c = console(data.path(), &[]);
    let e = c
        .invoke(
            "dashboard",
            json!({"target": "sandbox", "rangeS": 42, "utcOffsetS": 0}),
        )
        .unwrap_err();
    assert_eq!(e["code"], "invalid");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("900, 3600 or 86400"),
        "{e}"
    );
    let e = c
        .invoke("history_list", json!({"target": "mars"}))
        .unwrap_err();
    assert_eq!(e["code"], "invalid", "{e}");
    let e = c
        .invoke("history_list", json!({"target": "remote"}))
        .unwrap_err();
    assert_eq!(e["code"], "no-remote", "{e}");
    assert!(e["message"].as_str().unwrap().contains("wizard"), "{e}");
    let e = c
        .invoke("traffic_start", json!({"drift": false, "rate": -1.0}))
        .unwrap_err();
    assert!(
        ["invalid", "no-replay"].contains(&e["code"].as_str().unwrap()),
        "{e}"
    );
    let h = c
        .invoke("history_list", json!({"target": "sandbox"}))
        .unwrap();
    assert_eq!(h, json!({"serving": null, "deployments": []}));
}

#[test]
fn without_docker_the_sandbox_says_so() {
    let _g = lock();
    let data = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let old_path = std::env::var_os("PATH").unwrap();
    let c = console(data.path(), &[("PATH", empty.path().to_str().unwrap())]);
    let info = c.invoke("app_info", json!({}));
    let e = c
        .invoke("deploy", json!({"target": "sandbox", "tag": "v1"}))
        .unwrap_err();
    std::env::set_var("PATH", old_path);
    let info = info.unwrap();
    assert_eq!(info["sandbox"]["docker"], false);
    assert!(
        info["sandbox"]["detail"]
            .as_str()
            .unwrap()
            .contains("no Docker engine"),
        "{info}"
    );
    assert_eq!(e["code"], "no-docker", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("Start Docker"),
        "{e}"
    );
}

/// The dashboard's CloudWatch reader is made once and kept between refreshes, so the AWS
/// credentials are resolved once (an SSO session or a credential process is not asked again every
/// few seconds); new AWS settings make a new one. Counted through a `credential_process` profile
/// that appends a line to a file each time the SDK runs it; the endpoint is a closed loopback port,
/// so every read fails after the credentials were resolved and nothing leaves the machine.
#[test]
fn the_cloudwatch_reader_is_kept_until_the_aws_settings_change() {
    use console_core::cloudwatch::host_queries;
    use mlops_console::state::AppState;
    use tauri::Manager;

    let _g = lock();
    let data = tempfile::tempdir().unwrap();
    let runs = data.path().join("credential-process-runs");
    let config = data.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            // The SDK runs credential_process through `sh -c`.
            "[profile counted]\ncredential_process = echo run >> {} && echo '{{\"Version\": 1, \"AccessKeyId\": \"AKIDCOUNTED\", \"SecretAccessKey\": \"not-a-secret\"}}'\n",
            runs.display()
        ),
    )
    .unwrap();
    let closed = free_port(); // nothing listens there
    let endpoint = format!("http://127.0.0.1:{closed}");
    let env = [
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("MLOPS_AWS_ENDPOINT", endpoint.as_str()),
    ];
    let c = console(data.path(), &env);
    let info = c.invoke("app_info", json!({})).unwrap();
    let mut s = info["settings"].clone();
    s["aws"] = json!({"mode": "profile", "profile": "counted", "region": "eu-west-1"});
    c.invoke("settings_save", json!({"settings": s.clone()}))
        .unwrap();

    let state = c.app.state::<AppState>();
    let count = || {
        std::fs::read_to_string(&runs)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let refresh = || {
        tauri::async_runtime::block_on(async {
            let reader = state.cloudwatch_reader().await.unwrap();
            let read = reader
                .last(
                    &host_queries("i-0123456789abcdef0"),
                    Duration::from_secs(900),
                )
                .await;
            assert!(read.is_err(), "nothing listens on {endpoint}");
        })
    };
    refresh();
    assert_eq!(count(), 1, "the first refresh resolves the credentials");
    refresh();
    refresh();
    assert_eq!(
        count(),
        1,
        "later refreshes reuse the reader and its credentials"
    );

    s["aws"]["region"] = json!("us-east-2");
    c.invoke("settings_save", json!({"settings": s})).unwrap();
    refresh();
    assert_eq!(count(), 2, "another region makes a new reader");

    for (k, _) in env {
        std::env::remove_var(k);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ----------------------------------------------------------------------------- live service

fn binary(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release").join(name)
}

/// A free loopback port below Linux's ephemeral range (32768 and up), so no outgoing connection on
/// this machine can take it as its source port between this check and the server's bind, and a
/// readiness probe cannot connect to itself on it.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let seed = RandomState::new();
    (0u64..)
        .map(|i| 20_000 + (seed.hash_one(i) % 12_000) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port")
}

struct Service(Child);
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_dashboard_draws_every_layer_from_a_live_service() {
    let _g = lock();
    let inference = binary("INFERENCE_BIN", "inference");
    let replay = binary("MLOPS_REPLAY_BIN", "replay");
    if !inference.is_file() || !replay.is_file() {
        if std::env::var_os("MLOPS_REQUIRE_DOCKER").is_some() {
            panic!(
                "{} or {} is missing: build them with cargo build --release",
                inference.display(),
                replay.display()
            );
        }
        eprintln!("skipped: no release inference/replay binaries");
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference-image/model/wbc-autoencoder");
    let log = state.path().join("service.log");
    let mut svc = Service(
        Command::new(&inference)
            .arg("serve")
            .arg("--model-dir")
            .arg(&model)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(state.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = svc.0.try_wait() {
            panic!(
                "the service exited ({status}) during start-up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the service did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Drifted traffic with labels, bounded: 150 requests of 8 rows.
    let out = Command::new(&replay)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args([
            "--scenario",
            "normal,anomalies,feedback,drift",
            "--rate",
            "300",
            "--requests",
            "150",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nthe service's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let data = tempfile::tempdir().unwrap();
    let c = console(data.path(), &[("MLOPS_SANDBOX_PORT", &port.to_string())]);
    // The service aggregates through a queue; give it a moment to count the last requests.
    let deadline = Instant::now() + Duration::from_secs(20);
    let d = loop {
        let d = c
            .invoke(
                "dashboard",
                json!({"target": "sandbox", "rangeS": 900, "utcOffsetS": 3600, "feature": null}),
            )
            .unwrap();
        if d["drift_verdict"] != "insufficient_data" || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let charts = d["charts"].as_array().unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for want in [
        "cpu",
        "memory",
        "disk",
        "network",
        "latency",
        "errors",
        "requests",
        "data_quality",
        "recon_error",
        "anomaly_rate",
        "ground_truth",
        "score_psi",
        "score_distribution",
        "feature_distribution",
        "feature_psi",
    ] {
        assert!(ids.contains(&want), "no {want} chart in {ids:?}");
    }
    for ch in charts {
        let svg = ch["svg"].as_str().unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{}",
            ch["id"]
        );
    }
    assert_eq!(d["drift"].as_array().unwrap().len(), 30);
    assert_eq!(d["drift_verdict"], "drift", "{}", d["drift"]);
    assert!(d["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["layer"] == "data" && a["level"] == "critical"));
    // The drifted feature is picked for the distribution chart when none is asked for.
    let picked = d["feature"].as_str().unwrap();
    let row = d["drift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["feature"] == picked)
        .unwrap();
    assert_eq!(row["verdict"], "drift", "{row}");
    assert!(
        d["kpis"]["requests"].as_u64().unwrap() >= 150,
        "{}",
        d["kpis"]
    );
    assert!(d["model"]["card"]["features"].as_array().unwrap().len() == 30);

    let v = c
        .invoke("service_verify", json!({"target": "sandbox"}))
        .unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["model"]["name"], "wbc-autoencoder");
}
