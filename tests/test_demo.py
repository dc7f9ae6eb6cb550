"""`fusekit demo` end to end: corpus in three native layouts, stand-in crawl, build, status, report (training
skipped; tests/test_report.py runs the whole demo)."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from helpers import run_cli

from fusekit.records import FACES_SCHEMA, IMAGES_SCHEMA
from fusekit.workspace import Workspace


@pytest.mark.slow
def test_demo_runs_every_stage_and_says_where(tmp_path):
    code, out, err = run_cli("demo", "--out", str(tmp_path), "--no-train")
    assert code == 0, err
    ws = Workspace(tmp_path / "workspace")
    assert f"workspace: {ws.root}" in out
    images = ws.read("images", IMAGES_SCHEMA, columns=["dataset", "variant"])
    counts = {}
    for row in images.to_pylist():
        counts[(row["dataset"], row["variant"])] = counts.get((row["dataset"], row["variant"]), 0) + 1
    # The corpus is generated deterministically: 70 CSV rows (+1 cut off), 28 CK+ frames, 83 KDEF images.
    assert counts[("fer2013", "csv")] == 70 and counts[("ckplus", "sequences")] == 28
    assert counts[("kdef", "official")] == 83 and counts[("crawl", "standin")] == 12
    faces = ws.read("faces", FACES_SCHEMA, columns=["dataset"])
    assert faces.num_rows == 70 + 28 + 83 + 12  # every demo picture holds one findable face
    shards = sorted((ws.root / "dataset" / "data").glob("*.parquet"))
    assert {p.name.split("-")[0] for p in shards} == {"train", "val", "test"}
    assert ds.dataset([str(p) for p in shards]).count_rows() > 0
    assert (ws.root / "dataset" / "README.md").read_text().startswith("---")
    assert "== dedupe ==" in out and "near_duplicate" in out
    assert out.strip().splitlines()[-1] == f"report: {ws.root / 'report.html'}"  # the report, with no runs yet
    assert "train: not run" in (ws.root / "report.html").read_text(encoding="utf-8")
