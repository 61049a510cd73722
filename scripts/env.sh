# Shared environment for the project's scripts. Source it; it installs nothing by itself.
# Everything built or installed lives under one cache folder outside the clone, so a fresh clone
# (CI's) reuses the cargo target directory and the Python venv of the previous run.
MLOPS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MLOPS_CACHE=${MLOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-console}
export MLOPS_ROOT MLOPS_CACHE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$MLOPS_CACHE/target}
export MLOPS_VENV=$MLOPS_CACHE/venv
export ORT_VERSION=1.31.1
# ONNX Runtime's shared library comes from the onnxruntime wheel installed in the venv.
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(ls "$MLOPS_VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION 2>/dev/null | head -n 1)}
export PATH=$MLOPS_VENV/bin:$MLOPS_CACHE/bin:$PATH
