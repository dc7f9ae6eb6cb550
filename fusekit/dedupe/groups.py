"""Duplicate groups (connected components of confirmed pairs) and the keep policy that picks one face per group.

Groups are the connected components of the graph whose edges are exact duplicates (equal pixel_sha256) and near
duplicates that passed the confirmation; scipy's connected_components does the union-find in compiled code.
The keep order is a setting: by default a group that holds an official test face keeps it (the test set stays
comparable; the other members are dropped as leakage), then a face that passes the quality filters, then the dataset tier (lab datasets with
manual labels, then curated web datasets, then crawled pictures), then the more detailed source face (its
``resolution``: an enlarged copy is no more detailed than its original), then the higher detection score,
then the smallest id, so the choice never depends on reading order.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.sparse.csgraph import connected_components

LAB = ("ckplus", "kdef", "jaffe", "mmi")
WEB = ("fer2013", "affectnet", "rafdb", "expw", "kdrama")
CRAWL = ("crawl",)
DEFAULT_TIERS = (LAB, WEB, CRAWL)
TIER_NAMES = ("lab dataset", "web dataset", "crawled picture")
UNKNOWN_TIER = 1  # a user's class-folder dataset counts as curated web data
CRITERIA = ("test", "quality", "tier", "face", "score", "id")
WHY = {
    "test": "official test split",
    "quality": "passes the quality filters",
    "tier": "{kept} before {other}",
    "face": "larger source face",
    "score": "higher detection score",
    "id": "smallest id",
}


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label of each of n nodes given undirected edges (a[i], b[i])."""
    graph = scipy.sparse.coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def tier_of(datasets: np.ndarray, tiers: tuple[tuple[str, ...], ...]) -> np.ndarray:
    lookup = {name: rank for rank, names in enumerate(tiers) for name in names}
    return np.array([lookup.get(d, UNKNOWN_TIER) for d in datasets], np.int64)


def sort_keys(*, is_test: np.ndarray, tier: np.ndarray, face_area: np.ndarray, score: np.ndarray,
              id_rank: np.ndarray, bad_quality: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per criterion, an array where smaller is better."""
    return {
        "test": (~is_test).astype(np.int64),
        "quality": (np.zeros(len(is_test), bool) if bad_quality is None else bad_quality).astype(np.int64),
        "tier": tier,
        "face": -face_area.astype(np.float64),
        "score": -np.nan_to_num(score.astype(np.float64), nan=-1.0),
        "id": id_rank,
    }


def choose(group: np.ndarray, order: tuple[str, ...], keys: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """For the members of multi-face groups (``group`` >= 0): the kept index per member, and per kept face the
    criterion that set it apart from the runner-up (index into ``order``; -1 when alone)."""
    n = len(group)
    members = np.flatnonzero(group >= 0)
    # np.lexsort sorts by the last key first
    columns = [keys[c][members] for c in reversed(order)] + [group[members]]
    ranked = members[np.lexsort(columns)]
    g = group[ranked]
    first = np.ones(len(ranked), bool)
    first[1:] = g[1:] != g[:-1]
    head_pos = np.flatnonzero(first)
    kept_of_rank = np.repeat(ranked[head_pos], np.diff(np.append(head_pos, len(ranked))))
    kept = np.full(n, -1, np.int64)
    kept[ranked] = kept_of_rank
    # why: the first criterion on which the kept face beats the runner-up
    why = np.full(n, -1, np.int64)
    runner_pos = head_pos + 1
    has_runner = runner_pos < len(ranked)
    heads, runners = ranked[head_pos[has_runner]], ranked[runner_pos[has_runner]]
    decided = np.full(len(heads), len(order) - 1, np.int64)
    for k in range(len(order) - 1, -1, -1):
        col = keys[order[k]]
        decided = np.where(col[heads] != col[runners], k, decided)
    why[heads] = decided
    return kept, why
