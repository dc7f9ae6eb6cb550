"""Learnability on real-like faces, end to end (issue 14, item 1): each model family must bring the training loss well
below that of a constant guess within a fixed, small step budget.

Issue 14: the `cnn-baseline` preset's Model 2 (cnn2, Adam 1e-3) sat at the loss of a constant guess for two epochs on
real FER-2013 (inputs in [0, 1], Glorot-uniform kernels); commit b3f5234 standardises each picture and draws the ReLU
kernels from He-normal. A test on an easy synthetic task (tests/test_train.py's bright bands, the `tiny` model) could
not see that. Here the faces are FER-style 48-px grey crops of the two public-domain photos of `fusekit.demo`, and
the label is carried by a facial feature only: the mouth, drawn at the photo's own mouth (a smile arc, a frown arc, or
an open dark oval, over a soft skin patch that hides the real mouth) before the photo is turned, mirrored, re-lit,
cropped and scaled as the demo's FER rows are. Both photos appear in every class, so nothing but the mouth tells the
classes apart.

The corpus goes through the real pipeline in FER-2013's CSV layout: ingest (its faces stage runs the real MTCNN and
aligns every crop), dedupe with the demo recipe's settings (the corpus is two photos varied: at the default radius
and confirmation nearly all of it is one duplicate group), balance --seed 0, then `run_train` on the shards.

Measured on this corpus (training loss of the last epoch, training seeds 0/1/2/3; a constant guess ln 3 = 1.099,
the bound 0.6 x ln 3 = 0.659), with the budgets of `BUDGETS` (batch x epochs x max steps per epoch):

    model       budget     cnn models of b3f5234        before it (Glorot-uniform, no Standardize)
    cnn1        32x4x9     0.091 0.069 0.382 0.025      0.906 0.662 0.798 0.693
    cnn2        32x4x9     0.191 0.254 0.237 0.290      1.150 1.104 1.175 1.144
    cnn3        32x3x9     0.276 0.213 0.452 0.340      0.381 0.490 0.433 0.473
    densenet40  16x5x8     0.264 0.197 0.426 0.288      (not changed by b3f5234)
    resnet50    32x4x9     0.080 0.128 0.099 0.297      (not changed by b3f5234)

So with the old models cnn2 stays at ln 3 for all 36 steps and cnn1 only starts to learn in the last epoch: both
fail here. The old cnn3 (batch norm after every convolution) learned this task as well; its regression is not seen.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

pytestmark = pytest.mark.slow

# Mouth corners (left, right) that MTCNN finds in the two photos of fusekit.demo (full-frame detection).
MOUTHS = {"astronaut": ((200.7, 138.5), (245.2, 140.6)), "grace_hopper": ((230.3, 277.2), (305.2, 272.7))}
EXPRESSIONS = ("happy", "sad", "surprise")
FER_CODE = {"happy": 3, "sad": 4, "surprise": 5}  # FER-2013's emotion column
ROWS = {"Training": 100, "PublicTest": 10, "PrivateTest": 10}  # per class
CONTRAST = 1.0  # the lips: 1 = dark grey (40), 0 = the skin
CHANCE = math.log(len(EXPRESSIONS))  # the loss of a constant guess (the class shares are equal)
BOUND = 0.6 * CHANCE

# (batch size, epochs, max steps per epoch): the smallest budgets that passed with margin on 4 training seeds (the
# table above; one epoch less failed on some seeds for cnn1, or came within 20% of the bound for densenet40 and
# resnet50). densenet40 costs ~2 s a step of 16 on two cores (~0.9 s for resnet50's steps of 32).
BUDGETS = {
    "cnn1": (32, 4, 9),
    "cnn2": (32, 4, 9),
    "cnn3": (32, 3, 9),
    "densenet40": (16, 5, 8),
    "resnet50": (32, 4, 9),
}
# cnn*: the second paper's preset (Adam 1e-3, no L2) at its 48-px grey input, without the preset's on-line augmentation:
# the budget is a few dozen steps, and what this guards is initialisation and input scaling (the plateau), which
# augmentation would only slow.
# densenet40 and resnet50: the defaults (Adam 1e-3) without augmentation and L2, at 48 px grey ("reduced size": their
# natural input is 112 px RGB). The `paper` preset (SGD 1e-4) is not meant to learn in a few dozen steps.
SETTINGS = {
    "cnn1": dict(preset="cnn-baseline", augment="none"),
    "cnn2": dict(preset="cnn-baseline", augment="none"),
    "cnn3": dict(preset="cnn-baseline", augment="none"),
    "densenet40": dict(optimizer="adam", lr=1e-3, l2=0.0, augment="none", input_size=48, channels=1),
    "resnet50": dict(optimizer="adam", lr=1e-3, l2=0.0, augment="none", input_size=48, channels=1),
}


def with_mouth(photo, mouth, expression: str, rng: np.random.Generator):
    """``photo`` (a `fusekit.demo.Photo`) with ``expression``'s mouth drawn over its own (``mouth``: its corners),
    jittered a little."""
    from fusekit.demo import Photo

    (lx, ly), (rx, ry) = mouth
    width = rx - lx
    cx = (lx + rx) / 2 + rng.uniform(-0.06, 0.06) * width
    cy = (ly + ry) / 2 + rng.uniform(-0.06, 0.06) * width
    half = width / 2 * rng.uniform(0.9, 1.1)
    depth = width * 0.28 * rng.uniform(0.8, 1.2)
    # drawn in a window around the mouth: cheap, the rest of the photo is copied untouched
    x0, y0 = int(cx - width), int(cy - width)
    window = photo.image.crop((x0, y0, x0 + 2 * int(width), y0 + 2 * int(width)))
    cx, cy = cx - x0, cy - y0
    pixels = np.asarray(window)
    # the skin beside and above the mouth (the cheek), as the colour of the patch that hides the photo's own mouth
    cheek = pixels[int(cy - 0.45 * width):int(cy - 0.3 * width), int(cx - 0.6 * width):int(cx - 0.35 * width)]
    skin = tuple(int(v) for v in np.median(cheek.reshape(-1, 3), axis=0))
    lips = tuple(int(s + (40 - s) * CONTRAST) for s in skin)
    patch = (cx - 0.7 * width, cy - 0.3 * width, cx + 0.7 * width, cy + 0.35 * width)
    layer = window.copy()
    draw = ImageDraw.Draw(layer)
    draw.ellipse(patch, fill=skin)
    line = max(2, int(width * 0.09))
    if expression == "happy":  # the lower half of an ellipse: corners up
        draw.arc((cx - half, cy - depth, cx + half, cy + depth), 10, 170, fill=lips, width=line)
    elif expression == "sad":  # the upper half, one depth lower: corners down
        draw.arc((cx - half, cy, cx + half, cy + 2 * depth), 190, 350, fill=lips, width=line)
    else:  # an open mouth
        r = half * 0.45
        draw.ellipse((cx - r, cy - 1.3 * r, cx + r, cy + 1.3 * r), fill=lips)
    mask = Image.new("L", window.size, 0)
    ImageDraw.Draw(mask).ellipse(patch, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(width * 0.08))
    image = photo.image.copy()
    image.paste(Image.composite(layer, window, mask), (x0, y0))
    return Photo(image, photo.box)


def framed(photo, name: str):
    """The photo cut down to what `face_crop` can reach (the face box's centre +- 1.15 x its longer side, enough for
    its largest crop turned 8 degrees) and scaled so that the longer side of the face is at most 110 px (the crop is
    48 px): nearly the same crops, several times cheaper. Returns the new photo and its mouth corners."""
    from fusekit.demo import Photo

    x, y, w, h = photo.box
    scale = min(1.0, 110 / max(w, h))
    reach = 1.15 * max(w, h)
    x0, y0 = int(x + w / 2 - reach), int(y + h / 2 - reach)
    window = Image.new("RGB", (int(2 * reach),) * 2, (128, 128, 128))  # outside the photo: demo's fill colour
    window.paste(photo.image, (-x0, -y0))
    window = window.resize((round(window.width * scale), round(window.height * scale)), Image.LANCZOS)
    mouth = tuple(((px - x0) * scale, (py - y0) * scale) for px, py in MOUTHS[name])
    return Photo(window, ((x - x0) * scale, (y - y0) * scale, w * scale, h * scale)), mouth


def mouth_faces(n: int, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """``n`` FER-style 48-px grey crops (as `fusekit.demo.face_crop` makes them), the photos and classes in turn."""
    from fusekit.demo import face_crop, load_photos

    photos = {name: framed(photo, name) for name, photo in load_photos().items()}
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        name = ("astronaut", "grace_hopper")[i % 2]
        expression = EXPRESSIONS[(i // 2) % len(EXPRESSIONS)]
        photo, mouth = photos[name]
        out.append((expression, face_crop(with_mouth(photo, mouth, expression, rng), rng, 48, grey=True)))
    return out


def write_corpus(root: Path, seed: int = 0) -> Path:
    """fer2013/fer2013.csv (emotion,pixels,Usage) of mouth faces: ROWS per class and usage."""
    path = root / "fer2013" / "fer2013.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    usages = [usage for usage, n in ROWS.items() for _ in range(n * len(EXPRESSIONS))]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for (expression, crop), usage in zip(mouth_faces(len(usages), seed), usages):
            writer.writerow([FER_CODE[expression], " ".join(map(str, np.asarray(crop).ravel())), usage])
    return path.parent


def contact_sheet(path: Path, n: int = 48, seed: int = 0) -> Path:
    """The first ``n`` crops, 2x, 8 to a row (to look at: does the mouth land on the mouth?)."""
    faces = mouth_faces(n, seed)
    sheet = Image.new("L", (8 * 96, -(-n // 8) * 96))
    for k, (_, crop) in enumerate(faces):
        sheet.paste(crop.resize((96, 96), Image.NEAREST), ((k % 8) * 96, (k // 8) * 96))
    sheet.save(path)
    return path


@pytest.fixture(scope="module")
def mouth_dataset(tmp_path_factory):
    """ingest (with faces) -> dedupe -> balance of the mouth corpus: (workspace, dataset folder, reports)."""
    from fusekit import api
    from fusekit.balance.config import BalanceConfig
    from fusekit.config import IngestConfig
    from fusekit.dedupe.stage import DedupeConfig
    from fusekit.workspace import Workspace

    root = tmp_path_factory.mktemp("learns")
    source = write_corpus(root / "corpus")
    workspace = Workspace(root / "ws")
    ingest = api.ingest(workspace, IngestConfig(name="fer2013", source=source))
    # the demo recipe's dedupe settings (fusekit/demo_recipe.yaml): exact-hash search, confirmed only at 0.995
    dedupe = api.dedupe(workspace, DedupeConfig(threshold=0, probes=False, min_face=0, min_similarity=0.995))
    balance = api.balance(workspace, BalanceConfig(seed=0))
    return workspace, workspace.root / "dataset", (ingest, dedupe, balance)


def test_the_mouth_corpus_goes_through_the_pipeline(mouth_dataset):
    from fusekit.train.data import open_shards

    _, data, (_, _, balance) = mouth_dataset
    shards = open_shards(data)
    per_class = {c: balance.split_counts[("train", c)] for c in EXPRESSIONS}
    # dedupe at the demo's settings drops at most a few; balance fills each class back to the median
    assert min(per_class.values()) >= 0.9 * ROWS["Training"], (per_class, balance.left_out)
    assert sum(per_class.values()) == shards.rows("train")
    assert shards.rows("val") >= 0.9 * ROWS["PublicTest"] * len(EXPRESSIONS) and shards.rows("test")


@pytest.mark.parametrize("model", list(BUDGETS))
def test_each_model_family_learns_the_mouth_within_a_fixed_budget(mouth_dataset, model):
    from fusekit.train import TrainConfig, run_train

    workspace, data, _ = mouth_dataset
    batch, epochs, steps = BUDGETS[model]
    report = run_train(workspace, TrainConfig(data=data, model=model, run=f"learns-{model}", epochs=epochs,
                                              batch_size=batch, max_steps=steps, seed=0, patience=0,
                                              keep_checkpoints=1, verbose=False, **SETTINGS[model]))
    losses = [round(h["loss"], 3) for h in report.history]
    print(f"{model} ({batch}x{epochs}x{steps}): training loss by epoch {losses}")
    assert len(losses) == epochs
    assert losses[-1] < BOUND, f"{model}: training loss by epoch {losses}; a constant guess is ln 3 = {CHANCE:.3f}"
