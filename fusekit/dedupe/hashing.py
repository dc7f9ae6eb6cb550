"""Perceptual hashes and quality measures of aligned face crops, computed in batches.

The hash is imagehash's pHash (``imagehash.phash``: grey, 32x32 Lanczos reduction, 2-D DCT, the 8x8 lowest
frequencies against their median), computed here for a whole batch at once with the same operations, so the hex
string equals ``str(imagehash.phash(image))`` (asserted by the tests). The mirror hash is the pHash of the mirrored
32x32 reduction: a horizontal flip negates the DCT coefficients of odd horizontal frequency, so it costs no second
DCT. A 64x64 grey reduction is kept as the face's thumbnail for the confirmation step and gives three quality
measures (mean, contrast, sharpness), so one decode serves everything.
"""

from __future__ import annotations

import functools
import io
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import cv2
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
    """The reference path (Pillow): for pictures the fast path does not take (non-square, high bit depth)."""
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


# -- the fast path ------------------------------------------------------------------------------------------------------
# Per-image Pillow calls (open, convert, two resizes) cost ~1 ms an image; OpenCV decodes a small PNG/JPEG in ~30 us and
# the two resizes become batched matrix products. To keep the hash bit-identical to imagehash, the grey conversion
# and the resampling reproduce Pillow's integer arithmetic exactly: ITU-R 601-2 luma in 16-bit fixed point
# (Convert.c), and Resample.c's filter taps (normalised, then rounded to 22-bit fixed point) with rounding and
# clipping to 8 bits after each pass, horizontal pass first. Pillow picks the pass order by the picture's shape, and
# for a square picture it is horizontal first, so only square pictures (every aligned crop) take the fast path.

_PRECISION = 22  # Resample.c PRECISION_BITS


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


_FILTERS = {"bilinear": (_bilinear, 1.0), "lanczos": (_lanczos, 3.0)}


@functools.lru_cache(maxsize=64)
def pil_taps(in_size: int, out_size: int, name: str) -> np.ndarray:
    """(out, in) matrix of Pillow's fixed-point filter taps (integers, as float64: the products stay exact)."""
    filt, support = _FILTERS[name]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support *= filterscale
    taps = np.zeros((out_size, in_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [filt((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = sum(w)
        for x in range(xmax):
            k = w[x] / total if total != 0.0 else w[x]
            taps[xx, xmin + x] = int(k * (1 << _PRECISION) + (-0.5 if k < 0 else 0.5))
    return taps


def _clip8(sums: np.ndarray) -> np.ndarray:
    """Resample.c's clip8: (sum + half) >> 22, clipped to 0..255 (in place; float64 holds the sums exactly)."""
    sums += 1 << (_PRECISION - 1)
    sums *= 1.0 / (1 << _PRECISION)
    np.floor(sums, out=sums)
    return np.clip(sums, 0, 255, out=sums)


_SUB_BATCH = 64


@functools.lru_cache(maxsize=64)
def _sparse_taps(in_size: int, out_size: int, name: str):
    import scipy.sparse

    return scipy.sparse.csr_matrix(pil_taps(in_size, out_size, name))


def pil_resize_square(images: np.ndarray, out: int, name: str) -> np.ndarray:
    """Pillow's ``resize((out, out), filter)`` of a batch of square uint8 (n, s, s) pictures, bit for bit.

    Each pass is one sparse (taps) x dense (the whole batch, reduced axis first) product: an output pixel reads only
    the few inputs under its filter, so this costs a fraction of a dense matrix product.
    """
    n, side = images.shape[:2]
    if side == out:
        return images.astype(np.uint8)
    if n > _SUB_BATCH:  # keep the float64 intermediates in cache
        return np.concatenate([pil_resize_square(images[i:i + _SUB_BATCH], out, name)
                               for i in range(0, n, _SUB_BATCH)])
    taps = _sparse_taps(side, out, name)
    x = images.transpose(2, 0, 1).reshape(side, n * side).astype(np.float64)  # (x, (image, y))
    rows = _clip8(taps @ x).astype(np.uint8).reshape(out, n, side)  # horizontal pass: (out x, image, y)
    rows = rows.transpose(2, 1, 0).reshape(side, n * out).astype(np.float64)  # (y, (image, out x))
    cols = _clip8(taps @ rows).reshape(out, n, out)  # vertical pass: (out y, image, out x)
    return cols.transpose(1, 0, 2).astype(np.uint8)


def _decode_grey(data: bytes | None) -> np.ndarray | None:
    """Pillow's ``Image.open(data).convert("L")`` pixels via OpenCV; None: leave it to the Pillow path."""
    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # no EXIF turn, as Pillow
    if img is None or img.dtype != np.uint8 or img.ndim not in (2, 3) or img.shape[0] != img.shape[1]:
        return None
    if img.ndim == 2:
        return img
    if img.shape[2] not in (3, 4):
        return None
    b, g, r = (img[:, :, i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)  # Convert.c L24


def _reduce_batch(datas: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok, 32x32 Lanczos reductions, 64x64 bilinear reductions) of a chunk of encoded pictures."""
    n = len(datas)
    ok = np.zeros(n, bool)
    small = np.zeros((n, REDUCED, REDUCED), np.uint8)
    quality = np.zeros((n, QUALITY_SIZE, QUALITY_SIZE), np.uint8)
    by_side: dict[int, list[int]] = {}
    greys: list[np.ndarray | None] = []
    for i, data in enumerate(datas):
        grey = _decode_grey(data)
        greys.append(grey)
        if grey is not None:
            by_side.setdefault(grey.shape[0], []).append(i)
        else:
            reduced = _reduce_one(data)
            if reduced is not None:
                ok[i] = True
                small[i], quality[i] = reduced
    for side, idx in by_side.items():
        stack = np.stack([greys[i] for i in idx])
        small[idx] = pil_resize_square(stack, REDUCED, "lanczos")
        quality[idx] = pil_resize_square(stack, QUALITY_SIZE, "bilinear")
        ok[idx] = True
    return ok, small, quality


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
    if len(images) > _SUB_BATCH:  # in cache-sized pieces
        parts = [_quality(images[i:i + _SUB_BATCH]) for i in range(0, len(images), _SUB_BATCH)]
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2))
    std = x.std(axis=(1, 2))
    lap = x[:, 1:-1, :-2] + x[:, 1:-1, 2:]
    lap += x[:, :-2, 1:-1]
    lap += x[:, 2:, 1:-1]
    lap -= 4 * x[:, 1:-1, 1:-1]
    sharp = lap.std(axis=(1, 2)) / np.maximum(std, 1.0)
    return mean, std, sharp


PROCESS_MIN = 4096  # pictures from which hash_images spreads chunks over worker processes
_POOL: tuple[int, object] | None = None


def _process_pool(workers: int):
    """One pool of worker processes for the life of this process. ``fork`` (instant, modules already imported)
    unless TensorFlow is loaded here (its threads must not be forked): then ``forkserver`` (~1-2 s to start; like
    any multiprocessing start method but fork, it needs a main script guarded by ``if __name__ == "__main__"``).
    The workers run only OpenCV's single-threaded decoder and numpy/scipy, no OpenCV parallel region."""
    global _POOL
    if _POOL is None or _POOL[0] != workers:
        from concurrent.futures import ProcessPoolExecutor

        from fusekit.processes import process_context

        if _POOL is not None:
            _POOL[1].shutdown()  # type: ignore[attr-defined]
        _POOL = (workers, ProcessPoolExecutor(workers, mp_context=process_context([__name__])))
        import atexit

        atexit.register(_shutdown_pool)  # before module teardown, so the pool's threads exit quietly
    return _POOL[1]


def _shutdown_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL[1].shutdown()  # type: ignore[attr-defined]
        _POOL = None


def _hash_chunk(datas: Sequence[bytes | None]) -> HashBatch:
    """Everything for one chunk in one thread (the unit of work of a worker process)."""
    return _finish(*_reduce_batch(datas))


def _finish(ok: np.ndarray, small: np.ndarray, quality: np.ndarray) -> HashBatch:
    """Hashes and probes from the 32x32 reductions; quality measures and thumbnails from the 64x64 ones."""
    n = len(ok)
    ph, mi = phash_bits(small) if n else (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    mean, std, sharp = _quality(quality) if n else (np.zeros(0, np.float32),) * 3
    zero = np.uint64(0)
    probes = np.where(ok[:, None], probe_hashes(small), zero)
    return HashBatch(ok, np.where(ok, ph, zero), np.where(ok, mi, zero), quality, probes, mean, std, sharp)


def hash_images(datas: Sequence[bytes | None], workers: int = 2, chunk: int = 1024) -> HashBatch:
    """Decode and hash encoded images (PNG/JPEG bytes), in chunks.

    From ``PROCESS_MIN`` pictures on, the chunks go to ``workers`` processes: the numpy steps hold the GIL much of
    the time, so threads gain ~5% where processes use both cores (measured, docs/performance.md). Below, threads.
    """
    chunks = [datas[i:i + chunk] for i in range(0, len(datas), chunk)]
    if workers > 1 and len(datas) >= PROCESS_MIN:
        from concurrent.futures.process import BrokenProcessPool

        try:
            parts = list(_process_pool(workers).map(_hash_chunk, chunks))
            return HashBatch(*[np.concatenate([getattr(p, f) for p in parts]) for f in HashBatch.__dataclass_fields__])
        except (BrokenProcessPool, OSError) as exc:  # no processes here (sandbox, unguarded main script): threads
            import logging

            logging.getLogger(__name__).warning("hashing in threads: worker processes failed (%s)", exc)
            global _POOL
            _POOL = None
    if workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts3 = list(pool.map(_reduce_batch, chunks))
    else:
        parts3 = [_reduce_batch(c) for c in chunks]
    if not parts3:
        parts3 = [(np.zeros(0, bool), np.zeros((0, REDUCED, REDUCED), np.uint8),
                   np.zeros((0, QUALITY_SIZE, QUALITY_SIZE), np.uint8))]
    return _finish(*(np.concatenate([p[j] for p in parts3]) for j in range(3)))


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
    """(n, len(PROBES)) uint64 pHashes of the re-framed 32x32 reductions."""
    global _PROBE_W
    if _PROBE_W is None:
        _PROBE_W = _probe_weights()
    n = len(thumbs)
    if n == 0:
        return np.zeros((0, len(PROBES)), np.uint64)
    coef = thumbs.reshape(n, -1).astype(np.float32) @ _PROBE_W
    coef = coef.reshape(n * len(PROBES), HASH_SIZE * HASH_SIZE)
    return _pack(coef).reshape(n, len(PROBES))
