"""64-bit row signatures for the streaming path's duplicate search (equal rows, nulls equal, share a signature; a
collision only adds a candidate that is checked exactly) and the deterministic row sample of its bounded statistics
(``sample_mask``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

_NULL_SIG = np.uint64(0x5851F42D4C957F2D)


def _mix(h: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """splitmix64 finaliser: spreads every input bit over the output (uint64 in, uint64 out, wraps)."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: npt.NDArray[Any] = h ^ (h >> np.uint64(31))
        return out


def _words(data: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Every 8-byte little-endian word of ``data`` by start byte (an overlapping view; 8 zero bytes appended)."""
    padded = np.concatenate([data, np.zeros(8, np.uint8)])
    return np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))


def _window(words: npt.NDArray[Any], starts: npt.NDArray[Any], lengths: npt.NDArray[Any],
            at: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The 8 bytes of each string from offset ``at`` (0 <= at <= length) as a uint64, bytes past the string's end
    zeroed, so the value depends on the string alone."""
    remaining = np.minimum(lengths - at, 8).astype(np.uint64)
    keep = np.where(remaining >= 8, np.uint64(0xFFFFFFFFFFFFFFFF),
                    (np.uint64(1) << (np.uint64(8) * np.minimum(remaining, np.uint64(7)))) - np.uint64(1))
    out: npt.NDArray[Any] = words[starts + at] & keep
    return out


def _column_signature(arr: pa.Array) -> npt.NDArray[Any]:
    """A 64-bit value per row that equal values (and nulls) share: fixed-width values themselves; strings their
    byte length and four 8-byte windows (start, one third, two thirds, end)."""
    n = len(arr)
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    if pa.types.is_string(arr.type):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + n + 1].astype(np.int64)
        data_buf = arr.buffers()[2]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        words = _words(data[offsets[0]: offsets[-1]])
        starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
        sig = _mix(lengths.astype(np.uint64) + _GOLDEN)
        for k, at in enumerate((np.zeros(n, np.int64), lengths // 3, 2 * lengths // 3, np.maximum(lengths - 8, 0))):
            with np.errstate(over="ignore"):
                sig = _mix(sig * np.uint64(31 + 2 * k) + _window(words, starts, lengths, at))
    else:
        if pa.types.is_boolean(arr.type) or pa.types.is_date32(arr.type):  # 1 and 4 bytes: widen to 8
            arr = pc.cast(pc.cast(arr, pa.int32()) if pa.types.is_date32(arr.type) else arr, pa.int64())
        if pa.types.is_floating(arr.type):
            arr = pc.add(arr, pa.scalar(0.0, arr.type))  # -0.0 + 0.0 == +0.0, as pandas compares
        values = pc.fill_null(arr, pa.scalar(0, arr.type)).to_numpy(zero_copy_only=False)
        sig = _mix(np.ascontiguousarray(values).view(np.uint64) + _GOLDEN)
    return np.where(valid, sig, _NULL_SIG)


def row_signature(columns: list[pa.Array], n: int,
                  cache: dict[int, npt.NDArray[Any]] | None = None) -> npt.NDArray[Any]:
    """Signature of each row over ``columns`` (equal rows, nulls equal, have equal signatures); ``cache`` keeps
    column signatures by array identity for the next call on the same block."""
    cache = {} if cache is None else cache
    sig = np.full(n, _GOLDEN, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for arr in columns:
            if id(arr) not in cache:
                cache[id(arr)] = _column_signature(arr)
            sig = _mix(sig * np.uint64(0x100000001B3) + cache[id(arr)])
    return sig


def sample_mask(start: int, n: int, rate: float) -> npt.NDArray[Any]:
    """Rows ``start .. start + n - 1`` of a uniform Bernoulli sample at ``rate``, chosen by a hash of the row's
    position (so the same input gives the same sample)."""
    if rate >= 1:
        return np.ones(n, dtype=bool)
    with np.errstate(over="ignore"):
        h = _mix(np.arange(start, start + n, dtype=np.uint64) * _GOLDEN)
    return h < np.uint64(min(int(rate * 2.0**64), 2**64 - 1))
