"""Stand-ins for a remote host and its registry, for the desktop app's SSH-host journey.

- `Sshd`: a private OpenSSH server on 127.0.0.1 with a fresh ed25519 host key and one ed25519 client
  key. Its sessions run on this machine, so their `docker` commands reach this machine's engine, with
  `DOCKER_CONFIG` pointing into the instance's own directory (a `docker login` on the "host" never
  touches the user's ~/.docker).
- `Registry`: Debian's `docker-registry` on 127.0.0.1 with htpasswd auth, standing in for GHCR
  (Docker treats 127.0.0.0/8 registries as insecure, so plain HTTP works for login, push and pull).
- `GitHubDouble`: tests/doubles/github_double.py as a process, with a fresh token (given on stdin).

The Rust deploy tests have their own copies in console-core/tests/support/ (sshd.rs, registry.rs);
these are the few parts a browser-driven test needs. Both stop their server on `close()`.
"""
from __future__ import annotations

import base64
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import net
from .net import LOOPBACK, free_port

SSHD = "/usr/sbin/sshd"
REGISTRY = "/usr/bin/docker-registry"


def _run(cmd: list[str], stdin: bytes | None = None, timeout: float = 60) -> str:
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
    return p.stdout.decode()


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Sshd:
    def __init__(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        self._tmp = tempfile.TemporaryDirectory(prefix="mlops-e2e-sshd-")
        self.dir = Path(self._tmp.name)
        host_key = self.dir / "ssh_host_ed25519_key"
        self.key_file = self.dir / "id_ed25519"
        for f, comment in [(host_key, "mlops-e2e-host"), (self.key_file, "mlops-e2e-client")]:
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(f)])
        (self.dir / "authorized_keys").write_text((self.dir / "id_ed25519.pub").read_text())
        self.private_key = self.key_file.read_text()
        # "256 SHA256:... comment (ED25519)": the pinned fingerprint, as the wizard asks for it.
        self.fingerprint = _run(["ssh-keygen", "-lf", f"{host_key}.pub"]).split()[1]
        self.user = _run(["id", "-un"]).strip()
        self.docker_config = self.dir / "docker-config"
        self.docker_config.mkdir()
        self.log_file = self.dir / "sshd.log"
        last = ""
        for _ in range(3):
            self.port = free_port()
            (self.dir / "sshd_config").write_text(
                f"ListenAddress {LOOPBACK}\nPort {self.port}\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                f"PidFile {self.dir / 'sshd.pid'}\nMaxSessions 50\nMaxStartups 50\n"
                f"SetEnv DOCKER_CONFIG={self.docker_config}\n")
            with open(self.log_file, "wb") as log:
                self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                self._wait_banner()
                return
            except RuntimeError as e:
                self.proc.kill()
                self.proc.wait()
                last = f"{e}\n--- sshd log\n{_tail(self.log_file)}"
                if "Address already in use" not in last:
                    break
        raise RuntimeError(f"sshd did not start: {last}")

    def _wait_banner(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no SSH banner on port {self.port} within 10 s")

    def log(self) -> str:
        return _tail(self.log_file)

    def close(self) -> None:
        _stop(self.proc)
        self._tmp.cleanup()


class Registry:
    def __init__(self, user: str = "mlops-e2e") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mlops-e2e-registry-")
        self.dir = Path(self._tmp.name)
        self.user = user
        self.password = secrets.token_hex(16)
        htpasswd = self.dir / "htpasswd"
        # -i: the password comes from stdin, never from a command line.
        _run(["htpasswd", "-iBc", str(htpasswd), self.user], stdin=f"{self.password}\n".encode())
        (self.dir / "storage").mkdir()
        self.log_file = self.dir / "registry.log"
        last = ""
        for _ in range(3):
            self.addr = f"{LOOPBACK}:{free_port()}"
            (self.dir / "config.yml").write_text(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'storage'}\n"
                f"http:\n  addr: {self.addr}\n  secret: {secrets.token_hex(16)}\n"
                f"auth:\n  htpasswd:\n    realm: mlops-e2e\n    path: {htpasswd}\n")
            with open(self.log_file, "wb") as log:
                self.proc = subprocess.Popen([REGISTRY, "serve", str(self.dir / "config.yml")],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return
            self.proc.kill()
            self.proc.wait()
            last = _tail(self.log_file)
            if "address already in use" not in last:
                break
        raise RuntimeError(f"docker-registry did not start:\n{last}")

    def _get(self, path: str, auth: bool) -> net.HttpResponse:
        headers = {}
        if auth:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return net.http_request("GET", f"http://{self.addr}{path}", timeout=2, headers=headers)

    def _wait_ready(self) -> bool:
        """True once GET /v2/ answers 401 without and 200 with the credentials."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self._get("/v2/", False).status == 401:
                    return self._get("/v2/", True).status == 200
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def push(self, local: str, repo: str, tag: str) -> str:
        """Pushes local image `local` as `<addr>/<repo>:<tag>` (logging in with a throw-away docker
        config, the password on stdin), then removes that local tag so a later pull really pulls."""
        ref = f"{self.addr}/{repo}:{tag}"
        with tempfile.TemporaryDirectory(prefix="mlops-e2e-docker-") as cfg:
            _run(["docker", "--config", cfg, "login", self.addr, "-u", self.user, "--password-stdin"],
                 stdin=self.password.encode())
            _run(["docker", "tag", local, ref])
            try:
                _run(["docker", "--config", cfg, "push", ref], timeout=600)
            finally:
                _run(["docker", "rmi", ref])
        return ref

    def tags(self, repo: str) -> list[str]:
        r = self._get(f"/v2/{repo}/tags/list", True)
        assert r.status == 200, f"tags of {repo}: HTTP {r.status} {r.body[:200]!r}"
        return r.json().get("tags") or []

    def close(self) -> None:
        _stop(self.proc)
        self._tmp.cleanup()



class GitHubDouble:
    SCRIPT = Path(__file__).resolve().parents[1] / "doubles" / "github_double.py"

    def __init__(self) -> None:
        self.token = "ghp_" + secrets.token_hex(18)
        self.proc = subprocess.Popen([sys.executable, str(self.SCRIPT), "--token-stdin"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(self.token + "\n")
        self.proc.stdin.close()
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            _stop(self.proc)
            raise RuntimeError(f"the GitHub double did not start: {line}{self.proc.stdout.read()[-2000:]}")
        self.url = f"http://{LOOPBACK}:{int(line.split()[-1])}"

    def post(self, path: str, body: dict) -> None:
        r = net.http_request("POST", self.url + path, json_body=body)
        assert r.status == 200, f"POST {path}: {r.status} {r.body[:300]!r}"

    def state(self) -> dict:
        return net.http_get_json(self.url + "/_double/state")

    def close(self) -> None:
        _stop(self.proc)
