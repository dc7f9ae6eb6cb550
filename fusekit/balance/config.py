"""What `fusekit balance` was asked to do, validated before any work starts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fusekit.errors import ConfigError

AUGMENTATIONS = ("flip", "rotate", "color", "brightness")
STRATEGIES = ("median", "max", "min")
# HF `datasets` (config.MAX_SHARD_SIZE / MAX_ROW_GROUP_SIZE in 5.2.0) uses these, so shards upload to the Hub as-is.
MAX_SHARD_BYTES = 500_000_000
ROW_GROUP_BYTES = 100_000_000


def parse_split(text: str, name: str = "--split") -> tuple[float, float, float]:
    """``80/10/10`` -> (0.8, 0.1, 0.1); ``90/10`` -> (0.9, 0.1, 0.0); ``0.8/0.1/0.1`` as given: train/val/test
    fractions. The parts must sum to 100 (percentages) or to 1 (fractions); anything else is an error naming the
    sum (never rescaled). ``name`` is what the message calls the setting (a recipe's ``balance.split``)."""
    parts = [p.strip() for p in str(text).replace(":", "/").split("/")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"{name} takes TRAIN/VAL/TEST percentages such as 80/10/10, got {text!r}") from None
    if len(numbers) not in (2, 3) or any(n < 0 for n in numbers) or sum(numbers) <= 0 or numbers[0] <= 0:
        raise ConfigError(f"{name} takes 2 or 3 non-negative parts with a train part above 0 (80/10/10), got {text!r}")
    numbers += [0.0] * (3 - len(numbers))
    total = sum(numbers)
    if math.isclose(total, 100, rel_tol=1e-9, abs_tol=1e-9):
        scale = 100.0
    elif math.isclose(total, 1, rel_tol=1e-9, abs_tol=1e-9):
        scale = 1.0
    else:
        wanted = 1 if all(n <= 1 for n in numbers) else 100  # fractions or percentages
        raise ConfigError(f"{name} {text} sums to {total:g}, not {wanted}")
    return (numbers[0] / scale, numbers[1] / scale, numbers[2] / scale)


def parse_augment(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return AUGMENTATIONS
    items = value.split(",") if isinstance(value, str) else list(value)
    ops = tuple(dict.fromkeys(str(i).strip().lower() for i in items if str(i).strip()))
    unknown = [o for o in ops if o not in AUGMENTATIONS and o != "none"]
    if unknown:
        raise ConfigError(f"unknown augmentation {unknown[0]!r}; valid: {', '.join(AUGMENTATIONS)} (or none)")
    return tuple(o for o in ops if o != "none")


@dataclass(frozen=True)
class BalanceConfig:
    """Settings of the balance stage (the CLI flags of `fusekit balance`, and the `balance:` block of a recipe).

    ``strategy`` picks the per-class training target from the training counts (median by default) unless ``target``
    is given. ``split`` applies to samples with no official split; validation is carved from an official training
    split that has none. ``redo_splits`` names datasets whose official split is ignored and redone by group (K-drama's
    leaks frames of a clip across splits). ``max_rotation`` is the paper's text (±5°); its code used ±10°.
    ``jitter`` is the colour/brightness factor range 1±jitter (the paper's code drew factors in [0, 2), jitter 1.0).
    """

    strategy: str = "median"
    target: int | None = None
    classes: int = 7
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    augment: tuple[str, ...] = AUGMENTATIONS
    weights_only: bool = False
    seed: int = 0
    max_rotation: float = 5.0
    jitter: float = 0.25
    max_copies: int | None = None  # at most this many augmented copies of one face (None: as many as the target needs)
    keep_official_val: bool = True
    redo_splits: tuple[str, ...] = ("kdrama",)
    include_review: bool = False
    max_shard_bytes: int = MAX_SHARD_BYTES
    row_group_bytes: int = ROW_GROUP_BYTES
    workers: int = 2
    recipe_text: str | None = field(default=None, compare=False)  # set by `fusekit build`: copied into the output

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.target is not None and self.target < 1:
            raise ConfigError(f"--target must be at least 1, got {self.target}")
        if self.classes not in (7, 8):
            raise ConfigError(f"--classes must be 7 (without contempt) or 8 (with contempt), got {self.classes}")
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6 or self.split[0] <= 0:
            raise ConfigError(f"split fractions must be 3 numbers summing to 1 with train above 0, got {self.split}")
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        if bad:
            raise ConfigError(f"unknown augmentation {bad[0]!r}; valid: {', '.join(AUGMENTATIONS)}")
        if not 0 <= self.max_rotation <= 45:
            raise ConfigError(f"--max-rotation must be between 0 and 45 degrees, got {self.max_rotation}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"--jitter must be between 0 and 1, got {self.jitter}")
        if self.max_copies is not None and self.max_copies < 0:
            raise ConfigError(f"--max-copies must be 0 or more, got {self.max_copies}")
        if self.max_shard_bytes < 1 or self.row_group_bytes < 1:
            raise ConfigError("shard and row-group sizes must be positive")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, where: str = "balance") -> BalanceConfig:
        """A config from a recipe's `balance:` block (keys as the CLI flags, `-` or `_`)."""
        data = {str(k).replace("-", "_"): v for k, v in (data or {}).items()}
        known = {f for f in cls.__dataclass_fields__ if f != "recipe_text"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown setting {unknown[0]!r}; valid: {', '.join(sorted(known))}")
        if "split" in data and not isinstance(data["split"], (list, tuple)):
            data["split"] = parse_split(data["split"], f"{where}.split")
        elif "split" in data:
            data["split"] = parse_split("/".join(str(x) for x in data["split"]), f"{where}.split")
        if "augment" in data:
            data["augment"] = parse_augment(data["augment"])
        if "redo_splits" in data:
            value = data["redo_splits"]
            data["redo_splits"] = tuple(value.split(",") if isinstance(value, str) else value or ())
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def settings(self) -> dict[str, Any]:
        """The settings as plain data (for fingerprints and the dataset card)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("recipe_text", "workers")}
