"""The fleet through the window (issue 17): the wizard offers "several hosts behind a load
balancer", deploys v1 to the sandbox's three hosts behind Debian's HAProxy, and the Deployments page
follows a rolling deploy of v2 host by host live, then rolls the fleet back to v1 with one
confirmation, grows it to four hosts and shrinks it to two. The dashboard shows every host merged and
each host on its own.

Real parts: the release app under Xvfb through tauri-driver, a private keychain, HAProxy started by
the app, three compose projects on this machine's Docker engine, the replay tool sending traffic
through HAProxy during the rollouts. Screenshots under test-artifacts/desktop-fleet/.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest

from support.desktop import Console, Page, free_low_ports, need
from support.docker import compose_down

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture()
def fleet_console(tmp_path, display, binaries, sandbox_images):
    import shutil

    need(shutil.which("haproxy") is not None, "haproxy is not installed (scripts/setup.sh installs it)")
    # The fleet's block: HAProxy's frontend and API, then up to ten hosts from +10 (each with a
    # second port for trying a new version).
    front = free_low_ports(30)
    c = Console(tmp_path, display, binaries, env={"MLOPS_SANDBOX_FLEET_PORT": str(front)})
    c.fleet_front = front
    yield c
    c.close()
    # The app is stopped, not exited: its HAProxy outlives it (the next start in the same data
    # directory would stop it) and is stopped here.
    pid_file = c.data / "sandbox-fleet" / "haproxy" / "haproxy.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    for h in ["h1", "h2", "h3", "h4"]:
        compose_down(f"{c.project}-fleet-{h}", c.data / "sandbox-fleet" / h)


def served(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=5) as r:
        return json.load(r)["image_tag"]


def test_wizard_to_a_fleet_rolling_deploy_followed_live_and_rolled_back(fleet_console: Console):
    console = fleet_console
    page = Page(console.driver, ARTIFACTS / "desktop-fleet", console.display)
    wait, text, shot, click = page.wait, page.text, page.shot, page.click
    page.booted()
    click("#wiz-next")

    # --- the platform step offers several hosts behind a load balancer
    page.visible("#platforms", what="platform step")
    click('.choice[data-platform="fleet"]')
    page.wait_text("#platform-note", "HAProxy", what="the fleet's note")
    assert "Ready" in text("#platform-note"), text("#platform-note")
    shot("platform-fleet")
    click("#wiz-next")
    page.wait_text("#provision-body", "Nothing to provision", what="provision note")
    click("#wiz-next")
    page.wait_text("#github-body", "not needed", what="GitHub note")
    click("#wiz-next")

    # --- v1 to every host, one at a time, each host's steps streaming into the wizard
    page.wait_text("#deploy-hint", "three hosts", what="the fleet's deploy hint")
    page.choose("wizard-tag", "v1")
    click('#wizard-deploy button[type="submit"]')
    page.visible("#wizard-progress .steps li", 60, "live step progress")
    page.wait_text("#serving", "serving v1", 300, "v1 on the first host")
    click("#tab-deployments")
    page.visible("#fleet-panel", what="the fleet panel")
    page.present('#fleet-rollouts .rollout[data-status="succeeded"]', 300, "the first rollout to finish")
    wait(lambda drv: text("#fleet-hosts tbody").count("v1") == 3, 30, "v1 on every host")
    wait(lambda drv: text("#fleet-hosts tbody").count("UP") == 3, 30, "every host UP in HAProxy")
    assert served(console.fleet_front) == "v1"
    shot("fleet-v1")

    # --- traffic through HAProxy, and the dashboard over the fleet and over one host
    click("#tab-dashboard")
    page.visible("#fleet-host-wrap", what="the host selector")
    click("#traffic-toggle")
    page.wait_text("#traffic-state", "replaying", 30, "traffic started")
    page.present('#view-dashboard figure[data-chart] img', 60, "charts drawn")
    # The requests chart's newest value, over the fleet merged: traffic reached the hosts.
    wait(lambda drv: any(ch.isdigit() for ch in text('figure[data-chart="requests"] figcaption span')), 90,
         "requests counted over the fleet")
    shot("dashboard-fleet")
    page.select("#fleet-host", "h2")
    page.present('#view-dashboard figure[data-chart] img', 30, "h2's charts")
    shot("dashboard-h2")
    page.select("#fleet-host", "fleet")

    # --- a rolling deploy of v2, followed host by host while it runs
    click("#tab-deployments")
    page.visible("#fleet-panel", what="the fleet panel")
    page.choose("deploy-tag", "v2")
    click('#deploy-form button[type="submit"]')
    page.present('#fleet-rollouts .rollout[data-status="running"] tr[data-status="running"]', 60,
                 "a host being deployed, live")
    shot("rolling-live")
    live = text('#fleet-rollouts .rollout[data-status="running"]')
    assert "v2" in live and "rolling" in live, live
    # The newest rollout comes first; the one before it (v1) is already succeeded.
    page.present('#fleet-rollouts .rollout:first-child[data-status="succeeded"] h3', 300, "the rollout to finish")
    first = page.find("#fleet-rollouts .rollout")
    assert first.get_attribute("data-status") == "succeeded", first.text
    rows = page.rows_text("#fleet-rollouts .rollout:first-child .rollout-hosts tbody tr")
    assert [r.split()[0] for r in rows] == ["h1", "h2", "h3"], rows
    assert all("deploy" in r and "succeeded" in r for r in rows), rows
    wait(lambda drv: text("#fleet-hosts tbody").count("v2") == 3, 30, "v2 on every host")
    assert served(console.fleet_front) == "v2"
    shot("rolled-v2")

    # --- one click rolls the fleet back to v1, host by host
    click('[data-fleet-rollback="v1"]')
    page.visible("#confirm", what="the confirmation")
    assert "host by host" in text("#confirm-text")
    click("#confirm-ok")
    wait(lambda drv: text("#fleet-hosts tbody").count("v1") == 3, 300, "v1 on every host again")
    page.present('#fleet-rollouts .rollout:first-child[data-status="succeeded"] h3', 60, "the rollback rollout")
    assert page.find("#fleet-rollouts .rollout h3").text.split(" · ")[1] == "v1"
    assert served(console.fleet_front) == "v1"
    shot("rolled-back-v1")

    # --- four hosts: h4 gets v1 out of the pool, then joins; the dashboard's selector follows
    def resize(n: int, confirm: str) -> None:
        size = page.find("#fleet-size")
        size.clear()
        size.send_keys(str(n))
        click("#fleet-resize")
        page.visible("#confirm", what="the confirmation")
        assert confirm in text("#confirm-text"), text("#confirm-text")
        click("#confirm-ok")

    resize(4, "joins HAProxy's pool")
    wait(lambda drv: len(page.rows_text("#fleet-hosts tbody tr")) == 4, 120, "h4 in the table")
    wait(lambda drv: text("#fleet-hosts tbody").count("UP") == 4, 60, "four hosts UP in HAProxy")
    assert text("#fleet-hosts tbody").count("v1") == 4, text("#fleet-hosts tbody")
    page.present('#fleet-rollouts .rollout:first-child[data-status="succeeded"] tr[data-action="add"]', 30,
                 "the resize recorded")
    shot("grown-to-4")
    assert {served(console.fleet_front) for _ in range(8)} == {"v1"}
    click("#tab-dashboard")
    wait(lambda drv: len(page.find("#fleet-host").find_elements("css selector", "option")) == 5, 30,
         "h4 in the dashboard's host selector")
    click("#tab-deployments")

    # --- two hosts: h4 then h3 are drained and stopped; the front keeps answering
    resize(2, "h3 to h4 leave")
    wait(lambda drv: len(page.rows_text("#fleet-hosts tbody tr")) == 2, 120, "two hosts left")
    page.present('#fleet-rollouts .rollout:first-child[data-status="succeeded"] tr[data-action="remove"]', 30,
                 "the shrink recorded")
    assert served(console.fleet_front) == "v1"
    shot("shrunk-to-2")

    # --- the history holds one rollout per deploy or resize, a row per host action
    rollouts = console.query("SELECT tag, strategy, status FROM rollouts ORDER BY id")
    assert rollouts == [("v1", "rolling", "succeeded"), ("v2", "rolling", "succeeded"),
                        ("v1", "rolling", "succeeded"), ("v1", "scale", "succeeded"),
                        ("v1", "scale", "succeeded")], rollouts
    resized = console.query("SELECT host, action, status FROM rollout_hosts WHERE rollout_id >= 4 ORDER BY rollout_id, seq")
    assert resized == [("h4", "add", "succeeded"), ("h4", "remove", "succeeded"),
                       ("h3", "remove", "succeeded")], resized
    hosts = console.query("SELECT host, action, status FROM rollout_hosts WHERE rollout_id = 2 ORDER BY seq")
    assert hosts == [("h1", "deploy", "succeeded"), ("h2", "deploy", "succeeded"),
                     ("h3", "deploy", "succeeded")], hosts
    print(f"screenshots: {', '.join(page.shots)}; not captured: {page.missed or 'none'}")
