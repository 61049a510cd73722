//! The `inference` binary as an operator runs it: start-up errors, SIGTERM draining, JSON logs,
//! the health subcommand and the card subcommand.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, model_dir, ort_library};

const BIN: &str = env!("CARGO_BIN_EXE_inference");

fn spawn_service(port: u16, extra_env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("INFERENCE_MODEL_DIR", model_dir())
        .env("INFERENCE_BIND", format!("127.0.0.1:{port}"))
        .env("ORT_DYLIB_PATH", ort_library())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://127.0.0.1:{port}/readyz");
    while Instant::now() < deadline {
        if inference::health::check(&url, Duration::from_millis(500)) == Ok(200) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the service on port {port} did not become ready");
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn run_to_end(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn start_up_problems_are_sentences_not_panics() {
    let (code, err) = run_to_end(
        Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("INFERENCE_MODEL_DIR", model_dir())
            .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot load ONNX Runtime from /nonexistent")
            && err.contains("ORT_DYLIB_PATH"),
        "{err}"
    );

    let (code, err) = run_to_end(
        Command::new(BIN)
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--model-dir",
                "/nonexistent/model",
            ])
            .env("ORT_DYLIB_PATH", ort_library()),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot read the model card /nonexistent/model/model_card.json"),
        "{err}"
    );

    let dir = tempdir("bad-card");
    std::fs::write(dir.join("model_card.json"), "{\"schema_version\": 1}").unwrap();
    let (code, err) = run_to_end(
        Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--model-dir"])
            .arg(&dir)
            .env("ORT_DYLIB_PATH", ort_library()),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is not valid JSON for schema version 1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let port = free_port();
    let mut child = spawn_service(port, &[]);
    wait_ready(port);
    let row: Vec<String> = common::holdout().0[0]
        .iter()
        .map(|v| v.to_string())
        .collect();
    let body = format!("{{\"rows\": [[{}]]}}", row.join(","));
    let (first, second) = body.as_bytes().split_at(body.len() / 2);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(first).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sigterm(&child);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once draining started...
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener should be closed while draining"
    );
    // ...but the request already under way completes.
    conn.write_all(second).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"reconstruction_error\""), "{answer}");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let port = free_port();
    let mut child = spawn_service(port, &[("INFERENCE_LOG_FORMAT", "json")]);
    wait_ready(port);
    sigterm(&child);
    child.wait().unwrap();
    let mut lines = Vec::new();
    BufReader::new(child.stderr.take().unwrap())
        .lines()
        .for_each(|l| lines.push(l.unwrap()));
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("model loaded")));
}

#[test]
fn health_subcommand_exit_codes() {
    let port = free_port();
    let mut child = spawn_service(port, &[]);
    wait_ready(port);
    let ok = Command::new(BIN)
        .env("INFERENCE_BIND", format!("0.0.0.0:{port}"))
        .arg("health")
        .status()
        .unwrap();
    assert!(ok.success());
    let url = format!("http://127.0.0.1:{port}/nothing");
    let not_found = Command::new(BIN)
        .args(["health", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(not_found.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_found.stderr).contains("answered 404"));
    sigterm(&child);
    child.wait().unwrap();
    let closed = Command::new(BIN)
        .args([
            "health",
            "--url",
            &format!("http://127.0.0.1:{port}/readyz"),
        ])
        .output()
        .unwrap();
    assert_eq!(closed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&closed.stderr).contains("cannot connect"));
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("inference-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn card_subcommand_rebuilds_the_bundled_card() {
    let out = tempdir("card");
    let m = model_dir();
    let (code, err) = run_to_end(
        Command::new(BIN)
            .arg("card")
            .arg("--model")
            .arg(m.join("model.onnx"))
            .arg("--reference")
            .arg(m.join("reference.csv"))
            .arg("--calibration")
            .arg(m.join("calibration.csv"))
            .arg("--holdout")
            .arg(m.join("holdout.csv"))
            .args(["--name", "rebuilt", "--version", "9.9.9", "--out"])
            .arg(&out)
            .env("ORT_DYLIB_PATH", ort_library()),
    );
    assert_eq!(code, 0, "{err}");
    let bundled = inference::card::ModelCard::load(&m).unwrap();
    let rebuilt = inference::card::ModelCard::load(&out).unwrap();
    assert_eq!(
        rebuilt.feature_names().collect::<Vec<_>>(),
        bundled.feature_names().collect::<Vec<_>>()
    );
    let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-12);
    for (r, b) in rebuilt.features.iter().zip(&bundled.features) {
        for (x, y) in [
            (r.mean, b.mean),
            (r.std, b.std),
            (r.min, b.min),
            (r.max, b.max),
        ] {
            assert!(close(x, y, 1e-6), "{}: {x} vs {y}", r.name);
        }
        for (k, v) in &b.quantiles {
            assert!(close(r.quantiles[k], *v, 1e-6), "{} {k}", r.name);
        }
        assert_eq!(r.histogram.counts, b.histogram.counts, "{}", r.name);
    }
    assert!(close(
        rebuilt.score.threshold.unwrap(),
        bundled.score.threshold.unwrap(),
        1e-4
    ));
    let (ra, ba) = (rebuilt.evaluation.unwrap(), bundled.evaluation.unwrap());
    assert!(close(
        ra.holdout_roc_auc.unwrap(),
        ba.holdout_roc_auc.unwrap(),
        1e-3
    ));
    assert!(Path::new(&out.join("model.onnx")).is_file());
}

#[test]
fn card_subcommand_refuses_a_csv_of_the_wrong_width() {
    let out = tempdir("card-bad");
    let csv = out.join("narrow.csv");
    std::fs::write(&csv, "a,b,c\n1,2,3\n4,5,6\n").unwrap();
    let (code, err) = run_to_end(
        Command::new(BIN)
            .arg("card")
            .arg("--model")
            .arg(model_dir().join("model.onnx"))
            .arg("--reference")
            .arg(&csv)
            .args(["--name", "x", "--out"])
            .arg(out.join("card"))
            .env("ORT_DYLIB_PATH", ort_library()),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("inputs take 30 features (\"input\" (float32 [?, 30])) but the reference CSV has 3 columns (a, b, c)"),
        "{err}"
    );
    assert!(!out.join("card").exists(), "nothing is written on refusal");
}

fn rows_in_state(port: u16) -> u64 {
    let url = format!("http://127.0.0.1:{port}/v1/monitoring/summary?window=1h");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]))['data']['rows'])",
            &url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{out:?}"))
}

fn predict_rows(port: u16, n: usize) {
    let row: Vec<String> = common::holdout().0[0]
        .iter()
        .map(|v| v.to_string())
        .collect();
    let rows = vec![format!("[{}]", row.join(",")); n].join(",");
    let body = format!("{{\"rows\": [{rows}]}}");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn history_survives_hard_kills_losing_at_most_the_flush_interval() {
    let state = tempdir("state-kill");
    let state_env = state.to_string_lossy().into_owned();
    let env = [
        ("INFERENCE_STATE_DIR", state_env.as_str()),
        ("INFERENCE_STATE_FLUSH_SECS", "1"),
    ];
    // What the next start must find: at least `floor` rows (flushed for sure), at most `ceiling` (sent).
    let (mut floor, mut ceiling) = (0u64, 0u64);
    // Kill -9 at different moments relative to the one-second flushes, including mid-write.
    for (round, pause_ms) in [3000u64, 2630, 2770, 2510, 2990].into_iter().enumerate() {
        let port = free_port();
        let mut child = spawn_service(port, &env);
        wait_ready(port);
        let recovered = rows_in_state(port);
        assert!(
            (floor..=ceiling).contains(&recovered),
            "round {round}: recovered {recovered} rows; expected {floor}..={ceiling}"
        );
        // Keep writing while the flusher runs, then kill without warning. Rows sent more than
        // 2 s before the kill must have been flushed (1 s interval, 1 s of slack for a busy machine).
        let (mut sent, mut safe) = (0u64, 0u64);
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(pause_ms) {
            predict_rows(port, 10);
            sent += 10;
            if started.elapsed() < Duration::from_millis(pause_ms.saturating_sub(2000)) {
                safe = sent;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        (floor, ceiling) = (recovered + safe, recovered + sent);
    }
    let port = free_port();
    let mut child = spawn_service(port, &env);
    wait_ready(port);
    let recovered = rows_in_state(port);
    assert!(
        (floor..=ceiling).contains(&recovered),
        "{recovered} not in {floor}..={ceiling}"
    );
    sigterm(&child);
    child.wait().unwrap();
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_service_starts() {
    let state = tempdir("state-corrupt");
    std::fs::write(state.join("monitor.sqlite"), vec![0xA5u8; 8192]).unwrap();
    let state_env = state.to_string_lossy().into_owned();
    let port = free_port();
    let mut child = spawn_service(port, &[("INFERENCE_STATE_DIR", state_env.as_str())]);
    wait_ready(port);
    assert_eq!(rows_in_state(port), 0);
    sigterm(&child);
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("could not be used") && stderr.contains("started fresh"),
        "{stderr}"
    );
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.contains("set-aside")), "{names:?}");
    assert!(names.iter().any(|n| n == "monitor.sqlite"), "{names:?}");
}
