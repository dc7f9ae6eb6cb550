"""One exception hierarchy; the CLI renders it in one place (``cli.handle_errors``).

Every message says what was expected and how to fix it. ``exit_code`` is 2 for a user's mistake, 1 for ours.
"""

from __future__ import annotations


class FusekitError(Exception):
    """Base class: a failure fusekit can explain in one line."""

    exit_code = 1


class UserError(FusekitError):
    """Something the user can fix: a flag, a path, a layout."""

    exit_code = 2


class ConfigError(UserError):
    """An option or a config file is invalid."""


class SourceNotFound(UserError):
    """A dataset name that no manifest knows."""


class LayoutNotRecognised(UserError):
    """``--source`` is not the layout of the named dataset."""


class ArchiveError(UserError):
    """An archive given as ``--source`` that fusekit cannot extract safely: 7-Zip/RAR, unsafe, oversized, damaged."""


class NotSupportedYet(UserError):
    """A dataset or variant listed in the manifests that has no ingester yet."""


class MissingDependency(FusekitError):
    """An optional package is not installed."""

    def __init__(self, package: str, extra: str | None = None) -> None:
        hint = f'pip install "fusekit[{extra}]"' if extra else f"pip install {package}"
        super().__init__(f"{package} is not installed: {hint}")
