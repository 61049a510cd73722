//! Bad input gets a 4xx JSON error naming the row and feature, and the next request is served
//! normally.

mod common;

use common::{holdout, serve_args, Server};
use serde_json::{json, Value};

fn good_row() -> Vec<f64> {
    holdout().0.remove(0)
}

fn row_with(j: usize, v: Value) -> Vec<Value> {
    let mut row: Vec<Value> = good_row().into_iter().map(|x| json!(x)).collect();
    row[j] = v;
    row
}

async fn assert_served_afterwards(server: &Server) {
    let (status, body) = server
        .post_json("/v1/predict", &json!({ "rows": [good_row()] }))
        .await;
    assert_eq!(status, 200, "a valid request after a bad one: {body}");
}

async fn send_raw(server: &Server, content_type: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = server.client.post(server.url("/v1/predict")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.expect("error bodies are JSON"))
}

#[tokio::test]
async fn bad_values_name_their_row_and_feature() {
    let server = Server::start(serve_args()).await;
    let names: Vec<String> = server.feature_names();
    let good: Vec<Value> = good_row().into_iter().map(|x| json!(x)).collect();
    let cases: Vec<(Value, usize, Option<&str>, &str)> = vec![
        (
            json!([good.clone(), row_with(3, json!(null))]),
            1,
            Some(&names[3]),
            "null",
        ),
        (
            json!([good.clone(), good.clone(), row_with(0, json!("NaN"))]),
            2,
            Some(&names[0]),
            "NaN",
        ),
        (
            json!([row_with(7, json!("-Infinity"))]),
            0,
            Some(&names[7]),
            "infinite",
        ),
        (
            json!([row_with(5, json!("abc"))]),
            0,
            Some(&names[5]),
            "expected a number",
        ),
        (
            json!([row_with(5, json!(true))]),
            0,
            Some(&names[5]),
            "boolean",
        ),
        (
            json!([row_with(5, json!([1, 2]))]),
            0,
            Some(&names[5]),
            "array",
        ),
        (
            json!([row_with(9, json!(1e39))]),
            0,
            Some(&names[9]),
            "32-bit float",
        ),
        (json!([good.clone(), &good[..29]]), 1, None, "has 29 values"),
        (json!([good.clone(), 42]), 1, None, "is a number"),
    ];
    for (rows, row, feature, text) in cases {
        let (status, body) = server
            .post_json("/v1/predict", &json!({ "rows": rows }))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error_type"], "validation");
        assert_eq!(body["row"], row, "{body}");
        assert_eq!(body["feature"].as_str(), feature, "{body}");
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains(text) && msg.contains(&format!("row {row}")),
            "{msg}"
        );
        assert_served_afterwards(&server).await;
    }
}

#[tokio::test]
async fn named_rows_report_unknown_missing_and_repeated_features() {
    let server = Server::start(serve_args()).await;
    let names: Vec<String> = server.feature_names();
    let full: serde_json::Map<String, Value> = names
        .iter()
        .zip(good_row())
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect();

    let mut unknown = full.clone();
    unknown.insert("tumour_colour".into(), json!(1.0));
    let (status, body) = server
        .post_json("/v1/predict", &json!({ "rows": [full, unknown] }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        (body["row"].clone(), body["feature"].clone()),
        (json!(1), json!("tumour_colour"))
    );
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("not a feature of this model"));

    let mut missing = full.clone();
    missing.remove(&names[4]);
    let (status, body) = server
        .post_json("/v1/predict", &json!({ "rows": [missing] }))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["feature"], names[4].as_str());
    assert!(body["error"].as_str().unwrap().contains("is missing"));

    // A repeated key cannot be built with serde_json's map; send the text.
    let text = format!("{{\"rows\": [{{\"{0}\": 1, \"{0}\": 2}}]}}", names[0]);
    let (status, body) = send_raw(&server, Some("application/json"), text.into_bytes()).await;
    assert_eq!(status, 422);
    assert!(
        body["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["problem"] == "is given twice"),
        "{body}"
    );
    assert_served_afterwards(&server).await;
}

#[tokio::test]
async fn every_problem_is_listed_in_details() {
    let server = Server::start(serve_args()).await;
    let rows = json!([
        row_with(1, json!(null)),
        good_row(),
        row_with(2, json!("x"))
    ]);
    let (status, body) = server
        .post_json("/v1/predict", &json!({ "rows": rows }))
        .await;
    assert_eq!(status, 422);
    let details = body["details"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    assert_eq!(
        (details[0]["row"].clone(), details[1]["row"].clone()),
        (json!(0), json!(2))
    );
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("and 1 more problems"));
}

#[tokio::test]
async fn malformed_bodies_get_the_right_status() {
    let mut args = serve_args();
    args.max_batch_rows = 8;
    args.max_body_bytes = 64 * 1024;
    let server = Server::start(args).await;
    type Case<'a> = (Option<&'a str>, Vec<u8>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            Some("application/json"),
            b"{\"rows\": [".to_vec(),
            400,
            "bad_request",
            "not valid JSON",
        ),
        (
            Some("application/json"),
            b"[1, 2]".to_vec(),
            422,
            "validation",
            "shape",
        ),
        (
            Some("application/json"),
            b"{\"rows\": [], \"extra\": 1}".to_vec(),
            422,
            "validation",
            "unknown field",
        ),
        (
            Some("application/json"),
            b"{\"rows\": []}".to_vec(),
            400,
            "bad_request",
            "rows is empty",
        ),
        (
            Some("application/json"),
            b"{\"rows\": [[1e999]]}".to_vec(),
            400,
            "bad_request",
            "number out of range",
        ),
        (
            Some("text/plain"),
            b"{\"rows\": []}".to_vec(),
            415,
            "unsupported_media_type",
            "text/plain",
        ),
        (
            None,
            b"{\"rows\": []}".to_vec(),
            415,
            "unsupported_media_type",
            "missing Content-Type",
        ),
        (
            Some("application/json"),
            vec![b' '; 70 * 1024],
            413,
            "payload_too_large",
            "65536 bytes",
        ),
        (
            Some("application/json"),
            serde_json::to_vec(&json!({ "rows": vec![good_row(); 9] })).unwrap(),
            422,
            "validation",
            "at most 8",
        ),
    ];
    for (ct, body, status, kind, text) in cases {
        let (got, answer) = send_raw(&server, ct, body).await;
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["error_type"], kind, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(text), "{answer}");
        assert_served_afterwards(&server).await;
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let server = Server::start(serve_args()).await;
    let (status, body) = server.get_json("/v2/nothing").await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (404, Some("not_found"))
    );
    let r = server
        .client
        .get(server.url("/v1/predict"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_type"], "method_not_allowed");
}

#[tokio::test]
async fn a_full_engine_answers_429_and_recovers() {
    let mut args = serve_args();
    args.max_concurrent = 1;
    let server = Server::start(args).await;
    let held = server.state.engine.admit().expect("the only permit");
    let r = server
        .client
        .post(server.url("/v1/predict"))
        .json(&json!({ "rows": [good_row()] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_type"], "overloaded");
    // Readiness does not take a permit: a busy service is still ready.
    assert_eq!(server.get_json("/readyz").await.0, 200);
    drop(held);
    assert_served_afterwards(&server).await;
}

#[tokio::test]
async fn values_outside_the_plausible_range_are_refused_and_named() {
    let server = Server::start(serve_args()).await;
    let card = &server.state.card;
    let f = &card.features[3];
    let too_big = f.valid_max * 1.001;
    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({ "rows": [good_row(), row_with(3, json!(too_big))] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        (body["row"].clone(), body["feature"].clone()),
        (json!(1), json!(f.name))
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("outside the plausible range"),
        "{body}"
    );
    // Negative values for a feature that is never negative.
    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({ "rows": [row_with(0, json!(-1.0))] }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["feature"], card.features[0].name.as_str());
    // The bounds themselves are accepted.
    let (status, body) = server
        .post_json(
            "/v1/predict",
            &json!({ "rows": [row_with(3, json!(f.valid_max))] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_served_afterwards(&server).await;
}
