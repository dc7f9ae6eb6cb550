"""The runner's distributors side by side: the same pure workers (dedupe's hashing of one part, the faces stage's
MTCNN chunk) on the same inputs, through local processes (``fusekit.runner.local_processes``) and through a local Ray
cluster (``fusekit.distribute_ray.ray_tasks``, one task per part), each pass timed cold (pool or Ray workers starting,
TensorFlow loading in each) and warm (the same pool or Ray workers again). The warm difference divided by the parts
is Ray's overhead per part.

    python benchmarks/bench_runner.py [--workers 2] [--hash-n 16384] [--hash-part 1024] [--faces-n 192]
                                      [--faces-part 16] [--address HOST:PORT]

Without ``--address`` a head node with ``--workers`` CPUs is started on 127.0.0.1 (and stopped) by the script.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def hash_inputs(n: int, part: int) -> list[list[bytes]]:
    from helpers import image_bytes

    crops = [image_bytes(i, (48, 48), "PNG", "L") for i in range(n)]
    return [crops[s:s + part] for s in range(0, n, part)]


def hash_worker(crops: list[bytes]) -> int:
    from fusekit.dedupe import hashing

    return int(hashing._hash_part(crops).ok.sum())


def faces_inputs(n: int, part: int) -> tuple[list[list[dict]], object]:
    import io

    import numpy as np

    from fusekit.demo import frame, load_photos
    from fusekit.demo.corpus import _photo
    from fusekit.faces.policies import FacesConfig
    from fusekit.faces.stage import UnitContext

    photos = load_photos()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        buffer = io.BytesIO()
        frame(_photo(photos, i), rng, (320, 320), 0.42, grey=False, background=(90, 100, 120)).save(buffer, "JPEG")
        rows.append({"id": f"bench/frames/{i}", "dataset": "bench", "variant": "frames", "source_path": None,
                     "source_row": i, "image": {"bytes": buffer.getvalue(), "path": f"{i}.jpg"}, "split": "train",
                     "subject": None, "group": None, "raw_label": None, "label": "happy", "label_id": 3,
                     "label_source": "bench", "sha256": None, "face_box": None, "terms": "bench", "extra": None})
    config = FacesConfig()
    ctx = UnitContext("bench--frames", "bench", "frames", "full_frame", config.settings("full_frame"),
                      config.settings("full_frame"), None, 112)
    return [rows[s:s + part] for s in range(0, n, part)], ctx


def timed(distribute, worker, parts) -> float:
    started = time.perf_counter()
    results = [r for _, r in distribute(worker, enumerate(parts))]
    assert len(results) == len(parts)
    return time.perf_counter() - started


def start_head(cpus: int) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                             "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus),
                             "--include-dashboard", "false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    for _ in range(90):
        probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r}); ray.shutdown()"],
                               env=env, capture_output=True)
        if probe.returncode == 0:
            return address, head
        time.sleep(1)
    os.killpg(head.pid, signal.SIGTERM)
    raise SystemExit("the Ray head did not start")


def report(rows: list[tuple]) -> None:
    print(f"{'work':8} {'distributor':16} {'parts':>5} {'items':>6} {'cold s':>7} {'warm s':>7} {'items/s warm':>12}")
    for work, how, n_parts, items, cold, warm in rows:
        print(f"{work:8} {how:16} {n_parts:5d} {items:6d} {cold:7.2f} {warm:7.2f} {items / warm:12.1f}")
    for work in ("hashing", "faces"):
        local = next(r for r in rows if r[0] == work and r[1] == "local processes")
        remote = next(r for r in rows if r[0] == work and r[1] == "ray tasks")
        print(f"{work}: Ray overhead per part (warm) {(remote[5] - local[5]) / local[2] * 1000:+.1f} ms "
              f"over {local[2]} parts of {local[3] // local[2]}; cold start {remote[4] - remote[5]:.1f} s "
              f"(local {local[4] - local[5]:.1f} s)")


def stop(head: subprocess.Popen) -> None:
    """Stop the head this script started (its own process group), by force if it takes longer than a minute."""
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hash-n", type=int, default=16384)
    parser.add_argument("--hash-part", type=int, default=1024)
    parser.add_argument("--faces-n", type=int, default=192)
    parser.add_argument("--faces-part", type=int, default=16)
    parser.add_argument("--address", default=None)
    args = parser.parse_args()

    from fusekit.distribute_ray import ray_tasks
    from fusekit.faces.stage import _init_worker, _work_tables
    from fusekit.runner import _one_thread_each, local_processes

    hash_parts = hash_inputs(args.hash_n, args.hash_part)
    face_parts, ctx = faces_inputs(args.faces_n, args.faces_part)
    face_worker = partial(_work_tables, ctx=ctx)
    head = None
    address = args.address
    if address is None:
        address, head = start_head(args.workers)
    rows: list[tuple] = []
    try:
        # one BLAS and one OpenCV thread a worker, as the stage's pool has (runner.worker_pool); Ray sets
        # OMP_NUM_THREADS=1 in its workers itself
        with local_processes(args.workers, preload=["fusekit.dedupe.hashing"], initializer=_one_thread_each) as local:
            rows.append(("hashing", "local processes", len(hash_parts), args.hash_n,
                         timed(local, hash_worker, hash_parts), timed(local, hash_worker, hash_parts)))
        with local_processes(args.workers, fresh=True, initializer=_init_worker, initargs=(1,)) as local:
            rows.append(("faces", "local processes", len(face_parts), args.faces_n,
                         timed(local, face_worker, face_parts), timed(local, face_worker, face_parts)))
        with ray_tasks(address) as remote:
            rows.append(("hashing", "ray tasks", len(hash_parts), args.hash_n,
                         timed(remote, hash_worker, hash_parts), timed(remote, hash_worker, hash_parts)))
            rows.append(("faces", "ray tasks", len(face_parts), args.faces_n,
                         timed(remote, face_worker, face_parts), timed(remote, face_worker, face_parts)))
        report(rows)
    finally:
        if head is not None:
            stop(head)


if __name__ == "__main__":
    main()
