"""What a face looks like to the audit: a feature vector per aligned crop.

Two sources:

- ``builtin`` (no trained run needed): HOG of the 48 px grey crop (9 orientations, 8 px cells, 2x2 blocks: 900
  values, the classic expression descriptor) beside the crop itself at 24 px (576 values). The heads standardise and
  project them with PCA, fitted inside each fold.
- a trained run (``--run NAME``): the input of the run's softmax layer (``predictions_dense``, its penultimate
  activations) for every face, prepared exactly as the trainer prepares it (``fusekit.train.decode.prepare``, /255).
"""

from __future__ import annotations

import io
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

BUILTIN = "builtin:hog+pixels"
HOG_SIZE = 48
PIXEL_SIZE = 24


def _grey(data: bytes | None, size: int) -> np.ndarray:
    if not data:
        return np.zeros((size, size), np.float32)
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("L")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, np.float32) / 255.0


def builtin_features(crops: Sequence[bytes | None]) -> np.ndarray:
    """HOG (48 px) + pixels (24 px) of each crop: an (n, 1476) float32 array."""
    from skimage.feature import hog

    out = np.zeros((len(crops), 900 + PIXEL_SIZE * PIXEL_SIZE), np.float32)
    for i, data in enumerate(crops):
        grey = _grey(data, HOG_SIZE)
        out[i, :900] = hog(grey, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                           block_norm="L2-Hys", feature_vector=True)
        small = np.asarray(Image.fromarray((grey * 255).astype(np.uint8)).resize((PIXEL_SIZE, PIXEL_SIZE),
                                                                                 Image.BILINEAR), np.float32)
        out[i, 900:] = small.ravel() / 255.0
    return out


class RunFeatures:
    """The penultimate activations of a trained run's model."""

    def __init__(self, workspace, run: str | None, checkpoint: str = "best") -> None:
        import keras

        from fusekit.train.evaluate import checkpoint_path, resolve_run
        from fusekit.train.models import load_model
        from fusekit.train.runs import workspace_root

        found = resolve_run(workspace_root(workspace), run)
        self.name = found.name
        config = found.config()
        self.size, self.channels = int(config["input_size"]), int(config["channels"])
        model = load_model(checkpoint_path(found, checkpoint), compile=False)
        try:
            head = model.get_layer("predictions_dense")
        except ValueError:  # not one of fusekit's heads: the layer before the last
            head = model.layers[-1]
        self.model = keras.Model(model.inputs, head.input)

    @property
    def description(self) -> str:
        return f"run:{self.name}"

    def __call__(self, crops: Iterable[bytes | None], batch_size: int = 256) -> np.ndarray:
        import keras

        from fusekit.train.decode import prepare

        crops = list(crops)
        chunks = []
        for start in range(0, len(crops), batch_size):
            images = []
            for data in crops[start:start + batch_size]:
                if data:
                    with Image.open(io.BytesIO(data)) as img:
                        images.append(prepare(img, self.size, self.channels))
                else:
                    images.append(np.zeros((self.size, self.size, self.channels), np.uint8))
            batch = np.stack(images).astype(np.float32) / 255.0
            chunks.append(np.asarray(keras.ops.convert_to_numpy(self.model.predict_on_batch(batch)), np.float32))
        if not chunks:
            return np.zeros((0, 0), np.float32)
        return np.concatenate([c.reshape(len(c), -1) for c in chunks])
