"""The Ray distributor: the same pure workers as ``fusekit.runner``'s local processes, as Ray tasks, one per part.

Like img2dataset's ray distributor, each part is one task (``ray.remote`` around the stage's worker), at most
``in_flight`` tasks are outstanding, and results come back in part order; the driver writes each part through the
workspace, so the workspace must be on a filesystem every node sees (a part's files are read by the task from the
paths its rows name, and written by the driver). A task whose worker process dies (killed, out of memory, a lost
node) is retried by Ray up to ``max_retries`` times; since a part is written only when its result is back, a retry
never leaves duplicate rows.

Ray is an optional extra (``pip install "fusekit[ray]"``); without it ``--runner ray`` stops with one line (exit 2).
"""

from __future__ import annotations

import collections
import itertools
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from fusekit.errors import UserError
from fusekit.runner import Distributor, Item

RUNNERS = ("local", "ray")


class RayMissing(UserError):
    """``--runner ray`` on an install without Ray."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissing('--runner ray needs Ray, which is not installed: pip install "fusekit[ray]"') from None
    return ray


def check_runner(runner: str, flag: str = "--runner") -> str:
    if runner not in RUNNERS:
        raise UserError(f"{flag} takes {' or '.join(RUNNERS)}, got {runner!r}")
    if runner == "ray":
        require_ray()
    return runner


def _call(worker: Callable[[Any], Any], payload: Any) -> Any:
    return worker(payload)


@contextmanager
def ray_tasks(address: str | None = None, *, in_flight: int | None = None, max_retries: int = 3,
              num_cpus: float = 1.0) -> Iterator[Distributor]:
    """A distributor of Ray tasks on the cluster at ``address`` (``ray start --head`` prints it; None: the cluster
    ``RAY_ADDRESS`` names, else a local Ray started for this run). ``in_flight``: tasks outstanding at most
    (default: twice the cluster's CPUs, so every CPU has the next part waiting)."""
    ray = require_ray()
    started_here = False

    def connect():
        """Ray joined (or started) on the first part, not before: a run with nothing to do starts no cluster."""
        nonlocal started_here
        if not ray.is_initialized():
            started_here = True
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     ignore_reinit_error=True)
        task = ray.remote(num_cpus=num_cpus, max_retries=max_retries)(_call)
        return task, in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))

    def distribute(worker: Callable[[Any], Any], items: Iterable[Item]) -> Iterator[Item]:
        items = iter(items)
        first = next(items, None)
        if first is None:
            return
        task, limit = connect()
        shared = ray.put(worker)  # the worker (its settings) goes to the object store once, not once per part
        pending: collections.deque[tuple[int, Any]] = collections.deque()
        for index, payload in itertools.chain([first], items):
            pending.append((index, task.remote(shared, payload)))
            while len(pending) > limit:
                done, ref = pending.popleft()
                yield done, ray.get(ref)
        for done, ref in pending:
            yield done, ray.get(ref)

    try:
        yield distribute
    finally:
        if started_here:
            ray.shutdown()
