"""Safe expressions over columns (no ``eval``): a tokenizer, a recursive-descent parser and vectorised evaluation.

Grammar (docs/processing.md "Expressions")::

    expression  := or
    or          := and ("or" and)*
    and         := not ("and" not)*
    not         := "not" not | comparison
    comparison  := additive (("<" | "<=" | ">" | ">=" | "==" | "!=") additive)?
    additive    := term (("+" | "-") term)*
    term        := unary (("*" | "/") unary)*
    unary       := "-" unary | primary
    primary     := NUMBER | STRING | "true" | "false" | COLUMN | FUNCTION "(" arguments ")" | "(" expression ")"

``COLUMN`` is an identifier (``[A-Za-z_][A-Za-z0-9_]*``) or any text in backquotes (`` `col name` ``); ``STRING``
is in double quotes (``\\"`` and ``\\\\`` escape). Functions: ``abs(x)``, ``round(x, n)`` (``n`` an integer literal),
``min(a, b)``, ``max(a, b)``, ``log(x)`` (natural), ``sqrt(x)``, ``coalesce(a, b)``, ``is_missing(x)``.

Semantics (identical in ``evaluate`` and the Spark engine's ``processing.spark.expressions.to_spark``): numbers are
float64; nulls propagate through arithmetic, functions and comparisons; ``and``/``or``/``not`` use three-valued
(Kleene, SQL) logic; division by zero, ``log`` of x <= 0, ``sqrt`` of x < 0 and overflow give null (never inf or
NaN); ``is_missing`` is never null; ``coalesce`` returns its first non-null argument.

This module imports only the standard library at import time (the Spark engine uses the parser without pandas or
pyarrow); ``evaluate`` imports numpy, pandas and pyarrow when called.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from processing.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

FUNCTIONS = {
    "abs": 1, "round": 2, "min": 2, "max": 2, "log": 1, "sqrt": 1, "coalesce": 2, "is_missing": 1,
}
KEYWORDS = ("and", "or", "not", "true", "false")
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
MAX_LENGTH = 10_000
MAX_DEPTH = 64
# value kinds: what a (sub)expression yields; "any" = a column whose type the parser does not know
NUMBER, BOOL, STRING, TIME, ANY = "number", "boolean", "string", "time", "any"
# config column types -> kinds (derived features' kinds are added by the caller)
TYPE_KINDS = {
    "integer": NUMBER, "float": NUMBER, "boolean": BOOL, "string": STRING, "category": STRING, "json": STRING,
    "date": TIME, "datetime": TIME,
}

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<quoted>`[^`]*`)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op><=|>=|==|!=|[-+*/()<>,])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, column, string, op, end
    text: str
    value: Any
    pos: int  # 0-based offset in the expression text


# ---- syntax tree ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: float | str | bool
    pos: int


@dataclass(frozen=True)
class Column:
    name: str
    pos: int


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node
    pos: int


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / < <= > >= == != and or
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]
    pos: int


Node = Literal | Column | Unary | Binary | Call


@dataclass(frozen=True)
class Expression:
    """A parsed expression: ``text`` as written, ``path`` its config key path (for errors), ``root`` the tree."""

    text: str
    path: str
    root: Node
    columns: tuple[str, ...]
    is_boolean: bool

    def error(self, pos: int, message: str) -> ConfigError:
        return error(self.path, self.text, pos, message)


def time_literal_micros(text: str) -> int | None:
    """Microseconds since the epoch (UTC) of an ISO-8601 date or datetime text (no offset = UTC), or None."""
    try:
        stamp = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    delta = stamp - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def error(path: str, text: str, pos: int, message: str) -> ConfigError:
    """``<path>: <message> at position <1-based> in expression "<text>"``."""
    return ConfigError(f"{path}: {message} at position {pos + 1} in expression {text!r}")


# ---- tokenizer and parser -------------------------------------------------------------------------------------


def tokenize(text: str, path: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == "`":
                raise error(path, text, pos, "unterminated backquoted column name")
            if text[pos] == '"':
                raise error(path, text, pos, "unterminated string literal")
            raise error(path, text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        tok = m.group()
        if kind == "number":
            tokens.append(Token("number", tok, float(tok), pos))
        elif kind == "name":
            tokens.append(Token("keyword" if tok in KEYWORDS else "name", tok, tok, pos))
        elif kind == "quoted":
            if len(tok) == 2:
                raise error(path, text, pos, "empty backquoted column name")
            tokens.append(Token("column", tok, tok[1:-1], pos))
        elif kind == "string":
            tokens.append(Token("string", tok, re.sub(r"\\(.)", r"\1", tok[1:-1]), pos))
        elif kind == "op":
            tokens.append(Token("op", tok, tok, pos))
        pos = m.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.tokens = tokenize(text, path)
        self.i = 0
        self.depth = 0

    def fail(self, tok: Token, message: str) -> ConfigError:
        return error(self.path, self.text, tok.pos, message)

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, text: str) -> Token | None:
        tok = self.tok
        if tok.kind in ("op", "keyword") and tok.text == text:
            self.i += 1
            return tok
        return None

    def expect(self, text: str, what: str) -> Token:
        tok = self.accept(text)
        if tok is None:
            raise self.fail(self.tok, f"expected {what}, got {_describe(self.tok)}")
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.fail(self.tok, "empty expression")
        node = self.expression()
        if self.tok.kind != "end":
            raise self.fail(self.tok, f"expected an operator or the end, got {_describe(self.tok)}")
        return node

    def expression(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(self.tok, f"nested deeper than {MAX_DEPTH} levels")
        node = self.or_()
        self.depth -= 1
        return node

    def or_(self) -> Node:
        node = self.and_()
        while (tok := self.accept("or")) is not None:
            node = self.logical("or", node, self.and_(), tok)
        return node

    def and_(self) -> Node:
        node = self.not_()
        while (tok := self.accept("and")) is not None:
            node = self.logical("and", node, self.not_(), tok)
        return node

    def logical(self, op: str, left: Node, right: Node, tok: Token) -> Node:
        for side in (left, right):
            if _syntactic_kind(side) not in (BOOL, ANY):
                raise self.fail(tok, f"'{op}' needs true/false operands, got a {_syntactic_kind(side)}")
        return Binary(op, left, right, tok.pos)

    def not_(self) -> Node:
        tok = self.accept("not")
        if tok is None:
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(tok, f"nested deeper than {MAX_DEPTH} levels")
        operand = self.not_()
        self.depth -= 1
        if _syntactic_kind(operand) not in (BOOL, ANY):
            raise self.fail(tok, f"'not' needs a true/false operand, got a {_syntactic_kind(operand)}")
        return Unary("not", operand, tok.pos)

    def comparison(self) -> Node:
        left = self.additive()
        tok = self.tok
        if tok.kind == "op" and tok.text in COMPARISONS:
            self.take()
            right = self.additive()
            nxt = self.tok
            if nxt.kind == "op" and nxt.text in COMPARISONS:
                raise self.fail(nxt, "comparisons cannot be chained (use 'and')")
            _check_comparison(tok.text, _syntactic_kind(left), _syntactic_kind(right),
                              lambda m: self.fail(tok, m))
            return Binary(tok.text, left, right, tok.pos)
        return left

    def additive(self) -> Node:
        node = self.term()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            tok = self.take()
            node = self.arithmetic(tok, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            tok = self.take()
            node = self.arithmetic(tok, node, self.unary())
        return node

    def arithmetic(self, tok: Token, left: Node, right: Node) -> Node:
        for side in (left, right):
            if _syntactic_kind(side) not in (NUMBER, ANY):
                raise self.fail(tok, f"'{tok.text}' needs numbers, got a {_syntactic_kind(side)}")
        return Binary(tok.text, left, right, tok.pos)

    def unary(self) -> Node:
        tok = self.accept("-")
        if tok is None:
            return self.primary()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(tok, f"nested deeper than {MAX_DEPTH} levels")
        operand = self.unary()
        self.depth -= 1
        if _syntactic_kind(operand) not in (NUMBER, ANY):
            raise self.fail(tok, f"'-' needs a number, got a {_syntactic_kind(operand)}")
        if isinstance(operand, Literal) and isinstance(operand.value, float):
            return Literal(-operand.value, tok.pos)
        return Unary("-", operand, tok.pos)

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            return Literal(float(tok.value), tok.pos)
        if tok.kind == "string":
            return Literal(str(tok.value), tok.pos)
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            return Literal(tok.text == "true", tok.pos)
        if tok.kind == "column":
            return Column(str(tok.value), tok.pos)
        if tok.kind == "name":
            if self.tok.kind == "op" and self.tok.text == "(":
                return self.call(tok)
            return Column(tok.text, tok.pos)
        if tok.kind == "op" and tok.text == "(":
            node = self.expression()
            self.expect(")", "')'")
            return node
        raise self.fail(tok, f"expected a number, a column, a string or '(', got {_describe(tok)}")

    def call(self, name: Token) -> Node:
        if name.text not in FUNCTIONS:
            raise self.fail(name, f"unknown function {name.text!r} (allowed: {', '.join(FUNCTIONS)})")
        self.expect("(", "'('")
        args: list[Node] = []
        if self.tok.kind != "op" or self.tok.text != ")":
            args.append(self.expression())
            while self.accept(",") is not None:
                args.append(self.expression())
        self.expect(")", "',' or ')'")
        arity = FUNCTIONS[name.text]
        if len(args) != arity:
            raise self.fail(name, f"{name.text}() takes {arity} argument{'s' if arity > 1 else ''}, got {len(args)}")
        node = Call(name.text, tuple(args), name.pos)
        _check_call(node, [_syntactic_kind(a) for a in args], lambda m: self.fail(name, m))
        return node


def _describe(tok: Token) -> str:
    return "the end of the expression" if tok.kind == "end" else repr(tok.text)


def parse(text: str, path: str) -> Expression:
    """Parse ``text`` (the expression at config key ``path``).

    Raises:
        ConfigError: ``<path>: <what is wrong> at position <n> in expression '<text>'``.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{path}: expected an expression string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"{path}: expression longer than {MAX_LENGTH} characters")
    root = _Parser(text, path).parse()
    columns: list[str] = []
    for node in _walk(root):
        if isinstance(node, Column) and node.name not in columns:
            columns.append(node.name)
    return Expression(text, path, root, tuple(columns), _syntactic_kind(root) == BOOL)


def _walk(node: Node) -> list[Node]:
    out = [node]
    if isinstance(node, Unary):
        out += _walk(node.operand)
    elif isinstance(node, Binary):
        out += _walk(node.left) + _walk(node.right)
    elif isinstance(node, Call):
        for a in node.args:
            out += _walk(a)
    return out


# ---- kinds (static types) -------------------------------------------------------------------------------------


def _syntactic_kind(node: Node) -> str:
    return _kind(node, None)


def _kind(node: Node, kinds: Mapping[str, str] | None) -> str:
    """The kind a node yields; with ``kinds`` None columns are ANY (the parser's view)."""
    if isinstance(node, Literal):
        if isinstance(node.value, bool):
            return BOOL
        return STRING if isinstance(node.value, str) else NUMBER
    if isinstance(node, Column):
        return ANY if kinds is None else kinds.get(node.name, ANY)
    if isinstance(node, Unary):
        return BOOL if node.op == "not" else NUMBER
    if isinstance(node, Binary):
        return NUMBER if node.op in ("+", "-", "*", "/") else BOOL
    if node.function == "is_missing":
        return BOOL
    if node.function == "coalesce":
        a, b = (_kind(x, kinds) for x in node.args)
        return b if a == ANY else a
    return NUMBER


def _check_comparison(op: str, left: str, right: str, fail: Any) -> None:
    known = {k for k in (left, right) if k != ANY}
    if known == {TIME, STRING}:
        return  # a date/datetime compared with a literal text, parsed as ISO-8601
    if len(known) > 1:
        raise fail(f"'{op}' compares a {left} with a {right}")
    if op not in ("==", "!=") and known == {BOOL}:
        raise fail(f"'{op}' cannot order true/false values (use == or !=)")


def _check_call(node: Call, arg_kinds: list[str], fail: Any) -> None:
    if node.function == "is_missing":
        return
    if node.function == "coalesce":
        known = {k for k in arg_kinds if k != ANY}
        if len(known) > 1:
            raise fail(f"coalesce() needs arguments of one kind, got a {arg_kinds[0]} and a {arg_kinds[1]}")
        return
    for k in arg_kinds:
        if k not in (NUMBER, ANY):
            raise fail(f"{node.function}() needs numbers, got a {k}")
    if node.function == "round":
        digits = node.args[1]
        if not (isinstance(digits, Literal) and isinstance(digits.value, float) and digits.value.is_integer()):
            raise fail("round() needs a whole-number literal as its second argument")


def check(expr: Expression, column_kinds: Mapping[str, str]) -> str:
    """Check ``expr`` against the kinds of its columns (``TYPE_KINDS`` values) and return the kind it yields.

    Raises:
        ConfigError: naming the path, the position and the column, e.g. an unknown column or a text column in
        arithmetic.
    """
    for node in _walk(expr.root):
        if isinstance(node, Column) and node.name not in column_kinds:
            raise expr.error(node.pos, f"unknown column {node.name!r} (declare it, extract it or derive it earlier)")
    _check_node(expr, expr.root, column_kinds)
    return _kind(expr.root, column_kinds)


def _check_node(expr: Expression, node: Node, kinds: Mapping[str, str]) -> None:
    def fail(message: str) -> ConfigError:
        return expr.error(node.pos, message)

    children: tuple[Node, ...] = ()
    if isinstance(node, Unary):
        children = (node.operand,)
    elif isinstance(node, Binary):
        children = (node.left, node.right)
    elif isinstance(node, Call):
        children = node.args
    for child in children:
        _check_node(expr, child, kinds)
    got = [_kind(c, kinds) for c in children]
    named = [f"{c.name!r} ({_kind(c, kinds)})" if isinstance(c, Column) else f"a {_kind(c, kinds)}" for c in children]
    if isinstance(node, Unary):
        want = BOOL if node.op == "not" else NUMBER
        if got[0] != want:
            raise fail(f"'{node.op}' needs a {want}, got {named[0]}")
    elif isinstance(node, Binary):
        if node.op in ("and", "or"):
            want = BOOL
        elif node.op in ("+", "-", "*", "/"):
            want = NUMBER
        else:
            _check_comparison(node.op, got[0], got[1], fail)
            if set(got) == {TIME, STRING}:
                text = children[got.index(STRING)]
                if not (isinstance(text, Literal) and isinstance(text.value, str)):
                    raise fail(f"'{node.op}' compares a date/datetime with a text column")
                if time_literal_micros(text.value) is None:
                    raise expr.error(text.pos, f"{text.value!r} is not an ISO-8601 date or datetime")
            return
        for g, n in zip(got, named, strict=True):
            if g != want:
                raise fail(f"'{node.op}' needs {'numbers' if want == NUMBER else 'true/false values'}, got {n}")
    elif isinstance(node, Call):
        if node.function not in ("is_missing", "coalesce"):
            for g, n in zip(got, named, strict=True):
                if g != NUMBER:
                    raise fail(f"{node.function}() needs numbers, got {n}")
        _check_call(node, got, fail)


# ---- evaluation (pandas / numpy / pyarrow, imported here only) ------------------------------------------------


def evaluate(expr: Expression, frame: pd.DataFrame) -> pd.Series:
    """Evaluate ``expr`` over every row of ``frame`` (vectorised: numpy and Arrow kernels, no per-row Python).

    Returns a Series on ``frame.index``: float64 (NaN = null, never inf) for a numeric expression, pandas
    ``boolean`` (nullable) for a true/false one, ``string[pyarrow]`` for a text one, ``datetime64[ns, UTC]`` for a
    date/datetime one.

    Raises:
        ConfigError: a column is absent from ``frame`` or has a kind the expression cannot use.
    """
    return _Evaluator(expr, frame).run()


class _Evaluator:
    """Values are (kind, data, null): NUMBER/TIME -> float64 array (TIME: microseconds since the epoch, UTC),
    BOOL -> bool array, STRING -> a pyarrow string array (nulls inside; ``null`` unused); ``null`` a bool mask."""

    def __init__(self, expr: Expression, frame: pd.DataFrame) -> None:
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc

        self.np, self.pd, self.pa, self.pc = np, pd, pa, pc
        self.expr = expr
        self.frame = frame
        self.n = len(frame)
        self.cache: dict[str, tuple[str, Any, Any]] = {}

    def run(self) -> pd.Series:
        np, pdm = self.np, self.pd
        kind, data, null = self.node(self.expr.root)
        index = self.frame.index
        if kind == NUMBER:
            out = pdm.Series(np.where(null, np.nan, data), index=index, dtype="float64")
        elif kind == BOOL:
            out = pdm.Series(pdm.arrays.BooleanArray(data.copy(), null.copy()), index=index)
        elif kind == STRING:
            out = pdm.Series(pdm.arrays.ArrowStringArray(self.pa.chunked_array([data])), index=index)
        else:
            micros = np.where(null, 0, data).astype("int64")
            stamps = pdm.Series(micros.astype("datetime64[us]"), index=index).dt.tz_localize("UTC")
            out = stamps.astype("datetime64[ns, UTC]").mask(pdm.Series(null, index=index))
        return cast("pd.Series", out)

    def fail(self, node: Node, message: str) -> ConfigError:
        return self.expr.error(node.pos, message)

    # -- leaves
    def node(self, node: Node) -> tuple[str, Any, Any]:
        if isinstance(node, Literal):
            return self.literal(node.value)
        if isinstance(node, Column):
            return self.column(node)
        if isinstance(node, Unary):
            kind, data, null = self.node(node.operand)
            if node.op == "not":
                self.want(node, kind, BOOL)
                return BOOL, ~data, null
            self.want(node, kind, NUMBER)
            return NUMBER, -data, null
        if isinstance(node, Binary):
            return self.binary(node)
        return self.call(node)

    def literal(self, value: float | str | bool) -> tuple[str, Any, Any]:
        np = self.np
        none = np.zeros(self.n, dtype=bool)
        if isinstance(value, bool):
            return BOOL, np.full(self.n, value, dtype=bool), none
        if isinstance(value, str):
            return STRING, self.pa.array([value] * self.n, type=self.pa.string()), none
        return NUMBER, np.full(self.n, value, dtype="float64"), none

    def column(self, node: Column) -> tuple[str, Any, Any]:
        if node.name in self.cache:
            return self.cache[node.name]
        if node.name not in self.frame.columns:
            raise self.fail(node, f"unknown column {node.name!r}")
        np, pa, pc = self.np, self.pa, self.pc
        arr = pa.array(self.frame[node.name], from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        t = arr.type
        if pa.types.is_dictionary(t):
            arr = arr.dictionary_decode()
            t = arr.type
        null = arr.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            data = pc.cast(arr, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
            null = null | np.isnan(data)
            value: tuple[str, Any, Any] = (NUMBER, np.where(null, 0.0, data), null)
        elif pa.types.is_boolean(t):
            value = (BOOL, arr.fill_null(False).to_numpy(zero_copy_only=False), null)
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
            value = (STRING, pc.cast(arr, pa.string()), null)
        elif pa.types.is_timestamp(t) or pa.types.is_date(t):
            value = (TIME, self.micros(arr), null)
        else:
            raise self.fail(node, f"column {node.name!r} has type {t}, which expressions cannot use")
        self.cache[node.name] = value
        return value

    def micros(self, arr: Any) -> Any:
        pa, pc = self.pa, self.pc
        if pa.types.is_date(arr.type):
            days = pc.cast(pc.cast(arr, pa.date32()), pa.int32())
            return pc.multiply(pc.cast(days, pa.float64()), 86_400_000_000.0).fill_null(0.0).to_numpy(
                zero_copy_only=False)
        us = pc.cast(arr, pa.timestamp("us", tz=arr.type.tz), safe=False)
        return pc.cast(pc.cast(us, pa.int64()), pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)

    def want(self, node: Node, kind: str, want: str) -> None:
        if kind != want:
            raise self.fail(node, f"expected a {want} here, got a {kind}")

    # -- operators
    def clean(self, data: Any, null: Any) -> tuple[str, Any, Any]:
        np = self.np
        bad = ~np.isfinite(data)
        null = null | bad
        return NUMBER, np.where(null, 0.0, data), null

    def binary(self, node: Binary) -> tuple[str, Any, Any]:
        np = self.np
        lk, ld, ln = self.node(node.left)
        rk, rd, rn = self.node(node.right)
        if node.op in ("and", "or"):
            self.want(node, lk, BOOL)
            self.want(node, rk, BOOL)
            if node.op == "and":
                known_false = (~ld & ~ln) | (~rd & ~rn)
                null = ~known_false & (ln | rn)
                return BOOL, ~known_false & ~null, null
            known_true = (ld & ~ln) | (rd & ~rn)
            null = ~known_true & (ln | rn)
            return BOOL, known_true, null
        if node.op in ("+", "-", "*", "/"):
            self.want(node, lk, NUMBER)
            self.want(node, rk, NUMBER)
            null = ln | rn
            with np.errstate(all="ignore"):
                if node.op == "+":
                    data = ld + rd
                elif node.op == "-":
                    data = ld - rd
                elif node.op == "*":
                    data = ld * rd
                else:
                    null = null | (rd == 0)
                    data = ld / np.where(rd == 0, 1.0, rd)
            return self.clean(data, null)
        return self.compare(node, (lk, ld, ln), (rk, rd, rn))

    def compare(self, node: Binary, left: tuple[str, Any, Any], right: tuple[str, Any, Any]) -> tuple[str, Any, Any]:
        np, pc = self.np, self.pc
        if left[0] == STRING and right[0] == TIME:
            left = self.time_literal(node, node.left)
        if right[0] == STRING and left[0] == TIME:
            right = self.time_literal(node, node.right)
        lk, ld, ln = left
        rk, rd, rn = right
        if lk != rk:
            raise self.fail(node, f"'{node.op}' compares a {lk} with a {rk}")
        if lk == BOOL and node.op not in ("==", "!="):
            raise self.fail(node, f"'{node.op}' cannot order true/false values")
        if lk == STRING:
            fn = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal,
                  "==": pc.equal, "!=": pc.not_equal}[node.op]
            res = fn(ld, rd)
            null = res.is_null().to_numpy(zero_copy_only=False)
            return BOOL, res.fill_null(False).to_numpy(zero_copy_only=False), null
        op = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
              "==": np.equal, "!=": np.not_equal}[node.op]
        null = ln | rn
        return BOOL, op(ld, rd) & ~null, null

    def time_literal(self, node: Binary, side: Node) -> tuple[str, Any, Any]:
        """A text literal compared with a date/datetime: parsed as ISO-8601 (UTC when it has no offset)."""
        np = self.np
        if not (isinstance(side, Literal) and isinstance(side.value, str)):
            raise self.fail(node, f"'{node.op}' compares a date/datetime with a text column")
        micros = time_literal_micros(side.value)
        if micros is None:
            raise self.fail(side, f"{side.value!r} is not an ISO-8601 date or datetime")
        return TIME, np.full(self.n, float(micros)), np.zeros(self.n, dtype=bool)

    def call(self, node: Call) -> tuple[str, Any, Any]:
        np = self.np
        args = [self.node(a) for a in node.args]
        fn = node.function
        if fn == "is_missing":
            return BOOL, args[0][2].copy(), np.zeros(self.n, dtype=bool)
        if fn == "coalesce":
            (ak, ad, an), (bk, bd, bn) = args
            if ak != bk:
                raise self.fail(node, f"coalesce() needs arguments of one kind, got a {ak} and a {bk}")
            if ak == STRING:
                res = self.pc.coalesce(ad, bd)
                return STRING, res, res.is_null().to_numpy(zero_copy_only=False)
            return ak, np.where(an, bd, ad), an & bn
        for k, _, _ in args:
            self.want(node, k, NUMBER)
        (_, x, xn) = args[0]
        with np.errstate(all="ignore"):
            if fn == "abs":
                return self.clean(np.abs(x), xn)
            if fn == "round":
                digits = int(node.args[1].value) if isinstance(node.args[1], Literal) else 0
                return self.clean(np.round(x, digits), xn)
            if fn in ("min", "max"):
                (_, y, yn) = args[1]
                return self.clean((np.minimum if fn == "min" else np.maximum)(x, y), xn | yn)
            if fn == "log":
                bad = x <= 0
                return self.clean(np.log(np.where(bad, 1.0, x)), xn | bad)
            # sqrt
            bad = x < 0
            return self.clean(np.sqrt(np.where(bad, 0.0, x)), xn | bad)
