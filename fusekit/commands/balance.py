"""`fusekit balance` and `fusekit build` (see fusekit/cli.py for the conventions)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fusekit.cli import _echo, _workspace, app


@app.command()
def balance(
    target: Optional[int] = typer.Option(None, "--target", help="Training rows per class (overrides --strategy)."),
    strategy: str = typer.Option("median", "--strategy", help="Per-class training target: median, max or min of "
                                                              "the class counts."),
    classes: int = typer.Option(7, "--classes", help="7 (without contempt) or 8 (with contempt)."),
    split: str = typer.Option("80/10/10", "--split", help="TRAIN/VAL/TEST percentages for samples with no official "
                                                          "split; VAL is also carved from an official train split "
                                                          "that has no val."),
    augment: str = typer.Option("flip,rotate,color,brightness", "--augment",
                                help="Augmentations for over-sampled copies (comma-separated, or none)."),
    weights_only: bool = typer.Option(False, "--weights-only", help="Do not resample; write class weights only."),
    seed: int = typer.Option(0, "--seed", help="Seed of every draw (splits, sampling, augmentation)."),
    max_rotation: float = typer.Option(5.0, "--max-rotation", help="Rotation range in degrees (the paper: 5)."),
    jitter: float = typer.Option(0.25, "--jitter", help="Colour/brightness factors drawn in 1±JITTER."),
    max_copies: Optional[int] = typer.Option(None, "--max-copies", help="At most this many augmented copies per "
                                                                        "face."),
    redo_split: list[str] = typer.Option(["kdrama"], "--redo-split", help="Dataset whose official split is redone "
                                                                          "by group (repeatable)."),
    no_official_val: bool = typer.Option(False, "--no-official-val", help="Merge official val splits into train "
                                                                          "and carve val anew."),
    include_review: bool = typer.Option(False, "--include-review", help="Keep faces that dedupe left for review."),
    workers: int = typer.Option(2, "--workers", help="Augmentation worker processes."),
) -> None:
    """Split, rebalance and write the dataset: Parquet shards, card and class weights in <workspace>/dataset/."""
    from fusekit import api
    from fusekit.balance import BalanceConfig, parse_augment, parse_split, summary_lines

    config = BalanceConfig(strategy=strategy, target=target, classes=classes, split=parse_split(split),
                           augment=parse_augment(augment), weights_only=weights_only, seed=seed,
                           max_rotation=max_rotation, jitter=jitter, max_copies=max_copies,
                           keep_official_val=not no_official_val,
                           redo_splits=tuple(d for d in redo_split if d and d != "none"),
                           include_review=include_review, workers=workers)
    report = api.balance(_workspace(), config)
    for line in summary_lines(report):
        _echo(line)
    _echo(f"{report.seconds:.1f} s")


@app.command()
def build(
    recipe: Path = typer.Argument(..., help="A recipe YAML: sources, crawl, faces, dedupe and balance settings."),
    force: bool = typer.Option(False, "--force", help="Run every step even when nothing changed."),
    runner: Optional[str] = typer.Option(None, "--runner", help="local or ray: where ingest's and faces' parts run "
                                                               "[default: the recipe's runner:, else local]."),
    address: Optional[str] = typer.Option(None, "--address", help="The Ray cluster for --runner ray (host:port)."),
) -> None:
    """Run every stage a recipe lists, in order, skipping what has not changed; the recipe is copied into the
    dataset folder."""
    from fusekit.build import render_build, run_build

    report = run_build(_workspace(), recipe, force=force, echo=_echo, runner=runner, address=address)
    _echo(render_build(report))
