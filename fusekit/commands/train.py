"""`fusekit train`, `fusekit evaluate`, `fusekit predict`: parse flags, call `fusekit.train`, print the report."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from fusekit.cli import _echo, _workspace, app


def _quiet_backend() -> None:
    """Load Keras and its backend before anything else, with TensorFlow's start-up lines (six on a CPU box: oneDNN,
    CUDA probing, CPU features) and its runtime's INFO/WARNING log kept off the terminal, so that an error is the one
    line it should be. ``-v`` (or FUSEKIT_TF_LOGS=1, or a TF_CPP_MIN_LOG_LEVEL of one's own) shows them."""
    from fusekit.cli import _state

    if _state.get("verbose", 0) > 0:
        return
    try:
        from fusekit.faces.detect import import_quietly
    except ImportError:  # only a nicety: never what stops a command (tests may stand in for fusekit.faces)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_quietly("keras", missing_ok=True)  # a missing backend is reported by the import that needs it


def _command_line() -> str:
    """The exact command, as typed (recorded in the run folder)."""
    return shlex.join(["fusekit", *sys.argv[1:]])


@app.command()
def train(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Dataset folder written by `fusekit balance`."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="resnet50, densenet121, densenet40, cnn1, cnn2, "
                                                                   "cnn3, vgg48 (or tiny, for smoke tests)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="paper (SGD 1e-4, L2 1e-3, 112 px RGB, flips and "
                                                                "rotations), cnn-baseline (Adam, 75 epochs, 48 px "
                                                                "grey) or fer-strong (vgg48, SGD Nesterov 0.01, weight "
                                                                "decay 1e-3, cosine with 5 warm-up epochs, label "
                                                                "smoothing 0.1, flip,crop=4,zoom=0.1,rotate=10,erase=0.5,"
                                                                " 300 epochs, 48 px grey). Flags override it."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name: runs/NAME/ (default: the model name, with "
                                                          "-PRESET, made unique)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run (--run, or the latest) where it stopped."),
    init: Optional[str] = typer.Option(None, "--init", help="Start from this run's best model (fine-tuning)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local keras.applications backbone weights "
                                                                  "(resnet50, densenet121); nothing is downloaded."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Input side in pixels (default: the "
                                                                        "model's or the preset's)."),
    grey: Optional[bool] = typer.Option(None, "--grey/--rgb", help="Grey (1 channel) or RGB input."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (with --resume: a new total)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size (split over GPUs)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd or adam."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum (default: 0.9)."),
    l2: Optional[float] = typer.Option(None, "--l2", help="L2 kernel regularisation factor (a loss term on the conv "
                                                          "and dense kernels)."),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (SGD only; "
                                                                                  "default: off)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="The optimizer's decoupled weight decay "
                                                                              "on every weight: each step w -= lr * "
                                                                              "wd * w (1e-3 here is PyTorch SGD's "
                                                                              "1e-4 under momentum 0.9; default 0)."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="Learning rate: none (constant), cosine (to 0 at "
                                                                    "the last step) or plateau (x0.75 after 5 epochs "
                                                                    "without a better val accuracy). Default none."),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", help="Linear warm-up to --lr over this "
                                                                                "many epochs (step by step; by whole "
                                                                                "epochs with plateau). Default 0."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help="Cross-entropy against (1 - e) "
                                                                                    "one-hot + e / classes (default "
                                                                                    "0)."),
    class_weights: bool = typer.Option(False, "--class-weights", help="Weight the loss by the dataset's "
                                                                     "class_weights.json."),
    augment: Optional[str] = typer.Option(None, "--augment", help="e.g. flip,rotate=5,shift=0.1,brightness=0.2,"
                                                                  "contrast=0.2,color=0.2, crop=4 (pad 4 px, random "
                                                                  "crop back), zoom=0.1 (scale 1 +- 0.1), erase=0.5 "
                                                                  "(random erasing, probability), or none."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping: epochs without a better "
                                                                    "validation loss (0: off)."),
    seed: int = typer.Option(0, "--seed", help="Seed of shuffling, augmentation, dropout and initialisation."),
    loader: str = typer.Option("auto", "--loader", help="auto (tf.data on TensorFlow, else worker processes), tf, "
                                                        "workers."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes of the process loader."),
    precision: str = typer.Option("auto", "--precision", help="auto (GPU: mixed float16/bfloat16 by capability; CPU: mixed_bfloat16 where the CPU has bfloat16 instructions, else float32), float32, mixed_float16, mixed_bfloat16."),
    keep_checkpoints: int = typer.Option(3, "--keep-checkpoints", help="Per-epoch checkpoints kept (0: all)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="At most this many steps per epoch (smoke "
                                                                      "tests)."),
) -> None:
    """Train a model on the shards; checkpoints, history and the best model go to runs/NAME/."""
    _quiet_backend()
    from fusekit.train import TrainConfig, run_train

    config = TrainConfig(
        data=data, model=model, preset=preset, run=run, resume=resume, init=init,
        weights=str(weights) if weights else None, input_size=input_size,
        channels=None if grey is None else (1 if grey else 3), epochs=epochs, batch_size=batch_size,
        optimizer=optimizer, lr=lr, momentum=momentum, l2=l2, nesterov=nesterov, weight_decay=weight_decay,
        schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
        class_weights=class_weights, augment=augment,
        patience=patience, seed=seed, loader=loader, workers=workers, precision=precision,
        keep_checkpoints=keep_checkpoints, max_steps=max_steps, command=_command_line(),
    )
    report = run_train(_workspace(), config, echo=_echo)
    best = f"{report.best_val_accuracy:.4f}" if report.best_val_accuracy is not None else "-"
    _echo(f"run {report.run}: {report.model} ({report.params:,} params) on {report.device}, {report.precision}, "
          f"{report.loader} loader")
    if report.transferred is not None:
        _echo(f"initialised {report.transferred} layers from run {init}")
    _echo(f"epochs {report.epochs_done}/{report.epochs}" + (" (stopped early)" if report.stopped_early else "") +
          f"; best epoch {report.best_epoch}: val_loss {report.best_val_loss or float('nan'):.4f}, val_acc {best}")
    _echo(f"written to {report.run_dir} (best.keras, history.csv, curves.png); "
          f"next: fusekit evaluate --run {report.run}")


@app.command()
def evaluate(
    run: Optional[str] = typer.Option(None, "--run", help="Run name (default: the latest run)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Dataset folder (default: the run's)."),
    split: str = typer.Option("test", "--split", help="Split to evaluate."),
    by_source: bool = typer.Option(False, "--by-source", help="Also score each source dataset's samples alone."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last or an epoch number."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size."),
    tta: str = typer.Option("none", "--tta", help="Test-time augmentation: none, flip (the picture and its mirror) or "
                                                  "ten-crop (the picture resized to input + 4 px, its four corner "
                                                  "crops and centre crop of the input size, and their mirrors); "
                                                  "softmax averaged. Written to eval/SPLIT-tta-MODE/, beside the "
                                                  "plain figures."),
) -> None:
    """Accuracy, macro-F1, balanced accuracy, per-class scores, confusion matrices and curves of a run."""
    _quiet_backend()
    from fusekit.train import EvalConfig, run_evaluate
    from fusekit.train.evaluate import render_eval

    report = run_evaluate(_workspace(), EvalConfig(run=run, data=data, split=split, by_source=by_source,
                                                    checkpoint=checkpoint, batch_size=batch_size, tta=tta))
    _echo(render_eval(report))


@app.command("predict")
def predict_command(
    images: List[Path] = typer.Argument(..., help="Image files."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name (default: the latest run)."),
    policy: str = typer.Option("crawled", "--policy", help="Face policy of fusekit.faces (crawled: find faces in "
                                                           "a picture)."),
    whole_image: bool = typer.Option(False, "--whole-image", help="Classify the whole image when no face is "
                                                                  "found."),
    top: int = typer.Option(3, "--top", help="Probabilities shown per face."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (every class probability)."),
) -> None:
    """Find and align the faces in each image, then print each face's label and class probabilities."""
    _quiet_backend()
    from dataclasses import asdict

    from fusekit.predict import predict, render_predictions

    results = predict(_workspace(), run, images, policy=policy, whole_image=whole_image)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        _echo(render_predictions(results, top=top))
