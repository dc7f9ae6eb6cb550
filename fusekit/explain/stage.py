"""`fusekit explain`: class activation maps (HiResCAM, or Grad-CAM with ``method="gradcam"``) over sample faces of
each class of a run, written to ``runs/NAME/explain/``.

::

    runs/NAME/explain/
      explain.json     run, checkpoint, split, layer, backend, and per class its PNG and faces (source id, label,
                       prediction, confidence, where the map peaks)
      <class>.png      the class's faces (top row) and their maps for that class over them (bottom row)
      heatmaps.npz     the maps at input resolution (float16), the source ids and class ids, for one's own analysis

`explain_faces` is the stage's work on a loaded model and decoded faces; the api (``fusekit.api.explain``) finds the
run, its model and the faces, so that this package imports nothing of the train stage.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from fusekit.workspace import write_bytes_atomic, write_json_atomic

PER_CLASS = 6


@dataclass
class ExplainConfig:
    run: str | None = None  # None: the latest run
    split: str | None = None  # None: test, else val, else train (the first the dataset has rows in)
    per_class: int = PER_CLASS
    layer: str | None = None  # None: the last convolutional feature map
    checkpoint: str = "best"
    method: str = "hirescam"  # or gradcam (see fusekit.explain.gradcam)


@dataclass
class ExplainReport:
    run: str
    split: str
    layer: str
    backend: str
    method: str
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    faces: dict[str, int] = field(default_factory=dict)  # class -> faces explained
    accuracy: float = 0.0  # of the model on the faces shown


def choose(labels: Sequence[int], source_ids: Sequence[str], augmented: Sequence[bool | None],
           per_class: int) -> list[int]:
    """Row indices: per class the first ``per_class`` original (not augmented) rows by source id."""
    by_class: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for i, (label, sid, aug) in enumerate(zip(labels, source_ids, augmented)):
        if not aug:
            by_class[int(label)].append((str(sid), i))
    return [i for label in sorted(by_class) for _, i in sorted(by_class[label])[:per_class]]


def explain_faces(model, faces: np.ndarray, labels: Sequence[int], source_ids: Sequence[str],
                  classes: Sequence[str], out_dir: Path, *, run: str, split: str, checkpoint: str,
                  layer: str | None = None, method: str = "hirescam") -> ExplainReport:
    """Grad-CAM of each face (N x S x S x C uint8, the model's input) for its true class; write the files above."""
    from fusekit.explain.gradcam import gradcam
    from fusekit.explain.overlay import class_grid

    labels = np.asarray(labels, np.int64)
    maps = gradcam(model, faces.astype(np.float32) / 255.0, labels, layer, method=method)
    predicted = maps.probabilities.argmax(axis=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExplainReport(run, split, maps.layer, maps.backend, maps.method, out_dir,
                           accuracy=float((predicted == labels).mean()) if len(labels) else 0.0)
    entries = []
    for c in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == c)
        name = classes[c] if c < len(classes) else str(c)
        path = out_dir / f"{_safe(name)}.png"
        write_bytes_atomic(path, class_grid([faces[i] for i in rows], [maps.heat[i] for i in rows]))
        report.files.append(path)
        report.faces[name] = len(rows)
        entries.append({"class": name, "file": path.name, "faces": [
            {"source_id": source_ids[i], "label": name,
             "predicted": classes[predicted[i]] if predicted[i] < len(classes) else str(predicted[i]),
             "confidence": round(float(maps.probabilities[i].max()), 4),
             "peak": [int(v) for v in np.unravel_index(int(maps.heat[i].argmax()), maps.heat[i].shape)]}
            for i in rows]})
    buf = io.BytesIO()
    np.savez_compressed(buf, heat=maps.heat.astype(np.float16), labels=labels,
                        source_ids=np.asarray([str(s) for s in source_ids]))
    write_bytes_atomic(out_dir / "heatmaps.npz", buf.getvalue())
    report.files.append(out_dir / "heatmaps.npz")
    write_json_atomic({"run": run, "checkpoint": checkpoint, "split": split, "layer": maps.layer,
                       "backend": maps.backend, "method": maps.method, "target": "the true class",
                       "accuracy_on_shown": round(report.accuracy, 4), "classes": entries}, out_dir / "explain.json")
    report.files.append(out_dir / "explain.json")
    return report


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "class"


def render_explain(report: ExplainReport) -> str:
    per_class = ", ".join(f"{k} {v}" for k, v in report.faces.items())
    name = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM"}.get(report.method, report.method)
    return (f"explain: run {report.run}, {name} on {report.layer} ({report.backend}) over "
            f"{sum(report.faces.values())} {report.split} faces ({per_class}); the model is right on "
            f"{report.accuracy:.0%} of them\nwritten to {report.out_dir}")
