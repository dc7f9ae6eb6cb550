"""fusekit.imageio's own PNG writer and its matching reader (what the faces stage stores, what dedupe decodes)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fusekit.imageio import decode_own_png, encode_png


@pytest.mark.parametrize("shape", [(48, 48), (112, 112, 3), (5, 7), (7, 5, 3), (1, 1, 3)])
def test_own_png_round_trips_and_pillow_agrees(shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    pixels.flat[0] = 255  # a wrap-around in the Sub filter's running sum
    data = encode_png(pixels, level=1)
    assert np.array_equal(decode_own_png(data), pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)


def test_other_pngs_and_damaged_ones_are_left_to_a_general_decoder():
    pixels = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    data = encode_png(pixels)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert("RGBA").save(buf, "PNG")
    assert decode_own_png(buf.getvalue()) is None  # colour type 6: not encode_png's
    assert decode_own_png(data[:-1]) is None  # truncated
    assert decode_own_png(data[:60] + bytes([data[60] ^ 1]) + data[61:]) is None  # IDAT damaged: CRC
    assert decode_own_png(b"\xff\xd8\xff" + data[3:]) is None  # not a PNG
    # every row Up-filtered (type 2) instead of Sub: a valid PNG, but not this reader's
    raw = b"".join(b"\x02" + bytes(16 * 3) for _ in range(16))
    body = zlib.compress(raw)
    idat = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    other = data[:33] + idat + data[-12:]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(other))), np.zeros((16, 16, 3), np.uint8))
    assert decode_own_png(other) is None
