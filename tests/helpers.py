"""Shared test helpers: small generated images and a CLI runner that goes through `fusekit.cli.main`."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def pixels(seed: int, size: tuple[int, int] = (48, 48), channels: int = 1) -> np.ndarray:
    """A distinct, deterministic uint8 image (smooth gradient plus blobs), H x W (x 3)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * rng.uniform(0.5, 3) + yy * rng.uniform(0.5, 3)) % 255
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, max(w, h) / 3)
        base = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < r * r, rng.uniform(0, 255), base)
    img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    if channels == 3:
        img = np.stack([img, np.roll(img, 3, axis=0), np.roll(img, 5, axis=1)], axis=-1)
    return img


def image_bytes(seed: int, size: tuple[int, int] = (48, 48), fmt: str = "PNG", mode: str = "L") -> bytes:
    arr = pixels(seed, size, 3 if mode == "RGB" else 1)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, seed: int, size: tuple[int, int] = (48, 48), fmt: str | None = None, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    fmt = fmt or {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}[ext]
    path.write_bytes(image_bytes(seed, size, fmt, mode))
    return path


def run_cli(*argv: str, workspace: Path | None = None) -> tuple[int, str, str]:
    """Run `fusekit ...` in a subprocess (real exit code, real stdout/stderr)."""
    args = [sys.executable, "-m", "fusekit"]
    if workspace is not None:
        args += ["--workspace", str(workspace)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(args + list(argv), capture_output=True, text=True, env=env, timeout=600)
    return done.returncode, done.stdout, done.stderr


def call_cli(capsys, *argv: str, workspace: Path | None = None) -> tuple[int, str, str]:
    """Run `fusekit.cli.main` in-process and capture its exit code and output (fast; for most CLI tests)."""
    from fusekit.cli import main

    args = (["--workspace", str(workspace)] if workspace is not None else []) + list(argv)
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@contextlib.contextmanager
def fail_after(seconds: int, what: str):
    """Raise TimeoutError in the test after ``seconds`` (SIGALRM): a test that blocks (a FIFO or device opened for
    reading) fails instead of hanging the run."""
    def expired(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"blocked for {seconds} s ({what})")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def disk_fills_after(monkeypatch, writes: int):
    """Part writes (``fusekit.workspace.write_parquet_atomic``) beyond the first ``writes`` raise ENOSPC, as a disk
    that fills up mid-run. Returns the function that undoes it (the disk has room again)."""
    import errno

    import fusekit.workspace as workspace_module

    real = workspace_module.write_parquet_atomic
    calls = {"n": 0}

    def fills_up(table, path):
        calls["n"] += 1
        if calls["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(table, path)

    monkeypatch.setattr(workspace_module, "write_parquet_atomic", fills_up)
    return lambda: monkeypatch.setattr(workspace_module, "write_parquet_atomic", real)


def kill_after_epoch(monkeypatch, epoch: int, train) -> None:
    """Run ``train()`` with the run killed (KeyboardInterrupt) right after epoch ``epoch`` is committed, as a kill
    during the next epoch would leave it; the loop is restored afterwards."""
    import pytest

    from fusekit.train import loop

    advance = loop._advance

    def killed(run, model, state, row, config):
        advance(run, model, state, row, config)
        if row["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_advance", killed)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(loop, "_advance", advance)
