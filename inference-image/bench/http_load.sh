#!/usr/bin/env bash
# HTTP load on loopback with wrk: the inference service, the HTTP floor (examples/http_floor.rs) and
# the Python baseline (bench/fastapi_server.py), at concurrency 1 and 32, batch 1 and 64.
# Prints a Markdown table for the README's performance section (and writes it to $1 when given).
#
#   source scripts/env.sh && inference-image/bench/http_load.sh [OUT.md]
#
# Environment knobs: BENCH_DURATION (s per measured run, default 10), BENCH_WARMUP (s, default 2),
# BENCH_SERVERS (subset of "service floor python"), SKIP_BUILD=1 (use the binaries already built),
# INFERENCE_IMAGE (a docker image whose size to report), C32_THREADS (wrk threads at c32, default 2),
# SERVICE_ARGS (extra flags for `inference serve`, e.g. "--monitoring false"; the default is the
# service as shipped), BENCH_MODEL_DIR (the model served by both the service and the Python baseline,
# default the bundled autoencoder; e.g. inference-image/model/wbc-gbt-classifier).
# Every server listens on 127.0.0.1 only and is killed on exit. The load takes ~2.5 minutes (12 cells of
# warm-up + measurement, plus start-ups), on top of the build (seconds when up to date).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"

OUT_FILE=${1:-}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
SERVERS=${BENCH_SERVERS:-service floor python}
C32_THREADS=${C32_THREADS:-2}
MODEL_DIR=${BENCH_MODEL_DIR:-$ROOT/inference-image/model/wbc-autoencoder}
PY=$MLOPS_VENV/bin/python

die() { echo "http_load.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v curl >/dev/null || die "curl is not installed"
[ -n "${ORT_DYLIB_PATH:-}" ] && [ -f "$ORT_DYLIB_PATH" ] || die "ORT_DYLIB_PATH does not point at libonnxruntime (run scripts/setup.sh)"
[ -x "$PY" ] || die "no Python venv at $MLOPS_VENV (run scripts/setup.sh)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/http-load.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$SECONDS

# ---------------------------------------------------------------- build (once)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "== cargo build --release -p inference-image --bin inference --example http_floor" >&2
    build_start=$SECONDS
    (cd "$ROOT" && cargo build --release -p inference-image --bin inference --example http_floor) >&2
    echo "   (build took $((SECONDS - build_start)) s)" >&2
fi
[ -x "$CARGO_TARGET_DIR/release/inference" ] || die "missing $CARGO_TARGET_DIR/release/inference"
[ -x "$CARGO_TARGET_DIR/release/examples/http_floor" ] || die "missing $CARGO_TARGET_DIR/release/examples/http_floor"
# Private copies: the target directory is shared, and a concurrent build must not swap a binary mid-run.
SERVICE_BIN=$TMP/inference
FLOOR_BIN=$TMP/http_floor
cp "$CARGO_TARGET_DIR/release/inference" "$SERVICE_BIN"
cp "$CARGO_TARGET_DIR/release/examples/http_floor" "$FLOOR_BIN"

# ---------------------------------------------------------------- request bodies + wrk script
# shellcheck source=wrk_common.sh
source "$HERE/wrk_common.sh"
write_request_bodies

rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v kb="$1" 'BEGIN { printf "%.1f MiB", kb / 1024 }'; }

# wrk latency strings (850.00us, 1.20ms, 2.00s) -> microseconds
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); x = v }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); x = v * 1000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); x = v * 1000000 }
        else x = -1
        printf "%.1f", x }'
}
fmt_us() {
    awk -v x="$1" 'BEGIN { if (x >= 1000) printf "%.2f ms", x / 1000; else printf "%.0f µs", x }'
}

start_server() { # name port -> sets SERVER_PID
    local name=$1 port=$2 log=$TMP/$1.log
    case $name in
        service)
            # shellcheck disable=SC2086 # SERVICE_ARGS is a list of flags
            RUST_LOG=warn "$SERVICE_BIN" serve --model-dir "$MODEL_DIR" --bind "127.0.0.1:$port" ${SERVICE_ARGS:-} >"$log" 2>&1 &
            ;;
        floor)
            "$FLOOR_BIN" "127.0.0.1:$port" >"$log" 2>&1 &
            ;;
        python)
            MODEL_DIR=$MODEL_DIR "$PY" -m uvicorn --app-dir "$HERE" fastapi_server:app \
                --host 127.0.0.1 --port "$port" --workers 1 --no-access-log --log-level warning >"$log" 2>&1 &
            ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 1 300); do
        if curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$TMP/body-1.json" \
            "http://127.0.0.1:$port/v1/predict"; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "$name exited during start-up"; }
        sleep 0.1
    done
    cat "$log" >&2
    die "$name did not answer within 30 s"
}

stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# user + nice + system + irq + softirq + steal (the hypervisor running other guests counts as other work)
sys_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
TICKS=$(getconf CLK_TCK)

# run_wrk pid port conns threads batch duration -> sets RPS P50 P99 ERRS OTHER (CPU % of all cores used
# during the run by anything but the server and wrk, steal included: other tenants, which depress the numbers)
run_wrk() {
    local pid=$1 port=$2 conns=$3 threads=$4 batch=$5 duration=$6 out s0 s1 p0 p1 w0 w1
    s0=$(sys_busy_ticks) p0=$(proc_ticks "$pid")
    w0=$(awk '{ print $14 + $15 + $16 + $17 }' /proc/$$/stat) # this shell's reaped children (wrk)
    out=$(BODY_FILE="$TMP/body-$batch.json" wrk -t"$threads" -c"$conns" -d"${duration}s" --timeout 5s \
        --latency -s "$TMP/post.lua" "http://127.0.0.1:$port/v1/predict")
    s1=$(sys_busy_ticks) p1=$(proc_ticks "$pid")
    w1=$(awk '{ print $14 + $15 + $16 + $17 }' /proc/$$/stat)
    OTHER=$(awk -v s="$((s1 - s0))" -v p="$((p1 - p0))" -v w="$((w1 - w0))" -v t="$TICKS" -v d="$duration" -v n="$(nproc)" \
        'BEGIN { x = 100 * (s - p - w) / (t * d * n); printf "%.0f", (x < 0 ? 0 : x) }')
    echo "$out" >>"$TMP/wrk.log"
    RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    P50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    P99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    ERRS=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { for (i = 4; i <= NF; i += 2) n += $i + 0 } END { print n + 0 }' <<<"$out")
}

declare -A R_RPS R_P50 R_P99 R_ERR R_OTHER IDLE PEAK RESP_BYTES
MAX_OTHER=0
CONFIGS=("1 1" "32 1" "1 64" "32 64") # conns batch

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "== machine: $(nproc) cores ($cpu_model), $(uname -r); wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')" >&2
echo "== wrk and the server under test share these $(nproc) cores (no pinning): the numbers include wrk's own CPU use." >&2
# CPU already busy (all cores, %) over one second, from /proc/stat.
cpu_busy() {
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }'
}
BUSY_BEFORE=$(cpu_busy)
echo "== CPU busy before the run: $BUSY_BEFORE % (of all cores)" >&2
if [ "$BUSY_BEFORE" -gt 10 ]; then
    echo "== WARNING: the machine is not idle; other work will depress these numbers." >&2
fi
echo "== each run: ${WARMUP} s warm-up, then ${DURATION} s measured; c1 = wrk -t1 -c1, c32 = wrk -t$C32_THREADS -c32" >&2

for name in $SERVERS; do
    port=$(free_port)
    start_server "$name" "$port"
    pid=$SERVER_PID
    sleep 1
    IDLE[$name]=$(rss_kb "$pid" VmRSS)
    for batch in 1 64; do
        RESP_BYTES[$name/$batch]=$(curl -sf -H 'Content-Type: application/json' --data-binary "@$TMP/body-$batch.json" \
            "http://127.0.0.1:$port/v1/predict" | wc -c)
    done
    if [ "$name" = python ]; then
        loop=$("$PY" -c 'import importlib.util as u; print("uvloop" if u.find_spec("uvloop") else "asyncio", "+", "httptools" if u.find_spec("httptools") else "h11")')
        echo "== python: uvicorn 1 worker, $loop, --no-access-log" >&2
    fi
    for cfg in "${CONFIGS[@]}"; do
        read -r conns batch <<<"$cfg"
        threads=1
        [ "$conns" -gt 1 ] && threads=$C32_THREADS
        run_wrk "$pid" "$port" "$conns" "$threads" "$batch" "$WARMUP"
        run_wrk "$pid" "$port" "$conns" "$threads" "$batch" "$DURATION"
        key=$name/$conns/$batch
        R_RPS[$key]=$RPS R_P50[$key]=$P50 R_P99[$key]=$P99 R_ERR[$key]=$ERRS R_OTHER[$key]=$OTHER
        [ "$OTHER" -gt "$MAX_OTHER" ] && MAX_OTHER=$OTHER
        printf '   %-8s c%-3s batch %-3s %9s req/s  p50 %-10s p99 %-10s errors %s  other CPU %s %%\n' "$name" "$conns" "$batch" \
            "$RPS" "$(fmt_us "$P50")" "$(fmt_us "$P99")" "$ERRS" "$OTHER" >&2
    done
    PEAK[$name]=$(rss_kb "$pid" VmHWM)
    stop_server "$pid"
done

# ---------------------------------------------------------------- image size
image_size="not measured (set INFERENCE_IMAGE to a built image)"
if [ -n "${INFERENCE_IMAGE:-}" ]; then
    if bytes=$(docker image inspect -f '{{.Size}}' "$INFERENCE_IMAGE" 2>/dev/null); then
        image_size=$(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }')" ($INFERENCE_IMAGE, docker image inspect .Size)"
    else
        image_size="not measured (no image $INFERENCE_IMAGE)"
    fi
fi

# ---------------------------------------------------------------- table
label() {
    case $1 in
        service) echo "inference (this service)" ;;
        floor) echo "HTTP floor (axum, parse + same-size reply)" ;;
        python) echo "FastAPI + onnxruntime (uvicorn, 1 worker)" ;;
    esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "n/a" }'; }

{
    echo "| Server | Batch | Concurrency | Requests/s | Rows/s | p50 | p99 | Response | Idle RSS | Loaded RSS (peak) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for name in $SERVERS; do
        for cfg in "${CONFIGS[@]}"; do
            read -r conns batch <<<"$cfg"
            key=$name/$conns/$batch
            err=""
            [ "${R_ERR[$key]}" != 0 ] && err=" (${R_ERR[$key]} errors)"
            printf '| %s | %s | %s | %s%s | %s | %s | %s | %s B | %s | %s |\n' "$(label "$name")" "$batch" "$conns" \
                "${R_RPS[$key]}" "$err" "$((${R_RPS[$key]} * batch))" "$(fmt_us "${R_P50[$key]}")" "$(fmt_us "${R_P99[$key]}")" \
                "${RESP_BYTES[$name/$batch]}" "$(mib "${IDLE[$name]}")" "$(mib "${PEAK[$name]}")"
        done
    done
    echo
    echo "Runtime image: $image_size. Other CPU use just before the run: $BUSY_BEFORE % of all cores; during the runs: at most $MAX_OTHER %."
    echo
    [ -n "${SERVICE_ARGS:-}" ] && echo "The service ran with \`${SERVICE_ARGS}\`." && echo
    echo "Measured with \`inference-image/bench/http_load.sh\` (wrk ${DURATION} s per cell after ${WARMUP} s warm-up; c1: \`wrk -t1 -c1\`, c32: \`wrk -t$C32_THREADS -c32\`, \`--latency\`, POST of $(wc -c <"$TMP/body-1.json") / $(wc -c <"$TMP/body-64.json") bytes of holdout rows) on $(nproc) cores ($cpu_model) shared by wrk and the server, loopback only."
    if [[ " $SERVERS " == *" service "* ]]; then
        echo
        echo "Targets:"
        if [[ " $SERVERS " == *" floor "* ]]; then
            for c in 1 32; do
                echo "- batch 1, c$c: service / floor requests/s = $(pct "${R_RPS[service/$c/1]}" "${R_RPS[floor/$c/1]}") (target ≥ 70 %)"
            done
        fi
        echo "- batch 1, c1: service p50 = $(fmt_us "${R_P50[service/1/1]}") (target ≤ 60 µs)"
        if [[ " $SERVERS " == *" python "* ]]; then
            for b in 1 64; do
                echo "- batch $b, c32: service / Python requests/s = $(ratio "${R_RPS[service/32/$b]}" "${R_RPS[python/32/$b]}")× (target ≥ 30×)"
            done
        fi
    fi
} >"$TMP/table.md"

echo >&2
cat "$TMP/table.md"
if [ -n "$OUT_FILE" ]; then
    cp "$TMP/table.md" "$OUT_FILE"
    echo "(written to $OUT_FILE)" >&2
fi
if [ "$MAX_OTHER" -gt 10 ]; then
    echo "== WARNING: other processes used up to $MAX_OTHER % of the CPU during some runs; rerun on an idle machine." >&2
fi
echo "== done in $((SECONDS - started)) s" >&2
