"""`fusekit explain`: Grad-CAM maps of a run's model over sample faces of each class (the first paper's §4.6)."""

from __future__ import annotations

from typing import Optional

import typer

from fusekit.cli import _echo, _workspace, app


@app.command()
def explain(
    run: Optional[str] = typer.Option(None, "--run", help="The run to explain [default: the latest]."),
    split: Optional[str] = typer.Option(None, "--split", help="Where the faces come from [default: test, else val, "
                                                              "else train]."),
    per_class: int = typer.Option(6, "--per-class", help="Faces per class."),
    layer: Optional[str] = typer.Option(None, "--layer", help="The feature map to explain (a layer name, or "
                                                              "BACKBONE/LAYER) [default: the last convolutional one]."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last or an epoch number."),
    method: str = typer.Option("hirescam", "--method", help="hirescam (gradients times activations, element-wise) "
                                                            "or gradcam (spatially averaged gradients); the same map "
                                                            "on globally pooled models (resnet50, densenet)."),
) -> None:
    """Write class activation maps (HiResCAM, or Grad-CAM) over sample faces per class to runs/RUN/explain/ (shown by
    `fusekit report`)."""
    from fusekit import api
    from fusekit.commands.train import _quiet_backend
    from fusekit.explain import ExplainConfig, render_explain

    _quiet_backend()
    report = api.explain(_workspace(), ExplainConfig(run=run, split=split, per_class=per_class, layer=layer,
                                                     checkpoint=checkpoint, method=method))
    _echo(render_explain(report))
