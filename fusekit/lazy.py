"""Package names loaded on first use (PEP 562), so that importing a stage package costs nothing until a name is used.

``fusekit status`` imports each stage's status module; without this, ``import fusekit.faces`` would load OpenCV and
the detector, ``fusekit.crawl`` requests and icrawler, ``fusekit.train`` Keras.

    __all__, __getattr__ = lazy.exports(__name__, {"run_faces": "fusekit.faces.stage", ...})
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def exports(package: str, names: dict[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """``(__all__, __getattr__)`` for ``package``: each name imported from its module when first asked for."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    return sorted(names), __getattr__
