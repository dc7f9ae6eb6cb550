"""Hashing throughput: fusekit's batched pHash (+ mirror + probes + quality) vs imagededup's PHash.encode_images,
on the same folder of 35,000 48x48 JPEGs. imagededup needs torch, so it runs in its own venv (never a fusekit
dependency):  python3 -m venv /work/bench-venv && /work/bench-venv/bin/pip install torch==2.13.0 imagededup

    python benchmarks/bench_dedupe_hash.py [--n 35000] [--dir /tmp/dedupe-bench-jpegs] [--imagededup-python PY]
                                           [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

IMAGEDEDUP = """
import sys, time, types
# imagededup's package init imports its CNN method, and the torchvision wheel beside torch 2.13.0 CPU fails to load
# its ops here ("operator torchvision::nms does not exist"); hashing needs neither, so a stand-in CNN module is used.
for name in ("imagededup.methods.cnn", "imagededup.utils.models", "imagededup.utils.data_generator"):
    sys.modules[name] = types.SimpleNamespace(CNN=None, CustomModel=None, img_dataloader=None)
from imagededup.methods import PHash
ph = PHash(verbose=False)
t = time.perf_counter()
enc = ph.encode_images(image_dir=sys.argv[1], num_enc_workers=2)
print(len(enc), time.perf_counter() - t)
"""


def make_folder(folder: Path, n: int) -> None:
    from helpers import image_bytes

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) == n:
        return
    for i in range(n):
        (folder / f"{i:06d}.jpg").write_bytes(image_bytes(i, (48, 48), "JPEG", "L"))


FUSEKIT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from fusekit.dedupe import hashing
files = sorted(Path(sys.argv[1]).glob("*.jpg"))
t = time.perf_counter()
if sys.argv[3] == "files":  # the same job as imagededup's: a folder in, hashes out; the workers read the files
    parts = (hashing.Files(files[s:s + 4096]) for s in range(0, len(files), 4096))
else:  # as the stage hands over a faces part: bytes read here (there: a Parquet column), hashed by the workers
    parts = ([p.read_bytes() for p in files[s:s + 4096]] for s in range(0, len(files), 4096))
batches = list(hashing.hash_parts(parts, workers=2, total=len(files)))
assert sum(len(b.ok) for b in batches) == len(files) and all(b.ok.all() for b in batches)
print(len(files), time.perf_counter() - t)
"""


def timed(python: str, code: str, *argv: str) -> tuple[int, float]:
    """(files, seconds) from a fresh interpreter: both tools pay their own worker start-up, not their imports."""
    done = subprocess.run([python, "-c", code, *argv], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{python} failed: {done.stderr[-800:]}")
    count, seconds = done.stdout.split()[-2:]
    return int(count), float(seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=35000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/dedupe-bench-jpegs"))
    ap.add_argument("--imagededup-python", default="/work/bench-venv/bin/python")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each; the best of each is compared")
    args = ap.parse_args()
    make_folder(args.dir, args.n)
    root = str(Path(__file__).resolve().parents[1])
    ours, handed, theirs = [], [], []
    # The box is shared: runs alternate so both tools see the same spread of load, and the best run of each counts.
    for rep in range(args.repeat):
        for mode, what in (("files", "files read by the workers"), ("bytes", "bytes read by the main process")):
            n, t = timed(sys.executable, FUSEKIT, str(args.dir), root, mode)
            (ours if mode == "files" else handed).append(t)
            print(f"run {rep + 1}: fusekit hash_parts (pHash + mirror + 7 probes + thumbnail + quality, 2 worker "
                  f"processes, {what}): {n:,} files in {t:.2f} s = {n / t:,.0f} img/s "
                  f"(load average {os.getloadavg()[0]:.2f})")
        n2, t2 = timed(args.imagededup_python, IMAGEDEDUP, str(args.dir))
        theirs.append(t2)
        print(f"run {rep + 1}: imagededup PHash.encode_images (2 workers): {n2:,} files in {t2:.2f} s = "
              f"{n2 / t2:,.0f} img/s (load average {os.getloadavg()[0]:.2f})")
    best_ours, best_handed, best_theirs = min(ours), min(handed), min(theirs)
    print(f"best of {args.repeat}: fusekit {n / best_ours:,.0f} img/s ({n / best_handed:,.0f} with bytes handed "
          f"over), imagededup {n2 / best_theirs:,.0f} img/s; ratio: fusekit is {best_theirs / best_ours:.2f}x "
          f"imagededup ({best_theirs / best_handed:.2f}x with bytes handed over; per run: "
          f"{', '.join(f'{b / a:.2f}x' for a, b in zip(ours, theirs))})")


if __name__ == "__main__":
    main()
