#!/usr/bin/env bash
# Runs the product: the desktop console on the local sandbox. Installs what it needs, builds the
# console, the inference service and the replay tool, builds the sandbox's image versions (v1, v2,
# broken) into this computer's Docker engine, then opens the console. In the console: the wizard
# (pick "This computer"), deploy, start traffic on the dashboard (tick "Drift scenario" to see drift
# flagged), deploy v2, roll back.
#
# Without a Docker engine the sandbox cannot deploy containers: this script says so and starts the
# service as a local process on the sandbox port instead, so the dashboard still has something to
# watch. Without a display it starts the console on a virtual one (Xvfb) and says so.
#   MLOPS_SANDBOX_PORT=8080 (the service; the next port is used to try new versions)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh

PORT=${MLOPS_SANDBOX_PORT:-8080}
export MLOPS_SANDBOX_PORT=$PORT
cargo build --release -p mlops-console -p inference-image --bin inference -p traffic-replay --bin replay
bin=$CARGO_TARGET_DIR/release
export MLOPS_REPLAY_BIN=$bin/replay
say() { printf '\nrun: %s\n' "$*"; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if docker info >/dev/null 2>&1; then
  INFERENCE_BIN=$bin/inference bash scripts/sandbox-images.sh
  say "sandbox: this computer's Docker engine; versions $(docker image ls --format '{{.Tag}}' mlops-sandbox/inference | sort | tr '\n' ' ')"
  say "the service will listen on 127.0.0.1:$PORT once deployed (stop it later with: docker-compose -p mlops-sandbox -f \"$HOME/.local/share/mlops-console/sandbox/docker-compose.yml\" down)"
else
  say "NO DOCKER ENGINE answers here, so the sandbox cannot deploy or roll back containers."
  say "Starting the inference service as a local process on 127.0.0.1:$PORT instead: the Dashboard tab watches it; deploys need Docker."
  "$bin/inference" serve --model-dir inference-image/model/wbc-autoencoder \
    --bind "127.0.0.1:$PORT" --state-dir "$MLOPS_CACHE/state" &
  pids+=($!)
fi

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  n=$(for i in $(seq 90 199); do [ -e "/tmp/.X11-unix/X$i" ] || { echo "$i"; break; }; done)
  say "no display: starting the console on a virtual display :$n (Xvfb). Take a look with: import -window root -display :$n shot.png"
  Xvfb ":$n" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
  pids+=($!)
  export DISPLAY=":$n"
  sleep 1
fi

say "opening the console (close its window or press Ctrl-C to stop)"
"$bin/mlops-console"
