"""What a face looks like to the audit: a feature vector per aligned crop.

Two sources:

- ``builtin`` (no trained run needed): HOG of the 48 px grey crop (9 orientations, 8 px cells, 2x2 blocks: 900
  values, the classic expression descriptor) beside the crop itself at 24 px (576 values). The heads standardise and
  project them with PCA, fitted inside each fold.
- a trained run (``--run NAME``): the input of the run's softmax layer (``predictions_dense``, its penultimate
  activations) for every face, prepared exactly as the trainer prepares it: ``fusekit.predict.RunFeatures``, which
  sits above the train stage and is handed to the audit by the api (a stage imports no other stage).
"""

from __future__ import annotations

import io
from typing import Sequence

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
