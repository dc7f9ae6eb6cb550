"""The paper's four augmentations (§3.3.2): horizontal flip, a small rotation, colour and brightness jitter.

Each augmented copy draws its operations from a generator seeded by (seed, parent id, copy number), never from run
order or a global RNG, so a copy is the same on every run and every machine, in any thread. Each operation is applied
with probability 1/2 (at least one always is); the ops are returned as strings with their parameters
(``rotate:-3.21``), which go into the shard's ``ops`` column.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from fusekit.balance.config import AUGMENTATIONS
from fusekit.imageio import encode_png, open_image


def copy_rng(seed: int, parent_id: str, copy: int) -> np.random.Generator:
    digest = int.from_bytes(hashlib.blake2b(parent_id.encode("utf-8"), digest_size=8).digest(), "little")
    return np.random.default_rng([seed, digest, copy])


def draw_ops(rng: np.random.Generator, enabled: tuple[str, ...], max_rotation: float, jitter: float,
             grey: bool) -> list[tuple[str, float]]:
    """The operations of one copy, in a fixed order; colour is meaningless on a grey image and never drawn for it."""
    usable = [op for op in AUGMENTATIONS if op in enabled and not (grey and op == "color")]
    if not usable:
        return []
    coins = rng.random(len(usable)) < 0.5
    if not coins.any():
        coins[int(rng.integers(len(usable)))] = True
    ops = []
    for op, on in zip(usable, coins):
        value = 0.0
        if op == "rotate":
            value = float(rng.uniform(-max_rotation, max_rotation))
        elif op in ("color", "brightness"):
            value = float(rng.uniform(1 - jitter, 1 + jitter))
        if on:
            ops.append((op, round(value, 4)))
    return ops


def apply_ops(image: Image.Image, ops: list[tuple[str, float]]) -> Image.Image:
    for op, value in ops:
        if op == "flip":
            image = ImageOps.mirror(image)
        elif op == "rotate":
            # As the paper's code (PIL rotate about the centre); corners are filled with the border's mean so a
            # face crop does not gain black triangles that a model could learn to tie to the augmented classes.
            image = image.rotate(value, resample=Image.BILINEAR, fillcolor=_border_mean(image))
        elif op == "color":
            image = ImageEnhance.Color(image).enhance(value)
        elif op == "brightness":
            image = ImageEnhance.Brightness(image).enhance(value)
    return image


def _border_mean(image: Image.Image) -> int | tuple[int, ...]:
    arr = np.asarray(image)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    mean = border.mean(axis=0)
    return int(round(float(mean))) if arr.ndim == 2 else tuple(int(round(float(v))) for v in mean)


def format_ops(ops: list[tuple[str, float]]) -> list[str]:
    return [op if op == "flip" else f"{op}:{value:+.2f}" if op == "rotate" else f"{op}:{value:.2f}"
            for op, value in ops]


def _decode(data: bytes) -> Image.Image:
    opened = open_image(data)
    return opened.convert("L") if opened.mode in ("L", "LA", "I", "I;16", "1") else opened.convert("RGB")


def _encode(image: Image.Image) -> bytes:
    # PNG like the originals (a lossy format only on copies would be a cue a model could learn), written by
    # fusekit's zlib encoder at level 1: encoding is most of a copy's cost, and Pillow's took twice as long.
    return encode_png(np.asarray(image.convert("L" if image.mode == "L" else "RGB")), level=1)


def augment(data: bytes, parent_id: str, copy: int, *, seed: int, enabled: tuple[str, ...],
            max_rotation: float = 5.0, jitter: float = 0.25) -> tuple[bytes, list[str]]:
    """One augmented copy of an encoded face: (PNG bytes, ops as strings)."""
    return augment_copies(data, parent_id, [copy], seed=seed, enabled=enabled, max_rotation=max_rotation,
                          jitter=jitter)[0]


def augment_copies(data: bytes, parent_id: str, copies: list[int], *, seed: int, enabled: tuple[str, ...],
                   max_rotation: float = 5.0, jitter: float = 0.25) -> list[tuple[bytes, list[str]]]:
    """Several copies of one face, decoding it once; each copy is what ``augment`` gives for its number."""
    image = _decode(data)
    out = []
    for copy in copies:
        ops = draw_ops(copy_rng(seed, parent_id, copy), enabled, max_rotation, jitter, grey=image.mode == "L")
        out.append((_encode(apply_ops(image, ops)), format_ops(ops)))
    return out


def augment_job(job: tuple) -> list[tuple[bytes, list[str]]]:
    """``augment_copies`` with its arguments in one picklable tuple (for a process pool)."""
    data, parent_id, copies, seed, enabled, max_rotation, jitter = job
    return augment_copies(data, parent_id, copies, seed=seed, enabled=enabled, max_rotation=max_rotation,
                          jitter=jitter)
