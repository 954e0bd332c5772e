"""The Spark engine's side of issue 14's types and derived features, in native Spark SQL (no UDFs): the same
rules as ``processing/types.py`` / ``typecast.py`` (one parse pattern, rendered for Java's regex) and
``processing/features.py`` / ``derive.py``. ``engine._run`` calls these at a few places. pyspark is imported by the
caller (``F`` is ``pyspark.sql.functions``); nothing here imports pyarrow or pandas."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from processing import expressions
from processing.config import DatasetConfig
from processing.features import Bins, Derived, bin_metrics, kind_of, resolve_bins
from processing.spark.expressions import to_spark
from processing.types import (
    EPOCH,
    FALSE_TEXTS,
    MICROS_PER_DAY,
    MONTHS,
    TEMPORAL_TYPES,
    TRUE_TEXTS,
    TypeOptions,
    format_micros,
    median_info,
    pattern,
    regex,
)

TRIM_RE = r"(?U)^\s+|\s+$"  # Unicode whitespace, as Arrow's utf8_trim_whitespace (engine.TRIM_RE)


# ---- types -----------------------------------------------------------------------------------------------------


def typed(F: Any, marked: Any, kind: str, options: TypeOptions) -> Any:
    """The typed value of a text column (after missing markers) of a new type; null where missing or invalid."""
    trimmed = F.regexp_replace(marked, TRIM_RE, "")
    if kind == "boolean":
        low = F.lower(trimmed)
        return (F.when(low.isin(*TRUE_TEXTS), F.lit(True)).when(low.isin(*FALSE_TEXTS), F.lit(False))
                .otherwise(F.lit(None).cast("boolean")))
    micros = local_or_utc_micros(F, trimmed, kind, options)
    if kind == "date":
        return F.date_from_unix_date((micros / F.lit(MICROS_PER_DAY)).cast("int"))
    return F.timestamp_micros(micros)


def local_or_utc_micros(F: Any, text: Any, kind: str, options: TypeOptions) -> Any:
    """Microseconds since the epoch (UTC; a date: its midnight) of each text, null when invalid: the pattern's
    groups by position (``regexp_extract``), range checks (``make_date`` is null for a day the month lacks), the
    offset or the column's zone (a skipped local time is null: converting back does not give it again)."""
    java = regex(kind, options, "java")
    groups = list(pattern(kind, options).groups)
    matched = text.rlike(java)

    def part(name: str) -> Any:
        if name not in groups:
            return None
        return F.when(matched, F.regexp_extract(text, java, groups.index(name) + 1))

    def number(name: str, default: int) -> Any:
        p = part(name)
        return F.lit(default).cast("long") if p is None else F.coalesce(
            F.when(p != "", p.cast("long")), F.lit(default).cast("long"))

    year = number("Y", -1)
    if "y" in groups:
        two = number("y", 0)
        year = F.when(two < 69, two + 2000).otherwise(two + 1900)
    if "b" in groups:
        abbrev = F.lower(F.substring(part("b"), 1, 3))
        month = F.coalesce(*[F.when(abbrev == m[:3], F.lit(i).cast("long")) for i, m in enumerate(MONTHS, 1)])
    else:
        month = number("m", 1)
    day = number("d", 1)
    if "I" in groups:
        pm = F.lower(part("p")) == "pm"
        hour = F.pmod(number("I", 0), F.lit(12)) + F.when(pm, F.lit(12)).otherwise(F.lit(0))
    else:
        hour = number("H", 0)
    minute, second = number("M", 0), number("S", 0)
    frac = F.lit(0).cast("long")
    if "f" in groups:
        frac = F.coalesce(F.substring(F.rpad(part("f"), 9, "0"), 1, 6).cast("long"), F.lit(0).cast("long"))
    valid_year = (year >= 1) & (year <= 9999)
    date = F.when(matched & valid_year, F.make_date(year.cast("int"), month.cast("int"), day.cast("int")))
    days = F.unix_date(date).cast("long")
    local = days * F.lit(MICROS_PER_DAY) + ((hour * 60 + minute) * 60 + second) * F.lit(1_000_000) + frac
    if kind == "date":
        return local
    utc = local
    if "z" in groups:
        z = part("z")
        digits = F.regexp_replace(F.substring(z, 2, 10), ":", "")
        hh = F.coalesce(F.substring(digits, 1, 2).cast("long"), F.lit(0).cast("long"))
        mm = F.coalesce(F.when(F.length(digits) > 2, F.substring(digits, 3, 2).cast("long")), F.lit(0).cast("long"))
        sign = F.when(F.substring(z, 1, 1) == "-", F.lit(-1)).otherwise(F.lit(1))
        has_offset = z.isNotNull() & (z != "")
        offset = F.when(has_offset & ~z.isin("Z", "z"), sign * (hh * 3600 + mm * 60)).otherwise(F.lit(0))
    else:
        has_offset = F.lit(False)
        offset = F.lit(0)
    utc = local - offset.cast("long") * F.lit(1_000_000)
    if options.timezone != "UTC":
        naive = F.timestamp_micros(local)  # the wall-clock time as if it were UTC (the session's zone)
        zoned = F.to_utc_timestamp(naive, options.timezone)
        back = F.from_utc_timestamp(zoned, options.timezone)
        in_zone = F.when(F.unix_micros(back) == local, F.unix_micros(zoned))
        utc = F.when(has_offset, utc).otherwise(in_zone)
    return utc


def imputation_statistic(F: Any, column: str, kind: str, median_of: Any) -> Any:
    """The aggregate of a median imputation of a date/datetime column (days / microseconds)."""
    assert kind in TEMPORAL_TYPES
    c = F.col(column)
    return median_of(F.unix_date(c).cast("double") if kind == "date" else F.unix_micros(c).cast("double"))


def most_frequent_value(F: Any, column: str, kind: str) -> Any:
    """The column as most_frequent compares and collects it: dates and datetimes as numbers (collected datetimes
    would pass through the driver's local zone)."""
    c = F.col(column)
    if kind == "date":
        return F.unix_date(c)
    if kind == "datetime":
        return F.unix_micros(c)
    return c


def imputation_info(strategy: str, kind: str, computed: Any) -> dict[str, Any]:
    """``typecast.imputation_info`` for a Spark statistic: a median (days / microseconds) or the most frequent
    value (bool, days or microseconds)."""
    if strategy == "median":
        return median_info(strategy, kind, float(computed))
    if kind == "boolean":
        value: Any = bool(computed)
    else:
        value = format_micros(int(computed) * (MICROS_PER_DAY if kind == "date" else 1), kind)
    return {"strategy": strategy, "value": value, "computed": value, "source": "statistic"}


def fill_literal(F: Any, kind: str, value: Any) -> Any:
    """A fill value of a new type (its canonical form: bool, ``2024-03-01``, ``2024-03-01T05:00:00Z``) as a Spark
    literal of the column's type."""
    if kind == "boolean":
        return F.lit(bool(value))
    if kind == "date":
        return F.to_date(F.lit(str(value)))
    return F.to_timestamp(F.lit(str(value).replace("Z", "+00:00")))


def iso_text(F: Any, ts: Any) -> Any:
    """A timestamp as the default engine's CSV text: ``2024-03-01T05:00:00Z``, ``.ffffff`` when not whole seconds
    (the session's zone is UTC)."""
    whole = F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss'Z'")
    frac = F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'")
    return F.when(F.pmod(F.unix_micros(ts), F.lit(1_000_000)) == 0, whole).otherwise(frac)


def csv_ready(F: Any, frame: Any) -> Any:
    """Timestamps as the default engine writes them in CSV (``iso_text``); other columns as they are."""
    for field in frame.schema.fields:
        if field.dataType.typeName() == "timestamp":
            frame = frame.withColumn(field.name, iso_text(F, F.col(field.name)))
    return frame


def statistics_value(value: Any) -> Any:
    """A group statistic's value as the default engine writes it: dates ``2024-03-01``, datetimes
    ``2024-03-01T05:00:00Z`` (pyspark collects a timestamp as a naive datetime in the driver's local zone)."""
    if isinstance(value, datetime.datetime):
        delta = value.astimezone(datetime.UTC) - EPOCH  # a naive value is taken as local time, as collected
        return format_micros((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds, "datetime")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


# ---- derived features ------------------------------------------------------------------------------------------


def missing_flags(F: Any, frame: Any, config: DatasetConfig) -> Any:
    """Hidden ``_missing_<source>`` columns of the missing indicators' sources that imputation may fill, taken
    before it (missing or invalid: both null)."""
    for source in dict.fromkeys(d.source for d in config.derived if d.kind == "missing_indicator"):
        if source in frame.columns:
            frame = frame.withColumn(f"_missing_{source}", F.col(f"`{source}`").isNull())
    return frame


def value_kinds(config: DatasetConfig) -> dict[str, str]:
    """Expression kinds of every column a feature can read: declared, extracted, derived."""
    kinds = {c: expressions.TYPE_KINDS[t] for c, t in config.columns.items()}
    kinds.update({f.name: expressions.STRING for jc in config.json_columns for f in jc.fields})
    kinds.update({d.name: kind_of(d) for d in config.derived})
    return kinds


def quantile_edges(F: Any, frame: Any, d: Derived, exact: bool, accuracy: int) -> tuple[list[float], bool]:
    """The quantile bin's edges over ``frame`` (after imputation): Spark's exact ``percentile`` (linear
    interpolation, as numpy) while ``exact``, else ``percentile_approx`` with ``accuracy``; equal edges dropped as
    ``derive.quantile_edges`` does. Returns the edges and whether they are approximate."""
    assert d.bins is not None and d.bins.quantiles is not None
    x = F.col(f"`{d.source}`").cast("double")
    x = F.when(~F.isnan(x), x)
    probs = F.array(*[F.lit(float(p)) for p in d.bins.quantiles])
    agg = F.percentile(x, probs) if exact else F.percentile_approx(x, probs, accuracy)
    row = frame.agg(agg.alias("q"), F.count(x).alias("n")).collect()[0]
    if not row["n"] or row["q"] is None:
        return [], not exact
    return list(dict.fromkeys(float(e) + 0.0 for e in row["q"])), not exact


def derive(F: Any, frame: Any, d: Derived, config: DatasetConfig, bins_expr: Any, outside_expr: Any,
           edges: dict[str, list[float]], exact: bool, accuracy: int) -> Any:
    """``frame`` with feature ``d`` (a kind of issue 14: missing_indicator, expression, date_part, bins with
    quantiles or generated labels); bins columns by the engine's ``bins_expr``/``outside_expr``."""
    src = F.col(f"`{d.source}`") if d.source else None
    if d.kind == "missing_indicator":
        flag = f"_missing_{d.source}"
        assert src is not None
        return frame.withColumn(d.name, F.col(flag) if flag in frame.columns else src.isNull())
    if d.kind == "expression":
        assert d.expression is not None
        return frame.withColumn(d.name, to_spark(d.expression, value_kinds(config)).cast("double"))
    if d.kind == "date_part":
        assert src is not None and d.part is not None
        fn = {"year": F.year, "month": F.month, "day": F.dayofmonth, "weekday": F.weekday, "hour": F.hour,
              "minute": F.minute, "dayofyear": F.dayofyear}[d.part]
        return frame.withColumn(d.name, fn(src).cast("long"))
    assert d.bins is not None and src is not None
    if d.bins.quantiles is not None:
        edges[d.name], _ = quantile_edges(F, frame, d, exact, accuracy)
    bins = resolve_bins(d, edges.get(d.name, []))
    x = src.cast("double")
    if len(bins.edges) < 2:  # no bin: present values are outside (as transform.bin_values)
        outside = F.lit(bins.outside) if bins.outside is not None else F.lit(None).cast("string")
        return (frame.withColumn(d.name, F.when(x.isNotNull(), outside).otherwise(F.lit(None).cast("string")))
                .withColumn(f"_outside_{d.name}", x.isNotNull()))
    return (frame.withColumn(d.name, bins_expr(F, x, bins))
            .withColumn(f"_outside_{d.name}", outside_expr(F, x, bins)))


def resolved_config(config: DatasetConfig, edges: dict[str, list[float]]) -> DatasetConfig:
    """``config`` with every quantile bin's edges and labels filled in (what the metrics and statistics read)."""
    derived = tuple(dataclasses.replace(d, bins=resolve_bins(d, edges.get(d.name, [])))
                    if d.kind == "bins" and d.bins is not None and d.bins.quantiles is not None else d
                    for d in config.derived)
    return dataclasses.replace(config, derived=derived)


def derived_metrics(d: Derived, config_bins: Bins | None, n: Any, edges: dict[str, list[float]],
                    approximate: bool) -> dict[str, Any] | None:
    """metrics.json ``derived.<name>`` of a feature of issue 14's kinds (``n(key)``: the engine's counts), or None
    for the engine's own kinds (string_length, bins with edges)."""
    if d.kind == "missing_indicator":
        return {"kind": d.kind, "source": d.source, "missing": 0, "true": n(f"dt_{d.name}")}
    if d.kind == "expression":
        assert d.expression is not None
        return {"kind": d.kind, "expression": d.expression.text, "columns": list(d.expression.columns),
                "missing": n(f"dm_{d.name}")}
    if d.kind == "date_part":
        return {"kind": d.kind, "source": d.source, "part": d.part, "missing": n(f"dm_{d.name}")}
    if d.kind == "bins" and config_bins is not None and config_bins.quantiles is not None:
        assert d.bins is not None
        return bin_metrics(dataclasses.replace(d, bins=config_bins), d.bins, approximate)
    return None


def numeric_features(config: DatasetConfig) -> list[str]:
    """Derived features that are numbers (summarised in metrics.json ``numeric``)."""
    return [d.name for d in config.derived if kind_of(d) == expressions.NUMBER]


def int_features(config: DatasetConfig) -> set[str]:
    """Derived features whose values are integers (string lengths, date parts)."""
    return {d.name for d in config.derived if d.kind in ("string_length", "date_part")}

