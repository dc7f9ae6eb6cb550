"""The pHash neighbour search at scale: N random 64-bit hashes plus planted near-duplicates, threshold 8.

Times fusekit's search (multi-index hashing), checks the result against faiss's brute-force flat range search on a
sample of queries (faiss is not timed), and reports peak memory (ru_maxrss).

    python benchmarks/bench_dedupe_search.py [--sizes 10000,100000,1000000] [--queries-per-face 9]

--queries-per-face 9 = plain + mirror hash + the 7 geometric probes (the stage's default); 2 = --no-probes. The extra
queries are random codes (no repeats to skip), so this is the cost without the stage's repeated-code saving. The
search timed is the stage's own (``stage._search_unique``: distinct query codes against one index of plain hashes).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusekit.dedupe import search  # noqa: E402
from fusekit.dedupe.stage import DedupeConfig, _search_unique  # noqa: E402


def hashes(n: int, rng: np.random.Generator, planted: float = 0.01) -> np.ndarray:
    codes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = int(n * planted)
    src = rng.integers(k, n, k)
    flips = np.zeros(k, np.uint64)
    nbits = rng.integers(0, 9, k)
    for j in range(k):
        for bit in rng.choice(64, int(nbits[j]), replace=False):
            flips[j] |= np.uint64(1) << np.uint64(int(bit))
    codes[:k] = codes[src] ^ flips
    return codes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries-per-face", type=int, default=9)
    ap.add_argument("--threshold", type=int, default=8)
    ap.add_argument("--sample", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for n in [int(s) for s in args.sizes.split(",")]:
        db = hashes(n, rng)
        extra = [rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
                 for _ in range(args.queries_per_face - 1)]
        queries = np.concatenate([db] + extra)
        t = time.perf_counter()
        q, d = _search_unique(queries, db, DedupeConfig(threshold=args.threshold, search_method="mih"))
        took = time.perf_counter() - t
        pairs = int(((q % n) != d).sum())
        sample = rng.choice(len(queries), min(args.sample, len(queries)), replace=False)
        fq, fd = search.flat_pairs(queries[sample], db, args.threshold)
        ref = set(zip(sample[fq].tolist(), fd.tolist()))
        asked = set(sample.tolist())
        got = {(a, b) for a, b in zip(q.tolist(), d.tolist()) if a in asked}
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"N={n:,} queries={len(queries):,} threshold={args.threshold}: mih {took:.1f} s, {pairs:,} pairs "
              f"(non-self), sample of {len(sample):,} queries identical to faiss flat brute force: {got == ref}, "
              f"peak RSS {rss:,.0f} MiB; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
