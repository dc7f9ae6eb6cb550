"""A workspace whose faces' class can be seen in their pixels (one stripe direction per class), with some labels
flipped on purpose, a crawled face under the wrong keyword and a dedupe label conflict: what audit, review, dedupe
and balance tests share. Built from the balance stage's synthetic table writers (no detector)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from fusekit.balance import synthetic as syn
from fusekit.taxonomy import CLASSES
from fusekit.workspace import Workspace

N = 350
FLIP_EVERY = 25  # rows 3, 28, 53, ... carry a label three classes off their stripes


def stripes(k: int, seed: int) -> bytes:
    """A 48 px grey PNG with stripes at angle k * 180/7 degrees, a random phase and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48]
    angle = np.pi * k / 7
    arr = 128 + 60 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / 3 + rng.uniform(0, 6))
    arr = arr + rng.normal(0, 12, arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def fer_id(i: int) -> str:
    return f"fer2013/csv/row{i:05d}#0"


def build(root, n: int = N) -> tuple[Workspace, dict]:
    """The workspace and what is known about it: flipped ids (train), the crawled face shown under a wrong keyword,
    the conflict faces (decision review), a test face with a flipped label."""
    ws = Workspace(root)
    rows, flipped, truth = [], set(), {}
    for i in range(n):
        k = i % 7
        label = CLASSES[k]
        split = "test" if i % 50 == 9 else "train"
        if i % FLIP_EVERY == 3 or i == 9:
            label = CLASSES[(k + 3) % 7]
            if split == "train":
                flipped.add(fer_id(i))
        truth[fer_id(i)] = CLASSES[k]
        rows.append(syn.face_row(fer_id(i), "fer2013", label, split=split, image=stripes(k, i)))
    crawl = [syn.face_row(f"crawl/bing/p{j:04d}#0", "crawl", CLASSES[j % 7], group=f"p{j:04d}",
                          image=stripes(j % 7, 10_000 + j), terms="web") for j in range(14)]
    wrong = "crawl/bing/p0100#0"  # found under "happy", looks like class 5 (surprise)
    crawl.append(syn.face_row(wrong, "crawl", "happy", group="p0100", image=stripes(5, 20_000), terms="web"))
    rows += crawl
    syn.write_faces(ws, rows)
    decisions = [syn.decision_row(r) for r in rows]
    conflicts = [fer_id(i) for i in (100, 101)]
    for d in decisions:
        if d["face_id"] in conflicts:
            d.update(decision="review", reason="label_conflict", conflict=True)
    syn.write_decisions(ws, decisions)
    return ws, {"flipped": flipped, "wrong_keyword": wrong, "conflicts": conflicts, "test_flipped": fer_id(9),
                "truth": truth, "rows": rows}
