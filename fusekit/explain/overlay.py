"""Pictures of Grad-CAM maps: a face and its map blended over it, tiled into one PNG per class."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

TILE = 96  # pixels per face in the grids


def colour(heat: np.ndarray) -> np.ndarray:
    """A map in [0, 1] (H x W) -> RGB uint8 through matplotlib's ``jet`` (blue = 0, red = 1)."""
    import matplotlib

    rgba = matplotlib.colormaps["jet"](np.clip(heat, 0.0, 1.0))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def blend(face: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``face`` (H x W x C uint8, grey or RGB) with its map blended over it, RGB uint8."""
    rgb = np.repeat(face, 3, axis=2) if face.shape[2] == 1 else face[..., :3]
    return (rgb * (1 - alpha) + colour(heat) * alpha + 0.5).astype(np.uint8)


def _tile(arr: np.ndarray, side: int) -> Image.Image:
    image = Image.fromarray(arr if arr.ndim == 3 and arr.shape[2] == 3 else arr[..., 0])
    return image.convert("RGB").resize((side, side), Image.BILINEAR)


def class_grid(faces: Sequence[np.ndarray], heats: Sequence[np.ndarray], side: int = TILE) -> bytes:
    """One column per face: the face on top, the face with its map below; PNG bytes."""
    grid = Image.new("RGB", (max(1, len(faces)) * (side + 2), 2 * side + 2), (255, 255, 255))
    for i, (face, heat) in enumerate(zip(faces, heats)):
        grid.paste(_tile(face, side), (i * (side + 2), 0))
        grid.paste(_tile(blend(face, heat), side), (i * (side + 2), side + 2))
    buf = io.BytesIO()
    grid.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
