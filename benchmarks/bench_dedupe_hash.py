"""Hashing throughput: fusekit's batched pHash (+ mirror + probes + quality) vs imagededup's PHash.encode_images,
on the same folder of 35,000 48x48 JPEGs. imagededup needs torch, so it runs in its own venv (never a fusekit
dependency):  python3 -m venv /work/bench-venv && /work/bench-venv/bin/pip install torch==2.13.0 imagededup

    python benchmarks/bench_dedupe_hash.py [--n 35000] [--dir /tmp/dedupe-bench-jpegs] [--imagededup-python PY]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=35000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/dedupe-bench-jpegs"))
    ap.add_argument("--imagededup-python", default="/work/bench-venv/bin/python")
    args = ap.parse_args()
    make_folder(args.dir, args.n)
    from fusekit.dedupe import hashing

    files = sorted(args.dir.glob("*.jpg"))
    t = time.perf_counter()
    batch_size = 4096
    for start in range(0, len(files), batch_size):
        hashing.hash_images([p.read_bytes() for p in files[start:start + batch_size]], workers=2)
    ours = time.perf_counter() - t
    print(f"fusekit hash_images: {len(files):,} files in {ours:.2f} s = {len(files) / ours:,.0f} img/s "
          f"(pHash + mirror + {len(hashing.PROBES)} probes + quality)")
    done = subprocess.run([args.imagededup_python, "-c", IMAGEDEDUP, str(args.dir)], capture_output=True, text=True)
    if done.returncode:
        print("imagededup failed:", done.stderr[-500:])
        return
    count, theirs = done.stdout.split()[-2:]
    theirs_s = float(theirs)
    print(f"imagededup PHash.encode_images (2 workers): {int(count):,} files in {theirs_s:.2f} s = "
          f"{int(count) / theirs_s:,.0f} img/s")
    print(f"ratio: fusekit is {theirs_s / ours:.2f}x imagededup (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
