"""Orchestration: read inputs, reject unusable rows, clean, transform, compute statistics and metrics, write outputs."""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import io, jsonx, transform
from .errors import EmptyInputError, MissingColumnsError

# Frozen: the oracle imports nothing of the job's code (tests/processing/test_processing_imports.py checks it).
# Config objects arrive as input, built by the job's validator from the same document (the config format is an
# input like the CSV files); the oracle reads their attributes and nothing else.
# The job's package version and its library-drift check are facts about the installed code, not about the data:
# the comparison (test_processing_perf_equivalence.py) leaves them out.
DatasetConfig = Any
NUMERIC_TYPES = ("integer", "float")

log = logging.getLogger("processing")

OUTPUT_FOLDERS = ("cleaned", "transformed", "statistics", "quality", "rejected")
SUMMARY_KEYS = (
    "rows_in", "rows_out", "rows_rejected", "missing_values_before", "missing_values_after", "missing_rate_after",
    "rejected_rate", "duplicate_rows_exact", "duplicate_rows_key", "duplicate_rate", "malformed_json",
    "malformed_json_rate", "invalid_values", "processing_seconds",
)
FILE_COL, ROW_COL, REASON_COL, RAW_LINE_COL = "_source_file", "_source_row", "_reject_reason", "_raw_line"


@dataclass
class Result:
    """What a run produced: the metrics document and the in-memory frames (handy for tests)."""

    metrics: dict[str, Any]
    cleaned: pd.DataFrame
    transformed: pd.DataFrame
    rejected: pa.Table
    statistics: dict[str, pd.DataFrame]
    output_dir: Path


def library_versions() -> dict[str, str]:
    import numpy
    import pyarrow

    return {"python": platform.python_version(), "pandas": pd.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__}


def _rate(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _count(mask: pa.Array | np.ndarray) -> int:
    if isinstance(mask, np.ndarray):
        return int(mask.sum())
    return int(pc.sum(mask).as_py() or 0)


def _combine(reads: list[io.FileRead], config: DatasetConfig) -> tuple[pa.Table, list[str], np.ndarray]:
    names: list[str] = []
    for r in reads:
        names.extend(n for n in r.table.column_names if n not in names)
    names.extend(c for c in config.columns if c not in names)  # declared but absent everywhere: all missing
    parts, utf8 = [], []
    for i, r in enumerate(reads):
        t = r.table
        cols = [t.column(n) if n in t.column_names else pa.chunked_array([pa.nulls(t.num_rows, pa.string())])
                for n in names]
        cols.append(pa.chunked_array([pa.array(np.full(t.num_rows, i, dtype=np.int32))]))
        cols.append(pa.chunked_array([pa.array(np.arange(1, t.num_rows + 1, dtype=np.int64))]))
        parts.append(pa.table(cols, names=[*names, FILE_COL, ROW_COL]))
        mask = r.invalid_utf8.to_numpy(zero_copy_only=False) if r.invalid_utf8 is not None else None
        utf8.append(mask if mask is not None else np.zeros(t.num_rows, dtype=bool))
    table = pa.concat_tables(parts).combine_chunks()
    return table, names, np.concatenate(utf8) if utf8 else np.zeros(0, dtype=bool)


def _reasons(n: int, rules: list[tuple[np.ndarray, str]]) -> tuple[np.ndarray, np.ndarray]:
    rejected = np.zeros(n, dtype=bool)
    reasons = np.full(n, "", dtype=object)
    for mask, reason in rules:
        if not mask.any():
            continue
        rejected |= mask
        current = reasons[mask]
        reasons[mask] = np.where(current == "", reason, current + ";" + reason)
    return rejected, reasons


def run(inputs: list[Path], output_dir: Path, config: DatasetConfig, *, fmt: str = "parquet",
        context: dict[str, Any] | None = None) -> Result:
    """Process ``inputs`` with ``config`` and write every output folder under ``output_dir``.

    Args:
        inputs: input files (read, never modified).
        output_dir: gets cleaned/, transformed/, statistics/, quality/, rejected/.
        config: the validated dataset config.
        fmt: ``parquet`` or ``csv`` for the row outputs.
        context: extra facts recorded in metrics (dataset, SageMaker configs, source URI, ...).

    Returns:
        The metrics and frames.

    Raises:
        ProcessingError: for expected input problems (named files and columns).
    """
    started = time.perf_counter()
    context = dict(context or {})
    reads = [io.read_file(p) for p in inputs]
    for r in reads:
        missing = [c for c in config.required_columns if c not in r.table.column_names]
        if missing:
            raise MissingColumnsError(
                f"{r.path.name}: missing required column(s): {', '.join(missing)}"
                f" (found: {', '.join(r.table.column_names) or 'none'})")
    rows_in = sum(r.rows_in for r in reads)
    if rows_in == 0:
        raise EmptyInputError("no data rows in the input (header only): " + ", ".join(r.path.name for r in reads))

    raw, names, bad_utf8 = _combine(reads, config)
    n = raw.num_rows
    kinds = {c: config.columns.get(c, "string") for c in names}
    marked = {c: transform.mark_missing(raw.column(c).combine_chunks(), config.missing_values) for c in names}
    typed: dict[str, pa.Array] = {}
    invalid: dict[str, np.ndarray] = {}
    for c in names:
        if kinds[c] in NUMERIC_TYPES:
            typed[c], inv = transform.coerce(marked[c], kinds[c])
            invalid[c] = inv.to_numpy(zero_copy_only=False)
        else:
            typed[c] = marked[c]

    rules: list[tuple[np.ndarray, str]] = [(bad_utf8, "invalid_utf8")]
    for c in config.reject_rows_missing:
        rules.append((pc.is_null(marked[c]).to_numpy(zero_copy_only=False), f"missing_value:{c}"))
        if c in invalid:
            rules.append((invalid[c], f"invalid_value:{c}"))
    rejected, reasons = _reasons(n, rules)

    # Duplicates are counted among the usable rows, on typed values before imputation (nulls compare equal).
    usable_idx = np.flatnonzero(~rejected)
    pre = pd.DataFrame({c: transform.to_series(typed[c].take(pa.array(usable_idx)), kinds[c]) for c in names})
    dup_exact, exact_mask = transform.duplicate_count(pre, names)
    key_cols = [c for c in config.duplicate_key_columns if c in names]
    dup_key, key_mask = transform.duplicate_count(pre, key_cols)
    dropped = 0
    if config.duplicate_drop != "none":
        drop_mask = exact_mask if config.duplicate_drop == "exact" else key_mask
        full = np.zeros(n, dtype=bool)
        full[usable_idx[drop_mask]] = True
        more, more_reasons = _reasons(n, [(full, f"duplicate_{config.duplicate_drop}")])
        reasons = np.where(more, more_reasons, reasons)
        rejected |= more
        dropped = int(drop_mask.sum())
        pre = pre.loc[~drop_mask].reset_index(drop=True)
    kept_idx = np.flatnonzero(~rejected)
    rows_out = len(kept_idx)

    # Per-column quality counts are over the rows that reach cleaned/.
    col_metrics: dict[str, dict[str, Any]] = {}
    for c in names:
        col_metrics[c] = {
            "type": kinds[c], "declared": c in config.columns,
            "missing_before": int(pre[c].isna().sum()) - (_count(invalid[c][kept_idx]) if c in invalid else 0),
            "invalid": _count(invalid[c][kept_idx]) if c in invalid else 0,
        }

    cleaned = pre
    imputation: dict[str, Any] = {}
    for rule in config.imputations:
        info = transform.impute_value(cleaned[rule.column], rule, kinds[rule.column])
        info["filled"] = int(cleaned[rule.column].isna().sum()) if info["value"] is not None else 0
        cleaned[rule.column] = transform.fill(cleaned[rule.column], info["value"], kinds[rule.column])
        imputation[rule.column] = info
    for c in names:
        if kinds[c] == "category":
            cleaned[c] = cleaned[c].astype("category")
        col_metrics[c]["missing_after"] = int(cleaned[c].isna().sum())

    transformed = cleaned.copy()
    json_metrics: dict[str, Any] = {}
    for jc in config.json_columns:
        ext = jsonx.extract(pa.array(cleaned[jc.column].astype(transform.STRING_DTYPE)), jc.fields)
        for name, arr in ext.fields.items():
            transformed[name] = transform.to_series(arr, "string")
        json_metrics[jc.column] = {
            "non_missing": ext.non_missing, "malformed": ext.malformed, "invalid_syntax": ext.invalid_syntax,
            "not_object": ext.not_object, "malformed_rate": _rate(ext.malformed, ext.non_missing),
            "fields": {f.name: {"path": ".".join(f.path), "extracted": int(transformed[f.name].notna().sum()),
                                "missing": int(transformed[f.name].isna().sum())} for f in jc.fields},
        }
    derived_metrics: dict[str, Any] = {}
    for d in config.derived:
        if d.kind == "string_length":
            transformed[d.name] = transform.string_length(transformed[d.source].astype(transform.STRING_DTYPE))
            derived_metrics[d.name] = {"kind": d.kind, "source": d.source,
                                       "missing": int(transformed[d.name].isna().sum())}
        else:
            assert d.bins is not None
            transformed[d.name], outside = transform.bin_values(transformed[d.source], d.bins)
            counts = transformed[d.name].value_counts(dropna=False, sort=False)
            derived_metrics[d.name] = {
                "kind": d.kind, "source": d.source, "outside_bins": outside,
                "missing": int(transformed[d.name].isna().sum()),
                "counts": {str(k): int(v) for k, v in counts.items() if not pd.isna(k)},
            }

    statistics = {g.name: transform.group_statistics(transformed, g) for g in config.group_statistics}
    group_cols = sorted({c for g in config.group_statistics for c in g.group_by})
    group_metrics = {c: {"distinct": int(transformed[c].nunique(dropna=True)),
                         "missing": int(transformed[c].isna().sum())} for c in group_cols}
    numeric_cols = [c for c in names if kinds[c] in NUMERIC_TYPES]
    numeric_cols += [d.name for d in config.derived if d.kind == "string_length"]
    numeric = {c: transform.numeric_summary(transformed[c]) for c in numeric_cols}

    rejected_table = _rejected_table(raw, names, rejected, reasons, reads)
    per_file = _per_file(reads, raw, rejected)

    output_dir = Path(output_dir)
    outputs = _write(output_dir, fmt, cleaned, transformed, rejected_table, statistics)

    rows_rejected = rows_in - rows_out
    missing_before = sum(m["missing_before"] for m in col_metrics.values())
    missing_after = sum(m["missing_after"] for m in col_metrics.values())
    malformed = sum(m["malformed"] for m in json_metrics.values())
    json_cells = sum(m["non_missing"] for m in json_metrics.values())
    invalid_total = sum(m["invalid"] for m in col_metrics.values())
    reason_counts = _reason_counts(rejected_table)
    seconds = round(time.perf_counter() - started, 3)
    summary = {
        "rows_in": rows_in, "rows_out": rows_out, "rows_rejected": rows_rejected,
        "missing_values_before": missing_before, "missing_values_after": missing_after,
        "missing_rate_after": _rate(missing_after, rows_out * len(names)),
        "rejected_rate": _rate(rows_rejected, rows_in),
        "duplicate_rows_exact": dup_exact, "duplicate_rows_key": dup_key,
        "duplicate_rate": _rate(dup_key, rows_in),
        "malformed_json": malformed, "malformed_json_rate": _rate(malformed, json_cells),
        "invalid_values": invalid_total, "processing_seconds": seconds,
    }
    assert tuple(summary) == SUMMARY_KEYS
    metrics = {
        "summary": summary,
        "status": "succeeded",
        "dataset": context.pop("dataset", None),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "processing_seconds": seconds,
        "code_version": os.environ.get("CODE_VERSION") or None,
        "libraries": library_versions(),
        "config": {"source": config.source, "sha256": config.sha256},
        "format": fmt,
        "inputs": per_file,
        "rows": {"in": rows_in, "out": rows_out, "rejected": rows_rejected, "rejected_by_reason": reason_counts},
        "columns": col_metrics,
        "missing_values": {"before": missing_before, "after": missing_after, "checked_columns": names,
                           "cells_checked": rows_out * len(names)},
        "invalid_values": {c: m["invalid"] for c, m in col_metrics.items() if m["type"] in NUMERIC_TYPES},
        "duplicates": {"exact": dup_exact, "exact_columns": names, "key": dup_key, "key_columns": key_cols,
                       "policy": config.duplicate_drop, "dropped": dropped},
        "json": json_metrics,
        "imputation": imputation,
        "derived": derived_metrics,
        "group_columns": group_metrics,
        "numeric": numeric,
        "quality_gate": quality_gate(summary, config.quality_thresholds),
        "outputs": outputs,
        **context,
    }
    io.write_json(_json_safe(metrics), output_dir / "quality" / "metrics.json")
    return Result(metrics, cleaned, transformed, rejected_table, statistics, output_dir)


def quality_gate(summary: dict[str, Any], thresholds: dict[str, float]) -> dict[str, Any]:
    """Compare summary figures with the config's thresholds (reported; alarms act on them, the job does not fail)."""
    value_of = {
        "max_missing_rate_after": summary["missing_rate_after"], "max_rejected_rate": summary["rejected_rate"],
        "max_malformed_json_rate": summary["malformed_json_rate"], "max_duplicate_rate": summary["duplicate_rate"],
        "min_rows_out": summary["rows_out"],
    }
    checks = {}
    for key, limit in thresholds.items():
        value = value_of[key]
        ok = value >= limit if key.startswith("min_") else value <= limit
        checks[key] = {"threshold": limit, "value": value, "passed": bool(ok)}
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks}


def _rejected_table(raw: pa.Table, names: list[str], rejected: np.ndarray, reasons: np.ndarray,
                    reads: list[io.FileRead]) -> pa.Table:
    file_names = [r.path.name for r in reads]
    idx = np.flatnonzero(rejected)
    sub = raw.take(pa.array(idx, pa.int64()))
    file_idx = sub.column(FILE_COL).to_numpy()
    columns: dict[str, pa.Array] = {
        FILE_COL: pa.array([file_names[i] for i in file_idx], pa.string()),
        ROW_COL: sub.column(ROW_COL).combine_chunks(),
        REASON_COL: pa.array(reasons[idx].tolist(), pa.string()),
        RAW_LINE_COL: pa.nulls(len(idx), pa.string()),
    }
    for c in names:
        columns[c] = sub.column(c).combine_chunks()
    table = pa.table(columns)
    extra = []
    for r in reads:
        if r.parse_errors:
            k = len(r.parse_errors)
            cols = {FILE_COL: pa.array([r.path.name] * k, pa.string()), ROW_COL: pa.nulls(k, pa.int64()),
                    REASON_COL: pa.array(["parse_error:wrong_field_count"] * k, pa.string()),
                    RAW_LINE_COL: pa.array(r.parse_errors, pa.string())}
            cols.update({c: pa.nulls(k, pa.string()) for c in names})
            extra.append(pa.table(cols))
    if extra:
        table = pa.concat_tables([table, *extra]).combine_chunks()
        order = pc.sort_indices(table, sort_keys=[(FILE_COL, "ascending")])  # stable: parsed rows first per file
        table = table.take(order)
    return table


def _per_file(reads: list[io.FileRead], raw: pa.Table, rejected: np.ndarray) -> list[dict[str, Any]]:
    file_idx = raw.column(FILE_COL).to_numpy()
    out_counts = np.bincount(file_idx[~rejected], minlength=len(reads))
    rows = []
    for i, r in enumerate(reads):
        entry = {"file": r.path.name, "path": str(r.path), "format": r.kind, "size_bytes": r.size,
                 "sha256": r.sha256, "rows_in": r.rows_in, "rows_out": int(out_counts[i]),
                 "rows_rejected": r.rows_in - int(out_counts[i]), "parse_errors": len(r.parse_errors)}
        if entry["rows_out"] + entry["rows_rejected"] != entry["rows_in"]:  # pragma: no cover - invariant
            raise RuntimeError(f"row accounting broken for {r.path.name}: {entry}")
        rows.append(entry)
    return rows


def _reason_counts(table: pa.Table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reasons, k in pd.Series(table.column(REASON_COL).to_pylist(), dtype=object).value_counts().items():
        for reason in str(reasons).split(";"):
            counts[reason] = counts.get(reason, 0) + int(k)
    return dict(sorted(counts.items()))


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def _write(output_dir: Path, fmt: str, cleaned: pd.DataFrame, transformed: pd.DataFrame, rejected: pa.Table,
           statistics: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    for folder in OUTPUT_FOLDERS:
        (output_dir / folder).mkdir(parents=True, exist_ok=True)
    written = {
        "cleaned": [io.write_table(_to_arrow(cleaned), output_dir / "cleaned", "cleaned", fmt)],
        "transformed": [io.write_table(_to_arrow(transformed), output_dir / "transformed", "transformed", fmt)],
        "rejected": [io.write_table(rejected, output_dir / "rejected", "rejected", fmt)],
        "statistics": [],
    }
    for name, frame in statistics.items():
        written["statistics"].append(io.write_table(_to_arrow(frame), output_dir / "statistics", name, "csv"))
        path = output_dir / "statistics" / f"{name}.json"
        records = [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
        io.write_json({"name": name, "rows": records}, path)
        written["statistics"].append(path)
    written["quality"] = [output_dir / "quality" / "metrics.json"]
    return {k: [str(p.relative_to(output_dir)) for p in v] for k, v in written.items()}


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return _json_value(obj)
