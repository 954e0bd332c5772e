"""Row logic shared by the in-memory path (``processing/memory.py``: all rows at once) and the streaming path
(``processing/streaming``: block by block): typing and rejection, the rejected-row layout, the per-row transforms and
the per-feature metrics, the statistics files, and ``Parts``, what either path hands to the metrics assembly
(``pipeline``). Imports only the modules below it (``transform``, ``jsonx``, ``io``, ``config``)."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing import derive, features, io, jsonx, transform, typecast
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.features import NUMERIC_KINDS
from processing.metricsdoc import rate
from processing.types import NEW_TYPES, TypeOptions

# rejected/'s own columns, before the input columns (``rejected_rows``, ``unparsed_rows``).
FILE_COL, ROW_COL, REASON_COL, RAW_LINE_COL = "_source_file", "_source_row", "_reject_reason", "_raw_line"


def reject_reasons(n: int, rules: list[tuple[npt.NDArray[Any], str]]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    rejected = np.zeros(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    for mask, reason in rules:
        if not mask.any():
            continue
        rejected |= mask
        current = reasons[mask]
        reasons[mask] = np.where(current == "", reason, current + ";" + reason)
    return rejected, reasons


@dataclass
class TypedRows:
    """Rows after missing markers, typing and the rejection rules (``type_and_reject``)."""

    typed: dict[str, pa.Array]  # per column: typed values (numeric) or the text after missing markers
    invalid: dict[str, npt.NDArray[Any]]  # per numeric column: present but not a valid number
    rejected: npt.NDArray[Any]  # per row: rejected by a rule
    reasons: npt.NDArray[Any]  # per row: the rules that rejected it, ";"-joined ("" when kept)


def type_and_reject(column: Callable[[str], pa.Array], n: int, names: list[str], kinds: dict[str, str],
                    config: DatasetConfig, rules: list[tuple[npt.NDArray[Any], str]] | None = None,
                    pool: ThreadPoolExecutor | None = None) -> TypedRows:
    """Missing markers, typing and rejection of ``n`` rows, the same steps for both paths: ``column(c)`` gives column
    ``c``'s input text; numeric columns are coerced (``transform.coerce``); a row is rejected by ``rules`` (checked
    first) and, per ``config.reject_rows_missing`` column, by a missing value and by an invalid value. With ``pool``
    the columns are marked and coerced on its threads (Arrow kernels release the GIL)."""
    each = pool.map if pool is not None else map
    marked = dict(zip(names, each(lambda c: transform.mark_missing(column(c), config.missing_values), names),
                      strict=True))
    numeric_names = [c for c in names if kinds[c] in (*NUMERIC_TYPES, *NEW_TYPES)]  # parsed from text

    def coerce(c: str) -> tuple[pa.Array, pa.Array]:
        if kinds[c] in NEW_TYPES:
            return typecast.coerce(marked[c], kinds[c], config.column_options.get(c, TypeOptions()))
        return transform.coerce(marked[c], kinds[c])

    coerced = dict(zip(numeric_names, each(coerce, numeric_names), strict=True))
    typed: dict[str, pa.Array] = {}
    invalid: dict[str, npt.NDArray[Any]] = {}
    for c in names:
        if c in coerced:
            typed[c], inv = coerced[c]
            invalid[c] = inv.to_numpy(zero_copy_only=False)
        else:
            typed[c] = marked[c]
    checks = list(rules or [])
    for c in config.reject_rows_missing:
        checks.append((pc.is_null(marked[c]).to_numpy(zero_copy_only=False), f"missing_value:{c}"))
        if c in invalid:
            checks.append((invalid[c], f"invalid_value:{c}"))
    rejected, reasons = reject_reasons(n, checks)
    return TypedRows(typed, invalid, rejected, reasons)


def rejected_rows(sub: pa.Table, reasons: Any, names: list[str], file_names: list[str]) -> pa.Table:
    """Rejected parsed rows in rejected/'s layout: ``sub`` holds ``FILE_COL`` (file index), ``ROW_COL`` and the
    input columns' raw text; ``reasons`` one text per row."""
    file_idx = sub.column(FILE_COL).to_numpy()
    columns: dict[str, pa.Array] = {
        FILE_COL: pa.array([file_names[i] for i in file_idx], pa.string()),
        ROW_COL: sub.column(ROW_COL).combine_chunks(),
        REASON_COL: pa.array(list(reasons), pa.string()),
        RAW_LINE_COL: pa.nulls(len(file_idx), pa.string()),
    }
    for c in names:
        columns[c] = sub.column(c).combine_chunks()
    return pa.table(columns)


def unparsed_rows(file_name: str, lines: list[str], names: list[str]) -> pa.Table:
    """Lines of ``file_name`` that could not be parsed (wrong field count), in rejected/'s layout."""
    k = len(lines)
    cols = {FILE_COL: pa.array([file_name] * k, pa.string()), ROW_COL: pa.nulls(k, pa.int64()),
            REASON_COL: pa.array(["parse_error:wrong_field_count"] * k, pa.string()),
            RAW_LINE_COL: pa.array(lines, pa.string())}
    cols.update({c: pa.nulls(k, pa.string()) for c in names})
    return pa.table(cols)


def count_reasons(table: pa.Table, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Rejected rows per reason (a row with two reasons counts in both), added to ``counts`` if given."""
    counts = dict(counts or {})
    for reasons, k in pd.Series(table.column(REASON_COL).to_pylist(), dtype=object).value_counts().items():
        for reason in str(reasons).split(";"):
            counts[reason] = counts.get(reason, 0) + int(k)
    return dict(sorted(counts.items()))


def transform_rows(cleaned: pd.DataFrame, config: DatasetConfig, names: list[str], kinds: dict[str, str],
                   imputation: dict[str, Any], extractions: dict[str, jsonx.Extraction] | None = None,
                   bin_edges: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-row steps after typing, shared by the in-memory path (all rows at once) and the streaming path (batch
    by batch): fill the imputed columns of ``cleaned`` in place with ``imputation[column]["value"]``, then build the
    transformed frame (extracted JSON fields, derived features in config order).

    Args:
        extractions: JSON extractions already made of ``cleaned``'s JSON columns (by column; others are made here).
        bin_edges: quantile bins' edges by feature name (``derive.quantile_edges``); a quantile bin missing from it
            gets its edges from this frame's values, added to it (the in-memory path: all rows at once).

    Returns:
        The transformed frame and counts that add up across batches (``add_counts``): ``rows``, ``missing_after``
        per column, per JSON column the extraction outcomes and present values per field, per derived feature its
        missing values (and for bins the values outside every bin and the count per label).
    """
    # missing indicators see the values before imputation (missing or invalid: both null here)
    before = {d.source: cleaned[d.source].isna().to_numpy() for d in config.derived
              if d.kind == "missing_indicator" and d.source in cleaned.columns}
    for rule in config.imputations:
        cleaned[rule.column] = transform.fill(cleaned[rule.column], imputation[rule.column]["value"],
                                              kinds[rule.column])
    for c in names:
        if kinds[c] == "category":
            cleaned[c] = cleaned[c].astype("category")
    counts: dict[str, Any] = {"rows": len(cleaned), "missing_after": {c: int(cleaned[c].isna().sum()) for c in names},
                              "json": {}, "derived": {}}
    transformed = cleaned.copy()
    for jc in config.json_columns:
        ext = (extractions or {}).get(jc.column) or jsonx.extract(
            pa.array(cleaned[jc.column].astype(transform.STRING_DTYPE)), jc.fields)
        for name, arr in ext.fields.items():
            transformed[name] = transform.to_series(arr, "string")
        counts["json"][jc.column] = {
            "non_missing": ext.non_missing, "invalid_syntax": ext.invalid_syntax, "not_object": ext.not_object,
            "extracted": {f.name: int(transformed[f.name].notna().sum()) for f in jc.fields}}
    for d in config.derived:
        if d.kind == "string_length":
            transformed[d.name] = transform.string_length(transformed[d.source].astype(transform.STRING_DTYPE))
            counts["derived"][d.name] = {"missing": int(transformed[d.name].isna().sum())}
        elif d.kind == "bins":
            assert d.bins is not None
            bins = d.bins
            if bins.quantiles is not None:  # edges from the data (derive.py), after imputation
                edges = bin_edges if bin_edges is not None else {}
                if d.name not in edges:
                    edges[d.name] = derive.quantile_edges(derive.numbers(transformed[d.source]), bins.quantiles)
                bins = features.resolve_bins(d, edges[d.name])
            transformed[d.name], outside = transform.bin_values(transformed[d.source], bins)
            labels = transformed[d.name].value_counts(dropna=False, sort=False)
            counts["derived"][d.name] = {
                "outside_bins": outside, "missing": int(transformed[d.name].isna().sum()),
                "counts": {str(k): int(v) for k, v in labels.items() if not pd.isna(cast(Any, k))}}
        else:
            if d.kind == "missing_indicator":
                missing = before.get(d.source, transformed[d.source].isna().to_numpy())
                transformed[d.name] = derive.missing_indicator(missing, transformed.index)
                counts["derived"][d.name] = {"missing": 0, "true": int(missing.sum())}
                continue
            if d.kind == "expression":
                transformed[d.name] = derive.expression(d, transformed)
            else:
                assert d.part is not None
                transformed[d.name] = derive.date_part(transformed[d.source], d.part)
            counts["derived"][d.name] = {"missing": int(transformed[d.name].isna().sum())}
    return transformed, counts


def summarised_columns(config: DatasetConfig, names: list[str], kinds: dict[str, str]) -> tuple[list[str], list[str]]:
    """The columns metrics.json summarises: group-by columns (``group_columns``, sorted) and numeric columns
    (``numeric``: numeric inputs, then string-length features)."""
    group_cols = sorted({c for g in config.group_statistics for c in g.group_by})
    numeric_cols = [c for c in names if kinds[c] in NUMERIC_TYPES]
    numeric_cols += [d.name for d in config.derived if d.kind in NUMERIC_KINDS]
    return group_cols, numeric_cols


def group_column_metrics(values: pd.Series) -> dict[str, int]:
    """metrics.json ``group_columns.<col>``: non-missing distinct values and missing values."""
    return {"distinct": int(values.nunique(dropna=True)), "missing": int(values.isna().sum())}


def add_counts(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """Sum ``transform_rows`` counts (nested dicts of ints; keys keep the order they first appeared in)."""
    for key, value in more.items():
        if isinstance(value, dict):
            add_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def json_metrics_of(counts: dict[str, Any], config: DatasetConfig) -> dict[str, Any]:
    """metrics.json ``json`` section from (summed) ``transform_rows`` counts."""
    out = {}
    for jc in config.json_columns:
        c = counts["json"][jc.column]
        malformed = c["invalid_syntax"] + c["not_object"]
        out[jc.column] = {
            "non_missing": c["non_missing"], "malformed": malformed, "invalid_syntax": c["invalid_syntax"],
            "not_object": c["not_object"], "malformed_rate": rate(malformed, c["non_missing"]),
            "fields": {f.name: {"path": ".".join(f.path), "extracted": c["extracted"][f.name],
                                "missing": counts["rows"] - c["extracted"][f.name]} for f in jc.fields},
        }
    return out


def derived_metrics_of(counts: dict[str, Any], config: DatasetConfig, bin_edges: dict[str, Any] | None = None,
                       sampled: bool = False) -> dict[str, Any]:
    """metrics.json ``derived`` section from (summed) ``transform_rows`` counts; ``bin_edges``: the quantile bins'
    edges (``sampled``: from the statistics sample)."""
    out: dict[str, Any] = {}
    for d in config.derived:
        c = counts["derived"][d.name]
        if d.kind == "string_length":
            out[d.name] = {"kind": d.kind, "source": d.source, "missing": c["missing"]}
        elif d.kind == "bins":
            out[d.name] = {"kind": d.kind, "source": d.source, "outside_bins": c["outside_bins"],
                           "missing": c["missing"], "counts": c.get("counts", {})}
            if d.bins is not None and d.bins.quantiles is not None:
                bins = features.resolve_bins(d, (bin_edges or {}).get(d.name, []))
                out[d.name].update(features.bin_metrics(d, bins, sampled))
        elif d.kind == "missing_indicator":
            out[d.name] = {"kind": d.kind, "source": d.source, "missing": 0, "true": c["true"]}
        elif d.kind == "expression":
            assert d.expression is not None
            out[d.name] = {"kind": d.kind, "expression": d.expression.text, "columns": list(d.expression.columns),
                           "missing": c["missing"]}
        else:
            out[d.name] = {"kind": d.kind, "source": d.source, "part": d.part, "missing": c["missing"]}
    return out


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, datetime.date):  # dates and datetimes as the CSV outputs write them (typecast.text_of)
        return typecast.text_of(value, "datetime" if isinstance(value, datetime.datetime) else "date")
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return json_value(obj)


def write_statistics(output_dir: Path, statistics: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each group statistic to statistics/ as ``<name>.csv`` and ``<name>.json``; returns the paths written."""
    written = []
    for name, frame in statistics.items():
        written.append(io.write_table(to_arrow(frame), output_dir / "statistics", name, "csv"))
        path = output_dir / "statistics" / f"{name}.json"
        records = [{k: json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
        io.write_json({"name": name, "rows": records}, path)
        written.append(path)
    return written


@dataclass
class Parts:
    """Everything the metrics document is assembled from (shared by the in-memory and the streaming path)."""

    started: float
    context: dict[str, Any]
    output_dir: Path
    config: DatasetConfig
    fmt: str
    baseline: Path | None
    rows_in: int
    rows_out: int
    names: list[str]
    col_metrics: dict[str, dict[str, Any]]
    json_metrics: dict[str, Any]
    rejected_table: pa.Table | None  # None: written by streaming without holding them (``reason_counts`` given)
    per_file: list[dict[str, Any]]
    dup_exact: int
    dup_key: int
    key_cols: list[str]
    dropped: int
    imputation: dict[str, Any]
    derived_metrics: dict[str, Any]
    group_metrics: dict[str, Any]
    numeric: dict[str, Any]
    outputs: dict[str, list[str]]
    drift_batch: pd.DataFrame
    cleaned: pd.DataFrame
    transformed: pd.DataFrame
    statistics: dict[str, pd.DataFrame]
    mode: str = "memory"
    reason_counts: dict[str, int] | None = None  # rejected rows per reason (None: counted from rejected_table)
    sampling: dict[str, Any] | None = None  # streaming above max_rows: how the statistics were sampled (batchstats)
    rule_tally: Any = None  # processing.rules.Tally: the rules' counts (None: no rules checked)

