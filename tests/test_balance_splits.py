"""Splits: official splits kept, K-drama redone by clip, val carved, stratified, and no group on two sides."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fusekit.balance.config import BalanceConfig, parse_split
from fusekit.balance.splits import assign_splits, check_no_group_straddles, components, group_key_columns
from fusekit.errors import ConfigError


def _assign(rows, fractions=(0.8, 0.1, 0.1), seed=0, **kw):
    cols = {k: [r.get(k) for r in rows] for k in ("dataset", "image_id", "subject", "group", "dup_group", "split")}
    labels = np.array([r["label"] for r in rows])
    return assign_splits(dataset=cols["dataset"], image_id=cols["image_id"], subject=cols["subject"],
                         group=cols["group"], dup_group=cols["dup_group"], official=cols["split"], labels=labels,
                         n_classes=7, fractions=fractions, seed=seed, **kw), cols


def _row(i, dataset, label=0, split=None, subject=None, group=None, dup=None, image=None):
    return {"dataset": dataset, "image_id": image or f"{dataset}/{i}", "subject": subject, "group": group,
            "dup_group": dup, "split": split, "label": label}


def test_components_link_rows_that_share_any_key():
    keys = [["a", "b", "c", "d", "e"], [None, "s1", None, "s1", None], ["g", None, "g", None, None]]
    comp = components(keys, 5)
    assert comp[0] == comp[2] and comp[1] == comp[3]
    assert len({comp[0], comp[1], comp[4]}) == 3
    assert comp.tolist() == [0, 1, 0, 1, 2]  # numbered by first row


def test_official_splits_stay_and_free_rows_follow_their_group():
    rows = [_row(i, "fer2013", i % 7, split=["train", "val", "test"][i % 3]) for i in range(90)]
    # A crawl face that duplicates an official test face goes to test with it; one linked to val goes to val.
    rows.append(_row(100, "crawl", 3, group="p1", dup="dupA"))
    rows[2]["dup_group"] = "dupA"  # rows[2] is official test
    rows.append(_row(101, "crawl", 3, group="p2", dup="dupB"))
    rows[1]["dup_group"] = "dupB"  # rows[1] is official val
    result, _ = _assign(rows)
    assert [result.split[i] for i in range(90)] == [r["split"] for r in rows[:90]]
    assert result.split[90] == "test" and result.split[91] == "val"
    assert not result.left_out


def test_official_train_face_linked_to_test_is_left_out_not_moved():
    rows = [_row(0, "fer2013", 1, split="test", dup="d"), _row(1, "fer2013", 1, split="train", dup="d"),
            _row(2, "rafdb", 1, split="train", dup="d"), _row(3, "fer2013", 2, split="train")]
    result, _ = _assign(rows)
    assert result.split == ["test", None, None, "train"]
    assert result.left_out == Counter({"linked_to_test": 2})


def test_kdrama_official_split_is_redone_by_clip():
    rows = []
    for clip in range(30):
        for frame in range(5):  # the official split leaks: frames of one clip in train and test
            rows.append(_row(len(rows), "kdrama", clip % 6, split=["train", "test", "val", "train", "train"][frame],
                             group=f"clip{clip}"))
    result, cols = _assign(rows)
    by_clip: dict[str, set] = {}
    for g, s in zip(cols["group"], result.split):
        by_clip.setdefault(g, set()).add(s)
    assert all(len(s) == 1 for s in by_clip.values())
    counts = Counter(result.split)
    assert set(counts) == {"train", "val", "test"} and counts["train"] > counts["test"]
    # Asked to keep kdrama's official split, the leak shows as left-out frames (val/train linked to test).
    kept, _ = _assign(rows, redo=())
    assert kept.left_out["linked_to_test"] == 30 * 4


def test_val_is_carved_from_an_official_train_split_without_val():
    rows = [_row(i, "rafdb", i % 7, split="train" if i < 900 else "test") for i in range(1000)]
    result, _ = _assign(rows)
    counts = Counter(result.split)
    assert result.carved == ["rafdb"]
    assert counts["test"] == 100  # official test untouched
    assert counts["val"] == pytest.approx(900 / 9, abs=2)  # 10/(80+10) of the official train
    assert counts["train"] + counts["val"] == 900
    # With official val kept, fer2013 (train/val/test) is not carved.
    fer = [_row(i, "fer2013", i % 7, split=["train", "val", "test"][i % 3]) for i in range(30)]
    assert _assign(fer)[0].carved == []
    # --no-official-val: val is merged into train, then carved anew.
    merged, _ = _assign(fer, keep_official_val=False)
    assert merged.carved == ["fer2013"] and Counter(merged.split)["test"] == 10


def test_free_rows_are_split_by_subject_and_stratified():
    rng = np.random.default_rng(3)
    rows = [_row(i, "kdef", int(rng.integers(7)), subject=f"S{i % 70:02d}") for i in range(2100)]
    result, cols = _assign(rows, seed=5)
    keys = group_key_columns(cols["dataset"], cols["image_id"], cols["subject"], cols["group"], cols["dup_group"])
    assert check_no_group_straddles(result.split, keys) == []
    counts = Counter(result.split)
    assert counts["train"] == pytest.approx(1680, rel=0.08)
    assert counts["val"] == pytest.approx(210, rel=0.3) and counts["test"] == pytest.approx(210, rel=0.3)


def test_single_faces_hit_the_fractions_per_class_exactly():
    rows = [_row(i, "folder", i % 7) for i in range(700)]
    result, _ = _assign(rows, fractions=(0.8, 0.1, 0.1))
    per = Counter((r["label"], s) for r, s in zip(rows, result.split))
    assert all(per[(k, "train")] == 80 and per[(k, "val")] == 10 and per[(k, "test")] == 10 for k in range(7))


def test_split_is_deterministic_and_seeded():
    rows = [_row(i, "crawl", i % 7, group=f"p{i // 2}") for i in range(400)]
    a, _ = _assign(rows, seed=1)
    b, _ = _assign(rows, seed=1)
    c, _ = _assign(rows, seed=2)
    assert a.split == b.split and a.split != c.split


def test_faces_of_one_picture_stay_together():
    rows = [_row(i, "expw", i % 7, image=f"expw/pic{i // 3}", group=f"pic{i // 3}") for i in range(300)]
    result, cols = _assign(rows)
    seen: dict[str, set] = {}
    for img, s in zip(cols["image_id"], result.split):
        seen.setdefault(img, set()).add(s)
    assert all(len(v) == 1 for v in seen.values())


def test_parse_split_and_config_errors():
    assert parse_split("80/10/10") == pytest.approx((0.8, 0.1, 0.1))
    assert parse_split("90/10") == pytest.approx((0.9, 0.1, 0.0))
    for bad in ("80-10-10", "0/50/50", "80/10/10/0", "a/b"):
        with pytest.raises(ConfigError):
            parse_split(bad)
    with pytest.raises(ConfigError, match="--classes"):
        BalanceConfig(classes=6)
    with pytest.raises(ConfigError, match="unknown setting 'strateg'"):
        BalanceConfig.from_mapping({"strateg": "max"})
    cfg = BalanceConfig.from_mapping({"split": "70/20/10", "augment": "flip,rotate", "max-rotation": 10})
    assert cfg.split == pytest.approx((0.7, 0.2, 0.1)) and cfg.augment == ("flip", "rotate") and cfg.max_rotation == 10
