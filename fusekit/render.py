"""Plain-text rendering of reports for the terminal (the CLI prints what these return)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from fusekit.api import DatasetEntry, DatasetStatus
from fusekit.ingest import IngestReport
from fusekit.records import SPLITS
from fusekit.taxonomy import CLASSES


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").isdigit()


def split_label_table(counts: Counter[tuple[str, str]]) -> str:
    splits = [s for s in (*SPLITS, "-") if any(k[0] == s for k in counts)]
    labels = [c for c in CLASSES if any(k[1] == c for k in counts)]
    rows = [[label, *(counts.get((s, label), 0) for s in splits), sum(counts.get((s, label), 0) for s in splits)]
            for label in labels]
    rows.append(["total", *(sum(counts.get((s, lab), 0) for lab in labels) for s in splits), sum(counts.values())])
    return table(["class", *[s if s != "-" else "no split" for s in splits], "total"], rows)


def ingest_report(report: IngestReport) -> str:
    lines = [f"{report.dataset}: detected variant {report.variant!r} at {report.anchor}"]
    lines += [f"warning: {w}" for w in report.warnings]
    lines.append(split_label_table(report.by_split_label) if report.images else "no images")
    lines.append(f"{report.images:,} images, {report.rejected:,} rejected"
                 + (f" ({_reasons(report.rejects)})" if report.rejects else "")
                 + f", {report.seconds:.1f} s" + (f", resumed {report.resumed_parts} of {report.parts} parts"
                                                  if report.resumed_parts else ""))
    lines += [f"note: {n}" for n in report.notes]
    if report.faces is not None:
        lines.append(faces_report(report.faces))
    return "\n".join(lines)


NO_FACE_WARN = 0.05  # a unit losing more than this share to no_face is told which flag would keep them


def faces_report(report) -> str:  # noqa: ANN001 - a fusekit.faces.FacesReport (not imported: it pulls in OpenCV)
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
        lines.append(f"faces {unit.replace('--', '/')}: removed (its images are gone from the workspace)")
    if report.nothing_to_do:
        lines.append("faces: nothing new to do")
    elif report.workers > 1:
        lines.append(f"faces: {report.workers} worker processes, {report.seconds:.1f} s")
    return "\n".join(lines)


def _reasons(counter: Counter[str]) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


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
