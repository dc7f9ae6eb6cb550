"""MMI sessions (FORMATS.md §6): videos written by OpenCV at test time, stills, session and sample XML, and every way a
session can fail to match the expected layout."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import call_cli, write_image
from PIL import Image

from fusekit.config import IngestConfig
from fusekit.errors import ConfigError, LayoutNotRecognised
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA
from fusekit.sources.mmi import scan_video, window
from fusekit.workspace import Workspace

W, H = 80, 64
# Grey level of each frame of the main video: the middle is frame 5, the frame most unlike the first is frame 7.
LEVELS = [20, 40, 60, 80, 100, 120, 140, 220, 160, 100, 40]
LEVELS_WMV = [30, 60, 200, 90, 60, 50, 40, 35, 30]  # apex of change at 2, middle at 4


def _video(path: Path, levels: list[int], fourcc: str = "MJPG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 24, (W, H))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    yy, xx = np.mgrid[0:H, 0:W]
    for level in levels:
        frame = np.clip(level + (xx // 20) - 2 + (yy // 32), 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def _sample_xml(path: Path, emotion: str | None, extra: str = "") -> None:
    tags = '<Metatag Name="Gender" Value="Female"/>' + (
        f'<Metatag Name="Emotion" Value="{emotion}"/>' if emotion is not None else "")
    path.write_text(f'<?xml version="1.0"?>\n<Sample><Metatag Name="Age" Value="30"/>{tags}{extra}</Sample>\n')


def _session_xml(path: Path, view: str | None, annotation: str | None = None, body: str = "") -> None:
    track = f'<track id="0" view="{view}"/>' if view is not None else ""
    note = f'<annotation filename="{annotation}"/>' if annotation else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0"?>\n<session sessionId="{path.parent.name}">{track}{note}{body}</session>\n')


def build(root: Path) -> Path:
    """A download folder with a Sessions/ tree covering the readings FORMATS.md allows and the ways a session fails."""
    s = root / "mmi-facial-expression-database_download_2019-04-27_05_06_23" / "Sessions"
    _session_xml(s / "1" / "session.xml", "0", "S001-001.xml")
    _video(s / "1" / "S001-001.avi", LEVELS)
    _sample_xml(s / "1" / "S001-001.xml", "4")
    (s / "1" / "S001-001-oao_aucs.xml").write_text(
        '<ActionUnits><ActionUnit Number="12"><Marker Frame="1" Type="onset"/><Marker Frame="2" Type="apex"/>'
        '<Marker Frame="9" Type="offset"/></ActionUnit></ActionUnits>')
    (s / "1" / "S001-001.wav").write_bytes(b"RIFF....WAVE")
    (s / "1" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    _session_xml(s / "2" / "session.xml", "2")  # dual view: kept
    _video(s / "2" / "S002-003.wmv", LEVELS_WMV, "WMV2")
    _sample_xml(s / "2" / "S002-003.xml", "6")
    _session_xml(s / "3" / "session.xml", "1")  # profile: excluded by default
    _video(s / "3" / "S003-001.avi", LEVELS[:5])
    _sample_xml(s / "3" / "S003-001.xml", "1")
    write_image(s / "10" / "S005-002.jpg", 10, (W, H), mode="RGB")  # still, no session.xml
    _sample_xml(s / "10" / "S005-002.xml", "2")
    _session_xml(s / "11" / "session.xml", "0", body='<Metatag Name="Emotion" Value="5"/>')  # label in session.xml
    write_image(s / "11" / "S006-001.png", 11, (W, H))
    _session_xml(s / "12" / "session.xml", "0")
    _video(s / "12" / "S001-002.avi", LEVELS[:4])
    _sample_xml(s / "12" / "S001-002.xml", None)  # an AU-only session: no emotion
    _session_xml(s / "13" / "session.xml", "0")
    _video(s / "13" / "S007-001.avi", LEVELS[:4])
    _sample_xml(s / "13" / "S007-001.xml", "7")
    _session_xml(s / "14" / "session.xml", "0")
    (s / "14" / "S008-001.avi").write_bytes(b"this is not a video" * 40)
    _sample_xml(s / "14" / "S008-001.xml", "3")
    _session_xml(s / "15" / "session.xml", "0")  # no media at all
    _session_xml(s / "16" / "session.xml", "0")
    (s / "16" / "S009-001.avi").write_bytes(b"")
    _sample_xml(s / "16" / "S009-001.xml", "3")
    _session_xml(s / "17" / "session.xml", "0")
    _video(s / "17" / "S010-001.avi", LEVELS[:4])
    (s / "17" / "S010-001.xml").write_text("<Sample><Metatag Name='Emotion' Value='3'")
    _session_xml(s / "18" / "session.xml", "0")
    _video(s / "18" / "clip.avi", LEVELS[:3])
    _sample_xml(s / "18" / "clip.xml", "3")
    (s / "readme.txt").write_text("MMI download")
    (s / "index.csv").write_text("a,b\n")
    return s.parent


def _ingest(tmp_path: Path, source: Path, name: str = "ws", **options: str):
    ws = Workspace(tmp_path / name)
    chunk_size = int(options.pop("chunk_size", 2048))
    config = IngestConfig(name="mmi", source=source, options=options, faces=False, chunk_size=chunk_size)
    report = run_ingest(ws, config)
    images = sorted(ws.read("images", IMAGES_SCHEMA).to_pylist(), key=lambda r: r["id"])
    rejects = {r["id"].removeprefix("mmi/sessions/"): r for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}
    return report, images, rejects


def _mean(row: dict) -> float:
    return float(np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("L")).mean())


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("mmi"))


@pytest.fixture(scope="module")
def default_run(download: Path, tmp_path_factory: pytest.TempPathFactory):
    return _ingest(tmp_path_factory.mktemp("ws"), download)


def test_sessions_found_under_the_download_folder_with_exact_rows(default_run) -> None:
    report, images, _ = default_run
    assert report.anchor.endswith("/Sessions")
    got = [(r["id"], r["label"], r["raw_label"], r["subject"], r["group"], r["source_path"], r["source_row"])
           for r in images]
    assert got == [
        ("mmi/sessions/1/S001-001.avi#f00004", "happy", "4", "S001", "1", "1/S001-001.avi", 4),
        ("mmi/sessions/1/S001-001.avi#f00005", "happy", "4", "S001", "1", "1/S001-001.avi", 5),
        ("mmi/sessions/1/S001-001.avi#f00006", "happy", "4", "S001", "1", "1/S001-001.avi", 6),
        ("mmi/sessions/10/S005-002.jpg", "disgust", "2", "S005", "10", "10/S005-002.jpg", None),
        ("mmi/sessions/11/S006-001.png", "sad", "5", "S006", "11", "11/S006-001.png", None),
        ("mmi/sessions/18/clip.avi#f00000", "fear", "3", None, "18", "18/clip.avi", 0),
        ("mmi/sessions/18/clip.avi#f00001", "fear", "3", None, "18", "18/clip.avi", 1),
        ("mmi/sessions/18/clip.avi#f00002", "fear", "3", None, "18", "18/clip.avi", 2),
        ("mmi/sessions/2/S002-003.wmv#f00003", "surprise", "6", "S002", "2", "2/S002-003.wmv", 3),
        ("mmi/sessions/2/S002-003.wmv#f00004", "surprise", "6", "S002", "2", "2/S002-003.wmv", 4),
        ("mmi/sessions/2/S002-003.wmv#f00005", "surprise", "6", "S002", "2", "2/S002-003.wmv", 5),
    ]
    assert report.images == 11 and {r["split"] for r in images} == {None}
    frames = {r["id"]: r for r in images}
    # Video frames are stored PNGs of the right frame; stills are referenced files.
    for index in (4, 5, 6):
        row = frames[f"mmi/sessions/1/S001-001.avi#f{index:05d}"]
        assert row["image"]["path"] == f"S001-001_f{index:05d}.png" and row["image"]["bytes"][:4] == b"\x89PNG"
        assert (row["width"], row["height"]) == (W, H)
        assert abs(_mean(row) - (LEVELS[index] + 1)) < 5
    for index in (3, 4, 5):
        assert abs(_mean(frames[f"mmi/sessions/2/S002-003.wmv#f{index:05d}"]) - (LEVELS_WMV[index] + 1)) < 6
    still = frames["mmi/sessions/10/S005-002.jpg"]
    assert still["image"] == {"bytes": None, "path": "10/S005-002.jpg"}
    import json

    extra = json.loads(frames["mmi/sessions/1/S001-001.avi#f00005"]["extra"])
    assert extra == {"session": "1", "media": "video", "label_file": "S001-001.xml", "view": "0", "frames": 11,
                     "apex_frame": 5, "apex_by": "middle", "frame": 5, "role": "apex"}
    assert json.loads(frames["mmi/sessions/11/S006-001.png"]["extra"])["label_file"] == "session.xml"


def test_every_session_that_gives_no_sample_says_why(default_run) -> None:
    report, _, rejects = default_run
    got = {k: (r["reason"], r["source_path"]) for k, r in rejects.items()}
    assert got == {
        "index.csv": ("unrecognised_name", "index.csv"),
        "readme.txt": ("stray_file", "readme.txt"),
        "1/.DS_Store": ("stray_file", "1/.DS_Store"),
        "1/S001-001.wav": ("unrecognised_name", "1/S001-001.wav"),
        "3/S003-001.avi": ("excluded", "3/S003-001.avi"),
        "12/S001-002.avi": ("unlabelled", "12/S001-002.avi"),
        "13/S007-001.avi": ("dropped_label", "13/S007-001.avi"),
        "14/S008-001.avi": ("undecodable", "14/S008-001.avi"),
        "15/": ("missing_file", "15"),
        "16/S009-001.avi": ("empty_file", "16/S009-001.avi"),
        "17/S010-001.avi": ("malformed_row", "17/S010-001.avi"),
    }
    detail = {k: r["detail"] for k, r in rejects.items()}
    assert "view 1 (profile (unverified))" in detail["3/S003-001.avi"] and "-o views=0,1,2" in detail["3/S003-001.avi"]
    assert detail["12/S001-002.avi"] == ("session 12: no Emotion metatag in S001-002.xml, session.xml "
                                         "(metatags found: Age, Gender)")
    assert "Emotion value 7 is outside 1-6" in detail["13/S007-001.avi"]
    assert rejects["13/S007-001.avi"]["raw_label"] == "7"
    assert "OpenCV cannot open it" in detail["14/S008-001.avi"]
    assert detail["15/"] == "session 15 holds no video or still image; found: session.xml"
    assert "S010-001.xml: not well-formed XML" in detail["17/S010-001.avi"]
    assert report.rejected == 11
    assert {r["reason"] for r in rejects.values()} <= set(REJECT_REASONS)
    notes = "\n".join(report.notes)
    assert "12 session folders: 9 with video, 2 with stills; 3 videos and 2 stills gave samples" in notes
    assert "1 session(s) with no session.xml (e.g. 10)" in notes
    assert "1 session(s) with a media name without an S### subject prefix (e.g. 18)" in notes
    assert "1 session(s) with the label read from session.xml (e.g. 11)" in notes
    assert "3 around the apex (the middle of the video) as the emotion (9)" in notes


def test_apex_by_change_with_neutral_onset_frames(download: Path, tmp_path: Path) -> None:
    _, images, _ = _ingest(tmp_path, download, apex="change", neutral_frames="2", views="0")
    video = [(r["source_row"], r["label"], r["raw_label"], r["label_source"]) for r in images
             if r["source_path"] == "1/S001-001.avi"]
    assert video == [(0, "neutral", "onset", "mmi_onset_frame"), (1, "neutral", "onset", "mmi_onset_frame"),
                     (6, "happy", "4", "dataset"), (7, "happy", "4", "dataset"), (8, "happy", "4", "dataset")]
    by_id = {r["id"]: r for r in images}
    assert abs(_mean(by_id["mmi/sessions/1/S001-001.avi#f00007"]) - (LEVELS[7] + 1)) < 5
    # views=0 drops the dual-view session 2 as well; the 3-frame clip has its neutral frames inside the apex window.
    assert not any(r["source_path"] == "2/S002-003.wmv" for r in images)
    assert [r["source_row"] for r in images if r["source_path"] == "18/clip.avi"] == [0, 1, 2]


def test_apex_from_the_aucs_markers_else_the_middle(download: Path, tmp_path: Path) -> None:
    report, images, _ = _ingest(tmp_path, download, apex="aucs", apex_frames="1")
    frames = {r["source_path"]: r["source_row"] for r in images if r["source_row"] is not None}
    assert frames == {"1/S001-001.avi": 2, "2/S002-003.wmv": 4, "18/clip.avi": 1}
    assert any(n.startswith("2 session(s) with no -oao_aucs.xml (apex: middle frame) (e.g. 2, 18)")
               for n in report.notes)


def test_all_views_and_rotation(download: Path, tmp_path: Path) -> None:
    _, images, rejects = _ingest(tmp_path, download, views="all", rotate="90")
    profile = [r for r in images if r["source_path"] == "3/S003-001.avi"]
    assert [(r["label"], r["source_row"]) for r in profile] == [("angry", 1), ("angry", 2), ("angry", 3)]
    assert {(r["width"], r["height"]) for r in images if r["source_row"] is not None} == {(H, W)}
    assert "3/S003-001.avi" not in rejects


def test_one_session_folder_as_source_and_small_chunks_give_the_same_rows(download: Path, tmp_path: Path,
                                                                          default_run) -> None:
    _, images, rejects = _ingest(tmp_path, download / "Sessions" / "1", name="one")
    assert [r["id"] for r in images] == [f"mmi/sessions/1/S001-001.avi#f{i:05d}" for i in (4, 5, 6)]
    assert sorted(rejects) == ["1/.DS_Store", "1/S001-001.wav"]
    # Chunks of 2 split one video's frames across parts; the frames and bytes are the same.
    _, chunked, _ = _ingest(tmp_path, download, name="chunked", chunk_size="2")
    assert [(r["id"], r["sha256"]) for r in chunked] == [(r["id"], r["sha256"]) for r in default_run[1]]


def test_frame_count_is_the_decodable_count_even_when_the_header_says_more(tmp_path: Path) -> None:
    whole = tmp_path / "S001-001.avi"
    _video(whole, [(7 * i) % 250 for i in range(40)])
    assert scan_video(whole, score=False) == (40, [])  # the header's count, proved by one seek
    cut = tmp_path / "S001-002.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    decodable, scores = scan_video(cut, score=True)
    assert 0 < decodable < 40 and len(scores) == decodable
    assert scan_video(cut, score=False) == (decodable, [])  # the header says 40: counted frame by frame instead


def test_window_fits_inside_the_video() -> None:
    assert window(5, 3, 11) == [4, 5, 6]
    assert window(5, 4, 11) == [4, 5, 6, 7]
    assert window(0, 3, 2) == [0, 1]
    assert window(3, 0, 11) == []


@pytest.mark.parametrize(("options", "message"), [
    ({"apex": "peak"}, "-o apex= takes middle, change, aucs, got 'peak'"),
    ({"apex_frames": "-1"}, "-o apex_frames= takes a whole number of frames (0 or more), got '-1'"),
    ({"rotate": "45"}, "-o rotate= takes 0, 90, 180 or 270 (degrees clockwise), got '45'"),
    ({"frames": "3"}, "mmi takes the options apex, apex_frames, neutral_frames, views, rotate; got frames"),
])
def test_bad_options_are_user_errors(download: Path, tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _ingest(tmp_path, download, **options)
    assert str(info.value) == message


def test_not_an_mmi_layout(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "data" / "happy" / "a.png", 1)
    with pytest.raises(LayoutNotRecognised):
        _ingest(tmp_path, tmp_path / "data")
    code, _, err = call_cli(capsys, "ingest", "mmi", "--source", str(tmp_path / "data"), "--no-faces",
                            workspace=tmp_path / "ws2")
    assert code == 2 and err.startswith("Error: ") and "is not a MMI Facial Expression Database layout" in err
