"""JAFFE (FORMATS.md §4): a flat folder of ``<poser>.<EXPR><k>.<N>.tiff`` files, e.g. ``jaffe/KA.AN1.39.tiff``.

The file name is the whole annotation: the poser's two-letter code (the subject; ten women), the posed expression
(AN, DI, FE, HA, NE, SA, SU), the repetition ``k`` and the global image number ``N``. Files are 8-bit grey TIFFs,
some stored with 3 identical channels; the decoder records the mode and later stages convert explicitly. Mirrors
re-save them as ``.tiff.bmp``, ``.jpg`` or ``.png``, so those extensions are accepted too.

The semantic ratings (60 raters' 1-5 scores per emotion adjective) sit as a whitespace table in
``A_README_FIRST.txt``, or as a CSV ``N,HAP,SAD,SUR,ANG,DIS,FEA,PIC`` in converted copies. When found they are joined
by ``PIC`` (``KM-NE1`` is ``KM.NE1.1.tiff``) and kept in ``extra["ratings"]``; they are never required.
``-o ratings=PATH`` names the file when it is elsewhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Iterator

from fusekit.errors import ConfigError, SourceNotFound
from fusekit.manifests import Variant
from fusekit.records import Record
from fusekit.sources.base import FolderSource, Source, find_dirs, in_stray_dir, stray_reason, walk

POSERS = ("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM")
# FORMATS.md's regex, widened to the extensions mirrors use and to any two-letter poser (an unknown one is noted).
NAME = re.compile(r"^([A-Z]{2})\.(AN|DI|FE|HA|NE|SA|SU)(\d)\.(\d+)\.(tiff?|tiff?\.bmp|bmp|jpe?g|png)$", re.I)
RATING_COLUMNS = ("HAP", "SAD", "SUR", "ANG", "DIS", "FEA")
PIC = re.compile(r"^([A-Z]{2})-(AN|DI|FE|HA|NE|SA|SU)(\d)$", re.I)
RATINGS_NAMES = ("a_readme_first.txt", "readme_first.txt")
MAX_RATINGS_BYTES = 4 << 20  # a documentation file, never a data dump


def _has_jaffe_files(folder: Path, limit: int = 400) -> bool:
    try:
        names = [e.name for _, e in zip(range(limit), folder.iterdir())]
    except OSError:
        return False
    return sum(1 for n in names if NAME.match(n)) >= 1


def parse_ratings(text: str) -> dict[str, dict[str, float]]:
    """Ratings per picture code (``KM-NE1``) from a whitespace table or a CSV; {} when the text has no table.

    A header line names the columns (``HAP SAD SUR ANG DIS FEA PIC``, with or without a leading ``N`` or ``#``);
    each data line ends in the picture code and carries one number per rating column, right-aligned, so a leading
    image number is optional. A second table (e.g. one that adds FEA) fills in the columns the first lacked.

    >>> parse_ratings("N,HAP,SAD,SUR,ANG,DIS,FEA,PIC\\n1,2.87,2.52,2.10,1.97,1.97,2.06,KM-NE1\\n")["KM-NE1"]["HAP"]
    2.87
    """
    ratings: dict[str, dict[str, float]] = {}
    columns: list[str] | None = None
    for line in text.splitlines():
        tokens = [t for t in re.split(r"[\s,;]+", line.strip()) if t]
        if not tokens:
            continue
        upper = [t.upper().lstrip("#") for t in tokens]
        if "PIC" in upper and sum(c in upper for c in RATING_COLUMNS) >= 3:
            columns = [c for c in upper if c in RATING_COLUMNS]
            continue
        if columns is None or not PIC.match(tokens[-1]):
            continue
        values = tokens[:-1]
        if len(values) not in (len(columns), len(columns) + 1):
            continue
        try:
            numbers = [float(v) for v in values[-len(columns):]]
        except ValueError:
            continue
        code = tokens[-1].upper()
        ratings.setdefault(code, {}).update(zip(columns, numbers))
    return ratings


def _read_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_RATINGS_BYTES:
            return None
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


class JaffeOfficial(FolderSource):
    """A folder of JAFFE-named images (found at any depth); ``-o ratings=PATH`` for a ratings file elsewhere."""

    dataset: ClassVar[str] = "jaffe"
    variant: ClassVar[str] = "official"

    def __init__(self, anchor: Path, spec: Variant, options: dict[str, Any] | None = None) -> None:
        super().__init__(anchor, spec, options)
        self.check_options(("ratings",), usage="takes the option ratings=PATH")
        given = self.option("ratings", None)
        self.ratings_path: Path | None = Path(given) if given else None
        if self.ratings_path is not None and not self.ratings_path.is_file():
            raise SourceNotFound(f"-o ratings={given}: no such file")
        self.ratings: dict[str, dict[str, float]] = {}
        self._seen: dict[str, str] = {}
        self._posers: set[str] = set()

    @classmethod
    def find(cls, path: Path) -> Path | None:
        if not path.is_dir():
            return None
        found = find_dirs(path, _has_jaffe_files, max_depth=4)
        return found[0] if found else None

    def _load_ratings(self) -> Path | None:
        """The ratings file used (given, or found in the image folder or the folder above it), or None."""
        if self.ratings_path is not None:
            self.ratings = parse_ratings(_read_text(self.ratings_path) or "")
            if not self.ratings:
                raise ConfigError(f"-o ratings={self.ratings_path}: no ratings table (a header with HAP SAD SUR ANG "
                                  f"DIS ... PIC and rows ending in a picture code such as KM-NE1)")
            return self.ratings_path
        folders = [self.root] + ([self.root.parent] if self.root.parent != self.root else [])
        candidates: list[Path] = []
        for folder in folders:
            try:
                files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name)
            except OSError:
                continue
            named = [p for p in files if p.name.lower() in RATINGS_NAMES]
            # Beside the image folder only the README itself is looked at; inside it, any small text table.
            others = [p for p in files if p.suffix.lower() in (".txt", ".csv") and p not in named]
            candidates.extend(named + (others if folder == self.root else []))
        for candidate in candidates:
            ratings = parse_ratings(_read_text(candidate) or "")
            if ratings:
                self.ratings = ratings
                return candidate
        return None

    def records(self) -> Iterator[Record]:
        self.notes = []
        self._seen.clear()
        self._posers.clear()
        self.ratings = {}
        ratings_file = self._load_ratings()
        matched = 0
        for rel in walk(self.root):
            name = rel.rsplit("/", 1)[-1]
            if ratings_file is not None and (self.root / rel).resolve() == ratings_file.resolve():
                continue  # read above as the ratings, not a stray
            reason = stray_reason(name) or ("operating-system metadata folder" if in_stray_dir(rel) else None)
            if reason:
                yield Record(key=rel, path=rel, reject="stray_file", reject_detail=reason)
                continue
            record = self.record_for(rel)
            if record.extra.get("ratings"):
                matched += 1
            yield record
        unknown = sorted(self._posers - set(POSERS))
        self.notes.append(f"{len(self._posers)} posers ({', '.join(sorted(self._posers))})"
                          + (f"; not among JAFFE's ten: {', '.join(unknown)}" if unknown else ""))
        if ratings_file is not None:
            shown = ratings_file.name if ratings_file.parent in (self.root, self.root.parent) else str(ratings_file)
            self.notes.append(f"semantic ratings read from {shown}: {len(self.ratings)} pictures rated, "
                              f"{matched} images matched (extra.ratings)")
        else:
            self.notes.append("no semantic ratings file found (A_README_FIRST.txt); -o ratings=PATH names one")

    def record_for(self, rel: str) -> Record:
        name = rel.rsplit("/", 1)[-1]
        match = NAME.match(name)
        if not match:
            return Record(key=rel, path=rel, reject="unrecognised_name",
                          reject_detail="expected <poser>.<AN|DI|FE|HA|NE|SA|SU><k>.<N>.tiff, e.g. KA.AN1.39.tiff")
        poser, expression, repeat, number = match[1].upper(), match[2].upper(), int(match[3]), int(match[4])
        # The same picture twice (a .tiff and a mirror's .tiff.bmp, or a nested second copy) is one sample.
        ident = f"{poser}.{expression}{repeat}.{number}"
        if ident in self._seen:
            return Record(key=rel, path=rel, raw_label=expression, reject="duplicate_entry",
                          reject_detail=f"picture {ident} was already read from {self._seen[ident]}")
        self._seen[ident] = rel
        self._posers.add(poser)
        extra: dict[str, Any] = {"repeat": repeat, "number": number}
        rating = self.ratings.get(f"{poser}-{expression}{repeat}")
        if rating:
            extra["ratings"] = rating
        return Record(key=rel, raw_label=expression, subject=poser, path=rel, extra=extra)


SOURCES: list[type[Source]] = [JaffeOfficial]
