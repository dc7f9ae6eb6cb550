"""JAFFE (FORMATS.md §4): the flat .tiff folder with its quirks, the semantic ratings, and what is not JAFFE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_image

from fusekit.config import IngestConfig
from fusekit.errors import ConfigError, LayoutNotRecognised
from fusekit.ingest import plan, run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.sources.jaffe import parse_ratings
from fusekit.workspace import Workspace

# name -> (seed, mode): 1- and 3-channel files as the real set mixes them (FORMATS.md §4 "Image quirks")
IMAGES = {
    "KA.AN1.39.tiff": (1, "L"),
    "KA.HA1.29.tiff": (2, "RGB"),
    "KA.SU3.38.tiff": (3, "L"),
    "KL.AN1.167.tiff": (4, "L"),
    "KM.NE1.1.tiff": (5, "RGB"),
    "KM.SA5.13.tiff": (6, "L"),  # repetition gaps occur
    "KR.SA3.79.TIFF": (7, "L"),  # case-insensitive extension
    "NM.FE2.120.tiff.bmp": (8, "L"),  # a mirror's re-saved copy
}

# The ratings table as a whitespace table inside the README, with prose around it. YM-HA9 has no image file
# ("some scored instance N's with no instance file"); fear has no row (UNVERIFIED how fear is rated).
README = """\
The Japanese Female Facial Expression (JAFFE) Database
Semantic ratings averaged over 60 subjects:

   #   HAP   SAD   SUR   ANG   DIS   FEA   PIC
   1   2.87  2.52  2.10  1.97  1.97  2.06  KM-NE1
   13  1.32  4.10  1.45  2.20  2.71  2.40  KM-SA5
   39  1.10  1.93  1.61  4.39  3.35  1.71  KA-AN1
   210 4.81  1.06  1.55  1.10  1.06  1.13  YM-HA9

Please cite Lyons et al. 1998.
"""


def _jaffe(root: Path, readme: bool = True) -> Path:
    folder = root / "jaffedbase"
    for name, (seed, mode) in IMAGES.items():
        write_image(folder / name, seed, (64, 64), fmt="BMP" if name.endswith(".bmp") else "TIFF", mode=mode)
    write_image(folder / "KA.AN1.39.tiff.bmp", 1, (64, 64), fmt="BMP")  # the same picture twice
    write_image(folder / "KA.XX1.3.tiff", 9, (64, 64), fmt="TIFF")  # not an expression code
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    if readme:
        (folder / "A_README_FIRST.txt").write_text(README)
    (folder / "README_FIRST.txt").write_text("See A_README_FIRST.txt.\n")
    return folder


def _ingest(tmp_path: Path, source: Path, **options: str):
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="jaffe", source=source, options=options, faces=False))
    images = {r["source_path"]: r for r in ws.read("images", IMAGES_SCHEMA).to_pylist()}
    rejects = {r["source_path"]: r for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}
    return report, images, rejects


def test_flat_folder_found_at_depth_with_labels_subjects_modes_and_ratings(tmp_path: Path) -> None:
    _jaffe(tmp_path / "download" / "jaffe")
    report, images, rejects = _ingest(tmp_path, tmp_path / "download")
    assert report.variant == "official" and report.anchor.endswith("jaffedbase")
    assert report.images == 8 and len(images) == 8
    assert {p: (r["label"], r["subject"], r["raw_label"]) for p, r in images.items()} == {
        "KA.AN1.39.tiff": ("angry", "KA", "AN"),
        "KA.HA1.29.tiff": ("happy", "KA", "HA"),
        "KA.SU3.38.tiff": ("surprise", "KA", "SU"),
        "KL.AN1.167.tiff": ("angry", "KL", "AN"),
        "KM.NE1.1.tiff": ("neutral", "KM", "NE"),
        "KM.SA5.13.tiff": ("sad", "KM", "SA"),
        "KR.SA3.79.TIFF": ("sad", "KR", "SA"),
        "NM.FE2.120.tiff.bmp": ("fear", "NM", "FE"),
    }
    ids = sorted(r["id"] for r in images.values())
    assert ids[0] == "jaffe/official/KA.AN1.39.tiff"
    assert all(r["split"] is None and r["group"] is None for r in images.values())
    # both channel layouts decode; the mode is recorded for the faces stage to convert from
    assert images["KA.AN1.39.tiff"]["mode"] == "L" and images["KA.HA1.29.tiff"]["mode"] == "RGB"
    assert (images["KA.AN1.39.tiff"]["width"], images["KA.AN1.39.tiff"]["height"]) == (64, 64)
    extra = json.loads(images["KA.AN1.39.tiff"]["extra"])
    assert extra == {"number": 39, "repeat": 1,
                     "ratings": {"HAP": 1.10, "SAD": 1.93, "SUR": 1.61, "ANG": 4.39, "DIS": 3.35, "FEA": 1.71}}
    assert json.loads(images["KM.SA5.13.tiff"]["extra"])["ratings"]["SAD"] == 4.10
    assert "ratings" not in json.loads(images["KA.HA1.29.tiff"]["extra"])
    # every unusable file accounted for; the ratings file is read, not a stray
    assert {p: r["reason"] for p, r in rejects.items()} == {
        "KA.AN1.39.tiff.bmp": "duplicate_entry",
        "KA.XX1.3.tiff": "unrecognised_name",
        ".DS_Store": "stray_file",
        "README_FIRST.txt": "stray_file",
    }
    assert any("A_README_FIRST.txt: 4 pictures rated, 3 images matched" in n for n in report.notes)
    assert any(n.startswith("5 posers (KA, KL, KM, KR, NM)") for n in report.notes)


def test_ratings_are_optional(tmp_path: Path) -> None:
    folder = _jaffe(tmp_path, readme=False)
    report, images, _ = _ingest(tmp_path, folder)
    assert report.images == 8
    assert all("ratings" not in json.loads(r["extra"]) for r in images.values())
    assert any("no semantic ratings file found" in n for n in report.notes)


def test_ratings_csv_named_with_an_option(tmp_path: Path) -> None:
    folder = _jaffe(tmp_path, readme=False)
    ratings = tmp_path / "elsewhere" / "jaffe_ratings.csv"
    ratings.parent.mkdir()
    ratings.write_text("N,HAP,SAD,SUR,ANG,DIS,FEA,PIC\n1,2.87,2.52,2.10,1.97,1.97,2.06,KM-NE1\n")
    _, images, _ = _ingest(tmp_path, folder, ratings=str(ratings))
    assert json.loads(images["KM.NE1.1.tiff"]["extra"])["ratings"]["HAP"] == 2.87
    assert sum("ratings" in json.loads(r["extra"]) for r in images.values()) == 1
    (tmp_path / "prose.txt").write_text("no table here\n")
    with pytest.raises(ConfigError, match="no ratings table"):
        _ingest(tmp_path, folder, ratings=str(tmp_path / "prose.txt"))


def test_parse_ratings_tolerates_a_table_without_image_numbers_and_a_second_table() -> None:
    text = "HAP SAD SUR ANG DIS PIC\n2.0 3.0 1.0 1.0 1.0 KA-SA1\n\nHAP SAD SUR ANG DIS FEA PIC\n" \
           "7 1.0 1.0 1.0 1.0 1.0 4.5 KA-FE1\n1.0 1.0 1.0 1.0 1.0 4.0 KA-SA1\nbroken line KA-HA1\n"
    ratings = parse_ratings(text)
    assert ratings["KA-SA1"] == {"HAP": 1.0, "SAD": 1.0, "SUR": 1.0, "ANG": 1.0, "DIS": 1.0, "FEA": 4.0}
    assert ratings["KA-FE1"]["FEA"] == 4.5 and set(ratings) == {"KA-SA1", "KA-FE1"}


def test_not_jaffe_is_a_clear_layout_error(tmp_path: Path) -> None:
    write_image(tmp_path / "faces" / "happy" / "a.png", 1)
    with pytest.raises(LayoutNotRecognised, match="not a .*JAFFE.* layout: expected jaffe/KA.AN1.39.tiff"):
        plan(IngestConfig(name="jaffe", source=tmp_path / "faces"))
