"""Arrow parsing and pandas forms of the ``boolean``, ``date`` and ``datetime`` column types (rules and options in
``processing/types.py``): text -> typed array + invalid mask (``coerce``), typed array -> pandas Series
(``to_series``), fill values (``fill``, ``imputation_info``) and the CSV text of floats and datetimes
(``float_text``, ``timestamp_text``, used by ``processing/csvout.py``). Both paths (memory and streaming) call
these through ``rows``/``transform``.

pandas dtypes: boolean -> ``boolean``; date -> ``date32[day][pyarrow]``; datetime -> ``datetime64[us, UTC]``
(Parquet/Arrow: ``bool``, ``date32[day]``, ``timestamp[us, tz=UTC]``).
"""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing.types import (
    FALSE_TEXTS,
    MICROS_PER_DAY,
    MONTHS,
    TRUE_TEXTS,
    TypeOptions,
    format_micros,
    median_info,
    pattern,
    regex,
)

ARROW_TYPES = {"boolean": pa.bool_(), "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC")}
DATETIME_DTYPE = "datetime64[us, UTC]"


def arrow_type(kind: str) -> pa.DataType:
    return ARROW_TYPES[kind]


def coerce(values: pa.Array, kind: str, options: TypeOptions) -> tuple[pa.Array, pa.Array]:
    """Parse a text column (after missing markers) as ``boolean``, ``date`` or ``datetime``.

    Returns:
        The typed array (null where missing or invalid) and a boolean mask of invalid cells (present, not valid).
    """
    trimmed = pc.utf8_trim_whitespace(values)
    if kind == "boolean":
        lowered = pc.utf8_lower(trimmed)
        is_true = pc.is_in(lowered, value_set=pa.array(TRUE_TEXTS))
        is_false = pc.is_in(lowered, value_set=pa.array(FALSE_TEXTS))
        typed = pc.if_else(is_true, True, pc.if_else(is_false, False, pa.scalar(None, pa.bool_())))
        typed = pc.if_else(pc.is_valid(values), typed, pa.scalar(None, pa.bool_()))
    else:
        micros, ok = parse_micros(trimmed, kind, options)
        if kind == "date":
            typed = pa.array(np.where(ok, micros // MICROS_PER_DAY, 0).astype(np.int32), pa.int32(),
                             mask=~ok).cast(pa.date32())
        else:
            typed = pa.array(np.where(ok, micros, 0), pa.int64(), mask=~ok).cast(pa.timestamp("us", tz="UTC"))
    invalid = pc.and_(pc.is_valid(values), pc.is_null(typed))
    return typed, invalid


# The common ISO shapes, cut by position (a regex with capture groups costs ~3 s per million values; a match
# without captures and fixed slices a tenth of that); other texts go through the full pattern.
_FAST = {
    "date": (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", {"Y": (0, 4), "m": (5, 7), "d": (8, 10)}),
    "datetime": (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}$",
                 {"Y": (0, 4), "m": (5, 7), "d": (8, 10), "H": (11, 13), "M": (14, 16), "S": (17, 19)}),
}


def _extract(trimmed: pa.Array, kind: str, options: TypeOptions) -> tuple[dict[str, pa.Array], npt.NDArray[Any]]:
    """The pattern's groups of each text (Arrow text arrays, "" where a group did not take part) and whether the
    text matched the whole pattern."""
    groups = pattern(kind, options).groups
    n = len(trimmed)
    fast: npt.NDArray[Any] | None = None
    if options.format is None:
        fast = pc.fill_null(pc.match_substring_regex(trimmed, _FAST[kind][0]), False).to_numpy(zero_copy_only=False)
    slow_idx = np.flatnonzero(~fast) if fast is not None else None
    slow: dict[str, pa.Array] = {}
    slow_ok = np.zeros(0, dtype=bool)
    if slow_idx is None or len(slow_idx):
        sub = trimmed if slow_idx is None else trimmed.take(pa.array(slow_idx))
        parts = pc.extract_regex(sub, regex(kind, options))
        if isinstance(parts, pa.ChunkedArray):
            parts = parts.combine_chunks()
        slow_ok = parts.is_valid().to_numpy(zero_copy_only=False)
        slow = {g: pc.fill_null(parts.field(g), "") for g in groups}
    if fast is None:
        return slow, slow_ok.copy()
    slices = _FAST[kind][1]
    empty = pc.fill_null(pa.nulls(n, pa.string()), "")
    fields = {}
    for g in groups:
        f = pc.fill_null(pc.utf8_slice_codeunits(trimmed, *slices[g]), "") if g in slices else empty
        if slow:
            f = pc.replace_with_mask(f, pa.array(~fast), slow[g])
        fields[g] = f
    ok = fast.copy()
    if slow_idx is not None and len(slow_idx):
        ok[slow_idx] = slow_ok
    return fields, ok


def _ints(arr: pa.Array, default: int) -> npt.NDArray[Any]:
    """Digits as int64 ("" -> ``default``)."""
    out: npt.NDArray[Any] = pc.fill_null(pc.cast(pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr),
                                                 pa.int64()), default).to_numpy(zero_copy_only=False).astype(np.int64)
    return out


def _is(arr: pa.Array, text: str) -> npt.NDArray[Any]:
    out: npt.NDArray[Any] = pc.fill_null(pc.equal(arr, text), False).to_numpy(zero_copy_only=False)
    return out


def days_from_civil(y: npt.NDArray[Any], m: npt.NDArray[Any], d: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), vectorised."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    out: npt.NDArray[Any] = era * 146097 + doe - 719468
    return out


def days_in_month(y: npt.NDArray[Any], m: npt.NDArray[Any]) -> npt.NDArray[Any]:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    table = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    out: npt.NDArray[Any] = table[m] + ((m == 2) & leap)
    return out


def parse_micros(trimmed: pa.Array, kind: str, options: TypeOptions) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Microseconds since the epoch (UTC; a date: its midnight) of each text and whether it is a valid value
    (``types`` module doc: whole-pattern match, range checks, the column's zone for values without an offset)."""
    n = len(trimmed)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    parts, ok = _extract(trimmed, kind, options)

    def ints(name: str, default: int) -> npt.NDArray[Any]:
        texts = parts.get(name)
        return np.full(n, default, dtype=np.int64) if texts is None else _ints(texts, default)

    year = ints("Y", -1)
    yy = parts.get("y")
    if yy is not None:
        two = _ints(yy, 0)
        year = np.where(two < 69, 2000 + two, 1900 + two)
    names = parts.get("b")
    if names is not None:
        abbrev = pc.utf8_slice_codeunits(pc.utf8_lower(names), 0, 3)
        month = pc.fill_null(pc.index_in(abbrev, value_set=pa.array([m[:3] for m in MONTHS])), -1)
        month = month.to_numpy(zero_copy_only=False).astype(np.int64) + 1
    else:
        month = ints("m", 1)
    day = ints("d", 1)
    twelve = parts.get("I")
    if twelve is not None:
        ampm = parts.get("p")
        assert ampm is not None
        pm = _is(pc.utf8_lower(ampm), "pm")
        hour = _ints(twelve, 0) % 12 + np.where(pm, 12, 0)
    else:
        hour = ints("H", 0)
    minute, second = ints("M", 0), ints("S", 0)
    frac_text = parts.get("f")
    frac = np.zeros(n, dtype=np.int64)
    if frac_text is not None:
        padded = pc.utf8_slice_codeunits(pc.utf8_rpad(frac_text, 9, "0"), 0, 6)
        frac = pc.cast(padded, pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    month_ok = (month >= 1) & (month <= 12)
    safe_month = np.where(month_ok, month, 1)
    ok &= (year >= 1) & month_ok & (day >= 1) & (day <= days_in_month(year, safe_month))
    ok &= (hour < 24) & (minute < 60) & (second < 60)
    days = days_from_civil(np.where(ok, year, 1970), np.where(ok, safe_month, 1), np.where(ok, day, 1))
    local = days * MICROS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000 + frac
    if kind == "date":
        return np.where(ok, local, 0), ok
    zone_text = parts.get("z")
    has_offset = np.zeros(n, dtype=bool) if zone_text is None else ~_is(zone_text, "")
    utc = local.copy()
    if zone_text is not None and has_offset.any():
        z = zone_text
        digits = pc.replace_substring(pc.utf8_slice_codeunits(z, 1, 10), ":", "")
        hh = _ints(pc.utf8_slice_codeunits(digits, 0, 2), 0)
        mm = _ints(pc.utf8_slice_codeunits(digits, 2, 4), 0)
        sign = np.where(_is(pc.utf8_slice_codeunits(z, 0, 1), "-"), -1, 1)
        offset = np.where(has_offset, sign * (hh * 3600 + mm * 60), 0)
        utc = local - offset * 1_000_000
    if options.timezone != "UTC":
        local_rows = ok & ~has_offset
        if local_rows.any():
            naive = pa.array(np.where(local_rows, local, 0), pa.int64()).cast(pa.timestamp("us"))
            aware = pc.assume_timezone(naive, options.timezone, ambiguous="earliest", nonexistent="earliest")
            back = pc.local_timestamp(aware).cast(pa.int64()).to_numpy(zero_copy_only=False)
            ok &= ~local_rows | (back == np.where(local_rows, local, 0))
            utc = np.where(local_rows, aware.cast(pa.int64()).to_numpy(zero_copy_only=False), utc)
    return np.where(ok, utc, 0), ok


# ---- pandas ----------------------------------------------------------------------------------------------------


def to_series(values: pa.Array, kind: str) -> pd.Series:
    """A typed Arrow array as a pandas Series in the type's dtype (module doc)."""
    if kind == "boolean":
        return pd.Series(pd.array(values.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get),
                                  dtype="boolean"))
    if kind == "date":
        return pd.Series(values.cast(pa.date32()).to_pandas(types_mapper=pd.ArrowDtype),
                         dtype=pd.ArrowDtype(pa.date32()))
    arr = values.cast(pa.timestamp("us", tz="UTC"))
    return pd.Series(arr.to_pandas(coerce_temporal_nanoseconds=False), dtype=DATETIME_DTYPE)


def scalar(value: Any, kind: str) -> Any:
    """A canonical fill value (``types.canonical_fill``) as the Series' scalar."""
    if kind == "boolean":
        return bool(value)
    stamp = pd.Timestamp(value)
    if kind == "date":
        return stamp.date()
    return stamp.tz_convert("UTC") if stamp.tzinfo is not None else stamp.tz_localize("UTC")


def fill(series: pd.Series, value: Any, kind: str) -> pd.Series:
    if kind == "date":
        return series.fillna(pa.scalar(scalar(value, kind), pa.date32()).as_py())
    return series.fillna(scalar(value, kind))


def epoch_numbers(series: pd.Series, kind: str) -> npt.NDArray[Any]:
    """Present values of a date (days) or datetime (microseconds) Series as int64 since the epoch."""
    arr = pa.array(series.dropna())
    out: npt.NDArray[Any]
    if kind == "date":
        out = arr.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        out = arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return out


def text_of(value: Any, kind: str) -> Any:
    """A value of the Series (or a canonical fill) as metrics.json writes it: bool, ``2024-03-01``,
    ``2024-03-01T05:00:00Z``."""
    if value is None:
        return None
    if kind == "boolean":
        return bool(value)
    if isinstance(value, str):
        return value
    if kind == "date":
        if isinstance(value, datetime.datetime):
            value = value.date()
        return value.isoformat()
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_convert("UTC") if stamp.tzinfo is not None else stamp.tz_localize("UTC")
    return format_micros(int(stamp.value // 1000), "datetime")


def imputation_info(rule: Any, kind: str, computed: Any) -> dict[str, Any]:
    """``transform.imputation_info`` for the new types: ``median`` of dates/datetimes is computed on days /
    microseconds since the epoch (numpy's median, interpolating), ``computed`` its exact instant as text, ``value``
    rounded half to even to a whole day / microsecond."""
    if rule.strategy == "median":
        return median_info(rule.strategy, kind, float(computed))
    text = text_of(computed, kind)
    return {"strategy": rule.strategy, "value": text, "computed": text, "source": "statistic"}


def median_of(series: pd.Series, kind: str) -> float:
    return float(np.median(epoch_numbers(series, kind).astype("float64")))


# ---- CSV -------------------------------------------------------------------------------------------------------


def float_text(arr: pa.Array) -> pa.Array:
    text = pc.cast(arr, pa.string())
    whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
    return pc.if_else(pc.fill_null(whole, False), pc.binary_join_element_wise(text, ".0", ""), text)


def timestamp_text(arr: pa.Array) -> pa.Array:
    utc = pc.cast(arr, pa.timestamp("us", tz="UTC"))
    valid = pc.is_valid(utc).to_numpy(zero_copy_only=False)
    values = pc.fill_null(pc.cast(utc, pa.int64()), 0).to_numpy(zero_copy_only=False)
    frac = np.mod(values, 1_000_000)
    naive = pa.array(values, pa.int64(), mask=~valid).cast(pa.timestamp("us"))
    # strftime's %S prints the fraction for sub-second units: keep the whole seconds, add the fraction when not 0
    seconds = pc.utf8_slice_codeunits(pc.strftime(naive, "%Y-%m-%dT%H:%M:%S"), 0, 19)
    frac_text = pc.utf8_lpad(pa.array(frac, pa.int64()).cast(pa.string()), 6, "0")
    with_frac = pc.binary_join_element_wise(seconds, ".", frac_text, "Z", "")
    return pc.if_else(pa.array(frac == 0), pc.binary_join_element_wise(seconds, "Z", ""), with_frac)
