"""Archive extraction and AffectNet list parsing, each beside the tool a user would otherwise use.

1. Extraction of a generated dataset-like archive (many small image-sized files) with ``fusekit.archives.extract``
   (every member checked, CRC/trailer verified, temp folder + rename) against ``unzip -q`` / ``tar -xzf`` and
   against the standard library's ``extractall`` (``filter="data"`` for tar).
2. Reading AffectNet's ``training.csv`` (9 columns, 136 landmarks per row) into records, against
   ``pandas.read_csv`` of the same file (which only parses; no landmarks split, no checks).

    python benchmarks/bench_archives.py [--files 5000] [--rows 200000] [--work /tmp/fusekit-bench-archives]

Prints one line per figure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusekit.archives import ExtractLimits, archive_digest, extract  # noqa: E402
from fusekit.manifests import resolve  # noqa: E402
from fusekit.sources.affectnet import AffectNetOfficial  # noqa: E402


def make_tree(root: Path, files: int) -> int:
    """``files`` files of 4-12 KB in 8 class folders, half random (incompressible, like JPEG), half repetitive."""
    rng = np.random.default_rng(0)
    total = 0
    for i in range(files):
        size = int(rng.integers(4096, 12288))
        data = rng.bytes(size) if i % 2 else (bytes(rng.integers(0, 255, 64, dtype=np.uint8)) * (size // 64 + 1))[:size]
        path = root / "dataset" / f"class{i % 8}" / f"image{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += size
    return total


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_extraction(work: Path, files: int) -> None:
    tree = work / "tree"
    total = make_tree(tree, files)
    zpath, tpath = work / "dataset.zip", work / "dataset.tar.gz"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((tree / "dataset").rglob("*")):
            zf.write(p, p.relative_to(tree).as_posix())
    with tarfile.open(tpath, "w:gz") as tf:
        tf.add(tree / "dataset", arcname="dataset")
    limits = ExtractLimits()
    for label, archive, cli in (("zip", zpath, ["unzip", "-q", "-o", str(zpath), "-d"]),
                                ("tar.gz", tpath, ["tar", "-xzf", str(tpath), "-C"])):
        out = work / f"out-{label}"
        hashed = timed(lambda: archive_digest(archive, work / "digests.json"))
        runs: dict[str, list[float]] = {"fusekit": [], "cli": [], "stdlib": []}
        for attempt in range(2):  # best of two for each tool, interleaved, so that a busy moment hurts none alone
            base = out / str(attempt)
            (base / "fusekit").mkdir(parents=True)
            shutil.copy(work / "digests.json", base / "fusekit" / "_archives.json")  # the figure is the extraction
            runs["fusekit"].append(timed(lambda: extract(archive, base / "fusekit", limits)))
            (base / "cli").mkdir()
            if shutil.which(cli[0]):
                runs["cli"].append(timed(lambda: subprocess.run(cli + [str(base / "cli")], check=True)))
            (base / "stdlib").mkdir()
            if label == "zip":
                runs["stdlib"].append(timed(lambda: zipfile.ZipFile(archive).extractall(base / "stdlib")))
            else:
                runs["stdlib"].append(timed(lambda: tarfile.open(archive).extractall(base / "stdlib", filter="data")))
            shutil.rmtree(base)
        ours, tool, stdlib = min(runs["fusekit"]), min(runs["cli"] or [float("nan")]), min(runs["stdlib"])
        mb = total / 1e6
        print(f"extract {label}: {files:,} files, {mb:,.0f} MB: fusekit {ours:.2f} s ({mb / ours:,.0f} MB/s, checks "
              f"included; the one-off sha256 naming the folder adds {hashed:.2f} s), {cli[0]} {tool:.2f} s "
              f"(fusekit/{cli[0]} = {ours / tool:.2f}x time), stdlib extractall {stdlib:.2f} s "
              f"(fusekit/stdlib = {ours / stdlib:.2f}x time)")


def make_lists(root: Path, rows: int) -> Path:
    rng = np.random.default_rng(1)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    (root / "Manually_Annotated_Images").mkdir(exist_ok=True)
    marks = rng.uniform(0, 500, size=(64, 136)).round(2)
    with open(lists / "training.csv", "w") as handle:
        handle.write("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                     "valence,arousal\n")
        for i in range(rows):
            name = hashlib.sha224(str(i).encode()).hexdigest()
            landmarks = ";".join(f"{v:.2f}" for v in marks[i % 64])
            handle.write(f"{i % 1000}/{name}.jpg,{i % 50},{i % 40},{200 + i % 300},{200 + i % 300},{landmarks},"
                         f"{i % 11},{(i % 200) / 100 - 1:.3f},{(i % 150) / 100 - 0.75:.3f}\n")
    return root


def bench_lists(work: Path, rows: int) -> None:
    import pandas as pd

    root = make_lists(work / "affectnet", rows)
    spec = resolve("affectnet").variant("official")
    source = AffectNetOfficial(root, spec)
    count = 0

    def ours() -> None:
        nonlocal count
        count = sum(1 for _ in source.records())

    t_ours = timed(ours)
    t_pandas = timed(lambda: pd.read_csv(root / "Manually_Annotated_file_lists" / "training.csv"))
    print(f"affectnet training.csv: {rows:,} rows -> {count:,} records in {t_ours:.2f} s ({rows / t_ours:,.0f} rows/s, "
          f"box + 136 landmarks + drops per row); pandas.read_csv {t_pandas:.2f} s (fusekit/pandas = "
          f"{t_ours / t_pandas:.2f}x time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fusekit-bench-archives"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        bench_extraction(args.work, args.files)
        bench_lists(args.work, args.rows)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    os.sync()


if __name__ == "__main__":
    main()
