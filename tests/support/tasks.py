"""Helpers for testing a served model of any task against ONNX Runtime run from Python: read a model
directory's CSVs, run the graph exactly as its card says the service feeds it, and lay a classifier's
probabilities out in the card's class order."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest


def read(path: Path) -> tuple[list[str], list[list[float]], list[str]]:
    """Header (features only), feature rows and the label column (empty when absent)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    at = header.index("label") if "label" in header else None
    features = [h for j, h in enumerate(header) if j != at]
    values = [[float(v) for j, v in enumerate(r) if j != at] for r in data]
    labels = [r[at] for r in data] if at is not None else []
    return features, values, labels


def session(model: Path) -> ort.InferenceSession:
    """Single-threaded, like each of the service's sessions (a tree ensemble's float32 sums depend on
    how the trees are split between threads)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_outputs(sess: ort.InferenceSession, card: dict, rows: list[list[float]]) -> dict[str, object]:
    """Runs the graph on `rows` exactly as the card says the service feeds it."""
    x = np.asarray(rows, dtype=np.float64)
    names = [f["name"] for f in card["features"]]
    inputs = card.get("inputs") or [{"name": card["input_name"], "dtype": "float32", "features": names}]
    kinds = {"float32": np.float32, "float64": np.float64, "int64": np.int64}
    feed = {i["name"]: x[:, [names.index(f) for f in i["features"]]].astype(kinds[i["dtype"]]) for i in inputs}
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def probabilities(card: dict, out) -> np.ndarray:
    """[rows, classes] in the card's class order, from a tensor or ZipMap's list of dicts."""
    classes = card["classifier"]["classes"]
    if isinstance(out, list):
        keyed = [{str(k): v for k, v in m.items()} for m in out]
        return np.asarray([[m[c] for c in classes] for m in keyed], dtype=np.float64)
    return np.asarray(out, dtype=np.float64)


def check_predictions(card: dict, body: dict, out: dict, start: int = 0) -> None:
    """Every result of one /v1/predict answer against ONNX Runtime's outputs for the same rows (`out`,
    from `ort_outputs`; `start` is the batch's first row): a regressor's value, a classifier's
    probabilities per class, its label and the top probability, and the graph's own label output."""
    task = card["task"]
    assert body["model"]["task"] == task
    for r in body["results"]:
        i = r["row"] + start
        if task == "regressor":
            want = float(np.asarray(out[card["output_name"]]).ravel()[i])
            assert r["value"] == pytest.approx(want, rel=1e-6, abs=1e-6), r
        else:
            classes = card["classifier"]["classes"]
            p = probabilities(card, out[card["output_name"]])[i]
            got = [r["probabilities"][c] for c in classes]
            assert got == pytest.approx(p.tolist(), abs=1e-6), r
            assert r["label"] == classes[int(p.argmax())], r
            assert r["probability"] == pytest.approx(p.max(), abs=1e-6)
            labels = [o for o in out if o != card["output_name"]]
            if labels:  # the graph's own label output agrees
                assert str(np.asarray(out[labels[0]]).ravel()[i]) == r["label"], r
