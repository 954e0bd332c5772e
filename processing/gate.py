"""The quality gate: its settings (validated with the dataset config), the verdict, and the output layout.

Standard library only at import time (the config loader imports this module before pandas is loaded);
``finish`` imports ``processing.drift`` (numpy/pandas) when it runs. See docs/processing.md
"Drift and the quality gate" and docs/design.md Contract 4.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract import DATA_FOLDERS, PROFILE_FILE, QUALITY, QUARANTINE, SUMMARY_KEYS_GATE
from processing.drift_config import DriftSettings
from processing.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("processing")

# Summary keys added by the gate (design.md Contract 3), after the pipeline's own.
SUMMARY_KEYS = SUMMARY_KEYS_GATE
# No _SUCCESS marker here: SageMaker uploads a job's output files in no guaranteed order, so a marker written by the
# job could appear before the data. The metrics Lambda writes it after the job finished (design.md Contract 4).
ACTIONS = ("fail", "warn", "ignore")
GATE_KEYS = ("thresholds", "drift_alarm", "drift_warn", "drift_unavailable")
DEFAULT_GATE = {"thresholds": "fail", "drift_alarm": "fail", "drift_warn": "warn", "drift_unavailable": "ignore"}


@dataclass(frozen=True)
class GateSettings:
    """What each kind of finding does to the batch: ``fail``, ``warn`` or ``ignore``."""

    thresholds: str = "fail"
    drift_alarm: str = "fail"
    drift_warn: str = "warn"
    drift_unavailable: str = "ignore"


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def parse_gate(doc: Any) -> GateSettings:
    """Validate the optional ``gate`` section:
    ``{"thresholds"|"drift_alarm"|"drift_warn"|"drift_unavailable": action}``."""
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


def verdict(checks: Mapping[str, Any], drift_doc: Mapping[str, Any], gate: GateSettings,
            rules: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The gate: ``status`` passed|warned|failed and every rule broken with its measured value and threshold.

    Args:
        checks: ``quality_gate.checks`` of metrics.json (threshold -> {threshold, value, passed}).
        drift_doc: the content of quality/drift.json.
        gate: what each finding does.
        rules: metrics.json ``rules`` (processing/rules.py ``results``): a broken ``fail`` rule fails the gate, a
            broken ``warn`` rule warns (``reject`` rules act on rows, not on the gate).
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
            broken = list(col.get("broken", [])) or [{"rule": f"drift.{level}", "measured": None,
                                                            "threshold": None}]
            for b in broken:
                add(action, rule=b["rule"], column=name, level=level, measured=b.get("measured"),
                    threshold=b.get("threshold"), **({"reason": col["reason"]} if col.get("reason") else {}))
    for name, r in (rules or {}).items():
        if not r.get("passed", True) and r.get("action") in ("fail", "warn"):
            limit = next((r[k] for k in ("max_share", "min_share", "max_age_hours") if r.get(k) is not None), None)
            if r.get("type") == "row_count":  # the bound it broke
                low = r.get("min")
                limit = low if low is not None and (r.get("measured") or 0) < low else r.get("max")
            add(r["action"], rule=f"rules.{name}", column=", ".join(r.get("columns") or []) or None,
                type=r.get("type"), measured=r.get("measured", r.get("share")), threshold=limit,
                violations=r.get("violations"), examples=r.get("examples", []))
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
    quality = output_dir / QUALITY
    _write_json(profile, quality / PROFILE_FILE)
    drift_doc = drift.evaluate(baseline, batch, settings, presence=presence)
    if "sampled" in source:  # scores (and batch_rows) are of the sample
        drift_doc["sampled"] = source["sampled"]
    _write_json(drift_doc, quality / "drift.json")
    rules = metrics.get("rules") or {}
    result = verdict((metrics.get("quality_gate") or {}).get("checks", {}), drift_doc, config.gate, rules)
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
    outputs.setdefault(QUALITY, [])
    for name in (PROFILE_FILE, "drift.json", "gate.json"):
        if f"{QUALITY}/{name}" not in outputs[QUALITY]:
            outputs[QUALITY].append(f"{QUALITY}/{name}")

    computed = drift_doc.get("status") == "computed"
    metrics["summary"].update({
        "drift_max_psi": float(drift_doc.get("max_psi") or 0.0) if computed else 0.0,
        "drifted_columns": len(drift_doc.get("drifted_columns", [])) if computed else 0,
        "drift_unavailable": 0 if computed else 1,
        "quality_gate_failed": int(result["status"] == "failed"),
        "quality_gate_warned": int(result["status"] == "warned"),
        "rules_failed": sum(1 for r in rules.values() if r.get("action") == "fail" and not r.get("passed", True)),
        "rules_warned": sum(1 for r in rules.values() if r.get("action") == "warn" and not r.get("passed", True)),
        "rows_rejected_by_rules": int((metrics.get("rows") or {}).get("rejected_by_rules") or 0),
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
