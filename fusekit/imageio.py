"""Reading and decoding images safely: every failure becomes a reject reason, never an exception that stops a run.

Reading a source file (``read_source``): it is checked with ``stat`` before it is opened, so a named pipe, socket or
device is rejected ``not_a_file`` without ever being opened (opening a FIFO blocks until a writer comes), and a file
over the size limit (64 MiB, ``FUSEKIT_MAX_IMAGE_BYTES`` changes it) is rejected ``file_too_large`` from its size,
unread. It is then opened once, non-blocking (should it have been swapped for a FIFO since the check), checked again
on the open descriptor, and read with a bound.

File names (``text_name`` / ``fs_name``): Python gives an undecodable byte in a file name as a lone surrogate
(``os.fsdecode``'s surrogateescape), which Parquet string columns cannot hold. Records keep that form (it opens the
file); the rows written keep every name that is valid UTF-8 as it is, and in a name that is not, each undecodable
byte becomes ``%XX`` and each ``%`` ``%25``, so ``urllib.parse.unquote_to_bytes`` gives back the name's exact bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import urllib.parse
import zlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageStat

from fusekit.errors import ConfigError

# Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse at the warning limit.
MAX_PIXELS = 89_478_485
# The largest image file read (bytes); FUSEKIT_MAX_IMAGE_BYTES overrides it. A face picture is far smaller: a larger
# file named .jpg is junk or a mistake, and reading it whole would cost its size in memory.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_BYTES_ENV = "FUSEKIT_MAX_IMAGE_BYTES"


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


# -- reading source files ----------------------------------------------------------------------------------------------

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def max_image_bytes() -> int:
    """The size limit for an image file: ``FUSEKIT_MAX_IMAGE_BYTES`` (a whole number of bytes), else 64 MiB."""
    text = os.environ.get(MAX_IMAGE_BYTES_ENV, "").strip().replace("_", "")
    if not text:
        return MAX_IMAGE_BYTES
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{MAX_IMAGE_BYTES_ENV} takes a whole number of bytes (1 or more), got {text!r}")
    return int(text)


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def _check(st: os.stat_result, name: str, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise Rejected("not_a_file", f"{name} is {_kind(st.st_mode)}: not opened")
    if st.st_size > limit:
        raise Rejected("file_too_large", f"{name} has {st.st_size:,} bytes, over the {limit:,}-byte limit "
                                         f"({MAX_IMAGE_BYTES_ENV}); not read")


def regular_stat(path: str | os.PathLike[str], name: str | None = None,
                 limit: int | None = None) -> os.stat_result:
    """``os.stat`` of a file that may be read: a regular file (links followed) of at most ``limit`` bytes.

    Raises ``Rejected``: ``missing_file`` (a broken link says so), ``not_a_file``, ``file_too_large``, ``unreadable``.
    """
    name = text_name(name if name is not None else os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        link = os.path.islink(path)
        raise Rejected("missing_file", f"{name} is a broken symbolic link" if link
                       else f"{name} does not exist") from None
    except OSError as exc:
        raise Rejected("unreadable", f"{name}: {exc.strerror or exc}") from None
    _check(st, name, max_image_bytes() if limit is None else limit)
    return st


def open_regular(path: str | os.PathLike[str], name: str | None = None, limit: int | None = None) -> int:
    """A read-only descriptor of a regular file, checked by ``regular_stat`` before and again once open.

    Opened non-blocking, so that a file swapped for a FIFO between the check and the open cannot block.
    """
    name = text_name(name if name is not None else os.fspath(path))
    limit = max_image_bytes() if limit is None else limit
    regular_stat(path, name, limit)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise Rejected("missing_file", f"{name} does not exist") from None
    except OSError as exc:
        raise Rejected("unreadable", f"{name}: {exc.strerror or exc}") from None
    try:
        _check(os.fstat(fd), name, limit)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_source(path: str | os.PathLike[str], name: str | None = None, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default ``max_image_bytes()``), read once.

    ``name`` is how the file is named in reject details (default: the path). Raises ``Rejected``: ``missing_file``,
    ``not_a_file`` (FIFO, socket, device, folder: never opened), ``file_too_large`` (from its size, unread; or when it
    grew past the limit while read), ``unreadable``.
    """
    name = text_name(name if name is not None else os.fspath(path))
    limit = max_image_bytes() if limit is None else limit
    fd = open_regular(path, name, limit)
    try:
        size = os.fstat(fd).st_size
        parts: list[bytes] = []
        total = 0
        while total <= limit:
            # the whole file (and one byte more, to see its end) in one read; more only if it grew meanwhile
            chunk = os.read(fd, min(limit + 1 - total, max(size + 1 - total, 1 << 16)))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise Rejected("unreadable", f"{name}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if total > limit:
        raise Rejected("file_too_large", f"{name} grew past the {limit:,}-byte limit ({MAX_IMAGE_BYTES_ENV}) "
                                         f"while it was read")
    return parts[0] if len(parts) == 1 else b"".join(parts)


# -- file names in tables ----------------------------------------------------------------------------------------------

_ESCAPED = re.compile("[%\udc80-\udcff]")
_UNENCODABLE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "%":
        return "%25"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"%{code - 0xDC00:02X}"  # an undecodable byte, as os.fsdecode's surrogateescape gives it
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))


def text_name(name: str) -> str:
    """``name`` as valid UTF-8 for a table: unchanged when it is; else undecodable bytes as ``%XX``, ``%`` as ``%25``.

    Deterministic, so ids made from it are stable; ``fs_name`` is its inverse.
    """
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    escaped = _ESCAPED.sub(_escape, name)
    return _UNENCODABLE.sub(_escape, escaped)


def is_escaped(name: str) -> bool:
    """True when ``text_name`` changed ``name`` (it holds bytes that are not UTF-8)."""
    return text_name(name) != name


def fs_name(text: str) -> str:
    """The file name (os.fsdecode form) that ``text_name`` made ``text`` from, assuming it was escaped."""
    return os.fsdecode(urllib.parse.unquote_to_bytes(text))


def find_stored(root: str | os.PathLike[str], stored: str) -> Path:
    """The file a table names under ``root``: the stored name as it is, else (a name escaped by ``text_name``) its
    bytes recovered; a name that is valid UTF-8 is never escaped, so the literal name wins when both exist."""
    literal = Path(root) / stored
    if "%" not in stored or os.path.lexists(literal):
        return literal
    return Path(root) / fs_name(stored)


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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk, CRC included: every PNG's last 12 bytes


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
    return (_PNG_SIGNATURE + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _IEND)


def decode_own_png(data: bytes) -> np.ndarray | None:
    """The pixels of a PNG in exactly ``encode_png``'s form (H×W or H×W×3 uint8), else None: decode it otherwise.

    The faces stage stores every aligned crop this way, and the dedupe stage decodes them all: a general PNG
    decoder spends most of a small file's time per row and per call, where this is one inflate (zlib checks the
    data's Adler-32; the chunks' CRCs are checked here) and one cumulative sum that undoes the Sub filter.
    """
    if len(data) < 57 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or colour_type not in (0, 2) or compression or filtering or interlace or not width or not height:
        return None
    (idat_length,) = struct.unpack(">I", data[33:37])
    end = 41 + idat_length
    if data[37:41] != b"IDAT" or data[end + 4:] != _IEND or len(data) != end + 16:
        return None
    if (zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]
            or zlib.crc32(data[37:end]) != struct.unpack(">I", data[end:end + 4])[0]):
        return None
    bpp = 1 if colour_type == 0 else 3
    try:
        raw = zlib.decompress(data[41:end])
    except zlib.error:
        return None
    if len(raw) != height * (1 + width * bpp):
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * bpp)
    if not (rows[:, 0] == 1).all():  # another filter somewhere: not encode_png's output
        return None
    # Undo Sub: each byte plus the decoded one a pixel to its left, mod 256 = a running sum along the row. OpenCV's
    # integral image gives the running sums (numpy's cumsum along a middle axis is ~3x slower); a row's own sums are
    # the difference of two integral rows, and the cast to uint8 takes them mod 256.
    import cv2

    sums = cv2.integral(np.ascontiguousarray(rows[:, 1:]).reshape(height, width, bpp))
    pixels = np.subtract(sums[1:, 1:], sums[:-1, 1:]).astype(np.uint8)
    return pixels.reshape(height, width) if bpp == 1 else pixels


def encoded_info(data: bytes) -> ImageInfo:
    """The ImageInfo of bytes made by ``encode_png`` (read from its header: no decode needed)."""
    width, height, _, colour_type = struct.unpack(">IIBB", data[16:26])
    return ImageInfo(width, height, "L" if colour_type == 0 else "RGB", sha256_hex(data))
