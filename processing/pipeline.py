"""Orchestration: read inputs, reject unusable rows, clean, transform, compute statistics and metrics, write outputs."""

from __future__ import annotations

import logging
import math
import os
import platform
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import processing
from processing import gate, io, jsonx, transform
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.errors import EmptyInputError, MissingColumnsError

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
    rejected: pa.Table | None  # streaming: None when more rows were rejected than its row budget (read rejected/)
    statistics: dict[str, pd.DataFrame]
    output_dir: Path


def library_versions() -> dict[str, str]:
    import numpy
    import pyarrow

    return {"python": platform.python_version(), "pandas": pd.__version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__}


_PIN_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file -> {lower-case name: version}; other lines are ignored."""
    pins = {}
    for line in text.splitlines():
        match = _PIN_RE.match(line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def pinned_versions() -> dict[str, str] | None:
    """The pins of ``processing/requirements.txt`` (bundled with the job's code), or None when it is absent."""
    try:
        text = resources.files("processing").joinpath("requirements.txt").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return parse_pins(text)


def _installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_drift(loaded: dict[str, str] | None = None, pins: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Pinned libraries whose loaded version differs: ``[{"library", "expected", "loaded"}]``, empty when none.

    The job runs on the prebuilt scikit-learn image, whose tag is rebuilt: the libraries behind a tag can change
    (docs/infra.md "Pinning the job image"). Defaults: :func:`library_versions` and :func:`pinned_versions` (no
    requirements file: nothing to compare, empty).
    """
    installed = loaded is None  # the real environment: a pinned library we do not import is looked up installed
    loaded = library_versions() if loaded is None else loaded
    pins = pinned_versions() if pins is None else pins
    drift = []
    for library, expected in sorted((pins or {}).items()):
        found = loaded.get(library) or (_installed_version(library) if installed else None)
        if found != expected:
            drift.append({"library": library, "expected": expected, "loaded": found if found else "not loaded"})
    return drift


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
        context: dict[str, Any] | None = None, baseline: Path | None = None, mode: str = "auto",
        block_size: int | None = None, work_dir: Path | None = None, max_rows: int | None = None) -> Result:
    """Process ``inputs`` with ``config`` and write every output folder under ``output_dir``.

    Args:
        inputs: input files (read, never modified).
        output_dir: gets cleaned/, transformed/, statistics/, quality/, rejected/.
        config: the validated dataset config.
        fmt: ``parquet`` or ``csv`` for the row outputs.
        context: extra facts recorded in metrics (dataset, SageMaker configs, source URI, ...).
        baseline: the dataset's baseline profile file (drift is "unavailable" without one; see gate.finish).
        mode: ``memory``, ``streaming`` (block by block, bounded memory; see docs "Performance and sizing") or
            ``auto`` (streaming when the input is large compared with the memory available; ``choose_mode``).
        block_size: CSV block size of the streaming path (bytes; default ``streaming.BLOCK_SIZE``).
        work_dir: where the streaming path puts its temporary work file (default: env ``PROCESSING_WORK_DIR``,
            else the output folder's parent); removed before returning.
        max_rows: streaming only: rows whose per-row state is held in memory at once (default: env
            ``PROCESSING_MAX_ROWS_IN_MEMORY``, else from the available memory; ``streaming.max_rows_in_memory``).

    Returns:
        The metrics and frames.

    Raises:
        ProcessingError: for expected input problems (named files and columns).
    """
    started = time.perf_counter()
    context = dict(context or {})
    if choose_mode(inputs, config, mode) == "streaming":
        from processing import streaming

        try:
            return _finish(streaming.process(inputs, Path(output_dir), config, fmt=fmt, context=context,
                                             baseline=baseline, started=started, block_size=block_size,
                                             work_dir=work_dir, max_rows=max_rows))
        except streaming.StreamingUnsupported as exc:  # found before anything is written (non-UTF-8 input)
            if (os.environ.get("PROCESSING_MODE") if mode == "auto" else mode) == "streaming":
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
        marked = dict(zip(names, pool.map(
            lambda c: transform.mark_missing(raw.column(c).combine_chunks(), config.missing_values), names)))
        numeric_names = [c for c in names if kinds[c] in NUMERIC_TYPES]
        coerced = dict(zip(numeric_names, pool.map(lambda c: transform.coerce(marked[c], kinds[c]), numeric_names)))
    typed: dict[str, pa.Array] = {}
    invalid: dict[str, np.ndarray] = {}
    for c in names:
        if kinds[c] in NUMERIC_TYPES:
            typed[c], inv = coerced[c]
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
        statistics=statistics))


def transform_rows(cleaned: pd.DataFrame, config: DatasetConfig, names: list[str], kinds: dict[str, str],
                   imputation: dict[str, Any], extractions: dict[str, jsonx.Extraction] | None = None,
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-row steps after typing, shared by the in-memory path (all rows at once) and the streaming path (batch
    by batch): fill the imputed columns of ``cleaned`` in place with ``imputation[column]["value"]``, then build the
    transformed frame (extracted JSON fields, derived features in config order).

    Args:
        extractions: JSON extractions already made of ``cleaned``'s JSON columns (by column; others are made here).

    Returns:
        The transformed frame and counts that add up across batches (``add_counts``): ``rows``, ``missing_after``
        per column, per JSON column the extraction outcomes and present values per field, per derived feature its
        missing values (and for bins the values outside every bin and the count per label).
    """
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
        else:
            assert d.bins is not None
            transformed[d.name], outside = transform.bin_values(transformed[d.source], d.bins)
            labels = transformed[d.name].value_counts(dropna=False, sort=False)
            counts["derived"][d.name] = {
                "outside_bins": outside, "missing": int(transformed[d.name].isna().sum()),
                "counts": {str(k): int(v) for k, v in labels.items() if not pd.isna(k)}}
    return transformed, counts


def summarised_columns(config: DatasetConfig, names: list[str], kinds: dict[str, str]) -> tuple[list[str], list[str]]:
    """The columns metrics.json summarises: group-by columns (``group_columns``, sorted) and numeric columns
    (``numeric``: numeric inputs, then string-length features)."""
    group_cols = sorted({c for g in config.group_statistics for c in g.group_by})
    numeric_cols = [c for c in names if kinds[c] in NUMERIC_TYPES]
    numeric_cols += [d.name for d in config.derived if d.kind == "string_length"]
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
            "not_object": c["not_object"], "malformed_rate": _rate(malformed, c["non_missing"]),
            "fields": {f.name: {"path": ".".join(f.path), "extracted": c["extracted"][f.name],
                                "missing": counts["rows"] - c["extracted"][f.name]} for f in jc.fields},
        }
    return out


def derived_metrics_of(counts: dict[str, Any], config: DatasetConfig) -> dict[str, Any]:
    """metrics.json ``derived`` section from (summed) ``transform_rows`` counts."""
    out: dict[str, Any] = {}
    for d in config.derived:
        c = counts["derived"][d.name]
        if d.kind == "string_length":
            out[d.name] = {"kind": d.kind, "source": d.source, "missing": c["missing"]}
        else:
            out[d.name] = {"kind": d.kind, "source": d.source, "outside_bins": c["outside_bins"],
                           "missing": c["missing"], "counts": c.get("counts", {})}
    return out


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


def _finish(p: Parts) -> Result:
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
        "code_version": os.environ.get("CODE_VERSION") or None,
        "package_version": processing.__version__,
        "libraries": library_versions(),
        "library_drift": library_drift(),
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


def available_memory() -> int:
    """Bytes this process may still use: the cgroup limit (containers) or MemAvailable, whichever is lower."""
    limits = []
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return min(limits) if limits else 1 << 62


def choose_mode(inputs: list[Path], config: DatasetConfig, mode: str = "auto") -> str:
    """``memory`` or ``streaming``. ``auto`` (default, or env ``PROCESSING_MODE``) streams when the inputs'
    uncompressed size reaches ``STREAMING_MIN_BYTES`` or its ``MEMORY_PER_INPUT_BYTE`` multiple exceeds the
    available memory (env ``PROCESSING_STREAMING_THRESHOLD_BYTES`` overrides that input-size threshold) and the
    streaming path supports the inputs and config (``streaming.unsupported``); otherwise in memory. Small inputs
    stay in memory, where the single pass is quickest and memory is no concern."""
    mode = os.environ.get("PROCESSING_MODE", "") if mode == "auto" else mode
    if mode in ("memory", "streaming"):
        if mode == "streaming":
            from processing import streaming

            reason = streaming.unsupported(inputs, config)
            if reason:
                raise streaming.StreamingUnsupported(f"streaming mode cannot process this job: {reason}")
        return mode
    size = sum(p.stat().st_size * (4 if io.is_gzip(p) else 1) for p in inputs)
    env = os.environ.get("PROCESSING_STREAMING_THRESHOLD_BYTES")
    threshold = int(env) if env else min(STREAMING_MIN_BYTES, available_memory() // MEMORY_PER_INPUT_BYTE)
    if size <= threshold:
        return "memory"
    from processing import streaming

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


def count_reasons(table: pa.Table, counts: dict[str, int] | None = None) -> dict[str, int]:
    """Rejected rows per reason (a row with two reasons counts in both), added to ``counts`` if given."""
    counts = dict(counts or {})
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
    # Parquet/CSV writers release the GIL: the three row outputs are written concurrently.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            "rejected": pool.submit(io.write_table, rejected, output_dir / "rejected", "rejected", fmt),
            "cleaned": pool.submit(io.write_table, _to_arrow(cleaned), output_dir / "cleaned", "cleaned", fmt),
            "transformed": pool.submit(io.write_table, _to_arrow(transformed), output_dir / "transformed",
                                       "transformed", fmt),
        }
        written = {k: [futures[k].result()] for k in ("cleaned", "transformed", "rejected")}
    written["statistics"] = []
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
