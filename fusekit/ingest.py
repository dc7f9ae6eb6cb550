"""`fusekit ingest`: a native dataset layout -> `images` rows (and `rejects` rows for what cannot be used).

The source yields cheap records in a deterministic order; they are cut into fixed-size chunks, and each chunk is
decoded, hashed and written as one part of a staged unit. A part that exists is not redone, so a killed run resumes
where it stopped, and the unit replaces the previous ingest of the same variant only when every part is written.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa

from fusekit import __version__, archives
from fusekit import sources as source_registry
from fusekit.config import IngestConfig
from fusekit.imageio import (
    Rejected,
    encoded_info,
    inspect,
    max_image_bytes,
    read_source,
    text_name,
)
from fusekit.manifests import DROP, Manifest, Variant, resolve, unit_facts
from fusekit.processes import idle_cores, processes_pay
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA, Record, dumps_extra
from fusekit.runner import Distributor, Part, in_process, local_processes, run_parts
from fusekit.sources.base import PATH_OPTIONS, Source
from fusekit.taxonomy import CLASS_ID
from fusekit.text import reasons, split_label_table
from fusekit.workspace import Unit, Workspace, digest, tree_listing, unit_name

log = logging.getLogger(__name__)
TABLES = ("images", "rejects")


@dataclass
class IngestReport:
    dataset: str
    variant: str
    unit: str
    anchor: str
    images: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    by_split_label: Counter[tuple[str, str]] = field(default_factory=Counter)
    parts: int = 0
    resumed_parts: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def render(self) -> str:
        """`fusekit ingest`'s summary: the variant found, images per class and split, rejects by reason, notes."""
        lines = [f"{self.dataset}: detected variant {self.variant!r} at {self.anchor}"]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(split_label_table(self.by_split_label) if self.images else "no images")
        lines.append(f"{self.images:,} images, {self.rejected:,} rejected"
                     + (f" ({reasons(self.rejects)})" if self.rejects else "")
                     + f", {self.seconds:.1f} s" + (f", resumed {self.resumed_parts} of {self.parts} parts"
                                                    if self.resumed_parts else ""))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class ChunkProcessor:
    """Turns a chunk of records into `images` and `rejects` rows. Pure apart from reading the files it names."""

    def __init__(self, source: Source, manifest: Manifest, spec: Variant, workers: int) -> None:
        self.root = source.root  # not the source itself: a processor is sent to worker processes
        self._last_file: tuple[str, Any] | None = None  # (path, ImageInfo) of the last file decoded
        self.manifest = manifest
        self.spec = spec
        self.workers = workers
        self.blank_mean = float(spec.extra.get("blank_mean_below", 5))
        self.blank_std = float(spec.extra.get("blank_std_below", 2))
        self.dataset = source.dataset_name
        self.max_bytes = max_image_bytes()  # read here, so that worker processes use the same limit

    def _id(self, record: Record) -> str:
        return f"{self.dataset}/{self.spec.name}/{text_name(record.key)}"

    def _reject(self, record: Record, reason: str, detail: str = "") -> dict[str, Any]:
        return {
            "id": self._id(record),
            "stage": "ingest",
            "dataset": self.dataset,
            "variant": self.spec.name,
            "source_path": _text(record.path),
            "source_row": record.row,
            "raw_label": _text(record.raw_label),
            "reason": reason,
            "detail": text_name(detail),
        }

    def _label(self, record: Record) -> str:
        if record.label is not None:
            return record.label
        if record.raw_label is None:
            raise Rejected("unlabelled", "no label for this entry")
        canonical = self.spec.canonical(record.raw_label)
        if canonical is None:
            raise Rejected("unknown_label", f"{record.raw_label!r} is not in the {self.manifest.name} label map")
        if canonical == DROP:
            raise Rejected("dropped_label", f"{record.raw_label!r} has no canonical class")
        return canonical

    def _bytes(self, record: Record) -> bytes:
        if record.load is not None:
            return record.load()
        assert record.path is not None, "a record needs a path or a loader"
        # stat first (a FIFO, socket or device is never opened; a file over the limit never read), then one read
        return read_source(self.root / record.path, record.path, self.max_bytes)

    def process_one(self, record: Record) -> tuple[str, dict[str, Any]]:
        if record.reject:
            return "rejects", self._reject(record, record.reject, record.reject_detail)
        try:
            label = self._label(record)
            last = self._last_file
            if record.load is None and last is not None and last[0] == record.path:
                data, info = b"", last[1]  # another face of the picture just read (ExpW): faces arrive together
            else:
                data = self._bytes(record)
                if record.encoded_here and not record.check_blank:
                    info = encoded_info(data)
                else:
                    info = inspect(data, check_blank=record.check_blank, blank_mean=self.blank_mean,
                                   blank_std=self.blank_std)
                if record.load is None:
                    self._last_file = (record.path, info)
        except Rejected as rejected:
            return "rejects", self._reject(record, rejected.reason, rejected.detail)
        stored = record.load is not None
        box = record.face_box
        extra = _text_values(record.extra)
        source_path = _text(record.path)
        if source_path != record.path:
            extra = {**extra, "path_escaped": True}  # a name that is not UTF-8: see imageio.text_name
        return "images", {
            "id": self._id(record),
            "dataset": self.dataset,
            "variant": self.spec.name,
            "source_path": source_path,
            "source_row": record.row,
            "image": {"bytes": data if stored else None,
                      "path": _text(record.stored_name) if stored else source_path},
            "split": record.split,
            "subject": _text(record.subject),
            "group": _text(record.group),
            "raw_label": _text(record.raw_label),
            "label": label,
            "label_id": CLASS_ID[label],
            "label_source": record.label_source,
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "sha256": info.sha256,
            "face_box": None if box is None else dict(zip("xywh", map(float, box))),
            "terms": self.spec.terms.id,
            "extra": dumps_extra(extra),
        }

    def __call__(self, chunk: list[Record]) -> dict[str, pa.Table]:
        # Threads help only where the work releases the GIL for long (file reads, video frames, large JPEGs); for
        # small images the Python around the decode dominates, which is why `_distributor` prefers processes.
        if self.workers > 1 and len(chunk) > 64:
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(self.process_one, chunk))
        else:
            results = [self.process_one(r) for r in chunk]
        rows: dict[str, list[dict[str, Any]]] = {"images": [], "rejects": []}
        for table, row in results:
            rows[table].append(row)
        return {
            "images": pa.Table.from_pylist(rows["images"], schema=IMAGES_SCHEMA),
            "rejects": pa.Table.from_pylist(rows["rejects"], schema=REJECTS_SCHEMA),
        }


def _text(value: str | None) -> str | None:
    """A name or label as Parquet can hold it (``imageio.text_name``: names that are not UTF-8 percent-escaped)."""
    return None if value is None else text_name(value)


def _text_values(value: Any) -> Any:
    """``extra`` with every string made valid UTF-8 (a class folder's name may not be)."""
    if isinstance(value, str):
        return text_name(value)
    if isinstance(value, dict):
        return {_text_values(k): _text_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_values(v) for v in value]
    return value


@contextmanager
def _distributor(processor: ChunkProcessor, source: Source, config: IngestConfig) -> Iterator[Distributor]:
    """Chunks in worker processes when the source's records can travel there; else in this process.

    Decoding and hashing small images is Python-bound, so threads cannot use a second core; processes can. The first
    chunk runs here, so a small dataset never pays for starting the pool, and whether processes pay is decided once,
    when the pool would start. Sources whose records carry closures (``picklable_records = False``) stay in-process
    with the thread pool. The pool's workers get a copy of the processor without threads.
    """
    if config.runner == "ray" and getattr(source, "picklable_records", False):
        from fusekit.distribute_ray import ray_tasks

        inner = copy.copy(processor)
        inner.workers = 1
        with ray_tasks(config.address) as tasks:
            yield lambda _worker, items: tasks(inner, items)  # every chunk a Ray task, threads-free like a process's
        return
    if config.runner == "ray":
        source.notes.append("this layout's records do not travel to other processes: decoded here, not on Ray")
    if config.workers <= 1 or not getattr(source, "picklable_records", False):
        yield in_process
        return
    inner = copy.copy(processor)
    inner.workers = 1
    # fresh (spawned) workers: the parent may hold threads and open files
    with local_processes(config.workers, fresh=True) as pool:

        def distribute(worker: Callable[[Any], Any], items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
            items = iter(items)
            for index, chunk in itertools.islice(items, 1):
                yield index, worker(chunk)
            second = next(items, None)
            if second is None:
                return
            rest = itertools.chain([second], items)
            if not processes_pay(config.workers):
                source.notes.append(f"worker processes not started: other jobs leave {idle_cores():.1f} of "
                                    f"{os.cpu_count()} cores idle (load average); decoded in this process")
                yield from in_process(worker, rest)
                return
            yield from pool(inner, rest)

        yield distribute


def _dedupe_keys(records: Iterable[Record]) -> Iterator[Record]:
    """A key seen twice (the same layout extracted twice under one root) becomes a reject, never a second row.

    Keys are compared as the tables hold them (``imageio.text_name``), so two names that would write one id cannot.
    """
    seen: set[str] = set()
    for record in records:
        key = text_name(record.key)
        if key in seen:
            yield Record(key=f"{record.key}#dup", path=record.path, row=record.row, raw_label=record.raw_label,
                         reject="duplicate_entry", reject_detail=f"the key {key!r} was already read")
            continue
        seen.add(key)
        yield record


def _part_stats(tables: dict[str, pa.Table]) -> dict[str, Any]:
    images = tables["images"]
    splits = images.column("split").to_pylist()
    labels = images.column("label").to_pylist()
    counts = Counter(f"{s or '-'}|{label}" for s, label in zip(splits, labels))
    return {
        "images": images.num_rows,
        "rejects": dict(Counter(tables["rejects"].column("reason").to_pylist())),
        "split_label": dict(counts),
    }


def _family_warning(workspace: Workspace, manifest: Manifest, variant: str) -> str | None:
    others = [u.variant for u in map(Unit.parse, workspace.units("images")) if u.dataset == manifest.name]
    others = [v for v in others if v != variant]
    if others and manifest.variants_overlap:
        return (
            f"{manifest.title}: variant {variant!r} overlaps the already ingested {', '.join(others)} "
            f"(the same faces in another packaging). Keep one, or let `fusekit dedupe` drop the copies; "
            f"`fusekit remove {manifest.name} --variant {others[0]}` removes the other."
        )
    return None


def plan(config: IngestConfig, workspace: Workspace | None = None,
         notes: list[str] | None = None) -> tuple[Manifest, type[Source], Path]:
    """Resolve the dataset name and detect the variant; raises a user error before anything is written to a table.

    An archive ``--source`` (.zip, .tar, .tar.gz...) is first extracted safely into ``<workspace>/sources/``
    (reused on a rerun; see ``fusekit.archives``), and the layout is detected inside it.
    """
    manifest = resolve(config.name)
    variant = config.variant
    if variant is None:
        # A variant that exists only with an extra input (FER+ needs --labels) is chosen by that input.
        chosen = [v.name for v in manifest.variants.values() if v.extra.get("selected_by_option") in config.options]
        variant = chosen[0] if len(chosen) == 1 else None
    path = Path(config.source).resolve()
    if workspace is not None and archives.archive_kind(path) is not None:
        extraction = archives.extract(path, workspace.root / "sources", config.extract_limits)
        path = extraction.folder
        if notes is not None:
            notes.append(extraction.note())
    cls, anchor = source_registry.detect(manifest, path, variant, config.options)
    return manifest, cls, anchor


def run_ingest(workspace: Workspace, config: IngestConfig, planned: tuple[Any, ...] | None = None) -> IngestReport:
    """``planned``: ``plan(config, workspace, notes)``'s result and those notes, when the caller planned already
    (``api.ingest`` does, to know which unit to lock)."""
    archive_notes: list[str] = []
    manifest, cls, anchor, archive_notes = planned or (*plan(config, workspace, archive_notes), archive_notes)
    spec = manifest.variant(cls.variant)
    source = cls(anchor, spec, config.options)
    unit = unit_name(source.dataset_name, spec.name)
    report = IngestReport(source.dataset_name, spec.name, unit, str(anchor), notes=archive_notes)
    started = time.perf_counter()
    workspace.ensure()
    warning = _family_warning(workspace, manifest, spec.name)
    if warning:
        report.warnings.append(warning)
    named = [Path(str(config.options[k])) for k in PATH_OPTIONS if config.options.get(k)]  # -o labels= etc.
    fingerprint = {
        "dataset": source.dataset_name,
        "variant": spec.name,
        "anchor": str(anchor),
        "options": config.options,
        "chunk_size": config.chunk_size,
        "fusekit": __version__,
        # A killed run resumes only over unchanged inputs: the files under the anchor and what a path option names.
        "inputs": digest([tree_listing(anchor)] + [tree_listing(path) for path in named if path.exists()]),
    }
    staging = workspace.stage(unit, fingerprint)
    processor = ChunkProcessor(source, manifest, spec, config.workers)
    from fusekit import progress

    with progress.bar(None, f"ingest {manifest.name}/{spec.name}") as bar, \
            _distributor(processor, source, config) as distribute:

        def account(part: Part, stats: dict[str, Any], resumed: bool) -> None:
            _add_stats(report, stats)
            report.parts += 1
            report.resumed_parts += resumed
            bar.update(part.size)

        # archive members that were not extracted (links, devices) are reject rows after the source's own records
        records = itertools.chain(source.records(), archives.not_created(anchor, workspace.root / "sources"))
        parts = (Part(index, chunk, len(chunk))
                 for index, chunk in enumerate(_chunks(_dedupe_keys(records), config.chunk_size)))
        run_parts(parts, processor, staging, stats=lambda _part, tables: _part_stats(tables), account=account,
                  distribute=distribute)
    report.notes.extend(source.notes)
    info = {
        "dataset": source.dataset_name,
        "manifest": manifest.name,
        "variant": spec.name,
        "source_root": str(source.root),
        "anchor": str(anchor),
        "options": config.options,
        "images": report.images,
        "rejects": dict(report.rejects),
        "fusekit": __version__,
        "ingested_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **unit_facts(manifest, spec, source.dataset_name),  # face policy, terms, citation: recorded once, here
    }
    staging.finish(info, TABLES)
    report.seconds = time.perf_counter() - started
    report.notes.extend(_expectation_notes(spec, report))
    return report


def _add_stats(report: IngestReport, stats: dict[str, Any]) -> None:
    report.images += stats["images"]
    report.rejects.update(stats["rejects"])
    for key, count in stats["split_label"].items():
        split, label = key.split("|", 1)
        report.by_split_label[(split, label)] += count


def _expectation_notes(spec: Variant, report: IngestReport) -> list[str]:
    total = spec.expected.get("total")
    if total is not None and report.images != total:
        return [f"{report.images:,} images kept where the full {spec.name} release has {total:,}: a subset, "
                f"or files that could not be used (see the rejects)"]
    return []
