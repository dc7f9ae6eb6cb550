"""How fusekit starts worker processes.

``process_context``: ``fork`` where the platform has it and it is safe (instant; modules already imported; no
main-module re-run, so a user's script without an ``if __name__ == "__main__":`` guard still works). Not once
TensorFlow is loaded: its threads must not be forked, so then ``forkserver`` (with ``preload`` imported once in the
server), else ``spawn``. Balance and dedupe use it; ingest spawns its own decode workers (its parent may hold
threads and open files). ``worker_pool``: the one long-lived pool that dedupe's hashing and confirmation share.
``processes_pay``: whether other jobs leave the cores for worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Sequence


def process_context(preload: Sequence[str] = ()) -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
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


_POOL: tuple[int, object] | None = None


def _one_thread_each() -> None:
    """One thread of BLAS and OpenCV per worker: the workers are the parallelism, and two BLAS thread pools
    spinning on two cores cost more than they give (measured on dedupe hashing: 10-25% slower)."""
    import cv2
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    cv2.setNumThreads(1)


def worker_pool(workers: int, preload: Sequence[str] = ()):
    """A ``ProcessPoolExecutor`` of ``workers`` processes (``process_context``'s start method; one BLAS and one
    OpenCV thread each), started on first use and kept for the life of this process, so stages that hand out
    numpy work in chunks (dedupe's hashing, then its confirmation) pay the start-up once."""
    global _POOL
    if _POOL is None or _POOL[0] != workers:
        from concurrent.futures import ProcessPoolExecutor

        discard_pool()
        _POOL = (workers, ProcessPoolExecutor(workers, mp_context=process_context(preload),
                                              initializer=_one_thread_each))
        import atexit

        atexit.register(discard_pool)  # before module teardown, so the pool's threads exit quietly
    return _POOL[1]


def discard_pool() -> None:
    """Shut the shared pool down (without waiting: it may be broken) so that the next ``worker_pool`` starts anew."""
    global _POOL
    if _POOL is not None:
        _POOL[1].shutdown(wait=False, cancel_futures=True)  # type: ignore[attr-defined]
        _POOL = None
