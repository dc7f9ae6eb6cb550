"""Matplotlib figures of a run (Agg backend, written to files): training curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, training and validation, side by side (as the second paper's Figs. 7-9)."""
    plt = _pyplot()
    epochs = [int(h["epoch"]) for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_png(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str, normalised: bool) -> Path:
    """Rows are true classes, columns predicted; each cell annotated (counts, or fractions of the row)."""
    plt = _pyplot()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalised else max(1, matrix.max()))
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            value = matrix[i, j]
            text = f"{value:.2f}" if normalised else f"{int(value)}"
            dark = value > (0.5 if normalised else top / 2)
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
