"""The one rule for how fusekit starts worker processes, and whether they pay.

``process_context``: ``fork`` where the platform has it and it is safe (instant; modules already imported; no
main-module re-run, so a user's script without an ``if __name__ == "__main__":`` guard still works). Not once
TensorFlow is loaded: its threads must not be forked, so then ``forkserver`` (with ``preload`` imported once in the
server), else ``spawn``. ``fresh`` asks for ``spawn`` outright: for workers that load a runtime of their own
(MTCNN's TensorFlow, the trainer's JAX or PyTorch loader) or whose parent holds threads and open files (ingest's
readers). Every pool is built by ``fusekit.runner`` with this rule. ``processes_pay``: whether other jobs leave the
cores for worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Sequence


def process_context(preload: Sequence[str] = (), fresh: bool = False) -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if fresh:
        return multiprocessing.get_context("spawn")
    if "fork" in methods and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        if preload:
            context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


def idle_cores() -> float:
    """Cores other jobs leave free: the core count less the 1-minute load average beyond this process's own
    core (the load average counts this process too). The whole count where the platform has no load average."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return float(cores)
    return max(0.0, cores - max(0.0, load - 1.0))


def processes_pay(workers: int) -> bool:
    """Whether ``workers`` worker processes can be expected to beat one process: only with at least 1.5 idle cores.
    Measured on 2 cores (docs/performance.md, ingest): with another job holding a core, 2 processes took 14.7 s
    where 1 took 10.1 s; they start, pickle and compete for the one core left."""
    return workers > 1 and idle_cores() >= 1.5
