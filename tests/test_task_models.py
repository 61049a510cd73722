"""Your own model, as a user brings it: the example classifiers and regressor that skl2onnx exported
(inference-image/model/examples.py) and the bundled autoencoder, each served by the same release binary
with the card `inference card` builds for it.

- The committed example cards are what `inference card` builds from the committed files.
- Every prediction on every held-out row is compared with ONNX Runtime run from Python on the same
  rows (labels exactly, probabilities and values to float32 precision), for arrays and named rows.
- The held-out metrics in each card and the ground-truth metrics from feedback agree with scikit-learn.
- A classifier's card counts the classes it predicts on the held-out rows (else the reference rows); the
  summary's `class_drift` compares the window's predicted classes with them (PSI by hand, Jensen-Shannon
  distance by SciPy): the held-out rows themselves are `ok`, rows of one class region `drift`, and the
  `class_share:<class>` series split each minute's rows between the classes.
- The missing-value policies with 10 % of cells missing: `reject` refuses, `impute` scores every row
  with the training value and counts each imputed cell, `per-row` scores the complete rows and answers
  each other row with its own error (status 200); nothing is lost and the counts match what was sent.
- A feature of few values (diabetes' `sex`) has a baseline per value: the reference rows replayed are
  PSI 0 on every feature, and more of one value drifts by the share of that value.
- Graphs the card builder cannot serve are refused with one sentence naming what it found (never a
  panic), and unusual graphs it can serve (one input per feature, int64 and float64 inputs, ZipMap
  over string or integer classes) are served and agree with ONNX Runtime.
"""
from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import (accuracy_score, f1_score, log_loss, mean_absolute_error, mean_squared_error,
                             precision_recall_fscore_support, precision_score, r2_score, recall_score,
                             roc_auc_score)

from support import net, onnx_graphs, project, tasks
from support.service import running

MODELS = project.REPO_ROOT / "inference-image" / "model"
EXAMPLES = {
    "wbc-gbt-classifier": "classifier",
    "wine-classifier": "classifier",
    "diabetes-regressor": "regressor",
}
TOKEN = uuid.uuid4().hex  # per run


def _auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def _card(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(project.release_binary()), "card", *args], capture_output=True, text=True,
                       env=project.env_sh(), timeout=120)
    assert "panicked" not in p.stderr, p.stderr
    if check:
        assert p.returncode == 0, p.stderr
    return p


def _build(name: str, task: str, out: Path, *extra: str, model: Path | None = None) -> Path:
    src = MODELS / name
    _card(["--task", task, "--model", str(model or src / "model.onnx"), "--reference", str(src / "reference.csv"),
           "--holdout", str(src / "holdout.csv"), "--label-column", "label", "--name", name,
           "--version", "1.0.0", "--out", str(out), *extra])
    return out


def _predict(url: str, rows, named: list[str] | None = None) -> dict:
    body = [dict(zip(named, r)) for r in rows] if named else rows
    r = net.http_request("POST", f"{url}/v1/predict", json_body={"rows": body})
    assert r.status == 200, r.body[:500]
    return r.json()


def _summary(url: str, rows: int) -> dict:
    deadline = time.monotonic() + 10
    while True:
        r = net.http_request("GET", f"{url}/v1/monitoring/summary?window=10m", headers=_auth())
        assert r.status == 200, r.body[:300]
        s = r.json()
        if s["data"]["rows"] + s["data"]["refused_rows"] >= rows:
            return s
        assert time.monotonic() < deadline, s["data"]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Each example's card, rebuilt from the committed model and CSVs."""
    root = tmp_path_factory.mktemp("cards")
    return {name: _build(name, task, root / name) for name, task in EXAMPLES.items()}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_committed_example_cards_are_what_the_builder_builds(built, name):
    committed = json.loads((MODELS / name / "model_card.json").read_text())
    rebuilt = json.loads((built[name] / "model_card.json").read_text())
    assert rebuilt == committed, f"{name}: run the card command in inference-image/model/README.md again"
    assert committed["task"] == EXAMPLES[name]


def test_the_builder_reads_each_graph_as_exported(built):
    wbc = json.loads((built["wbc-gbt-classifier"] / "model_card.json").read_text())
    wbc_baseline = wbc["classifier"].pop("predicted_baseline")
    assert (wbc["output_name"], wbc["classifier"]) == (
        "probabilities", {"classes": ["0", "1"], "probabilities": "tensor"})
    assert (wbc["score"]["error"], wbc["score"]["threshold"]) == ("positive_class_probability", 0.5)
    wine = json.loads((built["wine-classifier"] / "model_card.json").read_text())
    wine_baseline = wine["classifier"].pop("predicted_baseline")
    assert (wine["output_name"], wine["classifier"]) == (
        "output_probability", {"classes": ["0", "1", "2"], "probabilities": "map_int64"})
    for name, baseline in (("wbc-gbt-classifier", wbc_baseline), ("wine-classifier", wine_baseline)):
        card = json.loads((built[name] / "model_card.json").read_text())
        _, rows, _ = tasks.read(MODELS / name / "holdout.csv")
        assert baseline == {"source": "holdout", "counts": _class_counts(card, built[name], rows)}, name
    assert wine["score"]["error"] == "predicted_class_probability" and "threshold" not in wine["score"]
    reg = json.loads((built["diabetes-regressor"] / "model_card.json").read_text())
    assert (reg["output_name"], reg["score"]["error"], reg.get("classifier")) == ("variable", "prediction", None)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_card_metrics_agree_with_sklearn(built, name):
    card = json.loads((built[name] / "model_card.json").read_text())
    _, rows, labels = tasks.read(MODELS / name / "holdout.csv")
    out = tasks.ort_outputs(tasks.session(built[name] / "model.onnx"), card, rows)
    e = card["evaluation"]
    assert e["holdout_rows"] == len(rows)
    if card["task"] == "regressor":
        truth, pred = np.asarray(labels, dtype=float), np.asarray(out[card["output_name"]], dtype=float).ravel()
        assert e["holdout_mae"] == pytest.approx(mean_absolute_error(truth, pred), rel=1e-9)
        assert e["holdout_rmse"] == pytest.approx(math.sqrt(mean_squared_error(truth, pred)), rel=1e-9)
        assert e["holdout_r2"] == pytest.approx(r2_score(truth, pred), rel=1e-9)
        return
    classes = card["classifier"]["classes"]
    p = tasks.probabilities(card, out[card["output_name"]])
    truth = [classes.index(str(int(float(v)))) for v in labels]
    assert e["holdout_accuracy"] == pytest.approx(accuracy_score(truth, p.argmax(axis=1)), abs=1e-12)
    assert e["holdout_log_loss"] == pytest.approx(log_loss(truth, p, labels=list(range(len(classes)))), rel=1e-6)
    if len(classes) == 2:
        assert e["holdout_roc_auc"] == pytest.approx(roc_auc_score(truth, p[:, 1]), abs=1e-12)
        assert e["holdout_recall_at_threshold"] == pytest.approx(
            recall_score(truth, (p[:, 1] > 0.5).astype(int)), abs=1e-12)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_prediction_matches_onnxruntime_and_is_monitored(name):
    model_dir = MODELS / name
    card = json.loads((model_dir / "model_card.json").read_text())
    features, rows, labels = tasks.read(model_dir / "holdout.csv")
    out = tasks.ort_outputs(tasks.session(model_dir / "model.onnx"), card, rows)
    with running(model_dir=model_dir, env={"INFERENCE_API_TOKEN": TOKEN}) as (url, _):
        doc = net.http_get_json(f"{url}/openapi.json")
        assert set(doc["components"]["schemas"]["RowResult"]["required"]) >= (
            {"row", "value"} if card["task"] == "regressor" else {"row", "label", "probabilities"})
        feedback: list[dict] = []
        for start in range(0, len(rows), 50):
            batch = rows[start:start + 50]
            body = _predict(url, batch, named=features if start % 100 else None)
            assert len(body["results"]) == len(batch) and "errors" not in body
            tasks.check_predictions(card, body, out, start)
            feedback += [{"request_id": body["request_id"], "row": r["row"],
                          "label": _label(card, labels[start + r["row"]])} for r in body["results"]]
        s = _summary(url, len(rows))
        assert s["data"]["rows"] == len(rows) and s["model"]["task"] == card["task"]
        assert sum(s["model"]["score_distribution"]["current"]) == len(rows)
        if card["task"] == "classifier":
            classes = card["classifier"]["classes"]
            p = tasks.probabilities(card, out[card["output_name"]])
            want = np.bincount(p.argmax(axis=1), minlength=len(classes)).tolist()
            assert [c["rows"] for c in s["model"]["predicted_classes"]] == want
            assert [c["class"] for c in s["model"]["predicted_classes"]] == classes
        r = net.http_request("POST", f"{url}/v1/feedback", json_body={"feedback": feedback}, headers=_auth())
        assert r.status == 200, r.body[:300]
        deadline = time.monotonic() + 10
        while (gt := _summary(url, len(rows))["model"]["ground_truth"])["labelled"] < len(feedback):
            assert time.monotonic() < deadline, gt
            time.sleep(0.05)
    _check_ground_truth(card, gt, labels, out)


def _label(card: dict, text: str):
    """The label as a client sends it: a class name (multi-class), 0/1 (binary), the value (regressor)."""
    if card["task"] == "regressor":
        return float(text)
    if len(card["classifier"]["classes"]) == 2:
        return int(float(text))
    return str(int(float(text)))


def _ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error on `bins` equal-width bins (i/bins, (i+1)/bins], the first closed at 0."""
    which = np.clip(np.ceil(confidence * bins).astype(int), 1, bins) - 1
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() / len(confidence) * abs(correct[m].mean() - confidence[m].mean())
    return total


def _check_ground_truth(card: dict, gt: dict, labels: list[str], out: dict) -> None:
    """The window's ground-truth metrics against scikit-learn on the same labels and predictions."""
    if card["task"] == "regressor":
        truth = np.asarray(labels, dtype=float)
        pred = np.asarray(out[card["output_name"]], dtype=np.float32).astype(float).ravel()
        assert gt["mae"] == pytest.approx(mean_absolute_error(truth, pred), rel=1e-9)
        assert gt["rmse"] == pytest.approx(math.sqrt(mean_squared_error(truth, pred)), rel=1e-9)
        assert gt["r2"] == pytest.approx(r2_score(truth, pred), rel=1e-9)
        assert sum(gt["residuals"]["histogram"]["counts"]) == len(truth)
        assert gt["residuals"]["p50"] == pytest.approx(float(np.quantile(truth - pred, 0.5)), rel=1e-9, abs=1e-9)
        return
    classes = card["classifier"]["classes"]
    p = tasks.probabilities(card, out[card["output_name"]])
    truth = np.asarray([classes.index(str(int(float(v)))) for v in labels])
    if len(classes) == 2:
        predicted = (p[:, 1] > card["score"]["threshold"]).astype(int)
        confidence = np.where(predicted == 1, p[:, 1], 1 - p[:, 1])
        assert gt["roc_auc"] == pytest.approx(roc_auc_score(truth, p[:, 1]), abs=1e-6)
        assert gt["precision"] == pytest.approx(precision_score(truth, predicted), abs=1e-12)
        assert gt["recall"] == pytest.approx(recall_score(truth, predicted), abs=1e-12)
    else:
        predicted = p.argmax(axis=1)
        confidence = p.max(axis=1)
    assert gt["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    prec, rec, f1, support = precision_recall_fscore_support(truth, predicted, labels=list(range(len(classes))),
                                                             zero_division=np.nan)
    for c, row in enumerate(gt["per_class"]):
        assert row["class"] == classes[c] and row["support"] == support[c]
        for name, want in (("precision", prec[c]), ("recall", rec[c]), ("f1", f1[c])):
            assert (row[name] is None) if np.isnan(want) else row[name] == pytest.approx(want, abs=1e-12), (c, name)
    assert gt["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0), abs=1e-12)
    assert gt["log_loss"] == pytest.approx(log_loss(truth, p / p.sum(axis=1, keepdims=True),
                                                    labels=list(range(len(classes)))), rel=1e-6)
    assert gt["expected_calibration_error"] == pytest.approx(_ece(confidence, predicted == truth), abs=1e-6)


def _predicted(card: dict, model: Path, rows: list[list[float]]) -> np.ndarray:
    """The class index ONNX Runtime's probabilities give each row, as the service predicts it (a binary
    classifier's positive class above its decision threshold)."""
    out = tasks.ort_outputs(tasks.session(model), card, rows)
    p = tasks.probabilities(card, out[card["output_name"]])
    if len(card["classifier"]["classes"]) == 2:
        return (p[:, 1] > card["score"]["threshold"]).astype(int)
    return p.argmax(axis=1)


def _class_counts(card: dict, model_or_dir: Path, rows: list[list[float]]) -> list[int]:
    model = model_or_dir / "model.onnx" if model_or_dir.is_dir() else model_or_dir
    return np.bincount(_predicted(card, model, rows), minlength=len(card["classifier"]["classes"])).tolist()


def _psi(baseline, current, eps: float = 1e-4) -> float:
    """PSI as the service defines it: shares floored at eps, not renormalised."""
    b = np.maximum(np.asarray(baseline, float) / sum(baseline), eps)
    c = np.maximum(np.asarray(current, float) / sum(current), eps)
    return float(((c - b) * np.log(c / b)).sum())


def _series(url: str, metric: str, start: int, end: int) -> dict[int, float | None]:
    r = net.http_request("GET", f"{url}/v1/monitoring/series?metric={metric}&from={start}&to={end}&step=60",
                         headers=_auth())
    assert r.status == 200, r.body[:300]
    return {p["t"]: p["value"] for p in r.json()["points"]}


@pytest.mark.parametrize("name,region_class", [("wine-classifier", "0"), ("wbc-gbt-classifier", "1")])
def test_predicted_classes_drift_from_the_card_baseline(name, region_class):
    model_dir = MODELS / name
    card = json.loads((model_dir / "model_card.json").read_text())
    classes = card["classifier"]["classes"]
    baseline = card["classifier"]["predicted_baseline"]
    _, rows, labels = tasks.read(model_dir / "holdout.csv")
    assert baseline == {"source": "holdout", "counts": _class_counts(card, model_dir, rows)}
    # The rows of one class region (held-out rows labelled with one class), four times over.
    region = [r for r, l in zip(rows, labels) if str(int(float(l))) == region_class] * 4
    start = int(time.time()) - 60
    with running(model_dir=model_dir, env={"INFERENCE_API_TOKEN": TOKEN}) as (url, _):
        for i in range(0, len(rows), 50):
            _predict(url, rows[i:i + 50])
        d = _summary(url, len(rows))["model"]["class_drift"]
        assert d["rows"] == len(rows) and d["baseline_rows"] == len(rows) and d["source"] == "holdout"
        assert d["baseline"] == pytest.approx([n / len(rows) for n in baseline["counts"]], abs=1e-15)
        assert d["current"] == pytest.approx(d["baseline"], abs=1e-15)
        # The held-out rows predict exactly the baseline's classes: nothing has moved.
        assert d["verdict"] == "ok" and d["psi"] < 1e-9 and d["js"] < 1e-6, d

        for i in range(0, len(region), 50):
            _predict(url, region[i:i + 50])
        s = _summary(url, len(rows) + len(region))
        d = s["model"]["class_drift"]
        current = [a + b for a, b in zip(baseline["counts"], _class_counts(card, model_dir, region))]
        assert [c["rows"] for c in s["model"]["predicted_classes"]] == current
        assert d["rows"] == sum(current)
        assert d["current"] == pytest.approx([n / sum(current) for n in current], abs=1e-15)
        assert d["psi"] == pytest.approx(_psi(baseline["counts"], current), rel=1e-9)
        assert d["js"] == pytest.approx(float(jensenshannon(baseline["counts"], current, base=2)), rel=1e-9)
        assert d["psi"] >= 0.25 and d["verdict"] == "drift", d
        assert s["thresholds"]["class_drift"]["min_samples"] == 30

        # Each minute's rows split between the classes: the shares sum to 1, and share x rows gives
        # each class's count over the window.
        end = int(time.time()) + 60
        shares = {c: _series(url, f"class_share:{c}", start, end) for c in classes}
        rows_per_minute = _series(url, "rows", start, end)
        psi = _series(url, "class_psi", start, end)
        minutes = [t for t, n in rows_per_minute.items() if n]
        assert minutes, rows_per_minute
        for t in minutes:
            assert sum(shares[c][t] for c in classes) == pytest.approx(1.0, abs=1e-12), t
            assert psi[t] is not None and psi[t] >= 0, (t, psi)
        for t in set(rows_per_minute) - set(minutes):
            assert all(shares[c][t] is None for c in classes) and psi[t] is None, t
        for c, n in zip(classes, current):
            assert sum(shares[c][t] * rows_per_minute[t] for t in minutes) == pytest.approx(n, abs=1e-9), c
        if len(minutes) == 1:  # all in one minute: the step's PSI is the window's
            assert psi[minutes[0]] == pytest.approx(d["psi"], rel=1e-12)

        r = net.http_request("GET", f"{url}/v1/monitoring/series?metric=class_share:nope", headers=_auth())
        assert r.status == 400 and "unknown metric" in r.json()["error"], r.body[:300]
        assert "not a class of this model" in r.json()["error"]


def test_a_feature_of_few_values_is_judged_on_its_values():
    """diabetes' `sex` is 1 or 2. The card counts each value in a bin of its own (levels), and the
    service bins a value where the card did (the last edge of a decile histogram in its top closed
    bin), so the reference rows sent as traffic reproduce every feature's card histogram exactly: PSI
    0 on all ten features, and on `sex` the live histogram sits on the baseline's two spikes. A window
    with more 2s than training is judged on the share of 2s (PSI by hand)."""
    model_dir = MODELS / "diabetes-regressor"
    card = json.loads((model_dir / "model_card.json").read_text())
    sex = next(f for f in card["features"] if f["name"] == "sex")
    _, rows, _ = tasks.read(model_dir / "reference.csv")
    at = [f["name"] for f in card["features"]].index("sex")
    counts = [sum(1 for r in rows if r[at] == v) for v in (1.0, 2.0)]
    assert sex["levels"] == [1.0, 2.0] and sex["histogram"] == {"bin_edges": [0.5, 1.5, 2.5], "counts": counts}
    assert all("levels" not in f for f in card["features"] if f["name"] != "sex")
    with running(model_dir=model_dir, env={"INFERENCE_API_TOKEN": TOKEN}) as (url, _):
        for i in range(0, len(rows), 50):
            _predict(url, rows[i:i + 50])
        features = {f["name"]: f for f in _summary(url, len(rows))["data"]["features"]}
        for name, f in features.items():
            assert f["drift"]["psi"] == pytest.approx(0.0, abs=1e-12), (name, f["drift"])
        s = features["sex"]
        assert s["verdict"] == "ok" and s["drift"]["wasserstein"] == 0.0 and s["drift"]["ks_statistic"] == 0.0, s
        dist = s["distribution"]
        assert dist["current"] == pytest.approx(dist["baseline"], abs=1e-9)
        assert sorted(c for c in dist["current"] if c) == sorted(counts)

        twos = [r for r in rows if r[at] == 2.0] * 2
        for i in range(0, len(twos), 50):
            _predict(url, twos[i:i + 50])
        s = {f["name"]: f for f in _summary(url, len(rows) + len(twos))["data"]["features"]}["sex"]
        current = [0, counts[0], counts[1] + len(twos), 0]
        assert s["drift"]["psi"] == pytest.approx(_psi([0, *counts, 0], current), rel=1e-9)
        assert s["drift"]["psi"] >= 0.25 and s["verdict"] == "drift", s


def test_the_bundled_autoencoder_is_served_as_before():
    card = json.loads((project.MODEL_DIR / "model_card.json").read_text())
    features, labels = project.holdout()
    recon = tasks.ort_outputs(tasks.session(project.MODEL_DIR / "model.onnx"), card, features)[card["output_name"]]
    x = np.asarray(features, dtype=np.float32).astype(np.float64)
    std = np.asarray([f["std"] for f in card["features"]])
    want = (((x - recon.astype(np.float64)) / std) ** 2).mean(axis=1)
    with running() as (url, _):
        body = _predict(url, features[:100])
    assert body["model"]["task"] == "autoencoder" and body["threshold"] == card["score"]["threshold"]
    got = [r["reconstruction_error"] for r in body["results"]]
    assert got == pytest.approx(want[:100].tolist(), rel=1e-9)


def _with_missing(rows: list[list[float]], share: float, seed: int,
                  one_per_row: bool = False) -> tuple[list[list[float | None]], set[tuple[int, int]]]:
    """`rows` with `share` of the cells missing (or, with one_per_row, `share` of the rows missing one cell)."""
    rng = random.Random(seed)
    width = len(rows[0])
    if one_per_row:
        cells = {(i, rng.randrange(width)) for i in range(len(rows)) if rng.random() < share}
    else:
        cells = {(i, j) for i in range(len(rows)) for j in range(width) if rng.random() < share}
    return [[None if (i, j) in cells else v for j, v in enumerate(r)] for i, r in enumerate(rows)], cells


@pytest.fixture(scope="module")
def policy_cards(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("policies")
    return {
        "impute": _build("wbc-gbt-classifier", "classifier", root / "impute", "--missing", "impute",
                         "--impute-with", "median"),
        "per-row": _build("wbc-gbt-classifier", "classifier", root / "per-row", "--missing", "per-row"),
    }


def test_reject_refuses_a_batch_with_one_missing_cell():
    model_dir = MODELS / "wbc-gbt-classifier"
    _, rows, _ = tasks.read(model_dir / "holdout.csv")
    with running(model_dir=model_dir) as (url, _):
        r = net.http_request("POST", f"{url}/v1/predict", json_body={"rows": [rows[0][:3] + [None] + rows[0][4:]]})
    assert r.status == 422 and "is null (missing value)" in r.json()["error"]


def test_impute_scores_every_row_and_counts_each_imputed_cell(policy_cards):
    model_dir = policy_cards["impute"]
    card = json.loads((model_dir / "model_card.json").read_text())
    features, rows, _ = tasks.read(MODELS / "wbc-gbt-classifier" / "holdout.csv")
    sent, cells = _with_missing(rows, 0.10, seed=1)
    assert 0.07 * len(rows) * len(features) < len(cells) < 0.13 * len(rows) * len(features)
    medians = [f["quantiles"]["p50"] for f in card["features"]]
    filled = [[medians[j] if v is None else v for j, v in enumerate(r)] for r in sent]
    out = tasks.ort_outputs(tasks.session(model_dir / "model.onnx"), card, filled)
    with running(model_dir=model_dir, env={"INFERENCE_API_TOKEN": TOKEN}) as (url, _):
        for start in range(0, len(sent), 50):
            named = features if start % 100 else None
            batch = sent[start:start + 50]
            if named:  # a named row leaves the missing features out
                body_rows = [{f: v for f, v in zip(features, r) if v is not None} for r in batch]
                r = net.http_request("POST", f"{url}/v1/predict", json_body={"rows": body_rows})
                assert r.status == 200, r.body[:300]
                body = r.json()
            else:
                body = _predict(url, batch)
            assert len(body["results"]) == len(batch)
            tasks.check_predictions(card, body, out, start)
            for res in body["results"]:
                i = start + res["row"]
                assert res.get("imputed", []) == [features[j] for j in range(len(features)) if (i, j) in cells]
        s = _summary(url, len(rows))
    assert s["data"]["rows"] == len(rows) and s["data"]["rejected_requests"] == 0
    for j, f in enumerate(s["data"]["features"]):
        missing = sum(1 for (_, c) in cells if c == j)
        assert (f["missing"], f["imputed"]) == (missing, missing), f["name"]
        assert f["rows"] == len(rows) - missing, f"{f['name']}: the histograms hold observed values only"


def test_per_row_scores_the_complete_rows_and_answers_each_other_row(policy_cards):
    model_dir = policy_cards["per-row"]
    card = json.loads((model_dir / "model_card.json").read_text())
    features, rows, _ = tasks.read(MODELS / "wbc-gbt-classifier" / "holdout.csv")
    sent, cells = _with_missing(rows, 0.10, seed=2, one_per_row=True)
    broken = {i for i, _ in cells}
    sent[5][0] = "oops" if 5 not in broken else sent[5][0]  # an invalid value is refused per row too
    broken.add(5)
    out = tasks.ort_outputs(tasks.session(model_dir / "model.onnx"), card, rows)
    scored = 0
    with running(model_dir=model_dir, env={"INFERENCE_API_TOKEN": TOKEN}) as (url, _):
        for start in range(0, len(sent), 50):
            body = _predict(url, sent[start:start + 50])
            rows_here = set(range(start, min(start + 50, len(sent))))
            assert {start + r["row"] for r in body["results"]} == rows_here - broken
            assert {start + e["row"] for e in body.get("errors", [])} == rows_here & broken
            for e in body.get("errors", []):
                assert e["details"] and all(d["row"] == e["row"] for d in e["details"]), e
            tasks.check_predictions(card, body, out, start)
            scored += len(body["results"])
            if body.get("errors"):  # a refused row has no prediction to label
                bad = body["errors"][0]["row"]
                r = net.http_request("POST", f"{url}/v1/feedback", headers=_auth(), json_body={
                    "feedback": [{"request_id": body["request_id"], "row": bad, "label": 1}]})
                assert r.status == 422 and "was refused" in r.body.decode(), r.body[:300]
        s = _summary(url, len(rows))
    assert (s["data"]["rows"], s["data"]["refused_rows"]) == (scored, len(broken))
    assert scored + len(broken) == len(rows)
    for j, f in enumerate(s["data"]["features"]):
        want_missing = sum(1 for (_, c) in cells if c == j)
        assert (f["missing"], f["imputed"]) == (want_missing, 0), f["name"]


REFUSALS = {
    # graph: (task, what the sentence must say)
    "two_unknown_outputs": ("regressor", ['2 outputs that could be the prediction', '"a"', '"b"']),
    "image_input": ("classifier", ['"image"', "is not a table"]),
    "dynamic_feature_count": ("regressor", ['"x"', "dynamic feature dimension"]),
    "string_input": ("regressor", ['"x"', "takes string"]),
    "no_batch_3d_output": ("regressor", ['"y"', "float32 [?, 2, 2]"]),
    "classifier_without_probabilities": ("classifier", ['"label"', "per-class probabilities"]),
    "classifier_logits": ("classifier", ['"scores"', "not probabilities", "softmax"]),
}


def _table(path: Path, header: list[str], rows: int, seed: int, ints: set[str] = frozenset()) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for _ in range(rows):
            w.writerow([rng.randint(0, 9) if h in ints else repr(rng.uniform(-2, 2)) for h in header])


@pytest.mark.parametrize("graph", sorted(REFUSALS))
def test_graphs_it_cannot_serve_are_refused_with_a_sentence(tmp_path, graph):
    model = tmp_path / f"{graph}.onnx"
    onnx_graphs.REFUSED[graph](model)
    _table(tmp_path / "ref.csv", ["f0", "f1", "f2", "f3"], 40, seed=3)
    task, words = REFUSALS[graph]
    p = _card(["--task", task, "--model", str(model), "--reference", str(tmp_path / "ref.csv"),
               "--name", graph, "--out", str(tmp_path / "out")], check=False)
    assert p.returncode == 2, p
    message = p.stderr.strip()
    assert message.count("\n") == 0 and message.startswith("inference card: "), message
    for w in words:
        assert w in message, message
    assert not (tmp_path / "out").exists()


ACCEPTED = {
    # graph: (task, CSV header, integer columns)
    "per_feature_inputs": ("regressor", ["f2", "f0", "f3", "f1"], set()),
    "int64_and_double_inputs": ("regressor", ["c0", "c1", "m0", "m1"], {"c0", "c1"}),
    "classifier_string_zipmap": ("classifier", ["f0", "f1", "f2", "f3"], set()),
    "binary_classifier_int_zipmap": ("classifier", ["f0", "f1", "f2", "f3"], set()),
}


@pytest.mark.parametrize("graph", sorted(ACCEPTED))
def test_unusual_graphs_are_served_like_onnxruntime_runs_them(tmp_path, graph):
    model = tmp_path / f"{graph}.onnx"
    onnx_graphs.ACCEPTED[graph](model)
    task, header, ints = ACCEPTED[graph]
    _table(tmp_path / "ref.csv", header, 60, seed=4, ints=ints)
    _table(tmp_path / "rows.csv", header, 30, seed=5, ints=ints)
    out_dir = tmp_path / "out"
    _card(["--task", task, "--model", str(model), "--reference", str(tmp_path / "ref.csv"),
           "--name", graph, "--out", str(out_dir)])
    card = json.loads((out_dir / "model_card.json").read_text())
    assert [f["name"] for f in card["features"]] == header
    if task == "classifier":  # without --holdout the baseline counts the reference rows' classes
        _, ref_rows, _ = tasks.read(tmp_path / "ref.csv")
        assert card["classifier"].pop("predicted_baseline") == {
            "source": "reference", "counts": _class_counts(card, model, ref_rows)}
    if graph == "classifier_string_zipmap":
        assert card["classifier"] == {"classes": ["setosa", "versicolor", "virginica"], "probabilities": "map_string"}
    if graph == "binary_classifier_int_zipmap":
        assert card["classifier"]["classes"] == ["0", "1"] and card["score"]["threshold"] == 0.5
    if graph == "int64_and_double_inputs":
        assert [(i["name"], i["dtype"]) for i in card["inputs"]] == [("counts", "int64"), ("measures", "float64")]
    _, rows, _ = tasks.read(tmp_path / "rows.csv")
    out = tasks.ort_outputs(tasks.session(model), card, rows)
    with running(model_dir=out_dir) as (url, _):
        tasks.check_predictions(card, _predict(url, rows), out)
        tasks.check_predictions(card, _predict(url, rows, named=header), out)
        if ints:  # an integer feature refuses a fraction, naming it
            r = net.http_request("POST", f"{url}/v1/predict", json_body={"rows": [[1.5, 1, 0.1, 0.2]]})
            assert r.status == 422 and "not a whole number" in r.json()["error"], r.body[:300]
