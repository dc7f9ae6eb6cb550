"""Turning an `images` row's stored bytes or file into an upright 8-bit pixel array the detector can use.

Every mode Pillow can open ends up as H×W×3 uint8 RGB plus a flag that says whether the source had one channel
(its crops are then stored grey). EXIF orientation is applied first, so boxes and landmarks are in the picture's
upright coordinates. Every failure is a ``Rejected`` with a reason from ``records.REJECT_REASONS``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from fusekit.imageio import Rejected, find_stored, open_image, read_source, sha256_hex

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass
class Decoded:
    """An upright RGB picture: ``pixels`` is H×W×3 uint8; ``grey`` when the source had a single channel."""

    pixels: np.ndarray
    grey: bool

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


_last_read: tuple[str, str, bytes] | None = None  # (full path, sha256, bytes) of the last file read


def row_bytes(row: dict[str, Any], source_root: str | None) -> bytes:
    """The encoded image of an `images` row: its stored bytes, else its file under the unit's source root.

    The file is found from the stored name (``imageio.find_stored``: a name that is not UTF-8 was percent-escaped),
    read as ingest reads it (``imageio.read_source``: a regular file within the size limit, once), and the last file
    read is remembered, so several faces rows of one picture (ExpW) read it once. A file that changed since ingest
    (its sha256 differs) is rejected: its label may no longer belong to it.
    """
    global _last_read
    image = row.get("image") or {}
    data = image.get("bytes")
    if data is not None:
        return data
    path = image.get("path") or row.get("source_path")
    if not path or not source_root:
        raise Rejected("missing_file", "the images row has neither stored bytes nor a file path")
    full = find_stored(source_root, path)
    expected = row.get("sha256")
    last = _last_read
    if last is not None and expected and last[0] == str(full) and last[1] == expected:
        return last[2]
    try:
        data = read_source(full, path)
    except Rejected as rejected:
        if rejected.reason == "missing_file" and "broken" not in rejected.detail:
            raise Rejected("missing_file", f"{path} does not exist under {source_root}") from None
        raise
    digest = sha256_hex(data)
    if expected and digest != expected:
        raise Rejected("source_changed", f"{path} changed since it was ingested; ingest the dataset again")
    _last_read = (str(full), digest, data)
    return data


def _to_8bit(image: Image.Image) -> np.ndarray:
    """One-channel high-bit-depth or float pictures scaled to 0..255 (16-bit PNG/TIFF, 32-bit int, float)."""
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    if image.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    elif arr.max(initial=0) > 255:
        arr = arr / (65535.0 if arr.max() <= 65535 else arr.max()) * 255.0
    return np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Decoded:
    """An opened Pillow image (any mode) -> upright ``Decoded``."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - a damaged EXIF block must not lose the picture; keep it as stored
        # not silent: the picture is used as stored, which may be turned; say so where logs are read
        logging.getLogger(__name__).debug("EXIF orientation not applied (%s: %s)", type(exc).__name__, exc)
    mode = image.mode
    grey = mode in GREY_MODES
    if mode in ("P", "PA"):
        grey = False
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        # Transparent areas become white, as a viewer shows them; the alpha itself carries no face.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        mode = "RGB"
    if mode == "1":
        image = image.convert("L")
        mode = "L"
    if mode.startswith("I") or mode == "F":
        grey_pixels = _to_8bit(image)
        pixels = np.repeat(grey_pixels[:, :, None], 3, axis=2)
        return Decoded(np.ascontiguousarray(pixels), True)
    if mode == "L":
        pixels = np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
        return Decoded(np.ascontiguousarray(pixels), True)
    if mode != "RGB":
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    return Decoded(np.ascontiguousarray(np.asarray(image, dtype=np.uint8)), grey)


def decode(data: bytes) -> Decoded:
    """Encoded bytes -> ``Decoded``; raises ``Rejected`` (undecodable, truncated, not_an_image, ...)."""
    image = open_image(data)
    try:
        return to_rgb(image)
    except Rejected:
        raise
    except Exception as exc:  # noqa: BLE001 - an odd mode Pillow cannot convert
        raise Rejected("undecodable", f"{image.mode} image: {type(exc).__name__}: {exc}") from None


def region_sha256(pixels: np.ndarray, box: tuple[int, int, int, int]) -> str:
    """sha256 of the RGB pixels inside ``box`` (x0, y0, x1, y1, already clipped), prefixed by its shape.

    The shape prefix keeps two regions with the same bytes but different shapes apart (a 2×6 and a 3×4 grey patch).
    """
    x0, y0, x1, y1 = box
    region = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    digest = hashlib.sha256(f"{x1 - x0}x{y1 - y0}:".encode())
    digest.update(region.tobytes())
    return digest.hexdigest()
