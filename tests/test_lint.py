"""Lint in CI: ruff with the rule set configured in pyproject.toml (pyflakes, bugbear, simplify, complexity).

Every family but complexity has zero findings. Complexity (C901, at most 10 branches) is a ratchet: 27 functions were
above it when the lint came in (issue 16); the count may only go down, and a new function above 10 fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPLEX_AT_START = 27


def _ruff() -> list[str]:
    found = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(found).exists():
        pytest.skip('ruff is not installed (pip install ".[test]" installs it)')
    return [found]


def _findings(*select: str) -> list[dict]:
    args = [*_ruff(), "check", "--no-cache", "--output-format", "json", *(("--select", ",".join(select)) if select
                                                                          else ()), "fusekit", "tests", "benchmarks"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout or "[]")


def test_no_finding_but_complexity():
    found = [f"{f['filename']}:{f['location']['row']} {f['code']} {f['message']}" for f in _findings()
             if f["code"] != "C901"]
    assert found == []


def test_functions_above_complexity_10_only_ever_fewer():
    found = [f"{Path(f['filename']).relative_to(ROOT)}: {f['message']}" for f in _findings() if f["code"] == "C901"]
    assert len(found) <= COMPLEX_AT_START, "\n".join(found)
