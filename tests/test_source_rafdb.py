"""RAF-DB (FORMATS.md §7): the official basic/ release (aligned and original images), the Kaggle DATASET/ layout,
and the compound subset refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import call_cli, write_image

from fusekit.config import IngestConfig
from fusekit.errors import LayoutNotRecognised
from fusekit.ingest import plan, run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Workspace

# The label file, CRLF line ends as Windows-made copies have, with the quirks a real copy can carry.
LABEL_LINES = [
    "train_00001.jpg 5",
    "train_00002.jpg 5",
    "train_00003.jpg 4",
    "train_00004_aligned.jpg 4",  # a re-made list naming the aligned file
    "train_00005.jpg 7",
    "train_00006.jpg 1",  # its image is missing
    "train_00007.jpg 9",  # not a basic label
    "train_00008.jpg",  # no label
    "train_0009.jpg 4",  # a compound-subset name
    "",
    "test_0001.jpg 6",
    "test_0002.jpg 2",
    "test_0003.jpg 3",
]
ALIGNED = ["train_00001", "train_00002", "train_00003", "train_00004", "train_00005", "train_00007",
           "test_0001", "test_0002", "test_0003"]
EXPECTED = {  # image -> (label, split)
    "train_00001": ("sad", "train"), "train_00002": ("sad", "train"), "train_00003": ("happy", "train"),
    "train_00004": ("happy", "train"), "train_00005": ("neutral", "train"),
    "test_0001": ("angry", "test"), "test_0002": ("fear", "test"), "test_0003": ("disgust", "test"),
}


def _basic(root: Path, aligned: bool = True, original: bool = False, spelling: str = "patition") -> Path:
    basic = root / "basic"
    label = basic / "EmoLabel" / f"list_{spelling}_label.txt"
    label.parent.mkdir(parents=True)
    label.write_bytes("\r\n".join(LABEL_LINES).encode() + b"\r\n")
    for i, stem in enumerate(ALIGNED):
        if aligned:
            write_image(basic / "Image" / "aligned" / f"{stem}_aligned.jpg", i, (100, 100), mode="RGB")
        if original:  # full-size pictures vary in size
            write_image(basic / "Image" / "original" / f"{stem}.jpg", 50 + i, (120 + 8 * i, 90), mode="RGB")
    if aligned:
        write_image(basic / "Image" / "aligned" / "train_00010_aligned.jpg", 20, (100, 100), mode="RGB")  # no line
        write_image(basic / "Image" / "aligned" / "train_00011.jpg", 21, (100, 100), mode="RGB")  # wrong folder
        (basic / "Image" / "aligned" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (basic / "Annotation" / "manual").mkdir(parents=True)
    (basic / "Annotation" / "manual" / "train_00001_manu_attri.txt").write_text("1 2\n3 4\n")
    return basic


def _compound(root: Path) -> Path:
    compound = root / "compound"
    (compound / "EmoLabel").mkdir(parents=True)
    (compound / "EmoLabel" / "list_patition_label.txt").write_text("train_0001.jpg 6\ntrain_0003.jpg 10\n"
                                                                     "train_0056.jpg 11\n")
    write_image(compound / "Image" / "aligned" / "train_0001_aligned.jpg", 1, (100, 100), mode="RGB")
    return compound


def _ingest(tmp_path: Path, source: Path, variant: str | None = None):
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="rafdb", source=source, variant=variant, faces=False))
    images = {r["source_path"]: r for r in ws.read("images", IMAGES_SCHEMA, units=[report.unit]).to_pylist()}
    rejects = ws.read("rejects", REJECTS_SCHEMA, units=[report.unit]).to_pylist()
    return report, images, rejects


def test_basic_aligned_found_at_depth_with_splits_labels_and_every_reject(tmp_path: Path) -> None:
    raf = tmp_path / "download" / "RAF-DB"
    _basic(raf)
    _compound(raf)
    report, images, rejects = _ingest(tmp_path, tmp_path / "download")
    assert report.variant == "basic" and report.anchor.endswith("RAF-DB/basic")
    assert {p.rsplit("/", 1)[1].replace("_aligned.jpg", ""): (r["label"], r["split"]) for p, r in images.items()} \
        == EXPECTED
    row = images["Image/aligned/train_00001_aligned.jpg"]
    assert row["id"] == "rafdb/basic/Image/aligned/train_00001_aligned.jpg"
    assert (row["raw_label"], row["source_row"], row["subject"], row["group"]) == ("5", 0, None, None)
    assert (row["width"], row["height"], row["mode"]) == (100, 100, "RGB")
    assert json.loads(row["extra"]) == {"images": "aligned", "raf_name": "train_00001.jpg"}
    assert sum(r["split"] == "train" for r in images.values()) == 5
    assert sum(r["split"] == "test" for r in images.values()) == 3
    assert sorted((r["reason"], r["source_path"], r["source_row"]) for r in rejects) == [
        ("malformed_row", "EmoLabel/list_patition_label.txt", 7),
        ("missing_file", "Image/aligned/train_00006_aligned.jpg", 5),
        ("stray_file", "Image/aligned/.DS_Store", None),
        ("unknown_label", "Image/aligned/train_00007_aligned.jpg", 6),
        ("unlabelled", "Image/aligned/train_00010_aligned.jpg", None),
        ("unrecognised_name", "EmoLabel/list_patition_label.txt", 8),
        ("unrecognised_name", "Image/aligned/train_00011.jpg", None),
    ]
    assert any("compound-subset name" in r["detail"] for r in rejects)
    assert any("aligned 100x100 face crops" in n for n in report.notes)
    assert any("compound subset beside it (compound/) is not ingested" in n for n in report.notes)


def test_original_pictures_when_only_they_are_unpacked_and_partition_spelling(tmp_path: Path) -> None:
    basic = _basic(tmp_path, aligned=False, original=True, spelling="partition")
    report, images, rejects = _ingest(tmp_path, basic)
    assert report.variant == "original"
    assert {p.rsplit("/", 1)[1][:-4]: (r["label"], r["split"]) for p, r in images.items()} == EXPECTED
    row = images["Image/original/test_0002.jpg"]
    assert (row["width"], row["height"], row["id"]) == (120 + 8 * 7, 90, "rafdb/original/Image/original/test_0002.jpg")
    assert sorted(r["reason"] for r in rejects) == ["malformed_row", "missing_file", "unknown_label",
                                                    "unrecognised_name"]
    assert any("spelled 'partition'" in n for n in report.notes)
    assert any("original full-size pictures" in n for n in report.notes)


def test_both_image_kinds_aligned_by_default_original_on_request(tmp_path: Path) -> None:
    basic = _basic(tmp_path, aligned=True, original=True)
    report, images, _ = _ingest(tmp_path, basic)
    assert report.variant == "basic" and len(images) == 8
    assert any("Image/original is there too; `--variant original`" in n for n in report.notes)
    report, images, _ = _ingest(tmp_path, basic, variant="original")
    assert report.variant == "original" and len(images) == 8
    assert all(p.startswith("Image/original/") for p in images)


def test_compound_subset_is_refused_with_a_clear_message(tmp_path: Path, capsys) -> None:
    compound = _compound(tmp_path / "RAF")
    with pytest.raises(LayoutNotRecognised, match="compound subset .* which fusekit does not ingest"):
        plan(IngestConfig(name="rafdb", source=tmp_path / "RAF"))
    code, out, err = call_cli(capsys, "ingest", "raf-db", "--source", str(compound), "--no-faces",
                              workspace=tmp_path / "ws")
    assert code == 2 and "Point --source at the basic/ folder" in err and "Traceback" not in err
    assert not (tmp_path / "ws" / "tables").exists() or not any((tmp_path / "ws" / "tables").rglob("*.parquet"))


def test_label_file_without_unpacked_images_says_what_to_unzip(tmp_path: Path) -> None:
    basic = _basic(tmp_path, aligned=False)
    (basic / "Image").mkdir()
    (basic / "Image" / "aligned.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    with pytest.raises(LayoutNotRecognised, match="no images: .* found aligned.zip"):
        plan(IngestConfig(name="rafdb", source=basic))


def _kaggle(root: Path, csvs: bool = True) -> Path:
    data = root / "DATASET"
    files = {  # path under DATASET -> seed
        "train/5/train_00001_aligned.jpg": 1, "train/5/train_00002_aligned.jpg": 2,
        "train/4/train_00003_aligned.jpg": 3, "train/7/train_00004_aligned.jpg": 4,
        "train/1/train_00005_aligned.jpg": 5, "train/6/train_00002_aligned.jpg": 6,
        "train/3/test_0004_aligned.jpg": 7, "test/6/test_0001_aligned.jpg": 8,
        "test/2/test_0002_aligned.jpg": 9, "test/3/test_0003_aligned.jpg": 10,
        "train/4/train_00003_aligned (1).jpg": 11,
    }
    for rel, seed in files.items():
        write_image(data / rel, seed, (100, 100), mode="RGB")
    (data / "train" / "5" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    if csvs:
        (root / "train_labels.csv").write_text(
            "image,label\ntrain_00001_aligned.jpg,5\ntrain_00002.jpg,5\ntrain_00003_aligned.jpg,4\n"
            "train_00004_aligned.jpg,4\ntrain_00099_aligned.jpg,3\nbad,row,x\n")
        (root / "test_labels.csv").write_text(
            "image,label\ntest_0001_aligned.jpg,6\ntest_0002_aligned.jpg,2\ntest_0003_aligned.jpg,3\n"
            "test_0004_aligned.jpg,3\ntest_0001_aligned.jpg,6\n")
    return data


def test_kaggle_layout_csv_wins_over_folder_and_every_reject(tmp_path: Path) -> None:
    _kaggle(tmp_path / "raf-db-dataset")
    report, images, rejects = _ingest(tmp_path, tmp_path / "raf-db-dataset" / "DATASET")
    assert report.variant == "kaggle" and report.anchor.endswith("raf-db-dataset")
    got = {p: (r["label"], r["split"], r["raw_label"]) for p, r in images.items()}
    assert got == {
        "DATASET/train/5/train_00001_aligned.jpg": ("sad", "train", "5"),
        "DATASET/train/5/train_00002_aligned.jpg": ("sad", "train", "5"),
        "DATASET/train/4/train_00003_aligned.jpg": ("happy", "train", "4"),
        "DATASET/train/7/train_00004_aligned.jpg": ("happy", "train", "4"),  # the CSV wins
        "DATASET/train/1/train_00005_aligned.jpg": ("surprise", "train", "1"),  # not in the CSV: its folder
        "DATASET/train/3/test_0004_aligned.jpg": ("disgust", "test", "3"),  # the prefix gives the split
        "DATASET/test/6/test_0001_aligned.jpg": ("angry", "test", "6"),
        "DATASET/test/2/test_0002_aligned.jpg": ("fear", "test", "2"),
        "DATASET/test/3/test_0003_aligned.jpg": ("disgust", "test", "3"),
    }
    row = images["DATASET/train/7/train_00004_aligned.jpg"]
    assert row["id"] == "rafdb/kaggle/DATASET/train/7/train_00004_aligned.jpg"
    assert json.loads(row["extra"]) == {"folder_label": "7", "label_file": "train_labels.csv"}
    assert row["source_row"] == 4
    assert json.loads(images["DATASET/train/3/test_0004_aligned.jpg"]["extra"])["folder_split"] == "train"
    assert images["DATASET/train/1/train_00005_aligned.jpg"]["extra"] is None
    assert sorted((r["reason"], r["source_path"], r["source_row"]) for r in rejects) == [
        ("duplicate_entry", "DATASET/train/6/train_00002_aligned.jpg", None),
        ("duplicate_entry", "test_labels.csv", 5),
        ("malformed_row", "train_labels.csv", 6),
        ("missing_file", "train_labels.csv", 5),
        ("stray_file", "DATASET/train/5/Thumbs.db", None),
        ("unrecognised_name", "DATASET/train/4/train_00003_aligned (1).jpg", None),
    ]
    assert any("1 images whose folder says otherwise" in n and "1 images the CSVs do not list" in n
               for n in report.notes)


def test_kaggle_folders_without_csvs(tmp_path: Path) -> None:
    data = _kaggle(tmp_path / "k", csvs=False)
    report, images, _ = _ingest(tmp_path, data)
    assert report.variant == "kaggle" and report.anchor.endswith("DATASET")
    assert images["train/7/train_00004_aligned.jpg"]["label"] == "neutral"  # the folder is the only label
    assert len(images) == 9
    assert any("labels from the class folders" in n for n in report.notes)


def test_not_rafdb_is_a_clear_layout_error(tmp_path: Path) -> None:
    write_image(tmp_path / "x" / "train" / "happy" / "a.png", 1)
    with pytest.raises(LayoutNotRecognised, match="expected basic/EmoLabel/list_patition_label.txt"):
        plan(IngestConfig(name="rafdb", source=tmp_path / "x"))
