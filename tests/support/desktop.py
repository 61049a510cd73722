"""Driving the real desktop app: Xvfb, tauri-driver + WebKitWebDriver inside a private D-Bus session
with an unlocked throw-away gnome-keyring, and a small page helper over Selenium."""
from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from .docker import compose_down


COMMAND_TIMEOUT_S = 90
# Missing parts fail the test instead of skipping it where the suite must run everything (CI).
REQUIRED = os.environ.get("MLOPS_REQUIRE_DOCKER") == "1"
DESKTOP_TOOLS = ["Xvfb", "tauri-driver", "WebKitWebDriver", "dbus-run-session", "gnome-keyring-daemon"]


def need(ok: bool, why: str) -> None:
    """Skips the test unless `ok` (fails it instead when MLOPS_REQUIRE_DOCKER=1)."""
    import pytest

    if not ok:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


def release_binaries(root: Path) -> dict[str, Path]:
    """The release binaries the journeys run (console, inference, replay), and the tools that drive
    the window; `need`s each."""
    t = Path(os.environ.get("CARGO_TARGET_DIR", root / "target")) / "release"
    b = {
        "console": Path(os.environ.get("MLOPS_CONSOLE_BIN", t / "mlops-console")),
        "inference": Path(os.environ.get("INFERENCE_BIN", t / "inference")),
        "replay": Path(os.environ.get("MLOPS_REPLAY_BIN", t / "replay")),
    }
    for name, p in b.items():
        need(p.is_file(), f"{name} binary missing at {p}: build with cargo build --release --workspace")
    for tool in DESKTOP_TOOLS:
        need(shutil.which(tool) is not None, f"{tool} is not installed (scripts/setup.sh installs it)")
    return b


def free_low_ports(n: int) -> int:
    """A port p with p+1 … p+n-1 free too, below the kernel's ephemeral range: a port the OS hands out
    to outgoing connections (32768 and up) can be taken by one of the journey's own connections
    before its server binds it (a CI run lost the sandbox's candidate port so, and another, it seems,
    the WebKit driver's port between tauri-driver starting and WebKitWebDriver binding it)."""
    rng = random.SystemRandom()
    for _ in range(200):
        p = rng.randrange(20000, 32000)
        try:
            socks = [socket.socket() for _ in range(n)]
            try:
                for i, s in enumerate(socks):
                    s.bind(("127.0.0.1", p + i))
            finally:
                for s in socks:
                    s.close()
            return p
        except OSError:
            continue
    raise RuntimeError(f"no {n} free ports in a row")


def free_port_pair() -> int:
    """A port p with p+1 free too (a new version is tried on p+1 before the switch)."""
    return free_low_ports(2)


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


class Xvfb:
    """A virtual X display; Xvfb itself picks a free number (-displayfd), so that test processes
    started at the same moment never race for one."""

    def __init__(self) -> None:
        read, write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write,))
        finally:
            os.close(write)
        with os.fdopen(read) as r:
            number = r.readline().strip()  # written once the display accepts clients
        if not number.isdigit():
            self.proc.kill()
            raise RuntimeError(f"Xvfb did not start (exit code {self.proc.wait(timeout=10)})")
        self.display = f":{number}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Console:
    """The app under tauri-driver, in a private D-Bus session with an unlocked throw-away keyring,
    with its own HOME and data directory under `tmp`. `driver` is the Selenium session."""

    def __init__(self, tmp: Path, display: str, binaries: dict[str, Path], env: dict[str, str] | None = None):
        self.tmp = tmp
        self.display = display
        self.home = tmp / "home"
        self.data = tmp / "data"
        self.home.mkdir()
        self.port = free_port_pair()
        self.project = f"mlops-e2e-{os.getpid()}-{self.port}"
        self.driver_port = free_low_ports(1)
        native = free_low_ports(1)
        while native == self.driver_port:
            native = free_low_ports(1)
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
            MLOPS_INFERENCE_BIN=str(binaries["inference"]),
            # docker still needs to find the engine with a fresh HOME
            DOCKER_CONFIG=str(self.home / ".docker"),
            **(env or {}),
        )
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        script = (
            "printf '%s' \"$KEYRING_PASSWORD\" | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1; "
            "unset KEYRING_PASSWORD; "
            # Until the daemon owns the Secret Service's name: a client asking earlier makes D-Bus
            # start a second daemon that knows no password (and wants a prompt).
            "i=0; until dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus "
            "org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; "
            "do i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.05; done; "
            # The desktop's notification service (dunst), where installed, on this session and display;
            # the session's bus address is kept so the tests can ask it what it showed.
            f"printf '%s' \"$DBUS_SESSION_BUS_ADDRESS\" > {tmp}/session-bus; "
            f"if command -v dunst >/dev/null; then dunst > {tmp}/dunst.log 2>&1 & fi; "
            f"exec tauri-driver --port {self.driver_port} --native-port {native}"
        )
        env["KEYRING_PASSWORD"] = secrets.token_hex(8)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c", script], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.driver_port, 20, self.proc)

        from selenium import webdriver
        from selenium.webdriver.common.options import ArgOptions
        from selenium.webdriver.remote.client_config import ClientConfig

        opts = ArgOptions()
        opts.set_capability("browserName", "wry")
        opts.set_capability("tauri:options", {"application": str(binaries["console"])})
        url = f"http://127.0.0.1:{self.driver_port}"
        self.t0 = time.monotonic()
        # Every driver command gets an answer within COMMAND_TIMEOUT_S or fails: without it a command
        # the driver never answers (a CI run saw a screenshot do that) hangs the suite. No retries:
        # urllib3 would otherwise repeat a timed-out command (four times by default).
        config = ClientConfig(remote_server_addr=url, timeout=COMMAND_TIMEOUT_S,
                              init_args_for_pool_manager={"init_args_for_pool_manager": {"retries": False}})
        # tauri-driver proxies to WebKitWebDriver, which it starts itself: on a loaded machine that
        # one may not listen yet when the first session is asked for, and tauri-driver closes the
        # connection without an answer ("tcp connect error" in its log, or nothing at all: a CI run
        # with cargo test and pytest beside it saw that). That, and only that, is retried.
        for attempt in range(4):
            try:
                self.driver = webdriver.Remote(command_executor=url, options=opts, client_config=config)
                break
            except Exception as e:
                self.log.flush()
                tail = self.log_path.read_bytes()[-3000:].decode(errors="replace")
                closed = "tcp connect error" in tail or "RemoteDisconnected" in repr(e)
                if attempt < 3 and closed and self.proc.poll() is None:
                    time.sleep(3)
                    continue
                raise RuntimeError(f"tauri-driver gave no session ({e}); its log ends:\n{tail}") from e

    def notifications(self) -> list[str]:
        """Summaries of the desktop notifications the session's notification service showed (they are
        closed first, which moves them into its history). Empty without dunst."""
        import json as _json

        if not shutil.which("dunstctl"):
            return []
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=(self.tmp / "session-bus").read_text())
        subprocess.run(["dunstctl", "close-all"], env=env, capture_output=True, timeout=10)
        out = subprocess.run(["dunstctl", "history"], env=env, capture_output=True, text=True, timeout=10)
        data = _json.loads(out.stdout or '{"data": [[]]}')["data"][0]
        return [n["summary"]["data"] for n in data]

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
        compose_down(self.project, self.data / "sandbox")

    def query(self, sql: str) -> list[tuple]:
        """Rows of `sql` on the app's history database, opened read-only."""
        import sqlite3

        db = sqlite3.connect(f"file:{self.data / 'history.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def files(self) -> list[Path]:
        """Everything the app wrote to its data directory, and what the app and drivers printed."""
        self.log.flush()
        return [p for p in self.data.rglob("*") if p.is_file()] + [self.log_path]


class Page:
    """Waits, reads and clicks on the app's page; a screenshot of each named step goes to `shots_dir`.

    The page re-renders tables and charts on every refresh: an element found a moment ago may be gone
    by the time it is read. Waits retry on that; one-off reads go through `text` and `rows_text`."""

    def __init__(self, driver, shots_dir: Path, display: str | None = None):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        self.d = driver
        self.display = display
        self.transient = (NoSuchElementException, StaleElementReferenceException)
        self.shots_dir = shots_dir
        shots_dir.mkdir(parents=True, exist_ok=True)
        self.shots: list[str] = []
        self.missed: list[str] = []

    def wait(self, cond: Callable, timeout: float = 30.0, what: str = ""):
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2, ignored_exceptions=self.transient).until(cond)
        except Exception as e:
            self.shot("failure")
            try:
                errors = " | ".join(t for t in self.rows_text("#toast, #wiz-error, .form-error, #dash-error") if t)
            except Exception as unreadable:
                errors = f"(the page could not be read: {type(unreadable).__name__})"
            raise AssertionError(f"waiting for {what}: {e!r}\npage errors: {errors}") from e

    def find(self, sel: str):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, sel)

    def text(self, sel: str) -> str:
        try:
            return self.find(sel).text
        except Exception:
            return ""

    def rows_text(self, sel: str) -> list[str]:
        """Texts of the rows matching `sel`, read in one script call so no row goes stale midway."""
        return self.d.execute_script("return [...document.querySelectorAll(arguments[0])].map(r => r.innerText)", sel)

    def shot(self, name: str) -> None:
        """Saves a screenshot. Evidence, not a check: one that cannot be taken is listed in
        `missed` (and printed by the test) and the journey goes on; its waits do the checking.

        With the display known, the X server's own framebuffer is captured (ImageMagick's `import`):
        WebKitWebDriver's screenshot command, which asks the web process for a snapshot, sometimes
        never answered in CI, while the X server always does."""
        path = self.shots_dir / f"{len(self.shots) + len(self.missed) + 1:02d}-{name}.png"
        try:
            # Two animation frames: the DOM state waited for is painted before the capture.
            self.d.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()))")
            if self.display and shutil.which("import"):
                subprocess.run(["import", "-display", self.display, "-window", "root", str(path)],
                               capture_output=True, timeout=30, check=True)
            else:
                self.d.get_screenshot_as_file(str(path))
            self.shots.append(path.name)
        except Exception as e:
            self.missed.append(f"{path.name}: {type(e).__name__}")

    def click(self, sel: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

        # Centred first (a sticky header can cover an element scrolled just into view), and tried again
        # when a refresh replaced or covered it in between.
        for attempt in range(3):
            el = self.wait(EC.element_to_be_clickable((By.CSS_SELECTOR, sel)), what=f"{sel} clickable")
            try:
                self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
                el.click()
                return
            except (ElementClickInterceptedException, StaleElementReferenceException):
                if attempt == 2:
                    raise
                time.sleep(0.3)

    def visible(self, sel: str, timeout: float = 30.0, what: str = ""):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait(EC.visibility_of_element_located((By.CSS_SELECTOR, sel)), timeout, what or f"{sel} visible")

    def present(self, sel: str, timeout: float = 30.0, what: str = ""):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        return self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, sel)), timeout, what or f"{sel} present")

    def has_text(self, sel: str, needle: str) -> Callable:
        return lambda drv: needle in self.text(sel)

    def wait_text(self, sel: str, needle: str, timeout: float = 30.0, what: str = "") -> None:
        self.wait(self.has_text(sel, needle), timeout, what or f"{needle!r} in {sel}")

    def fill(self, sel: str, value: str) -> None:
        from selenium.webdriver.remote.file_detector import UselessFileDetector

        el = self.find(sel)
        el.clear()
        if value:
            # Typed as text: a path to an existing file must not turn into an upload (tauri-driver
            # has no /se/file), the form's inputs are text fields beside a native file dialog.
            with self.d.file_detector_context(UselessFileDetector):
                el.send_keys(value)

    def select(self, sel: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        # Centred first, like `click`: the sticky header covers an element scrolled just into view.
        el = self.find(sel)
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        Select(el).select_by_value(value)

    def choose(self, select_id: str, value: str) -> None:
        """Waits until the select offers `value` (versions load in the background), then picks it."""
        from selenium.webdriver.common.by import By

        opts = f"#{select_id} option"
        self.wait(lambda drv: value in [o.get_attribute("value") for o in drv.find_elements(By.CSS_SELECTOR, opts)],
                  30, f"{value} offered in #{select_id}")
        self.select(f"#{select_id}", value)

    def booted(self, timeout: float = 60) -> None:
        self.wait(lambda drv: self.find("body").get_attribute("data-ready") == "true", timeout, "the page to boot")

    def save_credential(self, kind: str, value: str, host: str | None = None) -> None:
        """Stores a credential through the Credentials step's form."""
        self.select("#cred-kind", kind)
        if host is not None:
            self.fill("#cred-host", host)
        self.find("#cred-value").send_keys(value)
        self.click('#cred-form button[type="submit"]')
        self.wait(lambda drv: self.find("#cred-value").get_attribute("value") == "", 20, f"{kind} saved")
