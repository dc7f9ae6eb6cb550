"""`predict`: label the faces in a user's pictures with a trained run (`fusekit predict`).

It composes two stages, so it sits above them beside ``fusekit.api`` (the train stage reads shards only and never
imports the faces stage): faces are found and aligned exactly as the pipeline aligned the training faces
(`fusekit.faces.detect_and_align`) to the dataset's face size, then converted to the model's input (size, grey or
RGB) by the same code the process loader uses (`fusekit.train.decode.prepare`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from fusekit.errors import UserError


@dataclass
class FacePrediction:
    image: str
    face: int | None  # index of the face in the image; None when nothing could be classified
    label: str | None
    probabilities: dict[str, float] = field(default_factory=dict)
    box: tuple[float, float, float, float] | None = None  # x, y, w, h in source pixels
    score: float | None = None  # detector confidence
    aligned: bool = False
    error: str | None = None  # why the image has no prediction ("no face found", "cannot read ...")


def predict(workspace, run: str | None, images: Sequence[str | Path], policy: str = "crawled",
            whole_image: bool = False, checkpoint: str = "best") -> list[FacePrediction]:
    """One `FacePrediction` per face found in each image (or one with ``error`` for an image without one).

    ``whole_image``: classify the whole picture when no face is found (an already cropped face, say).
    """
    import keras
    from PIL import ImageOps

    from fusekit.imageio import Rejected, open_image
    from fusekit.train.decode import prepare
    from fusekit.train.evaluate import checkpoint_path, resolve_run
    from fusekit.train.runs import workspace_root

    root = workspace_root(workspace)
    found = resolve_run(root, run)
    config = found.config()
    info = found.dataset_info()
    classes = info.get("classes") or []
    face_size = int(info.get("image_size") or 112)
    from fusekit.train.models import load_model

    model = load_model(checkpoint_path(found, checkpoint), compile=False)
    size, channels = int(config["input_size"]), int(config["channels"])
    try:
        from fusekit.faces import detect_and_align
    except ImportError as exc:  # the faces stage is a separate package
        raise UserError(f"face detection is not available ({exc}); install fusekit with its faces stage") from None

    results: list[FacePrediction] = []
    for path in images:
        name = str(path)
        try:  # the pipeline's decoder: full decode under the decompression-bomb limit, a reason when it fails
            picture = ImageOps.exif_transpose(open_image(Path(path).read_bytes())).convert("RGB")
        except OSError as exc:
            results.append(FacePrediction(name, None, None, error=f"cannot read: {exc.strerror or exc}"))
            continue
        except Rejected as exc:
            results.append(FacePrediction(name, None, None, error=f"cannot read: {exc.reason} {exc.detail}".strip()))
            continue
        faces = detect_and_align(picture, policy=policy, size=face_size)
        crops = [(i, f.crop, tuple(float(v) for v in f.box) if f.box is not None else None,
                  float(f.score) if f.score is not None else None, bool(f.aligned)) for i, f in enumerate(faces)]
        if not crops and whole_image:
            crops = [(0, picture, None, None, False)]
        if not crops:
            results.append(FacePrediction(name, None, None, error="no face found (add --whole-image to classify "
                                                                  "the whole picture)"))
            continue
        batch = np.stack([prepare(c[1], size, channels) for c in crops]).astype(np.float32) / 255.0
        probs = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(batch)), np.float64)
        for (index, _, box, score, aligned), p in zip(crops, probs):
            names = classes if len(classes) == len(p) else [str(i) for i in range(len(p))]
            results.append(FacePrediction(name, index, names[int(p.argmax())],
                                          {n: round(float(v), 6) for n, v in zip(names, p)}, box, score, aligned))
    return results


def render_predictions(predictions: Sequence[FacePrediction], top: int = 3) -> str:
    from fusekit.text import table

    rows = []
    for p in predictions:
        if p.error:
            rows.append([p.image, "-", "-", "-", p.error])
            continue
        ranked = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:top]
        box = "whole image" if p.box is None else "{:.0f},{:.0f} {:.0f}x{:.0f}".format(*p.box)
        rows.append([p.image, p.face, box, p.label, "  ".join(f"{k} {v:.3f}" for k, v in ranked)])
    return table(["image", "face", "box", "label", "probabilities"], rows)


# -- a run's features, for `fusekit audit --run` (the audit stage takes them ready-made) -----------------------------

class RunFeatures:
    """The penultimate activations of a trained run's model, for `fusekit.audit.run_audit`'s ``extractor``."""

    def __init__(self, workspace, run: str | None, checkpoint: str = "best") -> None:
        import keras

        from fusekit.train.evaluate import checkpoint_path, resolve_run
        from fusekit.train.models import load_model
        from fusekit.train.runs import workspace_root

        found = resolve_run(workspace_root(workspace), run)
        self.name = found.name
        config = found.config()
        self.size, self.channels = int(config["input_size"]), int(config["channels"])
        model = load_model(checkpoint_path(found, checkpoint), compile=False)
        try:
            head = model.get_layer("predictions_dense")
        except ValueError:  # not one of fusekit's heads: the layer before the last
            head = model.layers[-1]
        self.model = keras.Model(model.inputs, head.input)

    @property
    def description(self) -> str:
        return f"run:{self.name}"

    def __call__(self, crops: Iterable[bytes | None], batch_size: int = 256) -> np.ndarray:
        import keras

        from fusekit.train.decode import prepare

        crops = list(crops)
        chunks = []
        for start in range(0, len(crops), batch_size):
            images = []
            for data in crops[start:start + batch_size]:
                if data:
                    with Image.open(io.BytesIO(data)) as img:
                        images.append(prepare(img, self.size, self.channels))
                else:
                    images.append(np.zeros((self.size, self.size, self.channels), np.uint8))
            batch = np.stack(images).astype(np.float32) / 255.0
            chunks.append(np.asarray(keras.ops.convert_to_numpy(self.model.predict_on_batch(batch)), np.float32))
        if not chunks:
            return np.zeros((0, 0), np.float32)
        return np.concatenate([c.reshape(len(c), -1) for c in chunks])
