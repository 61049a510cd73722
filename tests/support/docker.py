"""Docker helpers for system tests: engine detection, legacy-builder builds that clean up after
themselves, docker-compose invocation and health waits."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


def run(cmd: Sequence[str], *, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command, capturing text output; on failure the error message carries both streams."""
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}\n--- stdout\n{p.stdout[-4000:]}"
                           f"\n--- stderr\n{p.stderr[-4000:]}")
    return p


def engine_unreachable_reason() -> str | None:
    """None when a Docker engine answers; otherwise why not (for pytest.skip)."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        p = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "`docker version` got no answer within 20 s"
    if p.returncode != 0:
        return f"`docker version` failed: {p.stderr.strip()[:300]}"
    return None


def compose_command() -> list[str]:
    """`docker-compose` (v1, what the hosts run) or else the `docker compose` plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if run(["docker", "compose", "version"], check=False, timeout=20).returncode == 0:
        return ["docker", "compose"]
    raise RuntimeError("neither docker-compose nor the docker compose plugin is installed")


def legacy_build_env() -> dict[str, str]:
    """Environment for `docker build` with the classic builder: it sees local-only images (an imported
    base image) whatever buildx driver is configured, and it is what this engine has."""
    env = os.environ.copy()
    env["DOCKER_BUILDKIT"] = "0"
    return env


_STEP_FROM = re.compile(r"^Step \d+/\d+ : FROM ", re.IGNORECASE)
_IMAGE_ID = re.compile(r"^ ---> ([0-9a-f]{12,64})\s*$")


@dataclass
class Build:
    tag: str
    seconds: float = 0.0
    output: str = ""
    # Final images of the stages before the last one: the legacy builder leaves them dangling.
    stage_images: list[str] = field(default_factory=list)

    def remove(self) -> None:
        """Removes the tagged image and the dangling images of the earlier stages (best effort)."""
        run(["docker", "image", "rm", "-f", self.tag], check=False, timeout=120)
        for image_id in reversed(self.stage_images):
            # Not forced: an image another build depends on stays.
            run(["docker", "image", "rm", image_id], check=False, timeout=120)


def build_image(context: Path, dockerfile: Path, tag: str, build_args: dict[str, str],
                timeout: float = 1800) -> Build:
    """`docker build` with the classic builder. Returns a Build whose remove() leaves nothing behind,
    also when the build failed (then RuntimeError carries the output and the partial images are removed)."""
    cmd = ["docker", "build", "--force-rm", "-f", str(dockerfile), "-t", tag]
    for k, v in build_args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    cmd.append(str(context))
    b = Build(tag)
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=legacy_build_env())
    b.seconds = time.monotonic() - start
    b.output = p.stdout + p.stderr
    last_id = None
    for line in p.stdout.splitlines():
        if _STEP_FROM.match(line) and last_id:
            b.stage_images.append(last_id)
            last_id = None
        m = _IMAGE_ID.match(line)
        if m:
            last_id = m.group(1)
    if p.returncode != 0:
        if last_id:
            b.stage_images.append(last_id)
        b.remove()
        raise RuntimeError(f"docker build failed ({p.returncode}):\n{b.output[-6000:]}")
    return b


def inspect(obj: str) -> dict[str, Any]:
    return json.loads(run(["docker", "inspect", obj], timeout=30).stdout)[0]


def image_size(tag: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], timeout=30).stdout.strip())


def logs(container: str, tail: int = 200) -> str:
    p = run(["docker", "logs", "--tail", str(tail), container], check=False, timeout=30)
    return p.stdout + p.stderr


def wait_healthy(container: str, timeout: float = 90.0, interval: float = 0.25) -> float:
    """Polls `docker inspect` until the container's health is `healthy`; returns the seconds waited.
    Fails early (with the container's logs and last probe outputs) if it turns unhealthy or stops."""
    start = time.monotonic()
    while True:
        state = inspect(container)["State"]
        health = (state.get("Health") or {})
        status = health.get("Status")
        if status == "healthy":
            return time.monotonic() - start
        problem = None
        if state.get("Status") not in ("created", "running", "restarting"):
            problem = f"container is {state.get('Status')} (exit code {state.get('ExitCode')})"
        elif status == "unhealthy":
            problem = "container turned unhealthy"
        elif state.get("RestartCount", 0) > 0:
            problem = f"container restarted {state['RestartCount']} time(s)"
        elif time.monotonic() - start > timeout:
            problem = f"not healthy after {timeout:.0f} s (health: {status})"
        if problem:
            probes = "\n".join(f"  exit {p.get('ExitCode')}: {p.get('Output', '').strip()[:300]}"
                               for p in health.get("Log") or [])
            raise AssertionError(f"{container}: {problem}\n--- health probes\n{probes}\n"
                                 f"--- container logs\n{logs(container)}")
        time.sleep(interval)


def compose_down(project: str, compose_dir: Path, env: dict[str, str] | None = None) -> None:
    """Removes a compose project with its volumes, whether or not its directory still exists."""
    subprocess.run(["docker-compose", "-p", project, "down", "-v", "--remove-orphans"],
                   cwd=compose_dir if compose_dir.is_dir() else None, capture_output=True, timeout=120,
                   env=dict(os.environ, **(env or {})))
