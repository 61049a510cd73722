//! Monitoring through the real server: what predictions, rejections and feedback do to the summary,
//! series and Prometheus output.

mod common;

use std::time::Duration;

use common::{holdout, serve_args, Server};
use serde_json::{json, Value};

/// Benign held-out rows: the "normal" traffic (never the training rows).
fn benign() -> Vec<Vec<f64>> {
    let (rows, labels) = holdout();
    let mut out: Vec<Vec<f64>> = rows
        .into_iter()
        .zip(labels)
        .filter(|(_, l)| !l)
        .map(|(r, _)| r)
        .collect();
    let cal =
        inference::card_builder::read_csv(&common::model_dir().join("calibration.csv")).unwrap();
    out.extend(cal.rows);
    out
}

/// Polls the summary until the recorder has seen `rows` rows.
async fn summary_after(server: &Server, rows: u64) -> Value {
    for _ in 0..200 {
        let (status, s) = server.get_json("/v1/monitoring/summary?window=5m").await;
        assert_eq!(status, 200, "{s}");
        if s["data"]["rows"].as_u64() == Some(rows) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the recorder never reached {rows} rows");
}

async fn send(server: &Server, rows: &[Vec<f64>]) {
    for chunk in rows.chunks(16) {
        let (status, body) = server
            .post_json("/v1/predict", &json!({ "rows": chunk }))
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

fn verdicts(summary: &Value) -> Vec<(String, String)> {
    summary["data"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn normal_traffic_shows_no_drift() {
    let server = Server::start(serve_args()).await;
    let rows = benign();
    send(&server, &rows).await;
    let s = summary_after(&server, rows.len() as u64).await;
    let drifted: Vec<_> = verdicts(&s)
        .into_iter()
        .filter(|(_, v)| v == "drift")
        .collect();
    assert!(
        drifted.is_empty(),
        "drift flagged on normal held-out rows: {drifted:?}"
    );
    assert_ne!(s["data"]["drift"]["verdict"], "drift");
    // Far below the sampling rate: the feature histograms hold every row.
    assert_eq!(s["data"]["rows_in_feature_histograms"], s["data"]["rows"]);
    assert_ne!(
        s["model"]["score_drift"]["verdict"], "drift",
        "{}",
        s["model"]["score_drift"]
    );
    // Each request is counted when its response is done, so poll for the last one.
    let mut s = s;
    for _ in 0..100 {
        if s["system"]["routes"]["/v1/predict"]["requests"].as_u64()
            == Some(rows.len().div_ceil(16) as u64)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        s = server.get_json("/v1/monitoring/summary?window=5m").await.1;
    }
    assert_eq!(
        s["system"]["routes"]["/v1/predict"]["by_status"]["2xx"]
            .as_u64()
            .unwrap() as usize,
        rows.len().div_ceil(16)
    );
    let p50 = s["system"]["predict_latency_seconds"]["p50"]
        .as_f64()
        .unwrap();
    assert!(p50 > 0.0 && p50 < 1.0, "{p50}");
    let anomaly_rate = s["model"]["anomaly_rate"].as_f64().unwrap();
    assert!(anomaly_rate < 0.15, "{anomaly_rate}");
}

#[tokio::test]
async fn shifting_three_features_flags_exactly_those() {
    let server = Server::start(serve_args()).await;
    let card = server.state.card.clone();
    let shifted = [0usize, 7, 21];
    let rows: Vec<Vec<f64>> = benign()
        .into_iter()
        .map(|mut r| {
            for &j in &shifted {
                r[j] += 1.5 * card.features[j].std;
            }
            r
        })
        .collect();
    send(&server, &rows).await;
    let s = summary_after(&server, rows.len() as u64).await;
    let drifted: Vec<String> = verdicts(&s)
        .into_iter()
        .filter(|(_, v)| v == "drift")
        .map(|(n, _)| n)
        .collect();
    let want: Vec<String> = shifted
        .iter()
        .map(|&j| card.features[j].name.clone())
        .collect();
    assert_eq!(drifted, want, "{}", s["data"]["features"]);
    // Three of thirty features is not "the input drifted" (that needs half).
    assert_eq!(s["data"]["drift"]["verdict"], "warning");
    assert_eq!(s["data"]["drift"]["drifted_features"], json!(want));
}

#[tokio::test]
async fn missing_and_invalid_values_are_counted_per_feature() {
    let server = Server::start(serve_args()).await;
    let names: Vec<String> = server.feature_names();
    let good: Vec<Value> = benign()[0].iter().map(|v| json!(v)).collect();
    let with = |j: usize, v: Value| {
        let mut r = good.clone();
        r[j] = v;
        r
    };
    let bodies = [
        json!({"rows": [with(2, json!(null)), with(2, json!(null)), with(5, json!("NaN"))]}),
        json!({"rows": [with(5, json!(-3.0)), with(9, json!("abc"))]}),
    ];
    for b in &bodies {
        let (status, _) = server.post_json("/v1/predict", b).await;
        assert_eq!(status, 422);
    }
    send(&server, &[benign()[1].clone()]).await;
    let s = summary_after(&server, 1).await;
    let features = s["data"]["features"].as_array().unwrap();
    let count = |j: usize, key: &str| features[j][key].as_u64().unwrap();
    assert_eq!(features[2]["name"], names[2].as_str());
    assert_eq!((count(2, "missing"), count(2, "invalid")), (2, 0));
    assert_eq!((count(5, "missing"), count(5, "invalid")), (0, 2));
    assert_eq!((count(9, "missing"), count(9, "invalid")), (0, 1));
    assert_eq!(count(0, "missing") + count(0, "invalid"), 0);
    assert_eq!(s["data"]["rejected_requests"], 2);
    // Rejected rows never reach the distributions.
    assert_eq!(count(2, "rows"), 1);
}

#[tokio::test]
async fn feedback_is_accepted_once_and_feeds_ground_truth() {
    let server = Server::start(serve_args()).await;
    let (rows, labels) = holdout();
    let (status, body) = server
        .post_json("/v1/predict", &json!({ "rows": &rows[..40] }))
        .await;
    assert_eq!(status, 200);
    let id = body["request_id"].as_str().unwrap().to_string();
    let items: Vec<Value> = (0..40)
        .map(|i| json!({"request_id": id, "row": i, "label": u8::from(labels[i])}))
        .collect();
    let (status, answer) = server
        .post_json("/v1/feedback", &json!({ "feedback": items }))
        .await;
    assert_eq!((status, answer), (200, json!({"accepted": 40})));

    let (status, e) = server
        .post_json(
            "/v1/feedback",
            &json!({"feedback": [{"request_id": id, "row": 3, "label": 1}]}),
        )
        .await;
    assert_eq!(
        (status, e["error_type"].as_str()),
        (409, Some("conflict")),
        "{e}"
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    let (status, e) = server
        .post_json(
            "/v1/feedback",
            &json!({"feedback": [{"request_id": unknown, "label": 1}]}),
        )
        .await;
    assert_eq!(
        (status, e["error_type"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    let (status, e) = server
        .post_json(
            "/v1/feedback",
            &json!({"feedback": [{"request_id": id, "row": 99, "label": 1}]}),
        )
        .await;
    assert_eq!(status, 422, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("row 99 does not exist"),
        "{e}"
    );
    let (status, e) = server
        .post_json(
            "/v1/feedback",
            &json!({"feedback": [{"request_id": id, "row": 1, "label": "maybe"}]}),
        )
        .await;
    assert_eq!(status, 422, "{e}");

    let mut gt = Value::Null;
    for _ in 0..100 {
        let (_, s) = server.get_json("/v1/monitoring/summary?window=5m").await;
        gt = s["model"]["ground_truth"].clone();
        if gt["labelled"] == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gt["labelled"], 40, "{gt}");
    let threshold = body["threshold"].as_f64().unwrap();
    let scores: Vec<f64> = (0..40)
        .map(|i| body["results"][i]["reconstruction_error"].as_f64().unwrap())
        .collect();
    let tp = (0..40)
        .filter(|&i| labels[i] && scores[i] > threshold)
        .count();
    assert_eq!(gt["true_positives"], tp);
    let auc = inference::stats::roc_auc(&scores, &labels[..40]).unwrap();
    assert!((gt["roc_auc"].as_f64().unwrap() - auc).abs() < 1e-12);
}

#[tokio::test]
async fn series_and_metrics_describe_the_same_traffic() {
    let server = Server::start(serve_args()).await;
    let rows = benign();
    send(&server, &rows[..32]).await;
    summary_after(&server, 32).await;
    let now = inference::monitor::now_secs();
    let (status, series) = server
        .get_json(&format!(
            "/v1/monitoring/series?metric=rows&from={}&to={now}&step=60",
            now - 600
        ))
        .await;
    assert_eq!(status, 200, "{series}");
    let total: f64 = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .sum();
    assert_eq!(total, 32.0);
    let (status, e) = server
        .get_json("/v1/monitoring/series?metric=nonsense")
        .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("unknown metric"));
    let (status, e) = server
        .get_json("/v1/monitoring/series?metric=psi:nope")
        .await;
    assert_eq!(status, 400, "{e}");
    // The autoencoder has no classes: no class shares, and no class drift in the summary.
    let (status, e) = server
        .get_json("/v1/monitoring/series?metric=class_share:0")
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("unknown metric"));
    let (_, s) = server.get_json("/v1/monitoring/summary?window=5m").await;
    assert!(s["model"]["class_drift"].is_null(), "{}", s["model"]);

    // A request is counted once its response is done: poll for the last predict's count.
    let want = "mlops_http_requests_total{route=\"/v1/predict\",status=\"2xx\"} 2";
    let mut text = String::new();
    for _ in 0..100 {
        text = server
            .client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains("mlops_predict_rows_total 32"), "{text}");
    assert!(
        text.contains("mlops_http_requests_total{route=\"/v1/predict\",status=\"2xx\"} 2"),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("mlops_"), "{line}");
    }
}

#[tokio::test]
async fn a_token_guards_monitoring_and_feedback() {
    let mut args = serve_args();
    args.api_token = Some("a-long-enough-test-token".parse().unwrap());
    let server = Server::start(args).await;
    let r = server
        .client
        .get(server.url("/v1/monitoring/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth("a-long-enough-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Predictions stay open unless configured otherwise.
    let (status, _) = server
        .post_json("/v1/predict", &json!({ "rows": [benign()[0]] }))
        .await;
    assert_eq!(status, 200);
}
