"""Resampling plans, class weights and the seeded augmentations."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fusekit.balance.augment import augment, copy_rng, draw_ops
from fusekit.balance.resample import choose_target, class_weights, plan_resample
from fusekit.balance.synthetic import face_png


def _labels(counts):
    return np.concatenate([np.full(n, k) for k, n in enumerate(counts)]).astype(np.int64)


def test_targets_by_strategy():
    counts = np.array([10, 2, 40, 0, 7, 7, 7])
    assert choose_target(counts, "median", None) == 7
    assert choose_target(counts, "max", None) == 40
    assert choose_target(counts, "min", None) == 2
    assert choose_target(counts, "median", 12) == 12
    assert choose_target(np.zeros(7, dtype=int), "median", None) is None


def test_plan_downsamples_and_oversamples_to_the_target():
    labels = _labels([30, 3, 10, 0, 10, 10, 10])
    plan = plan_resample(labels, 7, strategy="median", seed=4)
    assert plan.target == 10
    kept = np.bincount(labels[plan.keep], minlength=7)
    copies = np.bincount([labels[p] for p, _ in plan.copies], minlength=7)
    assert (kept + copies).tolist() == [10, 10, 10, 0, 10, 10, 10]
    assert plan.dropped == {0: 20} and plan.added == {1: 7}
    # Copies of class 1 spread over its 3 parents: 3, 2, 2 copies, numbered 1.. per parent.
    per_parent: dict[int, list[int]] = {}
    for parent, n in plan.copies:
        per_parent.setdefault(parent, []).append(n)
    assert sorted(len(v) for v in per_parent.values()) == [2, 2, 3]
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in per_parent.values())
    assert "no training rows" in plan.notes[0]


def test_plan_is_deterministic_and_seeded():
    labels = _labels([50, 5, 20, 20, 20, 20, 20])
    a = plan_resample(labels, 7, seed=1)
    b = plan_resample(labels, 7, seed=1)
    c = plan_resample(labels, 7, seed=2)
    assert a.keep.tolist() == b.keep.tolist() and a.copies == b.copies
    assert a.keep.tolist() != c.keep.tolist()


def test_weights_only_and_copy_cap():
    labels = _labels([30, 3, 10, 10, 10, 10, 10])
    plan = plan_resample(labels, 7, weights_only=True)
    assert plan.copies == [] and plan.keep.size == labels.size and plan.target is None
    capped = plan_resample(labels, 7, max_copies=1)
    assert capped.added == {1: 3} and capped.short == {1: 4}


def test_class_weights_balance_the_loss():
    w = class_weights(np.array([100, 10, 0, 50]))
    assert w[2] == 0
    assert w[0] == pytest.approx(160 / (3 * 100)) and w[1] == pytest.approx(160 / (3 * 10))
    counts = np.array([100, 10, 50])
    assert (class_weights(counts) * counts).tolist() == pytest.approx([160 / 3] * 3)


def test_augment_is_seeded_per_copy_and_tags_its_ops():
    data = face_png(7, 48, "RGB")
    a, ops_a = augment(data, "fer2013/csv/row1#0", 1, seed=0, enabled=("flip", "rotate", "color", "brightness"))
    b, ops_b = augment(data, "fer2013/csv/row1#0", 1, seed=0, enabled=("flip", "rotate", "color", "brightness"))
    assert a == b and ops_a == ops_b and ops_a
    others = {tuple(augment(data, "fer2013/csv/row1#0", k, seed=0, enabled=("flip", "rotate", "color",
                                                                            "brightness"))[1]) for k in range(2, 12)}
    assert len(others) > 3  # copies differ from each other
    image = Image.open(io.BytesIO(a))
    assert image.size == (48, 48) and image.mode == "RGB"
    for op in ops_a:
        name, _, value = op.partition(":")
        assert name in ("flip", "rotate", "color", "brightness")
        if name == "rotate":
            assert abs(float(value)) <= 5
        if name in ("color", "brightness"):
            assert 0.75 <= float(value) <= 1.25


def test_flip_only_mirrors_exactly():
    data = face_png(3, 32, "L")
    out, ops = augment(data, "x#0", 1, seed=0, enabled=("flip",))
    assert ops == ["flip"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out))), np.asarray(Image.open(io.BytesIO(data)))[:, ::-1])


def test_colour_is_never_drawn_for_grey_faces_and_rotation_respects_the_setting():
    for k in range(40):
        ops = draw_ops(copy_rng(0, "g", k), ("flip", "rotate", "color", "brightness"), 10.0, 0.25, grey=True)
        assert ops and all(op != "color" for op, _ in ops)
        assert all(abs(v) <= 10 for op, v in ops if op == "rotate")
