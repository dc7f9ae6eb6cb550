"""Workspace tables: atomic parts, units replaced as a whole, crash recovery, family warnings, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from helpers import call_cli, write_image

from fusekit.config import IngestConfig
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA
from fusekit.workspace import Workspace, write_parquet_atomic


def _folder(root: Path, n_per_class: int, classes=("happy", "sad", "fear")) -> Path:
    for c, name in enumerate(classes):
        for i in range(n_per_class):
            write_image(root / name / f"{i:03d}.png", c * 1000 + i)
    return root


def _ids(ws: Workspace, unit: str | None = None) -> list[str]:
    units = None if unit is None else [unit]
    return sorted(ws.read("images", IMAGES_SCHEMA, units=units, columns=["id"]).column("id").to_pylist())


def test_atomic_part_write_leaves_no_temp_files(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 2, 3]})
    target = tmp_path / "t" / "part-00000.parquet"
    write_parquet_atomic(table, target)
    assert [p.name for p in target.parent.iterdir()] == ["part-00000.parquet"]
    assert ds.dataset(target).to_table().equals(table)


def test_table_reads_as_one_with_external_readers(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    run_ingest(ws, IngestConfig(name="folder", source=_folder(tmp_path / "a", 3), chunk_size=4, faces=False))
    run_ingest(ws, IngestConfig(name="folder", source=_folder(tmp_path / "b", 2), chunk_size=4, faces=False))
    assert ws.units("images") == ["a--classfolders", "b--classfolders"]
    assert len(_ids(ws)) == 15
    # pyarrow reading the folder directly (no fusekit) sees exactly the same rows: `_unit.json` files are ignored.
    plain = ds.dataset(ws.table_dir("images"), format="parquet").to_table()
    assert sorted(plain.column("id").to_pylist()) == _ids(ws)


def test_reingest_replaces_only_that_variant(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    a = _folder(tmp_path / "a", 3)
    run_ingest(ws, IngestConfig(name="folder", source=a, faces=False))
    run_ingest(ws, IngestConfig(name="folder", source=_folder(tmp_path / "b", 2), faces=False))
    for f in (a / "sad").iterdir():
        f.unlink()
    report = run_ingest(ws, IngestConfig(name="folder", source=a, faces=False))
    assert report.images == 6
    assert len(_ids(ws, "a--classfolders")) == 6 and len(_ids(ws, "b--classfolders")) == 6
    assert not any("/sad/" in i for i in _ids(ws, "a--classfolders"))
    assert not (ws.root / ".staging").exists() or not any((ws.root / ".staging").iterdir())


def test_same_input_gives_byte_identical_tables(tmp_path: Path) -> None:
    src = _folder(tmp_path / "src", 5)
    parts = []
    for name in ("ws1", "ws2"):
        ws = Workspace(tmp_path / name)
        run_ingest(ws, IngestConfig(name="folder", source=src, chunk_size=6, faces=False))
        parts.append([p.read_bytes() for p in sorted(ws.unit_dir("images", "src--classfolders").glob("part-*"))])
    assert len(parts[0]) == 3 and parts[0] == parts[1]


def test_recover_finishes_an_interrupted_swap(tmp_path: Path) -> None:
    """A crash after the unit was marked complete but before both tables were swapped in is finished on open."""
    ws = Workspace(tmp_path / "ws")
    src = _folder(tmp_path / "src", 2)
    run_ingest(ws, IngestConfig(name="folder", source=src, faces=False))
    staging = ws.stage("src--classfolders", {"x": 1})
    staging.write_part(0, {"images": ws.read("images", IMAGES_SCHEMA).slice(0, 1)}, {"images": 1})
    (staging.path / "rejects").mkdir()
    staging.path.joinpath("_COMPLETE").write_text(json.dumps({"tables": ["images", "rejects"]}))
    assert Workspace(tmp_path / "ws").recover() == ["src--classfolders"]
    assert len(_ids(ws)) == 1
    assert not (ws.staging / "src--classfolders").exists()


def test_second_variant_of_a_family_warns(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "fer2013.csv"
    pixels = " ".join(["7"] * 2304)
    csv.write_text(f"emotion,pixels,Usage\n3,{pixels},Training\n")
    for name in ("Training_1.jpg",):
        write_image(tmp_path / "kaggle" / "train" / "happy" / name, 1)
    write_image(tmp_path / "kaggle" / "test" / "sad" / "PublicTest_2.jpg", 2)
    ws = tmp_path / "ws"
    code1, _, err1 = call_cli(capsys, "ingest", "fer2013", "--source", str(csv), "--no-faces", workspace=ws)
    code2, out2, err2 = call_cli(capsys, "ingest", "fer2013", "--source", str(tmp_path / "kaggle"), "--no-faces",
                                 workspace=ws)
    assert (code1, code2) == (0, 0), err1 + err2
    assert "warning:" in out2 and "overlaps the already ingested csv" in out2


def test_folder_datasets_do_not_warn_about_each_other(tmp_path: Path, capsys) -> None:
    ws = tmp_path / "ws"
    call_cli(capsys, "ingest", "folder", "--source", str(_folder(tmp_path / "a", 1)), "--no-faces", workspace=ws)
    code, out, _ = call_cli(capsys, "ingest", "folder", "--source", str(_folder(tmp_path / "b", 1)), "--no-faces",
                            workspace=ws)
    assert code == 0 and "warning" not in out
