"""Arrow string columns built from numpy buffers, for the ingest's per-flow tables.

`pa.array` over Python strings costs ~0.1-0.2 µs a row: on the flows table of a 26k-flow capture its
string columns took ~40 ms. Most of them repeat a few values (protocol, TCP state, history pattern,
host, run id) or are fixed-width ASCII (flow uids): their bytes and offsets are laid out here with a
few vector operations instead, and the result is the same plain `string` array (no dictionary
encoding: the store's schema takes plain strings, and casting would load pyarrow.compute).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

_MAX_BYTES = (1 << 31) - 1  # a `string` array's int32 offsets


def coded(codes: np.ndarray, values: Sequence[str | None]) -> pa.StringArray:
    """values[codes[i]] for every row (a None value is a null row), as a `string` array."""
    codes = np.asarray(codes, np.int64)
    n = len(codes)
    encoded = [b"" if v is None else v.encode() for v in values]
    lens = np.fromiter(map(len, encoded), np.int64, len(encoded))
    row_len = lens[codes] if n else np.zeros(0, np.int64)
    total = int(row_len.sum())
    if total > _MAX_BYTES:
        return pa.array(np.asarray(list(values), dtype=object)[codes], pa.string())
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(row_len, out=offsets[1:])
    if len(encoded) == 1:  # one value: its bytes repeated
        data = np.tile(np.frombuffer(encoded[0], np.uint8), n) if total else np.zeros(0, np.uint8)
    else:
        starts = np.zeros(len(encoded), np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        blob = np.frombuffer(b"".join(encoded), np.uint8)
        # byte k of row i is blob[starts[codes[i]] + k - offsets[i]]
        data = blob[np.arange(total, dtype=np.int64) + np.repeat(starts[codes] - offsets[:-1], row_len)]
    nulls = [i for i, v in enumerate(values) if v is None]
    validity, null_count = None, 0
    if nulls and n:
        valid = ~np.isin(codes, nulls)
        null_count = n - int(np.count_nonzero(valid))
        validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if null_count else None
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), validity, null_count)


def constant(value: str, n: int) -> pa.StringArray:
    """`value` in every one of `n` rows."""
    return coded(np.zeros(n, np.int64), [value])


def fixed_width(chars: np.ndarray) -> pa.StringArray:
    """Each row of an (n, width) uint8 matrix of ASCII (or UTF-8) bytes as one string."""
    n, width = chars.shape
    if n * width > _MAX_BYTES:
        return pa.array(np.ascontiguousarray(chars).view(f"S{width}").ravel().astype(str).astype(object), pa.string())
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32) if width else np.zeros(n + 1, np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))
