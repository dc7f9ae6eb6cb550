"""How much detail a source face carries: its side in pixels, corrected for upscaling.

A face's pixel count says little about its resolution: a 24-px face enlarged twice is a 48-px picture with the
detail of 24 px. Enlarging leaves a mark in the spectrum: the band above 0.3 cycles per pixel is nearly empty (a
2x enlargement holds nothing above 0.25 but its interpolation's leakage), while a picture at its own resolution has
energy there in proportion to the band below (natural images' power falls as 1/f^2: equal energy per octave; a
camera's blur and JPEG take some of it). The ratio of the energies in 0.3-0.5 and 0.15-0.3 cycles per pixel,
measured on the face region in source pixels (Hann-windowed FFT), gives the enlargement.

Measured on every 10th real FER-2013 picture (docs/quality.md): at their own 48 px the ratio is >= 0.079 in 99.9% of
them (>= 0.136 in 99%, median 0.31); the same faces enlarged 2x bicubically 0.056 median, 0.075 at the 99th
percentile, 0.096 at most; reduced to 24 px and enlarged back to 48 px 0.058 median, 0.094 at the 99th percentile.
A ratio at or above ``NATIVE`` counts as no enlargement; below it the enlargement is
``(NATIVE / ratio) ** EXPONENT``, fitted so that the median 2x copy reads 2. Enlargements of 1.5x or less are not
told from blur, and a blurred face at its own resolution may read as enlarged: this judges detail, which is what a
model can learn from.
"""

from __future__ import annotations

import cv2
import numpy as np

NATIVE = 0.1  # band ratio at or above which a face counts as at its own resolution
EXPONENT = 1.2  # (0.1 / 0.056) ** 1.2 = 2: the median 2x enlargement of a real 48-px face reads 2
HIGH, LOW = (0.3, 0.5), (0.15, 0.3)  # cycles per pixel
MAX_SIDE = 128  # px: larger regions are measured after an area reduction to this (they are large enough anyway)
MIN_STD = 2.0  # grey levels: a flatter region has no spectrum to read (blank pictures: the blank filter's job)

_BANDS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _bands(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if n not in _BANDS:
        f = np.fft.fftfreq(n)
        rho = np.hypot(*np.meshgrid(f, f, indexing="ij"))
        w = np.hanning(n)
        _BANDS[n] = (np.outer(w, w), (rho >= HIGH[0]) & (rho < HIGH[1]), (rho >= LOW[0]) & (rho < LOW[1]))
    return _BANDS[n]


def octave_ratio(grey: np.ndarray) -> float:
    """Energy in the HIGH band over energy in the LOW band of a square grey region; nan when flat or tiny."""
    n = grey.shape[0]
    if n < 8 or grey.std() < MIN_STD:
        return float("nan")
    window, high, mid = _bands(n)
    g = grey.astype(np.float64)
    power = np.abs(np.fft.fft2((g - g.mean()) * window)) ** 2
    low = float(power[mid].sum())
    return float(power[high].sum()) / low if low > 0 else float("nan")


def enlargement(ratio: float) -> float:
    """How many times a face with this octave ratio was enlarged (1 = not at all)."""
    if not np.isfinite(ratio) or ratio >= NATIVE:
        return 1.0
    return float((NATIVE / max(ratio, 1e-6)) ** EXPONENT)


def detail_px(pixels: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """The face's shorter side in source pixels divided by its enlargement; nan when the region is flat. ``box`` is (x0, y0, x1, y1) in the picture; the square around it that lies inside is measured."""
    h, w = pixels.shape[:2]
    x0, y0, x1, y1 = (max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3]))
    side = int(min(x1 - x0, y1 - y0))
    if side < 8:
        return float(side)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    region = pixels[top:top + side, left:left + side]
    grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY) if region.ndim == 3 else region
    if side > MAX_SIDE:  # measured on a reduction: an enlargement reads smaller, so the figure is an upper bound
        grey = cv2.resize(grey, (MAX_SIDE, MAX_SIDE), interpolation=cv2.INTER_AREA)
    ratio = octave_ratio(grey)
    return float(side / enlargement(ratio)) if np.isfinite(ratio) else float("nan")
