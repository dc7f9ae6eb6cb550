"""Resampling of the training split and the class weights (the paper's §2.3.1: down-sample big classes, over-sample
small ones with augmented copies, and weight the loss).

Only training rows are resampled; validation and test stay as they are, so scores stay comparable. Every choice is
a seeded draw over rows sorted by id, so the same inputs and seed give the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ResamplePlan:
    target: int | None
    keep: np.ndarray  # indices (into the training rows) of the originals kept, sorted
    copies: list[tuple[int, int]] = field(default_factory=list)  # (parent index into the training rows, copy number)
    dropped: dict[int, int] = field(default_factory=dict)  # class id -> originals left out by down-sampling
    added: dict[int, int] = field(default_factory=dict)  # class id -> augmented copies
    short: dict[int, int] = field(default_factory=dict)  # class id -> rows still missing to the target (copy cap)
    notes: list[str] = field(default_factory=list)


def choose_target(counts: np.ndarray, strategy: str, target: int | None) -> int | None:
    """The per-class training size: the given target, else the median/max/min of the classes that have rows."""
    if target is not None:
        return int(target)
    present = counts[counts > 0]
    if present.size == 0:
        return None
    if strategy == "max":
        return int(present.max())
    if strategy == "min":
        return int(present.min())
    return int(np.floor(np.median(present)))


def plan_resample(labels: np.ndarray, n_classes: int, *, strategy: str = "median", target: int | None = None,
                  seed: int = 0, weights_only: bool = False, max_copies: int | None = None) -> ResamplePlan:
    """What to keep and what to copy among the training rows (``labels``: class id per row, rows sorted by id)."""
    counts = np.bincount(labels, minlength=n_classes)
    if weights_only:
        return ResamplePlan(None, np.arange(labels.size), notes=["weights only: no resampling, class weights only"])
    goal = choose_target(counts, strategy, target)
    plan = ResamplePlan(goal, np.arange(0))
    if goal is None:
        return plan
    keep: list[np.ndarray] = []
    for k in range(n_classes):
        members = np.flatnonzero(labels == k)
        n = members.size
        if n == 0:
            continue
        order = members[np.random.default_rng([seed, 11, k]).permutation(n)]
        if n >= goal:
            keep.append(np.sort(order[:goal]))
            if n > goal:
                plan.dropped[k] = n - goal
            continue
        keep.append(members)
        need = goal - n
        if max_copies is not None:
            need = min(need, max_copies * n)
        # Copy j goes to the (j mod n)-th parent of a seeded order: every parent gets floor or ceil of need/n copies.
        plan.copies.extend((int(order[j % n]), j // n + 1) for j in range(need))
        if need:
            plan.added[k] = need
        if goal - n > need:
            plan.short[k] = goal - n - need
    plan.keep = np.sort(np.concatenate(keep)) if keep else np.arange(0)
    absent = [k for k in range(n_classes) if counts[k] == 0]
    if absent:
        plan.notes.append(f"{len(absent)} class(es) have no training rows and cannot be over-sampled")
    return plan


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights n / (k * n_c) over the classes that have rows (0 for a class with none), so that
    every class contributes equally to the loss (sklearn's "balanced" rule)."""
    counts = np.asarray(counts, dtype=float)
    present = counts > 0
    weights = np.zeros_like(counts)
    if present.any():
        weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights
