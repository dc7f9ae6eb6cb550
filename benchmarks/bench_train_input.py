"""Training input throughput: images/s from Parquet shards to float batches, on this machine's cores.

Compares fusekit's two loaders (tf.data; worker processes) with what a user would otherwise write: Hugging Face
`datasets` reading the same shards (`Dataset.from_parquet(...).with_format("numpy")`, images decoded in the main
process) and a plain pyarrow + Pillow loop. Each loader does the same work per image: decode the 112 px PNG, (for the
augmenting rows) flip + rotate, scale to float32, batch 64.

    python benchmarks/bench_train_input.py [--images 4000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _train_shards import write_shards  # noqa: E402


def _rate(batches, limit: int) -> float:
    """images/s over the stream after its first batch (start-up excluded)."""
    it = iter(batches)
    first = next(it)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += len(batch[1]) if isinstance(batch, tuple) else len(batch)
        if n >= limit:
            break
    del first
    return n / (time.perf_counter() - t0)


def fusekit_rate(data: Path, loader: str, size: int, channels: int, augment: str, workers: int, limit: int) -> float:
    from fusekit.train.data import InputPipeline, InputSpec, open_shards
    from fusekit.train.decode import Augment

    spec = InputSpec(size=size, channels=channels, batch_size=64, augment=Augment.parse(augment), loader=loader,
                     workers=workers, shuffle_buffer=2048)
    pipeline = InputPipeline(open_shards(data), spec)
    try:
        _rate(pipeline.train(0), 256)  # warm up: tf.data tracing, worker start-up
        return _rate(pipeline.train(1), limit)
    finally:
        pipeline.close()


def hf_datasets_rate(data: Path, limit: int) -> float:
    from datasets import Dataset

    files = sorted(str(p) for p in (data / "data").glob("train-*.parquet"))
    ds = Dataset.from_parquet(files).with_format("numpy")  # the Image feature decodes with Pillow

    def batches():
        for batch in ds.iter(batch_size=64):
            images = batch["image"]
            x = np.stack([np.asarray(im, np.float32) for im in images]) / 255.0
            yield x, batch["label"]

    return _rate(batches(), limit)


def plain_loop_rate(data: Path, limit: int) -> float:
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    def batches():
        for f in sorted((data / "data").glob("train-*.parquet")):
            for rb in pq.ParquetFile(f).iter_batches(batch_size=64, columns=["image", "label"]):
                blobs = rb.column(0).field("bytes").to_pylist()
                x = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.float32) for b in blobs]) / 255
                yield x, rb.column(1).to_numpy()

    return _rate(batches(), limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "fusekit-bench-train-input")
    args = parser.parse_args()
    data = write_shards(args.dir / f"n{args.images}", {"train": args.images, "val": 64})
    limit = args.images - 256
    print(f"{args.images} synthetic 112 px PNG faces in {len(list((data / 'data').glob('train-*')))} shards; "
          f"{os.cpu_count()} CPU cores; batch 64")
    rows = [
        ("fusekit tf.data, 112 RGB, flip+rotate", fusekit_rate(data, "tf", 112, 3, "flip,rotate=5", 0, limit)),
        ("fusekit tf.data, 112 RGB, no augmentation", fusekit_rate(data, "tf", 112, 3, "none", 0, limit)),
        ("fusekit tf.data, 48 grey (cnn-baseline)", fusekit_rate(data, "tf", 48, 1, "none", 0, limit)),
        (f"fusekit worker processes ({args.workers}), 112 RGB, flip+rotate",
         fusekit_rate(data, "workers", 112, 3, "flip,rotate=5", args.workers, limit)),
        (f"fusekit worker processes ({args.workers}), 112 RGB, no augmentation",
         fusekit_rate(data, "workers", 112, 3, "none", args.workers, limit)),
        ("HF datasets .with_format('numpy'), 112 RGB, no augmentation", hf_datasets_rate(data, limit)),
        ("pyarrow + Pillow loop, 112 RGB, no augmentation", plain_loop_rate(data, limit)),
    ]
    hf = rows[5][1]
    width = max(len(r[0]) for r in rows)
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:8,.0f} images/s  {rate / hf:5.2f}x HF datasets")


if __name__ == "__main__":
    main()
