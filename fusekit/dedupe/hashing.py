"""Perceptual hashes and quality measures of aligned face crops, computed in batches.

The hash is imagehash's pHash (``imagehash.phash``: grey, 32x32 Lanczos reduction, 2-D DCT, the 8x8 lowest
frequencies against their median), computed here for a whole batch at once with the same operations, so the hex
string equals ``str(imagehash.phash(image))`` (asserted by the tests). The mirror hash is the pHash of the mirrored
32x32 reduction: a horizontal flip negates the DCT coefficients of odd horizontal frequency, so it costs no second
DCT. The 32x32 grey reduction is kept as the face's thumbnail for the confirmation step, and three quality measures
(mean, contrast, sharpness) come from a 64x64 reduction, so one decode serves everything.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import imagehash
import numpy as np
import pyarrow as pa
import scipy.fftpack
from PIL import Image

HASH_SIZE = 8
REDUCED = HASH_SIZE * 4  # imagehash's highfreq_factor 4
QUALITY_SIZE = 64
HASH_VERSION = f"imagehash {imagehash.__version__} phash {HASH_SIZE}x{HASH_SIZE} +mirror; thumb {REDUCED} lanczos; q{QUALITY_SIZE}"

# The cache of per-face hashes (table `dedupe_hashes`, one unit per faces unit). Private to dedupe.
HASHES_SCHEMA = pa.schema(
    [
        ("face_id", pa.string()),
        ("ok", pa.bool_()),  # False: the crop could not be decoded
        ("phash", pa.uint64()),
        ("mirror", pa.uint64()),
        ("probes", pa.list_(pa.uint64(), 7)),  # pHashes of the re-framed face (PROBES below)
        ("thumb", pa.binary(QUALITY_SIZE * QUALITY_SIZE)),  # the 64x64 grey reduction (confirmation), uint8
        ("mean", pa.float32()),  # mean grey level, 0..255
        ("std", pa.float32()),  # grey standard deviation (contrast)
        ("sharpness", pa.float32()),  # std of the Laplacian over std of the image, both at 64x64
    ]
)

_SIGN = np.where(np.arange(HASH_SIZE) % 2 == 1, -1.0, 1.0)  # odd horizontal frequencies flip sign under a mirror
_BIT_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


@dataclass
class HashBatch:
    ok: np.ndarray  # bool (n,)
    phash: np.ndarray  # uint64 (n,)
    mirror: np.ndarray  # uint64 (n,)
    thumbs: np.ndarray  # uint8 (n, 64, 64): what the confirmation compares
    probes: np.ndarray  # uint64 (n, len(PROBES))
    mean: np.ndarray  # float32 (n,)
    std: np.ndarray
    sharpness: np.ndarray

    def table(self, face_ids: Sequence[str]) -> pa.Table:
        n = len(face_ids)
        thumbs = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(QUALITY_SIZE * QUALITY_SIZE), n,
            [None, pa.py_buffer(np.ascontiguousarray(self.thumbs).tobytes())])
        probes = pa.FixedSizeListArray.from_arrays(pa.array(self.probes.reshape(-1), pa.uint64()), len(PROBES))
        return pa.Table.from_arrays(
            [pa.array(list(face_ids), pa.string()), pa.array(self.ok), pa.array(self.phash, pa.uint64()),
             pa.array(self.mirror, pa.uint64()), probes, thumbs, pa.array(self.mean, pa.float32()),
             pa.array(self.std, pa.float32()), pa.array(self.sharpness, pa.float32())],
            schema=HASHES_SCHEMA)


def to_hex(value: int) -> str:
    """The 16-hex-digit form imagehash prints (first DCT coefficient = most significant bit)."""
    return f"{int(value):016x}"


def _reduce_one(data: bytes | None) -> tuple[np.ndarray, np.ndarray] | None:
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            grey = img.convert("L")
    except Exception:  # noqa: BLE001 - any decoder failure means "no hash"; the stage records it
        return None
    small = np.asarray(grey.resize((REDUCED, REDUCED), Image.LANCZOS))
    quality = np.asarray(grey.resize((QUALITY_SIZE, QUALITY_SIZE), Image.BILINEAR))
    return small, quality


def phash_bits(reduced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHash and mirror pHash of (n, 32, 32) uint8 reductions, as uint64 (imagehash's bit order)."""
    pixels = reduced.astype(np.float64)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)  # imagehash: axis 0 then 1, per image
    low = dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(reduced), -1)
    mirrored = (dct[:, :HASH_SIZE, :HASH_SIZE] * _SIGN).reshape(len(reduced), -1)
    return _pack(low), _pack(mirrored)


def _pack(coefficients: np.ndarray) -> np.ndarray:
    bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
    return (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def _quality(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, contrast and a contrast-free sharpness (Laplacian energy relative to the image's own spread)."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2))
    std = x.std(axis=(1, 2))
    lap = (x[:, 1:-1, :-2] + x[:, 1:-1, 2:] + x[:, :-2, 1:-1] + x[:, 2:, 1:-1] - 4 * x[:, 1:-1, 1:-1])
    sharp = lap.std(axis=(1, 2)) / np.maximum(std, 1.0)
    return mean, std, sharp


def hash_images(datas: Sequence[bytes | None], workers: int = 2) -> HashBatch:
    """Decode and hash encoded images (PNG/JPEG bytes). Decoding and resizing release the GIL, so threads help."""
    if workers > 1 and len(datas) > 256:
        with ThreadPoolExecutor(workers) as pool:
            reduced = list(pool.map(_reduce_one, datas, chunksize=64))
    else:
        reduced = [_reduce_one(d) for d in datas]
    n = len(datas)
    ok = np.array([r is not None for r in reduced], dtype=bool)
    thumbs = np.zeros((n, REDUCED, REDUCED), np.uint8)
    quality = np.zeros((n, QUALITY_SIZE, QUALITY_SIZE), np.uint8)
    for i, r in enumerate(reduced):
        if r is not None:
            thumbs[i], quality[i] = r
    ph, mi = phash_bits(thumbs) if n else (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    mean, std, sharp = _quality(quality) if n else (np.zeros(0, np.float32),) * 3
    zero = np.uint64(0)
    probes = np.where(ok[:, None], probe_hashes(thumbs), zero)
    return HashBatch(ok, np.where(ok, ph, zero), np.where(ok, mi, zero), quality, probes, mean, std, sharp)


def from_table(table: pa.Table) -> HashBatch:
    """The inverse of ``HashBatch.table`` (for the cached hashes)."""
    n = table.num_rows
    side2 = QUALITY_SIZE * QUALITY_SIZE
    arr = table.column("thumb").combine_chunks()
    thumbs = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * side2:(arr.offset + n) * side2]
    thumbs = thumbs.reshape(n, QUALITY_SIZE, QUALITY_SIZE)
    probes = table.column("probes").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(n, len(PROBES))
    col = lambda name, dt: table.column(name).to_numpy(zero_copy_only=False).astype(dt)  # noqa: E731
    return HashBatch(col("ok", bool), col("phash", np.uint64), col("mirror", np.uint64), thumbs,
                     probes.astype(np.uint64), col("mean", np.float32), col("std", np.float32),
                     col("sharpness", np.float32))


# -- geometric probes ---------------------------------------------------------------------------------------------------
# A 64-bit pHash moves by 8-20 bits when a crop is rotated by 5 degrees or cropped by 5% (measured, docs/dedupe.md), so a
# radius search alone misses such copies. Each face therefore also queries with the hashes of a few re-framed versions
# of itself (turned by +-2.5 degrees; zoomed 3% and shifted 1.5% four ways): a copy turned or cropped within the issue's
# bounds lies within a small distance of one of them. Probes are linear maps of the 32x32 thumbnail (bilinear
# resampling), so their DCT coefficients come from one matrix product for a whole batch.
PROBES: tuple[tuple[float, float, float, float], ...] = (  # (degrees, zoom, shift x, shift y as a fraction of the side)
    (-2.5, 1.0, 0.0, 0.0), (2.5, 1.0, 0.0, 0.0), (0.0, 1.03, 0.0, 0.0),
    (0.0, 1.03, 0.015, 0.0), (0.0, 1.03, -0.015, 0.0), (0.0, 1.03, 0.0, 0.015), (0.0, 1.03, 0.0, -0.015),
)


def resample_matrix(degrees: float, zoom: float, dx: float, dy: float, side: int = REDUCED):
    """Sparse (side*side, side*side) bilinear map: output pixel <- input turned about the centre, zoomed, shifted."""
    import scipy.sparse

    c = (side - 1) / 2
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    a = np.deg2rad(degrees)
    u, v = (xx - c - dx * side) / zoom, (yy - c - dy * side) / zoom
    sx = np.clip(np.cos(a) * u + np.sin(a) * v + c, 0, side - 1)
    sy = np.clip(-np.sin(a) * u + np.cos(a) * v + c, 0, side - 1)
    x0, y0 = np.minimum(np.floor(sx).astype(int), side - 2), np.minimum(np.floor(sy).astype(int), side - 2)
    fx, fy = sx - x0, sy - y0
    rows, cols, vals = [], [], []
    for ox, oy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        rows.append(np.arange(side * side))
        cols.append(((y0 + oy) * side + x0 + ox).ravel())
        vals.append(w.ravel())
    shape = (side * side, side * side)
    return scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def _dct_matrix(n: int = REDUCED, k: int = HASH_SIZE) -> np.ndarray:
    """The first k rows of scipy's unnormalised DCT-II on n points (what imagehash applies)."""
    i = np.arange(n)
    return 2 * np.cos(np.pi * np.arange(k)[:, None] * (2 * i[None, :] + 1) / (2 * n))


def _probe_weights() -> np.ndarray:
    """(1024, 64 * len(PROBES)): thumbnail -> low 8x8 DCT coefficients of every probe."""
    d = _dct_matrix()
    low = np.einsum("ui,vj->uvij", d, d).reshape(HASH_SIZE * HASH_SIZE, REDUCED * REDUCED)  # rows: (u=y, v=x)
    return np.concatenate([(resample_matrix(*p).T @ low.T) for p in PROBES], axis=1).astype(np.float32)


_PROBE_W: np.ndarray | None = None


def probe_hashes(thumbs: np.ndarray) -> np.ndarray:
    """(n, len(PROBES)) uint64 pHashes of the re-framed thumbnails."""
    global _PROBE_W
    if _PROBE_W is None:
        _PROBE_W = _probe_weights()
    n = len(thumbs)
    if n == 0:
        return np.zeros((0, len(PROBES)), np.uint64)
    coef = thumbs.reshape(n, -1).astype(np.float32) @ _PROBE_W
    coef = coef.reshape(n * len(PROBES), HASH_SIZE * HASH_SIZE)
    return _pack(coef).reshape(n, len(PROBES))
