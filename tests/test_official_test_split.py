"""Official test splits are never altered (issue 13): dedupe keeps every test member and flags what would have removed
it, balance puts every one of them in the test split with a `flags` column, and the card and the summaries say so."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.dataset as pads
import pytest
from PIL import Image, ImageOps

from fusekit.dedupe import DedupeConfig, render_report, render_summary, run_dedupe, synthetic
from fusekit.workspace import Workspace
from test_dedupe import decisions, face_row, write_faces


def _corpus(ws: Workspace) -> list[dict]:
    rng = np.random.default_rng(13)
    base = [synthetic.face(1300 + i) for i in range(10)]
    test = [
        face_row("fer2013/v/t0#0", base[0], split="test", face=200),
        face_row("fer2013/v/t0copy#0", base[0], split="test", face=112),  # the same pixels: exact duplicate
        face_row("fer2013/v/t1#0", base[1], split="test", face=200),
        face_row("fer2013/v/t1near#0", synthetic.transform(base[1], "jpeg", rng), split="test", face=112),
        face_row("fer2013/v/small#0", base[2], split="test", face=20),  # too small, and copied into train below
        face_row("fer2013/v/c0#0", base[3], split="test", label="happy", face=200),
        face_row("fer2013/v/c1#0", synthetic.transform(base[3], "brightness", rng), split="test", label="sad",
                 face=112),  # a near duplicate with another label: a label-conflict group inside the test split
        face_row("fer2013/v/blank#0", Image.new("RGB", (112, 112), (120, 120, 120)), split="test"),
        face_row("fer2013/v/plain#0", base[4], split="test"),
    ]
    train = [
        face_row("fer2013/v/leak1#0", ImageOps.mirror(base[1]), split="train", face=300),  # mirrored test face
        face_row("fer2013/v/leaksmall#0", base[2], split="train", face=112),  # exact copy of the small test face
        face_row("fer2013/v/small_train#0", base[5], split="train", face=20),  # not test: dropped as before
        *(face_row(f"fer2013/v/tr{i}#0", base[6 + i], split="train", label=lab)
          for i, lab in enumerate(("happy", "sad", "angry", "happy"))),
    ]
    write_faces(ws, "fer2013--v", test + train)
    return test


EXPECTED_FLAGS = {
    "fer2013/v/t0#0": [],
    "fer2013/v/t0copy#0": ["exact_duplicate_of:fer2013/v/t0#0"],
    "fer2013/v/t1#0": [],
    "fer2013/v/t1near#0": ["near_duplicate_of:fer2013/v/t1#0"],
    "fer2013/v/small#0": ["too_small"],
    "fer2013/v/c0#0": ["label_conflict"],
    "fer2013/v/c1#0": ["near_duplicate_of:fer2013/v/c0#0", "label_conflict"],
    "fer2013/v/blank#0": ["blank"],
    "fer2013/v/plain#0": [],
}


@pytest.fixture(scope="module")
def deduped(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("official") / "ws").ensure()
    test = _corpus(ws)
    report = run_dedupe(ws, DedupeConfig())
    return ws, test, report


def test_dedupe_keeps_every_test_member_and_flags_what_would_have_removed_it(deduped):
    ws, test, report = deduped
    d = decisions(ws)
    assert {f["id"]: (d[f["id"]]["decision"], d[f["id"]]["flags"]) for f in test} == {
        k: ("keep", v) for k, v in EXPECTED_FLAGS.items()}
    # the reason and detail are still there for information
    assert (d["fer2013/v/small#0"]["reason"], d["fer2013/v/small#0"]["detail"]) == ("too_small",
                                                                                    "source face 20x20 px")
    assert d["fer2013/v/t0copy#0"]["reason"] == "exact_duplicate"
    assert d["fer2013/v/t1near#0"]["reason"] == "near_duplicate"
    assert d["fer2013/v/c0#0"]["reason"] == "label_conflict" and d["fer2013/v/c0#0"]["conflict"]
    # copies outside the test split are dropped as leakage, also of a test face that is itself too small
    for leak in ("fer2013/v/leak1#0", "fer2013/v/leaksmall#0"):
        assert (d[leak]["decision"], d[leak]["reason"], d[leak]["flags"]) == ("drop", "test_leakage", [])
    assert d["fer2013/v/leaksmall#0"]["kept_id"] == "fer2013/v/small#0"
    # non-test faces as before: a small training face is dropped, clean ones kept, none flagged
    assert (d["fer2013/v/small_train#0"]["decision"], d["fer2013/v/small_train#0"]["reason"]) == ("drop", "too_small")
    assert all(d[f"fer2013/v/tr{i}#0"]["decision"] == "keep" for i in range(4))
    assert all(r["flags"] == [] for r in d.values() if r["split"] != "test")
    assert report.test_members == {"fer2013": 9} and report.test_flagged == {"fer2013": 6}
    assert report.test_flags == {"fer2013": {"label_conflict": 2, "near_duplicate_of": 2, "blank": 1,
                                             "exact_duplicate_of": 1, "too_small": 1}}
    line = ("official test kept whole: fer2013 9 (flagged 6: label_conflict 2, near_duplicate_of 2, blank 1, "
            "exact_duplicate_of 1, too_small 1)")
    assert line in render_report(report).splitlines() and line in render_summary(ws).splitlines()


def test_a_keep_order_without_test_still_keeps_the_test_face(deduped, tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    _corpus(ws)
    run_dedupe(ws, DedupeConfig(keep_order=("face", "tier")))  # the mirrored train copy has the larger face
    d = decisions(ws)
    assert d["fer2013/v/t1#0"]["decision"] == "keep" and d["fer2013/v/leak1#0"]["reason"] == "test_leakage"


def test_balance_puts_every_official_test_face_in_the_test_split_with_its_flags(deduped):
    from fusekit.balance import BalanceConfig, run_balance
    from fusekit.balance.card import summary_lines

    ws, test, _ = deduped
    report = run_balance(ws, BalanceConfig(weights_only=True, seed=1))
    files = sorted(str(p) for p in (ws.root / "dataset" / "data").glob("*.parquet"))
    rows = pads.dataset(files, format="parquet").to_table().to_pylist()
    in_test = {r["source_id"]: r["flags"] for r in rows if r["split"] == "test"}
    assert len(in_test) == len(test) and in_test == EXPECTED_FLAGS
    assert all(r["flags"] == [] for r in rows if r["split"] != "test")
    assert report.test_members == Counter({"fer2013": 9}) and report.test_flagged == Counter({"fer2013": 6})
    card = (ws.root / "dataset" / "README.md").read_text()
    assert "## Official test splits" in card
    assert "| fer2013 | 9 | 9 | 6 | label_conflict 2, near_duplicate_of 2, blank 1, exact_duplicate_of 1, " \
           "too_small 1 |" in card
    assert 'ds.filter(lambda r: not r["flags"])' in card
    assert any(line.startswith("official test kept whole: fer2013 9 of 9 (flagged 6:")
               for line in summary_lines(report))


def test_balance_keeps_test_members_that_older_decisions_dropped(tmp_path):
    """Decisions written before this rule (no flags column; a test member dropped as a duplicate, one sent to
    review) do not take official test members out of the test split: balance keeps them, flagged, and says so."""
    from fusekit.balance import BalanceConfig, run_balance
    from fusekit.balance import synthetic as syn

    from fusekit.records import DECISIONS_SCHEMA
    from fusekit.workspace import digest

    ws = Workspace(tmp_path / "ws")
    faces = syn.corpus(300, seed=6, distinct_images=300)
    syn.write_faces(ws, faces)
    rows = [syn.decision_row(f) for f in faces]
    for r in rows:
        del r["flags"]
    test = [r for r, f in zip(rows, faces) if f["split"] == "test" and f["dataset"] == "fer2013"
            and f["label"] != "contempt"]
    assert len(test) >= 3
    test[0].update(decision="drop", reason="near_duplicate", kept_id=test[1]["face_id"])
    test[1].update(decision="review", reason="label_conflict")
    old_schema = DECISIONS_SCHEMA.remove(DECISIONS_SCHEMA.get_field_index("flags"))
    syn.write_table(ws, "decisions", "all", rows, old_schema, info={"faces": digest(ws.listing("faces"))})
    report = run_balance(ws, BalanceConfig(weights_only=True))
    files = sorted(str(p) for p in (ws.root / "dataset" / "data").glob("test-*.parquet"))
    shard = {r["source_id"]: r["flags"] for r in pads.dataset(files, format="parquet").to_table().to_pylist()}
    assert shard[test[0]["face_id"]] == [f"near_duplicate_of:{test[1]['face_id']}"]
    assert shard[test[1]["face_id"]] == ["label_conflict"]
    assert all(shard[r["face_id"]] == [] for r in test[2:])
    assert any("older dedupe decisions" in n for n in report.notes)
