#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this). Installs what it needs first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source scripts/env.sh

step() { printf '\n=== %s\n' "$*"; }

step "UI logic (node --test, no packages)"
node --test ui/test/

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# One release build serves every test: the Rust tests, and the system tests that put the same
# binary into a container image.
# The tests need optimised code (the system tests run the binary under load), not link-time
# optimisation: without LTO each test binary links in seconds instead of minutes. Benchmarks and
# scripts/run.sh keep the full release profile.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
step "cargo test (release)"
# The deploy tests need the Docker engine; here its absence is a failure, not a skip.
export MLOPS_REQUIRE_DOCKER=1
cargo test --workspace --release

step "system tests (pytest)"
export INFERENCE_BIN="$CARGO_TARGET_DIR/release/inference"
export MLOPS_REPLAY_BIN="$CARGO_TARGET_DIR/release/replay"
export MLOPS_CONSOLE_BIN="$CARGO_TARGET_DIR/release/mlops-console"
python -m pytest tests -q -rs
