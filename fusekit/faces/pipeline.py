"""The stage's logic as a pure function of a batch of decoded pictures: detect, choose, align, crop.

``analyse`` takes pictures with their policy (and given box), runs the detector once per policy over the whole batch,
and returns for each picture either its faces (``AlignedFace``) or a reject reason. It neither reads nor writes the
workspace, so the same function serves the stage runner, worker processes and ``detect_and_align`` (for predict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from fusekit.faces import align
from fusekit.faces.decode import Decoded, region_sha256, to_rgb
from fusekit.faces.detail import detail_px
from fusekit.faces.detect import Detection, FaceDetector
from fusekit.faces.policies import (DEFAULTS, PolicySettings, View, choose, frame_view, given_box_view,
                                    min_face_px, precropped_view, square_view)
from fusekit.imageio import encode_png

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass
class AlignedFace:
    """One face crop and where it came from (source pixels, after EXIF orientation)."""

    crop: Image.Image
    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray | None  # 5×2, LANDMARK_NAMES order; None when not aligned
    score: float | None
    aligned: bool
    method: str  # detected | given_box | whole_image
    transform: np.ndarray  # 2×3, source -> crop
    face_size: tuple[int, int]  # the box clipped to the picture
    pixel_sha256: str
    outside_fraction: float = 0.0  # share of the crop that lies outside the picture (filled, see align.FILL)
    detail_px: float = float("nan")  # the face's side divided by its enlargement (fusekit.faces.detail)

    def png(self) -> bytes:
        # the project's Sub-filter encoder at level 1: 2.5x faster than Pillow's compress_level=1, 3% bigger
        return encode_png(np.asarray(self.crop), level=1)


@dataclass
class Item:
    """One picture to analyse."""

    picture: Decoded
    settings: PolicySettings
    given_box: Box | None = None  # x0, y0, x1, y1 (given_box policy)


@dataclass
class Outcome:
    faces: list[AlignedFace] = field(default_factory=list)
    reject: tuple[str, str] | None = None
    found: int = 0  # detections that passed the thresholds, before the policy chose
    detector: str = ""
    known_face: bool = False  # landmarks from ONet on the whole pre-cropped picture (see _known_faces)


def _clip(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    x0 = int(np.clip(np.floor(box[0]), 0, width))
    y0 = int(np.clip(np.floor(box[1]), 0, height))
    x1 = int(np.clip(np.ceil(box[2]), 0, width))
    y1 = int(np.clip(np.ceil(box[3]), 0, height))
    return x0, y0, max(x1, x0), max(y1, y0)


def _crop_image(pixels: np.ndarray, grey: bool) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0] if grey else pixels), "L" if grey else "RGB")


def make_face(picture: Decoded, box: Box, matrix: np.ndarray, size: int, *, method: str,
              landmarks: np.ndarray | None = None, score: float | None = None) -> AlignedFace:
    clipped = _clip(box, picture.width, picture.height)
    crop = align.warp(picture.pixels, matrix, size)
    return AlignedFace(
        crop=_crop_image(crop, picture.grey),
        box=(box[0], box[1], box[2] - box[0], box[3] - box[1]),
        landmarks=landmarks,
        score=score,
        aligned=landmarks is not None,
        method=method,
        transform=matrix,
        face_size=(clipped[2] - clipped[0], clipped[3] - clipped[1]),
        pixel_sha256=region_sha256(picture.pixels, clipped),
        outside_fraction=align.outside_fraction(matrix, picture.width, picture.height, size),
    )


def aligned_face(picture: Decoded, det: Detection, size: int, method: str = "detected") -> AlignedFace:
    matrix = align.aligned_matrix(det.landmarks, size)
    return make_face(picture, det.box, matrix, size, method=method, landmarks=det.landmarks, score=det.score)


def whole_image_face(picture: Decoded, size: int) -> AlignedFace:
    w, h = picture.width, picture.height
    matrix = align.square_matrix(w / 2, h / 2, max(w, h), size)
    return make_face(picture, (0.0, 0.0, float(w), float(h)), matrix, size, method="whole_image")


def given_box_face(picture: Decoded, box: Box, size: int) -> AlignedFace:
    return make_face(picture, box, align.box_matrix(box, size), size, method="given_box")


def detector_string(detector: FaceDetector, settings: PolicySettings, picture: Decoded) -> str:
    text = f"{detector.name} {settings.describe()}"
    if settings.name in ("full_frame", "crawled"):
        text += f" searched>={min_face_px(settings, picture.width, picture.height):.0f}px"
    return text


def _view(item: Item) -> View:
    pixels = item.picture.pixels
    if item.settings.name == "precropped":
        return precropped_view(pixels, item.settings)
    if item.settings.name == "given_box" and item.given_box is not None:
        return given_box_view(pixels, item.given_box, item.settings)
    return frame_view(pixels, item.settings)


def _too_small(item: Item) -> str | None:
    s = item.settings
    if item.settings.name == "given_box" and item.given_box is not None:
        x0, y0, x1, y1 = item.given_box
        if min(x1 - x0, y1 - y0) < s.min_image:
            return f"the given face box is {x1 - x0:.0f}x{y1 - y0:.0f} px, below {s.min_image} px"
        return None
    side = min(item.picture.width, item.picture.height)
    if side < s.min_image:
        return f"{item.picture.width}x{item.picture.height} px is below the {s.min_image} px minimum of {s.name}"
    return None


REFINE_SIZE = 112
# The square ONet patch of an aligned 112-px crop: where MTCNN's proposal stages put a face aligned to the template
# (final boxes measured on demo frames average (19, 21, 94, 115); ONet sees the larger square before its regression).
REFINE_BOX = (10.0, 20.0, 102.0, 112.0)


def analyse(items: Sequence[Item], detector: FaceDetector, size: int = 112) -> list[Outcome]:
    """Faces (or a reject) for each item; the detector runs once per distinct threshold set over the whole batch."""
    outcomes = [Outcome() for _ in items]
    views: dict[tuple[float, float, float], list[tuple[int, View]]] = {}
    for i, item in enumerate(items):
        outcomes[i].detector = detector_string(detector, item.settings, item.picture)
        reason = _too_small(item)
        if reason:
            outcomes[i].reject = ("too_small", reason)
            continue
        views.setdefault(item.settings.thresholds, []).append((i, _view(item)))
    chosen: list[list[Detection]] = [[] for _ in items]
    for thresholds, members in views.items():
        if getattr(detector, "accepts_sources", False):
            # a downscaled view's RNet/ONet patches come from the full-resolution picture (final boxes as MTCNN's own)
            # (whole frames only: a canvas around a given box or a padded pre-cropped face keeps its own view)
            sources = [(items[i].picture.pixels, v.scale, v.dx, v.dy)
                       if v.scale > 1.0 + 1e-6 and items[i].settings.name in ("full_frame", "crawled") else None
                       for i, v in members]
            found = detector.detect([v.pixels for _, v in members], thresholds, sources=sources)
        else:
            found = detector.detect([v.pixels for _, v in members], thresholds)
        for (i, view), detections in zip(members, found):
            chosen[i] = _choose(items[i], view, detections, outcomes[i])
    _known_faces(items, chosen, outcomes, detector)
    _refine(items, chosen, outcomes, detector)
    for i, item in enumerate(items):
        if outcomes[i].reject is None:
            _finish(item, chosen[i], outcomes[i], size)
    return outcomes


def _choose(item: Item, view: View, detections: list[Detection] | None, outcome: Outcome) -> list[Detection]:
    picture, settings = item.picture, item.settings
    mapped = [d.mapped(view.scale, view.dx, view.dy) for d in detections or []]
    outcome.found = len(mapped)
    chosen = choose(mapped, settings, picture.width, picture.height, item.given_box)
    if chosen or settings.name == "precropped" or (settings.name == "given_box" and item.given_box is not None):
        return chosen
    if detections is None:
        outcome.reject = ("detector_error", "the face detector failed on this picture")
    else:
        detail = f"no face of {min_face_px(settings, picture.width, picture.height):.0f} px or more"
        if outcome.found:
            detail += f" ({outcome.found} found, none kept by the {settings.name} rules)"
        outcome.reject = ("no_face", detail)
    return []


# Known faces: a pre-cropped picture is a face, so where MTCNN's proposal stages find none, its ONet is asked for the
# landmarks of the picture itself, framed a few ways (fractions of the picture's square). Measured on real FER-2013
# (docs/quality.md): the proposal stages miss 14.5% of its 48-px faces; ONet on the whole picture gives plausible
# landmarks scored >= 0.3 for 87% of those, while it scores 95% of scikit-image's LFW non-faces and 99% of noise
# pictures below 0.3 (all 100 LFW faces score 1.0).
KNOWN_FACE_MIN_SCORE = 0.3
KNOWN_FACE_CANVAS = 96
KNOWN_FACE_FRAMES = ((0.0, 0.0, 1.0, 1.0), (0.06, 0.06, 0.94, 0.94), (0.0, 0.08, 0.92, 1.0),
                     (0.08, 0.08, 1.0, 1.0), (0.04, 0.0, 0.96, 0.92), (-0.06, -0.06, 1.06, 1.06))


def plausible_landmarks(marks: np.ndarray, side: float) -> bool:
    """Five points that can be a frontal-ish face filling a ``side`` px square: eyes left of right, level within 30
    degrees and 0.2-0.75 of the side apart, the nose below the eyes and above the mouth, everything near the square."""
    if not np.all(np.isfinite(marks)):
        return False
    le, re, nose, ml, mr = marks
    d = re - le
    eye_dist = float(np.hypot(*d))
    if d[0] <= 0 or abs(d[1]) > 0.58 * d[0] or not 0.2 * side <= eye_dist <= 0.75 * side:
        return False
    eye_y, mouth_y = (le[1] + re[1]) / 2, (ml[1] + mr[1]) / 2
    if not eye_y < nose[1] < mouth_y or mr[0] <= ml[0] or mouth_y - eye_y < 0.25 * eye_dist:
        return False
    return bool(np.all(marks > -0.1 * side) and np.all(marks < 1.1 * side))


def _known_faces(items: Sequence[Item], chosen: list[list[Detection]], outcomes: list[Outcome],
                 detector: FaceDetector) -> None:
    """Landmarks for pre-cropped pictures in which detection found no face (see KNOWN_FACE_FRAMES)."""
    onet = getattr(detector, "onet", None)
    jobs = [i for i, item in enumerate(items)
            if item.settings.name == "precropped" and not chosen[i] and outcomes[i].reject is None]
    if not jobs or onet is None:
        return
    canvas = KNOWN_FACE_CANVAS
    views = []
    for i in jobs:
        h, w = items[i].picture.pixels.shape[:2]
        side = float(max(h, w))
        views.append(square_view(items[i].picture.pixels, w / 2, h / 2, side, canvas))
    best: list[tuple[float, np.ndarray, tuple[float, ...]] | None] = [None] * len(jobs)
    for frame in KNOWN_FACE_FRAMES:
        box = tuple(v * canvas for v in frame)
        marks, scores = onet([v.pixels for v in views], box)
        for j in range(len(jobs)):
            if (scores[j] >= KNOWN_FACE_MIN_SCORE and plausible_landmarks(marks[j], canvas)
                    and (best[j] is None or scores[j] > best[j][0])):
                best[j] = (float(scores[j]), marks[j], box)
    for j, i in enumerate(jobs):
        if best[j] is None:
            continue
        score, marks, box = best[j]
        found = Detection(box, score, marks).mapped(views[j].scale, views[j].dx, views[j].dy)
        chosen[i] = [found]
        outcomes[i].known_face = True


def _refine(items: Sequence[Item], chosen: list[list[Detection]], outcomes: list[Outcome],
            detector: FaceDetector) -> None:
    """Landmarks found again on each aligned crop, mapped back to the source, replace the first ones.

    MTCNN's landmarks depend on how its 48-px ONet patch frames the face (the box the proposal stages passed on, in a
    downscaled view). On an aligned crop the face sits where the template puts it, so ONet is run once more on a fixed
    patch of the crop (REFINE_BOX): a second estimate from a consistent framing at full resolution. Measured on 24 demo
    frames: MTCNN run again on the final crops finds the eyes within 2.3 px of the template at 112 px (mean 1.5),
    against 3.0 px (mean 2.0) without this pass. It costs one ONet patch per face.
    """
    second_pass = getattr(detector, "refine", None)
    jobs = [(i, k) for i, item in enumerate(items) if item.settings.refine or outcomes[i].known_face
            for k in range(len(chosen[i]))]
    if not jobs or second_pass is None:  # a detector without an ONet pass (test fakes): keep the first estimate
        return
    matrices, crops = [], []
    for i, k in jobs:
        # the detector's own view: ArcFace framing (what REFINE_BOX was measured on), borders mirrored as MTCNN's
        # pyramid would see them; never a crop that is stored
        matrix = align.aligned_matrix(chosen[i][k].landmarks, REFINE_SIZE, align.SYMMETRIC_112)
        matrices.append(matrix)
        crops.append(align.warp(items[i].picture.pixels, matrix, REFINE_SIZE, cv2.BORDER_REFLECT_101))
    # ONet on the crop and on its mirror image, the second estimate mirrored back, and the two averaged: ONet is
    # not mirror-symmetric (on real FER-2013 a mirrored copy's eyes came out a median 8% of the eye distance away
    # from the original's), the mean is, so a mirrored picture gets the mirrored crop
    found = second_pass(crops + [np.ascontiguousarray(c[:, ::-1]) for c in crops], REFINE_BOX)
    direct, flipped = found[:len(crops)], found[len(crops):][:, align.MIRRORED_POINTS]
    flipped[..., 0] = 2 * align.MIRROR_AXIS - flipped[..., 0]
    eyes = align.template(REFINE_SIZE, align.SYMMETRIC_112)[:2]
    for (i, k), matrix, marks in zip(jobs, matrices, (direct + flipped) / 2):
        # a second estimate far from the template is a failure (occlusion, not a face): keep the first one
        if not np.all(np.isfinite(marks)) or np.hypot(*(marks[:2] - eyes).T).max() > 0.1 * REFINE_SIZE:
            continue
        old = chosen[i][k]
        chosen[i][k] = Detection(old.box, old.score, align.apply(cv2.invertAffineTransform(matrix), marks))


def _finish(item: Item, chosen: list[Detection], outcome: Outcome, size: int) -> None:
    picture, settings = item.picture, item.settings
    if chosen:
        method = "known_face" if outcome.known_face else "detected"
        outcome.faces = [aligned_face(picture, det, size, method) for det in chosen]
    elif settings.name == "precropped":
        outcome.faces = [whole_image_face(picture, size)]
    elif settings.name == "given_box" and item.given_box is not None:
        outcome.faces = [given_box_face(picture, item.given_box, size)]
    whole = (0.0, 0.0, float(picture.width), float(picture.height))
    for face in outcome.faces:  # a pre-cropped picture is the face: its detail is the picture's
        x, y, w, h = face.box
        face.detail_px = detail_px(picture.pixels, whole if settings.name == "precropped" else (x, y, x + w, y + h))


def detect_and_align(image: Image.Image, policy: str = "crawled", size: int = 112,
                     settings: PolicySettings | None = None, detector: FaceDetector | None = None,
                     given_box: Box | None = None) -> list[AlignedFace]:
    """The faces in one picture under ``policy`` (for `fusekit predict`); [] when a policy that needs one finds none.

    Uses one MTCNN per process, built on first use.
    """
    if detector is None:
        from fusekit.faces.detect import shared_detector

        detector = shared_detector()
    item = Item(to_rgb(image), settings or DEFAULTS[policy], given_box)
    return analyse([item], detector, size)[0].faces
