"""The dataset config's ``rules`` list (issue 14, docs/processing.md "Rules"): validation with errors naming the key
path (``rules[2].min: ...``), the typed ``Rule``, and the engine-independent results: ``Tally`` (the counts a run
adds up), ``results`` (metrics.json ``rules``), ``text`` (an example value). Standard library only (``config.py``
and the Spark engine import it; the CDK app reads the rules marked for alarming at synth).

Row-level rules (``range``, ``allowed_values``, ``pattern``, ``length``, ``expression``, ``unique``) check each row's
observed values (before imputation) and may ``reject``; dataset-level rules (``completeness``, ``row_count``,
``freshness``) check the batch and may only ``warn`` or ``fail``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from processing import expressions
from processing.errors import ConfigError

ROW_RULES = ("range", "allowed_values", "pattern", "length", "expression", "unique")
DATASET_RULES = ("completeness", "row_count", "freshness")
RULE_TYPES = (*ROW_RULES, *DATASET_RULES)
RULE_ACTIONS = ("reject", "warn", "fail")
EXAMPLES = 5  # distinct offending values kept per rule
RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
COMMON_KEYS = ("name", "type", "action", "alarm")
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "range": ("column", "min", "max", "max_share"),
    "allowed_values": ("column", "values", "max_share"),
    "pattern": ("column", "pattern", "max_share"),
    "length": ("column", "min", "max", "max_share"),
    "expression": ("expression", "max_share"),
    "unique": ("columns", "max_share"),
    "completeness": ("column", "min_share"),
    "row_count": ("min", "max"),
    "freshness": ("column", "max_age_hours"),
}
NUMERIC = ("integer", "float")
TEXT = ("string", "category")
DATES = ("date", "datetime")
# RE2 (pyarrow) and Java (Spark) differ from Python's re on these; refused so every engine agrees
_UNPORTABLE_REGEX = re.compile(r"\(\?[=!<>(]|\(\?P?<|\\[1-9]|\(\?P=|\\[AZz]|[*+?}]\+")


@dataclass(frozen=True)
class Rule:
    """One validated rule; unused fields are None (``max_share`` is 0 for row rules, None for dataset rules)."""

    name: str
    type: str
    action: str = "fail"
    alarm: bool = False
    columns: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    values: tuple[Any, ...] | None = None
    pattern: str | None = None
    expression: str | None = None
    min_share: float | None = None
    max_share: float | None = None
    max_age_hours: float | None = None

    @property
    def row_level(self) -> bool:
        return self.type in ROW_RULES


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _number(value: Any, path: str, *, whole: bool = False, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, f"expected a finite number, got {value!r}")
    if whole and float(value) != int(value):
        raise _fail(path, f"expected a whole number, got {value!r}")
    if low is not None and value < low:
        raise _fail(path, f"must be at least {low:g}, got {value!r}")
    return float(value)


def _share(value: Any, path: str) -> float:
    v = _number(value, path, low=0)
    if v > 1:
        raise _fail(path, f"a share between 0 and 1, got {value!r}")
    return v


def _column(spec: dict[str, Any], path: str, columns: dict[str, str], fields: set[str],
            allowed: tuple[str, ...] | None, what: str) -> str:
    col = spec.get("column")
    if not isinstance(col, str):
        raise _fail(f"{path}.column", f"expected a column name, got {type(col).__name__}")
    if col in fields:
        kind = "string"
    elif col in columns:
        kind = columns[col]
    else:
        raise _fail(f"{path}.column", f"unknown column {col!r} (rules check declared columns and extracted JSON "
                                      "fields)")
    if allowed is not None and kind not in allowed:
        raise _fail(f"{path}.column", f"{what} needs a {' or '.join(allowed)} column, {col!r} is {kind}")
    return col


def _bounds(spec: dict[str, Any], path: str, *, whole: bool, low: float | None) -> tuple[float | None, float | None]:
    lo = _number(spec["min"], f"{path}.min", whole=whole, low=low) if spec.get("min") is not None else None
    hi = _number(spec["max"], f"{path}.max", whole=whole, low=low) if spec.get("max") is not None else None
    if lo is None and hi is None:
        raise _fail(path, "expected min, max or both")
    if lo is not None and hi is not None and lo > hi:
        raise _fail(f"{path}.max", f"must be at least min ({lo:g}), got {hi:g}")
    return lo, hi


def parse_rules(doc: Any, columns: dict[str, str], fields: set[str]) -> tuple[Rule, ...]:
    """Validate the optional ``rules`` list.

    Args:
        doc: the ``rules`` value (None: no rules).
        columns: declared column -> type.
        fields: the names of extracted JSON fields (strings).

    Raises:
        ConfigError: naming the key path, e.g. ``rules[2].min: expected a finite number, got 'x'``.
    """
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise _fail("rules", f"expected a list, got {type(doc).__name__}")
    out: list[Rule] = []
    names: set[str] = set()
    for i, spec in enumerate(doc):
        path = f"rules[{i}]"
        if not isinstance(spec, dict):
            raise _fail(path, f"expected an object, got {type(spec).__name__}")
        kind = spec.get("type")
        if kind not in RULE_TYPES:
            raise _fail(f"{path}.type", f"expected one of {', '.join(RULE_TYPES)}, got {kind!r}")
        allowed = (*COMMON_KEYS, *TYPE_KEYS[kind])
        unknown = sorted(set(spec) - set(allowed))
        if unknown:
            raise _fail(f"{path}.{unknown[0]}", f"unknown key for a {kind} rule (allowed: {', '.join(allowed)})")
        name = spec.get("name")
        if not isinstance(name, str) or not RULE_NAME.fullmatch(name):
            raise _fail(f"{path}.name", f"expected 1-64 characters of A-Z a-z 0-9 _ . -, got {name!r}")
        if name in names:
            raise _fail(f"{path}.name", f"{name!r} is already the name of another rule")
        names.add(name)
        action = spec.get("action", "fail")
        if action not in RULE_ACTIONS:
            raise _fail(f"{path}.action", f"expected one of {', '.join(RULE_ACTIONS)}, got {action!r}")
        if action == "reject" and kind in DATASET_RULES:
            raise _fail(f"{path}.action", f"a {kind} rule checks the whole batch and cannot reject rows "
                                          "(use warn or fail)")
        alarm = spec.get("alarm", False)
        if not isinstance(alarm, bool):
            raise _fail(f"{path}.alarm", f"expected a boolean, got {type(alarm).__name__}")
        max_share = _share(spec.get("max_share", 0), f"{path}.max_share") if kind in ROW_RULES else None
        rule: dict[str, Any] = {"name": name, "type": kind, "action": action, "alarm": alarm, "max_share": max_share}
        if kind == "range":
            col = _column(spec, path, columns, fields, NUMERIC, "range")
            rule["columns"] = (col,)
            rule["min"], rule["max"] = _bounds(spec, path, whole=False, low=None)
        elif kind == "length":
            rule["columns"] = (_column(spec, path, columns, fields, TEXT, "length"),)
            rule["min"], rule["max"] = _bounds(spec, path, whole=True, low=0)
        elif kind == "allowed_values":
            col = _column(spec, path, columns, fields, (*NUMERIC, *TEXT), "allowed_values")
            rule["columns"] = (col,)
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise _fail(f"{path}.values", "expected a non-empty list of values")
            numeric = columns.get(col) in NUMERIC
            for j, v in enumerate(values):
                if numeric:
                    _number(v, f"{path}.values[{j}]")
                elif not isinstance(v, str):
                    raise _fail(f"{path}.values[{j}]", f"expected a string for a text column, got {v!r}")
            rule["values"] = tuple(dict.fromkeys(values))
        elif kind == "pattern":
            rule["columns"] = (_column(spec, path, columns, fields, TEXT, "pattern"),)
            pattern = spec.get("pattern")
            if not isinstance(pattern, str) or not pattern:
                raise _fail(f"{path}.pattern", "expected a non-empty regular expression")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise _fail(f"{path}.pattern", f"invalid regular expression: {exc}") from None
            if _UNPORTABLE_REGEX.search(pattern):
                raise _fail(f"{path}.pattern", "lookaround, backreferences, atomic groups, possessive quantifiers, "
                                               "conditionals and \\A \\Z \\z are not supported (RE2 syntax: "
                                               "use ^ and $)")
            rule["pattern"] = pattern
        elif kind == "unique":
            cols = spec.get("columns")
            if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
                raise _fail(f"{path}.columns", "expected a non-empty list of column names")
            if len(set(cols)) != len(cols):
                raise _fail(f"{path}.columns", "entries must be unique")
            for j, c in enumerate(cols):
                if c not in columns:
                    raise _fail(f"{path}.columns[{j}]", f"unknown column {c!r} (unique checks declared columns)")
                if columns[c] == "json":
                    raise _fail(f"{path}.columns[{j}]", f"{c!r} is a JSON column")
            rule["columns"] = tuple(cols)
        elif kind == "expression":
            text = spec.get("expression")
            if not isinstance(text, str) or not text.strip():
                raise _fail(f"{path}.expression", "expected an expression")
            rule["expression"] = text
            rule["columns"] = _expression_columns(text, f"{path}.expression", columns, fields)
        elif kind == "completeness":
            rule["columns"] = (_column(spec, path, columns, fields, None, "completeness"),)
            if "min_share" not in spec:
                raise _fail(f"{path}.min_share", "required: the least share of rows with a value")
            rule["min_share"] = _share(spec["min_share"], f"{path}.min_share")
        elif kind == "row_count":
            rule["min"], rule["max"] = _bounds(spec, path, whole=True, low=0)
        else:  # freshness
            rule["columns"] = (_column(spec, path, columns, fields, DATES, "freshness"),)
            if "max_age_hours" not in spec:
                raise _fail(f"{path}.max_age_hours", "required: the greatest age of the newest value, in hours")
            hours = _number(spec["max_age_hours"], f"{path}.max_age_hours", low=0)
            if hours <= 0:
                raise _fail(f"{path}.max_age_hours", f"must be positive, got {spec['max_age_hours']!r}")
            rule["max_age_hours"] = hours
        out.append(Rule(**rule))
    return tuple(out)


def _expression_columns(text: str, path: str, columns: dict[str, str], fields: set[str]) -> tuple[str, ...]:
    """The columns a true/false expression reads (``processing/expressions.py``), each declared or extracted."""
    expr = expressions.parse(text, path)
    kinds = {c: expressions.TYPE_KINDS.get(k, expressions.STRING) for c, k in columns.items()}
    kinds.update(dict.fromkeys(fields, expressions.STRING))
    for c in expr.columns:
        if c not in kinds:
            raise _fail(path, f"unknown column {c!r} (rules check declared columns and extracted JSON fields)")
    if expressions.check(expr, kinds) != expressions.BOOL:
        raise _fail(path, f"a rule needs a true/false expression (a comparison, and/or/not, is_missing), got {text!r}")
    return tuple(expr.columns)


# ---- results (both engines): the counts of a run -> metrics.json ``rules`` ----------------------------------


def text(value: Any) -> str:
    """An offending value as metrics.json shows it (the same text in every engine and mode: values arrive as Python
    objects, from Arrow's ``to_pylist`` or Spark's rows)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class Tally:
    """Per-rule counts, added block by block in input order (``add``); equal for any split into blocks."""

    def __init__(self, rules: tuple[Rule, ...]):
        self.rules = rules
        row = [r for r in self.rules if r.row_level]
        self.checked = {r.name: 0 for r in row}
        self.violations = {r.name: 0 for r in row}
        self.examples: dict[str, list[str]] = {r.name: [] for r in row}
        self.newest: dict[str, Any] = {}  # freshness rule -> newest value among the checked rows
        self.rejected_rows = 0  # rows rejected by any rule (a row counted once)

    def add(self, name: str, checked: int, violations: int, examples: Iterable[str]) -> None:
        self.checked[name] += checked
        self.violations[name] += violations
        seen = self.examples[name]
        for e in examples:
            if len(seen) >= EXAMPLES:
                break
            if e not in seen:
                seen.append(e)

    def newest_value(self, name: str, value: Any) -> None:
        if value is not None and (name not in self.newest or value > self.newest[name]):
            self.newest[name] = value


def first_distinct(values: Iterable[str], limit: int = EXAMPLES) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
            if len(out) >= limit:
                break
    return out


def results(tally: Tally, rows_out: int, col_metrics: Mapping[str, Any], json_metrics: Mapping[str, Any],
            rules: tuple[Rule, ...], now: datetime | None = None) -> dict[str, Any]:
    """metrics.json ``rules``: per rule ``type``, ``action``, ``alarm``, ``columns``, ``rows_checked``,
    ``violations``, ``share``, the limit, ``passed`` and ``examples`` (dataset rules: ``measured`` too)."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {}
    for rule in rules:
        entry: dict[str, Any] = {"type": rule.type, "action": rule.action, "alarm": rule.alarm,
                                 "columns": list(rule.columns)}
        if rule.row_level:
            checked, bad = tally.checked[rule.name], tally.violations[rule.name]
            share = bad / checked if checked else 0.0
            assert rule.max_share is not None
            entry.update(rows_checked=checked, violations=bad, share=share, max_share=rule.max_share,
                         passed=share <= rule.max_share, examples=list(tally.examples[rule.name]))
        elif rule.type == "completeness":
            missing = _missing(rule.columns[0], col_metrics, json_metrics)
            share = missing / rows_out if rows_out else 0.0
            assert rule.min_share is not None
            entry.update(rows_checked=rows_out, violations=missing, share=share, measured=1.0 - share,
                         min_share=rule.min_share, passed=(1.0 - share) >= rule.min_share, examples=[])
        elif rule.type == "row_count":
            ok = (rule.min is None or rows_out >= rule.min) and (rule.max is None or rows_out <= rule.max)
            entry.update(rows_checked=rows_out, violations=0 if ok else 1, share=0.0 if ok else 1.0,
                         measured=rows_out, min=rule.min, max=rule.max, passed=ok, examples=[])
        else:  # freshness: age of the newest value
            newest = tally.newest.get(rule.name)
            age = _age_hours(newest, now)
            ok = age is not None and age <= (rule.max_age_hours or 0)
            entry.update(rows_checked=rows_out, violations=0 if ok else 1, share=0.0 if ok else 1.0,
                         measured=age, newest=text(newest) if newest is not None else None,
                         max_age_hours=rule.max_age_hours, passed=ok, examples=[])
        out[rule.name] = entry
    return out


def _missing(column: str, col_metrics: Mapping[str, Any], json_metrics: Mapping[str, Any]) -> int:
    if column in col_metrics:
        return int(col_metrics[column]["missing_before"]) + int(col_metrics[column]["invalid"])
    for m in json_metrics.values():
        if column in m["fields"]:
            return int(m["fields"][column]["missing"])
    raise KeyError(column)  # pragma: no cover - validated


def _age_hours(newest: Any, now: datetime) -> float | None:
    if newest is None:
        return None
    if hasattr(newest, "to_pydatetime"):  # a pandas Timestamp
        newest = newest.to_pydatetime()
    if isinstance(newest, datetime):
        stamp = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    elif isinstance(newest, date):
        stamp = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    else:  # pragma: no cover - validated: date/datetime columns
        return None
    return (now - stamp).total_seconds() / 3600.0

