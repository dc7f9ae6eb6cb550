"""The dataset card (`dataset/README.md`) and its bar chart: what is inside, where it came from, under which terms.

The YAML header is the Hub's dataset-card metadata (task, size category, features with the class names, splits with
counts, and `configs.data_files` pointing at the shards), so the folder can be pushed to the Hub as it is. The body
says how the splits and the resampling were made and repeats every source's terms and citation, with a warning at
the top when any source is non-commercial. No timestamps: the same build gives the same card.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from fusekit import __version__
from fusekit.balance.splits import GROUP_KEYS
from fusekit.records import SPLITS

if TYPE_CHECKING:
    from fusekit.balance.stage import BalanceReport

HF_SPLIT = {"train": "train", "val": "validation", "test": "test"}


def size_category(n: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < bound:
            return name
    return "10M<n<100M"


def header(report: BalanceReport) -> dict:
    string = {"dtype": "string"}
    features = [
        {"name": "image", "dtype": "image"},
        {"name": "label", "dtype": {"class_label": {"names": {str(i): c for i, c in enumerate(report.classes)}}}},
        *({"name": n, **string} for n in ("label_name", "dataset", "source_id", "subject", "split")),
        {"name": "augmented", "dtype": "bool"},
        {"name": "ops", "list": "string"},
        *({"name": n, **string} for n in ("parent_id", "phash")),
        {"name": "flags", "list": "string"},
    ]
    splits = [{"name": HF_SPLIT[s], "num_bytes": st.bytes, "num_examples": st.rows}
              for s, st in report.shards.items()]
    return {
        "pretty_name": "fusekit facial expressions",
        "license": "other",
        "license_name": "mixed-see-card",
        "task_categories": ["image-classification"],
        "task_ids": ["multi-class-image-classification"],
        "size_categories": [size_category(report.rows)],
        "tags": ["facial-expression-recognition", "emotion", "fusekit"],
        "source_datasets": sorted({t["dataset"] for t in report.terms}),
        "dataset_info": {
            "features": features,
            "splits": splits,
            "download_size": sum(st.bytes for st in report.shards.values()),
            "dataset_size": sum(st.image_bytes for st in report.shards.values()),
        },
        "configs": [{"config_name": "default", "data_files": [
            {"split": HF_SPLIT[s], "path": f"data/{s}-*"} for s in report.shards]}],
    }


def _table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _source_class_table(report: BalanceReport, counts, extra=None) -> str:
    datasets = sorted({d for d, _ in counts} | ({d for d, _ in extra} if extra else set()))
    rows = []
    for d in datasets:
        values = [counts.get((d, c), 0) + (extra.get((d, c), 0) if extra else 0) for c in report.classes]
        rows.append([d, *values, sum(values)])
    totals = [sum(r[i + 1] for r in rows) for i in range(len(report.classes) + 1)]
    rows.append(["**total**", *totals])
    return _table(["source", *report.classes, "total"], rows)


def summary_lines(report: BalanceReport) -> list[str]:
    """A few lines for the terminal: rows per split, target, where the shards are, the terms warning."""
    splits = ", ".join(f"{s} {st.rows:,}" for s, st in report.shards.items())
    files = sum(len(st.files) for st in report.shards.values())
    size = sum(st.bytes for st in report.shards.values())
    augmented = sum(report.augmented.values())
    lines = [f"{report.used:,} of {report.faces:,} faces used; {report.rows:,} rows ({splits}), "
             f"{augmented:,} augmented; training target {report.target if report.target is not None else '-'} "
             f"per class ({report.config.strategy if report.config.target is None else 'given'})"]
    if report.left_out:
        lines.append("left out: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report.left_out.items(),
                                                                               key=lambda kv: (-kv[1], kv[0]))))
    official = official_test_line(report)
    if official:
        lines.append(official)
    lines += [f"note: {n}" for n in report.notes]
    if report.non_commercial:
        lines.append(f"WARNING: non-commercial terms apply (from {', '.join(report.non_commercial)}); see the card")
    lines.append(f"shards: {files} file(s), {size / 1e6:.1f} MB in {report.out / 'data'}")
    lines.append(f"card: {report.out / 'README.md'}; class weights: {report.out / 'class_weights.json'}")
    return lines


def _kinds(report: BalanceReport, dataset: str) -> list[tuple[str, int]]:
    kinds = report.test_flag_kinds.get(dataset, {})
    return sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))


def official_test_line(report: BalanceReport) -> str | None:
    """The terminal's one line on official test splits: per dataset, faces in the test split of all its official
    test faces, and how many are flagged, by kind (a face may carry several)."""
    if not report.test_members:
        return None
    parts = []
    for d in sorted(report.test_members):
        flagged = report.test_flagged[d]
        parts.append(f"{d} {report.test_used[d]:,} of {report.test_members[d]:,} (" + (
            f"flagged {flagged:,}: " + ", ".join(f"{k} {v:,}" for k, v in _kinds(report, d)) if flagged
            else "none flagged") + ")")
    return "official test kept whole: " + "; ".join(parts)


def _official_test_section(report: BalanceReport) -> list[str]:
    if not report.test_members:
        return []
    rows = [[d, report.test_members[d], report.test_used[d], report.test_flagged[d],
             ", ".join(f"{k} {v:,}" for k, v in _kinds(report, d)) or "-"] for d in sorted(report.test_members)]
    out = ["## Official test splits", "",
           "Every member of a source's official test split (as its source names it: FER-2013 PrivateTest, RAF-DB "
           "test, AffectNet validation, ...) is in the test split, unaltered, so scores stay comparable with the "
           "literature. What dedupe would have removed (a face too small, blank, dark, blurred or undecodable; a "
           "duplicate of another member of the same test split, `exact_duplicate_of:<id>` / "
           "`near_duplicate_of:<id>`; a label conflict) is kept and named in the `flags` column instead (`[]` when "
           "nothing; a face may carry several)."
           + (" Copies of test faces in other splits were dropped." if report.decisions else "")
           + (f" Datasets whose split is redone ({', '.join(report.config.redo_splits)}) have no official test "
              f"split here." if report.config.redo_splits else ""), "",
           _table(["source", "official test faces", "in test split", "flagged", "flags (faces per kind)"], rows), ""]
    missing = sorted(report.test_missing.items())
    if missing:
        out += ["Not in the test split: " + ", ".join(f"{d} {n:,} ({why})" for (d, why), n in missing) + ".", ""]
    out += ["To score on the test split without the flagged faces:", "", "```python",
            'test = ds["test"].filter(lambda r: not r["flags"])', "```", "",
            "(For the dataset as a whole: `ds.filter(lambda r: not r[\"flags\"])`.) `fusekit evaluate` reports both "
            "figures.", ""]
    return out


def render(report: BalanceReport) -> str:
    cfg = report.config
    out = ["---", yaml.safe_dump(header(report), sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    out.append("# fusekit facial expressions")
    out.append("")
    if report.non_commercial:
        out += ["> [!WARNING]",
                f"> **NON-COMMERCIAL USE ONLY.** Images from {', '.join(report.non_commercial)} come under terms that "
                f"forbid commercial use (see [Sources and terms](#sources-and-terms)). This dataset, and models "
                f"trained on it, inherit those terms. Do not redistribute it where a source forbids redistribution.",
                ""]
    splits = ", ".join(f"{HF_SPLIT[s]} {st.rows:,}" for s, st in report.shards.items())
    out += [f"{report.rows:,} face images in {len(report.classes)} expression classes ({', '.join(report.classes)}), "
            f"fused from {len({t['dataset'] for t in report.terms})} source(s) by "
            f"[fusekit](https://pypi.org/project/fusekit/) {__version__} with seed {cfg.seed}. Splits: {splits}.", ""]
    out += ["```python", "from datasets import load_dataset",
            'ds = load_dataset("parquet", data_files={"train": "data/train-*.parquet", '
            '"validation": "data/val-*.parquet", "test": "data/test-*.parquet"})',
            "```", "",
            "Columns: `image` (PNG face crop, aligned where landmarks were found), `label` (class id), `label_name`, "
            "`dataset` (source), `source_id` (fusekit face id; `~augNNN` for an augmented copy), `subject`, `split`, "
            "`augmented`, `ops` (augmentations applied, with parameters), `parent_id` (the face an augmented copy was "
            "made from), `phash` (64-bit perceptual hash from dedupe), `flags` (why dedupe would have removed an official "
            "test face it kept; see [Official test splits](#official-test-splits)).", ""]
    out += ["## Classes and splits", "",
            _table(["class", "id", *(HF_SPLIT[s] for s in SPLITS if s in report.shards), "total"],
                   [[c, i, *(report.split_counts.get((s, c), 0) for s in SPLITS if s in report.shards),
                     sum(report.split_counts.get((s, c), 0) for s in SPLITS)] for i, c in enumerate(report.classes)]),
            "", "![Class counts before and after balancing](class_counts.png)", ""]
    out += ["## Counts per source and class", "",
            f"Before balancing: the {report.used:,} faces used (after dedupe), all splits.", "",
            _source_class_table(report, report.before), "",
            "After balancing: rows in the shards, all splits (augmented copies counted with their source).", "",
            _source_class_table(report, report.after, report.augmented), ""]
    if report.augmented:
        out += ["Of which augmented copies (training split only):", "",
                _source_class_table(report, report.augmented), ""]
    if report.left_out:
        out += ["Left out:", "", _table(["reason", "faces"], sorted(([k, v] for k, v in report.left_out.items()),
                                                                 key=lambda kv: (-kv[1], kv[0]))), ""]
    out += ["## How the splits were made", "",
            "- Official splits are kept: official test stays test" + (", official validation stays validation"
                                                                      if cfg.keep_official_val else
                                                                      "; official validation was merged into train")
            + ".",
            f"- Faces with no official split are split {_pct(cfg.split)} (train/validation/test), stratified by class.",
            "- Faces are linked by picture, by subject (" + ", ".join(k for k, v in GROUP_KEYS.items()
                                                                      if v == "subject")
            + "), by source picture (expw, crawl), by clip (kdrama) and by duplicate group; linked faces never "
              "straddle two splits. Official faces linked to a higher split (train to test) are left out; official "
              "test faces never are.",
            ]
    if report.carved:
        out.append(f"- Validation was carved from the official training split of {', '.join(report.carved)} "
                   f"(no official validation split).")
    if cfg.redo_splits:
        out.append(f"- Official splits redone by group: {', '.join(cfg.redo_splits)} (the K-drama split leaks frames "
                   f"of one clip across splits).")
    if not report.decisions:
        out.append("- **No dedupe decisions were used**: duplicates across sources and splits were not removed.")
    out.append("")
    out += _official_test_section(report)
    out += ["## Balancing", ""]
    if cfg.weights_only:
        out.append("Training split not resampled (`--weights-only`); use the class weights.")
    else:
        out.append(f"Training split resampled to {report.target:,} rows per class "
                   f"({'given target' if cfg.target else cfg.strategy + ' of the class counts'}): bigger classes "
                   f"down-sampled (seeded), smaller ones over-sampled with augmented copies made with "
                   f"{', '.join(cfg.augment) or 'no augmentation'} (rotation within ±{cfg.max_rotation:g}°, colour "
                   f"and brightness factors 1±{cfg.jitter:g}), each op applied with probability 1/2, seeded per copy. "
                   f"Validation and test are not resampled." if report.target else "No training rows to resample.")
    out += ["", "Class weights for the loss (`class_weights.json`, n / (k · n_class) over the training split):", "",
            _table(["class", "train rows before", "train rows after", "weight"],
                   [[c, report.train_before.get(c, 0), report.split_counts.get(("train", c), 0),
                     f"{report.weights.get(c, 0):.4f}"] for c in report.classes]), ""]
    out += ["## Sources and terms", ""]
    for t in report.terms:
        flag = " **(non-commercial)**" if t["non_commercial"] else ""
        out.append(f"### {t['dataset']}: {t['title']}")
        out.append("")
        out.append(f"- Terms ({t['terms']}){flag}: {t['summary']}" + (f" <{t['url']}>" if t["url"] else ""))
        for citation in t["citation"]:
            out.append(f"- Cite: {citation}")
        out.append("")
    out += ["## Reproduce", "", f"fusekit {__version__}, seed {cfg.seed}. Settings:", "", "```yaml",
            yaml.safe_dump({"balance": _plain(cfg.settings())}, sort_keys=True).rstrip(), "```", ""]
    if cfg.recipe_text is not None:
        out += ["Recipe (`recipe.yaml`, run with `fusekit build recipe.yaml`):", "", "```yaml",
                cfg.recipe_text.rstrip(), "```", ""]
    return "\n".join(out)


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _pct(fractions: tuple[float, float, float]) -> str:
    return "/".join(f"{100 * f:g}" for f in fractions)


def write_chart(report: BalanceReport, path: Path) -> None:
    """Bars per class: training rows before and after resampling (augmented copies hatched), and all rows used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = report.classes
    x = np.arange(len(classes))
    used = [sum(v for (d, c), v in report.before.items() if c == cls) for cls in classes]
    before = [report.train_before.get(c, 0) for c in classes]
    originals = [sum(v for (d, c), v in report.after.items() if c == cls) for cls in classes]
    train_after = [report.split_counts.get(("train", c), 0) for c in classes]
    copies = [sum(v for (d, c), v in report.augmented.items() if c == cls) for cls in classes]
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=100)
    w = 0.27
    ax.bar(x - w, used, w, label="faces used (all splits, before)", color="#9aa5b1")
    ax.bar(x, before, w, label="train before balancing", color="#4c78a8")
    ax.bar(x + w, [a - c for a, c in zip(train_after, copies)], w, label="train after: originals", color="#f58518")
    ax.bar(x + w, copies, w, bottom=[a - c for a, c in zip(train_after, copies)], label="train after: augmented",
           color="#f58518", alpha=0.5, hatch="//")
    ax.set_xticks(x, classes)
    ax.set_ylabel("images")
    ax.set_title(f"Class counts ({sum(originals) + sum(copies):,} rows in the shards)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
