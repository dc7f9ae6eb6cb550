"""Quality filters: faces too small, blank, too dark or too blurred to train on (each a setting with its reason).

Measures come from the hashing pass (one decode of the aligned crop, 64x64 grey): mean grey level, contrast (grey
standard deviation) and sharpness (standard deviation of the Laplacian over the contrast, so a dim but sharp face is
not called blurred). The source face size comes from the faces table (face_width x face_height in source pixels):
an aligned crop is always the same size, but a 20-pixel source face upsampled to it carries no detail.
"""

from __future__ import annotations

import numpy as np


def quality_reasons(face_short_side: np.ndarray, ok: np.ndarray, mean: np.ndarray, std: np.ndarray,
                    sharpness: np.ndarray, *, min_face: int, min_contrast: float, min_brightness: float,
                    min_sharpness: float) -> np.ndarray:
    """An object array: the drop reason of each face, or None."""
    n = len(ok)
    reason = np.full(n, None, dtype=object)
    checks = [  # order matters: a face gets the first reason that applies
        ("too_small", np.nan_to_num(face_short_side, nan=1e9) < min_face),
        ("undecodable", ~ok),
        ("blank", std < min_contrast),
        ("dark", mean < min_brightness),
        ("blurred", sharpness < min_sharpness),
    ]
    for name, bad in checks:
        reason[(reason == None) & bad] = name  # noqa: E711 - elementwise on an object array
    return reason
