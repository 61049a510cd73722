"""Desktop app start-up benchmark (issue 6 targets: cold start to first paint ≤ 1.5 s, idle RSS ≤ 200 MB).

Two ways, ROUNDS launches each, release build under Xvfb:
  first paint  the binary started directly (no WebDriver): from spawning it to the first frame that
               shows the window's header on the X screen (polled with ImageMagick's `import`, about
               every 30 ms, so the figure is at most that much late);
Then through tauri-driver, exactly as the end-to-end test launches it:
  first data   from the app process's start (its /proc start time) to the moment the page has drawn
               its first screen with the app's data (body[data-ready], stamped by the page itself);
  idle RSS     after 10 s on the dashboard with nothing deployed: the app process alone, and with
               the WebKit processes it starts (web content, network), which are part of its cost;
               also their summed PSS, which counts the libraries they share once.

  source scripts/env.sh && python src-tauri/bench/startup.py [ROUNDS]
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from test_desktop_e2e import Console  # noqa: E402  (same launcher as the e2e test)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


def start_time(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return boot_time() + int(fields[19]) / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (libwebkit2gtk, GTK, Mesa in every process) split among
    the processes mapping them, so a sum over processes counts each page once."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(children.get(p, []))
    return seen


def app_pid(binary: Path) -> int:
    out = subprocess.run(["pgrep", "-n", "-f", str(binary)], capture_output=True, text=True).stdout.split()
    if not out:
        raise RuntimeError("the app process was not found")
    return int(out[0])


HEADER = (31, 58, 95)  # the header's background, #1f3a5f (ui/styles.css --brand)


def pixel(display: str, x: int, y: int) -> tuple[int, ...]:
    out = subprocess.run(["import", "-display", display, "-window", "root", "-crop", f"1x1+{x}+{y}", "txt:-"],
                         capture_output=True, text=True).stdout
    m = re.search(r"srgb\((\d+),(\d+),(\d+)\)", out)
    return tuple(int(v) for v in m.groups()) if m else ()


def direct_first_paint(binary: Path, display: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DISPLAY=display, MLOPS_CONSOLE_DATA_DIR=tmp, HOME=tmp)
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        t0 = time.monotonic()
        p = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while pixel(display, 10, 10) != HEADER:
                assert p.poll() is None, "the app exited"
                assert time.monotonic() - t0 < 30, "nothing painted within 30 s"
            return time.monotonic() - t0
        finally:
            p.terminate()
            p.wait(timeout=10)
            time.sleep(0.5)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    t = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    binaries = {
        "console": Path(os.environ.get("MLOPS_CONSOLE_BIN", t / "mlops-console")),
        "inference": t / "inference",
        "replay": Path(os.environ.get("MLOPS_REPLAY_BIN", t / "replay")),
    }
    n = next(i for i in range(90, 200) if not Path(f"/tmp/.X11-unix/X{i}").exists())
    xvfb = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    paints, app_rss, total_rss, total_pss, phases, direct = [], [], [], [], [], []
    pss_by_process: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):
            direct.append(direct_first_paint(binaries["console"], f":{n}"))
        for _ in range(rounds):
            with tempfile.TemporaryDirectory() as tmp:
                c = Console(Path(tmp), f":{n}", binaries)
                try:
                    d = c.driver
                    deadline = time.monotonic() + 30
                    while d.find_element("tag name", "body").get_attribute("data-ready") != "true":
                        assert time.monotonic() < deadline, "the page did not boot"
                        time.sleep(0.02)
                    body = d.find_element("tag name", "body")
                    ready_at, nav_at, script_at = (int(body.get_attribute(a)) / 1000 for a in ("data-ready-at", "data-nav-at", "data-script-at"))
                    pid = app_pid(binaries["console"])
                    t0 = start_time(pid)
                    paints.append(ready_at - t0)
                    phases.append((nav_at - t0, script_at - nav_at, ready_at - script_at))
                    d.find_element("id", "tab-dashboard").click()
                    time.sleep(10)
                    procs = descendants(pid)
                    app_rss.append(rss_kib(pid) / 1024)
                    total_rss.append(sum(rss_kib(p) for p in procs) / 1024)
                    total_pss.append(sum(pss_kib(p) for p in procs) / 1024)
                    for p in procs:
                        name = "app" if p == pid else Path(f"/proc/{p}/comm").read_text().strip()
                        pss_by_process.setdefault(name, []).append(pss_kib(p) / 1024)
                finally:
                    c.close()
    finally:
        xvfb.terminate()
    print(f"desktop start-up, {rounds} cold launches (release build, Xvfb):")
    print(f"  first paint   median {statistics.median(direct):.2f} s   max {max(direct):.2f} s (started directly)")
    print(f"  first data    median {statistics.median(paints):.2f} s   max {max(paints):.2f} s (through tauri-driver)")
    nav, script, data = (statistics.median(p[i] for p in phases) for i in range(3))
    print(f"    of which    process → page load starts {nav:.2f} s, → scripts run {script:.2f} s, → first screen with data {data:.2f} s")
    print(f"  idle RSS app  median {statistics.median(app_rss):.0f} MiB   max {max(app_rss):.0f} MiB")
    print(f"  idle RSS all  median {statistics.median(total_rss):.0f} MiB   max {max(total_rss):.0f} MiB (with WebKit's processes; shared libraries counted in each)")
    print(f"  idle PSS all  median {statistics.median(total_pss):.0f} MiB   max {max(total_pss):.0f} MiB (the same processes, shared pages counted once)")
    for name, values in sorted(pss_by_process.items()):
        print(f"    PSS {name:<20} median {statistics.median(values):.0f} MiB")


if __name__ == "__main__":
    main()
