"""Datasets as distributed: safe extraction of ``.zip`` and ``.tar`` (``.gz``, ``.bz2``, ``.xz``) archives.

``fusekit ingest NAME --source archive.zip`` extracts the archive once into ``<workspace>/sources/<stem>-<sha12>/``
and ingests the folder. Extraction refuses, before writing anything, any member that would land outside the target
(``../``, absolute paths, drive letters); it never creates or follows links or device files (each one becomes a
``rejects`` row of the ingest: ``not_created``); it bounds the member count, the total uncompressed size and the
ratio of uncompressed to compressed bytes (``ExtractLimits``; and always the free disk space), so a bomb stops before
the disk fills: a zip by its central directory before the first byte is written, a tar by each header and by the
running ratio of bytes written to compressed bytes read. It writes to a temporary folder that is renamed into place only when every member was read and checked (CRC,
gzip trailer, tar end marker), so a killed or failed extraction never looks complete, and a rerun reuses a complete
one. 7-Zip and RAR archives (AffectNet's ``.partN.rar``, ExpW's ``.7z.001``) are refused with the command that
extracts them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from fusekit.errors import ArchiveError, ConfigError, environment_message
from fusekit.records import Record
from fusekit.workspace import write_json_atomic

NOT_CREATED = "not_created"  # the reject reason of an archive member that is a link or a device
MARKER_SUFFIX = ".extracted.json"  # beside the folder: what was extracted from where (the folder holds only members)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)
_MAGIC = (
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),  # an empty zip
    (0, b"\x1f\x8b", "tar"),  # gzip: only a gzipped tar is an archive we read; checked when opened
    (0, b"BZh", "tar"),
    (0, b"\xfd7zXZ\x00", "tar"),
    (257, b"ustar", "tar"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
)
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on one extraction. Defaults fit the largest public dataset (AffectNet, ~0.5 M files, ~120 GB).

    ``max_ratio``: no member, and not the archive as a whole, may inflate to more than this multiple of its compressed
    size (a zip judged by its central directory, a tar stream by the bytes written against the compressed bytes read
    so far); images and CSVs compress 1-5x, a decompression bomb 1,000x. Up to ``ratio_floor`` bytes are never judged
    by ratio (a few small, very compressible files are no bomb).

    ``fusekit ingest --max-extract-bytes / --max-extract-ratio / --max-members`` set them, else the environment:
    ``FUSEKIT_ARCHIVE_MAX_BYTES`` (e.g. ``200G``), ``FUSEKIT_ARCHIVE_MAX_RATIO``, ``FUSEKIT_ARCHIVE_MAX_MEMBERS`` and
    ``FUSEKIT_ARCHIVE_RESERVE_BYTES`` (free space always left on the disk).
    """

    max_bytes: int = 512 << 30
    max_members: int = 2_000_000
    reserve_bytes: int = 1 << 30
    max_ratio: float = 100.0
    ratio_floor: int = 16 << 20

    def __post_init__(self) -> None:
        if self.max_ratio < 1:
            raise ConfigError(f"--max-extract-ratio must be at least 1, got {self.max_ratio:g}")
        if self.max_members < 1 or self.max_bytes < 1:
            raise ConfigError("--max-members and --max-extract-bytes must be at least 1")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ExtractLimits:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in (("max_bytes", "FUSEKIT_ARCHIVE_MAX_BYTES"), ("max_members", "FUSEKIT_ARCHIVE_MAX_MEMBERS"),
                          ("reserve_bytes", "FUSEKIT_ARCHIVE_RESERVE_BYTES")):
            if env.get(var):
                values[name] = parse_size(env[var], var)
        if env.get("FUSEKIT_ARCHIVE_MAX_RATIO"):
            values["max_ratio"] = parse_ratio(env["FUSEKIT_ARCHIVE_MAX_RATIO"], "FUSEKIT_ARCHIVE_MAX_RATIO")
        return cls(**values)

    def overridden(self, **values: Any) -> ExtractLimits:
        """These limits with the values given (not None) replaced: command-line flags win over the environment."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


def parse_ratio(text: str, what: str) -> float:
    """``"100"`` or ``"100x"`` -> 100.0."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[xX]?\s*", text)
    if not match:
        raise ConfigError(f"{what}={text!r}: expected a number (a multiple of the compressed size, e.g. 100)")
    return float(match[1])


def parse_size(text: str, what: str) -> int:
    """``"200G"`` -> bytes (K, M, G, T are powers of 1024; a plain number is taken as is).

    >>> parse_size("1.5K", "x")
    1536
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*", text, re.I)
    if not match:
        raise ConfigError(f"{what}={text!r}: expected a number with an optional K, M, G or T suffix")
    scale = 1 << (10 * " KMGT".index(match[2].upper() or " "))
    return int(float(match[1]) * scale)


@dataclass
class Extraction:
    """Where an archive's contents are, and what was worth saying about it."""

    archive: Path
    folder: Path
    reused: bool
    members: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # links and special files, by kind
    not_created: list[dict[str, str]] = field(default_factory=list)  # each of them: name, kind, detail
    kind_note: str | None = None  # the content is another archive format than the name says

    def skip(self, rel: str, kind: str, detail: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        self.not_created.append({"name": rel, "kind": kind, "detail": detail})

    def note(self) -> str:
        if self.reused:
            text = f"{self.archive.name}: reused the extraction at {self.folder}"
        else:
            text = f"{self.archive.name}: extracted {self.members:,} files ({self.bytes / 1e6:,.1f} MB) to {self.folder}"
        if self.kind_note:
            text += f" ({self.kind_note})"
        if self.skipped:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.skipped.items()))
            text += f"; not created: {kinds} (rejects: not_created)"
        return text


# -- recognising archives --------------------------------------------------------------------------------------------

def _refusal(path: Path) -> str | None:
    """The message for an archive format fusekit does not read (7-Zip, RAR, split zips), or None."""
    name = path.name
    lower = name.lower()
    folder = re.sub(r"(\.part\d+)?\.(7z|rar|zip)(\.\d+)?$|\.z\d\d$|\.r\d\d$", "", name, flags=re.I) or "extracted"
    if re.search(r"\.7z\.\d{3}$", lower):
        base = name[: -len(".001")]
        return (f"{name} is one part of a multi-part 7-Zip archive, which fusekit does not read. Join and extract the "
                f"parts, then give --source the folder: cat {base}.0* > {base} && 7z x {base} -o{folder}")
    if lower.endswith(".7z"):
        return f"{name} is a 7-Zip archive, which fusekit does not read. Extract it, then give --source the folder: " \
               f"7z x {name} -o{folder}"
    if re.search(r"\.part\d+\.rar$", lower) or lower.endswith(".rar") or re.search(r"\.r\d\d$", lower):
        first = re.sub(r"\.part\d+\.rar$", ".part1.rar", name, flags=re.I)
        return (f"{name} is a RAR archive, which fusekit does not read. Extract it (all parts in one folder), then "
                f"give --source the folder: unrar x {first} {folder}/  (or: 7z x {first} -o{folder})")
    if re.search(r"\.zip\.\d{3}$", lower) or re.search(r"\.z\d\d$", lower):
        return (f"{name} is one part of a split zip archive. Join the parts, then give --source the joined zip or "
                f"extract it: 7z x {name} -o{folder}  (or: zip -s 0 {folder}.zip --out joined.zip)")
    return None


def _magic_kind(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(262)
    except OSError:
        return None
    for offset, magic, kind in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return kind
    return None


def _suffix_kind(path: Path) -> str | None:
    lower = path.name.lower()
    if lower.endswith(_ZIP_SUFFIXES):
        return "zip"
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    return None


def archive_kind(path: Path) -> str | None:
    """``"zip"`` or ``"tar"`` for an archive fusekit extracts, None for anything else (a folder, a CSV...).

    The content decides over the name: a zip renamed ``.tar.gz`` is a zip (``misnamed`` says so). Raises
    ``ArchiveError`` naming the right tool for 7-Zip, RAR and split archives.
    """
    if not path.is_file():
        return None
    refusal = _refusal(path)
    if refusal:
        raise ArchiveError(refusal)
    by_name = _suffix_kind(path)
    if by_name is not None:
        by_content = _magic_kind(path)
        if by_content == "zip" and by_name == "tar":
            return "zip"
        if by_content == "tar" and by_name == "zip" and _is_tar(path):
            return "tar"
        if by_content in ("7z", "rar"):
            raise ArchiveError(f"{path.name} is a {'7-Zip' if by_content == '7z' else 'RAR'} archive (by its "
                               f"content), which fusekit does not read. Extract it with `7z x {path.name}`, then give "
                               f"--source the folder")
        return by_name
    kind = _magic_kind(path)
    if kind in ("7z", "rar"):
        raise ArchiveError(f"{path.name} is a {'7-Zip' if kind == '7z' else 'RAR'} archive (by its content), which "
                           f"fusekit does not read. Extract it with `7z x {path.name}`, then give --source the folder")
    if kind == "tar" and path.suffix.lower() in (".gz", ".bz2", ".xz") and not _is_tar(path):
        return None  # a compressed single file (e.g. a .csv.gz) is not an archive
    return kind


def misnamed(path: Path, kind: str) -> str | None:
    """``"a zip archive named .tar.gz: extracted as zip"`` when the name says another format than the content."""
    by_name = _suffix_kind(path)
    if by_name is None or by_name == kind:
        return None
    lower = path.name.lower()
    suffix = next(s for s in sorted(_TAR_SUFFIXES + _ZIP_SUFFIXES, key=len, reverse=True) if lower.endswith(s))
    return f"a {kind} archive named {suffix}: extracted as {kind}"


def _is_tar(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False


def stem(path: Path) -> str:
    """The archive's name without its archive suffixes: ``KDEF_and_AKDEF.zip`` -> ``KDEF_and_AKDEF``."""
    name = path.name
    for suffix in sorted(_TAR_SUFFIXES + _ZIP_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return path.stem or "archive"


# -- member names ----------------------------------------------------------------------------------------------------

def safe_relpath(name: str) -> str | None:
    """The member's path relative to the target, or None for the root entry; ``ArchiveError`` if it would escape.

    Backslashes count as separators (zips made on Windows), and any ``..`` component is refused, even one that
    would stay inside, so that no member name needs resolving to be judged.
    """
    text = name.replace("\\", "/")
    if "\x00" in text:
        raise ArchiveError(f"member {name!r} has a NUL character in its name")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise ArchiveError(f"member {name!r} has an absolute path (it would be written outside the target folder)")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {name!r} climbs out with '..' (a zip-slip archive)")
    return "/".join(parts) or None


class _Budget:
    """Counts members and bytes against the limits and the free disk space; refuses before a write would pass them."""

    def __init__(self, limits: ExtractLimits, target_dir: Path | None, archive: Path) -> None:
        self.limits = limits
        self.archive = archive
        self.archive_size = max(1, archive.stat().st_size)
        free = shutil.disk_usage(target_dir).free if target_dir is not None else limits.max_bytes + limits.reserve_bytes
        self.max_bytes = min(limits.max_bytes, max(0, free - limits.reserve_bytes))
        self.by_disk = self.max_bytes < limits.max_bytes
        self.members = 0
        self.bytes = 0
        self.compressed_read: Callable[[], int] | None = None  # a tar stream's position in the compressed file

    def add_member(self) -> None:
        self.members += 1
        self.check_members(self.members)

    def check_members(self, count: int) -> None:
        if count > self.limits.max_members:
            raise ArchiveError(f"{self.archive.name} has more than {self.limits.max_members:,} members, the limit; "
                               f"raise it with --max-members N (or FUSEKIT_ARCHIVE_MAX_MEMBERS) if it is genuine")

    def check_bytes(self, more: int) -> None:
        """Refuse before writing ``more`` bytes would pass the size limit or fill the disk."""
        if self.bytes + more <= self.max_bytes:
            return
        if self.by_disk:
            raise ArchiveError(f"{self.archive.name} unpacks to more than the {self.max_bytes / 1e9:,.2f} GB free "
                               f"on the workspace disk (keeping {self.limits.reserve_bytes / 1e9:,.1f} GB spare); "
                               f"free space or use a workspace on a larger disk")
        raise ArchiveError(f"{self.archive.name} unpacks to more than {self.limits.max_bytes:,} bytes, the limit "
                           f"(a decompression bomb, or a very large dataset: raise --max-extract-bytes or "
                           f"FUSEKIT_ARCHIVE_MAX_BYTES)")

    def _bomb(self, what: str, inflated: int, compressed: int, when: str) -> ArchiveError:
        ratio = inflated / max(1, compressed)
        return ArchiveError(f"{self.archive.name}: {what} inflates to {inflated:,} bytes from {compressed:,} "
                            f"({ratio:,.0f}x, more than the {self.limits.max_ratio:g}x limit): a decompression bomb; "
                            f"{when} (if it is genuine: --max-extract-ratio N or FUSEKIT_ARCHIVE_MAX_RATIO)")

    def check_ratio(self, what: str, inflated: int, compressed: int) -> None:
        """Refuse, before anything is written, ``inflated`` bytes made from ``compressed`` (declared sizes)."""
        if inflated > self.limits.ratio_floor and inflated > self.limits.max_ratio * max(1, compressed):
            raise self._bomb(what, inflated, compressed, "refused before anything was written")

    def check_whole(self, more: int) -> None:
        """The archive as a whole may not inflate past the ratio (judged before ``more`` bytes are written)."""
        total = self.bytes + more
        if total > self.limits.ratio_floor and total > self.limits.max_ratio * self.archive_size:
            raise self._bomb("the archive", total, self.archive_size, "refused before that much was written")

    def add_bytes(self, size: int) -> None:
        self.check_bytes(size)
        self.bytes += size
        if self.compressed_read is not None and self.bytes > self.limits.ratio_floor:
            read = self.compressed_read()
            if self.bytes > self.limits.max_ratio * max(1, read):
                raise self._bomb("the stream", self.bytes, read, "extraction stopped and its folder removed")


def _copy(source: IO[bytes], target: Path, budget: _Budget, declared: int, name: str) -> None:
    """Stream one member to ``target``, never writing more than the member declared (a lying header is damage)."""
    written = 0
    with open(target, "wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > declared:
                raise ArchiveError(f"member {name!r} holds more data than its header declares")
            budget.add_bytes(len(chunk))
            out.write(chunk)
    if written != declared:
        raise ArchiveError(f"member {name!r} ends after {written:,} of its {declared:,} bytes (a truncated archive)")


def _ensure_dir(root: Path, rel: str) -> Path:
    path = root.joinpath(*rel.split("/"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file_target(root: Path, rel: str) -> Path:
    path = root.joinpath(*rel.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise ArchiveError(f"member {rel!r} is a file where the archive also has a folder")
    return path


# -- zip -------------------------------------------------------------------------------------------------------------

_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.is_dir():
        return "dir"
    if kind in (0, stat.S_IFREG):
        return "file"
    return "symlink" if kind == stat.S_IFLNK else "special file"


def _zip_plan(zf: zipfile.ZipFile, archive: Path, budget: _Budget) -> list[tuple[zipfile.ZipInfo, str, str]]:
    """Everything that can be judged from the central directory, judged before the first byte is written."""
    plan: list[tuple[zipfile.ZipInfo, str, str]] = []
    declared = 0
    for info in zf.infolist():
        rel = safe_relpath(info.filename)
        kind = _zip_kind(info)
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{archive.name} is encrypted ({info.filename!r}); extract it with its password "
                               f"(7z x {archive.name}) and give --source the folder")
        if kind == "file" and info.compress_type not in _ZIP_METHODS:
            raise ArchiveError(f"{archive.name} uses zip compression method {info.compress_type} (e.g. Deflate64), "
                               f"which Python cannot read; extract it with `7z x {archive.name}` or `unzip`")
        if rel is not None:
            plan.append((info, rel, kind))
            if kind == "file":
                budget.check_ratio(f"member {info.filename!r}", info.file_size, info.compress_size)
                declared += info.file_size
    budget.check_members(len(plan))
    budget.check_bytes(declared)
    budget.check_whole(declared)  # members sharing compressed data (an overlapping-file bomb) pass one by one
    return plan


def _zip_link_target(zf: zipfile.ZipInfo | Any, info: zipfile.ZipInfo) -> str:
    """A zip symlink's target (its data, as `zip -y` stores it), shortened; '' when unreadable."""
    if info.file_size > 4096:
        return ""
    try:
        return zf.read(info).decode("utf-8", "replace")[:200]
    except Exception:  # noqa: BLE001 - only for the reject's detail
        return ""


def _extract_zip(archive: Path, target: Path, budget: _Budget, result: Extraction) -> None:
    with zipfile.ZipFile(archive) as zf:
        plan = _zip_plan(zf, archive, budget)
        for info, rel, kind in plan:
            budget.add_member()
            if kind == "dir":
                _ensure_dir(target, rel)
            elif kind == "file":
                with zf.open(info) as member:
                    _copy(member, _file_target(target, rel), budget, info.file_size, info.filename)
                result.members += 1
            elif kind == "symlink":
                link = _zip_link_target(zf, info)
                result.skip(rel, kind, f"a symbolic link{f' to {link!r}' if link else ''} in {archive.name}: not "
                                       f"created (a link can point outside the dataset)")
            else:
                result.skip(rel, kind, f"a special file (mode {info.external_attr >> 16:o}) in {archive.name}: not "
                                       f"created")


# -- tar -------------------------------------------------------------------------------------------------------------

class _TarInfo(tarfile.TarInfo):
    """Records why header reading stopped: only a zero block is a proper end; a short read means truncation."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            info = super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            tar._fusekit_end = "end marker"  # type: ignore[attr-defined]
            raise
        except tarfile.HeaderError as exc:
            tar._fusekit_end = str(exc) or type(exc).__name__  # type: ignore[attr-defined]
            raise
        tar._fusekit_end = None  # type: ignore[attr-defined]
        return info


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "special file"


_TAR_SPECIAL = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "FIFO"}


def _tar_skip_detail(member: tarfile.TarInfo, kind: str, archive: Path) -> str:
    if kind == "symlink":
        return f"a symbolic link to {member.linkname[:200]!r} in {archive.name}: not created (a link can point " \
               f"outside the dataset)"
    if kind == "hardlink":
        return f"a hard link to {member.linkname[:200]!r} in {archive.name}: not created (a link can point outside " \
               f"the dataset)"
    what = _TAR_SPECIAL.get(member.type, f"special file (tar type {member.type!r})")
    return f"a {what} in {archive.name}: not created"


def _extract_tar(archive: Path, target: Path, budget: _Budget, result: Extraction) -> None:
    # Random-access mode ("r:*") goes through gzip/bz2/lzma file objects, which check the stream's CRC and length;
    # members are read in order, so nothing is decompressed twice. The compressed file is opened here, so that its
    # position (the compressed bytes read so far) bounds the bytes written by the ratio limit.
    compression = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7": "xz"}
    with open(archive, "rb") as raw:
        head = raw.read(3)
        raw.seek(0)
        mode = next((f"r:{c}" for magic, c in compression.items() if head.startswith(magic)), "r:")
        budget.compressed_read = raw.tell
        with tarfile.open(fileobj=raw, mode=mode, tarinfo=_TarInfo) as tar:
            _read_tar(tar, archive, target, budget, result)


def _read_tar(tar: tarfile.TarFile, archive: Path, target: Path, budget: _Budget, result: Extraction) -> None:
    while (member := tar.next()) is not None:
        rel = safe_relpath(member.name)
        budget.add_member()
        kind = _tar_kind(member)
        if rel is None:
            continue
        if kind == "dir":
            _ensure_dir(target, rel)
        elif kind == "file":
            budget.check_bytes(member.size)  # tar sizes are honest: refuse before the member is written
            budget.check_whole(member.size)
            source = tar.extractfile(member)
            assert source is not None
            with source:
                _copy(source, _file_target(target, rel), budget, member.size, member.name)
            result.members += 1
        else:
            result.skip(rel, kind, _tar_skip_detail(member, kind, archive))
        tar.members.clear()  # a dataset has ~10^5 members: keep memory flat
    end = getattr(tar, "_fusekit_end", None)
    if end != "end marker":
        raise ArchiveError(f"{archive.name} ends without the tar end marker ({end or 'no more data'}): "
                           f"the file is truncated; download it again")
    # Read to the end of the compressed stream so that gzip/bz2/xz verify their checksums and length.
    while tar.fileobj.read(_COPY_CHUNK):
        pass


# -- the entry point -------------------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def archive_digest(path: Path, cache_file: Path) -> str:
    """The archive's sha256, cached by (path, size, mtime) so that a rerun does not hash 50 GB again."""
    st = path.stat()
    key = str(path.resolve())
    try:
        cache: dict[str, Any] = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return str(entry["sha256"])
    digest = _sha256(path)
    cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    write_json_atomic(cache, cache_file)
    return digest


def _stale_temps(parent: Path, name: str) -> Iterator[Path]:
    yield from parent.glob(f".tmp-{name}-*")


@contextlib.contextmanager
def _reading(archive: Path, workspace: Path) -> Iterator[None]:
    """Turn what reading ``archive`` can raise into one-line ``ArchiveError``s (damage, unsafe names, the disk)."""
    try:
        yield
    except ArchiveError as exc:
        if archive.name not in str(exc):
            raise ArchiveError(f"{archive.name}: {exc}") from None
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"{archive.name} is damaged ({exc}); download it again") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the disk, not the archive
            why = environment_message(exc, workspace) or exc.strerror or str(exc)
            raise ArchiveError(f"cannot extract {archive.name}: {why}") from None
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ArchiveError(f"{archive.name} is damaged or truncated ({detail}); download it again") from None
    except Exception as exc:  # noqa: BLE001 - lzma, bz2 and zipfile raise their own types for damaged data
        if type(exc).__module__ in ("_lzma", "lzma", "_bz2", "bz2", "gzip", "_compression", "zipfile"):
            raise ArchiveError(f"{archive.name} is damaged ({type(exc).__name__}: {exc}); download it again") \
                from None
        raise


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def extract(archive: Path, sources_dir: Path, limits: ExtractLimits | None = None) -> Extraction:
    """Extract ``archive`` (zip or tar) into ``sources_dir/<stem>-<sha256[:12]>/``, or reuse a complete extraction.

    Raises ``ArchiveError`` (a user error: one line, exit 2) for an unsupported, unsafe, oversized or damaged
    archive; the temporary folder is removed then, and nothing else has been written (a zip refused by its central
    directory leaves not even ``sources_dir``). The members not created (links, devices) are listed in the marker
    beside the folder, which ``not_created`` reads back as reject records.
    """
    archive = Path(archive).resolve()
    kind = archive_kind(archive)
    if kind is None:
        raise ArchiveError(f"{archive.name} is not a .zip or .tar(.gz/.bz2/.xz) archive")
    limits = limits or ExtractLimits.from_env()
    workspace = sources_dir.parent
    if kind == "zip":  # judged by its central directory before anything at all is written (the disk comes later)
        with _reading(archive, workspace), zipfile.ZipFile(archive) as zf:
            _zip_plan(zf, archive, _Budget(limits, None, archive))
    sources_dir.mkdir(parents=True, exist_ok=True)
    name = f"{stem(archive)}-{archive_digest(archive, sources_dir / '_archives.json')[:12]}"
    final = sources_dir / name
    marker_path = sources_dir / f"{name}{MARKER_SUFFIX}"
    if final.is_dir():  # only ever created by the rename of a complete extraction
        marker = _read_marker(marker_path)
        return Extraction(archive, final, reused=True, skipped=dict(marker.get("skipped") or {}),
                          not_created=list(marker.get("not_created") or []), kind_note=misnamed(archive, kind))
    for stale in _stale_temps(sources_dir, name):  # left by a killed extraction
        shutil.rmtree(stale, ignore_errors=True)
    temp = sources_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    result = Extraction(archive, final, reused=False, kind_note=misnamed(archive, kind))
    try:
        budget = _Budget(limits, temp, archive)
        with _reading(archive, workspace):
            (_extract_zip if kind == "zip" else _extract_tar)(archive, temp, budget, result)
        result.bytes = budget.bytes
        marker = {"archive": str(archive), "members": result.members, "bytes": result.bytes, "skipped": result.skipped,
                  "not_created": result.not_created}
        write_json_atomic(marker, marker_path)  # two runs may finish the same one
        try:
            os.replace(temp, final)
        except OSError:
            if not final.is_dir():
                raise
            result.reused = True  # another run finished the same extraction first; its folder is as good
    except OSError as exc:
        why = environment_message(exc, workspace) or exc.strerror or str(exc)
        raise ArchiveError(f"cannot extract {archive.name}: {why}") from None
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return result


def not_created(anchor: Path, sources_dir: Path) -> Iterator[Record]:
    """A reject record (``not_created``) for every member of the archive extracted at or above ``anchor`` that was
    not created: links, hard links, devices. Nothing when ``anchor`` is not inside an extraction.

    Keyed by the member's name in the archive (``not_created/<name>``), the same on every rerun."""
    try:
        rel = Path(anchor).resolve().relative_to(Path(sources_dir).resolve())
    except ValueError:
        return
    if not rel.parts:
        return
    marker = _read_marker(Path(sources_dir) / f"{rel.parts[0]}{MARKER_SUFFIX}")
    for entry in marker.get("not_created") or []:
        name = str(entry.get("name", ""))
        yield Record(key=f"not_created/{name}", path=name, reject=NOT_CREATED, reject_detail=str(entry.get("detail", "")))
