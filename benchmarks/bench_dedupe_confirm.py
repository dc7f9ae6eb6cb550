"""Confirmation throughput: candidate pairs checked per second by fusekit's registered block comparison
(`fusekit.dedupe.confirm.confirm`, as the stage calls it; 2 worker processes from 4,096 pairs on), for pairs of different generated faces (what most
candidates of a large set are: look-alikes the hash search lets through) and for transformed copies.

    python benchmarks/bench_dedupe_confirm.py [--faces 300] [--pairs 6000]

At a million faces the confirmation, not the hash search, sets dedupe's time: pairs / (pairs per second).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusekit.dedupe import confirm, hashing, synthetic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=6000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.faces
    faces = [synthetic.face(i) for i in range(n)]
    kinds = ["jpeg", "crop", "rotate", "brightness", "resize"]
    copies = [synthetic.transform(f, kinds[i % len(kinds)], rng) for i, f in enumerate(faces)]
    thumbs = hashing.hash_images([synthetic.encode(f) for f in faces + copies], workers=1).thumbs
    a = rng.integers(0, n, args.pairs)
    b = (a + rng.integers(1, n, args.pairs)) % n
    for name, (x, y) in {"different faces": (a, b), "copies": (np.arange(n), np.arange(n) + n)}.items():
        flags = np.zeros(len(x), bool)
        confirm.confirm(thumbs[x[:50]], thumbs[y[:50]], flags[:50], workers=2)  # warm-up
        start = time.perf_counter()
        accepted, _ = confirm.confirm(thumbs[x], thumbs[y], flags, workers=2)  # what the stage calls
        seconds = time.perf_counter() - start
        print(f"{name}: {len(x):,} pairs in {seconds:.2f} s = {len(x) / seconds:,.0f} pairs/s (2 workers), "
              f"accepted at {confirm.DEFAULT_MIN_SIMILARITY}: {accepted.mean():.3f} "
              f"(load average {os.getloadavg()[0]:.2f})")
        # What a user would otherwise write: scikit-image's SSIM of the two thumbnails, pair by pair, one process
        # (no registration: a turned or cropped copy is compared misaligned).
        from skimage.metrics import structural_similarity

        start = time.perf_counter()
        ssim = np.array([structural_similarity(thumbs[i], thumbs[j], data_range=255) for i, j in zip(x, y)])
        plain = time.perf_counter() - start
        print(f"  skimage structural_similarity, 1 process: {len(x) / plain:,.0f} pairs/s; fusekit is "
              f"{plain / seconds:.2f}x its speed; SSIM of these pairs: median {np.median(ssim):.3f}, "
              f"min {ssim.min():.3f}, max {ssim.max():.3f}")


if __name__ == "__main__":
    main()
