"""A webhook receiver the sandbox's container can reach: an HTTP server on this machine's Docker bridge
address (the container's loopback is its own), recording every POST. The URL carries a random path, as
a Slack incoming webhook's does, so it is a secret the tests can search for in files and logs."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def docker_bridge_address() -> str:
    """The host's address on Docker's default bridge (docker0), which every container can reach."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    return out[out.index("inet") + 1].split("/")[0]


class Receiver:
    def __init__(self, host: str):
        self.path = f"/hook/{secrets.token_hex(16)}"
        self.posts: list[dict] = []
        lock = threading.Lock()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = self.path == me.path
                if ok:
                    with lock:
                        me.posts.append(json.loads(body))
                self.send_response(200 if ok else 404)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}{self.path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        """Each post's one line (Slack's `{"text": ...}` shape, the service's default)."""
        return [p.get("text", json.dumps(p)) for p in list(self.posts)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
