"""Synthetic shards in the balance stage's format for the training benchmarks (NumPy, Pillow and pyarrow only).

Faces are stand-ins: smooth gradients, blobs and sensor noise at 112 px, which PNG compresses about as well as real
aligned faces (20-30 KB each), so decode costs are realistic.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def face_like(seed: int, size: int = 112) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.zeros((size, size, 3), np.float32)
    for c in range(3):
        img[..., c] = (xx * rng.uniform(0.2, 1.5) + yy * rng.uniform(0.2, 1.5)) % 255
    for _ in range(6):
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(5, size / 3)]
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_shards(root: Path, counts: dict[str, int], per_shard: int = 1000, size: int = 112) -> Path:
    """``root/data/{split}-{i:05d}-of-{n:05d}.parquet`` + README.md + class_weights.json; reuses what is there."""
    data = root / "data"
    if (root / "README.md").is_file():
        return root
    data.mkdir(parents=True, exist_ok=True)
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": CLASSES}}
    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64()),
                        ("label_name", pa.string()), ("dataset", pa.string()), ("source_id", pa.string())],
                       metadata={b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    seed = 0
    for split, n in counts.items():
        shards = max(1, -(-n // per_shard))
        for k in range(shards):
            rows = []
            for i in range(k * per_shard, min(n, (k + 1) * per_shard)):
                seed += 1
                label = seed % len(CLASSES)
                rows.append({"image": {"bytes": face_like(seed, size), "path": f"{split}-{i}.png"}, "label": label,
                             "label_name": CLASSES[label], "dataset": "synthetic", "source_id": f"{split}-{i}"})
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), data / f"{split}-{k:05d}-of-{shards:05d}.parquet",
                           compression="zstd")
    (root / "class_weights.json").write_text(json.dumps({c: 1.0 for c in CLASSES}))
    (root / "README.md").write_text("# synthetic benchmark dataset\n")
    return root
