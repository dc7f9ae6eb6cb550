"""MMI Facial Expression Database (FORMATS.md §6): one folder per session, a video (or stills) plus XML metadata.

    Sessions/<session id>/session.xml             <track view="0|1|2">, <annotation filename="...">
    Sessions/<session id>/S001-001.avi            one posed expression, onset -> apex -> offset (or .jpg/.png stills)
    Sessions/<session id>/S001-001.xml            <Metatag Name="Emotion" Value="1".."6"/>
    Sessions/<session id>/S001-001-oao_aucs.xml   optional FACS markers: <ActionUnit><Marker Frame=".."/>

The literal names are UNVERIFIED, so every session is read tolerantly: the label is the ``Emotion`` metatag of
``<media stem>.xml``, else of an XML that ``session.xml`` annotates, else of ``session.xml``, else of the one other
XML in the folder; the subject is the ``S###`` prefix of the media name. What a session did not match (no XML, no
session.xml, several videos, a name without ``S###``) is counted in the notes, and a session that gives no sample says
why in its reject's detail.

A video is never held in memory: a first streaming pass counts its frames (and, for ``apex=change``, scores each
frame's difference from the first), and a loader decodes only the chosen frames, in one pass, when the pipeline asks
for them. Frames are stored as PNG, keyed ``<session>/<video>#f<index>``. Options (``-o KEY=VALUE``):

* ``apex``: ``middle`` (default; the middle frames, as donydchen/causal_emotion does), ``change`` (the frame that
  differs most from the first, neutral one) or ``aucs`` (the span of the ``-oao_aucs.xml`` markers; middle without).
* ``apex_frames``: how many frames around the apex (default 3); ``neutral_frames``: the first N frames as neutral
  (default 0; FORMATS.md calls this practice unverified).
* ``views``: the ``session.xml`` views to keep (default ``0,2``: frontal and dual; ``all`` keeps every view).
* ``rotate``: 0, 90, 180 or 270 degrees clockwise for every video frame (public code rotates most subjects by 90).
"""

from __future__ import annotations

import os
import re
import threading
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

from fusekit.errors import ConfigError
from fusekit.imageio import Rejected, encode_png
from fusekit.manifests import Variant
from fusekit.records import Record
from fusekit.sources.base import STRAY_DIRS, Source, find_dirs, in_stray_dir, is_image_name, stray_reason, walk

VIDEO_EXTENSIONS = frozenset({".avi", ".wmv", ".mp4", ".mov", ".mpg", ".mpeg", ".mkv", ".m4v", ".flv"})
SUBJECT_RE = re.compile(r"^(S\d{3})(?!\d)", re.I)
AUCS_RE = re.compile(r"^(.*?)[-_]oao_aucs\.xml$", re.I)
EMOTION_VALUES = range(1, 7)  # 1 anger ... 6 surprise; the manifest maps them
VIEW_NAMES = {"0": "frontal", "1": "profile (unverified)", "2": "dual view: two faces side by side"}
APEX_MODES = ("middle", "change", "aucs")
OPTIONS = ("apex", "apex_frames", "neutral_frames", "views", "rotate")
PROBE_SESSIONS = 40  # session folders find() looks into before giving up on a candidate root
MAX_XML_BYTES = 8 << 20  # metadata files are small; never parse a huge file as one
CHANGE_SIDE = 64  # frames are scored on a 64x64 grey thumbnail: cheap, and enough to find the apex


def _is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _file_names(folder: Path, limit: int = 400) -> list[str]:
    try:
        return [e.name for _, e in zip(range(limit), os.scandir(folder)) if e.is_file()]
    except OSError:
        return []


def _subdirs(folder: Path) -> list[Path]:
    try:
        found = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(found, key=_session_order)


def _session_order(path: Path) -> tuple[int, int, str]:
    # Numeric session folders in numeric order (2 before 10), then any others by name: stable on every machine.
    name = path.name
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def _is_session(folder: Path) -> bool:
    """A session folder holds session.xml, or a video/still next to an XML of the same stem."""
    names = _file_names(folder)
    if any(n.lower() == "session.xml" for n in names):
        return True
    media = {os.path.splitext(n)[0] for n in names if _is_video_name(n) or is_image_name(n)}
    xmls = {os.path.splitext(n)[0] for n in names if n.lower().endswith(".xml")}
    return bool(media & xmls)


def _is_sessions_root(folder: Path) -> bool:
    return any(_is_session(s) for s in _subdirs(folder)[:PROBE_SESSIONS])


# -- XML ---------------------------------------------------------------------------------------------------------------
def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _attr(element: ET.Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if _local(key) == name:
            return value
    return None


def _parse_xml(path: Path) -> ET.Element:
    """The root element; ValueError with a short reason for an unreadable, huge or ill-formed file."""
    try:
        size = path.stat().st_size
        if size > MAX_XML_BYTES:
            raise ValueError(f"{size:,} bytes, larger than any metadata file")
        return ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML ({exc})") from None
    except OSError as exc:
        raise ValueError(f"unreadable ({exc.strerror or exc})") from None


def emotion_values(root: ET.Element) -> tuple[list[str], list[str]]:
    """The values of every ``<Metatag Name="Emotion">`` and the names of all metatags, case-insensitively.

    >>> xml = '<Sample><Metatag Name="Gender" Value="Male"/><Metatag Name="Emotion" Value="4"/></Sample>'
    >>> emotion_values(ET.fromstring(xml))
    (['4'], ['Gender', 'Emotion'])
    """
    values, names = [], []
    for element in root.iter():
        if _local(element.tag) != "metatag":
            continue
        name = (_attr(element, "name") or "").strip()
        names.append(name)
        if name.lower() == "emotion":
            value = _attr(element, "value")
            values.append((value if value is not None else element.text or "").strip())
    return values, names


@dataclass
class _SessionMeta:
    """What ``session.xml`` says: the first track's view (as the public scripts read it) and the annotated files."""

    views: list[str] = field(default_factory=list)
    annotations: list[str] = field(default_factory=list)
    root: ET.Element | None = None
    problem: str | None = None

    @property
    def view(self) -> str | None:
        return self.views[0] if self.views else None


def _read_session_xml(path: Path | None) -> _SessionMeta:
    meta = _SessionMeta()
    if path is None:
        return meta
    try:
        root = _parse_xml(path)
    except ValueError as exc:
        meta.problem = f"session.xml: {exc}"
        return meta
    meta.root = root
    for element in root.iter():
        tag = _local(element.tag)
        if tag == "track" and _attr(element, "view") is not None:
            meta.views.append(str(_attr(element, "view")).strip())
        elif tag == "annotation" and _attr(element, "filename"):
            meta.annotations.append(str(_attr(element, "filename")).strip())
    return meta


def aucs_apex(path: Path, frames: int) -> int | None:
    """The apex frame from an ``-oao_aucs.xml`` file, or None when it has no usable marker.

    Marker types are UNVERIFIED: markers whose attributes mention "apex" win (their median); otherwise the middle of
    the span from the first to the last marker. Frame numbers are taken as 0-based and clipped to the video.
    """
    root = _parse_xml(path)
    marked, apex = [], []
    for element in root.iter():
        if _local(element.tag) != "marker":
            continue
        raw = _attr(element, "frame")
        try:
            frame = int(float(raw)) if raw is not None else None
        except ValueError:
            frame = None
        if frame is None:
            continue
        marked.append(frame)
        if any("apex" in str(v).lower() for k, v in element.attrib.items() if _local(k) != "frame"):
            apex.append(frame)
    if apex:
        centre = sorted(apex)[(len(apex) - 1) // 2]
    elif marked:
        centre = (min(marked) + max(marked)) // 2
    else:
        return None
    return max(0, min(centre, frames - 1))


# -- video ---------------------------------------------------------------------------------------------------------
class VideoError(Exception):
    """OpenCV could not open or decode a video; the message says what happened."""


def scan_video(path: Path, score: bool) -> tuple[int, list[float]]:
    """Count the frames by streaming through the video; with ``score``, each frame's mean absolute difference from
    the first frame on a grey thumbnail (the apex of an onset-apex-offset clip differs most from its neutral start).
    """
    import cv2
    import numpy as np

    if not score:
        declared = _checked_frame_count(path)
        if declared:
            return declared, []
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("OpenCV cannot open it (not a video, or a codec its FFmpeg lacks)")
        count, scores, first = 0, [], None
        while True:
            if score:
                ok, frame = capture.read()
                if not ok:
                    break
                grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
                thumb = cv2.resize(grey, (CHANGE_SIDE, CHANGE_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
                first = thumb if first is None else first
                scores.append(float(np.abs(thumb - first).mean()))
            elif not capture.grab():
                break
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise VideoError("OpenCV opened it but decoded no frame")
    return count, scores


def _checked_frame_count(path: Path) -> int:
    """The container's frame count when it proves true (the last frame decodes, and nothing after it), else 0.

    Decoding every frame just to count them costs as much as the frames themselves; this costs one seek.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if declared <= 0 or not capture.set(cv2.CAP_PROP_POS_FRAMES, declared - 1):
            return 0
        if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) != declared - 1:
            return 0
        return declared if capture.grab() and not capture.grab() else 0
    finally:
        capture.release()


ROTATIONS = {0: None, 90: "ROTATE_90_CLOCKWISE", 180: "ROTATE_180", 270: "ROTATE_90_COUNTERCLOCKWISE"}


class FrameReader:
    """The chosen frames of one video, decoded in one streaming pass on first use and kept only until handed out.

    Loaders of one video may run on several pipeline threads; a lock makes the pass happen once. Once every chosen
    frame has been handed out the PNGs are dropped, so memory holds at most one video's chosen frames per video.
    """

    def __init__(self, path: Path, indices: list[int], rotate: int) -> None:
        self.path = path
        self.indices = sorted(set(indices))
        self.rotate = rotate
        self._lock = threading.Lock()
        self._frames: dict[int, bytes] = {}
        self._left: set[int] = set()

    def _decode(self) -> dict[int, bytes]:
        import cv2

        wanted = set(self.indices)
        last = self.indices[-1]
        found: dict[int, bytes] = {}
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise Rejected("undecodable", f"{self.path.name}: OpenCV can no longer open the video")
            for index in range(last + 1):
                if index not in wanted:
                    if not capture.grab():
                        break
                    continue
                ok, frame = capture.read()
                if not ok:
                    break
                found[index] = self._png(frame)
        finally:
            capture.release()
        return found

    def _png(self, frame: Any) -> bytes:
        import cv2

        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame
        if ROTATIONS[self.rotate] is not None:
            rgb = cv2.rotate(rgb, getattr(cv2, ROTATIONS[self.rotate]))
        return encode_png(rgb)

    def load(self, index: int) -> bytes:
        with self._lock:
            if not self._left:  # first use, or everything was handed out before (a retry): decode again
                self._frames = self._decode()
                self._left = set(self.indices)
            data = self._frames.get(index)
            self._left.discard(index)
            if not self._left:
                self._frames = {}
        if data is None:
            raise Rejected("undecodable", f"{self.path.name}: frame {index} could not be decoded (the video ends early "
                                          f"or changed since it was scanned)")
        return data

    def loader(self, index: int) -> Any:
        return lambda: self.load(index)


def window(centre: int, size: int, frames: int) -> list[int]:
    """``size`` consecutive frame indices around ``centre``, shifted to fit inside ``0..frames-1``.

    >>> window(5, 3, 11), window(0, 3, 11), window(10, 3, 11), window(1, 3, 2)
    ([4, 5, 6], [0, 1, 2], [8, 9, 10], [0, 1])
    """
    if size <= 0:
        return []
    start = max(0, min(centre - (size - 1) // 2, frames - size))
    return list(range(start, min(frames, start + size)))


# -- the source --------------------------------------------------------------------------------------------------------
@dataclass
class _Label:
    raw: str | None = None
    file: str | None = None
    reject: tuple[str, str] | None = None  # (reason, detail) when the media gives no sample


@dataclass
class _Session:
    name: str
    rel: str  # relative to the source root
    folder: Path
    files: list[str] = field(default_factory=list)  # relative to the session folder


class MmiSessions(Source):
    """``Sessions/<id>/`` folders, found at any depth (or PATH is one session folder)."""

    dataset: ClassVar[str] = "mmi"
    variant: ClassVar[str] = "sessions"
    priority = 10

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.check_options(OPTIONS)
        self.apex = str(self.option("apex", "middle")).strip().lower()
        if self.apex not in APEX_MODES:
            raise ConfigError(f"-o apex= takes {', '.join(APEX_MODES)}, got {self.apex!r}")
        self.apex_frames = self.count_option("apex_frames", 3)
        self.neutral_frames = self.count_option("neutral_frames", 0)
        if self.apex_frames + self.neutral_frames == 0:
            raise ConfigError("-o apex_frames=0 with neutral_frames=0 takes no frame from any video")
        views = str(self.option("views", "0,2")).replace(" ", "").lower()
        self.views = None if views in ("all", "*", "") else set(views.split(","))
        try:
            self.rotate = int(str(self.option("rotate", 0)).strip())
        except ValueError:
            self.rotate = -1
        if self.rotate not in ROTATIONS:
            raise ConfigError(f"-o rotate= takes 0, 90, 180 or 270 (degrees clockwise), "
                              f"got {self.option('rotate', 0)!r}")
        self.single = _is_session(self.anchor) and not _is_sessions_root(self.anchor)

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        if _is_session(path) and not _is_sessions_root(path):
            return path
        # The folder named Sessions wins over any other candidate at the same depth.
        found = find_dirs(path, _is_sessions_root, max_depth=3)
        named = [p for p in found if p.name.lower() == "sessions"]
        return (named or found or [None])[0]

    @property
    def root(self) -> Path:
        return self.anchor.parent if self.single else self.anchor

    # -- walking ----------------------------------------------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        self.notes = []
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        if self.single:
            sessions = [_Session(self.anchor.name, self.anchor.name, self.anchor)]
        else:
            yield from self._loose_files()
            sessions = [_Session(p.name, p.name, p) for p in _subdirs(self.anchor) if p.name.lower() not in STRAY_DIRS]
        for session in sessions:
            session.files = list(walk(session.folder, max_depth=4))
            yield from self._session(session)
        self._summarise()

    def _loose_files(self) -> Iterator[Record]:
        """Files directly in the Sessions folder are not sessions: strays, or accounted for as unrecognised."""
        for name in sorted(_file_names(self.anchor, limit=1 << 20)):
            reason = stray_reason(name)
            if reason:
                yield Record(key=name, path=name, reject="stray_file", reject_detail=reason)
            else:
                yield Record(key=name, path=name, reject="unrecognised_name",
                             reject_detail="a file beside the session folders; MMI keeps every sample in "
                                           "Sessions/<id>/")

    def _note(self, what: str, session: str) -> None:
        self.counts[what] += 1
        if len(self.examples[what]) < 3:
            self.examples[what].append(session)

    def _session(self, session: _Session) -> Iterator[Record]:
        self.counts["sessions"] += 1
        videos, stills, xmls, aucs, session_xml = [], [], [], {}, None
        for rel in session.files:
            name = rel.rsplit("/", 1)[-1]
            path = f"{session.rel}/{rel}"
            reason = "operating-system metadata folder" if in_stray_dir(rel) else stray_reason(name)
            match = AUCS_RE.match(name)
            if reason:
                yield Record(key=f"{session.name}/{rel}", path=path, reject="stray_file", reject_detail=reason)
            elif name.lower() == "session.xml" and "/" not in rel:
                session_xml = rel
            elif match:
                aucs[_join(_parent(rel), match[1]).lower()] = rel
            elif name.lower().endswith(".xml"):
                xmls.append(rel)
            elif _is_video_name(name):
                videos.append(rel)
            elif is_image_name(name):
                stills.append(rel)
            else:
                yield Record(key=f"{session.name}/{rel}", path=path, reject="unrecognised_name",
                             reject_detail=f"session {session.name}: not a video, still image or XML file")
        meta = _read_session_xml(session.folder / session_xml if session_xml else None)
        if session_xml is None:
            self._note("no session.xml", session.name)
        elif meta.problem:
            self._note("an unreadable session.xml", session.name)
        if not videos and not stills:
            found = ", ".join(session.files[:6]) + (f" and {len(session.files) - 6} more" if len(session.files) > 6
                                                    else "") or "nothing"
            yield Record(key=f"{session.name}/", path=session.rel, reject="missing_file",
                         reject_detail=f"session {session.name} holds no video or still image; found: {found}")
            return
        self.counts["video sessions" if videos else "still-image sessions"] += 1
        if len(videos) > 1:
            self._note("several videos", session.name)
        if videos and stills:
            self._note("both a video and stills", session.name)
        view = meta.view
        if view is None and session_xml is not None and not meta.problem:
            self._note("no <track view=...> in session.xml", session.name)
        if self.views is not None and view is not None and view not in self.views:
            for rel in videos + stills:
                yield Record(key=f"{session.name}/{rel}", path=f"{session.rel}/{rel}", group=session.name,
                             reject="excluded",
                             reject_detail=f"session {session.name} is view {view} "
                                           f"({VIEW_NAMES.get(view, 'unknown view')}) in session.xml; "
                                           f"-o views={','.join(sorted(self.views | {view}))} keeps it")
            return
        for rel in videos:
            yield from self._video(session, rel, meta, xmls, aucs, session_xml)
        for rel in stills:
            yield from self._still(session, rel, meta, xmls, session_xml)

    # -- labels and subjects ----------------------------------------------------------------------------------------
    def _label(self, session: _Session, rel: str, meta: _SessionMeta, xmls: list[str],
               session_xml: str | None) -> _Label:
        """The Emotion metatag for one media file, looked for in the order the module docstring gives."""
        stem = os.path.splitext(rel)[0]
        by_lower = {x.lower(): x for x in xmls}
        own = by_lower.get(f"{stem}.xml".lower())
        annotated = [by_lower[a.lower()] for a in meta.annotations
                     if a.lower() in by_lower and by_lower[a.lower()] != own]
        others = [x for x in xmls if x != own and x not in annotated]
        candidates: list[tuple[str, ET.Element | None, str | None]] = []
        for x in ([own] if own else []) + annotated:
            candidates.append((x, *self._xml(session, x)))
        if session_xml is not None:
            candidates.append((session_xml, meta.root, meta.problem))
        if len(others) == 1:  # another sample's XML is used only when it is the session's only one
            candidates.append((others[0], *self._xml(session, others[0])))
        seen_tags: list[str] = []
        for name, root, _problem in candidates:
            if root is None:
                continue
            values, tags = emotion_values(root)
            seen_tags += [t for t in tags if t and t not in seen_tags]
            if values:
                return self._value(session, name, values, own)
        bad_own = next((p for n, _, p in candidates if n == own and p), None)
        if bad_own:
            return _Label(reject=("malformed_row", f"session {session.name}: {own}: {bad_own}"))
        looked = [n for n, r, _ in candidates if r is not None]
        where = (f"no Emotion metatag in {', '.join(looked)}" if looked
                 else f"no {os.path.basename(stem)}.xml and no readable session XML")
        if seen_tags:
            where += f" (metatags found: {', '.join(seen_tags[:8])})"
        if not own and xmls:
            where += f"; other XML files: {', '.join(xmls[:4])}"
        return _Label(reject=("unlabelled", f"session {session.name}: {where}"))

    def _xml(self, session: _Session, rel: str) -> tuple[ET.Element | None, str | None]:
        try:
            return _parse_xml(session.folder / rel), None
        except ValueError as exc:
            return None, str(exc)

    def _value(self, session: _Session, name: str, values: list[str], own: str | None) -> _Label:
        if name != own:
            self._note(f"the label read from {'session.xml' if name.endswith('session.xml') else 'another XML'}",
                       session.name)
        distinct = sorted(set(values))
        if len(distinct) > 1:
            return _Label(file=name, reject=("malformed_row", f"session {session.name}: {name} has {len(values)} "
                                                              f"Emotion metatags that disagree: {', '.join(distinct)}"))
        text = distinct[0]
        try:
            number = float(text)
            if not number.is_integer():
                raise ValueError
        except ValueError:
            return _Label(file=name, reject=("malformed_row", f"session {session.name}: {name}: Emotion value "
                                                              f"{text!r} is not a whole number"))
        raw = str(int(number))
        if int(number) not in EMOTION_VALUES:
            return _Label(raw=raw, file=name,
                          reject=("dropped_label", f"session {session.name}: {name}: Emotion value {raw} is outside "
                                                   f"1-6 (1 anger ... 6 surprise); other values have no canonical "
                                                   f"class"))
        return _Label(raw=raw, file=name)

    def _subject(self, session: _Session, rel: str) -> str | None:
        match = SUBJECT_RE.match(rel.rsplit("/", 1)[-1])
        if match is None:
            self._note("a media name without an S### subject prefix", session.name)
            return None
        return match[1].upper()

    # -- samples -------------------------------------------------------------------------------------------------------
    def _still(self, session: _Session, rel: str, meta: _SessionMeta, xmls: list[str],
               session_xml: str | None) -> Iterator[Record]:
        key, path = f"{session.name}/{rel}", f"{session.rel}/{rel}"
        label = self._label(session, rel, meta, xmls, session_xml)
        subject = self._subject(session, rel)
        if label.reject:
            yield Record(key=key, path=path, raw_label=label.raw, subject=subject, group=session.name,
                         reject=label.reject[0], reject_detail=label.reject[1])
            return
        self.counts["stills"] += 1
        yield Record(key=key, raw_label=label.raw, subject=subject, group=session.name, path=path,
                     extra=self._extra(session, meta, label, kind="still"))

    def _video(self, session: _Session, rel: str, meta: _SessionMeta, xmls: list[str], aucs: dict[str, str],
               session_xml: str | None) -> Iterator[Record]:
        key, path = f"{session.name}/{rel}", f"{session.rel}/{rel}"
        label = self._label(session, rel, meta, xmls, session_xml)
        subject = self._subject(session, rel)
        base = {"key": key, "path": path, "raw_label": label.raw, "subject": subject, "group": session.name}
        if label.reject:
            yield Record(**base, reject=label.reject[0], reject_detail=label.reject[1])
            return
        file = session.folder / rel
        try:
            if file.stat().st_size == 0:
                yield Record(**base, reject="empty_file", reject_detail=f"session {session.name}: {rel} has 0 bytes")
                return
            frames, scores = scan_video(file, score=self.apex == "change")
        except VideoError as exc:
            yield Record(**base, reject="undecodable", reject_detail=f"session {session.name}: {rel}: {exc}")
            return
        except OSError as exc:
            yield Record(**base, reject="unreadable", reject_detail=f"session {session.name}: {rel}: {exc}")
            return
        centre, how = self._apex(session, rel, frames, scores, aucs)
        apex = window(centre, self.apex_frames, frames)
        neutral = [i for i in range(min(self.neutral_frames, frames)) if i not in apex]
        self.counts["videos"] += 1
        self.counts["apex frames"] += len(apex)
        self.counts["neutral frames"] += len(neutral)
        reader = FrameReader(file, apex + neutral, self.rotate)
        stem = os.path.splitext(rel.rsplit("/", 1)[-1])[0]
        extra = self._extra(session, meta, label, kind="video")
        extra.update({"frames": frames, "apex_frame": centre, "apex_by": how})
        for index in sorted(apex + neutral):
            role = "apex" if index in apex else "neutral"
            record = {**base, "key": f"{key}#f{index:05d}", "row": index, "load": reader.loader(index),
                      "stored_name": f"{stem}_f{index:05d}.png", "extra": {**extra, "frame": index, "role": role}}
            if role == "neutral":
                record.update(raw_label="onset", label="neutral", label_source="mmi_onset_frame")
            yield Record(**record)

    def _apex(self, session: _Session, rel: str, frames: int, scores: list[float],
              aucs: dict[str, str]) -> tuple[int, str]:
        if self.apex == "change" and scores:
            return max(range(len(scores)), key=lambda i: (scores[i], -i)), "change"
        if self.apex == "aucs":
            marker = aucs.get(os.path.splitext(rel)[0].lower())
            if marker is None:
                self._note("no -oao_aucs.xml (apex: middle frame)", session.name)
            else:
                try:
                    centre = aucs_apex(session.folder / marker, frames)
                except ValueError:
                    centre = None
                if centre is not None:
                    return centre, "aucs"
                self._note("an -oao_aucs.xml without usable markers (apex: middle frame)", session.name)
        return frames // 2, "middle"

    def _extra(self, session: _Session, meta: _SessionMeta, label: _Label, kind: str) -> dict[str, Any]:
        extra: dict[str, Any] = {"session": session.name, "media": kind, "label_file": label.file}
        if meta.view is not None:
            extra["view"] = meta.view
        return extra

    def _summarise(self) -> None:
        c = self.counts
        self.notes.append(f"{c['sessions']:,} session folders: {c['video sessions']:,} with video, "
                          f"{c['still-image sessions']:,} with stills; {c['videos']:,} videos and {c['stills']:,} "
                          f"stills gave samples (the rest are in the rejects with the reason)")
        if c["videos"]:
            how = {"middle": "the middle of the video", "change": "the frame most unlike the first",
                   "aucs": "the -oao_aucs.xml markers"}[self.apex]
            self.notes.append(f"video frames: {self.apex_frames} around the apex ({how}) as the emotion "
                              f"({c['apex frames']:,}), the first {self.neutral_frames} as neutral "
                              f"({c['neutral frames']:,}); -o apex=middle|change|aucs, apex_frames=N, "
                              f"neutral_frames=N change this")
            if self.rotate == 0:
                self.notes.append("many MMI videos are stored sideways or as two views side by side; -o rotate=90 "
                                  "turns every frame, and the faces stage rejects frames where it finds no face")
        skipped = ("no session.xml", "an unreadable session.xml", "no <track view=...> in session.xml",
                   "several videos", "both a video and stills", "a media name without an S### subject prefix",
                   "the label read from session.xml", "the label read from another XML",
                   "no -oao_aucs.xml (apex: middle frame)",
                   "an -oao_aucs.xml without usable markers (apex: middle frame)")
        for what in skipped:
            if c[what]:
                self.notes.append(f"{c[what]:,} session(s) with {what} (e.g. {', '.join(self.examples[what])})")


def _parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


SOURCES: list[type[Source]] = [MmiSessions]
