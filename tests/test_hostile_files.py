"""Issue 15 (items 2, 3, 6): hostile files under a source root never hang, abort or vanish from the ingest.

Every fixture is built at test time: FIFOs (os.mkfifo), sockets (a bound unix socket), sparse large files (truncate),
names that are not UTF-8 (bytes paths), symbolic links to folders and files outside the root, link loops, deep trees.
Each test runs under an alarm, so that a regression (a FIFO opened for reading blocks forever) fails instead of
hanging the suite.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import tarfile
from pathlib import Path

import pytest
from helpers import fail_after, write_image

from fusekit import imageio
from fusekit.config import IngestConfig
from fusekit.errors import ConfigError
from fusekit.faces.decode import row_bytes
from fusekit.imageio import Rejected, fs_name, read_source, text_name
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA
from fusekit.sources.base import walk_entries
from fusekit.workspace import Workspace

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs, sockets and bytes names: POSIX only")

LATIN1 = b"caf\xe9.png"  # 'café.png' written in Latin-1: not valid UTF-8
LATIN1_TEXT = "happy/caf%E9.png"  # how the tables name it (imageio.text_name)


@pytest.fixture(autouse=True)
def alarm():
    """Fail a test that blocks (e.g. reading a FIFO) after 120 s instead of hanging the run."""
    with fail_after(120, "a FIFO or socket opened for reading?"):
        yield


def _picture(seed: int) -> bytes:
    from test_faces import encoded, picture  # a bright square the FakeDetector finds

    return encoded(picture(squares=[(30 + seed, 30, 60)]))


def _socket(path: Path) -> socket.socket:
    """A unix socket bound at ``path`` (bound from its folder: a unix socket path is limited to ~100 bytes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
    finally:
        os.chdir(here)
    return sock


def hostile_tree(tmp_path: Path) -> tuple[Path, dict[str, str], set[str], list[socket.socket]]:
    """A class-folder tree with good pictures among hostile entries.

    Returns (root, {source_path: expected reject reason}, the source_paths of the good pictures, sockets to close).
    """
    root = tmp_path / "mydata"
    elsewhere = tmp_path / "other-disk"
    good: set[str] = set()
    for rel, seed in (("happy/ok1.png", 1), ("happy/ok2.png", 2), ("sad/ok3.png", 3)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_picture(seed))
        good.add(rel)
    # a class folder linked in from another disk, and a single linked file
    (elsewhere / "angry-pictures").mkdir(parents=True)
    (elsewhere / "angry-pictures" / "a1.png").write_bytes(_picture(4))
    (elsewhere / "angry-pictures" / "a2.png").write_bytes(_picture(5))
    (elsewhere / "loose.png").write_bytes(_picture(6))
    os.symlink(elsewhere / "angry-pictures", root / "angry")
    os.symlink(elsewhere / "loose.png", root / "sad" / "linked.png")
    good |= {"angry/a1.png", "angry/a2.png", "sad/linked.png"}
    # a name that is not UTF-8
    with open(os.path.join(os.fsencode(root / "happy"), LATIN1), "wb") as handle:
        handle.write(_picture(7))
    good.add(LATIN1_TEXT)
    # 15 folders below its class folder
    deep = root / "sad" / "/".join(f"level{n:02d}" for n in range(1, 16))
    deep.mkdir(parents=True)
    (deep / "deep.png").write_bytes(_picture(8))
    good.add(f"sad/{'/'.join(f'level{n:02d}' for n in range(1, 16))}/deep.png")
    # hostile entries
    os.mkfifo(root / "happy" / "pipe.jpg")
    sockets = [_socket(root / "sad" / "sock.png")]
    with open(root / "happy" / "big.jpg", "wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: 100 MB apparent, nothing on disk
    os.symlink("..", root / "happy" / "loop")  # back to the root: a loop
    os.symlink(root / "nowhere.png", root / "sad" / "dangling.png")
    expected = {
        "happy/pipe.jpg": "not_a_file",
        "sad/sock.png": "not_a_file",
        "happy/big.jpg": "file_too_large",
        "happy/loop": "link_loop",
        "sad/dangling.png": "missing_file",
    }
    return root, expected, good, sockets


def ingest(tmp_path: Path, root: Path, workspace: str = "ws", **kw):
    ws = Workspace(tmp_path / workspace)
    report = run_ingest(ws, IngestConfig(name="folder", source=root, faces=False, **kw))
    images = ws.read("images", IMAGES_SCHEMA).to_pylist()
    rejects = ws.read("rejects", REJECTS_SCHEMA).to_pylist()
    return ws, report, images, rejects


@pytest.fixture()
def hostile(tmp_path: Path, monkeypatch):
    root, expected, good, sockets = hostile_tree(tmp_path)
    opened: list[str] = []
    real_open = os.open

    def spy(path, flags, *args, **kwargs):
        opened.append(os.fsdecode(os.fspath(path)))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(imageio.os, "open", spy)  # the one os module: every os.open of the run is seen
    try:
        ws, report, images, rejects = ingest(tmp_path, root)
    finally:
        monkeypatch.undo()
        for sock in sockets:
            sock.close()
    yield root, expected, good, ws, report, images, rejects, opened


def test_every_hostile_entry_is_rejected_with_its_reason_and_every_good_picture_survives(hostile):
    root, expected, good, _, report, images, rejects, _ = hostile
    by_path = {r["source_path"]: r for r in rejects}
    for path, reason in expected.items():
        assert by_path[path]["reason"] == reason, (path, by_path[path])
        assert reason in REJECT_REASONS
    assert {row["source_path"] for row in images} == good
    assert report.images == len(good) == 8
    assert len(rejects) == len(expected)


def test_fifo_socket_and_oversized_file_are_never_opened_and_pictures_are_opened_once(hostile):
    root, _, good, _, _, _, rejects, opened = hostile
    under = [os.path.relpath(path, root).replace(os.sep, "/") for path in opened
             if path.startswith(str(root) + os.sep)]
    for never in ("happy/pipe.jpg", "sad/sock.png", "happy/big.jpg"):
        assert never not in under
    by_path = {r["source_path"]: r for r in rejects}
    assert "named pipe" in by_path["happy/pipe.jpg"]["detail"]
    assert "socket" in by_path["sad/sock.png"]["detail"]
    assert "104,857,600 bytes" in by_path["happy/big.jpg"]["detail"]
    # each picture's bytes are read once in the ingest stage (decoded and hashed from the same read)
    counted = {text_name(p): under.count(p) for p in set(under)}
    assert {p: counted.get(p, 0) for p in good} == {p: 1 for p in good}


def test_links_are_followed_and_the_summary_says_how_many_left_the_source_folder(hostile):
    *_, report, images, rejects, _ = hostile
    by_path = {row["source_path"]: row for row in images}
    assert by_path["angry/a1.png"]["label"] == "angry" and by_path["sad/linked.png"]["label"] == "sad"
    assert any("followed 2 symbolic links out of the source folder" in note for note in report.notes), report.notes
    loop = next(r for r in rejects if r["source_path"] == "happy/loop")
    assert "a folder above it" in loop["detail"]


def test_a_file_fifteen_folders_below_its_class_is_kept(hostile):
    images = hostile[5]
    deep = [row for row in images if row["source_path"].endswith("/deep.png")]
    assert len(deep) == 1 and deep[0]["label"] == "sad" and deep[0]["source_path"].count("/") == 16


def test_every_file_under_the_root_is_in_images_or_rejects(hostile):
    """Walked independently of fusekit (os.walk, bytes, links not followed): every non-folder entry, and every file
    in the linked-in class folder, has a row; so does every link to a folder."""
    root, _, _, _, _, images, rejects, _ = hostile
    recorded = {row["source_path"] for row in images} | {row["source_path"] for row in rejects}
    broot = os.fsencode(root)
    entries: set[str] = set()
    for current, dirs, files in os.walk(broot):
        rel_dir = os.path.relpath(current, broot)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(current, d))]:
            rel = os.fsdecode(os.path.normpath(os.path.join(rel_dir, name)))
            entries.add(text_name(rel.replace(os.sep, "/")))
    entries.discard("angry")  # the linked class folder: its files stand for it
    entries |= {f"angry/{name}" for name in os.listdir(root / "angry")}
    assert entries - recorded == set()
    assert len(entries) == len(images) + len(rejects)


def test_a_name_that_is_not_utf8_keeps_a_stable_id_and_the_faces_stage_reads_it_back(hostile, tmp_path):
    root, _, _, ws, _, images, _, _ = hostile
    row = next(r for r in images if r["source_path"] == LATIN1_TEXT)
    assert row["id"] == f"mydata/classfolders/{LATIN1_TEXT}" and row["image"]["path"] == LATIN1_TEXT
    assert '"path_escaped":true' in row["extra"]
    assert os.fsencode(fs_name(row["source_path"])) == b"happy/" + LATIN1  # the raw bytes, recovered
    # the same id from a second ingest (another workspace), and from a rerun over the same one
    _, _, again, _ = ingest(tmp_path, root, workspace="ws2")
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in images)
    # the faces stage finds the file again from what the row stores
    source_root = ws.unit_info("images", "mydata--classfolders")["source_root"]
    assert imageio.sha256_hex(row_bytes(row, source_root)) == row["sha256"]


def test_the_faces_stage_makes_a_face_of_every_picture_the_hostile_tree_kept(hostile):
    from test_faces import FakeDetector

    from fusekit.faces import FacesConfig, run_faces
    from fusekit.records import FACES_SCHEMA

    ws, images = hostile[3], hostile[5]
    report = run_faces(ws, FacesConfig(), detector=FakeDetector())
    faces = ws.read("faces", FACES_SCHEMA).to_pylist()
    assert report.units[0].rejects == {}, report.units[0].rejects
    assert {f["image_id"] for f in faces} == {row["id"] for row in images}


def test_a_class_folder_not_utf8_is_rejected_by_label_not_by_crash(tmp_path):
    root = tmp_path / "mydata"
    write_image(root / "happy" / "ok.png", 1)
    folder = os.path.join(os.fsencode(root), b"\xe9motion")
    os.makedirs(folder)
    with open(os.path.join(folder, b"x.png"), "wb") as handle:
        handle.write((root / "happy" / "ok.png").read_bytes())
    _, report, images, rejects = ingest(tmp_path, root)
    assert report.images == 1 and len(images) == 1
    assert [(r["source_path"], r["reason"], r["raw_label"]) for r in rejects] == [
        ("%E9motion/x.png", "unknown_label", "%E9motion")]


def test_names_that_escape_alike_never_write_one_id_twice(tmp_path):
    root = tmp_path / "mydata"
    write_image(root / "happy" / "caf%E9.png", 1)  # a valid UTF-8 name that reads like the escaped one
    with open(os.path.join(os.fsencode(root / "happy"), LATIN1), "wb") as handle:
        handle.write(_picture(2))
    _, _, images, rejects = ingest(tmp_path, root)
    assert [r["source_path"] for r in images] == ["happy/caf%E9.png"]  # the literal name sorts first and wins
    assert [r["reason"] for r in rejects] == ["duplicate_entry"]


def test_link_loops_and_repeated_links_end_and_are_recorded(tmp_path):
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "x.png").write_bytes(b"x")
    (root / "b" / "y.png").write_bytes(b"y")
    os.symlink("../b", root / "a" / "to_b")
    os.symlink("../a", root / "b" / "to_a")
    os.symlink(".", root / "a" / "self")
    os.symlink(tmp_path / "tree" / "b", root / "again_b")  # a second link to b
    entries = list(walk_entries(root))
    files = [rel for rel, reason, _ in entries if reason is None]
    problems = {rel: reason for rel, reason, _ in entries if reason is not None}
    assert set(files) >= {"a/x.png", "b/y.png", "a/to_b/y.png"}
    assert problems["a/self"] == "link_loop" and problems["a/to_b/to_a"] == "link_loop"
    assert problems["again_b"] == "link_loop"
    assert len(entries) == len({rel for rel, _, _ in entries})  # nothing twice


def test_walk_has_no_depth_limit_unless_asked_and_then_says_too_deep(tmp_path):
    deep = tmp_path / "t" / "/".join(["d"] * 40)
    deep.mkdir(parents=True)
    (deep / "f.png").write_bytes(b"f")
    assert [rel for rel, reason, _ in walk_entries(tmp_path / "t")] == ["/".join(["d"] * 40) + "/f.png"]
    limited = list(walk_entries(tmp_path / "t", max_depth=3))
    assert limited == [("d/d/d/d", "too_deep", limited[0][2])]


def test_read_source_refuses_special_and_oversized_files_without_reading(tmp_path, monkeypatch):
    fifo = tmp_path / "p.jpg"
    os.mkfifo(fifo)
    with pytest.raises(Rejected) as caught:
        read_source(fifo)
    assert caught.value.reason == "not_a_file"
    with pytest.raises(Rejected) as caught:
        read_source(tmp_path)
    assert caught.value.reason == "not_a_file"
    small = tmp_path / "small.png"
    small.write_bytes(b"\x89PNG" + bytes(2000))
    monkeypatch.setenv("FUSEKIT_MAX_IMAGE_BYTES", "1000")
    with pytest.raises(Rejected) as caught:
        read_source(small)
    assert caught.value.reason == "file_too_large" and "1,000-byte limit" in caught.value.detail
    monkeypatch.setenv("FUSEKIT_MAX_IMAGE_BYTES", "2004")
    assert read_source(small) == small.read_bytes()
    monkeypatch.setenv("FUSEKIT_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ConfigError):
        read_source(small)


def test_a_2gb_junk_file_costs_no_memory(tmp_path):
    """Run in a child process so that its peak resident memory can be measured on its own."""
    import subprocess

    root = tmp_path / "mydata"
    write_image(root / "happy" / "ok.png", 1)
    with open(root / "happy" / "junk.jpg", "wb") as handle:
        handle.truncate(2 * 1024 ** 3)
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from fusekit.config import IngestConfig\n"
        "from fusekit.ingest import run_ingest\n"
        "from fusekit.workspace import Workspace\n"
        f"report = run_ingest(Workspace(Path({str(tmp_path / 'ws')!r})), "
        f"IngestConfig(name='folder', source=Path({str(root)!r}), faces=False))\n"
        # VmHWM: this process image's own peak (ru_maxrss keeps the forking parent's peak across exec, and pytest's
        # process is large in a full run)
        "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(report.images, dict(report.rejects), hwm)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    images, rejects, peak_kib = done.stdout.split(" ", 1)[0], done.stdout.split(" ", 1)[1].rsplit(" ", 1)[0], \
        int(done.stdout.rsplit(" ", 1)[1])
    assert images == "1" and rejects == "{'file_too_large': 1}"
    assert peak_kib < 1024 * 1024  # well under the 2 GiB a whole read would take


def test_a_tar_with_latin1_member_names_extracts_and_ingests(tmp_path):
    """What archive extraction writes for a member named in Latin-1 (tar keeps the name's bytes) ingests fine."""
    archive = tmp_path / "mydata.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for name, seed in (("happy/caf\u00e9.png", 1), ("sad/ok.png", 2)):
            data = _picture(seed)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _, report, images, rejects = ingest(tmp_path, archive)
    assert report.images == 2 and rejects == []
    assert {r["label"] for r in images} == {"happy", "sad"}
