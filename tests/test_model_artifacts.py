"""Checks of the committed model directory inference-image/model/wbc-autoencoder/.

Run: source scripts/env.sh && python -m pytest tests/test_model_artifacts.py -q
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
MODEL_ROOT = ROOT / "inference-image" / "model"
MODEL_DIR = MODEL_ROOT / "wbc-autoencoder"
TRAIN_SCRIPT = MODEL_ROOT / "train.py"
N_FEATURES = 30
QUANTILE_KEYS = {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}
GENERATED_FILES = ("model.onnx", "model_card.json", "holdout.csv", "reference.csv", "calibration.csv")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((MODEL_DIR / "model_card.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(MODEL_DIR / "model.onnx"), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def read_csv(name: str) -> tuple[list[str], np.ndarray]:
    with open(MODEL_DIR / name, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)


def reconstruction_error(session, card, x: np.ndarray) -> np.ndarray:
    """The service's definition: mean_j ((x_j - xhat_j) / std_j)^2 with the card's std."""
    std = np.array([f["std"] for f in card["features"]], dtype=np.float64)
    x32 = x.astype(np.float32)
    x_hat = session.run([card["output_name"]], {card["input_name"]: x32})[0]
    d = (x32.astype(np.float64) - x_hat.astype(np.float64)) / std
    return np.mean(d * d, axis=1)


def check_histogram(h: dict, n_values: int) -> None:
    assert set(h) == {"bin_edges", "counts"}
    edges, counts = h["bin_edges"], h["counts"]
    assert all(isinstance(e, float) for e in edges)
    assert all(isinstance(c, int) and c >= 0 for c in counts)
    assert len(edges) >= 2 and len(counts) == len(edges) - 1
    assert all(a < b for a, b in zip(edges, edges[1:])), "edges must be strictly increasing"
    assert sum(counts) == n_values


# (1) the committed model runs with a dynamic batch dimension
@pytest.mark.parametrize("batch", [1, 64])
def test_onnx_dynamic_batch(session, card, batch):
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    assert (inp.name, out.name) == (card["input_name"], card["output_name"]) == ("input", "reconstruction")
    assert inp.type == out.type == "tensor(float)"
    assert isinstance(inp.shape[0], str) and inp.shape[1] == N_FEATURES
    _, reference = read_csv("reference.csv")
    x = reference[np.arange(batch) % len(reference)].astype(np.float32)
    (y,) = session.run(None, {"input": x})
    assert y.shape == (batch, N_FEATURES) and y.dtype == np.float32
    assert np.isfinite(y).all()


# (2) the card's evaluation numbers follow from the committed holdout.csv and model
def test_holdout_metrics_match_card(session, card):
    header, data = read_csv("holdout.csv")
    names = [f["name"] for f in card["features"]]
    assert header == names + ["label"]
    x, label = data[:, :N_FEATURES], data[:, N_FEATURES].astype(int)
    assert set(np.unique(label)) == {0, 1}
    ev = card["evaluation"]
    assert int((label == 0).sum()) == ev["holdout_benign_rows"]
    assert int((label == 1).sum()) == ev["holdout_malignant_rows"]

    err = reconstruction_error(session, card, x)
    auc = roc_auc_score(label, err)
    assert abs(auc - ev["holdout_roc_auc"]) <= 1e-6
    assert auc >= 0.9

    flagged = err / card["score"]["threshold"] > 1.0  # anomaly score = error / threshold
    assert abs(flagged[label == 1].mean() - ev["holdout_recall_at_threshold"]) <= 1e-6
    assert abs(flagged[label == 0].mean() - ev["holdout_false_positive_rate"]) <= 1e-6


def test_threshold_matches_calibration(session, card):
    header, x_cal = read_csv("calibration.csv")
    assert header == [f["name"] for f in card["features"]]
    assert len(x_cal) == card["training"]["calibration_rows"]
    err = reconstruction_error(session, card, x_cal)
    assert np.isclose(np.percentile(err, 95), card["score"]["threshold"], rtol=1e-6, atol=0)
    check_histogram(card["score"]["baseline"]["histogram"], len(x_cal))
    edges = card["score"]["baseline"]["histogram"]["bin_edges"]
    assert np.allclose(edges, np.unique(np.percentile(err, np.arange(0, 101, 10))), rtol=1e-9)
    counts, _ = np.histogram(err, bins=np.array(edges))
    # Decile edges of 71 values fall exactly on data points, so a recomputed error may sit on the
    # other side of an edge by the last bit: allow one row to move between neighbouring bins.
    want = np.array(card["score"]["baseline"]["histogram"]["counts"])
    assert counts.sum() == want.sum() and np.abs(counts - want).max() <= 1


# (3) card schema and drift baselines
def test_card_schema(card):
    assert list(card) == ["schema_version", "name", "version", "description", "model_file", "input_name",
                          "output_name", "features", "score", "evaluation", "training"]
    assert card["schema_version"] == 1
    assert card["name"] == "wbc-autoencoder" and card["version"] == "1.0.0"
    assert isinstance(card["description"], str) and card["description"]
    assert card["model_file"] == "model.onnx" and (MODEL_DIR / card["model_file"]).is_file()

    from sklearn.datasets import load_breast_cancer
    expected_names = [n.lower().replace(" ", "_") for n in load_breast_cancer().feature_names]
    assert [f["name"] for f in card["features"]] == expected_names
    assert expected_names[0] == "mean_radius"

    train_rows = card["training"]["train_rows"]
    for f in card["features"]:
        assert set(f) == {"name", "mean", "std", "min", "max", "valid_min", "valid_max", "quantiles", "histogram"}
        for k in ("mean", "std", "min", "max", "valid_min", "valid_max"):
            assert isinstance(f[k], float), (f["name"], k)
        assert f["std"] > 0
        assert f["valid_min"] <= f["min"] <= f["mean"] <= f["max"] <= f["valid_max"]
        span = f["max"] - f["min"]
        assert f["valid_min"] == (0.0 if f["min"] >= 0 else pytest.approx(f["min"] - 100 * span))
        assert f["valid_max"] == pytest.approx(f["max"] + 100 * span)
        assert set(f["quantiles"]) == QUANTILE_KEYS
        q = [f["quantiles"][k] for k in sorted(QUANTILE_KEYS)]
        assert q == sorted(q) and f["min"] <= q[0] and q[-1] <= f["max"]
        check_histogram(f["histogram"], train_rows)

    score = card["score"]
    assert set(score) == {"error", "threshold", "threshold_rule", "baseline"}
    assert score["error"] == "mean_squared_standardized"
    assert score["threshold_rule"] == "p95 of reconstruction error on calibration benign rows"
    assert isinstance(score["threshold"], float) and score["threshold"] > 0
    assert set(score["baseline"]) == {"quantiles", "histogram"}
    assert set(score["baseline"]["quantiles"]) == QUANTILE_KEYS
    assert 2 <= len(score["baseline"]["histogram"]["counts"]) <= 10

    ev = card["evaluation"]
    assert set(ev) == {"holdout_roc_auc", "holdout_benign_rows", "holdout_malignant_rows",
                       "holdout_recall_at_threshold", "holdout_false_positive_rate"}
    for k in ("holdout_roc_auc", "holdout_recall_at_threshold", "holdout_false_positive_rate"):
        assert isinstance(ev[k], float) and 0.0 <= ev[k] <= 1.0
    for k in ("holdout_benign_rows", "holdout_malignant_rows"):
        assert isinstance(ev[k], int) and ev[k] > 0

    tr = card["training"]
    assert set(tr) == {"dataset", "seed", "train_rows", "calibration_rows", "architecture", "framework"}
    for k in ("seed", "train_rows", "calibration_rows"):
        assert isinstance(tr[k], int)
    assert tr["architecture"].startswith("30-") and tr["architecture"].endswith("-30 relu MLP")
    assert tr["framework"].startswith("scikit-learn ") and tr["framework"].endswith(" MLPRegressor")
    # 569 rows = 357 benign + 212 malignant; every row is in exactly one split
    assert tr["train_rows"] + tr["calibration_rows"] + ev["holdout_benign_rows"] == 357
    assert ev["holdout_malignant_rows"] == 212


def test_card_statistics_match_reference(card):
    header, x = read_csv("reference.csv")
    assert header == [f["name"] for f in card["features"]]
    assert len(x) == card["training"]["train_rows"]
    for j, f in enumerate(card["features"]):
        col = x[:, j]
        assert f["mean"] == pytest.approx(col.mean(), rel=1e-7)
        assert f["std"] == pytest.approx(col.std(ddof=0), rel=1e-7)
        assert (f["min"], f["max"]) == (col.min(), col.max())
        counts, _ = np.histogram(col, bins=np.array(f["histogram"]["bin_edges"]))
        assert counts.tolist() == f["histogram"]["counts"], f["name"]


# (4) the committed files are exactly what train.py produces
def test_train_script_is_reproducible(tmp_path):
    out = tmp_path / "wbc-autoencoder"
    proc = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in GENERATED_FILES:
        assert (out / name).read_bytes() == (MODEL_DIR / name).read_bytes(), f"{name} differs from the committed file"


# (5) the example classifiers and regressor are exactly what examples.py exports
EXAMPLE_FILES = ("model.onnx", "reference.csv", "holdout.csv")


def test_example_models_are_reproducible(tmp_path):
    proc = subprocess.run([sys.executable, str(MODEL_ROOT / "examples.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("wbc-gbt-classifier", "wine-classifier", "diabetes-regressor"):
        for f in EXAMPLE_FILES:
            assert (tmp_path / name / f).read_bytes() == (MODEL_ROOT / name / f).read_bytes(), \
                f"{name}/{f} differs from the committed file"
