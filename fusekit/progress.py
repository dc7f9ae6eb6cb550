"""Progress reporting, injected: the library asks for a bar, the CLI decides what a bar is (tqdm, or nothing)."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Protocol


class Bar(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def close(self) -> Any: ...


class NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


BarFactory = Callable[[int | None, str], Bar]
_FACTORY: ContextVar[BarFactory] = ContextVar("fusekit_progress", default=lambda total, desc: NullBar())


@contextlib.contextmanager
def bar(total: int | None, desc: str) -> Iterator[Bar]:
    instance = _FACTORY.get()(total, desc)
    try:
        yield instance
    finally:
        instance.close()


def use(factory: BarFactory) -> None:
    _FACTORY.set(factory)
