"""`fusekit ingest folder --labels FILE`: a CSV/TSV that maps file names to labels, as HF imagefolder reads metadata.csv.

Every fixture is generated here (small PNG/JPEG images from helpers.write_image); faces are never run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import call_cli, write_image

from fusekit.config import IngestConfig
from fusekit.errors import ConfigError, LayoutNotRecognised
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA
from fusekit.workspace import Staging, Workspace


def _ingest(ws: Workspace, source: Path, labels: Path | None = None, **kw) -> tuple[dict, dict, object]:
    options = dict(kw.pop("options", {}))
    if labels is not None:
        options["labels"] = str(labels)
    report = run_ingest(ws, IngestConfig(name="folder", source=source, faces=False, options=options, **kw))
    images = {r["id"]: r for r in ws.read("images", IMAGES_SCHEMA, units=[report.unit]).to_pylist()}
    rejects = {r["id"]: r for r in ws.read("rejects", REJECTS_SCHEMA, units=[report.unit]).to_pylist()}
    return images, rejects, report


def _write(path: Path, lines: list[str], sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sep.join(fields) if isinstance(fields, tuple) else fields for fields in lines) + "\n",
                    encoding="utf-8")
    return path


def _extra(row: dict) -> dict:
    return json.loads(row["extra"]) if row["extra"] else {}


# -- a flat folder with metadata.csv, found automatically -----------------------------------------------------------

def _flat(root: Path) -> Path:
    for i, name in enumerate(("a.png", "b.jpg", "c.png", "d.png", "e.png", "f.png", "unlisted.png")):
        write_image(root / name, i + 1)
    _write(root / "metadata.csv", ["file_name,label", "a.png,HAPPINESS", "b.jpg,happiness", "c.png,Happy",
                                   "d.png,Sadness", "e.png,bored", "f.png,"])
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


def test_flat_folder_with_metadata_csv_is_read_automatically(tmp_path: Path) -> None:
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), _flat(tmp_path / "flat"))
    assert report.variant == "classfolders"
    assert {i: (r["raw_label"], r["label"], r["split"], r["source_path"]) for i, r in images.items()} == {
        "flat/classfolders/a.png": ("HAPPINESS", "happy", None, "a.png"),
        "flat/classfolders/b.jpg": ("happiness", "happy", None, "b.jpg"),
        "flat/classfolders/c.png": ("Happy", "happy", None, "c.png"),
        "flat/classfolders/d.png": ("Sadness", "sad", None, "d.png"),
    }
    assert all(_extra(r) == {} for r in images.values())
    assert {i: (r["reason"], r["raw_label"]) for i, r in rejects.items()} == {
        "flat/classfolders/e.png": ("unknown_label", "bored"),
        "flat/classfolders/f.png": ("unlabelled", None),
        "flat/classfolders/unlisted.png": ("unlabelled", None),
        "flat/classfolders/.DS_Store": ("stray_file", None),
    }  # metadata.csv itself is neither a stray nor an unlabelled file
    assert rejects["flat/classfolders/unlisted.png"]["detail"] == "not listed in metadata.csv"
    assert rejects["flat/classfolders/f.png"]["detail"] == "metadata.csv line 7: no label"
    assert rejects["flat/classfolders/e.png"]["detail"] == "'bored' is not in the folder label map"
    assert report.images == 4 and report.rejected == 4
    assert ("labels read from metadata.csv at the top of the folder (found automatically, as HF imagefolder does; "
            "--labels FILE overrides)") in report.notes
    assert all(reason in REJECT_REASONS for reason, _ in {(r["reason"], 0) for r in rejects.values()})


def test_metadata_tsv_is_found_too_and_labels_overrides_it(tmp_path: Path) -> None:
    root = tmp_path / "set"
    write_image(root / "x.png", 1)
    write_image(root / "y.png", 2)
    _write(root / "metadata.tsv", [("File_Name", "Emotion"), ("x.png", "anger"), ("y.png", "fear")], sep="\t")
    images, rejects, report = _ingest(Workspace(tmp_path / "ws1"), root)
    assert {i: r["label"] for i, r in images.items()} == {"set/classfolders/x.png": "angry",
                                                          "set/classfolders/y.png": "fear"}
    assert not rejects
    assert any(n.startswith("labels read from metadata.tsv") for n in report.notes)

    mine = _write(tmp_path / "mine.csv", ["image,expression", "x.png,Neutral"])
    images, rejects, report = _ingest(Workspace(tmp_path / "ws2"), root, labels=mine)
    assert {i: r["label"] for i, r in images.items()} == {"set/classfolders/x.png": "neutral"}
    assert {i: r["reason"] for i, r in rejects.items()} == {"set/classfolders/y.png": "unlabelled"}  # tsv not a reject
    assert "--labels mine.csv is used; metadata.tsv at the top of the folder is not read" in report.notes
    assert not any(n.startswith("labels read from") for n in report.notes)


# -- a class-folder tree with a list beside it: the list wins ---------------------------------------------------------

def _tree(root: Path) -> None:
    write_image(root / "happy" / "a.png", 1)
    write_image(root / "happy" / "b.png", 2)
    write_image(root / "Anger" / "c.jpg", 3)
    write_image(root / "happy" / "unlisted.png", 4)
    write_image(root / "loose.png", 5)
    write_image(root / "deep" / "x" / "y" / "unique.png", 6)
    write_image(root / "sub" / "win.png", 7)
    write_image(root / "one" / "twin.png", 8)
    write_image(root / "two" / "twin.png", 9)
    (root / "README.txt").write_text("my set")
    (root / "notes.json").write_text("{}")


LIST = [
    "file,label,split,subject",
    "happy/a.png,happy,train,S01",          # line 2: agrees with its folder
    "happy/b.png,SAD,Validation,S02",       # line 3: disagrees with its folder
    "Anger/c.jpg,ANGRY,TEST,",              # line 4: agrees, folder spelled otherwise; no subject
    "./loose.png,neutral,,S01",             # line 5: ./ prefix, no split
    "unique.png,fear,training,S03",         # line 6: a bare name, unique in the tree
    ".\\sub\\win.png,surprise,test,S03",     # line 7: backslashes
    "gone.png,happy,train,S04",             # line 8: no such file
    "onlyonefield",                         # line 9: too few fields
    ",happy,train,S05",                     # line 10: empty file name
    "happy/a.png,neutral,test,S01",         # line 11: listed twice
    "twin.png,happy,,",                     # line 12: a bare name that two files have
    "happy/unlisted.png,happy,holdout,S06",  # line 13: a split that is not one
]


def test_list_beside_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "mydata"
    _tree(root)
    labels = _write(tmp_path / "labels.csv", LIST)
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), root, labels=labels)
    got = {i: (r["raw_label"], r["label"], r["split"], r["subject"], _extra(r), r["source_row"])
           for i, r in images.items()}
    assert got == {
        "mydata/classfolders/happy/a.png": ("happy", "happy", "train", "S01", {}, 0),
        "mydata/classfolders/happy/b.png": ("SAD", "sad", "val", "S02", {"class_folder": "happy",
                                                                          "folder_disagrees": True}, 1),
        "mydata/classfolders/Anger/c.jpg": ("ANGRY", "angry", "test", None, {"class_folder": "Anger"}, 2),
        "mydata/classfolders/loose.png": ("neutral", "neutral", None, "S01", {}, 3),
        "mydata/classfolders/deep/x/y/unique.png": ("fear", "fear", "train", "S03", {}, 4),
        "mydata/classfolders/sub/win.png": ("surprise", "surprise", "test", "S03", {}, 5),
    }
    assert images["mydata/classfolders/sub/win.png"]["source_path"] == "sub/win.png"
    assert {i: (r["reason"], r["detail"]) for i, r in rejects.items()} == {
        "mydata/classfolders/gone.png": ("missing_file", "labels.csv line 8 names gone.png, which is not under the "
                                                         "folder"),
        "mydata/classfolders/labels.csv/row000007": ("malformed_row", "labels.csv line 9: 1 fields, the header has 4"),
        "mydata/classfolders/labels.csv/row000008": ("malformed_row", "labels.csv line 10: no file name"),
        "mydata/classfolders/happy/a.png#row000009": ("duplicate_entry", "labels.csv line 11 lists happy/a.png again "
                                                                         "(first on line 2)"),
        "mydata/classfolders/labels.csv/row000010": (
            "malformed_row", "labels.csv line 12: 'twin.png' matches 2 files (one/twin.png, two/twin.png); give its "
                             "path relative to the folder"),
        "mydata/classfolders/happy/unlisted.png": (
            "malformed_row", "labels.csv line 13: split 'holdout' is not one of train, val, test (privatetest, "
                             "publictest, test, testing, train, training, val, valid, validation)"),
        "mydata/classfolders/one/twin.png": ("unlabelled", "not listed in labels.csv"),
        "mydata/classfolders/two/twin.png": ("unlabelled", "not listed in labels.csv"),
        "mydata/classfolders/README.txt": ("stray_file", "documentation file"),
        "mydata/classfolders/notes.json": ("unrecognised_name", "not an image file"),
    }
    assert rejects["mydata/classfolders/gone.png"]["source_row"] == 6
    assert report.images == 6 and report.rejected == 10
    assert dict(report.rejects) == {"missing_file": 1, "malformed_row": 4, "duplicate_entry": 1, "unlabelled": 2,
                                    "stray_file": 1, "unrecognised_name": 1}
    assert ("1 images sit in a class folder that disagrees with labels.csv; the list wins (extra.class_folder, "
            "extra.folder_disagrees)") in report.notes


def test_a_file_in_a_class_folder_that_the_list_omits_is_unlabelled(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_image(root / "happy" / "in.png", 1)
    write_image(root / "sad" / "out.png", 2)
    labels = _write(tmp_path / "l.csv", ["filename,class", "happy/in.png,happy"])
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), root, labels=labels)
    assert list(images) == ["d/classfolders/happy/in.png"]
    assert {i: (r["reason"], r["detail"]) for i, r in rejects.items()} == {
        "d/classfolders/sad/out.png": ("unlabelled", "not listed in l.csv (its class folder says sad)")}


def test_split_folders_lose_to_the_list_split(tmp_path: Path) -> None:
    root = tmp_path / "sp"
    write_image(root / "train" / "happy" / "p.png", 1)
    write_image(root / "train" / "happy" / "q.png", 2)
    write_image(root / "test" / "sad" / "r.png", 3)
    labels = _write(root / "meta" / "list.csv", ["path,label,split", "train/happy/p.png,happy,test",
                                                 "train/happy/q.png,happy,", "test/sad/r.png,happy,privatetest"])
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), root, labels=labels)
    assert not rejects  # the list inside the folder (not at its top) is not reported either
    assert {i: (r["label"], r["split"], _extra(r)) for i, r in images.items()} == {
        "sp/classfolders/train/happy/p.png": ("happy", "test", {"split_folder": "train", "split_disagrees": True}),
        "sp/classfolders/train/happy/q.png": ("happy", "train", {}),
        "sp/classfolders/test/sad/r.png": ("happy", "test", {"class_folder": "sad", "folder_disagrees": True}),
    }
    assert ("1 images sit in a split folder that disagrees with list.csv; the list wins (extra.split_folder, "
            "extra.split_disagrees)") in report.notes


def test_ids_are_the_relative_paths_with_or_without_a_list(tmp_path: Path) -> None:
    root = tmp_path / "same"
    write_image(root / "happy" / "a.png", 1)
    write_image(root / "sad" / "b.png", 2)
    plain, _, _ = _ingest(Workspace(tmp_path / "ws1"), root)
    listed, _, _ = _ingest(Workspace(tmp_path / "ws2"), root,
                           labels=_write(tmp_path / "l.csv", ["file_name,label", "sad/b.png,sad", "happy/a.png,happy"]))
    assert set(plain) == set(listed) == {"same/classfolders/happy/a.png", "same/classfolders/sad/b.png"}
    assert {i: r["sha256"] for i, r in plain.items()} == {i: r["sha256"] for i, r in listed.items()}


# -- delimiters and headers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sep", "suffix"), [(",", ".csv"), ("\t", ".tsv"), (";", ".csv"), ("\t", ".txt")])
def test_delimiter_is_sniffed_and_headers_match_in_any_case(tmp_path: Path, sep: str, suffix: str) -> None:
    root = tmp_path / "d"
    write_image(root / "img one.png", 1)  # a space in the name: not a delimiter
    write_image(root / "two.jpg", 2, fmt="JPEG")
    labels = _write(tmp_path / f"list{suffix}", [("Subject", "FILE NAME", "Expression", "SPLIT"),
                                                 ("s1", "img one.png", "Surprised", "Valid"),
                                                 ("s2", "two.jpg", "DISGUSTED", "Train")], sep=sep)
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), root, labels=labels)
    assert not rejects
    assert {i: (r["label"], r["split"], r["subject"]) for i, r in images.items()} == {
        "d/classfolders/img one.png": ("surprise", "val", "s1"), "d/classfolders/two.jpg": ("disgust", "train", "s2")}


def test_a_header_without_file_or_label_column_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    root = tmp_path / "d"
    write_image(root / "a.png", 1)
    bad = _write(tmp_path / "bad.csv", ["name,mood", "a.png,happy"])
    code, out, err = call_cli(capsys, "ingest", "folder", "--source", str(root), "--labels", str(bad), "--no-faces",
                              workspace=tmp_path / "ws")
    assert code == 2 and "Traceback" not in err
    assert err.strip() == ("Error: label file bad.csv: no file-name and no label column; its header has name, mood. "
                           "It needs a file-name column (file_name, file, filename, image, path) and a label column "
                           "(label, emotion, expression, class), any case; split and subject are optional")
    _write(bad, ["file_name\tmood", "a.png\thappy"])
    with pytest.raises(ConfigError, match=r"^label file bad.csv: no label column; its header has file_name, mood\. "):
        _ingest(Workspace(tmp_path / "ws"), root, labels=bad)
    bad.write_text("")
    with pytest.raises(ConfigError, match="its header has nothing \\(the file is empty\\)"):
        _ingest(Workspace(tmp_path / "ws"), root, labels=bad)
    assert not (tmp_path / "ws" / "tables" / "images").exists()


def test_labels_that_is_not_a_file(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "d" / "happy" / "a.png", 1)
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(tmp_path / "d"), "--labels",
                            str(tmp_path / "nope.csv"), "--no-faces", workspace=tmp_path / "ws")
    assert code == 2 and err.strip() == f"Error: --labels {tmp_path / 'nope.csv'}: no such file"


def test_cli_labels_flag_and_summary(tmp_path: Path, capsys) -> None:
    root = tmp_path / "cli-set"
    write_image(root / "a.png", 1)
    write_image(root / "b.png", 2)
    labels = _write(tmp_path / "l.csv", ["file_name,label", "a.png,happy", "b.png,sad"])
    code, out, err = call_cli(capsys, "ingest", "folder", "--source", str(root), "--labels", str(labels),
                              "--name", "mine", "--no-faces", workspace=tmp_path / "ws")
    assert code == 0, err
    rows = Workspace(tmp_path / "ws").read("images", IMAGES_SCHEMA).to_pylist()
    assert sorted((r["id"], r["label"]) for r in rows) == [("mine/classfolders/a.png", "happy"),
                                                           ("mine/classfolders/b.png", "sad")]


# -- detection ----------------------------------------------------------------------------------------------------------

def test_a_flat_folder_without_a_list_keeps_the_layout_message(tmp_path: Path, capsys) -> None:
    root = tmp_path / "flat"
    write_image(root / "a.png", 1)
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(root), "--no-faces", workspace=tmp_path / "ws")
    assert code == 2
    assert err.strip() == (f"Error: {root} is not a Any class-per-folder tree layout: expected <root>/<class>/<image> "
                           f"or <root>/<split>/<class>/<image>; found a.png")
    assert not (tmp_path / "ws").exists()  # refused at detection: nothing written, not even the workspace


def test_a_metadata_csv_without_label_columns(tmp_path: Path) -> None:
    """Beside class folders it is left alone (a note says so); in a flat folder it is the user error."""
    root = tmp_path / "cf"
    write_image(root / "happy" / "a.png", 1)
    _write(root / "metadata.csv", ["file_name,caption", "happy/a.png,a smiling face"])
    images, rejects, report = _ingest(Workspace(tmp_path / "ws1"), root)
    assert {i: r["label"] for i, r in images.items()} == {"cf/classfolders/happy/a.png": "happy"}
    assert ("metadata.csv at the top of the folder has no file and label columns: not read; labels come from the "
            "class folders") in report.notes
    flat = tmp_path / "flat"
    write_image(flat / "a.png", 1)
    _write(flat / "metadata.csv", ["file_name,caption", "a.png,a smiling face"])
    with pytest.raises(ConfigError, match="^label file metadata.csv: no label column"):
        _ingest(Workspace(tmp_path / "ws2"), flat)
    with pytest.raises(LayoutNotRecognised):
        _ingest(Workspace(tmp_path / "ws3"), tmp_path / "cf" / "happy")


def test_paths_from_the_folder_above_or_absolute(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_image(root / "img" / "a.png", 1)
    write_image(root / "b.png", 2)
    write_image(root / "C.PNG", 3)
    labels = _write(tmp_path / "l.csv", ["file_name,label", "ds/img/a.png,happy", f"{root / 'b.png'},sad",
                                         "c.png,fear"])
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), root, labels=labels)
    assert not rejects
    assert {i: r["label"] for i, r in images.items()} == {"ds/classfolders/img/a.png": "happy",
                                                          "ds/classfolders/b.png": "sad",
                                                          "ds/classfolders/C.PNG": "fear"}


# -- re-runs --------------------------------------------------------------------------------------------------------------

def _five(root: Path) -> list[str]:
    names = [f"{i}.png" for i in range(5)]
    for i, name in enumerate(names):
        write_image(root / name, 10 + i)
    return names


@pytest.mark.parametrize("inside", [True, False])
def test_editing_the_list_changes_the_labels_on_a_rerun(tmp_path: Path, inside: bool) -> None:
    root = tmp_path / "r"
    names = _five(root)
    labels = (root / "metadata.csv") if inside else (tmp_path / "labels.csv")
    _write(labels, ["file_name,label"] + [f"{n},happy" for n in names])
    ws = Workspace(tmp_path / "ws")
    given = None if inside else labels
    images, _, _ = _ingest(ws, root, labels=given, chunk_size=2, workers=1)
    assert {r["label"] for r in images.values()} == {"happy"}
    _write(labels, ["file_name,label"] + [f"{n},sad" for n in names[:4]])
    images, rejects, report = _ingest(ws, root, labels=given, chunk_size=2, workers=1)
    assert {i: r["label"] for i, r in images.items()} == {f"r/classfolders/{n}": "sad" for n in names[:4]}
    assert {i: r["reason"] for i, r in rejects.items()} == {"r/classfolders/4.png": "unlabelled"}
    assert report.resumed_parts == 0


@pytest.mark.parametrize("inside", [True, False])
def test_a_killed_run_resumes_only_over_the_same_list(tmp_path: Path, monkeypatch, inside: bool) -> None:
    """The resume fingerprint covers the label file: a part staged with the old list is not reused."""
    root = tmp_path / "k"
    names = _five(root)
    labels = (root / "metadata.csv") if inside else (tmp_path / "labels.csv")
    given = None if inside else labels
    original = Staging.write_part

    def interrupted(self, index, tables, stats):
        if index >= 1:
            raise KeyboardInterrupt  # killed after the first part was written
        return original(self, index, tables, stats)

    def killed_run() -> None:
        monkeypatch.setattr(Staging, "write_part", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _ingest(ws, root, labels=given, chunk_size=2, workers=1)
        monkeypatch.setattr(Staging, "write_part", original)

    ws = Workspace(tmp_path / "ws")
    _write(labels, ["file_name,label"] + [f"{n},happy" for n in names])
    killed_run()
    _, _, report = _ingest(ws, root, labels=given, chunk_size=2, workers=1)
    assert report.resumed_parts == 1  # unchanged inputs: the staged part is reused

    killed_run()
    _write(labels, ["file_name,label"] + [f"{n},angry" for n in names])  # same size: only the mtime tells
    stat = labels.stat()
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    images, _, report = _ingest(ws, root, labels=given, chunk_size=2, workers=1)
    assert report.resumed_parts == 0
    assert {r["label"] for r in images.values()} == {"angry"} and len(images) == 5
