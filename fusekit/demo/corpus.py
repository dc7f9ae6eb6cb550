"""The demo corpus: the two public-domain photos, varied, written into FER-2013's CSV, CK+'s sequence folders and
KDEF's session folders (see ``fusekit.demo``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# Face boxes (x, y, w, h) found by MTCNN in the two photos; the corpus places faces relative to them.
PHOTOS = {"astronaut": (182, 64, 83, 107), "grace_hopper": (178, 110, 173, 220)}
FER_ROWS = 70


@dataclass(frozen=True)
class Photo:
    image: Image.Image
    box: tuple[int, int, int, int]


def load_photos() -> dict[str, Photo]:
    import matplotlib.cbook
    import skimage.data

    astronaut = Image.fromarray(skimage.data.astronaut()).convert("RGB")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        hopper = Image.open(io.BytesIO(handle.read())).convert("RGB")
    return {"astronaut": Photo(astronaut, PHOTOS["astronaut"]), "grace_hopper": Photo(hopper, PHOTOS["grace_hopper"])}


def _vary(photo: Photo, rng: np.random.Generator, rotate: float = 8.0) -> tuple[Image.Image, tuple[float, ...]]:
    """The photo turned a little, maybe mirrored, re-lit; returns it with the face box in its coordinates."""
    image = photo.image
    x, y, w, h = photo.box
    angle = float(rng.uniform(-rotate, rotate))
    cx, cy = x + w / 2, y + h / 2
    image = image.rotate(angle, resample=Image.BICUBIC, center=(cx, cy), fillcolor=(128, 128, 128))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
        cx = image.width - cx
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.8, 1.2)))
    image = ImageEnhance.Contrast(image).enhance(float(rng.uniform(0.8, 1.2)))
    image = ImageEnhance.Color(image).enhance(float(rng.uniform(0.6, 1.3)))
    return image, (cx, cy, w, h)


def face_crop(photo: Photo, rng: np.random.Generator, size: int, grey: bool) -> Image.Image:
    """A FER-style tight crop around the face, jittered in scale and position."""
    image, (cx, cy, w, h) = _vary(photo, rng)
    side = max(w, h) * float(rng.uniform(1.05, 1.35))
    cx += float(rng.uniform(-0.06, 0.06)) * side
    cy += float(rng.uniform(-0.06, 0.06)) * side
    crop = image.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
    crop = crop.resize((size, size), Image.BILINEAR)
    return crop.convert("L") if grey else crop


def frame(photo: Photo, rng: np.random.Generator, size: tuple[int, int], face_height: float, grey: bool,
          background: tuple[int, int, int]) -> Image.Image:
    """A full frame (lab style) with the photo pasted so that the face is `face_height` of the frame height."""
    image, (cx, cy, w, h) = _vary(photo, rng, rotate=5.0)
    scale = face_height * size[1] / h
    pasted = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))), Image.BILINEAR)
    canvas = Image.new("RGB", size, background)
    fx = int(size[0] / 2 - cx * scale + rng.uniform(-0.05, 0.05) * size[0])
    fy = int(size[1] * 0.42 - cy * scale + rng.uniform(-0.04, 0.04) * size[1])
    canvas.paste(pasted, (fx, fy))
    return canvas.convert("L") if grey else canvas


def _photo(photos: dict[str, Photo], index: int) -> Photo:
    return photos["astronaut" if index % 2 == 0 else "grace_hopper"]


def write_fer2013_csv(root: Path, photos: dict[str, Photo], rng: np.random.Generator) -> Path:
    """`fer2013.csv` (emotion,pixels,Usage) with a cut-off last row, as a damaged download would have."""
    path = root / "fer2013" / "fer2013.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    usages = ["Training"] * 50 + ["PublicTest"] * 10 + ["PrivateTest"] * 10
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for i in range(FER_ROWS):
            crop = face_crop(_photo(photos, i), rng, 48, grey=True)
            writer.writerow([i % 7, " ".join(map(str, np.asarray(crop).ravel())), usages[i]])
        handle.write("3,70 80 82 72")  # the cut-off last row
    return path.parent


def write_ckplus(root: Path, photos: dict[str, Photo], rng: np.random.Generator) -> Path:
    """CK+ as extracted: cohn-kanade-images/S###/###/*.png + Emotion/S###/###/*_emotion.txt (3 leading spaces)."""
    base = root / "ckplus"
    plan = {"S005": [(1, 3), (2, 5), (3, None)], "S010": [(1, 1), (2, 7), (4, 6)], "S011": [(1, 4), (2, 2)]}
    for s, (subject, sequences) in enumerate(plan.items()):
        for sequence, emotion in sequences:
            seq = f"{sequence:03d}"
            frames = 6 + (sequence % 3)
            picture = np.asarray(frame(_photo(photos, s), rng, (640, 490), 0.42, grey=True, background=(40, 40, 40)))
            folder = base / "cohn-kanade-images" / subject / seq
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(1, frames + 1):  # the head drifts a little from frame to frame
                Image.fromarray(np.roll(picture, 2 * k, axis=1)).save(folder / f"{subject}_{seq}_{k:08d}.png")
            label_dir = base / "Emotion" / subject / seq
            label_dir.mkdir(parents=True, exist_ok=True)
            if emotion is not None:
                (label_dir / f"{subject}_{seq}_{frames:08d}_emotion.txt").write_text(f"   {emotion:.7e}\n")
        (base / "cohn-kanade-images" / subject / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return base


def write_kdef(root: Path, photos: dict[str, Photo], rng: np.random.Generator) -> Path:
    """KDEF_and_AKDEF/KDEF/<AF01>/<AF01ANS>.JPG: 2 people x 2 sessions x 7 expressions x 3 angles, one black file."""
    base = root / "KDEF_and_AKDEF"
    expressions = ["AF", "AN", "DI", "HA", "NE", "SA", "SU"]
    for p, person in enumerate(("F01", "F02")):
        for session in "AB":
            folder = base / "KDEF" / f"{session}{person}"
            folder.mkdir(parents=True, exist_ok=True)
            for e, expression in enumerate(expressions):
                for angle in ("HL", "S", "HR"):
                    picture = frame(_photo(photos, p), rng, (562, 762), 0.28, grey=False, background=(110, 120, 135))
                    if angle != "S":
                        shear = 0.12 if angle == "HL" else -0.12
                        picture = picture.transform(picture.size, Image.AFFINE, (1, shear, -shear * 381, 0, 1, 0),
                                                    resample=Image.BILINEAR, fillcolor=(110, 120, 135))
                    if (p, session, e, angle) == (1, "B", 6, "HR"):
                        picture = Image.new("RGB", picture.size)  # the all-black files KDEF is known for
                    picture.save(folder / f"{session}{person}{expression}{angle}.JPG", quality=94)
    akdef = base / "AKDEF"
    akdef.mkdir(parents=True, exist_ok=True)
    frame(photos["astronaut"], rng, (562, 762), 0.28, False, (110, 120, 135)).save(akdef / "FAFS.JPG", quality=94)
    return base


def build_corpus(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write the demo corpus under `root`; returns the source folder of each dataset."""
    photos = load_photos()
    rng = np.random.default_rng(seed)
    return {
        "fer2013": write_fer2013_csv(root, photos, rng),
        "ckplus": write_ckplus(root, photos, rng),
        "kdef": write_kdef(root, photos, rng),
    }
