"""The `reviews` table: a person's verdicts on faces, kept so that none is ever lost, and what they mean.

The review server (``fusekit.review``) appends each verdict as one JSON line to the journal
``tables/reviews/all/_journal.jsonl`` (``O_APPEND``, under an exclusive ``flock``, then ``fsync``) and only then
answers "saved": a verdict the page showed as saved is on disk, whatever happens to the server after. ``compact``
writes the journal as the Parquet table ``tables/reviews/all/part-00000.parquet`` (``REVIEWS_SCHEMA``); the journal
stays the truth, and ``load`` reads it (a last line cut short by a crash was never answered "saved" and is skipped).

Verdicts are keyed by face id, which is stable (dataset, variant, source path, face index): they survive re-ingests
and reruns of every stage. A face's verdict is its last one (by ``seq``) that no ``undo`` took back, so two tabs on
one queue never corrupt each other: both verdicts are recorded, the later one counts.

What a verdict does (``outcome``), for dedupe's decisions and balance's selection alike: ``reject`` drops the face
(reason ``review_rejected``); ``relabel`` keeps it with the new label; ``accept`` keeps it as labelled (a face that
dedupe sent to review, a label conflict, goes in). A face dedupe dropped stays dropped unless rejected (then the
reason says so). An official test member is never altered: the verdict becomes a flag (``review_rejected``,
``review_relabel:<class>``) and the face keeps its label.

This module is the ground floor: it imports no stage, and stages import it.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from fusekit.errors import ConfigError
from fusekit.records import REVIEW_QUEUE_SCHEMA, REVIEW_REASONS, REVIEW_VERDICTS, REVIEWS_SCHEMA
from fusekit.taxonomy import CLASSES
from fusekit.workspace import Workspace

TABLE = "reviews"
QUEUE_TABLE = "review_queue"
UNIT = "all"
JOURNAL = "_journal.jsonl"
REJECTED = "review_rejected"


def journal_path(workspace: Workspace) -> Path:
    return workspace.unit_dir(TABLE, UNIT) / JOURNAL


@dataclass(frozen=True)
class Verdict:
    """The verdict that counts for one face."""

    face_id: str
    verdict: str  # accept | reject | relabel
    label: str | None  # the label the face has after it (reject: None)
    seq: int


class Journal:
    """The append-only verdict log of one workspace. Safe across threads and processes: every append holds an
    exclusive ``flock`` on the file, numbers the entry after the last one on disk and fsyncs before returning."""

    def __init__(self, workspace: Workspace) -> None:
        self.path = journal_path(workspace)
        self._lock = threading.Lock()
        self._known: tuple[int, int] | None = None  # (file size, last seq) after our last look

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Validate ``entry``, give it ``seq`` and ``at``, write it durably; returns the row written."""
        row = _validated(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if self._known is None or self._known[0] != size:  # someone else appended: read the last seq
                    self._known = (size, _last_seq(self.path))
                row["seq"] = self._known[1] + 1
                row["at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                data = (json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n").encode()
                if size and not _ends_with_newline(fd, size):  # a line cut short by a crash: never joined to ours
                    data = b"\n" + data
                os.write(fd, data)
                os.fsync(fd)
                if not size:  # the journal was just created: its folder entry must reach the disk too
                    _fsync_dir(self.path.parent)
                self._known = (size + len(data), row["seq"])
            finally:
                os.close(fd)  # releases the flock
        return row


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(fd: int, size: int) -> bool:
    return os.pread(fd, 1, size - 1) == b"\n"


def _validated(entry: dict[str, Any]) -> dict[str, Any]:
    verdict = entry.get("verdict")
    if verdict not in REVIEW_VERDICTS:
        raise ConfigError(f"a verdict is one of {', '.join(REVIEW_VERDICTS)}, got {verdict!r}")
    face_id = entry.get("face_id")
    if not isinstance(face_id, str) or not face_id:
        raise ConfigError("a verdict needs the face_id it is about")
    label = entry.get("label")
    if verdict == "relabel" and label not in CLASSES:
        raise ConfigError(f"relabel needs a class ({', '.join(CLASSES)}), got {label!r}")
    undoes = entry.get("undoes")
    if verdict == "undo" and not isinstance(undoes, int):
        raise ConfigError("undo needs the seq of the verdict it takes back")
    row = {name: None for name in REVIEWS_SCHEMA.names}
    row.update({k: entry.get(k) for k in ("face_id", "verdict", "label", "was_label", "reason", "undoes", "tab")})
    if verdict in ("reject", "undo"):
        row["label"] = None
    elif verdict == "accept":
        row["label"] = entry.get("was_label") if label is None else label
    for key in ("was_label", "reason", "tab", "label"):
        if row[key] is not None:
            row[key] = str(row[key])[:200]
    return row


def _last_seq(path: Path) -> int:
    rows = _read_journal(path)
    return rows[-1]["seq"] if rows else 0


def _read_journal(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return rows
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # a line a crash cut short (never answered "saved")
            continue
        if isinstance(row, dict) and isinstance(row.get("seq"), int):
            rows.append(row)
    rows.sort(key=lambda r: r["seq"])
    return rows


def load(workspace: Workspace) -> list[dict[str, Any]]:
    """Every verdict row, in seq order: from the journal, or from the compacted table when there is no journal."""
    path = journal_path(workspace)
    if path.exists():
        return _read_journal(path)
    return workspace.read(TABLE, REVIEWS_SCHEMA, units=[UNIT]).to_pylist()


def effective(rows: list[dict[str, Any]]) -> dict[str, Verdict]:
    """face id -> the verdict that counts: the last one (by seq) that no undo took back."""
    live: dict[int, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["seq"]):
        if row["verdict"] == "undo":
            live.pop(row.get("undoes"), None)
        else:
            live[row["seq"]] = row
    result: dict[str, Verdict] = {}
    for seq in sorted(live):
        row = live[seq]
        result[row["face_id"]] = Verdict(row["face_id"], row["verdict"], row.get("label"), seq)
    return result


def verdicts(workspace: Workspace) -> dict[str, Verdict]:
    """What dedupe and balance apply: face id -> its verdict."""
    return effective(load(workspace))


def compact(workspace: Workspace) -> pa.Table:
    """Write the journal as the `reviews` Parquet table (when it changed since the last compaction); returns it."""
    rows = load(workspace)
    table = pa.Table.from_pylist(rows, schema=REVIEWS_SCHEMA) if rows else REVIEWS_SCHEMA.empty_table()
    path = journal_path(workspace)
    if not path.exists():
        return table
    key = {"journal_bytes": path.stat().st_size, "rows": len(rows)}
    if (workspace.unit_info(TABLE, UNIT) or {}).get("key") != key or not workspace.parts(TABLE, UNIT):
        workspace.write_unit(TABLE, UNIT, table, {"stage": "review", "key": key})
    return table


def fingerprint(workspace: Workspace) -> list[list[Any]]:
    """The journal as (name, size, mtime): what balance adds to its inputs (a new verdict makes a dataset stale)."""
    path = journal_path(workspace)
    if not path.is_file():
        return []
    stat = path.stat()
    return [[f"{TABLE}/{UNIT}/{JOURNAL}", stat.st_size, stat.st_mtime_ns]]


def outcome(verdict: Verdict | None, decision: str, reason: str | None, label: str | None,
            official_test: bool) -> tuple[str, str | None, str | None, str | None]:
    """(decision, reason, label, flag) of a face after its verdict (see the module docstring)."""
    if verdict is None:
        return decision, reason, label, None
    if official_test:  # the benchmark's test split is never altered: the verdict is a flag
        if verdict.verdict == "reject":
            return decision, reason, label, REJECTED
        if verdict.verdict == "relabel" and verdict.label != label:
            return decision, reason, label, f"review_relabel:{verdict.label}"
        return decision, reason, label, None
    if verdict.verdict == "reject":
        return "drop", REJECTED, label, None
    if decision == "drop":
        return decision, reason, label, None
    new_label = verdict.label if verdict.verdict == "relabel" and verdict.label else label
    return "keep", None, new_label, None


def applied(decisions: pa.Table, given: dict[str, Verdict]) -> pa.Table:
    """``decisions`` (with at least face_id, decision, reason, label and split) as a person's verdicts make them
    (``outcome``): what dedupe's summary and the report count. The table on disk stays the machine's; only the rows
    with a verdict change (their flags too, when the table has that column)."""
    import pyarrow.compute as pc

    if not given or not decisions.num_rows:
        return decisions
    hit = pc.indices_nonzero(pc.is_in(decisions.column("face_id"), value_set=pa.array(sorted(given), pa.string())))
    if not len(hit):
        return decisions
    names = [c for c in ("decision", "reason", "label", "flags") if c in decisions.column_names]
    columns = {c: decisions.column(c).to_pylist() for c in names}
    ids, splits = decisions.column("face_id").to_pylist(), decisions.column("split").to_pylist()
    for i in hit.to_pylist():
        decision, reason, label, flag = outcome(given[ids[i]], columns["decision"][i], columns["reason"][i],
                                                columns["label"][i], splits[i] == "test")
        columns["decision"][i], columns["reason"][i], columns["label"][i] = decision, reason, label
        if flag and "flags" in columns and flag not in (columns["flags"][i] or []):
            columns["flags"][i] = [*(columns["flags"][i] or []), flag]
    for c in names:
        decisions = decisions.set_column(decisions.column_names.index(c), decisions.schema.field(c),
                                         pa.array(columns[c], decisions.schema.field(c).type))
    return decisions


@dataclass(frozen=True)
class Progress:
    """How far the review has got: what `fusekit status` says and the report's #review section shows."""

    queued: dict[str, int] | None  # reason -> faces queued (in REVIEW_REASONS order); None: no queue yet
    done: dict[str, int] | None  # reason -> queued faces with a verdict
    verdicts: dict[str, int]  # accept / relabel / reject -> faces whose verdict it is (queued or not)
    entries: int  # journal lines, undos and superseded verdicts included

    @property
    def faces_queued(self) -> int:
        return sum((self.queued or {}).values())

    @property
    def faces_done(self) -> int:
        return sum((self.done or {}).values())

    def left(self) -> dict[str, int]:
        """reason -> queued faces still without a verdict."""
        return {r: n - (self.done or {}).get(r, 0) for r, n in (self.queued or {}).items()}


def progress(workspace: Workspace) -> Progress | None:
    """The review's progress, read from the queue and the journal (None when there is neither)."""
    has_queue = bool(workspace.parts(QUEUE_TABLE, UNIT))
    rows = load(workspace)
    if not has_queue and not rows:
        return None
    given = effective(rows)
    queued = done = None
    if has_queue:
        queue = workspace.read(QUEUE_TABLE, REVIEW_QUEUE_SCHEMA, units=[UNIT], columns=["face_id", "reason"])
        pairs = list(zip(queue.column("face_id").to_pylist(), queue.column("reason").to_pylist()))
        counts = Counter(reason for _, reason in pairs)
        finished = Counter(reason for face_id, reason in pairs if face_id in given)
        order = [r for r in REVIEW_REASONS if counts.get(r)] + sorted(set(counts) - set(REVIEW_REASONS))
        queued = {r: counts[r] for r in order}
        done = {r: finished.get(r, 0) for r in order}
    kinds = Counter(v.verdict for v in given.values())
    return Progress(queued, done, {k: kinds.get(k, 0) for k in ("accept", "relabel", "reject")}, len(rows))


def status_lines(workspace: Workspace) -> list[str]:
    """What `fusekit status` says about the review queue and the verdicts given."""
    state = progress(workspace)
    if state is None:
        return []
    lines = []
    if state.queued is not None:
        lines.append(f"review: {state.faces_queued:,} faces queued, {state.faces_done:,} done, "
                     f"{state.faces_queued - state.faces_done:,} left ("
                     + ", ".join(f"{r} {n:,}" for r, n in state.queued.items()) + ")")
    else:
        lines.append("review: no queue (run `fusekit audit`)")
    kinds = state.verdicts
    lines.append(f"  verdicts: {sum(kinds.values()):,} faces ({kinds['accept']:,} accepted, "
                 f"{kinds['relabel']:,} relabelled, {kinds['reject']:,} rejected), "
                 f"{state.entries:,} entries in the journal")
    return lines


def read_queue(workspace: Workspace) -> pa.Table:
    """The `review_queue` table (empty when audit has not run)."""
    return workspace.read(QUEUE_TABLE, REVIEW_QUEUE_SCHEMA, units=[UNIT])
