#!/usr/bin/env bash
# Builds the desktop packages with Tauri's bundler (tauri-cli, pinned as in the release workflow):
#   bash scripts/package.sh            # .deb and .rpm (what this machine can make offline)
#   BUNDLES=deb bash scripts/package.sh
# The packages land in $CARGO_TARGET_DIR/release/bundle/{deb,rpm}/; their paths are printed last.
# Installs tauri-cli under $MLOPS_CACHE/bin once (a few minutes to build); its bundler writes .rpm
# files itself (no rpmbuild needed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/env.sh"
cd "$root"
TAURI_CLI_VERSION=$(sed -n 's/^  TAURI_CLI_VERSION: "\(.*\)"$/\1/p' .github/workflows/release.yml)
BUNDLES=${BUNDLES:-deb,rpm}

if ! cargo-tauri --version 2>/dev/null | grep -qx "tauri-cli $TAURI_CLI_VERSION"; then
  echo "package: installing tauri-cli $TAURI_CLI_VERSION into $MLOPS_CACHE" >&2
  cargo install tauri-cli --version "=$TAURI_CLI_VERSION" --locked --root "$MLOPS_CACHE" \
    --target-dir "$MLOPS_CACHE/tauri-cli-target"
fi
PYTHON=${PYTHON:-$MLOPS_VENV/bin/python} bash scripts/bundle-inputs.sh
(cd src-tauri && cargo-tauri build --config tauri.bundle.json --bundles "$BUNDLES")
find "$CARGO_TARGET_DIR/release/bundle" -maxdepth 2 -type f \( -name '*.deb' -o -name '*.rpm' \) -newer Cargo.toml -print
