"""Training settings: `TrainConfig`, the presets (the two papers', and fer-strong), and how flags, presets and defaults
combine.

Precedence: an explicit flag, then the preset, then the model's natural input (`MODELS`) and `DEFAULTS`.
``None`` in a `TrainConfig` field means "not given".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """What a model name means: its natural input and a one-line description."""

    name: str
    input_size: int
    channels: int
    description: str


MODELS: dict[str, ModelSpec] = {
    "resnet50": ModelSpec("resnet50", 112, 3, "Keras applications ResNet50, weights=None (first paper)"),
    "densenet121": ModelSpec("densenet121", 112, 3, "Keras applications DenseNet121, weights=None"),
    "densenet40": ModelSpec("densenet40", 112, 3, "DenseNet L=40 k=12 for CIFAR (Huang et al.), ~1.0 M params"),
    "cnn1": ModelSpec("cnn1", 48, 1, "second paper's Model 1: 2 conv, 2 max pool, 3 dense (20,007,687 params)"),
    "cnn2": ModelSpec("cnn2", 48, 1, "second paper's Model 2: 5 conv, 1 max + 2 avg pool, 3 dense (1,485,831)"),
    "cnn3": ModelSpec("cnn3", 48, 1, "second paper's Model 3: 6 conv + BN, 4 max pool, 4 dense (from its prose)"),
    "vgg48": ModelSpec("vgg48", 48, 1, "VGG variant of Khaireddin & Chen 2021: 4 stages of 2 conv + BN, 2 dense "
                                       "(10,466,375)"),
    "tiny": ModelSpec("tiny", 24, 1, "two small convolutions: smoke tests and CPU demos only"),
}


# The first paper (seeds/003): SGD, lr 1e-4, L2 1e-3 (its most stable setting, §4.3), random horizontal flips and
# rotations within 5 degrees (§3.3.2, §4.4: the two augmentations that helped), ResNet50 / DenseNet on aligned
# faces. It gives no epoch count or batch size: 50 and 64 are ours.
# The second paper (seeds/004): its three CNNs on 48x48 grey FER-2013, Adam, cross-entropy, 75 epochs; its data
# generator balanced and augmented the set offline (flips, rotations, crops, ...); done offline only, Model 2 overfits
# FER-2013 within 10 epochs here (docs/quality.md), so the preset applies the generator's geometric operations on-line
# (mirror, +-10 degrees, 4 px shifts; `--augment none` for offline only). It trains the full 75 epochs, so no early
# stopping (the best epoch by validation loss is still kept as best.keras).
# fer-strong: a recipe of the kind that reaches ~73 % on FER-2013 without extra data, after Khaireddin & Chen 2021
# ("Facial Emotion Recognition: State of the Art Performance on FER2013", 73.28 %; their code github.com/usef-kh/fer):
# their VGG variant (`vgg48`), SGD with Nesterov momentum 0.9 at lr 0.01, batch 64, 300 epochs, weight decay (their
# PyTorch 1e-4 passes through the momentum: 1e-3 in Keras's decoupled form, see `loop.make_optimizer`), random
# crops, horizontal flips, rotations of 10 degrees and random erasing. Theirs: reduce-on-plateau (x0.75 after 5 epochs
# without a better validation accuracy; `--schedule plateau` is that). Ours: a cosine decay to 0 over the 300 epochs
# after 5 epochs of linear warm-up (a function of the step alone; the budget is spent evenly and known in advance), and
# label smoothing 0.1 (not in their recipe). No early stopping: with the cosine the last epochs are the best ones.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(model="resnet50", optimizer="sgd", momentum=0.9, lr=1e-4, l2=1e-3, input_size=112, channels=3,
                  augment="flip,rotate=5", epochs=50, batch_size=64, patience=10),
    "cnn-baseline": dict(model="cnn2", optimizer="adam", lr=1e-3, l2=0.0, input_size=48, channels=1,
                         augment="flip,rotate=10,crop=4", epochs=75, batch_size=64, patience=0),
    "fer-strong": dict(model="vgg48", optimizer="sgd", momentum=0.9, nesterov=True, lr=1e-2, weight_decay=1e-3,
                       l2=0.0, input_size=48, channels=1, augment="flip,crop=4,zoom=0.1,rotate=10,erase=0.5",
                       schedule="cosine", warmup_epochs=5.0, label_smoothing=0.1, epochs=300, batch_size=64,
                       patience=0),
}

DEFAULTS: dict[str, Any] = dict(optimizer="adam", lr=1e-3, momentum=0.9, l2=0.0, augment="flip,rotate=10", epochs=30,
                                batch_size=64, patience=10, nesterov=False, weight_decay=0.0, schedule="none",
                                warmup_epochs=0.0, label_smoothing=0.0)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "cosine", "plateau")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
LOADERS = ("auto", "tf", "workers")


@dataclass
class TrainConfig:
    """Everything `run_train` needs. ``data`` is the folder `fusekit balance` wrote."""

    data: Path | None = None
    model: str | None = None
    preset: str | None = None
    run: str | None = None
    resume: bool = False
    init: str | None = None  # a run to start from (fine-tuning)
    weights: str | None = None  # local keras.applications backbone weights
    input_size: int | None = None
    channels: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    l2: float | None = None
    nesterov: bool | None = None  # SGD with Nesterov momentum
    weight_decay: float | None = None  # the optimizer's (decoupled) weight decay on every weight; 0 = off
    schedule: str | None = None  # none | cosine | plateau (see fusekit.train.loop)
    warmup_epochs: float | None = None  # linear warm-up of the learning rate from ~0 (cosine, none: per step)
    label_smoothing: float | None = None  # cross-entropy against (1 - e) one-hot + e / classes
    class_weights: bool = False
    augment: str | None = None
    patience: int | None = None  # early stopping on val loss; 0 = off
    seed: int = 0
    loader: str = "auto"
    workers: int | None = None  # loader processes (process loader only); None = CPU count - 1, at most 8
    precision: str = "auto"
    keep_checkpoints: int = 3  # per-epoch checkpoints kept (0 = all)
    shuffle_buffer: int = 8192
    train_split: str = "train"
    val_split: str = "val"
    max_steps: int | None = None  # cap on steps per epoch (smoke tests, benchmarks)
    command: str | None = None  # the exact command line, recorded in the run
    verbose: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["data"] = str(self.data) if self.data is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in data.items() if k in known})
        if config.data is not None:
            config.data = Path(config.data)
        return config


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` from the preset, the model and `DEFAULTS`; check the values."""
    if config.preset is not None and config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; choose {' or '.join(PRESETS)}")
    preset = PRESETS.get(config.preset or "", {})
    model = config.model or preset.get("model")
    if model is None:
        raise ValueError(f"choose a model with --model ({', '.join(MODELS)}) or a --preset")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    spec = MODELS[model]
    natural = dict(input_size=spec.input_size, channels=spec.channels)
    # a preset's input applies to the models it was written for; cnn* keep 48x48 grey under `paper` unless asked
    if config.preset == "paper" and model.startswith("cnn"):
        preset = {k: v for k, v in preset.items() if k not in ("input_size", "channels")}
    values = {}
    sources = {}
    for name in ("input_size", "channels", "epochs", "batch_size", "optimizer", "lr", "momentum", "l2", "augment",
                 "patience", "nesterov", "weight_decay", "schedule", "warmup_epochs", "label_smoothing"):
        given = getattr(config, name)
        values[name] = given if given is not None else preset.get(name, natural.get(name, DEFAULTS.get(name)))
        sources[name] = "" if given is not None or name not in preset else f" (from --preset {config.preset})"
    out = replace(config, model=model, **values)
    if out.optimizer not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {out.optimizer!r}")
    if out.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {out.precision!r}")
    if out.loader not in LOADERS:
        raise ValueError(f"--loader must be one of {', '.join(LOADERS)}, not {out.loader!r}")
    if out.channels not in (1, 3):
        raise ValueError("channels must be 1 (grey) or 3 (RGB)")
    for name in ("epochs", "batch_size", "input_size"):
        if getattr(out, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if out.lr <= 0:
        raise ValueError("--lr must be positive")
    if out.schedule not in SCHEDULES:
        raise ValueError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {out.schedule!r}")
    if out.warmup_epochs < 0 or out.warmup_epochs >= out.epochs:
        raise ValueError(f"--warmup-epochs {out.warmup_epochs:g}{sources['warmup_epochs']} must be at least 0 and "
                         f"below --epochs {out.epochs}: pass a smaller --warmup-epochs (0: none)")
    if not 0.0 <= out.label_smoothing < 1.0:
        raise ValueError(f"--label-smoothing must be at least 0 and below 1, not {out.label_smoothing:g}")
    if out.weight_decay < 0 or out.l2 < 0:
        raise ValueError("--weight-decay and --l2 must not be negative")
    if out.nesterov and out.optimizer != "sgd":
        raise ValueError(f"--nesterov{sources['nesterov']} is Nesterov momentum for --optimizer sgd, not "
                         f"{out.optimizer}")
    from fusekit.train.decode import Augment

    out.augment = Augment.parse(out.augment).describe()  # fails on a typo before anything is written
    return out
