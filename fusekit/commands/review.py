"""`fusekit review` (see fusekit/cli.py for the conventions)."""

from __future__ import annotations

import typer

from fusekit.cli import _echo, _workspace, app


@app.command()
def review(
    port: int = typer.Option(0, "--port", help="Port to listen on [default: a free one]."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless you say so)."),
) -> None:
    """Serve a local page on which to review the audit's queue: keys 1-7 relabel, x reject, a accept, z undo,
    arrows move, n/p page. Every verdict goes to the `reviews` table at once; a restart resumes where you stopped."""
    from fusekit import api

    api.review(_workspace(), host=host, port=port, echo=lambda line: typer.echo(line))
    _echo("review server stopped; verdicts are in the reviews table (`fusekit balance` applies them)")
