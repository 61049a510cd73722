#!/usr/bin/env python3
"""Build three example model directories (a classifier, a multi-class ZipMap classifier, a regressor).

Why: the bundled wbc-autoencoder is an anomaly scorer with a hand-written graph. These examples are the
kind of ONNX file that users bring from scikit-learn through skl2onnx, so the service and the Rust tool
that builds model_card.json can be tested on real converter output (TreeEnsemble and LinearClassifier
operators from the ai.onnx.ml domain, a ZipMap output, a tree regressor).

Each directory holds only
    model.onnx     the skl2onnx export
    reference.csv  the training rows: header = feature names in model input order, numbers only
    holdout.csv    the held-out rows: the same feature columns, then `label` (class or target value)
model_card.json is NOT written here: a Rust tool builds it from these three files.

Models (data ships with scikit-learn, no download; every split is
train_test_split(test_size=0.3, random_state=0), stratified for the classifiers):
  wbc-gbt-classifier/  load_breast_cancer, 30 features (the wbc-autoencoder card's names: sklearn's
                       names with spaces replaced by underscores). label 1 = malignant (sklearn's
                       target 0, flipped). GradientBoostingClassifier(n_estimators=100, max_depth=3,
                       random_state=0). ONNX: `input` float [N,30] -> `label` int64 [N],
                       `probabilities` float [N,2] (zipmap disabled).
  wine-classifier/     load_wine, 13 features ('/' and spaces -> '_'), labels 0, 1, 2.
                       Pipeline(StandardScaler, LogisticRegression(max_iter=1000, random_state=0)).
                       ONNX: `input` float [N,13] -> `output_label` int64 [N],
                       `output_probability` seq(map(int64, float)) (skl2onnx's default ZipMap).
  diabetes-regressor/  load_diabetes(scaled=False), 10 features in raw units, label = disease
                       progression one year after baseline. GradientBoostingRegressor(random_state=0).
                       ONNX: `input` float [N,10] -> `variable` float [N,1]. FLOAT, not double:
                       skl2onnx 1.20 exports a DoubleTensorType tree regressor as a TreeEnsembleRegressor
                       whose output is declared tensor(double) but imports ai.onnx.ml opset 1 and
                       writes no *_as_tensor attributes, whatever target_opset says; onnx's full check
                       and onnxruntime 1.31.1 both reject it ("Type (tensor(double)) of output arg
                       (variable) ... does not match expected type (tensor(float))", the open
                       skl2onnx issue onnx/sklearn-onnx#1074).

Opsets: target_opset {'': 17, 'ai.onnx.ml': 3} is an upper bound; skl2onnx writes the lowest opset
its operators need. Written (IR 8): wbc-gbt-classifier {'': 16, 'ai.onnx.ml': 1}, wine-classifier
{'': 9, 'ai.onnx.ml': 1}, diabetes-regressor {'': 17, 'ai.onnx.ml': 1}; onnxruntime 1.31.1 runs all three.

After export the script checks that onnxruntime reproduces sklearn on the holdout rows (labels exactly,
probabilities and regression values with np.allclose) and prints one summary line per model.
Tree models compare float32 inputs in sklearn too (sklearn casts X to float32 inside its trees), so
the float ONNX models and sklearn agree exactly on labels; the float32 sums of tree values differ
from sklearn's float64 sums in the last float32 bits only.

CSV numbers are written with repr(float(x)) (shortest round-trip), so they read back to the same
float64 values; labels are written as integers, regression targets as floats.

Reproducible: fixed seeds, single-threaded BLAS, PYTHONHASHSEED=0 (the script re-executes itself
with it: skl2onnx orders opset_import by set iteration), no timestamps or random names. Two runs with the
pinned packages (scripts/requirements.txt) on the same platform write byte-identical files.

Usage:  python inference-image/model/examples.py [--out DIR] [--only NAME ...]
"""

from __future__ import annotations

import os
import sys

# skl2onnx collects opsets (and some names) in Python sets, whose order follows the string hash
# seed: without a fixed PYTHONHASHSEED, the opset_import order of model.onnx changes from run to run.
# A script run restarts itself once with PYTHONHASHSEED=0 (it can only be set before start-up).
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

# Single-threaded numerical libraries, set before numpy is imported (see train.py).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import helper  # noqa: E402
import onnxruntime as ort  # noqa: E402
import skl2onnx  # noqa: E402
import sklearn  # noqa: E402
from skl2onnx import convert_sklearn  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent
SEED = 0
TEST_SIZE = 0.3
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MAX_ONNX_BYTES = 500 * 1024
FILES = ("model.onnx", "reference.csv", "holdout.csv")
PINNED = {"numpy": "2.4.6", "scikit-learn": "1.9.1", "onnx": "1.23.2", "onnxruntime": "1.31.1",
          "skl2onnx": "1.20.0"}


def clean_name(name: str) -> str:
    """sklearn feature name -> card feature name: '/' and spaces become '_'."""
    return name.lower().replace("/", "_").replace(" ", "_")


def write_csv(path: Path, header: list[str], rows: np.ndarray, labels: np.ndarray | None = None) -> None:
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        cells = [repr(float(v)) for v in row]
        if labels is not None:
            lab = labels[i]
            cells.append(str(int(lab)) if np.issubdtype(labels.dtype, np.integer) else repr(float(lab)))
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def session(model_bytes: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def finish(onx: onnx.ModelProto) -> bytes:
    """opset_import canonical: one entry per domain (skl2onnx 1.20 lists the default domain twice in
    the regressor), sorted by domain (belt and braces with the fixed hash seed). Then a full check."""
    opsets: dict[str, int] = {}
    for o in onx.opset_import:
        if opsets.setdefault(o.domain, o.version) != o.version:
            raise SystemExit(f"conflicting opset versions for domain {o.domain!r}")
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
    onnx.checker.check_model(onx, full_check=True)
    return onx.SerializeToString()


@dataclass
class Built:
    name: str
    names: list[str]
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    model_bytes: bytes
    metric: str


# ---------------------------------------------------------------------------------------------
# a. binary GBT classifier, zipmap off
# ---------------------------------------------------------------------------------------------
def build_wbc_gbt() -> Built:
    data = load_breast_cancer()
    names = [clean_name(n) for n in data.feature_names]
    X = np.asarray(data.data, dtype=np.float64)
    y = (np.asarray(data.target) == 0).astype(np.int64)  # 1 = malignant
    x_tr, x_te, y_tr, y_te = train_test_split(X, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    clf = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED).fit(x_tr, y_tr)
    onx = convert_sklearn(clf, "wbc_gbt_classifier", [("input", FloatTensorType([None, X.shape[1]]))],
                          options={id(clf): {"zipmap": False}}, target_opset=TARGET_OPSET)
    model_bytes = finish(onx)

    sess = session(model_bytes)
    label, proba = sess.run(["label", "probabilities"], {"input": x_te.astype(np.float32)})
    metric = check_classifier("wbc-gbt-classifier", clf, x_te, y_te, label, proba)
    return Built("wbc-gbt-classifier", names, x_tr, x_te, y_te, model_bytes, metric)


def check_classifier(name: str, model, x_te, y_te, label, proba) -> str:
    """Stops unless ONNX Runtime's labels equal sklearn's and its probabilities agree; the summary line."""
    sk_label, sk_proba = model.predict(x_te), model.predict_proba(x_te)
    if not np.array_equal(label, sk_label):
        raise SystemExit(f"{name}: {int((label != sk_label).sum())} labels differ from sklearn")
    if not np.allclose(proba, sk_proba, rtol=1e-4, atol=1e-6):
        raise SystemExit(f"{name}: probabilities differ by {np.abs(proba - sk_proba).max():.3g}")
    acc = accuracy_score(y_te, label)
    return (f"holdout accuracy {acc:.4f} ({len(y_te)} rows), "
            f"max |p_onnx - p_sklearn| {np.abs(proba - sk_proba).max():.2g}")


# ---------------------------------------------------------------------------------------------
# b. multi-class pipeline, default ZipMap
# ---------------------------------------------------------------------------------------------
def build_wine() -> Built:
    data = load_wine()
    names = [clean_name(n) for n in data.feature_names]
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(X, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    pipe = Pipeline([("scaler", StandardScaler()),
                     ("logreg", LogisticRegression(max_iter=1000, random_state=SEED))]).fit(x_tr, y_tr)
    onx = convert_sklearn(pipe, "wine_classifier", [("input", FloatTensorType([None, X.shape[1]]))],
                          target_opset=TARGET_OPSET)
    model_bytes = finish(onx)

    sess = session(model_bytes)
    label, zipped = sess.run(["output_label", "output_probability"], {"input": x_te.astype(np.float32)})
    classes = [int(c) for c in pipe.classes_]
    proba = np.array([[row[c] for c in classes] for row in zipped], dtype=np.float64)
    metric = check_classifier("wine-classifier", pipe, x_te, y_te, label, proba)
    return Built("wine-classifier", names, x_tr, x_te, y_te, model_bytes, metric)


# ---------------------------------------------------------------------------------------------
# c. regressor (float: skl2onnx 1.20's double tree regressor does not load, see the docstring)
# ---------------------------------------------------------------------------------------------
def build_diabetes() -> Built:
    data = load_diabetes(scaled=False)  # raw units (age in years, bmi, blood pressure, ...)
    names = [clean_name(n) for n in data.feature_names]
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target, dtype=np.float64)
    x_tr, x_te, y_tr, y_te = train_test_split(X, y, test_size=TEST_SIZE, random_state=SEED)
    reg = GradientBoostingRegressor(random_state=SEED).fit(x_tr, y_tr)
    onx = convert_sklearn(reg, "diabetes_regressor", [("input", FloatTensorType([None, X.shape[1]]))],
                          target_opset=TARGET_OPSET)
    model_bytes = finish(onx)

    sess = session(model_bytes)
    (pred,) = sess.run(["variable"], {"input": x_te.astype(np.float32)})
    sk_pred = reg.predict(x_te)
    if pred.dtype != np.float32 or pred.shape != (len(x_te), 1):
        raise SystemExit(f"diabetes-regressor: unexpected output {pred.dtype} {pred.shape}")
    if not np.allclose(pred[:, 0], sk_pred, rtol=1e-5, atol=1e-4):
        raise SystemExit(f"diabetes-regressor: predictions differ by {np.abs(pred[:, 0] - sk_pred).max():.3g}")
    r2 = r2_score(y_te, pred[:, 0])
    metric = (f"holdout R2 {r2:.4f} ({len(y_te)} rows), "
              f"max |y_onnx - y_sklearn| {np.abs(pred[:, 0] - sk_pred).max():.2g}")
    return Built("diabetes-regressor", names, x_tr, x_te, y_te, model_bytes, metric)


BUILDERS: dict[str, Callable[[], Built]] = {
    "wbc-gbt-classifier": build_wbc_gbt,
    "wine-classifier": build_wine,
    "diabetes-regressor": build_diabetes,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"folder that receives one directory per model (default {DEFAULT_OUT})")
    ap.add_argument("--only", nargs="+", choices=sorted(BUILDERS), help="build only these models")
    args = ap.parse_args(argv)

    versions = {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__, "skl2onnx": skl2onnx.__version__}
    for pkg, want in PINNED.items():
        if versions[pkg] != want:
            print(f"warning: {pkg} {versions[pkg]} is not the pinned {want}; "
                  "outputs may differ from the committed ones", file=sys.stderr)

    for name in args.only or BUILDERS:
        built = BUILDERS[name]()
        if len(built.model_bytes) > MAX_ONNX_BYTES:
            raise SystemExit(f"{name}: model.onnx is {len(built.model_bytes)} bytes (> {MAX_ONNX_BYTES})")
        out: Path = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.onnx").write_bytes(built.model_bytes)
        write_csv(out / "reference.csv", built.names, built.x_train)
        write_csv(out / "holdout.csv", built.names + ["label"], built.x_test, built.y_test)
        sizes = ", ".join(f"{f} {(out / f).stat().st_size} B" for f in FILES)
        print(f"{name}: {built.metric}; {sizes}")
        for f in FILES:
            p = out / f
            print(f"  {hashlib.sha256(p.read_bytes()).hexdigest()}  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
