"""Face crops: a 5-point similarity transform onto fusekit's template, or a plain square crop when there are no
landmarks.

The template is InsightFace's ArcFace 112×112 template (eyes, nose tip, mouth corners; the de-facto standard for face
crops, made mirror-symmetric) zoomed by ``TEMPLATE_ZOOM`` about (55.5, 72): the face fills more of the crop, as in the expression benchmarks.
At ArcFace's own framing a crop of a 48×48 FER-2013 picture reaches outside it for a median 31% of its area (the
benchmark's faces are cropped tight: eyes 18 px apart in 48), and whatever a crop takes from outside the picture is
made up. Zoomed by 1.3 the median is 2.1% on real FER-2013 (docs/quality.md); the chin below the mouth is cut, the
eyes, brows and mouth stay. The same framing is used for every source, so no source is recognisable by it.
Outside the picture a crop is filled with one constant (black, as InsightFace's ``norm_crop``), never by reflection,
which paints mirrored eyes and mouths into the border; ``outside_fraction`` says how much of a crop is fill.
The transform is fitted by least squares (Umeyama's method in 2-D, written with complex numbers: a similarity is
multiplication by one complex number plus a translation), so it is exact, deterministic and needs no RANSAC.
"""

from __future__ import annotations

import cv2
import numpy as np

# ArcFace 112×112 template: left eye, right eye, nose, mouth left, mouth right (image left/right, as MTCNN names them).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# ... made mirror-symmetric about the crop's flip axis (x = 55.5 in pixel centres, OpenCV's convention; ArcFace's eyes
# centre on 55.9): a mirrored picture then gives the mirrored crop, which dedupe's mirror hash relies on. Each
# left/right pair keeps its mean distance and height (a change of at most 0.5 px).
MIRROR_AXIS = 55.5
SYMMETRIC_112 = np.array([
    [MIRROR_AXIS - 17.6186, 51.5989], [MIRROR_AXIS + 17.6186, 51.5989], [MIRROR_AXIS, 71.7366],
    [MIRROR_AXIS - 14.5903, 92.2848], [MIRROR_AXIS + 14.5903, 92.2848]], dtype=np.float64)
MIRRORED_POINTS = [1, 0, 2, 4, 3]  # the landmark order of a mirrored face: eyes and mouth corners swap
TEMPLATE_ZOOM = 1.3
TEMPLATE_CENTRE = np.array([MIRROR_AXIS, 72.0])
TEMPLATE_112 = TEMPLATE_CENTRE + TEMPLATE_ZOOM * (SYMMETRIC_112 - TEMPLATE_CENTRE)
FILL = 0  # the value of crop pixels outside the picture
# Names the framing and fill of the stored crops: faces rows made with another are stale and made again.
CROP_VERSION = f"template=arcface-symmetric*{TEMPLATE_ZOOM:g}@55.5,72 fill={FILL} refine=mirror-mean detail=1"

# The eyes weigh more in the fit than the nose and mouth corners. Expressions move the mouth (a smile widens it,
# surprise drops it) but hardly the eyes; an unweighted fit would shift and scale a face with its expression, and
# put a smiling face's eyes 2.5-3.5 px off the template at 112 px (measured on the astronaut photo). With the eyes at
# 3× weight they land within about 1 px of the template and the mouth takes the expression's change.
LANDMARK_WEIGHTS = np.array([3.0, 3.0, 1.0, 1.0, 1.0])

# Where an MTCNN face box lands in an ArcFace-aligned 112 crop, on average (measured on the demo photos' faces, see
# tests/test_faces_quality.py), and so in fusekit's zoomed template: unaligned crops (a given box with no detection)
# use it so that they frame the face the way aligned crops do.
ARCFACE_BOX = (16.5, 10.0, 94.5, 109.0)  # measured (17, 10, 95, 109), centred on the mirror axis
BOX_IN_TEMPLATE = tuple(float(TEMPLATE_CENTRE[i % 2] + TEMPLATE_ZOOM * (v - TEMPLATE_CENTRE[i % 2]))
                        for i, v in enumerate(ARCFACE_BOX))


def template(size: int, base: np.ndarray = TEMPLATE_112) -> np.ndarray:
    return base * (size / 112.0)


def similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 2×3 similarity (rotation, uniform scale, translation) that maps ``src`` points onto ``dst`` best
    (weighted least squares)."""
    wt = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    wt = wt / wt.sum()
    z = src[:, 0] + 1j * src[:, 1]
    w = dst[:, 0] + 1j * dst[:, 1]
    zm, wm = np.sum(wt * z), np.sum(wt * w)
    zc, wc = z - zm, w - wm
    denominator = float(np.sum(wt * np.abs(zc) ** 2))
    c = complex(np.sum(wt * np.conj(zc) * wc) / denominator) if denominator > 1e-12 else 1.0 + 0j
    t = wm - c * zm
    return np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]], dtype=np.float64)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(pixels: np.ndarray, matrix: np.ndarray, size: int, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """The ``size``×``size`` crop that ``matrix`` (source -> crop) selects, filled with FILL outside the picture
    (``border``: another OpenCV border mode, for the detector's own views).

    When the crop shrinks the face by more than 2× the source region is first reduced with area averaging, so that a
    face from a 24-megapixel photo is not aliased by bilinear sampling.
    """
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 0.5:
        inverse = cv2.invertAffineTransform(matrix)
        corners = apply(inverse, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
        margin = 2.0 / scale
        h, w = pixels.shape[:2]
        x0 = int(max(0, np.floor(corners[:, 0].min() - margin)))
        y0 = int(max(0, np.floor(corners[:, 1].min() - margin)))
        x1 = int(min(w, np.ceil(corners[:, 0].max() + margin)))
        y1 = int(min(h, np.ceil(corners[:, 1].max() + margin)))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = pixels[y0:y1, x0:x1]
            rw, rh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            small = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
            fx, fy = rw / (x1 - x0), rh / (y1 - y0)
            # source = small / f + origin, so crop = A (small / f + origin) + t
            inner = matrix.copy()
            inner[:, 0] = matrix[:, 0] / fx
            inner[:, 1] = matrix[:, 1] / fy
            inner[:, 2] = matrix[:, :2] @ np.array([x0, y0]) + matrix[:, 2]
            return cv2.warpAffine(small, inner, (size, size), flags=cv2.INTER_LINEAR, borderMode=border,
                                  borderValue=_fill(pixels))
    return cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border,
                          borderValue=_fill(pixels))


def _fill(pixels: np.ndarray) -> tuple[int, ...]:
    return (FILL,) * (pixels.shape[2] if pixels.ndim == 3 else 1)


def outside_fraction(matrix: np.ndarray, width: int, height: int, size: int) -> float:
    """The share of a ``size``² crop (by ``matrix``, source -> crop) that lies outside the width×height picture.

    Exact: the picture's rectangle mapped into the crop is a parallelogram; its overlap with the crop square is a
    convex polygon whose area comes from OpenCV's convex intersection."""
    corners = apply(matrix, np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64))
    square = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float32)
    if np.cross(corners[1] - corners[0], corners[2] - corners[1]) < 0:  # a mirrored map: keep the polygon clockwise
        corners = corners[::-1]
    area, _ = cv2.intersectConvexConvex(corners.astype(np.float32), square)
    return float(min(1.0, max(0.0, 1.0 - max(area, 0.0) / (size * size))))


def aligned_matrix(landmarks: np.ndarray, size: int, base: np.ndarray = TEMPLATE_112) -> np.ndarray:
    return similarity(np.asarray(landmarks, dtype=np.float64), template(size, base), LANDMARK_WEIGHTS)


def square_matrix(cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """The scale-and-shift that maps the square of ``side`` centred at (cx, cy) onto ``size``×``size``."""
    k = size / side
    return np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]], dtype=np.float64)


def box_matrix(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """An unaligned crop of a face box (x0, y0, x1, y1) framed like an aligned crop (see BOX_IN_TEMPLATE)."""
    x0, y0, x1, y1 = box
    tx0, ty0, tx1, ty1 = (v * size / 112.0 for v in BOX_IN_TEMPLATE)
    side = max(x1 - x0, 1.0) * size / (tx1 - tx0)
    side = max(side, max(y1 - y0, 1.0) * size / (ty1 - ty0))
    # centre the box where the template puts the box centre
    k = size / side
    cx = (x0 + x1) / 2 - ((tx0 + tx1) / 2 - size / 2) / k
    cy = (y0 + y1) / 2 - ((ty0 + ty1) / 2 - size / 2) / k
    return square_matrix(cx, cy, side, size)


def crop_square(pixels: np.ndarray, cx: float, cy: float, side: float, out: int) -> np.ndarray:
    """The square of ``side`` around (cx, cy), edges replicated where it leaves the picture, resized to ``out``."""
    return warp_resample(pixels, square_matrix(cx, cy, side, out), out, replicate=True)


def warp_resample(pixels: np.ndarray, matrix: np.ndarray, size: int, replicate: bool = False) -> np.ndarray:
    """Like ``warp`` for an axis-aligned matrix, area-averaged when it shrinks (detector views)."""
    scale = float(matrix[0, 0])
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_REFLECT_101
    if scale < 1.0:
        h, w = pixels.shape[:2]
        side = size / scale
        x0 = (0 - matrix[0, 2]) / scale
        y0 = (0 - matrix[1, 2]) / scale
        ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
        ix1, iy1 = int(np.ceil(x0 + side)), int(np.ceil(y0 + side))
        # pad only where the square leaves the picture, then one area resize
        pad = (max(0, -iy0), max(0, iy1 - h), max(0, -ix0), max(0, ix1 - w))
        region = pixels[max(0, iy0):min(h, iy1), max(0, ix0):min(w, ix1)]
        if region.size == 0:
            return np.zeros((size, size, *pixels.shape[2:]), dtype=pixels.dtype)
        if any(pad):
            region = cv2.copyMakeBorder(region, *pad, border)
        return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(pixels, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
