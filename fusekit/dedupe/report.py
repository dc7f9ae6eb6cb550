"""What `fusekit dedupe` prints, what `fusekit status` shows for it, and the summary of the last run."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fusekit.dedupe.stage import UNIT, DedupeReport
from fusekit.records import DECISIONS_SCHEMA
from fusekit.text import table
from fusekit.workspace import Workspace, digest


def pair_matrix_table(matrix: dict[str, dict[str, int]], datasets: list[str]) -> str:
    names = [d for d in datasets if any(d in (x, y) for x, row in matrix.items() for y in row)]
    if not names:
        return "no duplicate pairs"
    def cell(x: str, y: str) -> int:
        a, b = sorted((x, y))
        return matrix.get(a, {}).get(b, 0)
    return table(["pairs"] + names, [[x] + [cell(x, y) for y in names] for x in names])


def render_report(report: DedupeReport) -> str:
    dropped = sum(report.dropped.values())
    lines = [
        f"{report.faces:,} faces in, {report.kept:,} kept, {report.review:,} to review, {dropped:,} dropped"
        + (f" ({', '.join(f'{r} {c:,}' for r, c in sorted(report.dropped.items(), key=lambda kv: (-kv[1], kv[0])))})"
           if dropped else ""),
        f"{report.groups:,} duplicate groups ({report.grouped_faces:,} faces): {report.exact_pairs:,} exact pairs, "
        f"{report.candidates:,} hash candidates -> {report.confirmed:,} confirmed near pairs",
        f"{report.conflicts:,} label-conflict groups, {report.cross_split_groups:,} groups span splits "
        f"({report.test_leakage_groups:,} with an official test face)",
        "duplicate pairs per pair of datasets:",
        pair_matrix_table(report.pair_matrix, report.datasets),
    ]
    official = official_test_line(report)
    if official:
        lines.append(official)
    lines += [f"warning: {w}" for w in report.warnings]
    for ex in report.conflict_examples[:5]:
        lines.append(f"conflict: group {ex['group']} ({ex['size']} faces) labels {', '.join(ex['labels'])}")
    lines.append(f"hashed {len(report.hashed_units)} unit(s), cached {len(report.cached_units)}; "
                 + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items()))
    return "\n".join(lines)


def official_test_line(report: DedupeReport) -> str | None:
    """One line: the official test splits kept whole, per dataset its members and what was flagged, by kind (a face
    may carry several kinds), e.g. ``fer2013 3,589 (flagged 393: too_small 341, near_duplicate_of 52)``."""
    if not report.test_members:
        return None
    parts = []
    for dataset, members in report.test_members.items():
        flagged = report.test_flagged.get(dataset, 0)
        kinds = sorted(report.test_flags.get(dataset, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        parts.append(f"{dataset} {members:,} (" + (f"flagged {flagged:,}: " + ", ".join(
            f"{k} {v:,}" for k, v in kinds) if flagged else "none flagged") + ")")
    return "official test kept whole: " + "; ".join(parts)


def summary(workspace: Workspace) -> dict[str, Any] | None:
    """The last run's report (from the decisions unit's info), or None when dedupe has not run."""
    info = workspace.unit_info("decisions", UNIT)
    return info.get("report") if info else None


def render_summary(workspace: Workspace) -> str:
    data = summary(workspace)
    if data is None:
        return "dedupe has not run in this workspace"
    report = DedupeReport(**{k: v for k, v in data.items() if k in DedupeReport.__dataclass_fields__})
    report.dropped = Counter(data.get("dropped", {}))
    return render_report(report)


def status_lines(workspace: Workspace) -> list[str]:
    """Kept, review and dropped counts by reason, per dataset, from the `decisions` table."""
    if not workspace.units("decisions"):
        return ["dedupe: not run"]
    table = workspace.read("decisions", DECISIONS_SCHEMA, units=[UNIT], columns=["dataset", "decision", "reason"])
    rows = Counter(zip(*(table.column(c).to_pylist() for c in ("dataset", "decision", "reason"))))
    info = workspace.unit_info("decisions", UNIT) or {}
    total = Counter()
    for (_, decision, reason), count in rows.items():
        total[decision if decision != "drop" else f"drop:{reason}"] += count
    head = (f"dedupe: {table.num_rows:,} faces, {total.get('keep', 0):,} kept, {total.get('review', 0):,} to review, "
            f"{sum(v for k, v in total.items() if k.startswith('drop:')):,} dropped")
    reasons = ", ".join(f"{k[5:]} {v:,}" for k, v in sorted(total.items()) if k.startswith("drop:"))
    lines = [head + (f" ({reasons})" if reasons else "")]
    per = Counter()
    for (dataset, decision, _), count in rows.items():
        per[(dataset, decision)] += count
    for dataset in sorted({d for d, _ in per}):
        lines.append(f"  {dataset}: kept {per[(dataset, 'keep')]:,}, review {per[(dataset, 'review')]:,}, "
                     f"dropped {per[(dataset, 'drop')]:,}")
    if info.get("report", {}).get("groups") is not None:
        rep = info["report"]
        lines.append(f"  {rep['groups']:,} duplicate groups, {rep['conflicts']:,} label conflicts, "
                     f"{rep['cross_split_groups']:,} span splits")
    if info.get("faces") is not None and info["faces"] != digest(workspace.listing("faces")):
        lines.append("  out of date: the faces changed since (a dataset ingested, re-ingested or removed): "
                     "run `fusekit dedupe`")
    return lines
