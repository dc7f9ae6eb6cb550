"""Placeholder: filled in by its own change."""

from fusekit.sources.base import Source

SOURCES: list[type[Source]] = []
