"""Read a workspace's tables, its dataset folder and its run folders into plain data for the report.

Nothing here renders and nothing imports another stage: the tables are read through their schemas
(`fusekit.records`), the dataset folder and the run folders as the files they are (their layouts are documented in
`fusekit.balance` and `fusekit.train.runs`). What a stage has not written yet is ``None`` (the page says "not run").
Everything is sorted, so the same workspace gives the same data, and so the same page, byte for byte.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusekit import reviews
from fusekit.records import DECISIONS_SCHEMA, FACES_SCHEMA, IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.taxonomy import CLASSES
from fusekit.workspace import Workspace

ALL_CLASSES = tuple(CLASSES)
SAMPLES_PER_ROW = 8  # thumbnails per class and per source
THUMB_SIDE = 64


@dataclass
class FunnelRow:
    dataset: str
    entered: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    other: dict[str, int] = field(default_factory=dict)  # e.g. "to review", "augmented copies"


@dataclass
class Stage:
    name: str
    what: str  # one line: what goes in and what comes out
    rows: list[FunnelRow]
    notes: list[str] = field(default_factory=list)

    @property
    def entered(self) -> int:
        return sum(r.entered for r in self.rows)

    @property
    def kept(self) -> int:
        return sum(r.kept for r in self.rows)


@dataclass
class Thumb:
    face_id: str
    dataset: str
    label: str
    uri: str  # data:image/jpeg;base64,...


@dataclass
class CrawlRow:
    engine: str
    emotion: str
    keyword: str
    pictures: int
    faces: int
    kept: int | None  # faces kept by dedupe (None before dedupe)


@dataclass
class EvalData:
    split: str  # the eval folder: test, val, test-tta-flip ...
    metrics: dict[str, Any]
    classes: list[str]
    confusion: list[list[int]]
    by_source: list[dict[str, Any]]


@dataclass
class RunData:
    name: str
    config: dict[str, Any]
    history: list[dict[str, float]]
    state: dict[str, Any]
    evals: list[EvalData]
    explain: list[tuple[str, str]]  # (class, data URI of its Grad-CAM grid)
    explain_info: dict[str, Any] | None
    error: str | None = None  # why (part of) the run folder could not be read


@dataclass
class ReportData:
    workspace: str
    funnel: list[Stage]
    classes: dict[str, Any] | None  # {"datasets", "classes", "before", "after", "after_split", "basis", "balanced"}
    duplicates: dict[str, Any] | None  # {"datasets", "groups", "faces", "matrix"}
    samples: dict[str, list[Thumb]] | None  # "class:<name>" / "source:<name>" -> thumbnails
    crawl: dict[str, Any] | None  # {"rows": [CrawlRow], "rejects": {"engine / keyword": {reason: n}}}
    review: dict[str, Any]  # {"dedupe_review": {reason: n} | None, "progress": reviews.Progress | None}
    runs: list[RunData]
    dataset_card: dict[str, Any] | None  # fusekit.json of <workspace>/dataset


def collect(workspace: Workspace) -> ReportData:
    """Everything the report shows, read from ``workspace``."""
    images = workspace.read("images", IMAGES_SCHEMA, columns=["id", "dataset", "variant", "label"])
    rejects = workspace.read("rejects", REJECTS_SCHEMA, columns=["stage", "dataset", "variant", "reason"])
    faces = workspace.read("faces", FACES_SCHEMA, columns=["id", "image_id", "dataset", "variant", "label"])
    face_rejects = workspace.read("face_rejects", REJECTS_SCHEMA, columns=["dataset", "variant", "reason"])
    # dedupe's own judgement (the funnel shows what each stage did; a person's verdicts are the #review section's, and
    # balance's row counts them among what it left out)
    decisions = workspace.read("decisions", DECISIONS_SCHEMA,
                               columns=["face_id", "dataset", "label", "decision", "reason", "dup_group"])
    card = _dataset_card(workspace.root / "dataset")
    shards = _shard_rows(workspace.root / "dataset", card)
    has_faces = bool(workspace.units("faces"))
    has_decisions = bool(workspace.units("decisions"))
    funnel = _funnel(workspace, images, rejects, faces, face_rejects, decisions if has_decisions else None, shards,
                     card)
    return ReportData(
        workspace=str(workspace.root),
        funnel=funnel,
        classes=_classes(faces, decisions if has_decisions else None, shards) if has_faces else None,
        duplicates=_duplicates(decisions) if has_decisions else None,
        samples=_samples(workspace, faces, decisions if has_decisions else None) if has_faces else None,
        crawl=_crawl(workspace, faces, decisions if has_decisions else None),
        review=_review(workspace, decisions if has_decisions else None),
        runs=_runs(workspace.root / "runs"),
        dataset_card=card,
    )


# -- funnel -------------------------------------------------------------------------------------------------------

def _count(table: pa.Table, keys: list[str]) -> Counter:
    out: Counter = Counter()
    if table.num_rows == 0:
        return out
    for row in table.group_by(keys).aggregate([([], "count_all")]).to_pylist():
        out[tuple(row[k] for k in keys)] += row["count_all"]
    return out


def _funnel(workspace, images, rejects, faces, face_rejects, decisions, shards, card) -> list[Stage]:
    stages = []
    per_image = _count(images, ["dataset"])
    ingest_rejects = _count(rejects.filter(pc.field("stage") != "crawl") if rejects.num_rows else rejects,
                            ["dataset", "reason"])
    crawl_rejects = _count(rejects.filter(pc.field("stage") == "crawl") if rejects.num_rows else rejects,
                           ["dataset", "reason"])
    datasets = sorted({d for (d,) in per_image} | {d for d, _ in ingest_rejects} | {d for d, _ in crawl_rejects})
    if datasets:
        rows = []
        for d in datasets:
            dropped = {r: n for (dd, r), n in sorted((ingest_rejects + crawl_rejects).items()) if dd == d}
            rows.append(FunnelRow(d, per_image.get((d,), 0) + sum(dropped.values()), per_image.get((d,), 0), dropped))
        stages.append(Stage("ingest + crawl", "entries of a dataset's layout (or URLs fetched) -> images rows", rows))
    if workspace.units("faces") or workspace.units("face_rejects"):
        images_with_face = Counter(d for _, d in set(zip(faces.column("image_id").to_pylist(),
                                                          faces.column("dataset").to_pylist())))
        face_count = _count(faces, ["dataset"])
        fr = _count(face_rejects, ["dataset", "reason"])
        done_units = set(workspace.units("faces")) | set(workspace.units("face_rejects"))
        in_images = _count(images.filter(pc.is_in(pc.binary_join_element_wise(
            images.column("dataset"), images.column("variant"), "--"), value_set=pa.array(sorted(done_units)))),
            ["dataset"]) if images.num_rows else Counter()
        rows = []
        for d in sorted({d for (d,) in in_images} | {d for (d,) in face_count}):
            dropped = {r: n for (dd, r), n in sorted(fr.items()) if dd == d}
            rows.append(FunnelRow(d, in_images.get((d,), 0), face_count.get((d,), 0), dropped,
                                  {"images with a face": images_with_face.get(d, 0)}))
        stages.append(Stage("faces", "images -> aligned faces (one row per face found)", rows))
    if decisions is not None:
        verdicts = _count(decisions, ["dataset", "decision", "reason"])
        rows = []
        for d in sorted({k[0] for k in verdicts}):
            mine = {k[1:]: n for k, n in verdicts.items() if k[0] == d}
            dropped = {r or "?": n for (dec, r), n in sorted(mine.items(), key=lambda kv: str(kv[0])) if dec == "drop"}
            review = sum(n for (dec, _), n in mine.items() if dec == "review")
            kept = sum(n for (dec, _), n in mine.items() if dec == "keep")
            rows.append(FunnelRow(d, sum(mine.values()), kept, dropped, {"to review": review}))
        stages.append(Stage("dedupe", "faces -> kept (quality filters, duplicates, conflicts, test leakage)", rows))
    if shards is not None:
        kept = _count(decisions.filter(pc.field("decision") == "keep"), ["dataset"]) if decisions is not None \
            else Counter()
        originals = Counter(d for d, aug in zip(shards["dataset"], shards["augmented"]) if not aug)
        copies = Counter(d for d, aug in zip(shards["dataset"], shards["augmented"]) if aug)
        rows = []
        for d in sorted({d for (d,) in kept} | set(originals)):
            used = originals.get(d, 0)
            entered = kept.get((d,), 0)
            rows.append(FunnelRow(d, entered, used + copies.get(d, 0),
                                  {"left out": max(0, entered - used)} if entered > used else {},
                                  {"originals": used, "augmented copies": copies.get(d, 0)}))
        notes = []
        left_out = (card or {}).get("left_out") or {}
        if left_out:
            notes.append("left out, all datasets: " + ", ".join(f"{k} {v:,}" for k, v in sorted(left_out.items())))
        stages.append(Stage("balance", "kept faces -> shard rows (split, down-sampled, augmented copies added)", rows,
                            notes))
    return stages


# -- classes, duplicates ------------------------------------------------------------------------------------------

def _classes(faces, decisions, shards) -> dict[str, Any]:
    if decisions is not None:
        source = decisions.filter(pc.field("decision") == "keep")
        basis = "kept by dedupe"
    else:
        source = faces
        basis = "faces (dedupe not run)"
    before = {f"{d}|{c}": n for (d, c), n in _count(source, ["dataset", "label"]).items()}
    after: dict[str, int] = {}
    after_split: dict[str, int] = {}
    if shards is not None:
        after = dict(Counter(f"{d}|{c}" for d, c in zip(shards["dataset"], shards["label_name"])))
        after_split = dict(Counter(f"{s}|{c}" for s, c in zip(shards["split"], shards["label_name"])))
    datasets = sorted({k.split("|")[0] for k in (*before, *after)})
    present = {k.split("|", 1)[1] for k in (*before, *after)}
    classes = [c for c in ALL_CLASSES if c in present] + sorted(present - set(ALL_CLASSES))
    return {"datasets": datasets, "classes": classes, "before": before, "after": after, "after_split": after_split,
            "basis": basis, "balanced": shards is not None}


def _duplicates(decisions) -> dict[str, Any]:
    """Duplicate groups between datasets: cell (a, b) = groups holding faces of both a and b; (a, a) = groups with
    two or more faces of a."""
    groups: dict[str, Counter] = defaultdict(Counter)
    for group, dataset in zip(decisions.column("dup_group").to_pylist(), decisions.column("dataset").to_pylist()):
        if group is not None:
            groups[group][dataset] += 1
    datasets = sorted(set(decisions.column("dataset").to_pylist()))
    matrix = {a: {b: 0 for b in datasets} for a in datasets}
    for members in groups.values():
        for a in members:
            for b in members:
                if a != b or members[a] > 1:
                    matrix[a][b] += 1
    return {"datasets": datasets, "groups": len(groups), "faces": sum(sum(m.values()) for m in groups.values()),
            "matrix": matrix}


# -- samples ------------------------------------------------------------------------------------------------------

def _round_robin(buckets: dict[str, list[str]], n: int) -> list[str]:
    picked: list[str] = []
    queues = [list(v) for _, v in sorted(buckets.items())]
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def _samples(workspace, faces, decisions) -> dict[str, list[Thumb]]:
    """Up to SAMPLES_PER_ROW kept faces per class (spread over the sources) and per source (spread over classes)."""
    if decisions is not None:
        keep = decisions.filter(pc.field("decision") == "keep")
        rows = sorted(zip(keep.column("face_id").to_pylist(), keep.column("dataset").to_pylist(),
                          keep.column("label").to_pylist()))
    else:
        rows = sorted(zip(faces.column("id").to_pylist(), faces.column("dataset").to_pylist(),
                          faces.column("label").to_pylist()))
    by_class: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    by_source: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for face_id, dataset, label in rows:
        by_class[label or "?"][dataset].append(face_id)
        by_source[dataset][label or "?"].append(face_id)
    chosen = {f"class:{c}": _round_robin(by_class[c], SAMPLES_PER_ROW)
              for c in [c for c in ALL_CLASSES if c in by_class] + sorted(set(by_class) - set(ALL_CLASSES))}
    chosen.update({f"source:{d}": _round_robin(by_source[d], SAMPLES_PER_ROW) for d in sorted(by_source)})
    known = {face_id: (dataset, label) for face_id, dataset, label in rows}  # the label it is kept with
    crops = {i: (r["image"] or {}).get("bytes") for i, r in workspace.rows_by_id(
        "faces", {i for ids in chosen.values() for i in ids}, ["image"]).items()}  # only the chosen rows' images
    return {key: [Thumb(i, known[i][0], known[i][1] or "?", thumbnail(crops[i])) for i in ids if crops.get(i)]
            for key, ids in chosen.items()}


def _jpeg_uri(data: bytes, quality: int = 88, side: int | None = None) -> str:
    """A picture as a JPEG data URI, resized to ``side`` x ``side`` if given (a map grid is a third of the size of its
    PNG)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    if side is not None:
        rgb = rgb.resize((side, side), Image.BILINEAR)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail(data: bytes, side: int = THUMB_SIDE) -> str:
    """A face crop as a small JPEG data URI."""
    return _jpeg_uri(data, quality=85, side=side)


# -- crawl, review ------------------------------------------------------------------------------------------------

def _crawl(workspace, faces, decisions) -> dict[str, Any] | None:
    units = [u for u in workspace.units("images") if u.startswith("crawl--")]  # fusekit.crawl.store's dataset
    if not units:
        return None
    faces_of = Counter(faces.column("image_id").to_pylist()) if faces.num_rows else Counter()
    kept_of: Counter | None = None
    if decisions is not None:
        kept_ids = set(decisions.filter(pc.field("decision") == "keep").column("face_id").to_pylist())
        kept_of = Counter(i for i, f in zip(faces.column("image_id").to_pylist(), faces.column("id").to_pylist())
                          if f in kept_ids)
    yields: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for unit in units:
        table = workspace.read("images", IMAGES_SCHEMA, units=[unit], columns=["id", "extra"])
        for image_id, extra in zip(table.column("id").to_pylist(), table.column("extra").to_pylist()):
            provenance = (json.loads(extra) if extra else {}).get("provenance") or [{}]
            # every search that found the picture counts it (a picture two keywords found is in both rows)
            for key in sorted({(p.get("engine") or unit.split("--", 1)[-1], p.get("emotion") or "?",
                                p.get("keyword") or "?") for p in provenance}):
                cell = yields[key]
                cell[0] += 1
                cell[1] += faces_of.get(image_id, 0)
                cell[2] += kept_of.get(image_id, 0) if kept_of is not None else 0
    rows = [CrawlRow(e, m, k, p, f, kept if kept_of is not None else None)
            for (e, m, k), (p, f, kept) in sorted(yields.items())]
    rejects = workspace.read("rejects", REJECTS_SCHEMA, units=[u for u in units if u in workspace.units("rejects")],
                             columns=["variant", "raw_label", "reason"]) if workspace.units("rejects") else None
    by_search: dict[str, dict[str, int]] = defaultdict(dict)  # "engine / keyword" -> reason -> URLs
    if rejects is not None and rejects.num_rows:
        for (engine, keyword, reason), n in sorted(_count(rejects, ["variant", "raw_label", "reason"]).items(),
                                                   key=lambda kv: tuple(map(str, kv[0]))):
            by_search[f"{engine} / {keyword or '?'}"][reason] = n
    return {"rows": rows, "rejects": dict(by_search)}


def _review(workspace, decisions) -> dict[str, Any]:
    """Dedupe's faces left for review by reason, and the audit queue and verdicts as `fusekit status` counts them
    (``fusekit.reviews.progress``: the journal, so verdicts given while the server still runs count)."""
    out: dict[str, Any] = {"dedupe_review": None, "progress": reviews.progress(workspace)}
    if decisions is not None:
        waiting = _count(decisions.filter(pc.field("decision") == "review"), ["reason"])
        out["dedupe_review"] = {(k[0] or "?"): n for k, n in sorted(waiting.items(), key=lambda kv: str(kv[0]))}
    return out


# -- dataset folder, runs -----------------------------------------------------------------------------------------

def _dataset_card(folder: Path) -> dict[str, Any] | None:
    path = folder / "fusekit.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _shard_rows(folder: Path, card) -> dict[str, list] | None:
    files = sorted((folder / "data").glob("*.parquet")) if card is not None else []
    if not files:
        return None
    wanted = ["dataset", "label_name", "split", "augmented"]
    cols: dict[str, list] = {c: [] for c in wanted}
    for path in files:
        table = pq.read_table(path, columns=wanted)
        for c in wanted:
            cols[c].extend(table.column(c).to_pylist())
    return cols


def _read_csv(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def _runs(folder: Path) -> list[RunData]:
    if not folder.is_dir():
        return []
    runs = []
    for run_dir in sorted(p for p in folder.iterdir() if (p / "config.json").is_file()):
        try:
            runs.append(_run(run_dir))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:  # a damaged file: said, not fatal
            runs.append(RunData(run_dir.name, {}, [], {}, [], [], None,
                                error=f"{type(exc).__name__}: {exc}"))
    return runs


def _run(run_dir: Path) -> RunData:
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    history = [{k: float(v) for k, v in row.items() if v not in ("", None)}
               for row in csv.DictReader(io.StringIO((run_dir / "history.csv").read_text(encoding="utf-8")))] \
        if (run_dir / "history.csv").is_file() else []
    evals = []
    for eval_dir in sorted(p for p in (run_dir / "eval").glob("*") if (p / "metrics.json").is_file()):
        metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
        matrix = _read_csv(eval_dir / "confusion.csv")
        classes = matrix[0][1:] if matrix else list(metrics.get("classes") or [])
        confusion = [[int(v) for v in row[1:]] for row in matrix[1:]]
        by_source = [{"source": r[0], "n": int(r[1]), "accuracy": float(r[2]), "balanced_accuracy": float(r[3]),
                      "macro_f1": float(r[4])} for r in _read_csv(eval_dir / "by_source.csv")[1:]]
        evals.append(EvalData(eval_dir.name, metrics, classes, confusion, by_source))
    explain_dir = run_dir / "explain"
    info_path = explain_dir / "explain.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    grids = []
    if info is not None:
        for entry in info.get("classes", []):
            png = explain_dir / entry["file"]
            if png.is_file():
                grids.append((entry["class"], _jpeg_uri(png.read_bytes())))
    return RunData(run_dir.name, config, history, state, evals, grids, info)
