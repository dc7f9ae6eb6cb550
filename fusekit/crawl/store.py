"""Where crawled pictures go: `images` rows (bytes stored in the row) and `rejects` rows, unit ``crawl--<engine>``.

Unlike ingest, which rebuilds a unit in staging and swaps it in as a whole, a crawl *appends*: every flush writes
new ``part-NNNNN.parquet`` files into the unit (each written to a temporary name and renamed, so a killed crawl never
leaves half a part). The index of what is known (image URLs, sha256 of the bytes, rejected URLs, and which
(engine, emotion, keyword) found which picture) is read back from the tables themselves when a run starts, so it can
never disagree with them: a rerun skips every known URL without a request and counts earlier pictures toward
``--max-per-keyword``.

Nothing is stored twice: a URL or a sha256 seen before (under any keyword, engine or run) adds a provenance record to
the existing row instead. A picture found under two emotions keeps the label it was first stored with, lists both in
``extra.labels`` and sets ``extra.label_conflict`` for dedupe and review to settle. Such an update rewrites the one
part that holds the row (atomically, by rename).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fusekit import __version__
from fusekit.records import IMAGES_SCHEMA, REJECTS_SCHEMA
from fusekit.taxonomy import CLASS_ID, CLASSES
from fusekit.workspace import Unit, Workspace, write_json_atomic, write_parquet_atomic

DATASET = "crawl"
TERMS = "web"  # each picture's own licence applies; fusekit knows only where it came from
# Failures worth another try on a later run with --retry-rejected (the others are properties of the content).
TRANSIENT = frozenset({"http_error", "timeout", "connection_failed", "too_many_redirects"})


def unit_for(engine: str) -> str:
    return f"{DATASET}--{engine}"


def crawl_units(workspace: Workspace, table: str = "images") -> list[str]:
    return [u for u in workspace.units(table) if u.startswith(f"{DATASET}--")]


@dataclass
class _Known:
    """What the index remembers of one stored picture."""

    unit: str
    part: Path | None  # None while it waits in the buffer
    labels: list[str]
    keys: set[tuple[str, str, str, str]]  # (engine, emotion, keyword, url) of every provenance record
    extra: str


@dataclass
class Added:
    image_id: str
    new: bool  # False: the bytes were already stored (provenance added to the existing row)
    conflict: bool = False  # this addition gave the picture a second emotion


@dataclass
class FlushStats:
    images: int = 0
    rejects: int = 0
    rewritten_parts: int = 0


class CrawlStore:
    """The index and the write buffer of one crawl run. Thread-safe: downloader threads call it concurrently."""

    def __init__(self, workspace: Workspace, retry_rejected: bool = False) -> None:
        self.workspace = workspace
        self.lock = threading.RLock()
        self.by_url: dict[str, str] = {}
        self.by_sha: dict[str, str] = {}
        self.rejected: dict[str, str] = {}  # url -> reason
        self.known: dict[str, _Known] = {}
        self.found: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (engine, emotion, keyword) -> ids
        self._rows: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # unit -> id -> images row
        self._rejects: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._dirty: dict[Path, set[str]] = defaultdict(set)  # written parts whose rows gained provenance
        self.conflicts: set[str] = set()
        self._load(retry_rejected)

    # -- the index ---------------------------------------------------------------------------------------------
    def _load(self, retry_rejected: bool) -> None:
        for unit in crawl_units(self.workspace):
            for part in self._parts("images", unit):
                table = pq.read_table(part, columns=["id", "sha256", "extra"])
                for image_id, sha, extra in zip(*(table.column(c).to_pylist() for c in ("id", "sha256", "extra"))):
                    self._remember(image_id, sha, extra, unit, part)
        for unit in crawl_units(self.workspace, "rejects"):
            for part in self._parts("rejects", unit):
                table = pq.read_table(part, columns=["source_path", "reason"])
                for url, reason in zip(table.column("source_path").to_pylist(), table.column("reason").to_pylist()):
                    if url and not (retry_rejected and reason in TRANSIENT):
                        self.rejected[url] = reason

    def _remember(self, image_id: str, sha: str, extra: str, unit: str, part: Path | None) -> None:
        data = json.loads(extra)
        keys = {(p["engine"], p["emotion"], p["keyword"], p["url"]) for p in data["provenance"]}
        self.known[image_id] = _Known(unit, part, list(data["labels"]), keys, extra)
        self.by_sha[sha] = image_id
        for engine, emotion, keyword, url in keys:
            self.by_url.setdefault(url, image_id)
            self.found[(engine, emotion, keyword)].add(image_id)
        if data.get("label_conflict"):
            self.conflicts.add(image_id)

    def _parts(self, table: str, unit: str) -> list[Path]:
        return self.workspace.parts(table, unit)

    def count(self, engine: str, emotion: str, keyword: str) -> int:
        """Pictures (distinct bytes) that (engine, emotion, keyword) has found so far, earlier runs included."""
        with self.lock:
            return len(self.found.get((engine, emotion, keyword), ()))

    def url_state(self, url: str) -> tuple[str, str] | None:
        """('image', id) for a stored URL, ('rejected', reason) for a rejected one, else None."""
        with self.lock:
            if url in self.by_url:
                return "image", self.by_url[url]
            if url in self.rejected:
                return "rejected", self.rejected[url]
            return None

    # -- adding ------------------------------------------------------------------------------------------------
    def add_provenance(self, image_id: str, record: dict[str, Any]) -> Added:
        """Another sighting of a stored picture (a known URL, or the same bytes behind another URL)."""
        with self.lock:
            known = self.known[image_id]
            key = (record["engine"], record["emotion"], record["keyword"], record["url"])
            self.by_url.setdefault(record["url"], image_id)
            if key in known.keys:
                return Added(image_id, new=False)
            data = json.loads(known.extra)
            records = data["provenance"] + [record]
            first = records[0]
            if known.part is None and _same_search(first, record) and record["rank"] < first["rank"]:
                # Threads finish in any order: within one search, the best-ranked URL is the row's source.
                records = [record] + records[:-1]
                row = self._rows[known.unit][image_id]
                row["source_path"], row["source_row"] = record["url"], record["rank"]
            data["provenance"] = _sorted_provenance(records)
            conflict = record["emotion"] not in data["labels"]
            if conflict:
                data["labels"] = sorted(set(data["labels"]) | {record["emotion"]}, key=CLASS_ID.__getitem__)
                data["label_conflict"] = True
                self.conflicts.add(image_id)
            known.extra = _dumps(data)
            known.keys.add(key)
            known.labels = data["labels"]
            self.found[(record["engine"], record["emotion"], record["keyword"])].add(image_id)
            if known.part is None:
                self._rows[known.unit][image_id]["extra"] = known.extra
            else:
                self._dirty[known.part].add(image_id)
            return Added(image_id, new=False, conflict=conflict)

    def add_picture(self, engine: str, record: dict[str, Any], data: bytes, width: int, height: int, mode: str,
                    fmt: str) -> Added:
        """A fetched, fully decoded picture; stored unless its bytes are already known."""
        sha = record["sha256"]
        with self.lock:
            if sha in self.by_sha:
                return self.add_provenance(self.by_sha[sha], record)
            unit = unit_for(engine)
            image_id = f"{DATASET}/{engine}/{sha[:24]}"
            extra = _dumps({"provenance": [record], "labels": [record["emotion"]], "label_conflict": False})
            ext = {"jpeg": "jpg", "tiff": "tif"}.get(fmt.lower(), fmt.lower() or "bin")
            self._rows[unit][image_id] = {
                "id": image_id,
                "dataset": DATASET,
                "variant": engine,
                "source_path": record["url"],
                "source_row": record["rank"],
                "image": {"bytes": data, "path": f"{sha[:24]}.{ext}"},
                "split": None,
                "subject": None,
                "group": None,
                "raw_label": record["keyword"],
                "label": record["emotion"],
                "label_id": CLASS_ID[record["emotion"]],
                "label_source": "crawl",
                "width": width,
                "height": height,
                "mode": mode,
                "sha256": sha,
                "face_box": None,
                "terms": TERMS,
                "extra": extra,
            }
            self._remember(image_id, sha, extra, unit, None)
            return Added(image_id, new=True)

    def add_reject(self, engine: str, url: str, rank: int | None, keyword: str, reason: str, detail: str) -> bool:
        """Record a rejected URL once; False when it was already recorded."""
        import hashlib

        with self.lock:
            if url in self.rejected or url in self.by_url:
                return False
            self.rejected[url] = reason
            self._rejects[unit_for(engine)].append({
                "id": f"{DATASET}/{engine}/url-{hashlib.sha256(url.encode()).hexdigest()[:24]}",
                "stage": "crawl",
                "dataset": DATASET,
                "variant": engine,
                "source_path": url,
                "source_row": rank,
                "raw_label": keyword,
                "reason": reason,
                "detail": detail,
            })
            return True

    def pending(self) -> int:
        with self.lock:
            return sum(len(rows) for rows in self._rows.values())

    # -- writing -----------------------------------------------------------------------------------------------
    def flush(self) -> FlushStats:
        """Write buffered rows as new parts and rewrite the parts whose rows gained provenance."""
        stats = FlushStats()
        with self.lock:
            for unit, rows in sorted(self._rows.items()):
                if not rows:
                    continue
                ordered = [rows[k] for k in sorted(rows)]  # deterministic order whatever the threads did
                path = self.workspace.append_part("images", unit, pa.Table.from_pylist(ordered, schema=IMAGES_SCHEMA))
                for row in ordered:
                    self.known[row["id"]].part = path
                stats.images += len(ordered)
                self._touch(unit)
            self._rows.clear()
            for unit, rejects in sorted(self._rejects.items()):
                if not rejects:
                    continue
                ordered = sorted(rejects, key=lambda r: r["id"])
                self.workspace.append_part("rejects", unit, pa.Table.from_pylist(ordered, schema=REJECTS_SCHEMA))
                stats.rejects += len(ordered)
                self._touch(unit, "rejects")
            self._rejects.clear()
            for part, ids in sorted(self._dirty.items()):
                table = pq.read_table(part, schema=IMAGES_SCHEMA)
                extras = [self.known[i].extra if i in ids else e
                          for i, e in zip(table.column("id").to_pylist(), table.column("extra").to_pylist())]
                table = table.set_column(table.schema.get_field_index("extra"), "extra", pa.array(extras, pa.string()))
                write_parquet_atomic(table, part)
                stats.rewritten_parts += 1
            self._dirty.clear()
        return stats

    def _touch(self, unit: str, table: str = "images") -> None:
        """Keep `_unit.json` current: what produced the unit, and its facts from the crawl's manifest
        (``manifests/crawl.yaml``) as ingest records a dataset's; the faces stage reads them."""
        from fusekit.manifests import known_manifests, unit_facts

        manifest = known_manifests()[DATASET]
        engine = Unit.parse(unit).variant
        write_json_atomic({
            **unit_facts(manifest, manifest.variant(engine), DATASET),
            "dataset": DATASET,
            "variant": engine,
            "source_root": None,
            "stored_bytes": True,
            "appended_by": "crawl",
            "fusekit": __version__,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, self.workspace.unit_dir(table, unit) / "_unit.json")


def _same_search(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["engine"], a["emotion"], a["keyword"]) == (b["engine"], b["emotion"], b["keyword"]) and \
        a["rank"] is not None and b["rank"] is not None


def _sorted_provenance(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The first record is the one the row was stored with; the later ones in a stable order.
    return records[:1] + sorted(records[1:], key=lambda r: (r["engine"], CLASSES.index(r["emotion"]), r["keyword"],
                                                             r["rank"] if r["rank"] is not None else -1, r["url"]))


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
