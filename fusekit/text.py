"""Plain-text tables and counts for the terminal: the ground floor every report renders with.

It imports no stage, the api or the CLI (tests/test_layering.py), so any stage's report can use it without
lifting that stage above the api.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from fusekit.records import SPLITS
from fusekit.taxonomy import CLASSES


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A left-aligned text table with a rule under the headers; numbers right-aligned, ints with thousands commas."""
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


def reasons(counter: Mapping[str, int]) -> str:
    """``reason count, ...``, most frequent first (ties by name), as every summary line lists rejects."""
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def split_label_table(counts: Counter[tuple[str, str]]) -> str:
    """Images per canonical class (rows) and split (columns), with totals."""
    splits = [s for s in (*SPLITS, "-") if any(k[0] == s for k in counts)]
    labels = [c for c in CLASSES if any(k[1] == c for k in counts)]
    rows = [[label, *(counts.get((s, label), 0) for s in splits), sum(counts.get((s, label), 0) for s in splits)]
            for label in labels]
    rows.append(["total", *(sum(counts.get((s, lab), 0) for lab in labels) for s in splits), sum(counts.values())])
    return table(["class", *[s if s != "-" else "no split" for s in splits], "total"], rows)
