"""`fusekit audit`: out-of-sample probabilities -> cleanlab -> `review_queue`, on faces whose class is in their
pixels and some of whose labels were flipped on purpose."""

from __future__ import annotations

import pytest
import review_fixtures as fx
from helpers import call_cli

from fusekit import api, reviews
from fusekit.audit import AuditConfig, run_audit
from fusekit.reviews import read_queue


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    ws, facts = fx.build(tmp_path_factory.mktemp("audit") / "ws")
    report = run_audit(ws, AuditConfig(issues=3 * len(facts["flipped"])))
    return ws, facts, report, read_queue(ws).to_pylist()


def test_flipped_labels_are_queued_first(audited):
    _, facts, report, queue = audited
    issues = [r for r in queue if r["reason"] in ("label_issue", "low_score")]
    flipped = facts["flipped"]
    assert len(issues) == 3 * len(flipped)
    assert len({r["face_id"] for r in issues} & flipped) >= 0.9 * len(flipped)  # recall within 3x their number
    found = [r for r in queue if r["reason"] == "label_issue"]  # cleanlab's own, first
    assert report.issues_found >= len(found) >= 0.7 * len(flipped) and issues[:len(found)] == found
    assert report.features == "builtin:hog+pixels" and report.scored == len(facts["rows"]) - 2
    first = issues[0]
    assert first["rank"] == 1 and first["face_id"] in flipped
    assert len(first["top_classes"]) == 3 and first["top_classes"][0] == facts["truth"][first["face_id"]]
    assert first["top_probs"] == sorted(first["top_probs"], reverse=True) and first["score"] < 0.2


def test_crawl_conflicts_and_official_test_members(audited):
    _, facts, _, queue = audited
    by_id = {r["face_id"]: r for r in queue}
    wrong = by_id[facts["wrong_keyword"]]
    assert "keyword_rejected" in wrong["reasons"] and wrong["top_classes"][0] == "surprise"
    for face_id in facts["conflicts"]:
        assert by_id[face_id]["reason"] == "label_conflict" and len(by_id[face_id]["top_classes"]) == 3
    assert facts["test_flipped"] not in by_id  # review never alters an official test split
    assert [r["rank"] for r in queue] == list(range(1, len(queue) + 1))
    reasons = [r["reason"] for r in queue]
    assert reasons == sorted(reasons, key=["label_issue", "low_score", "keyword_rejected", "label_conflict",
                                           "review"].index)


def test_audit_is_deterministic_and_applies_verdicts(audited, tmp_path):
    ws, facts, _, queue = audited
    again = fx.build(tmp_path / "ws")[0]
    run_audit(again, AuditConfig(issues=3 * len(facts["flipped"])))
    assert read_queue(again).to_pylist() == queue
    # a relabelled face is scored under its new label: the flipped face given its true class leaves the queue
    face_id = queue[0]["face_id"]
    reviews.Journal(again).append({"face_id": face_id, "verdict": "relabel", "label": facts["truth"][face_id]})
    run_audit(again, AuditConfig())
    assert face_id not in {r["face_id"] for r in read_queue(again).to_pylist()}


def test_cli_audit_and_status(audited, capsys, tmp_path):
    ws = fx.build(tmp_path / "ws")[0]
    code, out, err = call_cli(capsys, "audit", "--issues", "5", workspace=ws.root)
    assert code == 0, err
    assert "built-in features" in out and "label_issue 5" in out and "cleanlab found" in out


    sections = dict(api.stage_status(ws))  # what `fusekit status` prints, section by section
    head = sections["review"][0]
    assert head == "review: 8 faces queued, 0 done, 8 left (label_issue 5, keyword_rejected 1, label_conflict 2)"
    code, _, err = call_cli(capsys, "audit", "--folds", "1", workspace=ws.root)
    assert code == 2 and err.strip() == "Error: --folds must be at least 2, got 1"


@pytest.mark.slow
def test_audit_with_a_trained_runs_features(tmp_path):
    from fusekit.balance import BalanceConfig, run_balance
    from fusekit.train import TrainConfig, run_train

    ws, facts = fx.build(tmp_path / "ws")
    run_balance(ws, BalanceConfig(weights_only=True))
    run_train(ws, TrainConfig(data=ws.root / "dataset", model="tiny", epochs=4, batch_size=32, lr=3e-3, seed=3,
                              patience=0, keep_checkpoints=0, verbose=False, run="ref"))
    report = api.audit(ws, AuditConfig(run="ref", issues=3 * len(facts["flipped"])))  # the api reads the run
    assert report.features == "run:ref" and report.scored == len(facts["rows"]) - 2
    queue = read_queue(ws).to_pylist()
    assert {r["features"] for r in queue} == {"run:ref"} and all(len(r["top_classes"]) == 3 for r in queue)
    issues = {r["face_id"] for r in queue if r["reason"] in ("label_issue", "low_score")}
    assert len(issues) == 3 * len(facts["flipped"]) and len(issues & facts["flipped"]) >= len(facts["flipped"]) // 2
