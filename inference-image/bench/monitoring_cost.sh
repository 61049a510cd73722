#!/usr/bin/env bash
# What monitoring costs in throughput: the same service binary with monitoring on (as shipped) and
# with `--monitoring false` (COMPARE=alerts: what the alert evaluator costs on top of monitoring,
# evaluating its rules every second, 60 times as often as shipped, against never during the run),
# in interleaved pairs so that drift in this machine's speed hits both
# sides alike. Each pair is a fresh server per side, wrk at c32 for BENCH_DURATION seconds after a
# BENCH_WARMUP warm-up, at batch 1 and batch 64. Prints each pair's on/off ratio and, per batch, the
# median and the range; writes the Markdown summary to $1 when given.
#
#   source scripts/env.sh && inference-image/bench/monitoring_cost.sh [OUT.md]
#
# Environment knobs: COMPARE (monitoring or alerts, default monitoring), PAIRS (per batch, default 6), BENCH_DURATION (s, default 5), BENCH_WARMUP (s,
# default 2), SKIP_BUILD=1 (use the binary already built). Loopback only; every server is killed on exit.
# About PAIRS x 2 x 2 x (warm-up + duration + 1) s: 6 pairs take about 4 minutes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"

OUT_FILE=${1:-}
PAIRS=${PAIRS:-6}
DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
MODEL_DIR=${BENCH_MODEL_DIR:-$ROOT/inference-image/model/wbc-autoencoder}
COMPARE=${COMPARE:-monitoring}
case $COMPARE in
    monitoring) ON_FLAGS=(--monitoring true); OFF_FLAGS=(--monitoring false) ;;
    alerts) ON_FLAGS=(--monitoring true --alert-interval-secs 1)
            OFF_FLAGS=(--monitoring true --alert-interval-secs 86400) ;;
    *) echo "monitoring_cost.sh: COMPARE must be monitoring or alerts, not $COMPARE" >&2; exit 1 ;;
esac
PY=$MLOPS_VENV/bin/python

die() { echo "monitoring_cost.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v curl >/dev/null || die "curl is not installed"
[ -f "${ORT_DYLIB_PATH:-}" ] || die "ORT_DYLIB_PATH does not point at libonnxruntime (run scripts/setup.sh)"
[ -x "$PY" ] || die "no Python venv at $MLOPS_VENV (run scripts/setup.sh)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/monitoring-cost.XXXXXX")
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "== cargo build --release -p inference-image --bin inference" >&2
    (cd "$ROOT" && cargo build --release -p inference-image --bin inference) >&2
fi
[ -x "$CARGO_TARGET_DIR/release/inference" ] || die "missing $CARGO_TARGET_DIR/release/inference"
BIN=$TMP/inference # a private copy: a concurrent build must not swap the binary mid-run
cp "$CARGO_TARGET_DIR/release/inference" "$BIN"

# shellcheck source=wrk_common.sh
source "$HERE/wrk_common.sh"
write_request_bodies

# requests/s of one fresh server: side (on|off) batch
measure() {
    local side=$1 batch=$2 port i out flags
    if [ "$side" = on ]; then flags=("${ON_FLAGS[@]}"); else flags=("${OFF_FLAGS[@]}"); fi
    port=$(free_port)
    RUST_LOG=warn "$BIN" serve --model-dir "$MODEL_DIR" --bind "127.0.0.1:$port" "${flags[@]}" \
        >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for i in $(seq 1 300); do
        curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$TMP/body-1.json" \
            "http://127.0.0.1:$port/v1/predict" && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; die "the service exited during start-up"; }
        [ "$i" = 300 ] && die "the service did not answer within 30 s"
        sleep 0.1
    done
    BODY_FILE="$TMP/body-$batch.json" wrk -t2 -c32 -d"${WARMUP}s" -s "$TMP/post.lua" "http://127.0.0.1:$port/v1/predict" >/dev/null
    out=$(BODY_FILE="$TMP/body-$batch.json" wrk -t2 -c32 -d"${DURATION}s" -s "$TMP/post.lua" "http://127.0.0.1:$port/v1/predict")
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    grep -q "Non-2xx" <<<"$out" && die "errors during the run: $out"
    awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out"
}

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "== $COMPARE on/off: ${ON_FLAGS[*]} / ${OFF_FLAGS[*]}"  >&2
echo "== $(nproc) cores ($cpu_model); $PAIRS pairs per batch, wrk -t2 -c32, ${WARMUP} s warm-up + ${DURATION} s" >&2
declare -A RATIOS
for batch in 1 64; do
    for pair in $(seq 1 "$PAIRS"); do
        # Alternate which side goes first, so a steady drift does not favour one.
        if [ $((pair % 2)) = 1 ]; then
            on=$(measure on "$batch"); off=$(measure off "$batch")
        else
            off=$(measure off "$batch"); on=$(measure on "$batch")
        fi
        r=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }')
        RATIOS[$batch]="${RATIOS[$batch]:-} $r"
        printf '   batch %-3s pair %s: on %7s req/s, off %7s req/s, on/off %s\n' "$batch" "$pair" "$on" "$off" "$r" >&2
    done
done

summary() { # ratios... -> "median m (min a, max b)"
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "median %.3f (range %.3f-%.3f, %d pairs), cost %.1f %%", m, v[1], v[NR], NR, 100 * (1 - m) }'
}
{
    for batch in 1 64; do
        # shellcheck disable=SC2086 # the ratios are a space-separated list
        echo "- batch $batch, c32: on/off requests/s $(summary ${RATIOS[$batch]})"
    done
    echo
    echo "Measured with \`COMPARE=$COMPARE inference-image/bench/monitoring_cost.sh\` (on: ${ON_FLAGS[*]}; off: ${OFF_FLAGS[*]}; interleaved pairs, a fresh server per side, wrk -t2 -c32, ${DURATION} s after ${WARMUP} s warm-up) on $(nproc) cores ($cpu_model) shared by wrk and the server, loopback only."
} >"$TMP/summary.md"
echo >&2
cat "$TMP/summary.md"
if [ -n "$OUT_FILE" ]; then
    cp "$TMP/summary.md" "$OUT_FILE"
fi
