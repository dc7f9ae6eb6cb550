"""Generated look-alike faces and the copies a dataset might hold, for the accuracy tests and benchmarks.

Every face shares one layout (the aligned-crop template: eyes, nose and mouth at fixed places), so their
low-frequency structure, which is what a 64-bit pHash sees, is alike, as it is for real aligned faces. What tells
them apart is the shape of features and a per-identity skin texture. ``transform`` makes the copies the issue lists
(resize, JPEG, brightness, grey, mirror, crop, rotation); ``replace_region`` makes the hard negatives (the same face
with another mouth or other eyes).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from fusekit.imageio import encode_png

SIZE = 112
TRANSFORMS = ("resize", "jpeg", "brightness", "grey", "mirror", "crop", "rotate")


@dataclass(frozen=True)
class FaceParams:
    seed: int
    skin: tuple[int, int, int]
    background: tuple[int, int, int]
    hair: tuple[int, int, int]
    head_w: float
    head_h: float
    hair_line: float
    eye_w: float
    eye_h: float
    eye_y: float
    gaze: float
    brow_tilt: float
    nose_len: float
    mouth_w: float
    mouth_curve: float
    mouth_open: float
    texture_seed: int


def random_params(seed: int) -> FaceParams:
    rng = np.random.default_rng(seed)
    skin = tuple(int(v) for v in rng.integers([90, 60, 40], [240, 200, 180]))
    return FaceParams(
        seed=seed, skin=skin,  # type: ignore[arg-type]
        background=tuple(int(v) for v in rng.integers(0, 256, 3)),  # type: ignore[arg-type]
        hair=tuple(int(v) for v in rng.integers(0, 120, 3)),  # type: ignore[arg-type]
        head_w=float(rng.uniform(36, 46)), head_h=float(rng.uniform(46, 56)), hair_line=float(rng.uniform(18, 34)),
        eye_w=float(rng.uniform(7, 12)), eye_h=float(rng.uniform(3, 6)), eye_y=float(rng.uniform(48, 55)),
        gaze=float(rng.uniform(-2.5, 2.5)), brow_tilt=float(rng.uniform(-4, 4)), nose_len=float(rng.uniform(12, 22)),
        mouth_w=float(rng.uniform(12, 22)), mouth_curve=float(rng.uniform(-8, 8)), mouth_open=float(rng.uniform(0, 8)),
        texture_seed=int(rng.integers(1 << 30)))


def _texture(seed: int, amount: float) -> np.ndarray:
    """Smooth, identity-specific shading (blotches at several scales), in [-amount, amount]."""
    rng = np.random.default_rng(seed)
    out = np.zeros((SIZE, SIZE), np.float32)
    for cells, weight in ((4, 1.0), (8, 0.7), (16, 0.5), (32, 0.3)):
        grid = rng.normal(0, 1, (cells, cells)).astype(np.float32)
        out += weight * np.asarray(Image.fromarray(grid, mode="F").resize((SIZE, SIZE), Image.BICUBIC))
    return out / np.abs(out).max() * amount


def draw_face(p: FaceParams) -> Image.Image:
    """A frontal face on the aligned-crop template (eyes near y=52, mouth near y=92 of 112)."""
    img = Image.new("RGB", (SIZE, SIZE), p.background)
    d = ImageDraw.Draw(img)
    cx = SIZE / 2
    top = 60 - p.head_h
    d.ellipse([cx - p.head_w, top - 4, cx + p.head_w, top + 2 * p.head_h + 4], fill=p.hair)
    d.ellipse([cx - p.head_w + 3, top + p.hair_line * 0.6, cx + p.head_w - 3, top + 2 * p.head_h], fill=p.skin)
    dark = tuple(max(0, c - 90) for c in p.skin)
    for ex in (38.0, 74.0):
        d.ellipse([ex - p.eye_w / 2, p.eye_y - p.eye_h, ex + p.eye_w / 2, p.eye_y + p.eye_h], fill=(235, 235, 235))
        px = ex + p.gaze
        d.ellipse([px - 2.5, p.eye_y - 2.5, px + 2.5, p.eye_y + 2.5], fill=(30, 20, 15))
        tilt = p.brow_tilt if ex < cx else -p.brow_tilt
        d.line([ex - 8, p.eye_y - 9 + tilt, ex + 8, p.eye_y - 9 - tilt], fill=p.hair, width=3)
    d.line([cx, 58, cx - 3, 58 + p.nose_len, cx + 3, 58 + p.nose_len], fill=dark, width=2)
    my = 92
    lips = (150, 60, 60)
    if p.mouth_open > 2:
        d.ellipse([cx - p.mouth_w / 2, my - p.mouth_open / 2 + p.mouth_curve / 3, cx + p.mouth_w / 2,
                   my + p.mouth_open / 2 + p.mouth_curve / 3], fill=(60, 20, 20), outline=lips, width=2)
    else:
        d.line([cx - p.mouth_w / 2, my, cx, my + p.mouth_curve, cx + p.mouth_w / 2, my], fill=lips, width=3)
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(0.8)), np.float32)
    arr = arr + _texture(p.texture_seed, 28)[..., None]
    noise = np.random.default_rng(p.texture_seed + 1).normal(0, 3, arr.shape[:2])[..., None]
    return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))


def face(seed: int) -> Image.Image:
    return draw_face(random_params(seed))


def encode(img: Image.Image, fmt: str = "PNG", quality: int = 90) -> bytes:
    if fmt == "PNG":  # as the faces stage stores aligned crops (fusekit's own encoder), at the fast level
        return encode_png(np.asarray(img), level=1)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def transform(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One of the copies the issue names, at the same crop size; amounts drawn within the issue's bounds."""
    w, h = img.size
    if kind == "resize":
        side = int(rng.integers(40, 96))
        return img.resize((side, side), Image.BILINEAR).resize((w, h), Image.BICUBIC)
    if kind == "jpeg":
        return Image.open(io.BytesIO(encode(img, "JPEG", int(rng.integers(30, 91))))).convert("RGB")
    if kind == "brightness":
        return ImageEnhance.Brightness(img).enhance(float(rng.choice([-1, 1]) * rng.uniform(0.05, 0.15) + 1))
    if kind == "grey":
        return ImageOps.grayscale(img).convert("RGB")
    if kind == "mirror":
        return ImageOps.mirror(img)
    if kind == "crop":
        frac = rng.uniform(0.02, 0.05)
        cw, ch = w * (1 - frac), h * (1 - frac)
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        return img.crop((round(x0), round(y0), round(x0 + cw), round(y0 + ch))).resize((w, h), Image.BICUBIC)
    if kind == "rotate":
        angle = float(rng.choice([-1, 1]) * rng.uniform(2, 5))
        fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(axis=0))
        return img.rotate(angle, resample=Image.BICUBIC, fillcolor=fill)
    raise ValueError(kind)


def replace_region(p: FaceParams, region: str, seed: int) -> FaceParams:
    """The same face with another mouth or other eyes (the hard negatives: a different expression, same photo)."""
    other = random_params(seed)
    if region == "mouth":
        # force a visibly different mouth: open <-> closed, and the other curvature
        return replace(p, mouth_w=other.mouth_w, mouth_curve=-np.sign(p.mouth_curve or 1) * max(4, abs(other.mouth_curve)),
                       mouth_open=0.0 if p.mouth_open > 2 else float(max(5.0, other.mouth_open)))
    if region == "eyes":
        return replace(p, eye_h=1.2 if p.eye_h > 3 else 5.5, gaze=-p.gaze if abs(p.gaze) > 1.5 else 2.5,
                       brow_tilt=-p.brow_tilt if abs(p.brow_tilt) > 2 else 4.0)
    raise ValueError(region)


REGIONS = {"mouth": (30, 80, 82, 106), "eyes": (22, 38, 90, 64)}  # (x0, y0, x1, y1) on the 112 template


def paste_region(img: Image.Image, donor: Image.Image, region: str) -> Image.Image:
    """``img`` with one region (mouth or eyes, feathered edges) taken from ``donor``, matched in mean and contrast."""
    x0, y0, x1, y1 = REGIONS[region]
    donor = match_stats(donor, img)
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).rectangle([x0, y0, x1, y1], fill=255)
    out = img.copy()
    out.paste(donor, (0, 0), mask.filter(ImageFilter.GaussianBlur(2)))
    return out


def match_stats(img: Image.Image, reference: Image.Image) -> Image.Image:
    """``img`` with the mean and contrast of ``reference`` (per channel)."""
    a = np.asarray(img, np.float32)
    r = np.asarray(reference, np.float32)
    out = (a - a.mean((0, 1))) / (a.std((0, 1)) + 1e-6) * r.std((0, 1)) + r.mean((0, 1))
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
