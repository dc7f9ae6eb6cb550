"""The registry of dataset sources: one module per dataset family, each exporting ``SOURCES``.

``detect`` picks the variant whose layout is found at a path. A family with no module yet, or a variant with no
source class, is listed by ``fusekit datasets`` as not supported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusekit.errors import ConfigError, LayoutNotRecognised, NotSupportedYet
from fusekit.manifests import Manifest
from fusekit.sources import affectnet, ckplus, expw, fer2013, folder, jaffe, kdef, kdrama, mmi, rafdb
from fusekit.sources.base import Source, describe_folder

_MODULES = (affectnet, ckplus, expw, fer2013, folder, jaffe, kdef, kdrama, mmi, rafdb)


def _registry() -> dict[tuple[str, str], type[Source]]:
    table: dict[tuple[str, str], type[Source]] = {}
    for module in _MODULES:
        for cls in module.SOURCES:
            key = (cls.dataset, cls.variant)
            if key in table:
                raise ConfigError(f"two sources claim {key[0]}/{key[1]}: {table[key].__name__} and {cls.__name__}")
            table[key] = cls
    return table


REGISTRY = _registry()


def implemented(dataset: str, variant: str) -> bool:
    return (dataset, variant) in REGISTRY


def detect(manifest: Manifest, path: Path, variant: str | None = None,
           options: dict[str, Any] | None = None) -> tuple[type[Source], Path]:
    """The source class and anchor for ``path``; raises ``LayoutNotRecognised`` with expected vs found."""
    if variant is not None:
        spec = manifest.variant(variant)
        if not implemented(manifest.name, variant):
            raise NotSupportedYet(f"{manifest.name} variant {variant!r} is not supported yet ({spec.description})")
        candidates = [REGISTRY[(manifest.name, variant)]]
    else:
        candidates = sorted(
            (cls for (ds, _), cls in REGISTRY.items() if ds == manifest.name), key=lambda c: (c.priority, c.variant)
        )
        if not candidates:
            raise NotSupportedYet(
                f"{manifest.title} is listed but not supported yet; `fusekit datasets` shows what is. "
                f"Until then, a class-per-folder copy can go in with `fusekit ingest folder --source PATH`."
            )
    for cls in candidates:
        anchor = cls.find_for(path, options or {})
        if anchor is not None:
            return cls, anchor
    expected = " or ".join(manifest.variants[c.variant].layout for c in candidates)
    raise LayoutNotRecognised(
        f"{path} is not a {manifest.title} layout: expected {expected}; found {describe_folder(path)}"
    )
