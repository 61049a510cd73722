//! The real server with the real model: scoring quality and the shape of answers.

mod common;

use common::{holdout, serve_args, Server};
use serde_json::json;

#[tokio::test]
async fn served_scores_separate_malignant_from_benign_rows() {
    let server = Server::start(serve_args()).await;
    let (rows, labels) = holdout();
    let (status, body) = server
        .post_json("/v1/predict", &json!({ "rows": rows }))
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), rows.len());
    let threshold = body["threshold"].as_f64().unwrap();
    let errors: Vec<f64> = results
        .iter()
        .map(|r| r["reconstruction_error"].as_f64().unwrap())
        .collect();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["row"], i);
        let score = r["anomaly_score"].as_f64().unwrap();
        assert!((score - errors[i] / threshold).abs() < 1e-12);
        assert_eq!(r["is_anomaly"].as_bool().unwrap(), errors[i] > threshold);
    }
    let benign_below = errors
        .iter()
        .zip(&labels)
        .filter(|(e, &l)| !l && **e <= threshold)
        .count();
    let benign = labels.iter().filter(|&&l| !l).count();
    assert!(
        benign_below as f64 >= 0.9 * benign as f64,
        "{benign_below} of {benign} benign rows below the threshold"
    );
    let auc = inference::stats::roc_auc(&errors, &labels).unwrap();
    assert!(auc >= 0.9, "ROC-AUC from the served scores is {auc}");
    let card_auc = server
        .state
        .card
        .evaluation
        .as_ref()
        .unwrap()
        .holdout_roc_auc
        .unwrap();
    assert!(
        (auc - card_auc).abs() < 1e-3,
        "served AUC {auc} vs card {card_auc}"
    );
    let flagged = errors
        .iter()
        .zip(&labels)
        .filter(|(e, &l)| l && **e > threshold)
        .count();
    let malignant = labels.iter().filter(|&&l| l).count();
    assert!(
        flagged as f64 >= 0.7 * malignant as f64,
        "only {flagged} of {malignant} malignant rows flagged"
    );
}

#[tokio::test]
async fn named_rows_score_like_ordered_rows_and_batching_changes_nothing() {
    let server = Server::start(serve_args()).await;
    let (rows, _) = holdout();
    let names: Vec<String> = server.feature_names();
    let sample = &rows[..5];
    let named: Vec<serde_json::Value> = sample
        .iter()
        .map(|r| {
            // Keys in reverse order: order must not matter.
            names
                .iter()
                .zip(r)
                .rev()
                .map(|(n, v)| (n.clone(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    let (s1, ordered) = server
        .post_json("/v1/predict", &json!({ "rows": sample }))
        .await;
    let (s2, keyed) = server
        .post_json("/v1/predict", &json!({ "rows": named }))
        .await;
    assert_eq!((s1, s2), (200, 200));
    for (i, row) in sample.iter().enumerate() {
        let (s, single) = server
            .post_json("/v1/predict", &json!({ "rows": [row] }))
            .await;
        assert_eq!(s, 200);
        let a = ordered["results"][i]["reconstruction_error"]
            .as_f64()
            .unwrap();
        let b = keyed["results"][i]["reconstruction_error"]
            .as_f64()
            .unwrap();
        let c = single["results"][0]["reconstruction_error"]
            .as_f64()
            .unwrap();
        assert!(
            (a - b).abs() <= 1e-9 * a.max(1.0) && (a - c).abs() <= 1e-5 * a.max(1.0),
            "{a} {b} {c}"
        );
    }
    assert_ne!(ordered["request_id"], keyed["request_id"]);
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_rows_back() {
    // The worker folds concurrent requests into one forward pass; each must get its own results.
    let server = std::sync::Arc::new(Server::start(serve_args()).await);
    let (rows, _) = holdout();
    let mut expected = Vec::new();
    for row in rows.iter().take(40) {
        let (_, b) = server
            .post_json("/v1/predict", &json!({ "rows": [row] }))
            .await;
        expected.push(b["results"][0]["reconstruction_error"].as_f64().unwrap());
    }
    let mut tasks = Vec::new();
    for (i, row) in rows.iter().take(40).enumerate() {
        let server = std::sync::Arc::clone(&server);
        let body = json!({ "rows": [row, row] });
        tasks.push(tokio::spawn(async move {
            (i, server.post_json("/v1/predict", &body).await)
        }));
    }
    for t in tasks {
        let (i, (status, body)) = t.await.unwrap();
        assert_eq!(status, 200);
        for k in 0..2 {
            let got = body["results"][k]["reconstruction_error"].as_f64().unwrap();
            assert!(
                (got - expected[i]).abs() <= 1e-5 * expected[i].max(1.0),
                "row {i}: {got} vs {}",
                expected[i]
            );
        }
    }
}

#[tokio::test]
async fn health_model_and_openapi_endpoints_answer() {
    let server = Server::start(serve_args()).await;
    assert_eq!(
        server.get_json("/healthz").await,
        (200, json!({"status": "alive"}))
    );
    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["model"]["name"], server.state.card.name.as_str());
    let (status, model) = server.get_json("/v1/model").await;
    assert_eq!(status, 200);
    assert_eq!(model["image_tag"], "test-tag");
    assert_eq!(model["version"], server.state.card.version.as_str());
    assert!(!model["git_revision"].as_str().unwrap().is_empty());
    assert_eq!(
        model["card"]["features"].as_array().unwrap().len(),
        server.state.card.width()
    );
    let (status, doc) = server.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // Every route monitoring tracks is documented.
    for p in inference::tracking::ROUTES
        .iter()
        .filter(|r| **r != "other")
    {
        assert!(paths.contains(p), "{p} missing from openapi.json");
    }
    let named = &doc["components"]["schemas"]["RowNamed"];
    assert_eq!(
        named["required"].as_array().unwrap().len(),
        server.state.card.width()
    );
    assert_eq!(
        doc["components"]["schemas"]["RowValues"]["minItems"],
        server.state.card.width()
    );
}
