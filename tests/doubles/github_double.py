"""A local stand-in for the few GitHub REST endpoints the console uses, encoding GitHub's documented
request and response shapes (docs.github.com/rest/actions/secrets and /actions/variables):

  GET    /repos/{owner}/{repo}/actions/secrets/public-key     200 {key_id, key}
  PUT    /repos/{owner}/{repo}/actions/secrets/{secret_name}  201 {} created | 204 updated
         body {encrypted_value: base64 libsodium sealed box, key_id}; 422 on a malformed body
  PATCH  /repos/{owner}/{repo}/actions/variables/{name}       204 | 404 when it does not exist
  POST   /repos/{owner}/{repo}/actions/variables              201 {} | 409 when it exists
  errors 401 {"message": "Bad credentials"}, 403 (missing permission), 404 {"message": "Not Found"},
         429 / 403 rate limits with retry-after or x-ratelimit-* headers, 5xx

It holds each repository's real Curve25519 key pair and decrypts every received sealed box with
PyNaCl, so a test can check that GitHub could read what the client sent. Test-only control
endpoints live under /_double/ (configure repositories and faults, read what was received).
ROUTES is read by tests/test_github_contract.py, which holds it against GitHub's OpenAPI description.

  python tests/doubles/github_double.py --token TOKEN   # prints "listening on PORT", serves 127.0.0.1
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from nacl.public import PrivateKey, SealedBox

# (method, OpenAPI path template, regex, statuses this double answers with)
ROUTES = [
    ("get", "/repos/{owner}/{repo}/actions/secrets/public-key",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/secrets/public-key$", [200, 401, 403, 404]),
    ("put", "/repos/{owner}/{repo}/actions/secrets/{secret_name}",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/secrets/(?P<name>[^/]+)$", [201, 204]),
    ("patch", "/repos/{owner}/{repo}/actions/variables/{name}",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/variables/(?P<name>[^/]+)$", [204]),
    ("post", "/repos/{owner}/{repo}/actions/variables",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/variables$", [201]),
]
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$")


class State:
    def __init__(self, token: str):
        self.lock = threading.Lock()
        self.token = token
        # "owner/repo" -> {"key": PrivateKey, "key_id": str, "secrets": {name: plaintext},
        #                  "variables": {name: value}, "can_write": bool}
        self.repos: dict[str, dict] = {}
        # [{"method", "path_re", "status", "headers", "body", "times"}]
        self.faults: list[dict] = []
        self.requests: list[dict] = []

    def add_repo(self, full: str, can_write: bool = True) -> None:
        with self.lock:
            self.repos[full] = {"key": PrivateKey.generate(), "key_id": str(1000 + len(self.repos)),
                                "secrets": {}, "variables": {}, "can_write": can_write}


def public(repo: dict) -> dict:
    return {"key_id": repo["key_id"], "key": base64.b64encode(bytes(repo["key"].public_key)).decode()}


class Handler(BaseHTTPRequestHandler):
    state: State
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):  # quiet
        pass

    def _send(self, status: int, body=None, headers: dict | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if body is not None:
            self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-github-api-version-selected", "2022-11-28")
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return ValueError

    def _handle(self, method: str) -> None:
        st = self.state
        body = self._body()
        path = self.path.split("?")[0]
        if path.startswith("/_double/"):
            return self._control(method, path, body)
        with st.lock:
            st.requests.append({"method": method, "path": path, "body": None if body is ValueError else body,
                                "authorization": self.headers.get("authorization", ""),
                                "accept": self.headers.get("accept", ""),
                                "api_version": self.headers.get("x-github-api-version", "")})
            for f in st.faults:
                if f["method"] == method and re.search(f["path_re"], path) and f["times"] != 0:
                    f["times"] -= 1
                    return self._send(f["status"], f.get("body"), f.get("headers"))
        auth = self.headers.get("authorization", "")
        if auth not in (f"Bearer {st.token}", f"token {st.token}"):
            return self._send(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                                    "status": "401"})
        for m, _tmpl, rx, _codes in ROUTES:
            match = re.match(rx, path)
            if m == method and match:
                return getattr(self, f"_{m}_{ROUTES.index((m, _tmpl, rx, _codes))}")(match, body)
        return self._send(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})

    def _repo(self, match):
        with self.state.lock:
            return self.state.repos.get(f"{match['owner']}/{match['repo']}")

    def _not_found(self):
        return self._send(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                                "status": "404"})

    def _forbidden(self):
        return self._send(403, {"message": "Resource not accessible by personal access token",
                                "documentation_url": "https://docs.github.com/rest/actions/secrets",
                                "status": "403"})

    # GET public key
    def _get_0(self, match, _body):
        repo = self._repo(match)
        if repo is None:
            return self._not_found()
        if not repo["can_write"]:
            return self._forbidden()
        return self._send(200, public(repo))

    # PUT secret
    def _put_1(self, match, body):
        repo = self._repo(match)
        if repo is None:
            return self._not_found()
        if not repo["can_write"]:
            return self._forbidden()
        name = match["name"]
        if not SECRET_NAME.match(name) or name.upper().startswith("GITHUB_"):
            return self._send(422, {"message": f"Invalid secret name {name}"})
        if not isinstance(body, dict) or not isinstance(body.get("encrypted_value"), str) \
                or not isinstance(body.get("key_id"), str) or not BASE64.match(body["encrypted_value"]):
            return self._send(422, {"message": "Invalid request.\n\n\"encrypted_value\", \"key_id\" are required"})
        if body["key_id"] != repo["key_id"]:
            return self._send(422, {"message": "Bad request - key_id does not match the repository's public key"})
        try:
            plain = SealedBox(repo["key"]).decrypt(base64.b64decode(body["encrypted_value"])).decode()
        except Exception:  # noqa: BLE001 - any failure means GitHub could not read it
            return self._send(422, {"message": "Bad request - encrypted_value could not be decrypted"})
        with self.state.lock:
            existed = name.upper() in repo["secrets"]
            repo["secrets"][name.upper()] = plain
        return self._send(204) if existed else self._send(201, {})

    # PATCH variable
    def _patch_2(self, match, body):
        repo = self._repo(match)
        if repo is None or match["name"].upper() not in repo["variables"]:
            return self._not_found()
        if not repo["can_write"]:
            return self._forbidden()
        with self.state.lock:
            repo["variables"][match["name"].upper()] = (body or {}).get("value", "")
        return self._send(204)

    # POST variable
    def _post_3(self, match, body):
        repo = self._repo(match)
        if repo is None:
            return self._not_found()
        if not repo["can_write"]:
            return self._forbidden()
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not isinstance(body.get("value"), str):
            return self._send(422, {"message": "Invalid request.\n\n\"name\", \"value\" are required"})
        with self.state.lock:
            if body["name"].upper() in repo["variables"]:
                return self._send(409, {"message": "Already exists - Variable already exists"})
            repo["variables"][body["name"].upper()] = body["value"]
        return self._send(201, {})

    def _control(self, method, path, body):
        st = self.state
        if method == "post" and path == "/_double/repos":
            st.add_repo(body["full_name"], body.get("can_write", True))
            return self._send(200, {})
        if method == "post" and path == "/_double/faults":
            with st.lock:
                st.faults.append(body)
            return self._send(200, {})
        if method == "get" and path == "/_double/state":
            with st.lock:
                return self._send(200, {
                    "repos": {k: {"secrets": v["secrets"], "variables": v["variables"]} for k, v in st.repos.items()},
                    "requests": st.requests,
                })
        return self._send(404, {"message": "unknown control endpoint"})

    def do_GET(self):
        self._handle("get")

    def do_PUT(self):
        self._handle("put")

    def do_PATCH(self):
        self._handle("patch")

    def do_POST(self):
        self._handle("post")

    def do_DELETE(self):
        self._handle("delete")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--token-stdin", action="store_true", help="read the accepted token from stdin")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    token = sys.stdin.readline().strip() if a.token_stdin else "test-token"
    Handler.state = State(token)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"listening on {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
