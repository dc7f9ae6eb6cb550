"""Lint in CI: ruff with the rule set configured in pyproject.toml (pyflakes, bugbear, simplify, complexity).

Every family but complexity has zero findings. Complexity (C901, at most 10 branches) is a ratchet: the functions above
it when the lint came in (issue 16) are listed by file and name; the list may only shrink, and any other function
above 10 fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The functions above complexity 10 when the lint came in (issue 16): this list may only shrink; a function that
# is not on it and goes above 10 fails here.
COMPLEX_ALLOWED = {
    ("benchmarks/quality.py", "cmd_copies"),
    ("fusekit/balance/card.py", "render"),
    ("fusekit/balance/config.py", "__post_init__"),
    ("fusekit/balance/emit.py", "write_splits"),
    ("fusekit/balance/resample.py", "plan_resample"),
    ("fusekit/balance/stage.py", "_plan"),
    ("fusekit/balance/stage.py", "_select"),
    ("fusekit/build.py", "load_recipe"),
    ("fusekit/crawl/keywords.py", "parse_keywords"),
    ("fusekit/dedupe/stage.py", "decide"),
    ("fusekit/faces/stage.py", "_plan"),
    ("fusekit/faces/stage.py", "_run_unit"),
    ("fusekit/faces/summary.py", "render_report"),
    ("fusekit/review/server.py", "make_app"),
    ("fusekit/sources/affectnet.py", "_image_records"),
    ("fusekit/sources/affectnet.py", "_row_record"),
    ("fusekit/sources/affectnet.py", "_set_records"),
    ("fusekit/sources/affectnet.py", "records"),
    ("fusekit/sources/base.py", "walk_entries"),
    ("fusekit/sources/folder.py", "_listed_records"),
    ("fusekit/sources/mmi.py", "_session"),
    ("fusekit/train/config.py", "resolve"),
    ("fusekit/train/decode.py", "parse"),
    ("fusekit/train/evaluate.py", "run_evaluate"),
    ("fusekit/train/loop.py", "_train"),
    ("tests/fake_engine.py", "reply"),
    ("tests/test_hostile_suite.py", "run_pipeline"),
}


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
    found = {(str(Path(f["filename"]).relative_to(ROOT)), f["message"].split("`")[1]) for f in _findings()
             if f["code"] == "C901"}
    assert found <= COMPLEX_ALLOWED, sorted(found - COMPLEX_ALLOWED)
