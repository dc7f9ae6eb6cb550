"""AffectNet in its four native forms (FORMATS.md §2): official CSV lists, npy release, Kaggle labels.csv and YOLO."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from helpers import call_cli, write_image

from fusekit.config import IngestConfig
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA
from fusekit.workspace import Workspace

HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def _ingest(ws: Workspace, source: Path, **kw) -> tuple[dict[str, dict], dict[str, dict], object]:
    report = run_ingest(ws, IngestConfig(name="affectnet", source=source, faces=False, **kw))
    images = {r["id"]: r for r in ws.read("images", IMAGES_SCHEMA, units=[report.unit]).to_pylist()}
    rejects = {r["id"]: r for r in ws.read("rejects", REJECTS_SCHEMA, units=[report.unit]).to_pylist()}
    return images, rejects, report


def _hex(seed: str) -> str:
    return hashlib.sha224(seed.encode()).hexdigest()  # 56 hex characters, like AffectNet's names


def _landmarks(seed: int) -> list[str]:
    return [f"{seed + i * 0.5:.2f}" for i in range(136)]


# -- official CSV release --------------------------------------------------------------------------------------------

def write_official(root: Path, split_landmarks: bool = False) -> dict[str, str]:
    """AffectNet/ with nested images, a '#'-header training.csv and a header-less validation.csv; returns names."""
    images = root / "Manually_Annotated_compressed" / "Manually_Annotated_Images"
    names: dict[str, str] = {}
    training = []
    # (name, subdir, extension, expression, face_width, image written)
    plan = [("happy", 1, "jpg", 1, 40, True), ("neutral", 1, "png", 0, 40, True), ("angry", 2, "bmp", 6, 40, True),
            ("contempt", 2, "tif", 7, 40, True), ("none", 3, "jpg", 8, 40, True), ("nonface", 3, "jpg", 10, 40, True),
            ("nowidth", 3, "jpeg", 2, 0, False), ("missing", 4, "jpg", 3, 40, False)]
    for seed, (name, sub, ext, expression, width, written) in enumerate(plan):
        rel = f"{sub}/{_hex(name)}.{ext}"
        names[name] = rel
        if written:
            write_image(images / rel, seed, (64, 64), mode="RGB")
        marks = _landmarks(seed)
        fields = [rel, "4", "5", str(width), "42", *(marks if split_landmarks else [";".join(marks)]), str(expression),
                  "0.25", "-2"]
        training.append(",".join(fields))
    training.append("5/short.jpg,1,2,3")  # a cut-off row
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    header = HEADER if not split_landmarks else ",".join(["subDirectory_filePath", "face_x", "face_y", "face_width",
                                                          "face_height", *[f"l{i}" for i in range(136)],
                                                          "expression", "valence", "arousal"])
    (lists / "training.csv").write_text("#" + header + "\n" + "\n".join(training) + "\n")
    validation = []
    for seed, (name, ext, expression) in enumerate([("fear", "jpg", 4), ("disgust", "TIF", 5)], start=20):
        rel = f"7/{_hex(name)}.{ext}"
        names[name] = rel
        write_image(images / rel, seed, (80, 60), fmt="TIFF" if ext == "TIF" else None, mode="L")
        marks = _landmarks(seed)
        validation.append(",".join([rel, "10", "11", "30", "31", *(marks if split_landmarks else [";".join(marks)]),
                                    str(expression), "-0.5", "0.75"]))
    (lists / "validation.csv").write_text("\n".join(validation) + "\n")  # no header, as one public loader assumes
    (root / "Automatically_Annotated_file_lists").mkdir()
    (root / "Automatically_Annotated_file_lists" / "automatically_annotated.csv").write_text(HEADER + "\n")
    return names


@pytest.mark.parametrize("split_landmarks", [False, True], ids=["9-columns", "144-columns"])
def test_official_lists_labels_splits_boxes_and_drops(tmp_path, split_landmarks):
    names = write_official(tmp_path / "AffectNet", split_landmarks)
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), tmp_path)
    assert report.variant == "official"
    ids = {f"affectnet/official/{names[n]}": n for n in names}
    by_name = {ids[i]: r for i, r in images.items()}
    assert {n: (r["split"], r["label"], r["raw_label"]) for n, r in by_name.items()} == {
        "happy": ("train", "happy", "1"), "neutral": ("train", "neutral", "0"), "angry": ("train", "angry", "6"),
        "contempt": ("train", "contempt", "7"), "fear": ("test", "fear", "4"), "disgust": ("test", "disgust", "5"),
    }
    happy = by_name["happy"]
    assert happy["face_box"] == {"x": 4.0, "y": 5.0, "w": 40.0, "h": 42.0}
    assert happy["source_path"] == f"Manually_Annotated_compressed/Manually_Annotated_Images/{names['happy']}"
    assert (happy["width"], happy["height"], happy["mode"]) == (64, 64, "RGB")
    assert by_name["fear"]["face_box"] == {"x": 10.0, "y": 11.0, "w": 30.0, "h": 31.0}
    assert by_name["disgust"]["mode"] == "L" and by_name["angry"]["image"]["bytes"] is None
    import json

    extra = json.loads(happy["extra"])
    assert extra["valence"] == 0.25 and "arousal" not in extra  # -2 = not annotated
    assert extra["landmarks68"] == [float(v) for v in _landmarks(0)] and extra["list"] == "training.csv"
    assert json.loads(by_name["fear"]["extra"])["arousal"] == 0.75
    reasons = {ids.get(i, i): (r["reason"], r["detail"]) for i, r in rejects.items()}
    assert reasons["none"] == ("dropped_label", "expression 8 (None) has no canonical class")
    assert reasons["nonface"] == ("dropped_label", "expression 10 (Non-Face) has no canonical class")
    assert reasons["nowidth"][0] == "dropped_label" and "face_width 0" in reasons["nowidth"][1]
    assert reasons["missing"][0] == "missing_file"
    assert reasons["affectnet/official/training/row000008"][0] == "malformed_row"
    assert len(images) == 6 and len(rejects) == 5
    assert report.by_split_label[("train", "happy")] == 1 and report.by_split_label[("test", "fear")] == 1
    width = 144 if split_landmarks else 9
    assert f"training.csv: 9 rows, header '#subDirectory_filePath', {width} columns (1 rows of another width)" \
        in report.notes
    assert any("validation.csv: 2 rows, no header" in n for n in report.notes)
    assert any("Automatically_Annotated_file_lists" in n and "not ingested" in n for n in report.notes)


def test_official_lists_folder_as_source_and_missing_images_folder(tmp_path, capsys):
    names = write_official(tmp_path / "AffectNet")
    images, _, report = _ingest(Workspace(tmp_path / "ws"), tmp_path / "AffectNet" / "Manually_Annotated_file_lists")
    assert report.variant == "official" and len(images) == 6
    assert f"affectnet/official/{names['happy']}" in images
    bare = tmp_path / "lists_only"
    (bare / "Manually_Annotated_file_lists").mkdir(parents=True)
    (bare / "Manually_Annotated_file_lists" / "training.csv").write_text("#" + HEADER + "\n")
    code, _, err = call_cli(capsys, "ingest", "affectnet", "--source", str(bare), "--no-faces",
                            workspace=tmp_path / "ws2")
    assert code == 2 and "no Manually_Annotated_Images/ folder" in err and "Traceback" not in err


# -- npy release -----------------------------------------------------------------------------------------------------

def _npy(path: Path, value: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, value, allow_pickle=True)


def write_npy(root: Path) -> None:
    train = root / "train_set"
    for i in range(3):
        write_image(train / "images" / f"{i}.jpg", 100 + i, (56, 56), mode="RGB")
    _npy(train / "annotations" / "0_exp.npy", np.array(1))  # 0-d int
    _npy(train / "annotations" / "1_exp.npy", np.array("6"))  # 0-d string (FORMATS.md: possibly strings)
    _npy(train / "annotations" / "2_exp.npy", np.array([3.0]))  # one-element float
    _npy(train / "annotations" / "0_val.npy", np.array("0.5"))
    _npy(train / "annotations" / "0_aro.npy", np.array(-2.0))
    _npy(train / "annotations" / "0_lnd.npy", np.zeros(136))
    _npy(train / "annotations" / "10_exp.npy", np.array(2))  # its image is missing
    write_image(train / "images" / "11.jpg", 111)  # no annotation
    write_image(train / "images" / "12.jpg", 112)
    _npy(train / "annotations" / "12_exp.npy", np.array(9))  # Uncertain
    write_image(train / "images" / "13.jpg", 113)
    (train / "annotations" / "13_exp.npy").write_bytes(_pickled_npy())
    (train / "annotations" / "._0_exp.npy").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble
    val = root / "val_set"
    write_image(val / "images" / "0.jpg", 200, (56, 56), mode="RGB")
    _npy(val / "annotations" / "0_exp.npy", np.array(7))


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"label": 1}], dtype=object), allow_pickle=True)  # an object array: pickled inside
    return buf.getvalue()


def test_npy_release_labels_splits_and_problems(tmp_path):
    write_npy(tmp_path / "AffectNet")
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), tmp_path)
    assert report.variant == "npy"
    assert {i: (r["split"], r["label"], r["raw_label"]) for i, r in images.items()} == {
        "affectnet/npy/train_set/images/0.jpg": ("train", "happy", "1"),
        "affectnet/npy/train_set/images/1.jpg": ("train", "angry", "6"),
        "affectnet/npy/train_set/images/2.jpg": ("train", "surprise", "3"),
        "affectnet/npy/val_set/images/0.jpg": ("test", "contempt", "7"),
    }
    import json

    assert json.loads(images["affectnet/npy/train_set/images/0.jpg"]["extra"]) == {"valence": 0.5}
    assert images["affectnet/npy/train_set/images/0.jpg"]["source_path"] == "train_set/images/0.jpg"
    assert {i: r["reason"] for i, r in rejects.items()} == {
        "affectnet/npy/train_set/annotations/._0_exp.npy": "stray_file",
        "affectnet/npy/train_set/images/10.jpg": "missing_file",
        "affectnet/npy/train_set/images/11.jpg": "unlabelled",
        "affectnet/npy/train_set/images/12.jpg": "dropped_label",
        "affectnet/npy/train_set/images/13.jpg": "malformed_row",
    }
    uncertain = rejects["affectnet/npy/train_set/images/12.jpg"]["detail"]
    assert uncertain == "expression 9 (Uncertain) has no canonical class"


def test_npy_one_set_folder_keeps_the_same_ids(tmp_path):
    write_npy(tmp_path / "AffectNet")
    images, _, report = _ingest(Workspace(tmp_path / "ws"), tmp_path / "AffectNet" / "val_set")
    assert report.variant == "npy"
    assert list(images) == ["affectnet/npy/val_set/images/0.jpg"]
    assert images["affectnet/npy/val_set/images/0.jpg"]["source_path"] == "images/0.jpg"


# -- Kaggle labels.csv -----------------------------------------------------------------------------------------------

def write_kaggle(root: Path) -> None:
    files = {"anger/image0000006.jpg": 1, "anger/image0000007.jpg": 2, "neutral/ffhq_1003.png": 3,
             "happy/image0000010.jpg": 4, "sad/image0000011.jpg": 5, "contempt/image0000012.jpg": 6}
    for rel, seed in files.items():
        write_image(root / rel, seed, (96, 96), mode="RGB")
    (root / "__MACOSX" / "anger").mkdir(parents=True)
    (root / "__MACOSX" / "anger" / "._image0000006.jpg").write_bytes(b"\x00\x05\x16\x07")
    (root / "labels.csv").write_text(
        ",pth,label,relFCs\n"
        "0,anger/image0000006.jpg,anger,0.91\n"
        "1,anger/image0000007.jpg,surprise,0.62\n"  # filed under anger/, the CSV says surprise: the CSV wins
        "2,neutral/ffhq_1003.png,neutral,0.8\n"
        "3,happy/image0000010.jpg, Happy ,0.99\n"
        "4,fear/image0000099.jpg,fear,0.7\n"  # listed, not on disk
        "5,contempt/image0000012.jpg,contempt\n"  # a short row
    )


def test_kaggle_labels_csv_wins_over_folder_and_keeps_relfcs(tmp_path):
    write_kaggle(tmp_path / "affectnet-training-data")
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), tmp_path)
    assert report.variant == "kaggle"
    import json

    got = {i: (r["label"], r["split"], json.loads(r["extra"])) for i, r in images.items()}
    assert got == {
        "affectnet/kaggle/anger/image0000006.jpg": ("angry", None, {"folder": "anger", "relFCs": 0.91}),
        "affectnet/kaggle/anger/image0000007.jpg": ("surprise", None, {"folder": "anger", "folder_disagrees": True,
                                                                       "relFCs": 0.62}),
        "affectnet/kaggle/neutral/ffhq_1003.png": ("neutral", None, {"folder": "neutral", "relFCs": 0.8}),
        "affectnet/kaggle/happy/image0000010.jpg": ("happy", None, {"folder": "happy", "relFCs": 0.99}),
    }
    assert images["affectnet/kaggle/anger/image0000007.jpg"]["raw_label"] == "surprise"
    assert {i: r["reason"] for i, r in rejects.items()} == {
        "affectnet/kaggle/fear/image0000099.jpg": "missing_file",
        "affectnet/kaggle/labels.csv/row000005": "malformed_row",
        "affectnet/kaggle/sad/image0000011.jpg": "unlabelled",
        "affectnet/kaggle/contempt/image0000012.jpg": "unlabelled",
        "affectnet/kaggle/__MACOSX/anger/._image0000006.jpg": "stray_file",
    }
    assert "its folder says sad" in rejects["affectnet/kaggle/sad/image0000011.jpg"]["detail"]
    assert any("1 images sit in a class folder that disagrees" in n for n in report.notes)


def test_kaggle_min_relfcs_gives_low_confidence(tmp_path, capsys):
    assert "low_confidence" in REJECT_REASONS
    write_kaggle(tmp_path / "data")
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), tmp_path / "data" / "labels.csv",
                                 options={"min_relfcs": "0.7"})
    assert sorted(images) == ["affectnet/kaggle/anger/image0000006.jpg", "affectnet/kaggle/happy/image0000010.jpg",
                              "affectnet/kaggle/neutral/ffhq_1003.png"]
    low = rejects["affectnet/kaggle/anger/image0000007.jpg"]
    assert (low["reason"], low["detail"], low["raw_label"]) == ("low_confidence",
                                                                "relFCs 0.62 is below -o min_relfcs=0.7", "surprise")
    code, _, err = call_cli(capsys, "ingest", "affectnet", "--source", str(tmp_path / "data"), "-o", "min_relfcs=x",
                            "--no-faces", workspace=tmp_path / "ws2")
    assert code == 2 and "min_relfcs" in err


def test_kaggle_pth_resolved_under_images_folder_or_without_it(tmp_path):
    root = tmp_path / "k"
    write_image(root / "images" / "fear" / "image0000473.jpg", 1, (96, 96), mode="RGB")
    write_image(root / "sad" / "image0000474.jpg", 2, (96, 96), mode="RGB")
    (root / "labels.csv").write_text(",pth,label,relFCs\n0,fear/image0000473.jpg,fear,0.8\n"
                                     "1,images/sad/image0000474.jpg,sad,0.7\n")
    images, rejects, _ = _ingest(Workspace(tmp_path / "ws"), root)
    assert {i: (r["label"], r["source_path"]) for i, r in images.items()} == {
        "affectnet/kaggle/images/fear/image0000473.jpg": ("fear", "images/fear/image0000473.jpg"),
        "affectnet/kaggle/sad/image0000474.jpg": ("sad", "sad/image0000474.jpg")}
    assert not rejects


# -- Kaggle YOLO -----------------------------------------------------------------------------------------------------

YOLO_NAMES = "names: ['Anger', 'Contempt', 'Disgust', 'Fear', 'Happy', 'Neutral', 'Sad', 'Surprise']\nnc: 8\n"


def write_yolo(root: Path, data_yaml: str | None = YOLO_NAMES) -> None:
    def sample(split: str, stem: str, seed: int, label: str | None, ext: str = ".png") -> None:
        if seed >= 0:
            write_image(root / split / "images" / f"{stem}{ext}", seed, (96, 96), mode="RGB")
        else:
            (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        if label is not None:
            (root / split / "labels" / f"{stem}.txt").write_text(label)

    sample("train", "a", 1, "4 0.5 0.5 0.5 0.6\n")
    sample("train", "b", 2, "")  # empty: no face
    sample("train", "c", 3, None)  # no label file
    sample("train", "d", -1, "0 0.5 0.5 0.2 0.2\n")  # a label file without its image
    sample("train", "e", 4, "4 0.5 0.5\n")  # malformed
    sample("train", "f", 5, "1 0.25 0.25 0.5 0.5\n\n")
    sample("valid", "g", 6, "0 0.5 0.5 1.0 1.0\n")
    sample("test", "h", 7, "7 0.5 0.4 0.8 0.8\n", ext=".jpg")
    (root / "train" / "images" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    if data_yaml is not None:
        (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\n" + data_yaml)


def test_yolo_layout_classes_splits_boxes_and_no_face(tmp_path):
    write_yolo(tmp_path / "YOLO_format")
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), tmp_path)
    assert report.variant == "yolo"
    assert {i: (r["split"], r["label"], r["raw_label"]) for i, r in images.items()} == {
        "affectnet/yolo/train/images/a.png": ("train", "happy", "4"),
        "affectnet/yolo/train/images/f.png": ("train", "contempt", "1"),
        "affectnet/yolo/valid/images/g.png": ("val", "angry", "0"),
        "affectnet/yolo/test/images/h.jpg": ("test", "surprise", "7"),
    }
    box = images["affectnet/yolo/train/images/a.png"]["face_box"]
    assert box == pytest.approx({"x": 24.0, "y": 19.2, "w": 48.0, "h": 57.6})
    assert images["affectnet/yolo/valid/images/g.png"]["face_box"] == {"x": 0.0, "y": 0.0, "w": 96.0, "h": 96.0}
    assert {i: r["reason"] for i, r in rejects.items()} == {
        "affectnet/yolo/train/images/b.png": "no_face",
        "affectnet/yolo/train/images/c.png": "unlabelled",
        "affectnet/yolo/train/labels/d.txt": "missing_file",
        "affectnet/yolo/train/images/e.png": "malformed_row",
        "affectnet/yolo/train/images/.DS_Store": "stray_file",
    }
    assert "empty" in rejects["affectnet/yolo/train/images/b.png"]["detail"]


def test_yolo_data_yaml_names_are_the_authority(tmp_path):
    swapped = "names: {0: Happy, 1: Contempt, 2: Disgust, 3: Fear, 4: Anger, 5: Neutral, 6: Sad, 7: Surprise}\n"
    write_yolo(tmp_path / "YOLO_format", swapped)
    images, _, report = _ingest(Workspace(tmp_path / "ws"), tmp_path / "YOLO_format")
    assert images["affectnet/yolo/train/images/a.png"]["label"] == "angry"  # id 4 is Anger in this data.yaml
    assert images["affectnet/yolo/valid/images/g.png"]["label"] == "happy"
    assert any("data.yaml names" in n and "0, 4" in n for n in report.notes)
    write_yolo(tmp_path / "plain", None)  # no data.yaml: FORMATS.md's order
    images, _, _ = _ingest(Workspace(tmp_path / "ws2"), tmp_path / "plain")
    assert images["affectnet/yolo/train/images/a.png"]["label"] == "happy"


# -- the family --------------------------------------------------------------------------------------------------------

def test_datasets_lists_affectnet_supported_and_variant_can_be_forced(tmp_path, capsys):
    code, out, _ = call_cli(capsys, "datasets")
    assert code == 0
    lines = [line for line in out.splitlines() if "affectnet" in line.lower()]
    assert lines and not any("not yet" in line for line in lines), lines
    write_yolo(tmp_path / "y")
    code, _, err = call_cli(capsys, "ingest", "affectnet", "--source", str(tmp_path / "y"), "--variant", "kaggle",
                            "--no-faces", workspace=tmp_path / "ws")
    assert code == 2 and "labels.csv" in err


def test_automatic_set_only_on_request_marked_and_kept_apart(tmp_path, capsys):
    root = tmp_path / "AffectNet"
    write_official(root)
    rows = []
    for seed, (name, expression) in enumerate([("auto-happy", 1), ("auto-none", 8)], start=40):
        rel = f"1/{_hex(name)}.jpg"  # the same <int>/<hex> scheme as the manual set: ids must not collide
        write_image(root / "Automatically_Annotated_Images" / rel, seed, (64, 64), mode="RGB")
        rows.append(",".join([rel, "1", "2", "50", "51", ";".join(_landmarks(seed)), str(expression), "0.1", "0.2"]))
    (root / "Automatically_Annotated_file_lists" / "automatically_annotated.csv").write_text(
        HEADER + "\n" + "\n".join(rows) + "\n")
    plain, _, _ = _ingest(Workspace(tmp_path / "plain"), tmp_path)
    images, rejects, report = _ingest(Workspace(tmp_path / "ws"), tmp_path, options={"automatic": "yes"})
    added = {i: r for i, r in images.items() if i not in plain}
    happy = f"affectnet/official/automatic/1/{_hex('auto-happy')}.jpg"
    assert list(added) == [happy]
    row = added[happy]
    assert (row["split"], row["label"], row["label_source"]) == ("train", "happy", "affectnet_automatic")
    assert row["source_path"] == f"Automatically_Annotated_Images/1/{_hex('auto-happy')}.jpg"
    assert row["face_box"] == {"x": 1.0, "y": 2.0, "w": 50.0, "h": 51.0}
    assert all(r["label_source"] == "dataset" for i, r in images.items() if i != happy)
    assert rejects[f"affectnet/official/automatic/1/{_hex('auto-none')}.jpg"]["reason"] == "dropped_label"
    assert not any("not ingested" in n for n in report.notes)
    # asked for, but the images were not extracted: one line, exit 2
    (root / "Automatically_Annotated_Images").rename(root / "elsewhere")
    code, _, err = call_cli(capsys, "ingest", "affectnet", "--source", str(tmp_path), "-o", "automatic=yes",
                            "--no-faces", workspace=tmp_path / "ws2")
    assert code == 2 and "no Automatically_Annotated_Images/" in err and err.count("\n") == 1
