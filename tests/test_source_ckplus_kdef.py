"""CK+ (official sequences and CK+48) and KDEF in their native layouts, with the quirks FORMATS.md lists."""

from __future__ import annotations

from pathlib import Path

from helpers import call_cli, write_image
from PIL import Image

from fusekit.config import IngestConfig
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Workspace


def _ingest(ws: Workspace, name: str, source: Path, **kw) -> tuple[list[dict], list[dict], object]:
    report = run_ingest(ws, IngestConfig(name=name, source=source, faces=False, **kw))
    images = ws.read("images", IMAGES_SCHEMA, units=[report.unit]).sort_by("id").to_pylist()
    rejects = ws.read("rejects", REJECTS_SCHEMA, units=[report.unit]).sort_by("id").to_pylist()
    return images, rejects, report


# -- CK+ official ---------------------------------------------------------------------------------------------------
def write_ckplus(root: Path, plan: dict[str, list[tuple[int, int, float | None]]], extra_level: bool = True) -> Path:
    """plan: subject -> [(sequence, frames, emotion or None)]. Two archives unzipped separately, each with its level."""
    images = root / ("extended-cohn-kanade-images/cohn-kanade-images" if extra_level else "cohn-kanade-images")
    labels = root / ("Emotion_labels/Emotion" if extra_level else "Emotion")
    seed = 0
    for subject, sequences in plan.items():
        for number, frames, emotion in sequences:
            seq = f"{number:03d}"
            for k in range(1, frames + 1):
                seed += 1
                write_image(images / subject / seq / f"{subject}_{seq}_{k:08d}.png", seed, (64, 49))
            (labels / subject / seq).mkdir(parents=True, exist_ok=True)  # empty label folders exist
            if emotion is not None:
                (labels / subject / seq / f"{subject}_{seq}_{frames:08d}_emotion.txt").write_text(f"   {emotion:.7e}\n")
        (images / subject / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


PLAN = {"S005": [(1, 11, 3.0), (2, 6, None)], "S010": [(4, 5, 1.0), (6, 8, 5.0)], "S138": [(8, 7, 2.0)]}


def test_ckplus_last_three_frames_emotion_first_frame_neutral(tmp_path):
    write_ckplus(tmp_path / "ck", PLAN)
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), "ck+", tmp_path)
    assert report.variant == "sequences"
    got = {r["id"]: (r["raw_label"], r["label"], r["subject"], r["group"]) for r in images}
    expected = {}
    for subject, sequences in PLAN.items():
        for number, frames, emotion in sequences:
            if emotion is None:
                continue
            seq = f"{number:03d}"
            group = f"{subject}_{seq}"
            names = {1: "angry", 2: "contempt", 3: "disgust", 5: "happy"}
            expected[f"ckplus/sequences/{subject}/{seq}/{group}_00000001.png"] = ("0", "neutral", subject, group)
            for k in range(frames - 2, frames + 1):
                expected[f"ckplus/sequences/{subject}/{seq}/{group}_{k:08d}.png"] = (
                    str(int(emotion)), names[int(emotion)], subject, group)
    assert got == expected
    assert len(images) == 4 * 4
    first = next(r for r in images if r["id"].endswith("S005_001_00000011.png"))
    assert first["source_path"] == "extended-cohn-kanade-images/cohn-kanade-images/S005/001/S005_001_00000011.png"
    assert (first["width"], first["height"]) == (64, 49)
    assert all(r["split"] is None for r in images)
    reasons = sorted((r["reason"], r["source_path"]) for r in rejects)
    assert ("unlabelled", "extended-cohn-kanade-images/cohn-kanade-images/S005/002") in reasons
    assert sum(1 for reason, _ in reasons if reason == "stray_file") == 3
    assert any("5 sequences, 4 labelled" in note for note in report.notes)


def test_ckplus_frame_counts_and_unlabelled_are_options(tmp_path):
    write_ckplus(tmp_path / "ck", PLAN, extra_level=False)
    options = {"peak_frames": "1", "neutral_frames": "2", "include_unlabelled": "true"}
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), "ckplus", tmp_path / "ck", options=options)
    by_group: dict[str, list[str]] = {}
    for r in images:
        by_group.setdefault(r["group"], []).append(r["label"])
    assert by_group["S005_001"] == ["neutral", "neutral", "disgust"]
    assert by_group["S005_002"] == ["neutral", "neutral"]  # unlabelled: only its neutral first frames
    assert len(images) == 4 * 3 + 2
    assert not [r for r in rejects if r["reason"] == "unlabelled"]


def test_ckplus_bad_emotion_files_and_missing_peak(tmp_path):
    root = write_ckplus(tmp_path / "ck", {"S005": [(1, 4, 3.0)], "S011": [(1, 4, None), (2, 4, None)]})
    labels = root / "Emotion_labels" / "Emotion"
    (labels / "S011" / "001" / "S011_001_00000004_emotion.txt").write_text("three\n")
    (labels / "S011" / "002" / "S011_002_00000009_emotion.txt").write_text("   4.0000000e+00\n")  # no frame 9
    (labels / "S099" / "001").mkdir(parents=True)
    (labels / "S099" / "001" / "S099_001_00000003_emotion.txt").write_text("   5.0000000e+00\n")  # no images
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), "ck+", root)
    assert {r["group"] for r in images} == {"S005_001"}
    reasons = {r["id"].split("/", 2)[2]: r["reason"] for r in rejects}
    assert reasons["Emotion/S011/001/S011_001_00000004_emotion.txt"] == "malformed_row"
    assert reasons["Emotion/S011/002/S011_002_00000009_emotion.txt"] == "missing_file"
    assert reasons["Emotion/S099/001/S099_001_00000003_emotion.txt"] == "missing_file"


def test_ck48_class_folders(tmp_path):
    root = tmp_path / "ckplus" / "CK+48"
    files = {"anger/S010_004_00000017.png": "angry", "contempt/S138_008_00000007.png": "contempt",
             "disgust/S005_001_00000009.png": "disgust", "disgust/S005_001_00000010.png": "disgust",
             "happy/S010_006_00000013.png": "happy", "sadness/S011_002_00000020.png": "sad",
             "surprise/S010_002_00000012.png": "surprise", "fear/S011_003_00000014.png": "fear"}
    for i, rel in enumerate(files):
        write_image(root / rel, i)
    write_image(root / "happy" / "photo.png", 50)
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), "ck48", tmp_path)
    assert report.variant == "ck48"
    assert {r["source_path"]: r["label"] for r in images} == files
    s005 = [r for r in images if r["subject"] == "S005"]
    assert {r["group"] for r in s005} == {"S005_001"} and len(s005) == 2
    assert [(r["reason"], r["source_path"]) for r in rejects] == [("unrecognised_name", "happy/photo.png")]


def test_ckplus_and_ck48_overlap_warns(tmp_path):
    ws = Workspace(tmp_path / "ws")
    _ingest(ws, "ck+", write_ckplus(tmp_path / "ck", {"S005": [(1, 4, 3.0)]}))
    write_image(tmp_path / "k" / "CK+48" / "anger" / "S010_004_00000017.png", 1)
    for c in ("disgust", "happy", "fear"):
        write_image(tmp_path / "k" / "CK+48" / c / "S010_005_00000017.png", 2)
    _, _, report = _ingest(ws, "ck+", tmp_path / "k")
    assert report.warnings and "sequences" in report.warnings[0]


# -- KDEF -----------------------------------------------------------------------------------------------------------
def _kdef_jpeg(path: Path, seed: int, black: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if black:
        Image.new("RGB", (56, 76)).save(path, format="JPEG", quality=94)
    else:
        write_image(path, seed, (56, 76), fmt="JPEG", mode="RGB")


def test_kdef_official_tree(tmp_path):
    base = tmp_path / "KDEF_and_AKDEF"
    names = []
    for person in ("AF01", "BF01", "AM35"):
        for expr in ("AF", "AN", "DI", "HA", "NE", "SA", "SU"):
            for angle in ("FL", "HL", "S", "HR", "FR"):
                names.append(f"{person}/{person}{expr}{angle}.JPG")
    for i, rel in enumerate(names):
        _kdef_jpeg(base / "KDEF" / rel, i, black=rel.endswith("AF01SUFR.JPG"))
    _kdef_jpeg(base / "AKDEF" / "FAFFL.JPG", 900)
    (base / "KDEF" / ".DS_Store").write_bytes(b"\0")
    _kdef_jpeg(base / "KDEF" / "AF01" / "AF02NES.JPG", 901)  # prefix disagrees with its folder
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), "kdef", tmp_path)
    assert report.variant == "official"
    assert len(images) == 3 * 35 - 1
    row = next(r for r in images if r["id"] == "kdef/official/KDEF/BF01/BF01HAS.JPG")
    assert (row["subject"], row["group"], row["label"], row["raw_label"]) == ("F01", "BF01", "happy", "HA")
    assert '"angle":"S"' in row["extra"] and '"session":"B"' in row["extra"]
    assert {r["subject"] for r in images} == {"F01", "M35"}  # AF01 and BF01 are one person
    labels = {r["label"] for r in images}
    assert labels == {"fear", "angry", "disgust", "happy", "neutral", "sad", "surprise"}
    reasons = {r["source_path"]: r["reason"] for r in rejects}
    assert reasons == {"KDEF/AF01/AF01SUFR.JPG": "blank_image", "AKDEF/FAFFL.JPG": "excluded",
                       "KDEF/.DS_Store": "stray_file", "KDEF/AF01/AF02NES.JPG": "unrecognised_name"}


def test_kdef_flat_lowercase_repackaging_and_angle_filter(tmp_path):
    flat = tmp_path / "kdef_flat"
    for i, name in enumerate(["af01ans.jpg", "AF01ANHL.png", "bm35safl.jpeg", "AM34DIFR.JPG", "notes.txt"]):
        if name.endswith(".txt"):
            (flat / name).write_text("x")
        else:
            _kdef_jpeg(flat / name, i)
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), "kdef", flat, options={"angles": "S,HL"})
    assert sorted(r["source_path"] for r in images) == ["AF01ANHL.png", "af01ans.jpg"]
    assert {r["subject"] for r in images} == {"F01"}
    assert [r["reason"] for r in rejects] == ["stray_file"]


def test_kdef_bad_option_is_a_user_error(tmp_path, capsys):
    _kdef_jpeg(tmp_path / "KDEF" / "AF01" / "AF01ANS.JPG", 1)
    code, _, err = call_cli(capsys, "ingest", "kdef", "--source", str(tmp_path), "-o", "angles=UP", "--no-faces",
                            workspace=tmp_path / "ws")
    assert code == 2 and "angles" in err and "Traceback" not in err


def test_kdef_wrong_source_names_expected_layout(tmp_path, capsys):
    write_image(tmp_path / "happy" / "x.png", 1)
    code, _, err = call_cli(capsys, "ingest", "kdef", "--source", str(tmp_path), "--no-faces",
                            workspace=tmp_path / "ws")
    assert code == 2 and "is not a" in err and "KDEF" in err and "happy/" in err
    assert not (tmp_path / "ws" / "tables").exists()
