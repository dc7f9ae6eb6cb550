"""Honest train/val/test splits: stratified by class, with every group of related faces on one side.

Faces are linked when they share a picture (``image_id``), a subject (KDEF, JAFFE, CK+, MMI: the poser), a group
(ExpW and crawl: the source picture; K-drama: the clip; CK+: the sequence) or a duplicate group from dedupe. Linked
faces form a component (connected components of a face-key graph), and a component lands in exactly one split.

Official splits are kept: a component holding an official test face is test, else val if it holds an official val
face, else train if it holds an official train face; faces of the component without an official split follow it.
Official faces of a lower split that are linked to a higher one (a subject or a duplicate in both train and test)
would leak, so they are left out and counted; test is the highest split, so an official test face is never left out
(a test member linked to a train member stays test, and dedupe has dropped that train member as leakage already). Components with no official face are split by the requested fractions;
datasets with an official train split but no val have val carved from their train components.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fusekit.records import SPLITS

PRIORITY = {"train": 0, "val": 1, "test": 2}

# Which column carries the group key, per dataset (documentation and the card; the code links on every key present).
GROUP_KEYS = {
    "kdef": "subject",
    "jaffe": "subject",
    "ckplus": "subject",
    "mmi": "subject",
    "expw": "group (source picture)",
    "crawl": "group (source picture)",
    "kdrama": "group (clip)",
}


@dataclass
class SplitResult:
    split: list[str | None]  # per row: train | val | test, or None when the row is left out
    left_out: Counter[str] = field(default_factory=Counter)  # reason -> rows
    components: int = 0
    carved: list[str] = field(default_factory=list)  # datasets whose val was carved from their official train
    notes: list[str] = field(default_factory=list)


def components(keys: list[list[str | None]], n: int) -> np.ndarray:
    """Component id per row: rows that share any non-null key (per key column) end up in one component."""
    rows, cols = [np.arange(n)], [np.arange(n)]
    offset = n
    for column in keys:
        values = np.array([v if v is not None else "" for v in column], dtype=object)
        present = np.flatnonzero(values != "")
        if present.size == 0:
            continue
        uniques, inverse = np.unique(values[present].astype(str), return_inverse=True)
        rows.append(present)
        cols.append(offset + inverse)
        offset += len(uniques)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    # Renumber by first row so that ids do not depend on the key order.
    uniques, first, inverse = np.unique(labels[:n], return_index=True, return_inverse=True)
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(uniques))
    return rank[inverse]


def group_key_columns(dataset: list[str], image_id: list[str], subject: list[str | None], group: list[str | None],
                      dup_group: list[str | None]) -> list[list[str | None]]:
    """The key columns that link faces; subject and group keys are qualified by dataset (S005 in CK+ is not MMI's)."""
    return [
        list(image_id),
        [f"{d}\x1f{s}" if s else None for d, s in zip(dataset, subject)],
        [f"{d}\x1f{g}" if g else None for d, g in zip(dataset, group)],
        list(dup_group),
    ]


def _allocate(n: int, weights: np.ndarray) -> np.ndarray:
    """Split ``n`` items over bins in proportion to ``weights`` (largest remainder; deterministic)."""
    total = weights.sum()
    if n == 0:
        return np.zeros(len(weights), dtype=np.int64)
    if total <= 0:
        weights = np.ones(len(weights))
        total = weights.sum()
    exact = n * weights / total
    base = np.floor(exact).astype(np.int64)
    rest = n - base.sum()
    if rest:
        order = np.lexsort((np.arange(len(weights)), -(exact - base)))
        base[order[:rest]] += 1
    return base


def stratified_group_assign(comp: np.ndarray, labels: np.ndarray, fractions: np.ndarray,
                            rng: np.random.Generator, n_classes: int) -> np.ndarray:
    """Assign each component (ids 0..C-1 in ``comp``) to a split index, matching ``fractions`` per class.

    Multi-face components go first, largest first (ties broken by a seeded draw), each to the split whose per-class
    targets it fills best; single faces then fill the remaining per-class need exactly (largest remainder).
    """
    n_comp = int(comp.max()) + 1 if comp.size else 0
    counts = np.zeros((n_comp, n_classes), dtype=np.int64)
    np.add.at(counts, (comp, labels), 1)
    sizes = counts.sum(1)
    targets = fractions[:, None] * counts.sum(0)[None, :]
    current = np.zeros_like(targets)
    assigned = np.full(n_comp, -1, dtype=np.int64)
    multi = np.flatnonzero(sizes > 1)
    tiebreak = rng.random(n_comp)
    for c in multi[np.lexsort((tiebreak[multi], -sizes[multi]))]:
        v = counts[c]
        need = (targets - current) / np.maximum(targets, 1.0)
        score = (need * v[None, :]).sum(1)
        score[fractions <= 0] = -np.inf
        s = int(np.argmax(score))
        assigned[c] = s
        current[s] += v
    singles = np.flatnonzero(sizes == 1)
    single_class = counts[singles].argmax(1)
    for k in range(n_classes):
        members = singles[single_class == k]
        if members.size == 0:
            continue
        members = members[rng.permutation(members.size)]
        need = np.maximum(targets[:, k] - current[:, k], 0.0)
        if need.sum() <= 0:
            need = fractions.astype(float).copy()
        need[fractions <= 0] = 0.0
        alloc = _allocate(members.size, need)
        start = 0
        for s, count in enumerate(alloc):
            assigned[members[start:start + count]] = s
            current[s, k] += count
            start += count
    return assigned[comp]


def assign_splits(*, dataset: list[str], image_id: list[str], subject: list[str | None], group: list[str | None],
                  dup_group: list[str | None], official: list[str | None], labels: np.ndarray, n_classes: int,
                  fractions: tuple[float, float, float], seed: int, keep_official_val: bool = True,
                  redo: tuple[str, ...] = ("kdrama",)) -> SplitResult:
    """The split of every row (see the module docstring). ``labels`` are class ids (0..n_classes-1)."""
    n = len(dataset)
    result = SplitResult(split=[None] * n)
    if n == 0:
        return result
    redo_set = set(redo)
    official_eff = []
    for d, s in zip(dataset, official):
        s = s if s in PRIORITY and d not in redo_set else None
        if s == "val" and not keep_official_val:
            s = "train"
        official_eff.append(s)
    prio = np.array([PRIORITY[s] if s else -1 for s in official_eff], dtype=np.int64)
    comp = components(group_key_columns(dataset, image_id, subject, group, dup_group), n)
    n_comp = int(comp.max()) + 1
    result.components = n_comp
    comp_prio = np.full(n_comp, -1, dtype=np.int64)
    np.maximum.at(comp_prio, comp, prio)
    leak = (prio >= 0) & (prio < comp_prio[comp])
    for i in np.flatnonzero(leak):
        result.left_out[f"linked_to_{SPLITS[comp_prio[comp[i]]]}"] += 1

    # Datasets with an official train split and no official val get val carved from their train components.
    has = {(d, s) for d, s in zip(dataset, official_eff) if s}
    carve = sorted({d for d, s in has if s == "train" and (d, "val") not in has})
    result.carved = carve if fractions[1] > 0 else []
    carve_set = set(result.carved)
    # A train component is carvable when every official face in it comes from a dataset that needs carving.
    not_carvable = np.zeros(n_comp, dtype=bool)
    ds_arr = np.array(dataset, dtype=object)
    outside = np.array([d not in carve_set for d in ds_arr]) & (prio >= 0)
    np.logical_or.at(not_carvable, comp[outside], True)

    split = np.full(n, -1, dtype=np.int64)
    split[:] = comp_prio[comp]
    rng = np.random.default_rng([seed, 7])
    pools = {
        "free": (comp_prio == -1, np.array(fractions, dtype=float)),
        "carve": ((comp_prio == 0) & ~not_carvable,
                  np.array([fractions[0], fractions[1], 0.0]) / (fractions[0] + fractions[1])),
    }
    for name, (comp_mask, pool_fractions) in pools.items():
        if name == "carve" and not carve_set:
            continue
        rows = np.flatnonzero(comp_mask[comp])
        if rows.size == 0:
            continue
        _, local = np.unique(comp[rows], return_inverse=True)
        split[rows] = stratified_group_assign(local, labels[rows], pool_fractions, rng, n_classes)
    for i in range(n):
        if not leak[i]:
            result.split[i] = SPLITS[split[i]]
    return result


def check_no_group_straddles(splits: list[str | None], keys: list[list[str | None]]) -> list[str]:
    """Group keys found in more than one split (empty when the split is honest); used by tests and the card."""
    bad = []
    for column in keys:
        seen: dict[str, str] = {}
        for key, s in zip(column, splits):
            if key is None or s is None:
                continue
            if seen.setdefault(key, s) != s:
                bad.append(key)
    return sorted(set(bad))
