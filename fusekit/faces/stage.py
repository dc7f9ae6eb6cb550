"""`fusekit faces`: every `images` row without a result -> `faces` rows (and `face_rejects` rows), resumably.

One faces unit per images unit (``tables/faces/fer2013--csv``). A run works out, per unit, which images rows have
no result yet (new rows, rows whose picture changed, rejects worth retrying such as a missing file) and which results
lost their images row (orphans, after a re-ingest or a remove). Nothing pending and nothing orphaned: the unit is
left alone, so a rerun does nothing. Otherwise a new unit is staged: the results worth keeping are carried over part
by part, the pending rows are processed in chunks of ``chunk_size`` images, each chunk written as one part, and the
unit is swapped in when every part exists. A killed run finds its finished parts and goes on from there.

The work on a chunk (``process_chunk``) is a pure function of its rows; ``fusekit.runner.run_parts`` runs it in this
process or in spawned worker processes that each hold one MTCNN, skips the parts already written and writes each
through the staging. Memory stays bounded: a unit is streamed part by part, a chunk is decoded in batches, and at
most ``workers + 1`` chunks are in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from fusekit import __version__
from fusekit.errors import ConfigError
from fusekit.faces.align import CROP_VERSION
from fusekit.faces.decode import Decoded, decode, row_bytes
from fusekit.faces.detect import FaceDetector, mtcnn_version
from fusekit.faces.pipeline import AlignedFace, Item, Outcome, analyse
from fusekit.faces.policies import AUTO, POLICIES, FacesConfig, PolicySettings
from fusekit.imageio import Rejected
from fusekit.manifests import FACE_POLICIES
from fusekit.records import FACES_SCHEMA, IMAGES_SCHEMA, REJECTS_SCHEMA, dumps_extra
from fusekit.runner import Distributor, Part, in_process, local_processes, run_parts
from fusekit.workspace import Unit, Workspace, digest, unit_label, write_json_atomic

log = logging.getLogger(__name__)

FACES, REJECTS = "faces", "face_rejects"
TABLES = (FACES, REJECTS)
STAGING = "@faces"  # .staging/@faces/<unit>: apart from ingest's .staging/<unit> (a unit name always holds "--")
RETRY = {"missing_file", "unreadable", "source_changed", "detector_error"}  # rejects a rerun tries again
AUTO_WORKERS_MIN_IMAGES = 4000  # below this, starting processes (TensorFlow each) costs more than it saves
IMAGE_COLUMNS = ["id", "dataset", "variant", "source_path", "source_row", "image", "split", "subject", "group",
                 "raw_label", "label", "label_id", "label_source", "sha256", "face_box", "terms", "extra"]
CARRIED = ("image_id", "extra", "size", "labels")


# -- report -------------------------------------------------------------------------------------------------------------


@dataclass
class UnitReport:
    unit: str
    dataset: str
    variant: str
    policy: str
    policy_reason: str = ""  # why an automatic policy chose what it chose
    processed: int = 0  # images rows worked on in this run
    faces: int = 0
    aligned: int = 0
    unaligned: Counter[str] = field(default_factory=Counter)  # method -> faces kept without alignment
    rejects: Counter[str] = field(default_factory=Counter)
    carried: int = 0  # results kept from an earlier run
    orphans: int = 0  # results dropped because their images row is gone or changed
    parts: int = 0
    resumed_parts: int = 0
    seconds: float = 0.0
    up_to_date: bool = False

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


@dataclass
class FacesReport:
    units: list[UnitReport] = field(default_factory=list)
    removed_units: list[str] = field(default_factory=list)  # faces units whose images unit is gone
    workers: int = 1
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return sum(u.processed for u in self.units)

    @property
    def faces(self) -> int:
        return sum(u.faces for u in self.units)

    @property
    def aligned(self) -> int:
        return sum(u.aligned for u in self.units)

    @property
    def unaligned(self) -> int:
        return sum(sum(u.unaligned.values()) for u in self.units)

    @property
    def rejects(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for u in self.units:
            total.update(u.rejects)
        return total

    @property
    def nothing_to_do(self) -> bool:
        return all(u.up_to_date for u in self.units) and not self.removed_units

    def render(self) -> str:
        """`fusekit faces` summary: per images unit, faces found, aligned, kept unaligned, rejected."""
        from fusekit.faces.summary import render_report

        return render_report(self)


# -- which policy a unit gets ---------------------------------------------------------------------------------------------


def policy_for(info: dict[str, Any], config: FacesConfig) -> str:
    """The face policy for an images unit: the user's override, else the one its source recorded in `_unit.json`."""
    for key in (f"{info.get('dataset')}/{info.get('variant')}", info.get("dataset")):
        if key in config.dataset_policies:
            return config.dataset_policies[key]
    return recorded_policy(info)


def recorded_policy(info: dict[str, Any]) -> str:
    """The face policy an images unit's `_unit.json` records (ingest and crawl write it from the unit's manifest).

    A unit written before fusekit recorded it names its manifest (``manifest``; else its dataset is the manifest's
    name), whose variant says it."""
    if info.get("face_policy") in FACE_POLICIES:
        return str(info["face_policy"])
    from fusekit.manifests import known_manifests

    manifest = known_manifests().get(info.get("manifest") or info.get("dataset") or "")
    if manifest is not None and info.get("variant") in manifest.variants:
        return manifest.variants[info["variant"]].face_policy
    log.warning("no face policy recorded for %s/%s: using full_frame", info.get("dataset"), info.get("variant"))
    return "full_frame"


# A unit whose manifest says ``auto`` (class folders: any dataset fusekit has no module for) gets ``precropped`` when
# most of a sample of its pictures are face crops: small, with one face that fills most of the frame (FER-2013-like
# 48-px crops, RAF-DB's aligned 100-px faces); else ``full_frame``. Measured on 1,000 real FER-2013 crops re-saved as
# class folders: under full_frame 83% were rejected no_face (docs/quality.md).
AUTO_SAMPLE = 48  # pictures looked at, evenly spaced over the unit's ids
AUTO_MAX_SIDE = 320  # px: a longer side above this is a frame, not a face crop
AUTO_FACE_AREA = 0.4  # the face box covers at least this share of the picture
AUTO_SHARE = 0.7  # ... in at least this share of the decoded sample


def choose_policy(workspace: Workspace, unit: str, config: FacesConfig, detector: FaceDetector,
                  source_root: str | None) -> tuple[str, str]:
    """``precropped`` or ``full_frame`` for an ``auto`` unit, and why (one line for the summary)."""
    ids = sorted(workspace.read("images", IMAGES_SCHEMA, units=[unit], columns=["id"]).column("id").to_pylist())
    if not ids:
        return "full_frame", "auto: no pictures to look at"
    step = max(1, len(ids) // AUTO_SAMPLE)
    picked = set(ids[::step][:AUTO_SAMPLE])
    pictures: list[Decoded] = []
    for rows in _pending_rows(workspace, unit, picked, len(picked)):
        for row in rows:
            try:
                pictures.append(decode(row_bytes(row, source_root)))
            except Rejected:
                continue
            except OSError:
                continue
    if not pictures:
        return "full_frame", "auto: none of the sampled pictures could be decoded"
    small = [p for p in pictures if max(p.width, p.height) <= AUTO_MAX_SIDE]
    outcomes = analyse([Item(p, config.settings("precropped")) for p in small], detector, 32) if small else []
    crops = 0
    for picture, outcome in zip(small, outcomes):
        face = outcome.faces[0] if outcome.faces else None
        if face is None or face.method not in ("detected", "known_face"):
            continue
        x, y, w, h = face.box
        inside = max(0.0, min(x + w, picture.width) - max(x, 0.0)) * max(0.0, min(y + h, picture.height) - max(y, 0.0))
        crops += inside >= AUTO_FACE_AREA * picture.width * picture.height
    share = crops / len(pictures)
    facts = (f"{crops} of {len(pictures)} sampled pictures are face crops (<= {AUTO_MAX_SIDE} px, one face covering "
             f">= {AUTO_FACE_AREA:.0%} of the picture)")
    if share >= AUTO_SHARE:
        return "precropped", f"auto: {facts}"
    return "full_frame", f"auto: only {facts}"


# -- the work on one chunk (pure; runs in workers) ------------------------------------------------------------------


@dataclass(frozen=True)
class UnitContext:
    unit: str
    dataset: str
    variant: str
    policy: str
    settings: PolicySettings
    fallback: PolicySettings  # given_box rows without a box are searched like a full frame
    source_root: str | None
    size: int
    benchmark_crops: bool = False  # the manifest says the pictures are face crops: judged by the picture's size


def _reject_row(row: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    return {"id": row["id"], "stage": "faces", "dataset": row["dataset"], "variant": row["variant"],
            "source_path": row.get("source_path"), "source_row": row.get("source_row"),
            "raw_label": row.get("raw_label"), "reason": reason, "detail": detail}


def _face_row(row: dict[str, Any], index: int, face: AlignedFace, outcome: Outcome, picture: Decoded,
              ctx: UnitContext) -> dict[str, Any]:
    face_id = f"{row['id']}#{index}"
    x, y, w, h = face.box
    return {
        "id": face_id,
        "image_id": row["id"],
        "face_index": index,
        **{k: row.get(k) for k in ("dataset", "variant", "split", "subject", "group", "label", "label_id",
                                   "label_source", "terms")},
        "image": {"bytes": face.png(), "path": f"{face_id}.png"},
        "size": ctx.size,
        "aligned": face.aligned,
        "policy": ctx.policy,
        "method": face.method,
        "box": {"x": x, "y": y, "w": w, "h": h},
        "landmarks": None if face.landmarks is None else [float(v) for v in face.landmarks.reshape(-1)],
        "score": face.score,
        "transform": [float(v) for v in face.transform.reshape(-1)],
        "source_width": picture.width,
        "source_height": picture.height,
        "face_width": face.face_size[0],
        "face_height": face.face_size[1],
        "pixel_sha256": face.pixel_sha256,
        "outside_fraction": face.outside_fraction,
        "detail_px": face.detail_px,
        "resolution": _resolution(face, picture, ctx),
        "detector": outcome.detector,
        "extra": dumps_extra({"image_sha256": row.get("sha256"), "detections": outcome.found,
                              "faces_in_image": len(outcome.faces), "crop": CROP_VERSION}),
        "labels": conflict_labels(row.get("extra")),
    }


def conflict_labels(extra: str | None) -> list[str] | None:
    """The labels of a picture its source gave several (images.extra ``label_conflict``: the crawl found it under
    two emotions' keywords and kept the first as ``label``), or None. Copied into the faces rows, so dedupe counts
    the conflict without reading `images`."""
    if not extra or '"label_conflict"' not in extra:
        return None
    data = json.loads(extra)
    return [str(label) for label in data.get("labels") or []] if data.get("label_conflict") else None


def _resolution(face: AlignedFace, picture: Decoded, ctx: UnitContext) -> float:
    """See the ``resolution`` column (records.FACES_SCHEMA)."""
    if ctx.policy == "precropped":
        nominal = float(min(picture.width, picture.height))
        if ctx.benchmark_crops:
            return nominal
    else:
        nominal = float(min(face.face_size))
    return nominal if not np.isfinite(face.detail_px) else min(nominal, face.detail_px)


def _given_box(row: dict[str, Any]) -> tuple[float, float, float, float] | None:
    box = row.get("face_box")
    if not box or box.get("w") is None:
        return None
    return (box["x"], box["y"], box["x"] + box["w"], box["y"] + box["h"])


def _batches(rows: list[dict[str, Any]], ctx: UnitContext) -> Iterator[list[tuple[dict[str, Any], Any]]]:
    """Decode rows in batches small enough to hold: 256 pictures, or 32 megapixels, whichever comes first."""
    batch: list[tuple[dict[str, Any], Any]] = []
    pixels = 0
    for row in rows:
        try:
            picture: Any = decode(row_bytes(row, ctx.source_root))
            pixels += picture.width * picture.height
        except Rejected as rejected:
            picture = rejected
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the run
            picture = Rejected("undecodable", f"{type(exc).__name__}: {exc}")
        batch.append((row, picture))
        if len(batch) >= 256 or pixels >= 32_000_000:
            yield batch
            batch, pixels = [], 0
    if batch:
        yield batch


def process_chunk(rows: list[dict[str, Any]], ctx: UnitContext, detector: FaceDetector) -> tuple[pa.Table, pa.Table]:
    """`images` rows -> (`faces` table, `face_rejects` table). Reads the files the rows name; writes nothing."""
    faces: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for batch in _batches(rows, ctx):
        items, owners = [], []
        for row, picture in batch:
            if isinstance(picture, Rejected):
                continue
            given = _given_box(row) if ctx.settings.name == "given_box" else None
            settings = ctx.fallback if ctx.settings.name == "given_box" and given is None else ctx.settings
            items.append(Item(picture, settings, given))
            owners.append(row["id"])
        outcomes = dict(zip(owners, analyse(items, detector, ctx.size)))
        for row, picture in batch:
            if isinstance(picture, Rejected):
                rejects.append(_reject_row(row, picture.reason, picture.detail))
                continue
            outcome = outcomes[row["id"]]
            if outcome.reject:
                rejects.append(_reject_row(row, *outcome.reject))
            for index, face in enumerate(outcome.faces):
                faces.append(_face_row(row, index, face, outcome, picture, ctx))
    return (pa.Table.from_pylist(faces, schema=FACES_SCHEMA), pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA))


_WORKER: dict[str, Any] = {}


def _init_worker(threads: int) -> None:
    from fusekit.faces.detect import MtcnnDetector, configure_tensorflow

    configure_tensorflow(threads)
    _WORKER["detector"] = MtcnnDetector()


# -- planning a unit ------------------------------------------------------------------------------------------------------


def _part_files(workspace: Workspace, table: str, unit: str) -> dict[int, str]:
    found = {}
    for path in workspace.parts(table, unit):
        try:
            found[int(path.stem.split("-")[1])] = str(path)
        except (IndexError, ValueError):
            continue
    return found


@dataclass
class _Plan:
    pending: list[str]  # image ids to work on, in table order
    keep_faces: set[str]  # image ids whose faces rows are carried over
    keep_rejects: set[str]  # image ids whose reject rows are carried over
    old_parts: list[int]  # part numbers of the unit as it is
    exists: bool  # the unit has results already
    orphans: int = 0  # old rows whose images row is gone
    redone: int = 0  # old rows dropped to be worked on again (picture changed, or a reject worth retrying)
    listing: str = ""  # digest of the old unit's files (a staged run resumes only over the same old unit)

    @property
    def up_to_date(self) -> bool:
        return self.exists and not self.pending and not self.orphans and not self.redone


def _plan(workspace: Workspace, unit: str, redo: bool, size: int) -> _Plan:
    images = workspace.read("images", IMAGES_SCHEMA, units=[unit], columns=["id", "sha256", "extra"])
    order = images.column("id").to_pylist()
    sha = dict(zip(order, images.column("sha256").to_pylist()))
    # a picture the crawl has since found under another emotion is redone, so its faces rows carry the conflict
    flagged = images.filter(pc.fill_null(pc.match_substring(images.column("extra"), '"label_conflict"'), False))
    conflicts = {i: conflict_labels(e) for i, e in zip(flagged.column("id").to_pylist(),
                                                       flagged.column("extra").to_pylist())}
    faces_parts = _part_files(workspace, FACES, unit)
    reject_parts = _part_files(workspace, REJECTS, unit)
    exists = unit in workspace.units(FACES) or unit in workspace.units(REJECTS)
    listing = digest(workspace.listing(FACES, [unit]) + workspace.listing(REJECTS, [unit]))
    plan = _Plan([], set(), set(), [], exists, listing=listing)
    face_rows: list[tuple[str, bool]] = []
    for path in faces_parts.values():
        # read against today's schema: a part written before the labels column gets nulls there (no conflicts)
        table = ds.dataset(str(path), format="parquet", schema=FACES_SCHEMA).to_table(columns=list(CARRIED))
        columns = [table.column(c).to_pylist() for c in CARRIED]
        for image_id, extra, crop_size, labels in zip(*columns):
            # a result is current while its picture is unchanged, its crop has the size and framing asked for and
            # it carries the picture's label conflict as it is now
            facts = json.loads(extra) if extra else {}
            recorded = facts.get("image_sha256")
            same = (image_id in sha and (recorded is None or recorded == sha[image_id]) and crop_size == size
                    and facts.get("crop") == CROP_VERSION and labels == conflicts.get(image_id))
            face_rows.append((image_id, same))
    current: dict[str, bool] = {}
    for image_id, ok in face_rows:  # an image's faces are kept or redone together
        current[image_id] = current.get(image_id, True) and ok
    plan.keep_faces = set() if redo else {i for i, ok in current.items() if ok}
    reject_rows = []
    for path in reject_parts.values():
        table = pq.read_table(path, columns=["id", "reason"])
        reject_rows += list(zip(table.column("id").to_pylist(), table.column("reason").to_pylist()))
    if not redo:
        plan.keep_rejects = {i for i, reason in reject_rows
                             if i in sha and reason not in RETRY and i not in plan.keep_faces}
    for image_id, _ in face_rows:
        if image_id not in sha:
            plan.orphans += 1
        elif image_id not in plan.keep_faces:
            plan.redone += 1
    for image_id, _ in reject_rows:
        if image_id not in sha:
            plan.orphans += 1
        elif image_id not in plan.keep_rejects:
            plan.redone += 1
    done = plan.keep_faces | plan.keep_rejects
    plan.pending = [i for i in order if i not in done]
    plan.old_parts = [] if redo else sorted(set(faces_parts) | set(reject_parts))
    return plan


def _pending_rows(workspace: Workspace, unit: str, pending: set[str], chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    """The pending `images` rows of ``unit`` in table order, in chunks; one images part in memory at a time."""
    chunk: list[dict[str, Any]] = []
    for path in workspace.parts("images", unit):
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=512, columns=IMAGE_COLUMNS):
            ids = batch.column(0).to_pylist()
            wanted = [k for k, i in enumerate(ids) if i in pending]
            if not wanted:
                continue
            rows = batch.take(pa.array(wanted)).to_pylist()
            for row in rows:
                chunk.append(row)
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def _stats(faces: pa.Table, rejects: pa.Table, processed: int) -> dict[str, Any]:
    aligned = faces.column("aligned").to_pylist()
    methods = faces.column("method").to_pylist()
    return {
        "images": processed,
        "faces": faces.num_rows,
        "aligned": sum(1 for a in aligned if a),
        "unaligned": dict(Counter(m for a, m in zip(aligned, methods) if not a)),
        "rejects": dict(Counter(rejects.column("reason").to_pylist())),
    }


def _add(report: UnitReport, stats: dict[str, Any]) -> None:
    report.processed += stats["images"]
    report.faces += stats["faces"]
    report.aligned += stats["aligned"]
    report.unaligned.update(stats["unaligned"])
    report.rejects.update(stats["rejects"])


# -- where chunks run ----------------------------------------------------------------------------------------------------


def _tables(rows: list[dict[str, Any]], ctx: UnitContext, detector: FaceDetector) -> dict[str, pa.Table]:
    faces, rejects = process_chunk(rows, ctx, detector)
    return {FACES: faces, REJECTS: rejects}


def _work_tables(rows: list[dict[str, Any]], ctx: UnitContext) -> dict[str, pa.Table]:
    """The worker of one chunk in a pool process or a Ray worker (its MTCNN loaded once per process: by the pool's
    ``_init_worker``, or here on a Ray worker's first part)."""
    if "detector" not in _WORKER:
        _init_worker(1)
    return _tables(rows, ctx, _WORKER["detector"])


@dataclass
class _Work:
    """Where the chunks run: this process with one detector, or ``fusekit.runner``'s local processes that each
    hold one MTCNN (``distribute``); the pool lives across units, so each worker loads its detector once."""

    distribute: Distributor
    pooled: bool
    detector: FaceDetector | None = None

    def local_detector(self) -> FaceDetector:
        if self.detector is None:
            from fusekit.faces.detect import shared_detector

            self.detector = shared_detector()
        return self.detector

    def worker(self, ctx: UnitContext) -> Callable[[list[dict[str, Any]]], dict[str, pa.Table]]:
        if self.pooled:
            return partial(_work_tables, ctx=ctx)
        return partial(_tables, ctx=ctx, detector=self.local_detector())


@contextmanager
def _workers(workers: int, detector: FaceDetector | None, config: FacesConfig) -> Iterator[_Work]:
    if config.runner == "ray" and detector is None:
        from fusekit.distribute_ray import ray_tasks

        with ray_tasks(config.address) as distribute:
            yield _Work(distribute, True)
        return
    if workers <= 1:
        yield _Work(in_process, False, detector)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    # fresh (spawned) workers: each loads TensorFlow and its MTCNN itself
    with local_processes(workers, fresh=True, initializer=_init_worker, initargs=(threads,)) as distribute:
        yield _Work(distribute, True, detector)


def _auto_workers(config: FacesConfig, pending: int) -> int:
    """Worker processes: as asked, else one per core (up to 4) for big runs on a CPU; one process on a GPU box."""
    if config.workers:
        return config.workers
    if pending < AUTO_WORKERS_MIN_IMAGES or os.path.exists("/dev/nvidiactl"):
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def run_faces(workspace: Workspace, config: FacesConfig | None = None, units: list[str] | None = None, *,
              detector: FaceDetector | None = None) -> FacesReport:
    """Detect and align the faces of every `images` row that has no result yet (see the module docstring).

    ``detector`` replaces MTCNN (tests); ``units`` limits the run to some images units (``fer2013--csv``).
    """
    config = config or FacesConfig()
    started = time.perf_counter()
    workspace.ensure()  # finishes a swap a crash interrupted, the faces stage's own included
    report = FacesReport()
    available = workspace.units("images")
    if units is None:
        chosen = available
        for table in TABLES:  # results whose images unit is gone (removed dataset)
            for unit in workspace.units(table):
                if unit not in available:
                    workspace.remove_unit(table, unit)
                    if unit not in report.removed_units:
                        report.removed_units.append(unit)
    else:
        chosen = [_resolve_unit(u, available) for u in units]
        chosen = sorted(set(chosen))
    plans = [(unit, _plan(workspace, unit, config.redo, config.size)) for unit in chosen]
    total = sum(len(plan.pending) for _, plan in plans)
    workers = 1 if detector is not None else _auto_workers(config, total)
    report.workers = workers
    with _workers(workers, detector, config) as work:
        for unit, plan in plans:
            report.units.append(_run_unit(workspace, unit, plan, config, work if total else None))
    report.seconds = time.perf_counter() - started
    return report


def _note_images_listing(workspace: Workspace, unit: str) -> None:
    """An up-to-date unit whose images parts were rewritten without a change that concerns faces (the crawl adds a
    provenance record to a known picture): its `_unit.json` now names the images as they are, so that dedupe does
    not call its faces out of date."""
    info = workspace.unit_info(FACES, unit)
    listing = digest(workspace.listing("images", [unit]))
    if info is not None and info.get("images_listing") not in (None, listing):
        write_json_atomic({**info, "images_listing": listing}, workspace.unit_dir(FACES, unit) / "_unit.json")


def _resolve_unit(name: str, available: list[str]) -> str:
    key = str(Unit.parse(name)) if "/" in name else name
    if key in available:
        return key
    matches = [u for u in available if Unit.parse(u).dataset == key]
    if len(matches) == 1:
        return matches[0]
    held = ", ".join(unit_label(u) for u in available) or "nothing"
    if matches:
        raise ConfigError(f"{name} has several variants in the workspace ({', '.join(matches)}); name one")
    raise ConfigError(f"{name} is not in the workspace's images (it holds {held})")


def _run_unit(workspace: Workspace, unit: str, plan: _Plan, config: FacesConfig, work: _Work | None) -> UnitReport:
    started = time.perf_counter()
    info = workspace.unit_info("images", unit) or {}
    parsed = Unit.parse(unit)
    info = {"dataset": parsed.dataset, "variant": parsed.variant, **info}
    dataset, variant = info["dataset"], info["variant"]
    policy, reason = policy_for(info, config), ""
    benchmark_crops = policy == "precropped" and recorded_policy(info) == "precropped"
    if policy == AUTO:
        recorded = workspace.unit_info(FACES, unit) or {}
        carried = plan.keep_faces or plan.keep_rejects
        if recorded.get("policy") in POLICIES and (carried or not plan.pending):
            # results made with a policy are carried: new rows get the same one (one policy per unit)
            policy, reason = recorded["policy"], recorded.get("policy_reason", "")
        elif work is not None:
            policy, reason = choose_policy(workspace, unit, config, work.local_detector(), info.get("source_root"))
        else:
            policy, reason = "full_frame", "auto: nothing to look at"
    report = UnitReport(unit, dataset, variant, policy, reason)
    report.carried = len(plan.keep_faces) + len(plan.keep_rejects)
    report.orphans = plan.orphans
    if plan.up_to_date:
        _note_images_listing(workspace, unit)
        report.up_to_date = True
        report.seconds = time.perf_counter() - started
        return report
    pending = plan.pending
    settings = config.settings(policy)
    ctx = UnitContext(unit, dataset, variant, policy, settings, config.settings("full_frame"),
                      info.get("source_root"), config.size, benchmark_crops)
    fingerprint = {
        "unit": unit,
        "policy": policy,
        "settings": settings.describe(),
        "fallback": ctx.fallback.describe(),
        "size": config.size,
        "chunk_size": config.chunk_size,
        "pending": hashlib.sha256("\n".join(pending).encode()).hexdigest(),
        "old": plan.listing,
        "mtcnn": mtcnn_version(),
        "fusekit": __version__,
    }
    # .staging/@faces/<unit>: apart from ingest's staging of the same unit name; the swap goes to tables/faces/<unit>
    staging = workspace.stage(unit, fingerprint, area=STAGING)
    old_faces = _part_files(workspace, FACES, unit)
    old_rejects = _part_files(workspace, REJECTS, unit)
    for index, old in enumerate(plan.old_parts):
        if staging.is_done(index):
            report.resumed_parts += 1
        else:
            tables = {}
            if old in old_faces:
                table = ds.dataset(old_faces[old], schema=FACES_SCHEMA).to_table()  # an older part: labels null
                keep = [i in plan.keep_faces for i in table.column("image_id").to_pylist()]
                tables[FACES] = table.filter(pa.array(keep, type=pa.bool_()))
            if old in old_rejects:
                table = pq.read_table(old_rejects[old], schema=REJECTS_SCHEMA)
                keep = [i in plan.keep_rejects for i in table.column("id").to_pylist()]
                tables[REJECTS] = table.filter(pa.array(keep, type=pa.bool_()))
            staging.write_part(index, {k: v for k, v in tables.items() if v.num_rows}, {"carried": True})
        report.parts += 1
    first = len(plan.old_parts)
    from fusekit import progress

    def account(part: Part, stats: dict[str, Any], resumed: bool) -> None:
        report.parts += 1
        report.resumed_parts += resumed
        _add(report, stats)
        bar.update(part.size)

    with progress.bar(len(pending), f"faces {unit}") as bar:
        parts = (Part(first + offset, rows, len(rows))
                 for offset, rows in enumerate(_pending_rows(workspace, unit, set(plan.pending), config.chunk_size)))
        if work is not None:
            run_parts(parts, work.worker(ctx), staging, account=account, distribute=work.distribute,
                      stats=lambda part, tables: _stats(tables[FACES], tables[REJECTS], part.size))
    staging.finish({
        "images_unit": unit,
        "dataset": dataset,
        "variant": variant,
        "policy": policy,
        "policy_reason": reason,
        "settings": settings.describe(),
        "size": config.size,
        "detector": f"mtcnn {mtcnn_version()}",
        "images_processed": report.processed,
        "images_carried": report.carried,
        # what dedupe and balance need of the source, copied from the images unit (ingest or crawl recorded it)
        "source": {k: info.get(k) for k in ("manifest", "face_policy", "title", "terms", "citation")},
        "images_listing": digest(workspace.listing("images", [unit])),  # dedupe: faces older than their images
        "fusekit": __version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, TABLES)
    report.seconds = time.perf_counter() - started
    return report
