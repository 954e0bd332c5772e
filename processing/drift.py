"""Data drift: a small per-column profile of a batch, and scores of a batch against a baseline profile.

numpy/pandas only, vectorised (a 1M-row column is profiled in well under a second). Deterministic: the same
baseline and batch always give the same scores. Definitions: docs/processing.md "Drift and the quality gate".

- Numeric columns: PSI over the baseline's deciles (bins ``(-inf, e1], (e1, e2], ..., (ek, inf)``) plus a missing
  bin, and the Wasserstein-1 distance between the quantile functions divided by the baseline's standard deviation.
- Categorical columns: PSI over the baseline's categories (at most 50 kept by name), ``__other__`` and ``__missing__``,
  plus the Jensen-Shannon distance (base 2, 0..1) of the same shares (reported, not a level threshold).
- JSON fields: PSI of the present/absent shares.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from contract import PROFILE_SCHEMA_VERSION
from processing.drift_config import DriftSettings

__all__ = [
    "BaselineError",
    "DriftSettings",
    "build_profile",
    "compare",
    "evaluate",
    "jensen_shannon",
    "load_baseline",
    "normalised_wasserstein",
    "psi",
]

MISSING = "__missing__"
OTHER = "__other__"
# Proportions of 0 make PSI infinite; the usual remedy is a small floor on every bin's share.
EPSILON = 1e-4
NUMERIC_BINS = 10  # baseline deciles
QUANTILE_POINTS = 101  # 0%, 1%, ..., 100%: the quantile function used for the Wasserstein distance
MAX_CATEGORIES = 50  # categories kept by name in a profile; the rarer ones are pooled as __other__
MAX_BASELINE_BYTES = 20 * 1024 * 1024
LISTED_CATEGORIES = 10  # new/vanished categories named in drift.json


class BaselineError(ValueError):
    """The baseline file is missing, unreadable or not a usable profile; the message says why."""


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


def _floats(values: pd.Series) -> npt.NDArray[Any]:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _quantiles(present: npt.NDArray[Any]) -> list[float]:
    if len(present) == 0:
        return []
    return [float(q) for q in np.quantile(present, np.linspace(0, 1, QUANTILE_POINTS))]


def _numeric_profile(values: pd.Series) -> dict[str, Any]:
    x = _floats(values)
    present = x[~np.isnan(x)]
    ordered = np.sort(present)  # one sort for both quantile calls (same values; mean/std keep the input order)
    n = len(x)
    edges = (np.unique(np.quantile(ordered, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
             if len(present) else np.zeros(0))
    return {
        "kind": "numeric",
        "count": n,
        "missing_rate": float((n - len(present)) / n) if n else 0.0,
        "edges": [float(e) for e in edges],
        "fractions": numeric_fractions(x, edges),
        "quantiles": _quantiles(ordered),
        "mean": float(present.mean()) if len(present) else None,
        "std": float(present.std()) if len(present) else None,
    }


def numeric_fractions(x: npt.NDArray[Any], edges: npt.NDArray[Any] | list[float]) -> list[float]:
    """Shares of the bins (-inf, e1], (e1, e2], ..., (ek, inf) and, last, of missing values, over all rows."""
    n = len(x)
    if n == 0:
        return [0.0] * (len(edges) + 2)
    missing = np.isnan(x)
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), x[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype("float64")
    return [float(c / n) for c in counts] + [float(missing.sum() / n)]


def _value_counts(values: pd.Series) -> pd.Series:
    """Count per present value, as text (index: the values, order unspecified)."""
    # (getattr: pandas-stubs 2.3 do not declare StringDtype.storage, which pandas has had since 1.3)
    if isinstance(values.dtype, pd.StringDtype) and getattr(values.dtype, "storage", None) == "pyarrow":
        # Already Arrow strings: count in Arrow (the astype below would make a Python object per row). Imported
        # here: the Spark engine builds profiles with this module in an image without pyarrow (no Arrow strings).
        import pyarrow as pa
        import pyarrow.compute as pc

        counts = pc.value_counts(pa.array(values.array))
        counts = counts.filter(pc.is_valid(counts.field("values")))
        found: pd.Series = pd.Series(counts.field("counts").to_numpy(zero_copy_only=False).astype("int64"),
                                     index=pd.Index(counts.field("values").to_pylist(), dtype=object))
        return found
    return values.astype("string").value_counts(dropna=True)


def _categorical_profile(values: pd.Series) -> dict[str, Any]:
    n = len(values)
    counts = _value_counts(values)
    # Ties in frequency are broken by name so the kept categories do not depend on input order.
    order = sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    kept = order[:MAX_CATEGORIES]
    missing = int(values.isna().sum())
    return {
        "kind": "categorical",
        "count": n,
        "missing_rate": float(missing / n) if n else 0.0,
        "frequencies": {k: float(v / n) for k, v in kept} if n else {},
        "other": float(sum(v for _, v in order[MAX_CATEGORIES:]) / n) if n else 0.0,
        "distinct": len(order),
    }


def categorical_fractions(counts: pd.Series, n: int, missing: int, categories: list[str]) -> list[float]:
    """Shares of each baseline category, then ``__other__``, then ``__missing__``, over all rows."""
    if n == 0:
        return [0.0] * (len(categories) + 2)
    known = [float(counts.get(c, 0) / n) for c in categories]
    other = float(counts[~counts.index.isin(categories)].sum() / n)
    return [*known, other, float(missing / n)]


def build_profile(df: pd.DataFrame, settings: DriftSettings, *, presence: Mapping[str, float] | None = None,
                  source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Profile the drift columns of a batch: the file that becomes (or is compared with) a baseline.

    Args:
        df: the batch, typed, before imputation (so missing rates are the input's own).
        settings: which columns are numeric and categorical.
        presence: share of rows in which each extracted JSON field was present, e.g. {"profile.email": 0.93}.
        source: provenance recorded in the profile (dataset, job name, input files, timestamp).

    Returns:
        A JSON-serialisable dict (``schema_version`` 1).
    """
    columns: dict[str, Any] = {}
    for name in settings.numeric:
        if name in df.columns:
            columns[name] = _numeric_profile(df[name])
    for name in settings.categorical:
        if name in df.columns:
            columns[name] = _categorical_profile(df[name])
    return {
        "schema_version": PROFILE_SCHEMA_VERSION,
        "rows": len(df),
        "columns": columns,
        "json_field_presence": {k: float(v) for k, v in sorted((presence or {}).items())},
        "binning": {"numeric_bins": NUMERIC_BINS, "quantile_points": QUANTILE_POINTS,
                    "max_categories": MAX_CATEGORIES, "epsilon": EPSILON},
        "source": dict(source or {}),
    }


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e), shares floored at EPSILON."""
    e = np.maximum(np.asarray(expected, dtype="float64"), EPSILON)
    a = np.maximum(np.asarray(actual, dtype="float64"), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(expected: list[float], actual: list[float]) -> float:
    """Jensen-Shannon distance (base 2): 0 for equal distributions, 1 for disjoint ones."""
    p = np.asarray(expected, dtype="float64")
    q = np.asarray(actual, dtype="float64")
    p = p / p.sum() if p.sum() > 0 else p
    q = q / q.sum() if q.sum() > 0 else q
    m = (p + q) / 2

    def kl(x: npt.NDArray[Any]) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return float(math.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def normalised_wasserstein(baseline_quantiles: list[float], batch_quantiles: list[float],
                           baseline_std: float | None) -> float | None:
    """Wasserstein-1 distance between the two quantile functions, divided by the baseline's standard deviation.

    Approximated on the 101-point quantile grid (trapezoid rule). 0.1 means the batch's values moved, on average,
    by a tenth of the baseline's spread: unlike a KS p-value it does not become "significant" just because n is
    large. A constant baseline (std 0) is scaled by its range, else by 1.
    """
    if not baseline_quantiles or not batch_quantiles or len(baseline_quantiles) != len(batch_quantiles):
        return None
    diff = np.abs(np.asarray(batch_quantiles, dtype="float64") - np.asarray(baseline_quantiles, dtype="float64"))
    w1 = float(np.trapezoid(diff, dx=1 / (len(diff) - 1)))
    spread = abs(baseline_quantiles[-1] - baseline_quantiles[0])
    scale = baseline_std if baseline_std and baseline_std > 0 else (spread or 1.0)
    return w1 / scale


def _level(psi_value: float | None, distance: float | None, thresholds: Mapping[str, float | None]
           ) -> tuple[str, list[dict[str, Any]]]:
    """ok|warn|alarm and the thresholds reached (alarm ones only when the level is alarm)."""
    reached: dict[str, list[dict[str, Any]]] = {"warn": [], "alarm": []}
    for name, value in (("psi", psi_value), ("distance", distance)):
        if value is None:
            continue
        for level in ("alarm", "warn"):
            limit = thresholds.get(f"{name}_{level}")
            if limit is not None and value >= limit:
                reached[level].append({"rule": f"drift.{name}_{level}", "measured": round(value, 6),
                                       "threshold": limit})
                break
    if reached["alarm"]:
        return "alarm", reached["alarm"]
    if reached["warn"]:
        return "warn", reached["warn"]
    return "ok", []


def _thresholds(settings: DriftSettings, name: str, *, distance: bool) -> dict[str, float | None]:
    out = {k: settings.threshold(name, k) for k in ("psi_warn", "psi_alarm")}
    if distance:
        out.update({k: settings.threshold(name, k) for k in ("distance_warn", "distance_alarm")})
    return out


def _numeric_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all", MISSING]
    return ([f"<= {edges[0]:g}"] + [f"({lo:g}, {hi:g}]" for lo, hi in itertools.pairwise(edges)]
            + [f"> {edges[-1]:g}", MISSING])


def _compare_numeric(name: str, base: Mapping[str, Any], values: pd.Series, settings: DriftSettings) -> dict[str, Any]:
    x = _floats(values)
    present = x[~np.isnan(x)]
    expected = list(base["fractions"])
    actual = numeric_fractions(x, base["edges"])
    distance = normalised_wasserstein(base["quantiles"], _quantiles(present), base.get("std"))
    score = psi(expected, actual)
    thresholds = _thresholds(settings, name, distance=True)
    level, broken = _level(score, distance, thresholds)
    return {
        "kind": "numeric", "psi": round(score, 6),
        "wasserstein_normalised": None if distance is None else round(distance, 6),
        "level": level, "broken": broken,
        "baseline_mean": base.get("mean"), "batch_mean": float(present.mean()) if len(present) else None,
        "baseline_std": base.get("std"), "batch_std": float(present.std()) if len(present) else None,
        "bins": _numeric_labels(list(base["edges"])),
        "baseline": [round(v, 6) for v in expected], "batch": [round(v, 6) for v in actual],
        "thresholds": thresholds,
    }


def _compare_categorical(name: str, base: Mapping[str, Any], values: pd.Series, settings: DriftSettings
                         ) -> dict[str, Any]:
    categories = list(base["frequencies"])
    counts = _value_counts(values)
    n = len(values)
    expected = [float(base["frequencies"][c]) for c in categories] + [float(base.get("other", 0.0)),
                                                                      float(base["missing_rate"])]
    actual = categorical_fractions(counts, n, int(values.isna().sum()), categories)
    score = psi(expected, actual)
    distance = jensen_shannon(expected, actual)
    thresholds = _thresholds(settings, name, distance=False)
    level, broken = _level(score, None, thresholds)
    new = counts[~counts.index.isin(categories)]
    new_sorted = sorted(((str(k), int(v)) for k, v in new.items()), key=lambda kv: (-kv[1], kv[0]))
    vanished = [c for c in categories if base["frequencies"][c] > 0 and int(counts.get(c, 0)) == 0]
    return {
        "kind": "categorical", "psi": round(score, 6), "jensen_shannon": round(distance, 6),
        "level": level, "broken": broken,
        "new_categories": [k for k, _ in new_sorted[:LISTED_CATEGORIES]] if base.get("other", 0.0) == 0 else [],
        "vanished_categories": vanished[:LISTED_CATEGORIES],
        "bins": [*categories, OTHER, MISSING],
        "baseline": [round(v, 6) for v in expected], "batch": [round(v, 6) for v in actual],
        "thresholds": thresholds,
    }


def compare(baseline: Mapping[str, Any], df: pd.DataFrame, settings: DriftSettings, *,
            presence: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Score a batch against a validated baseline profile, per column, with the bins taken from the baseline.

    Returns:
        The content of quality/drift.json (``status`` ``computed``): per-column scores, levels, the thresholds
        reached (``broken``) and both distributions; ``max_psi``; ``drifted_columns`` (alarm) and
        ``warned_columns`` (warn).
    """
    columns: dict[str, Any] = {}
    rows = len(df)
    for name in (*settings.numeric, *settings.categorical):
        base = baseline["columns"][name]
        if name not in df.columns:
            columns[name] = {"kind": base["kind"], "level": "alarm", "psi": None,
                             "reason": "column missing from the batch",
                             "broken": [{"rule": "drift.column_missing", "measured": None, "threshold": None}]}
        elif rows == 0:
            columns[name] = {"kind": base["kind"], "level": "unavailable", "psi": None,
                             "reason": "the batch has no rows", "broken": []}
        elif base["kind"] == "numeric":
            columns[name] = _compare_numeric(name, base, df[name], settings)
        else:
            columns[name] = _compare_categorical(name, base, df[name], settings)
    base_presence = baseline.get("json_field_presence") or {}
    for key in settings.json_fields:
        rate = (presence or {}).get(key)
        base_rate = base_presence.get(key)
        if base_rate is None or rate is None or rows == 0:
            why = ("not in the baseline" if base_rate is None else "no rows" if rows == 0
                   else "JSON field not extracted in this batch")
            columns[f"json:{key}"] = {"kind": "json_presence", "level": "unavailable", "psi": None, "reason": why,
                                      "broken": []}
            continue
        expected, actual = [float(base_rate), 1 - float(base_rate)], [float(rate), 1 - float(rate)]
        score = psi(expected, actual)
        thresholds = _thresholds(settings, key, distance=False)
        level, broken = _level(score, None, thresholds)
        columns[f"json:{key}"] = {"kind": "json_presence", "psi": round(score, 6), "level": level, "broken": broken,
                                  "bins": ["present", "absent"], "baseline": [round(v, 6) for v in expected],
                                  "batch": [round(v, 6) for v in actual], "thresholds": thresholds}
    scores = [c["psi"] for c in columns.values() if c.get("psi") is not None]
    return {
        "status": "computed",
        "reason": None,
        "baseline": {"rows": baseline.get("rows"), "source": baseline.get("source", {})},
        "batch_rows": rows,
        "max_psi": round(max(scores), 6) if scores else 0.0,
        "drifted_columns": sorted(k for k, c in columns.items() if c["level"] == "alarm"),
        "warned_columns": sorted(k for k, c in columns.items() if c["level"] == "warn"),
        "columns": columns,
    }


# --------------------------------------------------------------------------------------------
# Baseline files
# --------------------------------------------------------------------------------------------


def _finite_list(value: Any, path: str, *, length: int | None = None, increasing: bool = False) -> list[float]:
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise BaselineError(f"{path}: expected a list of finite numbers")
    if length is not None and len(value) != length:
        raise BaselineError(f"{path}: expected {length} numbers, got {len(value)}")
    if increasing and any(b <= a for a, b in itertools.pairwise(value)):
        raise BaselineError(f"{path}: must be strictly increasing")
    return [float(v) for v in value]


def _check_share(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BaselineError(f"{path}: expected a share between 0 and 1, got {value!r}")


def validate_baseline(doc: Any, settings: DriftSettings) -> dict[str, Any]:
    """Check that a parsed baseline is a schema-1 profile holding every configured drift column with its kind.

    Raises:
        BaselineError: naming the first problem (key path).
    """
    if not isinstance(doc, dict):
        raise BaselineError(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("schema_version") != PROFILE_SCHEMA_VERSION:
        raise BaselineError(f"schema_version is {doc.get('schema_version')!r}, expected {PROFILE_SCHEMA_VERSION}")
    columns = doc.get("columns")
    if not isinstance(columns, dict):
        raise BaselineError("'columns' is missing or not an object")
    wanted = [(c, "numeric") for c in settings.numeric] + [(c, "categorical") for c in settings.categorical]
    absent = [c for c, _ in wanted if c not in columns]
    if absent:
        raise BaselineError(f"baseline lacks drift column(s) {', '.join(absent)} (promote a baseline built with the "
                            f"current config)")
    for name, kind in wanted:
        col = columns[name]
        path = f"columns.{name}"
        if not isinstance(col, dict) or col.get("kind") != kind:
            got = col.get("kind") if isinstance(col, dict) else col
            raise BaselineError(f"{path}: expected kind {kind!r}, got {got!r}")
        _check_share(col.get("missing_rate"), f"{path}.missing_rate")
        if kind == "numeric":
            edges = _finite_list(col.get("edges"), f"{path}.edges", increasing=True)
            fractions = _finite_list(col.get("fractions"), f"{path}.fractions", length=len(edges) + 2)
            if abs(sum(fractions) - 1) > 1e-6 and col.get("count"):
                raise BaselineError(f"{path}.fractions: shares sum to {sum(fractions):.6f}, expected 1")
            quantiles = col.get("quantiles")
            if quantiles:
                _finite_list(quantiles, f"{path}.quantiles", length=QUANTILE_POINTS)
            std = col.get("std")
            if std is not None and (isinstance(std, bool) or not isinstance(std, (int, float))
                                    or not math.isfinite(std)):
                raise BaselineError(f"{path}.std: expected a finite number or null")
        else:
            freqs = col.get("frequencies")
            if not isinstance(freqs, dict):
                raise BaselineError(f"{path}.frequencies: expected an object of category -> share")
            for k, v in freqs.items():
                _check_share(v, f"{path}.frequencies.{k}")
            _check_share(col.get("other", 0.0), f"{path}.other")
    presence = doc.get("json_field_presence", {})
    if not isinstance(presence, dict):
        raise BaselineError("json_field_presence: expected an object")
    for k, v in presence.items():
        _check_share(v, f"json_field_presence.{k}")
    return doc


def load_baseline(path: Path, settings: DriftSettings) -> dict[str, Any]:
    """Read and validate a baseline profile file.

    Raises:
        BaselineError: missing, unreadable, too large, not JSON, or not a usable profile.
    """
    try:
        size = path.stat().st_size
        if size > MAX_BASELINE_BYTES:
            raise BaselineError(f"{path} is {size} bytes, larger than {MAX_BASELINE_BYTES}")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise BaselineError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path} cannot be read: {exc}") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BaselineError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return validate_baseline(doc, settings)
    except BaselineError as exc:
        raise BaselineError(f"{path}: {exc}") from exc


def unavailable(reason: str) -> dict[str, Any]:
    return {"status": "unavailable", "reason": reason, "baseline": None, "max_psi": None, "drifted_columns": [],
            "warned_columns": [], "columns": {}}


def evaluate(baseline_path: Path | None, df: pd.DataFrame, settings: DriftSettings, *,
             presence: Mapping[str, float] | None = None) -> dict[str, Any]:
    """quality/drift.json for a run: ``computed`` scores, or ``unavailable`` with the reason. Never raises."""
    if not settings.numeric and not settings.categorical and not settings.json_fields:
        return unavailable("no drift columns configured")
    if baseline_path is None:
        return unavailable("no baseline given (--baseline): the dataset has no baseline yet; the first batch whose "
                           "gate does not fail becomes it")
    try:
        baseline = load_baseline(Path(baseline_path), settings)
    except BaselineError as exc:
        return unavailable(f"baseline unusable: {exc}")
    try:
        return compare(baseline, df, settings, presence=presence)
    except Exception as exc:  # noqa: BLE001 - a surprising baseline must never fail the job
        return unavailable(f"baseline unusable: comparison failed: {type(exc).__name__}: {exc}")
