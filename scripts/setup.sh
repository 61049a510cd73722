#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: apt packages, a pinned Python venv (tooling and the
# ONNX Runtime library), nothing else. Safe to run on every invocation: each step checks first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

APT_PACKAGES=(
  wrk             # HTTP load generator for the benchmarks
  debootstrap     # builds the local base image (this Docker engine cannot pull)
  procps          # ps/pgrep for the RSS measurements and process checks
  openssh-server  # sshd: the private SSH server standing in for the EC2 host in console-core's tests
  openssh-client  # ssh, ssh-keygen: host and client keys, fingerprints, the stand-in smoke test
  docker-registry # a local registry with htpasswd auth, standing in for GHCR
  apache2-utils   # htpasswd, to create the registry's bcrypt password file
  shellcheck      # actionlint checks run: blocks with it; a test checks the deploy script
  gnome-keyring   # the OS keychain (Secret Service) the vault tests run against, on a private D-Bus
  dbus-bin        # dbus-run-session: a private session bus for those tests
  libsecret-tools # secret-tool: the tests read the keychain independently of the code under test
  # The desktop app (Tauri 2 on WebKitGTK): build dependencies...
  pkg-config build-essential file libssl-dev libwebkit2gtk-4.1-dev libxdo-dev librsvg2-dev
  # ...and what runs it headless and drives it in the end-to-end tests.
  xvfb xauth webkit2gtk-driver imagemagick
  dunst           # a desktop notification service on the virtual display: alerts' notifications are seen
  haproxy         # the load balancer in front of a fleet of local hosts (runtime API: drain, enable)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

req="$MLOPS_ROOT/scripts/requirements.txt"
stamp="$MLOPS_VENV/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$MLOPS_VENV/bin/python" ]; then
  echo "setup: creating Python venv in $MLOPS_VENV"
  python3 -m venv "$MLOPS_VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned Python packages"
  "$MLOPS_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
# Re-read the library path now that the wheel is installed.
unset ORT_DYLIB_PATH
source "$MLOPS_ROOT/scripts/env.sh"
if [ ! -f "$ORT_DYLIB_PATH" ]; then
  echo "setup: ONNX Runtime library not found in the venv (expected onnxruntime==$ORT_VERSION)" >&2
  exit 1
fi

# tauri-driver: the WebDriver front that starts WebKitWebDriver for the desktop app's end-to-end
# tests. Installed from crates.io into the cache, not into ~/.cargo.
TAURI_DRIVER_VERSION=2.1.0
if [ "$("$MLOPS_CACHE/bin/tauri-driver" --version 2>/dev/null | awk '{print $2}')" != "$TAURI_DRIVER_VERSION" ]; then
  echo "setup: installing tauri-driver $TAURI_DRIVER_VERSION"
  cargo install -q --locked --root "$MLOPS_CACHE" --target-dir "$MLOPS_CACHE/target-tools" \
    tauri-driver --version "=$TAURI_DRIVER_VERSION"
fi
