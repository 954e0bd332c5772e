"""Derived features in the config (``derived``): the dataclasses and their validation, errors naming the key path.
Standard library only (``config`` and the Spark engine import it); computed by ``processing/derive.py`` (pandas)
and ``processing/spark/features.py`` (Spark SQL).

Kinds: ``string_length``, ``bins`` (``edges`` or ``quantiles``; ``labels`` optional), ``missing_indicator``,
``expression`` (``processing/expressions.py``), ``date_part``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from processing import expressions
from processing.errors import ConfigError

KINDS = ("string_length", "bins", "missing_indicator", "expression", "date_part")
DATE_PARTS = ("year", "month", "day", "weekday", "hour", "minute", "dayofyear")
TIME_OF_DAY = ("hour", "minute")
NUMERIC_KINDS = ("string_length", "expression", "date_part")  # derived kinds that are numbers
KEYS = {
    "string_length": ("name", "kind", "source"),
    "bins": ("name", "kind", "source", "bins"),
    "missing_indicator": ("name", "kind", "source"),
    "expression": ("name", "kind", "expression"),
    "date_part": ("name", "kind", "source", "part"),
}


@dataclass(frozen=True)
class Bins:
    """Bin settings. ``edges`` empty and ``quantiles`` set: edges from the data (``derive.quantile_edges``);
    ``labels`` empty: generated from the edges (``generated_labels``)."""

    edges: tuple[float, ...]
    labels: tuple[str, ...]
    closed: str = "right"
    include_lowest: bool = True
    outside: str | None = None
    quantiles: tuple[float, ...] | None = None  # probabilities 0 = p0 < ... < pk = 1


@dataclass(frozen=True)
class Derived:
    """A derived feature; ``kind`` one of ``KINDS``. ``source`` is "" for expressions (their columns are
    ``expression.columns``)."""

    name: str
    kind: str
    source: str
    bins: Bins | None = None
    expression: expressions.Expression | None = None
    part: str | None = None


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _number(value: Any, path: str) -> float:
    if isinstance(value, str) and value.lower() in ("inf", "+inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, f'expected a number (or "inf"/"-inf"), got {type(value).__name__}')
    if isinstance(value, float) and math.isnan(value):
        raise _fail(path, "NaN is not allowed")
    return float(value)


def edge_text(edge: float) -> str:
    """An edge in a generated label: without a trailing ``.0`` (``50000``, ``0.5``, ``inf``, ``-inf``)."""
    if math.isinf(edge):
        return "inf" if edge > 0 else "-inf"
    if edge.is_integer() and abs(edge) < 1e16:
        return str(int(edge))
    return repr(edge)


def generated_labels(edges: tuple[float, ...] | list[float], closed: str, include_lowest: bool) -> tuple[str, ...]:
    """pandas' interval text for each bin: ``(0, 50000]`` (right-closed), ``[0, 50000)`` (left-closed); the first
    right-closed bin is ``[a, b]`` when ``include_lowest`` (it holds its lowest edge)."""
    labels = []
    for i in range(len(edges) - 1):
        a, b = edge_text(float(edges[i])), edge_text(float(edges[i + 1]))
        if closed == "left":
            labels.append(f"[{a}, {b})")
        elif i == 0 and include_lowest:
            labels.append(f"[{a}, {b}]")
        else:
            labels.append(f"({a}, {b}]")
    return tuple(labels)


def _quantiles(value: Any, path: str) -> tuple[float, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 2:
            raise _fail(path, f"expected at least 2 quantiles, got {value}")
        if value > 1000:
            raise _fail(path, f"expected at most 1000 quantiles, got {value}")
        return tuple(i / value for i in range(value + 1))
    if not isinstance(value, list):
        raise _fail(path, f"expected a number of bins (an integer >= 2) or a list of probabilities, got "
                          f"{type(value).__name__}")
    probs = tuple(_number(p, f"{path}[{i}]") for i, p in enumerate(value))
    if len(probs) < 2:
        raise _fail(path, f"expected at least 2 probabilities, got {len(probs)}")
    if probs[0] != 0 or probs[-1] != 1:
        raise _fail(path, f"probabilities must start at 0 and end at 1, got {list(value)}")
    for i in range(1, len(probs)):
        if not probs[i] > probs[i - 1]:
            raise _fail(f"{path}[{i}]", "probabilities must be strictly increasing")
    return probs


def parse_bins(spec: Any, path: str) -> Bins:
    if not isinstance(spec, dict):
        raise _fail(path, f"expected an object, got {type(spec).__name__}")
    allowed = ("edges", "quantiles", "labels", "closed", "include_lowest", "outside")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", f"unknown key (allowed: {', '.join(allowed)})")
    if ("edges" in spec) == ("quantiles" in spec):
        raise _fail(path, 'expected exactly one of "edges" or "quantiles"')
    closed = spec.get("closed", "right")
    if closed not in ("right", "left"):
        raise _fail(f"{path}.closed", f'expected "right" or "left", got {closed!r}')
    include_lowest = spec.get("include_lowest", True)
    if not isinstance(include_lowest, bool):
        raise _fail(f"{path}.include_lowest", f"expected a boolean, got {type(include_lowest).__name__}")
    quantiles = None
    edges: tuple[float, ...] = ()
    if "edges" in spec:
        if not isinstance(spec["edges"], list):
            raise _fail(f"{path}.edges", f"expected a list of numbers, got {type(spec['edges']).__name__}")
        edges = tuple(_number(e, f"{path}.edges[{i}]") for i, e in enumerate(spec["edges"]))
        if len(edges) < 2:
            raise _fail(f"{path}.edges", f"expected at least 2 edges, got {len(edges)}")
        for i in range(1, len(edges)):
            if not edges[i] > edges[i - 1]:
                raise _fail(f"{path}.edges[{i}]", "edges must be strictly increasing")
    else:
        quantiles = _quantiles(spec["quantiles"], f"{path}.quantiles")
    labels: tuple[str, ...] = ()
    if spec.get("labels") is not None:
        raw = spec["labels"]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise _fail(f"{path}.labels", "expected a list of strings (or leave labels out to generate them)")
        if len(set(raw)) != len(raw):
            raise _fail(f"{path}.labels", "entries must be unique")
        labels = tuple(raw)
        bins_count = len(edges) - 1 if quantiles is None else len(quantiles) - 1
        if len(labels) != bins_count:
            what = f"{len(edges)} edges" if quantiles is None else f"{bins_count} quantile bins"
            raise _fail(f"{path}.labels", f"expected {bins_count} labels for {what}, got {len(labels)}")
    outside = spec.get("outside")
    if outside is not None:
        if not isinstance(outside, str):
            raise _fail(f"{path}.outside", f"expected a string label or null, got {type(outside).__name__}")
        if outside in labels or (not labels and quantiles is None
                                 and outside in generated_labels(edges, closed, include_lowest)):
            raise _fail(f"{path}.outside", f"label {outside!r} is already a bin label")
    if quantiles is None and not labels:
        labels = generated_labels(edges, closed, include_lowest)
    return Bins(edges, labels, closed, include_lowest, outside, quantiles)


def kind_of(d: Derived) -> str:
    """The expression kind (``expressions.NUMBER`` ...) of a derived feature's values."""
    if d.kind in NUMERIC_KINDS:
        return expressions.NUMBER
    if d.kind == "missing_indicator":
        return expressions.BOOL
    return expressions.STRING  # bins: labels


def parse_derived(items: Any, columns: dict[str, str], produced: set[str]) -> list[Derived]:
    """Validate the ``derived`` list. ``columns``: declared column -> type; ``produced``: extracted JSON field
    names (updated with each feature's name).

    Raises:
        ConfigError: naming the key path, e.g. ``derived[1].bins.labels: ...``.
    """
    if not isinstance(items, list):
        raise _fail("derived", f"expected a list, got {type(items).__name__}")
    derived: list[Derived] = []
    kinds: dict[str, str] = {c: expressions.TYPE_KINDS[t] for c, t in columns.items()}
    kinds.update(dict.fromkeys(produced, expressions.STRING))  # extracted JSON fields are text

    def source_of(spec: dict[str, Any], path: str) -> tuple[str, str | None]:
        src = spec.get("source")
        if not isinstance(src, str):
            raise _fail(f"{path}.source", f"expected a column name, got {type(src).__name__}")
        if src not in columns and src not in produced:
            raise _fail(f"{path}.source", f"unknown column {src!r} (declare it in columns or produce it earlier)")
        return src, columns.get(src)

    for i, spec in enumerate(items):
        path = f"derived[{i}]"
        if not isinstance(spec, dict):
            raise _fail(path, f"expected an object, got {type(spec).__name__}")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise _fail(f"{path}.kind", f"expected one of {', '.join(repr(k) for k in KINDS)}, got {kind!r}")
        unknown = sorted(set(spec) - set(KEYS[kind]))
        if unknown:
            extra = " (only used with kind \"bins\")" if unknown[0] == "bins" else ""
            raise _fail(f"{path}.{unknown[0]}", f"unknown key for kind {kind!r}{extra} "
                                                f"(allowed: {', '.join(KEYS[kind])})")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{path}.name", f"expected a non-empty string, got {name!r}")
        if name in columns or name in produced:
            raise _fail(f"{path}.name", f"{name!r} collides with another column")
        d: Derived
        if kind == "expression":
            expr = expressions.parse(spec.get("expression"), f"{path}.expression")  # type: ignore[arg-type]
            got = expressions.check(expr, kinds)
            if got != expressions.NUMBER:
                raise _fail(f"{path}.expression", f"an expression feature must give a number, this one gives a "
                                                  f"{got} ({expr.text!r})")
            d = Derived(name, kind, "", expression=expr)
        else:
            src, src_type = source_of(spec, path)
            src_kind = kinds[src]
            if kind == "bins":
                if src_kind != expressions.NUMBER:
                    raise _fail(f"{path}.source", f"bins need a numeric column, {src!r} is "
                                                  f"{src_type or 'a ' + src_kind + ' feature'}")
                d = Derived(name, kind, src, bins=parse_bins(spec.get("bins"), f"{path}.bins"))
            elif kind == "string_length":
                if src_kind != expressions.STRING:
                    raise _fail(f"{path}.source", f"string_length needs a string column, {src!r} is "
                                                  f"{src_type or 'a ' + src_kind + ' feature'}")
                d = Derived(name, kind, src)
            elif kind == "missing_indicator":
                d = Derived(name, kind, src)
            else:  # date_part
                part = spec.get("part")
                if part not in DATE_PARTS:
                    raise _fail(f"{path}.part", f"expected one of {', '.join(DATE_PARTS)}, got {part!r}")
                if src_type not in ("date", "datetime"):
                    raise _fail(f"{path}.source", f"date_part needs a date or datetime column, {src!r} is "
                                                  f"{src_type or 'a ' + src_kind + ' feature'}")
                if part in TIME_OF_DAY and src_type == "date":
                    raise _fail(f"{path}.part", f"{part!r} needs a datetime column, {src!r} is a date")
                d = Derived(name, kind, src, part=part)
        produced.add(name)
        kinds[name] = kind_of(d)
        derived.append(d)
    return derived


def resolve_bins(d: Derived, edges: list[float] | None = None) -> Bins:
    """``d.bins`` with concrete edges and labels (both engines): quantile bins take ``edges`` (``derive.quantile_edges``
    or the Spark engine's percentiles); labels are the configured ones when they fit, else ``generated_labels``."""
    bins = d.bins
    assert bins is not None
    if bins.quantiles is None:
        return bins
    assert edges is not None
    labels = bins.labels
    if len(labels) != max(len(edges) - 1, 0):  # equal quantiles were merged: the configured labels no longer fit
        labels = generated_labels(edges, bins.closed, bins.include_lowest)
    return dataclasses.replace(bins, edges=tuple(edges), labels=tuple(labels))


def bin_metrics(d: Derived, bins: Bins, sampled: bool) -> dict[str, Any]:
    """metrics.json ``derived.<name>`` keys that record what the config left to the data: the quantile bins' edges
    and labels (copy them into ``edges``/``labels`` to reuse them on a later batch), generated labels."""
    assert d.bins is not None
    out: dict[str, Any] = {}
    if d.bins.quantiles is not None:
        out["quantiles"] = list(d.bins.quantiles)
        out["edges"] = list(bins.edges)
        out["edges_from"] = "sample" if sampled else "all"
        out["labels"] = list(bins.labels)
    return out
