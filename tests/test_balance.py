"""The balance stage end to end on generated faces/decisions tables: shards, HF loading, honesty, card, weights."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from helpers import call_cli
from PIL import Image

from fusekit.balance import BalanceConfig, run_balance, status_lines
from fusekit.balance import synthetic as syn
from fusekit.balance.shards import COLUMNS
from fusekit.errors import UserError
from fusekit.workspace import Workspace

N = 600


def _corpus_with_decisions(root: Path, seed: int = 1) -> tuple[Workspace, list[dict], list[dict]]:
    ws = Workspace(root)
    faces = syn.corpus(N, seed=seed, distinct_images=N)
    syn.write_faces(ws, faces)
    decisions = []
    fer_test = [f for f in faces if f["dataset"] == "fer2013" and f["split"] == "test"]
    crawl = [f for f in faces if f["dataset"] == "crawl"]
    kdef = [f for f in faces if f["dataset"] == "kdef"]
    for i, face in enumerate(faces):
        decisions.append(syn.decision_row(face, phash=f"{i:016x}"))
    by_id = {d["face_id"]: d for d in decisions}
    # Dedupe kept both members of a cross-source pair (a crawl face equal to an official test face, a kdef face
    # equal to a crawl face): they share a dup_group, and balance must keep each group on one side.
    for a, b in zip(fer_test[:5], crawl[:5]):
        by_id[a["id"]]["dup_group"] = by_id[b["id"]]["dup_group"] = a["id"]
    for a, b in zip(kdef[:5], crawl[5:10]):
        by_id[a["id"]]["dup_group"] = by_id[b["id"]]["dup_group"] = a["id"]
    for face in crawl[10:20]:
        by_id[face["id"]].update(decision="drop", reason="near_duplicate")
    for face in crawl[20:23]:
        by_id[face["id"]].update(decision="review", reason="label_conflict")
    syn.write_decisions(ws, decisions)
    return ws, faces, decisions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("balance")
    ws, faces, decisions = _corpus_with_decisions(root / "ws")
    report = run_balance(ws, BalanceConfig(seed=3, max_shard_bytes=60_000, row_group_bytes=20_000))
    return ws, faces, decisions, report


def _shard_rows(ws: Workspace) -> list[dict]:
    files = sorted((ws.root / "dataset" / "data").glob("*.parquet"))
    return pads.dataset([str(f) for f in files], format="parquet").to_table().to_pylist()


def test_shards_are_named_capped_and_carry_hf_features(built):
    ws, _, _, report = built
    data = ws.root / "dataset" / "data"
    names = sorted(p.name for p in data.iterdir())
    train = [n for n in names if n.startswith("train-")]
    assert len(train) > 1 and train[0] == f"train-00000-of-{len(train):05d}.parquet"
    assert all(n.endswith(f"-of-{len(train):05d}.parquet") for n in train)
    assert not [n for n in names if n.startswith(".")]  # no temporary files left
    for path in data.iterdir():
        assert path.stat().st_size <= 60_000
        meta = pq.ParquetFile(path).metadata
        assert meta.num_row_groups >= 1
        schema = pq.read_schema(path)
        assert schema.names == list(COLUMNS)
        hf = json.loads(schema.metadata[b"huggingface"])
        assert hf["info"]["features"]["image"] == {"_type": "Image"}
        assert hf["info"]["features"]["label"] == {"names": report.classes, "_type": "ClassLabel"}
    assert report.rows == len(_shard_rows(ws))


def test_hf_features_match_what_datasets_writes():
    datasets = pytest.importorskip("datasets")
    from fusekit.balance.shards import shard_schema

    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=classes),
        **{c: datasets.Value("string") for c in ("label_name", "dataset", "source_id", "subject", "split")},
        "augmented": datasets.Value("bool"), "ops": datasets.List(datasets.Value("string")),
        "parent_id": datasets.Value("string"), "phash": datasets.Value("string"),
        "flags": datasets.List(datasets.Value("string")),
    })
    ours = shard_schema(classes)
    assert ours.metadata == features.arrow_schema.metadata
    assert ours.remove_metadata() == features.arrow_schema.remove_metadata()


@pytest.mark.slow
def test_hf_datasets_loads_images_and_class_names(built, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ws, _, _, report = built
    data = ws.root / "dataset" / "data"
    files = {s: sorted(str(p) for p in data.glob(f"{s}-*.parquet")) for s in ("train", "val", "test")}
    loaded = datasets.load_dataset("parquet", data_files={"train": files["train"], "validation": files["val"],
                                                          "test": files["test"]}, cache_dir=str(tmp_path / "c"))
    assert loaded["train"].num_rows == report.shards["train"].rows
    assert loaded["test"].num_rows == report.shards["test"].rows
    feature = loaded["train"].features["label"]
    assert feature.names == report.classes
    row = loaded["train"][0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (48, 48)
    assert feature.int2str(row["label"]) == row["label_name"]
    augmented = loaded["train"].filter(lambda r: r["augmented"])
    assert augmented.num_rows == sum(report.augmented.values()) > 0
    assert all(r["parent_id"] and r["ops"] for r in augmented.select(range(min(20, augmented.num_rows))))


def test_pyarrow_reads_every_shard_and_labels_match_names(built):
    ws, _, _, report = built
    rows = _shard_rows(ws)
    assert all(report.classes[r["label"]] == r["label_name"] for r in rows)
    assert Counter(r["split"] for r in rows) == Counter({s: st.rows for s, st in report.shards.items()})
    image = Image.open(io.BytesIO(rows[0]["image"]["bytes"]))
    assert image.size == (48, 48)


def test_decisions_are_applied(built):
    ws, faces, decisions, report = built
    rows = _shard_rows(ws)
    originals = {r["source_id"] for r in rows if not r["augmented"]}
    dropped = {d["face_id"] for d in decisions if d["decision"] == "drop"}
    review = {d["face_id"] for d in decisions if d["decision"] == "review"}
    contempt = {f["id"] for f in faces if f["label"] == "contempt"}
    assert not originals & dropped and not originals & review and not originals & contempt
    assert report.left_out["dedupe: near_duplicate"] == 10
    assert report.left_out["awaiting review"] == 3
    assert report.left_out["contempt (--classes 7)"] == len(contempt) > 0
    phash = {d["face_id"]: d["phash"] for d in decisions}
    assert all(r["phash"] == phash[r["source_id"]] for r in rows if not r["augmented"])
    assert all(r["label_name"] != "contempt" for r in rows)


def test_no_group_on_two_sides_and_official_splits_kept(built):
    ws, faces, decisions, report = built
    rows = _shard_rows(ws)
    face = {f["id"]: f for f in faces}
    dup = {d["face_id"]: d["dup_group"] for d in decisions}
    sides: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        f = face[r["parent_id"] or r["source_id"]]
        for kind, key in (("image", f["image_id"]), ("subject", f["subject"]), ("group", f["group"]),
                          ("dup", dup[f["id"]])):
            if key:
                sides[(kind, f"{f['dataset']}/{key}" if kind in ("subject", "group") else key)].add(r["split"])
    straddling = {k: v for k, v in sides.items() if len(v) > 1}
    assert straddling == {}
    assert any(k[0] == "subject" for k in sides) and any(k[0] == "dup" for k in sides)
    for r in rows:
        f = face[r["parent_id"] or r["source_id"]]
        if f["dataset"] == "fer2013":
            assert r["split"] == f["split"]  # official splits stay
    # The crawl faces that duplicate official test faces went to test with them.
    for d in decisions:
        if d["dup_group"] and d["dup_group"] in {f["id"] for f in faces if f["split"] == "test"}:
            assert {r["split"] for r in rows if r["source_id"] == d["face_id"]} <= {"test"}


def test_only_train_is_resampled_and_copies_are_tagged(built):
    ws, _, _, report = built
    rows = _shard_rows(ws)
    train = Counter(r["label_name"] for r in rows if r["split"] == "train")
    assert set(train.values()) == {report.target}
    assert all(not r["augmented"] for r in rows if r["split"] != "train")
    copies = [r for r in rows if r["augmented"]]
    ids = {r["source_id"] for r in rows}
    assert copies and all(r["parent_id"] in ids and r["ops"] and r["source_id"].startswith(r["parent_id"] + "~aug")
                          for r in copies)
    assert all(r["parent_id"] is None and r["ops"] == [] for r in rows if not r["augmented"])
    weights = json.loads((ws.root / "dataset" / "class_weights.json").read_text())
    assert weights["classes"] == report.classes and set(weights["class_weight_by_id"]) == {str(i) for i in range(7)}
    assert weights["class_weights"] == report.weights
    assert weights["train_counts"] == {c: train[c] for c in report.classes}
    assert weights["before_resampling"]["disgust"] > weights["before_resampling"]["happy"]


def test_card_has_header_counts_terms_warning_and_chart(built):
    ws, _, _, report = built
    card = (ws.root / "dataset" / "README.md").read_text()
    import yaml

    header = yaml.safe_load(card.split("---\n")[1])
    assert header["task_categories"] == ["image-classification"] and header["size_categories"] == ["n<1K"]
    names = header["dataset_info"]["features"][1]["dtype"]["class_label"]["names"]
    assert list(names.values()) == report.classes
    splits = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
    assert splits == {"train": report.shards["train"].rows, "validation": report.shards["val"].rows,
                      "test": report.shards["test"].rows}
    assert {d["split"]: d["path"] for d in header["configs"][0]["data_files"]}["validation"] == "data/val-*"
    assert "NON-COMMERCIAL USE ONLY" in card.split("## ")[0]  # prominent: before the first section
    assert "Lundqvist" in card and "Goodfellow" in card and "kdrama-noncommercial" in card
    assert "| crawl |" in card and "Before balancing" in card and "After balancing" in card
    assert f"seed {report.config.seed}" in card and "fusekit 0.1.0" in card
    png = (ws.root / "dataset" / "class_counts.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(png)).size[0] > 400
    lines = status_lines(ws)
    assert lines[0].startswith(f"dataset: {report.rows:,} rows") and "NON-COMMERCIAL" in lines[-1]


def _digests(ws: Workspace) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ws.root / "dataset" / "data").iterdir())}


@pytest.mark.slow
def test_two_builds_give_byte_identical_shards(tmp_path, monkeypatch):
    from fusekit.balance import emit

    a, _, _ = _corpus_with_decisions(tmp_path / "a", seed=2)
    b, _, _ = _corpus_with_decisions(tmp_path / "b", seed=2)
    run_balance(a, BalanceConfig(seed=9, max_shard_bytes=80_000, workers=1))
    monkeypatch.setattr(emit, "POOL_MIN_COPIES", 1)  # copies made in 2 worker processes: same bytes
    run_balance(b, BalanceConfig(seed=9, max_shard_bytes=80_000, workers=2))
    assert _digests(a) == _digests(b) and len(_digests(a)) > 2
    assert (a.root / "dataset" / "README.md").read_bytes() == (b.root / "dataset" / "README.md").read_bytes()
    run_balance(b, BalanceConfig(seed=10, max_shard_bytes=80_000))
    assert _digests(a) != _digests(b)


def test_without_decisions_every_face_is_kept_and_said(tmp_path):
    ws = Workspace(tmp_path)
    faces = syn.corpus(120, seed=4, distinct_images=60)
    syn.write_faces(ws, faces)
    report = run_balance(ws, BalanceConfig(weights_only=True, classes=8))
    assert any("no decisions table" in n for n in report.notes)
    rows = _shard_rows(ws)
    assert len(rows) == 120 and not any(r["augmented"] for r in rows)  # --weights-only writes no copies
    assert report.classes[-1] == "contempt" and {r["label_name"] for r in rows} >= {"contempt"}
    weights = json.loads((ws.root / "dataset" / "class_weights.json").read_text())
    assert len(weights["class_weight_by_id"]) == 8
    assert weights["class_weights"]["disgust"] > weights["class_weights"]["happy"]


def test_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match="has no faces"):
        run_balance(Workspace(tmp_path / "empty"))
    code, _, err = call_cli(capsys, "balance", "--split", "80-20", workspace=tmp_path / "empty")
    assert code == 2 and err.startswith("Error: --split takes") and "Traceback" not in err
    code, _, err = call_cli(capsys, "balance", workspace=tmp_path / "empty")
    assert code == 2 and err.startswith("Error: no workspace at") and not (tmp_path / "empty").exists()
    Workspace(tmp_path / "empty").ensure()
    code, _, err = call_cli(capsys, "balance", workspace=tmp_path / "empty")
    assert code == 2 and "has no faces" in err


def test_cli_balance_prints_the_summary(tmp_path, capsys):
    ws = Workspace(tmp_path)
    syn.write_faces(ws, syn.corpus(150, seed=5, distinct_images=50))
    code, out, err = call_cli(capsys, "balance", "--target", "10", "--seed", "2", "--augment", "flip",
                              workspace=tmp_path)
    assert code == 0, err
    assert "training target 10 per class" in out and "shards:" in out and "WARNING: non-commercial" in out
    rows = _shard_rows(ws)
    train = Counter(r["label_name"] for r in rows if r["split"] == "train")
    assert set(train.values()) == {10}
    assert all(r["ops"] == ["flip"] for r in rows if r["augmented"])


def test_decisions_made_on_other_faces_are_reported_stale(tmp_path):
    ws, faces, _ = _corpus_with_decisions(tmp_path / "ws")
    report = run_balance(ws, BalanceConfig(weights_only=True))
    assert not any("other faces" in n for n in report.notes)
    ws.remove_unit("faces", "kdef--synthetic")  # as `fusekit remove kdef --variant ...` does
    report = run_balance(ws, BalanceConfig(weights_only=True))
    assert any("made on other faces" in n and "run `fusekit dedupe` again" in n for n in report.notes)
    assert report.faces == sum(f["dataset"] != "kdef" for f in faces)
