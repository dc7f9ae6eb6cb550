"""Decode and augment face images with NumPy and Pillow only: the worker side of the process loader, and `predict`.

This module imports neither Keras nor TensorFlow, so that spawned loader workers start in a fraction of a second and
hold no accelerator state. `fusekit.train.data` has the tf.data twin of the same operations (same parameters, same
meaning; the random draws differ between the two, each being deterministic in (seed, epoch, sample index)).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Augment:
    """On-line augmentation. ``rotate`` in degrees (uniform in +-rotate); ``shift`` a fraction of the side;
    ``brightness`` / ``contrast`` / ``color`` multiply by a factor uniform in [1 - v, 1 + v] (the first paper's
    ImageEnhance brightness and colour jitter).

    ``crop`` (pixels): pad each side with ``crop`` black pixels, then cut a random window of the original size (a whole
    pixel shift of up to +-crop, as CIFAR's "pad 4, random crop"); ``zoom``: scale about the centre by a factor uniform
    in [1 - v, 1 + v] (with rotate and shift, one affine warp; >1 magnifies, so the picture is cut back to its size);
    ``erase`` (a probability): random erasing (Zhong et al. 2020, torchvision's defaults): with that probability a
    rectangle of 2-33 % of the area, aspect ratio 0.3-3.3 (log-uniform), is filled with the picture's mean (per
    channel; 0 after the models' standardisation, as torchvision's 0 after normalisation).

    Order: flip, crop, the affine warp (rotate, shift, zoom), brightness, contrast, colour, erase."""

    flip: bool = False
    rotate: float = 0.0
    shift: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    color: float = 0.0
    crop: float = 0.0
    zoom: float = 0.0
    erase: float = 0.0

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    @classmethod
    def parse(cls, text: str | None) -> Augment:
        """``"flip,rotate=5,brightness=0.2"``; ``"none"`` or empty for no augmentation. Bare names take a default."""
        defaults = {"rotate": 10.0, "shift": 0.1, "brightness": 0.2, "contrast": 0.2, "color": 0.2, "crop": 4.0,
                    "zoom": 0.1, "erase": 0.5}
        values: dict[str, object] = {}
        for item in (text or "").replace(" ", "").split(","):
            if not item or item == "none":
                continue
            name, sep, value = item.partition("=")
            name = {"rotation": "rotate", "hflip": "flip", "colour": "color", "saturation": "color",
                    "random_erasing": "erase", "erasing": "erase", "scale": "zoom"}.get(name, name)
            if name == "flip":
                values["flip"] = not sep or value.lower() not in ("0", "false", "no", "off")
            elif name in defaults:
                try:
                    values[name] = float(value) if sep else defaults[name]
                except ValueError:
                    raise ValueError(f"--augment {item!r}: {name} takes a number") from None
            else:
                raise ValueError(f"unknown augmentation {name!r}; use flip, rotate[=DEG], shift[=FRAC], "
                                 f"brightness[=V], contrast[=V], color[=V], crop[=PX], zoom[=V], erase[=P] or none")
        number = {k: float(v) for k, v in values.items() if k != "flip"}  # type: ignore[arg-type]
        crop = number.get("crop", 0.0)
        if crop < 0 or crop != int(crop):
            raise ValueError(f"--augment crop={crop:g}: the padding is a whole number of pixels")
        if not 0.0 <= number.get("erase", 0.0) <= 1.0:
            raise ValueError(f"--augment erase={number['erase']:g}: a probability, 0 to 1")
        if not 0.0 <= number.get("zoom", 0.0) < 1.0:
            raise ValueError(f"--augment zoom={number['zoom']:g}: a fraction below 1 (the scale is 1 +- zoom)")
        for name in ("rotate", "shift", "brightness", "contrast", "color"):
            if number.get(name, 0.0) < 0:
                raise ValueError(f"--augment {name}={number[name]:g}: must not be negative")
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> str:
        parts = ["flip"] if self.flip else []
        parts += [f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if f.name != "flip" and getattr(self, f.name)]
        return ",".join(parts) or "none"


# random erasing's ranges (torchvision.transforms.RandomErasing's defaults, Zhong et al. 2020)
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


def decode(data: bytes, size: int, channels: int) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 array size x size x channels (grey is Pillow's ITU-R 601 luma, as TensorFlow's)."""
    with Image.open(io.BytesIO(data)) as img:
        return prepare(img, size, channels)


def prepare(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """A PIL image -> the model's uint8 input: grey or RGB, resized (antialiased) to size x size."""
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if channels == 1 else arr


def image_side(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as img:
        return int(img.size[0])


def augment(arr: np.ndarray, aug: Augment, rng: np.random.Generator) -> np.ndarray:
    """One random draw of ``aug`` applied to a uint8 H x W x C image (returns uint8).

    An op draws from ``rng`` only when it is on, so adding an op to the module leaves the draws of the others alone.
    """
    if aug.flip and rng.random() < 0.5:
        arr = arr[:, ::-1]
    if aug.crop:
        arr = pad_crop(arr, int(aug.crop), *rng.integers(0, 2 * int(aug.crop) + 1, size=2).tolist())
    if aug.rotate or aug.shift or aug.zoom:
        degrees = rng.uniform(-aug.rotate, aug.rotate) if aug.rotate else 0.0
        shift = rng.uniform(-aug.shift, aug.shift, size=2) * arr.shape[0] if aug.shift else (0.0, 0.0)
        scale = rng.uniform(1 - aug.zoom, 1 + aug.zoom) if aug.zoom else 1.0
        arr = _affine(arr, degrees, shift, scale)
    if aug.brightness or aug.contrast or aug.color:
        x = arr.astype(np.float32)
        if aug.brightness:
            x *= rng.uniform(1 - aug.brightness, 1 + aug.brightness)
        if aug.contrast:
            mean = x.mean()
            x = (x - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
        if aug.color and x.shape[-1] == 3:
            grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
            x = grey[..., None] + (x - grey[..., None]) * rng.uniform(1 - aug.color, 1 + aug.color)
        arr = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    if aug.erase and rng.random() < aug.erase:
        arr = erase(arr, *erase_box(arr.shape[0], arr.shape[1], rng.random(4)))
    return np.ascontiguousarray(arr)


def pad_crop(arr: np.ndarray, pad: int, top: int, left: int) -> np.ndarray:
    """The ``arr``-sized window at (top, left) of ``arr`` padded with ``pad`` black pixels on each side."""
    h, w = arr.shape[:2]
    padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)))
    return padded[top:top + h, left:left + w]


def erase_box(h: int, w: int, u) -> tuple[int, int, int, int]:
    """Random erasing's rectangle (top, left, height, width) from four uniforms in [0, 1): area, log aspect ratio,
    top, left. A rectangle taller or wider than the picture is cut to it (torchvision draws again instead)."""
    area = h * w * (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * float(u[0]))
    lo, hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = math.exp(lo + (hi - lo) * float(u[1]))
    eh = min(h, max(1, int(round(math.sqrt(area * ratio)))))
    ew = min(w, max(1, int(round(math.sqrt(area / ratio)))))
    return int(float(u[2]) * (h - eh + 1)), int(float(u[3]) * (w - ew + 1)), eh, ew


def erase(arr: np.ndarray, top: int, left: int, eh: int, ew: int) -> np.ndarray:
    """``arr`` with the rectangle filled with the picture's mean per channel (rounded)."""
    out = arr.copy()
    out[top:top + eh, left:left + ew] = np.floor(arr.reshape(-1, arr.shape[2]).mean(axis=0) + 0.5).astype(arr.dtype)
    return out


def _affine(arr: np.ndarray, degrees: float, shift, scale: float = 1.0) -> np.ndarray:
    """Rotate about the centre, scale (``scale`` > 1 magnifies) and translate; areas from outside the image are black
    (as the tf.data path)."""
    h, w = arr.shape[:2]
    theta = math.radians(degrees)
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    cx, cy = (w - 1) / 2, (h - 1) / 2
    tx, ty = float(shift[0]), float(shift[1])
    # output (x, y) -> input: R(-theta) (out - c - t) / scale + c, as Pillow's AFFINE data (a, b, c, d, e, f)
    a, b = cos, sin
    d, e = -sin, cos
    c0 = cx - a * (cx + tx) - b * (cy + ty)
    f0 = cy - d * (cx + tx) - e * (cy + ty)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    out = np.asarray(img.transform((w, h), Image.AFFINE, (a, b, c0, d, e, f0), resample=Image.BILINEAR))
    return out[:, :, None] if out.ndim == 2 else out


def decode_batch(items: list[tuple[int, bytes, int]], size: int, channels: int, aug: Augment | None,
                 seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Worker task: ``(index, bytes, label)`` rows -> (uint8 N x size x size x C, int32 labels).

    The random draws of a sample depend only on (seed, epoch, index), so a resumed run sees the same augmentations.
    """
    out = np.empty((len(items), size, size, channels), np.uint8)
    labels = np.empty(len(items), np.int32)
    for n, (index, data, label) in enumerate(items):
        arr = decode(data, size, channels)
        if aug is not None and aug.active:
            arr = augment(arr, aug, np.random.default_rng([seed, epoch, index]))
        out[n] = arr
        labels[n] = label
    return out, labels
