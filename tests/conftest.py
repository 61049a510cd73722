"""Shared fixtures for the Python system tests. Reusable helpers live in tests/support/
(`from support import net, docker, project`); this file only wires them into pytest."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# Make `support` importable from every test file, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import docker, net, project  # noqa: E402

_METRICS: dict[str, dict[str, object]] = {}


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return net.free_port()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skips the test when no Docker engine answers (the only reason container tests may skip)."""
    reason = docker.engine_unreachable_reason()
    if reason:
        pytest.skip(f"Docker engine not reachable ({reason})")


@pytest.fixture()
def display():
    """A virtual X display (Xvfb) for the desktop app's journeys."""
    from support.desktop import Xvfb

    x = Xvfb()
    yield x.display
    x.close()


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    """The release binaries the desktop journeys start (the app, the service, the replay tool)."""
    from support.desktop import release_binaries

    return release_binaries(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="session")
def sandbox_images(binaries) -> None:
    """The sandbox's local images (v1, v2, broken…), built once per run by scripts/sandbox-images.sh
    from the release `inference` binary; a journey that deploys to the sandbox needs them."""
    import os
    import shutil
    import subprocess

    from support.desktop import need

    need(shutil.which("docker") is not None, "docker is not installed")
    need(subprocess.run(["docker", "info"], capture_output=True).returncode == 0, "no Docker engine answers")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, INFERENCE_BIN=str(binaries["inference"]))
    r = subprocess.run(["bash", str(root / "scripts/sandbox-images.sh")], env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="session")
def metrics():
    """`metrics(group)` returns a dict to record measured numbers in. They are printed at the end of
    the run and written to test-artifacts/metrics-<group>.json (TEST_ARTIFACTS_DIR overrides the folder)."""
    def group(name: str) -> dict[str, object]:
        return _METRICS.setdefault(name, {})
    return group


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    groups = {k: v for k, v in _METRICS.items() if v}
    if not groups:
        return
    terminalreporter.section("measurements")
    for name, values in groups.items():
        terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        try:
            project.ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
            (project.ARTIFACTS_DIR / f"metrics-{name}.json").write_text(json.dumps(values, indent=2) + "\n")
        except OSError as e:
            terminalreporter.write_line(f"(could not write metrics for {name}: {e})")
