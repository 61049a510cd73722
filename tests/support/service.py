"""Starts the release `inference` binary on a free loopback port for a system test."""
from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support import net, project


@contextlib.contextmanager
def running(*args: str, env: dict[str, str] | None = None,
            model_dir: Path | None = None) -> Iterator[tuple[str, list[bytes]]]:
    """Yields (base URL, [stderr]) while the service runs the bundled model (or `model_dir`); on exit it is
    stopped with SIGTERM, must exit 0, and its stderr is put in the list for the caller's own checks."""
    binary = project.release_binary()
    assert binary.is_file(), f"{binary} is missing: build it with cargo build --release -p inference-image"
    port = net.free_port()
    proc = subprocess.Popen(
        [str(binary), "serve", "--model-dir", str(model_dir or project.MODEL_DIR), "--bind", f"127.0.0.1:{port}", *args],
        env={**project.env_sh(), "RUST_LOG": "warn", **(env or {})},
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    stderr: list[bytes] = []
    try:
        net.wait_for_http(url + "/readyz", timeout=30)
        yield url, stderr
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        stderr.append(err)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert b"panicked" not in err, err.decode(errors="replace")
