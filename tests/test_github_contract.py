"""Holds the GitHub double (tests/doubles/github_double.py) against GitHub's official OpenAPI
description (../shared/reference/github-openapi-subset.json, cut from @octokit/openapi): every route
it serves exists with that method, its success statuses are documented ones, its response bodies
validate against the documented schemas, and the request bodies it accepts are the documented ones.
Skips when that reference folder is absent (the project's tests must pass without it)."""
from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import jsonschema
import pytest
from nacl.public import PublicKey, SealedBox

from doubles import github_double as gd
from support.project import REPO_ROOT

SPEC_FILE = REPO_ROOT.parent / "shared" / "reference" / "github-openapi-subset.json"
TOKEN = "contract-test-token"


@pytest.fixture(scope="module")
def spec():
    if not SPEC_FILE.exists():
        pytest.skip(f"{SPEC_FILE} is not present; the contract check needs GitHub's OpenAPI description")
    return json.loads(SPEC_FILE.read_text())


@pytest.fixture()
def double():
    gd.Handler.state = gd.State(TOKEN)
    gd.Handler.state.add_repo("acme/inference")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), gd.Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def call(base: str, method: str, path: str, body=None, token: str = TOKEN):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method.upper(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def response_schema(spec, template: str, method: str, status: int):
    resp = spec["paths"][template][method]["responses"][str(status)]
    return resp.get("content", {}).get("application/json", {}).get("schema")


def test_every_route_is_documented_with_its_success_statuses(spec):
    for method, template, _rx, statuses in gd.ROUTES:
        assert template in spec["paths"], f"{template} is not a GitHub path"
        op = spec["paths"][template].get(method)
        assert op is not None, f"GitHub has no {method.upper()} {template}"
        for s in statuses:
            if s < 300:
                assert str(s) in op["responses"], f"{method.upper()} {template} never answers {s}"


def test_responses_and_accepted_requests_match_the_description(spec, double):
    base = "/repos/acme/inference/actions"
    status, key = call(double, "get", f"{base}/secrets/public-key")
    assert status == 200
    jsonschema.validate(key, response_schema(spec, "/repos/{owner}/{repo}/actions/secrets/public-key", "get", 200))

    # A request built exactly as the documentation describes: libsodium sealed box, base64, key_id.
    sealed = SealedBox(PublicKey(base64.b64decode(key["key"]))).encrypt(b"s3cr3t")
    body = {"encrypted_value": base64.b64encode(sealed).decode(), "key_id": key["key_id"]}
    put_op = spec["paths"]["/repos/{owner}/{repo}/actions/secrets/{secret_name}"]["put"]
    jsonschema.validate(body, put_op["requestBody"]["content"]["application/json"]["schema"])
    status, created = call(double, "put", f"{base}/secrets/EC2_HOST", body)
    assert status == 201
    jsonschema.validate(created, response_schema(spec, "/repos/{owner}/{repo}/actions/secrets/{secret_name}", "put", 201))
    status, updated = call(double, "put", f"{base}/secrets/EC2_HOST", body)
    assert (status, updated) == (204, None)
    assert gd.Handler.state.repos["acme/inference"]["secrets"]["EC2_HOST"] == "s3cr3t"

    # A body the description rejects (no key_id) is refused by the double too.
    bad = {"encrypted_value": body["encrypted_value"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, put_op["requestBody"]["content"]["application/json"]["schema"])
    assert call(double, "put", f"{base}/secrets/EC2_HOST", bad)[0] == 422

    var = {"name": "EC2_HOST_FINGERPRINT", "value": "SHA256:abc"}
    post_op = spec["paths"]["/repos/{owner}/{repo}/actions/variables"]["post"]
    jsonschema.validate(var, post_op["requestBody"]["content"]["application/json"]["schema"])
    assert call(double, "patch", f"{base}/variables/EC2_HOST_FINGERPRINT", var)[0] == 404
    status, made = call(double, "post", f"{base}/variables", var)
    assert status == 201
    jsonschema.validate(made, response_schema(spec, "/repos/{owner}/{repo}/actions/variables", "post", 201))
    assert call(double, "patch", f"{base}/variables/EC2_HOST_FINGERPRINT", {"value": "SHA256:def"})[0] == 204


def test_authentication_and_missing_repositories_answer_like_github(double):
    status, body = call(double, "get", "/repos/acme/inference/actions/secrets/public-key", token="wrong")
    assert (status, body["message"]) == (401, "Bad credentials")
    status, body = call(double, "get", "/repos/acme/nope/actions/secrets/public-key")
    assert (status, body["message"]) == (404, "Not Found")


def _without_required(schema):
    """The documented schema minus its `required` lists (and with OpenAPI's `nullable`): the double
    returns the fields the console reads, each with its documented type, not all of GitHub's others."""
    if isinstance(schema, dict):
        out = {k: _without_required(v) for k, v in schema.items() if k != "required"}
        # OpenAPI 3.0's `nullable: true` is JSON Schema's type [T, "null"].
        if out.get("nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_without_required(v) for v in schema]
    return schema


def test_workflow_runs_match_the_description(spec, double):
    base = "/repos/acme/inference/actions"
    dispatch = {"ref": "main", "inputs": {"tag": "v1"}, "return_run_details": True}
    op = spec["paths"]["/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"]["post"]
    jsonschema.validate(dispatch, op["requestBody"]["content"]["application/json"]["schema"])
    status, details = call(double, "post", f"{base}/workflows/deploy.yml/dispatches", dispatch)
    assert status == 200
    jsonschema.validate(details, response_schema(spec, "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", "post", 200))
    run_id = details["workflow_run_id"]
    assert call(double, "post", f"{base}/workflows/deploy.yml/dispatches", {"ref": "main", "inputs": {"tag": "v2"}}) == (204, None)

    status, runs = call(double, "get", f"{base}/workflows/deploy.yml/runs?event=workflow_dispatch&branch=main")
    assert status == 200 and runs["total_count"] == 2
    jsonschema.validate(runs, _without_required(response_schema(spec, "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs", "get", 200)))
    for _ in range(3):
        status, run = call(double, "get", f"{base}/runs/{run_id}")
        assert status == 200
        jsonschema.validate(run, _without_required(response_schema(spec, "/repos/{owner}/{repo}/actions/runs/{run_id}", "get", 200)))
    assert run["status"] == "completed" and run["conclusion"] == "success"
    status, jobs = call(double, "get", f"{base}/runs/{run_id}/jobs")
    assert status == 200
    jsonschema.validate(jobs, _without_required(response_schema(spec, "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get", 200)))
    assert "302" in spec["paths"]["/repos/{owner}/{repo}/actions/jobs/{job_id}/logs"]["get"]["responses"]
    assert "202" in spec["paths"]["/repos/{owner}/{repo}/actions/runs/{run_id}/cancel"]["post"]["responses"]
    assert "409" in spec["paths"]["/repos/{owner}/{repo}/actions/runs/{run_id}/cancel"]["post"]["responses"]


def test_contents_match_the_description(spec, double):
    path = "/repos/acme/inference/contents/.github/workflows/deploy.yml"
    op = spec["paths"]["/repos/{owner}/{repo}/contents/{path}"]
    assert call(double, "get", path)[0] == 404
    put = {"message": "Deploy workflow", "content": base64.b64encode(b"name: deploy\n").decode(), "branch": "main"}
    jsonschema.validate(put, op["put"]["requestBody"]["content"]["application/json"]["schema"])
    status, created = call(double, "put", path, put)
    assert status == 201
    jsonschema.validate(created, _without_required(op["put"]["responses"]["201"]["content"]["application/json"]["schema"]))
    status, file = call(double, "get", path + "?ref=main")
    assert status == 200
    # The one documented shape of a file: every required field of "Content File", strictly.
    file_schema = next(b for b in op["get"]["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"]
                       if b.get("title") == "Content File")
    jsonschema.validate(file, file_schema)
    assert base64.b64decode(file["content"]) == b"name: deploy\n"
    # Updating needs the current blob sha; a stale one is GitHub's 409.
    assert call(double, "put", path, put)[0] == 422
    assert "409" in op["put"]["responses"]
    assert call(double, "put", path, {**put, "sha": "0" * 40})[0] == 409
    status, updated = call(double, "put", path, {**put, "sha": file["sha"]})
    assert status == 200
    jsonschema.validate(updated, _without_required(op["put"]["responses"]["200"]["content"]["application/json"]["schema"]))


def test_the_actions_runner_runs_the_deploy_job_of_the_repository_workflow(double):
    """The double's actions runner on a deploy job of `run:` steps only (no SSH): outputs feed later
    expressions, secrets are masked in the log, a failing step fails the run and skips what follows,
    and the jobs answer keeps GitHub's shape (checked against the description when it is present)."""
    st = gd.Handler.state
    repo = st.repos["acme/inference"]
    repo["secrets"]["GHCR_PAT"] = "pat-value-0123456789"
    repo.setdefault("files", {})[".github/workflows/deploy.yml"] = b"""
jobs:
  deploy:
    steps:
      - id: target
        name: Image to deploy
        env:
          TAG: ${{ inputs.tag }}
        run: echo "image=ghcr.io/${GITHUB_REPOSITORY}" >> "$GITHUB_OUTPUT"; echo "tag=$TAG" >> "$GITHUB_OUTPUT"
      - name: Use it
        env:
          IMAGE: ${{ steps.target.outputs.image }}
          PAT: ${{ secrets.GHCR_PAT }}
        run: echo "deploying $IMAGE with $PAT"; exit 3
      - name: Never
        run: echo never
"""
    st.actions = {"registry": "127.0.0.1:5999", "ssh_port": 2222}
    base = "/repos/acme/inference/actions"
    status, details = call(double, "post", f"{base}/workflows/deploy.yml/dispatches",
                           {"ref": "main", "inputs": {"tag": "v7"}, "return_run_details": True})
    assert status == 200
    run_id = details["workflow_run_id"]
    deadline = time.monotonic() + 30
    while (run := call(double, "get", f"{base}/runs/{run_id}")[1])["status"] != "completed":
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    assert run["conclusion"] == "failure", run
    status, jobs = call(double, "get", f"{base}/runs/{run_id}/jobs")
    steps = [(s["name"], s["status"], s["conclusion"]) for s in jobs["jobs"][0]["steps"]]
    assert steps == [("Set up job", "completed", "success"), ("Image to deploy", "completed", "success"),
                     ("Use it", "completed", "failure"), ("Never", "completed", "skipped"),
                     ("Complete job", "completed", "success")], steps
    log = st.runs[run_id]["log"]
    assert "deploying 127.0.0.1:5999/acme/inference with ***" in log, log
    assert "pat-value" not in log and "Process completed with exit code 3" in log, log
    # A dispatch of a workflow the repository does not hold is GitHub's 404.
    assert call(double, "post", f"{base}/workflows/other.yml/dispatches", {"ref": "main", "inputs": {"tag": "v7"}})[0] == 404
    if SPEC_FILE.exists():
        spec = json.loads(SPEC_FILE.read_text())
        jsonschema.validate(jobs, _without_required(response_schema(spec, "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get", 200)))
