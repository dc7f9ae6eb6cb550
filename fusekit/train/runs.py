"""A training run's folder, ``<workspace>/runs/NAME/``, and the state that makes ``--resume`` exact.

::

    runs/NAME/
      command.txt            the exact command (one line per start; resumes are appended)
      config.json            the resolved TrainConfig (presets applied)
      dataset.json           dataset folder, card sha256, classes, rows per split
      state.json             epochs done, history, best epoch, early-stopping counter: the commit point of an epoch
      history.csv            one row per epoch (loss, accuracy, val_loss, val_accuracy, lr, seconds, images/s)
      train.log              the log of every start
      checkpoints/epoch-NNNN.keras   model + optimizer after each epoch (the last ``keep`` are kept)
      best.keras             the model of the epoch with the lowest validation loss
      curves.png             training curves
      eval/<split>/          what `fusekit evaluate` writes

Every file is written under a temporary name and renamed into place. ``state.json`` is written last, so a run killed
at any point resumes from the last epoch whose state was committed (a later checkpoint file, if any, is ignored).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusekit.workspace import Workspace, write_json_atomic, write_text_atomic

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "images_per_s")


def workspace_root(workspace) -> Path:
    """The folder of a `fusekit.workspace.Workspace`, or of a folder given as a path (resolved as Workspace does)."""
    return (workspace if isinstance(workspace, Workspace) else Workspace(workspace)).root


def runs_dir(workspace_root: Path) -> Path:
    return Path(workspace_root) / "runs"


@dataclass
class RunState:
    """What has been committed: the epochs done and everything early stopping and best-model saving need."""

    epochs_done: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float | None = None
    wait: int = 0
    finished: bool = False
    stopped_early: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Run:
    """One run folder. ``Run(root, name)`` touches nothing; `create` makes the folder."""

    def __init__(self, runs_root: Path, name: str) -> None:
        self.name = name
        self.dir = Path(runs_root) / name

    # -- paths ------------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def best_model(self) -> Path:
        return self.dir / "best.keras"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:04d}.keras"

    def exists(self) -> bool:
        return (self.dir / "config.json").is_file()

    # -- reading ----------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return json.loads((self.dir / "config.json").read_text(encoding="utf-8"))

    def dataset_info(self) -> dict[str, Any]:
        path = self.dir / "dataset.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def state(self) -> RunState:
        path = self.dir / "state.json"
        if not path.is_file():
            return RunState()
        return RunState.from_dict(json.loads(path.read_text(encoding="utf-8")))

    # -- writing ----------------------------------------------------------------------------------------------
    def create(self, config: dict[str, Any], dataset: dict[str, Any]) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        write_json_atomic(dataset, self.dir / "dataset.json")
        write_json_atomic(config, self.dir / "config.json")  # last: its presence means "a run lives here"

    def record_command(self, command: str, resumed: bool) -> None:
        path = self.dir / "command.txt"
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        write_text_atomic(path, old + ("# resumed\n" if resumed else "") + command.rstrip("\n") + "\n")

    def save_model(self, model, path: Path) -> None:
        """``model.save`` (architecture, weights, optimizer state) to a temporary .keras file, then rename."""
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.keras")
        try:
            model.save(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def commit(self, state: RunState) -> None:
        """Write history.csv then state.json (the commit point)."""
        write_text_atomic(self.dir / "history.csv", history_csv(state.history))
        write_json_atomic(state.__dict__, self.dir / "state.json")

    def prune_checkpoints(self, keep: int, current: int) -> None:
        """Keep the last ``keep`` epoch checkpoints (0 keeps all)."""
        if keep <= 0:
            return
        for path in sorted(self.checkpoints.glob("epoch-*.keras")):
            m = re.match(r"epoch-(\d+)\.keras$", path.name)
            if m and int(m[1]) <= current - keep:
                path.unlink(missing_ok=True)


def history_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def list_runs(workspace_root: Path) -> list[Run]:
    root = runs_dir(workspace_root)
    if not root.is_dir():
        return []
    return [Run(root, d.name) for d in sorted(root.iterdir()) if (d / "config.json").is_file()]


def free_name(workspace_root: Path, base: str) -> str:
    """``base``, or ``base-2``, ``base-3`` ... the first that no run uses."""
    root = runs_dir(workspace_root)
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def latest_run(workspace_root: Path) -> Run | None:
    """The run whose state changed last (what a bare ``--resume`` or ``--run`` continues)."""
    runs = list_runs(workspace_root)
    if not runs:
        return None

    def mtime(run: Run) -> float:
        for name in ("state.json", "config.json"):
            p = run.dir / name
            if p.is_file():
                return p.stat().st_mtime
        return 0.0

    return max(runs, key=mtime)
