"""Generated `faces` and `decisions` tables for tests and the balance benchmark (no detector, no real dataset).

Rows look like what the faces and dedupe stages write: lab datasets with subjects, FER-2013 with official splits,
crawl pictures with groups, K-drama clips, a skewed class mix (about 20:1, as the paper saw).
"""

from __future__ import annotations

import io
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
from PIL import Image

from fusekit.records import DECISIONS_SCHEMA, FACES_SCHEMA
from fusekit.taxonomy import CLASS_ID, CLASSES
from fusekit.workspace import Workspace, digest

# A skewed class mix: happy is 20x disgust.
SKEW = {"angry": 8, "disgust": 1, "fear": 4, "happy": 20, "sad": 9, "surprise": 6, "neutral": 14, "contempt": 1}


def face_png(seed: int, size: int = 48, mode: str = "L", noise: float = 0.0) -> bytes:
    """A distinct image (PNG). Smooth by default (small, for tests); ``noise`` (pixel std) makes it compress like a
    real aligned face crop (about 20 KB at 112x112 RGB with noise 10)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = (xx * rng.uniform(0.5, 4) + yy * rng.uniform(0.5, 4) + rng.uniform(0, 255)) % 255
    cx, cy, r = rng.uniform(0, size, 3)
    base = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < (r / 2 + 4) ** 2, rng.uniform(0, 255), base)
    if noise:
        base = base + rng.normal(0, noise, base.shape)
    arr = np.clip(base, 0, 255).astype(np.uint8)
    if mode == "RGB":
        arr = np.stack([arr, np.roll(arr, 3, 0), np.roll(arr, 5, 1)], -1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def face_row(face_id: str, dataset: str, label: str, *, split: str | None = None, subject: str | None = None,
             group: str | None = None, image: bytes | None = None, image_id: str | None = None,
             terms: str | None = None) -> dict[str, Any]:
    image_id = image_id or face_id.rsplit("#", 1)[0]
    return {
        "id": face_id, "image_id": image_id, "face_index": int(face_id.rsplit("#", 1)[1]) if "#" in face_id else 0,
        "dataset": dataset, "variant": "synthetic", "split": split, "subject": subject, "group": group,
        "label": label, "label_id": CLASS_ID[label], "label_source": "dataset", "terms": terms,
        "image": {"bytes": image, "path": f"{face_id}.png"}, "size": 48, "aligned": True, "policy": "precropped",
        "method": "whole_image", "box": None, "landmarks": None, "score": None, "transform": None,
        "source_width": 48, "source_height": 48, "face_width": 48, "face_height": 48, "pixel_sha256": None,
        "detector": None, "extra": None,
    }


def write_table(workspace: Workspace, table: str, unit: str, rows: list[dict[str, Any]], schema: pa.Schema,
                part_rows: int = 2048, info: dict[str, Any] | None = None) -> None:
    """Write rows as one committed unit of ``table``, in parts of ``part_rows`` (as a stage would)."""
    staging = workspace.stage(unit, {"synthetic": table, "unit": unit, "rows": len(rows)})
    for index, start in enumerate(range(0, max(len(rows), 1), part_rows)):
        part = pa.Table.from_pylist(rows[start:start + part_rows], schema=schema)
        staging.write_part(index, {table: part}, {"rows": part.num_rows})
    staging.finish({"synthetic": True, **(info or {})}, [table])


def write_faces(workspace: Workspace, rows: Iterable[dict[str, Any]]) -> None:
    """Faces rows, one unit per dataset (``<dataset>--synthetic``)."""
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_unit.setdefault(f"{row['dataset']}--{row['variant']}", []).append(row)
    for unit, unit_rows in sorted(by_unit.items()):
        write_table(workspace, "faces", unit, unit_rows, FACES_SCHEMA)


def decision_row(face: dict[str, Any], decision: str = "keep", reason: str | None = None,
                 dup_group: str | None = None, phash: str | None = None) -> dict[str, Any]:
    return {"face_id": face["id"], "dataset": face["dataset"], "split": face["split"], "label": face["label"],
            "decision": decision, "reason": reason, "detail": None, "dup_group": dup_group,
            "kept_id": face["id"] if decision == "keep" else None, "kept_why": None, "conflict": False,
            "flags": [], "phash": phash, "hash_version": "synthetic"}


def write_decisions(workspace: Workspace, rows: list[dict[str, Any]]) -> None:
    """As ``fusekit dedupe`` leaves them: with a digest of the faces they were made on."""
    write_table(workspace, "decisions", "all", rows, DECISIONS_SCHEMA,
                info={"faces": digest(workspace.listing("faces"))})


def corpus(n: int, seed: int = 0, distinct_images: int | None = None, size: int = 48,
           mode: str = "L", noise: float = 0.0) -> list[dict[str, Any]]:
    """``n`` faces over a mix of sources: FER-2013 (official splits), KDEF (subjects), crawl (pictures, some with
    two faces), K-drama (clips, official splits to be redone). ``distinct_images`` reuses a pool of images."""
    rng = np.random.default_rng(seed)
    labels = list(SKEW)
    p = np.array([SKEW[c] for c in labels], dtype=float)
    p /= p.sum()
    pool = distinct_images or n
    images = [face_png(seed * 1_000_003 + i, size, mode, noise) for i in range(min(pool, n))]
    rows = []
    draws = rng.choice(len(labels), size=n, p=p)
    kind = rng.choice(4, size=n, p=[0.45, 0.1, 0.35, 0.1])
    for i in range(n):
        label = labels[draws[i]]
        image = images[i % len(images)]
        k = kind[i]
        if k == 0:
            split = ["train", "val", "test"][int(rng.choice(3, p=[0.8, 0.1, 0.1]))]
            rows.append(face_row(f"fer2013/csv/row{i:07d}#0", "fer2013", label, split=split, image=image,
                                 terms="fer2013-research"))
        elif k == 1:
            subject = f"F{int(rng.integers(0, 40)):02d}"
            rows.append(face_row(f"kdef/jpg/{subject}/{i:07d}#0", "kdef", label, subject=subject,
                                 group=f"A{subject}", image=image, terms="kdef-noncommercial"))
        elif k == 2:
            picture = f"p{i // 2 if rng.random() < 0.3 else i:07d}"
            index = sum(1 for r in rows[-2:] if r["group"] == picture)
            rows.append(face_row(f"crawl/bing/{picture}#{index}", "crawl", label, group=picture, image=image,
                                 image_id=f"crawl/bing/{picture}", terms="web"))
        else:
            clip = f"clip{int(rng.integers(0, max(2, n // 200))):04d}"
            split = ["train", "val", "test"][int(rng.choice(3, p=[0.8, 0.1, 0.1]))]
            rows.append(face_row(f"kdrama/frames/{clip}/{i:07d}#0", "kdrama", label, split=split, group=clip,
                                 image=image, terms="kdrama-noncommercial"))
    # Crawl ids must be unique even when two faces share a picture.
    seen: dict[str, int] = {}
    for row in rows:
        if row["dataset"] == "crawl":
            base = row["image_id"]
            seen[base] = seen.get(base, -1) + 1
            row["id"] = f"{base}#{seen[base]}"
            row["face_index"] = seen[base]
    return rows


__all__ = ["CLASSES", "corpus", "face_png", "face_row", "write_faces", "write_decisions", "decision_row",
           "write_table"]
