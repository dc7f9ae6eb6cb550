"""RAF-DB basic emotions (FORMATS.md §7): the official ``basic/`` release and the Kaggle ``DATASET/`` repackaging.

Official release (§7a), found at any depth::

    basic/EmoLabel/list_patition_label.txt      "train_00001.jpg 5" per line ("patition" sic; "partition" too)
    basic/Image/aligned/train_00001_aligned.jpg  100x100 face crops        -> variant ``basic``
    basic/Image/original/train_00001.jpg         full-size pictures        -> variant ``original``

The label file names the *original* file; an aligned crop inserts ``_aligned`` before ``.jpg``. The split is the
name's prefix (``train_`` 12,271, ``test_`` 3,068). Aligned crops are the default (their face policy is
``precropped``); when only ``Image/original`` is unpacked, or with ``--variant original``, the full-size pictures
are read and the faces stage detects the face in each. What was found is reported in the notes.

Kaggle (§7b): ``DATASET/{train,test}/<1..7>/train_00001_aligned.jpg`` plus ``train_labels.csv`` / ``test_labels.csv``
(``image,label``). The CSV, when present, is the label file and wins over the folder (a disagreement is kept in
``extra.folder_label`` and counted); files the CSVs do not list keep their folder's label. CSV names are joined on
the file name with or without ``_aligned``.

The compound subset (``train_0001.jpg``, ``test_001.jpg``, labels 1-11) is not ingested: a folder holding only it
is refused with a message that says so.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from fusekit.errors import LayoutNotRecognised
from fusekit.records import Record
from fusekit.sources.base import Source, find_dirs, in_stray_dir, is_image_name, stray_reason, walk

LABEL_NAMES = ("list_patition_label.txt", "list_partition_label.txt")
BASIC_NAME = re.compile(r"^(?:(train)_(\d{5})|(test)_(\d{4}))(_aligned)?\.jpe?g$", re.I)
COMPOUND_NAME = re.compile(r"^(?:train_\d{4}|test_\d{3})(_aligned)?\.jpe?g$", re.I)
KAGGLE_CSVS = ("train_labels.csv", "test_labels.csv")
SPLIT_DIRS = ("train", "test")
PROBE_LINES = 200  # label lines looked at to tell a compound list from a basic one


def _children(folder: Path) -> dict[str, Path]:
    """Sub-folders and files of ``folder`` by lower-case name (case-insensitive layouts)."""
    try:
        return {p.name.lower(): p for p in sorted(folder.iterdir(), key=lambda p: p.name)}
    except OSError:
        return {}


def _label_file(folder: Path) -> Path | None:
    """``EmoLabel/list_patition_label.txt`` (or ``partition``) in ``folder``; the sic spelling first."""
    emolabel = _children(folder).get("emolabel")
    if emolabel is None or not emolabel.is_dir():
        return None
    files = _children(emolabel)
    for name in LABEL_NAMES:
        if name in files and files[name].is_file():
            return files[name]
    return None


def _head_lines(path: Path, limit: int = PROBE_LINES) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            return [line.strip() for _, line in zip(range(limit), handle) if line.strip()]
    except OSError:
        return []


def _is_compound(root: Path, label_file: Path) -> bool:
    """The compound subset: named so, or most of its label lines use compound names (4/3 digits) or labels 8-11.

    A majority, not a single line, decides, so that a stray odd line in a basic list does not refuse the whole set.
    """
    if "compound" in root.name.lower():
        return True
    compound = basic = 0
    for line in _head_lines(label_file):
        fields = line.split()
        if COMPOUND_NAME.match(fields[0]) or (len(fields) == 2 and fields[1].isdigit() and int(fields[1]) > 7):
            compound += 1
        elif BASIC_NAME.match(fields[0]):
            basic += 1
    return compound > basic


def _image_dir(root: Path, kind: str) -> Path | None:
    """``Image/<kind>`` (aligned or original) when it holds at least one file at any depth."""
    image = _children(root).get("image")
    folder = _children(image).get(kind) if image is not None and image.is_dir() else None
    if folder is None or not folder.is_dir():
        return None
    return folder if next(iter(walk(folder, max_depth=3)), None) is not None else None


@dataclass
class _Official:
    basic: list[Path] = field(default_factory=list)
    compound: list[Path] = field(default_factory=list)


def _official_roots(path: Path) -> _Official:
    """Every folder at or under ``path`` that holds ``EmoLabel/<label file>``, split into basic and compound."""
    if path.is_file():  # PATH may be the label file itself
        path = path.parent.parent if path.name.lower() in LABEL_NAMES else path.parent
    roots = _Official()
    if not path.is_dir():
        return roots
    for root in find_dirs(path, lambda p: _label_file(p) is not None, max_depth=4):
        label_file = _label_file(root)
        assert label_file is not None
        (roots.compound if _is_compound(root, label_file) else roots.basic).append(root)
    return roots


def _index(folder: Path, base: str) -> tuple[dict[str, str], list[Record]]:
    """Image files under ``folder`` by lower-case name -> path relative to the source root; strays as rejects."""
    files: dict[str, str] = {}
    rejects: list[Record] = []
    for rel in walk(folder):
        path = f"{base}/{rel}"
        name = rel.rsplit("/", 1)[-1]
        reason = stray_reason(name) or ("operating-system metadata folder" if in_stray_dir(rel) else None)
        if reason:
            rejects.append(Record(key=path, path=path, reject="stray_file", reject_detail=reason))
        elif not is_image_name(name):
            rejects.append(Record(key=path, path=path, reject="unrecognised_name",
                                  reject_detail="not an image file of RAF-DB"))
        elif name.lower() in files:
            rejects.append(Record(key=path, path=path, reject="duplicate_entry",
                                  reject_detail=f"{name} was already found at {files[name.lower()]}"))
        else:
            files[name.lower()] = path
    return files, rejects


def _split_of(match: re.Match[str]) -> str:
    return "train" if match[1] else "test"


def _name_problem(name: str) -> str:
    if COMPOUND_NAME.match(name):
        return "a compound-subset name (train_NNNN / test_NNN); only the basic subset is ingested"
    return "expected train_NNNNN.jpg or test_NNNN.jpg"


class RafdbBasic(Source):
    """The official release with aligned crops: ``basic/EmoLabel/...`` + ``basic/Image/aligned/``."""

    options_taken: ClassVar[tuple[str, ...] | None] = ()

    dataset: ClassVar[str] = "rafdb"
    variant: ClassVar[str] = "basic"
    priority: ClassVar[int] = 10
    picklable_records: ClassVar[bool] = True  # plain paths: chunks may be decoded in worker processes
    kind: ClassVar[str] = "aligned"
    other: ClassVar[tuple[str, str]] = ("original", "original")

    @classmethod
    def find(cls, path: Path) -> Path | None:
        roots = _official_roots(path)
        for root in roots.basic:
            if _image_dir(root, cls.kind) is not None:
                return root
        if cls is RafdbBasic and not RafdbOriginal.find(path) and not RafdbKaggle.find(path):
            _explain(roots)
        return None

    def records(self) -> Iterator[Record]:
        self.notes = []
        label_file = _label_file(self.root)
        folder = _image_dir(self.root, self.kind)
        if label_file is None or folder is None:  # the folder changed since find()
            return
        base = folder.relative_to(self.root).as_posix()
        files, rejects = _index(folder, base)
        used: set[str] = set()
        label_rel = label_file.relative_to(self.root).as_posix()
        lines = 0
        for index, line in enumerate(label_file.read_bytes().decode("utf-8-sig", errors="replace").splitlines()):
            if not line.strip():
                continue
            lines += 1
            yield self._row(label_rel, index, line, base, files, used)
        yield from rejects
        for name, path in sorted(files.items(), key=lambda item: item[1]):
            if name not in used:
                yield self._unlisted(path)
        self._summarise(label_rel, lines, base, len(files))

    def _image_name(self, name: str) -> str:
        if self.kind == "aligned":
            stem, dot, ext = name.rpartition(".")
            return f"{stem}_aligned{dot}{ext}"
        return name

    def _row(self, label_rel: str, index: int, line: str, base: str, files: dict[str, str],
             used: set[str]) -> Record:
        fields = line.split()
        key = f"{label_rel}#line{index + 1}"
        if len(fields) != 2 or not fields[1].lstrip("+-").isdigit():
            return Record(key=key, path=label_rel, row=index, reject="malformed_row",
                          reject_detail=f"expected '<name> <label>', found {line.strip()[:80]!r}")
        name, raw = fields[0], str(int(fields[1]))
        match = BASIC_NAME.match(name)
        if not match:
            return Record(key=key, path=label_rel, row=index, raw_label=raw, reject="unrecognised_name",
                          reject_detail=f"{name}: {_name_problem(name)}")
        if match[5]:  # a re-made list that names the aligned file; the release names the original
            stem, dot, ext = name.rpartition(".")
            name = f"{stem[: -len('_aligned')]}{dot}{ext}"
        image = self._image_name(name)
        path = files.get(image.lower())
        if path is None:
            expected = f"{base}/{image}"
            return Record(key=expected, path=expected, row=index, raw_label=raw, split=_split_of(match),
                          reject="missing_file", reject_detail=f"{label_rel} line {index + 1} names {name}; "
                                                               f"{image} is not in Image/{self.kind}")
        used.add(image.lower())
        return Record(key=path, raw_label=raw, split=_split_of(match), path=path, row=index,
                      extra={"raf_name": name, "images": self.kind})

    def _unlisted(self, path: str) -> Record:
        """An image file no label line named: a RAF name without a line, or a name outside the scheme."""
        name = path.rsplit("/", 1)[-1]
        match = BASIC_NAME.match(name)
        if not match:
            return Record(key=path, path=path, reject="unrecognised_name", reject_detail=_name_problem(name))
        if (self.kind == "aligned") != bool(match[5]):
            wanted = "<name>_aligned.jpg" if self.kind == "aligned" else "<name>.jpg without _aligned"
            return Record(key=path, path=path, reject="unrecognised_name",
                          reject_detail=f"expected {wanted} in Image/{self.kind}")
        return Record(key=path, path=path, split=_split_of(match), reject="unlabelled",
                      reject_detail="the label file has no line for this image")

    def _summarise(self, label_rel: str, lines: int, base: str, images: int) -> None:
        spelling = " (spelled 'partition')" if "partition" in label_rel else ""
        self.notes.append(f"labels: {label_rel}{spelling}, {lines:,} lines; images: {base}, {images:,} files")
        if self.kind == "aligned":
            self.notes.append("aligned 100x100 face crops (Image/aligned) read")
        else:
            self.notes.append("original full-size pictures (Image/original) read; the faces stage finds the face in "
                              "each")
        other_kind, other_variant = self.other
        if _image_dir(self.root, other_kind) is not None:
            self.notes.append(f"Image/{other_kind} is there too; `--variant {other_variant}` reads those instead")
        siblings = [p for p in _children(self.root.parent).values() if p.is_dir() and p != self.root]
        compound = [p for p in siblings if (lf := _label_file(p)) is not None and _is_compound(p, lf)]
        if compound:
            self.notes.append(f"the compound subset beside it ({compound[0].name}/) is not ingested")


class RafdbOriginal(RafdbBasic):
    """The official release's full-size pictures: ``basic/Image/original/train_00001.jpg``."""

    variant: ClassVar[str] = "original"
    priority: ClassVar[int] = 15
    kind: ClassVar[str] = "original"
    other: ClassVar[tuple[str, str]] = ("aligned", "basic")


def _explain(roots: _Official) -> None:
    """Raise a specific error for a RAF-DB folder that cannot be read (compound only, images still zipped)."""
    if roots.compound and not roots.basic:
        where = roots.compound[0]
        label = _label_file(where)
        sample = _head_lines(label, 1)[0] if label and _head_lines(label, 1) else ""
        raise LayoutNotRecognised(
            f"{where} is RAF-DB's compound subset ({label.name if label else 'EmoLabel'}: {sample!r}; names "
            f"train_NNNN/test_NNN, labels 1-11), which fusekit does not ingest: compound expressions have no "
            f"canonical class. Point --source at the basic/ folder (EmoLabel/list_patition_label.txt with "
            f"train_NNNNN.jpg names)")
    if roots.basic:
        root = roots.basic[0]
        image = _children(root).get("image")
        found = ", ".join(sorted(_children(image))) if image is not None and image.is_dir() else "no Image/ folder"
        raise LayoutNotRecognised(
            f"{root} has the RAF-DB label file but no images: expected Image/aligned/*_aligned.jpg or "
            f"Image/original/*.jpg, found {found or 'an empty Image/ folder'} (unzip aligned.zip / original.zip "
            f"inside Image/)")


# -- Kaggle -----------------------------------------------------------------------------------------------------------
def _is_kaggle_data(folder: Path) -> bool:
    """``train/`` and ``test/`` each with numbered class folders holding RAF-named images."""
    children = _children(folder)
    for split in SPLIT_DIRS:
        split_dir = children.get(split)
        if split_dir is None or not split_dir.is_dir():
            return False
    for split in SPLIT_DIRS:
        for name, class_dir in _children(children[split]).items():
            if name.isdigit() and class_dir.is_dir():
                names = [n for _, n in zip(range(50), _children(class_dir))]
                if any(BASIC_NAME.match(n) for n in names):
                    return True
    return False


def _kaggle_csvs(folder: Path) -> list[Path]:
    files = _children(folder)
    return [files[n] for n in KAGGLE_CSVS if n in files and files[n].is_file()]


def _join_key(name: str) -> str:
    """``train_00001_aligned.jpg`` and ``train_00001.jpg`` join as ``train_00001``."""
    stem = name.strip().rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    return stem[: -len("_aligned")] if stem.endswith("_aligned") else stem


@dataclass
class _CsvLabel:
    label: str
    path: str  # the CSV, relative to the source root
    row: int
    name: str
    used: bool = False


class RafdbKaggle(Source):
    """Kaggle ``shuvoalok/raf-db-dataset``: ``DATASET/{train,test}/<1-7>/`` + ``{train,test}_labels.csv``."""

    options_taken: ClassVar[tuple[str, ...] | None] = ()

    dataset: ClassVar[str] = "rafdb"
    variant: ClassVar[str] = "kaggle"
    priority: ClassVar[int] = 20
    picklable_records: ClassVar[bool] = True  # plain paths: chunks may be decoded in worker processes

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        found = find_dirs(path, _is_kaggle_data, max_depth=4)
        if not found:
            return None
        data = found[0]
        # The CSVs sit beside DATASET/; the anchor is the folder that holds both so that every path is below it.
        return data.parent if _kaggle_csvs(data.parent) and not _kaggle_csvs(data) else data

    def _data_dir(self) -> Path | None:
        if _is_kaggle_data(self.root):
            return self.root
        found = [c for c in _children(self.root).values() if c.is_dir() and _is_kaggle_data(c)]
        return found[0] if found else None

    def records(self) -> Iterator[Record]:
        self.notes = []
        data = self._data_dir()
        if data is None:
            return
        base = data.relative_to(self.root).as_posix()
        base = "" if base == "." else base
        csvs = _kaggle_csvs(self.root) or _kaggle_csvs(data)
        labels: dict[str, _CsvLabel] = {}
        for csv_path in csvs:
            yield from self._read_csv(csv_path, labels)
        counts = {"images": 0, "disagree": 0, "folder_only": 0}
        seen: dict[str, str] = {}
        for rel in walk(data):
            path = f"{base}/{rel}" if base else rel
            yield self._file(rel, path, labels, bool(csvs), counts, seen)
        for _key, entry in sorted(labels.items(), key=lambda item: (item[1].path, item[1].row)):
            if not entry.used:
                yield Record(key=f"{entry.path}#row{entry.row}", path=entry.path, row=entry.row, raw_label=entry.label,
                             reject="missing_file",
                             reject_detail=f"{entry.name} is listed in {entry.path} but not in {base or '.'}/")
        self._summarise(csvs, counts)

    def _read_csv(self, csv_path: Path, labels: dict[str, _CsvLabel]) -> Iterator[Record]:
        rel = csv_path.relative_to(self.root).as_posix()
        text = csv_path.read_bytes().decode("utf-8-sig", errors="replace")
        for index, row in enumerate(csv.reader(io.StringIO(text))):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if index == 0 and not (len(cells) == 2 and cells[1].isdigit()):
                continue  # the header line, "image,label"
            key = f"{rel}#row{index}"
            if len(cells) != 2 or not cells[1].isdigit() or not cells[0]:
                yield Record(key=key, path=rel, row=index, reject="malformed_row",
                             reject_detail=f"expected 'image,label', found {','.join(cells)[:80]!r}")
                continue
            join = _join_key(cells[0])
            raw = str(int(cells[1]))
            if join in labels:
                first = labels[join]
                yield Record(key=key, path=rel, row=index, raw_label=raw, reject="duplicate_entry",
                             reject_detail=f"{cells[0]} is already listed in {first.path} row {first.row}")
                continue
            labels[join] = _CsvLabel(raw, rel, index, cells[0])

    def _file(self, rel: str, path: str, labels: dict[str, _CsvLabel], have_csv: bool,
              counts: dict[str, int], seen: dict[str, str]) -> Record:
        parts = rel.split("/")
        name = parts[-1]
        reason = stray_reason(name) or ("operating-system metadata folder" if in_stray_dir(rel) else None)
        if reason:
            return Record(key=path, path=path, reject="stray_file", reject_detail=reason)
        match = BASIC_NAME.match(name)
        if len(parts) != 3 or parts[0].lower() not in SPLIT_DIRS or not parts[1].isdigit():
            return Record(key=path, path=path, reject="unrecognised_name",
                          reject_detail="expected train/<1-7>/<name> or test/<1-7>/<name>")
        if not match:
            return Record(key=path, path=path, raw_label=str(int(parts[1])), reject="unrecognised_name",
                          reject_detail=_name_problem(name))
        folder_label = str(int(parts[1]))
        split = _split_of(match)
        join = _join_key(name)
        if join in seen:  # one RAF image in two class folders (or extracted twice)
            return Record(key=path, path=path, raw_label=folder_label, split=split, reject="duplicate_entry",
                          reject_detail=f"{name} was already read from {seen[join]}")
        seen[join] = path
        extra: dict[str, Any] = {}
        entry = labels.get(join)
        row = None
        if entry is not None:
            entry.used = True
            raw, row = entry.label, entry.row
            extra["label_file"] = entry.path
            if raw != folder_label:
                extra["folder_label"] = folder_label
                counts["disagree"] += 1
        else:
            raw = folder_label
            if have_csv:
                counts["folder_only"] += 1
        if parts[0].lower() != split:
            extra["folder_split"] = parts[0]  # the name's prefix is the official split; keep what the folder said
        counts["images"] += 1
        return Record(key=path, raw_label=raw, split=split, path=path, row=row, extra=extra)

    def _summarise(self, csvs: list[Path], counts: dict[str, int]) -> None:
        if csvs:
            names = " and ".join(p.name for p in csvs)
            text = f"labels from {names} (the CSV wins over the class folder)"
            if counts["disagree"]:
                text += f"; {counts['disagree']:,} images whose folder says otherwise (extra.folder_label)"
            if counts["folder_only"]:
                text += f"; {counts['folder_only']:,} images the CSVs do not list keep their folder's label"
            self.notes.append(text)
        else:
            self.notes.append("no train_labels.csv / test_labels.csv found: labels from the class folders 1-7")


SOURCES: list[type[Source]] = [RafdbBasic, RafdbOriginal, RafdbKaggle]
