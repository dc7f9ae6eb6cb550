"""Benchmark: `fusekit report` on a workspace of generated faces (112x112 RGB PNG crops, as the faces stage writes),
with decisions (a duplicate group every 10 faces, spanning datasets) and, with --balance, the shards.

    python benchmarks/bench_report.py [--faces 100000] [--distinct 3000] [--balance]

The tables are written first (not timed); the figure is the wall time of `fusekit.report.write_report` and the
size of the page.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=3000, help="distinct images reused across the faces")
    parser.add_argument("--balance", action="store_true", help="also build the shards (slow) so the page has them")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = parser.parse_args()

    from fusekit.balance import synthetic as syn
    from fusekit.report import write_report
    from fusekit.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        ws = Workspace(root / "ws")
        t = time.perf_counter()
        faces = syn.corpus(args.faces, seed=0, distinct_images=args.distinct, size=112, mode="RGB", noise=10.0)
        syn.write_faces(ws, faces)
        decisions = []
        for i, face in enumerate(faces):
            group = f"g{i // 10:07d}" if i % 10 < 3 else None  # 3 of every 10 consecutive faces share a group
            verdict = "drop" if group and i % 10 else "keep"
            decisions.append(syn.decision_row(face, verdict, "near_duplicate" if verdict == "drop" else None, group))
        syn.write_decisions(ws, decisions)
        print(f"setup: {args.faces:,} faces written in {time.perf_counter() - t:.1f} s")
        del faces, decisions
        if args.balance:
            from fusekit.balance import BalanceConfig, run_balance

            t = time.perf_counter()
            run_balance(ws, BalanceConfig(seed=0, workers=2))
            print(f"setup: balance in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        path = write_report(ws, root / "report.html")
        seconds = time.perf_counter() - t
        print(f"report: {args.faces:,} faces -> {path.stat().st_size / 1e3:,.0f} kB page in {seconds:.2f} s")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
