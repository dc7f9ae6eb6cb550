"""Benchmark of the faces stage (issue 4, item 8). Prints its figures; run from the repository root:

    python benchmarks/bench_faces.py [--frames 48] [--crops 1024] [--workers 1]

1. Frames: 640×480 JPEGs made from the two public-domain photos (skimage's astronaut, matplotlib's grace_hopper),
   the face 1/4 to 1/2 of the frame height, turned a little, some grey. The naive loop a user would write
   (``MTCNN().detect_faces(image)`` with default settings, one image at a time, decoding included) against
   ``fusekit faces`` on the same files ingested as a class folder (full_frame policy: decode, detect, align, refine,
   PNG crops, hashes, Parquet parts). Both after a warm-up (TensorFlow loaded, XLA shapes compiled): the steady state
   a large dataset sees. The first (cold) fusekit run is printed too. Faces are compared image by image: fusekit's
   face must overlap the naive loop's with box IoU >= 0.9.
2. Pre-cropped: 48×48 grey face crops (FER-2013 style) through the precropped policy; faces per second, steady state.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def iou(a, b) -> float:  # boxes x, y, w, h
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def make_frames(root: Path, n: int, seed: int = 0) -> list[Path]:
    from fusekit.demo import frame, load_photos

    photos = load_photos()
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        name = ("astronaut", "grace_hopper")[k % 2]
        face_height = float(rng.uniform(0.25, 0.5))
        grey = k % 4 == 3
        background = tuple(int(v) for v in rng.integers(60, 200, 3))
        image = frame(photos[name], rng, (640, 480), face_height, grey, background)
        path = root / "happy" / f"frame_{k:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=95)
        paths.append(path)
    return paths


def make_crops(root: Path, n: int, seed: int = 1) -> None:
    from fusekit.demo import face_crop, load_photos

    photos = load_photos()
    rng = np.random.default_rng(seed)
    for k in range(n):
        crop = face_crop(photos[("astronaut", "grace_hopper")[k % 2]], rng, 48, True)
        path = root / "sad" / f"crop_{k:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path)


def ingest(workspace, source: Path, name: str):
    from fusekit.config import IngestConfig
    from fusekit.ingest import run_ingest

    return run_ingest(workspace, IngestConfig(name="folder", source=source, options={"name": name}, faces=False))


def faces_run(tmp: Path, tag: str, source: Path, name: str, config):
    from fusekit.faces import run_faces
    from fusekit.workspace import Workspace

    workspace = Workspace(tmp / f"ws-{tag}")
    ingest(workspace, source, name)
    started = time.perf_counter()
    report = run_faces(workspace, config)
    return workspace, report, time.perf_counter() - started


def bench_frames(tmp: Path, n: int, workers: int) -> None:
    from PIL import Image

    from fusekit.faces import FacesConfig
    from fusekit.records import FACES_SCHEMA

    source = tmp / "frames"
    paths = make_frames(source, n)
    config = FacesConfig(workers=workers)
    _, _, cold = faces_run(tmp, "frames-cold", source, "benchframes", config)  # loads TF, compiles shapes
    workspace, report, seconds = faces_run(tmp, "frames", source, "benchframes", config)

    from mtcnn import MTCNN

    naive = MTCNN()
    naive.detect_faces(np.asarray(Image.open(paths[0]).convert("RGB")))  # warm-up
    started = time.perf_counter()
    naive_faces = [naive.detect_faces(np.asarray(Image.open(p).convert("RGB"))) for p in paths]
    naive_seconds = time.perf_counter() - started

    # MTCNN against itself: the same pictures with the first row and column cut off (a 1-px shift)
    shifted = [naive.detect_faces(np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB"))[1:, 1:]))
               for p in paths]
    self_ious = [max((iou(f["box"], (g["box"][0] + 1, g["box"][1] + 1, *g["box"][2:])) for f in a for g in b),
                     default=0.0) for a, b in zip(naive_faces, shifted)]

    faces = workspace.read("faces", FACES_SCHEMA, columns=["image_id", "box"]).to_pylist()
    ours: dict[str, list] = {}
    for row in faces:
        b = row["box"]
        ours.setdefault(row["image_id"].rsplit("/", 1)[-1], []).append((b["x"], b["y"], b["w"], b["h"]))
    same, ious = 0, []
    for path, found in zip(paths, naive_faces):
        key = path.name
        if not found or key not in ours:
            continue
        best = max(iou(ours[key][0], f["box"]) for f in found)
        ious.append(best)
        same += best >= 0.9
    print(f"frames: {n} 640x480 JPEGs, face 1/4-1/2 of the frame height")
    print(f"  naive loop  MTCNN().detect_faces per image (defaults, decode included): {naive_seconds:6.2f} s "
          f"= {naive_seconds / n * 1000:6.1f} ms/image; faces found in {sum(1 for f in naive_faces if f)}/{n}")
    print(f"  fusekit faces (steady state, workers={report.workers}): {seconds:6.2f} s "
          f"= {seconds / n * 1000:6.1f} ms/image; faces {report.faces}, aligned {report.aligned}, "
          f"rejected {sum(report.rejects.values())}")
    print(f"  fusekit faces, first run in the process (TensorFlow start, XLA compiles): {cold:6.2f} s")
    print(f"  speed-up (steady state): {naive_seconds / seconds:4.1f}x; same faces (IoU >= 0.9): {same}/{n}, "
          f"min IoU {min(ious) if ious else float('nan'):.3f}, mean {np.mean(ious) if ious else float('nan'):.3f}, "
          f"IoU >= 0.75: {sum(v >= 0.75 for v in ious)}/{n}")
    print(f"  MTCNN against itself on the same frames shifted by 1 px: IoU >= 0.9 {sum(v >= 0.9 for v in self_ious)}/{n},"
          f" min {min(self_ious):.3f}, mean {np.mean(self_ious):.3f}")


def bench_crops(tmp: Path, n: int, workers: int) -> None:
    from fusekit.faces import FacesConfig

    source = tmp / "crops"
    make_crops(source, n)
    config = FacesConfig(workers=workers, dataset_policies={"benchcrops": "precropped"})
    faces_run(tmp, "crops-warm", source, "benchcrops", config)
    _, report, seconds = faces_run(tmp, "crops", source, "benchcrops", config)
    kept = report.faces
    print(f"pre-cropped: {n} 48x48 grey crops, precropped policy (workers={report.workers})")
    print(f"  {kept / seconds:6.1f} faces/s ({seconds:.2f} s; {report.aligned} aligned, "
          f"{report.unaligned} kept whole, {sum(report.rejects.values())} rejected)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--crops", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=1, help="0: automatic")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-faces-"))
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start")
    try:
        if args.frames:
            bench_frames(tmp, args.frames, args.workers)
        if args.crops:
            bench_crops(tmp, args.crops, args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at end")


if __name__ == "__main__":
    main()
