"""Frozen per-stage configuration, validated before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusekit.errors import ConfigError


@dataclass(frozen=True)
class IngestConfig:
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

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if not Path(self.source).exists():
            raise ConfigError(f"--source {self.source} does not exist")
