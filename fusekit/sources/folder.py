"""Any class-per-folder tree, or any tree with a label file: the way in for datasets fusekit has no module for.

``<root>/<class>/**/<image>``, or ``<root>/<split>/<class>/**/<image>`` when the top folders are split names.
Class folder names are normalised through `fusekit.taxonomy` (``Anger`` -> angry, ``sadness`` -> sad); a nested
sub-folder belongs to its top class folder. The ``dataset`` column is the name given with ``--name`` (default: the
root folder's name), so several class folders can be ingested side by side.

With a label file (``--labels FILE``, or a ``metadata.csv`` / ``metadata.tsv`` at the top of the root, as HF
``imagefolder`` reads it) the images may lie anywhere under the root, flat included: a CSV or TSV (delimiter sniffed
from the header) whose columns are found by name, any case: the file (``file_name``, ``file``, ``filename``,
``image``, ``path``), the label (``label``, ``emotion``, ``expression``, ``class``), and optionally ``split`` and
``subject``. The list wins over a class or split folder (a disagreement is kept in ``extra``); a file the list does
not name is ``unlabelled``, a row whose file is absent ``missing_file``, a file listed twice ``duplicate_entry``.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterator

from fusekit.errors import ConfigError, LayoutNotRecognised, SourceNotFound
from fusekit.manifests import Variant, all_manifests
from fusekit.records import Record
from fusekit.sources.base import (STRAY_DIRS, FolderSource, WalkStats, describe_folder, in_stray_dir, is_image_name,
                                  stray_reason, walk_entries)
from fusekit.taxonomy import normalise

SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "testing": "test", "privatetest": "test",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# A label file's columns, found by name (any case, spaces and hyphens read as '_'); the first name listed wins.
FILE_COLUMNS = ("file_name", "file", "filename", "image", "path")
LABEL_COLUMNS = ("label", "emotion", "expression", "class")
METADATA_NAMES = ("metadata.csv", "metadata.tsv")  # found at the top of the root when no --labels is given
_DELIMITERS = (",", "\t", ";")


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted((p for p in path.iterdir() if p.is_dir() and p.name.lower() not in STRAY_DIRS), key=lambda p: p.name)
    except OSError:
        return []


def _is_class_dir(path: Path) -> bool:
    return normalise(path.name) is not None


def has_class_folders(path: Path) -> bool:
    """Class folders at the top of ``path``, or split folders that hold class folders."""
    top = _subdirs(path)
    if any(_is_class_dir(d) for d in top):
        return True
    splits = [d for d in top if d.name.lower() in SPLIT_FOLDERS]
    return bool(splits) and any(_is_class_dir(c) for d in splits for c in _subdirs(d))


def metadata_file(path: Path) -> Path | None:
    """The ``metadata.csv`` (else ``metadata.tsv``) at the top of ``path``, or None (names as HF spells them)."""
    return next((path / n for n in METADATA_NAMES if (path / n).is_file()), None)


def _column_key(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


class LabelFile:
    """The header of a CSV/TSV label file: its delimiter and the columns fusekit reads. Raises ConfigError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
                first = next((line for line in handle if line.strip()), "")
        except OSError as exc:
            raise ConfigError(f"label file {path}: {exc.strerror or exc}") from None
        counts = {d: first.count(d) for d in _DELIMITERS}
        best = max(_DELIMITERS, key=lambda d: counts[d])  # ties keep the order comma, tab, semicolon
        self.delimiter = best if counts[best] else ("\t" if path.suffix.lower() == ".tsv" else ",")
        self.header = [n.strip() for n in next(csv.reader([first], delimiter=self.delimiter), [])] if first else []
        keys = [_column_key(n) for n in self.header]
        found = {"file": _first(keys, FILE_COLUMNS), "label": _first(keys, LABEL_COLUMNS),
                 "split": _first(keys, ("split",)), "subject": _first(keys, ("subject",))}
        missing = [word for what, word in (("file", "file-name"), ("label", "label")) if found[what] is None]
        if missing:
            has = ", ".join(self.header) if any(self.header) else "nothing (the file is empty)"
            has = has if len(has) <= 200 else has[:200] + "..."
            raise ConfigError(f"label file {path.name}: no {' and no '.join(missing)} column; its header has {has}. "
                              f"It needs a file-name column ({', '.join(FILE_COLUMNS)}) and a label column "
                              f"({', '.join(LABEL_COLUMNS)}), any case; split and subject are optional")
        self.columns: dict[str, int] = {k: v for k, v in found.items() if v is not None}

    def rows(self) -> Iterator[tuple[int, int, list[str]]]:
        """(data row index, line number, fields) for every non-blank row after the header."""
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            header_seen = False
            index = 0
            for row in reader:
                if not row or all(not field.strip() for field in row):
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                yield index, reader.line_num, row
                index += 1


def _first(keys: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in keys:
            return keys.index(name)
    return None


def _clean(text: str) -> str | None:
    """A list's file name in POSIX form without ``./`` or empty parts; None when empty or when it leaves the tree."""
    rel = text.strip().replace("\\", "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


class ClassFolders(FolderSource):
    dataset: ClassVar[str] = "folder"
    variant: ClassVar[str] = "classfolders"
    options_taken = None  # name (--name) and labels (--labels); checked in __init__

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        # The message keeps naming only `name`: `labels` is the --labels flag (and a user's typo is rarely it).
        self.check_options(("name", "labels"), usage="takes the options name", by_variant=True)
        self.label_file: LabelFile | None = None
        given = self.option("labels", None)
        if given:
            path = Path(str(given)).expanduser()
            if not path.is_file():
                raise SourceNotFound(f"--labels {given}: no such file")
            self.label_file = LabelFile(path.resolve())
            found = metadata_file(self.root)
            if found is not None and found.resolve() != self.label_file.path:
                self.notes.append(f"--labels {self.label_file.path.name} is used; {found.name} at the top of the "
                                  f"folder is not read")
        elif (found := metadata_file(self.root)) is not None:
            try:
                self.label_file = LabelFile(found.resolve())
            except ConfigError:
                if not has_class_folders(self.root):
                    raise
                self.notes.append(f"{found.name} at the top of the folder has no file and label columns: not read; "
                                  f"labels come from the class folders")
            else:
                self.notes.append(f"labels read from {found.name} at the top of the folder (found automatically, as "
                                  f"HF imagefolder does; --labels FILE overrides)")

    @classmethod
    def find(cls, path: Path) -> Path | None:
        """Any folder: a flat one is ingestable with a label file, and ``find`` cannot see ``--labels``.

        A folder with neither class folders nor a label file is refused by ``records()``, before its first record,
        with the message ``detect`` gives for a layout it does not know. When the class folders (or metadata file)
        sit one or two levels down, under a single top folder and nothing else (an archive of ``<name>/<class>/``),
        that folder is the anchor."""
        if not path.is_dir():
            return None
        current = path
        for _ in range(3):
            if has_class_folders(current) or metadata_file(current) is not None:
                return current
            inner = _subdirs(current)
            if len(inner) != 1 or any(p.is_file() and not stray_reason(p.name) for p in current.iterdir()):
                break
            current = inner[0]
        return path

    @classmethod
    def find_for(cls, path: Path, options: dict) -> Path | None:
        """A flat folder is a layout only with a label file (``--labels``): without one, and without class folders or
        a metadata file, the layout is not recognised before anything is written."""
        anchor = cls.find(path)
        if anchor is None or options.get("labels") or has_class_folders(anchor) or metadata_file(anchor) is not None:
            return anchor
        return None

    @property
    def dataset_name(self) -> str:
        name = str(self.option("name", "") or self.root.name).strip().lower().replace(" ", "-")
        if not _NAME.match(name):
            raise ConfigError(f"--name {name!r} must be 1-64 characters of a-z, 0-9, '.', '_' or '-'")
        if name in all_manifests():
            raise ConfigError(f"--name {name!r} is the name of a dataset fusekit knows; pick another name, or use "
                              f"`fusekit ingest {name}` for its native layout")
        return name

    def records(self) -> Iterator[Record]:
        if self.label_file is not None:
            yield from self._listed_records(self.label_file)
            return
        if not has_class_folders(self.root):
            title = all_manifests()["folder"].title
            raise LayoutNotRecognised(f"{self.root} is not a {title} layout: expected {self.spec.layout}; "
                                      f"found {describe_folder(self.root)}")
        top = {d.name for d in _subdirs(self.root)}
        self._split_layout = not any(normalise(n) for n in top) and any(n.lower() in SPLIT_FOLDERS for n in top)
        yield from super().records()

    def record_for(self, rel: str) -> Record | None:
        parts = rel.split("/")
        split = None
        if self._split_layout:
            split = SPLIT_FOLDERS.get(parts[0].lower())
            if split is None or len(parts) < 3:
                return Record(key=rel, path=rel, reject="unlabelled",
                              reject_detail="not inside <split>/<class>/ (split folders: train, val, test)")
            parts = parts[1:]
        if len(parts) < 2:
            return Record(key=rel, path=rel, reject="unlabelled", reject_detail="not inside a class folder")
        if not is_image_name(parts[-1]):
            return Record(key=rel, path=rel, raw_label=parts[0], reject="unrecognised_name",
                          reject_detail="not an image file extension")
        return Record(key=rel, path=rel, raw_label=parts[0], split=split,
                      extra={"class_folder": parts[0]} if normalise(parts[0]) != parts[0] else {})

    # -- with a label file ---------------------------------------------------------------------------------------------

    def _own_files(self, labels: LabelFile) -> set[str]:
        """The label file itself and any metadata file at the top: under the root, but not samples."""
        own = set()
        for path in [labels.path, metadata_file(self.root)]:
            if path is None:
                continue
            with contextlib.suppress(ValueError):  # a label file outside the tree is not one of its files
                own.add(path.resolve().relative_to(self.root.resolve()).as_posix())
        return own

    def _listed_records(self, labels: LabelFile) -> Iterator[Record]:
        own = self._own_files(labels)
        stats = WalkStats()
        walked = list(walk_entries(self.root, stats=stats))
        files = [rel for rel, problem, _ in walked if problem is None and rel not in own]
        index = _Index(files, self.root)
        name = labels.path.name
        columns = labels.columns
        width = len(labels.header)
        seen: dict[str, int] = {}  # resolved file -> the line that first listed it
        counts: Counter[str] = Counter()
        for row_index, line, row in labels.rows():
            where = f"{name} line {line}"
            row_key = f"{name}/row{row_index:06d}"
            if len(row) < width or any(f.strip() for f in row[width:]):
                yield Record(key=row_key, path=name, row=row_index, reject="malformed_row",
                             reject_detail=f"{where}: {len(row)} fields, the header has {width}")
                continue
            raw_file = row[columns["file"]]
            raw_label = row[columns["label"]].strip()
            listed = _clean(raw_file)
            if listed is None:
                problem = (f"the file name {raw_file.strip()!r} leaves the folder" if raw_file.strip()
                           else "no file name")
                yield Record(key=row_key, path=name, row=row_index, raw_label=raw_label or None,
                             reject="malformed_row", reject_detail=f"{where}: {problem}")
                continue
            rel, ambiguous = index.resolve(listed)
            if ambiguous:
                yield Record(key=row_key, path=name, row=row_index, raw_label=raw_label or None,
                             reject="malformed_row",
                             reject_detail=f"{where}: {listed!r} matches {len(ambiguous)} files "
                                           f"({', '.join(ambiguous[:3])}{', ...' if len(ambiguous) > 3 else ''}); "
                                           f"give its path relative to the folder")
                continue
            key = rel or listed
            if key in seen:
                yield Record(key=f"{key}#row{row_index:06d}", path=rel or listed, row=row_index,
                             raw_label=raw_label or None, reject="duplicate_entry",
                             reject_detail=f"{where} lists {key} again (first on line {seen[key]})")
                continue
            seen[key] = line
            if rel is None:
                yield Record(key=key, path=listed, row=row_index, raw_label=raw_label or None, reject="missing_file",
                             reject_detail=f"{where} names {listed}, which is not under the folder")
                continue
            yield self._listed_record(rel, row_index, row, raw_label, where, columns, counts)
        for rel in files:
            if rel in seen:
                continue
            base = rel.rsplit("/", 1)[-1]
            reason = stray_reason(base) or ("operating-system metadata folder" if in_stray_dir(rel) else None)
            if reason:
                yield Record(key=rel, path=rel, reject="stray_file", reject_detail=reason)
            elif is_image_name(base):
                folder = _folders(rel)[1]
                said = f" (its class folder says {folder})" if folder else ""
                yield Record(key=rel, path=rel, reject="unlabelled",
                             reject_detail=f"not listed in {name}{said}")
            else:
                yield Record(key=rel, path=rel, reject="unrecognised_name", reject_detail="not an image file")
        for rel, problem, detail in walked:  # folders not walked (link loops, unreadable): rejects, not gaps
            if problem is not None:
                yield Record(key=rel, path=rel, reject=problem, reject_detail=detail)
        self.notes.extend(stats.notes())
        if counts["class_folder"]:
            self.notes.append(f"{counts['class_folder']:,} images sit in a class folder that disagrees with {name}; "
                              f"the list wins (extra.class_folder, extra.folder_disagrees)")
        if counts["split_folder"]:
            self.notes.append(f"{counts['split_folder']:,} images sit in a split folder that disagrees with {name}; "
                              f"the list wins (extra.split_folder, extra.split_disagrees)")

    def _listed_record(self, rel: str, row_index: int, row: list[str], raw_label: str, where: str,
                       columns: dict[str, int], counts: Counter[str]) -> Record:
        if not is_image_name(rel):
            return Record(key=rel, path=rel, row=row_index, raw_label=raw_label or None, reject="unrecognised_name",
                          reject_detail=f"{where} names a file without an image extension")
        if not raw_label:
            return Record(key=rel, path=rel, row=row_index, reject="unlabelled", reject_detail=f"{where}: no label")
        split_folder, class_folder = _folders(rel)
        extra: dict[str, Any] = {}
        if class_folder is not None:
            listed = self.spec.canonical(raw_label)
            if listed is not None and listed != normalise(class_folder):
                extra.update(class_folder=class_folder, folder_disagrees=True)
                counts["class_folder"] += 1
            elif class_folder != normalise(class_folder):
                extra["class_folder"] = class_folder  # as without a list: a spelling other than the canonical name
        split = SPLIT_FOLDERS.get(split_folder.lower()) if split_folder else None
        if "split" in columns and (text := row[columns["split"]].strip()):
            listed_split = SPLIT_FOLDERS.get(text.lower())
            if listed_split is None:
                return Record(key=rel, path=rel, row=row_index, raw_label=raw_label, reject="malformed_row",
                              reject_detail=f"{where}: split {text!r} is not one of train, val, test "
                                            f"({', '.join(sorted(SPLIT_FOLDERS))})")
            if split is not None and split != listed_split:
                extra.update(split_folder=split_folder, split_disagrees=True)
                counts["split_folder"] += 1
            split = listed_split
        subject = (row[columns["subject"]].strip() or None) if "subject" in columns else None
        return Record(key=rel, path=rel, row=row_index, raw_label=raw_label, split=split, subject=subject,
                      extra=extra)


def _folders(rel: str) -> tuple[str | None, str | None]:
    """The split folder and the class folder a file sits in, as in a class-folder tree (None where there is none)."""
    parts = rel.split("/")[:-1]
    split = None
    if parts and parts[0].lower() in SPLIT_FOLDERS and not normalise(parts[0]):
        split, parts = parts[0], parts[1:]
    return split, (parts[0] if parts and normalise(parts[0]) else None)


class _Index:
    """Finds the file a list row names: as given, else without its leading folders (a list written from a folder
    above, or absolute paths from another machine), exactly and then by case; a bare file name may also name a file
    anywhere in the tree, when it is the only file of that name there."""

    def __init__(self, files: list[str], root: Path) -> None:
        self.files = set(files)
        self.lower: dict[str, list[str]] = {}
        self.names: dict[str, list[str]] = {}
        self.lower_names: dict[str, list[str]] = {}
        for rel in files:
            base = rel.rsplit("/", 1)[-1]
            self.lower.setdefault(rel.lower(), []).append(rel)
            self.names.setdefault(base, []).append(rel)
            self.lower_names.setdefault(base.lower(), []).append(rel)
        self.root = root.resolve().as_posix().strip("/")

    def resolve(self, listed: str) -> tuple[str | None, list[str]]:
        """(the file, []) when found; (None, the candidates) when a bare name matches several; (None, []) if none."""
        if listed.startswith(self.root + "/"):
            listed = listed[len(self.root) + 1:]  # an absolute path inside the folder (`_clean` took the first '/')
        parts = listed.split("/")
        suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
        for suffix in suffixes:
            if suffix in self.files:
                return suffix, []
        for suffix in suffixes:
            found = self.lower.get(suffix.lower(), [])
            if len(found) == 1:
                return found[0], []
        if len(parts) == 1:
            for found in (self.names.get(listed, []), self.lower_names.get(listed.lower(), [])):
                if len(found) == 1:
                    return found[0], []
                if found:
                    return None, sorted(found)
        return None, []


SOURCES = [ClassFolders]
