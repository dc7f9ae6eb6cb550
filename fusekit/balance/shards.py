"""Parquet shards that HF `datasets`, pyarrow, pandas, polars and DuckDB read as they are.

Names follow the Hub's convention, ``data/{split}-{index:05d}-of-{count:05d}.parquet``; a shard holds at most
``max_shard_bytes`` (500 MB, `datasets`' MAX_SHARD_SIZE) and row groups of about ``row_group_bytes`` (100 MB, its
MAX_ROW_GROUP_SIZE). The HF features (``Image``, ``ClassLabel`` with the class names) go into the Parquet schema
metadata under the key ``huggingface`` exactly as `datasets` 5.2.0 writes them (``Features.arrow_schema``), so
`load_dataset("parquet", ...)` decodes images to PIL images and labels to names without a loading script.

Shards are written under temporary names while the count is unknown, then renamed; bytes depend only on the rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from fusekit.records import IMAGE_STRUCT

COLUMNS = ("image", "label", "label_name", "dataset", "source_id", "subject", "split", "augmented", "ops",
           "parent_id", "phash", "flags")


def shard_schema(class_names: Sequence[str]) -> pa.Schema:
    """The shard schema with HF features metadata for these class names."""
    fields = [
        ("image", IMAGE_STRUCT),
        ("label", pa.int64()),  # ClassLabel's storage type in `datasets`
        ("label_name", pa.string()),
        ("dataset", pa.string()),
        ("source_id", pa.string()),
        ("subject", pa.string()),
        ("split", pa.string()),
        ("augmented", pa.bool_()),
        ("ops", pa.list_(pa.string())),
        ("parent_id", pa.string()),
        ("phash", pa.string()),
        ("flags", pa.list_(pa.string())),  # dedupe's flags of an official test member ([] otherwise)
    ]
    return pa.schema(fields).with_metadata({"huggingface": json.dumps(hf_metadata(class_names))})


def hf_features(class_names: Sequence[str]) -> dict:
    """`datasets.Features.to_dict()` of the shard columns, key order as `datasets` emits it."""
    string = {"dtype": "string", "_type": "Value"}
    return {
        "image": {"_type": "Image"},
        "label": {"names": list(class_names), "_type": "ClassLabel"},
        "label_name": dict(string),
        "dataset": dict(string),
        "source_id": dict(string),
        "subject": dict(string),
        "split": dict(string),
        "augmented": {"dtype": "bool", "_type": "Value"},
        "ops": {"feature": dict(string), "_type": "List"},
        "parent_id": dict(string),
        "phash": dict(string),
        "flags": {"feature": dict(string), "_type": "List"},
    }


def hf_metadata(class_names: Sequence[str]) -> dict:
    return {"info": {"features": hf_features(class_names)}}


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


@dataclass
class ShardStats:
    split: str
    files: list[str] = field(default_factory=list)  # paths relative to the dataset folder
    rows: int = 0
    bytes: int = 0  # on disk
    image_bytes: int = 0


class ShardWriter:
    """Writes one split's rows, arriving as Arrow tables, into size-capped shards with ~fixed-size row groups."""

    def __init__(self, folder: Path, split: str, schema: pa.Schema, max_shard_bytes: int, row_group_bytes: int) -> None:
        self.folder = folder
        self.split = split
        self.schema = schema
        self.max_shard_bytes = max_shard_bytes
        self.row_group_bytes = min(row_group_bytes, max_shard_bytes)
        self.stats = ShardStats(split)
        self._temp: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._shard_bytes = 0
        self._buffer: list[pa.Table] = []
        self._buffer_bytes = 0

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            path = self.folder / f".{self.split}-{len(self._temp):05d}.parquet.tmp"
            self._temp.append(path)
            # Image bytes are already compressed (PNG/JPEG): zstd there costs time and saves nothing.
            self._writer = pq.ParquetWriter(path, self.schema, compression={c: "zstd" for c in _leaf_columns()}
                                            | {"image.bytes": "none"}, write_statistics=True,
                                            use_dictionary=["label_name", "dataset", "split", "subject"])
            self._shard_bytes = 0
        return self._writer

    def write(self, table: pa.Table) -> None:
        """Add rows. A row group is cut when the buffer reaches the row-group size, a shard before a row would take
        it past the cap (counting Arrow bytes, which bound the file size: images are stored uncompressed)."""
        table = table.cast(self.schema) if table.schema != self.schema else table
        pending = 0  # first row of ``table`` not yet in the buffer
        for i, size in enumerate(_row_sizes(table)):
            in_shard = self._shard_bytes + self._buffer_bytes
            if in_shard and in_shard + size > self.max_shard_bytes:
                self._add(table.slice(pending, i - pending))
                pending = i
                self._flush()
                self._close()
            self._buffer_bytes += size
            if self._buffer_bytes >= self.row_group_bytes:
                self._add(table.slice(pending, i + 1 - pending))
                pending = i + 1
                self._flush()
        self._add(table.slice(pending))

    def _add(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self._buffer.append(rows)

    def _flush(self) -> None:
        if not self._buffer:
            return
        group = pa.concat_tables(self._buffer).combine_chunks()
        self._open().write_table(group, row_group_size=group.num_rows)
        self.stats.rows += group.num_rows
        self.stats.image_bytes += _image_bytes(group)
        self._shard_bytes += self._buffer_bytes
        self._buffer, self._buffer_bytes = [], 0

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._shard_bytes = 0

    def finish(self) -> ShardStats:
        """Flush, close and rename the temporary files to their final ``-of-N`` names."""
        self._flush()
        self._close()
        count = len(self._temp)
        for index, path in enumerate(self._temp):
            final = self.folder / shard_name(self.split, index, count)
            os.replace(path, final)
            self.stats.files.append(f"{self.folder.name}/{final.name}")
            self.stats.bytes += final.stat().st_size
        return self.stats


def _leaf_columns() -> list[str]:
    return ["image.path", "label", "label_name", "dataset", "source_id", "subject", "split", "augmented",
            "ops.list.element", "parent_id", "phash", "flags.list.element"]


def _row_sizes(table: pa.Table) -> list[int]:
    """Approximate bytes per row: the image bytes plus a fixed allowance for the small columns."""
    images = table.column("image").combine_chunks()
    data = images.field("bytes")
    lengths = pa.compute.binary_length(data).fill_null(0).to_pylist()
    return [n + 256 for n in lengths]


def _image_bytes(table: pa.Table) -> int:
    data = table.column("image").combine_chunks().field("bytes")
    return int(pa.compute.sum(pa.compute.binary_length(data)).as_py() or 0)
