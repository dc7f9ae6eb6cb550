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
from pathlib import Path
from typing import Any, ClassVar, Iterator

from PIL import Image

from fusekit.errors import ConfigError
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


def walk(root: Path, max_depth: int = 12) -> Iterator[str]:
    """Every file under ``root`` as a POSIX path relative to it, sorted, depth-bounded, symlinks not followed.

    Folders such as ``__MACOSX`` are yielded as their files so that the caller can count them as strays.
    """
    root_str = str(root)
    for current, dirs, files in os.walk(root_str, followlinks=False):
        rel_dir = os.path.relpath(current, root_str)
        depth = 0 if rel_dir == "." else rel_dir.count(os.sep) + 1
        dirs.sort()
        if depth >= max_depth:
            dirs[:] = []
        for name in sorted(files):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            yield rel


def header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the image header (no decode); None when it cannot be read (ingest then rejects it)."""
    try:
        with Image.open(path) as image:
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
        return f"a file named {path.name!r} ({path.stat().st_size:,} bytes)"
    try:
        entries = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        return f"an unreadable folder ({exc.strerror})"
    if not entries:
        return "an empty folder"
    shown = [e.name + ("/" if e.is_dir() else "") for e in entries[:limit]]
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return f"{', '.join(shown)}{more}"


def find_dirs(root: Path, predicate: Any, max_depth: int = 4) -> list[Path]:
    """Folders under ``root`` (itself included, breadth-first, sorted) for which ``predicate(path)`` holds."""
    found: list[Path] = []
    level = [root]
    for _ in range(max_depth + 1):
        next_level: list[Path] = []
        for folder in level:
            if predicate(folder):
                found.append(folder)
                continue
            try:
                children = sorted((c for c in folder.iterdir() if c.is_dir() and not c.is_symlink()), key=lambda p: p.name)
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
    """Shared walk for layouts whose files are the samples: yields strays as rejects, images to ``record_for``."""

    picklable_records = True  # records are plain paths: chunks may be decoded in worker processes

    def records(self) -> Iterator[Record]:
        for rel in walk(self.root):
            name = rel.rsplit("/", 1)[-1]
            reason = stray_reason(name) or ("operating-system metadata folder" if in_stray_dir(rel) else None)
            if reason:
                yield Record(key=rel, path=rel, reject="stray_file", reject_detail=reason)
                continue
            record = self.record_for(rel)
            if record is not None:
                yield record

    @abstractmethod
    def record_for(self, rel: str) -> Record | None:
        """The record for one file (a reject record for a name that breaks the scheme), or None to ignore it."""
