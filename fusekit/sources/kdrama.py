"""Korean-drama facial-emotion set (Cho et al., BigComp 2022; FORMATS.md §9): TFRecords read with TensorFlow.

    tfrecords/6_basic_emo_{train,valid,test}.tfrecords   label one-hot over 6        (.idx files: DALI indexes, unused)
    tfrecords/22_emo_{train,valid,test}.tfrecords        label one-hot over 22
    tfrecords/multi-label_{train,valid,test}.tfrecords   label multi-hot over 24
    label/label_<6_basic_emo|22_emo|multi-label>_<split>.csv   img_id, clip_id, one 0/1 column per label (optional)

Each record is a ``tf.train.Example`` with ``height``, ``width``, ``depth``, ``label`` and ``image_raw`` (encoded
image bytes, stored as they are). The label vector's order is the CSV column order. A row is kept when exactly one
label is positive; the manifest maps it (the 17 non-basic emotions are dropped), several positives are rejected as
``multiple_labels``. The split is the file's (``valid`` -> val); the splits are frame-random, so they leak clips.

The records carry no image id. The repository's label CSVs name each row's ``img_id`` and ``clip_id``; when one sits
beside the files (or ``--labels``/``-o labels=`` names it or its folder) and every record's label equals the CSV row at
the same position, the rows are joined by position and the clip becomes the group. Otherwise nothing is guessed: the
group stays empty and a note says why. A file that is corrupt part-way keeps the records read before the damage; the
rest of it is one ``unreadable`` reject.

TensorFlow is imported only when records are read, so the rest of fusekit does not pay for it.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from fusekit.errors import ConfigError, MissingDependency, SourceNotFound
from fusekit.manifests import Variant
from fusekit.records import Record
from fusekit.sources.base import Source, find_dirs

BASIC6 = ("angry", "disgusted", "surprised", "fearful", "happy", "sad")
EMO22 = ("moved", "fearful", "surprised", "angry", "anxious", "smitten", "fluttered", "disappointed", "fulfilled",
         "ashamed", "sad", "upset", "sympathetic", "passionate", "depressed", "amused", "affectionate", "guilty",
         "jealous", "peaceful", "happy", "disgusted")
MULTI24 = ("moved", "fearful", "bored", "surprised", "angry", "anxious", "smitten", "fluttered", "disappointed",
           "fulfilled", "ashamed", "sad", "upset", "sympathetic", "passionate", "depressed", "amused", "affectionate",
           "guilty", "neutral", "jealous", "peaceful", "happy", "disgusted")
SPLIT_ORDER = {"train": 0, "valid": 1, "test": 2, None: 3}
BATCH = 256  # records parsed per TensorFlow call; a batch that fails is re-read one record at a time
CSV_DIRS = (".", "label", "labels", "../label", "../labels", "..")


def tensorflow() -> Any:
    """TensorFlow, imported on first use and told to keep its start-up chatter to errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependency("tensorflow") from None
    return tf


def _tf_message(exc: Exception) -> str:
    """TensorFlow's error text without its op and function-node decorations."""
    text = str(getattr(exc, "message", exc))
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text, flags=re.S)
    return " ".join(text.split())[:300]


def _parser(tf: Any) -> Any:
    # height/width/depth default to 0 and label is read at any length, so a record that lacks them or has the
    # wrong label width is still read and then rejected with a precise reason instead of failing the parse.
    features = {
        "height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "depth": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "label": tf.io.VarLenFeature(tf.int64),
        "image_raw": tf.io.FixedLenFeature([], tf.string),
    }

    @tf.autograph.experimental.do_not_convert
    def parse(serialized: Any) -> dict[str, Any]:
        example = tf.io.parse_single_example(serialized, features)
        example["label"] = tf.sparse.to_dense(example["label"])
        return example

    return parse


@dataclass
class Entry:
    """One position in a TFRecord file: a parsed example, a record that would not parse, or the point of damage."""

    index: int
    kind: str  # ok | bad | corrupt
    label: tuple[int, ...] = ()
    image: bytes = b""
    size: tuple[int, int, int] = (0, 0, 0)
    detail: str = ""


def read_tfrecord(path: Path, batch: int = BATCH) -> Iterator[Entry]:
    """Every record of one file in order, with ``tf.data.TFRecordDataset`` + ``tf.io.parse_single_example``.

    Records are parsed ``batch`` at a time; when a batch fails (a record that does not parse, labels of different
    widths, damage) the same stretch is read again one record at a time, so good records around a bad one are kept.
    Damage (``DataLossError``) ends the file: TFRecord framing cannot be resynchronised after it.
    """
    tf = tensorflow()
    parse = _parser(tf)

    def dataset(start: int, size: int | None) -> Iterator[dict[str, Any]]:
        data = tf.data.TFRecordDataset(str(path)).skip(start).map(parse)
        return iter((data.batch(size) if size else data).as_numpy_iterator())

    index = 0
    batches = dataset(0, batch)
    while True:
        try:
            chunk = next(batches)
        except StopIteration:
            return
        except tf.errors.OpError:
            singles = dataset(index, None)
            for _ in range(batch):
                try:
                    example = next(singles)
                except StopIteration:
                    return
                except tf.errors.InvalidArgumentError as exc:
                    yield Entry(index, "bad", detail=_tf_message(exc))
                    index += 1
                    continue
                except tf.errors.OpError as exc:  # DataLossError: damage; others: the file vanished or is unreadable
                    yield Entry(index, "corrupt", detail=f"{type(exc).__name__}: {_tf_message(exc)}")
                    return
                yield _entry(index, example)
                index += 1
            batches = dataset(index, batch)
            continue
        for i in range(len(chunk["image_raw"])):
            yield _entry(index, {k: v[i] for k, v in chunk.items()})
            index += 1


def _entry(index: int, example: dict[str, Any]) -> Entry:
    return Entry(index, "ok", tuple(int(v) for v in example["label"]), bytes(example["image_raw"]),
                 (int(example["height"]), int(example["width"]), int(example["depth"])))


# -- label CSVs ----------------------------------------------------------------------------------------------------
@dataclass
class LabelCsv:
    path: Path
    names: tuple[str, ...]
    rows: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # img_id, clip_id, vector


def read_label_csv(path: Path, width: int) -> LabelCsv:
    """``img_id,clip_id,<width label columns>``; ValueError says what does not fit."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        if header[:2] != ["img_id", "clip_id"] or len(header) != width + 2:
            raise ValueError(f"header {','.join(header[:4])}... is not img_id,clip_id and {width} label columns")
        table = LabelCsv(path, tuple(header[2:]))
        for number, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                vector = tuple(int(v) for v in row[2:])
            except ValueError:
                raise ValueError(f"line {number} has a label that is not 0 or 1") from None
            if len(row) != width + 2:
                raise ValueError(f"line {number} has {len(row)} fields, the header {width + 2}")
            table.rows.append((row[0].strip(), row[1].strip(), vector))
    return table


# -- the sources ---------------------------------------------------------------------------------------------------
class KdramaTfrecords(Source):
    """One label set's TFRecord files (all splits found in one folder), or PATH is one such file."""

    dataset: ClassVar[str] = "kdrama"
    prefix: ClassVar[str]  # the file-name stem the authors use: 6_basic_emo, 22_emo, multi-label
    prefix_re: ClassVar[str]
    names: ClassVar[tuple[str, ...]]

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.check_options(("labels",), usage="takes the option labels=PATH (the label CSVs or their folder)")
        labels = self.option("labels", None)
        self.labels = Path(labels) if labels else None
        if self.labels is not None and not self.labels.exists():
            raise SourceNotFound(f"labels {labels}: no such file or folder")

    @classmethod
    def file_re(cls) -> re.Pattern[str]:
        return re.compile(rf"^(?:{cls.prefix_re})(?:_(train|valid|test))?\.tfrecords?$", re.I)

    @classmethod
    def csv_re(cls) -> re.Pattern[str]:
        return re.compile(rf"^label_(?:{cls.prefix_re})_(train|valid|test)\.csv$", re.I)

    @classmethod
    def _holds(cls, folder: Path) -> bool:
        try:
            return any(cls.file_re().match(e.name) for _, e in zip(range(500), os.scandir(folder)) if e.is_file())
        except OSError:
            return False

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if path.is_file():
            return path if cls.file_re().match(path.name) else None
        if not path.is_dir():
            return None
        found = find_dirs(path, cls._holds, max_depth=3)
        return found[0] if found else None

    def files(self) -> list[tuple[str, str | None]]:
        """(file name, native split) of every file of this label set, train, valid, test."""
        pattern = self.file_re()
        names = [self.anchor.name] if self.anchor.is_file() else sorted(
            e.name for e in os.scandir(self.anchor) if e.is_file())
        found = [(n, m[1].lower() if m[1] else None) for n in names if (m := pattern.match(n))]
        return sorted(found, key=lambda f: (SPLIT_ORDER[f[1]], f[0]))

    def records(self) -> Iterator[Record]:
        self.notes = []
        files = self.files()
        self._note_other_label_sets()
        csvs = self._label_csvs()
        counts = {"kept": 0, "multiple": 0}
        self._read: list[str] = []
        self._no_csv: list[str] = []
        for name, native_split in files:
            yield from self._file(name, native_split, csvs.get(native_split or ""), counts)
        self.notes.insert(0, "records read: " + "; ".join(self._read))
        if self._no_csv:
            self.notes.append(f"no label CSV for {', '.join(self._no_csv)} (label_{self.prefix}_<split>.csv), so their "
                              f"clips (group) are unknown; put the repository's label/ folder beside the TFRecords "
                              f"or pass --labels DIR")
        if counts["multiple"]:
            self.notes.append(f"{counts['multiple']:,} record(s) with several positive labels rejected "
                              f"(multiple_labels); single labels outside the 6 basic emotions are dropped_label")

    # -- one file ---------------------------------------------------------------------------------------------------
    def _file(self, name: str, native_split: str | None, table: LabelCsv | None,
              counts: dict[str, int]) -> Iterator[Record]:
        path = self.root / name
        split = self.spec.splits.get(native_split) if native_split else None
        names, join = self.names, None
        if table is not None:
            join, why = self._join(path, table)
            if join is None:
                self.notes.append(f"{name}: {table.path.name} not joined ({why}); the clips (group) are unknown")
            else:
                names = table.names
                self.notes.append(f"{name}: img_id and clip_id from {table.path.name}, joined by position "
                                  f"(every label agrees)")
        else:
            self._no_csv.append(name)
        records, state = 0, ""
        for entry in read_tfrecord(path):
            key = f"{name}#{entry.index:05d}"
            if entry.kind == "corrupt":
                what = "is damaged" if entry.detail.startswith("DataLossError") else "could not be read"
                yield Record(key=key, path=name, row=entry.index, split=split, reject="unreadable",
                             reject_detail=f"{name} {what} at record {entry.index} ({entry.detail}): the "
                                           f"{entry.index:,} records before it are kept, the rest of the file is lost")
                state = ", damaged" if what == "is damaged" else ", unreadable"
                break
            records += 1
            ids = join[entry.index] if join is not None and entry.index < len(join) else None
            yield self._record(name, entry, split, names, ids, counts)
        self._read.append(f"{name} {records:,} ({split or 'no split'}{state})")

    def _record(self, name: str, entry: Entry, split: str | None, names: tuple[str, ...],
                ids: tuple[str, str] | None, counts: dict[str, int]) -> Record:
        key = f"{name}#{entry.index:05d}"
        base: dict[str, Any] = {"key": key, "path": name, "row": entry.index, "split": split,
                                "group": ids[1] if ids else None}
        if entry.kind == "bad":
            return Record(**base, reject="malformed_row", reject_detail=f"record {entry.index} is not a K-drama "
                                                                         f"example: {entry.detail}")
        vector = entry.label
        if len(vector) != len(names):
            return Record(**base, reject="malformed_row",
                          reject_detail=f"record {entry.index}: {len(vector)} label values, {self.prefix} files "
                                        f"have {len(names)}")
        if any(v not in (0, 1) for v in vector):
            return Record(**base, reject="malformed_row",
                          reject_detail=f"record {entry.index}: label values other than 0 and 1: {list(vector)}")
        positives = [n for n, v in zip(names, vector) if v]
        if not positives:
            return Record(**base, reject="unlabelled", reject_detail=f"record {entry.index}: no positive label")
        raw = "+".join(positives)
        if len(positives) > 1:
            counts["multiple"] += 1
            return Record(**base, raw_label=raw, reject="multiple_labels",
                          reject_detail=f"record {entry.index}: {len(positives)} positive labels "
                                        f"({', '.join(positives)}); "
                                        f"only single-label rows are kept")
        extra: dict[str, Any] = {"tfrecord": name, "record": entry.index}
        if ids:
            extra.update(img_id=ids[0], clip_id=ids[1])
        if entry.size != (64, 64, 3):
            extra["declared_size"] = list(entry.size)  # the record's own height, width, depth
        data = entry.image
        counts["kept"] += 1
        return Record(**base, raw_label=raw, load=lambda: data,
                      stored_name=ids[0] if ids else f"{Path(name).stem}_{entry.index:05d}{_extension(data)}",
                      extra=extra)

    def _join(self, path: Path, table: LabelCsv) -> tuple[list[tuple[str, str]] | None, str]:
        """The (img_id, clip_id) of each record position, or None and why the CSV cannot be trusted for this file.

        Record order vs CSV order is UNVERIFIED, so the whole file's labels are compared first: one disagreement
        and the file gets no ids at all (a partial match by chance would give wrong clips).
        """
        count, damaged = 0, False
        for entry in read_tfrecord(path):
            if entry.kind == "corrupt":
                damaged = True
                break
            count += 1
            if entry.index >= len(table.rows):
                return None, f"it has {len(table.rows):,} rows, the file more records"
            if entry.kind == "ok" and entry.label != table.rows[entry.index][2]:
                return None, f"record {entry.index}'s label differs from row {entry.index + 1}: the orders differ"
        if count == 0:
            return None, "no record of the file could be read"
        if not damaged and count != len(table.rows):
            return None, f"it has {len(table.rows):,} rows, the file {count:,} records"
        return [(img_id, clip_id) for img_id, clip_id, _ in table.rows[:count]], ""

    # -- finding the CSVs ---------------------------------------------------------------------------------------------
    def _label_csvs(self) -> dict[str, LabelCsv]:
        """The label CSV per native split, from --labels (a file or folder) or the folders around the TFRecords."""
        pattern = self.csv_re()
        if self.labels is not None:
            folders = [self.labels] if self.labels.is_dir() else []
            candidates = [] if folders else [self.labels]
            if candidates and not pattern.match(self.labels.name):
                raise ConfigError(f"labels {self.labels.name}: expected a file named label_{self.prefix}_<train|valid|"
                                  f"test>.csv or the folder holding them")
        else:
            folders = [(self.root / d).resolve() for d in CSV_DIRS]
            candidates = []
        for folder in folders:
            try:
                candidates += sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))
            except OSError:
                continue
        found: dict[str, LabelCsv] = {}
        for candidate in candidates:
            split = pattern.match(candidate.name)[1].lower()  # type: ignore[index]
            if split in found:
                continue  # the nearest folder wins
            try:
                found[split] = read_label_csv(candidate, len(self.names))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                self.notes.append(f"{candidate.name} not used: {exc}")
                continue
            if found[split].names != self.names:
                self.notes.append(f"{candidate.name}: label columns {','.join(found[split].names)} differ from "
                                  f"FORMATS.md's order; the CSV's order is used for files it joins")
        return found

    def _note_other_label_sets(self) -> None:
        if self.anchor.is_file():
            return
        others = [cls for cls in SOURCES if cls is not type(self) and cls._holds(self.anchor)]
        if others:
            self.notes.append(f"the folder also holds {', '.join(c.prefix for c in others)} files: "
                              f"{', '.join('--variant ' + c.variant for c in others)} reads them (6-class is a "
                              f"subset of 22-class, which is a subset of multi-label: ingest one)")


def _extension(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    return ".bin"


class KdramaBasic6(KdramaTfrecords):
    variant = "basic6"
    priority = 10
    prefix = "6_basic_emo"
    prefix_re = r"6_basic_emo"
    names = BASIC6


class KdramaEmo22(KdramaTfrecords):
    variant = "emo22"
    priority = 20
    prefix = "22_emo"
    prefix_re = r"22_emo"
    names = EMO22


class KdramaMultilabel(KdramaTfrecords):
    variant = "multilabel"
    priority = 30
    prefix = "multi-label"
    prefix_re = r"multi[-_]?label"
    names = MULTI24


SOURCES: list[type[Source]] = [KdramaBasic6, KdramaEmo22, KdramaMultilabel]
