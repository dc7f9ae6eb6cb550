"""All pairs of 64-bit hashes within a Hamming radius: exact, chunked, and sub-quadratic at a million faces.

Two exact methods give the same pairs (the tests compare both with a numpy brute force):

- ``flat``: faiss ``IndexBinaryFlat.range_search`` (SIMD popcount over every pair), queries in blocks so the result
  lists stay small. Cost grows with queries x database: about 0.5 ns a pair here, so 1M x 1M is ~8 minutes.
- ``mih``: multi-index hashing (Norouzi, Punjani & Fleet, TPAMI 2014). The 64 bits are cut into 3 substrings of
  21/21/22 bits; two codes within radius r agree within floor(r/3) bits on at least one substring (pigeonhole), so
  every neighbour sits in a bucket reached by flipping at most floor(r/3) bits of one substring of the query. Bucket
  tables are dense arrays (counts and offsets over 2^22 keys); each flip pattern is one vectorised gather over all
  queries of a block, and every candidate is verified with a popcount. faiss's own ``IndexBinaryMultiHash`` does the
  same with hash maps, measured here at ~205 us a query (3 x 21 bits, nflip 2): 2.5x slower than its flat scan at 1M.

``auto`` takes ``flat`` when queries x database is small (tests, small workspaces) and ``mih`` otherwise.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

SUBSTRINGS = ((0, 21), (21, 21), (42, 22))  # (first bit, length) of each substring of a 64-bit code
FLAT_WORK_LIMIT = 2e9  # query x database pairs below which the faiss flat scan is the faster exact method
MAX_MIH_RADIUS = 11  # floor(11/3) = 3 flips per substring (1,562 patterns); beyond, the flat scan is used


def _as_bytes(codes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(codes, dtype=np.uint64).view(np.uint8).reshape(-1, 8)


def flat_pairs(queries: np.ndarray, database: np.ndarray, radius: int, block: int = 65536,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(query index, database index) of every pair within ``radius`` (inclusive), by faiss's flat binary index."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    index = faiss.IndexBinaryFlat(64)
    index.add(_as_bytes(database))
    q_bytes = _as_bytes(queries)
    qs, ds = [], []
    for start in range(0, len(queries), block):
        # faiss keeps distances strictly below the radius it is given
        lims, _, ids = index.range_search(q_bytes[start:start + block], radius + 1)
        counts = np.diff(lims).astype(np.int64)
        qs.append(np.repeat(np.arange(start, start + len(counts), dtype=np.int64), counts))
        ds.append(ids.astype(np.int64))
    return _concat(qs), _concat(ds)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _patterns(bits: int, flips: int) -> np.ndarray:
    out = [0]
    for k in range(1, flips + 1):
        out += [sum(1 << b for b in combo) for combo in combinations(range(bits), k)]
    return np.array(out, dtype=np.int64)


def mih_pairs(queries: np.ndarray, database: np.ndarray, radius: int, block: int = 1 << 20,
              threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``flat_pairs`` finds, by multi-index hashing, unsorted and some more than once (``range_pairs``
    sorts and deduplicates); memory bounded by ``block`` queries.

    The substrings are searched in parallel threads (numpy releases the GIL in the array operations).
    """
    if radius > MAX_MIH_RADIUS:
        return flat_pairs(queries, database, radius)
    queries = np.ascontiguousarray(queries, np.uint64)
    database = np.ascontiguousarray(database, np.uint64)
    flips = radius // len(SUBSTRINGS)
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda sub: _mih_substring(queries, database, radius, flips, sub, block),
                                    SUBSTRINGS))
    else:
        results = [_mih_substring(queries, database, radius, flips, sub, block) for sub in SUBSTRINGS]
    # a pair close in several substrings comes once per substring: range_pairs sorts and drops the repeats
    return _concat([r[0] for r in results]), _concat([r[1] for r in results])


def _mih_substring(queries: np.ndarray, database: np.ndarray, radius: int, flips: int, substring: tuple[int, int],
                   block: int) -> tuple[np.ndarray, np.ndarray]:
    first, length = substring
    found_q, found_d = [], []
    mask = np.uint64((1 << length) - 1)
    # Both sides sorted by substring key: a flip pattern then reads the bucket tables and the codes in long
    # ascending runs instead of at random.
    dkeys = ((database >> np.uint64(first)) & mask).astype(np.int64)
    dorder = np.argsort(dkeys, kind="stable")
    dcodes = database[dorder]
    counts = np.bincount(dkeys, minlength=1 << length)
    starts = (np.cumsum(counts) - counts).astype(np.int64)
    # A byte per bucket (2-4 MiB) answers "is it empty?" from cache; most buckets hold 0 or 1 code at a million
    # faces (2^21 buckets), so a one-code bucket is read directly and only fuller buckets take the general path.
    occupied = np.minimum(counts, 255).astype(np.uint8)
    del dkeys
    patterns = _patterns(length, flips)
    for qstart in range(0, len(queries), block):
        qall = queries[qstart:qstart + block]
        qkeys = ((qall >> np.uint64(first)) & mask).astype(np.int64)
        qorder = np.argsort(qkeys, kind="stable")
        qkeys, qcodes = qkeys[qorder], qall[qorder]
        for pattern in patterns:
            target = qkeys ^ pattern
            hits = occupied[target]
            nz = np.flatnonzero(hits)
            if not len(nz):
                continue
            one = hits[nz] == 1
            qi = nz[one]
            pos = starts[target[qi]]
            if not one.all():  # buckets with several codes: every code of the bucket
                many = nz[~one]
                n_hits = counts[target[many]]
                qm = np.repeat(many, n_hits)
                offsets = np.arange(len(qm), dtype=np.int64) - np.repeat(np.cumsum(n_hits) - n_hits, n_hits)
                qi = np.concatenate([qi, qm])
                pos = np.concatenate([pos, np.repeat(starts[target[many]], n_hits) + offsets])
            near = np.bitwise_count(qcodes[qi] ^ dcodes[pos]) <= radius
            if near.any():
                found_q.append(qorder[qi[near]] + qstart)
                found_d.append(dorder[pos[near]])
    return _concat(found_q), _concat(found_d)


def range_pairs(queries: np.ndarray, database: np.ndarray, radius: int,
                method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Every (query, database) index pair within ``radius``, sorted, without repeats."""
    if method == "auto":
        method = "flat" if float(len(queries)) * len(database) <= FLAT_WORK_LIMIT else "mih"
    if method == "flat":
        q, d = flat_pairs(queries, database, radius)
    elif method == "mih":
        q, d = mih_pairs(queries, database, radius)
    elif method == "brute":
        q, d = brute_pairs(queries, database, radius)
    else:
        raise ValueError(f"unknown search method {method!r}")
    if len(q):
        key = np.unique(q.astype(np.int64) * len(database) + d)
        q, d = key // len(database), key % len(database)
    return q.astype(np.int64), d.astype(np.int64)


def brute_pairs(queries: np.ndarray, database: np.ndarray, radius: int,
                block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The reference: numpy XOR + popcount over every pair, in blocks (for tests and the benchmark's check)."""
    queries = np.asarray(queries, np.uint64)
    database = np.asarray(database, np.uint64)
    qs, ds = [], []
    for start in range(0, len(queries), block):
        dist = np.bitwise_count(queries[start:start + block, None] ^ database[None, :])
        qi, di = np.nonzero(dist <= radius)
        qs.append(qi + start)
        ds.append(di)
    return _concat(qs).astype(np.int64), _concat(ds).astype(np.int64)
