"""One runner for part-wise work, and the distributors it hands parts to.

A stage says what its parts are (``Part``: an index, the payload its worker gets, a size for progress) and gives a
pure, picklable worker of one payload that returns the part's tables. ``run_parts`` skips the parts whose marker
exists in the stage's ``Staging`` (a killed run resumes there), hands the others to a distributor, writes each
result through the workspace (``Staging.write_part``: tables first, the marker last) in part order, and accounts for
every part, resumed or done, through the stage's ``account`` callback (its report and its progress bar).

Distributors are plain functions ``distribute(worker, items) -> iterator of (index, result)`` over ``(index,
payload)`` items, results in the order of the items and a bounded number of parts in flight:

- ``in_process``: here, one part at a time;
- ``local_processes(...)``: a context manager giving a distributor over a process pool that lives until it closes
  (so a pool whose workers each load a detector starts once for many units), started on first use;
- ``ray_tasks(...)`` (``fusekit.distribute_ray``): one Ray task per part on a cluster.

Every process pool of fusekit is built here (``process_pool``), under the one start-method rule of
``fusekit.processes.process_context``.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from fusekit.processes import process_context

if TYPE_CHECKING:
    import pyarrow as pa

    from fusekit.workspace import Staging

Item = tuple[int, Any]
Distributor = Callable[[Callable[[Any], Any], Iterable[Item]], Iterator[Item]]


@dataclass(frozen=True)
class Part:
    index: int  # the part's number in its unit: part-{index:05d}.parquet
    payload: Any  # what the worker gets (records, rows); picklable for a distributor that leaves this process
    size: int = 1  # rows, for progress and accounting


def in_process(worker: Callable[[Any], Any], items: Iterable[Item]) -> Iterator[Item]:
    """Each part here, in order."""
    for index, payload in items:
        yield index, worker(payload)


def process_pool(workers: int, *, fresh: bool = False, preload: Sequence[str] = (),
                 initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes started by ``process_context``'s rule: ``fresh`` for a parent that holds
    threads or loads a runtime a fork would copy broken (TensorFlow, JAX, PyTorch, a reader's threads)."""
    return ProcessPoolExecutor(workers, mp_context=process_context(preload, fresh=fresh), initializer=initializer,
                               initargs=initargs)


def bounded(pool: Executor, worker: Callable[[Any], Any], items: Iterable[Item], in_flight: int) -> Iterator[Item]:
    """Submit items to ``pool``, yield results in item order, never more than ``in_flight`` parts submitted and not
    yet yielded (memory stays bounded however many parts a unit has)."""
    pending: deque[tuple[int, Future[Any]]] = deque()
    for index, payload in items:
        pending.append((index, pool.submit(worker, payload)))
        while len(pending) > in_flight:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


@contextmanager
def local_processes(workers: int, *, in_flight: int | None = None, fresh: bool = False,
                    preload: Sequence[str] = (), initializer: Callable[..., None] | None = None,
                    initargs: tuple[Any, ...] = ()) -> Iterator[Distributor]:
    """A distributor over ``workers`` local processes, started at the first part it is given (a run with nothing
    to do starts none) and shut down when the context ends; ``in_flight`` parts at most (default ``workers + 1``:
    one queued behind each busy worker)."""
    pool: list[ProcessPoolExecutor] = []
    limit = in_flight if in_flight is not None else workers + 1

    def distribute(worker: Callable[[Any], Any], items: Iterable[Item]) -> Iterator[Item]:
        def started() -> Iterator[Item]:
            for item in items:
                if not pool:
                    pool.append(process_pool(workers, fresh=fresh, preload=preload, initializer=initializer,
                                             initargs=initargs))
                yield item

        iterator = started()
        first = next(iterator, None)
        if first is None:
            return
        yield from bounded(pool[0], worker, _chain(first, iterator), limit)

    try:
        yield distribute
    finally:
        for executor in pool:
            executor.shutdown(wait=True, cancel_futures=True)


def _chain(first: Item, rest: Iterator[Item]) -> Iterator[Item]:
    yield first
    yield from rest


def run_parts(parts: Iterable[Part], worker: Callable[[Any], dict[str, pa.Table]], staging: Staging, *,
              stats: Callable[[Part, dict[str, pa.Table]], dict[str, Any]],
              account: Callable[[Part, dict[str, Any], bool], None],
              distribute: Distributor = in_process) -> None:
    """Run every part not finished yet and write it; ``account(part, stats, resumed)`` is called once per part.

    ``worker(payload)`` returns the part's tables by name; ``stats(part, tables)`` what its marker records (and
    what a resumed run accounts from, without redoing the part)."""
    waiting: dict[int, Part] = {}

    def todo() -> Iterator[Item]:
        for part in parts:
            if staging.is_done(part.index):
                account(part, staging.done_stats(part.index), True)
                continue
            waiting[part.index] = part
            yield part.index, part.payload

    for index, tables in distribute(worker, todo()):
        part = waiting.pop(index)
        recorded = stats(part, tables)
        staging.write_part(index, tables, recorded)
        account(part, recorded, False)


# -- the long-lived pool of numpy work -------------------------------------------------------------------------------
_POOL: tuple[int, ProcessPoolExecutor] | None = None


def _one_thread_each() -> None:
    """One thread of BLAS and OpenCV per worker: the workers are the parallelism, and two BLAS thread pools
    spinning on two cores cost more than they give (measured on dedupe hashing: 10-25% slower)."""
    import cv2
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    cv2.setNumThreads(1)


def worker_pool(workers: int, preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (one BLAS and one OpenCV thread each), started on first use and kept for the
    life of this process, so stages that hand out numpy work in chunks (dedupe's hashing, then its confirmation)
    pay the start-up once."""
    global _POOL
    if _POOL is None or _POOL[0] != workers:
        discard_pool()
        _POOL = (workers, process_pool(workers, preload=preload, initializer=_one_thread_each))
        import atexit

        atexit.register(discard_pool)  # before module teardown, so the pool's threads exit quietly
    return _POOL[1]


def discard_pool() -> None:
    """Shut the shared pool down (without waiting: it may be broken) so that the next ``worker_pool`` starts anew."""
    global _POOL
    if _POOL is not None:
        _POOL[1].shutdown(wait=False, cancel_futures=True)
        _POOL = None
