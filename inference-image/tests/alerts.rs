//! Alerting end to end: the real binary with a one-rule file and a one-second evaluation interval,
//! a loopback webhook receiver that fails in every way before it accepts, and the service's own
//! output checked for the webhook URL. Plus the endpoint's shape and access, and start-up errors.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{free_port, model_dir, ort_library, Server};

const BIN: &str = env!("CARGO_BIN_EXE_inference");
/// The webhook URL's secret part: it must never appear in the service's output or answers.
const SECRET: &str = "T0SECRET/B0SECRET/xoxSECRETpath";

/// What the receiver does with one connection.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Closes the connection without reading or answering.
    Close,
    /// Reads the request and answers nothing for this long (past the service's timeout).
    Hang(Duration),
    /// Answers with this status.
    Status(u16),
}

/// A webhook receiver on loopback: connection n gets `script[n]` (200 once the script is used
/// up), each on its own thread; the bodies of the requests it answered 2xx are kept in order.
struct Receiver {
    url: String,
    accepted: Arc<Mutex<Vec<Value>>>,
    connections: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start(script: Vec<Behaviour>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/services/{SECRET}",
            listener.local_addr().unwrap()
        );
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (acc, conns) = (Arc::clone(&accepted), Arc::clone(&connections));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let n = {
                    let mut c = conns.lock().unwrap();
                    *c += 1;
                    *c - 1
                };
                let behaviour = script.get(n).copied().unwrap_or(Behaviour::Status(200));
                let acc = Arc::clone(&acc);
                std::thread::spawn(move || match behaviour {
                    Behaviour::Close => drop(stream),
                    Behaviour::Hang(d) => {
                        let _ = read_request(&mut stream);
                        std::thread::sleep(d);
                    }
                    Behaviour::Status(status) => {
                        let Some((path, body)) = read_request(&mut stream) else {
                            return;
                        };
                        assert!(path.ends_with(SECRET), "posted to {path}");
                        if (200..300).contains(&status) {
                            acc.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                        }
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                        );
                    }
                });
            }
        });
        Receiver {
            url,
            accepted,
            connections,
        }
    }

    /// (rule, state) of every accepted body, in order.
    fn accepted(&self) -> Vec<(String, String)> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["rule"].as_str().unwrap().to_string(),
                    b["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// The request line's path and the body of one HTTP/1.1 request, or None if the peer went away.
fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let path = head.split(' ').nth(1)?.to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some((path, buf[end + 4..end + 4 + len].to_vec()));
        }
    }
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alerts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Collects a child's output on a thread (so its pipe never fills).
fn collect(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    })
}

struct Service {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Service {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn alerts(&self) -> Value {
        let (status, text) = self.get("/v1/monitoring/alerts").await;
        assert_eq!(status, 200, "{text}");
        assert!(!text.contains("SECRET"), "the URL leaked: {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn predict(&self, rows: Value) -> u16 {
        self.client
            .post(format!("{}/v1/predict", self.base))
            .json(&json!({ "rows": rows }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service at {base} did not become ready");
}

/// Each transition is delivered exactly once, in order, through a refused connection, a hang
/// past the timeout, a 500 and a 429; predictions are answered 200 all along; the webhook URL
/// shows nowhere in the service's output or answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_are_delivered_once_through_failures_and_the_url_never_shows() {
    let receiver = Receiver::start(vec![
        Behaviour::Close,
        Behaviour::Hang(Duration::from_millis(1500)),
        Behaviour::Status(500),
        Behaviour::Status(200),
        Behaviour::Status(429),
        Behaviour::Status(200),
    ]);
    let dir = tempdir("e2e");
    let rules = dir.join("rules.json");
    std::fs::write(
        &rules,
        json!([{"id": "errors", "title": "Errors in the last minute", "metric": "system.error_rate",
                "op": ">", "threshold": 0.5, "window_minutes": 1, "severity": "critical"}])
        .to_string(),
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("INFERENCE_MODEL_DIR", model_dir())
        .env("INFERENCE_BIND", format!("127.0.0.1:{port}"))
        .env("ORT_DYLIB_PATH", ort_library())
        .env("INFERENCE_STATE_DIR", dir.join("state"))
        .env("INFERENCE_ALERT_RULES", &rules)
        .env("INFERENCE_ALERT_INTERVAL_SECS", "1")
        .env("INFERENCE_ALERT_WEBHOOK_URL", &receiver.url)
        .env("INFERENCE_ALERT_WEBHOOK_FORMAT", "json")
        .env("INFERENCE_ALERT_WEBHOOK_TIMEOUT_MS", "500")
        .env("INFERENCE_ALERT_WEBHOOK_BACKOFF_MS", "100")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let service = Service {
        child,
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
    };
    wait_ready(&service.base).await;

    let (rows, _) = common::holdout();
    let good = json!([rows[0]]);
    let bad = json!([[1.0, 2.0]]);

    // Fire: mostly invalid requests until the rule fires.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for _ in 0..5 {
            assert_eq!(service.predict(bad.clone()).await, 422);
        }
        assert_eq!(service.predict(good.clone()).await, 200);
        if service.alerts().await["rules"][0]["state"] == "firing" {
            break;
        }
        assert!(Instant::now() < deadline, "the rule never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Resolve: valid requests only, while the firing event is still being retried.
    let deadline = Instant::now() + Duration::from_secs(40);
    let report = loop {
        for _ in 0..10 {
            assert_eq!(service.predict(good.clone()).await, 200);
        }
        let a = service.alerts().await;
        let d = &a["delivery"];
        if a["rules"][0]["state"] == "ok" && d["delivered"] == 2 && d["queued"] == 0 {
            break a;
        }
        assert!(Instant::now() < deadline, "not resolved and delivered: {a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A few more evaluations: nothing new is sent.
    for _ in 0..6 {
        assert_eq!(service.predict(good.clone()).await, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        receiver.accepted(),
        pairs(&[("errors", "firing"), ("errors", "resolved")])
    );
    assert_eq!(*receiver.connections.lock().unwrap(), 6);
    let mut by_transition: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in receiver.accepted() {
        *by_transition.entry(t).or_default() += 1;
    }
    assert!(by_transition.values().all(|&n| n == 1), "{by_transition:?}");

    let body = receiver.accepted.lock().unwrap()[0].clone();
    for key in [
        "rule",
        "title",
        "severity",
        "state",
        "value",
        "threshold",
        "metric",
        "at",
        "service",
        "model",
        "model_version",
        "image_tag",
    ] {
        assert!(body.get(key).is_some(), "{key} missing from {body}");
    }
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["model"], "wbc-autoencoder");
    assert!(body["value"].as_f64().unwrap() > 0.5, "{body}");

    let after = service.alerts().await;
    assert_eq!(
        after["delivery"],
        json!({"configured": true, "format": "json", "delivered": 2, "failed": 0, "dropped": 0, "queued": 0})
    );
    let events = after["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{after}");
    assert_eq!(events[0]["state"], "firing");
    assert_eq!(events[1]["state"], "resolved");
    assert_eq!(report["rules"][0]["id"], "errors");
    assert!(report["rules"][0]["since"].as_i64().unwrap() >= events[1]["at"].as_i64().unwrap());
    // The state survives in the state directory.
    let saved = std::fs::read_to_string(dir.join("state").join("alerts.json")).unwrap();
    assert!(saved.contains("\"resolved\""), "{saved}");
    assert!(!saved.contains("SECRET"));

    let Service { mut child, .. } = service;
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    child.wait().unwrap();
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    let output = format!("{out}\n{err}");
    assert!(
        !output.contains("SECRET") && !output.contains("/services/"),
        "the webhook URL shows in the service's output:\n{output}"
    );
    // The deliveries were logged, by host only.
    assert!(err.contains("alert delivered to the webhook"), "{err}");
    assert!(err.contains("retrying"), "{err}");
    assert!(err.contains("http://127.0.0.1"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rule file or webhook URL that cannot work stops the start with one sentence (exit 2) that
/// names the rule and the field, and never shows the URL.
#[test]
fn bad_rules_and_urls_stop_the_start_with_a_sentence() {
    let dir = tempdir("bad");
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("INFERENCE_MODEL_DIR", model_dir())
            .env("ORT_DYLIB_PATH", ort_library())
            .env_remove("INFERENCE_ALERT_WEBHOOK_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let rules = dir.join("rules.json");
    std::fs::write(
        &rules,
        json!([
            {"id": "a", "metric": "system.error_rate", "op": ">", "threshold": 0.1, "window_minutes": 5, "severity": "warning"},
            {"id": "b", "metric": "system.error_rate", "op": ">", "threshold": 0.1, "window_minutes": 0, "severity": "warning"},
        ])
        .to_string(),
    )
    .unwrap();
    let (code, err) = run(&[("INFERENCE_ALERT_RULES", rules.to_str().unwrap())]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("rule 2 (\"b\"), field \"window_minutes\"") && err.contains("rules.json"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let (code, err) = run(&[(
        "INFERENCE_ALERT_WEBHOOK_URL",
        "ftp://hooks.example.com/services/SECRET",
    )]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("INFERENCE_ALERT_WEBHOOK_URL"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /v1/monitoring/alerts` with the default rules of the bundled autoencoder, no webhook, and
/// the monitoring token rule.
#[tokio::test]
async fn the_endpoint_lists_the_default_rules_and_follows_the_token_rule() {
    let server = Server::start(common::serve_args()).await;
    let (status, a) = server.get_json("/v1/monitoring/alerts").await;
    assert_eq!(status, 200, "{a}");
    let ids: Vec<&str> = a["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "error-rate",
            "latency-p99",
            "overloaded",
            "input-drift",
            "score-drift",
            "anomaly-rate",
            "recall-floor",
            "host-cpu",
            "host-memory",
            "host-disk"
        ]
    );
    for r in a["rules"].as_array().unwrap() {
        assert_eq!(r["state"], "ok", "{r}");
        assert!(r["since"].is_i64(), "{r}");
        for key in [
            "title",
            "metric",
            "op",
            "threshold",
            "window_minutes",
            "severity",
        ] {
            assert!(r.get(key).is_some(), "{key} missing from {r}");
        }
    }
    assert_eq!(a["events"], json!([]));
    assert_eq!(
        a["delivery"],
        json!({"configured": false, "delivered": 0, "failed": 0, "dropped": 0, "queued": 0})
    );
    drop(server);

    let mut args = common::serve_args();
    args.api_token = Some("a-long-enough-test-token".parse().unwrap());
    let server = Server::start(args).await;
    let (status, _) = server.get_json("/v1/monitoring/alerts").await;
    assert_eq!(status, 401);
    let r = server
        .client
        .get(server.url("/v1/monitoring/alerts"))
        .bearer_auth("a-long-enough-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// `PUT /v1/monitoring/alerts/rules`: a rule this model cannot answer is refused naming the rule
/// and the field, and changes nothing; a good list replaces the rules, is kept in the state
/// directory across a restart, and `null` brings the defaults back. The published document names
/// the metrics a rule may watch.
#[tokio::test]
async fn rules_set_through_the_api_are_checked_kept_and_restored() {
    let dir = tempdir("put-rules");
    let args = || {
        let mut a = common::serve_args();
        a.state_dir = Some(dir.clone());
        a
    };
    let server = Server::start(args()).await;
    let put = |body: Value| {
        server
            .client
            .put(server.url("/v1/monitoring/alerts/rules"))
            .json(&body)
            .send()
    };
    let ids = |a: &Value| -> Vec<String> {
        a["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let bad = json!({"rules": [
        {"id": "errors", "metric": "system.error_rate", "op": ">", "threshold": 0.1, "window_minutes": 5, "severity": "critical"},
        {"id": "nope", "metric": "system.nope", "op": ">", "threshold": 1, "window_minutes": 5, "severity": "warning"}
    ]});
    let r = put(bad).await.unwrap();
    assert_eq!(r.status(), 422);
    let err: Value = r.json().await.unwrap();
    let text = err["error"].as_str().unwrap();
    assert!(
        text.contains("rule 2 (\"nope\"), field \"metric\"") && text.contains("system.nope"),
        "{text}"
    );
    let r = put(json!({"rule": []})).await.unwrap();
    assert_eq!(r.status(), 422);
    let twice = json!({"id": "errors", "metric": "system.error_rate", "op": ">", "threshold": 0.1,
                       "window_minutes": 5.0, "severity": "critical", "title": null});
    let r = put(json!({ "rules": [twice, twice] })).await.unwrap();
    assert_eq!(r.status(), 409);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("rule 2 (\"errors\"), field \"id\": duplicate id"),
        "{err}"
    );
    let (_, before) = server.get_json("/v1/monitoring/alerts").await;
    assert_eq!(before["rules_source"], "defaults");
    assert_eq!(ids(&before).len(), 10);
    assert!(!dir.join(inference::alerts::RULES_FILE).exists());

    let good = json!({"rules": [
        {"id": "error-rate", "title": "Errors above 10 %", "metric": "system.error_rate", "op": ">", "threshold": 0.1, "window_minutes": 10, "severity": "critical"},
        {"id": "drift-warning", "metric": "data.drift.verdict", "op": "is", "threshold": "warning", "window_minutes": 30, "severity": "warning"}
    ]});
    let r = put(good).await.unwrap();
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.unwrap();
    assert_eq!(after["rules_source"], "api");
    assert_eq!(ids(&after), ["error-rate", "drift-warning"]);
    assert_eq!(after["rules"][0]["threshold"], 0.1);
    assert_eq!(after["rules"][1]["title"], "drift-warning");
    assert!(dir.join(inference::alerts::RULES_FILE).exists());
    drop(server);

    let server = Server::start(args()).await;
    let (_, again) = server.get_json("/v1/monitoring/alerts").await;
    assert_eq!(again["rules_source"], "api");
    assert_eq!(ids(&again), ["error-rate", "drift-warning"]);
    assert_eq!(again["rules"][0]["window_minutes"], 10);

    let r = server
        .client
        .put(server.url("/v1/monitoring/alerts/rules"))
        .json(&json!({"rules": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let defaults: Value = r.json().await.unwrap();
    assert_eq!(defaults["rules_source"], "defaults");
    assert_eq!(ids(&defaults).len(), 10);
    assert!(!dir.join(inference::alerts::RULES_FILE).exists());

    let (_, doc) = server.get_json("/openapi.json").await;
    let shapes = doc["components"]["schemas"]["AlertRule"]["anyOf"]
        .as_array()
        .unwrap();
    let metrics = |i: usize| shapes[i]["properties"]["metric"]["enum"].to_string();
    assert!(
        metrics(0).contains("\"system.error_rate\""),
        "{}",
        metrics(0)
    );
    assert!(!metrics(0).contains("\"data.drift.verdict\""));
    assert!(
        metrics(2).contains("\"data.drift.verdict\""),
        "{}",
        metrics(2)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
