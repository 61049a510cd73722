"""The desktop app end to end: the real release binary under Xvfb, driven through tauri-driver and
WebKitWebDriver, on a private D-Bus session with gnome-keyring as the OS keychain.

Two journeys, as a user would take them, each with a screenshot of every step kept under
test-artifacts/:

- this computer (desktop/): store a credential, pick "this computer" in the wizard, deploy v1 to the
  sandbox (this machine's Docker engine) with an alert webhook URL from the Alerts page, verify it,
  edit its alert rules (kept in SQLite), watch the dashboard with the drift scenario until drift is
  flagged, see the service's own input-drift rule fire (one FIRING posted to the webhook receiver on
  the Docker bridge, a desktop notification shown by dunst, the firing on the Alerts page linking to
  the charts) and, once the drift stops, resolve (one RESOLVED); deploy v2 from the Deployments
  page, roll back to v1 with one confirmation (the edited rules still in force), restore the default
  rules, see a never-ready version refused, and check over HTTP that v1 is what serves;
- an SSH host you already have (desktop-ssh/): a private sshd on loopback whose sessions use this
  machine's Docker engine, and Debian's docker-registry with htpasswd standing in for GHCR. Store the
  host's key and the registry token, enter the host (a wrong fingerprint is refused first), pick v1
  from the registry's tags and deploy it over SSH (login, pull, switch), verify, watch the dashboard through the SSH tunnel, deploy v2, roll
  back to v1;
- the same host deployed through GitHub Actions (desktop-github/): the GitHub double stands in for
  GitHub and its actions runner runs the deploy job of the workflow file the console installed, over
  SSH with the secrets the console sealed. Set up the repository, see a changed workflow's difference
  and replace it, deploy v1 through a dispatched run followed step by step, verify, then see a run
  that fails (a tag the registry lacks) leave v1 serving.

Afterwards the data directory (settings, SQLite history, compose files) and everything the app and the
drivers printed are searched for every credential's value: they may only be in the keychain.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from support import net, project
from support.desktop import Console, Page, free_port_pair, need
from support.docker import compose_down
from support.standins import GitHubDouble, Registry, Sshd
from support.webhook import Receiver, docker_bridge_address

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
@pytest.fixture()
def console(tmp_path, display, binaries, sandbox_images):
    c = Console(tmp_path, display, binaries)
    yield c
    c.close()


@pytest.fixture()
def receiver():
    """Where the sandbox's service POSTs its alerts: on the Docker bridge, which its container reaches."""
    r = Receiver(docker_bridge_address())
    yield r
    r.close()


def verify_and_open_dashboard(page: Page, tag: str) -> None:
    """The end of the wizard after a deploy of `tag`: the header says it serves, 6 verify shows it
    ready with its model card, and the last step opens the dashboard."""
    page.wait_text("#serving", f"serving {tag}", what=f"header shows {tag} serving")
    page.shot(f"deploy-{tag}")
    page.click("#wiz-next")
    page.wait_text("#verify-body", "Ready", 60, "verification")
    body = page.text("#verify-body")
    assert tag in body and "wbc-autoencoder" in body, body
    page.shot("verify")
    page.click("#wiz-next")
    page.visible("#view-dashboard", what="dashboard")


def test_wizard_to_sandbox_deploy_dashboard_drift_and_rollback(console: Console, receiver: Receiver):
    from selenium.webdriver.common.by import By

    d = console.driver
    page = Page(d, ARTIFACTS / "desktop", console.display)
    wait, text, shot, click = page.wait, page.text, page.shot, page.click

    # --- the app opens on the wizard
    page.booted()
    first_paint = time.monotonic() - console.t0
    assert "current" in page.find('#stepper li[data-step="0"]').get_attribute("class")

    # --- 1 credentials: a GitHub token goes to the keychain; the page lists it, never the value
    token = "ghp_" + secrets.token_hex(18)
    page.save_credential("github-token", token)
    page.wait_text("#cred-table", "GitHub token", what="the stored credential listed")
    assert token not in d.page_source
    shot("credentials")

    # --- alerts: the sandbox's webhook URL goes to the keychain (the service gets it at deploy)
    click("#tab-alerts")
    page.fill("#webhook-url", "hooks.example.test/no-scheme")
    click('#webhook-form button[type="submit"]')
    page.wait_text("#webhook-form .form-error", "starts with https://", what="a bad URL refused")
    page.fill("#webhook-url", receiver.url)
    click('#webhook-form button[type="submit"]')
    page.wait_text("#webhook-state", "in the keychain", what="the webhook stored")
    assert receiver.url not in d.page_source
    shot("alerts-webhook")
    click("#tab-setup")
    page.visible("#cred-table", what="back on the wizard's first step")
    click("#wiz-next")

    # --- 2 platform: the advisor points a newcomer at this computer
    page.visible("#advisor", what="platform step")
    click('input[name="need"][value="try"]')
    page.wait_text("#platform-note", "Ready", what="sandbox readiness")
    assert page.find('.choice[data-platform="sandbox"]').get_attribute("aria-checked") == "true"
    shot("platform")
    click("#wiz-next")

    # --- 3 provision and 4 GitHub do not apply to the sandbox and say why
    page.wait_text("#provision-body", "Nothing to provision", what="provision note")
    click("#wiz-next")
    page.wait_text("#github-body", "not needed", what="GitHub note")
    click("#wiz-next")

    # --- 5 deploy v1 with live progress
    assert not page.find("#wizard-custom").is_displayed(), "the sandbox deploys only images built here"
    page.choose("wizard-tag", "v1")
    click('#wizard-deploy button[type="submit"]')
    page.visible("#wizard-progress .steps li", 60, "live step progress")
    page.present("#wizard-progress .outcome", 240, "the deploy to finish")
    outcome = text("#wizard-progress .outcome")
    assert outcome.startswith("Deployed"), f"{outcome}\n{text('#wizard-progress .log')}"
    assert "docker-compose" in text("#wizard-progress .log")
    verify_and_open_dashboard(page, "v1")

    # --- the rules are the user's: the form refuses a threshold that is not a number; then latency
    # tightened to 0.5 s as critical, "overloaded" removed, and input drift judged over 1 minute (so
    # that its firing and its resolve both fit in this journey). The service takes them, the console
    # keeps them in its database for this target.
    click("#tab-alerts")
    page.wait_text("#rules-source", "default rules", 30, "the model's default rules")
    click("#rules-edit")
    page.visible("#rules-editor", what="the rule editor")
    latency = '#rules-edit-table tr[data-rule="latency-p99"]'
    page.fill(f"{latency} .rule-threshold", "lots")
    click("#rules-save")
    page.wait_text("#rules-editor .form-error", "latency-p99: the threshold must be a number", what="the refusal")
    page.fill(f"{latency} .rule-threshold", "0.5")
    page.select(f"{latency} .rule-severity", "critical")
    click('#rules-edit-table tr[data-rule="overloaded"] .rule-keep')
    page.fill('#rules-edit-table tr[data-rule="input-drift"] .rule-window', "1")
    shot("alert-rules-edit")
    click("#rules-save")
    wait(lambda drv: not page.find("#rules-editor").is_displayed(), 30, "the rules saved")
    page.wait_text('#alert-rules tr[data-rule="latency-p99"]', "> 0.5 over 5 min", 30, "the new latency rule")
    page.wait_text("#rules-source", "Your rules", 30, "the rules kept")
    assert not d.find_elements(By.CSS_SELECTOR, '#alert-rules tr[data-rule="overloaded"]')
    assert "critical" in text('#alert-rules tr[data-rule="latency-p99"]')
    assert "is drift over 1 min" in text('#alert-rules tr[data-rule="input-drift"]')
    kept = json.loads(console.query("SELECT rules FROM alert_rules WHERE target = 'sandbox'")[0][0])
    assert [r["id"] for r in kept] == ["error-rate", "latency-p99", "input-drift", "score-drift", "anomaly-rate",
                                       "recall-floor", "host-cpu", "host-memory", "host-disk"], kept
    assert kept[1]["threshold"] == 0.5 and kept[1]["severity"] == "critical", kept[1]
    assert kept[2]["window_minutes"] == 1, kept[2]
    click("#tab-dashboard")

    # --- dashboard: traffic with the drift scenario until drift is flagged
    wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "figure.chart img")) >= 14, 30, "every chart drawn")
    click("#drift-switch")
    click("#traffic-toggle")
    page.wait_text("#traffic-state", "drift", what="replay running with drift")
    page.wait_text("#drift-verdict", "Drift", 120, "input drift flagged")
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#alerts li.critical"), 30, "a critical alert badge")
    drifted = d.execute_script(
        "return [...document.querySelectorAll('#drift-table tbody tr')]"
        ".filter(r => r.innerText.includes('Drift')).map(r => r.dataset.feature)")
    assert len(drifted) >= 3, drifted
    shot("dashboard-drift")

    # --- alerts: the service's own input-drift rule fires (evaluated every minute in the container),
    # the webhook gets one FIRING, the desktop shows a notification, the page shows the firing
    click("#tab-alerts")
    page.wait_text('#alert-rules tr[data-rule="input-drift"]', "firing", 150, "the input-drift rule firing")
    wait(lambda drv: any("FIRING critical: Input drift" in t for t in receiver.texts()), 60,
         "the firing delivered to the webhook")
    wait(lambda drv: int(drv.execute_script("return document.body.dataset.notified || 0")) >= 1, 60,
         "a desktop notification for the firing")
    shot("alert-firing")  # the notification service's popup is on the X screen
    assert not d.execute_script("return document.body.dataset.notifyError || ''")
    if shutil.which("dunst"):
        assert any(n.startswith("Critical: Input drift") for n in console.notifications()), console.notifications()
    firings = page.rows_text('#alert-firings tbody tr[data-firing="input-drift"]')
    assert firings and "firing" in firings[0], firings
    page.wait_text("#alerts-summary", "webhook: ", 30, "the webhook's delivery counts")
    wait(lambda drv: re.search(r"webhook: [1-9]\d* delivered", text("#alerts-summary")), 30,
         "a delivery counted on the page")

    click('#alert-firings tr[data-firing="input-drift"] button')
    page.visible("#view-dashboard", what="the dashboard at the firing")
    wait(lambda drv: page.find('[data-range="900"]').get_attribute("aria-pressed") == "true", what="15 min range")
    # Delivered once: every later evaluation of a rule already firing sends nothing.
    assert sum("FIRING critical: Input drift" in t for t in receiver.texts()) == 1, receiver.texts()
    click('[data-range="86400"]')
    wait(lambda drv: page.find('[data-range="86400"]').get_attribute("aria-pressed") == "true", what="24 h range")
    wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "figure.chart img")) >= 14, 30, "24 h charts")
    shot("dashboard-24h")

    # --- the drift scenario stops (normal traffic goes on): once a minute of normal rows is judged,
    # the rule resolves and the webhook gets exactly one RESOLVED
    click("#drift-switch")
    wait(lambda drv: "replaying" in text("#traffic-state") and "drift" not in text("#traffic-state"), 30,
         "normal traffic again")
    wait(lambda drv: any("RESOLVED critical: Input drift" in t for t in receiver.texts()), 240,
         "the resolve delivered to the webhook")
    sent = receiver.texts()
    assert sum("FIRING critical: Input drift" in t for t in sent) == 1, sent
    assert sum("RESOLVED critical: Input drift" in t for t in sent) == 1, sent
    click("#tab-alerts")
    page.wait_text('#alert-rules tr[data-rule="input-drift"]', "ok", 60, "the rule ok again")
    ended = page.rows_text('#alert-firings tbody tr[data-firing="input-drift"]')
    assert ended and "firing" not in ended[0], ended
    shot("alert-resolved")
    click("#tab-dashboard")
    click("#traffic-toggle")
    page.wait_text("#traffic-state", "no traffic", what="replay stopped")

    # --- deployments: v2, then one-click rollback to v1
    click("#tab-deployments")
    page.choose("deploy-tag", "v2")
    click('#deploy-form button[type="submit"]')
    page.wait_text("#serving", "serving v2", 240, "v2 serving")
    shot("deploy-v2")
    click('button[data-rollback]')
    page.visible("#confirm", what="the confirmation")
    assert "Roll back to v1" in text("#confirm")
    shot("rollback-confirm")
    click("#confirm-ok")
    page.wait_text("#serving", "serving v1", 240, "v1 serving again")
    page.wait_text("#history tbody", "rollback of", 30, "the rollback in the history")
    shot("rolled-back")

    # --- a version that never becomes ready is refused beside the live one, which keeps serving
    page.choose("deploy-tag", "broken")
    click('#deploy-form button[type="submit"]')
    page.present("#deploy-progress .outcome.bad", 120, "the broken deploy to fail")

    def first_row() -> str:
        rows = page.rows_text("#history tbody tr")
        return rows[0] if rows else ""

    wait(lambda drv: "broken" in first_row() and "failed" in first_row(), 30, "the failure in the history")
    row = first_row()
    assert "kept serving" in row, row
    assert "serving v1" in text("#serving")
    shot("broken-refused")

    with urllib.request.urlopen(f"http://127.0.0.1:{console.port}/v1/model", timeout=5) as r:
        model = json.load(r)
    assert model["image_tag"] == "v1", model

    # --- the kept rules are what v1 evaluates after v2 and the rollback; "Restore defaults" brings
    # the model's own back and the console forgets its copy
    click("#tab-alerts")
    page.wait_text('#alert-rules tr[data-rule="latency-p99"]', "> 0.5 over 5 min", 30, "the kept rules on v1")
    assert not d.find_elements(By.CSS_SELECTOR, '#alert-rules tr[data-rule="overloaded"]')
    click("#rules-defaults")
    page.present('#alert-rules tr[data-rule="overloaded"]', 30, "the default rules back")
    page.wait_text('#alert-rules tr[data-rule="latency-p99"]', "> 0.25 over 5 min", 30, "the default latency rule")
    page.wait_text("#rules-source", "default rules", 30, "the defaults said")
    assert console.query("SELECT rules FROM alert_rules WHERE target = 'sandbox'") == []
    audit = [m for (m,) in console.query("SELECT message FROM audit WHERE target = 'sandbox' ORDER BY id")]
    assert any(m.startswith("alert rules set: error-rate: system.error_rate > 0.05") for m in audit), audit
    assert "alert rules back to the model's defaults" in audit, audit

    # --- the closed and reopened app resumes on the dashboard
    settings = json.loads((console.data / "console.json").read_text())
    assert settings["wizard_step"] == 6 and settings["platform"] == "sandbox"

    # --- the credential is in the keychain and nowhere else
    d.quit()
    for p in console.files():
        assert token.encode() not in p.read_bytes(), f"the token leaked into {p}"
        assert receiver.path.encode() not in p.read_bytes(), f"the webhook URL leaked into {p}"
    print(f"first paint {first_paint:.2f} s; screenshots: {', '.join(page.shots)}; not captured: {page.missed or 'none'}")


REMOTE_REPO = "acme/inference"


@pytest.fixture()
def ssh_host(tmp_path, binaries, sandbox_images):
    """An SSH host on loopback (sshd + this machine's Docker engine) and a registry holding v1 and v2."""
    for tool in ["/usr/sbin/sshd", "/usr/bin/docker-registry", "htpasswd", "docker-compose"]:
        need(shutil.which(tool) is not None, f"{tool} is not installed (scripts/setup.sh installs it)")
    # The registry's user is the repository's owner: the workflow logs in as github.repository_owner.
    sshd, registry = Sshd(), Registry(user=REMOTE_REPO.split("/")[0])
    pulled: list[str] = []
    try:
        for tag in ["v1", "v2"]:
            pulled.append(registry.push(f"mlops-sandbox/inference:{tag}", REMOTE_REPO, tag))
        # The compose directory's name is the compose project (what docker-compose picks there).
        compose_dir = tmp_path / "host" / f"mlops-e2e-ssh-{os.getpid()}-{sshd.port}"
        compose_dir.parent.mkdir()
        yield {"sshd": sshd, "registry": registry, "compose_dir": compose_dir, "service_port": free_port_pair()}
    finally:
        project_name = compose_dir.name if "compose_dir" in locals() else None
        if project_name:
            env = {"DOCKER_CONFIG": str(sshd.docker_config)}
            compose_down(project_name, compose_dir, env)
            compose_down(f"{project_name}-candidate", compose_dir, env)
        subprocess.run(["docker", "rmi", *pulled], capture_output=True, timeout=120)
        sshd.close()
        registry.close()


def enter_ssh_host(page: Page, host: dict, fingerprint: str) -> None:
    """Step 2 of the wizard: picks "An SSH host you already have" and fills in its form."""
    sshd, registry = host["sshd"], host["registry"]
    page.click('.choice[data-platform="ssh"]')
    page.visible("#remote-form", what="the host form")
    for name, value in [("host", "127.0.0.1"), ("port", str(sshd.port)), ("user", sshd.user),
                        ("fingerprint", fingerprint), ("compose_dir", str(host["compose_dir"])),
                        ("service_port", str(host["service_port"])), ("image", f"{registry.addr}/{REMOTE_REPO}"),
                        ("registry_user", registry.user)]:
        page.fill(f'#remote-form [name="{name}"]', value)


def test_wizard_to_ssh_host_deploy_dashboard_and_rollback(ssh_host, console: Console):
    from selenium.webdriver.common.by import By

    sshd: Sshd = ssh_host["sshd"]
    registry: Registry = ssh_host["registry"]
    compose_dir: Path = ssh_host["compose_dir"]
    service_port: int = ssh_host["service_port"]
    d = console.driver
    page = Page(d, ARTIFACTS / "desktop-ssh", console.display)
    wait, text, shot, click = page.wait, page.text, page.shot, page.click
    page.booted()

    # --- 1 credentials: the host's key (filed under the host) and the registry token. WebKitWebDriver
    # types the key without its line breaks; the console puts them back before the keychain stores it,
    # as it does for a key pasted from a form or chat that lost them.
    page.save_credential("ssh-key", sshd.private_key, host="127.0.0.1")
    page.save_credential("ghcr-token", registry.password)
    page.wait_text("#cred-table", "ssh-key/127.0.0.1", what="the SSH key listed")
    listed = text("#cred-table")
    assert "GHCR token" in listed, listed
    source = d.page_source
    assert registry.password not in source and "PRIVATE KEY" not in source
    shot("credentials")
    click("#wiz-next")

    # --- 2 platform: an SSH host already there; a wrong fingerprint is refused with the fix
    enter_ssh_host(page, ssh_host, "SHA256:not-a-fingerprint")
    click("#wiz-next")
    page.wait_text("#wiz-error", "ssh-keygen -lf", what="the fingerprint refused")
    shot("platform-bad-fingerprint")
    page.fill('#remote-form [name="fingerprint"]', sshd.fingerprint)
    click("#wiz-next")

    # --- 3 provision does not apply to a host you brought; 4 GitHub is optional
    page.wait_text("#provision-body", "you brought the host", what="provision note")
    click("#wiz-next")
    page.visible("#gh-form", what="GitHub step")
    shot("github-optional")
    click("#wiz-next")

    # --- 5 deploy v1 over SSH: the registry's tags are listed (read with the registry user and the
    # token from the keychain); live progress, login + pull on the host
    page.visible("#wizard-custom", what="the tag field for a remote host")
    page.choose("wizard-tag", "v1")
    offered = d.execute_script("return [...document.querySelectorAll('#wizard-tag option')].map(o => o.textContent)")
    assert any(o.startswith("v2 — in ") for o in offered), offered
    click('#wizard-deploy button[type="submit"]')
    page.visible("#wizard-progress .steps li", 60, "live step progress")
    page.present("#wizard-progress .outcome", 300, "the deploy to finish")
    outcome, log = text("#wizard-progress .outcome"), text("#wizard-progress .log")
    assert outcome.startswith("Deployed"), f"{outcome}\n{log}\n--- sshd\n{sshd.log()}"
    assert "login" in log and "pull" in log, log
    verify_and_open_dashboard(page, "v1")  # through the SSH tunnel

    # --- dashboard through the tunnel: traffic sent to the host shows up
    assert not page.find("#traffic").is_displayed(), "the replay switch is for the sandbox only"
    rows = project.holdout()[0][:40]
    for i in range(0, 40, 8):
        net.http_post_json(f"http://127.0.0.1:{service_port}/v1/predict", {"rows": rows[i:i + 8]})
    wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "figure.chart img")) >= 10, 60, "charts drawn")
    wait(lambda drv: "40 rows" in " ".join(page.rows_text("figure.chart figcaption")), 60,
         "the 40 scored rows in the charts")
    shot("dashboard")

    # --- deployments: v2 by tag, then one-click rollback to v1
    click("#tab-deployments")
    page.fill("#deploy-custom", "v2")
    click('#deploy-form button[type="submit"]')
    page.wait_text("#serving", "serving v2", 300, "v2 serving")
    shot("deploy-v2")
    page.fill("#deploy-custom", "")
    click('button[data-rollback]')
    page.visible("#confirm", what="the confirmation")
    assert "Roll back to v1" in text("#confirm")
    click("#confirm-ok")
    page.wait_text("#serving", "serving v1", 240, "v1 serving again")
    page.wait_text("#history tbody", "rollback of", 30, "the rollback in the history")
    shot("rolled-back")

    model = net.http_get_json(f"http://127.0.0.1:{service_port}/v1/model")
    assert model["image_tag"] == "v1", model
    assert sorted(registry.tags(REMOTE_REPO)) == ["v1", "v2"]

    # --- the key and the token are in the keychain and nowhere the app or the host's compose
    # directory keeps files (docker login on the host keeps its own copy, as on any host)
    d.quit()
    places = console.files() + [p for p in compose_dir.rglob("*") if p.is_file()]
    for p in places:
        data = p.read_bytes()
        assert registry.password.encode() not in data, f"the registry token leaked into {p}"
        assert sshd.private_key.strip().encode() not in data, f"the SSH key leaked into {p}"
        assert b"PRIVATE KEY" not in data, f"a private key is in {p}"
    print(f"screenshots: {', '.join(page.shots)}; not captured: {page.missed or 'none'}")


@pytest.fixture()
def github(ssh_host):
    """The GitHub double with the repository, its actions runner aimed at the SSH host's stand-ins."""
    gh = GitHubDouble()
    try:
        gh.post("/_double/repos", {"full_name": REMOTE_REPO})
        gh.post("/_double/actions", {"registry": ssh_host["registry"].addr, "ssh_port": ssh_host["sshd"].port})
        yield gh
    finally:
        gh.close()


@pytest.fixture()
def github_console(tmp_path, display, binaries, sandbox_images, github):
    c = Console(tmp_path, display, binaries, env={"MLOPS_GITHUB_API": github.url})
    yield c
    c.close()


def test_wizard_to_github_actions_deploy_on_ssh_host(ssh_host, github: GitHubDouble, github_console: Console):
    sshd: Sshd = ssh_host["sshd"]
    registry: Registry = ssh_host["registry"]
    compose_dir: Path = ssh_host["compose_dir"]
    service_port: int = ssh_host["service_port"]
    console = github_console
    d = console.driver
    page = Page(d, ARTIFACTS / "desktop-github", console.display)
    text, shot, click = page.text, page.shot, page.click
    page.booted()

    # --- 1 credentials: the host's key, the registry token, the GitHub token
    page.save_credential("ssh-key", sshd.private_key, host="127.0.0.1")
    page.save_credential("ghcr-token", registry.password)
    page.save_credential("github-token", github.token)
    page.wait_text("#cred-table", "GitHub token", what="the GitHub token listed")
    click("#wiz-next")

    # --- 2 the SSH host; 3 nothing to provision
    enter_ssh_host(page, ssh_host, sshd.fingerprint)
    click("#wiz-next")
    page.wait_text("#provision-body", "you brought the host", what="provision note")
    click("#wiz-next")

    # --- 4 GitHub: the workflow is missing; write the secrets, the pinned host key and the workflow
    page.visible("#gh-form", what="GitHub step")
    page.fill('#gh-form [name="repo"]', REMOTE_REPO)
    click("#gh-form ~ .row button")  # Check the workflow
    page.wait_text("#gh-log", "Workflow: missing", what="the workflow missing")
    click("#gh-form ~ .row button.primary")
    page.wait_text("#gh-log", "workflow .github/workflows/deploy.yml: created", 60, "the repository set up")
    log = text("#gh-log")
    for name in ["EC2_HOST", "EC2_USER", "EC2_SSH_KEY", "DOCKER_COMPOSE_DIR", "GHCR_PAT"]:
        assert f"secret {name}: created" in log, log
    shot("github-configured")
    # What GitHub holds, as the double decrypted it from the sealed boxes
    repo = github.state()["repos"][REMOTE_REPO]
    sec = repo["secrets"]
    assert (sec["EC2_HOST"], sec["EC2_USER"], sec["DOCKER_COMPOSE_DIR"], sec["GHCR_PAT"]) == \
        ("127.0.0.1", sshd.user, str(compose_dir), registry.password)
    assert sec["EC2_SSH_KEY"].split() == sshd.private_key.split(), "EC2_SSH_KEY is not the host's key"
    assert repo["variables"]["EC2_HOST_FINGERPRINT"] == sshd.fingerprint
    workflow = (ROOT / ".github/workflows/deploy.yml").read_text()
    assert repo["files"][".github/workflows/deploy.yml"] == workflow

    # Someone edits the workflow on GitHub: the difference is shown, then replaced on confirmation
    github.post("/_double/file", {"full_name": REMOTE_REPO, "path": ".github/workflows/deploy.yml",
                                  "text": workflow.replace("timeout-minutes: 15", "timeout-minutes: 5")})
    click("#gh-form ~ .row button")
    page.wait_text("#gh-log", "differs from the console's", what="the difference shown")
    diff = text("#gh-log")
    changed = [ln for ln in diff.splitlines() if ln[:2] in ("- ", "+ ")]
    assert changed == ["-     timeout-minutes: 5", "+     timeout-minutes: 15"], diff
    assert "unchanged lines" in diff, "the difference, not the whole file"
    page.visible("#gh-replace", what="the replace button")
    shot("github-workflow-diff")
    click("#gh-replace")
    page.visible("#confirm", what="the confirmation")
    click("#confirm-ok")
    page.wait_text("#gh-log", "deploy.yml: updated", 60, "the workflow replaced")
    assert github.state()["repos"][REMOTE_REPO]["files"][".github/workflows/deploy.yml"] == workflow
    click("#wiz-next")

    # --- 5 deploy v1 through GitHub Actions: dispatch, the run followed step by step, its job log
    page.visible("#wizard-via-github", what="the GitHub Actions choice")
    assert page.find("#wizard-via-github").is_selected(), "a configured repository deploys through GitHub by default"
    page.fill("#wizard-custom", "v1")
    click('#wizard-deploy button[type="submit"]')
    page.visible("#wizard-progress .steps li", 60, "live step progress")
    page.wait_text("#wizard-progress .log", "Deploy to EC2: in_progress", 120, "the run's step followed live")
    shot("github-run-live")
    page.present("#wizard-progress .outcome", 300, "the deploy to finish")
    outcome, log = text("#wizard-progress .outcome"), text("#wizard-progress .log")
    runs = github.state()["runs"]
    assert outcome.startswith("Deployed"), f"{outcome}\n{log}\n--- runs\n{json.dumps(runs)[-4000:]}"
    assert "Deploy to EC2: success" in log and "Login Succeeded" in log and "is ready after" in log, log
    (run,) = runs.values()
    assert run["inputs"] == {"tag": "v1"} and run["conclusion_now"] == "success", run
    verify_and_open_dashboard(page, "v1")

    # --- a run that fails (the registry has no v404) changes nothing: v1 keeps serving
    click("#tab-deployments")
    page.visible("#via-github", what="the GitHub Actions switch")
    if not page.find("#via-github").is_selected():
        click("#via-github")
    page.fill("#deploy-custom", "v404")
    click('#deploy-form button[type="submit"]')
    page.present("#deploy-progress .outcome.bad", 300, "the failed run's deploy to end")
    outcome, log = text("#deploy-progress .outcome"), text("#deploy-progress .log")
    assert "nothing was changed" in outcome and "v1" in outcome, f"{outcome}\n{log}"
    # the end of the job's log says why: the registry has no such manifest
    assert "Deploy to EC2: failure" in log and "manifest unknown" in log.lower(), log
    assert "serving v1" in text("#serving")
    shot("github-run-failed")
    model = net.http_get_json(f"http://127.0.0.1:{service_port}/v1/model")
    assert model["image_tag"] == "v1", model

    # --- no credential outside the keychain and GitHub's secrets: not in the app's files, the
    # host's compose directory, or the run logs GitHub keeps (secrets are masked there)
    d.quit()
    state = github.state()
    logs = "".join(r["log"] for r in state["runs"].values())
    places = console.files() + [p for p in compose_dir.rglob("*") if p.is_file()]
    for value in [registry.password, github.token, sshd.private_key.strip()]:
        assert value not in logs, "a credential is in a run log"
        for p in places:
            assert value.encode() not in p.read_bytes(), f"a credential leaked into {p}"
    for p in places:
        assert b"PRIVATE KEY" not in p.read_bytes(), f"a private key is in {p}"
    print(f"screenshots: {', '.join(page.shots)}; not captured: {page.missed or 'none'}")
