"""Monitoring as an outside client sees it, against the release binary: ground-truth metrics agree with
scikit-learn on the same labels and scores, and /metrics is valid Prometheus text that agrees with the
summary."""
from __future__ import annotations

import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from support import net, project
from support.service import running

TOKEN = uuid.uuid4().hex  # per run; the service is started with it


@pytest.fixture(scope="module")
def service():
    with running(env={"INFERENCE_API_TOKEN": TOKEN}) as (url, stderr):
        yield url
    assert TOKEN.encode() not in stderr[0], "the API token appeared in the logs"


def _auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def _summary(url, wait_for_labels=None):
    deadline = time.monotonic() + 10
    while True:
        r = net.http_request("GET", f"{url}/v1/monitoring/summary?window=10m", headers=_auth())
        assert r.status == 200, r.body[:300]
        s = r.json()
        if wait_for_labels is None or s["model"]["ground_truth"]["labelled"] >= wait_for_labels:
            return s
        assert time.monotonic() < deadline, s["model"]["ground_truth"]
        time.sleep(0.05)


def test_ground_truth_metrics_match_sklearn(service):
    features, labels = project.holdout()
    scores, threshold = [], None
    feedback = []
    for start in range(0, len(features), 50):
        body = net.http_post_json(f"{service}/v1/predict", {"rows": features[start:start + 50]})
        threshold = body["threshold"]
        for r in body["results"]:
            scores.append(r["reconstruction_error"])
            feedback.append({"request_id": body["request_id"], "row": r["row"], "label": labels[start + r["row"]]})
    r = net.http_request("POST", f"{service}/v1/feedback", json_body={"feedback": feedback}, headers=_auth())
    assert r.status == 200 and r.json() == {"accepted": len(features)}, r.body[:300]

    gt = _summary(service, wait_for_labels=len(features))["model"]["ground_truth"]
    predicted = [int(s > threshold) for s in scores]
    assert gt["precision"] == pytest.approx(precision_score(labels, predicted), abs=1e-12)
    assert gt["recall"] == pytest.approx(recall_score(labels, predicted), abs=1e-12)
    assert gt["f1"] == pytest.approx(f1_score(labels, predicted), abs=1e-12)
    assert gt["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert gt["true_positives"] + gt["false_negatives"] == sum(labels)


def test_metrics_are_valid_prometheus_text_and_agree_with_the_summary(service):
    features, _ = project.holdout()
    net.http_post_json(f"{service}/v1/predict", {"rows": features[:10]})
    assert net.http_request("GET", f"{service}/metrics").status == 401
    # The recorder drains its queue every 20 ms: read until /metrics and the summary settle.
    deadline = time.monotonic() + 5
    while True:
        before = _summary(service)["model"]["rows"]
        r = net.http_request("GET", f"{service}/metrics", headers=_auth())
        assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        rows = {s.name: s.value for s in families["mlops_predict_rows"].samples}["mlops_predict_rows_total"]
        after = _summary(service)["model"]["rows"]
        if before == rows == after or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert all(name.startswith("mlops_") for name in families)
    assert rows == after
    duration = families["mlops_http_request_duration_seconds"]
    assert duration.type == "histogram"
    buckets = [s for s in duration.samples if s.name.endswith("_bucket") and s.labels["route"] == "/v1/predict"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts), "histogram buckets must be cumulative"
    assert buckets[-1].labels["le"] == "+Inf"
