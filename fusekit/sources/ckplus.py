"""CK+ (Extended Cohn-Kanade): the official image sequences with their Emotion files, and Kaggle's CK+48 crops.

Official release (FORMATS.md §5a)::

    extended-cohn-kanade-images/cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
    Emotion_labels/Emotion/S005/001/S005_001_00000011_emotion.txt        "   3.0000000e+00\\n"

The two archives are unzipped separately and either may carry an extra level, so both roots are searched for by
their ``S###/###`` level. A sequence runs from a neutral face to the peak expression; the emotion file names the
peak frame. Samples are the last ``peak_frames`` frames up to the peak (the emotion) and the first
``neutral_frames`` frames (neutral, CK+ id 0). Only 327 of 593 sequences have an emotion file.

CK+48 (§5b): ``CK+48/<class>/S###_###_########.png``, 48x48 crops of the last 3 frames of each labelled sequence.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from fusekit.manifests import Variant
from fusekit.records import Record
from fusekit.sources.base import FolderSource, Source, find_dirs, in_stray_dir, stray_reason, walk

SUBJECT_RE = re.compile(r"^S\d{3}$")
SEQUENCE_RE = re.compile(r"^\d{3}$")
FRAME_RE = re.compile(r"^S(\d{3})_(\d{3})_(\d{8})\.png$", re.I)
EMOTION_RE = re.compile(r"^S(\d{3})_(\d{3})_(\d{8})_emotion\.txt$", re.I)
# Per-frame and per-sequence annotation files; they are read (emotion) or ignored (FACS, landmarks), never samples.
ANNOTATION_RE = re.compile(r"^S\d{3}_\d{3}_\d{8}_(emotion|facs|landmarks)\.txt$", re.I)
NEUTRAL = "0"  # CK+ id 0 = neutral; the manifest maps it
CK48_CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
PROBE_SUBJECTS = 30  # how many subject folders find() looks into before giving up on a candidate root


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted((p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()), key=lambda p: p.name)
    except OSError:
        return []


def _file_names(folder: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(folder) if e.is_file()]
    except OSError:
        return []


def _has_sequence_files(folder: Path, pattern: re.Pattern[str]) -> bool:
    """Whether ``folder/S###/###/`` holds a file matching ``pattern`` (looks at the first few subjects only)."""
    subjects = [p for p in _subdirs(folder) if SUBJECT_RE.match(p.name)][:PROBE_SUBJECTS]
    for subject in subjects:
        for sequence in _subdirs(subject):
            if SEQUENCE_RE.match(sequence.name) and any(pattern.match(n) for n in _file_names(sequence)):
                return True
    return False


def _is_images_root(folder: Path) -> bool:
    return _has_sequence_files(folder, FRAME_RE)


def _is_emotion_root(folder: Path) -> bool:
    # An Emotion folder whose sequence folders are all empty is still the label root (and says: nothing labelled).
    named = folder.name.lower().startswith("emotion")
    if named and any(SUBJECT_RE.match(p.name) for p in _subdirs(folder)):
        return True
    return _has_sequence_files(folder, EMOTION_RE)


def _search(path: Path, predicate: Any) -> list[Path]:
    """Folders under ``path`` that satisfy ``predicate``; subject folders (``S###``) are not descended into."""
    hits = find_dirs(path, lambda p: bool(SUBJECT_RE.match(p.name)) or predicate(p), max_depth=4)
    return [p for p in hits if not SUBJECT_RE.match(p.name)]


def _roots(path: Path) -> tuple[Path | None, Path | None, int]:
    """The image-sequence root, the Emotion root (or None) and how many further image roots were seen."""
    images = _search(path, _is_images_root)
    emotions = _search(path, _is_emotion_root)
    # The images root itself holds *_emotion.txt only when the labels were copied next to the frames.
    emotion = emotions[0] if emotions else None
    return (images[0] if images else None), emotion, max(len(images) - 1, 0)


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return "" if rel == "." else rel


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def parse_emotion(text: str) -> str | None:
    """The CK+ emotion id in an emotion file's text, as a string; None for an empty file.

    >>> parse_emotion("   3.0000000e+00\\n")
    '3'

    Raises ValueError for anything but exactly one whole number.
    """
    stripped = text.strip()
    if not stripped:
        return None
    value = float(stripped)  # ValueError for garbage and for two values on one line
    if not value.is_integer():
        raise ValueError(f"{stripped!r} is not a whole emotion id")
    return str(int(value))


@dataclass
class _Sequence:
    subject: str  # "S005"
    number: str  # "001"
    folder: str  # relative to the source root
    frames: dict[int, str] = field(default_factory=dict)  # frame index -> path relative to the source root

    @property
    def name(self) -> str:
        return f"{self.subject}_{self.number}"

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.number}"


@dataclass
class _Label:
    key: str  # "Emotion/S005/001/S005_001_00000011_emotion.txt"
    path: str  # relative to the source root
    peak: int
    raw: str | None = None  # the emotion id; None for an empty file
    problem: tuple[str, str] | None = None  # (reject reason, detail) when the file cannot be used


class CkPlusSequences(Source):
    """``cohn-kanade-images/S###/###/*.png`` plus ``Emotion/S###/###/*_emotion.txt``, found at any depth.

    Options: ``peak_frames`` (default 3), ``neutral_frames`` (default 1), ``include_unlabelled`` (default false).
    """

    dataset = "ckplus"
    variant = "sequences"
    priority = 10
    options_taken = ("peak_frames", "neutral_frames", "include_unlabelled")

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.peak_frames = self.count_option("peak_frames", 3)
        self.neutral_frames = self.count_option("neutral_frames", 1)
        self.include_unlabelled = self.bool_option("include_unlabelled", False)

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        images, emotion, _ = _roots(path)
        if images is None:
            return None
        if emotion is None:
            return images
        # The folder holding both roots, so that every referenced path is relative to one root.
        return Path(os.path.commonpath([images, emotion]))

    def records(self) -> Iterator[Record]:
        self.notes = []
        images_root, emotion_root, more = _roots(self.root)
        if images_root is None:  # the folder changed since find()
            return
        sequences: dict[tuple[str, str], _Sequence] = {}
        yield from self._walk_images(images_root, sequences)
        labels: dict[tuple[str, str], list[_Label]] = defaultdict(list)
        label_folders: set[tuple[str, str]] = set()
        if emotion_root is not None:
            yield from self._walk_emotion(emotion_root, images_root, labels, label_folders)
        counts: Counter[str] = Counter()
        for ident in sorted(set(sequences) | set(labels)):
            sequence = sequences.get(ident)
            if sequence is None:  # a label file whose image sequence is not there
                for label in labels[ident]:
                    yield self._label_reject(label, "missing_file", f"no image sequence {ident[0]}/{ident[1]} "
                                                                    f"in {_rel(images_root, self.root) or '.'}")
                continue
            yield from self._sequence_records(sequence, labels.get(ident, []), ident in label_folders, counts)
        self._summarise(images_root, emotion_root, more, counts)

    # -- walking the two trees ------------------------------------------------------------------------------------
    def _walk_images(self, images_root: Path, sequences: dict[tuple[str, str], _Sequence]) -> Iterator[Record]:
        base = _rel(images_root, self.root)
        for rel in walk(images_root):
            parts = rel.split("/")
            name = parts[-1]
            path = _join(base, rel)
            annotation = ANNOTATION_RE.match(name)
            reason = ("operating-system metadata folder" if in_stray_dir(rel)
                      else None if annotation else stray_reason(name))
            if reason:
                yield Record(key=rel, path=path, reject="stray_file", reject_detail=reason)
                continue
            if annotation:
                continue  # labels copied next to the frames are read by the Emotion walk; FACS/landmarks unused
            match = FRAME_RE.match(name)
            in_sequence = len(parts) == 3 and SUBJECT_RE.match(parts[0]) and SEQUENCE_RE.match(parts[1])
            if not (match and in_sequence and f"S{match[1]}" == parts[0] and match[2] == parts[1]):
                detail = (f"frame of S{match[1]}/{match[2]} inside {'/'.join(parts[:-1]) or 'the images root'}"
                          if match else "expected S###/###/S###_###_########.png")
                yield Record(key=rel, path=path, reject="unrecognised_name", reject_detail=detail)
                continue
            ident = (parts[0], parts[1])
            sequence = sequences.setdefault(ident, _Sequence(parts[0], parts[1], _join(base, parts[0], parts[1])))
            sequence.frames[int(match[3])] = path

    def _walk_emotion(self, emotion_root: Path, images_root: Path, labels: dict[tuple[str, str], list[_Label]],
                      label_folders: set[tuple[str, str]]) -> Iterator[Record]:
        base = _rel(emotion_root, self.root)
        shared = emotion_root == images_root  # labels copied into the image tree: the image walk saw the rest
        for folder in _subdirs(emotion_root):
            if SUBJECT_RE.match(folder.name):
                label_folders.update((folder.name, s.name) for s in _subdirs(folder) if SEQUENCE_RE.match(s.name))
        for rel in walk(emotion_root):
            parts = rel.split("/")
            name = parts[-1]
            key = _join("Emotion", rel)  # a fixed prefix: the label root's own name depends on the extraction
            path = _join(base, rel)
            match = EMOTION_RE.match(name)
            in_sequence = len(parts) == 3 and SUBJECT_RE.match(parts[0]) and SEQUENCE_RE.match(parts[1])
            if match and in_sequence and f"S{match[1]}" == parts[0] and match[2] == parts[1]:
                labels[(parts[0], parts[1])].append(self._read_label(key, path))
                continue
            if shared:
                continue
            annotation = ANNOTATION_RE.match(name)
            reason = ("operating-system metadata folder" if in_stray_dir(rel)
                      else None if annotation else stray_reason(name))
            if reason:
                yield Record(key=key, path=path, reject="stray_file", reject_detail=reason)
            elif annotation and not match:
                continue  # FACS or landmark files unzipped into the label tree
            else:
                detail = (f"emotion file of S{match[1]}/{match[2]} inside {'/'.join(parts[:-1]) or 'the label root'}"
                          if match else "expected S###/###/S###_###_########_emotion.txt")
                yield Record(key=key, path=path, reject="unrecognised_name", reject_detail=detail)

    def _read_label(self, key: str, path: str) -> _Label:
        peak = int(EMOTION_RE.match(path.rsplit("/", 1)[-1])[3])  # type: ignore[index]
        label = _Label(key, path, peak)
        try:
            label.raw = parse_emotion((self.root / path).read_bytes().decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            label.problem = ("malformed_row", f"not one emotion id: {exc}")
        except OSError as exc:
            label.problem = ("unreadable", f"{path}: {exc.strerror or exc}")
        return label

    # -- one sequence -------------------------------------------------------------------------------------------
    def _sequence_records(self, sequence: _Sequence, labels: list[_Label], has_folder: bool,
                          counts: Counter[str]) -> Iterator[Record]:
        counts["sequences"] += 1
        label = self._usable_label(sequence, labels)
        for problem in (lb for lb in labels if lb.problem):
            yield self._label_reject(problem, *problem.problem)  # type: ignore[misc]
        if label is not None:
            counts["labelled"] += 1
            eligible = sorted(i for i in sequence.frames if i <= label.peak)
            peaks = eligible[-self.peak_frames:] if self.peak_frames else []
            neutrals = [i for i in eligible[: self.neutral_frames] if i not in peaks]
            counts["peak_rows"] += len(peaks)
            counts["neutral_rows"] += len(neutrals)
            for index in sorted(neutrals + peaks):
                role = "peak" if index in peaks else "neutral"
                yield self._frame(sequence, index, label.raw if role == "peak" else NEUTRAL, role)
            return
        if any(lb.problem for lb in labels):
            counts["bad_label"] += 1  # already accounted for by the label file's reject
        else:
            counts["unlabelled"] += 1
        neutrals = sorted(sequence.frames)[: self.neutral_frames] if self.include_unlabelled else []
        counts["unlabelled_neutral_rows"] += len(neutrals)
        for index in neutrals:
            yield self._frame(sequence, index, NEUTRAL, "neutral")
        if not neutrals and not any(lb.problem for lb in labels):
            # One reject per unlabelled sequence (not per frame) so that the rejects table accounts for every
            # sequence that gave no sample; frames that are simply not selected are not samples and not rejects.
            if labels:
                why = f"its emotion file {labels[0].path} is empty"
            elif has_folder:
                why = "its Emotion folder is empty"
            else:
                why = "it has no Emotion folder"
            yield Record(key=sequence.key, path=sequence.folder, subject=sequence.subject, group=sequence.name,
                         reject="unlabelled", reject_detail=f"sequence {sequence.name}: {why}")

    def _usable_label(self, sequence: _Sequence, labels: list[_Label]) -> _Label | None:
        """The sequence's emotion file, or None; marks conflicting files and missing peak frames as problems."""
        if len(labels) > 1:
            for label in labels:
                label.problem = label.problem or ("malformed_row", f"sequence {sequence.name} has {len(labels)} "
                                                                   f"emotion files; at most one is expected")
            return None
        if not labels or labels[0].problem or labels[0].raw is None:
            return None
        label = labels[0]
        if label.peak not in sequence.frames:
            label.problem = ("missing_file", f"peak frame {sequence.name}_{label.peak:08d}.png is not in "
                                              f"{sequence.folder} (frames {min(sequence.frames)}-"
                                              f"{max(sequence.frames)})")
            return None
        return label

    def _frame(self, sequence: _Sequence, index: int, raw: str | None, role: str) -> Record:
        path = sequence.frames[index]
        return Record(key=f"{sequence.key}/{path.rsplit('/', 1)[-1]}", raw_label=raw, subject=sequence.subject,
                      group=sequence.name, path=path,
                      extra={"frame": index, "role": role, "sequence": sequence.name})

    def _label_reject(self, label: _Label, reason: str, detail: str) -> Record:
        return Record(key=label.key, path=label.path, raw_label=label.raw, reject=reason, reject_detail=detail)

    def _summarise(self, images_root: Path, emotion_root: Path | None, more: int, counts: Counter[str]) -> None:
        where = _rel(images_root, self.root) or "."
        if emotion_root is None:
            self.notes.append(f"no Emotion folder found next to {where}: every sequence counts as unlabelled. "
                              f"Unzip Emotion_labels.zip and point --source at the folder that holds both")
        if more:
            self.notes.append(f"{more} further image-sequence folder(s) ignored; only {where} was read")
        unlabelled = counts["unlabelled"]
        text = f"{counts['sequences']:,} sequences, {counts['labelled']:,} labelled"
        if unlabelled:
            if self.include_unlabelled and self.neutral_frames:
                text += (f", {unlabelled:,} without an emotion label (their first {self.neutral_frames} frame(s) "
                         f"added as neutral)")
            else:
                text += (f", {unlabelled:,} without an emotion label (skipped; -o include_unlabelled=true adds "
                         f"their neutral first frames)")
        if counts["bad_label"]:
            text += f", {counts['bad_label']:,} with an unusable emotion file (see the rejects)"
        self.notes.append(text)
        self.notes.append(f"frames taken: the last {self.peak_frames} up to the peak as the emotion "
                          f"({counts['peak_rows']:,}), the first {self.neutral_frames} as neutral "
                          f"({counts['neutral_rows'] + counts['unlabelled_neutral_rows']:,}); "
                          f"-o peak_frames=N / neutral_frames=N change this")


def _is_ck48_root(folder: Path) -> bool:
    classes = [p for p in _subdirs(folder) if p.name.lower() in CK48_CLASSES]
    if len(classes) < 4:  # tolerate a copy that lacks a class or two, not a generic class-folder layout
        return False
    return any(FRAME_RE.match(n) for c in classes for n in _file_names(c)[:50])


class CkPlus48(FolderSource):
    """Kaggle CK+48: ``CK+48/<anger|contempt|...>/S###_###_########.png``; the class folder is the label."""

    dataset = "ckplus"
    variant = "ck48"
    priority = 20
    options_taken = ()

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self._sequences: dict[str, set[str]] = defaultdict(set)

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        found = find_dirs(path, _is_ck48_root, max_depth=4)
        return found[0] if found else None

    def records(self) -> Iterator[Record]:
        self.notes = []
        self._sequences.clear()
        yield from super().records()
        subjects = {s.split("_")[0] for s in self._sequences}
        self.notes.append(f"{len(self._sequences):,} sequences of {len(subjects):,} subjects in the class folders")
        mixed = sorted(s for s, labels in self._sequences.items() if len(labels) > 1)
        if mixed:
            self.notes.append(f"{len(mixed)} sequence(s) appear in two class folders, e.g. {mixed[0]}: "
                              f"{', '.join(sorted(self._sequences[mixed[0]]))}")

    def record_for(self, rel: str) -> Record | None:
        parts = rel.split("/")
        match = FRAME_RE.match(parts[-1])
        if len(parts) != 2 or not match:
            detail = ("expected <class>/S###_###_########.png" if match is None
                      else "a frame outside the class folders")
            return Record(key=rel, path=rel, reject="unrecognised_name", reject_detail=detail)
        raw = parts[0].lower()
        sequence = f"S{match[1]}_{match[2]}"
        self._sequences[sequence].add(raw)
        return Record(key=rel, raw_label=raw, subject=f"S{match[1]}", group=sequence, path=rel,
                      extra={"frame": int(match[3]), "sequence": sequence})


SOURCES: list[type[Source]] = [CkPlusSequences, CkPlus48]
