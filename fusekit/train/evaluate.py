"""`run_evaluate`: a run's model on a split of a dataset, reported as the papers report it.

Writes ``runs/NAME/eval/<split>/`` (with test-time augmentation ``runs/NAME/eval/<split>-tta-<mode>/``, so that the
figures with and without it never overwrite each other): metrics.json, per_class.csv, confusion.csv /
confusion_normalized.csv (rows = true class, columns = predicted; normalised per true class), the same two as PNG,
by_source.csv (accuracy on each source dataset's samples alone, e.g. CK+ or FER-2013's test), predictions.csv, and
the run's curves.png.

Beside the split as built (official test splits whole, as the literature scores them), the same scores without the
rows whose ``flags`` are set (official test faces that dedupe would have removed: too small, duplicated inside the
test split, label conflict): ``without_flagged`` in the report and metrics.json. A dataset written before shards had
a ``flags`` column has no flagged rows.

Test-time augmentation (``tta``; metrics.json says which): ``flip`` averages the softmax of the picture and of its
mirror; ``ten-crop`` decodes the picture at the input size + `TEN_CROP_MARGIN` (4) pixels and averages the softmax of
its four corner crops and its centre crop of the input size and of their five mirrors (torchvision's
``Resize(s + 4)`` + ``TenCrop(s)``: the crops keep the scale the model was trained at, shifted by up to +-2 px). Every
figure (both test columns, per class, per source, confusion) is then of the averaged predictions, and the report
keeps the plain figures of the same model beside them (``plain``, ``plain_without_flagged``).

Metric conventions (as scikit-learn's defaults): macro-F1 averages the classes that occur in the truth or the
predictions; balanced accuracy is the mean recall over the classes that occur in the truth; a class never predicted
has precision 0.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from fusekit.errors import UserError
from fusekit.train import runs as runs_mod
from fusekit.workspace import write_json_atomic, write_text_atomic


@dataclass
class EvalConfig:
    run: str | None = None  # default: the most recent run
    data: Path | None = None  # default: the dataset the run trained on
    split: str = "test"
    by_source: bool = False
    checkpoint: str = "best"  # best | last | an epoch number
    batch_size: int | None = None
    loader: str = "auto"
    workers: int | None = None
    tta: str = "none"  # none | flip | ten-crop


TTA_MODES = ("none", "flip", "ten-crop")
TEN_CROP_MARGIN = 4  # ten-crop: the picture at input + 4 px, crops of the input size


@dataclass
class ClassMetrics:
    name: str
    support: int
    precision: float
    recall: float
    f1: float


@dataclass
class Metrics:
    n: int
    accuracy: float
    macro_f1: float
    balanced_accuracy: float
    per_class: list[ClassMetrics]
    confusion: np.ndarray  # [true, predicted] counts

    def normalised(self) -> np.ndarray:
        rows = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, rows, out=np.zeros(self.confusion.shape, float), where=rows > 0)

    def to_dict(self) -> dict:
        return {"n": self.n, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "balanced_accuracy": self.balanced_accuracy,
                "per_class": [c.__dict__ for c in self.per_class], "confusion": self.confusion.tolist()}


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> Metrics:
    """Accuracy, macro-F1, balanced accuracy, per-class precision / recall / F1 and the confusion matrix."""
    t = np.asarray(y_true, np.int64)
    p = np.asarray(y_pred, np.int64)
    k = len(classes)
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k) if t.size else np.zeros((k, k), np.int64)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = (support > 0) | (predicted > 0)
    per_class = [ClassMetrics(classes[i], int(support[i]), float(precision[i]), float(recall[i]), float(f1[i]))
                 for i in range(k)]
    return Metrics(
        n=int(t.size),
        accuracy=float(tp.sum() / t.size) if t.size else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        balanced_accuracy=float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        per_class=per_class,
        confusion=confusion,
    )


@dataclass
class EvalReport:
    run: str
    split: str
    data: Path
    checkpoint: Path
    classes: list[str]
    metrics: Metrics
    by_source: dict[str, Metrics] = field(default_factory=dict)
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)
    without_flagged: Metrics | None = None  # the rows whose flags are empty (all rows when no flags column)
    flagged: int = 0  # rows with flags
    has_flags: bool = False  # the shards have a flags column
    tta: str = "none"
    plain: Metrics | None = None  # with tta: the same model without it (the whole split)
    plain_without_flagged: Metrics | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False)  # rows x classes, as predicted (averaged)


def tta_views(x: np.ndarray, mode: str, size: int) -> list[np.ndarray]:
    """The views of a batch (N x S x S x C) that ``mode`` averages: the batch (none); it and its mirror (flip); for
    ten-crop (S = size + margin) the top-left, top-right, bottom-left, bottom-right and centre ``size`` crops, then
    the mirror of each."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x[:, :, ::-1]]
    if mode != "ten-crop":
        raise UserError(f"--tta must be one of {', '.join(TTA_MODES)}, not {mode!r}")
    m = x.shape[1] - size
    crops = [x[:, top:top + size, left:left + size] for top, left in ((0, 0), (0, m), (m, 0), (m, m), (m // 2, m // 2))]
    return crops + [c[:, :, ::-1] for c in crops]


def predict_tta(model, x, mode: str, size: int) -> np.ndarray:
    """Softmax of every view of ``x`` (one forward pass over all of them), averaged per row: N x classes."""
    import keras

    x = np.asarray(x, np.float32)
    views = tta_views(x, mode, size)
    probs = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(np.ascontiguousarray(np.concatenate(views)))),
                       np.float64)
    return probs.reshape(len(views), x.shape[0], -1).mean(axis=0)


def resolve_run(root: Path, name: str | None):
    if name is None:
        run = runs_mod.latest_run(root)
        if run is None:
            raise UserError(f"no runs in {runs_mod.runs_dir(root)}: train one with `fusekit train`")
        return run
    run = runs_mod.Run(runs_mod.runs_dir(root), name)
    if not run.exists():
        known = ", ".join(r.name for r in runs_mod.list_runs(root)) or "none"
        raise UserError(f"no run {name!r} in {runs_mod.runs_dir(root)} (runs: {known})")
    return run


def checkpoint_path(run, which: str) -> Path:
    if which == "best":
        path = run.best_model
    elif which == "last":
        path = run.checkpoint(run.state().epochs_done)
    elif which.isdigit():
        path = run.checkpoint(int(which))
    else:
        raise UserError(f"--checkpoint must be best, last or an epoch number, not {which!r}")
    if not path.is_file():
        raise UserError(f"run {run.name!r} has no model at {path} (has it finished an epoch?)")
    return path


def run_evaluate(workspace, config: EvalConfig) -> EvalReport:
    """Evaluate a run's model on ``config.split``; write the files above; return the numbers."""
    import keras

    from fusekit.train.data import InputPipeline, InputSpec, open_shards, read_columns
    from fusekit.train.loop import _default_workers

    if config.tta not in TTA_MODES:
        raise UserError(f"--tta must be one of {', '.join(TTA_MODES)}, not {config.tta!r}")
    root = runs_mod.workspace_root(workspace)
    run = resolve_run(root, config.run)
    saved = run.config()
    classes = run.dataset_info().get("classes") or []
    shards = open_shards(config.data or saved["data"])
    if config.split not in shards.files:
        raise UserError(f"the dataset at {shards.root} has no {config.split!r} split "
                        f"(splits: {', '.join(sorted(shards.files))})")
    classes = list(classes or shards.classes)
    remap = _remap(shards.classes, classes)
    ckpt = checkpoint_path(run, config.checkpoint)
    from fusekit.train.models import load_model

    model = load_model(ckpt, compile=False)

    size = int(saved["input_size"])

    def predictions(load_size: int, mode: str) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """(labels, averaged softmax, plain softmax) per batch of the split read at ``load_size``."""
        spec = InputSpec(size=load_size, channels=saved["channels"], cache_bytes=0, batch_size=config.batch_size or
                         saved.get("batch_size") or 64, loader=config.loader,
                         workers=config.workers if config.workers is not None else _default_workers())
        pipeline = InputPipeline(shards, spec)
        labels, averaged, plain = [], [], []
        try:
            for x, y in pipeline.eval(config.split):
                if mode == "flip":  # the plain prediction is the first view's
                    x = np.asarray(x, np.float32)
                    both = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(
                        np.concatenate([x, np.ascontiguousarray(x[:, :, ::-1])]))), np.float64)
                    plain.append(both[:len(x)])
                    averaged.append((both[:len(x)] + both[len(x):]) / 2)
                else:
                    averaged.append(predict_tta(model, x, mode, size))
                labels.append(np.asarray(y))
        finally:
            pipeline.close()
        return labels, averaged, plain

    if config.tta == "ten-crop":
        y_true, probs, _ = predictions(size + TEN_CROP_MARGIN, "ten-crop")
        _, plain_probs, _ = predictions(size, "none")
    else:
        y_true, probs, plain_probs = predictions(size, config.tta)
    prob = np.concatenate(probs) if probs else np.zeros((0, len(classes)), np.float32)
    truth = remap[np.concatenate(y_true)] if y_true else np.zeros(0, np.int64)
    if (truth < 0).any():
        # samples of classes the model never learnt cannot be scored
        unknown = sorted({shards.classes[i] for i in np.concatenate(y_true)[truth < 0].tolist()})
        raise UserError(f"the {config.split} split has classes run {run.name!r} was not trained on: "
                        f"{', '.join(unknown)}")
    pred = prob.argmax(axis=1)
    metrics = compute_metrics(truth, pred, classes)
    plain_pred = np.concatenate(plain_probs).argmax(axis=1) if config.tta != "none" and plain_probs else None

    meta = read_columns(shards.files[config.split], ["dataset", "source_id", "label", "flags"])
    sources = meta["dataset"] if len(meta["dataset"]) == len(truth) else ["?"] * len(truth)
    flags = [list(f or []) for f in meta["flags"]] if len(meta["flags"]) == len(truth) else [[]] * len(truth)
    has_flags = any("flags" in pq_names(f) for f in shards.files[config.split])
    clean = np.array([not f for f in flags], bool)
    by_source: dict[str, Metrics] = {}
    if config.by_source:
        names = np.asarray([s or "?" for s in sources])
        for name in sorted(set(names.tolist())):
            mask = names == name
            by_source[name] = compute_metrics(truth[mask], pred[mask], classes)

    out = run.dir / "eval" / eval_folder(config.split, config.tta)
    report = EvalReport(run.name, config.split, shards.root, ckpt, classes, metrics, by_source, out,
                        without_flagged=compute_metrics(truth[clean], pred[clean], classes),
                        flagged=int((~clean).sum()), has_flags=has_flags, tta=config.tta, probabilities=prob)
    if plain_pred is not None:
        report.plain = compute_metrics(truth, plain_pred, classes)
        report.plain_without_flagged = compute_metrics(truth[clean], plain_pred[clean], classes)
    report.files = _write(report, prob, truth, pred, sources, meta["source_id"], flags)
    history = runs_mod.read_history(run.dir / "history.csv")
    if history:
        from fusekit.train.plots import training_curves

        report.files.append(training_curves(history, run.dir / "curves.png", title=run.name))
    return report


def eval_folder(split: str, tta: str = "none") -> str:
    """``<split>`` without test-time augmentation, ``<split>-tta-<mode>`` with it."""
    return split if tta == "none" else f"{split}-tta-{tta}"


def pq_names(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(path).names


def _headline(m: Metrics) -> dict:
    return {"n": m.n, "accuracy": m.accuracy, "macro_f1": m.macro_f1, "balanced_accuracy": m.balanced_accuracy}


def _remap(dataset_classes: Sequence[str], run_classes: Sequence[str]) -> np.ndarray:
    """Dataset label id -> the run's class id, by name (a dataset built with another class list still evaluates)."""
    return np.asarray([run_classes.index(c) if c in run_classes else -1 for c in dataset_classes], np.int64)


def _write(report: EvalReport, prob, truth, pred, sources, source_ids, flags) -> list[Path]:
    from fusekit.train.plots import confusion_png

    out = report.out_dir
    m, classes = report.metrics, report.classes
    files = []
    summary = {"run": report.run, "split": report.split, "data": str(report.data), "checkpoint": str(report.checkpoint),
               "classes": classes, **m.to_dict(),
               "by_source": {k: {kk: v for kk, v in s.to_dict().items() if kk != "confusion"}
                             for k, s in report.by_source.items()},
               "flagged": report.flagged, "has_flags": report.has_flags,
               "without_flagged": _headline(report.without_flagged) if report.without_flagged else None,
               "tta": report.tta,
               "plain": {**_headline(report.plain), "without_flagged": _headline(report.plain_without_flagged)}
               if report.plain is not None and report.plain_without_flagged is not None else None}
    write_json_atomic(summary, out / "metrics.json")
    files.append(out / "metrics.json")
    rows = [["class", "support", "precision", "recall", "f1"]] + [
        [c.name, c.support, f"{c.precision:.6f}", f"{c.recall:.6f}", f"{c.f1:.6f}"] for c in m.per_class]
    files.append(_csv(out / "per_class.csv", rows))
    for name, matrix, fmt in (("confusion", m.confusion, "{:d}"), ("confusion_normalized", m.normalised(), "{:.6f}")):
        files.append(_csv(out / f"{name}.csv", [["true\\predicted", *classes]] +
                          [[classes[i], *(fmt.format(v) for v in matrix[i].tolist())] for i in range(len(classes))]))
        normalised = name.endswith("normalized")
        title = f"{report.run} on {report.split}" + (f", TTA {report.tta}" if report.tta != "none" else "")
        files.append(confusion_png(matrix, classes, out / f"{name}.png",
                                   title + (" (normalised by true class)" if normalised else ""), normalised))
    if report.by_source:
        files.append(_csv(out / "by_source.csv", [["source", "n", "accuracy", "balanced_accuracy", "macro_f1"]] + [
            [k, s.n, f"{s.accuracy:.6f}", f"{s.balanced_accuracy:.6f}", f"{s.macro_f1:.6f}"]
            for k, s in report.by_source.items()]))
    pred_rows = [["row", "source", "source_id", "label", "predicted", "confidence", "flags"]]
    ids = source_ids if len(source_ids) == len(truth) else [None] * len(truth)
    for i in range(len(truth)):
        pred_rows.append([i, sources[i], ids[i] or "", classes[truth[i]], classes[pred[i]], f"{prob[i].max():.4f}",
                          ";".join(flags[i])])
    files.append(_csv(out / "predictions.csv", pred_rows))
    return files


def _csv(path: Path, rows) -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    write_text_atomic(path, buf.getvalue())
    return path


def render_eval(report: EvalReport) -> str:
    """The printed report: headline metrics, per class, per source, where the files are."""
    from fusekit.text import table

    m = report.metrics
    clean = report.without_flagged or m
    rows = [["accuracy", m.accuracy, clean.accuracy], ["macro-F1", m.macro_f1, clean.macro_f1],
            ["balanced accuracy", m.balanced_accuracy, clean.balanced_accuracy]]
    header = ["metric", report.split, "without flagged"]
    if report.plain is not None and report.plain_without_flagged is not None:  # TTA: the plain figures beside
        p, pc = report.plain, report.plain_without_flagged
        header = ["metric", f"{report.split} ({report.tta})", f"without flagged ({report.tta})", "no TTA",
                  "no TTA without flagged"]
        for row, extra in zip(rows, ((p.accuracy, pc.accuracy), (p.macro_f1, pc.macro_f1),
                                     (p.balanced_accuracy, pc.balanced_accuracy))):
            row.extend(extra)
    headline = table(header, [[row[0], *(f"{v:.4f}" for v in row[1:])] for row in rows] +
                     [["images", *([f"{m.n:,}", f"{clean.n:,}"] * ((len(header) - 1) // 2))]])
    note = (f"{report.split} as built (official test splits whole) and without its {report.flagged:,} flagged "
            f"image(s) (official test faces dedupe would have removed)" if report.has_flags else
            f"{report.split} as built (this dataset has no flags column: built before flags, nothing flagged)")
    tta = {"flip": ", TTA flip: the picture and its mirror averaged",
           "ten-crop": f", TTA ten-crop: 4 corner + centre crops of the picture at input + {TEN_CROP_MARGIN} px "
                       f"and their mirrors averaged"}.get(report.tta, "")
    lines = [f"run {report.run} on {report.split} ({m.n:,} images, {report.checkpoint.name}{tta})", "",
             headline, note, "",
             table(["class", "support", "precision", "recall", "F1"],
                   [[c.name, c.support, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}"]
                    for c in m.per_class if c.support or c.precision])]
    if report.by_source:
        lines += ["", table(["source", "images", "accuracy", "balanced acc", "macro-F1"],
                            [[k, s.n, f"{s.accuracy:.4f}", f"{s.balanced_accuracy:.4f}", f"{s.macro_f1:.4f}"]
                             for k, s in report.by_source.items()])]
    lines += ["", "confusion matrix (rows true, columns predicted):",
              table(["", *[c[:7] for c in report.classes]],
                    [[c, *row] for c, row in zip(report.classes, m.confusion.tolist())])]
    if report.out_dir is not None:
        lines += ["", f"written to {report.out_dir}"]
    return "\n".join(lines)


def load_metrics(run, split: str, tta: str = "none") -> dict | None:
    path = run.dir / "eval" / eval_folder(split, tta) / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
