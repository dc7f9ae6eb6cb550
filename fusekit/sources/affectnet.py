"""AffectNet (FORMATS.md §2): the official CSV and npy releases and the two common Kaggle re-packagings.

* ``official`` (§2a): ``Manually_Annotated_file_lists/{training,validation}.csv`` + ``Manually_Annotated_Images/``
  (also nested one level, e.g. ``Manually_Annotated_compressed/Manually_Annotated_Images/``). A list may have a
  header (``subDirectory_filePath`` or ``#subDirectory_filePath``) or none, and 9 columns or 144 (the 68 landmarks
  split into 136 columns). The face box (x, y, w, h) is kept; expressions 8-10 (None, Uncertain, Non-Face) and
  ``face_width == 0`` (AffectNet's mark of a missing image) are dropped with a detail saying which. The image path is
  the CSV's, relative to the image folder; it is also the sample's key. ``validation.csv`` is the usual test set.
* ``npy`` (§2b): ``{train_set,val_set}/images/<id>.jpg`` + ``annotations/<id>_exp.npy`` (+ ``_val``, ``_aro``);
  npy files are read without pickle and cast with ``int()``, whatever their dtype.
* ``kaggle`` (§2c): ``labels.csv`` (``,pth,label,relFCs``) + class folders. The CSV's label wins over the folder; the
  folder is recorded beside it, and ``relFCs`` is kept (``-o min_relfcs=0.7`` drops rows below a threshold).
* ``yolo`` (§2d): ``{train,valid,test}/{images,labels}/``; the class is the first token of the label line, through
  ``data.yaml``'s names when they are given. An empty label file means "no face": the image is rejected as
  ``no_face`` (never defaulted to class 0), so no stage looks for a face in it.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import yaml

from fusekit.errors import ConfigError, LayoutNotRecognised
from fusekit.manifests import DROP, Variant
from fusekit.records import Record
from fusekit.sources.base import Source, find_dirs, header_size, in_stray_dir, is_image_name, stray_reason, walk
from fusekit.taxonomy import normalise

csv.field_size_limit(1 << 24)


def _label_name(spec: Variant, raw: str) -> str:
    name = {str(k): v for k, v in (spec.extra.get("label_names") or {}).items()}.get(raw)
    return f"{raw} ({name})" if name else raw


def _drop_detail(spec: Variant, raw: str) -> str | None:
    """The detail for a native label the manifest drops, or None when it maps to a class (or is unknown)."""
    if spec.canonical(raw) == DROP:
        return f"expression {_label_name(spec, raw)} has no canonical class"
    return None


def _clean_rel(text: str) -> str | None:
    """A list's relative image path in POSIX form, or None if it is empty or would leave the image folder."""
    rel = text.strip().replace("\\", "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or rel.startswith("/"):
        return None
    return "/".join(parts)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _annotated(value: float) -> float | None:
    """AffectNet writes -2 for a valence/arousal that was not annotated."""
    return None if value == -2 else value


# -- 2a: the official CSV release ------------------------------------------------------------------------------------

LIST_FILES = ("training.csv", "validation.csv")
HEADER_FIELD = re.compile(r"^#?subDirectory_filePath$", re.I)
LIST_PATH = re.compile(r"^\d+/[^/]+\.[A-Za-z]+$")  # `<int>/<hex>.<ext>` (FORMATS.md: 56 hex chars, not enforced)
COLUMNS = ("subdirectory_filepath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks", "expression",
           "valence", "arousal")
IMAGE_FOLDER = "manually_annotated_images"
AUTO_LISTS = ("automatically_annotated_file_lists", "automatically_annotated_file_list")
AUTO_IMAGE_FOLDER = "automatically_annotated_images"


def _first_field(path: Path) -> str | None:
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            line = handle.readline(1 << 16)
    except OSError:
        return None
    row = next(csv.reader([line]), [])
    return row[0].strip() if row else None


def _is_list_file(path: Path) -> bool:
    first = _first_field(path)
    return first is not None and bool(HEADER_FIELD.match(first) or LIST_PATH.match(first.replace("\\", "/")))


def _list_files(folder: Path) -> dict[str, Path]:
    """``training.csv`` / ``validation.csv`` in ``folder`` (any case) that look like AffectNet lists."""
    try:
        files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    except OSError:
        return {}
    return {name: files[name] for name in LIST_FILES if name in files and _is_list_file(files[name])}


class AffectNetOfficial(Source):
    """PATH: the AffectNet folder (or the ``Manually_Annotated_file_lists`` folder beside the images)."""

    dataset: ClassVar[str] = "affectnet"
    variant: ClassVar[str] = "official"
    priority: ClassVar[int] = 10

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.check_options(("automatic",), usage="takes the option automatic=yes (also ingest the automatically "
                           "annotated images)", by_variant=True)
        self.automatic = self.bool_option("automatic", False)
        lists_dir = self._lists_dir(anchor)
        self.lists = _list_files(lists_dir)
        found = find_dirs(anchor, lambda p: p.name.lower() == IMAGE_FOLDER, max_depth=3)
        if not found:
            rars = sorted(p.name for p in anchor.glob("*.rar"))
            hint = (f" (unrar x {rars[0]} {anchor}/ first)" if rars else "")
            raise LayoutNotRecognised(
                f"found the AffectNet lists ({', '.join(p.name for p in self.lists.values())}) in {lists_dir} but no "
                f"Manually_Annotated_Images/ folder under {anchor}: extract the images next to the lists{hint}")
        self.images_rel = found[0].relative_to(anchor).as_posix()
        self.auto_list, self.auto_images_rel = self._automatic_set(anchor) if self.automatic else (None, None)

    @staticmethod
    def _automatic_set(anchor: Path) -> tuple[Path, str]:
        """The automatically annotated set, asked for with ``-o automatic=yes``: its list (same columns as the
        manual ones; layout from FORMATS.md §2a, not checked against a real copy) and its images folder."""
        lists = [p for p in sorted(anchor.iterdir()) if p.is_dir() and p.name.lower() in AUTO_LISTS]
        csvs = sorted(p for p in lists[0].iterdir() if p.suffix.lower() == ".csv" and _is_list_file(p)) if lists else []
        images = find_dirs(anchor, lambda p: p.name.lower() == AUTO_IMAGE_FOLDER, max_depth=3)
        if not csvs or not images:
            missing = "Automatically_Annotated_file_lists/automatically_annotated.csv" if not csvs else \
                "Automatically_Annotated_Images/"
            raise LayoutNotRecognised(f"-o automatic=yes: no {missing} under {anchor}: extract it next to the "
                                      f"manually annotated set")
        return csvs[0], images[0].relative_to(anchor).as_posix()

    @staticmethod
    def _lists_dir(anchor: Path) -> Path:
        if _list_files(anchor):
            return anchor
        for child in sorted(anchor.iterdir(), key=lambda p: p.name):
            if child.is_dir() and child.name.lower().startswith("manually_annotated_file_list") and _list_files(child):
                return child
        raise LayoutNotRecognised(f"{anchor} holds no AffectNet training.csv or validation.csv")

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        found = find_dirs(path, lambda p: bool(_list_files(p)), max_depth=3)
        if not found:
            return None
        lists = found[0]
        # The lists ship in their own zip; the anchor is the folder that holds both them and the images.
        if lists.name.lower().startswith("manually_annotated_file_list"):
            return lists.parent
        return lists

    def records(self) -> Iterator[Record]:
        for name in LIST_FILES:
            if name in self.lists:
                yield from self._list_records(self.lists[name], self.images_rel)
        if self.auto_list is not None:
            # A model's labels, not people's: training only, marked in label_source, ids apart from the manual set's.
            yield from self._list_records(self.auto_list, self.auto_images_rel, split="train", key_prefix="automatic/",
                                          label_source="affectnet_automatic")
            return
        auto = [p.name for p in self.anchor.iterdir() if p.is_dir() and p.name.lower() in AUTO_LISTS]
        if auto:
            self.notes.append(f"{auto[0]}/ holds the automatically annotated images (a model's labels, not "
                              f"people's): not ingested (-o automatic=yes adds them to train)")

    def _list_records(self, path: Path, images_rel: str, split: str | None = None, key_prefix: str = "",
                      label_source: str = "dataset") -> Iterator[Record]:
        list_name = path.stem.lower()  # training | validation | automatically_annotated
        split = split or self.spec.splits.get(list_name)
        widths: Counter[int] = Counter()  # rows by field count
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle)
            first = next(reader, None)
            header = None
            if first and HEADER_FIELD.match(first[0].strip()):
                header = [c.strip().lstrip("#").strip().lower() for c in first]
                rows = reader
            else:
                rows = itertools.chain([first] if first else [], reader)
            index_of = {name: header.index(name) for name in COLUMNS if header and name in header}
            for index, row in enumerate(rows):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                widths[len(row)] += 1
                yield self._row_record(path.name, list_name, split, index, row, index_of, images_rel, key_prefix,
                                       label_source)
        main, most = widths.most_common(1)[0] if widths else (0, 0)
        rows_read = sum(widths.values())
        others = rows_read - most
        layout = f"{main} columns" + (f" ({others:,} rows of another width)" if others else "")
        self.notes.append(f"{path.name}: {rows_read:,} rows, "
                          f"{'header ' + repr(first[0].strip()) if header and first else 'no header'}, {layout}")

    def _row_record(self, file_name: str, list_name: str, split: str | None, index: int, row: list[str],
                    index_of: dict[str, int], images_rel: str, key_prefix: str, label_source: str) -> Record:
        where = f"{list_name}/row{index:06d}"
        rel = _clean_rel(row[0]) if row else None
        key = key_prefix + (rel or where)
        path = f"{images_rel}/{rel}" if rel else file_name
        if len(row) == len(COLUMNS):
            get = {name: row[index_of.get(name, i)] for i, name in enumerate(COLUMNS)}
            landmark_text = get["facial_landmarks"].split(";")
        elif len(row) == len(COLUMNS) - 1 + 136:
            # A copy with the 68 landmarks split into 136 columns: fixed at both ends, landmarks between.
            get = dict(zip(COLUMNS[:5], row[:5])) | dict(zip(COLUMNS[6:], row[-3:]))
            landmark_text = row[5:-3]
        else:
            return Record(key=where, path=file_name, row=index, reject="malformed_row",
                          reject_detail=f"{file_name} row {index}: {len(row)} fields, expected 9 or 144")
        if rel is None:
            return Record(key=where, path=file_name, row=index, reject="malformed_row",
                          reject_detail=f"{file_name} row {index}: image path {row[0]!r} is empty or leaves the folder")
        try:
            box = tuple(_number(get[c]) for c in ("face_x", "face_y", "face_width", "face_height"))
            expression = _number(get["expression"])
            if not expression.is_integer():
                raise ValueError(get["expression"])
        except ValueError:
            return Record(key=key, path=path, row=index, raw_label=get.get("expression"), reject="malformed_row",
                          reject_detail=f"{file_name} row {index}: face box or expression is not a number")
        raw = str(int(expression))
        extra: dict[str, Any] = {"list": file_name}
        for name in ("valence", "arousal"):
            try:
                value = _annotated(_number(get[name]))
            except ValueError:
                value = None
            if value is not None:
                extra[name] = value
        try:
            landmarks = list(map(float, landmark_text))  # float() strips spaces; the C loop keeps 400K rows quick
            if len(landmarks) == 136 and math.isfinite(sum(landmarks)):
                extra["landmarks68"] = landmarks
        except ValueError:
            pass  # landmarks are a bonus; a row with unreadable ones is still a labelled face
        drop = _drop_detail(self.spec, raw)
        if drop:
            return Record(key=key, path=path, row=index, raw_label=raw, split=split, reject="dropped_label",
                          reject_detail=drop)
        if box[2] <= 0 or box[3] <= 0:
            return Record(key=key, path=path, row=index, raw_label=raw, split=split, reject="dropped_label",
                          reject_detail=f"face_width {box[2]:g}, face_height {box[3]:g}: AffectNet's mark of a "
                                        f"missing image (no face box)")
        return Record(key=key, raw_label=raw, split=split, path=path, row=index, face_box=box,  # type: ignore[arg-type]
                      extra=extra, label_source=label_source)


# -- 2b: the npy release ---------------------------------------------------------------------------------------------

SET_FOLDERS = ("train_set", "val_set")
ANNOTATION = re.compile(r"^(.+)_(exp|val|aro|lnd)\.npy$", re.I)


def _is_set(folder: Path) -> bool:
    return (folder / "annotations").is_dir() and (folder / "images").is_dir()


def _load_scalar(path: Path) -> float:
    """The one number in an npy file (0-d, or one element; numeric or a string of digits). Never unpickles."""
    array = np.load(path, allow_pickle=False)
    if array.size != 1:
        raise ValueError(f"{array.size} values, expected 1")
    return _number(str(array.reshape(-1)[0]))


def _natural(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


class AffectNetNpy(Source):
    """PATH: the folder holding ``train_set/`` and ``val_set/``, or one of them."""

    dataset: ClassVar[str] = "affectnet"
    variant: ClassVar[str] = "npy"
    priority: ClassVar[int] = 20
    options_taken: ClassVar[tuple[str, ...] | None] = ()

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        if _is_set(path) and path.name.lower().endswith("_set"):
            return path
        found = find_dirs(path, lambda p: any(_is_set(p / n) for n in SET_FOLDERS), max_depth=3)
        return found[0] if found else None

    def records(self) -> Iterator[Record]:
        if _is_set(self.anchor):
            yield from self._set_records(self.anchor.name, "")
            return
        for name in SET_FOLDERS:
            if _is_set(self.anchor / name):
                yield from self._set_records(name, f"{name}/")

    def _set_records(self, set_name: str, prefix: str) -> Iterator[Record]:
        folder = self.anchor if not prefix else self.anchor / set_name
        split = self.spec.splits.get(set_name.lower())
        key_prefix = f"{set_name}/"
        annotations: dict[str, dict[str, str]] = {}
        for name in sorted(os.listdir(folder / "annotations")):
            rel = f"{prefix}annotations/{name}"
            if stray_reason(name):
                yield Record(key=f"{key_prefix}annotations/{name}", path=rel, reject="stray_file",
                             reject_detail=stray_reason(name) or "")
                continue
            match = ANNOTATION.match(name)
            if not match:
                yield Record(key=f"{key_prefix}annotations/{name}", path=rel, reject="unrecognised_name",
                             reject_detail="expected <id>_exp.npy, <id>_val.npy, <id>_aro.npy or <id>_lnd.npy")
                continue
            annotations.setdefault(match[1], {})[match[2].lower()] = name
        images: dict[str, str] = {}
        for name in sorted(os.listdir(folder / "images")):
            if stray_reason(name) or not is_image_name(name):
                yield Record(key=f"{key_prefix}images/{name}", path=f"{prefix}images/{name}",
                             reject="stray_file" if stray_reason(name) else "unrecognised_name",
                             reject_detail=stray_reason(name) or "not an image file extension")
                continue
            stem = os.path.splitext(name)[0]
            # DAN reads images/<id>.jpg; a copy with another extension is taken, .jpg first.
            if stem not in images or name.lower().endswith(".jpg"):
                images[stem] = name
        for sample in sorted(set(annotations) | set(images), key=_natural):
            files = annotations.get(sample, {})
            image = images.get(sample, f"{sample}.jpg")
            key, path = f"{key_prefix}images/{image}", f"{prefix}images/{image}"
            if "exp" not in files:
                yield Record(key=key, path=path, split=split, reject="unlabelled",
                             reject_detail=f"no annotations/{sample}_exp.npy for this image")
                continue
            try:
                expression = _load_scalar(folder / "annotations" / files["exp"])
                if not expression.is_integer():
                    raise ValueError(f"{expression} is not a whole number")
            except (ValueError, OSError) as exc:
                yield Record(key=key, path=path, split=split, reject="malformed_row",
                             reject_detail=f"annotations/{files['exp']}: {exc}")
                continue
            raw = str(int(expression))
            extra: dict[str, Any] = {}
            for part, column in (("val", "valence"), ("aro", "arousal")):
                if part in files:
                    try:
                        value = _annotated(_load_scalar(folder / "annotations" / files[part]))
                    except (ValueError, OSError):
                        value = None
                    if value is not None:
                        extra[column] = value
            drop = _drop_detail(self.spec, raw)
            if drop:
                yield Record(key=key, path=path, raw_label=raw, split=split, reject="dropped_label", reject_detail=drop)
                continue
            # A missing image keeps its path: the ingest reports it as missing_file.
            yield Record(key=key, raw_label=raw, split=split, path=path, extra=extra)


# -- 2c: Kaggle labels.csv ---------------------------------------------------------------------------------------------

def _csv_columns(path: Path) -> dict[str, int] | None:
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = next(csv.reader([handle.readline(1 << 16)]), [])
    except OSError:
        return None
    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    return columns if "pth" in columns and "label" in columns else None


class AffectNetKaggle(Source):
    """PATH: ``labels.csv`` or the folder holding it (noamsegal/affectnet-training-data)."""

    dataset: ClassVar[str] = "affectnet"
    variant: ClassVar[str] = "kaggle"
    priority: ClassVar[int] = 30
    options_taken: ClassVar[tuple[str, ...] | None] = ("min_relfcs",)

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        threshold = self.option("min_relfcs", None)
        try:
            self.min_relfcs = None if threshold in (None, "") else float(threshold)
        except ValueError:
            raise ConfigError(f"-o min_relfcs= takes a number between 0 and 1, got {threshold!r}") from None

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if path.is_file():
            return path if path.name.lower() == "labels.csv" and _csv_columns(path) else None
        if not path.is_dir():
            return None
        found = find_dirs(path, lambda p: (p / "labels.csv").is_file() and _csv_columns(p / "labels.csv") is not None,
                          max_depth=3)
        return found[0] / "labels.csv" if found else None

    def _resolve(self, pth: str, files: set[str], lower: dict[str, str]) -> str | None:
        """The file a ``pth`` names, relative to the root: as given, under ``images/``, without its first folder
        (a ``pth`` that says ``images/`` when the class folders sit at the root), or by case."""
        candidates = [pth, f"images/{pth}"]
        if "/" in pth:
            candidates.append(pth.split("/", 1)[1])
        for candidate in candidates:
            if candidate in files:
                return candidate
            if candidate.lower() in lower:
                return lower[candidate.lower()]
        return None

    def records(self) -> Iterator[Record]:
        columns = _csv_columns(self.anchor) or {}
        files = set(walk(self.root))
        lower = {f.lower(): f for f in files}
        used: set[str] = set()
        counts: Counter[str] = Counter()
        with open(self.anchor, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            for index, row in enumerate(reader):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != len(header):
                    yield Record(key=f"labels.csv/row{index:06d}", path=self.anchor.name, row=index,
                                 reject="malformed_row",
                                 reject_detail=f"labels.csv row {index}: {len(row)} fields, the header has "
                                               f"{len(header)}")
                    continue
                pth = _clean_rel(row[columns["pth"]])
                label = row[columns["label"]].strip().lower()
                if pth is None:
                    yield Record(key=f"labels.csv/row{index:06d}", path=self.anchor.name, row=index, raw_label=label,
                                 reject="malformed_row",
                                 reject_detail=f"labels.csv row {index}: bad pth {row[columns['pth']]!r}")
                    continue
                rel = self._resolve(pth, files, lower)
                if rel is not None:
                    used.add(rel)
                yield self._row_record(index, rel or pth, label, row, columns, counts)
        for rel in sorted(files - used):
            name = rel.rsplit("/", 1)[-1]
            if rel == self.anchor.name:
                continue
            reason = stray_reason(name) or ("operating-system metadata folder" if in_stray_dir(rel) else None)
            if reason:
                yield Record(key=rel, path=rel, reject="stray_file", reject_detail=reason)
            elif is_image_name(name):
                folder = rel.split("/")[-2] if "/" in rel else None
                said = f" (its folder says {folder})" if folder else ""
                yield Record(key=rel, path=rel, reject="unlabelled", reject_detail=f"not listed in labels.csv{said}")
            else:
                yield Record(key=rel, path=rel, reject="unrecognised_name", reject_detail="not an image file")
        if counts["disagree"]:
            self.notes.append(f"{counts['disagree']:,} images sit in a class folder that disagrees with labels.csv; "
                              f"labels.csv wins (the folder is kept in extra.folder)")

    def _row_record(self, index: int, rel: str, label: str, row: list[str], columns: dict[str, int],
                    counts: Counter[str]) -> Record:
        extra: dict[str, Any] = {}
        folder = rel.split("/")[-2] if "/" in rel else None
        if folder is not None:
            extra["folder"] = folder
            if normalise(folder) != (self.spec.canonical(label) or normalise(label)):
                extra["folder_disagrees"] = True
                counts["disagree"] += 1
        confidence = None
        if "relfcs" in columns:
            try:
                confidence = _number(row[columns["relfcs"]])
                extra["relFCs"] = confidence
            except ValueError:
                pass
        if self.min_relfcs is not None and (confidence is None or confidence < self.min_relfcs):
            return Record(key=rel, path=rel, row=index, raw_label=label, reject="low_confidence",
                          reject_detail=f"relFCs {confidence if confidence is not None else 'missing'} is below "
                                        f"-o min_relfcs={self.min_relfcs:g}")
        return Record(key=rel, raw_label=label, path=rel, row=index, extra=extra)


# -- 2d: Kaggle YOLO ---------------------------------------------------------------------------------------------------

def _split_dirs(folder: Path) -> list[Path]:
    try:
        children = [p for p in folder.iterdir() if p.is_dir()]
        found = [p for p in children if (p / "images").is_dir() and (p / "labels").is_dir()]
        return sorted(found, key=lambda p: p.name)
    except OSError:
        return []


def _yolo_names(root: Path) -> list[str] | None:
    """The class names of ``data.yaml`` (a list, or a mapping of id to name), or None when there is none."""
    for name in ("data.yaml", "data.yml"):
        path = root / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace")) or {}
            except yaml.YAMLError:
                return None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                try:
                    return [str(names[k]) for k in sorted(names, key=int)]
                except (TypeError, ValueError):
                    return None
            return [str(n) for n in names] if isinstance(names, list) else None
    return None


class AffectNetYolo(Source):
    """PATH: the ``YOLO_format`` folder holding ``train/``, ``valid/`` and ``test/`` with ``images/`` + ``labels/``."""

    dataset: ClassVar[str] = "affectnet"
    variant: ClassVar[str] = "yolo"
    priority: ClassVar[int] = 40
    options_taken: ClassVar[tuple[str, ...] | None] = ()

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.names = _yolo_names(anchor)
        self.by_name: dict[str, str | None] = {}
        if self.names is not None:
            # data.yaml is the authority on its own ids; FORMATS.md's order is the fallback when it is absent.
            self.by_name = {str(i): normalise(n) for i, n in enumerate(self.names)}
            differs = [i for i, c in self.by_name.items() if c != spec.canonical(i)]
            if differs:
                self.notes.append(f"data.yaml names ({', '.join(self.names)}) differ from FORMATS.md's order for "
                                  f"class ids {', '.join(differs)}: data.yaml's names were used")

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        splits = {"train", "valid", "val", "test"}
        found = find_dirs(path, lambda p: any(d.name.lower() in splits for d in _split_dirs(p)), max_depth=3)
        return found[0] if found else None

    def records(self) -> Iterator[Record]:
        splits = {k.lower(): v for k, v in self.spec.splits.items()}
        for folder in _split_dirs(self.anchor):
            split = splits.get(folder.name.lower())
            if split is None:
                continue
            yield from self._split_records(folder, split)

    def _split_records(self, folder: Path, split: str) -> Iterator[Record]:
        base = folder.name
        labels = {os.path.splitext(n)[0]: n for n in os.listdir(folder / "labels") if n.lower().endswith(".txt")}
        seen: set[str] = set()
        for name in sorted(os.listdir(folder / "images")):
            rel = f"{base}/images/{name}"
            if stray_reason(name):
                yield Record(key=rel, path=rel, reject="stray_file", reject_detail=stray_reason(name) or "")
                continue
            if not is_image_name(name):
                yield Record(key=rel, path=rel, reject="unrecognised_name", reject_detail="not an image file extension")
                continue
            stem = os.path.splitext(name)[0]
            seen.add(stem)
            if stem not in labels:
                yield Record(key=rel, path=rel, split=split, reject="unlabelled",
                             reject_detail=f"no label file {base}/labels/{stem}.txt")
                continue
            yield from self._image_records(folder, rel, f"{base}/labels/{labels[stem]}", split)
        for stem in sorted(set(labels) - seen):
            rel = f"{base}/labels/{labels[stem]}"
            if labels[stem].startswith("._"):  # label files are .txt: only macOS metadata is a stray here
                yield Record(key=rel, path=rel, reject="stray_file", reject_detail="operating-system metadata file")
                continue
            yield Record(key=rel, path=rel, split=split, reject="missing_file",
                         reject_detail=f"{rel} has no image {base}/images/{stem}.*")

    def _image_records(self, folder: Path, rel: str, label_rel: str, split: str) -> Iterator[Record]:
        try:
            text = (self.anchor / label_rel).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            yield Record(key=rel, path=rel, split=split, reject="unreadable", reject_detail=f"{label_rel}: {exc}")
            return
        lines = [line.split() for line in text.splitlines() if line.strip()]
        if not lines:
            yield Record(key=rel, path=rel, split=split, reject="no_face",
                         reject_detail=f"{label_rel} is empty: the dataset marks no face in this image")
            return
        size = header_size(self.anchor / rel)
        for face, tokens in enumerate(lines):
            key = rel if len(lines) == 1 else f"{rel}#{face}"
            try:
                if len(tokens) != 5:
                    raise ValueError(f"{len(tokens)} fields")
                class_id = tokens[0]
                if not class_id.isdigit():
                    raise ValueError(f"class {class_id!r} is not a whole number")
                cx, cy, w, h = (_number(t) for t in tokens[1:])
            except ValueError as exc:
                yield Record(key=key, path=rel, split=split, reject="malformed_row",
                             reject_detail=f"{label_rel} line {face + 1}: expected 'class cx cy w h' ({exc})")
                continue
            raw = str(int(class_id))
            extra: dict[str, Any] = {"yolo_box": [cx, cy, w, h]}
            if len(lines) > 1:
                extra["face_index"] = face
            label = None
            if self.names is not None:
                label = self.by_name.get(raw)
                if label is None:
                    given = self.names[int(raw)] if int(raw) < len(self.names) else "no name"
                    yield Record(key=key, path=rel, split=split, raw_label=raw, reject="unknown_label",
                                 reject_detail=f"class {raw} ({given} in data.yaml) is not a canonical class")
                    continue
                extra["yolo_name"] = self.names[int(raw)]
            box = None
            if size is not None:
                width, height = size
                box = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
            yield Record(key=key, raw_label=raw, label=label, split=split, path=rel, face_box=box,
                         group=rel if len(lines) > 1 else None, extra=extra)


SOURCES: list[type[Source]] = [AffectNetOfficial, AffectNetNpy, AffectNetKaggle, AffectNetYolo]
