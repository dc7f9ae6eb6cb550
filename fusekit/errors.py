"""One exception hierarchy; the CLI renders it in one place (``cli.main``).

Every message says what was expected and how to fix it. ``exit_code`` is 2 for a user's mistake, 1 for ours.
Faults of the machine (a full disk, permissions, a file where a folder belongs) are OSErrors, rendered as user
errors by ``environment_message``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


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


class WorkspaceError(UserError):
    """The workspace cannot be used as it is: a file where its folder should be, not writable."""


# -- faults of the machine, not of fusekit ----------------------------------------------------------------------------
# An OSError with one of these errnos is the environment's doing (a full disk, permissions, a file in the way); the
# CLI renders it as a user error with the remedy, and only other exceptions are reported as fusekit's bugs.

_DISK_FULL = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_NOT_A_FOLDER = {errno.ENOTDIR, errno.EEXIST}
_TOO_MANY_FILES = {errno.EMFILE, errno.ENFILE}


def os_fault(exc: BaseException) -> OSError | None:
    """The environmental OSError behind ``exc`` (itself, or what it was raised from), or None."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, OSError) and current.errno in (*_DISK_FULL, *_DENIED, *_NOT_A_FOLDER,
                                                              *_TOO_MANY_FILES):
            return current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        seen += 1
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _blocking_file(path: Path) -> Path | None:
    """The nearest of ``path`` and its parents that exists and is not a folder (what stops a folder being made)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return None if candidate.is_dir() else candidate
        except OSError:
            return None
    return None


def _denied_at(path: Path) -> Path:
    """The first of ``path``'s parents (from the top) or ``path`` itself that this process may not read or enter."""
    for candidate in (*reversed(path.parents), path):
        if not os.path.lexists(candidate):
            return candidate.parent if candidate != path.anchor else path
        wanted = os.R_OK | (os.X_OK if os.path.isdir(candidate) else 0)
        if not os.access(candidate, wanted):
            return candidate
    return path


def environment_message(exc: BaseException, workspace: str | os.PathLike[str] | None) -> str | None:
    """One line with the remedy for a fault of the machine (ENOSPC, EACCES, EROFS, a file where a folder belongs...),
    or None when ``exc`` is not one (then it is fusekit's own failure). ``workspace`` is the workspace root."""
    fault = os_fault(exc)
    if fault is None:
        return None
    root = Path(workspace).resolve() if workspace is not None else None
    name = fault.filename if isinstance(fault.filename, (str, bytes, os.PathLike)) else None
    path = Path(os.fsdecode(name)).absolute() if name is not None else root
    in_workspace = path is not None and root is not None and _inside(path, root)
    code = fault.errno
    if code in _DISK_FULL:
        where = root if (in_workspace or path is None) else path
        return f"{_DISK_FULL[code]} at {where}: free space and run the same command again (it resumes)"
    if code in _NOT_A_FOLDER:
        blocker = _blocking_file(path) if path is not None else None
        if blocker is None:
            return None  # an existing folder (EEXIST): not the environment's doing
        if root is not None and blocker == root:
            return f"the workspace {root} is a file, not a folder: give --workspace a folder (or move the file away)"
        return f"{blocker} is a file where fusekit needs a folder: move it away and run the same command again"
    if code in _TOO_MANY_FILES:
        return f"too many open files ({fault.strerror}): raise the limit (ulimit -n 4096) and run the same command again"
    shown = path if path is not None else "a file"
    if in_workspace or (path is None and root is not None):
        if code == errno.EROFS:
            return (f"permission denied: {shown}: the workspace {root} is on a read-only file system; use a "
                    f"workspace on a writable disk (--workspace DIR)")
        return (f"permission denied: {shown}: the workspace {root} is not writable; make it writable "
                f"(chmod -R u+w {root}) or use another one (--workspace DIR)")
    if code == errno.EROFS:
        return f"permission denied: {shown} is on a read-only file system and fusekit needs to write there"
    denied = _denied_at(path) if path is not None else shown
    return (f"permission denied: {denied}: fusekit cannot read it; give read access (chmod -R u+rX {denied}) and "
            f"run the same command again")
