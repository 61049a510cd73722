#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this). Installs what it needs first and
# prints how long each stage took at the end (also when a stage fails).
#
# Where a cold run's time went before this layout (2 cores, nothing cached, 40 min in all): set-up
# 2 min, a separate `cargo clippy` check build of every dependency 5 min, the release build 20 min,
# cargo test 8 min (5 of them the deploy tests, which built the base image first), pytest 5 min.
# Now the one release build also runs clippy on the workspace's crates (clippy-driver as the
# workspace's compiler wrapper: dependencies are compiled once, for the tests), it compiles at
# optimisation level 1, and the local base image's debootstrap (network and disk bound) runs while
# the build keeps the cores busy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STAGES=()
SUITE_START=$SECONDS
report() {
  local rc=$?
  # A stage that failed ends the run. The early build stops; tests already running in the
  # background finish first (killed, they would leave their containers, X displays and apps
  # behind, which a later run on the same machine trips over), and their logs are named.
  [ -z "${early_pid:-}" ] || kill "$early_pid" 2>/dev/null || true
  local lane
  for lane in "deploy:${deploy_pid:-}:${deploy_log:-}" "fleet:${fleet_pid:-}:${fleet_log:-}" \
              "journeys:${journey_pid:-}:${journey_log:-}"; do
    IFS=: read -r name pid log <<<"$lane"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      printf '\n=== waiting for the %s tests in the background (log: %s)\n' "$name" "$log"
      wait "$pid" 2>/dev/null || true
    fi
  done
  printf '\n=== stage times\n'
  printf '%s\n' "${STAGES[@]}"
  printf '%6d s  total (exit %d)\n' $((SECONDS - SUITE_START)) "$rc"
}
trap report EXIT
# stage NAME COMMAND...: runs one stage and records its time (a failed stage too, then stops).
stage() {
  local name=$1 t0=$SECONDS rc=0
  shift
  printf '\n=== %s\n' "$name"
  "$@" || rc=$?
  STAGES+=("$(printf '%6d s  %s%s' $((SECONDS - t0)) "$name" "$([ "$rc" -eq 0 ] || echo " (FAILED, exit $rc)")")")
  return "$rc"
}

source scripts/env.sh
# One release build serves every test: the Rust tests, and the system tests that put the same
# binary into a container image. The tests check behaviour, not speed (speed lives in the
# benchmarks), so they get quick-to-build code: optimisation level 1 and no link-time
# optimisation. Benchmarks and scripts/run.sh keep the full release profile.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_OPT_LEVEL=1
# Clippy lints the workspace's crates while they compile: clippy-driver is rustc plus the lints, and
# cargo hands it only the workspace's crates, so this is `cargo clippy --all-targets -D warnings`
# without a second (check-mode) build of every dependency. It stays set for `cargo test` below so
# that cargo sees the same compiler and rebuilds nothing.
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver || rustup which clippy-driver)
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# aws-sdk-ec2 (and aws-sdk-iam, made the same way) is one generated crate that took 9.5 of a cold
# build's 17 minutes at optimisation level 1, most of them alone at the end. The generated AWS
# clients, octocrab, tauri and the app's own thin crate only build and parse requests or glue
# commands to console-core, and the tests check behaviour, so the tests take them unoptimised (a cold
# build's CPU at level 1: ec2 265 s, the app 132 s, octocrab 90 s, tauri 85 s, each other AWS
# client 40-50 s). The crates on the hot paths (ort, hyper, tokio, serde, the SSH crypto) keep
# level 1. (--config must be the same for the build and the run below.)
CARGO_TEST_FLAGS=(--workspace --release)
for crate in aws-sdk-ec2 aws-sdk-iam aws-sdk-cloudwatch aws-sdk-sns aws-sdk-sts aws-sdk-sso \
             aws-sdk-ssooidc aws-sdk-elasticloadbalancingv2 octocrab tauri mlops-console; do
  CARGO_TEST_FLAGS+=(--config "profile.release.package.$crate.opt-level=0")
done
# The build starts now, beside the set-up (apt, pip and tauri-driver's download mostly wait on the
# network and the disk): `--keep-going` compiles everything that does not need a system library
# the set-up has yet to install, with the very flags of the build stage below, which then only
# finishes what is left (on a cold machine the set-up's 3 minutes come off the build's 20).
# Every target cargo test runs, in the mode it runs them (the library, binaries and integration
# tests with the test harness, examples as plain programs: `cargo test --all-targets` would build
# them a second time with the harness, 20 s for nothing), plus the benchmarks. `cargo build` makes
# the same units as `cargo test --no-run` and, unlike it, can `--keep-going`.
build_targets() {
  cargo build "${CARGO_TEST_FLAGS[@]}" --lib --bins --tests --benches --examples "$@"
}
early_log=$(mktemp)
build_targets --keep-going >"$early_log" 2>&1 &
early_pid=$!
stage "set-up (apt, Python venv, tauri-driver)" bash scripts/setup.sh
source scripts/env.sh

# In the background while the build runs: the local Debian base image the container tests and the
# deploy tests build on (debootstrap downloads and unpacks; it hardly needs the CPU).
base_log=$(mktemp)
bash tests/support/local-base-image.sh >"$base_log" 2>&1 &
base_pid=$!
base_image() {
  if ! wait "$base_pid"; then
    cat "$base_log" >&2
    return 1
  fi
  cat "$base_log"
}

stage "UI logic (node --test, no packages)" node --test ui/test/
stage "cargo fmt --check" cargo fmt --all --check

# --timings writes where the build's time went to $CARGO_TARGET_DIR/cargo-timings/.
build_all() {
  wait "$early_pid" 2>/dev/null || true  # its failures (missing system libraries) are redone here
  early_pid=
  build_targets --timings
}
stage "build every target + clippy -D warnings (release; begun beside the set-up)" build_all

# tauri-build writes an allow-/deny- permission file per command into src-tauri/permissions/,
# which its build script also watches: they are committed, since a fresh clone's build creating them
# made the next cargo call rebuild the app (2 minutes of every CI run). A command added or renamed
# must come with its regenerated file.
permissions_committed() {
  if ! git rev-parse --git-dir >/dev/null 2>&1; then
    echo "not a git checkout: nothing to compare"
    return 0
  fi
  local untracked
  untracked=$(git ls-files --others --exclude-standard src-tauri/permissions)
  if ! git diff --exit-code --stat -- src-tauri/permissions || [ -n "$untracked" ]; then
    echo "src-tauri/permissions/ changed in the build: commit the regenerated files ${untracked}" >&2
    return 1
  fi
}
stage "generated permission files committed" permissions_committed

stage "local base image (built in the background)" base_image

# The deploy tests need the Docker engine; here its absence is a failure, not a skip.
export MLOPS_REQUIRE_DOCKER=1

# The deploy engine's Docker tests (console-core/tests/deploy.rs: about 6 minutes, one at a time
# among themselves, mostly waiting on Docker, SSH and minute boundaries) run in the background beside
# the rest of cargo test and pytest: their compose projects, registry, image repository and labels
# are their own. Their binary is the one just built; its output is shown when it is waited for, at
# the end, and its failure fails the suite.
deploy_bin=$(cargo test "${CARGO_TEST_FLAGS[@]}" --test deploy --no-run --message-format=json |
  python3 -c 'import json, sys; print(*[m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")])')
deploy_log=$(mktemp)
deploy_t0=$SECONDS
(cd console-core && exec "$deploy_bin") >"$deploy_log" 2>&1 &
deploy_pid=$!
# The fleet test (three sshd hosts behind HAProxy, rolling deploys and a resize under the replay
# tool's load, about 6 minutes) likewise, in a process of its own beside the deploy tests, and after
# it the first-deploy flow (console-core/tests/first_deploy.rs: moto, the keychain, the GitHub
# double and a loopback host, about 75 s), which cargo test skips too: the foreground is the
# suite's bottleneck and this lane had the room.
test_bin() {
  cargo test "${CARGO_TEST_FLAGS[@]}" --test "$1" --no-run --message-format=json |
    python3 -c 'import json, sys; print(*[m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")])'
}
fleet_bin=$(test_bin fleet)
first_deploy_bin=$(test_bin first_deploy)
fleet_log=$(mktemp)
fleet_t0=$SECONDS
(cd console-core && export MLOPS_REPLAY_BIN="$CARGO_TARGET_DIR/release/replay" &&
  "$fleet_bin" --nocapture && exec "$first_deploy_bin") >"$fleet_log" 2>&1 &
fleet_pid=$!
# background_done PID LOG T0: waits for tests started in the background, shows their output and how
# long they ran; their failure is the stage's.
background_done() {
  local rc=0
  wait "$1" || rc=$?
  cat "$2"
  echo "(ran in the background for $((SECONDS - $3)) s)"
  return "$rc"
}

export INFERENCE_BIN="$CARGO_TARGET_DIR/release/inference"
export MLOPS_REPLAY_BIN="$CARGO_TARGET_DIR/release/replay"
export MLOPS_CONSOLE_BIN="$CARGO_TARGET_DIR/release/mlops-console"

# The sandbox journey through the window (about 4 minutes, most of them waiting for the service's
# once-a-minute alert evaluations) and the fleet's (three hosts behind HAProxy, under a minute) run
# one after the other in the background, beside cargo test and the other system tests: their X
# displays (Xvfb picks a free one), ports, compose projects, keychains and data directories are
# their own, and the sandbox images they share are built under a lock.
journeys=(tests/test_desktop_e2e.py::test_wizard_to_sandbox_deploy_dashboard_drift_and_rollback
          tests/test_desktop_fleet.py)
journey_log=$(mktemp)
journey_t0=$SECONDS
python -m pytest "${journeys[@]}" -q -rs --durations=5 >"$journey_log" 2>&1 &
journey_pid=$!

MLOPS_DEPLOY_TESTS_RUN_APART=1 stage "cargo test (release; the deploy tests apart)" cargo test "${CARGO_TEST_FLAGS[@]}"

stage "system tests (pytest; the two journeys apart)" python -m pytest tests -q -rs --durations=15 \
  --deselect "${journeys[0]}" --ignore "${journeys[1]}"
stage "sandbox and fleet journeys (test_desktop_e2e.py, test_desktop_fleet.py; in the background since cargo test)" \
  background_done "$journey_pid" "$journey_log" "$journey_t0"
stage "deploy tests (console-core/tests/deploy.rs, in the background since cargo test)" \
  background_done "$deploy_pid" "$deploy_log" "$deploy_t0"
stage "fleet test, then the first-deploy flow (console-core/tests/fleet.rs, first_deploy.rs; in the background)" \
  background_done "$fleet_pid" "$fleet_log" "$fleet_t0"
