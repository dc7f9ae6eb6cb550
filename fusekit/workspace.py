"""The workspace: one folder that holds every table, written atomically and read as one.

Layout::

    <workspace>/
      tables/<table>/<unit>/part-00000.parquet   a table is a folder of units; a unit is what one run of a stage
                                                 owns (an ingested dataset variant: ``fer2013--csv``)
      tables/<table>/<unit>/_unit.json           what produced the unit (source root, config, counts)
      .staging/<unit>/<table>/part-*.parquet     a unit being built; ``_done/part-*.json`` marks finished parts
      .trash/                                    replaced units, removed after the swap
      .locks/                                    the workspace's file locks (see ``fusekit.locks``)

A part is written under a temporary name and renamed into place, so a killed run never leaves half a part. A unit
becomes visible only when it is complete: its staged tables are swapped in with ``os.replace``-style renames, and a
journal file (``_COMPLETE``) lets ``Workspace.recover`` finish a swap that a crash interrupted. Files starting with
``_`` or ``.`` are ignored by pyarrow, pandas, polars and DuckDB, so the tables read the same without fusekit.

The swap of a unit (the old unit renamed into ``.trash/``, the staged one renamed into its place, table after
table, then the staging folder renamed away) runs under the swap lock held exclusive, and ``read`` and ``listing``
hold it shared: a reader sees a unit before its swap or after it, never between. Which process may write a unit at
all is decided by the writer locks of ``fusekit.locks``, taken by the api, not here.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from fusekit import locks

DEFAULT_WORKSPACE = "fusekit-work"
PART_GLOB = "part-*.parquet"
_PART_NUMBER = re.compile(r"part-(\d+)\.parquet")


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass(frozen=True, order=True)
class Unit:
    """What one run of a stage owns in a table: a dataset variant, ``<dataset>--<variant>`` on disk (``str``) and
    ``dataset/variant`` to a user (``label``). The one place that knows how a unit name is spelled."""

    dataset: str
    variant: str

    SEPARATOR: ClassVar[str] = "--"

    @classmethod
    def parse(cls, name: str) -> Unit:
        """``fer2013--csv`` or ``fer2013/csv`` -> Unit("fer2013", "csv"); a bare dataset name has variant ``""``."""
        dataset, _, variant = name.replace("/", cls.SEPARATOR, 1).partition(cls.SEPARATOR)
        return cls(dataset, variant)

    def __str__(self) -> str:
        return f"{self.dataset}{self.SEPARATOR}{self.variant}"

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.variant}"


def unit_name(dataset: str, variant: str) -> str:
    return str(Unit(dataset, variant))


def unit_label(name: str) -> str:
    """``fer2013--csv`` -> ``fer2013/csv``, as messages name a unit."""
    return Unit.parse(name).label


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (the temporary file goes if the write fails)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(data: Any, path: Path) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


class Workspace:
    """A workspace folder. Creating the object creates nothing; ``ensure()`` makes the folders."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root or os.environ.get("FUSEKIT_WORKSPACE") or DEFAULT_WORKSPACE).resolve()
        if self.root.exists() and not self.root.is_dir():
            from fusekit.errors import WorkspaceError

            raise WorkspaceError(f"the workspace {self.root} is a file, not a folder: give --workspace a folder "
                                 f"(or move the file away)")

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def staging(self) -> Path:
        return self.root / ".staging"

    def table_dir(self, table: str) -> Path:
        return self.tables / table

    def unit_dir(self, table: str, unit: str) -> Path:
        return self.tables / table / unit

    def ensure(self) -> Workspace:
        self.tables.mkdir(parents=True, exist_ok=True)
        if not os.access(self.tables, os.W_OK):  # refused before any work, not at the first write (cli renders it)
            code = errno.EROFS if os.statvfs(self.tables).f_flag & os.ST_RDONLY else errno.EACCES
            raise PermissionError(code, os.strerror(code), str(self.tables))
        self.recover()
        return self

    # -- reading -----------------------------------------------------------------------------------------------
    def units(self, table: str) -> list[str]:
        folder = self.table_dir(table)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

    def listing(self, table: str, units: Iterable[str] | None = None,
                pattern: str = PART_GLOB) -> list[list[Any]]:
        """[``table/unit/name``, size, mtime_ns] of a table's files, in read order: what a later stage keys its cache
        or its rerun decision on (equal listings = unchanged input; every write replaces files atomically)."""
        wanted = None if units is None else set(units)
        entries = []
        with locks.reading(self):
            for unit in self.units(table):
                if wanted is None or unit in wanted:
                    for path in sorted(self.unit_dir(table, unit).glob(pattern)):
                        if path.is_file():
                            stat = path.stat()
                            entries.append([f"{table}/{unit}/{path.name}", stat.st_size, stat.st_mtime_ns])
        return entries

    def parts(self, table: str, unit: str) -> list[Path]:
        """A unit's part files in read order (``part-00000.parquet``, ...): the one place that knows their names."""
        folder = self.unit_dir(table, unit)
        return sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []

    def unit_info(self, table: str, unit: str) -> dict[str, Any] | None:
        path = self.unit_dir(table, unit) / "_unit.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def read(self, table: str, schema: pa.Schema, *, units: Iterable[str] | None = None,
             columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """Read a table (or some of its units) as one Arrow table, rows in unit and part order."""
        with locks.reading(self):  # no swap between listing the parts and reading them
            chosen = self.units(table) if units is None else sorted(units)
            files = [str(p) for u in chosen for p in self.parts(table, u)]
            if not files:
                empty = schema.empty_table()
                return empty.select(columns) if columns else empty
            dataset = ds.dataset(files, format="parquet", schema=schema)
            return dataset.to_table(columns=columns, filter=filter)

    def rows_by_id(self, table: str, ids: Iterable[str], columns: list[str]) -> dict[str, dict[str, Any]]:
        """id -> ``columns`` of the rows of ``table`` whose ``id`` is in ``ids``. Only the parts that hold one are
        read past their id column, and of those only the wanted rows are kept (a faces table holds gigabytes of crops;
        a caller wants a few thousand)."""
        import pyarrow.compute as pc

        wanted = pa.array(sorted(set(ids)), pa.string())
        out: dict[str, dict[str, Any]] = {}
        if not len(wanted):
            return out
        with locks.reading(self):
            for unit in self.units(table):
                for path in self.parts(table, unit):
                    hit = pc.is_in(pq.read_table(path, columns=["id"]).column("id"), value_set=wanted)
                    rows = pc.indices_nonzero(hit)
                    if not len(rows):
                        continue
                    for row in pq.read_table(path, columns=["id", *columns]).take(rows).to_pylist():
                        out[row["id"]] = row
        return out

    # -- writing without staging: whole units of one part, appended parts ----------------------------------------
    def write_unit(self, table: str, unit: str, data: pa.Table, info: dict[str, Any]) -> None:
        """Replace ``unit`` of ``table`` with one part and its `_unit.json` (a result recomputed as a whole, such as
        dedupe's decisions or its hash cache): the part is renamed into place, then older parts go, then the info
        is written, so a reader that checks the info never pairs it with another run's part."""
        folder = self.unit_dir(table, unit)
        (folder / "_unit.json").unlink(missing_ok=True)
        write_parquet_atomic(data, folder / part_name(0))
        for stale in self.parts(table, unit):
            if stale.name != part_name(0):
                stale.unlink()
        write_json_atomic(info, folder / "_unit.json")

    def append_part(self, table: str, unit: str, data: pa.Table) -> Path:
        """Add ``data`` to ``unit`` as a new part numbered after the last (the crawl appends; nothing is swapped)."""
        numbers = [int(m.group(1)) for p in self.parts(table, unit) if (m := _PART_NUMBER.fullmatch(p.name))]
        path = self.unit_dir(table, unit) / part_name(max(numbers, default=-1) + 1)
        write_parquet_atomic(data, path)
        return path

    # -- writing a unit through staging -------------------------------------------------------------------------
    def stage(self, unit: str, fingerprint: dict[str, Any], area: str | None = None) -> Staging:
        """A staging area for ``unit``; reused (resumed) only if ``fingerprint`` matches the one it was made with.

        ``area``: a stage whose units share names with another stage's (the faces stage stages ``fer2013--csv``
        while an ingest may stage its own) keeps its stagings apart, in ``.staging/<area>/<unit>``. Its name starts
        with ``@``: that is how ``recover`` tells an area from a unit."""
        if area is not None and not area.startswith("@"):
            raise ValueError(f"a staging area's name starts with '@' (recover finds it by that), not {area!r}")
        self.ensure()
        path = self.staging / area / unit if area else self.staging / unit
        config_path = path / "_fingerprint.json"
        if path.exists():
            same = config_path.is_file() and json.loads(config_path.read_text(encoding="utf-8")) == _jsonable(fingerprint)
            if not same or (path / "_COMPLETE").exists():
                shutil.rmtree(path)
        if not path.exists():
            path.mkdir(parents=True)
            write_json_atomic(_jsonable(fingerprint), config_path)
        return Staging(self, unit, path)

    def recover(self) -> list[str]:
        """Finish swaps that a crash interrupted; remove leftovers. Returns the units it committed.

        Safe beside running writers: a commit happens under the swap lock and only once (whoever finds the journal
        first), and ``.trash/`` is emptied entry by entry, never removed while another process moves into it."""
        committed = []
        for path in self._stagings():
            if (path / "_COMPLETE").is_file() and Staging(self, path.name, path).commit():
                committed.append(path.name)
        trash = self.root / ".trash"
        if trash.is_dir():
            for entry in list(trash.iterdir()):
                shutil.rmtree(entry, ignore_errors=True)
        return committed

    def _stagings(self) -> list[Path]:
        """Every unit's staging folder: ``.staging/<unit>`` and ``.staging/<area>/<unit>`` (a unit name holds ``--``,
        an area starts with ``@``)."""
        if not self.staging.is_dir():
            return []
        found = []
        for path in sorted(self.staging.iterdir()):
            if path.name.startswith("@") and path.is_dir():
                found.extend(sorted(p for p in path.iterdir() if p.is_dir()))
            else:
                found.append(path)
        return found

    def _to_trash(self, path: Path, name: str) -> Path | None:
        """Rename ``path`` into ``.trash/`` (call under the swap lock); the caller removes it after the lock."""
        if not path.exists():
            return None
        trash = self.root / ".trash" / f"{name}--{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, trash)
        return trash

    def remove_unit(self, table: str, unit: str) -> None:
        self.remove_units(unit, [table])

    def remove_units(self, unit: str, tables: Iterable[str]) -> list[str]:
        """Remove ``unit`` from each of ``tables`` in one swap (a reader sees it in all of them or in none); returns
        the tables that held it. The files are deleted after the swap lock is released."""
        gone = []
        with locks.swapping(self):
            for table in tables:
                trash = self._to_trash(self.unit_dir(table, unit), f"{table}--{unit}")
                if trash is not None:
                    gone.append((table, trash))
        for _, trash in gone:
            shutil.rmtree(trash, ignore_errors=True)
        return [table for table, _ in gone]


def tree_listing(path: Path) -> list[list[Any]]:
    """[relative name, size, mtime_ns] of a file, or of every file under a folder (sorted): changes when any does."""
    if path.is_file():
        stat = path.stat()
        return [[path.name, stat.st_size, stat.st_mtime_ns]]
    entries = []
    top = os.fspath(path)
    cut = len(os.path.join(top, ""))
    for root, dirs, files in os.walk(top):  # os.path and strings: pathlib objects cost 4x here per file
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append([full[cut:].replace(os.sep, "/"), stat.st_size, stat.st_mtime_ns])
    return entries


def digest(data: Any) -> str:
    """A short stable digest of JSON-able data (listings, settings)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, sort_keys=True, default=str))


class Staging:
    """Parts of one unit being built. Parts are numbered; a part is finished once its marker exists."""

    def __init__(self, workspace: Workspace, unit: str, path: Path) -> None:
        self.workspace = workspace
        self.unit = unit
        self.path = path

    def _marker(self, index: int) -> Path:
        return self.path / "_done" / f"part-{index:05d}.json"

    def part_path(self, table: str, index: int) -> Path:
        return self.path / table / part_name(index)

    def is_done(self, index: int) -> bool:
        return self._marker(index).is_file()

    def done_stats(self, index: int) -> dict[str, Any]:
        return json.loads(self._marker(index).read_text(encoding="utf-8"))

    def write_part(self, index: int, tables: dict[str, pa.Table], stats: dict[str, Any]) -> None:
        """Write one part of every table, then its marker (the marker is what makes the part count)."""
        for name, table in tables.items():
            write_parquet_atomic(table, self.part_path(name, index))
        write_json_atomic(stats, self._marker(index))

    def finish(self, info: dict[str, Any], tables: Iterable[str]) -> None:
        """Mark the unit complete and swap it into ``tables/``."""
        for name in tables:
            (self.path / name).mkdir(parents=True, exist_ok=True)
            write_json_atomic(info, self.path / name / "_unit.json")
        write_json_atomic({"tables": sorted(tables)}, self.path / "_COMPLETE")
        self.commit()

    def commit(self) -> bool:
        """Swap the staged tables into ``tables/``, under the swap lock (readers see the old unit or the new one).
        False when there was nothing to do: another process (``recover``) committed this staging first."""
        gone: list[Path | None] = []
        workspace = self.workspace
        with locks.swapping(workspace):
            journal_path = self.path / "_COMPLETE"
            if not journal_path.is_file():
                return False
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
            for name in journal["tables"]:
                staged = self.path / name
                if not staged.exists():  # already swapped before a crash
                    continue
                target = workspace.unit_dir(name, self.unit)
                gone.append(workspace._to_trash(target, f"{name}--{self.unit}"))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
            # The staging folder goes in one rename: a crash after it leaves no half-empty staging to resume from.
            gone.append(workspace._to_trash(self.path, f"staging--{self.unit.replace('/', '--')}"))
        for path in gone:
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        return True
