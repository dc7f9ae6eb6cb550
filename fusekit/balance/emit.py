"""Streaming the planned rows into shards with bounded memory, whatever the dataset's size.

The plan gives every output row (a face, or an augmented copy of one) a split and a rank: its place in the split's
final order (shuffled for train, by id for val and test). Rows are made in ONE sequential pass over the `faces`
parts (each part's image column read once; random access into thousands of parts would be far slower), copies are
augmented in a process pool (PNG decode/encode hold the GIL), and each row is spilled to the bucket of its rank
range (an Arrow IPC file). Each bucket is then read back, put in rank order and fed to the shard writer, so the
shards come out in the planned order with memory bounded by one bucket (about one shard).
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fusekit.balance.augment import augment_job
from fusekit.balance.shards import ShardStats, ShardWriter
from fusekit.runner import process_pool

SPILL_BYTES = 64_000_000  # a bucket's buffer is written out past this size
POOL_MIN_COPIES = 2000  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class PlannedRow:
    meta: int  # index into the selected faces (``cols``)
    copy: int  # 0: the face itself; n: its n-th augmented copy


class _Inline(Executor):
    def map(self, fn: Callable, *iterables: Iterable, timeout=None, chunksize=1):  # type: ignore[override]
        return map(fn, *iterables)


def _executor(workers: int, needed: bool) -> Executor:
    if workers <= 1 or not needed:
        return _Inline()
    # The workers only run PIL/numpy code (augment_job), never pyarrow, so locks held by the parent's pyarrow
    # threads at fork time are not touched; after the faces step of `fusekit build` TensorFlow is loaded, and
    # process_context then avoids fork.
    return process_pool(workers, preload=[__name__])


class _Bucket:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.columns: dict[str, list[Any]] = {n: [] for n in schema.names}
        self.bytes = 0
        self.writer: pa.ipc.RecordBatchStreamWriter | None = None

    def add(self, row: dict[str, Any], size: int) -> None:
        for name, values in self.columns.items():
            values.append(row[name])
        self.bytes += size
        if self.bytes >= SPILL_BYTES:
            self.spill()

    def spill(self) -> None:
        if not self.columns["_rank"]:
            return
        table = pa.table(self.columns, schema=self.schema)
        if self.writer is None:
            self.writer = pa.ipc.new_stream(str(self.path), self.schema)
        self.writer.write_table(table)
        self.columns = {n: [] for n in self.schema.names}
        self.bytes = 0

    def read_sorted(self) -> pa.Table:
        self.spill()
        if self.writer is None:
            return self.schema.empty_table().drop_columns(["_rank"])
        self.writer.close()
        with pa.ipc.open_stream(str(self.path)) as reader:
            table = reader.read_all()
        self.path.unlink()
        return table.sort_by("_rank").drop_columns(["_rank"])


def write_splits(*, files: list[str], rows: dict[str, list[PlannedRow]], cols: dict[str, list[Any]],
                 make_row: Callable[[str, PlannedRow, dict[str, Any], list[str]], dict[str, Any]],
                 schema: pa.Schema, folder: Path, max_shard_bytes: int, row_group_bytes: int, seed: int,
                 augment: tuple[str, ...], max_rotation: float, jitter: float, workers: int,
                 progress: Callable[[int], None] = lambda n: None) -> dict[str, ShardStats]:
    """Write every split's planned rows as shards under ``folder`` (see the module docstring)."""
    offsets = np.cumsum([0] + [pq.ParquetFile(f).metadata.num_rows for f in files])
    on_disk = sum(Path(f).stat().st_size for f in files)
    per_row = on_disk / max(int(offsets[-1]), 1)  # PNG bytes dominate and do not compress: a fair size estimate
    spill_schema = schema.append(pa.field("_rank", pa.int64()))
    buckets: dict[tuple[str, int], _Bucket] = {}
    n_buckets: dict[str, int] = {}
    # Every output row as (position in the faces parts, split, rank, planned row), sorted by position.
    entries: list[tuple[int, str, int, PlannedRow]] = []
    for split, planned in rows.items():
        if not planned:
            continue
        n_buckets[split] = max(1, math.ceil(len(planned) * (per_row + 256) / (0.9 * max_shard_bytes)))
        for rank, row in enumerate(planned):
            entries.append((cols["pos"][row.meta], split, rank, row))
    entries.sort(key=lambda e: (e[0], e[3].copy, e[1]))
    staging = folder / ".buckets"
    staging.mkdir(parents=True, exist_ok=True)
    for split, count in n_buckets.items():
        for b in range(count):
            buckets[(split, b)] = _Bucket(staging / f"{split}-{b:05d}.arrow", spill_schema)

    def bucket_of(split: str, rank: int) -> _Bucket:
        return buckets[(split, rank * n_buckets[split] // len(rows[split]))]

    def finish(item: tuple) -> None:
        chunk, data, paths, base, parents, results = item
        made: dict[tuple[int, int], tuple[bytes, list[str]]] = {}
        for p, copies_made in zip(sorted(parents), results):
            for copy, result in zip(parents[p], copies_made):
                made[(p, copy)] = result
        for pos, split, rank, row in chunk:
            if row.copy:
                blob, ops = made[(pos, row.copy)]
                image = {"bytes": blob, "path": None}
            else:
                blob, ops = data[pos - base].as_py(), []
                image = {"bytes": blob, "path": paths[pos - base].as_py()}
            record = make_row(split, row, image, ops)
            record["_rank"] = rank
            bucket_of(split, rank).add(record, len(blob or b"") + 256)
        progress(len(chunk))

    copies = sum(1 for e in entries if e[3].copy)
    with _executor(workers, copies >= POOL_MIN_COPIES) as pool:
        # One part ahead: its copies are made in the pool while this process files the previous part's rows.
        pending: deque[tuple] = deque()
        start = 0
        for index, path in enumerate(files):
            end = int(offsets[index + 1])
            stop = start
            while stop < len(entries) and entries[stop][0] < end:
                stop += 1
            chunk = entries[start:stop]
            start = stop
            if not chunk:
                continue
            images = pq.read_table(path, columns=["image"]).column("image").combine_chunks()
            data, paths = images.field("bytes"), images.field("path")
            base = int(offsets[index])
            # Copies of one parent are made together (one decode); jobs go to the pool in a fixed order.
            parents: dict[int, list[int]] = defaultdict(list)
            meta_at: dict[int, int] = {}
            for pos, _, _, row in chunk:
                if row.copy:
                    parents[pos].append(row.copy)
                    meta_at[pos] = row.meta
            jobs = [(data[p - base].as_py(), cols["id"][meta_at[p]], parents[p], seed, augment, max_rotation, jitter)
                    for p in sorted(parents)]
            results = pool.map(augment_job, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
            pending.append((chunk, data, paths, base, parents, results))
            if len(pending) > 1:
                finish(pending.popleft())
        while pending:
            finish(pending.popleft())
    stats: dict[str, ShardStats] = {}
    for split, count in n_buckets.items():  # the splits with rows, in the order of ``rows``
        writer = ShardWriter(folder, split, schema, max_shard_bytes, row_group_bytes)
        for b in range(count):
            writer.write(buckets[(split, b)].read_sorted())
        stats[split] = writer.finish()
    staging.rmdir()
    return stats
