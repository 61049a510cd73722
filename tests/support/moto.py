"""moto_server on loopback standing in for AWS, for the desktop app's EC2 journey.

One server per test (so no state leaks between tests), with Canonical-owned Ubuntu images loaded
through MOTO_AMIS_PATH (moto's own list has only old ones): the same images, ids and names as
console-core/tests/support/moto.rs, so the newest amd64 LTS is `NEWEST_LTS` here too. `client()`
is a boto3 client for the server with the keys the test gave the app. Stops on `close()`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import net
from .net import LOOPBACK, free_port

CANONICAL = "099720109477"
AMIS = [
    ("ami-0a1b2c3d4e5f60001", "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-20191107"),
    ("ami-0a1b2c3d4e5f60002", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20250601"),
    ("ami-0a1b2c3d4e5f60003", "ubuntu/images/hvm-ssd/ubuntu-mantic-23.10-amd64-server-20240701"),
    ("ami-0a1b2c3d4e5f60004", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115"),
    ("ami-0a1b2c3d4e5f60005", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20251020"),
    ("ami-0a1b2c3d4e5f60006", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20251101"),
]
NEWEST_LTS = "ami-0a1b2c3d4e5f60005"


def moto_bin() -> str | None:
    """moto_server from the project's venv (MLOPS_VENV), the venv pytest runs in, or PATH."""
    venv = os.environ.get("MLOPS_VENV")
    for cand in [Path(venv) / "bin/moto_server" if venv else None, Path(sys.executable).parent / "moto_server"]:
        if cand is not None and cand.is_file():
            return str(cand)
    return shutil.which("moto_server")


def _amis() -> list[dict]:
    return [{"ami_id": i, "name": n, "description": "Canonical, Ubuntu", "owner_id": CANONICAL, "public": True,
             "virtualization_type": "hvm", "architecture": "arm64" if "arm64" in n else "x86_64",
             "state": "available", "platform": None, "image_type": "machine", "hypervisor": "xen",
             "root_device_name": "/dev/sda1", "root_device_type": "ebs", "sriov": "simple"} for i, n in AMIS]


class Moto:
    def __init__(self, access_key_id: str, secret_access_key: str, region: str = "us-east-1") -> None:
        binary = moto_bin()
        if binary is None:
            raise RuntimeError("moto_server is not installed (scripts/setup.sh installs moto[server])")
        self.keys = (access_key_id, secret_access_key)
        self.region = region
        self._tmp = tempfile.TemporaryDirectory(prefix="mlops-e2e-moto-")
        self.dir = Path(self._tmp.name)
        amis = self.dir / "amis.json"
        amis.write_text(json.dumps(_amis()))
        self.log_file = self.dir / "moto.log"
        last = ""
        for _ in range(3):
            self.port = free_port()
            self.url = f"http://{LOOPBACK}:{self.port}"
            with open(self.log_file, "wb") as log:
                self.proc = subprocess.Popen([binary, "-H", LOOPBACK, "-p", str(self.port)],
                                             env=dict(os.environ, MOTO_AMIS_PATH=str(amis)),
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready(30):
                return
            self._stop()
            last = self.log()
            if "already in use" not in last:
                break
        self._tmp.cleanup()
        raise RuntimeError(f"moto_server did not start:\n{last}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if net.http_request("GET", f"{self.url}/moto-api/", timeout=2).status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def client(self, service: str = "ec2"):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id=self.keys[0], aws_secret_access_key=self.keys[1])

    def log(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def _stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self._stop()
        self._tmp.cleanup()
