"""The repository and the environment scripts/env.sh defines (CARGO_TARGET_DIR, MLOPS_CACHE, ORT_DYLIB_PATH...)."""
from __future__ import annotations

import csv
import functools
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def env_sh() -> dict[str, str]:
    """The environment after `source scripts/env.sh` (values already set in os.environ win, as in env.sh)."""
    out = subprocess.run(
        ["bash", "-c", 'source "$1" >/dev/null && env -0', "bash", str(REPO_ROOT / "scripts" / "env.sh")],
        check=True, capture_output=True, env=os.environ.copy(),
    ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def release_binary() -> Path:
    """The service binary: $INFERENCE_BIN if set, else where `cargo build --release -p inference-image
    --bin inference` puts it."""
    if os.environ.get("INFERENCE_BIN"):
        return Path(os.environ["INFERENCE_BIN"])
    return Path(env_sh()["CARGO_TARGET_DIR"]) / "release" / "inference"


def ort_library() -> Path | None:
    p = env_sh().get("ORT_DYLIB_PATH", "")
    return Path(p) if p else None


MODEL_DIR = REPO_ROOT / "inference-image" / "model" / "wbc-autoencoder"
ARTIFACTS_DIR = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))


def holdout() -> tuple[list[list[float]], list[int]]:
    """The bundled model's held-out rows: features (the label column removed) and labels."""
    with open(MODEL_DIR / "holdout.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    label_at = header.index("label")
    features = [[float(v) for j, v in enumerate(r) if j != label_at] for r in data]
    labels = [int(r[label_at]) for r in data]
    return features, labels
