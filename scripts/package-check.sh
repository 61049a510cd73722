#!/usr/bin/env bash
# The release check of the Linux package, run by hand before a release (minutes: it builds
# Tauri's bundler once): builds the .deb with scripts/package.sh, then installs it into a clean
# Debian container and starts it (scripts/package_check.py). Its last figures are in the README.
#   bash scripts/package-check.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/env.sh"
cd "$root"
bash scripts/setup.sh
deb=$(BUNDLES=deb bash scripts/package.sh | grep '\.deb$' | tail -n 1)
[ -n "$deb" ] || { echo "package-check: no .deb was built" >&2; exit 1; }
bash tests/support/local-base-image.sh
"$MLOPS_VENV/bin/python" scripts/package_check.py "$deb"
