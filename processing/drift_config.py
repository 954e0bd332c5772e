"""Drift settings: which columns are profiled and compared with the baseline, and the thresholds.

Validated with the dataset config (``processing/config.py``), used by ``processing/drift.py`` (the profile and the
scores) and ``processing/gate.py`` (the verdict). Standard library only: the config loader, and the CDK app through
it, import this module without pandas. See docs/processing.md "Drift and the quality gate".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processing.errors import ConfigError

THRESHOLD_NAMES = ("psi_warn", "psi_alarm", "distance_warn", "distance_alarm")
DEFAULT_THRESHOLDS = {"psi_warn": 0.1, "psi_alarm": 0.25, "distance_warn": 0.1, "distance_alarm": 0.25}
DRIFT_KEYS = ("numeric", "categorical", "json_fields", *THRESHOLD_NAMES, "columns")
# Columns that identify rows rather than describe them are left out of the default drift columns.
ID_LIKE = re.compile(r"(?i)^(id|uuid|guid|key|pk)$|(_|-)(id|uuid|guid|key|pk)$|^(id|uuid|guid)(_|-)"
                     r"|[a-z0-9](Id|ID|Uuid|UUID)$")


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
    """Numeric = integer/float columns, categorical = string/category/boolean columns, both without id-like
    names."""
    keep = [c for c in columns if not ID_LIKE.search(c)]
    return (tuple(c for c in keep if columns[c] in ("integer", "float")),
            tuple(c for c in keep if columns[c] in ("string", "category", "boolean")))


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
