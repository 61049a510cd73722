#!/usr/bin/env bash
# What Tauri's bundler puts beside the app (src-tauri/tauri.bundle.json), prepared for this machine:
#   src-tauri/binaries/{inference,replay}-<target triple>[.exe]: the service's binary (the card
#     builder behind "Your own model", and the sandbox's local process) and the traffic tool;
#   src-tauri/resources/onnxruntime/: ONNX Runtime's shared library from the pinned PyPI wheel
#     (scripts/requirements.txt), so an installed console needs no Python.
# Used by scripts/package.sh here and by .github/workflows/release.yml on each platform's runner.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
target_dir=${CARGO_TARGET_DIR:-$root/target}
triple=$(rustc -vV | sed -n 's/^host: //p')
ext=""
case "$triple" in *windows*) ext=.exe ;; esac

cargo build --release --locked -p inference-image --bin inference -p traffic-replay --bin replay
mkdir -p src-tauri/binaries
for bin in inference replay; do
  cp "$target_dir/release/$bin$ext" "src-tauri/binaries/$bin-$triple$ext"
done

ort_version=$(sed -n 's/^onnxruntime==//p' scripts/requirements.txt)
python=${PYTHON:-python3}
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheels" "onnxruntime==$ort_version"
rm -rf src-tauri/resources/onnxruntime
"$python" - "$wheels" src-tauri/resources/onnxruntime <<'PY'
import pathlib, sys, zipfile

wheels, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True)
(wheel,) = wheels.glob("*.whl")
wanted = lambda name: (name.startswith("libonnxruntime.so.") or name == "onnxruntime.dll"
                       or (name.startswith("libonnxruntime.") and name.endswith(".dylib")))
with zipfile.ZipFile(wheel) as z:
    found = [n for n in z.namelist() if "/capi/" in n and wanted(n.rsplit("/", 1)[-1])]
    if not found:
        sys.exit(f"no ONNX Runtime library in {wheel.name}")
    for n in found:
        (out / n.rsplit("/", 1)[-1]).write_bytes(z.read(n))
        print(f"bundle-inputs: {n.rsplit('/', 1)[-1]} from {wheel.name}")
PY
echo "bundle-inputs: inference and replay for $triple"
