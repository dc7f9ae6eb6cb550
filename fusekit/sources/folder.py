"""Any class-per-folder tree: the way in for datasets fusekit has no module for.

``<root>/<class>/**/<image>``, or ``<root>/<split>/<class>/**/<image>`` when the top folders are split names.
Class folder names are normalised through `fusekit.taxonomy` (``Anger`` -> angry, ``sadness`` -> sad); a nested
sub-folder belongs to its top class folder. The ``dataset`` column is the name given with ``--name`` (default: the
root folder's name), so several class folders can be ingested side by side.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Iterator

from fusekit.errors import ConfigError
from fusekit.manifests import all_manifests
from fusekit.records import Record
from fusekit.sources.base import STRAY_DIRS, FolderSource, is_image_name
from fusekit.taxonomy import normalise

SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "testing": "test", "privatetest": "test",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted((p for p in path.iterdir() if p.is_dir() and p.name.lower() not in STRAY_DIRS), key=lambda p: p.name)
    except OSError:
        return []


def _is_class_dir(path: Path) -> bool:
    return normalise(path.name) is not None


class ClassFolders(FolderSource):
    dataset: ClassVar[str] = "folder"
    variant: ClassVar[str] = "classfolders"
    options_taken = ("name",)  # --name

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        top = _subdirs(path)
        if any(_is_class_dir(d) for d in top):
            return path
        splits = [d for d in top if d.name.lower() in SPLIT_FOLDERS]
        if splits and any(_is_class_dir(c) for d in splits for c in _subdirs(d)):
            return path
        return None

    @property
    def dataset_name(self) -> str:
        name = str(self.option("name", "") or self.root.name).strip().lower().replace(" ", "-")
        if not _NAME.match(name):
            raise ConfigError(f"--name {name!r} must be 1-64 characters of a-z, 0-9, '.', '_' or '-'")
        if name in all_manifests():
            raise ConfigError(f"--name {name!r} is the name of a dataset fusekit knows; pick another name, or use "
                              f"`fusekit ingest {name}` for its native layout")
        return name

    def records(self) -> Iterator[Record]:
        top = {d.name for d in _subdirs(self.root)}
        self._split_layout = not any(normalise(n) for n in top) and any(n.lower() in SPLIT_FOLDERS for n in top)
        yield from super().records()

    def record_for(self, rel: str) -> Record | None:
        parts = rel.split("/")
        split = None
        if self._split_layout:
            split = SPLIT_FOLDERS.get(parts[0].lower())
            if split is None or len(parts) < 3:
                return Record(key=rel, path=rel, reject="unlabelled",
                              reject_detail="not inside <split>/<class>/ (split folders: train, val, test)")
            parts = parts[1:]
        if len(parts) < 2:
            return Record(key=rel, path=rel, reject="unlabelled", reject_detail="not inside a class folder")
        if not is_image_name(parts[-1]):
            return Record(key=rel, path=rel, raw_label=parts[0], reject="unrecognised_name",
                          reject_detail="not an image file extension")
        return Record(key=rel, path=rel, raw_label=parts[0], split=split,
                      extra={"class_folder": parts[0]} if normalise(parts[0]) != parts[0] else {})


SOURCES = [ClassFolders]
