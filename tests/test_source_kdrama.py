"""K-drama TFRecords (FORMATS.md §9), written with tf.io.TFRecordWriter at test time with the authors' feature keys:
the three label sets, the clip join through the repository's label CSVs, bad records and damaged files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import call_cli, image_bytes

from fusekit.config import IngestConfig
from fusekit.errors import ConfigError
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA
from fusekit.sources.kdrama import BASIC6, EMO22, MULTI24, read_tfrecord
from fusekit.workspace import Workspace

pytestmark = pytest.mark.slow  # importing TensorFlow alone takes several seconds on the CI box

TRAIN_IDS = ["03_00001-3_00018.jpg", "03_00001-3_00019.jpg", "22_0001069_00050.jpg", "16_00033-8_00001.jpg",
             "03_001-103_00008.jpg", "03_001-103_00009.jpg"]


def _onehot(names: tuple[str, ...], *positive: str) -> list[int]:
    return [1 if n in positive else 0 for n in names]


def _example(tf, label: list[int] | None, image: bytes | None, seed: int = 0) -> bytes:
    feature = {
        "height": tf.train.Feature(int64_list=tf.train.Int64List(value=[64])),
        "width": tf.train.Feature(int64_list=tf.train.Int64List(value=[64])),
        "depth": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
    }
    if label is not None:
        feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=label))
    if image is not None:
        feature["image_raw"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _jpeg(seed: int) -> bytes:
    return image_bytes(seed, (64, 64), "JPEG", "RGB")


def _write(tf, path: Path, examples: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example)


def _csv(path: Path, names: tuple[str, ...], rows: list[tuple[str, list[int]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(("img_id", "clip_id", *names))]
    lines += [",".join((img, img.rsplit("_", 1)[0], *map(str, vec))) for img, vec in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def kdrama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fusekit.sources.kdrama import tensorflow

    tf = tensorflow()
    root = tmp_path_factory.mktemp("kdrama")
    rec = root / "tfrecords"
    # 6-class: train (joined to its CSV), valid (its CSV is in another order), test (no CSV; one broken image).
    train = [_onehot(BASIC6, name) for name in BASIC6]
    _write(tf, rec / "6_basic_emo_train.tfrecords", [_example(tf, v, _jpeg(i)) for i, v in enumerate(train)])
    _csv(root / "label" / "label_6_basic_emo_train.csv", BASIC6, list(zip(TRAIN_IDS, train)))
    valid = [_onehot(BASIC6, "happy"), _onehot(BASIC6, "sad")]
    _write(tf, rec / "6_basic_emo_valid.tfrecords", [_example(tf, v, _jpeg(10 + i)) for i, v in enumerate(valid)])
    _csv(root / "label" / "label_6_basic_emo_valid.csv", BASIC6,
         [("06_00002-1_00001.jpg", valid[1]), ("06_00002-1_00002.jpg", valid[0])])
    png = image_bytes(22, (64, 64), "PNG", "RGB")
    _write(tf, rec / "6_basic_emo_test.tfrecords", [
        _example(tf, _onehot(BASIC6, "fearful"), _jpeg(20)), _example(tf, _onehot(BASIC6, "surprised"), png),
        _example(tf, _onehot(BASIC6, "angry"), b"<html>not an image</html>")])
    for name in ("6_basic_emo_train", "6_basic_emo_valid", "6_basic_emo_test"):
        (rec / f"{name}.idx").write_text("0 120\n")
    (rec / "place_idx_tfrecord_files_here.txt").write_text("")
    # 22-class, one-hot: a kept class, a dropped class, no positive, two positives.
    _write(tf, rec / "22_emo_train.tfrecords", [
        _example(tf, _onehot(EMO22, "angry"), _jpeg(30)), _example(tf, _onehot(EMO22, "moved"), _jpeg(31)),
        _example(tf, _onehot(EMO22, "happy"), _jpeg(32)), _example(tf, [0] * 22, _jpeg(33)),
        _example(tf, _onehot(EMO22, "angry", "sad"), _jpeg(34))])
    # Multi-label: the rule, plus records that are not K-drama examples.
    _write(tf, rec / "multi-label_train.tfrecords", [
        _example(tf, _onehot(MULTI24, "angry"), _jpeg(40)),
        _example(tf, _onehot(MULTI24, "upset", "depressed"), _jpeg(41)),
        _example(tf, _onehot(MULTI24, "upset"), _jpeg(42)),
        _example(tf, _onehot(MULTI24, "neutral"), _jpeg(43)),
        _example(tf, _onehot(MULTI24, "angry")[:23], _jpeg(44)),
        _example(tf, _onehot(MULTI24, "sad"), None),
        _example(tf, _onehot(MULTI24, "disgusted"), _jpeg(46)),
        _example(tf, [2] + [0] * 23, _jpeg(47))])
    # Damaged part-way: 3 whole records survive.
    whole = root / "whole.tfrecords"
    _write(tf, whole, [_example(tf, _onehot(MULTI24, "happy"), _jpeg(50 + i)) for i in range(5)])
    data = whole.read_bytes()
    record = len(data) // 5
    (rec / "multi-label_valid.tfrecords").write_bytes(data[: 3 * record + 20])
    whole.unlink()
    (rec / "multi_label_test.tfrecords").write_text("<html>this download failed</html>" * 10)
    return root


def _ingest(tmp_path: Path, source: Path, variant: str | None = None, **options: str):
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="kdrama", source=source, variant=variant, options=options, faces=False))
    images = ws.read("images", IMAGES_SCHEMA).to_pylist()
    rejects = {r["id"].split("/", 2)[2]: r for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}
    return report, images, rejects


def test_basic6_splits_labels_and_clips_from_the_label_csvs(kdrama: Path, tmp_path: Path) -> None:
    report, images, rejects = _ingest(tmp_path, kdrama)
    assert report.variant == "basic6" and report.anchor == str(kdrama / "tfrecords")
    got = [(r["id"], r["split"], r["raw_label"], r["label"], r["group"], r["source_path"], r["source_row"])
           for r in images]
    train = "kdrama/basic6/6_basic_emo_train.tfrecords"
    assert got == [
        (f"{train}#00000", "train", "angry", "angry", "03_00001-3", "6_basic_emo_train.tfrecords", 0),
        (f"{train}#00001", "train", "disgusted", "disgust", "03_00001-3", "6_basic_emo_train.tfrecords", 1),
        (f"{train}#00002", "train", "surprised", "surprise", "22_0001069", "6_basic_emo_train.tfrecords", 2),
        (f"{train}#00003", "train", "fearful", "fear", "16_00033-8", "6_basic_emo_train.tfrecords", 3),
        (f"{train}#00004", "train", "happy", "happy", "03_001-103", "6_basic_emo_train.tfrecords", 4),
        (f"{train}#00005", "train", "sad", "sad", "03_001-103", "6_basic_emo_train.tfrecords", 5),
        ("kdrama/basic6/6_basic_emo_valid.tfrecords#00000", "val", "happy", "happy", None,
         "6_basic_emo_valid.tfrecords", 0),
        ("kdrama/basic6/6_basic_emo_valid.tfrecords#00001", "val", "sad", "sad", None,
         "6_basic_emo_valid.tfrecords", 1),
        ("kdrama/basic6/6_basic_emo_test.tfrecords#00000", "test", "fearful", "fear", None,
         "6_basic_emo_test.tfrecords", 0),
        ("kdrama/basic6/6_basic_emo_test.tfrecords#00001", "test", "surprised", "surprise", None,
         "6_basic_emo_test.tfrecords", 1),
    ]
    first = images[0]
    assert first["image"] == {"bytes": _jpeg(0), "path": "03_00001-3_00018.jpg"}
    assert (first["width"], first["height"], first["mode"]) == (64, 64, "RGB")
    assert json.loads(first["extra"]) == {"tfrecord": "6_basic_emo_train.tfrecords", "record": 0,
                                          "img_id": "03_00001-3_00018.jpg", "clip_id": "03_00001-3"}
    assert images[7]["image"]["path"] == "6_basic_emo_valid_00001.jpg"
    assert images[9]["image"]["path"] == "6_basic_emo_test_00001.png"
    # The record whose image bytes do not decode is rejected by the normal pipeline.
    assert {k: r["reason"] for k, r in rejects.items()} == {"6_basic_emo_test.tfrecords#00002": "not_an_image"}
    notes = "\n".join(report.notes)
    assert ("6_basic_emo_train.tfrecords: img_id and clip_id from label_6_basic_emo_train.csv, joined by position "
            "(every label agrees)") in notes
    assert ("6_basic_emo_valid.tfrecords: label_6_basic_emo_valid.csv not joined (record 0's label differs from "
            "row 1: the orders differ); the clips (group) are unknown") in notes
    assert ("no label CSV for 6_basic_emo_test.tfrecords (label_6_basic_emo_<split>.csv), so their clips (group) are "
            "unknown") in notes
    assert report.notes[0] == ("records read: 6_basic_emo_train.tfrecords 6 (train); 6_basic_emo_valid.tfrecords 2 "
                               "(val); 6_basic_emo_test.tfrecords 3 (test)")
    assert "the folder also holds 22_emo, multi-label files: --variant emo22, --variant multilabel reads them" in notes
    assert "10 images kept where the full basic6 release has 12,813" in notes


def test_emo22_keeps_single_basic_emotions_only(kdrama: Path, tmp_path: Path) -> None:
    report, images, rejects = _ingest(tmp_path, kdrama / "tfrecords" / "22_emo_train.tfrecords", variant="emo22")
    assert [(r["id"], r["label"], r["split"]) for r in images] == [
        ("kdrama/emo22/22_emo_train.tfrecords#00000", "angry", "train"),
        ("kdrama/emo22/22_emo_train.tfrecords#00002", "happy", "train")]
    got = {k: (r["reason"], r["raw_label"]) for k, r in rejects.items()}
    assert got == {"22_emo_train.tfrecords#00001": ("dropped_label", "moved"),
                   "22_emo_train.tfrecords#00003": ("unlabelled", None),
                   "22_emo_train.tfrecords#00004": ("multiple_labels", "angry+sad")}
    assert report.rejects == {"dropped_label": 1, "unlabelled": 1, "multiple_labels": 1}


def test_multilabel_rule_bad_records_and_damaged_files(kdrama: Path, tmp_path: Path, capsys) -> None:
    code, out, err = call_cli(capsys, "ingest", "kdrama", "--source", str(kdrama), "--variant", "multilabel",
                              "--labels", str(kdrama / "label"), "--no-faces", workspace=tmp_path / "ws")
    assert code == 0, err
    ws = Workspace(tmp_path / "ws")
    images = ws.read("images", IMAGES_SCHEMA).to_pylist()
    assert [(r["id"].split("/", 2)[2], r["label"], r["split"]) for r in images] == [
        ("multi-label_train.tfrecords#00000", "angry", "train"),
        ("multi-label_train.tfrecords#00003", "neutral", "train"),
        ("multi-label_train.tfrecords#00006", "disgust", "train"),
        ("multi-label_valid.tfrecords#00000", "happy", "val"),
        ("multi-label_valid.tfrecords#00001", "happy", "val"),
        ("multi-label_valid.tfrecords#00002", "happy", "val"),
    ]
    rejects = {r["id"].split("/", 2)[2]: r for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}
    assert {k: (r["reason"], r["raw_label"]) for k, r in rejects.items()} == {
        "multi-label_train.tfrecords#00001": ("multiple_labels", "upset+depressed"),
        "multi-label_train.tfrecords#00002": ("dropped_label", "upset"),
        "multi-label_train.tfrecords#00004": ("malformed_row", None),
        "multi-label_train.tfrecords#00005": ("malformed_row", None),
        "multi-label_train.tfrecords#00007": ("malformed_row", None),
        "multi-label_valid.tfrecords#00003": ("unreadable", None),
        "multi_label_test.tfrecords#00000": ("unreadable", None),
    }
    detail = {k: r["detail"] for k, r in rejects.items()}
    assert detail["multi-label_train.tfrecords#00004"] == "record 4: 23 label values, multi-label files have 24"
    assert detail["multi-label_train.tfrecords#00005"].startswith("record 5 is not a K-drama example: ")
    assert "image_raw" in detail["multi-label_train.tfrecords#00005"]
    assert detail["multi-label_train.tfrecords#00007"] == ("record 7: label values other than 0 and 1: "
                                                           f"{[2] + [0] * 23}")
    assert detail["multi-label_valid.tfrecords#00003"].startswith(
        "multi-label_valid.tfrecords is damaged at record 3 (DataLossError: truncated record at")
    assert detail["multi-label_valid.tfrecords#00003"].endswith(
        "the 3 records before it are kept, the rest of the file is lost")
    assert "is damaged at record 0 (DataLossError: corrupted record at 0" in detail["multi_label_test.tfrecords#00000"]
    assert "multiple_labels 1" in out and "6 images, 7 rejected" in out
    assert ("note: records read: multi-label_train.tfrecords 8 (train); multi-label_valid.tfrecords 3 (val, damaged); "
            "multi_label_test.tfrecords 0 (test, damaged)") in out


def test_new_reject_reason_is_registered() -> None:
    assert "multiple_labels" in REJECT_REASONS


@pytest.mark.parametrize("batch", [1, 2, 256])
def test_reader_gives_the_same_entries_at_any_batch_size(kdrama: Path, batch: int) -> None:
    entries = [(e.index, e.kind, e.label, len(e.image)) for e in
               read_tfrecord(kdrama / "tfrecords" / "multi-label_train.tfrecords", batch=batch)]
    assert [(i, kind) for i, kind, _, _ in entries] == [(0, "ok"), (1, "ok"), (2, "ok"), (3, "ok"), (4, "ok"),
                                                        (5, "bad"), (6, "ok"), (7, "ok")]
    assert entries[4][2] == tuple(_onehot(MULTI24, "angry")[:23])


def test_options_and_labels_path_errors(kdrama: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kdrama takes the option labels=PATH"):
        _ingest(tmp_path, kdrama, clip="yes")
    wrong = tmp_path / "labels.csv"
    wrong.write_text("img_id,clip_id\n")
    with pytest.raises(ConfigError, match=r"expected a file named label_6_basic_emo_<train\|valid\|test>\.csv"):
        _ingest(tmp_path, kdrama, labels=str(wrong))


def test_importing_fusekit_does_not_import_tensorflow() -> None:
    code = "import sys, fusekit.cli, fusekit.sources.kdrama; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
