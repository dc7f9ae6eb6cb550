"""The stronger check every candidate pair must pass before it may join a duplicate group.

A 64-bit pHash sees only the lowest frequencies, which all aligned faces share: two faces within the search radius
are often two people, or one person with another expression. The check compares the two 64x64 grey reductions
themselves, region by region:

1. the second face is mirrored when the pair was found through the mirror hash;
2. both are lightly blurred, then re-framed by the geometric probes the search used (turns of +-2.5 degrees, 3%
   zoom with 1.5% shifts), applied to either face, plus one-pixel shifts; the best framing is kept;
3. in the central 48x48 window each face is normalised to zero mean and unit variance (so brightness, contrast and
   greyscale copies compare equal), the window is cut into 6x6 blocks of 8x8 pixels, and the pair's score is the
   largest per-block mean squared difference.

A copy differs a little everywhere (JPEG, resampling, residual misalignment); a look-alike differs a lot somewhere
(a mouth, the eyes), so the worst block separates them where a global similarity does not. The threshold comes from
measurements recorded in docs/dedupe.md.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from fusekit.dedupe.hashing import PROBES, QUALITY_SIZE, resample_matrix

SIDE = QUALITY_SIZE
WINDOW = (8, 56)  # the central window (corners hold rotation fill and crop edges)
BLOCK = 8
DEFAULT_MAX_BLOCK_ERROR = 0.3
SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))

_MAPS: list[scipy.sparse.csr_matrix] | None = None


def _maps() -> list[scipy.sparse.csr_matrix]:
    global _MAPS
    if _MAPS is None:
        _MAPS = [resample_matrix(*p, side=SIDE).astype(np.float32) for p in PROBES]
    return _MAPS


def _blur(x: np.ndarray) -> np.ndarray:
    """A separable [1 2 1]/4 blur (edges repeated): tolerance for sub-pixel misalignment and JPEG blocks."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    x = (p[:, :-2, :] + 2 * p[:, 1:-1, :] + p[:, 2:, :]) / 4
    return (x[:, :, :-2] + 2 * x[:, :, 1:-1] + x[:, :, 2:]) / 4


def _window(x: np.ndarray) -> np.ndarray:
    lo, hi = WINDOW
    w = x[:, lo:hi, lo:hi]
    w = w - w.mean(axis=(1, 2), keepdims=True)
    return w / np.maximum(w.std(axis=(1, 2), keepdims=True), 1.0)


def _worst_block(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a - b) ** 2
    n, side = len(d), d.shape[1]
    k = side // BLOCK
    return d.reshape(n, k, BLOCK, k, BLOCK).mean(axis=(2, 4)).max(axis=(1, 2))


def _reframed(x: np.ndarray) -> list[np.ndarray]:
    flat = x.reshape(len(x), -1).T
    return [np.ascontiguousarray((m @ flat).T).reshape(x.shape) for m in _maps()]


def pair_scores(thumbs_a: np.ndarray, thumbs_b: np.ndarray, mirrored: np.ndarray, batch: int = 2048) -> np.ndarray:
    """Worst-block error of each pair (lower = more alike), minimised over framings of either face."""
    n = len(thumbs_a)
    out = np.empty(n, np.float32)
    for start in range(0, n, batch):
        a = _blur(thumbs_a[start:start + batch].astype(np.float32))
        b = thumbs_b[start:start + batch].astype(np.float32)
        flip = np.asarray(mirrored[start:start + batch], bool)
        b[flip] = b[flip][:, :, ::-1]
        b = _blur(b)
        wa, wb = _window(a), _window(b)
        best = _worst_block(wa, wb)
        for ra in _reframed(a):
            best = np.minimum(best, _worst_block(_window(ra), wb))
        for rb in _reframed(b):
            best = np.minimum(best, _worst_block(wa, _window(rb)))
        for dy, dx in SHIFTS:
            best = np.minimum(best, _worst_block(wa, _window(np.roll(b, (dy, dx), axis=(1, 2)))))
        out[start:start + batch] = best
    return out


def confirm(thumbs_a: np.ndarray, thumbs_b: np.ndarray, mirrored: np.ndarray,
            max_block_error: float = DEFAULT_MAX_BLOCK_ERROR) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, score) for each candidate pair."""
    scores = pair_scores(thumbs_a, thumbs_b, mirrored)
    return scores <= max_block_error, scores
