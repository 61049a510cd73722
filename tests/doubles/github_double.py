"""A local stand-in for the few GitHub REST endpoints the console uses, encoding GitHub's documented
request and response shapes (docs.github.com/rest/actions/secrets and /actions/variables):

  GET    /repos/{owner}/{repo}/actions/secrets/public-key     200 {key_id, key}
  PUT    /repos/{owner}/{repo}/actions/secrets/{secret_name}  201 {} created | 204 updated
         body {encrypted_value: base64 libsodium sealed box, key_id}; 422 on a malformed body
  PATCH  /repos/{owner}/{repo}/actions/variables/{name}       204 | 404 when it does not exist
  POST   /repos/{owner}/{repo}/actions/variables              201 {} | 409 when it exists
  POST   /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches  200 {workflow_run_id, run_url,
         html_url} with return_run_details | 204; 422 without ref or the `tag` input
  GET    /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs  200 {total_count, workflow_runs}
  GET    /repos/{owner}/{repo}/actions/runs/{run_id}           200 run {id, status, conclusion, ...}
  GET    /repos/{owner}/{repo}/actions/runs/{run_id}/jobs      200 {total_count, jobs}
  GET    /repos/{owner}/{repo}/actions/jobs/{job_id}/logs      302 Location: signed log URL
  POST   /repos/{owner}/{repo}/actions/runs/{run_id}/cancel    202 | 409 when already completed
  GET    /repos/{owner}/{repo}/contents/{path}                 200 file {content base64, sha, ...} | 404
  PUT    /repos/{owner}/{repo}/contents/{path}                 201 created | 200 updated (needs the blob
         sha) | 409 stale sha | 422
  errors 401 {"message": "Bad credentials"}, 403 (missing permission), 404 {"message": "Not Found"},
         429 / 403 rate limits with retry-after or x-ratelimit-* headers, 5xx

It holds each repository's real Curve25519 key pair and decrypts every received sealed box with
PyNaCl, so a test can check that GitHub could read what the client sent. Workflow runs go
queued → in_progress → completed one step per poll; job logs redirect (302) to a "signed URL" that
refuses requests carrying credentials. Test-only control endpoints live under /_double/ (configure repositories and faults, read what was received).
After POST /_double/actions, a dispatched run instead runs the deploy job of the workflow file the
repository holds, for real (tests/doubles/actions_runner.py); its jobs list live step statuses and
its log is what the job printed, secrets masked.
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

try:
    from . import actions_runner
except ImportError:  # run as a script: the sibling module is on sys.path
    import actions_runner

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
    ("post", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/workflows/(?P<wf>[^/]+)/dispatches$", [200, 204]),
    ("get", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/workflows/(?P<wf>[^/]+)/runs$", [200]),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs/(?P<run>[0-9]+)$", [200]),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs/(?P<run>[0-9]+)/jobs$", [200]),
    ("get", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/jobs/(?P<job>[0-9]+)/logs$", [302]),
    ("post", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/actions/runs/(?P<run>[0-9]+)/cancel$", [202]),
    ("get", "/repos/{owner}/{repo}/contents/{path}",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/contents/(?P<path>.+)$", [200]),
    ("put", "/repos/{owner}/{repo}/contents/{path}",
     r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/contents/(?P<path>.+)$", [200, 201]),
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
        # workflow runs: id -> {"repo", "workflow", "ref", "inputs", "created_at", "polls", "conclusion",
        #                       "log", "cancelled", "polls_to_finish"}
        self.runs: dict[int, dict] = {}
        # what the next dispatched run will do; "polls_to_finish" (default 3) is how many status
        # polls it takes to complete, so a test can keep a run going until it cancels it
        self.next_run = {"conclusion": "success", "log": "deployed\n", "details": True}
        # set by POST /_double/actions: dispatched runs really run the workflow's deploy job
        # (tests/doubles/actions_runner.py) against {"registry": "host:port", "ssh_port": N}
        self.actions: dict | None = None

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

    def _run_json(self, run_id: int, run: dict) -> dict:
        host = self.headers.get("host", "127.0.0.1")
        return {"id": run_id, "name": "deploy", "run_number": run_id - 9000, "event": "workflow_dispatch",
                "status": run["status"], "conclusion": run["conclusion_now"], "head_branch": run["ref"],
                "path": f".github/workflows/{run['workflow']}", "created_at": run["created_at"],
                "updated_at": run["created_at"], "url": f"http://{host}/repos/{run['repo']}/actions/runs/{run_id}",
                "html_url": f"https://github.com/{run['repo']}/actions/runs/{run_id}"}

    def _advance(self, run: dict) -> None:
        """queued → in_progress → completed, one step per poll (a cancelled run completes at once).
        A run of the actions runner moves on its own."""
        if run.get("actions"):
            return
        run["polls"] += 1
        if run["cancelled"]:
            run["status"], run["conclusion_now"] = "completed", "cancelled"
        elif run["polls"] >= run["polls_to_finish"]:
            run["status"], run["conclusion_now"] = "completed", run["conclusion"]
        elif run["polls"] == 2:
            run["status"] = "in_progress"

    # POST dispatch
    def _post_4(self, match, body):
        full = f"{match['owner']}/{match['repo']}"
        repo = self._repo(match)
        if repo is None:
            return self._not_found()
        if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
            return self._send(422, {"message": "Invalid request.\n\n\"ref\" is required"})
        if not isinstance(body.get("inputs", {}), dict) or "tag" not in body.get("inputs", {}):
            return self._send(422, {"message": "Required input 'tag' not provided"})
        workflow = repo.get("files", {}).get(f".github/workflows/{match['wf']}")
        if self.state.actions is not None and workflow is None:
            return self._not_found()
        with self.state.lock:
            run_id = 9001 + len(self.state.runs)
            nr = self.state.next_run
            self.state.runs[run_id] = {
                "repo": full, "workflow": match["wf"], "ref": body["ref"], "inputs": body["inputs"],
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "polls": 0,
                "status": "queued", "conclusion_now": None, "conclusion": nr["conclusion"], "log": nr["log"],
                "cancelled": False, "polls_to_finish": int(nr.get("polls_to_finish", 3))}
            details = nr.get("details", True)
            if self.state.actions is not None:
                run = self.state.runs[run_id]
                run.update(actions=True, log="", steps=[], conclusion=None)
                job = actions_runner.Job(run, run_id, full, repo, workflow.decode(), self.state.actions,
                                         self.state.lock)
        if self.state.actions is not None:
            job.start()
        if body.get("return_run_details") and details:
            host = self.headers.get("host", "127.0.0.1")
            return self._send(200, {"workflow_run_id": run_id,
                                    "run_url": f"http://{host}/repos/{full}/actions/runs/{run_id}",
                                    "html_url": f"https://github.com/{full}/actions/runs/{run_id}"})
        return self._send(204)

    # GET workflow runs (newest first), filtered by event, branch and created>=
    def _get_5(self, match, _body):
        from urllib.parse import parse_qs, urlparse
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        full = f"{match['owner']}/{match['repo']}"
        with self.state.lock:
            runs = [(i, r) for i, r in sorted(self.state.runs.items(), reverse=True)
                    if r["repo"] == full and r["workflow"] == match["wf"]
                    and q.get("event", "workflow_dispatch") == "workflow_dispatch"
                    and q.get("branch", r["ref"]) == r["ref"]
                    and r["created_at"] >= q.get("created", ">=").removeprefix(">=")]
            items = [self._run_json(i, r) for i, r in runs]
        return self._send(200, {"total_count": len(items), "workflow_runs": items})

    # GET one run
    def _get_6(self, match, _body):
        with self.state.lock:
            run = self.state.runs.get(int(match["run"]))
            if run is None:
                return self._not_found()
            self._advance(run)
            out = self._run_json(int(match["run"]), run)
        return self._send(200, out)

    # GET jobs of a run
    def _get_7(self, match, _body):
        with self.state.lock:
            run = self.state.runs.get(int(match["run"]))
            if run is None:
                return self._not_found()
            done = run["status"] == "completed"
            job = {"id": int(match["run"]) * 10, "run_id": int(match["run"]), "name": "deploy",
                   "status": run["status"], "conclusion": run["conclusion_now"],
                   "steps": [{"name": "Deploy to EC2", "status": run["status"], "conclusion": run["conclusion_now"],
                              "number": 2}] if done else []}
            if run.get("actions"):
                job["steps"] = [dict(s) for s in run["steps"]]
        return self._send(200, {"total_count": 1, "jobs": [job]})

    # GET job logs: 302 to a signed URL on another host (here /_double/blob, which refuses auth)
    def _get_8(self, match, _body):
        host = self.headers.get("host", "127.0.0.1")
        return self._send(302, None, {"location": f"http://{host}/_double/blob/{match['job']}?sig=abc"})

    # POST cancel
    def _post_9(self, match, _body):
        with self.state.lock:
            run = self.state.runs.get(int(match["run"]))
            if run is None:
                return self._not_found()
            if run["status"] == "completed":
                return self._send(409, {"message": "Cannot cancel a workflow run that is completed."})
            run["cancelled"] = True
        return self._send(202, {})

    def _file_json(self, full: str, path: str, data: bytes) -> dict:
        import hashlib
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id
        host = self.headers.get("host", "127.0.0.1")
        url = f"http://{host}/repos/{full}/contents/{path}"
        html = f"https://github.com/{full}/blob/main/{path}"
        git = f"http://{host}/repos/{full}/git/blobs/{sha}"
        return {"type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
                "path": path, "content": base64.encodebytes(data).decode(), "sha": sha, "url": url,
                "git_url": git, "html_url": html,
                "download_url": f"https://raw.githubusercontent.com/{full}/main/{path}",
                "_links": {"self": url, "git": git, "html": html}}

    # GET a file's contents (on the default branch, or ?ref=)
    def _get_10(self, match, _body):
        repo = self._repo(match)
        if repo is None:
            return self._not_found()
        with self.state.lock:
            data = repo.setdefault("files", {}).get(match["path"])
        if data is None:
            return self._not_found()
        return self._send(200, self._file_json(f"{match['owner']}/{match['repo']}", match["path"], data))

    # PUT a file: create (201) or, with the current blob sha, update (200); a stale sha is 409
    def _put_11(self, match, body):
        repo = self._repo(match)
        if repo is None:
            return self._not_found()
        if not repo["can_write"]:
            return self._send(403, {"message": "Resource not accessible by personal access token"})
        if not isinstance(body, dict) or not isinstance(body.get("message"), str) or not isinstance(body.get("content"), str):
            return self._send(422, {"message": "Invalid request.\n\n\"message\", \"content\" are required"})
        try:
            data = base64.b64decode(body["content"], validate=True)
        except Exception:  # noqa: BLE001
            return self._send(422, {"message": "content is not valid Base64"})
        full = f"{match['owner']}/{match['repo']}"
        with self.state.lock:
            files = repo.setdefault("files", {})
            old = files.get(match["path"])
            if old is not None:
                current = self._file_json(full, match["path"], old)["sha"]
                if body.get("sha") is None:
                    return self._send(422, {"message": "Invalid request.\n\n\"sha\" wasn't supplied."})
                if body["sha"] != current:
                    return self._send(409, {"message": f"{match['path']} does not match {body['sha']}"})
            files[match["path"]] = data
            repo.setdefault("commits", []).append(body["message"])
        out = {"content": {k: v for k, v in self._file_json(full, match["path"], data).items()
                           if k not in ("content", "encoding")},
               "commit": {"sha": "0" * 40, "message": body["message"]}}
        return self._send(201 if old is None else 200, out)

    def _control(self, method, path, body):
        st = self.state
        if method == "post" and path == "/_double/repos":
            st.add_repo(body["full_name"], body.get("can_write", True))
            return self._send(200, {})
        if method == "post" and path == "/_double/faults":
            with st.lock:
                st.faults.append(body)
            return self._send(200, {})
        if method == "post" and path == "/_double/file":
            with st.lock:
                st.repos[body["full_name"]].setdefault("files", {})[body["path"]] = body["text"].encode()
            return self._send(200, {})
        if method == "post" and path == "/_double/actions":
            with st.lock:
                st.actions = {"registry": str(body["registry"]), "ssh_port": int(body["ssh_port"])}
            return self._send(200, {})
        if method == "post" and path == "/_double/next_run":
            with st.lock:
                st.next_run = body
            return self._send(200, {})
        if method == "get" and path.startswith("/_double/blob/"):
            # The signed log URL: no GitHub credentials may be sent here.
            if self.headers.get("authorization"):
                return self._send(400, {"message": "credentials sent to the log storage host"})
            job = int(path.rsplit("/", 1)[1])
            with st.lock:
                run = st.runs.get(job // 10)
            data = (run or {}).get("log", "").encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if method == "get" and path == "/_double/state":
            with st.lock:
                return self._send(200, {
                    "repos": {k: {"secrets": v["secrets"], "variables": v["variables"],
                                  "files": {p: d.decode() for p, d in v.get("files", {}).items()},
                                  "commits": v.get("commits", [])} for k, v in st.repos.items()},
                    "runs": {str(k): {kk: vv for kk, vv in v.items()} for k, v in st.runs.items()},
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
