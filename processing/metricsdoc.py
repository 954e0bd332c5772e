"""quality/metrics.json as a document, standard library only: the summary, the quality-gate checks and the document's
keys (design.md Contract 3), built the same way by both engines (``pipeline._finish`` for the default engine,
``spark.engine._finish`` for the Spark engine, which must not load pyarrow), plus the JSON writer both use."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import processing
from contract import SUMMARY_METRICS
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.types import NEW_TYPES

SUMMARY_KEYS = tuple(SUMMARY_METRICS)


def rate(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


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


def json_presence(json_metrics: dict[str, Any], rows_out: int) -> dict[str, float]:
    """Share of the output rows in which each extracted JSON field is present (``"<column>.<field>"``)."""
    return {f"{c}.{name}": rate(field["extracted"], rows_out)
            for c, m in json_metrics.items() for name, field in m["fields"].items()}


def build(*, started: float, context: dict[str, Any], config: DatasetConfig, fmt: str, code_version: str | None,
          libraries: dict[str, str], library_drift: list[dict[str, str]], rows_in: int, rows_out: int,
          names: list[str], col_metrics: dict[str, Any], json_metrics: dict[str, Any], per_file: list[dict[str, Any]],
          reason_counts: dict[str, int], dup_exact: int, dup_key: int, key_cols: list[str], dropped: Any,
          imputation: dict[str, Any], derived_metrics: dict[str, Any], group_metrics: dict[str, Any],
          numeric: dict[str, Any], outputs: dict[str, Any], mode: str,
          sampling: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics document before ``gate.finish`` adds drift, gate and the output layout (``context`` loses its
    ``dataset`` entry, which becomes the document's)."""
    rows_rejected = rows_in - rows_out
    missing_before = sum(m["missing_before"] for m in col_metrics.values())
    missing_after = sum(m["missing_after"] for m in col_metrics.values())
    malformed = sum(m["malformed"] for m in json_metrics.values())
    json_cells = sum(m["non_missing"] for m in json_metrics.values())
    invalid_total = sum(m["invalid"] for m in col_metrics.values())
    seconds = round(time.perf_counter() - started, 3)
    summary = {
        "rows_in": rows_in, "rows_out": rows_out, "rows_rejected": rows_rejected,
        "missing_values_before": missing_before, "missing_values_after": missing_after,
        "missing_rate_after": rate(missing_after, rows_out * len(names)),
        "rejected_rate": rate(rows_rejected, rows_in),
        "duplicate_rows_exact": dup_exact, "duplicate_rows_key": dup_key,
        "duplicate_rate": rate(dup_key, rows_in),
        "malformed_json": malformed, "malformed_json_rate": rate(malformed, json_cells),
        "invalid_values": invalid_total, "processing_seconds": seconds,
    }
    assert tuple(summary) == SUMMARY_KEYS
    return {
        "summary": summary,
        "status": "succeeded",
        "dataset": context.pop("dataset", None),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "processing_seconds": seconds,
        "code_version": code_version or None,
        "package_version": processing.__version__,
        "libraries": libraries,
        "library_drift": library_drift,
        "config": {"source": config.source, "sha256": config.sha256},
        "format": fmt,
        "inputs": per_file,
        "rows": {"in": rows_in, "out": rows_out, "rejected": rows_rejected, "rejected_by_reason": reason_counts},
        "columns": col_metrics,
        "missing_values": {"before": missing_before, "after": missing_after, "checked_columns": names,
                           "cells_checked": rows_out * len(names)},
        "invalid_values": {c: m["invalid"] for c, m in col_metrics.items()
                           if m["type"] in (*NUMERIC_TYPES, *NEW_TYPES)},
        "duplicates": {"exact": dup_exact, "exact_columns": names, "key": dup_key, "key_columns": key_cols,
                       "policy": config.duplicate_drop, "dropped": dropped},
        "json": json_metrics,
        "imputation": imputation,
        "derived": derived_metrics,
        "group_columns": group_metrics,
        "numeric": numeric,
        "quality_gate": quality_gate(summary, config.quality_thresholds),
        "outputs": outputs,
        "mode": mode,
        "statistics_sampling": sampling,
        **context,
    }


def write_json(obj: Any, path: Path) -> None:
    """Write JSON atomically-enough (temp file + rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
