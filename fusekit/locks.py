"""Workspace locks: OS file locks (``fcntl.flock``) under ``<workspace>/.locks/``.

Three kinds, all released by the kernel when their process ends, however it ends (a SIGKILLed holder leaves no
stale lock; a lock file that stays behind is an empty, unlocked file):

- ``workspace.lock`` -- held SHARED by every writer of one unit (ingest of a dataset variant, faces of a unit, a
  crawl) and EXCLUSIVE by the stages that rewrite whole-workspace results (dedupe, balance, remove, build). So two
  datasets ingest side by side, and nothing writes a unit while dedupe decides over all of them.
- ``unit-<unit>.lock`` -- held EXCLUSIVE by the writer of that unit (with the workspace lock shared). Ingest and the
  faces stage of a unit take the same lock: the faces of ``fer2013--csv`` are written by whoever wrote its images.
- ``swap.lock`` -- held EXCLUSIVE for the few renames that swap a staged unit into ``tables/`` (``Staging.commit``,
  ``Workspace.remove_unit``), and SHARED by readers for the time of one read (``Workspace.read``/``listing``, one
  ``fusekit status``). A reader therefore sees every unit as it was before a swap or after it, never half-swapped.

Writers never wait: a second writer stops at once with ``WorkspaceBusy`` (a user error, exit 2) naming the command
and pid that holds the lock, which every writer records in its lock file right after taking it (and clears when it
lets go). The swap lock is waited for: it is held for milliseconds. Locks nest within a process (``fusekit build``
holds the workspace lock exclusive and ingests under it). Lock files are never deleted: a process may have one
open, and a new file of the same name would be a second, independent lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from fusekit.errors import UserError

LOCKS = ".locks"
WORKSPACE_LOCK = "workspace.lock"
SWAP_LOCK = "swap.lock"
HOLD_ENV = "FUSEKIT_TEST_LOCK_HOLD"  # tests only: a writer holding its locks sleeps this long, or awaits this file


class _HasRoot(Protocol):
    root: Path


class WorkspaceBusy(UserError):
    """Another fusekit process is writing what this command would write."""


@dataclass
class _Held:
    fd: int
    exclusive: bool


# (lock path, thread id or 0) -> what this process holds. Writer locks belong to the process (a nested call in any
# thread is covered); swap locks to a thread (another thread of the process must still wait for a swap). A nested
# hold is inside the outer one (the outer one releases the lock), so nest within one thread.
_held: dict[tuple[str, int], _Held] = {}
_mutex = threading.RLock()


def _forget() -> None:  # a forked child inherits the descriptors, not the right to release them
    global _mutex
    _held.clear()
    _mutex = threading.RLock()


os.register_at_fork(after_in_child=_forget)


def command_line() -> str:
    """This process's command as a user would type it (``fusekit ingest ...``), at most 160 characters."""
    argv = list(sys.argv) or ["python"]
    first = os.path.basename(argv[0])
    words = ["fusekit", *argv[1:]] if first in ("fusekit", "__main__.py", "-m") else argv
    text = shlex.join(words)
    return text if len(text) <= 160 else text[:157] + "..."


def lock_dir(workspace: _HasRoot) -> Path:
    return Path(workspace.root) / LOCKS


def _unit_file(workspace: _HasRoot, unit: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", unit)
    if safe != unit:
        safe += "-" + hashlib.sha256(unit.encode()).hexdigest()[:8]
    return lock_dir(workspace) / f"unit-{safe}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _record(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file, if that process is still alive."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not _alive(data["pid"]):
        return None
    return data


def _holders(workspace: _HasRoot, path: Path) -> list[dict[str, Any]]:
    """Who holds ``path``: its own record; for the workspace lock held shared, the records of the unit writers.
    A holder writes its record just after taking the lock, so an empty file is read again for up to half a second."""
    for _ in range(10):
        own = _record(path)
        if own is not None:
            return [own]
        if path.name == WORKSPACE_LOCK:
            found = [r for p in sorted(lock_dir(workspace).glob("unit-*.lock")) if (r := _record(p)) is not None]
            if found:
                return found
        time.sleep(0.05)
    return []


def _busy_message(workspace: _HasRoot, path: Path) -> str:
    holders = _holders(workspace, path)
    if not holders:
        who = f"another fusekit command is writing it (lock file {path})"
        return f"the workspace {workspace.root} is busy: {who}; wait for it or stop it"
    who = ", ".join(f"'{h.get('command')}' (pid {h['pid']}) is {h.get('doing') or 'writing it'}" for h in holders)
    them = "it" if len(holders) == 1 else "them"
    return f"the workspace {workspace.root} is busy: {who}; wait for {them} or stop {them}"


@contextlib.contextmanager
def _flock(workspace: _HasRoot, path: Path, *, exclusive: bool, wait: bool, per_thread: bool,
           doing: str | None = None) -> Iterator[bool]:
    """Hold ``path`` locked; yields whether this call took the lock (False: this process or thread already held
    it). ``wait=False``: raise ``WorkspaceBusy`` instead of waiting. ``doing``: write a holder record."""
    key = (os.fspath(path), threading.get_ident() if per_thread else 0)
    with _mutex:
        held = _held.get(key)
    if held is not None and (held.exclusive or not exclusive):
        yield False
        return
    if held is not None:  # held shared, wanted exclusive: convert for a while (only for locks that are waited for)
        if not wait:
            raise RuntimeError(f"{path} is held shared by this process; it cannot be taken exclusive too")
        fcntl.flock(held.fd, fcntl.LOCK_EX)
        held.exclusive = True
        try:
            yield False
        finally:
            held.exclusive = False
            fcntl.flock(held.fd, fcntl.LOCK_SH)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not truncated on open: the file may hold the record of the process that has it locked.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if wait:
            fcntl.flock(fd, mode)
        else:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceBusy(_busy_message(workspace, path)) from None
        held = _Held(fd, exclusive)
        with _mutex:
            _held[key] = held
        try:
            if doing is not None:
                record = {"pid": os.getpid(), "command": command_line(), "doing": doing,
                          "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            yield True
        finally:
            with _mutex:
                _held.pop(key, None)
            if doing is not None:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _test_hold(took: bool) -> None:
    """Tests only: with ``FUSEKIT_TEST_LOCK_HOLD`` set, a writer that just took its locks sleeps that many seconds,
    or, when the value is not a number, waits (at most a minute) until a file of that name exists."""
    value = os.environ.get(HOLD_ENV)
    if not took or not value:
        return
    try:
        time.sleep(float(value))
    except ValueError:
        deadline = time.monotonic() + 60
        while not os.path.exists(value) and time.monotonic() < deadline:
            time.sleep(0.02)


@contextlib.contextmanager
def writing(workspace: _HasRoot, units: Iterable[str], *, doing: str | None = None) -> Iterator[None]:
    """A writer of some units: the workspace lock shared, then each unit's lock exclusive (``WorkspaceBusy`` at once
    when another process holds one). ``doing`` is what the busy message of a second writer says this one is doing
    (default: ``writing <unit>``)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_flock(workspace, lock_dir(workspace) / WORKSPACE_LOCK, exclusive=False, wait=False,
                                   per_thread=False))
        took = False
        for unit in sorted(set(units)):
            took |= stack.enter_context(_flock(workspace, _unit_file(workspace, unit), exclusive=True, wait=False,
                                               per_thread=False, doing=doing or f"writing {unit}"))
        _test_hold(took)
        yield


@contextlib.contextmanager
def writing_all(workspace: _HasRoot, doing: str = "writing the whole workspace") -> Iterator[None]:
    """A writer of whole-workspace results (dedupe, balance, remove, build): the workspace lock exclusive."""
    with _flock(workspace, lock_dir(workspace) / WORKSPACE_LOCK, exclusive=True, wait=False, per_thread=False,
                doing=doing) as took:
        _test_hold(took)
        yield


@contextlib.contextmanager
def swapping(workspace: _HasRoot) -> Iterator[None]:
    """Around the renames that swap units in or out of ``tables/``: the swap lock exclusive (waited for)."""
    with _flock(workspace, lock_dir(workspace) / SWAP_LOCK, exclusive=True, wait=True, per_thread=True):
        yield


@contextlib.contextmanager
def reading(workspace: _HasRoot) -> Iterator[None]:
    """Around one read of the tables: the swap lock shared (waited for; a swap takes milliseconds). Nothing is
    created for a workspace that does not exist, and a workspace that cannot be written (read-only) is read
    without the lock."""
    with contextlib.ExitStack() as stack:
        if Path(workspace.root).is_dir():
            with contextlib.suppress(OSError):  # a read-only workspace: nobody can be swapping units there either
                stack.enter_context(_flock(workspace, lock_dir(workspace) / SWAP_LOCK, exclusive=False, wait=True,
                                           per_thread=True))
        yield
