"""Perceptual hashes and quality measures of aligned face crops, computed in batches.

The hash is imagehash's pHash (``imagehash.phash``: grey, 32x32 Lanczos reduction, 2-D DCT, the 8x8 lowest
frequencies against their median), computed here for a whole batch at once, bit for bit: the hex string equals
``str(imagehash.phash(image))`` (asserted by the tests). The mirror hash is the pHash of the mirrored 32x32
reduction: a horizontal flip negates the DCT coefficients of odd horizontal frequency, so it costs no second DCT.
A 64x64 grey reduction (bilinear) is kept as the face's thumbnail for the confirmation step and gives three quality
measures (mean, contrast, sharpness), so one decode serves everything.

Layout: pictures of one size are processed ``GROUP`` at a time as one (side, side, group) array, the picture index
last. Every step is then one call over the group: OpenCV treats the index as channels (resize, Laplacian, mean and
standard deviation per channel), and the separable resampling and DCT passes are matrix products over a leading
axis, with no per-picture Python work after the decode.
"""

from __future__ import annotations

import functools
import io
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import cv2
import imagehash
import numpy as np
import pyarrow as pa
import scipy.fftpack
from PIL import Image

from fusekit.imageio import decode_own_png

HASH_SIZE = 8
REDUCED = HASH_SIZE * 4  # imagehash's highfreq_factor 4
QUALITY_SIZE = 64
PROBE_BAND = 24  # probes are computed from the 24x24 lowest DCT frequencies of the 32x32 reduction (see below)
GROUP = 128  # most pictures per stacked array: OpenCV 5 allows 128 channels (CV_CN_MAX; 512 in OpenCV 4)
_GROUP_PIXELS = 1 << 17  # and at most this many input pixels, so the float64 passes stay in the cache (1 MiB)
HASH_VERSION = (f"imagehash {imagehash.__version__} phash {HASH_SIZE}x{HASH_SIZE} +mirror +7 probes +7 mirrored "
                f"(dct{PROBE_BAND}); "
                f"thumb {QUALITY_SIZE} bilinear (pillow-exact shrinking, opencv {cv2.__version__} enlarging)")
# The cache of per-face hashes (table `dedupe_hashes`, one unit per faces unit). Private to dedupe.
HASHES_SCHEMA = pa.schema(
    [
        ("face_id", pa.string()),
        ("ok", pa.bool_()),  # False: the crop could not be decoded
        ("phash", pa.uint64()),
        ("mirror", pa.uint64()),
        ("probes", pa.list_(pa.uint64(), 14)),  # pHashes of the re-framed face (PROBES below), then of its mirror
        ("thumb", pa.binary(QUALITY_SIZE * QUALITY_SIZE)),  # the 64x64 grey reduction (confirmation), uint8
        ("mean", pa.float32()),  # mean grey level, 0..255
        ("std", pa.float32()),  # grey standard deviation (contrast)
        ("sharpness", pa.float32()),  # std of the Laplacian over std of the image, both at 64x64
    ]
)

# odd horizontal frequencies flip sign under a mirror; over the 8x8 low block flattened row by row
_MIRROR_SIGN = np.tile(np.where(np.arange(HASH_SIZE) % 2 == 1, -1.0, 1.0), HASH_SIZE)
# ... and over the probes' (picture, vertical, horizontal) band
_MIRROR_BAND = np.where(np.arange(PROBE_BAND) % 2 == 1, -1.0, 1.0)[None, None, :]
_BIT_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


@dataclass
class HashBatch:
    ok: np.ndarray  # bool (n,)
    phash: np.ndarray  # uint64 (n,)
    mirror: np.ndarray  # uint64 (n,)
    thumbs: np.ndarray  # uint8 (n, 64, 64): what the confirmation compares
    probes: np.ndarray  # uint64 (n, 2 * len(PROBES)): the re-framed face, then the re-framed mirror image
    mean: np.ndarray  # float32 (n,)
    std: np.ndarray
    sharpness: np.ndarray

    def table(self, face_ids: Sequence[str]) -> pa.Table:
        n = len(face_ids)
        thumbs = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(QUALITY_SIZE * QUALITY_SIZE), n,
            [None, pa.py_buffer(np.ascontiguousarray(self.thumbs).tobytes())])
        probes = pa.FixedSizeListArray.from_arrays(pa.array(self.probes.reshape(-1), pa.uint64()), 2 * len(PROBES))
        return pa.Table.from_arrays(
            [pa.array(list(face_ids), pa.string()), pa.array(self.ok), pa.array(self.phash, pa.uint64()),
             pa.array(self.mirror, pa.uint64()), probes, thumbs, pa.array(self.mean, pa.float32()),
             pa.array(self.std, pa.float32()), pa.array(self.sharpness, pa.float32())],
            schema=HASHES_SCHEMA)


def to_hex(value: int) -> str:
    """The 16-hex-digit form imagehash prints (first DCT coefficient = most significant bit)."""
    return f"{int(value):016x}"


# -- decoding ------------------------------------------------------------------------------------------------------------

def _decode_grey(data: bytes | None) -> np.ndarray | None:
    """Pillow's ``Image.open(data).convert("L")`` pixels, faster: the faces stage's own PNGs by
    ``imageio.decode_own_png``, anything else by OpenCV (~15 us against Pillow's ~90 us for a small JPEG). None:
    leave the picture to the Pillow path (non-square, high bit depth, undecodable here)."""
    if not data:
        return None
    img = decode_own_png(data)
    if img is None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # no EXIF turn, as Pillow
        if img is not None and img.ndim == 3 and img.shape[2] in (3, 4):
            img = img[:, :, 2::-1]  # BGR(A) -> RGB
    if img is None or img.dtype != np.uint8 or img.ndim not in (2, 3) or img.shape[0] != img.shape[1]:
        return None
    if img.ndim == 2:
        return img
    if img.shape[2] not in (3, 4):
        return None
    # Convert.c's L24: (r*19595 + g*38470 + b*7471 + 0x8000) >> 16. Every product and partial sum is a whole number
    # below 2**24, so float32 holds it exactly, and one matrix-vector product does the weighted sum.
    rgb = img[:, :, :3].reshape(-1, 3).astype(np.float32)
    luma = rgb @ _LUMA
    luma += 0x8000
    luma *= 1.0 / 65536
    return np.floor(luma, out=luma).astype(np.uint8).reshape(img.shape[:2])


_LUMA = np.array([19595, 38470, 7471], np.float32)


def _reduce_one(data: bytes | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(32x32 Lanczos reduction, 64x64 bilinear thumbnail) through Pillow itself: the reference path, for the
    pictures the stacked path does not take."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            grey = img.convert("L")
    except Exception:  # noqa: BLE001 - any decoder failure means "no hash"; the stage records it
        return None
    return (np.asarray(grey.resize((REDUCED, REDUCED), Image.LANCZOS)),
            np.asarray(grey.resize((QUALITY_SIZE, QUALITY_SIZE), Image.BILINEAR)))


# -- Pillow's resampling, bit for bit -------------------------------------------------------------------------------------
# To keep the hash bit-identical to imagehash, the grey conversion (above) and the Lanczos reduction reproduce Pillow's
# integer arithmetic exactly: Resample.c's filter taps (normalised, then rounded to 22-bit fixed point) with
# rounding and clipping to 8 bits after each pass, horizontal pass first. Pillow picks the pass order by the
# picture's shape, and for a square picture it is horizontal first, so only square pictures (every aligned crop) take
# the stacked path.

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


@functools.lru_cache(maxsize=64)
def _sparse_taps(in_size: int, out_size: int, name: str):
    import scipy.sparse

    return scipy.sparse.csr_matrix(pil_taps(in_size, out_size, name))


def _clip8(sums: np.ndarray) -> np.ndarray:
    """Resample.c's clip8: (sum + half) >> 22, clipped to 0..255 (in place; float64 holds the sums exactly)."""
    sums += 1 << (_PRECISION - 1)
    sums *= 1.0 / (1 << _PRECISION)
    np.floor(sums, out=sums)
    return np.clip(sums, 0, 255, out=sums)


def pil_resize_stacked(stack: np.ndarray, out: int, name: str) -> np.ndarray:
    """Pillow's ``resize((out, out), filter)`` of every picture in a (side, side, group) uint8 stack, bit for bit,
    as a float64 (out, out, group) stack of whole numbers 0..255.

    Each pass is one sparse (taps) x dense product over the leading axis: an output pixel reads only the few inputs
    under its filter, and moving an axis to the front copies whole rows of ``group`` values.
    """
    side, _, group = stack.shape
    if side == out:
        return stack.astype(np.float64)
    taps = _sparse_taps(side, out, name)
    x = stack.transpose(1, 0, 2).reshape(side, side * group).astype(np.float64)  # (x, (y, picture))
    rows = _clip8(taps @ x).reshape(out, side, group)  # horizontal pass: (out x, y, picture)
    rows = rows.transpose(1, 0, 2).reshape(side, out * group)  # (y, (out x, picture))
    return _clip8(taps @ rows).reshape(out, out, group)  # vertical pass: (out y, out x, picture)


def _stacked(greys: Sequence[np.ndarray]) -> np.ndarray:
    """(side, side, group) stack of same-size grey pictures (OpenCV's transpose: numpy's is slow on uint8)."""
    flat = np.stack(greys).reshape(len(greys), -1)
    return cv2.transpose(flat).reshape(*greys[0].shape, len(greys))


def _unstacked(stack: np.ndarray) -> np.ndarray:
    """(group, height, width) from a (height, width, group) uint8 stack."""
    h, w, group = stack.shape
    return cv2.transpose(stack.reshape(h * w, group)).reshape(group, h, w)


def _thumbnails(stack: np.ndarray) -> np.ndarray:
    """64x64 reductions of a square (side, side, group) stack: Pillow's ``resize((64, 64), BILINEAR)``, exactly
    when shrinking (every aligned crop of 64 px or more, so the confirmation sees what it was calibrated on) and
    within one grey level when enlarging, where OpenCV's fixed-point bilinear (the same filter for an enlargement,
    one call for the whole group) is ~3x faster."""
    side, _, group = stack.shape
    if side > QUALITY_SIZE:
        return pil_resize_stacked(stack, QUALITY_SIZE, "bilinear").astype(np.uint8)
    if side == QUALITY_SIZE:
        return stack.copy()
    return cv2.resize(stack, (QUALITY_SIZE, QUALITY_SIZE), interpolation=cv2.INTER_LINEAR).reshape(
        QUALITY_SIZE, QUALITY_SIZE, group)


def _quality(thumb_stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, contrast and a contrast-free sharpness (std of the Laplacian over the interior, relative to the
    picture's own std) of every picture in a (64, 64, group) stack: OpenCV measures each channel in one call."""
    mean, std = (v.reshape(-1) for v in cv2.meanStdDev(thumb_stack))
    laplacian = cv2.Laplacian(thumb_stack, cv2.CV_16S, ksize=1).reshape(thumb_stack.shape)
    _, lap_std = (v.reshape(-1) for v in cv2.meanStdDev(laplacian[1:-1, 1:-1]))
    return mean.astype(np.float32), std.astype(np.float32), (lap_std / np.maximum(std, 1.0)).astype(np.float32)


# -- DCT ---------------------------------------------------------------------------------------------------------------

def _dct_matrix(n: int = REDUCED, k: int = HASH_SIZE) -> np.ndarray:
    """The first k rows of scipy's unnormalised DCT-II on n points (what imagehash applies)."""
    i = np.arange(n)
    return 2 * np.cos(np.pi * np.arange(k)[:, None] * (2 * i[None, :] + 1) / (2 * n))


_DCT_BAND = _dct_matrix(REDUCED, PROBE_BAND)


def _low_dct(small: np.ndarray) -> np.ndarray:
    """(group, PROBE_BAND, PROBE_BAND) lowest DCT-II coefficients [vertical, horizontal frequency] of a float64
    (32, 32, group) stack: two matrix products over the leading axis (imagehash's 2-D DCT, first PROBE_BAND rows)."""
    k, group = PROBE_BAND, small.shape[2]
    a = (_DCT_BAND @ small.reshape(REDUCED, REDUCED * group)).reshape(k, REDUCED, group)  # (u, x, picture)
    a = a.transpose(1, 0, 2).reshape(REDUCED, k * group)  # (x, (u, picture))
    return (_DCT_BAND @ a).reshape(k, k, group).transpose(2, 1, 0)  # (picture, u, v)


def _exact_low(small: np.ndarray) -> np.ndarray:
    """imagehash's own DCT (scipy.fftpack) of one 32x32 reduction, low 8x8 frequencies."""
    return scipy.fftpack.dct(scipy.fftpack.dct(small, axis=0), axis=1)[:HASH_SIZE, :HASH_SIZE]


def _near_tie(low: np.ndarray) -> np.ndarray:
    """Rows where a coefficient lies so near the median that rounding could flip its bit (a flat or symmetric
    picture has exact ties; imagehash's FFT-based DCT and a matrix product round differently there)."""
    scale = np.abs(low).max(axis=1) + 1.0
    out = np.zeros(len(low), bool)
    for signed in (low, low * _MIRROR_SIGN):
        margin = np.abs(signed - _row_median(signed)).min(axis=1)
        out |= margin <= 1e-8 * scale  # the products' rounding error is ~1e-15 of the scale
    return out


# -- one chunk -------------------------------------------------------------------------------------------------------------

def _hash_chunk(datas: Sequence[bytes | None]) -> HashBatch:
    """Everything for one chunk of encoded pictures, in one thread (the unit of work of a worker process)."""
    n = len(datas)
    ok = np.zeros(n, bool)
    thumbs = np.zeros((n, QUALITY_SIZE, QUALITY_SIZE), np.uint8)
    coef = np.zeros((n, PROBE_BAND, PROBE_BAND), np.float64)
    low = np.zeros((n, HASH_SIZE * HASH_SIZE), np.float64)
    mean, std, sharp = (np.zeros(n, np.float32) for _ in range(3))

    def fill(idx: list[int], small: np.ndarray, thumb_stack: np.ndarray) -> None:
        ok[idx] = True
        thumbs[idx] = _unstacked(thumb_stack)
        mean[idx], std[idx], sharp[idx] = _quality(thumb_stack)
        coef[idx] = c = _low_dct(small)
        low[idx] = rows = c[:, :HASH_SIZE, :HASH_SIZE].reshape(len(idx), -1)
        for j in np.flatnonzero(_near_tie(rows)):  # rare: recompute as imagehash does
            low[idx[j]] = _exact_low(small[:, :, j]).reshape(-1)

    by_side: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, data in enumerate(datas):
        grey = _decode_grey(data)
        if grey is not None:
            by_side.setdefault(grey.shape[0], []).append((i, grey))
            continue
        reduced = _reduce_one(data)
        if reduced is not None:
            small, thumb = reduced
            fill([i], small.astype(np.float64)[:, :, None], thumb[:, :, None])
    for side in sorted(by_side):
        items = by_side[side]
        group = max(8, min(GROUP, _GROUP_PIXELS // (side * side)))
        for start in range(0, len(items), group):
            part = items[start:start + group]
            stack = _stacked([grey for _, grey in part])
            fill([i for i, _ in part], pil_resize_stacked(stack, REDUCED, "lanczos"), _thumbnails(stack))
    zero = np.uint64(0)
    phash = np.where(ok, _pack(low), zero)
    mirror = np.where(ok, _pack(low * _MIRROR_SIGN), zero)
    # the mirror image's probes too: a mirrored copy aligned a little differently is found like a turned one
    probes = np.where(ok[:, None], np.concatenate([probe_hashes(coef), probe_hashes(coef * _MIRROR_BAND)], axis=1), zero)
    return HashBatch(ok, phash, mirror, thumbs, probes, mean, std, sharp)


def _row_median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=1, keepdims=True)`` for 64 values a row, the same numbers: the mean of the two
    middle ones. numpy's vectorised sort is ~6x faster than the partition np.median runs on rows this short."""
    ordered = np.sort(values, axis=1)
    return (ordered[:, 31:32] + ordered[:, 32:33]) / 2


def _pack(coefficients: np.ndarray) -> np.ndarray:
    """64 coefficients a row -> uint64, bit set where above the row's median (imagehash's bit order)."""
    bits = coefficients > _row_median(coefficients)
    return (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def phash_bits(reduced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHash and mirror pHash of (n, 32, 32) uint8 reductions, as uint64 (imagehash's own DCT; for tests)."""
    lows = np.stack([_exact_low(r.astype(np.float64)).reshape(-1) for r in reduced]) if len(reduced) else \
        np.zeros((0, HASH_SIZE * HASH_SIZE))
    return _pack(lows), _pack(lows * _MIRROR_SIGN)


# -- spreading the work --------------------------------------------------------------------------------------------------

PROCESS_MIN = 4096  # pictures from which hashing spreads chunks over worker processes


def _process_pool(workers: int):
    """The shared worker pool (``fusekit.runner.worker_pool``), with the probe weights computed here first so
    that forked workers inherit them instead of each computing them (~40 ms)."""
    global _PROBE_W
    if _PROBE_W is None:
        _PROBE_W = _probe_weights()
    from fusekit.runner import worker_pool

    return worker_pool(workers, [__name__])


def _concat(parts: Sequence[HashBatch]) -> HashBatch:
    if not parts:
        return _hash_chunk([])
    if len(parts) == 1:
        return parts[0]
    return HashBatch(*[np.concatenate([getattr(p, f) for p in parts]) for f in HashBatch.__dataclass_fields__])


# A part (what ``hash_parts`` takes) is a list of encoded pictures, a pyarrow binary array of them (from a Parquet
# column: no Python object per picture in the main process), or ``Files`` (read by the worker that hashes them).

class Files:
    """Encoded pictures named by path, read where they are hashed (a worker process), so the main process only
    hands out names. An unreadable file hashes as undecodable, like a damaged one."""

    def __init__(self, paths: Iterable[object]) -> None:
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self) -> list[bytes | None]:
        datas: list[bytes | None] = []
        for path in self.paths:
            try:
                with open(path, "rb") as handle:
                    datas.append(handle.read())
            except OSError:
                datas.append(None)
        return datas


Part = Sequence[bytes | None] | pa.Array | Files


def _cut(part: Part, start: int, stop: int) -> Part:
    if isinstance(part, Files):
        return Files(part.paths[start:stop])
    if isinstance(part, pa.Array):  # a compact copy: pickling a slice would send the whole buffer
        return pa.concat_arrays([part.slice(start, stop - start)])
    return part[start:stop]


def _hash_part(part: Part) -> HashBatch:
    """The unit of work of a worker: load (if needed), decode, hash."""
    if isinstance(part, Files):
        return _hash_chunk(part.load())
    if isinstance(part, pa.Array):
        return _hash_chunk(part.to_pylist())
    return _hash_chunk(part)


def hash_parts(parts: Iterable[Part], workers: int = 2, chunk: int = 512,
               total: int | None = None) -> Iterator[HashBatch]:
    """Decode and hash each part of encoded PNG/JPEG pictures, yielding one HashBatch per part, in order.

    With ``workers`` > 1 and at least ``PROCESS_MIN`` pictures (``total``, when known up front), chunks go to worker
    processes and the next part is read from ``parts`` while the workers hash the current one: reading and hashing
    overlap. Otherwise threads, one chunk each (OpenCV and most numpy steps release the GIL).
    """
    if workers > 1 and (total is None or total >= PROCESS_MIN):
        return _hash_parts_in_processes(parts, workers, chunk)
    return _hash_parts_in_threads(parts, workers, chunk)


def _chunks(part: Part, chunk: int) -> list[Part]:
    return [_cut(part, i, min(i + chunk, len(part))) for i in range(0, len(part), chunk)]


def _hash_parts_in_threads(parts: Iterable[Part], workers: int, chunk: int) -> Iterator[HashBatch]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1 if workers > 1 else None), ThreadPoolExecutor(max(workers, 1)) as pool:
        for part in parts:
            chunks = _chunks(part, chunk)
            yield _concat(list(pool.map(_hash_part, chunks)) if workers > 1 else [_hash_part(c) for c in chunks])


def _hash_parts_in_processes(parts: Iterable[Part], workers: int, chunk: int) -> Iterator[HashBatch]:
    from concurrent.futures.process import BrokenProcessPool

    pending: deque[tuple[Part, list]] = deque()  # parts submitted and not yet yielded (at most two)
    iterator = iter(parts)
    reading = False  # an OSError while reading the input (a vanished file) is the caller's, not the pool's
    try:
        pool = _process_pool(workers)
        while True:
            reading = True
            part = next(iterator, _END)
            reading = False
            if part is _END:
                break
            pending.append((part, [pool.submit(_hash_part, c) for c in _chunks(part, chunk)]))
            if len(pending) > 1:
                yield _concat([f.result() for f in pending[0][1]])
                pending.popleft()
        while pending:
            yield _concat([f.result() for f in pending[0][1]])
            pending.popleft()
    except (BrokenProcessPool, OSError) as exc:  # no processes here (sandbox, unguarded main script): threads
        if reading:
            raise
        import itertools
        import logging

        logging.getLogger(__name__).warning("hashing in threads: worker processes failed (%s)", exc)
        from fusekit.runner import discard_pool

        discard_pool()
        leftover = [part for part, _ in pending]
        yield from _hash_parts_in_threads(itertools.chain(leftover, iterator), workers, chunk)


_END = object()


def hash_images(datas: Part, workers: int = 2, chunk: int = 512) -> HashBatch:
    """Decode and hash one list (or binary array, or ``Files``) of encoded pictures (see ``hash_parts``)."""
    return next(hash_parts([datas], workers, chunk, total=len(datas)))


def from_table(table: pa.Table) -> HashBatch:
    """The inverse of ``HashBatch.table`` (for the cached hashes)."""
    n = table.num_rows
    side2 = QUALITY_SIZE * QUALITY_SIZE
    arr = table.column("thumb").combine_chunks()
    thumbs = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * side2:(arr.offset + n) * side2]
    thumbs = thumbs.reshape(n, QUALITY_SIZE, QUALITY_SIZE)
    probes = table.column("probes").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(n, 2 * len(PROBES))
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


def _probe_weights() -> np.ndarray:
    """(PROBE_BAND**2, 64 * len(PROBES)): lowest DCT coefficients of the 32x32 reduction -> low 8x8 DCT
    coefficients of every probe.

    The exact map takes the 1,024 pixels; here the reduction is first band-limited to its PROBE_BAND x PROBE_BAND
    lowest frequencies (x ~ P+ c, P the truncated 2-D DCT; its rows are orthogonal, so P+ = P^T diag(1 / |row|^2)).
    A re-framing by a few degrees or percent barely moves energy between frequencies, so the probes change little:
    0.13 of 64 bits on average at a band of 24 (0.46 at 16), measured on 8,192 faces, for 56% of the
    multiplications; test (a)'s recall is the exact probes' (0.999) at 24, 0.9975 at 16.
    """
    d = _dct_matrix()
    low = np.einsum("ui,vj->uvij", d, d).reshape(HASH_SIZE * HASH_SIZE, REDUCED * REDUCED)  # rows: (u=y, v=x)
    exact = np.concatenate([(resample_matrix(*p).T @ low.T) for p in PROBES], axis=1)  # (1024, 64 * probes)
    band = np.einsum("ui,vj->uvij", _DCT_BAND, _DCT_BAND).reshape(PROBE_BAND ** 2, REDUCED * REDUCED)
    inverse_t = band / (band * band).sum(axis=1, keepdims=True)  # (P+)^T
    return (inverse_t @ exact).astype(np.float32)


_PROBE_W: np.ndarray | None = None


def probe_hashes(coef: np.ndarray) -> np.ndarray:
    """(n, len(PROBES)) uint64 pHashes of the re-framed 32x32 reductions, from (n, PROBE_BAND, PROBE_BAND) lowest
    DCT coefficients (``_low_dct``)."""
    global _PROBE_W
    if _PROBE_W is None:
        _PROBE_W = _probe_weights()
    n = len(coef)
    if n == 0:
        return np.zeros((0, len(PROBES)), np.uint64)
    values = coef.reshape(n, -1).astype(np.float32) @ _PROBE_W
    return _pack(values.reshape(n * len(PROBES), HASH_SIZE * HASH_SIZE)).reshape(n, len(PROBES))
