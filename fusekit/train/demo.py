"""What `fusekit demo` can show of the train stage in a few seconds on a CPU: the tiny model, trained and evaluated."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def run_demo(workspace, data: str | Path | None = None, epochs: int = 3,
             echo: Callable[[str], None] | None = None) -> list[str]:
    """Train `tiny` for ``epochs`` on ``data`` (default: ``<workspace>/dataset``), evaluate it on test (or val);
    return the lines to print. The real models are one flag away: the last line says which."""
    from fusekit.train.config import TrainConfig
    from fusekit.train.evaluate import EvalConfig, run_evaluate
    from fusekit.train.loop import run_train
    from fusekit.train.runs import free_name, workspace_root

    root = workspace_root(workspace)
    data = Path(data) if data is not None else root / "dataset"
    report = run_train(root, TrainConfig(data=data, model="tiny", epochs=epochs, run=free_name(root, "demo-tiny"),
                                         patience=0, keep_checkpoints=1, workers=0, verbose=False), echo=echo)
    from fusekit.train.data import open_shards

    split = "test" if open_shards(data).rows("test") else "val"
    result = run_evaluate(root, EvalConfig(run=report.run, split=split, by_source=True))
    m = result.metrics
    lines = [f"train: {report.run} ({report.params:,} params) {report.epochs_done} epochs on {report.device}; "
             f"best val acc {report.best_val_accuracy or 0:.3f}",
             f"evaluate on {split}: accuracy {m.accuracy:.3f}, macro-F1 {m.macro_f1:.3f}, balanced accuracy "
             f"{m.balanced_accuracy:.3f} ({m.n} images); confusion matrix: {result.out_dir / 'confusion.png'}"]
    lines += [f"  {name}: accuracy {s.accuracy:.3f} on {s.n} images" for name, s in result.by_source.items()]
    lines.append(f"the papers' set-ups: fusekit train --data {data} --preset paper  |  --preset cnn-baseline "
                 f"--model cnn2")
    return lines
