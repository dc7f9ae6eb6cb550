"""MTCNN (the ``mtcnn`` package, weights shipped inside it) behind a small batched interface.

What this adds to ``MTCNN.detect_faces``:

- **Batches of one shape.** ``detect_faces`` accepts a list and pads it to the largest image, but mtcnn 1.0.0 maps the
  padding offsets back wrongly when an image of the batch has no face (``fix_bboxes_offsets`` zips the ids of images
  *with* faces against the pads of *all* images). So views are padded here, at the bottom/right, to a shape rounded up
  to a multiple of 16, and a batch only ever holds one shape: every offset is zero and there is nothing to map back.
- **Compiled refinement nets.** RNet and ONet run on fixed-size patches (24×24, 48×48) whose count varies; they are
  called through one XLA-compiled function per net with the count padded to a power of two, so a handful of shapes
  compile once. ONet is 2.5-3× faster this way on a CPU (0.6 vs 1.6-2 ms a patch measured on the 2-core box).
- **No wasted pyramid.** The caller scales each view so that the smallest face it wants is 20 px (MTCNN's default
  ``min_face_size``); the pyramid then starts at 12/20 and never runs on scales that only find faces too small to keep.
  (Passing a larger ``min_face_size`` instead breaks mtcnn 1.0.0: its scale count ignores it and PNet gets inputs
  smaller than its kernels.)

- **Full-resolution refinement for whole frames.** A frame is downscaled only to decide which pyramid levels PNet
  needs: PNet then runs on MTCNN's own levels of the full picture (same scales, same AREA resizing) without the large
  ones that only find faces below the minimum size (where a plain run spends its time), and RNet and ONet cut their
  patches from the full-resolution picture. Final boxes are then a plain MTCNN run's (IoU >= 0.98 on the benchmark).
- **Vectorised NMS** (``fusekit.faces.nms``): mtcnn's rule over a whole batch at once instead of image by image.

A GPU is used when TensorFlow sees one. TensorFlow is imported only when a detector is built.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

WORK_FACE = 20  # px: the smallest face at the resolution the detector sees (MTCNN's default min_face_size)
MIN_VIEW = 24  # px: PNet needs at least one pyramid level of 12 px
PYRAMID_FACTOR = 0.709  # MTCNN's scale step between pyramid levels
_SOURCE_CHUNK = 16  # full-resolution pictures resized together for PNet's levels (bounds memory) ...
_SOURCE_PIXELS = 1 << 24  # ... and at most this many pixels in one such group (float32 RGB: 192 MiB)
_ROUND = 16  # views are padded to a multiple of this, so that batches of similar pictures share one shape


@dataclass(frozen=True)
class Detection:
    """One face in view or source coordinates: box (x0, y0, x1, y1), score, landmarks 5×2 (LANDMARK_NAMES order)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    def mapped(self, scale: float, dx: float, dy: float) -> Detection:
        """The detection in the coordinates where a view point v maps to ``v * scale + (dx, dy)``."""
        x0, y0, x1, y1 = self.box
        box = (x0 * scale + dx, y0 * scale + dy, x1 * scale + dx, y1 * scale + dy)
        return Detection(box, self.score, self.landmarks * scale + np.array([dx, dy]))

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


Thresholds = tuple[float, float, float]
# A view's full-resolution picture: (uint8 H×W×3 pixels, scale, dx, dy) with ``source = view * scale + (dx, dy)``.
Source = tuple[np.ndarray, float, float, float]


def _map_boxes(rows: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """mtcnn rows (image id, x0, y0, x1, y1, score, 5 x, 5 y) mapped by ``v * scale[id] + shift[id]``."""
    rows = np.array(rows, dtype=np.float64)
    ids = rows[:, 0].astype(int)
    s = scale[ids][:, None]
    dx, dy = shift[ids, 0:1], shift[ids, 1:2]
    rows[:, [1, 3, 6, 7, 8, 9, 10]] = rows[:, [1, 3, 6, 7, 8, 9, 10]] * s + dx
    rows[:, [2, 4, 11, 12, 13, 14, 15]] = rows[:, [2, 4, 11, 12, 13, 14, 15]] * s + dy
    return rows


class FaceDetector(Protocol):
    """What the faces stage needs from a detector (tests pass a fake one)."""

    name: str

    def detect(self, views: Sequence[np.ndarray], thresholds: Thresholds) -> list[list[Detection] | None]:
        """Faces in each H×W×3 view (uint8 or float32, 0..255); None for a view the detector failed on."""
        ...


def mtcnn_version() -> str:
    try:
        return importlib.metadata.version("mtcnn")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source checkout of mtcnn
        return "unknown"


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's C++ log (CUDA probing on CPU machines) and, in a worker, pin its thread count.

    Must run before TensorFlow starts its runtime; a user's own TF_CPP_MIN_LOG_LEVEL wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _import_tensorflow_quietly()
    if not os.environ.get("FUSEKIT_TF_LOGS"):
        import logging

        # Retracing notices for new input shapes are expected here (a dataset's images come in a few shapes).
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # the runtime already started in this process: keep its settings
            pass


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the C++ side's start-up chatter (absl's pre-init warning, CUDA probing on a CPU box)
    kept off the terminal: those lines are printed before TF_CPP_MIN_LOG_LEVEL is honoured. An import error still
    raises; FUSEKIT_TF_LOGS=1 shows everything."""
    # mtcnn's import builds nothing yet, but loads the rest of TF's libraries
    import_quietly("tensorflow", "mtcnn")


def import_quietly(*modules: str, missing_ok: bool = False) -> None:
    """Import ``modules`` (tensorflow, keras, mtcnn) with file descriptor 2 pointed at /dev/null meanwhile, so that
    TensorFlow's start-up lines (oneDNN, CUDA probing, CPU features: six lines on a CPU box, written by C++ before any
    log level applies) never precede fusekit's own output. Nothing is hidden once TensorFlow is loaded, with
    FUSEKIT_TF_LOGS=1, or off POSIX. ``missing_ok``: a module that is not installed is left for its real import
    to report."""
    import importlib
    import sys

    wanted = [m for m in modules if m not in sys.modules]
    if not wanted:
        return
    quiet = not ("tensorflow" in sys.modules or os.environ.get("FUSEKIT_TF_LOGS") or os.name != "posix")
    sys.stderr.flush()
    saved = os.dup(2) if quiet else -1
    devnull = os.open(os.devnull, os.O_WRONLY) if quiet else -1
    try:
        if quiet:
            os.dup2(devnull, 2)
        for module in wanted:
            try:
                importlib.import_module(module)
            except ImportError:
                if not missing_ok:
                    raise
    finally:
        if quiet:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


class _Compiled:
    """A Keras model called through one XLA-compiled function, the batch padded to a power of two."""

    MAX_BUCKET = 512

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        import tensorflow as tf

        self._tf = tf
        self._model = model
        self._fn = tf.function(lambda x: model(x), jit_compile=True)

    def __call__(self, x):  # type: ignore[no-untyped-def]
        tf = self._tf
        n = int(x.shape[0])
        if n == 0:
            return self._model(x)
        sizes = _chunks(n, self.MAX_BUCKET)
        if len(sizes) > 1:
            edges = np.cumsum([0, *sizes])
            parts = [self(x[a:b]) for a, b in zip(edges[:-1], edges[1:])]
            return tuple(tf.concat([p[k] for p in parts], axis=0) for k in range(len(parts[0])))
        bucket = max(16, 1 << (n - 1).bit_length())
        x = tf.convert_to_tensor(x, dtype=tf.float32)
        if bucket > n:
            x = tf.concat([x, tf.zeros((bucket - n, *x.shape[1:]), dtype=x.dtype)], axis=0)
        return tuple(out[:n] for out in self._fn(x))


def _chunks(n: int, largest: int) -> list[int]:
    """``n`` patches split into power-of-two calls (the compiled shapes) with little padding: 257 -> 256 + 1 (padded
    to 16) rather than one call padded to 512, which doubled ONet's time on a batch of pre-cropped faces."""
    sizes = []
    while n > 0:
        take = largest
        if n < largest:
            up = max(16, 1 << (n - 1).bit_length())
            # at most a quarter padding (or under 16 patches); else the largest power of two that fits, then the rest
            take = n if up - n <= max(15, up // 4) else 1 << (n.bit_length() - 1)
        sizes.append(take)
        n -= take
    return sizes


class _CompiledByShape:
    """PNet through XLA for input shapes seen often (a dataset's pictures share a few shapes), eagerly otherwise.

    Compiling costs 0.5-2 s per shape on the 2-core box and saves about a third of PNet's time, so a shape is compiled
    on its ``COMPILE_AFTER``-th use, and at most ``MAX_SHAPES`` are kept (a crawl's varied sizes stay eager).
    """

    COMPILE_AFTER = 8
    COMPILE_SMALL_AFTER = 2  # canvases of pre-cropped faces and given boxes (<= 64×64): few shapes, cheap compiles
    MAX_SHAPES = 96

    def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
        import tensorflow as tf

        self._model = model
        self._fn = tf.function(lambda x: model(x), jit_compile=True)
        self._seen: dict[tuple[int, ...], int] = {}

    def __call__(self, x):  # type: ignore[no-untyped-def]
        shape = tuple(int(v) for v in x.shape)
        count = self._seen.get(shape, 0)
        if count == 0 and len(self._seen) >= self.MAX_SHAPES:
            return self._model(x)
        self._seen[shape] = count + 1
        after = self.COMPILE_SMALL_AFTER if shape[1] * shape[2] <= 64 * 64 else self.COMPILE_AFTER
        return self._fn(x) if count >= after else self._model(x)


class MtcnnDetector:
    """The ``mtcnn`` package's MTCNN with batching by shape and compiled RNet/ONet (see the module docstring)."""

    def __init__(self, device: str | None = None, compile_nets: bool = True, batch_size: int = 256) -> None:
        configure_tensorflow()
        import tensorflow as tf
        from mtcnn import MTCNN

        if device is None:
            device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
        self.device = device
        self.batch_size = batch_size
        self._tf = tf
        self._mtcnn = MTCNN(device=device)
        if compile_nets:
            for n, stage in enumerate(self._mtcnn.stages):
                model = getattr(stage, "_model", None)
                if model is not None:  # PNet: whole views; RNet, ONet: fixed-size patches
                    stage._model = _CompiledByShape(model) if n == 0 else _Compiled(model)
        self.name = f"mtcnn {mtcnn_version()}"

    def _run(self, batch: np.ndarray, thresholds: Thresholds,
             sources: Sequence[Source | None] | None = None) -> np.ndarray:
        """MTCNN's three stages on a batch of one shape (as ``detect_faces`` runs them), except that RNet and ONet cut
        their patches from ``sources[k]`` (the full-resolution picture a downscaled view came from) where one is
        given: PNet's proposals come from the small view (the speed), the box regression that defines the final box
        from full-resolution pixels, as a plain MTCNN run on the picture sees them. Rows are in view coordinates."""
        from mtcnn.utils.bboxes import adjust_bboxes, pick_matches, replace_confidence, resize_to_square
        from mtcnn.utils.landmarks import adjust_landmarks

        from fusekit.faces.nms import nms

        tf = self._tf
        _, rnet, onet = self._mtcnn.stages
        p, r, o = thresholds
        sources = list(sources) if sources is not None else [None] * len(batch)
        with tf.device(self.device):
            normalized = tf.convert_to_tensor((batch - 127.5) / 128.0, dtype=tf.float32)
            scale = np.array([s[1] if s is not None else 1.0 for s in sources])
            shift = np.array([(s[2], s[3]) if s is not None else (0.0, 0.0) for s in sources])
            found = []
            if any(s is None for s in sources):
                rows = self._pnet_on_views(normalized, p)
                found.append(rows[[sources[int(i)] is None for i in rows[:, 0]]] if len(rows) else rows)
            if any(s is not None for s in sources):
                found.append(self._pnet_on_sources(sources, p))
            boxes = np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1, 6) for f in found], axis=0)
            if not len(boxes):
                return np.empty((0, 16))
            patches = self._patches(normalized, sources, boxes, 24)
            offsets, scores = rnet._model(patches)
            boxes = adjust_bboxes(replace_confidence(boxes, np.asarray(scores)), np.asarray(offsets))
            boxes = pick_matches(boxes, score_threshold=r)
            if not len(boxes):
                return np.empty((0, 16))
            boxes = resize_to_square(nms(boxes, 0.7, "union", initial_sort=True))
            patches = self._patches(normalized, sources, boxes, 48)
            offsets, marks, scores = onet._model(patches)
            marks = adjust_landmarks(marks, boxes)
            boxes = adjust_bboxes(replace_confidence(boxes, np.asarray(scores)), np.asarray(offsets))
            boxes = pick_matches(np.concatenate([boxes, marks], axis=-1), scores_column=5, score_threshold=o)
            if not len(boxes):
                return np.empty((0, 16))
            boxes = nms(boxes, 0.7, "min", initial_sort=True)
            return _map_boxes(boxes, 1.0 / scale, -shift / scale[:, None])

    def _pnet_on_views(self, normalized, threshold: float) -> np.ndarray:  # type: ignore[no-untyped-def]
        """mtcnn's PNet stage on a batch of one shape (its pyramid, its rules), with the vectorised NMS."""
        from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, upscale_bboxes
        from mtcnn.utils.images import build_scale_pyramid, scale_images

        from fusekit.faces.nms import nms

        n, height, width = (int(v) for v in normalized.shape[:3])
        model = self._mtcnn.stages[0]._model
        found = []
        for level in build_scale_pyramid(width, height, min_face_size=WORK_FACE, scale_factor=PYRAMID_FACTOR):
            out = model(scale_images(normalized, level))
            rows = generate_bounding_box(out[0], out[1], threshold)
            if len(rows):
                found.append(nms(upscale_bboxes(rows, np.full(n, level)), 0.5, "union", initial_sort=False))
        if not found:
            return np.empty((0, 6))
        return resize_to_square(nms(np.concatenate(found, axis=0), 0.7, "union", initial_sort=True))

    def _pnet_on_sources(self, sources: Sequence[Source | None], threshold: float) -> np.ndarray:
        """PNet proposals (rows in source pixels, squared) for the views that have a full-resolution source: on the
        pyramid levels of MTCNN's own pyramid for the source (same scales, same AREA resizing from the full picture)
        that the downscaled view's pyramid covers, i.e. without the large levels that only find faces smaller than
        the smallest face searched for. Those large levels are where a plain run spends its time."""
        from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, upscale_bboxes
        from mtcnn.utils.images import build_scale_pyramid, scale_images

        from fusekit.faces.nms import nms

        tf = self._tf
        pnet = self._mtcnn.stages[0]
        groups: dict[tuple[int, int, float], list[int]] = {}
        for k, src in enumerate(sources):
            if src is not None:
                groups.setdefault((*src[0].shape[:2], round(src[1], 6)), []).append(k)
        found = []
        for (h, w, view_scale), members in sorted(groups.items()):
            scales = build_scale_pyramid(w, h, min_face_size=WORK_FACE, scale_factor=PYRAMID_FACTOR)
            scales = scales[scales <= (12 / WORK_FACE) / view_scale * (1 + 1e-3)]
            step = max(1, min(_SOURCE_CHUNK, _SOURCE_PIXELS // (h * w)))  # large crawled pictures: fewer at once
            for start in range(0, len(members), step):
                chunk = members[start:start + step]
                images = tf.cast(np.stack([sources[k][0] for k in chunk]), tf.float32)
                for level in scales:
                    out = pnet._model((scale_images(images, level) - 127.5) / 128.0)
                    rows = generate_bounding_box(out[0], out[1], threshold)
                    if not len(rows):
                        continue
                    rows = upscale_bboxes(rows, np.full(len(chunk), level))
                    rows = nms(rows, 0.5, "union", initial_sort=False)
                    rows[:, 0] = np.asarray(chunk)[rows[:, 0].astype(int)]
                    found.append(rows)
        if not found:
            return np.empty((0, 6))
        rows = nms(np.concatenate(found, axis=0), 0.7, "union", initial_sort=True)
        return resize_to_square(rows)

    def _patches(self, normalized, sources: Sequence[Source | None], boxes: np.ndarray, size: int):  # type: ignore[no-untyped-def]
        """``size``-px patches at ``boxes`` (rows: image id, x0, y0, x1, y1, ...) in mtcnn's row order: from the view
        batch, or from the image's full-resolution source (outside it: 0 after normalising, as mtcnn pads)."""
        from mtcnn.utils.images import extract_patches

        tf = self._tf
        ids = boxes[:, 0].astype(int)
        from_source = np.array([sources[i] is not None for i in ids], dtype=bool)
        if not from_source.any():
            return extract_patches(normalized, boxes, expected_size=(size, size))
        parts, order = [], []
        rest = np.flatnonzero(~from_source)
        if len(rest):
            parts.append(extract_patches(normalized, boxes[rest], expected_size=(size, size)))
            order.append(rest)
        for i in np.unique(ids[from_source]):
            rows = np.flatnonzero(ids == i)
            pixels = sources[i][0]
            h, w = pixels.shape[:2]
            coords = boxes[rows][:, [2, 1, 4, 3]] / np.array([h, w, h, w])
            cut = tf.image.crop_and_resize(pixels[None], coords.astype(np.float32), np.zeros(len(rows), np.int32),
                                           (size, size), extrapolation_value=127.5)
            parts.append((cut - 127.5) / 128.0)
            order.append(rows)
        patches = tf.concat(parts, axis=0)
        return tf.gather(patches, np.argsort(np.concatenate(order)))

    def refine(self, crops: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> np.ndarray:
        """ONet on the same square ``box`` (x0, y0, x1, y1) of each crop: MTCNN's last stage without the proposal
        stages, for crops whose face position is known (aligned crops). Returns landmarks (N×5×2) in crop pixels."""
        return self.onet(crops, box)[0]

    def onet(self, crops: Sequence[np.ndarray], box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
        """ONet on the square ``box`` of each (same-size) crop: landmarks (N×5×2, crop pixels) and face scores (N)."""
        tf = self._tf
        if not len(crops):
            return np.zeros((0, 5, 2)), np.zeros(0)
        batch = (np.stack([np.asarray(c, dtype=np.float32) for c in crops]) - 127.5) / 128.0
        h, w = batch.shape[1:3]
        x0, y0, x1, y1 = box
        boxes = np.tile(np.array([[y0 / h, x0 / w, y1 / h, x1 / w]], dtype=np.float32), (len(crops), 1))
        with tf.device(self.device):
            patches = tf.image.crop_and_resize(batch, boxes, np.arange(len(crops), dtype=np.int32), (48, 48))
            _, marks, prob = self._mtcnn.stages[2]._model(patches)
        marks = np.asarray(marks, dtype=np.float64)
        bw, bh = x1 - x0 + 1, y1 - y0 + 1  # as mtcnn's adjust_landmarks
        xs = bw * marks[:, 0:5] + x0 - 1
        ys = bh * marks[:, 5:10] + y0 - 1
        return np.stack([xs, ys], axis=2), np.asarray(prob, dtype=np.float64)[:, 1]

    accepts_sources = True  # detect() takes each view's full-resolution picture for RNet and ONet

    def detect(self, views: Sequence[np.ndarray], thresholds: Thresholds,
               sources: Sequence[Source | None] | None = None) -> list[list[Detection] | None]:
        sources = list(sources) if sources is not None else [None] * len(views)
        results: list[list[Detection] | None] = [[] for _ in views]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, view in enumerate(views):
            h, w = view.shape[:2]
            by_shape.setdefault((-(-h // _ROUND) * _ROUND, -(-w // _ROUND) * _ROUND), []).append(i)
        for shape, members in sorted(by_shape.items()):
            for start in range(0, len(members), self.batch_size):
                chosen = members[start:start + self.batch_size]
                batch = np.zeros((len(chosen), shape[0], shape[1], 3), dtype=np.float32)
                for k, i in enumerate(chosen):
                    h, w = views[i].shape[:2]
                    batch[k, :h, :w] = views[i]
                self._detect_batch(batch, chosen, views, thresholds, results, sources)
        return results

    def _detect_batch(self, batch: np.ndarray, chosen: list[int], views: Sequence[np.ndarray],
                      thresholds: Thresholds, results: list[list[Detection] | None],
                      sources: Sequence[Source | None]) -> None:
        try:
            rows = self._run(batch, thresholds, [sources[i] for i in chosen])
        except Exception as exc:  # noqa: BLE001 - one odd picture must not cost its whole batch
            if len(chosen) == 1:
                log.warning("face detector failed on one picture: %s: %s", type(exc).__name__, exc)
                results[chosen[0]] = None
                return
            for k, i in enumerate(chosen):
                self._detect_batch(batch[k:k + 1], [i], views, thresholds, results, sources)
            return
        for row in np.asarray(rows, dtype=np.float64).reshape(-1, 16):
            i = chosen[int(row[0])]
            h, w = views[i].shape[:2]
            x0, y0, x1, y1 = row[1:5]
            if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:  # a box wholly in the padding
                continue
            landmarks = np.stack([row[6:11], row[11:16]], axis=1)
            results[i].append(Detection((float(x0), float(y0), float(x1), float(y1)), float(row[5]), landmarks))


@functools.lru_cache(maxsize=1)
def shared_detector() -> MtcnnDetector:
    """One detector per process (building it loads TensorFlow and the weights: seconds)."""
    return MtcnnDetector()
