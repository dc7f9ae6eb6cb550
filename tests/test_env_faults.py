"""Faults of the machine, not of fusekit (issue 15, item 4): one line with the remedy and exit 2, never "a bug".

A workspace path that is a file, a workspace that cannot be written (ingest, faces, dedupe, balance, remove), the disk
filling up during `faces` (and a rerun resuming to the same tables), a source that cannot be read.

Tests run as root here, where chmod does not stop reads or writes. The real permission checks therefore run the CLI in
a subprocess with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped (``setpriv``): root then obeys the owner's mode
bits like any user (skipped where setpriv is missing; a non-root run needs no setpriv). Read-only file systems and a
full disk are injected by monkeypatching os.replace / os.rename and the part writer.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import call_cli, disk_fills_after
from test_faces import FakeDetector, class_folder, read

import fusekit.faces.detect as detect_module
from fusekit.config import IngestConfig
from fusekit.dedupe import run_dedupe
from fusekit.faces import FacesConfig, run_faces
from fusekit.faces.stage import FACES, REJECTS
from fusekit.ingest import run_ingest
from fusekit.workspace import Workspace

UNIT = "faces-src--classfolders"
WRITING = [  # every command that writes to the workspace (remove needs the variant it removes)
    ("ingest", "folder", "--source", "{src}", "--no-faces"),
    ("faces",),
    ("dedupe",),
    ("balance",),
    ("remove", "faces-src", "--variant", "classfolders"),
]


def _args(command: tuple[str, ...], src: Path) -> list[str]:
    return [a.format(src=src) for a in command]


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and "bug" not in lines[0] and "Traceback" not in err
    return lines[0][len("Error: "):]


@pytest.fixture
def fake_detector(monkeypatch):
    """`fusekit faces` through the CLI without TensorFlow: the stage's detector is the tests' fake one."""
    monkeypatch.setattr(detect_module, "shared_detector", FakeDetector)


def _pipeline(tmp_path: Path) -> tuple[Workspace, Path]:
    """A workspace with images, faces and decisions: every later command has its input."""
    src = class_folder(tmp_path / "faces-src", 6)
    ws = Workspace(tmp_path / "ws")
    run_ingest(ws, IngestConfig(name="folder", source=src, faces=False))
    run_faces(ws, FacesConfig(chunk_size=3), detector=FakeDetector())
    run_dedupe(ws)
    return ws, src


# -- a file where the workspace should be ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", WRITING + [("status",)], ids=lambda c: c[0])
def test_a_workspace_that_is_a_file_is_a_user_error(tmp_path, capsys, command):
    src = class_folder(tmp_path / "faces-src", 2)
    ws = tmp_path / "ws"
    ws.write_text("not a folder\n")
    code, _, err = call_cli(capsys, *_args(command, src), workspace=ws)
    assert code == 2
    assert _one_line_error(err) == (f"the workspace {ws} is a file, not a folder: give --workspace a folder (or move "
                                    f"the file away)")
    assert ws.read_text() == "not a folder\n"


def test_a_file_above_the_workspace_is_named(tmp_path, capsys):
    src = class_folder(tmp_path / "faces-src", 2)
    (tmp_path / "blocker").write_text("x")
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(src), "--no-faces",
                            workspace=tmp_path / "blocker" / "ws")
    assert code == 2
    assert _one_line_error(err) == (f"{tmp_path / 'blocker'} is a file where fusekit needs a folder: move it away and "
                                    f"run the same command again")


# -- a workspace that cannot be written -----------------------------------------------------------------------------

def _unprivileged() -> list[str] | None:
    """The prefix that runs a command without root's permission override, or None where that is not possible."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
    probe = subprocess.run(prefix + ["true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def _run_unprivileged(prefix: list[str], *argv: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(prefix + [sys.executable, "-m", "fusekit", *argv], capture_output=True, text=True,
                          env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr


def _chmod_tree(root: Path, remove: int) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~remove)


def _restore_tree(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IRWXU)


def test_a_read_only_workspace_is_a_user_error_for_every_writing_command(tmp_path):
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: no way to make a folder read-only for this process")
    ws, src = _pipeline(tmp_path)
    _chmod_tree(ws.root, stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    try:
        for command in WRITING:
            code, _, err = _run_unprivileged(prefix, "--workspace", str(ws.root), *_args(command, src))
            assert code == 2, (command, err)
            message = _one_line_error(err)
            assert message.startswith("permission denied: " + str(ws.root)), message
            assert message.endswith(f"the workspace {ws.root} is not writable; make it writable (chmod -R u+w "
                                    f"{ws.root}) or use another one (--workspace DIR)"), message
    finally:
        _restore_tree(ws.root)
    assert ws.units(FACES) == [UNIT] and ws.units("decisions") == ["all"]  # nothing was lost


@pytest.mark.parametrize("command", WRITING, ids=lambda c: c[0])
def test_a_read_only_file_system_is_a_user_error(tmp_path, capsys, monkeypatch, fake_detector, command):
    ws, src = _pipeline(tmp_path)
    if command[0] == "faces":
        shutil.rmtree(ws.unit_dir(FACES, UNIT))  # something left to write
    real_replace, real_rename = os.replace, os.rename

    def read_only(source, target, *args, **kwargs):
        if str(target).startswith(str(ws.root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(source))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", read_only)
    monkeypatch.setattr(os, "rename", read_only)
    code, _, err = call_cli(capsys, *_args(command, src), workspace=ws.root)
    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(os, "rename", real_rename)
    assert code == 2, err
    message = _one_line_error(err)
    assert message.startswith(f"permission denied: {ws.root}"), message
    assert message.endswith(f"the workspace {ws.root} is on a read-only file system; use a workspace on a writable "
                            f"disk (--workspace DIR)"), message


# -- the disk fills up during faces ---------------------------------------------------------------------------------

def test_disk_full_during_faces_is_a_user_error_and_the_rerun_resumes(tmp_path, capsys, monkeypatch, fake_detector):
    src = class_folder(tmp_path / "faces-src", 8)
    ws = Workspace(tmp_path / "ws")
    run_ingest(ws, IngestConfig(name="folder", source=src, faces=False))
    room_again = disk_fills_after(monkeypatch, 2)  # the first part (faces + face_rejects) is written, then full
    code, _, err = call_cli(capsys, "faces", "--chunk-size", "3", workspace=ws.root)
    assert code == 2, err
    assert _one_line_error(err) == (f"disk full at {ws.root}: free space and run the same command again (it "
                                    f"resumes)")
    assert not ws.units(FACES)  # nothing half-made is visible

    room_again()
    code, out, err = call_cli(capsys, "faces", "--chunk-size", "3", workspace=ws.root)
    assert code == 0, err
    assert "resumed 1 of 3 parts" in out, out  # the part written before the disk filled up is not redone

    whole = Workspace(tmp_path / "ws2")
    run_ingest(whole, IngestConfig(name="folder", source=src, faces=False))
    run_faces(whole, FacesConfig(chunk_size=3), detector=FakeDetector())
    assert read(ws, FACES) == read(whole, FACES) and read(ws, REJECTS) == read(whole, REJECTS)


def test_a_disk_full_error_from_pyarrow_without_a_file_name_is_still_recognised(tmp_path, capsys, monkeypatch):
    """pyarrow raises OSError(28, 'Error writing bytes to file. Detail: [errno 28] ...') with no filename."""
    from fusekit import api

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(api, "ingest", full)
    src = class_folder(tmp_path / "faces-src", 2)
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(src), workspace=tmp_path / "ws")
    assert code == 2
    assert _one_line_error(err).startswith(f"disk full at {tmp_path / 'ws'}: free space")


def test_our_own_os_errors_are_still_bugs(tmp_path, capsys, monkeypatch):
    """An OSError that is not the machine's fault (here ENOENT from our own code) still says it is a bug."""
    from fusekit import api

    def broken(*args, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "ws" / "tables" / "x"))

    monkeypatch.setattr(api, "ingest", broken)
    src = class_folder(tmp_path / "faces-src", 2)
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(src), workspace=tmp_path / "ws")
    assert code == 1 and "This is a bug in fusekit" in err


# -- a source that cannot be read -----------------------------------------------------------------------------------

def test_a_source_that_cannot_be_read_is_a_user_error(tmp_path):
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: no way to make a folder unreadable for this process")
    from test_source_fer2013 import write_fer_csv

    csv = write_fer_csv(tmp_path / "fer" / "fer2013.csv", n=3)
    (tmp_path / "fer").chmod(0)
    try:
        code, _, err = _run_unprivileged(prefix, "--workspace", str(tmp_path / "ws"), "ingest", "fer2013",
                                         "--source", str(csv), "--no-faces")
    finally:
        (tmp_path / "fer").chmod(0o755)
    assert code == 2, err
    folder = tmp_path / "fer"
    assert _one_line_error(err) == (f"permission denied: {folder}: fusekit cannot read it; give read access (chmod -R "
                                    f"u+rX {folder}) and run the same command again")


def test_permission_denied_inside_a_source_names_the_source_path(tmp_path, capsys, monkeypatch):
    """The same through a monkeypatch (runs everywhere): a PermissionError while detecting the layout."""
    import fusekit.sources as registry

    src = class_folder(tmp_path / "faces-src", 2)
    denied = src / "happy"

    def unreadable(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(denied))

    monkeypatch.setattr(registry, "detect", unreadable)
    monkeypatch.setattr("fusekit.errors._denied_at", lambda path: path)  # as root every access() succeeds
    code, _, err = call_cli(capsys, "ingest", "folder", "--source", str(src), "--no-faces",
                            workspace=tmp_path / "ws")
    assert code == 2
    assert _one_line_error(err) == (f"permission denied: {denied}: fusekit cannot read it; give read access (chmod -R "
                                    f"u+rX {denied}) and run the same command again")
