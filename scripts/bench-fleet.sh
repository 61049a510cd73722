#!/usr/bin/env bash
# The fleet's rollouts under load, as a benchmark: three sshd hosts on loopback (this machine's
# Docker engine) behind Debian's HAProxy, the replay tool sending 40 requests/s through HAProxy
# during every rollout (console-core/tests/fleet.rs). Prints each rollout's time and the requests
# answered and failed; the README's fleet table comes from here. About 5 minutes.
#
#   bash scripts/bench-fleet.sh            (after scripts/setup.sh and a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
flags=(--release -p console-core --test fleet)
bin=$(cargo test "${flags[@]}" --no-run --message-format=json |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "fleet" and m.get("executable"):
        print(m["executable"])')
cargo build --release -p inference-image --bin inference -p traffic-replay --bin replay
export MLOPS_REPLAY_BIN=$CARGO_TARGET_DIR/release/replay INFERENCE_BIN=$CARGO_TARGET_DIR/release/inference
export MLOPS_REQUIRE_DOCKER=1
cd console-core
"$bin" --test-threads 1 --nocapture 2>&1 | grep -E "^(v1 to|v2 across|broken image|h3 failed|canary|resized|test result)" || true
