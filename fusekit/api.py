"""The public verbs of fusekit. Each takes a workspace and a config and returns a report; none prints."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fusekit import sources
from fusekit.archives import MARKER_SUFFIX
from fusekit.config import IngestConfig
from fusekit.errors import ConfigError, SourceNotFound
from fusekit.ingest import IngestReport, run_ingest
from fusekit.manifests import Manifest, all_manifests, resolve
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Workspace, unit_name


def ingest(workspace: Workspace, config: IngestConfig) -> IngestReport:
    """Read a dataset in its native layout into the `images` table (see `fusekit.ingest`)."""
    return run_ingest(workspace, config)


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
    unit = unit_name(dataset, variant)
    anchor = (workspace.unit_info("images", unit) or {}).get("anchor")
    tables = sorted(p.name for p in workspace.tables.iterdir() if p.is_dir()) if workspace.tables.is_dir() else []
    touched = []
    for table in tables:
        if unit in workspace.units(table):
            workspace.remove_unit(table, unit)
            touched.append(table)
    if not touched:
        held = ", ".join(u.replace("--", "/") for u in workspace.units("images")) or "nothing"
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
    """Per dataset: images per split and canonical class, and rejects by reason."""
    workspace.recover()
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
    ("dataset", "fusekit.balance.stage", "status_lines"),
    ("runs", "fusekit.train.status", "status_lines"),
)


def stage_status(workspace: Workspace) -> list[tuple[str, list[str]]]:
    """What each later stage says about the workspace (sections with nothing to say are left out)."""
    import importlib

    sections = []
    for title, module, function in STAGE_STATUS:
        lines = getattr(importlib.import_module(module), function)(workspace)
        if lines:
            sections.append((title, list(lines)))
    return sections


__all__ = ["ingest", "datasets", "remove", "status", "IngestConfig", "Workspace"]
