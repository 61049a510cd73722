#!/usr/bin/env bash
# Builds the sandbox's versions of the inference service into this computer's Docker engine, so the
# console can deploy, switch and roll back with no registry and no cloud account:
#   mlops-sandbox/inference:v1      the real inference-image/Dockerfile (PREBUILT=1: the binary built
#                                   here and the venv's libonnxruntime, on the local base image)
#   mlops-sandbox/inference:v2      v1 with another version label and IMAGE_TAG
#   mlops-sandbox/inference:broken  v1 whose model directory does not exist: it never becomes ready,
#                                   so deploying it shows the automatic rollback
# Idempotent: an image whose inputs (binary, library, model, Dockerfile) are unchanged is not rebuilt.
#   INFERENCE_BIN=path/to/inference  (default: $CARGO_TARGET_DIR/release/inference)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$MLOPS_ROOT"

REPO=${SANDBOX_IMAGE:-mlops-sandbox/inference}
BASE=${LOCAL_BASE_IMAGE:-mlops-local/debian:bookworm}
BIN=${INFERENCE_BIN:-$CARGO_TARGET_DIR/release/inference}
ORT_VERSION=$(sed -n 's/^ARG ORT_VERSION=//p' inference-image/Dockerfile | head -n 1)
log() { echo "sandbox-images: $*" >&2; }

[ -x "$BIN" ] || { log "no inference binary at $BIN; build it with cargo build --release -p inference-image"; exit 1; }
[ -f "${ORT_DYLIB_PATH:-}" ] || { log "ORT_DYLIB_PATH does not name libonnxruntime.so.$ORT_VERSION; run scripts/setup.sh"; exit 1; }

# Two test processes may ask at once: the second waits for the first, then finds the images.
mkdir -p "$MLOPS_CACHE"
exec 8>"$MLOPS_CACHE/.sandbox-images.lock"
flock 8

# The inputs' digest labels the images; unchanged inputs mean nothing to do.
inputs=$( { sha256sum "$BIN" "$ORT_DYLIB_PATH" inference-image/Dockerfile; find inference-image/model/wbc-autoencoder -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{index .Config.Labels "mlops.sandbox.inputs"}}' "$REPO:broken" 2>/dev/null || true)
if [ "$have" = "$inputs" ] && docker image inspect "$REPO:v1" "$REPO:v2" >/dev/null 2>&1; then
  log "$REPO:{v1,v2,broken} are up to date"
  exit 0
fi

bash tests/support/local-base-image.sh

ctx=$(mktemp -d "${TMPDIR:-/tmp}/mlops-sandbox-ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/inference-image/model" "$ctx/.prebuilt"
cp inference-image/Dockerfile "$ctx/inference-image/Dockerfile"
cp -r inference-image/model/wbc-autoencoder "$ctx/inference-image/model/"
cp "$BIN" "$ctx/.prebuilt/inference"
cp "$ORT_DYLIB_PATH" "$ctx/.prebuilt/libonnxruntime.so.$ORT_VERSION"

log "building $REPO:v1 from inference-image/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q --force-rm -f "$ctx/inference-image/Dockerfile" \
  --build-arg PREBUILT=1 --build-arg RUST_IMAGE="$BASE" --build-arg BASE_IMAGE="$BASE" \
  --build-arg IMAGE_TAG=v1 --build-arg GIT_REVISION="$(git rev-parse HEAD 2>/dev/null || true)" \
  --label mlops.sandbox=1 -t "$REPO:v1" "$ctx" >/dev/null

derive() { # tag, extra Dockerfile lines
  printf 'FROM %s\n%s\nLABEL mlops.sandbox.inputs=%s\n' "$REPO:v1" "$2" "$inputs" > "$ctx/Dockerfile.$1"
  DOCKER_BUILDKIT=0 docker build -q --force-rm -f "$ctx/Dockerfile.$1" -t "$REPO:$1" "$ctx" >/dev/null
}
log "building $REPO:v2 and $REPO:broken"
derive v2 $'LABEL org.opencontainers.image.version=v2\nENV IMAGE_TAG=v2'
derive broken $'LABEL org.opencontainers.image.version=broken\nENV IMAGE_TAG=broken INFERENCE_MODEL_DIR=/nonexistent'
# The build stage's leftovers (the legacy builder keeps them dangling).
docker image prune -f --filter label=mlops.sandbox=1 >/dev/null 2>&1 || true
log "ready: $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO" | tr '\n' ' ')"
