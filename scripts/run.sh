#!/usr/bin/env bash
# Runs the product on this machine: builds the inference service, starts it on the bundled model
# and sends it sample traffic, then keeps serving until Ctrl-C. (The desktop console will take over
# this command once it lands.) PORT=8080 by default.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh

PORT=${PORT:-8080}
cargo build --release -p inference-image --bin inference
"$CARGO_TARGET_DIR/release/inference" serve \
  --model-dir inference-image/model/wbc-autoencoder --bind "127.0.0.1:$PORT" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM

for _ in $(seq 100); do
  "$CARGO_TARGET_DIR/release/inference" health --url "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "run: the service exited; see the error above" >&2; exit 1; }
  sleep 0.1
done

python3 scripts/sample_traffic.py --url "http://127.0.0.1:$PORT"
cat <<MSG

The service is running on http://127.0.0.1:$PORT (API description: /openapi.json). Try:
  curl -s http://127.0.0.1:$PORT/v1/model | head -c 300
Ctrl-C stops it (gracefully).
MSG
wait $pid
