"""The public verbs of fusekit. Each takes a workspace and a config and returns a report; none prints.

The verbs that write take the workspace's locks (``fusekit.locks``): ``ingest`` and ``faces`` hold the workspace
lock shared and their unit's lock exclusive, ``dedupe``, ``balance`` and ``remove`` the workspace lock exclusive (as
``build`` and ``crawl`` do themselves). A second writer of the same thing stops at once with ``WorkspaceBusy``.
The verbs that work on what a workspace holds (``status``, ``dedupe``, ``balance``, ``remove``) refuse one that
does not exist (``NoWorkspace``) instead of creating it.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusekit import locks, sources
from fusekit.archives import MARKER_SUFFIX, archive_kind
from fusekit.config import IngestConfig
from fusekit.errors import ConfigError, SourceNotFound, UserError, WorkspaceError
from fusekit.ingest import IngestReport, plan, run_ingest
from fusekit.manifests import Manifest, all_manifests, resolve
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Unit, Workspace, unit_label, unit_name


class NoWorkspace(UserError):
    """A command that reads a workspace was pointed at a folder that holds none."""


def require(workspace: Workspace) -> Workspace:
    """``workspace`` if it exists (its ``tables/`` folder does), else ``NoWorkspace``; creates nothing."""
    if workspace.root.exists() and not workspace.root.is_dir():  # the words of Workspace() and cli.main for it
        raise WorkspaceError(f"the workspace {workspace.root} is a file, not a folder: give --workspace a folder "
                             f"(or move the file away)")
    if not workspace.tables.is_dir():
        raise NoWorkspace(f"no workspace at {workspace.root} (run fusekit ingest first)")
    return workspace


@dataclass
class IngestRun:
    """What `fusekit ingest` did: the ingest stage's report, then the faces stage's on that unit (None when
    ``config.faces`` is off). The two stages never call each other; this verb composes them."""

    ingest: IngestReport
    faces: Any = None  # fusekit.faces.FacesReport

    @property
    def unit(self) -> str:
        return self.ingest.unit

    def render(self) -> str:
        from fusekit import render

        return "\n".join([render.ingest_report(self.ingest)]
                         + ([render.faces_report(self.faces)] if self.faces is not None else []))


@dataclass
class CrawlRun:
    """What `fusekit crawl` did: the crawl stage's report, then the faces stage's on the crawled unit."""

    crawl: Any  # fusekit.crawl.CrawlReport
    faces: Any = None  # fusekit.faces.FacesReport, or None (--no-faces, or no faces stage in this install)

    @property
    def unit(self) -> str:
        return str(self.crawl.unit)

    def render(self) -> str:
        from fusekit import render
        from fusekit.crawl.stage import format_report

        return "\n".join([format_report(self.crawl)]
                         + ([f"faces: {render.faces_line(self.faces)}"] if self.faces is not None else []))


def ingest(workspace: Workspace, config: IngestConfig) -> IngestRun:
    """Read a dataset in its native layout into the `images` table (see `fusekit.ingest`), then run the faces stage
    on that unit when ``config.faces`` (``fusekit ingest ck+`` leaves aligned faces behind).

    Holds the workspace lock shared and the unit's lock exclusive from before staging to after the faces stage (when
    ``config.faces``): a second ingest of the same variant stops at once, one of another dataset runs beside it. The
    unit is known once the layout is detected, so detection (and the extraction of an archive ``--source``, under
    a lock of its own) runs first, with the workspace lock only."""
    notes: list[str] = []
    source_path = Path(config.source).resolve()
    archive = archive_kind(source_path) is not None
    if not archive:  # a folder's layout is detected before anything (lock files included) is written
        manifest, cls, anchor = plan(config, workspace, notes)
    with locks.writing(workspace, ()):
        if archive:
            key = "extract--" + hashlib.sha256(str(source_path).encode()).hexdigest()[:16]
            with locks.writing(workspace, [key], doing=f"extracting {source_path.name}"):
                manifest, cls, anchor = plan(config, workspace, notes)
        source = cls(anchor, manifest.variant(cls.variant), config.options)
        with locks.writing(workspace, [unit_name(source.dataset_name, cls.variant)]):
            report = IngestRun(run_ingest(workspace, config, (manifest, cls, anchor, notes)))
            if config.faces:
                from fusekit.faces import run_faces  # loads TensorFlow only when faces are asked for

                report.faces = run_faces(workspace, units=[report.unit])
            return report


def crawl(workspace: Workspace, config: Any) -> CrawlRun:
    """Crawl an image search engine into unit ``crawl--<engine>`` (``fusekit.crawl.run_crawl``), then run the faces
    stage on that unit when ``config.faces``. The crawl's checks run first; then the ``crawl`` lock and the unit's
    are held across both stages, so no second crawl writes the unit before its faces are made."""
    from fusekit.crawl.stage import exclusive, plan as plan_crawl, run_crawl

    planned = plan_crawl(config)
    workspace.ensure()
    with exclusive(workspace, f"crawl--{planned[3].name}"):
        report = CrawlRun(run_crawl(workspace, config, planned))
        if config.faces:
            report.faces = _faces_after_crawl(workspace, report)
    return report


def _faces_after_crawl(workspace: Workspace, report: CrawlRun) -> Any:
    try:
        from fusekit.faces import run_faces
    except ImportError:  # an install without the faces stage still crawls
        report.crawl.notes.append(f"the faces stage is not available in this build: run `fusekit faces` later for "
                                  f"{report.unit}")
        return None
    return run_faces(workspace, units=[report.unit])


def faces(workspace: Workspace, config: Any = None, units: list[str] | None = None, **options: Any) -> Any:
    """Run the faces stage (``fusekit.faces.run_faces``) holding the lock of every unit it may write: the named
    ones, or every unit of the images and faces tables."""
    from fusekit.faces import run_faces
    from fusekit.faces.stage import TABLES

    require(workspace)
    available = workspace.units("images")
    if units is None:
        names = {u for table in ("images", *TABLES) for u in workspace.units(table)}
    else:  # as run_faces resolves them: a unit (fer2013/csv), or a dataset with one variant (fer2013)
        names = set()
        for name in units:
            key = str(Unit.parse(name)) if "/" in name else name
            names.update([key] if key in available else [u for u in available if Unit.parse(u).dataset == key] or [key])
    with locks.writing(workspace, names):
        return run_faces(workspace, config, units, **options)


def dedupe(workspace: Workspace, config: Any = None) -> Any:
    """Run the dedupe stage (``fusekit.dedupe.run_dedupe``) holding the workspace lock exclusive: its decisions
    are one unit (``all``) over every unit's faces."""
    from fusekit.dedupe import run_dedupe

    require(workspace)
    with locks.writing_all(workspace, "deduplicating (writing decisions)"):
        return run_dedupe(workspace, config)


def balance(workspace: Workspace, config: Any = None) -> Any:
    """Run the balance stage (``fusekit.balance.run_balance``) holding the workspace lock exclusive."""
    from fusekit.balance import run_balance

    require(workspace)
    with locks.writing_all(workspace, "balancing (writing dataset/)"):
        return run_balance(workspace, config)


def report(workspace: Workspace, out: str | Path | None = None) -> Path:
    """Write the workspace's HTML report (``fusekit.report``; default ``<workspace>/report.html``); its path.

    Reads under the swap lock held shared, as ``status`` does: every table as it was before a concurrent swap or
    after it."""
    from fusekit.report import write_report

    if out is not None and Path(out).is_dir():
        raise UserError(f"--out {out} is a folder: give the HTML file to write (e.g. {Path(out) / 'report.html'})")
    require(workspace)
    workspace.recover()
    with locks.reading(workspace):
        return write_report(workspace, out)


def explain(workspace: Workspace, config: Any = None) -> Any:
    """Class activation maps of a run over sample faces per class (``fusekit.explain``), written to
    ``runs/NAME/explain/``.

    Composes the train stage (the run, its model, its dataset's shards and decoding) with the explain stage, which
    takes a loaded model and decoded faces."""
    import numpy as np

    from fusekit.explain import ExplainConfig, choose, explain_faces
    from fusekit.explain.gradcam import METHODS
    from fusekit.train.data import open_shards, read_columns
    from fusekit.train.decode import decode
    from fusekit.train.evaluate import checkpoint_path, resolve_run
    from fusekit.train.models import load_model

    config = config or ExplainConfig()
    if config.per_class < 1:
        raise UserError(f"--per-class must be at least 1, not {config.per_class}")
    if config.method not in METHODS:  # before the shards are read and the model loaded
        raise UserError(f"--method must be one of {', '.join(METHODS)}, not {config.method!r}")
    run = resolve_run(workspace.root, config.run)
    saved = run.config()
    classes = list(run.dataset_info().get("classes") or [])
    shards = open_shards(saved["data"])
    splits = [config.split] if config.split else [s for s in ("test", "val", "train") if shards.rows(s)]
    if not splits or config.split is not None and not shards.rows(config.split):
        raise UserError(f"the dataset at {shards.root} has no rows in {config.split or 'any split'!r} "
                        f"(splits: {', '.join(sorted(shards.files))})")
    split = splits[0]
    files = shards.files[split]
    meta = read_columns(files, ["label", "source_id", "augmented"])
    classes = classes or list(shards.classes)
    names = [shards.classes[v] for v in meta["label"]]
    mapped = [classes.index(n) if n in classes else -1 for n in names]  # the run's class ids, by name
    rows = choose(mapped, meta["source_id"], [aug or m < 0 for aug, m in zip(meta["augmented"], mapped)],
                  config.per_class)
    if not rows:
        raise UserError(f"the {split} split of {shards.root} has no faces of the run's classes to explain")
    images = _images_at(files, rows)  # the chosen rows' images only, not the split's
    size, channels = int(saved["input_size"]), int(saved["channels"])
    faces = np.stack([decode(images[i]["bytes"], size, channels) for i in rows])
    ckpt = checkpoint_path(run, config.checkpoint)
    model = load_model(ckpt, compile=False)
    return explain_faces(model, faces, [mapped[i] for i in rows], [meta["source_id"][i] for i in rows], classes,
                         run.dir / "explain", run=run.name, split=split, checkpoint=ckpt.name, layer=config.layer,
                         method=config.method)


def _images_at(files: list[Path], rows: list[int]) -> dict[int, Any]:
    """row (numbered over ``files`` one after the other) -> its ``image`` cell, reading only the files that hold one."""
    import pyarrow.parquet as pq

    out: dict[int, Any] = {}
    start = 0
    for path in files:
        count = pq.ParquetFile(path).metadata.num_rows
        local = [r - start for r in rows if start <= r < start + count]
        if local:
            cells = pq.read_table(path, columns=["image"]).column("image").take(local).to_pylist()
            out.update(zip((start + k for k in local), cells))
        start += count
    return out


def audit(workspace: Workspace, config: Any = None) -> Any:
    """Run the audit (``fusekit.audit.run_audit``) holding the workspace lock exclusive: its queue is one unit over
    every unit's faces."""
    from fusekit.audit import AuditConfig, run_audit

    config = config or AuditConfig()
    require(workspace)
    extractor = None
    if config.run is not None:  # the train stage's run, read here: the audit stage imports no other stage
        from fusekit.predict import RunFeatures

        extractor = RunFeatures(workspace, config.run, config.checkpoint)
    with locks.writing_all(workspace, "auditing (writing review_queue)"):
        return run_audit(workspace, config, extractor)


def review(workspace: Workspace, host: str = "127.0.0.1", port: int = 0, echo: Any = print) -> None:
    """Serve the review page (``fusekit.review.serve``) until interrupted. Takes no writer lock: verdicts go to the
    journal, appended under its own file lock, and dedupe and balance may run meanwhile."""
    from fusekit import reviews
    from fusekit.review import serve

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    require(workspace)
    if not workspace.parts(reviews.QUEUE_TABLE, reviews.UNIT):
        raise UserError(f"nothing to review in {workspace.root}: run `fusekit audit` first")
    serve(workspace, host=host, port=port, echo=echo)


@dataclass(frozen=True)
class DatasetEntry:
    manifest: Manifest
    variant: str
    supported: bool


def datasets() -> list[DatasetEntry]:
    """Every dataset and variant fusekit knows, with whether it can be ingested."""
    return [
        DatasetEntry(m, v, spec.supported and sources.implemented(m.name, v))
        for m in all_manifests().values()
        for v, spec in m.variants.items()
    ]


def remove(workspace: Workspace, name: str, variant: str) -> list[str]:
    """Remove an ingested variant from every table that holds its unit (images, rejects, faces, face rejects, the
    dedupe hash cache), and the archive extracted for it when no other unit reads from there. Returns what it
    removed. Decisions and the built dataset are whole-workspace results: they are left for the next
    `fusekit dedupe` / `fusekit balance`, which ``status`` then reports as out of date."""
    try:
        dataset = resolve(name).name
    except SourceNotFound:  # a class-folder dataset goes by the name the user gave it
        dataset = name
    require(workspace)
    with locks.writing_all(workspace, f"removing {dataset}/{variant}"):
        return _remove(workspace, dataset, variant)


def _remove(workspace: Workspace, dataset: str, variant: str) -> list[str]:
    unit = unit_name(dataset, variant)
    anchor = (workspace.unit_info("images", unit) or {}).get("anchor")
    tables = sorted(p.name for p in workspace.tables.iterdir() if p.is_dir()) if workspace.tables.is_dir() else []
    touched = workspace.remove_units(unit, [t for t in tables if unit in workspace.units(t)])
    if not touched:
        held = ", ".join(unit_label(u) for u in workspace.units("images")) or "nothing"
        raise ConfigError(f"{dataset}/{variant} is not in the workspace {workspace.root} (it holds {held})")
    extracted = _extraction_of(workspace, anchor)
    if extracted is not None:
        shutil.rmtree(extracted, ignore_errors=True)
        extracted.with_name(extracted.name + MARKER_SUFFIX).unlink(missing_ok=True)  # what archives.extract wrote
        touched.append(f"sources/{extracted.name}")
    return touched


def _extraction_of(workspace: Workspace, anchor: str | None) -> Path | None:
    """The folder under <workspace>/sources/ an archive was extracted into for ``anchor``, if no unit still left
    in the workspace reads from it."""
    sources = (workspace.root / "sources").resolve()
    where = Path(anchor).resolve() if anchor else sources
    if where == sources or not where.is_relative_to(sources):
        return None
    folder = sources / where.relative_to(sources).parts[0]
    for other in workspace.units("images"):
        theirs = (workspace.unit_info("images", other) or {}).get("anchor")
        if theirs and Path(theirs).resolve().is_relative_to(folder):
            return None
    return folder if folder.is_dir() else None


@dataclass
class DatasetStatus:
    dataset: str
    variants: list[str]
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (split, label) -> images
    rejects: Counter[str] = field(default_factory=Counter)

    @property
    def images(self) -> int:
        return sum(self.counts.values())


def status(workspace: Workspace) -> list[DatasetStatus]:
    """Per dataset: images per split and canonical class, and rejects by reason.

    Holds the swap lock shared while it reads, so every unit is counted as it was before a concurrent swap or
    after it (``fusekit.locks``); a swap that a crash interrupted is finished first."""
    require(workspace)
    workspace.recover()
    with locks.reading(workspace):
        return _status(workspace)


def _status(workspace: Workspace) -> list[DatasetStatus]:
    result: dict[str, DatasetStatus] = {}
    images = workspace.read("images", IMAGES_SCHEMA, columns=["dataset", "variant", "split", "label"])
    for row in images.group_by(["dataset", "variant", "split", "label"]).aggregate([([], "count_all")]).to_pylist():
        entry = result.setdefault(row["dataset"], DatasetStatus(row["dataset"], []))
        if row["variant"] not in entry.variants:
            entry.variants.append(row["variant"])
        entry.counts[(row["split"] or "-", row["label"])] += row["count_all"]
    rejects = workspace.read("rejects", REJECTS_SCHEMA, columns=["dataset", "variant", "reason"])
    for row in rejects.group_by(["dataset", "variant", "reason"]).aggregate([([], "count_all")]).to_pylist():
        entry = result.setdefault(row["dataset"], DatasetStatus(row["dataset"], []))
        if row["variant"] not in entry.variants:
            entry.variants.append(row["variant"])
        entry.rejects[row["reason"]] += row["count_all"]
    for entry in result.values():
        entry.variants.sort()
    return [result[k] for k in sorted(result)]


# The later stages' status sections, in pipeline order: (title, module, function). Imported only when asked.
STAGE_STATUS = (
    ("faces", "fusekit.faces.summary", "status_lines"),
    ("crawl", "fusekit.crawl.stage", "status_lines"),
    ("dedupe", "fusekit.dedupe.report", "status_lines"),
    ("review", "fusekit.reviews", "status_lines"),
    ("dataset", "fusekit.balance.stage", "status_lines"),
    ("runs", "fusekit.train.status", "status_lines"),
)


def stage_status(workspace: Workspace) -> list[tuple[str, list[str]]]:
    """What each later stage says about the workspace (sections with nothing to say are left out)."""
    import importlib

    sections = []
    with locks.reading(workspace):
        for title, module, function in STAGE_STATUS:
            lines = getattr(importlib.import_module(module), function)(workspace)
            if lines:
                sections.append((title, list(lines)))
    return sections


__all__ = ["ingest", "crawl", "faces", "dedupe", "audit", "review", "balance", "report", "explain", "datasets",
           "remove", "status", "require", "NoWorkspace", "IngestConfig", "IngestRun", "CrawlRun", "Workspace"]
