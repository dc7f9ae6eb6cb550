"""The `fusekit` command line: parse options, build a config, call `fusekit.api`, print the report.

No pipeline logic lives here. Errors are rendered once, in `main`: a user's mistake prints one line and exits 2,
as does a fault of the machine (a full disk, permission denied, a file where a folder belongs: see
`fusekit.errors.environment_message`); a failure of ours exits 1, and the traceback is shown only with --debug.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from fusekit import __version__
from fusekit.config import IngestConfig  # light (no stage): the flags' defaults are the config's

app = typer.Typer(
    name="fusekit",
    help="Build one clean, balanced facial-expression dataset from public datasets and the web.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state: dict[str, Any] = {"workspace": None, "quiet": False, "verbose": 0}

WorkspaceOption = typer.Option(None, "--workspace", "-w", envvar="FUSEKIT_WORKSPACE",
                               help="Workspace folder [default: ./fusekit-work].")


def _workspace():
    from fusekit.workspace import Workspace

    return Workspace(_state["workspace"])


def _workspace_root() -> Path:
    """The workspace folder asked for, without opening it (for error messages)."""
    from fusekit.workspace import DEFAULT_WORKSPACE

    return Path(_state["workspace"] or os.environ.get("FUSEKIT_WORKSPACE") or DEFAULT_WORKSPACE).resolve()


def _echo(text: str) -> None:
    if not _state["quiet"]:
        typer.echo(text)


def _install_progress() -> None:
    from fusekit import progress

    if _state["quiet"] or not sys.stderr.isatty():
        return
    from tqdm import tqdm

    progress.use(lambda total, desc: tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True))


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    workspace: Optional[Path] = WorkspaceOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        typer.echo(f"fusekit {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()
    _state.update(workspace=workspace, quiet=quiet, verbose=verbose)
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=logging.ERROR if quiet else level, format="%(levelname)s %(name)s: %(message)s")
    _install_progress()


@app.command()
def datasets() -> None:
    """List every dataset and variant fusekit knows, with terms, homepage and citation."""
    from fusekit import api, render

    _echo(render.datasets_table(api.datasets()))


def _parse_options(pairs: list[str]) -> dict[str, str]:
    from fusekit.errors import ConfigError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE, got {pair!r}")
        options[key.strip().replace("-", "_")] = value
    return options


@app.command()
def ingest(
    name: str = typer.Argument(..., help="Dataset name or alias (see `fusekit datasets`)."),
    source: Path = typer.Option(..., "--source", "-s", help="The dataset as downloaded: a folder or a file."),
    variant: Optional[str] = typer.Option(None, "--variant", help="Force a variant instead of detecting it."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Extra label file (FER+: fer2013new.csv)."),
    dataset_name: Optional[str] = typer.Option(None, "--name", help="Name for a class-folder dataset."),
    option: list[str] = typer.Option([], "--option", "-o", help="Source setting KEY=VALUE (repeatable)."),
    no_faces: bool = typer.Option(False, "--no-faces", help="Do not run face detection afterwards."),
    chunk_size: int = typer.Option(IngestConfig.chunk_size, "--chunk-size",
                                   help="Rows per part file (the unit of resume)."),
    workers: int = typer.Option(IngestConfig.workers, "--workers", help="Decode threads."),
    max_extract_bytes: Optional[str] = typer.Option(
        None, "--max-extract-bytes", metavar="SIZE",
        help="An archive --source may unpack to at most this much, e.g. 200G [default: 512G, or "
             "$FUSEKIT_ARCHIVE_MAX_BYTES; always within the free disk space]."),
    max_extract_ratio: Optional[float] = typer.Option(
        None, "--max-extract-ratio", metavar="N",
        help="No archive member, and not the archive as a whole, may inflate to more than N times its compressed "
             "size (a decompression bomb) [default: 100, or $FUSEKIT_ARCHIVE_MAX_RATIO]."),
    max_members: Optional[int] = typer.Option(
        None, "--max-members", metavar="N",
        help="An archive --source may hold at most N members [default: 2,000,000, or $FUSEKIT_ARCHIVE_MAX_MEMBERS]."),
    runner: str = typer.Option(IngestConfig.runner, "--runner", help="local (this machine's processes) or ray (one "
                                                                      "Ray task per part; pip install \"fusekit[ray]\")."),
    address: Optional[str] = typer.Option(None, "--address", help="The Ray cluster for --runner ray (host:port) "
                                                                 "[default: $RAY_ADDRESS, else a local Ray]."),
) -> None:
    """Read a dataset in its native layout into the workspace."""
    from fusekit import api
    from fusekit.archives import ExtractLimits, parse_size

    limits = ExtractLimits.from_env().overridden(  # the flags win over the environment
        max_bytes=parse_size(max_extract_bytes, "--max-extract-bytes") if max_extract_bytes is not None else None,
        max_ratio=max_extract_ratio, max_members=max_members)
    options = _parse_options(option)
    if labels is not None:
        options["labels"] = str(labels.resolve())
    if dataset_name is not None:
        options["name"] = dataset_name
    config = IngestConfig.from_mapping(dict(name=name, source=source, variant=variant, options=options,
                                            chunk_size=chunk_size, workers=workers, faces=not no_faces,
                                            extract_limits=limits, runner=runner, address=address))
    _echo(api.ingest(_workspace(), config).render())


@app.command()
def remove(
    name: str = typer.Argument(..., help="Dataset name or alias."),
    variant: str = typer.Option(..., "--variant", help="The variant to remove."),
) -> None:
    """Remove an ingested dataset variant from the workspace."""
    from fusekit import api

    workspace = _workspace()
    touched = api.remove(workspace, name, variant)
    _echo(f"removed {name}/{variant} from {', '.join(touched)}")
    if workspace.units("decisions") and "faces" in touched:
        _echo("its faces were part of the last dedupe: run `fusekit dedupe` (and `fusekit balance`) again")


@app.command()
def status() -> None:
    """Per dataset: images per canonical class and split, and rejects by reason."""
    from fusekit import api, render

    workspace = _workspace()
    _echo(render.status_report(api.status(workspace), str(workspace.root), api.stage_status(workspace)))


@app.command()
def demo(
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the demo corpus and workspace "
                                                              "[default: a new temporary folder]."),
    no_train: bool = typer.Option(False, "--no-train", help="Stop after the shards (skip the tiny training run)."),
) -> None:
    """Run every stage on a demo corpus generated from public-domain photos."""
    from fusekit import demo as demo_module

    for line in demo_module.run(out, echo=_echo, train=not no_train):
        _echo(line)


def _framework_exit(exc: Exception) -> int | None:
    """The exit code for typer's/click's own control-flow exceptions (their module moved between typer releases)."""
    name = type(exc).__name__
    module = type(exc).__module__
    if not module.startswith(("typer", "click")):
        return None
    if name == "Exit":
        return int(getattr(exc, "exit_code", 0))
    if name == "Abort":
        typer.echo("Aborted.", err=True)
        return 130
    if hasattr(exc, "show"):  # usage errors: a bad flag, a missing argument
        exc.show()
        return 2
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and render errors in one place."""
    from fusekit.errors import FusekitError, environment_message

    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="fusekit", standalone_mode=False)
    except KeyboardInterrupt:
        typer.echo("Interrupted. Run the same command again to resume where it stopped.", err=True)
        code = 130
    except FusekitError as exc:
        if debug:
            raise
        typer.echo(f"Error: {exc}", err=True)
        code = exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        code = _framework_exit(exc)
        if code is None and (message := environment_message(exc, _workspace_root())) is not None:
            if debug:  # a full disk, permissions, a file in the way: the machine's fault, said with the remedy
                raise
            typer.echo(f"Error: {message}", err=True)
            code = 2
        if code is None:
            if debug:
                raise
            typer.echo(f"Error: {type(exc).__name__}: {exc}\nThis is a bug in fusekit; rerun with --debug for the "
                       f"traceback and report it.", err=True)
            code = 1
    sys.exit(code if isinstance(code, int) else 0)


# The later stages' commands live in their own modules (imported for their @app.command side effect).
from fusekit.commands import audit as _audit_commands  # noqa: E402,F401
from fusekit.commands import balance as _balance_commands  # noqa: E402,F401
from fusekit.commands import crawl as _crawl_commands  # noqa: E402,F401
from fusekit.commands import dedupe as _dedupe_commands  # noqa: E402,F401
from fusekit.commands import faces as _faces_commands  # noqa: E402,F401
from fusekit.commands import review as _review_commands  # noqa: E402,F401
from fusekit.commands import train as _train_commands  # noqa: E402,F401
from fusekit.commands import report as _report_commands  # noqa: E402,F401
from fusekit.commands import explain as _explain_commands  # noqa: E402,F401
