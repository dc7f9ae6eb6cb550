"""`fusekit report`: every stage's counts, the samples and the runs of a workspace on one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fusekit.cli import _echo, _workspace, app


@app.command()
def report(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The HTML file to write [default: "
                                                                 "<workspace>/report.html]."),
) -> None:
    """Write one HTML page (images and charts inline; opens with no network): the funnel of every stage, classes
    before and after balancing, duplicates between datasets, sample faces, crawl yield, review progress, and each
    run's curves, confusion matrix, per-source accuracy and Grad-CAM maps."""
    from fusekit import api

    path = api.report(_workspace(), out)
    _echo(f"report: {path}")
