"""GPU training throughput: images/s of `fusekit train` for resnet50 and densenet121 at 112 px, next to the input
pipeline's own rate (the loader must outrun the model, or the GPU waits).

Self-contained: it writes its own synthetic shards, and needs only keras, one backend (jax, tensorflow or torch),
numpy, pyarrow and pillow, plus this repository on the path. Run it on the GPU machine, e.g.

    pip install "jax[cuda12]" keras pyarrow pillow
    KERAS_BACKEND=jax python benchmarks/bench_train_gpu.py
    KERAS_BACKEND=tensorflow python benchmarks/bench_train_gpu.py     # tf.data loader

Each model trains 2 epochs with the `paper` preset (SGD, L2, flips + rotations); the figure is the second epoch's
training images/s (compilation excluded, validation excluded). `--smoke` runs a tiny model on a few images (CPU check).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_shards import write_shards  # noqa: E402


def loader_rate(data: Path, size: int, batch: int, augment: str, workers: int, loader: str) -> tuple[float, str]:
    from fusekit.train.data import InputPipeline, InputSpec, open_shards
    from fusekit.train.decode import Augment

    spec = InputSpec(size=size, channels=3, batch_size=batch, augment=Augment.parse(augment), workers=workers,
                     loader=loader)
    pipeline = InputPipeline(open_shards(data), spec)
    try:
        for _ in pipeline.train(0):  # warm-up epoch: worker start-up, tf.data tracing
            pass
        n, t0 = 0, time.perf_counter()
        for batch_ in pipeline.train(1):
            n += len(batch_[1])
        return n / (time.perf_counter() - t0), pipeline.loader
    finally:
        pipeline.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,densenet121")
    parser.add_argument("--images", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--loader", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "fusekit-bench-train-gpu")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 512 images: checks the script on a CPU")
    args = parser.parse_args()
    if args.smoke:
        args.models, args.images, args.batch_size = "tiny", 512, 64

    import keras

    from fusekit.train import TrainConfig, run_train

    data = write_shards(args.dir / f"shards-{args.images}", {"train": args.images, "val": 2 * args.batch_size},
                        per_shard=2048)
    augment = "flip,rotate=5"
    rate, loader = loader_rate(data, args.size, args.batch_size, augment, args.workers, args.loader)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}; {args.images} images at {args.size} px, "
          f"batch {args.batch_size}, augment {augment}")
    print(f"input pipeline alone ({loader} loader, {args.workers} workers): {rate:,.0f} images/s")
    rows = []
    for model in args.models.split(","):
        workspace = args.dir / f"ws-{model}"
        shutil.rmtree(workspace, ignore_errors=True)
        report = run_train(workspace, TrainConfig(
            data=data, model=model, preset="paper", input_size=args.size, channels=3, batch_size=args.batch_size,
            epochs=2, patience=0, run=model, keep_checkpoints=1, workers=args.workers, loader=args.loader,
            precision=args.precision, verbose=False))
        train = report.history[-1]["images_per_s"]
        rows.append((model, report.params, report.device, report.precision, train))
        print(f"{model:12s} {report.params:>11,} params  {report.device}, {report.precision}: {train:,.0f} "
              f"images/s training (epoch 2)  input/training = {rate / train:.2f}"
              + ("  INPUT-BOUND" if rate < 1.1 * train else ""))


if __name__ == "__main__":
    main()
