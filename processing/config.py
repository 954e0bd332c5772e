"""Dataset config: loading, validation (errors name the bad key path) and typed access."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from contract import DATASET_PATTERN
from processing.drift_config import DriftSettings, parse_drift
from processing.errors import ConfigError
from processing.features import NUMERIC_KINDS, Derived, parse_derived
from processing.features import Bins as Bins  # re-exported: callers import it from here
from processing.gate import GateSettings, parse_gate
from processing.rules_config import Rule, parse_rules
from processing.types import NEW_TYPES, TEMPORAL_TYPES, TypeOptions, canonical_fill, parse_column

COLUMN_TYPES = ("integer", "float", "string", "category", "json", *NEW_TYPES)
NUMERIC_TYPES = ("integer", "float")
STRATEGIES = ("median", "mean", "most_frequent", "constant")
PERCENTILES = tuple(f"p{k:02d}" for k in range(1, 100))  # p01 .. p99: exact percentiles (linear interpolation)
AGGREGATIONS = ("count", "size", "sum", "mean", "median", "min", "max", "std", "nunique", "missing", *PERCENTILES)
GROUP_VALUES = ("observed", "imputed")  # group_statistics[].values: aggregate values before or after imputation
DUPLICATE_DROP = ("none", "exact", "key")
THRESHOLD_KEYS = (
    "max_missing_rate_after",
    "max_rejected_rate",
    "max_malformed_json_rate",
    "max_duplicate_rate",
    "min_rows_out",
)
DATASET_NAME = re.compile(f"^{DATASET_PATTERN}$")
# pandas' default na_values: the reference tutorial reads its CSV with pandas defaults.
DEFAULT_MISSING_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)
TOP_LEVEL_KEYS = (
    "description", "columns", "required_columns", "reject_rows_missing", "missing_values", "imputation",
    "categorical_fills", "json_columns", "derived", "group_statistics", "duplicates", "quality_thresholds",
    "drift", "gate", "rules",
)


@dataclass(frozen=True)
class Imputation:
    """How one column's missing (and invalid) values are filled."""

    column: str
    strategy: str
    value: Any = None
    fallback: Any = None


@dataclass(frozen=True)
class JsonField:
    """One field extracted from a JSON column: ``path`` is the list of object keys to walk."""

    name: str
    path: tuple[str, ...]


@dataclass(frozen=True)
class JsonColumn:
    column: str
    fields: tuple[JsonField, ...]


@dataclass(frozen=True)
class GroupStatistics:
    name: str
    group_by: tuple[str, ...]
    aggregations: tuple[tuple[str, tuple[str, ...]], ...]
    values: str = "observed"  # "observed": aggregated input columns before imputation; "imputed": as in cleaned/


@dataclass(frozen=True)
class DatasetConfig:
    """The validated config; ``raw`` keeps the JSON document and ``sha256`` its canonical hash."""

    columns: dict[str, str]
    required_columns: tuple[str, ...]
    reject_rows_missing: tuple[str, ...]
    missing_values: tuple[str, ...]
    imputations: tuple[Imputation, ...]
    json_columns: tuple[JsonColumn, ...]
    derived: tuple[Derived, ...]
    group_statistics: tuple[GroupStatistics, ...]
    duplicate_key_columns: tuple[str, ...]
    duplicate_drop: str
    quality_thresholds: dict[str, float]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    sha256: str = ""
    source: str = ""
    drift: DriftSettings = field(default_factory=DriftSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    column_options: dict[str, TypeOptions] = field(default_factory=dict)  # date/datetime format and time zone
    rules: tuple[Rule, ...] = ()  # the ``rules`` list (processing/rules_config.py)


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(path, f"expected {what}, got boolean")
    if not isinstance(value, kind):
        raise _fail(path, f"expected {what}, got {type(value).__name__}")
    return value


def _str_list(value: Any, path: str, *, non_empty: bool = False) -> tuple[str, ...]:
    _expect(value, list, path, "a list of strings")
    for i, item in enumerate(value):
        _expect(item, str, f"{path}[{i}]", "a string")
    if non_empty and not value:
        raise _fail(path, "expected at least one entry")
    if len(set(value)) != len(value):
        raise _fail(path, "entries must be unique")
    return tuple(value)


def _known(value: dict[str, Any], allowed: tuple[str, ...], path: str) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _fail(f"{path}.{unknown[0]}" if path else unknown[0], f"unknown key (allowed: {', '.join(allowed)})")


def _number(value: Any, path: str) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "+inf", "-inf"):
        return float(value)
    _expect(value, (int, float), path, 'a number (or "inf"/"-inf")')
    if isinstance(value, float) and math.isnan(value):
        raise _fail(path, "NaN is not allowed")
    return float(value)


def _column_type(value: Any, path: str) -> tuple[str, TypeOptions]:
    spec = value
    if isinstance(value, dict):
        value = value.get("type")
        _expect(value, str, f"{path}.type", "a column type")
        if value not in COLUMN_TYPES:
            raise _fail(f"{path}.type", f"unknown type {value!r} (allowed: {', '.join(COLUMN_TYPES)})")
        return parse_column(spec, path)  # the options of the new types (processing/types.py)
    _expect(value, str, path, "a column type")
    if value not in COLUMN_TYPES:
        raise _fail(path, f"unknown type {value!r} (allowed: {', '.join(COLUMN_TYPES)})")
    return str(value), TypeOptions()


def _imputation(column: str, spec: Any, path: str, col_type: str | None,
                options: TypeOptions | None = None) -> Imputation:
    _expect(spec, dict, path, "an object")
    _known(spec, ("strategy", "value", "fallback"), path)
    strategy = _expect(spec.get("strategy"), str, f"{path}.strategy", "a strategy")
    if strategy not in STRATEGIES:
        raise _fail(f"{path}.strategy", f"unknown strategy {strategy!r} (allowed: {', '.join(STRATEGIES)})")
    if strategy == "median" and col_type in TEMPORAL_TYPES:
        pass  # the middle date/instant (processing/typecast.py imputation_info)
    elif strategy in ("median", "mean") and col_type not in NUMERIC_TYPES:
        what = "a numeric column" + (" (or a date/datetime one)" if strategy == "median" else "")
        raise _fail(f"{path}.strategy", f"{strategy} needs {what}, {column!r} is {col_type or 'untyped'}")
    if strategy == "constant" and spec.get("value") is None:
        raise _fail(f"{path}.value", "constant strategy needs a non-null value")
    values = {}
    for key in ("value", "fallback"):
        values[key] = spec.get(key)
        if spec.get(key) is not None:
            if col_type in NEW_TYPES:  # canonical text form (processing/types.py)
                values[key] = canonical_fill(spec[key], col_type, options or TypeOptions(), f"{path}.{key}")
            else:
                _check_fill(spec[key], f"{path}.{key}", col_type)
    if strategy == "constant" and "fallback" in spec:
        raise _fail(f"{path}.fallback", "not used with the constant strategy")
    return Imputation(column, strategy, values["value"], values["fallback"])


def _check_fill(value: Any, path: str, col_type: str | None) -> None:
    if col_type in NUMERIC_TYPES:
        _number(value, path)
        if col_type == "integer" and float(value) != int(float(value)):
            raise _fail(path, f"expected an integer for an integer column, got {value!r}")
    elif col_type == "json":
        raise _fail(path, "JSON columns cannot be filled")
    else:
        _expect(value, str, path, "a string")


def _json_path(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = tuple(value.split("."))
    else:
        parts = _str_list(value, path, non_empty=True) if isinstance(value, list) else ()
        if not isinstance(value, list):
            raise _fail(path, f"expected a dotted path string or a list of keys, got {type(value).__name__}")
    if not parts or any(p == "" for p in parts):
        raise _fail(path, f"empty key in path {value!r}")
    return parts


def validate_thresholds(raw: Any, path: str = "quality_thresholds") -> dict[str, float]:
    """The ``quality_thresholds`` object of a dataset config, validated: the job's gate and the CDK app's alarms
    (infra/config.py) both use this one rule.

    Every value is a finite number >= 0; the ``max_*`` thresholds are rates, at most 1 (``max_missing_rate_after``
    included: a rate above 1 can never be crossed). ``min_rows_out`` is a row count.

    Raises:
        ConfigError: naming the key path, e.g. ``quality_thresholds.max_missing_rate_after: out of range: 1.5``.
    """
    thr_raw = _expect(raw, dict, path, "an object")
    _known(thr_raw, THRESHOLD_KEYS, path)
    thresholds = {}
    for key, value in thr_raw.items():
        v = _number(value, f"{path}.{key}")
        if not math.isfinite(v) or v < 0 or (key.startswith("max_") and v > 1):
            raise _fail(f"{path}.{key}", f"out of range: {value!r}")
        thresholds[key] = v
    return thresholds


def validate(doc: Any, *, source: str = "<config>") -> DatasetConfig:
    """Validate a parsed config document.

    Args:
        doc: the parsed JSON document.
        source: where it came from (recorded in metrics).

    Returns:
        The typed config.

    Raises:
        ConfigError: naming the first bad key path, e.g. ``derived[1].bins.labels: ...``.
    """
    _expect(doc, dict, "<root>", "a JSON object")
    _known(doc, TOP_LEVEL_KEYS, "")
    columns_raw = _expect(doc.get("columns", {}), dict, "columns", "an object of column -> type")
    typed_columns = {name: _column_type(t, f"columns.{name}") for name, t in columns_raw.items()}
    columns = {name: kind for name, (kind, _) in typed_columns.items()}
    column_options = {name: opts for name, (kind, opts) in typed_columns.items() if kind in NEW_TYPES}
    required = _str_list(doc.get("required_columns", []), "required_columns")
    reject_missing = _str_list(doc.get("reject_rows_missing", []), "reject_rows_missing")
    for i, col in enumerate(reject_missing):
        if col not in required:
            raise _fail(f"reject_rows_missing[{i}]", f"{col!r} must also be in required_columns")
    missing_values = _str_list(doc.get("missing_values", list(DEFAULT_MISSING_VALUES)), "missing_values")

    imputations: list[Imputation] = []
    imp_raw = _expect(doc.get("imputation", {}), dict, "imputation", "an object of column -> spec")
    for col, spec in imp_raw.items():
        imputations.append(_imputation(col, spec, f"imputation.{col}", columns.get(col), column_options.get(col)))
    fills = _expect(doc.get("categorical_fills", {}), dict, "categorical_fills", "an object of column -> value")
    for col, value in fills.items():
        path = f"categorical_fills.{col}"
        if columns.get(col) not in (None, "string", "category"):
            raise _fail(path, f"categorical fills apply to string/category columns, {col!r} is {columns[col]}")
        if col in imp_raw:
            raise _fail(path, f"{col!r} already has an imputation rule")
        _expect(value, str, path, "a string")
        imputations.append(Imputation(col, "constant", value))

    json_columns: list[JsonColumn] = []
    jc_raw = _expect(doc.get("json_columns", {}), dict, "json_columns", "an object of column -> spec")
    produced: set[str] = set()
    for col, spec in jc_raw.items():
        path = f"json_columns.{col}"
        if columns.get(col) != "json":
            raise _fail(path, f'{col!r} must be declared in columns with type "json"')
        _expect(spec, dict, path, "an object")
        _known(spec, ("fields",), path)
        fields_raw = _expect(spec.get("fields"), dict, f"{path}.fields", "an object of output name -> path")
        if not fields_raw:
            raise _fail(f"{path}.fields", "expected at least one field")
        fields = []
        for name, p in fields_raw.items():
            if name in columns or name in produced:
                raise _fail(f"{path}.fields.{name}", "output name collides with another column")
            produced.add(name)
            fields.append(JsonField(name, _json_path(p, f"{path}.fields.{name}")))
        json_columns.append(JsonColumn(col, tuple(fields)))

    # derived features: processing/features.py (kinds, bins, expressions, date parts)
    derived = parse_derived(doc.get("derived", []), columns, produced)

    groups: list[GroupStatistics] = []
    for i, spec in enumerate(_expect(doc.get("group_statistics", []), list, "group_statistics", "a list")):
        path = f"group_statistics[{i}]"
        _expect(spec, dict, path, "an object")
        _known(spec, ("name", "group_by", "aggregations", "values"), path)
        name = _expect(spec.get("name"), str, f"{path}.name", "a string")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name in {g.name for g in groups}:
            raise _fail(f"{path}.name", f"{name!r} must be a unique file-name-safe name")
        group_by = _str_list(spec.get("group_by"), f"{path}.group_by", non_empty=True)
        for j, col in enumerate(group_by):
            if col not in columns and col not in produced:
                raise _fail(f"{path}.group_by[{j}]", f"unknown column {col!r}")
        aggs_raw = _expect(spec.get("aggregations"), dict, f"{path}.aggregations", "an object of column -> list")
        if not aggs_raw:
            raise _fail(f"{path}.aggregations", "expected at least one column")
        aggs = []
        for col, funcs in aggs_raw.items():
            apath = f"{path}.aggregations.{col}"
            if col not in columns and col not in produced:
                raise _fail(apath, f"unknown column {col!r}")
            funcs_t = _str_list(funcs, apath, non_empty=True)
            for j, fn in enumerate(funcs_t):
                if fn not in AGGREGATIONS:
                    raise _fail(f"{apath}[{j}]", f"unknown aggregation {fn!r} (allowed: {', '.join(AGGREGATIONS[:10])}"
                                                 ", p01 ... p99)")
                numeric_only = fn in ("sum", "mean", "median", "std", "min", "max", *PERCENTILES)
                if numeric_only and columns.get(col) not in NUMERIC_TYPES and not _numeric_derived(col, derived):
                    raise _fail(f"{apath}[{j}]", f"{fn} needs a numeric column, {col!r} is not")
            aggs.append((col, funcs_t))
        values = spec.get("values", "observed")
        if values not in GROUP_VALUES:
            raise _fail(f"{path}.values", f"expected one of {', '.join(GROUP_VALUES)}, got {values!r}")
        groups.append(GroupStatistics(name, group_by, tuple(aggs), values))

    dup = _expect(doc.get("duplicates", {}), dict, "duplicates", "an object")
    _known(dup, ("key_columns", "drop"), "duplicates")
    key_columns = _str_list(dup.get("key_columns", []), "duplicates.key_columns")
    for j, col in enumerate(key_columns):
        if col not in columns:
            raise _fail(f"duplicates.key_columns[{j}]", f"unknown column {col!r} (declare it in columns)")
    drop = dup.get("drop", "none")
    if drop not in DUPLICATE_DROP:
        raise _fail("duplicates.drop", f"expected one of {', '.join(DUPLICATE_DROP)}, got {drop!r}")
    if drop == "key" and not key_columns:
        raise _fail("duplicates.drop", '"key" needs duplicates.key_columns')

    thresholds = validate_thresholds(doc.get("quality_thresholds", {}))

    drift = parse_drift(doc.get("drift"), columns, {jc.column: tuple(f.name for f in jc.fields) for jc in json_columns})
    gate = parse_gate(doc.get("gate"))
    rules = parse_rules(doc.get("rules"), columns, {f.name for jc in json_columns for f in jc.fields})

    for i, col in enumerate(required):
        if col not in columns:
            raise _fail(f"required_columns[{i}]", f"{col!r} must be declared in columns")
    for col in [i.column for i in imputations]:
        if col not in columns:
            raise _fail(f"imputation.{col}", f"{col!r} must be declared in columns")

    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DatasetConfig(
        columns=columns,
        required_columns=required,
        reject_rows_missing=reject_missing,
        missing_values=missing_values,
        imputations=tuple(imputations),
        json_columns=tuple(json_columns),
        derived=tuple(derived),
        group_statistics=tuple(groups),
        duplicate_key_columns=key_columns,
        duplicate_drop=drop,
        quality_thresholds=thresholds,
        drift=drift,
        gate=gate,
        column_options=column_options,
        rules=rules,
        raw=doc,
        sha256=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        source=source,
    )


def _numeric_derived(col: str, derived: list[Derived]) -> bool:
    return any(d.name == col and d.kind in NUMERIC_KINDS for d in derived)


def parse(text: str, *, source: str) -> DatasetConfig:
    """Parse and validate config text (JSON)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"<root>: {source} is not valid JSON: {exc}") from exc
    return validate(doc, source=source)


def load(config_file: str | Path | None, dataset: str) -> DatasetConfig:
    """Select and load the config: ``config_file`` if given, else ``configs/<dataset>.json``, else default.

    Works when the package is imported from a zip file (``importlib.resources``).
    """
    if config_file is not None:
        path = Path(config_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"<root>: cannot read config file {path}: {exc.strerror or exc}") from exc
        return parse(text, source=str(path))
    configs = resources.files("processing").joinpath("configs")
    if DATASET_NAME.fullmatch(dataset):
        candidate = configs.joinpath(f"{dataset}.json")
        if candidate.is_file():
            return parse(candidate.read_text(encoding="utf-8"), source=f"processing/configs/{dataset}.json")
    return parse(configs.joinpath("default.json").read_text(encoding="utf-8"), source="processing/configs/default.json")


def observed_columns(config: DatasetConfig) -> list[str]:
    """Imputed columns whose values before imputation a group statistic reads (``values: observed``, or the
    ``missing`` aggregation): ``transform.group_frame``'s ``observed``."""
    imputed = {r.column for r in config.imputations}
    return sorted({c for g in config.group_statistics for c, funcs in g.aggregations
                   if c in imputed and (g.values == "observed" or "missing" in funcs)})
