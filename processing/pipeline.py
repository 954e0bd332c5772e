"""Orchestration: read inputs, reject unusable rows, clean, transform, compute statistics and metrics, write outputs."""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import processing
from processing import gate, io, streaming, transform
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.errors import EmptyInputError, MissingColumnsError
from processing.options import RunOptions, available_memory
from processing.rows import (FILE_COL, OUTPUT_FOLDERS, ROW_COL, Parts, count_reasons, derived_metrics_of,
                             group_column_metrics, json_metrics_of, reject_reasons, rejected_rows, summarised_columns,
                             to_arrow, transform_rows, type_and_reject, unparsed_rows, write_statistics)
from processing.rows import json_safe as _json_safe  # the names _finish uses
from processing.rows import rate as _rate

log = logging.getLogger("processing")

SUMMARY_KEYS = (
    "rows_in", "rows_out", "rows_rejected", "missing_values_before", "missing_values_after", "missing_rate_after",
    "rejected_rate", "duplicate_rows_exact", "duplicate_rows_key", "duplicate_rate", "malformed_json",
    "malformed_json_rate", "invalid_values", "processing_seconds",
)


@dataclass
class Result:
    """What a run produced: the metrics document and the in-memory frames (handy for tests)."""

    metrics: dict[str, Any]
    cleaned: pd.DataFrame
    transformed: pd.DataFrame
    rejected: pa.Table | None  # streaming: None when more rows were rejected than its row budget (read rejected/)
    statistics: dict[str, pd.DataFrame]
    output_dir: Path


def library_versions() -> dict[str, str]:
    import numpy
    import pyarrow

    return {"python": platform.python_version(), "pandas": pd.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__}


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


def run(inputs: list[Path], output_dir: Path, config: DatasetConfig, *, fmt: str = "parquet",
        context: dict[str, Any] | None = None, baseline: Path | None = None, options: RunOptions | None = None,
        **settings: Any) -> Result:
    """Process ``inputs`` with ``config`` and write every output folder under ``output_dir``.

    Args:
        inputs: input files (read, never modified).
        output_dir: gets cleaned/, transformed/, statistics/, quality/, rejected/.
        config: the validated dataset config.
        fmt: ``parquet`` or ``csv`` for the row outputs.
        context: extra facts recorded in metrics (dataset, SageMaker configs, source URI, ...).
        baseline: the dataset's baseline profile file (drift is "unavailable" without one; see gate.finish).
        options: how to run (mode, streaming's row budget, work folder and block size, code version; see
            ``options.RunOptions``); ``cli.run_options`` builds them from flags and the environment. Nothing here
            reads the environment.
        settings: ``RunOptions`` fields that replace those of ``options`` (``mode="streaming", max_rows=4000``).

    Returns:
        The metrics and frames.

    Raises:
        ProcessingError: for expected input problems (named files and columns).
    """
    started = time.perf_counter()
    opts = dataclasses.replace(options or RunOptions(), **settings)
    context = dict(context or {})
    if choose_mode(inputs, config, opts) == "streaming":
        try:
            return _finish(streaming.process(inputs, Path(output_dir), config, fmt=fmt, context=context,
                                             baseline=baseline, started=started, options=opts), opts.code_version)
        except streaming.StreamingUnsupported as exc:  # found before anything is written (non-UTF-8 input)
            if opts.mode == "streaming":
                raise
            log.warning("%s: processing in memory", exc)
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
    for r in reads:  # the combined copy is all we need: free the per-file tables (keeping their row counts)
        r.table = pa.table({"_rows": pa.nulls(r.table.num_rows)})
    n = raw.num_rows
    kinds = {c: config.columns.get(c, "string") for c in names}
    # Column by column on two threads (Arrow kernels release the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = type_and_reject(lambda c: raw.column(c).combine_chunks(), n, names, kinds, config,
                               [(bad_utf8, "invalid_utf8")], pool)
    typed, invalid, rejected, reasons = rows.typed, rows.invalid, rows.rejected, rows.reasons

    # Duplicates are counted among the usable rows, on typed values before imputation (nulls compare equal).
    usable_idx = np.flatnonzero(~rejected)
    usable = pa.array(usable_idx)
    all_usable = len(usable_idx) == n  # the common case: no copy of the columns
    usable_typed = {c: typed[c] if all_usable else typed[c].take(usable) for c in names}
    pre = pd.DataFrame({c: transform.to_series(usable_typed[c], kinds[c]) for c in names})
    key_cols = [c for c in config.duplicate_key_columns if c in names]
    (dup_exact, exact_mask), (dup_key, key_mask) = transform.duplicate_masks(
        usable_typed, [names, key_cols], len(usable_idx))
    del usable_typed
    dropped = 0
    if config.duplicate_drop != "none":
        drop_mask = exact_mask if config.duplicate_drop == "exact" else key_mask
        full = np.zeros(n, dtype=bool)
        full[usable_idx[drop_mask]] = True
        more, more_reasons = reject_reasons(n, [(full, f"duplicate_{config.duplicate_drop}")])
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

    drift_batch = pre[[c for c in (*config.drift.numeric, *config.drift.categorical) if c in pre.columns]].copy()
    cleaned = pre
    imputation: dict[str, Any] = {}
    for rule in config.imputations:
        info = transform.impute_value(cleaned[rule.column], rule, kinds[rule.column])
        info["filled"] = int(cleaned[rule.column].isna().sum()) if info["value"] is not None else 0
        imputation[rule.column] = info
    transformed, counts = transform_rows(cleaned, config, names, kinds, imputation)
    for c in names:
        col_metrics[c]["missing_after"] = counts["missing_after"][c]
    json_metrics = json_metrics_of(counts, config)
    derived_metrics = derived_metrics_of(counts, config)

    statistics = {g.name: transform.group_statistics(transformed, g) for g in config.group_statistics}
    group_cols, numeric_cols = summarised_columns(config, names, kinds)
    group_metrics = {c: group_column_metrics(transformed[c]) for c in group_cols}
    numeric = {c: transform.numeric_summary(transformed[c]) for c in numeric_cols}

    rejected_table = _rejected_table(raw, names, rejected, reasons, reads)
    per_file = _per_file(reads, raw, rejected)

    output_dir = Path(output_dir)
    outputs = _write(output_dir, fmt, cleaned, transformed, rejected_table, statistics)
    return _finish(Parts(
        started=started, context=context, output_dir=output_dir, config=config, fmt=fmt, baseline=baseline,
        rows_in=rows_in, rows_out=rows_out, names=names, col_metrics=col_metrics, json_metrics=json_metrics,
        rejected_table=rejected_table, per_file=per_file, dup_exact=dup_exact, dup_key=dup_key, key_cols=key_cols,
        dropped=dropped, imputation=imputation, derived_metrics=derived_metrics, group_metrics=group_metrics,
        numeric=numeric, outputs=outputs, drift_batch=drift_batch, cleaned=cleaned, transformed=transformed,
        statistics=statistics), opts.code_version)


def _finish(p: Parts, code_version: str | None = None) -> Result:
    """Assemble and write quality/metrics.json (plus the drift/gate outputs) from the run's parts."""
    started, context, output_dir, config, fmt, baseline = p.started, p.context, p.output_dir, p.config, p.fmt, p.baseline
    rows_in, rows_out, names, col_metrics, json_metrics = p.rows_in, p.rows_out, p.names, p.col_metrics, p.json_metrics
    rejected_table, per_file, dup_exact, dup_key, key_cols = p.rejected_table, p.per_file, p.dup_exact, p.dup_key, p.key_cols
    dropped, imputation, derived_metrics, group_metrics = p.dropped, p.imputation, p.derived_metrics, p.group_metrics
    numeric, outputs, drift_batch, cleaned, transformed = p.numeric, p.outputs, p.drift_batch, p.cleaned, p.transformed
    statistics = p.statistics
    rows_rejected = rows_in - rows_out
    missing_before = sum(m["missing_before"] for m in col_metrics.values())
    missing_after = sum(m["missing_after"] for m in col_metrics.values())
    malformed = sum(m["malformed"] for m in json_metrics.values())
    json_cells = sum(m["non_missing"] for m in json_metrics.values())
    invalid_total = sum(m["invalid"] for m in col_metrics.values())
    reason_counts = p.reason_counts if p.reason_counts is not None else count_reasons(rejected_table)
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
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "processing_seconds": seconds,
        "code_version": code_version or None,
        "package_version": processing.__version__,
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
        "mode": p.mode,
        "statistics_sampling": p.sampling,
        **context,
    }
    presence = {f"{c}.{name}": _rate(field["extracted"], rows_out)
                for c, m in json_metrics.items() for name, field in m["fields"].items()}
    gate.finish(metrics, output_dir, config, drift_batch, presence, baseline)  # profile, drift, gate, layout
    io.write_json(_json_safe(metrics), output_dir / "quality" / "metrics.json")
    return Result(metrics, cleaned, transformed, rejected_table, statistics, output_dir)


MEMORY_PER_INPUT_BYTE = 8  # in-memory peak RSS is 3.4-4.3x the CSV size (bench/RESULTS.md), plus headroom
STREAMING_MIN_BYTES = 64 << 20  # above this input size ``auto`` streams: bounded memory, up to ~25% more time


def choose_mode(inputs: list[Path], config: DatasetConfig, options: RunOptions) -> str:
    """``memory`` or ``streaming``: ``options.mode`` when it is one of them, else (``auto``) streaming when the
    inputs' uncompressed size reaches ``STREAMING_MIN_BYTES`` or its ``MEMORY_PER_INPUT_BYTE`` multiple exceeds the
    available memory (``options.streaming_threshold`` overrides that input-size threshold) and the streaming path
    supports the inputs and config (``streaming.unsupported``); otherwise in memory. Small inputs stay in memory,
    where the single pass is quickest and memory is no concern."""
    mode = options.mode
    if mode in ("memory", "streaming"):
        if mode == "streaming":
            reason = streaming.unsupported(inputs, config)
            if reason:
                raise streaming.StreamingUnsupported(f"streaming mode cannot process this job: {reason}")
        return mode
    size = sum(p.stat().st_size * (4 if io.is_gzip(p) else 1) for p in inputs)
    threshold = (options.streaming_threshold if options.streaming_threshold is not None
                 else min(STREAMING_MIN_BYTES, available_memory() // MEMORY_PER_INPUT_BYTE))
    if size <= threshold:
        return "memory"
    reason = streaming.unsupported(inputs, config)
    if reason:
        log.warning("input of %d bytes is above the streaming threshold (%d) but %s: processing in memory",
                    size, threshold, reason)
        return "memory"
    log.info("input of %d bytes is above the streaming threshold (%d): streaming mode", size, threshold)
    return "streaming"


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
    """The rejected rows as rejected/ holds them: parsed rows in input order (file, then row); when some lines could
    not be parsed, files in name order instead (a stable sort), each file's rows before its unparsable lines."""
    file_names = [r.path.name for r in reads]
    idx = np.flatnonzero(rejected)
    table = rejected_rows(raw.take(pa.array(idx, pa.int64())), reasons[idx], names, file_names)
    extra = [unparsed_rows(r.path.name, r.parse_errors, names) for r in reads if r.parse_errors]
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


def _write(output_dir: Path, fmt: str, cleaned: pd.DataFrame, transformed: pd.DataFrame, rejected: pa.Table,
           statistics: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    for folder in OUTPUT_FOLDERS:
        (output_dir / folder).mkdir(parents=True, exist_ok=True)
    # Parquet/CSV writers release the GIL: the three row outputs are written concurrently.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            "rejected": pool.submit(io.write_table, rejected, output_dir / "rejected", "rejected", fmt),
            "cleaned": pool.submit(io.write_table, to_arrow(cleaned), output_dir / "cleaned", "cleaned", fmt),
            "transformed": pool.submit(io.write_table, to_arrow(transformed), output_dir / "transformed",
                                       "transformed", fmt),
        }
        written = {k: [futures[k].result()] for k in ("cleaned", "transformed", "rejected")}
    written["statistics"] = write_statistics(output_dir, statistics)
    written["quality"] = [output_dir / "quality" / "metrics.json"]
    return {k: [str(p.relative_to(output_dir)) for p in v] for k, v in written.items()}


