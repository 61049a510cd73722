//! One dashboard over a fleet (issue 17): the same traffic sent once to a single service and,
//! spread, to three replicas gives the fleet view (every replica's buckets merged by the console)
//! the same histograms, counts, drift statistics and ground truth as the single service's own
//! summary; and the dashboard draws the fleet and each host.
//!
//! Real parts: four `inference` processes on loopback (the host-built binary, ONNX Runtime from
//! the venv's wheel, as the rest of the suite).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use console_core::dashboard::{refresh, Request, Source};
use console_core::fleet_monitor::{FleetView, Replica};
use console_core::service::ServiceClient;
use serde_json::{json, Value};

struct Service {
    child: Child,
    client: ServiceClient,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Service {
    let port = support::free_port();
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference-image/model/wbc-autoencoder");
    let child = Command::new(support::images::inference_binary())
        .arg("serve")
        .arg("--model-dir")
        .arg(model)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the inference service");
    // Ready, not only listening: /readyz answers 200 once the model is loaded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = format!("127.0.0.1:{port}");
    while !support::http_get(&addr, "/readyz", None, &[]).is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "the service did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Service {
        child,
        client: ServiceClient::new(SocketAddr::from(([127, 0, 0, 1], port))),
    }
}

/// Deterministic rows around the card's training means, kept inside its plausible ranges; from
/// `drifted` on, the first feature moves two standard deviations up. A `bad` request has a missing cell in its first row and an
/// invalid one in its second (the bundled card refuses such requests, and counts the cells).
fn rows(card: &Value, n: usize, first: usize, drifted: usize, bad: bool) -> Vec<Value> {
    let features = card["features"].as_array().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ first as u64;
    let mut normal = move || {
        // Sum of uniforms: close enough to a normal for drift statistics.
        (0..4)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .sum::<f64>()
            - 2.0
    };
    (first..first + n)
        .map(|i| {
            let row: Vec<Value> = features
                .iter()
                .enumerate()
                .map(|(j, f)| {
                    let (mean, std) = (f["mean"].as_f64().unwrap(), f["std"].as_f64().unwrap());
                    let shift = if j == 0 && i >= drifted {
                        2.0 * std
                    } else {
                        0.0
                    };
                    // Inside the card's plausible range: a value outside it is refused.
                    let (lo, hi) = (
                        f["valid_min"].as_f64().unwrap(),
                        f["valid_max"].as_f64().unwrap(),
                    );
                    let v = (mean + shift + std * normal()).clamp(lo, hi);
                    match (bad, i - first, j) {
                        (true, 0, 3) => Value::Null,
                        (true, 1, 5) => json!("NaN"),
                        _ => json!(v),
                    }
                })
                .collect();
            Value::Array(row)
        })
        .collect()
}

/// Compares two summaries: integers exactly, floats to 1e-9 relative (sums added in another
/// order), skipping what differs by nature between processes (latency, resources, the clock).
fn same(path: &str, a: &Value, b: &Value, diffs: &mut Vec<String>) {
    const SKIP: [&str; 6] = [
        "latency",
        "resources",
        "window",
        "in_flight_now",
        "fleet",
        "dropped_events",
    ];
    if SKIP
        .iter()
        .any(|s| path.rsplit('.').next().unwrap_or("").contains(s))
    {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                same(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    diffs,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                same(&format!("{path}[{i}]"), p, q, diffs);
            }
        }
        (Value::Number(p), Value::Number(q)) if p.is_f64() || q.is_f64() => {
            let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
            if (p - q).abs() > 1e-9 * p.abs().max(q.abs()).max(1e-12) {
                diffs.push(format!("{path}: {p} against {q}"));
            }
        }
        _ if a != b => diffs.push(format!("{path}: {a} against {b}")),
        _ => {}
    }
}

/// The system layer of the traffic this test sent (`/v1/predict` and `/v1/feedback`): the other
/// routes are the reads that made the views and the start-up probes, different on each side (the
/// fleet view reads each replica's buckets and model, the single service is read for its summary,
/// each process was probed until ready). The totals, status counts and error rates are computed
/// again from the two routes; the figures that cannot be separated from the reads (request rate,
/// peak concurrency) are left out.
fn api_traffic(system: &Value) -> Value {
    let mut s = system.clone();
    let routes = s["routes"].as_object_mut().unwrap();
    routes.retain(|r, _| r == "/v1/predict" || r == "/v1/feedback");
    let kept: Vec<Value> = routes.values().cloned().collect();
    let sum =
        |f: &dyn Fn(&Value) -> &Value| -> u64 { kept.iter().map(|r| f(r).as_u64().unwrap()).sum() };
    let requests = sum(&|r| &r["requests"]);
    s["requests"] = json!(requests);
    for class in ["2xx", "4xx", "5xx"] {
        s["by_status"][class] = json!(sum(&|r| &r["by_status"][class]));
    }
    let (client, server) = (
        s["by_status"]["4xx"].as_u64().unwrap() as f64,
        s["by_status"]["5xx"].as_u64().unwrap() as f64,
    );
    s["error_rate"] = json!((client + server) / requests as f64);
    s["server_error_rate"] = json!(server / requests as f64);
    for f in ["requests_per_second", "in_flight_max"] {
        s[f] = Value::Null;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_s_merged_buckets_equal_one_replica_taking_all_the_traffic() {
    let single = start();
    let fleet: Vec<Service> = (0..3).map(|_| start()).collect();
    let card = single.client.model().await.unwrap()["card"].clone();

    // 120 requests of 5 rows, each to the single service and to one replica in turn; every
    // other response's rows labelled on both (the replicas' request ids are their own). Every
    // tenth request has a missing and an invalid cell and is refused by both.
    let mut sent_rows = 0;
    for r in 0..120 {
        let bad = r % 10 == 9;
        let body = json!({ "rows": rows(&card, 5, r * 5, 300, bad) });
        let replica = &fleet[r % 3].client;
        for (k, client) in [&single.client, replica].into_iter().enumerate() {
            let answer = client.post_json("/v1/predict", &body).await;
            if bad {
                assert!(answer.unwrap_err().contains("422"));
                continue;
            }
            let id = answer.unwrap()["request_id"].as_str().unwrap().to_string();
            if r % 2 == 0 {
                let feedback: Vec<Value> = (0..5)
                    .map(|i| json!({"request_id": id, "row": i, "label": u8::from((r + i) % 4 == 0)}))
                    .collect();
                let a = client
                    .post_json("/v1/feedback", &json!({ "feedback": feedback }))
                    .await
                    .unwrap();
                assert_eq!(a["accepted"], 5, "feedback on {}", ["single", "replica"][k]);
            }
        }
        if !bad {
            sent_rows += 5;
        }
    }
    // Refused requests count too: one with a wrong width to each.
    let bad = json!({"rows": [[1.0, 2.0]]});
    for client in [&single.client, &fleet[1].client] {
        assert!(client.post_json("/v1/predict", &bad).await.is_err());
    }

    let replicas: Vec<Replica> = fleet
        .iter()
        .enumerate()
        .map(|(i, s)| Replica {
            name: format!("h{}", i + 1),
            client: s.client.clone(),
        })
        .collect();
    let now = monitoring_core::now_secs() + 1;
    let range = 900;
    // The recorder drains every 20 ms: wait until both sides have counted every row, refusal
    // and label.
    let settled = |s: &Value| {
        s["data"]["rows"].as_u64() == Some(sent_rows)
            && s["system"]["by_status"]["4xx"] == 13
            && s["model"]["ground_truth"]["labelled"] == 300
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (view, want) = loop {
        let view = FleetView::read(&replicas, range, 60, now).await.unwrap();
        let want = single.client.summary(range).await.unwrap();
        let fleet = view.summary();
        if settled(&fleet) && settled(&want) {
            break (view, want);
        }
        assert!(
            Instant::now() < deadline,
            "not settled: fleet rows {}, 4xx {}, labelled {}; single {}, {}, {}",
            fleet["data"]["rows"],
            fleet["system"]["by_status"]["4xx"],
            fleet["model"]["ground_truth"]["labelled"],
            want["data"]["rows"],
            want["system"]["by_status"]["4xx"],
            want["model"]["ground_truth"]["labelled"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = view.summary();
    assert_eq!(got["fleet"]["hosts"], json!(["h1", "h2", "h3"]));
    // The traffic did what it should, so the comparison is not of empty histograms.
    assert_eq!(
        got["data"]["features"][0]["verdict"], "drift",
        "{}",
        got["data"]["features"][0]
    );
    assert!(got["data"]["features"][3]["missing"].as_u64() > Some(0));
    assert!(got["data"]["features"][5]["invalid"].as_u64() > Some(0));
    assert_eq!(got["model"]["ground_truth"]["labelled"], 300);
    assert_eq!(got["system"]["by_status"]["4xx"], 13);

    // The reads that made these views are requests too, different on each side (bucket reads of
    // each replica, summary reads of the single service): both are taken out before comparing.
    let (got_system, want_system) = (api_traffic(&got["system"]), api_traffic(&want["system"]));
    assert!(got_system["routes"]["/v1/predict"]["requests"].as_u64() > Some(100));
    let mut diffs = Vec::new();
    same("system", &got_system, &want_system, &mut diffs);
    for layer in ["data", "model"] {
        same(layer, &got[layer], &want[layer], &mut diffs);
    }
    assert!(
        diffs.is_empty(),
        "the fleet differs from one replica:\n{}",
        diffs.join("\n")
    );

    // Every replica's own histogram adds up to the fleet's.
    let per_host: Vec<Value> =
        futures_util::future::join_all(fleet.iter().map(|s| s.client.summary(range)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let current = |s: &Value| -> Vec<u64> {
        s["data"]["features"][0]["distribution"]["current"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect()
    };
    let summed = per_host
        .iter()
        .map(current)
        .fold(vec![0; current(&got).len()], |acc, h| {
            acc.iter().zip(h).map(|(a, b)| a + b).collect()
        });
    assert_eq!(summed, current(&got));

    // A series of the fleet equals the single service's over the same minutes (the request
    // counts differ by the monitoring reads, as above; the refused requests do not).
    let step = console_core::dashboard::step_for(range);
    for metric in [
        "rows",
        "missing_per_minute",
        "rejected_requests",
        "anomaly_rate",
    ] {
        let f: f64 = Source::series(&view, metric, now - range, now, step)
            .await
            .unwrap()
            .iter()
            .filter_map(|p| p.1)
            .sum();
        let s: f64 = single
            .client
            .series(metric, now - range, now, step)
            .await
            .unwrap()
            .iter()
            .filter_map(|p| p.1)
            .sum();
        assert_eq!(f, s, "{metric}");
    }

    // The dashboard draws the fleet and each host.
    let req = Request {
        range_s: range,
        utc_offset_s: 0,
        feature: None,
        now,
    };
    let whole = refresh(&view, &[], &req).await.unwrap();
    let one = refresh(&fleet[0].client, &[], &req).await.unwrap();
    let ids = |d: &console_core::dashboard::Dashboard| -> Vec<String> {
        d.charts.iter().map(|c| c.id.clone()).collect()
    };
    assert_eq!(ids(&whole), ids(&one));
    assert!(whole.charts.iter().all(|c| c.svg.starts_with("<svg")));
    let rows_of = |d: &console_core::dashboard::Dashboard| -> u64 {
        d.drift.iter().map(|r| r.rows).max().unwrap_or(0)
    };
    assert_eq!(rows_of(&whole), sent_rows);
    assert!(rows_of(&one) < rows_of(&whole));
}

/// A replica that does not answer stops the fleet view with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_does_not_answer_is_named() {
    let up = start();
    let down_port = support::free_port();
    let replicas = vec![
        Replica {
            name: "h1".into(),
            client: up.client.clone(),
        },
        Replica {
            name: "h2".into(),
            client: ServiceClient::new(SocketAddr::from(([127, 0, 0, 1], down_port))),
        },
    ];
    let e = FleetView::read(&replicas, 900, 60, monitoring_core::now_secs())
        .await
        .err()
        .expect("h2 is down");
    assert!(e.starts_with("h2: ") && e.contains("not answering"), "{e}");
}
