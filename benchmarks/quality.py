"""Quality on real faces: every figure of docs/quality.md from public copies of FER-2013 and CK+48.

The data never enters the repository (../shared/realdata/SOURCES.md says where to fetch it and how to unpack it).
Point this script at the unpacked folders, with flags or ``FUSEKIT_REALDATA`` (the folder extract.sh unpacked into:
``fer2013/`` with ``train/`` and ``test/``, and ``ck/ck/CK+48/``); without them it says so in one line and exits 0.

    python benchmarks/quality.py align    [--fer DIR] [--ck48 DIR] [--sheets DIR]
    python benchmarks/quality.py copies   [--fer DIR] [--ck48 DIR] [--n 1000] [--sheets DIR]
    python benchmarks/quality.py pipeline [--fer DIR] [--seed 7] [--sheets DIR]
    python benchmarks/quality.py all      [--sheets DIR]

Contact sheets (--sheets DIR): fer2013-crops.png (64 crops), copies-pairs.png, borderline-pairs.png (the 100
accepted near-duplicate pairs of different source pixels with the lowest scores against the face they were grouped
with, to check by eye for wrong merges).

``align``: ingest FER-2013 (Kaggle folders) and CK+48 as distributed, run the faces stage, print the share aligned
per dataset, the methods, and the outside_fraction of the crops; write a contact sheet of 64 FER-2013 crops.
``copies``: N real FER-2013 test faces as a class-folder tree, and each of them re-saved with every transform kind
(2x upscale, JPEG q40, brightness +12%, mirror, a crop of under 5% of the side resized back), ingested as a second
folder dataset with no flag; dedupe; print recall per transform (copy grouped with its original), precision
(copies grouped with anything but their original), the joins between CK+48 and FER-2013 (different people: must be
0), the joins among scikit-image's 100 LFW faces, and a contact sheet of the 100 closest accepted pairs of different
files within FER-2013's test split for checking by eye.
``pipeline``: ingest -> dedupe -> balance --seed 7 on the whole FER-2013 with default settings: rows per split in
the shards, PrivateTest members in the test shards, too_small drops, flags.
Workspaces go under --work (default /tmp/fusekit-quality), never into the repository.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

TRANSFORMS = ("upscale2x", "jpeg40", "brighter12", "mirror", "crop5")


def _fusekit(workspace: Path, *args: str) -> str:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fusekit", "-w", str(workspace), *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"fusekit {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    print(f"  $ fusekit -w {workspace} {' '.join(args)}   ({time.perf_counter() - started:.1f} s)")
    return done.stdout


def _table(workspace: Path, name: str, columns: list[str]):
    import pyarrow.dataset as ds

    folder = workspace / "tables" / name
    files = sorted(str(p) for p in folder.glob("*/part-*.parquet"))
    return ds.dataset(files, format="parquet").to_table(columns=columns)


def _sheet(images: list[Image.Image], path: Path, columns: int = 8, labels: list[str] | None = None) -> None:
    side = 112
    rows = -(-len(images) // columns)
    sheet = Image.new("L", (columns * side, rows * side), 255)
    for k, image in enumerate(images):
        sheet.paste(image.convert("L").resize((side, side)), ((k % columns) * side, (k // columns) * side))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    print(f"  contact sheet: {path} ({len(images)} images)")


def _crop_images(workspace: Path, ids: list[str]) -> dict[str, Image.Image]:
    import pyarrow.compute as pc

    faces = _table(workspace, "faces", ["id", "image"])
    wanted = faces.filter(pc.is_in(faces.column("id"), value_set=__import__("pyarrow").array(ids)))
    return {i: Image.open(io.BytesIO(img["bytes"])) for i, img in zip(wanted.column("id").to_pylist(),
                                                                      wanted.column("image").to_pylist())}


# -- align ---------------------------------------------------------------------------------------------------------------

def cmd_align(args: argparse.Namespace) -> None:
    work = args.work / "align"
    shutil.rmtree(work, ignore_errors=True)
    print(_fusekit(work, "ingest", "fer2013", "--source", str(args.fer)).strip().splitlines()[-2:])
    if args.ck48:
        print(_fusekit(work, "ingest", "ckplus", "--source", str(args.ck48)).strip().splitlines()[-2:])
    faces = _table(work, "faces", ["id", "dataset", "aligned", "method", "outside_fraction", "split"])
    dataset = np.array(faces.column("dataset").to_pylist())
    aligned = np.array(faces.column("aligned").to_pylist())
    outside = np.array(faces.column("outside_fraction").to_pylist(), dtype=float)
    images = _table(work, "images", ["dataset"])
    for name in sorted(set(dataset)):
        m = dataset == name
        total = int((np.array(images.column("dataset").to_pylist()) == name).sum())
        methods = Counter(np.array(faces.column("method").to_pylist())[m].tolist())
        print(f"{name}: {m.sum():,} faces of {total:,} images ({m.sum() / total:.1%} kept); aligned "
              f"{aligned[m].sum():,} = {aligned[m].mean():.1%}; methods {dict(methods)}; outside_fraction "
              f"median {np.median(outside[m]):.3f}, p75 {np.percentile(outside[m], 75):.3f}, "
              f"p90 {np.percentile(outside[m], 90):.3f}")
    if args.sheets:
        ids = [i for i, d in zip(faces.column("id").to_pylist(), dataset) if d == "fer2013"]
        rng = np.random.default_rng(0)
        chosen = sorted(rng.choice(len(ids), 64, replace=False).tolist())
        crops = _crop_images(work, [ids[k] for k in chosen])
        _sheet([crops[ids[k]] for k in chosen], args.sheets / "fer2013-crops.png")


# -- copies --------------------------------------------------------------------------------------------------------------

def transform(image: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """One copy of ``image`` (grey, 48 px) and the settings used."""
    w, h = image.size
    if kind == "upscale2x":
        return image.resize((2 * w, 2 * h), Image.BICUBIC), {}
    if kind == "jpeg40":
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=40)
        return Image.open(io.BytesIO(buf.getvalue())).convert(image.mode), {"quality": 40}
    if kind == "brighter12":
        return ImageEnhance.Brightness(image).enhance(1.12), {"factor": 1.12}
    if kind == "mirror":
        return ImageOps.mirror(image), {}
    if kind == "crop5":
        cut = float(rng.uniform(0.02, 0.049))  # of the side, split between two random edges
        dx = int(round(cut * w))
        left = int(rng.integers(0, dx + 1))
        top = int(rng.integers(0, dx + 1))
        box = (left, top, w - (dx - left), h - (dx - top))
        return image.crop(box).resize((w, h), Image.BICUBIC), {"box": box}
    raise ValueError(kind)


def _copy_tree(fer: Path, out: Path, n: int, seed: int) -> tuple[Path, Path, list[str]]:
    """N PrivateTest faces as class folders (originals/) and every transform of each (copies/)."""
    originals, copies = out / "originals", out / "copies"
    files = sorted(fer.glob("test/*/PrivateTest_*.jpg"))
    rng = np.random.default_rng(seed)
    picked = [files[k] for k in sorted(rng.choice(len(files), n, replace=False).tolist())]
    names = []
    for path in picked:
        label = path.parent.name
        image = Image.open(path).convert("L")
        (originals / label).mkdir(parents=True, exist_ok=True)
        image.save(originals / label / (path.stem + ".png"))
        names.append(f"{label}/{path.stem}")
        for kind in TRANSFORMS:
            copy, _ = transform(image, kind, rng)
            (copies / label).mkdir(parents=True, exist_ok=True)
            copy.save(copies / label / f"{path.stem}.{kind}.png")
    return originals, copies, names


def cmd_copies(args: argparse.Namespace) -> None:
    work = args.work / "copies"
    shutil.rmtree(work, ignore_errors=True)
    originals, copies, _ = _copy_tree(args.fer, work / "trees", args.n, args.seed)
    ws = work / "ws"
    for name, tree in (("ferorig", originals), ("fercopies", copies)):
        out = _fusekit(ws, "ingest", "folder", "--source", str(tree), "--name", name)
        print("  " + "\n  ".join(line for line in out.splitlines() if line.startswith(("faces", "  policy", "  warn"))))
    lfw = work / "trees" / "lfw"
    import skimage.data

    for k, face in enumerate(skimage.data.lfw_subset()[:100]):
        (lfw / "neutral").mkdir(parents=True, exist_ok=True)
        Image.fromarray((face * 255).astype(np.uint8)).save(lfw / "neutral" / f"lfw{k:03d}.png")
    out = _fusekit(ws, "ingest", "folder", "--source", str(lfw), "--name", "lfw")
    if args.ck48:
        _fusekit(ws, "ingest", "ckplus", "--source", str(args.ck48))
    _fusekit(ws, "dedupe", *args.dedupe_args)
    dec = _table(ws, "decisions", ["face_id", "dataset", "dup_group", "decision", "reason"])
    faces = _table(ws, "faces", ["id", "image_id", "method", "aligned"])
    images = _table(ws, "images", ["id", "source_path"])
    path_of = dict(zip(images.column("id").to_pylist(), images.column("source_path").to_pylist()))
    image_of = dict(zip(faces.column("id").to_pylist(), faces.column("image_id").to_pylist()))
    groups: dict[str, set[str]] = defaultdict(set)
    group_of: dict[str, str | None] = {}
    ds_of: dict[str, str] = {}
    for face_id, dataset, group in zip(dec.column("face_id").to_pylist(), dec.column("dataset").to_pylist(),
                                       dec.column("dup_group").to_pylist()):
        group_of[face_id] = group
        ds_of[face_id] = dataset
        if group:
            groups[group].add(face_id)

    def stem(face_id: str) -> str:  # the original's name a face stands for: "<label>/PrivateTest_N"
        p = path_of.get(image_of.get(face_id, ""), "") or ""
        base = p.rsplit("/", 1)[-1].split(".")[0]
        return base

    by_stem: dict[str, str] = {}
    for face_id, dataset in ds_of.items():
        if dataset == "ferorig":
            by_stem[stem(face_id)] = face_id
    found = Counter()
    total = Counter()
    wrong_copies = 0
    for face_id, dataset in ds_of.items():
        if dataset != "fercopies":
            continue
        kind = (path_of.get(image_of[face_id], "") or "").rsplit(".", 2)[-2]
        total[kind] += 1
        original = by_stem.get(stem(face_id))
        group = group_of.get(face_id)
        if group and original and group_of.get(original) == group:
            found[kind] += 1
        members = groups.get(group, set()) if group else set()
        others = {stem(m) for m in members if ds_of[m] in ("ferorig", "fercopies")} - {stem(face_id)}
        # a copy grouped with another original's faces is a wrong merge, unless those are byte-identical in FER
        wrong_copies += bool(others)
    print("recall per transform (copy grouped with its original):")
    for kind in TRANSFORMS:
        print(f"  {kind:<11} {found[kind]:>5,} / {total[kind]:>5,} = {found[kind] / max(total[kind], 1):.3f}")
    all_found, all_total = sum(found.values()), sum(total.values())
    print(f"  all         {all_found:>5,} / {all_total:>5,} = {all_found / max(all_total, 1):.3f}")
    print(f"copies grouped with faces of another original: {wrong_copies:,} of {all_total:,}")
    ck_fer = sum(1 for g in groups.values() if {ds_of[m] for m in g} >= {"ckplus"} and
                 {ds_of[m] for m in g} & {"ferorig", "fercopies"})
    lfw_groups = [g for g in groups.values() if any(ds_of[m] == "lfw" for m in g)]
    print(f"groups joining CK+48 and FER-2013 faces: {ck_fer}")
    print(f"groups holding LFW faces: {len(lfw_groups)} ({sum(len(g) for g in lfw_groups)} faces)")
    orig_groups = [g for g in groups.values() if sum(ds_of[m] == "ferorig" for m in g) > 1]
    print(f"groups with two or more originals (FER's own duplicates, or wrong merges): {len(orig_groups)}")
    if args.sheets and orig_groups:
        pairs = []
        for g in orig_groups[:100]:
            members = sorted(m for m in g if ds_of[m] == "ferorig")[:2]
            pairs.append(members)
        crops = _crop_images(ws, [m for p in pairs for m in p])
        _sheet([crops[m] for p in pairs for m in p], args.sheets / "copies-pairs.png", columns=10)


# -- pipeline ------------------------------------------------------------------------------------------------------------

def cmd_pipeline(args: argparse.Namespace) -> None:
    ws = args.work / "pipeline"
    shutil.rmtree(ws, ignore_errors=True)
    print(_fusekit(ws, "ingest", "fer2013", "--source", str(args.fer)).strip().splitlines()[-1])
    print(_fusekit(ws, "dedupe").strip())
    print(_fusekit(ws, "balance", "--seed", str(args.seed)).strip())
    import pyarrow.dataset as ds

    shards = sorted(str(p) for p in (ws / "dataset" / "data").glob("*.parquet"))
    table = ds.dataset(shards, format="parquet").to_table(columns=["split", "source_id", "augmented"])
    splits = Counter(table.column("split").to_pylist())
    print(f"shard rows per split: {dict(splits)}")
    test_ids = {s for s, sp in zip(table.column("source_id").to_pylist(), table.column("split").to_pylist())
                if sp == "test"}
    private = sum(1 for s in test_ids if "PrivateTest" in s)
    print(f"PrivateTest faces in the test shards: {private:,} (FER-2013 has 3,589)")
    dec = _table(ws, "decisions", ["split", "decision", "reason"])
    reasons = Counter((s, d, r) for s, d, r in zip(dec.column("split").to_pylist(), dec.column("decision").to_pylist(),
                                                   dec.column("reason").to_pylist()) if r)
    print("decisions with a reason (split, decision, reason): " + json.dumps({" ".join(map(str, k)): v
                                                                              for k, v in sorted(reasons.items())}))
    _borderline_pairs(ws, args)


def _borderline_pairs(ws: Path, args: argparse.Namespace) -> None:
    """The accepted near-duplicate pairs (different source pixels) with the lowest confirmation scores: where a
    wrong merge would show. Written as a contact sheet of pairs (face, the face it was grouped with) to check by
    eye."""
    from fusekit.dedupe import confirm

    dec = _table(ws, "decisions", ["face_id", "kept_id", "reason", "flags", "phash"])
    rows = [(f, k) for f, k, r, fl in zip(dec.column("face_id").to_pylist(), dec.column("kept_id").to_pylist(),
                                          dec.column("reason").to_pylist(), dec.column("flags").to_pylist())
            if k and k != f and (r in ("near_duplicate", "test_leakage") or any("near_duplicate_of" in x for x in fl))]
    hashes = _table(ws, "dedupe_hashes", ["face_id", "phash", "mirror", "thumb"])
    index = {f: i for i, f in enumerate(hashes.column("face_id").to_pylist())}
    thumbs = hashes.column("thumb").to_pylist()
    ph = hashes.column("phash").to_pylist()
    mi = hashes.column("mirror").to_pylist()
    scored = []
    for face, kept in rows:
        i, j = index[face], index[kept]
        a = np.frombuffer(thumbs[j], np.uint8).reshape(64, 64)
        b = np.frombuffer(thumbs[i], np.uint8).reshape(64, 64)
        mirrored = bin(mi[i] ^ ph[j]).count("1") < bin(ph[i] ^ ph[j]).count("1")
        scored.append((confirm._score(a, b, mirrored), face, kept))
    scored.sort()
    print(f"near-duplicate pairs accepted (different source pixels): {len(scored):,}; lowest scores: "
          + ", ".join(f"{s:.3f}" for s, _, _ in scored[:10]))
    if args.sheets and scored:
        worst = scored[:100]
        crops = _crop_images(ws, [x for _, f, k in worst for x in (f, k)])
        _sheet([crops[x] for _, f, k in worst for x in (f, k)], args.sheets / "borderline-pairs.png", columns=10)


def main(argv: list[str] | None = None) -> None:
    root = Path(os.environ.get("FUSEKIT_REALDATA", "/nonexistent"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("align", "copies", "pipeline", "all"))
    parser.add_argument("--fer", type=Path, default=root / "fer2013")
    parser.add_argument("--ck48", type=Path, default=root / "ck" / "ck" / "CK+48")  # as extract.sh unpacks it
    parser.add_argument("--work", type=Path, default=Path("/tmp/fusekit-quality"))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sheets", type=Path, default=None, help="folder for the contact sheets")
    parser.add_argument("--dedupe-args", nargs="*", default=[])
    args = parser.parse_args(argv)
    if not (args.fer / "test").is_dir():
        print(f"no real FER-2013 at {args.fer} (set FUSEKIT_REALDATA or --fer; see ../shared/realdata/SOURCES.md)")
        return
    if not args.ck48.is_dir():
        args.ck48 = None
    commands = {"align": cmd_align, "copies": cmd_copies, "pipeline": cmd_pipeline}
    for name in commands if args.command == "all" else [args.command]:
        print(f"== {name} ==")
        commands[name](args)


if __name__ == "__main__":
    main()
