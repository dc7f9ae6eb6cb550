"""The fer-strong recipe (issue 14, items 3 and 4): its preset and flags, the vgg48 model, the augmentations it adds
(crop, zoom, random erasing) in both loaders, the learning-rate schedules, label smoothing, a short training on the
band task of tests/test_train.py, and evaluation with test-time augmentation (flip, ten-crop).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import kill_after_epoch
from test_train import band_image, write_shards

LN7 = math.log(7)


# -- fast: settings, NumPy augmentation, schedule arithmetic -----------------------------------------------------------

def test_fer_strong_preset_fills_the_recipe_and_flags_override_it():
    from fusekit.train.config import TrainConfig, resolve

    strong = resolve(TrainConfig(data=Path("d"), preset="fer-strong"))
    assert (strong.model, strong.input_size, strong.channels, strong.batch_size, strong.epochs, strong.patience) == \
        ("vgg48", 48, 1, 64, 300, 0)
    assert (strong.optimizer, strong.lr, strong.momentum, strong.nesterov, strong.weight_decay, strong.l2) == \
        ("sgd", 0.01, 0.9, True, 1e-3, 0.0)
    assert (strong.schedule, strong.warmup_epochs, strong.label_smoothing) == ("cosine", 5.0, 0.1)
    assert strong.augment == "flip,rotate=10,crop=4,zoom=0.1,erase=0.5"

    mine = resolve(TrainConfig(data=Path("d"), preset="fer-strong", model="tiny", schedule="plateau", warmup_epochs=0,
                               label_smoothing=0.0, nesterov=False, weight_decay=5e-4, epochs=20, augment="flip"))
    assert (mine.model, mine.schedule, mine.warmup_epochs, mine.label_smoothing, mine.nesterov, mine.weight_decay,
            mine.epochs, mine.augment, mine.lr, mine.input_size) == \
        ("tiny", "plateau", 0, 0.0, False, 5e-4, 20, "flip", 0.01, 48)

    plain = resolve(TrainConfig(data=Path("d"), model="tiny"))  # no preset: the old behaviour
    assert (plain.schedule, plain.warmup_epochs, plain.label_smoothing, plain.nesterov, plain.weight_decay) == \
        ("none", 0.0, 0.0, False, 0.0)

    with pytest.raises(ValueError, match=r"--warmup-epochs 5 \(from --preset fer-strong\) must be .* below --epochs 3"):
        resolve(TrainConfig(data=Path("d"), preset="fer-strong", epochs=3))
    with pytest.raises(ValueError, match="--schedule must be one of none, cosine, plateau"):
        resolve(TrainConfig(data=Path("d"), model="tiny", schedule="step"))
    with pytest.raises(ValueError, match="--nesterov .* for --optimizer sgd, not adam"):
        resolve(TrainConfig(data=Path("d"), model="tiny", optimizer="adam", nesterov=True))
    with pytest.raises(ValueError, match="--label-smoothing"):
        resolve(TrainConfig(data=Path("d"), model="tiny", label_smoothing=1.0))


def test_new_augmentations_parse_with_defaults_and_refuse_nonsense():
    from fusekit.train.decode import Augment

    aug = Augment.parse("crop,zoom,erase")
    assert (aug.crop, aug.zoom, aug.erase) == (4.0, 0.1, 0.5) and aug.describe() == "crop=4,zoom=0.1,erase=0.5"
    assert Augment.parse("flip,rotate=5").describe() == "flip,rotate=5"  # the old settings read as before
    for text, message in (("crop=2.5", "whole number"), ("erase=1.5", "probability"), ("zoom=1", "below 1")):
        with pytest.raises(ValueError, match=message):
            Augment.parse(text)


def _checker(size: int = 48, channels: int = 1) -> np.ndarray:
    """0/255 checks: no pixel equals the picture's mean (128), so an erased rectangle shows exactly."""
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.where((yy // 3 + xx // 5) % 2 == 0, 0, 255).astype(np.uint8)
    arr[: size // 2, : size // 3] = 255 - arr[: size // 2, : size // 3]  # not mirror-symmetric
    return np.repeat(arr[:, :, None], channels, axis=2)


def _rectangle(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(rows):
        return None
    top, left, h, w = rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert mask[top:top + h, left:left + w].all() and mask.sum() == h * w, "not a filled rectangle"
    return int(top), int(left), int(h), int(w)


def _window_of_padded(out: np.ndarray, arr: np.ndarray, pad: int) -> tuple[int, int] | None:
    padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)))
    h, w = arr.shape[:2]
    hits = [(t, l) for t in range(2 * pad + 1) for l in range(2 * pad + 1)
            if np.array_equal(padded[t:t + h, l:l + w], out)]
    return hits[0] if hits else None


def test_numpy_augmentations_do_what_they_say():
    from fusekit.train.decode import Augment, _affine, augment, erase_box

    arr = _checker()
    outs = [augment(arr, Augment(flip=True), np.random.default_rng([0, 0, i])) for i in range(16)]
    assert all(np.array_equal(o, arr) or np.array_equal(o, arr[:, ::-1]) for o in outs)
    assert any(np.array_equal(o, arr) for o in outs) and any(np.array_equal(o, arr[:, ::-1]) for o in outs)

    offsets = set()
    for i in range(12):
        out = augment(arr, Augment(crop=4), np.random.default_rng([0, 0, i]))
        assert out.shape == arr.shape and out.dtype == np.uint8
        offset = _window_of_padded(out, arr, 4)
        assert offset is not None, "crop: a window of the picture padded with 4 black pixels"
        offsets.add(offset)
    assert len(offsets) > 4

    for i in range(12):
        out = augment(arr, Augment(erase=1.0), np.random.default_rng([0, 0, i]))
        top, left, h, w = _rectangle(out[:, :, 0] != arr[:, :, 0])
        assert (out[top:top + h, left:left + w] == 128).all()  # the picture's mean, rounded
        assert h * w <= 0.33 * 48 * 48 + 48 and h * w >= 0.02 * 48 * 48 - 48
    kept = sum(np.array_equal(augment(arr, Augment(erase=0.5), np.random.default_rng([1, 0, i])), arr)
               for i in range(40))
    assert 8 < kept < 32  # about half are left alone
    # erase_box's rectangle at the ends of its ranges
    assert erase_box(48, 48, [0.0, 0.5, 0.0, 0.0])[2:] == (7, 7)  # 2 % of 48 x 48, square
    top, left, h, w = erase_box(48, 48, [0.999, 0.999, 0.999, 0.999])
    assert h == 48 and top == 0 and left + w <= 48  # a tall rectangle cut to the picture

    square = np.zeros((48, 48, 1), np.uint8)
    square[20:28, 20:28] = 255  # 8 px about the centre
    zoomed = _affine(square, 0.0, (0.0, 0.0), 2.0)
    assert 14 <= int((zoomed[:, 24, 0] > 127).sum()) <= 18  # twice as tall


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    from fusekit.train.decode import Augment, decode_batch

    aug = Augment.parse("flip,crop=4,zoom=0.1,rotate=10,erase=0.5")
    items = [(i, band_image(i % 7, i, 48), i % 7) for i in range(6)]
    a, labels = decode_batch(items, 48, 1, aug, seed=3, epoch=2)
    b, _ = decode_batch(items, 48, 1, aug, seed=3, epoch=2)
    c, _ = decode_batch(items, 48, 1, aug, seed=3, epoch=4)
    moved, _ = decode_batch([(i + 100, blob, label) for i, blob, label in items], 48, 1, aug, seed=3, epoch=2)
    assert np.array_equal(a, b) and labels.tolist() == [i % 7 for i in range(6)]
    assert not np.array_equal(a, c) and not np.array_equal(a, moved)
    # a setting without the new ops draws exactly what it drew before they existed
    old = Augment.parse("flip,rotate=10")
    from fusekit.train.decode import _affine, decode

    x = decode(items[0][1], 48, 1)
    rng = np.random.default_rng([3, 2, 0])
    expected = x[:, ::-1] if rng.random() < 0.5 else x
    expected = _affine(expected, rng.uniform(-10, 10), (0.0, 0.0))
    assert np.array_equal(decode_batch(items[:1], 48, 1, old, seed=3, epoch=2)[0][0], expected)


# -- the tf.data twin --------------------------------------------------------------------------------------------------

def test_tf_augmentations_do_what_they_say_and_repeat_from_their_seed(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from fusekit.train.data import InputPipeline, InputSpec, open_shards, tf_augment
    from fusekit.train.decode import Augment

    arr = _checker().astype(np.float32)
    batch = tf.constant(np.stack([arr] * 12))
    seed = tf.constant([5, 9], tf.int64)

    flipped = tf_augment(batch, Augment(flip=True), seed).numpy()
    mirror = [np.array_equal(o, arr[:, ::-1]) for o in flipped]
    assert all(m or np.array_equal(o, arr) for m, o in zip(mirror, flipped)) and 0 < sum(mirror) < 12

    cropped = tf_augment(batch, Augment(crop=4), seed).numpy()
    offsets = [_window_of_padded(o, arr, 4) for o in cropped]
    assert None not in offsets and len(set(offsets)) > 4

    erased = tf_augment(batch, Augment(erase=1.0), seed).numpy()
    for o in erased:
        top, left, h, w = _rectangle(o[:, :, 0] != arr[:, :, 0])
        assert np.allclose(o[top:top + h, left:left + w], arr.mean())
    assert np.array_equal(tf_augment(batch, Augment(erase=1.0), seed).numpy(), erased)  # stateless: same seed
    assert not np.array_equal(tf_augment(batch, Augment(erase=1.0), tf.constant([5, 10], tf.int64)).numpy(), erased)
    # the first six ops' draws do not move when a new one is switched on: the same flips, then a rectangle erased
    base = tf_augment(batch, Augment(flip=True), seed).numpy()
    with_erase = tf_augment(batch, Augment(flip=True, erase=1.0), seed).numpy()
    assert np.array_equal(base, flipped)
    for b, e in zip(base, with_erase):
        assert _rectangle(b[:, :, 0] != e[:, :, 0]) is not None

    # both loaders, whole epochs: a function of (seed, epoch)
    shards = open_shards(write_shards(tmp_path / "ds", per_class=3, size=48, shards=1))
    aug = Augment.parse("flip,crop=4,zoom=0.1,rotate=10,erase=0.5")
    for loader in ("tf", "workers"):
        spec = InputSpec(size=48, channels=1, batch_size=7, augment=aug, seed=2, loader=loader, workers=0)
        first = [np.asarray(b[0]) for b in InputPipeline(shards, spec).train(epoch=1)]
        again = [np.asarray(b[0]) for b in InputPipeline(shards, spec).train(epoch=1)]
        other = [np.asarray(b[0]) for b in InputPipeline(shards, spec).train(epoch=2)]
        assert len(first) == 3 and first[0].shape == (7, 48, 48, 1), loader
        assert all(np.array_equal(x, y) for x, y in zip(first, again)), loader
        assert not all(np.array_equal(x, y) for x, y in zip(first, other)), loader


# -- schedules and loss (Keras, no training) ---------------------------------------------------------------------------

def test_warmup_cosine_gives_the_expected_rates_and_survives_a_checkpoint(tmp_path):
    import keras

    from fusekit.train.config import TrainConfig, resolve
    from fusekit.train.loop import WarmupSchedule, compile_model, learning_rate
    from fusekit.train.models import build_model, load_model

    s = WarmupSchedule(0.01, total_steps=110, warmup_steps=10)
    rate = {step: float(keras.ops.convert_to_numpy(s(step))) for step in (0, 4, 9, 10, 35, 60, 85, 110, 200)}
    assert rate[0] == pytest.approx(0.001) and rate[4] == pytest.approx(0.005) and rate[9] == pytest.approx(0.01)
    assert rate[10] == pytest.approx(0.01) and rate[60] == pytest.approx(0.005)  # the cosine's start and middle
    assert rate[35] == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)) / 2)
    assert rate[85] == pytest.approx(0.01 * (1 + math.cos(3 * math.pi / 4)) / 2)
    assert rate[110] == pytest.approx(0.0, abs=1e-9) and rate[200] == pytest.approx(0.0, abs=1e-9)
    flat = WarmupSchedule(0.01, total_steps=110, warmup_steps=10, decay="constant")
    assert [float(keras.ops.convert_to_numpy(flat(k))) for k in (4, 50)] == pytest.approx([0.005, 0.01])

    config = resolve(TrainConfig(data=Path("d"), preset="fer-strong", model="tiny", epochs=10, warmup_epochs=2))
    lr = learning_rate(config, steps_per_epoch=7)
    assert lr.get_config() == {"base_lr": 0.01, "total_steps": 70, "warmup_steps": 14, "decay": "cosine"}
    assert learning_rate(resolve(TrainConfig(data=Path("d"), model="tiny")), 7) == 1e-3  # none: a plain float

    # the schedule and the step counter go into the checkpoint: a reloaded optimizer is at the same rate
    model = build_model("tiny", input_size=16)
    compile_model(model, config, steps_per_epoch=7)
    model.fit(np.zeros((48, 16, 16, 1), np.float32), np.arange(48) % 7, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert int(keras.ops.convert_to_numpy(again.optimizer.iterations)) == 3
    assert again.optimizer._learning_rate.get_config() == lr.get_config()  # noqa: SLF001
    assert float(keras.ops.convert_to_numpy(again.optimizer.learning_rate)) == pytest.approx(0.01 * 4 / 14)
    assert again.optimizer.nesterov and again.optimizer.weight_decay == pytest.approx(1e-3)


def test_plateau_replays_reduce_on_plateau_from_the_history():
    from fusekit.train.config import TrainConfig, resolve
    from fusekit.train.loop import PLATEAU_FACTOR, epoch_learning_rate, plateau_scale

    rising = [{"epoch": e, "val_accuracy": 0.1 * e} for e in range(1, 6)]
    flat = [{"epoch": e, "val_accuracy": 0.5} for e in range(6, 20)]
    history = rising + flat
    # best at epoch 5; epochs 6-11 are six without a better one: x0.75 after epoch 11, again after epoch 17
    assert plateau_scale(history[:10]) == 1.0 and plateau_scale(history[:11]) == PLATEAU_FACTOR
    assert plateau_scale(history[:16]) == PLATEAU_FACTOR and plateau_scale(history[:17]) == PLATEAU_FACTOR ** 2
    config = resolve(TrainConfig(data=Path("d"), model="tiny", optimizer="sgd", lr=0.1, schedule="plateau",
                                 warmup_epochs=2, epochs=30))
    # warm-up by whole epochs: (epoch + 1) / (warm-up + 1) of the rate during them
    assert epoch_learning_rate(config, 0, []) == pytest.approx(0.1 / 3)
    assert epoch_learning_rate(config, 1, history[:1]) == pytest.approx(0.2 / 3)
    assert epoch_learning_rate(config, 2, history[:2]) == pytest.approx(0.1)
    # the warm-up epochs do not count: the best is epoch 5 either way, so the same epochs reduce
    assert epoch_learning_rate(config, 11, history) == pytest.approx(0.1 * PLATEAU_FACTOR)
    assert epoch_learning_rate(config, 10, history) == pytest.approx(0.1)  # only the epochs before it count
    assert epoch_learning_rate(resolve(TrainConfig(data=Path("d"), model="tiny")), 3, history) is None


def test_label_smoothing_is_cross_entropy_against_smoothed_targets():
    import keras

    from fusekit.train.config import TrainConfig, resolve
    from fusekit.train.loop import SmoothedSparseCrossentropy, make_loss

    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.05, 0.9, 0.05]], np.float32)
    y = np.array([0, 0, 1])
    for e in (0.0, 0.1, 0.3):
        q = np.full((3, 3), e / 3) + (1 - e) * np.eye(3)[y]
        manual = float(np.mean(-(q * np.log(p)).sum(axis=1)))
        got = float(keras.ops.convert_to_numpy(SmoothedSparseCrossentropy(e)(y, p)))
        assert got == pytest.approx(manual, rel=1e-5)
    plain = float(keras.ops.convert_to_numpy(keras.losses.SparseCategoricalCrossentropy()(y, p)))
    assert float(keras.ops.convert_to_numpy(SmoothedSparseCrossentropy(0.0)(y, p))) == pytest.approx(plain, rel=1e-5)
    confident = np.array([[0.999, 0.0005, 0.0005]], np.float32)  # smoothing penalises certainty, even when right
    assert float(keras.ops.convert_to_numpy(SmoothedSparseCrossentropy(0.1)(np.array([0]), confident))) > \
        float(keras.ops.convert_to_numpy(SmoothedSparseCrossentropy(0.0)(np.array([0]), confident))) + 0.2
    assert make_loss(resolve(TrainConfig(data=Path("d"), model="tiny"))) == "sparse_categorical_crossentropy"
    assert make_loss(resolve(TrainConfig(data=Path("d"), preset="fer-strong"))).label_smoothing == 0.1


def test_train_and_evaluate_help_document_the_new_flags(capsys):
    from helpers import call_cli

    code, out, _ = call_cli(capsys, "train", "--help")
    assert code == 0
    for flag in ("--schedule", "--warmup-epochs", "--label-smoothing", "--nesterov", "--weight-decay", "fer-strong",
                 "vgg48", "erase"):
        assert flag in out, flag
    code, out, _ = call_cli(capsys, "evaluate", "--help")
    assert code == 0 and "--tta" in out and "ten-crop" in out


# -- slow: training and evaluating on the CPU ---------------------------------------------------------------------------

@pytest.mark.slow
def test_vgg48_builds_with_its_documented_parameter_count():
    from fusekit.train.models import build_model

    model = build_model("vgg48")
    assert model.count_params() == 10_466_375  # models._vgg48's docstring, docs/reproduce-fer2013-cnn.md
    assert [tuple(layer.output.shape[1:3]) for layer in model.layers if layer.name.startswith("pool")] == \
        [(24, 24), (12, 12), (6, 6), (3, 3)]
    assert sum(1 for layer in model.layers if layer.name.endswith("_bn")) == 8


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    """fer-strong as it stands (vgg48, SGD Nesterov, weight decay, cosine with warm-up, label smoothing, every
    augmentation) on the band task at 48 px: 3 epochs of 7 steps of 16, the first the warm-up."""
    from fusekit.train import TrainConfig, run_train

    root = tmp_path_factory.mktemp("strong")
    data = write_shards(root / "dataset", per_class={"train": 16, "val": 3, "test": 2}, size=48, shards=1)
    report = run_train(root / "ws", TrainConfig(data=data, preset="fer-strong", epochs=3, warmup_epochs=1,
                                                batch_size=16, seed=1, run="strong", keep_checkpoints=0,
                                                verbose=False))
    return root, data, report


@pytest.mark.slow
def test_a_short_fer_strong_run_learns_the_band_task(strong):
    import keras

    from fusekit.train.loop import WarmupSchedule

    _, _, report = strong
    assert report.model == "vgg48" and report.params == 10_466_375 and report.epochs_done == 3
    last = report.history[-1]
    assert last["val_loss"] < 0.6 * LN7 and last["val_accuracy"] > 0.5  # chance: ln 7 and 1/7
    # the recorded rate after each epoch is the schedule's at that step (7 steps per epoch, 7 of warm-up)
    schedule = WarmupSchedule(0.01, total_steps=21, warmup_steps=7)
    assert [h["lr"] for h in report.history] == pytest.approx(
        [float(keras.ops.convert_to_numpy(schedule(7 * e))) for e in (1, 2, 3)], abs=1e-7)
    assert [h["lr"] for h in report.history][:2] == pytest.approx([0.01, 0.005])


def _tiny_strong(workspace, data, run, schedule="cosine", **kw):
    """fer-strong's optimizer, schedule, loss and augmentation with the tiny model (flags override the preset)."""
    from fusekit.train import TrainConfig, run_train

    settings = dict(data=data, preset="fer-strong", model="tiny", schedule=schedule, epochs=3, warmup_epochs=1,
                    batch_size=16, seed=4, run=run, keep_checkpoints=0, verbose=False)
    return run_train(workspace, TrainConfig(**{**settings, **kw}))


def _assert_same_run(runs: Path, a: str, b: str, epoch: int = 3) -> None:
    import keras

    from fusekit.train.models import load_model

    x = load_model(runs / a / "checkpoints" / f"epoch-{epoch:04d}.keras")
    y = load_model(runs / b / "checkpoints" / f"epoch-{epoch:04d}.keras")
    for u, v in zip(x.get_weights() + [keras.ops.convert_to_numpy(w) for w in x.optimizer.variables],
                    y.get_weights() + [keras.ops.convert_to_numpy(w) for w in y.optimizer.variables]):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model trained with fer-strong's settings (cosine), uninterrupted ("whole"): the run the resume test
    compares with and the TTA tests evaluate."""
    root = tmp_path_factory.mktemp("tiny")
    data = write_shards(root / "dataset", per_class={"train": 8, "val": 2, "test": 2}, size=48, shards=1)
    return root, data, _tiny_strong(root / "ws", data, "whole")


@pytest.mark.slow
def test_resume_keeps_the_cosine_schedule_exact(tiny, monkeypatch):
    from fusekit.train import TrainConfig, run_train

    root, data, whole = tiny
    kill_after_epoch(monkeypatch, 1, lambda: _tiny_strong(root / "ws", data, "killed"))
    resumed = run_train(root / "ws", TrainConfig(run="killed", resume=True, verbose=False))
    assert resumed.resumed_from == 1 and resumed.epochs_done == 3
    lrs = [h["lr"] for h in whole.history]
    assert [h["lr"] for h in resumed.history] == pytest.approx(lrs, abs=1e-9)
    assert lrs == pytest.approx([0.01, 0.005, 0.0], abs=1e-9)  # 3 steps of warm-up, then the cosine over 6
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in whole.history], rel=1e-5)
    _assert_same_run(root / "ws" / "runs", "whole", "killed")


@pytest.mark.slow
def test_resume_keeps_the_plateau_schedule_exact(tmp_path, monkeypatch):
    from fusekit.train import TrainConfig, run_train

    data = write_shards(tmp_path / "ds", per_class={"train": 8, "val": 2, "test": 2}, size=48, shards=1)
    train = lambda run: _tiny_strong(tmp_path / "ws", data, run, schedule="plateau", warmup_epochs=2)  # noqa: E731
    whole = train("whole")
    kill_after_epoch(monkeypatch, 1, lambda: train("killed"))
    resumed = run_train(tmp_path / "ws", TrainConfig(run="killed", resume=True, verbose=False))
    lrs = [h["lr"] for h in whole.history]
    assert lrs == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])  # warm-up by whole epochs, then the full rate
    assert [h["lr"] for h in resumed.history] == pytest.approx(lrs, abs=1e-9)
    _assert_same_run(tmp_path / "ws" / "runs", "whole", "killed")


def _rows(files, n):
    from fusekit.train.data import iter_rows

    rows = []
    for _, blob, label in iter_rows(files):
        rows.append((blob, label))
        if len(rows) == n:
            break
    return rows


@pytest.mark.slow
def test_evaluate_with_tta_averages_the_views_and_keeps_the_plain_figures(tiny, capsys):
    import keras

    from fusekit.train import EvalConfig, run_evaluate
    from fusekit.train.data import open_shards
    from fusekit.train.decode import decode
    from fusekit.train.evaluate import render_eval
    from fusekit.train.models import load_model
    from helpers import call_cli

    root, data, _ = tiny
    ws, out = root / "ws", root / "ws" / "runs" / "whole" / "eval"
    kw = dict(run="whole", split="test", by_source=True, loader="workers", workers=0)
    plain = run_evaluate(ws, EvalConfig(**kw))
    plain_json = (out / "test" / "metrics.json").read_bytes()
    flip = run_evaluate(ws, EvalConfig(**kw, tta="flip"))
    ten = run_evaluate(ws, EvalConfig(**kw, tta="ten-crop"))
    assert (out / "test" / "metrics.json").read_bytes() == plain_json  # not overwritten
    assert json.loads(plain_json)["tta"] == "none" and json.loads(plain_json)["plain"] is None
    for mode, report in (("flip", flip), ("ten-crop", ten)):
        folder = out / f"test-tta-{mode}"
        saved = json.loads((folder / "metrics.json").read_text())
        assert saved["tta"] == mode and report.out_dir == folder and report.metrics.n == 14
        assert saved["accuracy"] == pytest.approx(report.metrics.accuracy)
        # the plain figures beside: those of the evaluation without TTA
        assert report.plain.accuracy == pytest.approx(plain.metrics.accuracy)
        assert saved["plain"]["accuracy"] == pytest.approx(plain.metrics.accuracy)
        assert saved["plain"]["without_flagged"]["n"] == plain.without_flagged.n == 14
        assert set(saved["by_source"]) == {"fer2013", "ckplus"} and saved["without_flagged"]["n"] == 14
        for name in ("per_class.csv", "confusion.csv", "confusion.png", "by_source.csv", "predictions.csv"):
            assert (folder / name).is_file(), name
        truth = np.array([report.classes.index(r.split(",")[3])
                          for r in (folder / "predictions.csv").read_text().splitlines()[1:]])
        assert report.metrics.accuracy == pytest.approx(float(np.mean(report.probabilities.argmax(1) == truth)))

    # by hand on the first rows: decode as the process loader does, average the softmax of the views
    model = load_model(ws / "runs" / "whole" / "best.keras", compile=False)
    rows = _rows(open_shards(data).files["test"], 5)

    def softmax(x):
        return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(np.ascontiguousarray(x))), np.float64)

    x48 = np.stack([decode(blob, 48, 1) for blob, _ in rows]).astype(np.float32) / 255
    assert softmax(x48) == pytest.approx(plain.probabilities[:5], abs=1e-5)
    assert (softmax(x48) + softmax(x48[:, :, ::-1])) / 2 == pytest.approx(flip.probabilities[:5], abs=1e-5)
    x52 = np.stack([decode(blob, 52, 1) for blob, _ in rows]).astype(np.float32) / 255
    crops = [x52[:, t:t + 48, l:l + 48] for t, l in ((0, 0), (0, 4), (4, 0), (4, 4), (2, 2))]
    manual = np.mean([softmax(c) for c in crops] + [softmax(c[:, :, ::-1]) for c in crops], axis=0)
    assert manual == pytest.approx(ten.probabilities[:5], abs=1e-5)

    text = render_eval(ten)
    assert "TTA ten-crop" in text and "no TTA" in text and f"{plain.metrics.accuracy:.4f}" in text
    code, _, err = call_cli(capsys, "evaluate", "--run", "whole", "--tta", "five-crop", workspace=ws)
    assert code == 2 and "--tta must be one of none, flip, ten-crop" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_fer_strong_checkpoint_reloads_compiled_in_a_fresh_process(tiny):
    """Its optimizer carries fusekit's WarmupSchedule and its loss SmoothedSparseCrossentropy: `load_model` must find
    them where fusekit.train.loop has not been imported (as the Standardize layer of tests/test_train.py)."""
    import subprocess
    import sys

    root, _, _ = tiny
    path = root / "ws" / "runs" / "whole" / "checkpoints" / "epoch-0003.keras"
    code = ("from fusekit.train.models import load_model\n"
            f"m = load_model({str(path)!r})\n"
            "print(type(m.optimizer._learning_rate).__name__, m.loss.label_smoothing, int(m.optimizer.iterations))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["WarmupSchedule", "0.1", "9"]
