"""Every reject reason the ingest pipeline can give, one test each, through the generic class-folder source."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import call_cli, image_bytes, write_image
from PIL import Image

from fusekit.config import IngestConfig
from fusekit.ingest import ChunkProcessor, run_ingest
from fusekit.manifests import resolve
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA, Record
from fusekit.sources.folder import ClassFolders
from fusekit.workspace import Workspace


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header declares a huge image (Pillow refuses it before decoding)."""
    small = io.BytesIO()
    Image.new("L", (8, 8)).save(small, format="PNG")
    data = bytearray(small.getvalue())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _tree(root: Path) -> None:
    write_image(root / "happy" / "ok1.png", 1)
    write_image(root / "happy" / "ok2.jpg", 2)
    (root / "happy" / "empty.jpg").write_bytes(b"")
    (root / "happy" / "page.jpg").write_bytes(b"<!DOCTYPE html><html><body>Not found</body></html>")
    jpeg = image_bytes(3, (64, 64), "JPEG")
    (root / "sad" / "cut.jpg").parent.mkdir(parents=True)
    (root / "sad" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    corrupt = bytearray(image_bytes(6, (64, 64), "PNG"))
    start = corrupt.index(b"IDAT") + 8
    corrupt[start:start + 32] = bytes(b ^ 0x5A for b in corrupt[start:start + 32])
    (root / "sad" / "garbage.png").write_bytes(bytes(corrupt))
    (root / "sad" / "bomb.png").write_bytes(_png_bomb(20000, 20000))
    write_image(root / "other" / "x.png", 4)
    write_image(root / "loose.png", 5)
    (root / "sad" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "Thumbs.db").write_bytes(b"\xd0\xcf")
    (root / "README.txt").write_text("my dataset")
    (root / "happy" / "labels.csv").write_text("a,b\n")


@pytest.fixture()
def ingested(tmp_path: Path):
    root = tmp_path / "mydata"
    _tree(root)
    ws = Workspace(tmp_path / "ws")
    report = run_ingest(ws, IngestConfig(name="folder", source=root, faces=False))
    rejects = {r["source_path"]: r for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}
    images = ws.read("images", IMAGES_SCHEMA).to_pylist()
    return report, rejects, images


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("happy/empty.jpg", "empty_file"),
        ("happy/page.jpg", "not_an_image"),
        ("sad/cut.jpg", "truncated"),
        ("sad/garbage.png", "undecodable"),
        ("sad/bomb.png", "decompression_bomb"),
        ("other/x.png", "unknown_label"),
        ("loose.png", "unlabelled"),
        ("sad/.DS_Store", "stray_file"),
        ("Thumbs.db", "stray_file"),
        ("README.txt", "stray_file"),
        ("happy/labels.csv", "unrecognised_name"),
    ],
)
def test_each_bad_file_is_rejected_with_its_reason(ingested, path: str, reason: str) -> None:
    _, rejects, _ = ingested
    assert rejects[path]["reason"] == reason
    assert reason in REJECT_REASONS
    assert rejects[path]["id"] == f"mydata/classfolders/{path}"


def test_good_files_survive_and_counts_add_up(ingested) -> None:
    report, rejects, images = ingested
    assert sorted(r["id"] for r in images) == ["mydata/classfolders/happy/ok1.png", "mydata/classfolders/happy/ok2.jpg"]
    assert report.images == 2 and report.rejected == len(rejects) == 11
    assert report.rejects["stray_file"] == 3
    page = rejects["happy/page.jpg"]
    assert "HTML" in page["detail"]


def test_missing_and_unreadable_files_and_repeated_keys(tmp_path: Path) -> None:
    """A label row naming a missing file, a path that is a folder, and a key seen twice."""
    manifest = resolve("folder")
    (tmp_path / "adir.jpg").mkdir()
    source = ClassFolders(tmp_path, manifest.variant("classfolders"), {"name": "t"})
    processor = ChunkProcessor(source, manifest, manifest.variant("classfolders"), workers=1)
    table = processor([
        Record(key="a", raw_label="happy", path="gone.jpg"),
        Record(key="b", raw_label="happy", path="adir.jpg"),
    ])["rejects"].to_pylist()
    assert [r["reason"] for r in table] == ["missing_file", "not_a_file"]  # a folder is never opened (issue 15)
    from fusekit.ingest import _dedupe_keys

    out = list(_dedupe_keys([Record(key="k", path="x"), Record(key="k", path="y")]))
    assert [r.reject for r in out] == [None, "duplicate_entry"]


def test_wrong_layout_stops_with_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    (tmp_path / "src" / "notes").mkdir(parents=True)
    (tmp_path / "src" / "a.csv").write_text("x\n")
    code, out, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / "src"), "--no-faces",
                              workspace=tmp_path / "ws")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith("Error: ")
    assert "expected" in err and "found a.csv, notes/" in err
    assert not (tmp_path / "ws" / "tables" / "images").exists() or not any((tmp_path / "ws" / "tables" / "images").iterdir())
    assert "Traceback" not in err


def test_rows_carry_provenance(ingested) -> None:
    _, _, images = ingested
    row = next(r for r in images if r["source_path"] == "happy/ok1.png")
    data = image_bytes(1)
    import hashlib

    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert (row["width"], row["height"], row["mode"]) == (48, 48, "L")
    assert row["image"] == {"bytes": None, "path": "happy/ok1.png"}
    assert (row["dataset"], row["variant"], row["label"], row["label_id"], row["raw_label"]) == (
        "mydata", "classfolders", "happy", 3, "happy")
    assert row["terms"] == "user-supplied" and row["split"] is None


def test_schema_is_the_declared_one(tmp_path: Path, ingested) -> None:
    files = sorted((tmp_path / "ws" / "tables" / "images").rglob("*.parquet"))
    import pyarrow.parquet as pq

    assert files and all(pq.read_schema(f).remove_metadata().equals(IMAGES_SCHEMA) for f in files)
    assert isinstance(pa.Table, type)
