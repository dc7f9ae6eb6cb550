"""The training input: the balance stage's Parquet shards, streamed, decoded and augmented in parallel, shuffled,
prefetched. A split whose decoded images fit ``InputSpec.cache_bytes`` is decoded once and then gathered from memory
(tf.data loader), in the same order, so its batches are those of the stream.

Two loaders read the same row stream:

- **tf.data** (the TensorFlow backend's default): a Python generator reads shards with pyarrow (zstd decoding releases
  the GIL) and feeds chunks of encoded bytes into tf.data, which decodes, resizes and augments on its own thread pool
  (`num_parallel_calls=AUTOTUNE`, order kept), batches and prefetches.
- **worker processes** (JAX, PyTorch, or ``loader="workers"``): the same generator feeds batches of encoded bytes to a
  spawned process pool running `fusekit.train.decode` (NumPy + Pillow), a few batches in flight, order kept.

The row stream shuffles at two levels: the shard order per epoch, and a sample buffer (``shuffle_buffer`` rows) that
mixes ``interleave`` shards read round-robin. Both draw from ``(seed, epoch)``, and each sample's augmentation from
``(seed, epoch, position)``, so an epoch's batches are a pure function of its number: a resumed run sees exactly what
an uninterrupted run would have.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq

from fusekit.errors import UserError
from fusekit.train.decode import Augment, decode_batch

SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
log = logging.getLogger(__name__)
DEFAULT_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")


class DataError(UserError):
    """The dataset folder is not what the trainer expects (the CLI turns it into a one-line user error)."""


@dataclass
class Shards:
    """A dataset folder written by `fusekit balance`: ``data/{split}-{i:05d}-of-{n:05d}.parquet`` + card + weights."""

    root: Path
    files: dict[str, list[Path]]
    classes: tuple[str, ...]
    _rows: dict[str, int] = field(default_factory=dict, repr=False)

    def rows(self, split: str) -> int:
        if split not in self._rows:
            self._rows[split] = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files.get(split, []))
        return self._rows[split]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def image_size(self, split: str) -> int | None:
        """Side of the first stored image of ``split`` (the aligned face size; `predict` aligns to it)."""
        from fusekit.train.decode import image_side

        for _, blob, _ in iter_rows(self.files.get(split, [])[:1], batch_rows=1):
            return image_side(blob)
        return None

    def card_hash(self) -> str | None:
        """sha256 of the dataset card (README.md): which build of the dataset a run was trained on."""
        card = self.root / "README.md"
        return hashlib.sha256(card.read_bytes()).hexdigest() if card.is_file() else None

    def class_weights(self) -> list[float]:
        """Per class id, from ``class_weights.json`` (by class name or id; a missing class weighs 1)."""
        path = self.root / "class_weights.json"
        if not path.is_file():
            raise DataError(f"{path} not found: run `fusekit balance` again, or train without --class-weights")
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("class_weights", "weights"):
            if isinstance(data, dict) and isinstance(data.get(key), (dict, list)):
                data = data[key]
        if isinstance(data, list):
            return [float(w) for w in data][: self.num_classes] + [1.0] * max(0, self.num_classes - len(data))
        weights = [1.0] * self.num_classes
        for key, value in data.items():
            if not isinstance(value, (int, float)):
                continue
            if key in self.classes:
                weights[self.classes.index(key)] = float(value)
            elif str(key).isdigit() and int(key) < self.num_classes:
                weights[int(key)] = float(value)
        return weights


def open_shards(path: str | Path) -> Shards:
    """Find the shards under ``path`` (the dataset folder, or its ``data/`` folder)."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist (expected the folder `fusekit balance` wrote)")
    data = root / "data" if (root / "data").is_dir() else root
    if data.name == "data" and not (root / "data").is_dir():
        root = data.parent
    files: dict[str, list[Path]] = {}
    for f in sorted(data.glob("*.parquet")):
        m = SHARD_RE.match(f.name)
        if m:
            files.setdefault(m["split"], []).append(f)
    if not files:
        raise DataError(f"no shards in {data} (expected data/{{split}}-00000-of-0000N.parquet from `fusekit balance`)")
    return Shards(root, files, _classes(root, next(iter(files.values()))[0]))


def _classes(root: Path, first: Path) -> tuple[str, ...]:
    """Class names from the HF features in the schema metadata, else class_weights.json, else the canonical list."""
    meta = pq.read_schema(first).metadata or {}
    try:
        info = json.loads(meta[b"huggingface"])
        names = info["info"]["features"]["label"]["names"]
        if names:
            return tuple(names)
    except (KeyError, TypeError, ValueError):
        pass
    path = root / "class_weights.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data.get("class_weights", data.get("weights", data)) if isinstance(data, dict) else data
        if isinstance(data, dict) and all(k in DEFAULT_CLASSES for k in data):
            return tuple(c for c in DEFAULT_CLASSES if c in data)
    return DEFAULT_CLASSES[:7]


# -- the row stream -------------------------------------------------------------------------------------------------

Row = tuple[int, bytes, int]  # (position in the epoch, encoded image, label id)


def iter_rows(files: Sequence[Path], *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
              buffer: int = 8192, interleave: int = 4, batch_rows: int = 512, refs: bool = False) -> Iterator[Row]:
    """Rows of ``files`` in order, or shuffled (shard order + a sample buffer over ``interleave`` open shards).

    With ``refs`` a row's bytes are replaced by its index in file order (all files' rows numbered one after the
    other): the same sequence, read from the label column alone, for a loader that holds the decoded images.
    """
    rows = _read_rows(files, interleave if shuffle else 1, batch_rows, np.random.default_rng([seed, epoch])
                      if shuffle else None, refs)
    if not shuffle:
        yield from ((i, data, label) for i, (data, label) in enumerate(rows))
        return
    rng = np.random.default_rng([seed, epoch, 1])
    buf: list[tuple[bytes, int]] = []
    position = 0
    picks = iter(())
    for row in rows:
        if len(buf) < buffer:
            buf.append(row)
            continue
        j = next(picks, None)
        if j is None:
            picks = iter(rng.integers(0, buffer, size=4096).tolist())
            j = next(picks)
        out, buf[j] = buf[j], row
        yield (position, *out)
        position += 1
    for j in rng.permutation(len(buf)).tolist():
        yield (position, *buf[j])
        position += 1


def _read_rows(files: Sequence[Path], interleave: int, batch_rows: int,
               rng: np.random.Generator | None, refs: bool = False) -> Iterator[tuple[bytes | int, int]]:
    order = [files[i] for i in rng.permutation(len(files))] if rng is not None else list(files)
    first_row = dict(zip(files, np.cumsum([0] + [pq.ParquetFile(f).metadata.num_rows for f in files]).tolist())) \
        if refs else {}
    pending = collections.deque(order)
    open_: collections.deque = collections.deque()
    while pending or open_:
        while pending and len(open_) < interleave:
            f = pending.popleft()
            columns = ["label"] if refs else ["image", "label"]
            open_.append((f, pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns), [0]))
        f, batches, seen = open_.popleft()
        batch = next(batches, None)
        if batch is None:
            continue
        if refs:  # (the cache holds every row, so no row is skipped here)
            start = first_row[f] + seen[0]
            yield from zip(range(start, start + batch.num_rows), map(int, batch.column(0).to_pylist()))
            seen[0] += batch.num_rows
            open_.append((f, batches, seen))
            continue
        image = batch.column(0)
        data = image.field("bytes").to_pylist()
        paths = image.field("path").to_pylist() if None in data else None
        for n, (blob, label) in enumerate(zip(data, batch.column(1).to_pylist())):
            if blob is None:  # HF convention: no stored bytes, a file beside the shards
                target = f.parent.parent / (paths[n] or "")
                if not paths[n] or not target.is_file():
                    continue
                blob = target.read_bytes()
            yield blob, int(label)
        open_.append((f, batches, seen))


def read_columns(files: Sequence[Path], columns: Sequence[str]) -> dict[str, list]:
    """Plain columns (no images) of ``files`` in stream order, e.g. ``dataset`` and ``label`` for evaluation."""
    out: dict[str, list] = {c: [] for c in columns}
    for f in files:
        present = set(pq.read_schema(f).names)
        table = pq.read_table(f, columns=[c for c in columns if c in present])
        for c in columns:
            out[c] += table.column(c).to_pylist() if c in present else [None] * table.num_rows
    return out


# -- loaders --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InputSpec:
    """How images reach the model: size, channels, batch, augmentation, shuffling, loader."""

    size: int = 112
    channels: int = 3
    batch_size: int = 64
    augment: Augment = field(default_factory=Augment)
    seed: int = 0
    shuffle_buffer: int = 8192
    interleave: int = 4
    loader: str = "auto"  # auto | tf | workers
    workers: int = 0  # worker processes for the process loader (0: decode in this process)
    class_weights: tuple[float, ...] | None = None
    # decoded splits up to this many bytes stay in memory after their first pass (tf.data loader): FER-2013's
    # 23,000 training faces at 48x48 grey are 212 MB as float32, and decoding them again every epoch costs a
    # 2-core box about a fifth of a cnn2 epoch. 0 turns the cache off.
    cache_bytes: int = 2 << 30


def backend_name() -> str:
    import keras

    return keras.backend.backend()


class InputPipeline:
    """Per-epoch training batches and ordered evaluation batches from one dataset folder."""

    def __init__(self, shards: Shards, spec: InputSpec) -> None:
        self.shards = shards
        self.spec = spec
        loader = spec.loader
        if loader == "auto":  # (the only case that needs Keras imported)
            loader = "tf" if backend_name() == "tensorflow" else "workers"
        self.loader = loader
        self._pool = None
        self._datasets: dict = {}
        self._epoch: dict = {}
        self._caches: dict = {}

    def steps(self, split: str, training: bool) -> int:
        n = self.shards.rows(split)
        bs = self.spec.batch_size
        return max(1, n // bs) if training and n >= bs else -(-n // bs)

    def train(self, epoch: int, split: str = "train"):
        """Shuffled, augmented batches ``(x, y, sample_weight)`` for ``epoch``; the last partial batch is dropped."""
        return self._make(split, epoch=epoch, training=True)

    def eval(self, split: str, with_weights: bool = False):
        """Every row of ``split`` in file order, no augmentation: ``(x, y)`` batches (``(x, y, w)`` if asked)."""
        return self._make(split, epoch=0, training=False, with_weights=with_weights)

    def _make(self, split: str, epoch: int, training: bool, with_weights: bool = True):
        files = self.shards.files.get(split)
        if not files:
            raise DataError(f"the dataset has no {split!r} split (splits: {', '.join(sorted(self.shards.files))})")
        spec = self.spec
        drop = training and self.shards.rows(split) >= spec.batch_size
        weights = spec.class_weights if with_weights else None
        if with_weights and weights is None:
            weights = (1.0,) * self.shards.num_classes
        aug = spec.augment if training and spec.augment.active else None
        if self.loader == "tf":
            # one tf.data graph per (split, mode), built once: each iteration calls the generator afresh, which
            # reads the epoch set here (tracing the map functions again every epoch costs more than the epoch
            # of a small model)
            key = (split, training, with_weights)
            self._epoch[key] = epoch
            if key not in self._datasets and (cache := self._cache(split, files)) is not None:
                def refs(key=key) -> Iterator[tuple[int, Row]]:
                    e = self._epoch[key]
                    return ((e, row) for row in iter_rows(files, shuffle=training, seed=spec.seed, epoch=e,
                                                          buffer=spec.shuffle_buffer, interleave=spec.interleave,
                                                          refs=True))

                self._datasets[key] = _tf_dataset(refs, spec, aug, drop, weights, cache=cache)
            if key not in self._datasets:
                def rows(key=key) -> Iterator[tuple[int, Row]]:
                    e = self._epoch[key]
                    return ((e, row) for row in iter_rows(files, shuffle=training, seed=spec.seed, epoch=e,
                                                          buffer=spec.shuffle_buffer, interleave=spec.interleave))

                self._datasets[key] = _tf_dataset(rows, spec, aug, drop, weights)
            return self._datasets[key]

        def plain_rows() -> Iterator[Row]:
            return iter_rows(files, shuffle=training, seed=spec.seed, epoch=epoch, buffer=spec.shuffle_buffer,
                             interleave=spec.interleave)

        return _ProcessBatches(plain_rows, spec, aug, epoch, drop, weights, self._get_pool())

    def _cache(self, split: str, files: Sequence[Path]):
        """The split decoded once, in file order (``None`` when it would not fit ``cache_bytes``, or a row's image
        is missing): uint8 where the shards are already at the input size (exact), float32 where they are resized."""
        if split in self._caches:
            return self._caches[split]
        spec, rows = self.spec, self.shards.rows(split)
        exact = self.shards.image_size(split) == spec.size
        need = rows * spec.size * spec.size * spec.channels * (1 if exact else 4)
        cache = None
        if rows > 0 and need <= spec.cache_bytes:
            images = _tf_decode_all(iter_rows(files), spec.size, spec.channels, np.uint8 if exact else np.float32)
            if len(images) == rows:
                cache = images
            else:
                log.info("not caching %s: %d of %d rows have an image", split, len(images), rows)
        self._caches[split] = cache
        return cache

    def _get_pool(self):
        if self._pool is None and self.spec.workers > 0:
            from fusekit.runner import process_pool

            # fresh (spawn), not fork: JAX and PyTorch hold threads that fork would copy in an unusable state
            self._pool = process_pool(self.spec.workers, fresh=True)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class _ProcessBatches:
    """An iterable of numpy batches decoded by a process pool (or inline), a few batches ahead, order kept."""

    def __init__(self, rows, spec: InputSpec, aug: Augment | None, epoch: int, drop: bool,
                 weights: Sequence[float] | None, pool) -> None:
        self.rows, self.spec, self.aug, self.epoch, self.drop, self.pool = rows, spec, aug, epoch, drop, pool
        self.weights = np.asarray(weights, np.float32) if weights is not None else None

    def _chunks(self) -> Iterator[list[Row]]:
        chunk: list[Row] = []
        for row in self.rows():
            chunk.append(row)
            if len(chunk) == self.spec.batch_size:
                yield chunk
                chunk = []
        if chunk and not self.drop:
            yield chunk

    def __iter__(self):
        spec = self.spec
        args = (spec.size, spec.channels, self.aug, spec.seed, self.epoch)
        results = (decode_batch(chunk, *args) for chunk in self._chunks()) if self.pool is None else self._ahead(args)
        for x, y in results:
            xf = x.astype(np.float32) * np.float32(1 / 255)
            yield (xf, y) if self.weights is None else (xf, y, self.weights[y])

    def _ahead(self, args):
        pending: collections.deque = collections.deque()
        for chunk in self._chunks():
            pending.append(self.pool.submit(decode_batch, chunk, *args))
            if len(pending) >= 2 * self.spec.workers + 2:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _tf_image_loader(size: int, channels: int):
    """bytes -> float32 size x size x channels, 0..255 (resized with antialiasing where the shard differs)."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def load_image(blob):
        img = tf.io.decode_image(blob, channels=channels, expand_animations=False)
        img = tf.cast(img, tf.float32)
        same = tf.reduce_all(tf.shape(img)[:2] == size)
        img = tf.cond(same, lambda: img, lambda: tf.image.resize(img, (size, size), antialias=True))
        img.set_shape((size, size, channels))
        return img

    return load_image


def _tf_decode_all(rows: Iterator[Row], size: int, channels: int, dtype) -> np.ndarray:
    """Every row's image, decoded by the training loader's own function, in stream order."""
    import tensorflow as tf

    blobs = [blob for _, blob, _ in rows]
    if not blobs:
        return np.zeros((0, size, size, channels), dtype)
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(blobs, tf.string))
    ds = ds.map(_tf_image_loader(size, channels), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return np.concatenate([b.numpy().astype(dtype) for b in ds.batch(512)])


def _tf_dataset(rows, spec: InputSpec, aug: Augment | None, drop: bool, weights: Sequence[float] | None,
                cache: np.ndarray | None = None):
    """``rows()`` yields ``(epoch, (position, bytes, label))``; the stateless augmentation seed is
    (seed, epoch, position). With ``cache`` (the split decoded, in file order), ``rows()`` yields references
    (`iter_rows` with ``refs``) in place of bytes, and images are gathered from it."""
    import tensorflow as tf

    chunk = 64

    def chunks():
        # whole chunks through the generator (one Python call per 64 rows), unbatched in C++ below
        epochs, idx, blobs, labels = [], [], [], []
        kind = object if cache is None else np.int64
        for epoch, (i, blob, label) in rows():
            epochs.append(epoch)
            idx.append(i)
            blobs.append(blob)
            labels.append(label)
            if len(idx) == chunk:
                yield (np.asarray(epochs, np.int64), np.asarray(idx, np.int64), np.asarray(blobs, kind),
                       np.asarray(labels, np.int32))
                epochs, idx, blobs, labels = [], [], [], []
        if idx:
            yield (np.asarray(epochs, np.int64), np.asarray(idx, np.int64), np.asarray(blobs, kind),
                   np.asarray(labels, np.int32))

    signature = (tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64),
                 tf.TensorSpec([None], tf.string if cache is None else tf.int64), tf.TensorSpec([None], tf.int32))
    ds = tf.data.Dataset.from_generator(chunks, output_signature=signature).unbatch()
    table = tf.constant(weights, tf.float32) if weights is not None else None
    load_image = _tf_image_loader(spec.size, spec.channels)
    images = tf.constant(cache) if cache is not None else None

    @tf.autograph.experimental.do_not_convert
    def load(epoch, i, blob, label):
        img = load_image(blob) if images is None else tf.cast(tf.gather(images, blob), tf.float32)
        return epoch, i, img, label

    @tf.autograph.experimental.do_not_convert
    def finish(epoch, i, img, label):
        # augmentation runs on whole batches (one kernel launch per op, not per image); its draws are seeded by
        # (seed, epoch, position of the batch's first sample), so an epoch's batches stay a function of its number
        if aug is not None:
            img = tf_augment(img, aug, tf.stack([spec.seed * 1_000_003 + epoch[0], i[0]]))
        img = img / 255.0
        return (img, label) if table is None else (img, label, tf.gather(table, label))

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(spec.batch_size, drop_remainder=drop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def tf_augment(img, aug: Augment, seed):
    """The tf.data twin of `fusekit.train.decode.augment` on a float 0..255 batch (N x H x W x C); ``seed`` is a
    stateless seed; each image gets its own draws. The same ops in the same order with the same parameters; the draws
    are TensorFlow's, not NumPy's. The ops added after the first six (crop, zoom, erase) take their seeds from a
    second split, so that turning them on or off leaves the first six's draws alone."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(seed, 6)
    more = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, 7), 3)
    n = tf.shape(img)[0]
    if aug.flip:
        flip = tf.random.stateless_uniform([n], seeds[0]) < 0.5
        img = tf.where(flip[:, None, None, None], tf.reverse(img, axis=[2]), img)
    if aug.crop:
        img = tf_pad_crop(img, int(aug.crop), tf.random.stateless_uniform([n, 2], more[0], 0, 2 * int(aug.crop) + 1,
                                                                          dtype=tf.int32))
    if aug.rotate or aug.shift or aug.zoom:
        side = tf.cast(tf.shape(img)[1], tf.float32)
        theta = tf.random.stateless_uniform([n], seeds[1], -aug.rotate, aug.rotate) * (np.pi / 180)
        t = tf.random.stateless_uniform([n, 2], seeds[2], -aug.shift, aug.shift) * side
        scale = tf.random.stateless_uniform([n], more[1], 1 - aug.zoom, 1 + aug.zoom) if aug.zoom else 1.0
        cos, sin, c = tf.cos(theta) / scale, tf.sin(theta) / scale, (side - 1) / 2
        # output (x, y) -> input point, as in decode._affine
        a2 = c - cos * (c + t[:, 0]) - sin * (c + t[:, 1])
        b2 = c + sin * (c + t[:, 0]) - cos * (c + t[:, 1])
        zeros = tf.zeros_like(cos)
        transforms = tf.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=1)
        img = tf.raw_ops.ImageProjectiveTransformV3(
            images=img, transforms=transforms, output_shape=tf.shape(img)[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="CONSTANT")
    if aug.brightness:
        img = img * tf.random.stateless_uniform([n, 1, 1, 1], seeds[3], 1 - aug.brightness, 1 + aug.brightness)
    if aug.contrast:
        mean = tf.reduce_mean(img, axis=[1, 2, 3], keepdims=True)
        img = (img - mean) * tf.random.stateless_uniform([n, 1, 1, 1], seeds[4], 1 - aug.contrast,
                                                         1 + aug.contrast) + mean
    if aug.color and img.shape[-1] == 3:
        grey = tf.reduce_sum(img * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
        img = grey + (img - grey) * tf.random.stateless_uniform([n, 1, 1, 1], seeds[5], 1 - aug.color, 1 + aug.color)
    img = tf.clip_by_value(img, 0.0, 255.0)
    if aug.erase:
        img = tf_erase(img, aug.erase, tf.random.stateless_uniform([n, 5], more[2]))
    return img


def tf_pad_crop(img, pad: int, offsets):
    """`decode.pad_crop` on a batch: image i is the window at ``offsets[i]`` = (top, left) of it padded with ``pad``
    black pixels."""
    import tensorflow as tf

    h, w = tf.shape(img)[1], tf.shape(img)[2]
    padded = tf.pad(img, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    rows = offsets[:, :1] + tf.range(h)[None, :]
    cols = offsets[:, 1:] + tf.range(w)[None, :]
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def tf_erase(img, p: float, u):
    """`decode.erase_box` + `decode.erase` on a batch: ``u`` is N x 5 uniforms (apply?, area, ratio, top, left); the
    rectangle is filled with the picture's own mean per channel."""
    import math

    import tensorflow as tf

    from fusekit.train.decode import ERASE_AREA, ERASE_RATIO

    shape = tf.shape(img)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    area = h * w * (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * u[:, 1])
    lo, hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = tf.exp(lo + (hi - lo) * u[:, 2])
    eh = tf.clip_by_value(tf.round(tf.sqrt(area * ratio)), 1.0, h)
    ew = tf.clip_by_value(tf.round(tf.sqrt(area / ratio)), 1.0, w)
    top = tf.floor(u[:, 3] * (h - eh + 1))
    left = tf.floor(u[:, 4] * (w - ew + 1))
    y = tf.range(h)[None, :, None]
    x = tf.range(w)[None, None, :]
    inside = ((y >= top[:, None, None]) & (y < (top + eh)[:, None, None]) & (x >= left[:, None, None])
              & (x < (left + ew)[:, None, None]) & (u[:, 0] < p)[:, None, None])
    mean = tf.reduce_mean(img, axis=[1, 2], keepdims=True)
    return tf.where(inside[..., None], mean, img)
