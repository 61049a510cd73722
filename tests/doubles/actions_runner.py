"""What a GitHub-hosted runner does with the `deploy` job of a workflow_dispatch run, for the GitHub
double: it reads the workflow file the repository holds (the one the console installed), runs the
job's `run:` steps with bash on this machine and its `appleboy/ssh-action` step with OpenSSH, with
`${{ }}` expressions taken from the run (inputs, repository, run id) and the repository's secrets and
variables (the plaintext the double decrypted from what the client sealed).

Two mappings, and only these, stand the loopback world in for GitHub's:
  - `ghcr.io` in the `REGISTRY` env and the image name is the stand-in registry's address;
  - the step's `port: 22` is the stand-in sshd's port.

Like appleboy/ssh-action: the host key must match the `fingerprint` input (SHA256), the key comes from
the `key` input, the `envs` are exported in front of the script. Unlike it, the key goes to a
private ssh-agent on stdin and the script (with the exported secrets) travels on the session's stdin,
so no secret reaches a file or a command line. Secret values are masked (`***`) in the log, as
GitHub masks them. A cancelled run's ssh client is stopped.

Only the `deploy` job runs (a dispatch skips `build`, whose `if:` wants a push); an expression or a
`uses:` this runner does not know fails the run with a message that says which.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import yaml

EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")
STEP_TIMEOUT_S = 600


class RunFailed(Exception):
    pass


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Job:
    """One dispatched run's `deploy` job. `run` is the double's run record (shared, under `lock`):
    this updates its status, conclusion, steps and log."""

    def __init__(self, run: dict, run_id: int, repo_full: str, repo: dict, workflow: str,
                 config: dict, lock: threading.Lock):
        self.run, self.run_id, self.full, self.lock = run, run_id, repo_full, lock
        self.secrets = dict(repo["secrets"])
        self.vars = dict(repo["variables"])
        self.workflow = workflow
        self.registry = config["registry"]
        self.ssh_port = int(config["ssh_port"])
        self.outputs: dict[str, dict[str, str]] = {}
        self.proc: subprocess.Popen | None = None

    # ---------------------------------------------------------------- the run record
    def log(self, text: str) -> None:
        for value in sorted(self.secrets.values(), key=len, reverse=True):
            for part in [value, *value.splitlines()]:
                if len(part.strip()) >= 4:
                    text = text.replace(part, "***")
        stamp = now()
        with self.lock:
            self.run["log"] += "".join(f"{stamp} {line}\n" for line in text.splitlines())

    def set_step(self, i: int, status: str, conclusion: str | None = None) -> None:
        with self.lock:
            s = self.run["steps"][i]
            s["status"], s["conclusion"] = status, conclusion
            s["started_at" if status == "in_progress" else "completed_at"] = now()

    def finish(self, conclusion: str) -> None:
        with self.lock:
            for s in self.run["steps"]:
                if s["status"] != "completed":
                    s["status"], s["conclusion"] = "completed", "skipped"
            self.run["status"], self.run["conclusion_now"] = "completed", conclusion

    def cancelled(self) -> bool:
        with self.lock:
            return bool(self.run["cancelled"])

    # ---------------------------------------------------------------- expressions
    def value(self, expr: str) -> str:
        inputs = self.run["inputs"]
        if m := re.fullmatch(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", expr):
            return self.secrets.get(m[1].upper(), "")
        if m := re.fullmatch(r"vars\.([A-Za-z_][A-Za-z0-9_]*)", expr):
            return self.vars.get(m[1].upper(), "")
        if m := re.fullmatch(r"inputs\.([A-Za-z_][A-Za-z0-9_-]*)", expr):
            return str(inputs.get(m[1], ""))
        if m := re.fullmatch(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", expr):
            return self.outputs.get(m[1], {}).get(m[2], "")
        if re.fullmatch(r"needs\.build\.outputs\.[A-Za-z0-9_-]+", expr):
            return ""  # the build job is skipped on a dispatch
        known = {"github.repository_owner": self.full.split("/")[0], "github.repository": self.full,
                 "github.run_id": str(self.run_id), "github.event_name": "workflow_dispatch",
                 "github.sha": "0" * 40}
        if expr in known:
            return known[expr]
        raise RunFailed(f"the double's runner does not know the expression `{expr}`")

    def expand(self, text) -> str:
        return EXPR.sub(lambda m: self.value(m[1]), str(text))

    # ---------------------------------------------------------------- the job
    def start(self) -> None:
        threading.Thread(target=self._main, daemon=True).start()

    def _main(self) -> None:
        try:
            steps = yaml.safe_load(self.workflow)["jobs"]["deploy"]["steps"]
        except Exception as e:  # noqa: BLE001 - a broken workflow file fails the run, as on GitHub
            self.log(f"##[error]the workflow file could not be read: {e}")
            return self.finish("failure")
        with self.lock:
            self.run["status"] = "in_progress"
            self.run["steps"] = [{"name": n, "number": i + 1, "status": "queued", "conclusion": None}
                                 for i, n in enumerate(["Set up job", *(s.get("name") or s.get("id") or "step"
                                                                         for s in steps), "Complete job"])]
        self.set_step(0, "in_progress")
        self.log(f"Runner: the GitHub double's actions runner; run {self.run_id} of {self.full}")
        self.set_step(0, "completed", "success")
        conclusion = "success"
        for i, step in enumerate(steps, start=1):
            if self.cancelled():
                conclusion = "cancelled"
                break
            self.set_step(i, "in_progress")
            self.log(f"##[group]Run {step.get('name') or step.get('uses') or 'step'}")
            try:
                ok = self._step(step)
            except RunFailed as e:
                self.log(f"##[error]{e}")
                ok = False
            if self.cancelled():
                self.set_step(i, "completed", "cancelled")
                conclusion = "cancelled"
                break
            self.set_step(i, "completed", "success" if ok else "failure")
            if not ok:
                conclusion = "failure"
                break
        last = len(steps) + 1
        self.set_step(last, "in_progress")
        self.log("Cleaning up orphan processes")
        self.set_step(last, "completed", "success")
        self.finish(conclusion)

    def _step(self, step: dict) -> bool:
        env = {k: self.expand(v) for k, v in (step.get("env") or {}).items()}
        if "run" in step:
            return self._bash(step, env)
        uses = str(step.get("uses", ""))
        if uses.startswith("appleboy/ssh-action@"):
            return self._ssh_action(step, env)
        raise RunFailed(f"the double's runner cannot run `uses: {uses}`")

    def _bash(self, step: dict, env: dict) -> bool:
        with tempfile.TemporaryDirectory(prefix="gh-double-step-") as d:
            out = Path(d) / "output"
            out.touch()
            full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GITHUB_OUTPUT": str(out),
                        "GITHUB_REPOSITORY": self.full, "GITHUB_RUN_ID": str(self.run_id), **env}
            p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", self.expand(step["run"])],
                               env=full_env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
            self.log(p.stdout + p.stderr)
            if p.returncode != 0:
                self.log(f"##[error]Process completed with exit code {p.returncode}.")
                return False
            outputs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        if "image" in outputs:
            outputs["image"] = self._registry(outputs["image"])
        self.outputs[step.get("id", "")] = outputs
        return True

    def _registry(self, name: str) -> str:
        return self.registry + name[len("ghcr.io"):] if name.startswith("ghcr.io") else name

    def _ssh_action(self, step: dict, env: dict) -> bool:
        w = {k: self.expand(v) for k, v in (step.get("with") or {}).items()}
        if str(w.get("port", "22")) != "22":
            raise RunFailed(f"the double maps port 22 to its sshd; the step asks for port {w['port']}")
        host, user, key, pin = w.get("host", ""), w.get("username", ""), w.get("key", ""), w.get("fingerprint", "")
        for name, v in [("host", host), ("username", user), ("key", key)]:
            if not v:
                raise RunFailed(f"ssh-action: the `{name}` input is empty (is its secret set?)")
        if "REGISTRY" in env:
            env["REGISTRY"] = self._registry(env["REGISTRY"])
        exports = "".join(f"export {n}={shlex.quote(env.get(n, ''))}\n"
                          for n in str(w.get("envs", "")).split(",") if n.strip())
        with tempfile.TemporaryDirectory(prefix="gh-double-ssh-") as d:
            known = Path(d) / "known_hosts"
            self._pin_host_key(host, pin, known)
            sock = Path(d) / "agent.sock"
            agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 10
                while not sock.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                agent_env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
                add = subprocess.run(["ssh-add", "-q", "-"], input=key.strip() + "\n", env=agent_env,
                                     capture_output=True, text=True, timeout=20)
                if add.returncode != 0:
                    raise RunFailed(f"ssh: no key found ({add.stderr.strip()})")
                return self._ssh(user, host, sock, known, exports + str(w.get("script", "")))
            finally:
                agent.terminate()
                agent.wait(timeout=10)

    def _pin_host_key(self, host: str, pin: str, known: Path) -> None:
        scan = subprocess.run(["ssh-keyscan", "-p", str(self.ssh_port), host], capture_output=True, text=True,
                              timeout=20)
        lines = [ln for ln in scan.stdout.splitlines() if ln and not ln.startswith("#")]
        if not lines:
            raise RunFailed(f"ssh: dial tcp {host}:22: the host did not answer")
        matching = []
        for ln in lines:
            fp = subprocess.run(["ssh-keygen", "-lf", "-"], input=ln + "\n", capture_output=True, text=True,
                                timeout=10).stdout.split()
            if pin and len(fp) > 1 and fp[1].removeprefix("SHA256:") == pin.removeprefix("SHA256:"):
                matching.append(ln)
        if pin and not matching:
            raise RunFailed("ssh: handshake failed: ssh: host key fingerprint mismatch")
        known.write_text("\n".join(matching or lines) + "\n")

    def _ssh(self, user: str, host: str, sock: Path, known: Path, script: str) -> bool:
        cmd = ["ssh", "-F", "/dev/null", "-p", str(self.ssh_port), "-o", "BatchMode=yes",
               "-o", f"IdentityAgent={sock}", "-o", f"UserKnownHostsFile={known}",
               "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
               "-o", "ConnectTimeout=20", f"{user}@{host}", "sh -s"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(script)
        self.proc.stdin.close()
        watch = threading.Thread(target=self._watch_cancel, daemon=True)
        watch.start()
        for line in self.proc.stdout:
            self.log(line.rstrip("\n"))
        code = self.proc.wait()
        if code != 0 and not self.cancelled():
            self.log(f"##[error]Process exited with status {code}")
        return code == 0

    def _watch_cancel(self) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while self.proc and self.proc.poll() is None:
            if self.cancelled() or time.monotonic() > deadline:
                self.proc.terminate()
                return
            time.sleep(0.2)

