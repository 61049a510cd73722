#!/usr/bin/env bash
# Builds model_card.json for each example model (inference-image/model/examples.py writes the ONNX
# files and CSVs) with the service's own `inference card`, as a user would for their model.
# tests/test_task_models.py rebuilds them the same way and compares with the committed cards.
#   INFERENCE_BIN=path/to/inference  (default: $CARGO_TARGET_DIR/release/inference)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/env.sh"
BIN=${INFERENCE_BIN:-$CARGO_TARGET_DIR/release/inference}
cd "$MLOPS_ROOT/inference-image/model"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for entry in wbc-gbt-classifier:classifier wine-classifier:classifier diabetes-regressor:regressor; do
  name=${entry%%:*} task=${entry#*:}
  "$BIN" card --task "$task" --model "$name/model.onnx" --reference "$name/reference.csv" \
    --holdout "$name/holdout.csv" --label-column label --name "$name" --version 1.0.0 --out "$tmp/$name"
  cp "$tmp/$name/model_card.json" "$name/model_card.json"
done
