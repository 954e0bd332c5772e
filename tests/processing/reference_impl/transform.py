"""Pure, vectorised transforms: missing markers, type coercion, imputation, derived features, duplicates, statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Frozen: the oracle imports nothing of the job's code (tests/processing/test_processing_imports.py checks it).
# Config objects arrive as input, built by the job's validator from the same document (the config format is an
# input like the CSV files); the oracle reads their attributes and nothing else.
Bins = GroupStatistics = Imputation = Any

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
    hit = pc.fill_null(pc.is_in(values, value_set=pa.array(markers, pa.string())), False)
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
        text = pc.replace_substring_regex(pc.if_else(ok, trimmed, pa.scalar(None, pa.string())), r"\.0*$", "")
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
    if rule.strategy == "median":
        computed: Any = float(np.median(present.to_numpy(dtype="float64")))
    elif rule.strategy == "mean":
        computed = float(np.mean(present.to_numpy(dtype="float64")))
    else:
        counts = present.value_counts(sort=False)
        top = counts[counts == counts.max()].index
        computed = sorted(top)[0]  # ties -> smallest value, so the choice is deterministic
        computed = computed.item() if hasattr(computed, "item") else computed
    value = computed
    if kind == "integer" and isinstance(computed, float):
        value = int(round(computed))  # round half to even
    return {"strategy": rule.strategy, "value": value, "computed": computed, "source": "statistic"}


def fill(series: pd.Series, value: Any, kind: str) -> pd.Series:
    if value is None:
        return series
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
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    cut = pd.cut(numbers, bins=list(bins.edges), labels=list(bins.labels), right=bins.closed == "right",
                 include_lowest=bins.include_lowest, ordered=True)
    outside_mask = numbers.notna() & cut.isna()
    outside = int(outside_mask.sum())
    if bins.outside is not None:
        cut = cut.cat.add_categories([bins.outside])
        cut[outside_mask] = bins.outside
    return pd.Series(cut, index=values.index), outside


def duplicate_count(frame: pd.DataFrame, columns: list[str]) -> tuple[int, np.ndarray]:
    """Rows that repeat an earlier row on ``columns`` (rows minus distinct rows; nulls compare equal)."""
    if not columns or frame.empty:
        return 0, np.zeros(len(frame), dtype=bool)
    mask = frame.duplicated(subset=columns, keep="first").to_numpy()
    return int(mask.sum()), mask


def group_statistics(frame: pd.DataFrame, spec: GroupStatistics) -> pd.DataFrame:
    """Aggregations per group; groups sorted by key, missing keys form their own group (last)."""
    keys = list(spec.group_by)
    grouped = frame.groupby(keys, dropna=False, observed=True, sort=True)
    out = grouped.size().rename("rows").to_frame()
    for col, funcs in spec.aggregations:
        for fn in funcs:
            series = grouped[col].size() if fn == "size" else grouped[col].agg(fn)
            out[f"{col}_{fn}"] = series
    out = out.reset_index()
    for k in keys:
        if isinstance(out[k].dtype, pd.CategoricalDtype):
            out[k] = out[k].astype(STRING_DTYPE)
    return out


def numeric_summary(series: pd.Series) -> dict[str, Any]:
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype="float64")
    if values.size == 0:
        return {"count": 0, "min": None, "max": None, "mean": None}
    return {"count": int(values.size), "min": _num(values.min()), "max": _num(values.max()),
            "mean": _num(values.mean())}


def _num(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else None
