"""Ingest speed for RAF-DB's basic/ release (15,339 aligned crops, its real size) and an ExpW layout (label.lst +
image/origin with several faces per picture and boxes to clip).

Each is compared, in the same run and on the same files, with the loop a user would otherwise write: read the label
file (pandas for ExpW, as HazyResearch/meerkat does, with drop_duplicates), open and fully decode each picture with
Pillow, sha256 it, clip the ExpW box to the picture, and write one Parquet file. Prints one line per figure.

    python benchmarks/bench_ingest_rafdb_expw.py [--pictures 4000] [--work /tmp/fusekit-bench-rafdb-expw]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import compare  # noqa: E402 - one way to time and print the whole command

RAF_TRAIN, RAF_TEST = 12271, 3068


def _picture(rng: np.random.Generator, base: np.ndarray, i: int, size: tuple[int, int]) -> Image.Image:
    w, h = size
    tile = np.resize((base + i) % 256, (h, w, 3)).astype(np.uint8)
    return Image.fromarray(tile, "RGB")


def make_rafdb(root: Path) -> None:
    """basic/EmoLabel/list_patition_label.txt + Image/aligned/<name>_aligned.jpg, 100x100 RGB, 15,339 files."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(100, 100, 3), dtype=np.int32)
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    names = [f"train_{i:05d}.jpg" for i in range(1, RAF_TRAIN + 1)]
    names += [f"test_{i:04d}.jpg" for i in range(1, RAF_TEST + 1)]
    with open(root / "EmoLabel" / "list_patition_label.txt", "w") as handle:
        for i, name in enumerate(names):
            handle.write(f"{name} {i % 7 + 1}\n")
            _picture(rng, base, i, (100, 100)).save(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"),
                                                    quality=90)


def make_expw(root: Path, pictures: int) -> int:
    """label/label.lst + image/origin/*.jpg: 320x240 pictures, 1-3 faces each, some boxes past the edge."""
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, size=(240, 320, 3), dtype=np.int32)
    (root / "label").mkdir(parents=True)
    (root / "image" / "origin").mkdir(parents=True)
    lines = 0
    with open(root / "label" / "label.lst", "w") as handle:
        for i in range(pictures):
            name = f"{['angry', 'happy', 'sad'][i % 3]}_actor_{i}.jpg"
            _picture(rng, base, i, (320, 240)).save(root / "image" / "origin" / name, quality=90)
            for face in range(1 + i % 3):
                top, left, side = int(rng.integers(0, 200)), int(rng.integers(0, 280)), int(rng.integers(30, 90))
                handle.write(f"{name} {face} {top} {left} {left + side} {top + side} {rng.uniform(10, 90):.4f} "
                             f"{i % 7}\n")
                lines += 1
    return lines


def _describe(path: str) -> dict:
    data = open(path, "rb").read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return {"sha256": hashlib.sha256(data).hexdigest(), "width": image.width, "height": image.height,
            "mode": image.mode}


def naive_rafdb(root: Path, out: Path) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    rows = []
    for line in open(root / "EmoLabel" / "list_patition_label.txt"):
        name, label = line.split()
        path = root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")
        rows.append({"path": str(path), "label": int(label), "split": name.split("_")[0], **_describe(str(path))})
    pq.write_table(pa.Table.from_pylist(rows), out)
    return time.perf_counter() - started


def naive_expw(root: Path, out: Path) -> float:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    columns = ["image_name", "face_id_in_image", "face_box_top", "face_box_left", "face_box_right",
               "face_box_bottom", "face_box_cofidence", "expression_label"]
    frame = pd.read_csv(root / "label" / "label.lst", sep=" ", header=None, names=columns).drop_duplicates()
    rows, described = [], {}
    for row in frame.itertuples(index=False):
        path = str(root / "image" / "origin" / row.image_name)
        info = described.get(path) or described.setdefault(path, _describe(path))
        left, top = max(row.face_box_left, 0), max(row.face_box_top, 0)
        right, bottom = min(row.face_box_right, info["width"]), min(row.face_box_bottom, info["height"])
        rows.append({"path": path, "face": int(row.face_id_in_image), "label": int(row.expression_label),
                     "x": left, "y": top, "w": right - left, "h": bottom - top, **info})
    pq.write_table(pa.Table.from_pylist(rows), out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pictures", type=int, default=4000, help="ExpW pictures to generate (1-3 faces each)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fusekit-bench-rafdb-expw"))
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    raf = work / "basic"
    if not (raf / "EmoLabel").exists():
        make_rafdb(raf)
    expw = work / f"ExpW-{args.pictures}"
    if not (expw / "label").exists():
        make_expw(expw, args.pictures)
    lines = sum(1 for _ in open(expw / "label" / "label.lst"))
    os.sync()

    total = RAF_TRAIN + RAF_TEST
    compare(f"rafdb basic/, {total:,} aligned crops", total, "images", "naive label-file+Pillow loop",
            naive_rafdb(raf, work / "naive-raf.parquet"), ["rafdb", "--source", str(raf)], work / "ws-raf")
    compare(f"expw, {lines:,} faces in {args.pictures:,} pictures", lines, "faces",
            "naive pandas+Pillow loop (meerkat-style)", naive_expw(expw, work / "naive-expw.parquet"),
            ["expw", "--source", str(expw)], work / "ws-expw")


if __name__ == "__main__":
    main()
