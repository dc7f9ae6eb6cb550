"""`fusekit audit`: every kept face scored out of sample; likely label errors queued for a person (`review_queue`).

Steps: read the faces dedupe kept or sent to review (with the verdicts already given applied: a rejected face is
left out, a relabelled one scored under its new label), turn each aligned crop into features (``features.py``: a
trained run's penultimate activations with ``--run``, else the built-in HOG + pixels), fit k-fold logistic-regression
heads on the kept faces (``heads.py``) for out-of-sample probabilities, and give those to cleanlab's
``find_label_issues`` (ranked by self-confidence). The queue then holds, one row per face, each with the model's
top-3 classes and the score (the out-of-sample probability of its own label):

- ``label_issue``: what cleanlab finds (official test members excepted: review never alters them);
- ``low_score``: with ``--issues N``, the queue of likely label errors is made exactly N long: cleanlab's own, best
  ranked first, then the kept faces with the lowest score (cut to N when cleanlab found more);
- ``keyword_rejected``: a crawled face whose keyword's class is not the model's most likely class;
- ``label_conflict``: dedupe's label-conflict faces (decision ``review``), scored by the mean of the k heads;
- ``review``: any other face dedupe left for review.

Why k-fold linear heads on a fixed feature: training a network k times is what the confident-learning papers do,
and is hours on real data; a linear head on good features is minutes, and a face's own label never reaches the
probabilities it is judged by. The queue is rewritten as a whole on each run (unit ``all``), sorted by rank:
deterministic for the same inputs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from fusekit import reviews
from fusekit.audit import heads
from fusekit.audit.features import BUILTIN, builtin_features
from fusekit.errors import ConfigError, UserError
from fusekit.records import DECISIONS_SCHEMA, FACES_SCHEMA, REVIEW_QUEUE_SCHEMA, REVIEW_REASONS
from fusekit.taxonomy import CLASSES
from fusekit.workspace import Workspace, digest

log = logging.getLogger(__name__)
TOP = 3


@dataclass(frozen=True)
class AuditConfig:
    """Settings of `fusekit audit`."""

    run: str | None = None  # a trained run whose features to use; None: the built-in features
    checkpoint: str = "best"
    folds: int = 5
    seed: int = 0
    components: int = 128  # PCA dimensions of each head
    issues: int | None = None  # exactly this many label_issue + low_score rows; None: all cleanlab finds

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"--folds must be at least 2, got {self.folds}")
        if self.components < 1:
            raise ConfigError(f"--components must be at least 1, got {self.components}")
        if self.issues is not None and self.issues < 0:
            raise ConfigError(f"--issues must be >= 0, got {self.issues}")


@dataclass
class AuditReport:
    features: str = ""
    scored: int = 0  # faces the heads were fitted on (out-of-sample probabilities)
    predicted: int = 0  # faces in dispute, scored by the heads' mean
    accuracy: float = 0.0  # out-of-sample: share of fitted faces whose label is the most likely class
    issues_found: int = 0  # cleanlab's label issues (test members included)
    queued: Counter[str] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def queue_size(self) -> int:
        return sum(self.queued.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["queued"], data["left_out"] = dict(self.queued), dict(self.left_out)
        return data


def _candidates(workspace: Workspace, report: AuditReport) -> tuple[pa.Table, dict[str, str]]:
    """The faces to score (id, dataset, split, label after verdicts) and their decision (keep | review)."""
    faces = workspace.read("faces", FACES_SCHEMA, columns=["id", "image_id", "dataset", "split", "label"])
    if not faces.num_rows:
        raise UserError(f"the workspace {workspace.root} has no faces: run `fusekit ingest NAME --source PATH` first")
    decision: dict[str, tuple[str, str | None]] = {}
    if "all" in workspace.units("decisions"):
        table = workspace.read("decisions", DECISIONS_SCHEMA, units=["all"], columns=["face_id", "decision", "reason"])
        decision = {f: (d, r) for f, d, r in zip(*(table.column(c).to_pylist() for c in table.column_names))}
    else:
        report.notes.append("no decisions table: every face is audited as kept (run `fusekit dedupe` first)")
    given = reviews.verdicts(workspace)
    keep, labels, kinds = [], [], {}
    for i, (face_id, split, label) in enumerate(zip(*(faces.column(c).to_pylist() for c in ("id", "split",
                                                                                            "label")))):
        if decision and face_id not in decision:
            report.left_out["no decision (run `fusekit dedupe` again)"] += 1
            continue
        d, reason = decision.get(face_id, ("keep", None))
        d, reason, label, _ = reviews.outcome(given.get(face_id), d, reason, label, split == "test")
        if d == "drop":
            report.left_out[f"dropped: {reason}"] += 1
            continue
        if label not in CLASSES:
            report.left_out[f"label {label!r}"] += 1
            continue
        keep.append(i)
        labels.append(label)
        kinds[face_id] = f"review:{reason or 'review'}" if d == "review" else "keep"
    table = faces.take(pa.array(keep, pa.int64())).drop_columns(["label"])
    table = table.append_column("label", pa.array(labels, pa.string()))
    return table.sort_by("id"), kinds


def _crops(workspace: Workspace, ids: list[str]) -> list[bytes | None]:
    """The aligned crop bytes of ``ids``, in their order."""
    rows = workspace.rows_by_id("faces", ids, ["image"])
    return [((rows.get(i) or {}).get("image") or {}).get("bytes") for i in ids]


def _features(extractor: FeatureExtractor | None, crops) -> tuple[np.ndarray, str]:
    """The faces' features and what they are: the built-in ones, or the given extractor's (a run's penultimate
    layer: ``fusekit.predict.RunFeatures``, which the api builds for ``--run``)."""
    if extractor is None:
        return builtin_features(crops), BUILTIN
    return extractor(crops), extractor.description


def _queue_disputed(reasons: dict[int, list[str]], kinds: list[str], datasets: list[str], labels: list[str],
                    predicted: list[str]) -> None:
    """Crawled faces whose keyword's class is not the model's top class, and every face dedupe left for review."""
    for i, kind in enumerate(kinds):
        if kind == "keep" and datasets[i] == "crawl" and predicted[i] != labels[i]:
            reasons.setdefault(i, []).append("keyword_rejected")
        elif kind.startswith("review:"):
            reasons.setdefault(i, []).append("label_conflict" if kind == "review:label_conflict" else "review")


class FeatureExtractor(Protocol):
    description: str

    def __call__(self, crops: list[bytes | None]) -> np.ndarray: ...


def run_audit(workspace: Workspace, config: AuditConfig | None = None,
              extractor: FeatureExtractor | None = None) -> AuditReport:
    """Write `review_queue` (see the module docstring). ``extractor``: features of the crops (``config.run``'s,
    built by the api); without it the built-in features."""
    from cleanlab.filter import find_label_issues

    config = config or AuditConfig()
    if config.run is not None and extractor is None:
        raise UserError("audit --run needs the run's features: call it through fusekit.api.audit")
    workspace.ensure()
    report = AuditReport()
    t0 = time.perf_counter()
    faces, kinds = _candidates(workspace, report)
    ids = faces.column("id").to_pylist()
    labels = faces.column("label").to_pylist()
    datasets = faces.column("dataset").to_pylist()
    splits = faces.column("split").to_pylist()
    crops = _crops(workspace, ids)
    report.seconds["read"] = round(time.perf_counter() - t0, 2)
    t = time.perf_counter()
    x, report.features = _features(extractor, crops)
    report.seconds["features"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    fitted = np.array([kinds[f] == "keep" for f in ids], bool)
    present = sorted({lab for lab, f in zip(labels, fitted) if f}, key=CLASSES.index)
    class_id = {c: k for k, c in enumerate(present)}
    fit_idx = np.flatnonzero(fitted)
    # a face in dispute whose label no kept face carries is still scored (its own label then has probability 0)
    y = np.array([class_id[labels[i]] for i in fit_idx], np.int64)
    others = np.flatnonzero(~fitted)
    try:
        oos, rest = heads.cross_val_probs(x[fit_idx], y, len(present), folds=config.folds, seed=config.seed,
                                          components=config.components, others=x[others])
    except ValueError as exc:
        raise UserError(f"cannot audit: {exc}") from None
    probs = np.zeros((len(ids), len(present)))
    probs[fit_idx], probs[others] = oos, rest
    report.scored, report.predicted = len(fit_idx), len(others)
    report.accuracy = round(float((oos.argmax(1) == y).mean()), 4) if len(y) else 0.0
    report.seconds["heads"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    issues = find_label_issues(y, oos, return_indices_ranked_by="self_confidence") if len(present) > 1 else []
    report.issues_found = len(issues)
    report.seconds["cleanlab"] = round(time.perf_counter() - t, 2)

    score = np.array([probs[i, class_id[labels[i]]] if labels[i] in class_id else 0.0 for i in range(len(ids))])
    reasons: dict[int, list[str]] = {}
    issue_rank: dict[int, int] = {}
    ranked = [("label_issue", int(fit_idx[j])) for j in issues]
    if config.issues is not None:  # fill with the lowest scores (cleanlab's self-confidence order), then cut to N
        found = set(int(j) for j in issues)
        fill = [j for j in np.lexsort((np.arange(len(y)), oos[np.arange(len(y)), y])) if int(j) not in found]
        ranked += [("low_score", int(fit_idx[j])) for j in fill]
    for why, i in ranked:
        if splits[i] == "test":  # official test members are never altered by review
            continue
        if config.issues is not None and len(issue_rank) >= config.issues:
            break
        reasons.setdefault(i, []).append(why)
        issue_rank[i] = len(issue_rank)
    _queue_disputed(reasons, [kinds[f] for f in ids], datasets, labels, [present[k] for k in probs.argmax(1)])
    order = {r: k for k, r in enumerate(REVIEW_REASONS)}
    queued = sorted(reasons, key=lambda i: (order[min(reasons[i], key=order.get)], issue_rank.get(i, 0), score[i],
                                            ids[i]))
    rows = []
    for rank, i in enumerate(queued, start=1):
        why = sorted(set(reasons[i]), key=order.get)
        top = np.argsort(-probs[i], kind="stable")[:TOP]
        rows.append({"face_id": ids[i], "dataset": datasets[i], "split": splits[i], "label": labels[i],
                     "reason": why[0], "reasons": why, "rank": rank, "score": float(score[i]),
                     "top_classes": [present[k] for k in top], "top_probs": [float(probs[i, k]) for k in top],
                     "features": report.features})
        report.queued[why[0]] += 1
    table = pa.Table.from_pylist(rows, schema=REVIEW_QUEUE_SCHEMA) if rows else REVIEW_QUEUE_SCHEMA.empty_table()
    report.seconds["total"] = round(time.perf_counter() - t0, 2)
    workspace.write_unit(reviews.QUEUE_TABLE, reviews.UNIT, table, {
        "stage": "audit", "config": asdict(config), "decisions": digest(workspace.listing("decisions")),
        "report": report.to_json()})
    return report


def render_report(report: AuditReport) -> str:
    source = ("the built-in features (HOG + pixels of the 48 px grey crop; give --run NAME to use a trained "
              "run's features)" if report.features == BUILTIN else f"the features of {report.features}")
    lines = [f"audit: {report.scored:,} kept faces scored out of sample ({report.accuracy:.1%} agree with their "
             f"label) and {report.predicted:,} in dispute, with k-fold logistic heads on {source}",
             f"cleanlab found {report.issues_found:,} likely label errors",
             f"review_queue: {report.queue_size:,} faces (" + (", ".join(
                 f"{r} {report.queued[r]:,}" for r in REVIEW_REASONS if report.queued.get(r)) or "none") + ")"]
    if report.left_out:
        lines.append("not audited: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.left_out.items())))
    lines.extend(report.notes)
    lines.append(f"{report.seconds.get('total', 0):.1f} s; next: `fusekit review`")
    return "\n".join(lines)
