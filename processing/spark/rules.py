"""The dataset config's rules in the Spark engine (docs/processing.md "Rules"), native Spark SQL: the same order,
counts and examples as ``processing/rules.py`` (the default engine).

Row-local rules (``range``, ``allowed_values``, ``pattern``, ``length``, ``expression``) are column expressions over
the rows still there after ``reject_rows_missing``; ``unique`` is a ``row_number`` window over the rows the row-local
reject rules left (nulls equal, first by input order), then the duplicates run over the rows the rules left. Counts
go into the shared ``rules_config.Tally``; examples are the first distinct offending values by input order. Extracted
JSON fields are computed from the typed JSON text as the engine extracts them. Not supported yet (refused by name,
``unsupported``): freshness (the engine has no date types yet). pyspark is imported by the caller (``F``,
``Window`` are passed in).
"""

from __future__ import annotations

from typing import Any

from processing import expressions
from processing.config import DatasetConfig
from processing.rules_config import EXAMPLES, Rule, Tally, text
from processing.spark.expressions import column_ref, to_spark

PREFIX = "rule:"


def unsupported(config: DatasetConfig) -> str | None:
    """Why the Spark engine cannot check ``config``'s rules as the default engine does (naming the key), or None."""
    for i, rule in enumerate(config.rules):
        if rule.type == "freshness":
            return f"rules[{i}]: freshness rules are not supported by the Spark engine yet; use the default engine"
    return None


def _violation(F: Any, rule: Rule, kinds: dict[str, str]) -> Any:
    """The column: the row breaks ``rule`` (null when it cannot tell: a missing value, a null expression)."""
    if rule.type == "expression":
        assert rule.expression is not None
        expr = expressions.parse(rule.expression, f"rules.{rule.name}")
        ok = to_spark(expr, {c: expressions.TYPE_KINDS.get(kinds.get(c, "string"), expressions.STRING)
                             for c in expr.columns})
        return ~ok
    x = column_ref(rule.columns[0])
    bad = F.lit(False)
    if rule.type == "range":
        v = x.cast("double")
        if rule.min is not None:
            bad = bad | (v < F.lit(rule.min))
        if rule.max is not None:
            bad = bad | (v > F.lit(rule.max))
        return F.when(v.isNotNull(), bad)
    if rule.type == "length":
        n = F.length(x)
        if rule.min is not None:
            bad = bad | (n < F.lit(int(rule.min)))
        if rule.max is not None:
            bad = bad | (n > F.lit(int(rule.max)))
        return F.when(x.isNotNull(), bad)
    if rule.type == "allowed_values":
        assert rule.values is not None
        if kinds.get(rule.columns[0]) in ("integer", "float"):
            return ~x.cast("double").isin([float(v) for v in rule.values])
        return ~x.isin([str(v) for v in rule.values])
    assert rule.pattern is not None  # pattern: the value contains a match (Java's find, as RE2's partial match)
    return ~x.rlike(rule.pattern)


def apply(F: Any, Window: Any, rows: Any, config: DatasetConfig, kinds: dict[str, str],
          fields: dict[str, Any] | None = None) -> Any:
    """``rows`` (typed columns, ``_reason`` of the earlier rejections, ``_file``, ``_row``) with the rules' flags
    (``_rule_<i>``: the row breaks rule i; ``_rule_checked``/``_rule_checked_unique``: the rows each kind checks)
    and the ``reject`` rules' reasons added to ``_reason`` (``rule:<name>``, ``;``-joined in config order).
    ``fields``: the extracted JSON fields the rules read (name -> column of ``rows``' typed JSON text), added under
    their names."""
    if not config.rules:
        return rows
    for name, column in (fields or {}).items():
        rows = rows.withColumn(name, column)
    local = [(i, r) for i, r in enumerate(config.rules) if r.row_level and r.type != "unique"]
    unique = [(i, r) for i, r in enumerate(config.rules) if r.type == "unique"]
    rows = rows.withColumn("_rule_checked", F.col("_reason") == "")
    for i, rule in local:
        rows = rows.withColumn(f"_rule_{i}", F.col("_rule_checked") & F.coalesce(_violation(F, rule, kinds),
                                                                                  F.lit(False)))
    rejects = [F.when(F.col(f"_rule_{i}"), F.lit(PREFIX + r.name)) for i, r in local if r.action == "reject"]
    if rejects:
        rows = rows.withColumn("_reason", F.when(F.col("_rule_checked"), F.concat_ws(";", *rejects))
                               .otherwise(F.col("_reason")))
    rows = rows.withColumn("_rule_checked_unique", F.col("_reason") == "")
    for i, rule in unique:
        first = F.row_number().over(Window.partitionBy("_rule_checked_unique", *[column_ref(c) for c in rule.columns])
                                    .orderBy(F.col("_file"), F.col("_row")))
        rows = rows.withColumn(f"_rule_{i}", F.col("_rule_checked_unique") & (first > 1))
    rejects = [F.when(F.col(f"_rule_{i}"), F.lit(PREFIX + r.name)) for i, r in unique if r.action == "reject"]
    if rejects:
        rows = rows.withColumn("_reason", F.when(F.col("_rule_checked_unique"), F.concat_ws(";", *rejects))
                               .otherwise(F.col("_reason")))
    return rows.withColumn("_usable", F.col("_reason") == "")


def tally(F: Any, rows: Any, config: DatasetConfig) -> Tally:
    """The rules' counts and examples from ``apply``'s columns (one aggregation, plus one small query per rule with
    violations for its examples)."""
    result = Tally(config.rules)
    if not config.rules:
        return result
    aggs = [F.sum(F.col("_rule_checked").cast("long")).alias("checked"),
            F.sum(F.col("_rule_checked_unique").cast("long")).alias("checked_unique"),
            F.sum(F.col("_reason").startswith(PREFIX).cast("long")).alias("rejected")]
    row_rules = [(i, r) for i, r in enumerate(config.rules) if r.row_level]
    aggs += [F.sum(F.col(f"_rule_{i}").cast("long")).alias(f"v{i}") for i, _ in row_rules]
    counts = rows.agg(*aggs).collect()[0].asDict()
    result.rejected_rows = int(counts["rejected"] or 0)
    for i, rule in row_rules:
        bad = int(counts[f"v{i}"] or 0)
        checked = int(counts["checked_unique" if rule.type == "unique" else "checked"] or 0)
        result.add(rule.name, checked, bad, _examples(F, rows, i, rule) if bad else [])
    return result


def _examples(F: Any, rows: Any, i: int, rule: Rule) -> list[str]:
    """The first ``EXAMPLES`` distinct offending values (by the first row showing each), as ``rules.row_texts``."""
    cols = list(rule.columns)
    picked = (rows.filter(F.col(f"_rule_{i}"))
              .select(F.struct(F.col("_file"), F.col("_row")).alias("_at"),
                      *[column_ref(c).alias(f"_v{j}") for j, c in enumerate(cols)])
              .groupBy(*[f"_v{j}" for j in range(len(cols))]).agg(F.min("_at").alias("_at"))
              .orderBy("_at").limit(EXAMPLES).collect())
    out = []
    for row in picked:
        values = [row[f"_v{j}"] for j in range(len(cols))]
        if rule.type == "expression":
            out.append(", ".join(f"{c}={text(v)}" for c, v in zip(cols, values, strict=True)))
        else:
            out.append(", ".join(text(v) for v in values))
    return out
