"""CPU training speed of `cnn2` (seed 004's Model 2) at 48x48 grey, side by side: Keras backends and XLA.

Each variant runs in its own process (a Keras backend is chosen at import) on the same in-memory batches, with
fusekit's own model and optimizer (`build_model("cnn2")`, `compile_model` with the `cnn-baseline` preset: Adam 1e-3,
batch 64), and reports training images/s after a warm-up epoch (compilation excluded). A last row times the input
pipeline alone (`fusekit.train.data.InputPipeline` over synthetic 112 px shards, the `cnn-baseline` conversion to 48
grey, with and without the on-line augmentation), so training and input can be compared: the input must be faster.

    python benchmarks/bench_train_cpu.py [--steps 60] [--variants tensorflow,tensorflow-xla,jax,torch]

Variants whose backend is not installed are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = {
    # name: (KERAS_BACKEND, jit_compile)
    "tensorflow": ("tensorflow", False),
    "tensorflow-xla": ("tensorflow", True),
    "jax": ("jax", True),
    "torch": ("torch", False),
    # oneDNN runs bfloat16 convolutions on CPUs with AVX512_BF16 / AMX; the weights stay float32
    "tensorflow-bf16": ("tensorflow", False),
}


def _one(variant: str, steps: int, model_name: str) -> dict:
    """Runs in the child: train ``steps`` batches twice (warm-up, timed) and return images/s of the timed pass."""
    import numpy as np

    import keras

    from fusekit.train.config import TrainConfig, resolve
    from fusekit.train.loop import make_loss, make_optimizer
    from fusekit.train.models import build_model

    keras.utils.set_random_seed(0)
    if variant.endswith("-bf16"):
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    config = resolve(TrainConfig(preset="cnn-baseline", model=model_name))
    model = build_model(config.model, 7, 48, 1, 0.0, None)
    jit = VARIANTS[variant][1]
    model.compile(optimizer=make_optimizer(config, steps), loss=make_loss(config), metrics=["accuracy"],
                  jit_compile=jit if keras.backend.backend() != "torch" else False)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (steps * 64, 48, 48, 1)).astype("float32")
    y = rng.integers(0, 7, steps * 64).astype("int32")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)  # compile + warm caches
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - t0
    return {"variant": variant, "images_per_s": steps * 64 / seconds, "seconds": seconds,
            "policy": keras.mixed_precision.global_policy().name,
            "backend": keras.backend.backend(), "jit_compile": jit}


def _pipeline(images: int, augment: str) -> float:
    """images/s of the input pipeline alone (cnn-baseline: 48 grey from 112 px shards), after its first batch."""
    from _train_shards import write_shards

    from fusekit.train.data import InputPipeline, InputSpec, open_shards
    from fusekit.train.decode import Augment

    root = Path(tempfile.gettempdir()) / f"fusekit-bench-cpu-{images}"
    write_shards(root, {"train": images, "val": 64})
    shards = open_shards(root)
    spec = InputSpec(size=48, channels=1, batch_size=64, augment=Augment.parse(augment), loader="auto")
    pipe = InputPipeline(shards, spec)
    rates = []
    for epoch in range(2):  # the second epoch is what training sees (cached where the shards fit in memory)
        it = iter(pipe.train(epoch))
        next(it)
        n, t0 = 0, time.perf_counter()
        for batch in it:
            n += len(batch[1])
        rates.append(n / (time.perf_counter() - t0))
    pipe.close()
    return rates[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="batches of 64 per timed pass")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--model", default="cnn2")
    ap.add_argument("--images", type=int, default=4000, help="synthetic shard rows for the input-pipeline row")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(_one(args.child, args.steps, args.model)))
        return
    print(f"{args.model} at 48x48 grey, batch 64, Adam (cnn-baseline); {os.cpu_count()} CPUs; "
          f"{args.steps} timed steps per variant")
    base = None
    for variant in args.variants.split(","):
        backend = VARIANTS[variant][0]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(args.steps),
                               "--model", args.model], env=env, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{variant:16s} skipped: {tail[:160]}")
            continue
        result = json.loads(line[7:])
        base = base or result["images_per_s"]
        print(f"{variant:16s} {result['images_per_s']:8.1f} images/s  ({result['images_per_s'] / base:.2f}x the "
              f"first row)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for augment in ("none", "flip,rotate=10,crop=4"):
        print(f"input pipeline alone, augment {augment}: {_pipeline(args.images, augment):8.1f} images/s")


if __name__ == "__main__":
    main()
