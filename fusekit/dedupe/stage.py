"""`fusekit dedupe`: every `faces` row -> one `decisions` row (keep, drop with a reason, or review).

Steps: hash each faces unit once (cached in table `dedupe_hashes`, keyed by the faces unit's files and the hash
version), apply the quality filters, group exact duplicates by the source face's pixel hash, search the pHashes
(plain, mirrored and re-framed probes) within the Hamming threshold, confirm every candidate pair on the thumbnails,
join pairs into groups, keep one face per group by the keep policy, flag label conflicts and test leakage.
An official test member (split "test") is never dropped or sent to review: it is kept, and what would have removed
it (its quality reason, a duplicate of another test member, a label conflict) goes to its ``flags``; what duplicates
it outside the test split is dropped as ``test_leakage``.
`decisions` holds the machine's judgement only: a person's verdicts (``fusekit.reviews``) are applied by the readers
(balance, audit) on top of it, so an undone or changed verdict never lingers in a table. Dedupe's summary counts them
(a rejected face as dropped ``review_rejected``, a relabelled or accepted one as kept).
Decisions are recomputed as a whole on every run and written as unit `all`, so a rerun after new ingests equals a run
from scratch and a rerun with other settings reverses earlier decisions. Source files are never opened.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusekit import reviews
from fusekit.dedupe import confirm as confirm_mod
from fusekit.dedupe import groups as groups_mod
from fusekit.dedupe import hashing, search
from fusekit.dedupe.quality import quality_reasons
from fusekit.config import FromMapping
from fusekit.errors import ConfigError
from fusekit.records import DECISIONS_SCHEMA, FACES_SCHEMA, flag_kind
from fusekit.workspace import Workspace, digest, unit_label

log = logging.getLogger(__name__)
HASH_TABLE = "dedupe_hashes"
UNIT = "all"
CONFLICT_POLICIES = ("review", "drop", "keep")
META_COLUMNS = ["id", "image_id", "dataset", "split", "label", "score", "face_width", "face_height", "pixel_sha256",
                "resolution"]


@dataclass(frozen=True)
class DedupeConfig(FromMapping):
    """Settings of `fusekit dedupe` (defaults measured in docs/dedupe.md)."""

    threshold: int = 8  # Hamming radius of the pHash search (64 bits)
    probes: bool = True  # also search with re-framed hashes (turned / cropped copies)
    min_similarity: float = confirm_mod.DEFAULT_MIN_SIMILARITY  # confirmation threshold (worst-block, registered)
    min_face: int = 32  # source face, shorter side, pixels
    min_contrast: float = 5.0  # grey std below: blank
    min_brightness: float = 25.0  # mean grey below: dark
    min_sharpness: float = 0.15  # Laplacian std / grey std at 64x64 below: blurred
    keep_order: tuple[str, ...] = ("test", "tier", "face", "score")  # "test" always leads (see ``order``)
    tiers: tuple[tuple[str, ...], ...] = groups_mod.DEFAULT_TIERS
    conflicts: str = "review"  # review | drop | keep: what happens to the kept face of a label-conflict group
    search_method: str = "auto"  # auto | flat | mih
    workers: int = 2
    rehash: bool = False  # ignore cached hashes

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 32:
            raise ConfigError(f"--threshold must be between 0 and 32 bits, got {self.threshold}")
        if self.min_face < 0:
            raise ConfigError(f"--min-face must be >= 0, got {self.min_face}")
        if self.conflicts not in CONFLICT_POLICIES:
            raise ConfigError(f"--conflicts must be one of {', '.join(CONFLICT_POLICIES)}, got {self.conflicts!r}")
        unknown = [c for c in self.keep_order if c not in groups_mod.CRITERIA]
        if unknown or len(set(self.keep_order)) != len(self.keep_order):
            raise ConfigError(f"--keep-order takes a comma list of {', '.join(groups_mod.CRITERIA[:-1])}, "
                              f"got {','.join(self.keep_order)}")
        if self.search_method not in ("auto", "flat", "mih"):
            raise ConfigError(f"unknown search method {self.search_method!r} (auto, flat, mih)")

    @property
    def order(self) -> tuple[str, ...]:
        """The keep order applied: an official test face always comes first (it is never dropped, so a group that
        holds one keeps a test face and drops its other members as leakage), then a face that passes the quality
        filters (a group keeps a good face over a small or blurred copy of it), the smallest id always last."""
        return ("test", "quality") + tuple(c for c in self.keep_order if c not in ("test", "quality", "id")) + ("id",)


@dataclass
class DedupeReport:
    faces: int = 0
    kept: int = 0
    review: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    groups: int = 0
    grouped_faces: int = 0
    conflicts: int = 0  # groups whose members carry different labels
    cross_split_groups: int = 0
    test_leakage_groups: int = 0
    candidates: int = 0  # candidate pairs from the hash search
    confirmed: int = 0
    exact_pairs: int = 0
    pair_matrix: dict[str, dict[str, int]] = field(default_factory=dict)  # duplicate pairs per pair of datasets
    datasets: list[str] = field(default_factory=list)
    hashed_units: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cached_units: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    conflict_examples: list[dict[str, Any]] = field(default_factory=list)
    # official test splits, kept whole: per dataset its test members, how many carry flags, and faces per flag kind
    # (the part before ":", e.g. near_duplicate_of); one face may carry several kinds
    test_members: dict[str, int] = field(default_factory=dict)
    test_flagged: dict[str, int] = field(default_factory=dict)
    test_flags: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["dropped"] = dict(self.dropped)
        return data

    def render(self) -> str:
        """`fusekit dedupe`'s summary (``fusekit.dedupe.report.render_report``)."""
        from fusekit.dedupe.report import render_report

        return render_report(self)


# -- hashing with a per-unit cache ---------------------------------------------------------------------------------------

def unit_hashes(workspace: Workspace, unit: str, config: DedupeConfig,
                rows: int | None = None) -> tuple[pa.Table, bool]:
    """The hashes of one faces unit, from the cache when its files and the hash version are unchanged. ``rows``:
    the unit's face count when the caller has read it (else each part's footer is read for it)."""
    info = workspace.unit_info(HASH_TABLE, unit)
    key = {"hash_version": hashing.HASH_VERSION, "faces": workspace.listing("faces", [unit])}
    cached = workspace.parts(HASH_TABLE, unit)
    if not config.rehash and info is not None and cached and info.get("key") == json.loads(json.dumps(key)):
        return pq.read_table(cached[0], schema=hashing.HASHES_SCHEMA), True
    paths = workspace.parts("faces", unit)
    ids: list[list[str]] = []

    def crops():  # part by part: the next part is read while the workers hash this one
        for path in paths:
            faces = pq.read_table(path, columns=["id", "image"])
            ids.append(faces.column("id").to_pylist())
            image = faces.column("image").combine_chunks()
            yield image.flatten()[image.type.get_field_index("bytes")]  # a null image: a null crop

    total = rows if rows is not None else sum(pq.ParquetFile(path).metadata.num_rows for path in paths)
    batches = hashing.hash_parts(crops(), workers=config.workers, total=total)
    tables = [batch.table(ids[k]) for k, batch in enumerate(batches)]  # part k has been read when batch k comes
    table = pa.concat_tables(tables) if tables else hashing.HASHES_SCHEMA.empty_table()
    # the info goes first and comes back last (Workspace.write_unit), so a crash leaves no stale pair
    workspace.write_unit(HASH_TABLE, unit, table, {"key": key, "rows": table.num_rows})
    return table, False


# -- the stage ---------------------------------------------------------------------------------------------------------

def _live_units(workspace: Workspace, report: DedupeReport) -> list[str]:
    """The faces units to judge. Dedupe reads only the faces table: a faces unit whose images unit was re-ingested
    since its faces were made (``--no-faces``) is said to be out of date, from the images listing the faces stage
    recorded in its `_unit.json`; the faces stage drops its orphans on its next run."""
    faces = workspace.units("faces")
    images = set(workspace.units("images"))
    live = [u for u in faces if u in images] if images else faces
    for unit in live:
        made_on = (workspace.unit_info("faces", unit) or {}).get("images_listing")
        if made_on is not None and made_on != digest(workspace.listing("images", [unit])):
            report.warnings.append(f"the faces of {unit_label(unit)} are older than its images (ingested "
                                   f"again since): run `fusekit faces` first, or its old faces take part")
    return live


def run_dedupe(workspace: Workspace, config: DedupeConfig | None = None) -> DedupeReport:
    config = config or DedupeConfig()
    workspace.ensure()
    report = DedupeReport()
    t0 = time.perf_counter()
    units = _live_units(workspace, report)
    faces_read = digest(workspace.listing("faces"))  # balance compares: decisions made on other faces are stale
    metas, hashes = [], []
    picture_labels: dict[str, list[str]] = {}
    for unit in units:
        meta = workspace.read("faces", FACES_SCHEMA, units=[unit], columns=[*META_COLUMNS, "labels"])
        picture_labels.update(_conflicting_pictures(meta))
        meta = meta.select(META_COLUMNS)
        table, cached = unit_hashes(workspace, unit, config, rows=meta.num_rows)
        (report.cached_units if cached else report.hashed_units).append(unit)
        # align cached rows with the faces rows by id (both come from the same files; the join makes it explicit)
        index = pc.index_in(meta.column("id"), table.column("face_id"))
        if index.null_count:
            raise RuntimeError(f"hash cache of {unit} misses faces rows; rerun with --rehash")
        metas.append(meta)
        hashes.append(table.take(index))
    meta = pa.concat_tables(metas) if metas else FACES_SCHEMA.empty_table().select(META_COLUMNS)
    hashed = hashing.from_table(pa.concat_tables(hashes)) if hashes else hashing.hash_images([])
    report.seconds["hash"] = round(time.perf_counter() - t0, 2)
    decisions = decide(meta, hashed, config, report, picture_labels=picture_labels)
    _count_reviews(workspace, decisions, report)
    _write(workspace, decisions, config, report, faces_read)
    report.seconds["total"] = round(time.perf_counter() - t0, 2)
    return report


def _count_reviews(workspace: Workspace, decisions: pa.Table, report: DedupeReport) -> None:
    """The summary's counts with a person's verdicts applied (``fusekit.reviews.applied``); the table stays the
    machine's, which balance and audit read with the verdicts of their own time."""
    given = reviews.verdicts(workspace)
    if not given:
        return
    after = reviews.applied(decisions, given)
    kinds = after.column("decision").to_pylist()
    report.kept, report.review = kinds.count("keep"), kinds.count("review")
    report.dropped = Counter(str(r) for d, r in zip(kinds, after.column("reason").to_pylist()) if d == "drop")


def _column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_pylist(), dtype=object)


def _search_unique(queries: np.ndarray, codes: np.ndarray, config: DedupeConfig) -> tuple[np.ndarray, np.ndarray]:
    """range_pairs over the distinct query codes only (exact duplicate faces, probes equal to a plain hash are
    searched once), then every query index that asked each code gets its answers."""
    uniq, inverse = np.unique(queries, return_inverse=True)
    uq, d = search.range_pairs(uniq, codes, config.threshold, config.search_method)
    if len(uniq) == len(queries):
        return np.argsort(inverse)[uq] if len(uq) else uq, d  # one asker per code: map back directly
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(uniq))
    starts = np.cumsum(counts) - counts
    reps = counts[uq]
    offsets = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
    return order[np.repeat(starts[uq], reps) + offsets], np.repeat(d, reps)


def candidate_pairs(hashed: hashing.HashBatch, live: np.ndarray, config: DedupeConfig):
    """(a, b, mirrored) index triples, a < b, from the pHash search over the faces in ``live``."""
    codes = hashed.phash[live]
    queries = [codes, hashed.mirror[live]]
    mirrored = [False, True]
    if config.probes:  # the re-framed face's hashes, then the re-framed mirror image's
        half = hashed.probes.shape[1] // 2
        queries += [hashed.probes[live, k] for k in range(hashed.probes.shape[1])]
        mirrored += [False] * half + [True] * half
    n = len(codes)
    q, d = _search_unique(np.concatenate(queries), codes, config)
    owner, kind = q % n, q // n
    flag = np.asarray(mirrored)[kind]
    a, b = np.minimum(owner, d), np.maximum(owner, d)
    valid = a != b
    a, b, flag = a[valid], b[valid], flag[valid]
    # one row per (pair, orientation)
    key = np.unique((a * n + b) * 2 + flag)
    pair, flag = key // 2, (key % 2).astype(bool)
    a, b = pair // n, pair % n
    return live[a], live[b], flag


def _conflicting_pictures(faces: pa.Table) -> dict[str, list[str]]:
    """Pictures the crawl found under two or more emotions, with those emotions (the faces stage copies them into
    the faces rows' ``labels``): their faces carry one label (the first found), but the picture is a label conflict
    like a group with two labels."""
    flagged = faces.filter(pc.is_valid(faces.column("labels")))
    return {image_id: list(labels) for image_id, labels in zip(flagged.column("image_id").to_pylist(),
                                                                flagged.column("labels").to_pylist())}


def decide(meta: pa.Table, hashed: hashing.HashBatch, config: DedupeConfig, report: DedupeReport,
           picture_labels: dict[str, list[str]] | None = None) -> pa.Table:
    t = time.perf_counter()
    n = meta.num_rows
    report.faces = n
    ids = _column(meta, "id")
    datasets = _column(meta, "dataset")
    splits = _column(meta, "split")
    labels = _column(meta, "label")
    shas = _column(meta, "pixel_sha256")
    picture_labels = picture_labels or {}
    # the labels each face stands for: its own, and every emotion its picture was found under (crawl conflicts)
    face_labels = [set(picture_labels.get(image_id, ())) | ({lab} if lab is not None else set())
                   for image_id, lab in zip(_column(meta, "image_id"), labels)]
    fw = meta.column("face_width").to_numpy(zero_copy_only=False).astype(np.float64)
    fh = meta.column("face_height").to_numpy(zero_copy_only=False).astype(np.float64)
    score = meta.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    # what the minimum face size is judged on (see records.FACES_SCHEMA); faces rows of an older fusekit: the box
    resolution = meta.column("resolution").to_numpy(zero_copy_only=False).astype(np.float64)
    resolution = np.where(np.isfinite(resolution), resolution, np.fmin(fw, fh))
    reason = quality_reasons(resolution, hashed.ok, hashed.mean, hashed.std, hashed.sharpness,
                             min_face=config.min_face, min_contrast=config.min_contrast,
                             min_brightness=config.min_brightness, min_sharpness=config.min_sharpness)
    is_test = splits == "test"
    has_quality = reason != None  # noqa: E711
    quality_reason = reason.copy()
    # Every face whose crop decoded is searched, whatever its quality: an enlarged copy of a face too small to keep
    # must join it (and is then judged with it), and a copy of an official test member is leakage even when the
    # test face itself is small or blurred (it is kept, flagged below).
    live = np.flatnonzero(np.asarray(hashed.ok, bool))
    flags: list[list[str]] = [[reason[i]] if is_test[i] and has_quality[i] else [] for i in range(n)]

    # exact duplicates: equal pixel hashes of the source face (a star of edges per hash)
    ea, eb = _exact_edges(shas, live)
    report.exact_pairs = len(ea)
    # near duplicates: hash search, then confirmation
    a, b, mirrored = candidate_pairs(hashed, live, config)
    same = (shas[a] == shas[b]) & (shas[a] != None)  # noqa: E711 - already joined as exact duplicates
    a, b, mirrored = a[~same], b[~same], mirrored[~same]
    report.candidates = len(a)
    report.seconds["search"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    accepted, _ = confirm_mod.confirm(hashed.thumbs[a], hashed.thumbs[b], mirrored, config.min_similarity,
                                      workers=config.workers)
    report.confirmed = len(np.unique(a[accepted] * n + b[accepted]))
    report.seconds["confirm"] = round(time.perf_counter() - t, 2)

    edges_a = np.concatenate([ea, a[accepted]])
    edges_b = np.concatenate([eb, b[accepted]])
    comp = groups_mod.components(n, edges_a, edges_b) if n else np.zeros(0, np.int64)
    sizes = np.bincount(comp, minlength=1) if n else np.zeros(0, np.int64)
    in_group = (sizes[comp] > 1) if n else np.zeros(0, bool)
    group = np.where(in_group, comp, -1)

    group_has_test = np.zeros(len(sizes), bool)
    np.logical_or.at(group_has_test, comp[in_group & is_test], True)
    id_rank = np.empty(n, np.int64)
    id_rank[np.argsort(ids.astype(str), kind="stable")] = np.arange(n)
    tiers_seen = groups_mod.tier_of(datasets, config.tiers)
    keys = groups_mod.sort_keys(is_test=is_test, tier=tiers_seen, face_area=np.nan_to_num(resolution ** 2),
                                score=score, id_rank=id_rank, bad_quality=has_quality)
    kept, why = groups_mod.choose(group, config.order, keys)

    # group facts: id (smallest face id), label conflict, splits spanned
    group_id = np.full(n, None, dtype=object)
    conflict = np.zeros(n, bool)
    decision = np.full(n, "keep", dtype=object)
    kept_id = np.full(n, None, dtype=object)
    kept_why = np.full(n, None, dtype=object)
    members = np.flatnonzero(in_group)
    order = members[np.lexsort((id_rank[members], comp[members]))]
    bounds = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]]) if len(order) else order
    for start, end in zip(bounds, np.r_[bounds[1:], len(order)]):
        idx = order[start:end]  # a loop over groups, not pairs: each step is a few numpy calls on the group
        gid = ids[idx[0]]
        group_id[idx] = gid
        labs = set().union(*(face_labels[i] for i in idx))
        spl = {s or "none" for s in splits[idx]}  # a crawled face has no split
        k = kept[idx[0]]
        if len(labs) > 1:
            conflict[idx] = True
            report.conflicts += 1
            if len(report.conflict_examples) < 20:
                report.conflict_examples.append({"group": gid, "labels": sorted(labs), "size": int(len(idx))})
        if len(spl) > 1:
            report.cross_split_groups += 1
        if group_has_test[comp[k]] and len(spl) > 1:
            report.test_leakage_groups += 1
        crit = config.order[why[k]] if why[k] >= 0 else "id"
        text = groups_mod.WHY[crit]
        if crit == "tier":
            runner = min((i for i in idx if i != k), key=lambda i: tuple(keys[c][i] for c in config.order))
            text = text.format(kept=groups_mod.TIER_NAMES[min(tiers_seen[k], 2)],
                               other=groups_mod.TIER_NAMES[min(tiers_seen[runner], 2)])
        kept_id[idx] = ids[k]
        kept_why[idx] = text
        for i in idx:
            if i == k:
                continue
            kind = "exact_duplicate" if shas[i] is not None and shas[i] == shas[k] else "near_duplicate"
            if is_test[i]:  # another official test member (the kept face is one: "test" leads the order): stays
                flags[i].append(f"{kind}_of:{ids[k]}")
                reason[i] = reason[i] or kind
                continue
            decision[i] = "drop"
            if group_has_test[comp[k]]:
                reason[i] = "test_leakage"
            elif not has_quality[k]:  # a copy of a good face (whatever its own quality)
                reason[i] = kind
            # else: no member passes the quality filters; each is dropped for its own reason
        if has_quality[k] and not is_test[k]:
            decision[k] = "drop"  # the group's best face fails the filters: dropped with its own reason
            continue
        if len(labs) > 1:
            for i in idx[is_test[idx]]:
                flags[i].append("label_conflict")
                reason[i] = reason[i] or "label_conflict"
            if not is_test[k] and config.conflicts != "keep":
                decision[k] = "review" if config.conflicts == "review" else "drop"
                reason[k] = "label_conflict"

    quality_drop = has_quality & (decision == "drop") & (reason == np.asarray(quality_reason, dtype=object))
    quality_drop |= has_quality & ~in_group & ~is_test
    decision[quality_drop] = "drop"
    for i in np.flatnonzero(~in_group & ~quality_drop):  # a face alone, but its picture carries two emotions
        if len(face_labels[i]) > 1:
            conflict[i] = True
            report.conflicts += 1
            if len(report.conflict_examples) < 20:
                report.conflict_examples.append({"group": ids[i], "labels": sorted(face_labels[i]), "size": 1})
            if is_test[i]:
                flags[i].append("label_conflict")
                reason[i] = reason[i] or "label_conflict"
            elif config.conflicts != "keep":
                decision[i] = "review" if config.conflicts == "review" else "drop"
                reason[i] = "label_conflict"
    _count_test_flags(report, datasets, is_test, flags)
    report.groups = len(bounds) if len(members) else 0
    report.grouped_faces = int(len(members))
    report.kept = int((decision == "keep").sum())
    report.review = int((decision == "review").sum())
    report.dropped = Counter(str(r) for r, d in zip(reason, decision) if d == "drop")
    report.datasets = sorted(set(datasets.tolist()))
    report.pair_matrix = _pair_matrix(comp[in_group], datasets[in_group])

    detail = np.full(n, None, dtype=object)
    for i in np.flatnonzero(quality_drop | (is_test & has_quality)):  # a test member's reason is its quality one
        detail[i] = _quality_detail(reason[i], i, hashed, fw, fh)
    rows = {
        "face_id": ids, "dataset": datasets, "split": splits, "label": labels, "decision": decision,
        "reason": reason, "detail": detail, "dup_group": group_id, "kept_id": kept_id, "kept_why": kept_why,
        "conflict": conflict, "phash": np.array([hashing.to_hex(v) if ok else None
                                                  for v, ok in zip(hashed.phash, hashed.ok)], dtype=object),
        "hash_version": np.full(n, hashing.HASH_VERSION, dtype=object),
    }
    columns = {k: pa.array(v.tolist(), DECISIONS_SCHEMA.field(k).type) for k, v in rows.items()}
    columns["flags"] = pa.array(flags, DECISIONS_SCHEMA.field("flags").type)
    table = pa.Table.from_pydict({name: columns[name] for name in DECISIONS_SCHEMA.names}, schema=DECISIONS_SCHEMA)
    return table.take(pc.sort_indices(table, [("face_id", "ascending")]))


def _count_test_flags(report: DedupeReport, datasets: np.ndarray, is_test: np.ndarray,
                      flags: list[list[str]]) -> None:
    members: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = {}
    for i in np.flatnonzero(is_test):
        d = str(datasets[i])
        members[d] += 1
        if flags[i]:
            flagged[d] += 1
            kinds.setdefault(d, Counter()).update({flag_kind(f) for f in flags[i]})
    report.test_members = dict(sorted(members.items()))
    report.test_flagged = {d: flagged[d] for d in report.test_members}
    report.test_flags = {d: dict(sorted(kinds.get(d, Counter()).items(), key=lambda kv: (-kv[1], kv[0])))
                         for d in report.test_members}


def _quality_detail(reason: str, i: int, h: hashing.HashBatch, fw: np.ndarray, fh: np.ndarray) -> str:
    return {
        "too_small": f"source face {fw[i]:.0f}x{fh[i]:.0f} px",
        "undecodable": "aligned crop bytes missing or unreadable",
        "blank": f"grey std {h.std[i]:.1f}",
        "dark": f"mean grey {h.mean[i]:.1f}",
        "blurred": f"sharpness {h.sharpness[i]:.3f}",
    }.get(reason, "")


def _exact_edges(shas: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    have = live[np.array([shas[i] is not None for i in live], bool)] if len(live) else live
    if not len(have):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, inverse = np.unique(shas[have].astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    inv = inverse[order]
    first = np.r_[True, inv[1:] != inv[:-1]]
    head = have[order][first][np.cumsum(first) - 1]
    rest = ~first
    return head[rest].astype(np.int64), have[order][rest].astype(np.int64)


def _pair_matrix(comp: np.ndarray, datasets: np.ndarray) -> dict[str, dict[str, int]]:
    """Duplicate pairs per pair of datasets: within a group of counts c_d, C(c_d, 2) pairs (d, d), c_d c_e (d, e)."""
    counts: dict[int, Counter[str]] = {}
    for g, d in zip(comp.tolist(), datasets.tolist()):
        counts.setdefault(g, Counter())[d] += 1
    matrix: dict[str, dict[str, int]] = {}
    for c in counts.values():
        names = sorted(c)
        for i, x in enumerate(names):
            for y in names[i:]:
                pairs = c[x] * (c[x] - 1) // 2 if x == y else c[x] * c[y]
                row = matrix.setdefault(x, {})
                row[y] = row.get(y, 0) + pairs
    return matrix


def _write(workspace: Workspace, decisions: pa.Table, config: DedupeConfig, report: DedupeReport,
           faces_read: str) -> None:
    info = {"stage": "dedupe", "config": asdict(config), "hash_version": hashing.HASH_VERSION,
            "faces": faces_read, "report": report.to_json()}
    workspace.write_unit("decisions", UNIT, decisions, info)
