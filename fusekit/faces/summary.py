"""The faces stage's text: its report (``FacesReport.render``) and what it holds per dataset for `fusekit status`
(reads only id and count columns)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fusekit.text import reasons as _reasons
from fusekit.records import FACES_SCHEMA, IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Workspace, unit_label

if TYPE_CHECKING:  # the report's module loads the detector's dependencies; its type is all this needs
    from fusekit.faces.stage import FacesReport


@dataclass
class FaceCounts:
    dataset: str
    images: int = 0  # images rows
    done: int = 0  # images rows with a faces result or a reject
    faces: int = 0
    aligned: int = 0
    unaligned: Counter[str] = field(default_factory=Counter)  # method -> faces kept unaligned
    rejects: Counter[str] = field(default_factory=Counter)

    @property
    def pending(self) -> int:
        return max(0, self.images - self.done)


def counts(workspace: Workspace) -> list[FaceCounts]:
    """Per dataset: images, faces found, aligned, kept unaligned (by method), rejected (by reason), not yet done.
    Read-only: it reads committed parts as they are (``fusekit status`` has already finished interrupted swaps)."""
    result: dict[str, FaceCounts] = {}
    images = workspace.read("images", IMAGES_SCHEMA, columns=["id", "dataset"])
    ids_by_dataset: dict[str, set[str]] = {}
    for image_id, dataset in zip(images.column("id").to_pylist(), images.column("dataset").to_pylist()):
        ids_by_dataset.setdefault(dataset, set()).add(image_id)
    for dataset, ids in ids_by_dataset.items():
        result[dataset] = FaceCounts(dataset, images=len(ids))
    done: dict[str, set[str]] = {}
    faces = workspace.read("faces", FACES_SCHEMA, columns=["image_id", "dataset", "aligned", "method"])
    for image_id, dataset, aligned, method in zip(*(faces.column(c).to_pylist() for c in faces.column_names)):
        if image_id not in ids_by_dataset.get(dataset, ()):
            continue  # an orphan: the next `fusekit faces` removes it
        entry = result[dataset]
        entry.faces += 1
        if aligned:
            entry.aligned += 1
        else:
            entry.unaligned[method] += 1
        done.setdefault(dataset, set()).add(image_id)
    rejects = workspace.read("face_rejects", REJECTS_SCHEMA, columns=["id", "dataset", "reason"])
    for image_id, dataset, reason in zip(*(rejects.column(c).to_pylist() for c in rejects.column_names)):
        if image_id not in ids_by_dataset.get(dataset, ()):
            continue
        result[dataset].rejects[reason] += 1
        done.setdefault(dataset, set()).add(image_id)
    for dataset, ids in done.items():
        result[dataset].done = len(ids)
    return [result[k] for k in sorted(result)]


def status_lines(workspace: Workspace) -> list[str]:
    """One line per dataset: faces found, aligned, kept unaligned, rejected, and images not processed yet."""
    entries = counts(workspace)
    if not entries:
        return []
    lines = []
    for e in entries:
        if not e.done:
            lines.append(f"{e.dataset}: no faces yet ({e.images:,} images waiting: run `fusekit faces`)")
            continue
        unaligned = sum(e.unaligned.values())
        text = (f"{e.dataset}: {e.faces:,} faces from {e.done:,} images, {e.aligned:,} aligned, "
                f"{unaligned:,} kept unaligned" + (f" ({_reasons(e.unaligned)})" if unaligned else "")
                + f", {sum(e.rejects.values()):,} rejected" + (f" ({_reasons(e.rejects)})" if e.rejects else ""))
        if e.pending:
            text += f"; {e.pending:,} images not processed yet (run `fusekit faces`)"
        lines.append(text)
    return lines


NO_FACE_WARN = 0.05  # a unit losing more than this share to no_face is told which flag would keep them


def render_report(report: FacesReport) -> str:
    """`fusekit faces` summary: per images unit, faces found, aligned, kept unaligned, rejected."""
    if not report.units and not report.removed_units:
        return "faces: no images in the workspace yet"
    lines = []
    for unit in report.units:
        name = f"{unit.dataset}/{unit.variant}"
        if unit.up_to_date:
            lines.append(f"faces {name}: up to date ({unit.carried:,} images done earlier)")
            continue
        unaligned = sum(unit.unaligned.values())
        text = (f"faces {name} [{unit.policy}]: {unit.processed:,} images -> {unit.faces:,} faces, "
                f"{unit.aligned:,} aligned, {unaligned:,} kept unaligned"
                + (f" ({_reasons(unit.unaligned)})" if unaligned else "")
                + f", {unit.rejected:,} rejected" + (f" ({_reasons(unit.rejects)})" if unit.rejects else "")
                + f", {unit.seconds:.1f} s")
        extras = []
        if unit.carried:
            extras.append(f"{unit.carried:,} images kept from earlier runs")
        if unit.orphans:
            extras.append(f"{unit.orphans:,} orphaned results removed")
        if unit.resumed_parts:
            extras.append(f"resumed {unit.resumed_parts} of {unit.parts} parts")
        lines.append(text + (f"; {', '.join(extras)}" if extras else ""))
        if unit.policy_reason:
            lines.append(f"  policy {unit.policy}: {unit.policy_reason}")
        no_face = unit.rejects.get("no_face", 0)
        if unit.processed and no_face > NO_FACE_WARN * unit.processed:
            lines.append(f"  warning: {no_face:,} of {unit.processed:,} images ({no_face / unit.processed:.0%}) had no face "
                         f"under the {unit.policy} policy; if they are face crops, "
                         f"`fusekit faces --policy {unit.dataset}=precropped` keeps them")
    for unit in report.removed_units:
        lines.append(f"faces {unit_label(unit)}: removed (its images are gone from the workspace)")
    if report.nothing_to_do:
        lines.append("faces: nothing new to do")
    elif report.workers > 1:
        lines.append(f"faces: {report.workers} worker processes, {report.seconds:.1f} s")
    return "\n".join(lines)
