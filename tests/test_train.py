"""Train stage: metrics, augmentation parsing, the row stream, model sizes, and (slow) real training on tiny shards.

The shards are written here in the balance stage's format (`write_shards`): a learnable synthetic task where class k
is a bright horizontal band in the k-th seventh of the picture.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers import kill_after_epoch

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def band_image(label: int, seed: int, size: int = 32) -> bytes:
    """Noise with a bright band in rows [label/7, (label+1)/7) of the picture: PNG, RGB."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    lo, hi = label * size // 7, (label + 1) * size // 7
    arr[lo:hi] = rng.integers(190, 256, (hi - lo, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_shards(root: Path, per_class: dict[str, int] | int = 20, size: int = 32, shards: int = 2,
                 sources: tuple[str, ...] = ("fer2013", "ckplus"), flagged: dict[str, list[str]] | None = None) -> Path:
    """A dataset folder as `fusekit balance` writes it: data/{split}-{i:05d}-of-{n:05d}.parquet, card, weights.
    ``flagged`` (source id -> flags) adds the `flags` column of today's shards; without it, a dataset written before
    that column existed."""
    counts = {"train": per_class, "val": max(3, per_class // 4), "test": max(3, per_class // 4)} \
        if isinstance(per_class, int) else per_class
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": CLASSES}}
    schema = pa.schema([
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64()),
        ("label_name", pa.string()), ("dataset", pa.string()), ("source_id", pa.string()), ("subject", pa.string()),
        ("split", pa.string()), ("augmented", pa.bool_()), ("ops", pa.string()), ("parent_id", pa.string()),
        ("phash", pa.string()),
        *([("flags", pa.list_(pa.string()))] if flagged is not None else []),
    ], metadata={b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    seed = 0
    for split, n in counts.items():
        rows = []
        for label in range(len(CLASSES)):
            for i in range(n):
                seed += 1
                sid = f"{split}-{label}-{i}"
                rows.append({"image": {"bytes": band_image(label, seed, size), "path": f"{sid}.png"}, "label": label,
                             "label_name": CLASSES[label], "dataset": sources[i % len(sources)], "source_id": sid,
                             "subject": None, "split": split, "augmented": False, "ops": None, "parent_id": None,
                             "phash": None, **({"flags": flagged.get(sid, [])} if flagged is not None else {})})
        rng = np.random.default_rng(len(rows))
        rows = [rows[i] for i in rng.permutation(len(rows))]
        parts = np.array_split(np.arange(len(rows)), shards)
        for k, idx in enumerate(parts):
            table = pa.Table.from_pylist([rows[i] for i in idx], schema=schema)
            pq.write_table(table, data / f"{split}-{k:05d}-of-{shards:05d}.parquet")
    (root / "class_weights.json").write_text(json.dumps({c: 1.0 + i / 10 for i, c in enumerate(CLASSES)}))
    (root / "README.md").write_text("# synthetic test dataset\n")
    return root


# -- fast: no Keras ---------------------------------------------------------------------------------------------------

def test_metrics_of_a_known_confusion():
    from fusekit.train.evaluate import compute_metrics

    classes = ["a", "b", "c"]
    # truth a a a a b b c c ; predicted a a a b b c c a
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 2, 2, 0]
    m = compute_metrics(y_true, y_pred, classes)
    assert m.confusion.tolist() == [[3, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert m.accuracy == pytest.approx(5 / 8)
    prec = [3 / 4, 1 / 2, 1 / 2]
    rec = [3 / 4, 1 / 2, 1 / 2]
    assert [c.precision for c in m.per_class] == pytest.approx(prec)
    assert [c.recall for c in m.per_class] == pytest.approx(rec)
    assert m.balanced_accuracy == pytest.approx(np.mean(rec))
    assert m.macro_f1 == pytest.approx(np.mean([2 * p * r / (p + r) for p, r in zip(prec, rec)]))
    assert m.normalised()[0].tolist() == pytest.approx([0.75, 0.25, 0.0])


def test_metrics_absent_and_never_predicted_classes():
    from fusekit.train.evaluate import compute_metrics

    m = compute_metrics([0, 0, 1, 1], [0, 0, 0, 0], ["a", "b", "c"])
    assert m.per_class[1].precision == 0.0 and m.per_class[1].recall == 0.0
    assert m.per_class[2].support == 0
    assert m.balanced_accuracy == pytest.approx(0.5)  # c is not in the truth: not averaged
    assert m.macro_f1 == pytest.approx((2 * 0.5 * 1 / 1.5 + 0) / 2)  # c neither true nor predicted


def test_augment_parse():
    from fusekit.train.decode import Augment

    aug = Augment.parse("flip, rotate=5,brightness")
    assert (aug.flip, aug.rotate, aug.brightness, aug.color) == (True, 5.0, 0.2, 0.0)
    assert aug.describe() == "flip,rotate=5,brightness=0.2"
    assert not Augment.parse("none").active
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        Augment.parse("blur")


def test_row_stream_is_a_function_of_seed_and_epoch(tmp_path):
    from fusekit.train.data import iter_rows, open_shards, read_columns

    shards = open_shards(write_shards(tmp_path / "ds", per_class=6, size=8, shards=3))
    files = shards.files["train"]
    assert shards.classes == tuple(CLASSES) and shards.rows("train") == 42

    def order(epoch):
        return [blob for _, blob, _ in iter_rows(files, shuffle=True, seed=1, epoch=epoch, buffer=10, interleave=2)]

    first, again, other = order(0), order(0), order(1)
    assert first == again and first != other
    plain = [blob for _, blob, _ in iter_rows(files)]
    assert sorted(first) == sorted(plain) and len(plain) == 42  # every row exactly once
    labels = [label for _, _, label in iter_rows(files)]
    assert labels == read_columns(files, ["label"])["label"]  # stream order = file order when not shuffled


def test_process_loader_decodes_resizes_and_weights(tmp_path):
    from fusekit.train.data import InputPipeline, InputSpec, open_shards
    from fusekit.train.decode import Augment

    shards = open_shards(write_shards(tmp_path / "ds", per_class=5, size=32))
    spec = InputSpec(size=16, channels=1, batch_size=8, loader="workers", workers=0,
                     augment=Augment.parse("flip,rotate=10"), class_weights=tuple(shards.class_weights()))
    batches = list(InputPipeline(shards, spec).train(epoch=0))
    assert len(batches) == 35 // 8  # the partial batch is dropped in training
    x, y, w = batches[0]
    assert x.shape == (8, 16, 16, 1) and x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert w.tolist() == pytest.approx([1.0 + label / 10 for label in y.tolist()])
    again = list(InputPipeline(shards, spec).train(epoch=0))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))  # augmentation seeded by (seed, epoch, i)
    evals = list(InputPipeline(shards, spec).eval("val"))
    assert sum(len(b[1]) for b in evals) == 21 and len(evals[0]) == 2


def test_bad_dataset_folder_is_a_user_error(tmp_path):
    from fusekit.errors import UserError
    from fusekit.train.data import open_shards

    (tmp_path / "empty" / "data").mkdir(parents=True)
    with pytest.raises(UserError, match="no shards in"):
        open_shards(tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        open_shards(tmp_path / "missing")


def test_presets_and_flags_resolve():
    from fusekit.train.config import TrainConfig, resolve

    paper = resolve(TrainConfig(data=Path("d"), preset="paper", model="densenet40"))
    assert (paper.optimizer, paper.lr, paper.l2, paper.momentum, paper.input_size, paper.channels, paper.augment) == \
        ("sgd", 1e-4, 1e-3, 0.9, 112, 3, "flip,rotate=5")
    base = resolve(TrainConfig(data=Path("d"), preset="cnn-baseline", model="cnn1", lr=5e-4))
    assert (base.optimizer, base.epochs, base.input_size, base.channels, base.lr, base.augment, base.patience) == \
        ("adam", 75, 48, 1, 5e-4, "flip,rotate=10,crop=4", 0)
    with pytest.raises(ValueError, match="choose a model"):
        resolve(TrainConfig(data=Path("d")))


# -- slow: Keras on the CPU -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_models_build_with_their_documented_parameter_counts():
    from fusekit.train.models import build_model

    assert build_model("cnn1").count_params() == 20_007_687  # the second paper's Model 1 table
    cnn2 = build_model("cnn2")
    assert cnn2.count_params() == 1_485_831  # Model 2 table
    assert [tuple(layer.output.shape[1:3]) for layer in cnn2.layers if "pooling" in layer.name] == \
        [(20, 20), (7, 7), (1, 1)]  # 5x5/2 max, 3x3/2 average, 3x3/2 average, as the table's shapes
    assert 950_000 < build_model("densenet40").count_params() < 1_100_000  # Huang et al.: 1.0 M
    assert build_model("cnn3").count_params() == 4_170_183  # our reading of the prose (models._cnn3)


@pytest.mark.slow
def test_applications_model_with_l2_on_every_kernel():
    from fusekit.train.models import build_model

    # (densenet121 is the same code path with another application; not built here to save suite time)
    model = build_model("resnet50", l2=1e-3)
    assert model.count_params() == 23_587_712 + 2048 * 7 + 7  # keras.applications notop + our softmax head
    assert len(model.losses) == 53 + 1  # one L2 term per conv kernel and the dense head


def _train(workspace, data, **kw):
    from fusekit.train import TrainConfig, run_train

    settings = dict(data=data, model="tiny", epochs=6, batch_size=16, lr=3e-3, augment="flip", seed=3, patience=0,
                    keep_checkpoints=0, verbose=False)
    settings.update(kw)
    return run_train(workspace, TrainConfig(**settings))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = write_shards(root / "dataset", per_class=24, size=32)
    report = _train(root / "ws", data, run="learn", class_weights=True)
    return root, data, report


@pytest.mark.slow
def test_tiny_model_learns_the_synthetic_task(trained):
    root, data, report = trained
    assert report.epochs_done == 6 and report.best_epoch >= 1
    assert report.best_val_accuracy > 0.6  # chance is 1/7
    run = root / "ws" / "runs" / "learn"
    for name in ("best.keras", "history.csv", "curves.png", "command.txt", "dataset.json", "train.log",
                 "checkpoints/epoch-0006.keras"):
        assert (run / name).is_file(), name
    info = json.loads((run / "dataset.json").read_text())
    import hashlib

    assert info["card_sha256"] == hashlib.sha256((data / "README.md").read_bytes()).hexdigest()
    assert info["classes"] == CLASSES and info["rows"]["train"] == 7 * 24 and info["image_size"] == 32
    assert len((run / "history.csv").read_text().splitlines()) == 7


@pytest.mark.slow
def test_evaluate_writes_metrics_that_match_its_predictions(trained):
    from fusekit.train import EvalConfig, run_evaluate
    from fusekit.train.status import status_lines

    root, data, _ = trained
    report = run_evaluate(root / "ws", EvalConfig(run="learn", split="test", by_source=True))
    m = report.metrics
    assert m.n == 42 and m.accuracy > 0.6
    out = root / "ws" / "runs" / "learn" / "eval" / "test"
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 42
    correct = sum(r.split(",")[3] == r.split(",")[4] for r in rows)
    assert correct / 42 == pytest.approx(m.accuracy)
    assert set(report.by_source) == {"fer2013", "ckplus"}
    assert sum(s.n for s in report.by_source.values()) == 42
    for name in ("confusion.csv", "confusion_normalized.csv", "confusion.png", "confusion_normalized.png",
                 "by_source.csv", "per_class.csv", "metrics.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["confusion"] == m.confusion.tolist()
    # a dataset without a flags column (written before it existed): nothing flagged, both figures equal
    assert (report.has_flags, report.flagged, report.without_flagged.n) == (False, 0, 42)
    assert any("learn: tiny, epoch 6/6, finished" in line and "test acc" in line for line in status_lines(root / "ws"))


@pytest.mark.slow
def test_evaluate_reports_the_test_split_whole_and_without_flagged_faces(trained, tmp_path):
    """Official test faces that dedupe flagged (kept in the test split) are scored with it, and beside that figure
    the same scores without them (accuracy, macro-F1, count) in the report, metrics.json and the text."""
    from fusekit.train import EvalConfig, run_evaluate
    from fusekit.train.evaluate import compute_metrics, render_eval

    root, _, _ = trained
    flagged = {f"test-{label}-{i}": (["too_small"] if i == 0 else ["near_duplicate_of:test-0-1", "label_conflict"])
               for label in range(0, 7, 2) for i in (0, 1)}  # 8 of the 42 test rows
    data = write_shards(tmp_path / "flagged", per_class=24, size=32, flagged=flagged)
    report = run_evaluate(root / "ws", EvalConfig(run="learn", data=data, split="test"))
    assert report.has_flags and report.flagged == 8 and report.metrics.n == 42
    out = root / "ws" / "runs" / "learn" / "eval" / "test"
    rows = [r.split(",") for r in (out / "predictions.csv").read_text().splitlines()[1:]]
    assert sum(bool(r[6]) for r in rows) == 8 and {r[2] for r in rows if r[6]} == set(flagged)
    classes = report.classes
    clean = [(classes.index(r[3]), classes.index(r[4])) for r in rows if not r[6]]
    expected = compute_metrics([t for t, _ in clean], [p for _, p in clean], classes)
    w = report.without_flagged
    assert w.n == 34 and w.accuracy == pytest.approx(expected.accuracy) and w.macro_f1 == pytest.approx(expected.macro_f1)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n"] == 42 and saved["flagged"] == 8 and saved["without_flagged"]["n"] == 34
    assert saved["without_flagged"]["accuracy"] == pytest.approx(w.accuracy)
    text = render_eval(report)
    assert "without flagged" in text and "8 flagged" in text
    assert any(line.split()[:3] == ["accuracy", f"{report.metrics.accuracy:.4f}", f"{w.accuracy:.4f}"]
               for line in text.splitlines())


@pytest.mark.slow
def test_resume_after_a_kill_gives_the_weights_of_an_uninterrupted_run(trained, monkeypatch):
    import keras

    root, data, _ = trained  # the fixture's run "learn" is the uninterrupted run
    # killed during epoch 3: state.json says 2 epochs
    kill_after_epoch(monkeypatch, 2, lambda: _train(root / "ws", data, run="killed", class_weights=True))
    report = _train(root / "ws", None, run="killed", resume=True)
    assert report.resumed_from == 2 and report.epochs_done == 6

    runs = root / "ws" / "runs"
    a = keras.saving.load_model(runs / "learn" / "checkpoints" / "epoch-0006.keras")
    b = keras.saving.load_model(runs / "killed" / "checkpoints" / "epoch-0006.keras")
    for x, y in zip(a.get_weights() + [keras.ops.convert_to_numpy(v) for v in a.optimizer.variables],
                    b.get_weights() + [keras.ops.convert_to_numpy(v) for v in b.optimizer.variables]):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    hist_a = (runs / "learn" / "history.csv").read_text().splitlines()
    hist_b = (runs / "killed" / "history.csv").read_text().splitlines()
    assert [r.split(",")[:5] for r in hist_a] == [r.split(",")[:5] for r in hist_b]
    assert (runs / "killed" / "command.txt").read_text().count("# resumed") == 1


@pytest.mark.slow
def test_predict_labels_each_aligned_face(trained, monkeypatch, tmp_path, capsys):
    import sys
    import types

    from helpers import call_cli

    root, _, _ = trained
    pictures = {}
    for label in (3, 5):  # happy, surprise
        path = tmp_path / f"{CLASSES[label]}.png"
        path.write_bytes(band_image(label, 1000 + label))
        pictures[str(path)] = label
    calls = []

    def detect_and_align(image, policy="crawled", size=112):
        # the faces stage's contract; here the picture itself is "the aligned face"
        calls.append((policy, size))
        face = types.SimpleNamespace(crop=image.resize((size, size)), box=(0.0, 0.0, 32.0, 32.0),
                                     landmarks=None, score=0.99, aligned=True)
        return [face] if image.getpixel((0, 0)) is not None else []

    monkeypatch.setitem(sys.modules, "fusekit.faces", types.SimpleNamespace(detect_and_align=detect_and_align))
    from fusekit.predict import predict

    (tmp_path / "broken.png").write_bytes(b"not an image")
    results = predict(root / "ws", "learn", [*pictures, str(tmp_path / "broken.png")])
    assert calls == [("crawled", 32), ("crawled", 32)]  # aligned to the dataset's face size
    assert [r.label for r in results[:2]] == [CLASSES[label] for label in pictures.values()]
    assert sum(results[0].probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert results[0].box == (0.0, 0.0, 32.0, 32.0) and results[0].face == 0
    assert results[2].label is None and results[2].error.startswith("cannot read")

    code, out, err = call_cli(capsys, "predict", *pictures, "--run", "learn", "--json", workspace=root / "ws")
    assert code == 0, err
    assert [r["label"] for r in json.loads(out)] == ["happy", "surprise"]


@pytest.mark.slow
def test_cli_user_mistakes_exit_2_with_one_line(trained, capsys):
    from helpers import call_cli

    root, data, _ = trained
    ws = root / "ws"
    cases = [
        (["train", "--model", "tiny"], "--data DATASET_DIR is required"),
        (["train", "--data", str(data), "--model", "vgg"], "unknown model 'vgg'"),
        (["train", "--data", str(root / "nowhere"), "--model", "tiny"], "does not exist"),
        (["train", "--data", str(data), "--model", "tiny", "--run", "learn"], "run 'learn' exists"),
        (["train", "--data", str(data), "--model", "tiny", "--augment", "blur"], "unknown augmentation 'blur'"),
        (["evaluate", "--run", "nope"], "no run 'nope'"),
        (["evaluate", "--run", "learn", "--split", "holdout"], "no 'holdout' split"),
    ]
    for argv, message in cases:
        code, out, err = call_cli(capsys, *argv, workspace=ws)
        assert code == 2, (argv, err)
        assert err.startswith("Error: ") and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (ws / "runs" / "tiny").exists()  # a refused request leaves no run folder


@pytest.mark.slow
def test_init_starts_from_a_trained_run(trained):
    root, data, _ = trained
    report = _train(root / "ws", data, run="finetune", init=str(root / "ws" / "runs" / "learn"), epochs=1)
    assert report.model == "tiny" and report.transferred == 3  # both convolutions and the head
    assert report.history[0]["val_accuracy"] > 0.6  # starts where "learn" ended, not from chance


@pytest.mark.slow
def test_a_saved_cnn_model_reloads_in_a_fresh_process(tmp_path):
    """The cnn models carry fusekit's Standardize layer; a run's .keras file must load where fusekit.train.models
    has not been imported yet (evaluate, predict, --resume and --init load checkpoints: a real run's evaluate
    failed with 'Could not locate class Standardize')."""
    import subprocess
    import sys

    from fusekit.train.models import build_model

    path = tmp_path / "cnn2.keras"
    model = build_model("cnn2")
    model.save(path)
    code = ("import sys, numpy as np\n"
            "from fusekit.train.models import load_model\n"
            f"m = load_model({str(path)!r}, compile=False)\n"
            "print(m.count_params(), m.get_layer('standardize').__class__.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["1485831", "Standardize"]
