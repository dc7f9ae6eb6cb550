"""ExpW (FORMATS.md §8): label.lst + image/origin (also origin/origin) at any depth, one row per face, boxes in
top/left/right/bottom order clipped to the picture, several faces per picture grouped by it, and every bad line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_image

from fusekit.config import IngestConfig
from fusekit.errors import ConfigError, LayoutNotRecognised
from fusekit.ingest import plan, run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA
from fusekit.sources.expw import parse_line
from fusekit.workspace import Workspace

PICTURES = {  # name -> (width, height)
    "angry_actor_104.jpg": (300, 250),
    "afraid_African_214.jpg": (400, 400),
    "excited_girl_40.jpg": (600, 500),
    "amazed_actor_579.jpg": (300, 300),
    "sad_man_1.jpg": (100, 80),
    "disgusted_woman_3.jpg": (120, 120),
    "calm_person_9.jpg": (64, 64),  # no labelled face
}
# Real lines from FORMATS.md first, then the quirks; CRLF line ends and a blank line.
LABEL_LST = [
    "angry_actor_104.jpg 0 28 113 226 141 22.9362 0",
    "afraid_African_214.jpg 0 33 275 342 100 68.6817 2",
    "amazed_actor_579.jpg 0 16 161 354 209 38.5907 6",  # right edge beyond the 300-px picture: clipped
    "excited_girl_40.jpg 0 160 352 544 352 68.0181 5",
    "excited_girl_40.jpg 1 10 20 90 100 40.5 3",  # a second face in the same picture
    "angry_actor_104.jpg 0 28 113 226 141 22.9362 0",  # an exact duplicate line
    "sad_man_1.jpg 0 -10 -5 40 45 55.0 4",  # negative corner: clipped to 0
    "sad_man_1.jpg 1 90 120 150 170 30.0 4",  # entirely right of the 100-px picture
    "sad_man_1.jpg 2 10 50 50 60 30.0 4",  # right == left: no area
    "happy_boy_7.jpg 0 1 2 30 31 50.0 3",  # picture missing
    "happy_boy_7.jpg 1 5 5 40 40 50.0 3",
    "disgusted_woman_3.jpg 0 5 5 50 50 70.0 7",  # label outside 0-6
    "",
    "broken line here",
    "x.jpg 0 1 2 3 4 conf 3",
]


def _expw(root: Path, nested: bool = False) -> Path:
    expw = root / "ExpW"
    (expw / "label").mkdir(parents=True)
    (expw / "label" / "label.lst").write_bytes("\r\n".join(LABEL_LST).encode() + b"\r\n")
    folder = expw / "image" / "origin" / ("origin" if nested else "")
    for seed, (name, size) in enumerate(PICTURES.items()):
        write_image(folder / name, seed, size, mode="RGB")
    return expw


def _ingest(tmp_path: Path, source: Path, **options: str):
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="expw", source=source, options=options, faces=False))
    images = {r["id"]: r for r in ws.read("images", IMAGES_SCHEMA).to_pylist()}
    rejects = ws.read("rejects", REJECTS_SCHEMA).to_pylist()
    return report, images, rejects


def _box(row) -> tuple[float, ...]:
    return tuple(row["face_box"][k] for k in "xywh")


def test_one_row_per_face_boxes_clipped_groups_and_every_reject(tmp_path: Path) -> None:
    _expw(tmp_path / "data")
    report, images, rejects = _ingest(tmp_path, tmp_path / "data")
    assert report.variant == "official" and report.anchor.endswith("data/ExpW")
    got = {i: (r["label"], r["group"], _box(r)) for i, r in images.items()}
    assert got == {
        # top=28 left=113 right=226 bottom=141 -> x=left, y=top, w=right-left, h=bottom-top
        "expw/official/angry_actor_104.jpg#0": ("angry", "angry_actor_104.jpg", (113, 28, 113, 113)),
        "expw/official/afraid_African_214.jpg#0": ("fear", "afraid_African_214.jpg", (275, 33, 67, 67)),
        "expw/official/amazed_actor_579.jpg#0": ("neutral", "amazed_actor_579.jpg", (161, 16, 139, 193)),
        "expw/official/excited_girl_40.jpg#0": ("surprise", "excited_girl_40.jpg", (352, 160, 192, 192)),
        "expw/official/excited_girl_40.jpg#1": ("happy", "excited_girl_40.jpg", (20, 10, 70, 90)),
        "expw/official/sad_man_1.jpg#0": ("sad", "sad_man_1.jpg", (0, 0, 40, 45)),
    }
    girl = images["expw/official/excited_girl_40.jpg#1"]
    assert (girl["source_path"], girl["source_row"], girl["split"], girl["subject"]) == \
        ("image/origin/excited_girl_40.jpg", 4, None, None)
    assert (girl["width"], girl["height"], girl["raw_label"]) == (600, 500, "3")
    assert json.loads(girl["extra"]) == {"face_id": 1, "confidence": 40.5, "box_tlrb": [10, 20, 90, 100]}
    assert json.loads(images["expw/official/amazed_actor_579.jpg#0"]["extra"])["clipped"] is True
    assert sorted((r["reason"], r["id"], r["source_row"]) for r in rejects) == [
        ("duplicate_entry", "expw/official/angry_actor_104.jpg#1", 5),
        ("empty_face_box", "expw/official/sad_man_1.jpg#1", 7),
        ("empty_face_box", "expw/official/sad_man_1.jpg#2", 8),
        ("malformed_row", "expw/official/label/label.lst#line14", 13),
        ("malformed_row", "expw/official/label/label.lst#line15", 14),
        ("missing_file", "expw/official/happy_boy_7.jpg#0", 9),
        ("missing_file", "expw/official/happy_boy_7.jpg#1", 10),
        ("unknown_label", "expw/official/disgusted_woman_3.jpg#0", 11),
    ]
    outside = next(r for r in rejects if r["id"].endswith("sad_man_1.jpg#1"))
    assert "outside the 100x80 picture" in outside["detail"] and outside["source_path"] == "image/origin/sad_man_1.jpg"
    assert any("14 lines (the full release has 91,793) naming 7 pictures; pictures in image/origin/: 7 files" in n
               for n in report.notes)
    assert any("7 faces with a box inside their picture, grouped by picture; 2 boxes clipped" in n
               for n in report.notes)
    assert any("1 pictures have no labelled face" in n for n in report.notes)


def test_nested_origin_origin_and_label_file_given_directly(tmp_path: Path) -> None:
    expw = _expw(tmp_path, nested=True)
    report, images, _ = _ingest(tmp_path, expw / "label" / "label.lst")
    assert report.anchor == str(expw)
    assert len(images) == 6
    assert images["expw/official/angry_actor_104.jpg#0"]["source_path"] == "image/origin/origin/angry_actor_104.jpg"
    assert any("(nested origin/origin)" in n for n in report.notes)


def test_min_confidence_leaves_out_low_scores(tmp_path: Path) -> None:
    expw = _expw(tmp_path)
    report, images, _ = _ingest(tmp_path, expw, min_confidence="60")
    assert sorted(images) == ["expw/official/afraid_African_214.jpg#0", "expw/official/excited_girl_40.jpg#0"]
    assert any("6 faces with confidence below 60 left out" in n for n in report.notes)
    with pytest.raises(ConfigError, match="min_confidence= takes a number"):
        _ingest(tmp_path, expw, min_confidence="high")


def test_pictures_still_archived_says_how_to_extract(tmp_path: Path) -> None:
    expw = tmp_path / "ExpW"
    (expw / "label").mkdir(parents=True)
    (expw / "label" / "label.lst").write_text(LABEL_LST[0] + "\n")
    (expw / "image").mkdir()
    for part in ("001", "002"):
        (expw / "image" / f"origin.7z.{part}").write_bytes(b"7z\xbc\xaf\x27\x1c")
    with pytest.raises(LayoutNotRecognised, match=r"image/origin/angry_actor_104.jpg.*`7z x origin.7z.001`"):
        plan(IngestConfig(name="expw", source=expw))


def test_not_expw_is_a_clear_layout_error(tmp_path: Path) -> None:
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "label.lst").write_text("this is some other list\n")
    with pytest.raises(LayoutNotRecognised, match="expected label/label.lst"):
        plan(IngestConfig(name="expw", source=tmp_path))


def test_parse_line_column_order_and_errors() -> None:
    line = parse_line("excited_girl_40.jpg 0 160 352 544 352 68.0181 5", 3)
    assert (line.top, line.left, line.right, line.bottom, line.label, line.index) == (160, 352, 544, 352, "5", 3)
    for bad in ("a.jpg 0 1 2 3 4 5", "a.txt 0 1 2 3 4 5 6", "a.jpg x 1 2 3 4 5 6", "a.jpg 0 1 2 3 nan 5 6"):
        with pytest.raises(ValueError):
            parse_line(bad, 0)
    assert "empty_face_box" in REJECT_REASONS


def test_same_layout_anywhere_gives_identical_rows(tmp_path: Path) -> None:
    rows = []
    for where in ("a", "b/deeper"):
        expw = _expw(tmp_path / where)
        ws = Workspace(tmp_path / where / "ws")
        run_ingest(ws, IngestConfig(name="expw", source=expw, faces=False))
        rows.append((ws.read("images", IMAGES_SCHEMA).to_pylist(), ws.read("rejects", REJECTS_SCHEMA).to_pylist()))
    assert rows[0] == rows[1] and len(rows[0][0]) == 6
