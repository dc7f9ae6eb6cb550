"""KDEF (FORMATS.md §3): ``KDEF_and_AKDEF/KDEF/AF01/AF01ANS.JPG``, and flat or lower-case re-packagings.

The file name is the whole annotation: session (A/B), gender (F/M), identity (01-35), expression (AF, AN, DI, HA, NE,
SA, SU) and angle (FL, HL, S, HR, FR; straight is one letter, so the name is parsed with a regex, never sliced).
The subject is gender + number (``F01``): ``AF01`` and ``BF01`` are one person photographed twice. AKDEF's averaged
faces ship in the same archive and are excluded; all-black files are rejected by the decoder's blank check.
``-o angles=S,HL,HR`` keeps only those camera angles (the others are not samples, and not rejects).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Iterator

from fusekit.errors import ConfigError
from fusekit.manifests import Variant
from fusekit.records import Record
from fusekit.sources.base import FolderSource, Source, find_dirs, is_image_name

NAME = re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(FL|FR|HL|HR|S)\.(JPE?G|PNG)$", re.I)
SESSION_FOLDER = re.compile(r"^[AB][FM]\d{2}$", re.I)
ANGLES = ("FL", "HL", "S", "HR", "FR")
AKDEF_FOLDERS = ("akdef", "a_kdef_files")


def _has_kdef_files(folder: Path, limit: int = 60) -> bool:
    try:
        names = [e.name for _, e in zip(range(limit), folder.iterdir())]
    except OSError:
        return False
    return any(NAME.match(n) for n in names)


def _is_kdef_root(folder: Path) -> bool:
    """A folder of session folders (``AF01/``) holding KDEF-named images, or a flat folder of KDEF-named images."""
    if folder.name.lower() in AKDEF_FOLDERS:
        return False
    try:
        sessions = sorted(p for p in folder.iterdir() if p.is_dir() and SESSION_FOLDER.match(p.name))
    except OSError:
        return False
    if any(_has_kdef_files(s) for s in sessions[:5]):
        return True
    return _has_kdef_files(folder, limit=200)


class KdefOfficial(FolderSource):
    dataset: ClassVar[str] = "kdef"
    variant: ClassVar[str] = "official"

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.check_options(("angles",), usage="takes the option angles=S,HL,HR")
        wanted = str(self.option("angles", "") or "").upper().replace(" ", "")
        self.angles = tuple(a for a in wanted.split(",") if a) or ANGLES
        bad = [a for a in self.angles if a not in ANGLES]
        if bad:
            raise ConfigError(f"-o angles= takes a comma list of {', '.join(ANGLES)}; got {', '.join(bad)}")
        self.skipped_angles = 0

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        # The distributed zip unpacks to KDEF_and_AKDEF/{KDEF,AKDEF}; the anchor is the folder above KDEF so that
        # AKDEF's files are seen (and excluded) rather than silently missed.
        found = find_dirs(path, _is_kdef_root, max_depth=4)
        if not found:
            return None
        root = found[0]
        parent = root.parent
        if root != path and any((parent / n).is_dir() for n in ("AKDEF", "akdef", "A_kdef_files")):
            return parent
        return root

    def records(self) -> Iterator[Record]:
        self.skipped_angles = 0
        yield from super().records()
        if self.angles != ANGLES:
            self.notes.append(f"kept angles {','.join(self.angles)}; {self.skipped_angles:,} images of other angles "
                              f"left out (-o angles=)")

    def record_for(self, rel: str) -> Record | None:
        parts = rel.split("/")
        name = parts[-1]
        if any(p.lower() in AKDEF_FOLDERS for p in parts[:-1]):
            return Record(key=rel, path=rel, reject="excluded", reject_detail="AKDEF averaged face, not a subject image")
        match = NAME.match(name)
        if not match:
            reason = "an averaged AKDEF face" if re.match(r"^[FM](AF|AN|DI|HA|NE|SA|SU)", name, re.I) else None
            if reason and is_image_name(name):
                return Record(key=rel, path=rel, reject="excluded", reject_detail=reason)
            return Record(key=rel, path=rel, reject="unrecognised_name",
                          reject_detail="expected <A|B><F|M><nn><AF|AN|DI|HA|NE|SA|SU><FL|HL|S|HR|FR>.JPG")
        session, gender, number, expression, angle = (g.upper() for g in match.groups()[:5])
        folder = parts[-2] if len(parts) > 1 else None
        if folder is not None and SESSION_FOLDER.match(folder) and folder.upper() != name[:4].upper():
            return Record(key=rel, path=rel, raw_label=expression, reject="unrecognised_name",
                          reject_detail=f"the name says {name[:4].upper()} but the file is in folder {folder}")
        if angle not in self.angles:
            self.skipped_angles += 1
            return None
        return Record(key=rel, raw_label=expression, subject=f"{gender}{number}", group=f"{session}{gender}{number}",
                      path=rel, check_blank=True, extra={"session": session, "angle": angle})


SOURCES: list[type[Source]] = [KdefOfficial]
