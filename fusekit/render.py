"""Plain-text rendering of reports for the terminal (the CLI prints what these return)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

from fusekit.text import reasons as _reasons
from fusekit.text import split_label_table, table  # noqa: F401 - the names stages used to import here

if TYPE_CHECKING:  # types only: rendering sits below the api and the stages, never above them
    from fusekit.api import DatasetEntry, DatasetStatus
    from fusekit.ingest import IngestReport


def ingest_report(report: IngestReport) -> str:
    """``IngestReport.render`` (kept under this name for callers of the old renderer)."""
    return report.render()


def faces_report(report: Any) -> str:
    """`fusekit faces` summary (``FacesReport.render``; kept under this name for callers of the old renderer)."""
    return str(report.render())


def faces_line(faces: Any) -> str:
    """One line from the faces stage's report (read by attribute, so a change there degrades to less detail)."""
    parts = []
    for name, label in (("processed", "pictures looked at"), ("faces", "faces"), ("aligned", "aligned")):
        value = getattr(faces, name, None)
        if isinstance(value, int):
            parts.append(f"{value:,} {label}")
    rejects = getattr(faces, "rejects", None)
    if isinstance(rejects, Counter):
        detail = _reasons(rejects)
        parts.append(f"{sum(rejects.values()):,} rejected" + (f" ({detail})" if detail else ""))
    seconds = getattr(faces, "seconds", None)
    if isinstance(seconds, float):
        parts.append(f"{seconds:.1f} s")
    return ", ".join(parts) if parts else "done"


def datasets_table(entries: Sequence[DatasetEntry]) -> str:
    rows = []
    for entry in entries:
        m = entry.manifest
        aliases = ", ".join(m.aliases[:3])
        rows.append([m.name, aliases, entry.variant, "yes" if entry.supported else "not yet",
                     m.variants[entry.variant].terms.id])
    out = [table(["dataset", "aliases", "variant", "supported", "terms"], rows), ""]
    seen = set()
    for entry in entries:
        m = entry.manifest
        if m.name in seen:
            continue
        seen.add(m.name)
        out.append(f"{m.name} - {m.title}")
        out.append(f"  homepage: {m.homepage or '-'}")
        out.append(f"  get it:   {' '.join(m.get.split())}")
        out.append(f"  terms:    {m.terms.summary}" + (" [NON-COMMERCIAL]" if m.terms.non_commercial else ""))
        if m.citation:
            out.append(f"  cite:     {m.citation}")
    return "\n".join(out)


def status_report(entries: Sequence[DatasetStatus], root: str,
                  sections: Sequence[tuple[str, Sequence[str]]] = ()) -> str:
    if not entries:  # nothing ingested or crawled: later stages have nothing to say either
        return f"workspace {root} holds no data yet: start with `fusekit ingest NAME --source PATH` or `fusekit demo`"
    out = [f"workspace {root}"]
    for entry in entries:
        out.append("")
        out.append(f"{entry.dataset} ({', '.join(entry.variants)}): {entry.images:,} images")
        if entry.counts:
            out.append(split_label_table(entry.counts))
        if entry.rejects:
            out.append(f"rejected {sum(entry.rejects.values()):,}: {_reasons(entry.rejects)}")
    for title, lines in sections:
        out.append("")
        out.append(f"== {title} ==")
        out.extend(lines)
    return "\n".join(out)
