"""How many deliberately flipped labels `fusekit audit` finds: recall within a queue of 3x their number.

Run it on a COPY of a workspace that holds real faces and decisions (it rewrites the copy's faces labels):

    cp -r /path/to/workspace /tmp/audit-work
    python benchmarks/audit_flipped.py --workspace /tmp/audit-work --rate 0.10 [--run NAME]

It flips ``--rate`` of the kept training faces (official ``train`` split, decision keep), chosen by a seeded draw
over the sorted face ids, each to another class drawn uniformly, by rewriting the ``label``/``label_id`` columns of
the copy's faces parts (and ``label`` in decisions); the flipped ids and their true labels are kept in
``<workspace>/flipped.json``, so a second run reuses them instead of flipping again. Then it runs the audit with
``--issues 3N`` and prints, for N flipped faces: recall within that queue (label_issue + low_score rows), cleanlab's
own set (its size, recall and precision), the heads' out-of-sample accuracy and the times, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusekit import api  # noqa: E402
from fusekit.audit import AuditConfig  # noqa: E402
from fusekit.reviews import read_queue  # noqa: E402
from fusekit.records import DECISIONS_SCHEMA  # noqa: E402
from fusekit.taxonomy import CLASS_ID, CLASSES  # noqa: E402
from fusekit.workspace import Workspace, write_json_atomic, write_parquet_atomic  # noqa: E402


def flip(ws: Workspace, rate: float, seed: int) -> dict[str, str]:
    """Flip the labels in the copy; returns face id -> true label (from flipped.json when done before)."""
    record = ws.root / "flipped.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))["true_labels"]
    decisions = ws.read("decisions", DECISIONS_SCHEMA, units=["all"], columns=["face_id", "split", "decision", "label"])
    rows = [(f, lab) for f, s, d, lab in zip(*(decisions.column(c).to_pylist() for c in decisions.column_names))
            if s == "train" and d == "keep" and lab in CLASSES[:7]]
    rows.sort()
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(rows), size=int(round(rate * len(rows))), replace=False).tolist())
    true = {rows[k][0]: rows[k][1] for k in chosen}
    new = {}
    for face_id, label in true.items():
        others = [c for c in CLASSES[:7] if c != label]
        new[face_id] = others[int(rng.integers(len(others)))]
    for entry in ws.listing("faces"):
        path = ws.tables / entry[0]
        part = pq.read_table(path)
        ids = part.column("id").to_pylist()
        if not any(i in new for i in ids):
            continue
        labels = [new.get(i, lab) for i, lab in zip(ids, part.column("label").to_pylist())]
        part = part.set_column(part.schema.get_field_index("label"), "label", pa.array(labels, pa.string()))
        part = part.set_column(part.schema.get_field_index("label_id"), "label_id",
                               pa.array([CLASS_ID.get(x) for x in labels], pa.int8()))
        write_parquet_atomic(part, path)
    path = ws.unit_dir("decisions", "all") / "part-00000.parquet"
    table = pq.read_table(path, schema=DECISIONS_SCHEMA)
    labels = [new.get(i, lab) for i, lab in zip(table.column("face_id").to_pylist(), table.column("label").to_pylist())]
    write_parquet_atomic(table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels)), path)
    write_json_atomic({"rate": rate, "seed": seed, "eligible": len(rows), "true_labels": true, "new_labels": new},
                      record)
    return true


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", required=True, type=Path, help="a COPY of a workspace (its labels change)")
    parser.add_argument("--rate", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default=None, help="a trained run's features instead of the built-in ones")
    args = parser.parse_args()
    ws = Workspace(args.workspace)
    t = time.perf_counter()
    true = flip(ws, args.rate, args.seed)
    flipped = set(true)
    n = len(flipped)
    print(f"flipped {n:,} training labels ({args.rate:.0%} of the kept training faces) in "
          f"{time.perf_counter() - t:.1f} s")
    report = api.audit(ws, AuditConfig(run=args.run, issues=3 * n, seed=args.seed))
    queue = read_queue(ws)
    reasons = queue.column("reason").to_pylist()
    ids = queue.column("face_id").to_pylist()
    issue_ids = [i for i, r in zip(ids, reasons) if r in ("label_issue", "low_score")]
    found = [i for i, r in zip(ids, reasons) if r == "label_issue"]
    hit = len(set(issue_ids) & flipped)
    hit_found = len(set(found) & flipped)
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": f"{platform.node()} {platform.machine()}",
        "features": report.features, "faces_scored": report.scored, "flipped": n, "queue": len(issue_ids),
        "recall_at_3x": round(hit / n, 4) if n else None,
        "precision_at_3x": round(hit / len(issue_ids), 4) if issue_ids else None,
        "cleanlab_issues": report.issues_found, "cleanlab_found": len(found),
        "cleanlab_recall": round(hit_found / n, 4) if n else None,
        "cleanlab_precision": round(hit_found / len(found), 4) if found else None,
        "oos_accuracy": report.accuracy, "seconds": report.seconds,
    }
    print(f"features {report.features}; {report.scored:,} kept faces scored, out-of-sample accuracy "
          f"{report.accuracy:.1%}")
    print(f"recall within a queue of 3x ({len(issue_ids):,}): {hit:,} / {n:,} = {hit / max(n, 1):.1%}")
    print(f"cleanlab found {report.issues_found:,} label issues (official test members included); in the queue "
          f"{len(found):,} of them, {hit_found:,} flipped (recall {hit_found / max(n, 1):.1%}, "
          f"precision {hit_found / max(len(found), 1):.1%})")
    print(f"seconds: {report.seconds}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
