"""Installs the console's .deb into a clean Debian container and starts it: the package check of
scripts/package-check.sh (not part of the fast suite: building the bundler takes minutes).

    python scripts/package_check.py path/to/mlops-console_<version>_amd64.deb

The container is the locally built Debian base (tests/support/local-base-image.sh, what
debian:bookworm-slim would be). apt installs the package with the dependencies it declares, from
Debian's mirror. Then, in the container:
  - the files a user needs are where they should be: the app, the service's binary and the traffic
    tool beside it, the desktop entry and icon, ONNX Runtime's library in the app's resources, which
    loads with nothing else installed;
  - the card builder behind "Your own model" runs with that library and inspects the bundled model;
  - the app starts on an X display of the host (Xvfb, its socket mounted) and draws its first page,
    which is saved as test-artifacts/package/first-page.png.
Prints one line of figures (package size, install time, time to the first window) for the README."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.desktop import Xvfb  # noqa: E402

IMAGE = os.environ.get("LOCAL_BASE_IMAGE", "mlops-local/debian:bookworm")
RESOURCES = "/usr/lib/MLOps Console"


def sh(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(args[:6])}… failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def main(deb: Path) -> None:
    deb = deb.resolve()
    assert deb.is_file() and deb.suffix == ".deb", f"not a .deb: {deb}"
    out = ROOT / "test-artifacts" / "package"
    out.mkdir(parents=True, exist_ok=True)
    x = Xvfb()
    n = x.display.lstrip(":")
    name = f"mlops-package-check-{os.getpid()}"
    model = ROOT / "inference-image" / "model" / "wbc-autoencoder"
    try:
        sh("docker", "run", "-d", "--rm", "--name", name, "--shm-size", "256m",
           "-v", f"{deb}:/tmp/mlops-console.deb:ro",
           "-v", f"{model}:/tmp/model:ro",
           "-v", f"/tmp/.X11-unix/X{n}:/tmp/.X11-unix/X{n}",
           "-e", f"DISPLAY=:{n}", IMAGE, "sleep", "infinity")

        def run(script: str, timeout: float = 600) -> str:
            return sh("docker", "exec", name, "sh", "-euc", script, timeout=timeout).stdout

        t0 = time.monotonic()
        run(f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/mlops-console.deb >/tmp/apt.log 2>&1 "
            "|| { tail -n 40 /tmp/apt.log; exit 1; }", timeout=1200)
        install_s = time.monotonic() - t0

        package = run("dpkg-deb -f /tmp/mlops-console.deb Package").strip()
        files = run(f"dpkg -L {package}").split("\n")
        for want in ["/usr/bin/mlops-console", "/usr/bin/inference", "/usr/bin/replay",
                     "/usr/share/applications/MLOps Console.desktop"]:
            assert want in files, f"{want} is not in the package:\n" + "\n".join(files)
        assert any(f.startswith("/usr/share/icons/") and f.endswith(".png") for f in files), files
        ort = [f for f in files if f.startswith(f"{RESOURCES}/onnxruntime/libonnxruntime.so.")]
        assert len(ort) == 1, files
        missing = run(f"ldd '{ort[0]}' | grep 'not found' || true").strip()
        assert not missing, f"ONNX Runtime's library lacks: {missing}"
        desktop = run("cat '/usr/share/applications/MLOps Console.desktop'")
        assert "Exec=mlops-console" in desktop and "Categories=Development" in desktop, desktop
        version = run("inference --version").strip()

        # The card builder with the bundled library only (no ORT_DYLIB_PATH, no Python).
        card = run(f"ORT_DYLIB_PATH='{ort[0]}' inference card --task autoencoder --model /tmp/model/model.onnx "
                   "--reference /tmp/model/reference.csv --name packaged --version 1.0.0 --out /tmp/card "
                   ">/tmp/card.log 2>&1 || { tail -n 20 /tmp/card.log; exit 1; }; cat /tmp/card/model_card.json",
                   timeout=300)
        assert json.loads(card)["name"] == "packaged", card[:500]

        # The app on the host's X display: its window, then its first page.
        t0 = time.monotonic()
        sh("docker", "exec", "-d", "-e", "HOME=/root", name, "sh", "-c",
           "mlops-console >/tmp/app.log 2>&1")
        deadline = time.monotonic() + 60
        while "MLOps Console" not in sh("xwininfo", "-display", f":{n}", "-root", "-tree", check=False).stdout:
            if time.monotonic() > deadline:
                log = sh("docker", "exec", name, "cat", "/tmp/app.log", check=False).stdout
                raise SystemExit(f"no MLOps Console window within 60 s; the app printed:\n{log[-3000:]}")
            time.sleep(0.25)
        window_s = time.monotonic() - t0
        time.sleep(5)  # the page's first paint and its first data
        shot = out / "first-page.png"
        sh("import", "-display", f":{n}", "-window", "root", str(shot))
        spread = float(sh("convert", str(shot), "-format", "%[fx:standard_deviation]", "info:").stdout)
        assert spread > 0.05, f"the screenshot is nearly one colour (deviation {spread:.3f}): nothing drawn"
        alive = sh("docker", "exec", name, "pgrep", "-x", "mlops-console", check=False).returncode == 0
        assert alive, sh("docker", "exec", name, "cat", "/tmp/app.log", check=False).stdout[-3000:]
        size_mb = deb.stat().st_size / 1e6
        print(f"package-check: {deb.name} {size_mb:.1f} MB; apt install into a clean {IMAGE} {install_s:.0f} s; "
              f"{version}; card builder ran with the bundled ONNX Runtime; first window after {window_s:.1f} s; "
              f"screenshot {shot.relative_to(ROOT)}")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        x.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
