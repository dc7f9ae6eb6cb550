"""How fusekit starts worker processes: one rule for every stage that uses a process pool.

``fork`` where the platform has it and it is safe (instant; modules already imported; no main-module re-run, so a
user's script without an ``if __name__ == "__main__":`` guard still works). Not once TensorFlow is loaded: its
threads must not be forked, so then ``forkserver`` (with ``preload`` imported once in the server), else ``spawn``.
"""

from __future__ import annotations

import multiprocessing
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
