#!/usr/bin/env bash
# Runs the product on this machine: builds the inference service and the replay tool, starts the
# service on the bundled model (monitoring history kept under ~/.cache/mlops-console/state), and
# replays held-out traffic at it — normal rows, some anomalies, late ground truth — so the monitoring
# numbers move. Serves until Ctrl-C. (The desktop console takes over this command once it lands.)
#   PORT=8080  SCENARIO=normal,anomalies,feedback (add "drift" to see drift flagged)  RATE=5
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh

PORT=${PORT:-8080}
SCENARIO=${SCENARIO:-normal,anomalies,feedback}
RATE=${RATE:-5}
STATE_DIR=$MLOPS_CACHE/state
cargo build --release -p inference-image --bin inference -p traffic-replay --bin replay
bin=$CARGO_TARGET_DIR/release

"$bin/inference" serve --model-dir inference-image/model/wbc-autoencoder \
  --bind "127.0.0.1:$PORT" --state-dir "$STATE_DIR" &
service=$!
replay=""
cleanup() {
  [ -n "$replay" ] && kill -INT "$replay" 2>/dev/null
  kill -TERM "$service" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT INT TERM

for _ in $(seq 100); do
  "$bin/inference" health --url "http://127.0.0.1:$PORT/readyz" 2>/dev/null && break
  kill -0 "$service" 2>/dev/null || { echo "run: the service exited; see the error above" >&2; exit 1; }
  sleep 0.1
done

cat <<MSG

The service is running on http://127.0.0.1:$PORT (API description: /openapi.json).
Replaying "$SCENARIO" traffic at $RATE requests/s for up to an hour. Watch it:
  curl -s 'http://127.0.0.1:$PORT/v1/monitoring/summary?window=5m' | python3 -m json.tool | less
  curl -s http://127.0.0.1:$PORT/metrics | grep ^mlops_predict
Ctrl-C stops both (the service shuts down gracefully and keeps its history in $STATE_DIR).

MSG
"$bin/replay" --url "http://127.0.0.1:$PORT" --scenario "$SCENARIO" --rate "$RATE" --duration 60m &
replay=$!
wait "$service"
