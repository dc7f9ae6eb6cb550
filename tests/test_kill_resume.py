"""SIGKILL an ingest at several points; the rerun must end with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_image

from fusekit.config import IngestConfig
from fusekit.ingest import run_ingest
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Workspace

UNIT = "src--classfolders"
CHUNK = 10


def _source(root: Path) -> Path:
    for c, name in enumerate(("angry", "happy", "neutral", "surprise")):
        for i in range(60):
            write_image(root / name / f"{i:03d}.png", c * 1000 + i, (64, 64))
    (root / "happy" / "broken.png").write_bytes(b"not an image")
    return root


def _start(ws: Path, src: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "fusekit", "--workspace", str(ws), "ingest", "folder", "--source", str(src),
            "--no-faces", "--chunk-size", str(CHUNK), "--workers", "1"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_after(ws: Path, src: Path, parts_done: int) -> int:
    """Run an ingest and SIGKILL it once `parts_done` part markers exist; returns the markers seen at the kill."""
    proc = _start(ws, src)
    markers = ws / ".staging" / UNIT / "_done"
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen = len(list(markers.glob("*.json"))) if markers.is_dir() else 0
        if seen >= parts_done:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return seen


def _rows(ws: Path) -> tuple[list[dict], list[dict]]:
    w = Workspace(ws)
    images = sorted(w.read("images", IMAGES_SCHEMA).to_pylist(), key=lambda r: r["id"])
    rejects = sorted(w.read("rejects", REJECTS_SCHEMA).to_pylist(), key=lambda r: r["id"])
    return images, rejects


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    reference = tmp_path / "reference"
    run_ingest(Workspace(reference), IngestConfig(name="folder", source=src, chunk_size=CHUNK, workers=1,
                                                  faces=False))
    expected = _rows(reference)
    assert len(expected[0]) == 240 and len(expected[1]) == 1

    ws = tmp_path / "ws"
    kills = [_kill_after(ws, src, n) for n in (1, 6, 13, 20)]
    # Each kill happened mid-run: parts were staged, but the unit was never published half-done.
    assert all(k >= 1 for k in kills), kills
    assert not (ws / "tables" / "images" / UNIT).exists()
    assert len(list((ws / ".staging" / UNIT / "_done").glob("*.json"))) >= 20

    done = subprocess.run([sys.executable, "-m", "fusekit", "--workspace", str(ws), "ingest", "folder", "--source",
                           str(src), "--no-faces", "--chunk-size", str(CHUNK)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    images, rejects = _rows(ws)
    assert [r["id"] for r in images] == [r["id"] for r in expected[0]]
    assert len({r["id"] for r in images}) == len(images)
    assert images == expected[0] and rejects == expected[1]
    assert not (ws / ".staging" / UNIT).exists()


@pytest.mark.slow
def test_sigkill_during_a_reingest_keeps_the_old_rows(tmp_path: Path) -> None:
    """Killing a re-ingest leaves the previous, complete ingest of the variant visible and intact."""
    src = _source(tmp_path / "src")
    ws = tmp_path / "ws"
    run_ingest(Workspace(ws), IngestConfig(name="folder", source=src, chunk_size=CHUNK, faces=False))
    before = _rows(ws)
    for f in sorted((src / "angry").iterdir())[:30]:
        f.unlink()
    _kill_after(ws, src, 3)
    assert _rows(ws) == before


@pytest.mark.slow
def test_a_source_changed_after_a_kill_is_ingested_afresh_not_resumed(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    ws = tmp_path / "ws"
    assert _kill_after(ws, src, 3) >= 1
    write_image(src / "angry" / "000.png", 424242, (64, 64))  # new pixels under an old name
    (src / "neutral" / "001.png").unlink()
    done = subprocess.run([sys.executable, "-m", "fusekit", "--workspace", str(ws), "ingest", "folder", "--source",
                           str(src), "--no-faces", "--chunk-size", str(CHUNK), "--workers", "1"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed" not in done.stdout
    reference = tmp_path / "reference"
    run_ingest(Workspace(reference), IngestConfig(name="folder", source=src, chunk_size=CHUNK, workers=1,
                                                  faces=False))
    assert _rows(ws) == _rows(reference) and len(_rows(ws)[0]) == 239
