"""FER-2013 in its three native forms: the challenge CSV (3 header spellings), Kaggle's image folders, FER+ votes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers import call_cli, pixels, write_image
from PIL import Image

from fusekit.config import IngestConfig
from fusekit.errors import ConfigError, LayoutNotRecognised
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.sources.fer2013 import majority_label, parse_pixels
from fusekit.workspace import Workspace

USAGES = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 2


def _pixel_string(seed: int) -> str:
    return " ".join(str(v) for v in pixels(seed).ravel())


def write_fer_csv(path: Path, n: int = 10, order: tuple[str, ...] = ("emotion", "pixels", "Usage"),
                  spaces: bool = False, cut_last: bool = False, extra_rows: list[list[str]] | None = None) -> Path:
    """A FER-2013 CSV; row i has emotion i % 7 and USAGES[i % 10]. ``spaces``: icml_face_data.csv's ' Usage'."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([(" " + c if spaces and i else c) for i, c in enumerate(order)])
    for i in range(n):
        value = {"emotion": str(i % 7), "pixels": _pixel_string(i), "Usage": USAGES[i % 10]}
        writer.writerow([value[c] for c in order])
    for row in extra_rows or []:
        writer.writerow(row)
    text = buf.getvalue()
    if cut_last:
        text += "3," + _pixel_string(99)[:500]  # a download cut off in the middle of the last row
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _ingest(ws: Workspace, source: Path, **kw) -> tuple[pa.Table, pa.Table, object]:
    report = run_ingest(ws, IngestConfig(name=kw.pop("name", "fer2013"), source=source, faces=False, **kw))
    images = ws.read("images", IMAGES_SCHEMA, units=[report.unit])
    rejects = ws.read("rejects", REJECTS_SCHEMA, units=[report.unit])
    return images, rejects, report


def test_csv_rows_become_png_images_with_label_and_split(tmp_path):
    write_fer_csv(tmp_path / "dl" / "fer2013" / "fer2013.csv", n=10)
    (tmp_path / "dl" / "fer2013" / "README").write_text("readme")
    ws = Workspace(tmp_path / "ws")
    images, rejects, report = _ingest(ws, tmp_path / "dl")  # the folder above: found at depth
    assert report.variant == "csv"
    rows = images.sort_by("id").to_pylist()
    assert [r["id"] for r in rows] == [f"fer2013/csv/row{i:05d}" for i in range(10)]
    assert [r["raw_label"] for r in rows] == [str(i % 7) for i in range(10)]
    names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert [r["label"] for r in rows] == [names[i % 7] for i in range(10)]
    assert [r["split"] for r in rows] == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert {r["source_path"] for r in rows} == {"fer2013.csv"}
    assert [r["source_row"] for r in rows] == list(range(10))
    assert all(r["subject"] is None for r in rows)
    first = rows[3]
    decoded = np.asarray(Image.open(io.BytesIO(first["image"]["bytes"])))
    assert decoded.shape == (48, 48) and (decoded == pixels(3)).all()  # lossless: the exact CSV pixels
    assert first["image"]["path"] == "row00003.png"
    assert (first["width"], first["height"], first["mode"]) == (48, 48, "L")
    assert first["terms"] == "fer2013-research"
    assert rejects.num_rows == 0


@pytest.mark.parametrize("name,order,spaces", [
    ("icml_face_data.csv", ("emotion", "Usage", "pixels"), True),
    ("train.csv", ("emotion", "pixels"), False),
])
def test_other_csv_spellings_are_read_by_column_name(tmp_path, name, order, spaces):
    src = write_fer_csv(tmp_path / name, n=10, order=order, spaces=spaces)
    images, _, _ = _ingest(Workspace(tmp_path / "ws"), src)
    rows = images.sort_by("id").to_pylist()
    assert len(rows) == 10
    decoded = np.asarray(Image.open(io.BytesIO(rows[5]["image"]["bytes"])))
    assert (decoded == pixels(5)).all()
    expected = ["train"] * 10 if name == "train.csv" else ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert [r["split"] for r in rows] == expected


def test_csv_precedence_prefers_fer2013_csv(tmp_path):
    write_fer_csv(tmp_path / "train.csv", n=3, order=("emotion", "pixels"))
    write_fer_csv(tmp_path / "icml_face_data.csv", n=4, order=("emotion", "Usage", "pixels"), spaces=True)
    write_fer_csv(tmp_path / "fer2013" / "fer2013.csv", n=5)
    images, _, report = _ingest(Workspace(tmp_path / "ws"), tmp_path)
    # The competition folder holds icml_face_data.csv and train.csv at the top; fer2013.csv one level down.
    assert images.num_rows == 4 and report.anchor.endswith("icml_face_data.csv")
    images, _, report = _ingest(Workspace(tmp_path / "ws2"), tmp_path / "fer2013")
    assert images.num_rows == 5 and report.anchor.endswith("fer2013.csv")


def test_malformed_rows_are_rejected_and_the_rest_kept(tmp_path):
    bad = [
        ["9", _pixel_string(50), "Training"],  # unknown label id
        ["2", "1 2 3", "Training"],  # too few pixels
        ["2", _pixel_string(51).replace("1", "x", 1), "PublicTest"],  # not a number
        ["2", " ".join(["300"] * 2304), "PublicTest"],  # out of range
        ["2", _pixel_string(52), "Bogus"],  # unknown usage
        ["2", _pixel_string(53)],  # missing field
    ]
    src = write_fer_csv(tmp_path / "fer2013.csv", n=5, extra_rows=bad, cut_last=True)
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), src)
    assert images.num_rows == 5
    by_row = {r["source_row"]: r for r in rejects.to_pylist()}
    assert by_row[5]["reason"] == "unknown_label" and by_row[5]["raw_label"] == "9"
    assert {by_row[i]["reason"] for i in range(6, 12)} == {"malformed_row"}
    assert "2304" in by_row[6]["detail"] and "outside 0-255" in by_row[8]["detail"]
    assert "Bogus" in by_row[9]["detail"] and "fields" in by_row[10]["detail"]
    assert by_row[11]["id"] == "fer2013/csv/row00011"  # the cut-off last row
    assert report.rejects == {"unknown_label": 1, "malformed_row": 6}


def test_a_csv_without_pixels_is_not_the_layout(tmp_path, capsys):
    (tmp_path / "test.csv").write_text("pixels\n" + _pixel_string(1) + "\n")
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    code, out, err = call_cli(capsys, "ingest", "fer-2013", "--source", str(tmp_path), "--no-faces",
                              workspace=tmp_path / "ws")
    assert code == 2
    assert "is not a FER-2013" in err and "fer2013.csv" in err and "Traceback" not in err
    assert not (tmp_path / "ws" / "tables").exists()


def _kaggle_folders(root: Path) -> dict[str, str]:
    files = {
        "train/angry/Training_3908.jpg": "train",
        "train/angry/Training_97006335.jpg": "train",
        "train/happy/Training_10.jpg": "train",
        "test/sad/PublicTest_94416517.jpg": "val",
        "test/fear/PrivateTest_902573.jpg": "test",
        "test/happy/PrivateTest_95094.jpg": "test",
        "test/neutral/PublicTest_5.jpg": "val",
    }
    for i, rel in enumerate(files):
        write_image(root / rel, i)
    return files


def test_kaggle_folders_split_by_prefix(tmp_path):
    root = tmp_path / "archive"
    files = _kaggle_folders(root)
    write_image(root / "test" / "sad" / "img_7.jpg", 40)  # not the naming scheme
    (root / "train" / "angry" / ".DS_Store").write_bytes(b"\0\0")
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), tmp_path)
    assert report.variant == "folders"
    rows = {r["id"].split("/", 2)[2]: r for r in images.to_pylist()}
    assert set(rows) == set(files)
    assert {k: r["split"] for k, r in rows.items()} == files
    assert rows["test/sad/PublicTest_94416517.jpg"]["label"] == "sad"
    assert rows["train/angry/Training_97006335.jpg"]["source_path"] == "train/angry/Training_97006335.jpg"
    reasons = {r["source_path"]: r["reason"] for r in rejects.to_pylist()}
    assert reasons == {"test/sad/img_7.jpg": "unrecognised_name", "train/angry/.DS_Store": "stray_file"}


def write_ferplus(path: Path, votes: list[list[int]], names: list[str] | None, usages: list[str]) -> Path:
    header = ["Usage"] + (["Image name"] if names is not None else []) + [
        "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    lines = [",".join(header)]
    for i, v in enumerate(votes):
        lines.append(",".join([usages[i]] + ([names[i]] if names is not None else []) + [str(x) for x in v]))
    path.write_text("\n".join(lines) + "\n")
    return path


FERPLUS_VOTES = [
    [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],  # no strict majority after outlier removal -> unknown -> dropped
    [4, 6, 0, 0, 0, 0, 0, 0, 0, 0],  # happiness
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # NF (and an empty name in the 12-column file)
    [0, 0, 1, 0, 0, 0, 0, 9, 0, 0],  # contempt
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # every count <= 1 -> unknown
    [6, 0, 0, 0, 4, 0, 0, 0, 0, 0],  # neutral (6 > 5)
    [5, 0, 0, 0, 5, 0, 0, 0, 0, 0],  # a tie is no majority -> unknown
    [0, 0, 0, 0, 0, 0, 7, 0, 2, 0],  # fear
    [0, 0, 0, 2, 0, 8, 0, 0, 0, 0],  # disgust
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 9],  # the one row that sums to 9: NF
]


@pytest.mark.parametrize("named", [True, False])
def test_ferplus_majority_rule_and_dropped_rows(tmp_path, named):
    src = write_fer_csv(tmp_path / "fer2013.csv", n=10)
    names = ["fer0000000.png", "fer0000001.png", "", "fer0000002.png", "fer0000003.png", "fer0000004.png",
             "fer0000005.png", "fer0000006.png", "fer0000007.png", "fer0000008.png"]
    labels = write_ferplus(tmp_path / "fer2013new.csv", FERPLUS_VOTES, names if named else None, USAGES)
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), src, options={"labels": str(labels)})
    assert report.variant == "ferplus"
    got = {r["source_row"]: r["label"] for r in images.to_pylist()}
    assert got == {1: "happy", 3: "contempt", 5: "neutral", 7: "fear", 8: "disgust"}
    assert {r["label_source"] for r in images.to_pylist()} == {"ferplus_majority"}
    assert {r["id"] for r in images.to_pylist()} == {f"fer2013/ferplus/row{i:05d}" for i in got}
    dropped = {r["source_row"]: (r["reason"], r["raw_label"]) for r in rejects.to_pylist()}
    assert dropped[0] == ("dropped_label", "unknown") and dropped[4] == ("dropped_label", "unknown")
    assert dropped[6] == ("dropped_label", "unknown") and dropped[9] == ("dropped_label", "NF")
    assert dropped[2][0] == "dropped_label"
    if named:
        assert "no image name" in next(r["detail"] for r in rejects.to_pylist() if r["source_row"] == 2)
    row1 = next(r for r in images.to_pylist() if r["source_row"] == 1)
    assert '"happiness":6' in row1["extra"] and row1["split"] == "train"


def test_ferplus_needs_aligned_files(tmp_path, capsys):
    src = write_fer_csv(tmp_path / "fer2013.csv", n=10)
    short = write_ferplus(tmp_path / "fer2013new.csv", FERPLUS_VOTES[:7], None, USAGES)
    code, _, err = call_cli(capsys, "ingest", "ferplus", "--source", str(src), "--labels", str(short), "--no-faces",
                            workspace=tmp_path / "ws")
    assert code == 2 and "7 rows" in err and "10" in err and "row order" in err
    label_csv = tmp_path / "label.csv"
    label_csv.write_text('fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0\n')
    code, _, err = call_cli(capsys, "ingest", "fer2013", "--source", str(src), "--labels", str(label_csv),
                            "--no-faces", workspace=tmp_path / "ws")
    assert code == 2 and "fer2013new.csv" in err
    with pytest.raises(ConfigError):
        run_ingest(Workspace(tmp_path / "ws"), IngestConfig(name="fer2013", source=src, variant="ferplus",
                                                            faces=False))


def test_ferplus_on_the_folder_layout_is_refused(tmp_path):
    _kaggle_folders(tmp_path / "k")
    labels = write_ferplus(tmp_path / "fer2013new.csv", FERPLUS_VOTES, None, USAGES)
    with pytest.raises(LayoutNotRecognised, match="fer2013new.csv"):
        run_ingest(Workspace(tmp_path / "ws"), IngestConfig(name="fer2013", source=tmp_path / "k",
                                                            options={"labels": str(labels)}, faces=False))


def test_pixel_and_vote_parsers():
    assert parse_pixels(" ".join(["7"] * 2304)).sum() == 7 * 2304
    with pytest.raises(ValueError):
        parse_pixels("1 2")
    assert majority_label([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) == "unknown"
    assert majority_label([2, 2, 2, 2, 2, 0, 0, 0, 0, 0]) == "unknown"
    assert majority_label([0, 10, 0, 0, 0, 0, 0, 0, 0, 0]) == "happiness"


def test_no_worker_processes_when_other_jobs_hold_the_cores(tmp_path, monkeypatch):
    """The pool would start with the second chunk; under a load that leaves < 1.5 cores idle it does not, the run
    says so, and the rows are the same as with processes."""
    import concurrent.futures

    import fusekit.processes

    write_fer_csv(tmp_path / "fer2013.csv", n=40)
    started = []
    monkeypatch.setattr("fusekit.runner.process_pool",  # where every pool is built
                        lambda *a, **k: started.append(a) or concurrent.futures.ThreadPoolExecutor(2))
    monkeypatch.setattr(fusekit.processes.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(fusekit.processes.os, "getloadavg", lambda: (2.4, 2.0, 1.5))  # one other job + this one
    busy, _, report = _ingest(Workspace(tmp_path / "busy"), tmp_path / "fer2013.csv", chunk_size=8, workers=2)
    assert started == [] and any("worker processes not started" in n and "0.6 of 2" in n for n in report.notes)
    monkeypatch.setattr(fusekit.processes.os, "getloadavg", lambda: (1.1, 1.0, 1.0))  # only this process
    idle, _, report = _ingest(Workspace(tmp_path / "idle"), tmp_path / "fer2013.csv", chunk_size=8, workers=2)
    assert len(started) == 1 and not any("worker processes" in n for n in report.notes)
    assert busy.sort_by("id").column("sha256").to_pylist() == idle.sort_by("id").column("sha256").to_pylist()
    assert busy.num_rows == 40
