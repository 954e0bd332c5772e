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
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from contract import METRICS_FILE, QUALITY
from processing import gate, io, memory, metricsdoc, rules, streaming
from processing.config import DatasetConfig
from processing.options import RunOptions, available_memory
from processing.rows import Parts, count_reasons
from processing.rows import json_safe as _json_safe  # the names _finish uses

log = logging.getLogger("processing")

# The pipeline's summary keys, in order (design.md Contract 3: each is a metric of the metrics Lambda).
SUMMARY_KEYS = metricsdoc.SUMMARY_KEYS


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
    reason_counts = p.reason_counts if p.reason_counts is not None else count_reasons(rejected_table)
    metrics = metricsdoc.build(
        started=started, context=context, config=config, fmt=fmt, code_version=code_version,
        libraries=library_versions(), library_drift=library_drift(), rows_in=rows_in, rows_out=rows_out, names=names,
        col_metrics=col_metrics, json_metrics=json_metrics, per_file=per_file, reason_counts=reason_counts,
        dup_exact=dup_exact, dup_key=dup_key, key_cols=key_cols, dropped=dropped, imputation=imputation,
        derived_metrics=derived_metrics, group_metrics=group_metrics, numeric=numeric, outputs=outputs, mode=p.mode,
        sampling=p.sampling)
    tally = p.rule_tally if p.rule_tally is not None else rules.Tally(config.rules)
    metrics["rows"]["rejected_by_rules"] = tally.rejected_rows
    metrics["rules"] = rules.results(tally, rows_out, col_metrics, json_metrics, config.rules)
    presence = metricsdoc.json_presence(json_metrics, rows_out)
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


quality_gate = metricsdoc.quality_gate  # the rule lives in processing/metricsdoc.py (both engines use it)


