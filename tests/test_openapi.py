"""/openapi.json describes the service accurately: schemathesis generates requests from it (valid and
invalid ones) against the real release binary and checks every answer against the document (status
codes, content types, response schemas, headers) and that nothing answers 5xx.

It runs schemathesis' own CLI with a fixed seed: its pytest plugin does not work with pytest 9."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.service import running


@pytest.fixture(scope="module")
def service_url():
    with running("--max-batch-rows", "16") as (url, _):
        yield url


def test_every_answer_matches_the_document(service_url, tmp_path):
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is not installed in the venv (scripts/setup.sh installs it)"
    run = subprocess.run(
        [st, "run", service_url + "/openapi.json", "--checks", "all", "--max-examples", "60",
         "--seed", "20261129", "--generation-database", "none", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # Every operation in the document was exercised (schemathesis leaves /openapi.json itself out).
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested, run.stdout[-3000:]
    assert selected[1] == selected[2] == tested[1] and int(tested[1]) >= 8, run.stdout[-3000:]
