"""MTCNN's non-maximum suppression (mtcnn 1.0.0 ``smart_nms_from_bboxes``), vectorised over the images of a batch.

mtcnn loops over the images in Python and builds one IoU matrix per image: 0.7 ms a picture for the pre-cropped path,
about as much as its networks. Here the boxes of up to a few hundred images are laid out as one padded
images × boxes × boxes array. The rule is mtcnn's own (not greedy NMS): a box is dropped when any box before it in
score order overlaps it above the threshold, whether or not that box was kept; areas without +1. Output rows come in
mtcnn's order (images by id, then score order), so the result is the same array.
"""

from __future__ import annotations

import numpy as np

_CELLS = 1 << 22  # padded images × boxes × boxes per step (bounds memory: ~32 MiB a float64 array)


def nms(rows: np.ndarray, threshold: float, method: str = "union", initial_sort: bool = True) -> np.ndarray:
    """Rows (image id, x0, y0, x1, y1, score, ...) kept by mtcnn's NMS rule, per image."""
    rows = np.asarray(rows)
    if not len(rows):
        return np.empty((0, 6))
    if initial_sort:  # as mtcnn's sort_by_scores (descending: argsort reversed, ties included)
        rows = rows[np.argsort(rows[:, 5])[::-1]]
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    _, start, counts = np.unique(rows[:, 0], return_index=True, return_counts=True)
    keep = np.zeros(len(rows), dtype=bool)
    width = int(counts.max())
    step = max(1, _CELLS // (width * width))
    for first in range(0, len(start), step):
        s, c = start[first:first + step], counts[first:first + step]
        group = np.repeat(np.arange(len(s)), c)
        index = np.concatenate([np.arange(a, a + n) for a, n in zip(s, c)])
        pos = index - np.repeat(s, c)
        boxes = np.zeros((len(s), width, 4))
        valid = np.zeros((len(s), width), dtype=bool)
        boxes[group, pos] = rows[index, 1:5]
        valid[group, pos] = True
        keep[index] = _kept(boxes, valid, threshold, method)[group, pos]
    return rows[keep]


def _kept(boxes: np.ndarray, valid: np.ndarray, threshold: float, method: str) -> np.ndarray:
    a, b = boxes[:, None, :, :], boxes[:, :, None, :]
    inter = (np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]))
             * np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])))
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "union":
            overlap = inter / (area[:, None, :] + area[:, :, None] - inter)
        elif method == "min":
            overlap = inter / np.minimum(area[:, None, :], area[:, :, None])
        else:
            raise ValueError(f"unknown NMS method {method!r}")
        failed = overlap > threshold
    width = boxes.shape[1]
    earlier = np.triu(np.ones((width, width), dtype=bool), k=1)  # [i, j]: i comes before j
    failed &= earlier[None] & valid[:, :, None] & valid[:, None, :]
    return ~failed.any(axis=1)
