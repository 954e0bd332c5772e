"""The job's entry below the command line: chooses the mode (``choose_mode``), runs the in-memory path
(``processing/memory.py``) or the streaming path (``processing/streaming``), then assembles and writes
quality/metrics.json with the drift and gate outputs (``_finish``) from the parts either path returns."""

from __future__ import annotations

import dataclasses
import logging
import platform
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

import processing
from contract import METRICS_FILE, QUALITY, SUMMARY_METRICS
from processing import gate, io, memory, streaming
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.options import RunOptions, available_memory
from processing.rows import Parts, count_reasons
from processing.rows import json_safe as _json_safe  # the names _finish uses
from processing.rows import rate as _rate

log = logging.getLogger("processing")

# The pipeline's summary keys, in order (design.md Contract 3: each is a metric of the metrics Lambda).
SUMMARY_KEYS = tuple(SUMMARY_METRICS)


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
            drift.append({"library": library, "expected": expected, "loaded": found or "not loaded"})
    return drift


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
    parts = memory.process(inputs, Path(output_dir), config, fmt=fmt, context=context, baseline=baseline,
                           started=started)
    return _finish(parts, opts.code_version)


def _finish(p: Parts, code_version: str | None = None) -> Result:
    """Assemble and write quality/metrics.json (plus the drift/gate outputs) from the run's parts."""
    started, context, output_dir, config = p.started, p.context, p.output_dir, p.config
    fmt, baseline = p.fmt, p.baseline
    rows_in, rows_out, names, col_metrics, json_metrics = p.rows_in, p.rows_out, p.names, p.col_metrics, p.json_metrics
    rejected_table, per_file = p.rejected_table, p.per_file
    dup_exact, dup_key, key_cols = p.dup_exact, p.dup_key, p.key_cols
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
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "processing_seconds": seconds,
        "code_version": code_version or None,
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
    io.write_json(_json_safe(metrics), output_dir / QUALITY / METRICS_FILE)
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


