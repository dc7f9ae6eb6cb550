"""`fusekit audit` (see fusekit/cli.py for the conventions)."""

from __future__ import annotations

from typing import Optional

import typer

from fusekit.cli import _echo, _workspace, app


@app.command()
def audit(
    run: Optional[str] = typer.Option(None, "--run", help="A trained run whose penultimate features score the faces "
                                                          "[default: built-in HOG + pixel features]."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="With --run: best, last or an epoch number."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds of the logistic heads."),
    issues: Optional[int] = typer.Option(None, "--issues", help="Queue exactly N likely label errors: cleanlab's, "
                                                                "then the lowest-scored kept faces [default: all "
                                                                "that cleanlab finds]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and the PCA."),
) -> None:
    """Score every kept face out of sample and queue likely label errors, crawled faces the model rejects and
    dedupe's label conflicts for `fusekit review` (the `review_queue` table)."""
    from fusekit import api
    from fusekit.audit import AuditConfig, render_report

    if run is not None:  # Keras is loaded for the run's model: without TensorFlow's start-up lines
        from fusekit.commands.train import _quiet_backend

        _quiet_backend()
    config = AuditConfig(run=run, checkpoint=checkpoint, folds=folds, issues=issues, seed=seed)
    _echo(render_report(api.audit(_workspace(), config)))
