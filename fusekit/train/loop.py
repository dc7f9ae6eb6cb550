"""`run_train`: build or reload the model, then train epoch by epoch with checkpoints, best model, early stopping.

Each epoch is one ``model.fit(..., initial_epoch=e, epochs=e + 1)`` call on that epoch's input (see
`fusekit.train.data`: the batches of epoch e are a pure function of (seed, e)), with the dropout seed generators reset
from (seed, e) too. After the epoch: checkpoint (model + optimizer), best model, history, then state.json. A killed
run, resumed, therefore continues with the same weights, optimizer state, data order, augmentations and dropout
masks as an uninterrupted run.

Devices: TensorFlow uses a MirroredStrategy over all visible GPUs; JAX a `keras.distribution.DataParallel` over its
GPUs; PyTorch trains on one GPU (Keras 3 has no multi-GPU distribution for it). Mixed precision (float16 with loss
scaling, or bfloat16) is switched on when the GPU supports it; on a CPU everything runs in float32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fusekit.errors import UserError
from fusekit.train import runs as runs_mod
from fusekit.train.config import TrainConfig, resolve
from fusekit.train.data import InputPipeline, InputSpec, open_shards
from fusekit.train.decode import Augment

log = logging.getLogger("fusekit.train")


class TrainError(UserError):
    """A user-fixable problem with a training request (the CLI prints it as one line)."""


@dataclass
class TrainReport:
    run: str
    run_dir: Path
    model: str
    params: int
    epochs_done: int
    epochs: int
    best_epoch: int
    best_val_loss: float | None
    best_val_accuracy: float | None
    stopped_early: bool
    resumed_from: int | None
    device: str
    precision: str
    loader: str
    images_per_s: float | None
    transferred: int | None = None  # layers initialised from --init
    history: list[dict[str, float]] = field(default_factory=list)


# -- devices ----------------------------------------------------------------------------------------------------------

@dataclass
class Devices:
    backend: str
    gpus: int
    name: str
    policy: str
    scope: Callable[[], Any] = contextlib.nullcontext


def cpu_has_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 arithmetic natively (AVX512_BF16 or AMX; Linux's /proc/cpuinfo flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16"))


def _auto_policy(backend: str, gpus: int, capability: float) -> str:
    """float16 with loss scaling needs tensor cores (7.0+); bfloat16 (8.0+) needs no loss scaling on JAX/torch.
    On a CPU with bfloat16 instructions TensorFlow's oneDNN kernels train cnn2 about 1.6-2x faster in mixed_bfloat16
    (benchmarks/bench_train_cpu.py) with the same loss curve; elsewhere float32."""
    if gpus and capability >= 8.0 and backend != "tensorflow":
        return "mixed_bfloat16"
    if gpus and capability >= 7.0:
        return "mixed_float16"
    if not gpus and backend == "tensorflow" and cpu_has_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def setup_devices(precision: str = "auto") -> Devices:
    """Distribution over the visible GPUs and the dtype policy, for the active Keras backend."""
    import keras

    backend = keras.backend.backend()
    gpus, capability, scope = 0, 0.0, contextlib.nullcontext
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_physical_devices("GPU")
        gpus = len(devices)
        if gpus:
            details = tf.config.experimental.get_device_details(devices[0])
            capability = float("{}.{}".format(*details.get("compute_capability", (0, 0))))
            strategy = tf.distribute.MirroredStrategy() if gpus > 1 else tf.distribute.get_strategy()
            scope = strategy.scope
    elif backend == "jax":
        import jax

        devices = [d for d in jax.devices() if d.platform == "gpu"]
        gpus = len(devices)
        if gpus:
            capability = float(getattr(devices[0], "compute_capability", "0") or 0)
        if gpus > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    elif backend == "torch":
        import torch

        gpus = torch.cuda.device_count()
        if gpus:
            major, minor = torch.cuda.get_device_capability(0)
            capability = major + minor / 10
        gpus = min(gpus, 1)
    policy = _auto_policy(backend, gpus, capability) if precision == "auto" else precision
    keras.config.set_dtype_policy(policy)
    name = f"{gpus} GPU{'s' if gpus != 1 else ''} ({backend})" if gpus else f"CPU ({backend})"
    return Devices(backend, gpus, name, policy, scope)


# -- optimizer, learning-rate schedule, loss -------------------------------------------------------------------------
#
# Every schedule is a function of the step (cosine, warm-up) or of the epochs already recorded in state.json (plateau),
# never of wall-clock state, so a resumed run sets the same rates as an uninterrupted one.

PLATEAU_FACTOR = 0.75  # --schedule plateau: Khaireddin & Chen's ReduceLROnPlateau(mode="max", factor=0.75,
PLATEAU_PATIENCE = 5  # patience=5) on the validation accuracy, with PyTorch's default relative threshold
PLATEAU_THRESHOLD = 1e-4


def _keras():
    import keras

    return keras


@_keras().saving.register_keras_serializable(package="fusekit")
class WarmupSchedule(_keras().optimizers.schedules.LearningRateSchedule):
    """The learning rate at optimizer step ``step`` (0-based; the checkpoint keeps the optimizer's step counter):
    ``base * (step + 1) / warmup_steps`` during the warm-up, then ``base`` (``decay="constant"``) or a cosine from
    ``base`` to 0 at ``total_steps`` (``decay="cosine"``)."""

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0, decay: str = "cosine") -> None:
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = str(decay)

    def __call__(self, step):
        ops = _keras().ops
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        if self.decay == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            progress = ops.clip((step - float(self.warmup_steps)) / span, 0.0, 1.0)
            after = self.base_lr * 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            after = ops.cast(self.base_lr, "float32") + 0.0 * step
        return ops.where(step < float(self.warmup_steps), self.base_lr * (step + 1.0) / warm, after)

    def get_config(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "decay": self.decay}


@_keras().saving.register_keras_serializable(package="fusekit")
class SmoothedSparseCrossentropy(_keras().losses.Loss):
    """Cross-entropy of integer labels against ``(1 - e) * one_hot + e / classes`` (Keras's sparse cross-entropy has
    no label smoothing; its categorical one has, on one-hot targets: this one-hots the labels and calls it)."""

    def __init__(self, label_smoothing: float = 0.1, name: str = "smoothed_sparse_crossentropy",
                 reduction: str = "sum_over_batch_size", dtype=None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        keras = _keras()
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        target = keras.ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(target, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """The optimizer's ``learning_rate``: a `WarmupSchedule` (cosine, or a warm-up before a constant rate) or the
    float ``config.lr`` (none; plateau, whose rate `epoch_learning_rate` sets before each epoch)."""
    schedule, warmup = config.schedule or "none", config.warmup_epochs or 0.0
    if schedule == "cosine" or (schedule == "none" and warmup):
        return WarmupSchedule(config.lr, total_steps=config.epochs * steps_per_epoch,
                              warmup_steps=int(round(warmup * steps_per_epoch)),
                              decay="cosine" if schedule == "cosine" else "constant")
    return config.lr


def plateau_scale(history: list[dict[str, float]], warmup_epochs: float = 0.0) -> float:
    """`--schedule plateau`: the factor on the rate after the epochs of ``history``, replaying PyTorch's
    ReduceLROnPlateau (mode max on val_accuracy, relative threshold): x PLATEAU_FACTOR once more than PLATEAU_PATIENCE
    epochs in a row have not beaten the best by the threshold; the counter then starts again. Warm-up epochs do not
    count."""
    scale, best, bad = 1.0, None, 0
    for row in history:
        value = row.get("val_accuracy")
        if int(row["epoch"]) <= warmup_epochs or value is None or not math.isfinite(value):
            continue
        if best is None or value > best * (1 + PLATEAU_THRESHOLD):
            best, bad = value, 0
        else:
            bad += 1
        if bad > PLATEAU_PATIENCE:
            scale *= PLATEAU_FACTOR
            bad = 0
    return scale


def epoch_learning_rate(config: TrainConfig, epoch: int, history: list[dict[str, float]]) -> float | None:
    """The rate to set before epoch ``epoch`` (0-based) for `--schedule plateau` (during a warm-up of whole epochs,
    ``(epoch + 1) / (warmup_epochs + 1)`` of it); None for the schedules that are a function of the step."""
    if (config.schedule or "none") != "plateau":
        return None
    warmup = config.warmup_epochs or 0.0
    warm = (epoch + 1) / (warmup + 1) if epoch < warmup else 1.0
    return config.lr * warm * plateau_scale([h for h in history if int(h["epoch"]) <= epoch], warmup)


def make_optimizer(config: TrainConfig, steps_per_epoch: int = 1):
    """SGD (momentum, ``nesterov``) or Adam, with `learning_rate` and ``weight_decay``.

    Keras's weight decay is decoupled: each step w <- w - lr * wd * w, on every trainable weight (PyTorch's SGD
    ``weight_decay`` also decays every weight, but adds wd * w to the gradient, which the momentum then carries:
    1 / (1 - momentum) as much, so PyTorch's 1e-4 under momentum 0.9 is 1e-3 here). ``--l2`` is the other kind, a
    loss term on the conv and dense kernels only.
    """
    import keras

    lr = learning_rate(config, steps_per_epoch)
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum or 0.0, nesterov=bool(config.nesterov),
                                    weight_decay=decay)
    return keras.optimizers.Adam(learning_rate=lr, weight_decay=decay)


def make_loss(config: TrainConfig):
    smoothing = config.label_smoothing or 0.0
    return SmoothedSparseCrossentropy(smoothing) if smoothing else "sparse_categorical_crossentropy"


def compile_model(model, config: TrainConfig, steps_per_epoch: int = 1) -> None:
    model.compile(optimizer=make_optimizer(config, steps_per_epoch), loss=make_loss(config), metrics=["accuracy"])


def _same_schedule(current, wanted) -> bool:
    if isinstance(current, WarmupSchedule) and isinstance(wanted, WarmupSchedule):
        return current.get_config() == wanted.get_config()
    return not isinstance(current, WarmupSchedule) and not isinstance(wanted, WarmupSchedule)


# -- the model --------------------------------------------------------------------------------------------------------

def transfer_weights(source, target) -> int:
    """Copy weights layer by layer (by name, where every shape matches): the second paper's fine-tuning start.

    A head with another class count is left at its fresh initialisation. Returns the number of layers copied.
    """
    by_name = {layer.name: layer for layer in _all_layers(source)}
    copied = 0
    for layer in _all_layers(target):
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        weights = src.get_weights()
        if len(weights) == len(layer.weights) and all(w.shape == tuple(v.shape) for w, v in zip(weights, layer.weights)):
            layer.set_weights(weights)
            copied += 1
    return copied


def _all_layers(model):
    import keras

    out = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return out


def reseed(model, seed: int, epoch: int) -> None:
    """Reset every seed generator (dropout) from (seed, epoch): resumed epochs draw the same masks."""
    import keras
    import numpy as np

    n = 0
    for layer in model._flatten_layers(include_self=True):  # noqa: SLF001 - Keras 3: every nested layer
        for generator in getattr(layer, "_seed_generators", []):
            n += 1
            value = (seed * 100_003 + epoch * 1_009 + n) % (2**31 - 1)
            generator.state.assign(keras.ops.convert_to_tensor(np.array([value, 0]), dtype=generator.state.dtype))


# -- the loop ---------------------------------------------------------------------------------------------------------

def _default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def run_train(workspace, config: TrainConfig, echo: Callable[[str], None] | None = None) -> TrainReport:
    """Train (or resume) the run ``config.run`` in ``workspace`` (a `fusekit.workspace.Workspace` or a folder)."""
    echo = echo or (lambda _text: None)
    root = runs_mod.workspace_root(workspace)
    run, config, resumed = _open_run(root, config)
    shards = open_shards(config.data)  # a wrong --data fails here, before a run folder exists
    for split in (config.train_split, config.val_split):
        if not shards.rows(split):
            raise TrainError(f"the dataset at {shards.root} has no rows in split {split!r}")
    run.dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    propagate, log.propagate = log.propagate, False  # the console gets `echo` lines, the file everything
    import keras

    # the run's dtype policy is Keras's global one: put it back, so that what runs next in this process (MTCNN in
    # `fusekit build` or the demo, another run) computes as it would have without this run (a CPU run is bfloat16)
    policy = keras.config.dtype_policy()
    try:
        return _train(root, run, config, shards, resumed, echo)
    finally:
        keras.config.set_dtype_policy(policy)
        log.removeHandler(handler)
        log.propagate = propagate
        handler.close()


def _open_run(root: Path, config: TrainConfig):
    """The run folder and the config to train with: a new run, or the saved config of a run to resume."""
    if config.run is not None and not runs_mod.RUN_NAME_RE.match(config.run):
        raise TrainError(f"--run {config.run!r}: use letters, digits, '.', '_' and '-' only")
    runs_root = runs_mod.runs_dir(root)
    if config.resume:
        run = runs_mod.Run(runs_root, config.run) if config.run else runs_mod.latest_run(root)
        if run is None or not run.exists():
            raise TrainError(f"no run {config.run!r} to resume in {runs_root}" if config.run
                             else f"no run to resume in {runs_root}")
        saved = TrainConfig.from_dict(run.config())
        # what a resume may change: more epochs, the command, the loader's workers, verbosity
        saved.epochs = config.epochs or saved.epochs
        saved.workers = config.workers if config.workers is not None else saved.workers
        saved.command, saved.verbose, saved.resume, saved.max_steps = config.command, config.verbose, True, \
            config.max_steps if config.max_steps is not None else saved.max_steps
        if config.data is not None and Path(config.data).resolve() != Path(saved.data).resolve():
            log.warning("--resume trains on the run's own dataset %s, not %s", saved.data, config.data)
        return run, saved, True
    if config.data is None:
        raise TrainError("--data DATASET_DIR is required (the folder `fusekit balance` wrote)")
    if config.init is not None:
        config = _from_init(root, config)
    try:
        config = resolve(config)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    name = config.run or runs_mod.free_name(root, config.model if not config.preset else f"{config.model}-{config.preset}")
    run = runs_mod.Run(runs_root, name)
    if run.exists():
        raise TrainError(f"run {name!r} exists in {runs_root}: add --resume to continue it, or choose another --run")
    config.run = name
    return run, config, False


def init_source(root: Path, init: str) -> tuple[Path, dict[str, Any]]:
    """``--init``: a run name of this workspace, a run folder, or a .keras file -> (model file, its run's config)."""
    path = Path(init).expanduser()
    candidates = [runs_mod.Run(runs_mod.runs_dir(root), init).dir] if runs_mod.RUN_NAME_RE.match(init) else []
    candidates.append(path)
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix == ".keras":
            config_file = candidate.parent / "config.json"
            if not config_file.is_file():
                config_file = candidate.parent.parent / "config.json"  # checkpoints/epoch-N.keras
            return candidate, (json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {})
        if (candidate / "best.keras").is_file() and (candidate / "config.json").is_file():
            return candidate / "best.keras", json.loads((candidate / "config.json").read_text(encoding="utf-8"))
    raise TrainError(f"--init {init!r}: no trained model (a run name of {runs_mod.runs_dir(root)}, a run folder with "
                     f"best.keras, or a .keras file)")


def _from_init(root: Path, config: TrainConfig) -> TrainConfig:
    _, saved = init_source(root, config.init)
    if saved.get("model") is None:
        if config.model is None or config.input_size is None or config.channels is None:
            raise TrainError("--init with a bare .keras file needs --model, --input-size and --grey/--rgb")
        return config
    if config.model is not None and config.model != saved["model"]:
        raise TrainError(f"--init {config.init!r} is a {saved['model']} run; --model {config.model} cannot start from it")
    config.model = saved["model"]
    config.input_size = config.input_size or saved["input_size"]
    config.channels = config.channels or saved["channels"]
    return config


def _train(root: Path, run, config: TrainConfig, shards, resumed: bool, echo) -> TrainReport:
    import keras

    from fusekit.train.models import load_model

    devices = setup_devices(config.precision)
    if not resumed:
        run.create(config.to_dict(), {
            "path": str(shards.root), "card_sha256": shards.card_hash(), "classes": list(shards.classes),
            "rows": {s: shards.rows(s) for s in sorted(shards.files)}, "shards": {s: len(f) for s, f in shards.files.items()},
            "image_size": shards.image_size(config.train_split),
        })
    elif run.dataset_info().get("card_sha256") != shards.card_hash():
        log.warning("the dataset card changed since this run started (%s): resuming on the new data", shards.root)
        echo(f"warning: the dataset card changed since run {run.name} started: resuming on the new data")
    run.record_command(config.command or f"run_train({config!r})", resumed)
    state = run.state()
    if state.finished and not state.stopped_early and state.epochs_done < config.epochs:
        state.finished = False  # resumed with more --epochs
    if state.finished:
        echo(f"run {run.name} already finished ({state.epochs_done} epochs); nothing to do")

    spec = InputSpec(size=config.input_size, channels=config.channels, batch_size=config.batch_size,
                     augment=Augment.parse(config.augment), seed=config.seed, shuffle_buffer=config.shuffle_buffer,
                     loader=config.loader, workers=config.workers if config.workers is not None else _default_workers(),
                     class_weights=tuple(shards.class_weights()) if config.class_weights else None)
    pipeline = InputPipeline(shards, spec)
    steps = pipeline.steps(config.train_split, training=True)
    if config.max_steps:
        steps = min(steps, config.max_steps)
    val_steps = pipeline.steps(config.val_split, training=False)

    keras.utils.set_random_seed(config.seed)
    transferred = None
    with devices.scope():
        if resumed and state.epochs_done:
            model = load_model(run.checkpoint(state.epochs_done))
            log.info("resumed %s from epoch %d", run.name, state.epochs_done)
            wanted = learning_rate(config, steps)  # more --epochs (or --max-steps) stretch a cosine from here on
            current = model.optimizer._learning_rate  # noqa: SLF001 - the schedule object, not its value
            if isinstance(wanted, WarmupSchedule) and not _same_schedule(current, wanted):
                model.optimizer.learning_rate = wanted
                log.info("learning-rate schedule now %s", wanted.get_config())
        else:
            model = _build(config, shards.num_classes)
            if config.init:
                init = load_model(init_source(root, config.init)[0], compile=False)
                transferred = transfer_weights(init, model)
                log.info("initialised %d layers from run %s", transferred, config.init)
            compile_model(model, config, steps)
    log.info("%s: %s, %s params, %s, %s, batch %d, %s", run.name, config.model, f"{model.count_params():,}",
             devices.name, devices.policy, config.batch_size, Augment.parse(config.augment).describe())
    log.info("optimizer %s lr %g%s%s, weight decay %g, schedule %s (warm-up %g epochs), label smoothing %g, "
             "%d steps per epoch", config.optimizer, config.lr, f" momentum {config.momentum:g}"
             if config.optimizer == "sgd" else "", " nesterov" if config.nesterov else "", config.weight_decay or 0.0,
             config.schedule or "none", config.warmup_epochs or 0.0, config.label_smoothing or 0.0, steps)

    start = state.epochs_done
    ips = None
    watch = _NotLearning(shards.num_classes, echo) if not resumed or not state.epochs_done else None
    try:
        for epoch in range(start, config.epochs):
            if state.finished:
                break
            reseed(model, config.seed, epoch)
            rate = epoch_learning_rate(config, epoch, state.history)
            if rate is not None:  # plateau: set before fit reads the optimizer state (every backend sees it)
                model.optimizer.learning_rate = rate
            train_data = pipeline.train(epoch, config.train_split)
            val_data = pipeline.eval(config.val_split)
            if pipeline.loader != "tf":
                train_data, val_data = iter(train_data), iter(val_data)
            t0 = time.perf_counter()
            timer = _Timer()
            callbacks = [timer] + ([watch] if watch is not None else [])
            callbacks += [_Progress(steps)] if config.verbose and sys.stderr.isatty() else []
            fit = model.fit(train_data, validation_data=val_data, initial_epoch=epoch, epochs=epoch + 1,
                            steps_per_epoch=steps, validation_steps=val_steps, shuffle=False, verbose=0,
                            callbacks=callbacks)
            seconds = time.perf_counter() - t0
            metrics = {k: float(v[-1]) for k, v in fit.history.items()}
            ips = timer.batches * config.batch_size / max(timer.train_seconds, 1e-9)  # training steps only
            row = {"epoch": epoch + 1, **metrics, "lr": float(keras.ops.convert_to_numpy(
                model.optimizer.learning_rate)), "seconds": round(seconds, 2), "images_per_s": round(ips, 1)}
            _advance(run, model, state, row, config)
            line = (f"epoch {epoch + 1}/{config.epochs}  loss {metrics.get('loss', math.nan):.4f}  "
                    f"acc {metrics.get('accuracy', math.nan):.4f}  val_loss {metrics.get('val_loss', math.nan):.4f}  "
                    f"val_acc {metrics.get('val_accuracy', math.nan):.4f}  {ips:,.0f} img/s  {seconds:.1f} s")
            log.info(line)
            echo(line)
            if state.stopped_early:
                echo(f"early stop: validation loss has not improved for {config.patience} epochs")
    finally:
        pipeline.close()
    if state.epochs_done >= config.epochs and not state.finished:
        state.finished = True
        run.commit(state)
    _curves(run)
    best = next((h for h in state.history if int(h["epoch"]) == state.best_epoch), {})
    return TrainReport(run=run.name, run_dir=run.dir, model=config.model, params=model.count_params(),
                       epochs_done=state.epochs_done, epochs=config.epochs, best_epoch=state.best_epoch,
                       best_val_loss=state.best_val_loss, best_val_accuracy=best.get("val_accuracy"),
                       stopped_early=state.stopped_early, resumed_from=start if resumed else None,
                       device=devices.name, precision=devices.policy, loader=pipeline.loader, images_per_s=ips,
                       transferred=transferred, history=state.history)


def _build(config: TrainConfig, num_classes: int):
    from fusekit.train.models import build_model

    try:
        return build_model(config.model, num_classes, config.input_size, config.channels, config.l2 or 0.0,
                           config.weights)
    except ValueError as exc:
        raise TrainError(str(exc)) from None


def _advance(run, model, state, row: dict[str, float], config: TrainConfig) -> None:
    """Commit one epoch: checkpoint, best model, early-stopping counter, history, state (in that order)."""
    epoch = int(row["epoch"])
    run.save_model(model, run.checkpoint(epoch))
    val_loss = row.get("val_loss")
    if val_loss is not None and math.isfinite(val_loss) and (state.best_val_loss is None or val_loss < state.best_val_loss):
        state.best_val_loss, state.best_epoch, state.wait = float(val_loss), epoch, 0
        run.save_model(model, run.best_model)
    else:
        state.wait += 1
    state.epochs_done = epoch
    state.history.append(row)
    if config.patience and state.wait >= config.patience:
        state.stopped_early = state.finished = True
    if epoch >= config.epochs:
        state.finished = True
    run.commit(state)
    run.prune_checkpoints(config.keep_checkpoints, epoch)


def _curves(run) -> None:
    try:
        from fusekit.train.plots import training_curves
    except ImportError:  # matplotlib is optional on a bare GPU box
        return

    history = runs_mod.read_history(run.dir / "history.csv")
    if history:
        training_curves(history, run.dir / "curves.png", title=run.name)


def _progress_base():
    import keras

    return keras.callbacks.Callback


class _Timer(_progress_base()):
    """Wall time of the training steps of an epoch (validation excluded): the images/s of the history."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.end, self.batches = time.perf_counter(), None, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches = batch + 1

    def on_test_begin(self, logs=None):
        if self.end is None:
            self.end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.end is None:
            self.end = time.perf_counter()

    @property
    def train_seconds(self) -> float:
        return (self.end or time.perf_counter()) - self.start


NOT_LEARNING_STEPS = 300  # training steps after which a loss still at its start is reported
NOT_LEARNING_SHARE = 0.98  # ... "still at its start": above this share of the loss of the first steps


class _NotLearning(_progress_base()):
    """Says once, during the run, when the training loss has not moved from where it started after
    NOT_LEARNING_STEPS steps (issue 14: a run of the paper's preset sat at ln 7, the loss of a constant guess, for
    two epochs and finished silently). Keras logs the epoch's running mean: the start is its value after the first
    20 steps."""

    def __init__(self, num_classes: int, echo: Callable[[str], None]) -> None:
        super().__init__()
        self.chance = math.log(max(num_classes, 2))
        self.echo = echo
        self.steps = 0
        self.start: float | None = None
        self.done = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.done or not logs or "loss" not in logs:
            return
        self.steps += 1
        self.epoch_steps += 1
        loss = float(logs["loss"])
        if self.start is None and self.epoch_steps >= min(20, NOT_LEARNING_STEPS):
            self.start = loss
        if self.start is not None and self.steps >= NOT_LEARNING_STEPS and self.epoch_steps >= 20:
            self.done = True
            if math.isfinite(loss) and loss >= NOT_LEARNING_SHARE * self.start:
                message = (f"not learning: the training loss is {loss:.4f} after {self.steps} steps, where it "
                           f"started ({self.start:.4f}; ln {round(math.exp(self.chance))} = {self.chance:.4f} is a "
                           f"constant guess): try a lower --lr (e.g. --lr 1e-4) or a --preset")
                log.warning(message)
                self.echo(f"warning: {message}")


class _Progress(_progress_base()):
    """A per-batch progress bar on a terminal (the loop prints its own line per epoch)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def on_epoch_begin(self, epoch, logs=None):
        import keras

        self.bar = keras.utils.Progbar(self.steps, stateful_metrics=["loss", "accuracy"])

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(batch + 1, [(k, float(v)) for k, v in (logs or {}).items() if k in ("loss", "accuracy")])
