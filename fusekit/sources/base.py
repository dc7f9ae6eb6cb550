"""The contract every dataset source follows, and the parsing helpers the sources share.

A ``Source`` knows one native layout. ``find(path)`` is a cheap look at marker files that returns the layout's anchor
folder (or file), or None. ``records()`` walks the layout in a deterministic order and yields ``Record``s with native
labels; the label *map* lives in the dataset's manifest, not here. Decoding, hashing and writing are done by
``fusekit.ingest``, so a source is only about names, folders and label files.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from PIL import Image

from fusekit.errors import ConfigError
from fusekit.imageio import Rejected, open_regular, text_name
from fusekit.manifests import Variant
from fusekit.records import Record

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"})
STRAY_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "icon\r"})
DOC_PATTERN = re.compile(r"^(readme|license|licence|copying|citation)([._-].*)?$|\.(txt|md|pdf|doc|docx|html?)$", re.I)
STRAY_DIRS = frozenset({"__macosx", ".git", ".ipynb_checkpoints"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def stray_reason(name: str) -> str | None:
    """Why a file is not part of any dataset (macOS and Windows metadata, documentation), or None."""
    lower = name.lower()
    if lower in STRAY_NAMES or lower.startswith("._"):
        return "operating-system metadata file"
    if DOC_PATTERN.search(name) and not is_image_name(name):
        return "documentation file"
    return None


@dataclass
class WalkStats:
    """What a walk met besides plain files and folders: the symbolic links it followed, the folders it did not walk."""

    links_out: int = 0  # links followed to a folder or file outside the walked root
    links_in: int = 0  # links followed to a folder or file inside it
    not_walked: Counter[str] = field(default_factory=Counter)  # folder problems by reason (link_loop, unreadable...)

    def notes(self) -> list[str]:
        """Lines for the ingest summary (none when there were no links and no problems)."""
        lines = []
        if self.links_out or self.links_in:
            lines.append(f"followed {_plural(self.links_out, 'symbolic link')} out of the source folder and "
                         f"{self.links_in:,} within it (links are followed, as torchvision's ImageFolder does)")
        for reason, count in sorted(self.not_walked.items()):
            lines.append(f"{_plural(count, 'folder')} not walked ({reason}): see the rejects")
        return lines


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


WalkEntry = tuple[str, "str | None", str]  # (relative path, reject reason or None, detail)


def walk_entries(root: Path, max_depth: int | None = None, stats: WalkStats | None = None) -> Iterator[WalkEntry]:
    """Everything under ``root``, in a fixed order: ``(rel, None, "")`` for every entry that is not a folder (files,
    and FIFOs, sockets, broken links: reading them rejects them), ``(rel, reason, detail)`` for a folder not walked.

    ``rel`` is a POSIX path relative to ``root`` (``os.fsdecode`` form: a name that is not UTF-8 keeps its bytes as
    surrogates). Order: a folder's files by name, then its sub-folders one by one, each walked whole (``os.walk``'s
    top-down order). Symbolic links are followed, to folders and files, wherever they point; a link to a folder above
    it (a loop) or to one that another link already led to is not walked again (``link_loop``), so no walk loops or
    repeats itself. There is no depth limit unless ``max_depth`` is given (folders below it: ``too_deep``); a folder
    that cannot be listed is ``unreadable``. Folders such as ``__MACOSX`` are yielded as their files, for the caller
    to count as strays.
    """
    stats = stats if stats is not None else WalkStats()
    top = os.fspath(root)
    try:
        top_stat = os.stat(top)
    except OSError:
        return
    real_top = os.path.realpath(top)

    def inside(path: str) -> bool:
        target = os.path.realpath(path)
        return target == real_top or target.startswith(real_top.rstrip(os.sep) + os.sep)

    followed: set[tuple[int, int]] = set()  # (st_dev, st_ino) of every folder a link led to
    # a stack of problems to yield and of folders to walk: (path, rel, depth, the (dev, ino) of it and its
    # ancestors, whether it is reached through a link)
    pending: list[Any] = [(top, "", 0, ((top_stat.st_dev, top_stat.st_ino),), False)]
    while pending:
        item = pending.pop()
        if len(item) == 3:
            rel, reason, detail = item
            stats.not_walked[str(reason)] += 1
            yield rel, reason, detail
            continue
        path, rel, depth, chain, linked = item
        if linked:  # decided here, in walk order, not when the folder above was listed
            if chain[-1] in followed:
                stats.not_walked["link_loop"] += 1
                yield rel, "link_loop", (f"a symbolic link to {text_name(os.path.realpath(path))}, which another "
                                         f"link already led to: not walked twice")
                continue
            followed.add(chain[-1])
            if inside(path):
                stats.links_in += 1
            else:
                stats.links_out += 1
        try:
            with os.scandir(path) as listing:
                entries = list(listing)
        except OSError as exc:
            if rel:
                stats.not_walked["unreadable"] += 1
                yield rel, "unreadable", f"the folder could not be listed: {exc.strerror or exc}"
            continue
        files, folders = [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows a link
            except OSError:  # a link loop, a permission problem: read as a file, and rejected with the reason
                is_dir = False
            (folders if is_dir else files).append(entry)
        files.sort(key=lambda e: e.name)
        folders.sort(key=lambda e: e.name)
        prefix = f"{rel}/" if rel else ""
        for entry in files:
            if entry.is_symlink() and os.path.exists(entry.path):
                if inside(entry.path):
                    stats.links_in += 1
                else:
                    stats.links_out += 1
            yield prefix + entry.name, None, ""
        children: list[Any] = []
        for entry in folders:
            child = prefix + entry.name
            try:
                st = entry.stat()  # follows a link
            except OSError as exc:
                children.append((child, "unreadable", f"the folder could not be read: {exc.strerror or exc}"))
                continue
            ident = (st.st_dev, st.st_ino)
            linked = entry.is_symlink()
            if ident in chain:
                what = (f"a symbolic link to {text_name(os.path.realpath(entry.path))}, a folder above it" if linked
                        else "the same folder as one above it (a bind mount)")
                children.append((child, "link_loop", f"{what}: not followed (it would loop)"))
                continue
            if max_depth is not None and depth >= max_depth:
                children.append((child, "too_deep", f"more than {max_depth} folders below {text_name(top)}: "
                                                    f"not walked"))
                continue
            children.append((entry.path, child, depth + 1, chain + (ident,), linked))
        pending.extend(reversed(children))


def walk(root: Path, max_depth: int | None = None, stats: WalkStats | None = None) -> Iterator[str]:
    """The entries ``walk_entries`` yields that are not folders (every file, links followed), without the folders it
    did not walk (counted in ``stats``): for a caller that only looks for files."""
    for rel, reason, _ in walk_entries(root, max_depth, stats):
        if reason is None:
            yield rel


def header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the image header (no decode); None when it cannot be read (ingest then rejects it).

    Only a regular file within the size limit is opened (a FIFO would block), and non-blocking."""
    try:
        fd = open_regular(path)
    except Rejected:
        return None
    try:
        with os.fdopen(fd, "rb") as handle, Image.open(handle) as image:
            return image.size
    except Exception:  # noqa: BLE001 - any failure here is reported by the decoder in the ingest, with its reason
        return None


def in_stray_dir(rel: str) -> bool:
    return any(part.lower() in STRAY_DIRS for part in rel.split("/")[:-1])


def describe_folder(path: Path, limit: int = 6) -> str:
    """A short description of what is at ``path``, for 'expected X, found Y' messages."""
    if not path.exists():
        return "nothing (the path does not exist)"
    if path.is_file():
        return f"a file named {text_name(path.name)!r} ({path.stat().st_size:,} bytes)"
    try:
        entries = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        return f"an unreadable folder ({exc.strerror})"
    if not entries:
        return "an empty folder"
    shown = [text_name(e.name) + ("/" if e.is_dir() else "") for e in entries[:limit]]
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return f"{', '.join(shown)}{more}"


def find_dirs(root: Path, predicate: Any, max_depth: int = 4) -> list[Path]:
    """Folders under ``root`` (itself included, breadth-first, sorted) for which ``predicate(path)`` holds.

    Symbolic links to folders are followed (as ``walk`` does), each folder looked at once: a link loop ends."""
    found: list[Path] = []
    level = [root]
    seen: set[tuple[int, int]] = set()
    for _ in range(max_depth + 1):
        next_level: list[Path] = []
        for folder in level:
            try:
                st = folder.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if predicate(folder):
                found.append(folder)
                continue
            try:
                children = sorted((c for c in folder.iterdir() if c.is_dir()), key=lambda p: p.name)
            except OSError:
                continue
            next_level.extend(c for c in children if c.name.lower() not in STRAY_DIRS)
        level = next_level
    return found


# -o options that name a file or folder (FER+ votes, K-drama label CSVs, JAFFE ratings): a recipe resolves them like
# its sources, and ingest's resume fingerprint lists what they name.
PATH_OPTIONS = ("labels", "ratings")


class Source(ABC):
    """One native layout of one dataset family."""

    dataset: ClassVar[str]
    variant: ClassVar[str]
    # When several variants of a family match a path, the lowest priority number wins.
    priority: ClassVar[int] = 50
    # True when every Record (its ``load`` included) pickles, so chunks can be processed in worker processes.
    picklable_records: ClassVar[bool] = False
    # The -o options this source reads; any other is refused with a clear message. None: the source checks itself.
    options_taken: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        self.anchor = anchor
        self.spec = spec
        self.options = dict(options or {})
        self.notes: list[str] = []  # facts about what was found, shown in the summary
        if self.options_taken is not None:  # else the source checks its own (options that depend on the layout)
            self.check_options(self.options_taken, by_variant=True)

    @property
    def dataset_name(self) -> str:
        """The `dataset` column; a dataset family's name, or a user-given name for a generic class folder."""
        return self.dataset

    @property
    def root(self) -> Path:
        """The folder that referenced image paths are relative to."""
        return self.anchor if self.anchor.is_dir() else self.anchor.parent

    @classmethod
    @abstractmethod
    def find(cls, path: Path) -> Path | None:
        """The anchor of this layout at or under ``path``, or None. Must be cheap (no full walk)."""

    @classmethod
    def find_for(cls, path: Path, options: dict[str, Any]) -> Path | None:
        """``find`` for a layout whose recognition depends on the ingest's options (a folder with ``--labels``)."""
        return cls.find(path)

    @abstractmethod
    def records(self) -> Iterator[Record]:
        """Every entry of the layout, in a deterministic order."""

    def option(self, name: str, default: Any) -> Any:
        if name in self.options and self.options[name] is not None:
            return self.options[name]
        return self.spec.extra.get(name, default)

    def check_options(self, known: tuple[str, ...] = (), usage: str | None = None,
                      by_variant: bool = False) -> None:
        """Refuse ``-o`` options this source does not read, so that a typo is not silently ignored.

        ``usage`` replaces the plain 'takes the options a, b' wording; ``by_variant`` names the variant in the message,
        for families whose variants take different options.
        """
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            who = f"{self.dataset} variant {self.variant!r}" if by_variant else self.dataset
            takes = usage or (f"takes the options {', '.join(known)}" if known else "takes no options")
            raise ConfigError(f"{who} {takes}; got {', '.join(unknown)}")

    def count_option(self, name: str, default: int, unit: str = "frames") -> int:
        """A whole-number ``-o`` option, 0 or more."""
        value = self.option(name, default)
        try:
            number = int(str(value).strip())
        except ValueError:
            number = -1
        if number < 0:
            raise ConfigError(f"-o {name}= takes a whole number of {unit} (0 or more), got {value!r}")
        return number

    def bool_option(self, name: str, default: bool) -> bool:
        """A yes/no ``-o`` option (1/0, true/false, yes/no, on/off; empty is false)."""
        value = self.option(name, default)
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ConfigError(f"-o {name}= takes true or false, got {value!r}")


class FolderSource(Source):
    """Shared walk for layouts whose files are the samples: yields strays and folders not walked (link loops,
    unreadable folders) as rejects, images to ``record_for``; the summary notes the links followed."""

    picklable_records = True  # records are plain paths: chunks may be decoded in worker processes

    def records(self) -> Iterator[Record]:
        stats = WalkStats()
        for rel, problem, detail in walk_entries(self.root, stats=stats):
            if problem is not None:  # a folder not walked (a link loop, unreadable): a reject, never a silent gap
                yield Record(key=rel, path=rel, reject=problem, reject_detail=detail)
                continue
            name = rel.rsplit("/", 1)[-1]
            reason = stray_reason(name) or ("operating-system metadata folder" if in_stray_dir(rel) else None)
            if reason:
                yield Record(key=rel, path=rel, reject="stray_file", reject_detail=reason)
                continue
            record = self.record_for(rel)
            if record is not None:
                yield record
        self.notes.extend(stats.notes())

    @abstractmethod
    def record_for(self, rel: str) -> Record | None:
        """The record for one file (a reject record for a name that breaks the scheme), or None to ignore it."""
