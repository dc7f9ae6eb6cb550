"""Ingest speed: `fusekit ingest --no-faces` on a generated 35,887-row fer2013.csv and a 35,887-file image-folder tree.

Each is compared, in the same run and on the same files, with the loop a user would otherwise write (pandas +
Pillow for the CSV, os.walk + Pillow for the folders) that produces the same result: PNG bytes or file
references, size, mode, sha256 and label, written to one Parquet file. Prints one line per figure.

    python benchmarks/bench_ingest.py [--rows 35887] [--work /tmp/fusekit-bench-ingest]

Targets (issue 2, 2-core machine): CSV <= 10 s, folders <= 20 s, end to end including interpreter start-up.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """FER-2013's exact header and row shape; smooth random faces-sized images so PNG sizes are realistic."""
    rng = np.random.default_rng(seed)
    usages = ["Training"] * 28709 + ["PublicTest"] * 3589 + ["PrivateTest"] * 3589
    base = rng.integers(0, 256, size=(64, 48, 48), dtype=np.int32)
    with open(path, "w") as handle:
        handle.write("emotion,pixels,Usage\n")
        for i in range(rows):
            img = (base[i % 64] + i) % 256
            handle.write(f"{i % 7},{' '.join(map(str, img.ravel().tolist()))},{usages[i % len(usages)]}\n")


def make_folders(root: Path, rows: int, seed: int = 0) -> None:
    """msambare/fer2013's tree: train/<class>/Training_<N>.jpg, test/<class>/P*Test_<N>.jpg, 48x48 grey JPEG."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(64, 48, 48), dtype=np.int32)
    for c in CLASSES:
        (root / "train" / c).mkdir(parents=True, exist_ok=True)
        (root / "test" / c).mkdir(parents=True, exist_ok=True)
    for i in range(rows):
        img = Image.fromarray(((base[i % 64] + i) % 256).astype(np.uint8))
        split, prefix = ("train", "Training") if i < rows * 0.8 else ("test", "PublicTest" if i % 2 else "PrivateTest")
        img.save(root / split / CLASSES[i % 7] / f"{prefix}_{1000 + i * 7}.jpg", quality=90)


def run_fusekit(args: list[str], workspace: Path) -> float:
    shutil.rmtree(workspace, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fusekit", "-q", "--workspace", str(workspace), "ingest", *args,
                           "--no-faces"], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"fusekit failed: {done.stderr}")
    return elapsed


def compare(what: str, count: int, unit: str, naive_name: str, naive: float, fusekit_args: list[str],
            workspace: Path, target: str = "") -> None:
    """Time the whole fusekit command and print it next to the naive loop's time (measured just before)."""
    ours = run_fusekit(fusekit_args, workspace)
    print(f"ingest {what}: fusekit {ours:.1f} s ({count / ours:,.0f} {unit}/s, whole command) | {naive_name} "
          f"{naive:.1f} s | speed-up {naive / ours:.2f}x" + (f" | target {target}" if target else ""))


def naive_csv(path: Path, out: Path) -> float:
    """What a user writes: pandas, split each pixel string, Pillow PNG, sha256, one Parquet file."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    frame = pd.read_csv(path)
    rows = []
    for emotion, pixels, usage in zip(frame["emotion"], frame["pixels"], frame["Usage"]):
        array = np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        data = buf.getvalue()
        check = Image.open(io.BytesIO(data))
        check.load()
        rows.append({"image": data, "label": int(emotion), "split": usage, "sha256": hashlib.sha256(data).hexdigest(),
                     "width": check.width, "height": check.height, "mode": check.mode})
    pq.write_table(pa.Table.from_pylist(rows), out)
    return time.perf_counter() - started


def naive_folders(root: Path, out: Path) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    rows = []
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(current, name)
            data = open(path, "rb").read()
            image = Image.open(io.BytesIO(data))
            image.load()
            rows.append({"path": os.path.relpath(path, root), "label": os.path.basename(current),
                         "sha256": hashlib.sha256(data).hexdigest(), "width": image.width, "height": image.height,
                         "mode": image.mode})
    pq.write_table(pa.Table.from_pylist(rows), out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=35887)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fusekit-bench-ingest"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / f"fer2013-{args.rows}.csv"
    if not csv_path.exists():
        make_csv(csv_path, args.rows)
    folders = work / f"folders-{args.rows}"
    if not (folders / "train").exists():
        make_folders(folders, args.rows)
    os.sync()

    compare(f"fer2013.csv, {args.rows:,} rows", args.rows, "rows", "naive pandas+Pillow loop",
            naive_csv(csv_path, work / "naive.parquet"), ["fer2013", "--source", str(csv_path)], work / "ws-csv",
            "<= 10 s")
    compare(f"image folders, {args.rows:,} files", args.rows, "files", "naive os.walk+Pillow loop",
            naive_folders(folders, work / "naive-folders.parquet"), ["fer2013", "--source", str(folders)],
            work / "ws-folders", "<= 20 s")


if __name__ == "__main__":
    main()
