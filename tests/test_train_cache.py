"""The decoded-input cache of the tf.data loader: the batches of a cached split are exactly those of the uncached
stream (same order, same augmentation draws, same pixels), for shards at the input size (kept as uint8) and for
shards that are resized on the way in (kept as float32); too large a split or a row without an image is streamed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from test_train import write_shards


def _batches(pipeline, split, epoch=None):
    data = pipeline.train(epoch, split) if epoch is not None else pipeline.eval(split)
    return [tuple(np.asarray(t) for t in b) for b in data]


@pytest.mark.parametrize("size", [32, 24])  # 32: the shards' own size (uint8 cache); 24: resized (float32 cache)
def test_cached_batches_equal_streamed_ones(tmp_path, size):
    from fusekit.train.data import InputPipeline, InputSpec, open_shards
    from fusekit.train.decode import Augment

    shards = open_shards(write_shards(tmp_path / "ds", per_class=9, size=32, shards=3))
    spec = InputSpec(size=size, channels=1, batch_size=8, augment=Augment.parse("flip,crop=4,rotate=10,erase=0.5"),
                     seed=3, loader="tf", shuffle_buffer=10, interleave=2)
    cached = InputPipeline(shards, spec)
    streamed = InputPipeline(shards, dataclasses.replace(spec, cache_bytes=0))
    for epoch in (0, 1, 2):
        a, b = _batches(cached, "train", epoch), _batches(streamed, "train", epoch)
        assert len(a) == len(b) == shards.rows("train") // 8
        for x, y in zip(a, b):
            assert all(np.array_equal(u, v) for u, v in zip(x, y)), epoch
    a, b = _batches(cached, "val"), _batches(streamed, "val")
    assert sum(len(x[1]) for x in a) == shards.rows("val")
    assert all(np.array_equal(u, v) for x, y in zip(a, b) for u, v in zip(x, y))
    assert cached._caches["train"].dtype == (np.uint8 if size == 32 else np.float32)  # noqa: SLF001
    assert cached._caches["train"].shape == (shards.rows("train"), size, size, 1)  # noqa: SLF001
    assert set(streamed._caches.values()) == {None}  # noqa: SLF001


def test_a_split_over_the_budget_is_streamed(tmp_path):
    from fusekit.train.data import InputPipeline, InputSpec, open_shards

    shards = open_shards(write_shards(tmp_path / "ds", per_class=4, size=32, shards=1))
    rows = shards.rows("train")
    spec = InputSpec(size=32, channels=1, batch_size=4, loader="tf", cache_bytes=rows * 32 * 32 - 1)
    pipeline = InputPipeline(shards, spec)
    assert sum(len(b[1]) for b in _batches(pipeline, "train", 0)) == rows // 4 * 4
    assert pipeline._caches["train"] is None  # noqa: SLF001
    fits = InputPipeline(shards, dataclasses.replace(spec, cache_bytes=rows * 32 * 32))
    _batches(fits, "train", 0)
    assert fits._caches["train"].shape[0] == rows  # noqa: SLF001
