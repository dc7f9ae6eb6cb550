"""`fusekit balance`: kept faces -> honest splits -> resampled training data -> `<workspace>/dataset/`.

The stage plans on the small columns only (ids, labels, splits, groups), then streams image bytes from the `faces`
parts split by split, augmenting copies in a thread pool, into the shard writer. The new `dataset/` folder is built
beside the old one and swapped in at the end, so a killed run leaves the previous dataset intact.

Official test splits go in whole: every face whose decision is keep is used, dedupe keeps every official test member
(flagged instead of removed), and a test member that older decisions dropped or sent to review is used all the same,
flagged from its reason. The only official test faces not in the test split are a class the dataset is not built with
(contempt with ``--classes 7``) and datasets whose split is redone (``redo_splits``); those are counted on the card.
Each shard row carries the decisions' ``flags`` (an augmented copy its parent's).

A person's verdicts (``fusekit.reviews``) are applied here, on dedupe's own decisions, so a rerun of balance reflects
them (an undone verdict included) without dedupe running again: a rejected face is left out (``review_rejected``), a relabelled one goes in with its new label, an
accepted face that dedupe sent to review goes in; on an official test member a verdict only adds a flag.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fusekit import __version__, reviews
from fusekit.balance.config import BalanceConfig
from fusekit.balance.resample import class_weights, plan_resample
from fusekit.balance.emit import PlannedRow, write_splits
from fusekit.balance.shards import ShardStats, shard_schema
from fusekit.balance.splits import assign_splits
from fusekit.errors import UserError
from fusekit.records import DECISIONS_SCHEMA, FACES_SCHEMA, SPLITS, flag_kind
from fusekit.taxonomy import CLASSES
from fusekit.workspace import Workspace, digest, write_json_atomic
from fusekit.text import reasons

FACE_COLUMNS = ["id", "image_id", "dataset", "split", "subject", "group", "label", "terms"]


@dataclass
class BalanceReport:
    out: Path
    classes: list[str]
    config: BalanceConfig
    faces: int = 0
    used: int = 0
    left_out: Counter[str] = field(default_factory=Counter)
    before: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dataset, class) of the faces used
    after: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dataset, class) of original rows in shards
    augmented: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dataset, class) of augmented copies
    split_counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (split, class) in shards
    train_before: Counter[str] = field(default_factory=Counter)  # class -> training rows before resampling
    target: int | None = None
    weights: dict[str, float] = field(default_factory=dict)
    shards: dict[str, ShardStats] = field(default_factory=dict)
    terms: list[dict[str, Any]] = field(default_factory=list)
    carved: list[str] = field(default_factory=list)
    # official test splits (split "test" in faces, datasets not in redo_splits), per dataset: faces read, faces in the
    # test split of the shards, flagged ones among those, faces per flag kind, and why any are missing
    test_members: Counter[str] = field(default_factory=Counter)
    test_used: Counter[str] = field(default_factory=Counter)
    test_flagged: Counter[str] = field(default_factory=Counter)
    test_flag_kinds: dict[str, Counter[str]] = field(default_factory=dict)
    test_missing: Counter[tuple[str, str]] = field(default_factory=Counter)  # (dataset, reason)
    decisions: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards.values())

    @property
    def non_commercial(self) -> list[str]:
        return sorted({t["dataset"] for t in self.terms if t["non_commercial"]})

    def render(self) -> str:
        """`fusekit balance`'s summary (``fusekit.balance.card.summary_lines``)."""
        from fusekit.balance.card import summary_lines

        return "\n".join(summary_lines(self))


def inputs_fingerprint(workspace: Workspace) -> list[list[Any]]:
    """What balance reads, as (file, size, mtime): equal lists mean unchanged inputs."""
    return workspace.listing("faces") + workspace.listing("decisions") + reviews.fingerprint(workspace)


@dataclass(frozen=True)
class _Verdict:
    decision: str = "keep"
    reason: str | None = None
    group: str | None = None  # dup_group
    phash: str | None = None
    kept_id: str | None = None
    flags: tuple[str, ...] | None = None  # None: decisions written before the flags column


@dataclass
class _Inputs:
    faces: pa.Table  # FACE_COLUMNS, with a `pos` column: row position in the faces parts
    decision: dict[str, _Verdict]  # face id -> its dedupe decision
    has_decisions: bool
    stale_decisions: bool = False  # made on another faces listing than the one read now
    verdicts: dict[str, reviews.Verdict] = field(default_factory=dict)  # face id -> a person's verdict


def _read_inputs(workspace: Workspace, faces_listing: list[list[Any]]) -> _Inputs:
    """``faces_listing``: ``workspace.listing("faces")``, taken once by the caller."""
    if not faces_listing:
        raise UserError(f"the workspace {workspace.root} has no faces: run `fusekit ingest NAME --source PATH` "
                        f"(it detects faces) or `fusekit faces` first")
    faces = workspace.read("faces", FACES_SCHEMA, columns=FACE_COLUMNS)
    faces = faces.append_column("pos", pa.array(np.arange(faces.num_rows, dtype=np.int64)))
    decision: dict[str, _Verdict] = {}
    has = "all" in workspace.units("decisions")
    if has:
        table = workspace.read("decisions", DECISIONS_SCHEMA, units=["all"],
                               columns=["face_id", "decision", "reason", "dup_group", "phash", "kept_id", "flags"])
        for face_id, d, reason, group, phash, kept_id, flags in zip(
                *(table.column(c).to_pylist() for c in table.column_names)):
            decision[face_id] = _Verdict(d, reason, group, phash, kept_id, None if flags is None else tuple(flags))
    made_on = (workspace.unit_info("decisions", "all") or {}).get("faces") if has else None
    stale = made_on is not None and made_on != digest(faces_listing)
    return _Inputs(faces, decision, has, stale, reviews.verdicts(workspace))


def recorded_facts(workspace: Workspace) -> dict[tuple[str, str], dict[str, Any]]:
    """(dataset, terms id) -> the source's facts (title, terms, citation) as the faces stage copied them into its
    units' `_unit.json` from what ingest or the crawl recorded."""
    found = {}
    for unit in workspace.units("faces"):
        info = workspace.unit_info("faces", unit) or {}
        source = info.get("source") or {}
        if isinstance(source.get("terms"), dict) and info.get("dataset"):
            found[(str(info["dataset"]), str(source["terms"]["id"]))] = source
    return found


def terms_entries(pairs: set[tuple[str, str | None]],
                  recorded: dict[tuple[str, str], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Terms and citation for each (dataset, terms id) used: as its units recorded them (``recorded_facts``), else
    (faces made before units recorded their facts) from the manifest of that name or with those terms."""
    recorded = recorded or {}
    entries = []
    for dataset, terms_id in sorted(pairs, key=lambda p: (p[0], p[1] or "")):
        facts = recorded.get((dataset, terms_id or ""))
        if facts is not None:
            terms = facts["terms"]
            entries.append({"dataset": dataset, "terms": terms["id"], "summary": terms["summary"],
                            "non_commercial": terms["non_commercial"], "url": terms.get("url", ""),
                            "title": facts.get("title") or dataset, "citation": list(facts.get("citation") or [])})
        else:
            entries.append(_manifest_terms(dataset, terms_id))
    return entries


def _manifest_terms(dataset: str, terms_id: str | None) -> dict[str, Any]:
    from fusekit.manifests import known_manifests, unit_facts

    manifest = known_manifests().get(dataset)
    candidates = ([manifest] if manifest else []) + [m for m in known_manifests().values() if m is not manifest]
    for m in candidates:
        variant = next((v for v in m.variants.values() if v.terms.id == terms_id), None)
        if variant is not None or m.terms.id == terms_id:
            facts = unit_facts(m, variant or next(iter(m.variants.values())), dataset)
            terms = m.terms if variant is None else variant.terms
            citations = facts["citation"] if variant is not None else [c for c in (m.citation,) if c]
            return {"dataset": dataset, "terms": terms.id, "summary": terms.summary,
                    "non_commercial": terms.non_commercial, "url": terms.url or m.homepage,
                    "title": m.title if m is manifest else dataset, "citation": citations}
    return {"dataset": dataset, "terms": terms_id or "unknown", "title": dataset,
            "summary": "terms unknown to fusekit: check them yourself before sharing or any commercial use",
            "non_commercial": True, "url": "", "citation": []}


def flags_from_reason(reason: str | None, kept_id: str | None) -> tuple[str, ...]:
    """The flags dedupe gives an official test member today, from the reason older decisions dropped it for."""
    if reason in ("exact_duplicate", "near_duplicate"):
        return (f"{reason}_of:{kept_id}",) if kept_id else (reason,)
    return (reason or "dropped",)


def _select(inputs: _Inputs, config: BalanceConfig, report: BalanceReport) -> pa.Table:
    """The faces that go into the dataset, sorted by id, with their decision columns."""
    faces = inputs.faces
    report.faces = faces.num_rows
    keep_rows, dup, phash, flag_rows, kept_labels = [], [], [], [], []
    ids = faces.column("id").to_pylist()
    labels = faces.column("label").to_pylist()
    datasets = faces.column("dataset").to_pylist()
    splits = faces.column("split").to_pylist()
    allowed = set(CLASSES[:config.classes])
    redo = set(config.redo_splits)
    missing = overruled = 0
    for i, (face_id, label, dataset, split) in enumerate(zip(ids, labels, datasets, splits)):
        verdict = inputs.decision.get(face_id)
        if inputs.has_decisions and verdict is None:
            missing += 1
        verdict = verdict or _Verdict()
        flags = verdict.flags or ()
        official_test = split == "test" and dataset not in redo
        if official_test:
            report.test_members[dataset] += 1
        decision = verdict.decision
        if official_test and decision != "keep":  # decisions from before official test splits were kept whole
            overruled += 1
            decision, flags = "keep", flags or flags_from_reason(verdict.reason, verdict.kept_id)
        # a person's verdict (fusekit.reviews): reject drops, relabel changes the label, accept lets a review in
        decision, reason, label, review_flag = reviews.outcome(inputs.verdicts.get(face_id), decision,
                                                               verdict.reason, label, official_test)
        if review_flag and review_flag not in flags:
            flags = (*flags, review_flag)
        if decision == "keep" and flags and not official_test:
            # a test member of a dataset whose split is redone is not an official test face here: the judgement
            # its flags record applies (a duplicate frame of a K-drama clip is dropped as any duplicate is)
            report.left_out[f"dedupe: {flag_kind(flags[0])} (split redone)"] += 1
            continue
        if decision == "drop":
            report.left_out[reviews.REJECTED if reason == reviews.REJECTED else f"dedupe: {reason or 'dropped'}"] += 1
            continue
        if decision == "review" and not config.include_review:
            report.left_out["awaiting review"] += 1
            continue
        if label not in allowed:
            why = "contempt (--classes 7)" if label == "contempt" else f"label {label!r}"
            report.left_out[why] += 1
            if official_test:
                report.test_missing[(dataset, why)] += 1
            continue
        if official_test and flags:
            report.test_flagged[dataset] += 1
            report.test_flag_kinds.setdefault(dataset, Counter()).update({flag_kind(f) for f in flags})
        keep_rows.append(i)
        dup.append(verdict.group)
        phash.append(verdict.phash)
        flag_rows.append(list(flags))
        kept_labels.append(label)
    if overruled:
        report.notes.append(f"{overruled:,} official test faces were dropped or sent to review by older dedupe "
                            f"decisions; they are kept in the test split, flagged from their reason (run "
                            f"`fusekit dedupe` again for today's flags)")
    if not inputs.has_decisions:
        report.notes.append("no decisions table: every face is kept as it is (run `fusekit dedupe` first to drop "
                            "duplicates, low-quality faces and test leaks)")
    elif missing:
        report.notes.append(f"{missing:,} faces have no dedupe decision (added after the last `fusekit dedupe`); "
                            f"they are kept unchecked: run `fusekit dedupe` again")
    elif inputs.stale_decisions:
        report.notes.append("the dedupe decisions were made on other faces than the workspace holds now (a dataset "
                            "was re-ingested or removed since): run `fusekit dedupe` again")
    if report.left_out.get("awaiting review"):
        report.notes.append(f"{report.left_out['awaiting review']:,} faces await review and are left out "
                            f"(--include-review keeps them)")
    table = faces.take(pa.array(keep_rows, type=pa.int64()))
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(kept_labels, pa.string()))
    table = table.append_column("dup_group", pa.array(dup, type=pa.string()))
    table = table.append_column("phash", pa.array(phash, type=pa.string()))
    table = table.append_column("flags", pa.array(flag_rows, type=pa.list_(pa.string())))
    return table.sort_by("id")


def _plan(selected: pa.Table, config: BalanceConfig, report: BalanceReport) -> dict[str, list[PlannedRow]]:
    classes = report.classes
    class_id = {c: i for i, c in enumerate(classes)}
    cols = {c: selected.column(c).to_pylist() for c in ("dataset", "image_id", "subject", "group", "dup_group",
                                                         "split", "label")}
    labels = np.array([class_id[x] for x in cols["label"]], dtype=np.int64)
    for d, lab in zip(cols["dataset"], cols["label"]):
        report.before[(d, lab)] += 1
    result = assign_splits(dataset=cols["dataset"], image_id=cols["image_id"], subject=cols["subject"],
                           group=cols["group"], dup_group=cols["dup_group"], official=cols["split"], labels=labels,
                           n_classes=len(classes), fractions=config.split, seed=config.seed,
                           keep_official_val=config.keep_official_val, redo=config.redo_splits)
    for reason, count in result.left_out.items():
        report.left_out[f"split leak: {reason.replace('_', ' ')}"] += count
    redo = set(config.redo_splits)
    for dataset, official, split in zip(cols["dataset"], cols["split"], result.split):
        if official == "test" and dataset not in redo:
            if split != "test":  # splits.py never does this (test is the highest split): a bug, not a choice
                raise RuntimeError(f"an official test face of {dataset} was assigned to {split}")
            report.test_used[dataset] += 1
    report.carved = result.carved
    report.notes.extend(result.notes)
    rows: dict[str, list[PlannedRow]] = {s: [] for s in SPLITS}
    train = np.array([i for i, s in enumerate(result.split) if s == "train"], dtype=np.int64)
    for s in ("val", "test"):
        rows[s] = [PlannedRow(i, 0) for i, x in enumerate(result.split) if x == s]
    for i in train:
        report.train_before[cols["label"][i]] += 1
    plan = plan_resample(labels[train], len(classes), strategy=config.strategy, target=config.target,
                         seed=config.seed, weights_only=config.weights_only, max_copies=config.max_copies)
    report.target = plan.target
    report.notes.extend(plan.notes)
    for k, short in sorted(plan.short.items()):
        report.notes.append(f"{classes[k]}: {short:,} rows short of the target {plan.target:,} (--max-copies)")
    train_rows = [PlannedRow(int(train[j]), 0) for j in plan.keep] + [PlannedRow(int(train[j]), c) for j, c in plan.copies]
    for k, n in sorted(plan.dropped.items()):
        report.left_out[f"down-sampled: {classes[k]}"] += n
    if not config.augment and plan.copies:
        raise UserError("over-sampling needs at least one augmentation: give --augment, or --weights-only")
    # Training rows are shuffled (seeded) so that a streaming reader with a small buffer still sees mixed classes.
    order = np.random.default_rng([config.seed, 13]).permutation(len(train_rows))
    rows["train"] = [train_rows[j] for j in order]
    return rows


def _row_maker(cols: dict[str, list[Any]], classes: list[str], report: BalanceReport):
    """The function that turns a planned row and its image into a shard row (and counts it in the report)."""
    class_id = {c: i for i, c in enumerate(classes)}

    def make(split: str, row: PlannedRow, image: dict[str, Any], ops: list[str]) -> dict[str, Any]:
        m = row.meta
        face_id, label, dataset = cols["id"][m], cols["label"][m], cols["dataset"][m]
        copy = row.copy > 0
        source_id = f"{face_id}~aug{row.copy:03d}" if copy else face_id
        (report.augmented if copy else report.after)[(dataset, label)] += 1
        report.split_counts[(split, label)] += 1
        return {
            "image": {"bytes": image["bytes"], "path": image["path"] or f"{source_id}.png"},
            "label": class_id[label],
            "label_name": label,
            "dataset": dataset,
            "source_id": source_id,
            "subject": cols["subject"][m],
            "split": split,
            "augmented": copy,
            "ops": ops,
            "parent_id": face_id if copy else None,
            "phash": None if copy else cols["phash"][m],
            "flags": cols["flags"][m],  # a copy carries its parent's (only training faces are copied: [])
        }

    return make


def _swap(built: Path, out: Path) -> None:
    """Put ``built`` where ``out`` is, atomically enough: the old folder is renamed away first, then removed."""
    trash = out.parent / ".trash" / f"dataset-{uuid.uuid4().hex}"
    if out.exists():
        trash.parent.mkdir(parents=True, exist_ok=True)
        out.rename(trash)
    built.rename(out)
    shutil.rmtree(trash, ignore_errors=True)


def run_balance(workspace: Workspace, config: BalanceConfig | None = None) -> BalanceReport:
    """Build `<workspace>/dataset/` from `faces` and `decisions` (see the module docstring)."""
    from fusekit.balance import card

    config = config or BalanceConfig()
    started = time.perf_counter()
    if workspace.root.is_dir():
        workspace.recover()
    for stale in workspace.root.glob(".dataset-*"):  # what a killed run left
        shutil.rmtree(stale, ignore_errors=True)
    out = workspace.root / "dataset"
    report = BalanceReport(out=out, classes=list(CLASSES[:config.classes]), config=config)
    # The faces parts are listed once: for the fingerprint, the stale-decisions check and the files the shards are
    # made from (in the order Workspace.read reads them, so a row position there is a position in these files).
    faces_listing = workspace.listing("faces")
    fingerprint = faces_listing + workspace.listing("decisions") + reviews.fingerprint(workspace)
    inputs = _read_inputs(workspace, faces_listing)
    report.decisions = inputs.has_decisions
    selected = _select(inputs, config, report)
    report.used = selected.num_rows
    if selected.num_rows == 0:
        raise UserError(f"none of the {report.faces:,} faces can be used ({_reasons(report.left_out)})")
    rows = _plan(selected, config, report)
    report.terms = terms_entries(set(zip(selected.column("dataset").to_pylist(),
                                         selected.column("terms").to_pylist())), recorded_facts(workspace))
    cols = {c: selected.column(c).to_pylist() for c in ("id", "pos", "label", "dataset", "subject", "phash",
                                                         "flags")}
    built = workspace.root / f".dataset-{uuid.uuid4().hex}"
    (built / "data").mkdir(parents=True)
    from fusekit import progress

    with progress.bar(sum(map(len, rows.values())), "balance") as bar:
        report.shards = write_splits(files=[str(workspace.tables / e[0]) for e in faces_listing], rows=rows, cols=cols,
                                     make_row=_row_maker(cols, report.classes, report),
                                     schema=shard_schema(report.classes), folder=built / "data",
                                     max_shard_bytes=config.max_shard_bytes, row_group_bytes=config.row_group_bytes,
                                     seed=config.seed, augment=config.augment, max_rotation=config.max_rotation,
                                     jitter=config.jitter, workers=config.workers, progress=bar.update)
    if not rows["train"]:
        report.notes.append("the training split is empty")
    train_counts = np.array([report.split_counts[("train", c)] for c in report.classes])
    weights = class_weights(train_counts)
    report.weights = {c: round(float(w), 6) for c, w in zip(report.classes, weights)}
    write_json_atomic(_weights_json(report, train_counts), built / "class_weights.json")
    if config.recipe_text is not None:
        (built / "recipe.yaml").write_text(config.recipe_text, encoding="utf-8")
    report.seconds = time.perf_counter() - started
    card.write_chart(report, built / "class_counts.png")
    (built / "README.md").write_text(card.render(report), encoding="utf-8")
    write_json_atomic(_summary_json(report, fingerprint), built / "fusekit.json")
    _swap(built, out)
    return report


def _weights_json(report: BalanceReport, train_counts: np.ndarray) -> dict[str, Any]:
    before = class_weights(np.array([report.train_before.get(c, 0) for c in report.classes]))
    return {
        "classes": report.classes,
        # `fusekit train --class-weights` reads "class_weights" (by class name); Keras' class_weight wants ids.
        "class_weights": report.weights,
        "class_weight_by_id": {str(i): report.weights[c] for i, c in enumerate(report.classes)},
        "train_counts": {c: int(n) for c, n in zip(report.classes, train_counts)},
        "before_resampling": {c: round(float(w), 6) for c, w in zip(report.classes, before)},
        "formula": "n_train / (n_classes_present * n_class); 0 for a class without training rows",
    }


def _summary_json(report: BalanceReport, fingerprint: list[list[Any]]) -> dict[str, Any]:
    return {
        "fusekit": __version__,
        "settings": report.config.settings(),
        "classes": report.classes,
        "rows": report.rows,
        "splits": {s: {"rows": st.rows, "files": st.files, "bytes": st.bytes} for s, st in report.shards.items()},
        "faces": report.faces,
        "used": report.used,
        "left_out": dict(sorted(report.left_out.items())),
        "official_test": official_test_summary(report),
        "target": report.target,
        "decisions": report.decisions,
        "non_commercial": report.non_commercial,
        "inputs": fingerprint,
    }


def official_test_summary(report: BalanceReport) -> dict[str, dict[str, Any]]:
    """Per dataset with an official test split: faces read, in the test split, flagged, by flag kind, missing."""
    out: dict[str, dict[str, Any]] = {}
    for dataset in sorted(report.test_members):
        kinds = report.test_flag_kinds.get(dataset, Counter())
        out[dataset] = {"members": report.test_members[dataset], "in_test_split": report.test_used[dataset],
                        "flagged": report.test_flagged[dataset],
                        "flags": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
                        "missing": {why: n for (d, why), n in sorted(report.test_missing.items()) if d == dataset}}
    return out


def _reasons(counter: Counter[str]) -> str:
    return reasons(counter) or "none"


def status_lines(workspace: Workspace) -> list[str]:
    """What `fusekit status` prints about the dataset folder."""
    path = workspace.root / "dataset" / "fusekit.json"
    if not path.is_file():
        return ["dataset: not built yet (run `fusekit balance` or `fusekit build RECIPE.yaml`)"]
    info = json.loads(path.read_text(encoding="utf-8"))
    splits = ", ".join(f"{s} {v['rows']:,}" for s, v in info["splits"].items())
    files = sum(len(v["files"]) for v in info["splits"].values())
    size = sum(v["bytes"] for v in info["splits"].values())
    lines = [f"dataset: {info['rows']:,} rows in {files} shard(s), {size / 1e6:.1f} MB ({splits}); "
             f"{len(info['classes'])} classes, seed {info['settings']['seed']}, at {path.parent}"]
    if info.get("inputs") != inputs_fingerprint(workspace):
        lines.append("dataset: out of date (faces or decisions changed since it was built): run `fusekit balance`")
    if info.get("non_commercial"):
        lines.append(f"dataset: NON-COMMERCIAL terms apply (from {', '.join(info['non_commercial'])})")
    return lines
