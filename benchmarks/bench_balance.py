"""Benchmark: `fusekit balance` on 100,000 generated faces (112x112 RGB PNG crops, the faces stage's default size),
and the shard writer's speed in MB/s beside HF `datasets`' own Parquet writer on the same rows.

    python benchmarks/bench_balance.py [--faces 100000] [--distinct 3000] [--workers 2]

Faces tables are written first (not timed), as the faces and dedupe stages would leave them: a skewed class mix,
FER-2013 rows with official splits, KDEF subjects, crawl pictures, K-drama clips, and a decisions table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads


def _cpu(usage) -> float:
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=3000, help="distinct images reused across the faces")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--noise", type=float, default=10.0, help="pixel noise: 10 gives ~20 KB PNGs like real crops")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = parser.parse_args()

    from fusekit.balance import BalanceConfig, run_balance
    from fusekit.balance import synthetic as syn
    from fusekit.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="bench-balance-"))
    try:
        ws = Workspace(root / "ws")
        t = time.perf_counter()
        faces = syn.corpus(args.faces, seed=0, distinct_images=args.distinct, size=args.size, mode="RGB",
                            noise=args.noise)
        syn.write_faces(ws, faces)
        syn.write_decisions(ws, [syn.decision_row(f, phash=f"{i:016x}") for i, f in enumerate(faces)])
        face_mb = sum(len(f["image"]["bytes"]) for f in faces) / 1e6
        print(f"setup: {args.faces:,} faces ({face_mb:,.0f} MB of PNG) written in {time.perf_counter() - t:.1f} s")
        del faces

        import resource

        t = time.perf_counter()
        cpu_self = resource.getrusage(resource.RUSAGE_SELF)
        cpu_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = run_balance(ws, BalanceConfig(seed=0, workers=args.workers))
        seconds = time.perf_counter() - t
        main_cpu = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - _cpu(cpu_self)
        pool_cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - _cpu(cpu_kids)
        shard_mb = sum(s.bytes for s in report.shards.values()) / 1e6
        copies = sum(report.augmented.values())
        print(f"balance: {report.used:,} faces -> {report.rows:,} rows ({copies:,} augmented copies), "
              f"{sum(len(s.files) for s in report.shards.values())} shards, {shard_mb:,.0f} MB in {seconds:.1f} s "
              f"({report.rows / seconds:,.0f} rows/s, {shard_mb / seconds:,.0f} MB/s end to end)")
        # On a shared machine wall time says little; CPU time says what an idle 2-core box needs at least.
        print(f"balance CPU: main process {main_cpu:.1f} s, augmentation workers {pool_cpu:.1f} s; on an idle "
              f"{args.workers}-core box at least {max(main_cpu, (main_cpu + pool_cpu) / args.workers):.1f} s wall; "
              f"load average during the run: {os.getloadavg()[0]:.1f}")

        # Shard writing alone: the same rows (already in memory) through fusekit's writer and through HF datasets.
        files = sorted(str(p) for p in (ws.root / "dataset" / "data").glob("train-*.parquet"))
        table = pads.dataset(files, format="parquet").to_table()
        mb = table.nbytes / 1e6
        from fusekit.balance.shards import ShardWriter, shard_schema

        out = root / "ours"
        out.mkdir()
        t = time.perf_counter()
        writer = ShardWriter(out, "train", shard_schema(report.classes), 500_000_000, 100_000_000)
        for batch in table.to_batches(4096):
            writer.write(__import__("pyarrow").Table.from_batches([batch]))
        writer.finish()
        ours = time.perf_counter() - t
        print(f"shard write (fusekit): {mb:,.0f} MB in {ours:.2f} s = {mb / ours:,.0f} MB/s")
        try:
            import datasets
        except ImportError:
            print("shard write (HF datasets): not installed")
            return
        ds = datasets.Dataset(table.replace_schema_metadata(table.schema.metadata))
        t = time.perf_counter()
        datasets.disable_progress_bars()
        ds.to_parquet(str(root / "hf.parquet"))
        theirs = time.perf_counter() - t
        print(f"shard write (HF datasets {datasets.__version__} Dataset.to_parquet): {mb / theirs:,.0f} MB/s; "
              f"fusekit is {theirs / ours:.2f}x its speed")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
