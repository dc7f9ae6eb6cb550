"""How much detail a face carries (fusekit.faces.detail) and what dedupe's minimum face size is judged on.

Issue 13: on real FER-2013 `too_small` dropped 8.6% of a benchmark distributed at 48 px (the detector's box is a
median 39 px inside each picture), while a small face enlarged 2x passed by its pixel count. The mechanisms, on
the public-domain photos: an enlarged face reads as its original's size, a picture at its own resolution as its
size; a benchmark's pre-cropped pictures are judged by the picture; any other face by min(box, detail).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fusekit.demo import load_photos
from fusekit.faces.detail import detail_px, enlargement, octave_ratio


@pytest.fixture(scope="module")
def faces48():
    """Faces of the two photos reduced (area filter) to 48 px and 24 px: pictures at their own resolution."""
    out = {}
    for name, photo in load_photos().items():
        x, y, w, h = photo.box
        side = max(w, h)
        crop = photo.image.convert("L").crop((int(x + w / 2 - side / 2), int(y + h / 2 - side / 2),
                                              int(x + w / 2 + side / 2), int(y + h / 2 + side / 2)))
        out[name] = {s: crop.resize((s, s), Image.BOX) for s in (24, 48, 96)}
    return out


def whole(image: Image.Image) -> float:
    return detail_px(np.asarray(image), (0, 0, image.width, image.height))


def test_a_face_at_its_own_resolution_reads_its_size(faces48):
    for sizes in faces48.values():
        for side, image in sizes.items():
            assert whole(image) == pytest.approx(side), side


def test_an_enlarged_face_reads_about_its_original_size(faces48):
    for sizes in faces48.values():
        for factor in (2, 3):
            big = sizes[24].resize((24 * factor, 24 * factor), Image.BICUBIC)
            assert whole(big) < 24 * 1.6, factor  # a 48 or 72 px picture with the detail of ~24 px
        twice = sizes[48].resize((96, 96), Image.BILINEAR)
        assert 30 < whole(twice) < 70


def test_flat_and_tiny_regions_have_no_reading():
    assert np.isnan(whole(Image.new("L", (48, 48), 128)))
    assert np.isnan(octave_ratio(np.full((48, 48), 7, np.uint8)))
    assert whole(Image.new("L", (6, 6), 128)) == 6.0
    assert enlargement(float("nan")) == 1.0 and enlargement(0.5) == 1.0 and enlargement(0.056) == pytest.approx(2, 0.05)
