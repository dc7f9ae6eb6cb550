"""The report: every table and run of a workspace on one self-contained HTML page (`fusekit report`).

    from fusekit.report import write_report
    path = write_report(workspace, out=None)   # <workspace>/report.html by default

`collect` reads the workspace into plain data, `html` renders it (inline SVG charts, ``data:`` pictures, no script),
`charts` draws the SVG.
"""

from __future__ import annotations

from pathlib import Path

from fusekit.workspace import Workspace, write_text_atomic

DEFAULT_NAME = "report.html"


def render_report(workspace: Workspace) -> str:
    """The page for ``workspace`` as a string (the same workspace gives the same string)."""
    from fusekit.report.collect import collect
    from fusekit.report.html import render

    return render(collect(workspace))


def write_report(workspace: Workspace, out: str | Path | None = None) -> Path:
    """Write the page to ``out`` (default ``<workspace>/report.html``) atomically; return its path."""
    path = Path(out).resolve() if out is not None else workspace.root / DEFAULT_NAME
    write_text_atomic(path, render_report(workspace))
    return path


__all__ = ["render_report", "write_report", "DEFAULT_NAME"]
