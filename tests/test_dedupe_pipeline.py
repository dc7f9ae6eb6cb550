"""Issue 6 item 9 (b): public-domain photos, transformed before the faces stage, found as one group per photo
through ingest -> faces -> dedupe."""

from __future__ import annotations

import pytest
from PIL import Image, ImageEnhance, ImageOps

from fusekit.records import DECISIONS_SCHEMA
from fusekit.workspace import Workspace


def _variants(image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    return {
        "original": image,
        "scaled": image.resize((int(w * 0.6), int(h * 0.6)), Image.BICUBIC),
        "jpeg": image,  # saved at quality 40 below
        "bright": ImageEnhance.Brightness(image).enhance(1.12),
        "flip": ImageOps.mirror(image),
        "rotated": image.rotate(4, resample=Image.BICUBIC, fillcolor=(128, 128, 128)),
    }


@pytest.mark.slow
def test_transformed_photos_form_one_group_each(tmp_path):
    pytest.importorskip("fusekit.faces")
    from fusekit.config import IngestConfig
    from fusekit.dedupe import DedupeConfig, run_dedupe
    from fusekit.demo import load_photos

    root = tmp_path / "photos"
    for name, photo in load_photos().items():
        for kind, img in _variants(photo.image).items():
            path = root / "happy" / f"{name}-{kind}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path, quality=40 if kind == "jpeg" else 92)
    ws = Workspace(tmp_path / "ws")
    from fusekit import api

    api.ingest(ws, IngestConfig(name="folder", source=root, options={"name": "mine"}))
    run_dedupe(ws, DedupeConfig())
    rows = ws.read("decisions", DECISIONS_SCHEMA).to_pylist()
    groups: dict[str, set[str]] = {}
    for r in rows:
        photo = r["face_id"].split("/")[-1].split("-")[0]
        groups.setdefault(photo, set()).add(r["dup_group"])
    assert len(rows) >= 12
    assert all(len(g) == 1 and None not in g for g in groups.values()), groups
    assert len({next(iter(g)) for g in groups.values()}) == 2
    kept = [r for r in rows if r["decision"] == "keep"]
    assert len(kept) == 2
