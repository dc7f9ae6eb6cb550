"""How each kind of source is searched for faces, and which faces are kept (the settings are data, overridable).

- ``precropped`` (FER-2013, CK+48, RAF-DB aligned, AffectNet Kaggle/YOLO, K-drama): the picture is already a face.
  It is padded (edges replicated) and scaled to a small square canvas, so that MTCNN sees a whole face with some
  context at a size it finds reliably. No face found: the whole picture is kept, unaligned (method ``whole_image``);
  a labelled sample is never dropped because a detector missed on a 48×48 crop.
- ``given_box`` (ExpW, AffectNet official): the dataset says where the face is. MTCNN looks at a square canvas around
  that box and the detection that overlaps it best is kept; none: the given box is cropped, unaligned.
- ``full_frame`` (lab datasets, class folders): a photo with one subject. No face: rejected ``no_face``;
  several: the largest, most central face.
- ``crawled`` (web images): no face: rejected ``no_face``; several: each face its own row (up to ``max_faces``).

For whole frames, the smallest face searched for is ``max(min_face, min_face_frac × shorter side)``; the picture is
scaled so that this face is 20 px for the detector, which is what makes large photos cheap.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fusekit.config import FromMapping
from fusekit.errors import ConfigError
from fusekit.faces.align import crop_square
from fusekit.faces.detect import MIN_VIEW, PYRAMID_FACTOR, WORK_FACE, Detection

POLICIES = ("given_box", "precropped", "full_frame", "crawled")
AUTO = "auto"  # a unit's policy chosen from what a sample of its pictures looks like (fusekit.faces.stage)
MULTI = ("largest_central", "all")


@dataclass(frozen=True)
class PolicySettings:
    """One policy's detector settings and keep rules (see the module docstring)."""

    name: str
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)  # PNet, RNet, ONet
    min_face: int = 40  # px in the source: smallest face searched for in a whole frame
    min_face_frac: float = 0.0  # ... or this fraction of the shorter side, whichever is larger
    canvas: int = 0  # precropped / given_box: side of the square canvas the detector sees
    context: float = 0.0  # precropped: padding per side / picture side; given_box: context per side / box side
    multi: str = "largest_central"  # several faces: keep the largest central one, or all of them
    max_faces: int = 1
    min_image: int = 16  # px: a picture (or given box) with a shorter side below this is rejected too_small
    min_iou: float = 0.3  # given_box: a detection must overlap the given box at least this much
    refine: bool = True  # find the landmarks again on the aligned crop (see pipeline._refine)

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ConfigError(f"unknown face policy {self.name!r}; valid: {', '.join(POLICIES)}")
        if self.multi not in MULTI:
            raise ConfigError(f"face policy {self.name}: multi must be one of {MULTI}, got {self.multi!r}")
        if not all(0.0 <= t <= 1.0 for t in self.thresholds) or len(self.thresholds) != 3:
            raise ConfigError(f"face policy {self.name}: thresholds must be three numbers in 0..1")
        if self.min_face < 1 or self.min_image < 1 or self.max_faces < 1:
            raise ConfigError(f"face policy {self.name}: min_face, min_image and max_faces must be positive")
        if self.name in ("precropped", "given_box") and self.canvas < MIN_VIEW:
            raise ConfigError(f"face policy {self.name}: canvas must be at least {MIN_VIEW} px")

    def describe(self) -> str:
        """The settings that decide the faces found, for the ``detector`` column."""
        t = ",".join(f"{v:g}" for v in self.thresholds)
        if self.name == "precropped":
            text = f"thresholds={t} canvas={self.canvas} context={self.context:g}"
        elif self.name == "given_box":
            text = f"thresholds={t} canvas={self.canvas} context={self.context:g} min_iou={self.min_iou:g}"
        else:
            text = f"thresholds={t} min_face={self.min_face} min_face_frac={self.min_face_frac:g}"
        return text + (" refined" if self.refine else "")


DEFAULTS: dict[str, PolicySettings] = {
    # A 48×48 crop padded by 30% per side on a 48-px canvas puts the face at ~25 px: found in every test crop, and
    # the ONet landmarks come from a 48-px patch anyway. ONet threshold 0.7: the face is known to be there.
    # Refined like every other policy: the mirror-averaged second ONet pass is what makes a mirrored copy's crop
    # the mirror of the original's (docs/quality.md).
    "precropped": PolicySettings("precropped", thresholds=(0.7, 0.7, 0.7), canvas=48, context=0.3, min_image=16,
                                 min_face_frac=0.3),
    "given_box": PolicySettings("given_box", thresholds=(0.6, 0.7, 0.7), canvas=96, context=0.5, min_image=8),
    "full_frame": PolicySettings("full_frame", min_face=40, min_face_frac=0.1, min_image=40),
    "crawled": PolicySettings("crawled", min_face=40, min_face_frac=0.08, multi="all", max_faces=10, min_image=40),
}


@dataclass(frozen=True)
class FacesConfig(FromMapping):
    """What `fusekit faces` was asked to do.

    ``policies`` overrides settings per policy (``{"full_frame": {"min_face": 60}}``); ``dataset_policies`` chooses
    another policy for a dataset (``{"kdef": "crawled"}``: every face of a lab frame); ``min_face`` overrides the
    smallest face of the whole-frame policies (the CLI's --min-face).
    """

    size: int = 112
    redo: bool = False
    workers: int = 0  # 0: automatic (processes only when there is enough work to pay for starting them)
    chunk_size: int = 1024  # images per part file (the unit of resume)
    min_face: int | None = None
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_policies: dict[str, str] = field(default_factory=dict)
    runner: str = "local"  # where chunks run: this process / local processes, or "ray" (fusekit.distribute_ray)
    address: str | None = None  # the Ray cluster for runner "ray" (None: $RAY_ADDRESS, else a local Ray)

    def __post_init__(self) -> None:
        from fusekit.distribute_ray import check_runner

        check_runner(self.runner)
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"--size must be between 16 and 1024 px, got {self.size}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 (automatic) or more, got {self.workers}")
        if self.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        if self.min_face is not None and self.min_face < 1:
            raise ConfigError(f"--min-face must be a positive number of pixels, got {self.min_face}")
        for name in self.policies:
            if name not in POLICIES:
                raise ConfigError(f"unknown face policy {name!r}; valid: {', '.join(POLICIES)}")
        for dataset, name in self.dataset_policies.items():
            if name not in (*POLICIES, AUTO):
                raise ConfigError(f"face policy {name!r} for {dataset} is not one of {', '.join((*POLICIES, AUTO))}")
        for name in POLICIES:  # fail now, not in the middle of a run
            self.settings(name)

    def settings(self, policy: str) -> PolicySettings:
        base = DEFAULTS[policy]
        changes = dict(self.policies.get(policy, {}))
        if self.min_face is not None and policy in ("full_frame", "crawled"):
            changes.setdefault("min_face", self.min_face)
        if "thresholds" in changes:
            changes["thresholds"] = tuple(float(v) for v in changes["thresholds"])
        unknown = set(changes) - {f.name for f in dataclasses.fields(PolicySettings)}
        if unknown:
            raise ConfigError(f"face policy {policy}: unknown setting(s) {', '.join(sorted(unknown))}")
        return dataclasses.replace(base, **changes) if changes else base


# -- views: what the detector is shown, and how its coordinates map back ----------------------------------------------


@dataclass
class View:
    """Detector input (H×W×3 float32) and the map back to source pixels: ``source = view * scale + (dx, dy)``."""

    pixels: np.ndarray
    scale: float
    dx: float = 0.0
    dy: float = 0.0


def min_face_px(settings: PolicySettings, width: int, height: int) -> float:
    return max(float(settings.min_face), settings.min_face_frac * min(width, height))


def frame_view(pixels: np.ndarray, settings: PolicySettings) -> View:
    """A whole frame scaled so that the smallest face searched for is WORK_FACE px (never enlarged past 2×)."""
    import cv2

    h, w = pixels.shape[:2]
    s = min(2.0, WORK_FACE / min_face_px(settings, w, h))
    if s < 1.0:
        # Snap to a power of MTCNN's pyramid factor: the pyramid is then the lower part of the one MTCNN builds for
        # the full picture (its last levels, where faces of this size are found), and boxes stay close to a full run.
        s = PYRAMID_FACTOR ** math.floor(math.log(s) / math.log(PYRAMID_FACTOR))
    s = max(s, MIN_VIEW / min(w, h))  # PNet needs a few pixels to work on
    if abs(s - 1.0) < 1e-6:
        return View(pixels.astype(np.float32), 1.0)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(pixels, size, interpolation=interpolation)
    return View(small.astype(np.float32), w / size[0] if size[0] else 1.0, 0.0, 0.0)


def square_view(pixels: np.ndarray, cx: float, cy: float, side: float, canvas: int) -> View:
    """The square of ``side`` source px around (cx, cy) on a ``canvas`` px canvas (edges replicated)."""
    view = crop_square(pixels, cx, cy, side, canvas)
    scale = side / canvas
    return View(view.astype(np.float32), scale, cx - side / 2, cy - side / 2)


def precropped_view(pixels: np.ndarray, settings: PolicySettings) -> View:
    h, w = pixels.shape[:2]
    side = max(h, w) * (1 + 2 * settings.context)
    return square_view(pixels, w / 2, h / 2, side, settings.canvas)


def given_box_view(pixels: np.ndarray, box: tuple[float, float, float, float], settings: PolicySettings) -> View:
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * settings.context)
    return square_view(pixels, (x0 + x1) / 2, (y0 + y1) / 2, side, settings.canvas)


# -- choosing faces ---------------------------------------------------------------------------------------------------


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centrality_key(det: Detection, width: int, height: int) -> tuple[float, float]:
    """Size discounted by the distance from the picture's centre (up to half at a corner); ties by score."""
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    d = np.hypot(cx - width / 2, cy - height / 2) / max(np.hypot(width / 2, height / 2), 1e-9)
    size = np.sqrt(max(det.width, 0.0) * max(det.height, 0.0))
    return float(size * (1.0 - 0.5 * min(d, 1.0))), det.score


def choose(detections: list[Detection], settings: PolicySettings, width: int, height: int,
           given: tuple[float, float, float, float] | None = None) -> list[Detection]:
    """The faces a policy keeps among ``detections`` (source coordinates), in a deterministic order."""
    if settings.name == "given_box" and given is not None:
        scored = [(iou(d.box, given), d.score, d) for d in detections]
        scored = [s for s in scored if s[0] >= settings.min_iou]
        return [max(scored, key=lambda s: (s[0], s[1]))[2]] if scored else []
    if settings.name == "precropped":
        floor = settings.min_face_frac * min(width, height)
        detections = [d for d in detections if min(d.width, d.height) >= floor]
    if not detections:
        return []
    if settings.multi == "largest_central":
        return [max(detections, key=lambda d: centrality_key(d, width, height))]
    ordered = sorted(detections, key=lambda d: (-d.width * d.height, d.box[0], d.box[1]))
    return ordered[: settings.max_faces]
