"""Expressions (``processing/expressions.py``) as native Spark SQL columns: the same semantics as ``evaluate``.

Numbers are doubles; division by zero, ``log`` of x <= 0, ``sqrt`` of x < 0 and non-finite results are null (after
every operation, as ``evaluate`` does); ``min``/``max`` propagate nulls (Spark's ``least``/``greatest`` would skip
them); ``round`` is ``bround`` (half to even, as numpy); ``and``/``or``/``not`` are Spark's three-valued logic, the
same as ``evaluate``'s; dates and datetimes compare as microseconds since the epoch (UTC); a text literal compared
with one is read by ``expressions.time_literal_micros``. pyspark is imported when called, never pyarrow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processing.expressions import (
    ANY,
    BOOL,
    NUMBER,
    STRING,
    TIME,
    Binary,
    Call,
    Column,
    Expression,
    Literal,
    Node,
    Unary,
    time_literal_micros,
)


def column_ref(name: str) -> Any:
    """``F.col`` of a column name taken literally (dots and spaces are part of the name)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def to_spark(expr: Expression, kinds: Mapping[str, str] | None = None) -> Any:
    """The Spark column computing ``expr``; ``kinds`` maps its columns to kinds (``expressions.TYPE_KINDS`` values,
    e.g. from ``expressions.check``); without it, columns are taken as they are typed in the frame (numbers must
    then be numeric columns, dates/datetimes compared with text literals are not converted).

    A numeric result is a double column, a true/false one a boolean column, a date/datetime one a timestamp."""
    from pyspark.sql import functions as F

    kind, column = _Builder(expr, kinds or {}).node(expr.root)
    if kind == TIME:
        return F.timestamp_micros(column)
    return column


class _Builder:
    def __init__(self, expr: Expression, kinds: Mapping[str, str]) -> None:
        from pyspark.sql import functions as F

        self.F = F
        self.expr = expr
        self.kinds = kinds

    def clean(self, c: Any) -> Any:
        F = self.F
        return F.when(F.isnan(c) | (F.abs(c) == F.lit(float("inf"))), F.lit(None).cast("double")).otherwise(c)

    def node(self, node: Node) -> tuple[str, Any]:
        F = self.F
        if isinstance(node, Literal):
            if isinstance(node.value, bool):
                return BOOL, F.lit(node.value)
            if isinstance(node.value, str):
                return STRING, F.lit(node.value)
            return NUMBER, F.lit(float(node.value)).cast("double")
        if isinstance(node, Column):
            kind = self.kinds.get(node.name, ANY)
            ref = column_ref(node.name)
            if kind == NUMBER:
                return NUMBER, self.clean(ref.cast("double"))
            if kind == TIME:
                return TIME, F.unix_micros(ref.cast("timestamp"))
            return kind, ref
        if isinstance(node, Unary):
            kind, c = self.node(node.operand)
            if node.op == "not":
                return BOOL, ~c
            return NUMBER, -c
        if isinstance(node, Binary):
            return self.binary(node)
        return self.call(node)

    def binary(self, node: Binary) -> tuple[str, Any]:
        F = self.F
        lk, left = self.node(node.left)
        rk, right = self.node(node.right)
        if node.op == "and":
            return BOOL, left & right
        if node.op == "or":
            return BOOL, left | right
        if node.op in ("+", "-", "*", "/"):
            if node.op == "+":
                out = left + right
            elif node.op == "-":
                out = left - right
            elif node.op == "*":
                out = left * right
            else:
                out = F.when(right == 0, F.lit(None).cast("double")).otherwise(left / right)
            return NUMBER, self.clean(out)
        if lk == STRING and rk == TIME:
            left = self.time_literal(node, node.left)
        if rk == STRING and lk == TIME:
            right = self.time_literal(node, node.right)
        ops = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right,
               "==": left == right, "!=": left != right}
        return BOOL, ops[node.op]

    def time_literal(self, node: Binary, side: Node) -> Any:
        if not (isinstance(side, Literal) and isinstance(side.value, str)):
            raise self.expr.error(node.pos, f"'{node.op}' compares a date/datetime with a text column")
        micros = time_literal_micros(side.value)
        if micros is None:
            raise self.expr.error(side.pos, f"{side.value!r} is not an ISO-8601 date or datetime")
        return self.F.lit(micros).cast("long")

    def call(self, node: Call) -> tuple[str, Any]:
        F = self.F
        args = [self.node(a) for a in node.args]
        fn = node.function
        null = F.lit(None).cast("double")
        if fn == "is_missing":
            return BOOL, args[0][1].isNull()
        if fn == "coalesce":
            kind = args[0][0] if args[0][0] != ANY else args[1][0]
            return kind, F.coalesce(args[0][1], args[1][1])
        x = args[0][1]
        if fn == "abs":
            return NUMBER, self.clean(F.abs(x))
        if fn == "round":
            digits = int(node.args[1].value) if isinstance(node.args[1], Literal) else 0
            return NUMBER, self.clean(F.bround(x, digits))
        if fn in ("min", "max"):
            y = args[1][1]
            pick = F.least(x, y) if fn == "min" else F.greatest(x, y)
            return NUMBER, F.when(x.isNull() | y.isNull(), null).otherwise(pick)
        if fn == "log":
            return NUMBER, self.clean(F.when(x <= 0, null).otherwise(F.log(x)))
        return NUMBER, self.clean(F.when(x < 0, null).otherwise(F.sqrt(x)))
