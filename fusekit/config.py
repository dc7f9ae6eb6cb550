"""Frozen per-stage configuration, validated before any work starts, and the one way a config is made from a
mapping (``from_mapping``): a command's flags and a recipe's block go through the same checks.

A config's own checks (``__post_init__``) name the flag (``--chunk-size must be at least 1``); made from a recipe
(``where`` given), the same message names the recipe key instead (``recipe r.yaml: faces: chunk_size must be ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from fusekit.errors import ConfigError

C = TypeVar("C")
_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def from_mapping(cls: type[C], data: dict[str, Any] | None, where: str | None = None) -> C:
    """``cls(**data)`` with keys spelled as flags or fields (``chunk-size``, ``chunk_size``). An unknown key is named
    with the valid ones; with ``where`` (a recipe block) every error names the recipe and its keys, else the flags."""
    data = {str(k).replace("-", "_"): v for k, v in (data or {}).items()}
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        name = unknown[0] if where else "--" + unknown[0].replace("_", "-")
        raise ConfigError(f"{where + ': ' if where else ''}unknown setting {name!r}; valid: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except ConfigError as exc:
        if where is None:
            raise
        raise ConfigError(f"{where}: " + _FLAG.sub(lambda m: m.group(1).replace("-", "_"), str(exc))) from None
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


class FromMapping:
    """``Config.from_mapping(data, where)``: see ``fusekit.config.from_mapping``."""

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, where: str | None = None):  # noqa: ANN206 - the subclass
        return from_mapping(cls, data, where)


@dataclass(frozen=True)
class IngestConfig(FromMapping):
    """What `fusekit ingest` was asked to do.

    ``options`` holds source-specific settings (``labels`` for FER+, ``peak_frames`` for CK+, ``name`` for a
    class folder...); a source reads them with ``Source.option`` and falls back to its manifest's defaults.
    """

    name: str
    source: Path
    variant: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    chunk_size: int = 2048
    workers: int = 2
    faces: bool = True  # run the faces stage afterwards: read by fusekit.api.ingest, which composes the two
    extract_limits: Any = None  # archives.ExtractLimits for an archive --source (None: the environment's)
    runner: str = "local"  # where decode chunks run: local processes, or "ray" (fusekit.distribute_ray)
    address: str | None = None  # the Ray cluster for runner "ray" (None: $RAY_ADDRESS, else a local Ray)

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if not Path(self.source).exists():
            raise ConfigError(f"--source {self.source} does not exist")
        from fusekit.distribute_ray import check_runner

        check_runner(self.runner)
