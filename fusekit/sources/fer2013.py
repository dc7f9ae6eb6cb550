"""FER-2013: the challenge CSV (pixels inside the file), Kaggle's image folders, and FER+ votes applied to the CSV.

CSV (FORMATS.md §1a): ``emotion,pixels,Usage`` (``fer2013.csv``), ``emotion, Usage, pixels`` (``icml_face_data.csv``,
note the spaces) or ``emotion,pixels`` (``train.csv``, Training rows only). Columns are found by stripped name, never
by position. A row's 2,304 grey values become a 48x48 PNG stored in the table, keyed ``row00042``.

Folders (§1b): ``train/<class>/Training_<N>.jpg`` and ``test/<class>/PublicTest_<N>.jpg | PrivateTest_<N>.jpg``;
the file-name prefix, not the folder, gives the official split.

FER+ (§1c): ``fer2013new.csv`` (11 or 12 columns) holds 10 crowd votes per CSV row, joined by row order. The label is
Microsoft's ``majority`` rule; rows whose winner is ``unknown`` or ``NF``, or that FER+ gives no image name, are
dropped with that reason.
"""

from __future__ import annotations

import csv
import functools
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fusekit.errors import ConfigError, SourceNotFound
from fusekit.imageio import Rejected, encode_png
from fusekit.records import Record
from fusekit.sources.base import STRAY_DIRS, FolderSource, Source, find_dirs, is_image_name

# torchvision's precedence: the full file first, then the ICML copy, then the Training-only file.
CSV_NAMES = ("fer2013.csv", "icml_face_data.csv", "train.csv")
SIDE = 48
PIXELS = SIDE * SIDE
FOLDER_NAME = re.compile(r"^(Training|PublicTest|PrivateTest)_(\d+)\.(jpe?g|png)$", re.I)
FERPLUS_VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
csv.field_size_limit(1 << 24)  # a pixels field is ~8 KB; stay far from the default limit without being unbounded


def _header(path: Path) -> list[str] | None:
    """The stripped column names of a CSV file, or None if it cannot be read as one."""
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline(1 << 16)
    except OSError:
        return None
    names = next(csv.reader([first]), [])
    return [n.strip() for n in names]


def _is_pixel_csv(path: Path) -> bool:
    header = _header(path)
    return bool(header) and "pixels" in header and "emotion" in header  # type: ignore[operator]


def find_pixel_csv(path: Path) -> Path | None:
    """``path`` itself if it is a labelled FER-2013 CSV, else the preferred one of CSV_NAMES at or under it."""
    if path.is_file():
        return path if _is_pixel_csv(path) else None
    if not path.is_dir():
        return None
    for folder in find_dirs(path, lambda p: any((p / n).is_file() for n in CSV_NAMES), max_depth=3):
        for name in CSV_NAMES:
            candidate = folder / name
            if candidate.is_file() and _is_pixel_csv(candidate):
                return candidate
    return None


def parse_pixels(text: str) -> np.ndarray:
    """A 48x48 uint8 image from the space-separated pixel string; ValueError says what is wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older numpy warns when it stops at a bad token
            array = np.fromstring(text, dtype=np.int32, sep=" ")  # C parser: ~5x faster than str.split + np.array
    except ValueError:  # newer numpy raises on a bad token ("could not be read to its end due to unmatched data")
        array = None
    if array is None or array.size != PIXELS or not text.rstrip()[-1:].isdigit():
        raise ValueError(_pixels_problem(text))
    if array.min() < 0 or array.max() > 255:
        raise ValueError("a pixel value lies outside 0-255")
    return array.astype(np.uint8).reshape(SIDE, SIDE)


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _pixels_problem(text: str) -> str:
    """What is wrong with a pixel string, in words (never numpy's parser message)."""
    tokens = text.split()
    bad = [t for t in tokens if not _INTEGER.fullmatch(t)]
    numbers = len(tokens) - len(bad)
    if bad:
        shown = ", ".join(repr(t if len(t) <= 20 else t[:20] + "...") for t in bad[:3]) + (", ..." if len(bad) > 3
                                                                                          else "")
        return (f"pixels: {numbers:,} number{'' if numbers == 1 else 's'} and {len(bad):,} "
                f"non-number{'' if len(bad) == 1 else 's'} ({shown}) in the pixel string")
    return f"{numbers} pixel values, expected {PIXELS} (48x48)"


def _pixels_png(text: str) -> bytes:
    """PNG bytes of a CSV row's pixel string; a malformed string becomes that row's reject. Parsing (~0.1 ms a
    row) runs here, in the loader, so that the ingest's worker processes share it instead of the main process
    doing it for every row. A ``functools.partial`` of this pickles (a lambda would not): see picklable_records."""
    try:
        return encode_png(parse_pixels(text))
    except ValueError as exc:
        raise Rejected("malformed_row", str(exc)) from None


class _CsvRows:
    """Streams a FER-2013 CSV as (row index, raw emotion, usage, pixels array or error) with columns by name."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[tuple[int, dict[str, str] | None, str]]:
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = [n.strip() for n in next(csv.reader([handle.readline()]), [])]
            columns = {name: i for i, name in enumerate(header)}
            for index, line in enumerate(handle):
                # FER-2013 rows hold no quotes, so a plain split is exact and ~10x faster than the csv module on
                # 8 KB fields; a quoted row goes through the csv module.
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue  # blank lines at the end of hand-edited files
                row = line.split(",") if '"' not in line else next(csv.reader([line]), [])
                if len(row) != len(header):
                    yield index, None, f"{len(row)} fields, the header has {len(header)}"
                    continue
                yield index, {name: row[i] for name, i in columns.items()}, ""


class Fer2013Csv(Source):
    """``fer2013.csv`` / ``icml_face_data.csv`` / ``train.csv``: PATH is the file or a folder holding it."""

    options_taken = ()

    dataset = "fer2013"
    variant = "csv"
    priority = 10
    picklable_records = True

    @classmethod
    def find(cls, path: Path) -> Path | None:
        return find_pixel_csv(path)

    @property
    def root(self) -> Path:
        return self.anchor.parent

    def _base_record(self, index: int, fields: dict[str, str] | None, problem: str) -> Record:
        """The image record for one CSV row (label mapped later by the manifest), or a malformed_row reject."""
        name = self.anchor.name
        key = f"row{index:05d}"
        if fields is None:
            return Record(key=key, path=name, row=index, reject="malformed_row", reject_detail=problem)
        raw = fields.get("emotion", "").strip()
        usage = fields.get("Usage")
        split = "train" if usage is None else self.spec.splits.get(usage.strip())
        if usage is not None and split is None:
            return Record(key=key, path=name, row=index, raw_label=raw, reject="malformed_row",
                          reject_detail=f"Usage {usage.strip()!r} is not Training, PublicTest or PrivateTest")
        return Record(key=key, raw_label=raw or None, split=split, path=name, row=index,
                      load=functools.partial(_pixels_png, fields.get("pixels", "")), stored_name=f"{key}.png",
                      encoded_here=True)

    def records(self) -> Iterator[Record]:
        if self.anchor.name.lower() == "train.csv":
            self.notes.append("train.csv holds the Training rows only; fer2013.csv has all three splits")
        for index, fields, problem in _CsvRows(self.anchor):
            yield self._base_record(index, fields, problem)


def _count_data_lines(path: Path) -> int:
    """Non-empty lines after the header, counted in binary (fast; FER-2013 fields hold no newlines)."""
    count = 0
    with open(path, "rb") as handle:
        handle.readline()
        for line in handle:
            if line.strip():
                count += 1
    return count


def majority_label(votes: list[int]) -> str:
    """Microsoft's FER+ ``majority`` mode (src/ferplus.py): drop counts <= 1, then a strict majority or unknown.

    >>> majority_label([4, 0, 0, 1, 3, 2, 0, 0, 0, 0])
    'unknown'
    >>> majority_label([4, 6, 0, 0, 0, 0, 0, 0, 0, 0])
    'happiness'
    """
    kept = [v if v > 1 else 0 for v in votes]
    total = sum(kept)
    if total == 0:
        return "unknown"
    best = max(kept)
    if best > 0.5 * total:
        return FERPLUS_VOTES[kept.index(best)]  # ties cannot win a strict majority; index() takes the first anyway
    return "unknown"


class _FerPlusLabels:
    """Rows of ``fer2013new.csv``: usage, image name (12-column edition) and the 10 vote counts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        header = _header(path)
        if not header or header[0] != "Usage" or header[-len(FERPLUS_VOTES):] != list(FERPLUS_VOTES):
            first = (header or ["?"])[0]
            if first.lower().startswith("fer") and first.lower().endswith(".png"):
                raise ConfigError(f"{path.name} is a per-split FER+ label.csv (no header, joined by image name); "
                                  f"give --labels the fer2013new.csv that sits at the top of microsoft/FERPlus")
            raise ConfigError(f"{path.name} is not fer2013new.csv: expected the header "
                              f"'Usage,[Image name,]{','.join(FERPLUS_VOTES)}', found {','.join(header or [])!r}")
        self.named = "Image name" in header
        self.width = len(header)

    def __iter__(self) -> Iterator[tuple[str, str | None, list[int] | None]]:
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                usage = row[0].strip() if row else ""
                name = row[1].strip() if self.named and len(row) > 1 else None
                try:
                    votes = [int(v) for v in row[-len(FERPLUS_VOTES):]] if len(row) == self.width else None
                except ValueError:
                    votes = None
                yield usage, name, votes


class FerPlus(Fer2013Csv):
    """The CSV's faces with FER+ labels: ``fusekit ingest fer2013 --source fer2013.csv --labels fer2013new.csv``."""

    options_taken = ("labels",)

    variant = "ferplus"
    priority = 90  # never chosen by layout alone; --labels selects it

    def __init__(self, anchor: Path, spec: Any, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        labels = self.option("labels", None)
        if not labels:
            raise ConfigError("the ferplus variant needs the FER+ votes: add --labels PATH/TO/fer2013new.csv")
        self.labels_path = Path(labels)
        if not self.labels_path.is_file():
            raise SourceNotFound(f"--labels {labels}: no such file")
        self.labels = _FerPlusLabels(self.labels_path)
        images, votes = _count_data_lines(self.anchor), _count_data_lines(self.labels_path)
        if images != votes:
            raise ConfigError(f"{self.labels_path.name} has {votes:,} rows and {self.anchor.name} has {images:,}: FER+ "
                              f"joins by row order, so both must be the full 35,887-row files")

    def records(self) -> Iterator[Record]:
        counts = {"no_name": 0, "unknown": 0, "NF": 0, "usage_mismatch": 0}
        for (index, fields, problem), (usage, name, votes) in zip(_CsvRows(self.anchor), self.labels):
            record = self._base_record(index, fields, problem)
            if record.reject:
                yield record
                continue
            key, path = record.key, record.path
            fer_usage = (fields or {}).get("Usage", "").strip()
            if fer_usage and usage != fer_usage:
                counts["usage_mismatch"] += 1
                yield Record(key=key, path=path, row=index, reject="malformed_row",
                             reject_detail=f"Usage differs: {self.anchor.name} says {fer_usage}, "
                                           f"{self.labels_path.name} says {usage}; the files are not aligned")
                continue
            if votes is None:
                yield Record(key=key, path=path, row=index, reject="malformed_row",
                             reject_detail=f"{self.labels_path.name} row {index}: not 10 whole vote counts")
                continue
            winner = majority_label(votes)
            extra = {"ferplus_votes": dict(zip(FERPLUS_VOTES, votes)), "fer2013_emotion": record.raw_label}
            if name is not None:
                extra["ferplus_name"] = name
            if self.labels.named and not name:
                counts["no_name"] += 1
                yield Record(key=key, path=path, row=index, raw_label=winner, reject="dropped_label",
                             reject_detail="FER+ gives this row no image name (all 10 votes: not a face)")
                continue
            if winner in ("unknown", "NF"):
                counts[winner] += 1
            yield Record(key=key, raw_label=winner, label_source="ferplus_majority", split=record.split, path=path,
                         row=index, load=record.load, stored_name=record.stored_name, extra=extra,
                         encoded_here=True)
        self.notes.append(
            f"FER+ majority rule: {counts['no_name']:,} unnamed rows, {counts['unknown']:,} without a majority "
            f"(unknown) and {counts['NF']:,} not-a-face rows dropped"
            + (f"; {counts['usage_mismatch']:,} rows whose Usage differs" if counts["usage_mismatch"] else "")
        )


def _is_folder_root(path: Path) -> bool:
    names = {p.name.lower(): p for p in path.iterdir() if p.is_dir()} if path.is_dir() else {}
    if "train" not in names or "test" not in names:
        return False
    for split in ("train", "test"):
        for child in names[split].iterdir():
            if child.is_dir() and child.name.lower() in FOLDER_CLASSES:
                try:
                    return any(FOLDER_NAME.match(e.name) for _, e in zip(range(50), child.iterdir()))
                except OSError:
                    return False
    return False


FOLDER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


class Fer2013Folders(FolderSource):
    """Kaggle ``msambare/fer2013``: ``train/<class>/Training_<N>.jpg``, ``test/<class>/P*Test_<N>.jpg``."""

    options_taken = ()

    dataset = "fer2013"
    variant = "folders"
    priority = 20

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        found = find_dirs(path, _is_folder_root, max_depth=3)
        return found[0] if found else None

    def record_for(self, rel: str) -> Record | None:
        parts = rel.split("/")
        name = parts[-1]
        if len(parts) != 3 or parts[0].lower() not in ("train", "test") or parts[0].lower() in STRAY_DIRS:
            return Record(key=rel, path=rel, reject="unrecognised_name",
                          reject_detail="expected train/<class>/<file> or test/<class>/<file>")
        match = FOLDER_NAME.match(name)
        if not match or not is_image_name(name):
            return Record(key=rel, path=rel, raw_label=parts[1], reject="unrecognised_name",
                          reject_detail="expected Training_<N>.jpg, PublicTest_<N>.jpg or PrivateTest_<N>.jpg")
        split = {k.lower(): v for k, v in self.spec.splits.items()}[match[1].lower()]
        extra: dict[str, Any] = {"kaggle_number": int(match[2])}
        if (parts[0].lower() == "train") != (split == "train"):
            extra["folder_split"] = parts[0]  # the prefix wins; keep what the folder said
        return Record(key=rel, raw_label=parts[1].lower(), split=split, path=rel, extra=extra)


SOURCES: list[type[Source]] = [Fer2013Csv, Fer2013Folders, FerPlus]
