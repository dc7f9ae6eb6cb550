"""The `reviews` table and what verdicts do: the journal (durable, ordered, undo, two writers, a torn last line),
and dedupe and balance applying verdicts (reject, relabel, accept; official test members only flagged)."""

from __future__ import annotations

import threading

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import review_fixtures as fx

from fusekit import reviews
from fusekit.balance import BalanceConfig, run_balance, status_lines
from fusekit.balance import synthetic as syn
from fusekit.dedupe import DedupeConfig, run_dedupe
from fusekit.errors import ConfigError
from fusekit.records import DECISIONS_SCHEMA, REVIEWS_SCHEMA
from fusekit.workspace import Workspace


def _shard_rows(ws: Workspace) -> list[dict]:
    """Every row of the dataset balance wrote."""
    return pads.dataset(str(ws.root / "dataset" / "data"), format="parquet").to_table().to_pylist()


def test_journal_orders_undoes_and_last_verdict_wins(tmp_path):
    ws = Workspace(tmp_path / "ws")
    a, b = reviews.Journal(ws), reviews.Journal(ws)  # two tabs' requests, or two servers: one file
    first = a.append({"face_id": "f1", "verdict": "reject", "was_label": "happy", "tab": "A"})
    second = b.append({"face_id": "f1", "verdict": "relabel", "label": "sad", "was_label": "happy", "tab": "B"})
    a.append({"face_id": "f2", "verdict": "accept", "was_label": "fear", "tab": "A"})
    assert (first["seq"], second["seq"]) == (1, 2)
    given = reviews.verdicts(ws)
    assert given["f1"] == reviews.Verdict("f1", "relabel", "sad", 2) and given["f2"].label == "fear"
    a.append({"face_id": "f1", "verdict": "undo", "undoes": 2, "tab": "B"})  # B takes its relabel back: A's reject
    assert reviews.verdicts(ws)["f1"].verdict == "reject"
    a.append({"face_id": "f1", "verdict": "undo", "undoes": 1, "tab": "A"})
    assert "f1" not in reviews.verdicts(ws)
    table = reviews.compact(ws)
    stored = pq.read_table(ws.unit_dir("reviews", "all") / "part-00000.parquet", schema=REVIEWS_SCHEMA)
    assert stored.equals(table) and stored.column("seq").to_pylist() == [1, 2, 3, 4, 5]
    assert stored.column("verdict").to_pylist() == ["reject", "relabel", "accept", "undo", "undo"]
    with pytest.raises(ConfigError, match="relabel needs a class"):
        a.append({"face_id": "f3", "verdict": "relabel", "label": "bored"})


def test_a_line_cut_short_by_a_crash_is_skipped_and_never_joined(tmp_path):
    ws = Workspace(tmp_path / "ws")
    journal = reviews.Journal(ws)
    journal.append({"face_id": "f1", "verdict": "reject"})
    with open(reviews.journal_path(ws), "ab") as f:
        f.write(b'{"face_id":"f2","seq":2,"verd')  # the server died inside this write: never answered "saved"
    row = reviews.Journal(ws).append({"face_id": "f3", "verdict": "accept", "was_label": "sad"})
    assert row["seq"] == 2
    assert [r["face_id"] for r in reviews.load(ws)] == ["f1", "f3"]


def test_parallel_appends_from_threads_lose_nothing(tmp_path):
    ws = Workspace(tmp_path / "ws")
    journal = reviews.Journal(ws)
    threads = [threading.Thread(target=lambda k=k: [journal.append({"face_id": f"f{k}-{j}", "verdict": "reject"})
                                                    for j in range(20)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = reviews.load(ws)
    assert [r["seq"] for r in rows] == list(range(1, 81)) and len({r["face_id"] for r in rows}) == 80


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    ws, facts = fx.build(tmp_path_factory.mktemp("reviewed") / "ws")
    flipped = sorted(facts["flipped"])
    journal = reviews.Journal(ws)
    journal.append({"face_id": flipped[0], "verdict": "reject"})
    journal.append({"face_id": flipped[1], "verdict": "relabel", "label": facts["truth"][flipped[1]]})
    journal.append({"face_id": facts["conflicts"][0], "verdict": "accept", "was_label": "angry"})
    journal.append({"face_id": facts["test_flipped"], "verdict": "reject"})
    report = run_balance(ws, BalanceConfig(weights_only=True))
    return ws, facts, report, {r["source_id"]: r for r in _shard_rows(ws)}


def test_balance_applies_verdicts(reviewed):
    ws, facts, report, rows = reviewed
    flipped = sorted(facts["flipped"])
    assert flipped[0] not in rows and report.left_out["review_rejected"] == 1
    assert rows[flipped[1]]["label_name"] == facts["truth"][flipped[1]]  # the shards carry the person's label
    assert facts["conflicts"][0] in rows and facts["conflicts"][1] not in rows  # accepted conflict goes in
    assert report.left_out["awaiting review"] == 1
    test_face = rows[facts["test_flipped"]]  # the official test split stays whole: the verdict is a flag
    assert test_face["split"] == "test" and test_face["flags"] == ["review_rejected"]
    assert test_face["label_name"] == next(r["label"] for r in facts["rows"] if r["id"] == facts["test_flipped"])


def test_a_new_verdict_makes_the_dataset_stale_and_a_rerun_reflects_it(reviewed):
    ws, facts, _, _ = reviewed
    assert not any("out of date" in line for line in status_lines(ws))
    flipped = sorted(facts["flipped"])
    reviews.Journal(ws).append({"face_id": flipped[2], "verdict": "reject"})
    assert any("out of date" in line for line in status_lines(ws))
    report = run_balance(ws, BalanceConfig(weights_only=True))
    assert report.left_out["review_rejected"] == 2


def test_dedupe_counts_verdicts_and_they_survive_a_reingest(tmp_path):
    """`decisions` stays the machine's; dedupe's summary and balance apply the verdicts, keyed by stable face ids."""
    ws = Workspace(tmp_path / "ws")
    faces = [syn.face_row(f"kdef/jpg/F{i:02d}/x#0", "kdef", ["happy", "sad", "fear"][i % 3], subject=f"F{i:02d}",
                          image=syn.face_png(7000 + i, noise=12)) for i in range(12)]
    faces.append(syn.face_row("fer2013/csv/row00001#0", "fer2013", "angry", split="test",
                              image=syn.face_png(9999, noise=12)))
    syn.write_faces(ws, faces)
    config = DedupeConfig(workers=1, min_sharpness=0, min_face=0)
    run_dedupe(ws, config)
    machine = ws.read("decisions", DECISIONS_SCHEMA, units=["all"]).to_pylist()
    journal = reviews.Journal(ws)
    journal.append({"face_id": faces[0]["id"], "verdict": "reject"})
    journal.append({"face_id": faces[1]["id"], "verdict": "relabel", "label": "surprise"})
    journal.append({"face_id": faces[-1]["id"], "verdict": "relabel", "label": "happy"})
    syn.write_faces(ws, faces)  # a re-ingest: every faces part written anew, the ids (stable) unchanged
    report = run_dedupe(ws, config)
    assert ws.read("decisions", DECISIONS_SCHEMA, units=["all"]).to_pylist() == machine
    assert report.dropped["review_rejected"] == 1 and report.kept == 12
    run_balance(ws, BalanceConfig(weights_only=True))
    rows = {r["source_id"]: r for r in _shard_rows(ws)}
    assert faces[0]["id"] not in rows and rows[faces[1]["id"]]["label_name"] == "surprise"
    test = rows[faces[-1]["id"]]
    assert (test["label_name"], test["flags"]) == ("angry", ["review_relabel:happy"])


def test_an_undone_verdict_leaves_nothing_behind(tmp_path):
    """A reject given, dedupe run, then undone: balance keeps the face (the verdict never went into decisions)."""
    ws = Workspace(tmp_path / "ws")
    faces = [syn.face_row(f"kdef/jpg/F{i:02d}/x#0", "kdef", ["happy", "sad", "fear"][i % 3], subject=f"F{i:02d}",
                          image=syn.face_png(7100 + i, noise=12)) for i in range(9)]
    syn.write_faces(ws, faces)
    config = DedupeConfig(workers=1, min_sharpness=0, min_face=0)
    journal = reviews.Journal(ws)
    given = journal.append({"face_id": faces[0]["id"], "verdict": "reject"})
    assert run_dedupe(ws, config).dropped["review_rejected"] == 1
    journal.append({"face_id": faces[0]["id"], "verdict": "undo", "undoes": given["seq"]})
    report = run_balance(ws, BalanceConfig(weights_only=True))
    assert report.left_out.get("review_rejected", 0) == 0
    assert faces[0]["id"] in {r["source_id"] for r in _shard_rows(ws)}
    stored = reviews.compact(ws)  # the journal as a table, written where `load` would read it without the journal
    assert pq.read_table(ws.parts("reviews", "all")[0]).num_rows == stored.num_rows == 2


def test_review_without_a_queue_is_one_line_exit_2(tmp_path, capsys):
    from helpers import call_cli

    ws = Workspace(tmp_path / "ws")
    syn.write_faces(ws, [syn.face_row("kdef/jpg/F01/x#0", "kdef", "happy", image=syn.face_png(1))])
    code, _, err = call_cli(capsys, "review", workspace=ws.root)
    assert code == 2 and err == f"Error: nothing to review in {ws.root}: run `fusekit audit` first\n"
    code, _, err = call_cli(capsys, "review", "--port", "70000", workspace=ws.root)
    assert code == 2 and err == "Error: --port must be between 0 and 65535, got 70000\n"
