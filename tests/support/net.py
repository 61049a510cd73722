"""Loopback networking helpers for system tests (standard library only)."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the OS picks it; bind soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(method: str, url: str, json_body: Any = None, timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> HttpResponse:
    """One HTTP request; non-2xx answers are returned, not raised. Connection errors raise OSError."""
    data = None
    hdrs = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResponse(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as e:
        return HttpResponse(e.code, e.read(), dict(e.headers or {}))


def http_get_json(url: str, timeout: float = 10.0) -> Any:
    r = http_request("GET", url, timeout=timeout)
    assert r.status == 200, f"GET {url} answered {r.status}: {r.body[:500]!r}"
    return r.json()


def http_post_json(url: str, body: Any, timeout: float = 30.0) -> Any:
    r = http_request("POST", url, json_body=body, timeout=timeout)
    assert r.status == 200, f"POST {url} answered {r.status}: {r.body[:500]!r}"
    return r.json()


def wait_for_http(url: str, timeout: float = 30.0, status: int = 200, interval: float = 0.1) -> HttpResponse:
    """Polls `url` until it answers `status`; raises TimeoutError with the last answer or error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            r = http_request("GET", url, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
            if r.status == status:
                return r
            last = f"HTTP {r.status}: {r.body[:200]!r}"
        except OSError as e:
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer {status} within {timeout:.0f} s (last: {last})")
        time.sleep(interval)
