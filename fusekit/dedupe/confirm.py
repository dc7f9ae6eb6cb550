"""The stronger check every candidate pair must pass before it may join a duplicate group.

A 64-bit pHash sees only the lowest frequencies, which all aligned faces share: two faces within the search radius
are often two people, or one person with another expression. The check compares the two 64x64 grey reductions
themselves, region by region, after registering one onto the other:

1. the second face is mirrored when the pair was found through the mirror hash;
2. registration: an affine map of the second face onto the first is estimated by OpenCV's ECC maximisation
   (``cv2.findTransformECC``), first at 32x32 then refined at 64x64. A crop of a few percent or a turn of a few
   degrees is a global affine change, so a copy lines up to within a fraction of a pixel; a replaced mouth or eye
   region is a local change that no global map can undo. Maps far from a small similarity (scale or shear beyond
   ``MAX_LINEAR``, shift beyond ``MAX_SHIFT``) are refused: such a pair is not a copy within the issue's bounds;
3. both are lightly blurred (sigma 1 px: JPEG blocks, resampling), the central 48x48 window is normalised to zero
   mean and unit variance (brightness, contrast and greyscale copies compare equal) and cut into 6x6 blocks of 8x8;
   per block, the SSIM contrast-structure term (2 cov + C) / (var_a + var_b + C) less the squared difference of the
   block means; the pair's score is the WORST block.

A copy agrees everywhere (measured worst block >= 0.93); a look-alike disagrees somewhere (a mouth, the eyes, the
features of another person matched in pose, mean and contrast: <= 0.81). Threshold and measurements: docs/dedupe.md.

Crops are filled with black where they reach outside their picture (fusekit.faces.align.FILL), and two copies of a
face reach outside by different amounts (a copy cropped by a few percent has a wider band of fill). The fill's
edges are the strongest edges in a thumbnail, so both steps leave them out: pixels that are fill in either
thumbnail (exact zeros: a bilinear reduction is zero only where the crop is wholly fill), widened by 3 px, are
masked out of the ECC fit, of the window's normalisation and of the blocks (a block counts when at least 75% of it
is face in both). On real FER-2013 copies cropped by 2-5% this lifted recall from 0.78 to 0.91 (docs/quality.md).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

SIDE = 64  # the thumbnails hashing.py keeps (QUALITY_SIZE)
WINDOW = (8, 56)  # the central window (corners hold rotation fill and crop edges)
GRID = 6  # blocks per side of the window
STABILISER = 0.05  # C in the contrast-structure term, in units of the window's variance: flat blocks do not decide
BLUR_SIGMA = 1.0
# Generated copies >= 0.93, generated look-alikes <= 0.805; on real FER-2013 every candidate pair scoring 0.60-0.87
# that was looked at (150, docs/quality.md) is the same photograph re-cropped or re-processed, so the threshold sits
# just above the generated look-alikes (docs/dedupe.md).
DEFAULT_MIN_SIMILARITY = 0.82
MAX_LINEAR = 0.2  # largest |entry| of (A - I) for the 2x2 part of the map (5% crop: 0.05; 5 degrees: 0.09)
MAX_SHIFT = 12.0  # pixels at 64x64
EARLY_REJECT = 0.3  # worst block after the coarse map below which the fine step is skipped
MIN_COVER = 0.75  # share of a block that must be face (not fill) in both for the block to count
MIN_BLOCKS = 12  # fewer counting blocks than this: every block counts (too little face left to choose)
_FILL_MARGIN = np.ones((7, 7), np.uint8)  # the fill mask widened by 3 px: the blended edge, and 3 sigma of the blur
_COARSE = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 1e-3)
_FINE = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 1e-3)


def _ecc(a: np.ndarray, b: np.ndarray, warp: np.ndarray, criteria, mask: np.ndarray | None = None) -> np.ndarray:
    with contextlib.suppress(cv2.error):  # no convergence (flat or unrelated pictures): keep the previous estimate
        _, warp = cv2.findTransformECC(a, b, warp, cv2.MOTION_AFFINE, criteria, mask, 3)
    return warp


def _plausible(warp: np.ndarray) -> bool:
    return bool(np.abs(warp[:, :2] - np.eye(2)).max() <= MAX_LINEAR and np.abs(warp[:, 2]).max() <= MAX_SHIFT)


def _warp(b: np.ndarray, warp: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(b, warp, (SIDE, SIDE), flags=cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def face_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """uint8 mask of the pixels that are face in both thumbnails (see the module docstring); None: no fill."""
    fill = (a < 0.5) | (b < 0.5)
    if not fill.any():
        return None
    return (1 - cv2.dilate(fill.astype(np.uint8), _FILL_MARGIN)).astype(np.uint8)


def registered_similarity(a: np.ndarray, b: np.ndarray, accept_at: float = np.inf) -> float:
    """Register ``b`` onto ``a`` (float32 64x64) and score the pair: the better of the two registration steps whose
    map is plausible; -inf when the coarse map already is no plausible copy's.

    The coarse (32x32) map already lines up every copy measured to a worst block >= 0.55; a pair scoring below
    ``EARLY_REJECT`` there is rejected without the fine step (most false candidates: saves half the time). As the
    score is the better of the two steps, a pair at or above ``accept_at`` after the coarse step is accepted
    without the fine one (the same decision; most copies, about half their time). A fine step that wanders off to
    an implausible map leaves the coarse score.
    """
    half = (SIDE // 2, SIDE // 2)
    mask = face_mask(a, b)
    small = None if mask is None else cv2.resize(mask, half, interpolation=cv2.INTER_NEAREST)
    warp = _ecc(cv2.resize(a, half, interpolation=cv2.INTER_AREA), cv2.resize(b, half, interpolation=cv2.INTER_AREA),
                np.eye(2, 3, dtype=np.float32), _COARSE, small)
    warp[:, 2] *= 2
    if not _plausible(warp):
        return -np.inf
    coarse = block_similarity(a, _warp(b, warp), mask)
    if coarse < EARLY_REJECT or coarse >= accept_at:
        return coarse
    warp = _ecc(a, b, warp, _FINE, mask)
    if not _plausible(warp):
        return coarse
    return max(coarse, block_similarity(a, _warp(b, warp), mask))


def _window(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The blurred central window, normalised to zero mean and unit variance over its face pixels (brightness and
    contrast drop out)."""
    lo, hi = WINDOW
    w = cv2.GaussianBlur(x, (0, 0), BLUR_SIGMA)[lo:hi, lo:hi]
    mean, std = cv2.meanStdDev(w, mask=mask)
    return (w - np.float32(mean[0, 0])) * np.float32(1.0 / max(float(std[0, 0]), 1.0))


def block_similarity(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Worst per-block agreement of two aligned float32 64x64 pictures (1 = identical up to brightness/contrast),
    over the blocks that are face in both (``mask``, see face_mask; None: all blocks).

    Block means, variances and covariances are area reductions (an exact mean over each 8x8 block) of the window,
    its square and the product: a handful of OpenCV calls instead of numpy's per-block reshapes (2x faster; the
    same scores within 1e-5)."""
    lo, hi = WINDOW
    inner = None if mask is None else np.ascontiguousarray(mask[lo:hi, lo:hi])
    if inner is not None and inner.sum() < 0.25 * inner.size:
        inner = None  # hardly any face left in both: judge the whole window
    wa, wb = _window(a, inner), _window(b, inner)
    grid = (GRID, GRID)

    def block_mean(x: np.ndarray) -> np.ndarray:
        return cv2.resize(x, grid, interpolation=cv2.INTER_AREA)

    ma, mb = block_mean(wa), block_mean(wb)
    va, vb = block_mean(wa * wa) - ma * ma, block_mean(wb * wb) - mb * mb
    cov = block_mean(wa * wb) - ma * mb
    cs = (2 * cov + STABILISER) / (va + vb + STABILISER) - (ma - mb) ** 2
    if inner is not None:
        counts = block_mean(inner.astype(np.float32)) >= MIN_COVER
        if counts.sum() >= MIN_BLOCKS:
            return float(cs[counts].min())
    return float(cs.min())


def _score(a: np.ndarray, b: np.ndarray, mirrored: bool, accept_at: float = np.inf) -> float:
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    if mirrored:
        b = np.ascontiguousarray(b[:, ::-1])
    return registered_similarity(a, b, accept_at)


PROCESS_MIN = 4096  # pairs from which the scoring goes to worker processes
_CHUNK = 512


def _score_chunk(thumbs_a: np.ndarray, thumbs_b: np.ndarray, flags: np.ndarray, accept_at: float) -> list[float]:
    """A chunk of pairs, in a worker process (one OpenCV thread: the pool is the parallelism)."""
    return [_score(a, b, f, accept_at) for a, b, f in zip(thumbs_a, thumbs_b, flags)]


def pair_scores(thumbs_a: np.ndarray, thumbs_b: np.ndarray, mirrored: np.ndarray, workers: int = 2,
                accept_at: float = np.inf) -> np.ndarray:
    """Worst-block similarity of each registered pair (higher = more alike; -inf: no plausible registration).
    A pair that reaches ``accept_at`` after the coarse registration keeps that score (see registered_similarity).

    From ``PROCESS_MIN`` pairs on (and when other jobs leave the cores idle), chunks of pairs go to worker
    processes: two threads gained ~5% here (ECC releases the GIL, the Python and numpy steps around it do not),
    two processes nearly 2x."""
    n = len(thumbs_a)
    flags = np.asarray(mirrored, bool)
    if n == 0:
        return np.zeros(0, np.float32)
    if workers > 1 and n >= PROCESS_MIN:
        from fusekit.processes import processes_pay

        if processes_pay(workers):
            scores = _in_processes(thumbs_a, thumbs_b, flags, workers, accept_at)
            if scores is not None:
                return scores
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)  # parallel over pairs instead (OpenCV releases the GIL)
    try:
        args = (thumbs_a, thumbs_b, flags, [accept_at] * n)
        if workers > 1 and n > 64:
            with ThreadPoolExecutor(workers) as pool:
                out = list(pool.map(_score, *args))
        else:
            out = [_score(*t) for t in zip(*args)]
    finally:
        cv2.setNumThreads(previous)  # other stages in this process keep OpenCV's own threading
    return np.asarray(out, np.float32)


def _in_processes(thumbs_a: np.ndarray, thumbs_b: np.ndarray, flags: np.ndarray, workers: int,
                  accept_at: float) -> np.ndarray | None:
    """Scores from the worker pool hashing also uses (``fusekit.runner.worker_pool``: started once a run), or
    None when processes cannot start here."""
    from concurrent.futures.process import BrokenProcessPool

    from fusekit.runner import discard_pool, worker_pool

    cuts = [slice(i, i + _CHUNK) for i in range(0, len(thumbs_a), _CHUNK)]
    try:
        parts = list(worker_pool(workers, [__name__]).map(
            _score_chunk, [thumbs_a[c] for c in cuts], [thumbs_b[c] for c in cuts], [flags[c] for c in cuts],
            [accept_at] * len(cuts)))
    except (BrokenProcessPool, OSError) as exc:
        import logging

        logging.getLogger(__name__).warning("confirming in threads: worker processes failed (%s)", exc)
        discard_pool()
        return None
    return np.asarray([score for part in parts for score in part], np.float32)


def confirm(thumbs_a: np.ndarray, thumbs_b: np.ndarray, mirrored: np.ndarray,
            min_similarity: float = DEFAULT_MIN_SIMILARITY, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, score) for each candidate pair."""
    scores = pair_scores(thumbs_a, thumbs_b, mirrored, workers, accept_at=min_similarity)
    return scores >= min_similarity, scores
