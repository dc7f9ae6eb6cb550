"""`fusekit faces`: detect and align the faces of every `images` row that has none yet (see fusekit/faces/)."""

from __future__ import annotations

from typing import Optional

import typer

from fusekit.cli import _echo, _workspace, app


def _policy_pairs(pairs: list[str]) -> dict[str, str]:
    from fusekit.errors import ConfigError

    chosen = {}
    for pair in pairs:
        dataset, sep, policy = pair.partition("=")
        if not sep or not dataset or not policy:
            raise ConfigError(f"--policy takes DATASET=POLICY (e.g. kdef=crawled), got {pair!r}")
        chosen[dataset.strip()] = policy.strip()
    return chosen


@app.command()
def faces(
    redo: bool = typer.Option(False, "--redo", help="Recompute the faces of every images row, not only new ones."),
    size: int = typer.Option(112, "--size", help="Side of the aligned face crops in pixels."),
    min_face: Optional[int] = typer.Option(None, "--min-face", metavar="PX",
                                           help="Smallest face searched for in whole frames and crawled pictures "
                                                "[default: 40 px, or 10% / 8% of the shorter side]."),
    workers: int = typer.Option(0, "--workers", help="Worker processes, one MTCNN each [default: 0 = automatic]."),
    units: Optional[list[str]] = typer.Option(None, "--units", help="Only these datasets or dataset/variant units "
                                                                     "(repeatable) [default: all]."),
    policy: list[str] = typer.Option([], "--policy", metavar="DATASET=POLICY",
                                     help="Another face policy for a dataset: given_box, precropped, full_frame or "
                                          "crawled (repeatable)."),
    chunk_size: int = typer.Option(1024, "--chunk-size", help="Images per part file (the unit of resume)."),
    runner: str = typer.Option("local", "--runner", help="local (this machine's processes) or ray (one Ray task per "
                                                         "part; pip install \"fusekit[ray]\")."),
    address: Optional[str] = typer.Option(None, "--address", help="The Ray cluster for --runner ray (host:port) "
                                                                 "[default: $RAY_ADDRESS, else a local Ray]."),
) -> None:
    """Detect and align every face with MTCNN (resumable; a rerun only does what is new)."""
    from fusekit import api, render
    from fusekit.faces import FacesConfig

    config = FacesConfig.from_mapping(dict(size=size, redo=redo, workers=workers, chunk_size=chunk_size, min_face=min_face,
                         dataset_policies=_policy_pairs(policy), runner=runner, address=address))
    report = api.faces(_workspace(), config, units=list(units) if units else None)
    _echo(render.faces_report(report))
