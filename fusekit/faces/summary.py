"""What the faces stage holds, per dataset, for `fusekit status` (reads only id and count columns)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fusekit.records import FACES_SCHEMA, IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.workspace import Workspace


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


def _reasons(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


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
