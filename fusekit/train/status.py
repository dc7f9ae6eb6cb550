"""What `fusekit status` prints about training runs (reads run folders only; imports no Keras)."""

from __future__ import annotations

import json


def status_lines(workspace) -> list[str]:
    """One line per run: model, epochs, best validation accuracy, state, and test accuracy once evaluated."""
    from fusekit.train.runs import list_runs, workspace_root

    root = workspace_root(workspace)
    runs = list_runs(root)
    if not runs:
        return ["runs: none (train one with `fusekit train --data DATASET_DIR --model M`)"]
    lines = [f"runs: {len(runs)} in {root / 'runs'}"]
    for run in runs:
        try:
            config = run.config()
            state = run.state()
        except (OSError, ValueError):
            lines.append(f"  {run.name}: unreadable run folder")
            continue
        best = next((h for h in state.history if int(h.get("epoch", 0)) == state.best_epoch), {})
        what = ("stopped early" if state.stopped_early else "finished" if state.finished
                else "not started" if not state.epochs_done else "unfinished (--resume continues it)")
        text = f"  {run.name}: {config.get('model')}, epoch {state.epochs_done}/{config.get('epochs')}, {what}"
        if "val_accuracy" in best:
            text += f", best val acc {best['val_accuracy']:.4f} (epoch {state.best_epoch})"
        for split in ("test", "val"):
            path = run.dir / "eval" / split / "metrics.json"
            if path.is_file():
                metrics = json.loads(path.read_text(encoding="utf-8"))
                text += f", {split} acc {metrics['accuracy']:.4f} macro-F1 {metrics['macro_f1']:.4f}"
                break
        lines.append(text)
    return lines
