"""`fusekit dedupe`: quality filters and duplicate groups over every `faces` row -> the `decisions` table."""

from __future__ import annotations

from typing import Optional

import typer

from fusekit.cli import _echo, _workspace, app


@app.command()
def dedupe(
    threshold: int = typer.Option(8, "--threshold", help="Hamming radius of the 64-bit pHash search."),
    min_face: int = typer.Option(32, "--min-face", help="Drop source faces whose shorter side is below PX."),
    min_contrast: float = typer.Option(5.0, "--min-contrast", help="Drop near-constant faces (grey std below)."),
    min_brightness: float = typer.Option(25.0, "--min-brightness", help="Drop dark faces (mean grey below)."),
    min_sharpness: float = typer.Option(0.15, "--min-sharpness", help="Drop blurred faces (sharpness below)."),
    min_similarity: float = typer.Option(0.82, "--min-similarity",
                                         help="Confirmation: worst 8x8-block similarity a duplicate needs."),
    keep_order: str = typer.Option("test,tier,face,score", "--keep-order",
                                   help="Which face a group keeps: comma list of test, tier, face, score (an "
                                        "official test face always comes first)."),
    conflicts: str = typer.Option("review", "--conflicts",
                                  help="Label-conflict groups: review (default), drop, or keep the chosen face."),
    no_probes: bool = typer.Option(False, "--no-probes", help="Search only plain and mirrored hashes (faster)."),
    rehash: bool = typer.Option(False, "--rehash", help="Recompute the cached hashes."),
    workers: int = typer.Option(2, "--workers", help="Hashing and confirmation workers (processes or threads)."),
    summary_only: bool = typer.Option(False, "--summary", help="Print the last run's summary and exit."),
    search_method: Optional[str] = typer.Option("auto", "--search", help="auto, flat (faiss) or mih."),
) -> None:
    """Drop low-quality faces and exact and near duplicates across datasets; write the `decisions` table.

    Official test splits are kept whole: a test member that a filter, a duplicate or a label conflict would remove
    is kept with `flags` saying why; copies of it in other splits are dropped as test leakage.
    """
    from fusekit import api
    from fusekit.dedupe import DedupeConfig, render_report, render_summary

    workspace = _workspace()
    if summary_only:
        _echo(render_summary(api.require(workspace)))
        return
    config = DedupeConfig.from_mapping(dict(threshold=threshold, min_face=min_face, min_contrast=min_contrast,
                          min_brightness=min_brightness, min_sharpness=min_sharpness,
                          min_similarity=min_similarity,
                          keep_order=tuple(c.strip() for c in keep_order.split(",") if c.strip()),
                          conflicts=conflicts, probes=not no_probes, rehash=rehash, workers=workers,
                          search_method=search_method or "auto"))
    _echo(render_report(api.dedupe(workspace, config)))
