"""Decoding images safely: every failure becomes a reject reason, never an exception that stops a run."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageStat

# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse at the warning limit.
MAX_PIXELS = 89_478_485


class Rejected(Exception):
    """A per-image failure with a reason from ``records.REJECT_REASONS``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    sha256: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode ``data``; raise ``Rejected`` with the reason when that is impossible."""
    if not data:
        raise Rejected("empty_file")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise Rejected("decompression_bomb", str(exc)) from None
        except Image.DecompressionBombWarning as exc:
            raise Rejected("decompression_bomb", str(exc)) from None
        except Image.UnidentifiedImageError:
            raise Rejected("not_an_image", _sniff(data)) from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged headers
            raise Rejected("undecodable", f"{type(exc).__name__}: {exc}") from None
        if image.width * image.height > max_pixels:
            raise Rejected("decompression_bomb", f"{image.width}x{image.height} exceeds {max_pixels} pixels")
        try:
            image.load()
        except OSError as exc:
            reason = "truncated" if "truncated" in str(exc) else "undecodable"
            raise Rejected(reason, str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            raise Rejected("undecodable", f"{type(exc).__name__}: {exc}") from None
    return image


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "HTML document"
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return "XML/SVG document"
    try:
        data[:64].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown binary format"


def inspect(data: bytes, *, check_blank: bool = False, blank_mean: float = 5.0, blank_std: float = 2.0) -> ImageInfo:
    """Decode ``data`` fully and describe it; ``check_blank`` also rejects near-constant dark images."""
    image = open_image(data)
    if check_blank:
        stat = ImageStat.Stat(image.convert("L"))
        if stat.mean[0] < blank_mean or stat.stddev[0] < blank_std:
            raise Rejected("blank_image", f"mean {stat.mean[0]:.1f}, std {stat.stddev[0]:.1f}")
    return ImageInfo(image.width, image.height, image.mode, sha256_hex(data))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes for a uint8 array (H×W grey or H×W×3 RGB); deterministic for a given zlib.

    Written directly with zlib, every row with PNG's "Sub" filter (each byte minus the one a pixel to its left),
    rather than through Pillow: for the small images this is used on (FER-2013's 48×48 rows, video frames, augmented
    112 px faces) Pillow's per-call overhead and adaptive filtering cost 2-10× the compression itself, for files
    within a few percent of the same size.
    """
    array = np.ascontiguousarray(pixels, dtype=np.uint8)
    if array.ndim == 2:
        colour_type, bpp = 0, 1
    elif array.ndim == 3 and array.shape[2] == 3:
        colour_type, bpp = 2, 3
    else:
        raise ValueError(f"encode_png takes H×W or H×W×3 uint8 arrays, got shape {array.shape}")
    height, width = array.shape[:2]
    rows = array.reshape(height, -1)
    raw = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 1  # filter type Sub
    raw[:, 1:1 + bpp] = rows[:, :bpp]
    np.subtract(rows[:, bpp:], rows[:, :-bpp], out=raw[:, 1 + bpp:])  # uint8 arithmetic wraps mod 256, as PNG wants
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _png_chunk(b"IEND", b""))


def encoded_info(data: bytes) -> ImageInfo:
    """The ImageInfo of bytes made by ``encode_png`` (read from its header: no decode needed)."""
    width, height, _, colour_type = struct.unpack(">IIBB", data[16:26])
    return ImageInfo(width, height, "L" if colour_type == 0 else "RGB", sha256_hex(data))
