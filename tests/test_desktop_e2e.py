"""The desktop app end to end: the real release binary under Xvfb, driven through tauri-driver and
WebKitWebDriver, on a private D-Bus session with gnome-keyring as the OS keychain.

One journey, as a newcomer would take it: store a credential, pick "this computer" in the wizard,
deploy v1 to the sandbox (this machine's Docker engine), verify it, watch the dashboard with the
drift scenario until drift is flagged, deploy v2 from the Deployments page, roll back to v1 with one
confirmation, and check over HTTP that v1 is what serves. A screenshot of every step is kept in
test-artifacts/desktop/. Afterwards the data directory (settings, SQLite history, compose files) and
everything the app and the drivers printed are searched for the credential's value: it may only be in
the keychain.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "desktop"
REQUIRED = os.environ.get("MLOPS_REQUIRE_DOCKER") == "1"


def need(ok: bool, why: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def free_port_pair() -> int:
    """A port p with p+1 free too (the sandbox tries a new version on p+1 before switching)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open within {timeout} s")


@pytest.fixture(scope="module")
def binaries() -> dict[str, Path]:
    t = target_dir() / "release"
    b = {
        "console": Path(os.environ.get("MLOPS_CONSOLE_BIN", t / "mlops-console")),
        "inference": Path(os.environ.get("INFERENCE_BIN", t / "inference")),
        "replay": Path(os.environ.get("MLOPS_REPLAY_BIN", t / "replay")),
    }
    for name, p in b.items():
        need(p.is_file(), f"{name} binary missing at {p}: build with cargo build --release --workspace")
    for tool in ["Xvfb", "tauri-driver", "WebKitWebDriver", "dbus-run-session", "gnome-keyring-daemon", "docker"]:
        need(shutil.which(tool) is not None, f"{tool} is not installed (scripts/setup.sh installs it)")
    need(subprocess.run(["docker", "info"], capture_output=True).returncode == 0, "no Docker engine answers")
    return b


@pytest.fixture(scope="module")
def sandbox_images(binaries) -> None:
    env = dict(os.environ, INFERENCE_BIN=str(binaries["inference"]))
    r = subprocess.run(["bash", str(ROOT / "scripts/sandbox-images.sh")], env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr


@pytest.fixture()
def display():
    n = next(i for i in range(90, 200) if not Path(f"/tmp/.X11-unix/X{i}").exists() and not Path(f"/tmp/.X{i}-lock").exists())
    x = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        assert x.poll() is None and time.monotonic() < deadline, "Xvfb did not start"
        time.sleep(0.05)
    yield f":{n}"
    x.terminate()
    x.wait(timeout=10)


class Console:
    """tauri-driver inside a private D-Bus session with an unlocked throw-away keyring."""

    def __init__(self, tmp: Path, display: str, binaries: dict[str, Path]):
        self.tmp = tmp
        self.home = tmp / "home"
        self.data = tmp / "data"
        self.home.mkdir()
        self.port = free_port_pair()
        self.project = f"mlops-e2e-{os.getpid()}-{self.port}"
        self.driver_port = free_port()
        native = free_port()
        self.log_path = tmp / "driver.log"
        env = dict(
            os.environ,
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / ".local/share"),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            XDG_RUNTIME_DIR=str(tmp),
            DISPLAY=display,
            MLOPS_CONSOLE_DATA_DIR=str(self.data),
            MLOPS_SANDBOX_PORT=str(self.port),
            MLOPS_SANDBOX_PROJECT=self.project,
            MLOPS_REPLAY_BIN=str(binaries["replay"]),
            # docker still needs to find the engine with a fresh HOME
            DOCKER_CONFIG=str(self.home / ".docker"),
        )
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        keyring_password = secrets.token_hex(8)
        script = (
            "printf '%s' \"$KEYRING_PASSWORD\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1; "
            "unset KEYRING_PASSWORD; "
            f"exec tauri-driver --port {self.driver_port} --native-port {native}"
        )
        env["KEYRING_PASSWORD"] = keyring_password
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.driver_port, 20, self.proc)

        from selenium import webdriver
        from selenium.webdriver.common.options import ArgOptions

        opts = ArgOptions()
        opts.set_capability("browserName", "wry")
        opts.set_capability("tauri:options", {"application": str(binaries["console"])})
        self.t0 = time.monotonic()
        self.driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{self.driver_port}", options=opts)

    def close(self) -> None:
        try:
            self.driver.quit()
        except Exception:
            pass
        try:
            os.killpg(self.proc.pid, 15)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=20)
        self.log.close()
        compose_dir = self.data / "sandbox"
        subprocess.run(["docker-compose", "-p", self.project, "down", "-v", "--remove-orphans"],
                       cwd=compose_dir if compose_dir.is_dir() else None, capture_output=True, timeout=120)


@pytest.fixture()
def console(tmp_path, display, binaries, sandbox_images):
    c = Console(tmp_path, display, binaries)
    yield c
    c.close()


def test_wizard_to_sandbox_deploy_dashboard_drift_and_rollback(console: Console):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = console.driver
    # The page re-renders tables and charts on every refresh: an element found a moment ago may be
    # gone by the time it is read. Waits retry on that; one-off reads go through `row_text`.
    transient = (NoSuchElementException, StaleElementReferenceException)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots: list[str] = []

    def wait(cond, timeout=30.0, what=""):
        try:
            return WebDriverWait(d, timeout, poll_frequency=0.2, ignored_exceptions=transient).until(cond)
        except Exception as e:
            shot("failure")
            raise AssertionError(f"waiting for {what}: {e!r}\npage errors: {text('#toast')}") from e

    def text(sel: str) -> str:
        try:
            return d.find_element(By.CSS_SELECTOR, sel).text
        except Exception:
            return ""

    def rows_text(sel: str) -> list[str]:
        """Texts of the rows matching `sel`, read in one script call so no row goes stale midway."""
        return d.execute_script("return [...document.querySelectorAll(arguments[0])].map(r => r.innerText)", sel)

    def shot(name: str) -> None:
        # Two animation frames: the DOM state waited for is painted before the capture.
        d.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()))")
        path = ARTIFACTS / f"{len(shots) + 1:02d}-{name}.png"
        d.get_screenshot_as_file(str(path))
        shots.append(path.name)

    def click(sel: str) -> None:
        wait(EC.element_to_be_clickable((By.CSS_SELECTOR, sel)), what=f"{sel} clickable").click()

    def has_text(sel: str, needle: str):
        return lambda drv: needle in text(sel)

    def choose(select_id: str, value: str) -> None:
        """Waits until the select offers `value` (versions load from Docker), then picks it."""
        opts = f"#{select_id} option"
        wait(lambda drv: value in [o.get_attribute("value") for o in drv.find_elements(By.CSS_SELECTOR, opts)], 30, f"{value} offered in #{select_id}")
        Select(d.find_element(By.ID, select_id)).select_by_value(value)

    # --- the app opens on the wizard
    wait(lambda drv: drv.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", 60, "the page to boot")
    first_paint = time.monotonic() - console.t0
    assert "current" in d.find_element(By.CSS_SELECTOR, '#stepper li[data-step="0"]').get_attribute("class")

    # --- 1 credentials: a GitHub token goes to the keychain; the page lists it, never the value
    token = "ghp_" + secrets.token_hex(18)
    Select(d.find_element(By.ID, "cred-kind")).select_by_value("github-token")
    d.find_element(By.ID, "cred-value").send_keys(token)
    click('#cred-form button[type="submit"]')
    wait(has_text("#cred-table", "GitHub token"), what="the stored credential listed")
    assert token not in d.page_source
    shot("credentials")
    click("#wiz-next")

    # --- 2 platform: the advisor points a newcomer at this computer
    wait(EC.visibility_of_element_located((By.ID, "advisor")), what="platform step")
    click('input[name="need"][value="try"]')
    wait(has_text("#platform-note", "Ready"), what="sandbox readiness")
    assert d.find_element(By.CSS_SELECTOR, '.choice[data-platform="sandbox"]').get_attribute("aria-checked") == "true"
    shot("platform")
    click("#wiz-next")

    # --- 3 provision and 4 GitHub do not apply to the sandbox and say why
    wait(has_text("#provision-body", "Nothing to provision"), what="provision note")
    click("#wiz-next")
    wait(has_text("#github-body", "not needed"), what="GitHub note")
    click("#wiz-next")

    # --- 5 deploy v1 with live progress
    choose("wizard-tag", "v1")
    click('#wizard-deploy button[type="submit"]')
    wait(EC.visibility_of_element_located((By.CSS_SELECTOR, "#wizard-progress .steps li")), 60, "live step progress")
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#wizard-progress .outcome")), 240, "the deploy to finish")
    outcome = text("#wizard-progress .outcome")
    assert outcome.startswith("Deployed"), f"{outcome}\n{text('#wizard-progress .log')}"
    assert "docker-compose" in text("#wizard-progress .log")
    wait(has_text("#serving", "serving v1"), what="header shows v1 serving")
    shot("deploy-v1")
    click("#wiz-next")

    # --- 6 verify: ready, and the model card of what serves
    wait(has_text("#verify-body", "Ready"), 30, "verification")
    assert "v1" in text("#verify-body") and "wbc-autoencoder" in text("#verify-body")
    shot("verify")
    click("#wiz-next")

    # --- dashboard: traffic with the drift scenario until drift is flagged
    wait(EC.visibility_of_element_located((By.ID, "view-dashboard")), what="dashboard")
    wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "figure.chart img")) >= 14, 30, "every chart drawn")
    click("#drift-switch")
    click("#traffic-toggle")
    wait(has_text("#traffic-state", "drift"), what="replay running with drift")
    wait(has_text("#drift-verdict", "Drift"), 120, "input drift flagged")
    wait(lambda drv: drv.find_elements(By.CSS_SELECTOR, "#alerts li.critical"), 30, "a critical alert badge")
    drifted = d.execute_script(
        "return [...document.querySelectorAll('#drift-table tbody tr')]"
        ".filter(r => r.innerText.includes('Drift')).map(r => r.dataset.feature)")
    assert len(drifted) >= 3, drifted
    shot("dashboard-drift")
    click('[data-range="86400"]')
    wait(lambda drv: drv.find_element(By.CSS_SELECTOR, '[data-range="86400"]').get_attribute("aria-pressed") == "true", what="24 h range")
    wait(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "figure.chart img")) >= 14, 30, "24 h charts")
    shot("dashboard-24h")
    click("#traffic-toggle")
    wait(has_text("#traffic-state", "no traffic"), what="replay stopped")

    # --- deployments: v2, then one-click rollback to v1
    click("#tab-deployments")
    choose("deploy-tag", "v2")
    click('#deploy-form button[type="submit"]')
    wait(has_text("#serving", "serving v2"), 240, "v2 serving")
    shot("deploy-v2")
    click('button[data-rollback]')
    wait(EC.visibility_of_element_located((By.ID, "confirm")), what="the confirmation")
    assert "Roll back to v1" in text("#confirm")
    shot("rollback-confirm")
    click("#confirm-ok")
    wait(has_text("#serving", "serving v1"), 240, "v1 serving again")
    wait(has_text("#history tbody", "rollback of"), 30, "the rollback in the history")
    shot("rolled-back")

    # --- a version that never becomes ready is refused beside the live one, which keeps serving
    choose("deploy-tag", "broken")
    click('#deploy-form button[type="submit"]')
    wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#deploy-progress .outcome.bad")), 120, "the broken deploy to fail")
    def first_row() -> str:
        rows = rows_text("#history tbody tr")
        return rows[0] if rows else ""

    wait(lambda drv: "broken" in first_row() and "failed" in first_row(), 30, "the failure in the history")
    row = first_row()
    assert "kept serving" in row, row
    assert "serving v1" in text("#serving")
    shot("broken-refused")

    with urllib.request.urlopen(f"http://127.0.0.1:{console.port}/v1/model", timeout=5) as r:
        model = json.load(r)
    assert model["image_tag"] == "v1", model

    # --- the closed and reopened app resumes on the dashboard
    settings = json.loads((console.data / "console.json").read_text())
    assert settings["wizard_step"] == 6 and settings["platform"] == "sandbox"

    # --- the credential is in the keychain and nowhere else
    d.quit()
    console.log.flush()
    places = [p for p in console.data.rglob("*") if p.is_file()] + [console.log_path]
    for p in places:
        assert token.encode() not in p.read_bytes(), f"the token leaked into {p}"
    print(f"first paint {first_paint:.2f} s; screenshots: {', '.join(shots)}")
