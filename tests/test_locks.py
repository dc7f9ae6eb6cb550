"""Workspace locks (fusekit.locks): two real writers of one unit never interleave, a killed holder leaves nothing
stale, unit writers run side by side while whole-workspace writers exclude them, readers never wait on writers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusekit import locks
from fusekit.records import IMAGES_SCHEMA
from fusekit.workspace import Workspace
from helpers import call_cli, write_image

UNIT = "mine--classfolders"
N_IMAGES = 240

HOLDER = """
import sys
from fusekit import locks
from fusekit.workspace import Workspace
ws = Workspace(sys.argv[1])
kind, names = sys.argv[2], sys.argv[3:]
with (locks.writing_all(ws) if kind == "all" else locks.writing(ws, names)):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("locks") / "tree"
    for i in range(N_IMAGES):
        write_image(root / ("happy", "sad", "angry")[i % 3] / f"{i:03d}.png", i, size=(24, 24))
    return root


def _ingest(ws: Path, tree: Path, hold: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop(locks.HOLD_ENV, None)
    if hold is not None:
        env[locks.HOLD_ENV] = hold
    args = [sys.executable, "-m", "fusekit", "--workspace", str(ws), "ingest", "folder", "--source", str(tree),
            "--name", "mine", "--no-faces", "--workers", "1"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _ids(ws: Path) -> list[str]:
    return Workspace(ws).read("images", IMAGES_SCHEMA, columns=["id"]).column("id").to_pylist()


def _busy_line(ws: Path, pid: int, doing: str) -> re.Pattern[str]:
    return re.compile(rf"Error: the workspace {re.escape(str(ws))} is busy: '[^']*' \(pid {pid}\) is "
                      rf"{re.escape(doing)}; wait for it or stop it")


def test_two_ingests_of_one_unit_never_interleave(tmp_path: Path, tree: Path) -> None:
    """Both start at once, ten times. The one that takes the lock waits (FUSEKIT_TEST_LOCK_HOLD names a file) until
    the other has exited, so the two always overlap; it then finishes the ingest."""
    expected = sorted(f"mine/classfolders/{('happy', 'sad', 'angry')[i % 3]}/{i:03d}.png" for i in range(N_IMAGES))
    for trial in range(10):
        ws = tmp_path / f"ws{trial}"
        release = tmp_path / f"release{trial}"
        runs = [_ingest(ws, tree, str(release)), _ingest(ws, tree, str(release))]
        deadline = time.monotonic() + 60
        while all(p.poll() is None for p in runs) and time.monotonic() < deadline:
            time.sleep(0.02)
        release.touch()  # the first to end was refused (or, were the lock broken, both would wait here)
        results = [(p, *p.communicate(timeout=120)) for p in runs]
        assert sorted(p.returncode for p, _, _ in results) == [0, 2], [(p.returncode, e) for p, _, e in results]
        (winner, _, _), = [r for r in results if r[0].returncode == 0]
        (_, _, err), = [r for r in results if r[0].returncode == 2]
        assert len(err.strip().splitlines()) == 1, err
        assert _busy_line(ws, winner.pid, f"writing {UNIT}").fullmatch(err.strip()), err
        assert "'fusekit --workspace " in err and " ingest folder --source " in err
        assert sorted(_ids(ws)) == expected  # every row, once: nothing lost, nothing doubled


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path, tree: Path) -> None:
    ws = tmp_path / "ws"
    holder = _ingest(ws, tree, hold=str(tmp_path / "never"))  # holds the lock until it is killed
    lock_file = ws / locks.LOCKS / f"unit-{UNIT}.lock"
    deadline = time.monotonic() + 60
    while not (lock_file.is_file() and lock_file.read_text()):  # its record is written once it holds the lock
        assert holder.poll() is None and time.monotonic() < deadline, holder.communicate()
        time.sleep(0.05)
    assert json.loads(lock_file.read_text())["pid"] == holder.pid
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=30)
    assert json.loads(lock_file.read_text())["pid"] == holder.pid  # its record stays behind, and means nothing
    again = _ingest(ws, tree)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert len(_ids(ws)) == N_IMAGES
    assert lock_file.read_text() == ""  # a holder that ends normally clears its record


def _hold(ws: Path, kind: str, *names: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws), kind, *names], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held", child.communicate()
    return child


def _release(child: subprocess.Popen[str]) -> None:
    child.communicate(input="", timeout=30)
    assert child.returncode == 0


def test_unit_writers_side_by_side_whole_workspace_writers_alone(tmp_path: Path, capsys) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    child = _hold(ws.root, "units", "a--x")
    try:
        with locks.writing(ws, ["b--y"]):  # another unit: fine beside it
            pass
        with pytest.raises(locks.WorkspaceBusy) as busy, locks.writing(ws, ["a--x"]):
            pass
        assert _busy_line(ws.root, child.pid, "writing a--x").fullmatch(f"Error: {busy.value}")
        code, _, err = call_cli(capsys, "dedupe", workspace=ws.root)  # decisions are over every unit: refused
        assert code == 2 and _busy_line(ws.root, child.pid, "writing a--x").fullmatch(err.strip()), err
        code, _, err = call_cli(capsys, "remove", "folder", "--variant", "x", workspace=ws.root)
        assert code == 2 and "is writing a--x" in err
        code, out, err = call_cli(capsys, "status", workspace=ws.root)  # readers never wait on writers
        assert code == 0 and "holds no data yet" in out, err
    finally:
        _release(child)
    child = _hold(ws.root, "all")
    try:
        for attempt in (lambda: locks.writing(ws, ["b--y"]), lambda: locks.writing_all(ws)):
            with pytest.raises(locks.WorkspaceBusy) as busy, attempt():
                pass
            assert _busy_line(ws.root, child.pid, "writing the whole workspace").fullmatch(f"Error: {busy.value}")
        assert call_cli(capsys, "status", workspace=ws.root)[0] == 0
    finally:
        _release(child)
    with locks.writing_all(ws), locks.writing(ws, ["a--x"]):  # noqa: SIM117 - nested, as build ingests under it
        with locks.reading(ws), locks.swapping(ws), locks.reading(ws):
            pass


def test_a_swap_is_committed_once_when_recover_runs_beside_the_writer(tmp_path: Path) -> None:
    import pyarrow as pa

    ws = Workspace(tmp_path / "ws")
    table = pa.table({"id": ["a", "b"]})
    for version in (1, 2):
        staging = ws.stage("d--v", {"version": version})
        staging.write_part(0, {"images": table.slice(0, version)}, {})
        if version == 1:
            staging.finish({"v": 1}, ["images"])
    # The writer of version 2 wrote its journal; another process's recover() commits it before the writer does.
    from fusekit.workspace import write_json_atomic

    write_json_atomic({"tables": ["images"]}, staging.path / "_COMPLETE")
    assert ws.recover() == ["d--v"]
    assert staging.commit() is False  # the writer finds it done and leaves the unit alone
    parts = sorted(p.name for p in ws.unit_dir("images", "d--v").iterdir())
    assert parts == ["part-00000.parquet"] and ws.read("images", pa.schema([("id", pa.string())])).num_rows == 2
    assert not (ws.staging / "d--v").exists() and not any((ws.root / ".trash").iterdir())
