"""ExpW, Expression in-the-Wild (FORMATS.md §8): ``label.lst`` naming faces in full scene pictures.

Official layout, found at any depth (the label file and the picture folder are each searched for)::

    ExpW/label/label.lst          "angry_actor_104.jpg 0 28 113 226 141 22.9362 0" per face
    ExpW/image/origin/*.jpg       the pictures (after extracting origin.7z.001; sometimes origin/origin/*.jpg)

A ``label.lst`` line is ``image_name face_id top left right bottom confidence label`` (in that column order: the
published example lines have ``right - left == bottom - top``). Each line is one sample: several faces of one
picture give several rows, keyed ``<image name>#<n>`` with ``n`` the line's place among that picture's lines, and
grouped by the picture so that its faces never straddle splits. The box becomes ``face_box`` (x, y, w, h) clipped
to the picture's bounds (read from the file's header); a box with no area inside the picture is rejected.
Exact duplicate lines are rejected as duplicates. The picture's name is a crawl keyword, not the label (column 8 is).
``-o min_confidence=60`` leaves out faces whose detector score is lower (counted in the notes, not rejected).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

from fusekit.errors import ConfigError, LayoutNotRecognised
from fusekit.manifests import Variant
from fusekit.records import Record
from fusekit.sources.base import Source, find_dirs, header_size, is_image_name

LABEL_NAME = "label.lst"
PROBE_LINES = 50  # label lines whose picture names locate the picture folder
ARCHIVE_PART = re.compile(r"\.7z(\.\d{3})+$", re.I)


@dataclass(frozen=True)
class _Line:
    index: int  # 0-based line number in label.lst
    image: str
    face_id: int
    top: float
    left: float
    right: float
    bottom: float
    confidence: float
    label: str


def parse_line(line: str, index: int) -> _Line:
    """One ``label.lst`` line; ValueError says what is wrong.

    >>> parse_line("angry_actor_104.jpg 0 28 113 226 141 22.9362 0", 0).right
    226.0
    """
    fields = line.split()
    if len(fields) != 8:
        raise ValueError(f"{len(fields)} fields, expected 8 (image face_id top left right bottom confidence label)")
    image, face_id, *box, confidence, label = fields
    if not is_image_name(image) or "/" in image or "\\" in image:
        raise ValueError(f"{image!r} is not a picture file name")
    try:
        numbers = [float(v) for v in box]
        score = float(confidence)
        face = int(face_id)
        raw = str(int(label))
    except ValueError:
        raise ValueError("face_id, box, confidence and label must be numbers") from None
    if not all(math.isfinite(v) for v in (*numbers, score)):
        raise ValueError("the box or the confidence is not a finite number")
    top, left, right, bottom = numbers
    return _Line(index, image, face, top, left, right, bottom, score, raw)


def _label_lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8-sig", errors="replace").splitlines()


def _looks_like_label_file(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            for _, line in zip(range(20), handle):
                if line.strip():
                    parse_line(line, 0)
                    return True
    except (OSError, ValueError):
        return False
    return False


def _probe_names(label: Path) -> list[str]:
    names: list[str] = []
    try:
        with open(label, encoding="utf-8-sig", errors="replace") as handle:
            for index, line in zip(range(PROBE_LINES * 4), handle):
                try:
                    name = parse_line(line, index).image
                except ValueError:
                    continue
                if name not in names:
                    names.append(name)
                if len(names) >= PROBE_LINES:
                    break
    except OSError:
        pass
    return names


def _find_label(path: Path) -> Path | None:
    if path.is_file():
        return path if path.name.lower() == LABEL_NAME and _looks_like_label_file(path) else None
    for folder in find_dirs(path, lambda p: (p / LABEL_NAME).is_file() and _looks_like_label_file(p / LABEL_NAME),
                            max_depth=5):
        return folder / LABEL_NAME
    return None


def _find_pictures(start: Path, names: list[str]) -> Path | None:
    """The folder under ``start`` holding the label file's pictures; ``origin`` folders first (origin/origin too)."""
    def holds(folder: Path) -> bool:
        return any((folder / n).is_file() for n in names)

    found = find_dirs(start, holds, max_depth=5)
    found.sort(key=lambda p: (p.name.lower() != "origin", len(p.parts), str(p)))
    return found[0] if found else None


def _locate(path: Path) -> tuple[Path, Path, Path] | None:
    """(anchor, label.lst, picture folder), or None when there is no ExpW label file; raises when pictures lack."""
    label = _find_label(path)
    if label is None:
        return None
    names = _probe_names(label)
    # Search from the folder the user named; a label file given directly is looked around from its dataset root.
    starts = [path] if path.is_dir() else [label.parent.parent, label.parent]
    pictures = next((p for s in starts if (p := _find_pictures(s, names)) is not None), None)
    if pictures is None:
        _no_pictures(path if path.is_dir() else label.parent.parent, label, names)
    anchor = Path(os.path.commonpath([label.parent, pictures]))  # type: ignore[list-item]
    return anchor, label, pictures  # type: ignore[return-value]


def _no_pictures(root: Path, label: Path, names: list[str]) -> None:
    def has_parts(folder: Path) -> bool:
        try:
            return any(ARCHIVE_PART.search(e.name) for e in os.scandir(folder) if e.is_file())
        except OSError:
            return False

    folders = find_dirs(root, has_parts, max_depth=4) if root.is_dir() else []
    archives = sorted(p for p in folders[0].iterdir() if ARCHIVE_PART.search(p.name))[:3] if folders else []
    hint = ""
    if archives:
        first = archives[0]
        hint = (f"; the pictures are still archived ({', '.join(a.name for a in archives)}...): extract them with "
                f"`7z x {first.name}` in {first.parent} (all parts in one folder), then run this again")
    shown = names[0] if names else "<name>.jpg"
    raise LayoutNotRecognised(
        f"{label} is ExpW's label file, but no folder under {root} holds its pictures: expected "
        f"image/origin/{shown} (or image/origin/origin/{shown}){hint}")


class ExpwOfficial(Source):
    """``label.lst`` + the picture folder (``image/origin``), both found at any depth."""

    dataset: ClassVar[str] = "expw"
    variant: ClassVar[str] = "official"
    picklable_records: ClassVar[bool] = True  # plain paths: chunks may be decoded in worker processes

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.check_options(("min_confidence",), usage="takes the option min_confidence=N")
        value = self.option("min_confidence", None)
        try:
            self.min_confidence = None if value is None else float(value)
        except ValueError:
            raise ConfigError(f"-o min_confidence= takes a number (e.g. 60), got {value!r}") from None

    @classmethod
    def find(cls, path: Path) -> Path | None:
        located = _locate(path)
        return None if located is None else located[0]

    @property
    def root(self) -> Path:
        return self.anchor

    def records(self) -> Iterator[Record]:
        self.notes = []
        located = _locate(self.anchor)
        if located is None:  # the folder changed since find()
            return
        _, label, pictures = located
        label_rel = label.relative_to(self.root).as_posix()
        base = pictures.relative_to(self.root).as_posix()
        base = "" if base == "." else base
        on_disk = {e.name for e in os.scandir(pictures) if e.is_file() and is_image_name(e.name)}
        by_image: dict[str, list[_Line]] = defaultdict(list)
        lines = 0
        for index, text in enumerate(_label_lines(label)):
            if not text.strip():
                continue
            lines += 1
            try:
                parsed = parse_line(text, index)
            except ValueError as exc:
                yield Record(key=f"{label_rel}#line{index + 1}", path=label_rel, row=index, reject="malformed_row",
                             reject_detail=f"line {index + 1}: {exc}")
                continue
            by_image[parsed.image].append(parsed)
        counts = {"faces": 0, "clipped": 0, "low_confidence": 0, "missing_images": 0}
        for image in sorted(by_image):
            yield from self._faces(image, by_image[image], base, image in on_disk, counts)
        unlabelled = len(on_disk - set(by_image))
        self._summarise(label_rel, base, lines, len(by_image), len(on_disk), unlabelled, counts)

    def _faces(self, image: str, faces: list[_Line], base: str, present: bool,
               counts: dict[str, int]) -> Iterator[Record]:
        path = f"{base}/{image}" if base else image
        size = header_size(self.root / path) if present else None
        if not present:
            counts["missing_images"] += 1
        seen: dict[tuple[Any, ...], int] = {}
        for n, line in enumerate(faces):
            key = f"{image}#{n}"
            common = {"key": key, "path": path, "row": line.index, "raw_label": line.label, "group": image}
            ident = (line.face_id, line.top, line.left, line.right, line.bottom, line.confidence, line.label)
            if ident in seen:
                yield Record(**common, reject="duplicate_entry",
                             reject_detail=f"label.lst line {line.index + 1} repeats line {seen[ident] + 1}")
                continue
            seen[ident] = line.index
            if not present:
                yield Record(**common, reject="missing_file",
                             reject_detail=f"label.lst line {line.index + 1} names {image}, which is not in "
                                           f"{base or '.'}/")
                continue
            if self.min_confidence is not None and line.confidence < self.min_confidence:
                counts["low_confidence"] += 1
                continue
            box, clipped, problem = _clip(line, size)
            if problem:
                yield Record(**common, reject="empty_face_box", reject_detail=f"line {line.index + 1}: {problem}")
                continue
            counts["faces"] += 1
            counts["clipped"] += clipped
            extra: dict[str, Any] = {"face_id": line.face_id, "confidence": line.confidence,
                                     "box_tlrb": [line.top, line.left, line.right, line.bottom]}
            if clipped:
                extra["clipped"] = True
            yield Record(**common, face_box=box, extra=extra)

    def _summarise(self, label_rel: str, base: str, lines: int, images: int, on_disk: int, unlabelled: int,
                   counts: dict[str, int]) -> None:
        nested = " (nested origin/origin)" if base.lower().endswith("origin/origin") else ""
        full = self.spec.expected.get("label_rows")
        of_full = f" (the full release has {full:,})" if full and lines != full else ""
        self.notes.append(f"{label_rel}: {lines:,} lines{of_full} naming {images:,} pictures; pictures in "
                          f"{base or '.'}/{nested}: {on_disk:,} files")
        self.notes.append(f"{counts['faces']:,} faces with a box inside their picture, grouped by picture; "
                          f"{counts['clipped']:,} boxes clipped to the picture's edges")
        if unlabelled:
            self.notes.append(f"{unlabelled:,} pictures have no labelled face (not samples)")
        if counts["missing_images"]:
            self.notes.append(f"{counts['missing_images']:,} pictures named in label.lst are missing (see the rejects)")
        if self.min_confidence is not None:
            self.notes.append(f"{counts['low_confidence']:,} faces with confidence below {self.min_confidence:g} "
                              f"left out (-o min_confidence=)")


def _clip(line: _Line, size: tuple[int, int] | None) -> tuple[tuple[float, float, float, float] | None, bool, str]:
    """(x, y, w, h) clipped to the picture, whether clipping changed it, and why there is no box (or '')."""
    if line.right <= line.left or line.bottom <= line.top:
        return None, False, (f"the box top={line.top:g} left={line.left:g} right={line.right:g} "
                             f"bottom={line.bottom:g} has no area")
    if size is None:  # unreadable header: keep the box as given; the decoder rejects the picture
        return (line.left, line.top, line.right - line.left, line.bottom - line.top), False, ""
    width, height = size
    left, top = max(line.left, 0.0), max(line.top, 0.0)
    right, bottom = min(line.right, float(width)), min(line.bottom, float(height))
    if right <= left or bottom <= top:
        return None, False, (f"the box top={line.top:g} left={line.left:g} right={line.right:g} "
                             f"bottom={line.bottom:g} lies outside the {width}x{height} picture")
    clipped = (left, top, right, bottom) != (line.left, line.top, line.right, line.bottom)
    return (left, top, right - left, bottom - top), clipped, ""


SOURCES: list[type[Source]] = [ExpwOfficial]
