"""The committed drift fixture is SciPy's output: regenerating it with
inference-image/tests/fixtures/gen_drift_fixtures.py gives the same file. Together with the Rust test
inference-image/tests/drift_scipy.rs (Rust == fixture to 1e-6) this proves the service's drift
statistics equal SciPy's.

Run: source scripts/env.sh && python -m pytest tests/test_drift_fixtures.py -q
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import scipy

from support import project

FIXTURES = project.REPO_ROOT / "inference-image" / "tests" / "fixtures"
GENERATOR = FIXTURES / "gen_drift_fixtures.py"
COMMITTED = FIXTURES / "drift_cases.json"
# Floats may differ in the last bits across CPUs (numpy's SIMD summation order, long double width);
# anything beyond that means the fixture is not what this SciPy computes.
REL_TOL = 1e-12


def assert_same(got, want, where: str = "$") -> None:
    assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, dict):
        assert got.keys() == want.keys(), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-300), f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def test_committed_fixture_is_scipys_output(tmp_path: Path) -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed["meta"]["scipy"] == scipy.__version__, (
        "the fixture was generated with another SciPy; regenerate it with "
        f"python {GENERATOR.relative_to(project.REPO_ROOT)} and rerun the Rust test drift_scipy")
    out = tmp_path / "drift_cases.json"
    subprocess.run([sys.executable, str(GENERATOR), str(out)], check=True, capture_output=True,
                   timeout=300)
    assert_same(json.loads(out.read_text(encoding="utf-8")), committed)


def test_fixture_covers_the_cases_the_rust_test_relies_on() -> None:
    data = json.loads(COMMITTED.read_text(encoding="utf-8"))
    cases = data["cases"]
    assert len(cases) >= 12
    assert COMMITTED.stat().st_size < 300_000
    for c in cases:
        k = len(c["points"])
        assert 8 <= k <= 40 and len(c["baseline"]) == k and len(c["current"]) == k, c["name"]
        assert all(isinstance(v, int) and v >= 0 for v in c["baseline"] + c["current"]), c["name"]
        assert all(a < b for a, b in zip(c["points"], c["points"][1:])), c["name"]
    sizes = [sum(c[side]) for c in cases for side in ("baseline", "current")]
    assert min(sizes) < 50 and max(sizes) >= 10_000
    assert any(sum(v > 0 for v in c["current"]) == 1 or sum(v > 0 for v in c["baseline"]) == 1
               for c in cases), "a case with one side in a single bin"
    assert any(0 in c["baseline"] or 0 in c["current"] for c in cases), "a case with empty bins"
    p_values = [c["ks_p_value"] for c in cases]
    assert max(p_values) == 1.0 and min(p_values) == 0.0 and any(0.01 < p < 0.5 for p in p_values)
