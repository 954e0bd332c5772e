"""Pure, vectorised transforms: missing markers, type coercion, imputation, derived features, duplicates, statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing import typecast
from processing.config import GroupStatistics, Imputation
from processing.features import Bins
from processing.types import NEW_TYPES, TEMPORAL_TYPES

# Finite decimal numbers only: no thousands separators, no inf/nan words (those are invalid, or missing markers).
FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$"
INT_RE = r"^[+-]?\d{1,18}(\.0*)?$"
STRING_DTYPE = pd.StringDtype("pyarrow")


def to_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    return values


def mark_missing(values: pa.Array, markers: tuple[str, ...]) -> pa.Array:
    """Turn cells equal to one of ``markers`` (exact match) into nulls."""
    if not markers or len(values) == 0:
        return values
    value_set = pa.array(markers, pa.string())
    longest = max(len(m.encode("utf-8")) for m in markers)
    short = pc.fill_null(pc.less_equal(pc.binary_length(values), longest), False)
    short_idx = np.flatnonzero(short.to_numpy(zero_copy_only=False))
    if len(short_idx) == len(values):
        hit = pc.fill_null(pc.is_in(values, value_set=value_set), False)
    else:  # only cells no longer than the longest marker can be one: hash just those (not long JSON texts)
        found = np.zeros(len(values), dtype=bool)
        if len(short_idx):
            sub = values.take(pa.array(short_idx))
            found[short_idx] = pc.fill_null(pc.is_in(sub, value_set=value_set), False).to_numpy(zero_copy_only=False)
        hit = pa.array(found)
    if values.offset == 0 and pa.types.is_string(values.type):
        # Zero-copy: only the validity bitmap changes (if_else would copy every string).
        keep = pc.and_(pc.is_valid(values), pc.invert(hit))
        if keep.offset == 0:
            return pa.Array.from_buffers(values.type, len(values), [keep.buffers()[1], *values.buffers()[1:]])
    return pc.if_else(hit, pa.scalar(None, values.type), values)


def coerce(values: pa.Array, kind: str) -> tuple[pa.Array, pa.Array]:
    """Parse a string column to ``integer`` (int64) or ``float`` (float64).

    Returns:
        The typed array (null where missing or invalid) and a boolean mask of invalid cells
        (present but not a finite number, or not integral / out of range for integers).
    """
    trimmed = pc.utf8_trim_whitespace(values)
    if kind == "integer":
        ok = pc.fill_null(pc.match_substring_regex(trimmed, INT_RE), False)
        text = pc.replace_substring_regex(pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), r"^\+|\.0*$", "")
        typed = pc.cast(text, pa.int64())
    else:
        ok = pc.fill_null(pc.match_substring_regex(trimmed, FLOAT_RE), False)
        typed = pc.cast(pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), pa.float64())
        finite = pc.fill_null(pc.is_finite(typed), False)
        typed = pc.if_else(finite, typed, pa.scalar(None, pa.float64()))
    invalid = pc.and_(pc.is_valid(values), pc.is_null(typed))
    return typed, invalid


def to_series(values: pa.Array, kind: str) -> pd.Series:
    """Arrow array -> pandas Series in the documented dtype for ``kind``."""
    if kind in NEW_TYPES:
        return typecast.to_series(values, kind)
    if kind == "integer":
        return pd.Series(values.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), dtype="Int64")
    if kind == "float":
        return pd.Series(values.to_numpy(zero_copy_only=False), dtype="float64")
    return pd.Series(pd.array(values, dtype=STRING_DTYPE))


def impute_value(series: pd.Series, rule: Imputation, kind: str) -> dict[str, Any]:
    """Compute the fill value for ``series`` (missing and invalid are both null here).

    Returns:
        ``{"strategy", "value", "computed", "source"}``: ``value`` is what gets filled (None = left missing),
        ``computed`` the statistic before rounding, ``source`` one of statistic/constant/fallback/none.
    """
    present = series.dropna()
    if rule.strategy == "constant":
        return {"strategy": "constant", "value": rule.value, "computed": None, "source": "constant"}
    if present.empty:
        source = "fallback" if rule.fallback is not None else "none"
        return {"strategy": rule.strategy, "value": rule.fallback, "computed": None, "source": source}
    if rule.strategy == "median" and kind in TEMPORAL_TYPES:
        computed: Any = typecast.median_of(present, kind)  # days / microseconds since the epoch
    elif rule.strategy == "median":
        computed = float(np.median(present.to_numpy(dtype="float64")))
    elif rule.strategy == "mean":
        computed = float(np.mean(present.to_numpy(dtype="float64")))
    else:
        computed = most_frequent(present.value_counts(sort=False))
    return imputation_info(rule, kind, computed)


def most_frequent(counts: pd.Series) -> Any:
    """The most frequent value of a value -> count Series; ties go to the smallest value, so the choice is
    deterministic."""
    top = counts[counts == counts.max()].index
    value = min(top)
    return value.item() if hasattr(value, "item") else value


def imputation_info(rule: Imputation, kind: str, computed: Any) -> dict[str, Any]:
    """``impute_value``'s result for a computed statistic: integer columns get it rounded half to even."""
    if kind in NEW_TYPES:
        return typecast.imputation_info(rule, kind, computed)
    value = computed
    if kind == "integer" and isinstance(computed, float):
        value = round(computed)  # an int, rounded half to even
    return {"strategy": rule.strategy, "value": value, "computed": computed, "source": "statistic"}


def fill(series: pd.Series, value: Any, kind: str) -> pd.Series:
    if value is None:
        return series
    if kind in NEW_TYPES:
        return typecast.fill(series, value, kind)
    if kind == "integer":
        value = int(value)
    elif kind == "float":
        value = float(value)
    return series.fillna(value)


def string_length(values: pa.Array | pd.Series) -> pd.Series:
    """Characters (code points) per string; a missing string has a missing length (not 4 for "None")."""
    arr = to_array(pa.array(values, pa.string()) if isinstance(values, pd.Series) else values)
    return pd.Series(pc.utf8_length(arr).cast(pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get),
                     dtype="Int64")


def bin_values(values: pd.Series, bins: Bins) -> tuple[pd.Series, int]:
    """Bin numbers like ``pd.cut`` (right-closed by default, ``include_lowest`` puts the lowest edge in bin 1).

    Returns:
        An ordered categorical (labels, then the ``outside`` label if configured) and the count of present
        values that fell outside every bin (null, or ``outside``).
    """
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    if len(bins.edges) < 2:  # quantile bins of a column with fewer than two distinct values: no bin
        present = ~np.isnan(numbers)
        codes = np.where(present & (bins.outside is not None), 0, -1)
        labels_ = [bins.outside] if bins.outside is not None else []
        # pandas-stubs 2.3 declare codes as Sequence[int]; pandas documents (and we pass) an integer array.
        none = pd.Categorical.from_codes(codes, categories=pd.Index(labels_, dtype=object),  # type: ignore[arg-type]
                                         ordered=True)
        return pd.Series(none, index=values.index), int(present.sum())
    # What pd.cut does (pandas.core.reshape.tile._bins_to_cuts), without its per-call overhead: right-closed bins
    # find each value's edge from the left, left-closed from the right; include_lowest puts the lowest edge in bin 1.
    edges = np.asarray(bins.edges, dtype="float64")
    ids = np.searchsorted(edges, numbers, side="left" if bins.closed == "right" else "right")
    if bins.include_lowest:
        ids[numbers == edges[0]] = 1
    present = ~np.isnan(numbers)
    inside = present & (ids != 0) & (ids != len(edges))
    outside_mask = present & ~inside
    codes = np.where(inside, ids - 1, -1)
    labels = list(bins.labels)
    if bins.outside is not None:
        codes[outside_mask] = len(labels)
        labels.append(bins.outside)
    # pandas-stubs 2.3 declare codes as Sequence[int]; pandas documents (and we pass) an integer array.
    cut = pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object),  # type: ignore[arg-type]
                                    ordered=True)
    return pd.Series(cut, index=values.index), int(outside_mask.sum())


def duplicate_count(frame: pd.DataFrame, columns: list[str]) -> tuple[int, npt.NDArray[Any]]:
    """Rows that repeat an earlier row on ``columns`` (rows minus distinct rows; nulls compare equal)."""
    if not columns or frame.empty:
        return 0, np.zeros(len(frame), dtype=bool)
    mask = frame.duplicated(subset=columns, keep="first").to_numpy()
    return int(mask.sum()), mask


def _codes(arr: pa.Array) -> tuple[npt.NDArray[Any], int]:
    if pa.types.is_floating(arr.type):
        arr = pc.add(arr, pa.scalar(0.0, arr.type))  # -0.0 + 0.0 == +0.0 (Arrow hashes the bits)
    enc = pc.dictionary_encode(arr, null_encoding="encode")  # nulls get a code of their own: they compare equal
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), max(len(enc.dictionary), 1)


def _row_bytes(arr: pa.Array) -> float:
    """Rough cost of hashing a column, per row (strings: their bytes; fixed width: the width)."""
    if len(arr) == 0:
        return 0.0
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        return float(arr.nbytes) / len(arr)
    return 8.0


def _dup_mask(columns: dict[str, pa.Array], names: list[str], n: int,
              cache: dict[str, tuple[npt.NDArray[Any], int]]) -> npt.NDArray[Any]:
    """pandas ``duplicated(subset=names, keep="first")`` over Arrow columns (nulls equal, ``-0.0 == 0.0``).

    Columns are taken cheapest first; after each one, rows whose partial key is unique are dropped from further
    work (they cannot repeat an earlier row whatever the remaining columns hold), so the expensive columns (long
    JSON text) are only encoded for the few rows that could still be duplicates. Within the remaining rows order is
    kept, so "first occurrence" is the same as over all rows.
    """
    rows: npt.NDArray[Any] | None = None  # indices of the rows still in play (None: all)
    key: npt.NDArray[Any] | None = None
    space = 1
    for c in sorted(names, key=lambda c: _row_bytes(columns[c])):
        if rows is None:
            if c not in cache:
                cache[c] = _codes(columns[c])
            col, card = cache[c]
        else:
            col, card = _codes(columns[c].take(pa.array(rows)))
        if key is None:
            key, space = col, card
        else:
            if space * card >= 1 << 62:
                key, uniques = pd.factorize(key)
                space = max(len(uniques), 1)
            key, space = key * card + col, space * card
        if space < len(key):  # fewer possible keys than rows: most rows still repeat, narrowing would not pay
            continue
        live = pd.Series(key, copy=False).duplicated(keep=False).to_numpy()
        if not live.any():
            return np.zeros(n, dtype=bool)
        if not live.all():
            rows = np.flatnonzero(live) if rows is None else rows[live]
            key = key[live]
    assert key is not None
    sub = pd.Series(key, copy=False).duplicated(keep="first").to_numpy()
    if rows is None:
        return sub
    mask = np.zeros(n, dtype=bool)
    mask[rows[sub]] = True
    return mask


def duplicate_masks(columns: dict[str, pa.Array], groups: list[list[str]],
                    n: int) -> list[tuple[int, npt.NDArray[Any]]]:
    """Fast version of :func:`duplicate_count` for several column sets (same result: pandas
    ``duplicated(keep="first")``, rows minus distinct rows, nulls equal, ``-0.0 == 0.0``).

    Each column is dictionary-encoded by Arrow (whole-column codes are shared by the column sets), the codes are
    combined into one int64 key per row (re-factorised whenever the key space would overflow, as pandas does) and
    the key is checked with pandas' int64 hash table, narrowing to the rows that can still repeat after each
    column (:func:`_dup_mask`). Arrow's multi-column ``group_by`` was tried first: in pyarrow 17 it grows
    super-linearly with the number of distinct rows (89 s for 5M rows).
    """
    cache: dict[str, tuple[npt.NDArray[Any], int]] = {}
    results = []
    for names in groups:
        if not names or n == 0:
            results.append((0, np.zeros(n, dtype=bool)))
            continue
        mask = _dup_mask(columns, names, n, cache)
        results.append((int(mask.sum()), mask))
    return results


MISSING_MARK = "\x00missing:"  # group_frame's column: the aggregated column was missing/invalid before imputation


def group_frame(spec: GroupStatistics, filled: Any, observed: Any) -> pd.DataFrame:
    """The frame a group statistic aggregates (``group_statistics``): the group keys as ``filled`` has them (the
    transformed rows), each aggregated column's values before imputation from ``observed`` (columns it lacks were
    not imputed: taken from ``filled``) when ``spec.values`` is ``observed``, else as filled, and for ``missing`` a
    ``MISSING_MARK + column`` flag: the value was missing or invalid before imputation. ``filled`` and ``observed``
    map names to row-aligned Series (frames or dicts)."""
    cols: dict[str, Any] = {k: _values(filled[k]) for k in spec.group_by}
    for col, funcs in spec.aggregations:
        before = observed[col] if col in observed else filled[col]
        if col not in cols:
            cols[col] = _values(before if spec.values == "observed" else filled[col])
        if "missing" in funcs:
            cols[MISSING_MARK + col] = before.isna().to_numpy(dtype=bool)
    return pd.DataFrame(cols, copy=False)


def _values(series: pd.Series) -> Any:
    return series.array if isinstance(series, pd.Series) else series


def group_statistics(frame: pd.DataFrame, spec: GroupStatistics) -> pd.DataFrame:
    """Aggregations per group; groups sorted by key, missing keys form their own group (last). ``frame``: the
    columns to aggregate (``group_frame``; ``missing`` reads its ``MISSING_MARK`` flag, or the column itself when
    the flag is absent). Percentiles ``pNN`` are exact, interpolated linearly like numpy's default (and ``median``)."""
    keys = list(spec.group_by)
    grouped = frame.groupby(keys, dropna=False, observed=True, sort=True)
    out = grouped.size().rename("rows").to_frame()
    for col, funcs in spec.aggregations:
        for fn in funcs:
            series = grouped[col].size()
            if fn == "missing":
                flag = MISSING_MARK + col
                missing = grouped[flag].sum() if flag in frame.columns else grouped[col].size() - grouped[col].count()
                out[f"{col}_{fn}"] = missing.astype("int64")
            elif fn[0] == "p" and fn[1:].isdigit():
                out[f"{col}_{fn}"] = grouped[col].quantile(int(fn[1:]) / 100).astype("float64")
            else:
                out[f"{col}_{fn}"] = series if fn == "size" else grouped[col].agg(fn)
    out = out.reset_index()
    for k in keys:
        if isinstance(out[k].dtype, pd.CategoricalDtype):
            out[k] = out[k].astype(STRING_DTYPE)
    return out


def numeric_summary(series: pd.Series) -> dict[str, Any]:
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype="float64")
    if values.size == 0:
        return {"count": 0, "min": None, "max": None, "mean": None}
    return {"count": int(values.size), "min": finite_or_none(values.min()), "max": finite_or_none(values.max()),
            "mean": finite_or_none(values.mean())}


def finite_or_none(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else None
