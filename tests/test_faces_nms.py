"""The vectorised NMS gives exactly mtcnn's ``smart_nms_from_bboxes`` result (same rows, same order)."""

import numpy as np
import pytest
from mtcnn.utils.bboxes import smart_nms_from_bboxes

from fusekit.faces import nms as fast_nms


def _boxes(rng: np.random.Generator, images: int, per_image: int) -> np.ndarray:
    ids = rng.integers(0, images, images * per_image).astype(float)
    xy = rng.uniform(0, 60, (len(ids), 2))
    side = rng.uniform(5, 40, (len(ids), 1))
    scores = rng.uniform(0, 1, (len(ids), 1)).round(2)  # ties on purpose
    return np.concatenate([ids[:, None], xy, xy + side, scores], axis=1)


@pytest.mark.parametrize("method", ["union", "min"])
@pytest.mark.parametrize("initial_sort", [True, False])
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_same_rows_as_mtcnn(method: str, initial_sort: bool, threshold: float) -> None:
    rng = np.random.default_rng(7)
    for images, per_image in [(1, 1), (1, 30), (40, 12), (7, 3)]:
        rows = _boxes(rng, images, per_image)
        expected = smart_nms_from_bboxes(rows.copy(), threshold=threshold, method=method, initial_sort=initial_sort)
        got = fast_nms.nms(rows.copy(), threshold, method, initial_sort)
        assert got.shape == expected.shape
        assert np.array_equal(got, expected)


def test_empty_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast_nms.nms(np.empty((0, 6)), 0.5).shape == (0, 6)
    rows = _boxes(np.random.default_rng(3), 50, 20)
    expected = smart_nms_from_bboxes(rows.copy(), threshold=0.5, method="union", initial_sort=True)
    monkeypatch.setattr(fast_nms, "_CELLS", 1)  # one image per step
    assert np.array_equal(fast_nms.nms(rows, 0.5), expected)
