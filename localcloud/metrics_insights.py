"""CloudWatch Metrics Insights queries, evaluated over the local cloud's metric data (moto has no query engine).

Only the forms the stack deploys are accepted; anything else raises :class:`UnsupportedQuery` naming the part, so
a new query shape fails loudly here instead of charting or alarming on a wrong number:

    SELECT <AVG|COUNT|MAX|MIN|SUM>(<metric>) FROM SCHEMA("<namespace>"[, <dimension>...])
        [WHERE <dimension> <=|!=> '<value>' [AND ...]] [GROUP BY <dimension>[, ...]]

Semantics, from the CloudWatch user guide "Metrics Insights query components and syntax"
(cloudwatch-metrics-insights-querylanguage.html):
- ``SCHEMA(namespace, d1, ...)`` matches only the metrics whose dimension names are exactly ``{d1, ...}``.
- The function aggregates, per period, the datapoints of every matched metric: ``MAX`` is the largest Maximum,
  ``MIN`` the smallest Minimum, ``SUM`` the sum of Sums, ``COUNT`` the sum of SampleCounts, ``AVG`` Sum / SampleCount.
- ``GROUP BY`` returns one time series per combination of the grouped dimensions' values (label: the values joined
  by a space); without it, one series over all matched metrics.
- Keywords are case-insensitive, identifiers (metric, namespace, dimension names and values) case-sensitive.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

FUNCTIONS = ("AVG", "COUNT", "MAX", "MIN", "SUM")
_IDENT = r'"[^"]+"|[A-Za-z_][A-Za-z0-9_./-]*'
_QUERY_RE = re.compile(
    rf"^\s*SELECT\s+(?P<function>[A-Za-z]+)\s*\(\s*(?P<metric>{_IDENT})\s*\)\s+"
    rf"FROM\s+SCHEMA\s*\(\s*(?P<schema>[^)]*)\)"
    rf"(?:\s+WHERE\s+(?P<where>.*?))?"
    rf"(?:\s+GROUP\s+BY\s+(?P<group>.*?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION_RE = re.compile(rf"^\s*(?P<dim>{_IDENT})\s*(?P<op>=|!=)\s*'(?P<value>[^']*)'\s*$")


class UnsupportedQuery(ValueError):
    """A query outside the subset this module evaluates (the message names the part)."""


@dataclass(frozen=True)
class Query:
    function: str
    metric: str
    namespace: str
    dimensions: tuple[str, ...]
    where: tuple[tuple[str, str, str], ...] = ()  # (dimension, "=" or "!=", value)
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class Series:
    """One result time series: ``label`` (the GROUP BY values, or the metric name), ascending timestamps."""

    label: str
    timestamps: tuple[datetime, ...]
    values: tuple[float, ...]


def _ident(token: str) -> str:
    token = token.strip()
    return token[1:-1] if token.startswith('"') and token.endswith('"') else token


def parse(expression: str) -> Query:
    """Parse one query of the supported subset.

    Raises:
        UnsupportedQuery: naming what is not supported (ORDER BY, LIMIT, OR, other operators, FROM <namespace>...).
    """
    if re.search(r"\bORDER\s+BY\b|\bLIMIT\b", expression, re.IGNORECASE):
        raise UnsupportedQuery(f"ORDER BY and LIMIT are not supported: {expression!r}")
    match = _QUERY_RE.match(expression)
    if match is None:
        raise UnsupportedQuery(f"not a supported Metrics Insights query (SELECT f(metric) FROM SCHEMA(...) [WHERE ...] "
                               f"[GROUP BY ...]): {expression!r}")
    function = match["function"].upper()
    if function not in FUNCTIONS:
        raise UnsupportedQuery(f"function {match['function']!r} is not one of {', '.join(FUNCTIONS)}")
    schema = [part for part in (p.strip() for p in match["schema"].split(",")) if part]
    if not schema:
        raise UnsupportedQuery("SCHEMA() needs a namespace")
    where: list[tuple[str, str, str]] = []
    if match["where"]:
        if re.search(r"\bOR\b|\(|\bIN\b|\bLIKE\b", match["where"], re.IGNORECASE):
            raise UnsupportedQuery(f"WHERE supports only '=' / '!=' conditions joined by AND: {match['where']!r}")
        for condition in re.split(r"\s+AND\s+", match["where"], flags=re.IGNORECASE):
            cond = _CONDITION_RE.match(condition)
            if cond is None:
                raise UnsupportedQuery(f"WHERE condition not supported: {condition!r}")
            where.append((_ident(cond["dim"]), cond["op"], cond["value"]))
    group_by = tuple(_ident(g) for g in match["group"].split(",")) if match["group"] else ()
    query = Query(function=function, metric=_ident(match["metric"]), namespace=_ident(schema[0]),
                  dimensions=tuple(_ident(d) for d in schema[1:]), where=tuple(where), group_by=group_by)
    for name in (*(w[0] for w in query.where), *query.group_by):
        if name not in query.dimensions:
            raise UnsupportedQuery(f"dimension {name!r} is not in SCHEMA({query.namespace!r}, "
                                   f"{', '.join(query.dimensions)})")
    return query


def matches(query: Query, dimensions: dict[str, str]) -> bool:
    """Whether a metric with these dimensions is in the query's schema and passes its WHERE clause."""
    if set(dimensions) != set(query.dimensions):
        return False
    return all((dimensions.get(dim) == value) == (op == "=") for dim, op, value in query.where)


@dataclass(frozen=True)
class Sample:
    """One stored datapoint: a value, or a statistic set (PutMetricData ``StatisticValues``)."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    timestamp: datetime
    minimum: float
    maximum: float
    total: float
    count: float

    @classmethod
    def of(cls, namespace: str, name: str, dimensions: dict[str, str], timestamp: datetime, value: float) -> Sample:
        return cls(namespace, name, dimensions, timestamp, value, value, value, 1.0)


def combine(function: str, samples: Iterable[Sample]) -> float:
    """The function's value over the samples of one period (every matched metric's)."""
    samples = list(samples)
    if function == "MAX":
        return max(s.maximum for s in samples)
    if function == "MIN":
        return min(s.minimum for s in samples)
    if function == "SUM":
        return math.fsum(s.total for s in samples)
    count = math.fsum(s.count for s in samples)
    if function == "COUNT":
        return count
    return math.fsum(s.total for s in samples) / count if count else 0.0


def evaluate(samples: Iterable[Sample], expression: str, *, start: datetime, end: datetime,
             period: int) -> list[Series]:
    """Run a query over stored samples; periods are aligned to multiples of ``period`` since the epoch (as
    CloudWatch aligns them), ``start`` <= timestamp < ``end``."""
    return evaluate_query(samples, parse(expression), start=start, end=end, period=period)


def evaluate_query(samples: Iterable[Sample], query: Query, *, start: datetime, end: datetime, period: int
                   ) -> list[Series]:
    """:func:`evaluate` for a parsed (or constructed) query."""
    grouped: dict[tuple[str, ...], dict[int, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        if (sample.namespace != query.namespace or sample.name != query.metric or not matches(query, sample.dimensions)
                or not start <= sample.timestamp < end):
            continue
        bucket = int(sample.timestamp.timestamp()) // period * period
        grouped[tuple(sample.dimensions[g] for g in query.group_by)][bucket].append(sample)
    series = []
    for key in sorted(grouped):
        by_bucket = grouped[key]
        buckets = sorted(by_bucket)
        series.append(Series(
            label=" ".join(key) if key else query.metric,
            timestamps=tuple(datetime.fromtimestamp(b, tz=UTC) for b in buckets),
            values=tuple(combine(query.function, by_bucket[b]) for b in buckets),
        ))
    return series


def moto_samples(account_id: str, region: str) -> list[Sample]:
    """Every datapoint moto's CloudWatch holds for the account and region (the local cloud is in-process), custom
    and AWS-namespace metrics alike."""
    from moto.cloudwatch.models import cloudwatch_backends

    out = []
    for datum in cloudwatch_backends[account_id][region].get_all_metrics():
        dims = {d.name: d.value for d in datum.dimensions}
        when = datum.timestamp if datum.timestamp.tzinfo else datum.timestamp.replace(tzinfo=UTC)
        if hasattr(datum, "value"):
            out.append(Sample.of(datum.namespace, datum.name, dims, when, float(datum.value)))
        else:  # a statistic set
            out.append(Sample(datum.namespace, datum.name, dims, when, float(datum.min), float(datum.max),
                              float(datum.sum), float(datum.sample_count)))
    return out
