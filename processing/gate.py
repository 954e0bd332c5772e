"""The quality gate: drift/gate settings (validated with the dataset config), the verdict, and the output layout.

Standard library only at import time (the config loader imports this module before pandas is loaded);
``finish`` imports ``processing.drift`` (numpy/pandas) when it runs. See docs/processing.md
"Drift and the quality gate" and docs/design.md Contract 4.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from processing.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("processing")

# Summary keys added by the gate (design.md Contract 3), after the pipeline's own.
SUMMARY_KEYS = ("drift_max_psi", "drifted_columns", "drift_unavailable", "quality_gate_failed", "quality_gate_warned")
DATA_FOLDERS = ("cleaned", "transformed", "statistics", "rejected")
QUARANTINE = "quarantine"
# No _SUCCESS marker here: SageMaker uploads a job's output files in no guaranteed order, so a marker written by the
# job could appear before the data. The metrics Lambda writes it after the job finished (design.md Contract 4).
THRESHOLD_NAMES = ("psi_warn", "psi_alarm", "distance_warn", "distance_alarm")
DEFAULT_THRESHOLDS = {"psi_warn": 0.1, "psi_alarm": 0.25, "distance_warn": 0.1, "distance_alarm": 0.25}
ACTIONS = ("fail", "warn", "ignore")
GATE_KEYS = ("thresholds", "drift_alarm", "drift_warn", "drift_unavailable")
DEFAULT_GATE = {"thresholds": "fail", "drift_alarm": "fail", "drift_warn": "warn", "drift_unavailable": "ignore"}
DRIFT_KEYS = ("numeric", "categorical", "json_fields", *THRESHOLD_NAMES, "columns")
# Columns that identify rows rather than describe them are left out of the default drift columns.
ID_LIKE = re.compile(r"(?i)^(id|uuid|guid|key|pk)$|(_|-)(id|uuid|guid|key|pk)$|^(id|uuid|guid)(_|-)|[a-z0-9](Id|ID|Uuid|UUID)$")


@dataclass(frozen=True)
class DriftSettings:
    """Which columns are profiled and the thresholds (global, per-column overrides; None disables one).

    ``json_fields`` are ``"<json column>.<field name>"`` keys whose presence rate is compared.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    json_fields: tuple[str, ...] = ()
    psi_warn: float | None = 0.1
    psi_alarm: float | None = 0.25
    distance_warn: float | None = 0.1
    distance_alarm: float | None = 0.25
    per_column: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)

    def threshold(self, column: str, name: str) -> float | None:
        overrides = self.per_column.get(column, {})
        return overrides[name] if name in overrides else getattr(self, name)


@dataclass(frozen=True)
class GateSettings:
    """What each kind of finding does to the batch: ``fail``, ``warn`` or ``ignore``."""

    thresholds: str = "fail"
    drift_alarm: str = "fail"
    drift_warn: str = "warn"
    drift_unavailable: str = "ignore"


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _threshold(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _fail(path, f"expected a non-negative number or null, got {value!r}")
    return float(value)


def _thresholds(spec: Mapping[str, Any], path: str, base: Mapping[str, float | None]) -> dict[str, float | None]:
    out = {k: _threshold(spec[k], f"{path}.{k}") for k in THRESHOLD_NAMES if k in spec}
    merged = {**base, **out}
    for kind in ("psi", "distance"):
        warn, alarm = merged.get(f"{kind}_warn"), merged.get(f"{kind}_alarm")
        if warn is not None and alarm is not None and warn > alarm:
            bad = f"{kind}_warn" if f"{kind}_warn" in out else f"{kind}_alarm"
            raise _fail(f"{path}.{bad}", f"{kind}_warn ({warn}) must not exceed {kind}_alarm ({alarm})")
    return out


def _names(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, "expected a list of column names")
    if len(set(value)) != len(value):
        raise _fail(path, "entries must be unique")
    return tuple(value)


def default_drift_columns(columns: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Numeric = integer/float columns, categorical = string/category columns, both without id-like names."""
    keep = [c for c in columns if not ID_LIKE.search(c)]
    return (tuple(c for c in keep if columns[c] in ("integer", "float")),
            tuple(c for c in keep if columns[c] in ("string", "category")))


def parse_drift(doc: Any, columns: Mapping[str, str], json_fields: Mapping[str, tuple[str, ...]]) -> DriftSettings:
    """Validate the optional ``drift`` section.

    Args:
        doc: the section (None when absent: defaults from the column types).
        columns: declared column -> type.
        json_fields: JSON column -> its extracted field names.

    Raises:
        ConfigError: naming the bad key, e.g. ``drift.columns.salary.psi_alarm: ...``.
    """
    all_fields = tuple(f"{col}.{name}" for col, names in json_fields.items() for name in names)
    if doc is None:
        numeric, categorical = default_drift_columns(columns)
        return DriftSettings(numeric=numeric, categorical=categorical, json_fields=all_fields)
    if not isinstance(doc, dict):
        raise _fail("drift", f"expected an object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(DRIFT_KEYS))
    if unknown:
        raise _fail(f"drift.{unknown[0]}", f"unknown key (allowed: {', '.join(DRIFT_KEYS)})")
    default_numeric, default_categorical = default_drift_columns(columns)
    numeric = _names(doc["numeric"], "drift.numeric") if "numeric" in doc else default_numeric
    categorical = _names(doc["categorical"], "drift.categorical") if "categorical" in doc else default_categorical
    for i, col in enumerate(numeric):
        if columns.get(col) not in ("integer", "float"):
            raise _fail(f"drift.numeric[{i}]", f"{col!r} must be a declared integer or float column")
    for i, col in enumerate(categorical):
        if col not in columns or columns[col] == "json":
            raise _fail(f"drift.categorical[{i}]", f"{col!r} must be a declared non-JSON column")
        if col in numeric:
            raise _fail(f"drift.categorical[{i}]", f"{col!r} is already a numeric drift column")
    fields_spec = doc.get("json_fields", True)
    if isinstance(fields_spec, bool):
        fields = all_fields if fields_spec else ()
    else:
        fields = _names(fields_spec, "drift.json_fields")
        for i, name in enumerate(fields):
            if name not in all_fields:
                raise _fail(f"drift.json_fields[{i}]", f"{name!r} is not an extracted field "
                                                       f"(expected one of: {', '.join(all_fields) or 'none'})")
    base = _thresholds(doc, "drift", DEFAULT_THRESHOLDS)
    merged = {**DEFAULT_THRESHOLDS, **base}
    per_column: dict[str, dict[str, float | None]] = {}
    overrides = doc.get("columns", {})
    if not isinstance(overrides, dict):
        raise _fail("drift.columns", "expected an object of column -> thresholds")
    for col, spec in overrides.items():
        path = f"drift.columns.{col}"
        if col not in numeric and col not in categorical and col not in fields:
            raise _fail(path, "not a drift column (list it in drift.numeric, drift.categorical or drift.json_fields)")
        if not isinstance(spec, dict):
            raise _fail(path, "expected an object of threshold -> number or null")
        bad = sorted(set(spec) - set(THRESHOLD_NAMES))
        if bad:
            raise _fail(f"{path}.{bad[0]}", f"unknown key (allowed: {', '.join(THRESHOLD_NAMES)})")
        per_column[col] = _thresholds(spec, path, merged)
    return DriftSettings(numeric=numeric, categorical=categorical, json_fields=fields, per_column=per_column, **merged)


def parse_gate(doc: Any) -> GateSettings:
    """Validate the optional ``gate`` section: ``{"thresholds"|"drift_alarm"|"drift_warn"|"drift_unavailable": action}``."""
    if doc is None:
        return GateSettings()
    if not isinstance(doc, dict):
        raise _fail("gate", f"expected an object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - set(GATE_KEYS))
    if unknown:
        raise _fail(f"gate.{unknown[0]}", f"unknown key (allowed: {', '.join(GATE_KEYS)})")
    for key, value in doc.items():
        if value not in ACTIONS:
            raise _fail(f"gate.{key}", f"expected one of {', '.join(ACTIONS)}, got {value!r}")
    return GateSettings(**{**DEFAULT_GATE, **doc})


# --------------------------------------------------------------------------------------------
# The verdict
# --------------------------------------------------------------------------------------------


def verdict(checks: Mapping[str, Any], drift_doc: Mapping[str, Any], gate: GateSettings) -> dict[str, Any]:
    """The gate: ``status`` passed|warned|failed and every rule broken with its measured value and threshold.

    Args:
        checks: ``quality_gate.checks`` of metrics.json (threshold -> {threshold, value, passed}).
        drift_doc: the content of quality/drift.json.
        gate: what each finding does.
    """
    violations: list[dict[str, Any]] = []

    def add(action: str, **item: Any) -> None:
        if action != "ignore":
            violations.append({**item, "action": action})

    for key, check in checks.items():
        if not check.get("passed", True):
            add(gate.thresholds, rule=f"quality_thresholds.{key}", measured=check.get("value"),
                threshold=check.get("threshold"))
    if drift_doc.get("status") != "computed":
        add(gate.drift_unavailable, rule="drift.unavailable", measured=None, threshold=None,
            reason=drift_doc.get("reason"))
    else:
        for name, col in drift_doc.get("columns", {}).items():
            level = col.get("level")
            if level not in ("warn", "alarm"):
                continue
            action = gate.drift_alarm if level == "alarm" else gate.drift_warn
            broken = [b for b in col.get("broken", [])] or [{"rule": f"drift.{level}", "measured": None,
                                                            "threshold": None}]
            for b in broken:
                add(action, rule=b["rule"], column=name, level=level, measured=b.get("measured"),
                    threshold=b.get("threshold"), **({"reason": col["reason"]} if col.get("reason") else {}))
    actions = {v["action"] for v in violations}
    status = "failed" if "fail" in actions else "warned" if "warn" in actions else "passed"
    return {"status": status, "violations": violations}


# --------------------------------------------------------------------------------------------
# Side effects: the pipeline's hook
# --------------------------------------------------------------------------------------------


def _write_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def finish(metrics: dict[str, Any], output_dir: Path, config: Any, batch: pd.DataFrame,
           presence: Mapping[str, float], baseline: Path | None) -> dict[str, Any]:
    """Profile, drift, gate and the output layout; updates ``metrics`` in place (summary, drift, gate, outputs).

    Never raises for a bad baseline (drift is then ``unavailable`` with the reason).

    Args:
        metrics: the metrics document being built (``summary``, ``quality_gate``, ``outputs`` are read and updated).
        output_dir: the job's output folder.
        config: the validated dataset config (``drift``, ``gate``, ``json_columns``).
        batch: the drift columns' typed values before imputation, of the rows that reach cleaned/.
        presence: share of the output rows in which each extracted JSON field is present (``"<column>.<field>"``).
        baseline: the baseline profile file given with ``--baseline``, or None.

    Returns:
        The gate verdict (content of quality/gate.json).
    """
    from processing import drift  # numpy/pandas: imported only when a run reaches this point

    settings: DriftSettings = config.drift
    presence = {k: v for k, v in presence.items() if k in settings.json_fields}
    source = {"dataset": metrics.get("dataset"), "job": _job_name(metrics),
              "inputs": [{"file": i.get("file"), "sha256": i.get("sha256")} for i in metrics.get("inputs", [])],
              "config_sha256": (metrics.get("config") or {}).get("sha256"),
              "code_version": metrics.get("code_version"), "created": metrics.get("timestamp")}
    sampling = metrics.get("statistics_sampling")
    if sampling:  # profiled from a uniform sample of the output rows (processing/batchstats.py)
        source["sampled"] = {"rows": sampling["rows"], "sample_rows": sampling["sample_rows"],
                             "rank_error": sampling["rank_error"], "delta": sampling["delta"]}
    profile = drift.build_profile(batch, settings, presence=presence, source=source)
    quality = output_dir / "quality"
    _write_json(profile, quality / "profile.json")
    drift_doc = drift.evaluate(baseline, batch, settings, presence=presence)
    if "sampled" in source:  # scores (and batch_rows) are of the sample
        drift_doc["sampled"] = source["sampled"]
    _write_json(drift_doc, quality / "drift.json")
    result = verdict((metrics.get("quality_gate") or {}).get("checks", {}), drift_doc, config.gate)
    result["rules"] = {"thresholds": config.gate.thresholds, "drift_alarm": config.gate.drift_alarm,
                       "drift_warn": config.gate.drift_warn, "drift_unavailable": config.gate.drift_unavailable}
    _write_json(result, quality / "gate.json")

    outputs: dict[str, list[str]] = metrics.setdefault("outputs", {})
    quarantine = output_dir / QUARANTINE
    quarantine.mkdir(parents=True, exist_ok=True)  # always exists: it is a ProcessingOutput of every job
    if result["status"] == "failed":
        for folder in DATA_FOLDERS:
            src = output_dir / folder
            dst = quarantine / folder
            dst.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                for child in sorted(src.iterdir()):
                    child.rename(dst / child.name)  # a move, never a delete
            outputs[folder] = [f"{QUARANTINE}/{folder}/{Path(p).name}" if p.startswith(f"{folder}/") else p
                               for p in outputs.get(folder, [])]
        _write_json({"status": "failed", "dataset": metrics.get("dataset"), "job": _job_name(metrics),
                     "violations": [v for v in result["violations"] if v["action"] == "fail"],
                     "warnings": [v for v in result["violations"] if v["action"] == "warn"]},
                    quarantine / "violations.json")
        outputs[QUARANTINE] = [f"{QUARANTINE}/violations.json"]
        log.warning("quality gate FAILED: %d rule(s) broken; data outputs moved under %s",
                    sum(v["action"] == "fail" for v in result["violations"]), quarantine)
    else:
        log.info("quality gate %s (%d finding(s))", result["status"], len(result["violations"]))
    outputs.setdefault("quality", [])
    for name in ("profile.json", "drift.json", "gate.json"):
        if f"quality/{name}" not in outputs["quality"]:
            outputs["quality"].append(f"quality/{name}")

    computed = drift_doc.get("status") == "computed"
    metrics["summary"].update({
        "drift_max_psi": float(drift_doc.get("max_psi") or 0.0) if computed else 0.0,
        "drifted_columns": len(drift_doc.get("drifted_columns", [])) if computed else 0,
        "drift_unavailable": 0 if computed else 1,
        "quality_gate_failed": int(result["status"] == "failed"),
        "quality_gate_warned": int(result["status"] == "warned"),
    })
    metrics["drift"] = {"status": drift_doc.get("status"), "reason": drift_doc.get("reason"),
                        "max_psi": drift_doc.get("max_psi") if computed else None,
                        "drifted_columns": drift_doc.get("drifted_columns", []),
                        "warned_columns": drift_doc.get("warned_columns", []),
                        "baseline": drift_doc.get("baseline")}
    metrics["gate"] = {"status": result["status"], "violations": result["violations"]}
    return result


def _job_name(metrics: Mapping[str, Any]) -> str | None:
    cfg = (metrics.get("sagemaker") or {}).get("processingjobconfig")
    name = cfg.get("ProcessingJobName") if isinstance(cfg, dict) else None
    return name if isinstance(name, str) else None
