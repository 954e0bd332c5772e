"""processing/expressions.py: the parser (errors name the key path, the position and the expression), the static
kind check against column types, and vectorised evaluation on small hand-checked frames."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from processing import expressions as ex
from processing.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "distance": [100.0, 200.0, np.nan, 50.0, 30.0],
        "air_time": pd.array([50, 0, 10, None, 4], dtype="Int64"),
        "dept": pd.array(["HR", "IT", None, "Ops", "HR"], dtype="string[pyarrow]"),
        "cat": pd.Categorical(["b", "a", None, "b", "c"]),
        "active": pd.array([True, False, None, True, False], dtype="boolean"),
        "t": pd.Series(pd.to_datetime(["2024-03-01 05:00:00", "2024-03-02 00:00:00", None, "2023-12-31 23:59:59",
                                       "2024-03-01 04:59:59"]), dtype="datetime64[ns]").dt.tz_localize("UTC"),
        "d": pd.Series(pa.array([19783, 19784, None, 19722, 19783], type=pa.date32()),
                       dtype=pd.ArrowDtype(pa.date32())),
        "col name": [1.0, 2.0, 3.0, 4.0, 5.0],
    })


def values(text: str, data: pd.DataFrame | None = None) -> list[Any]:
    out = ex.evaluate(ex.parse(text, "x"), frame() if data is None else data)
    return [None if pd.isna(v) else (bool(v) if isinstance(v, (bool, np.bool_)) else v) for v in out]


def test_arithmetic_hand_checked_with_nulls_and_division_by_zero() -> None:
    # 100/50*60 = 120; 200/0 -> null; null distance -> null; null air_time -> null; 30/4*60 = 450
    assert values("distance / air_time * 60") == [120.0, None, None, None, 450.0]
    out = ex.evaluate(ex.parse("distance / air_time * 60", "x"), frame())
    assert out.dtype == "float64" and list(out.index) == list(range(5))


@pytest.mark.parametrize(("text", "expected"), [
    ("1 + 2 * 3", 7.0), ("(1 + 2) * 3", 9.0), ("2 - 3 - 4", -5.0), ("8 / 4 / 2", 1.0), ("-2 * 3 + 10 / 4", -3.5),
    ("- -2", 2.0), ("2 * -3", -6.0), ("1.5e2 + .5", 150.5), ("abs(-3)", 3.0), ("min(2, 3) + max(2, 3)", 5.0),
    ("round(2.5, 0)", 2.0), ("round(3.5, 0)", 4.0), ("round(1234.5678, 2)", 1234.57), ("round(1250, -2)", 1200.0),
    ("sqrt(16)", 4.0), ("log(1)", 0.0), ("coalesce(1, 2)", 1.0),
])
def test_precedence_associativity_and_functions(text: str, expected: float) -> None:
    assert values(text) == [expected] * 5


@pytest.mark.parametrize("text", ["log(0)", "log(-1)", "sqrt(-1)", "1e308 * 10", "1 / 0", "0 / 0", "-1e308 * 10",
                                  "1e308 * 10 - 1e308 * 10"])
def test_invalid_math_is_null_never_inf_or_nan(text: str) -> None:
    out = ex.evaluate(ex.parse(text, "x"), frame())
    assert out.isna().all() and not np.isinf(out.to_numpy(dtype="float64", na_value=0.0)).any()


def test_functions_propagate_nulls_and_coalesce_picks_the_first_present() -> None:
    assert values("min(distance, air_time)") == [50.0, 0.0, None, None, 4.0]
    assert values("max(distance, air_time)") == [100.0, 200.0, None, None, 30.0]
    assert values("coalesce(distance, air_time)") == [100.0, 200.0, 10.0, 50.0, 30.0]
    assert values("coalesce(air_time, -1)") == [50.0, 0.0, 10.0, -1.0, 4.0]
    assert values("sqrt(air_time)") == [math.sqrt(50), 0.0, math.sqrt(10), None, 2.0]
    assert values("`col name` * 2") == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_comparisons_text_and_missing() -> None:
    assert values('dept == "HR"') == [True, False, None, False, True]
    assert values('dept != "HR"') == [False, True, None, True, False]
    assert values('dept < "I"') == [True, False, None, False, True]
    assert values('cat == "b"') == [True, False, None, True, False]  # categorical read as text
    assert values("is_missing(dept)") == [False, False, True, False, False]
    assert values("is_missing(distance / air_time)") == [False, True, True, True, False]
    assert values("distance >= 100") == [True, True, None, False, False]
    assert values("active == true") == [True, False, None, True, False]
    assert values('coalesce(dept, "none") == "none"') == [False, False, True, False, False]
    out = ex.evaluate(ex.parse('dept == "HR"', "x"), frame())
    assert str(out.dtype) == "boolean"


def test_three_valued_logic_truth_table() -> None:
    # every pair of (true, false, null): SQL/Kleene logic, as Spark's
    t, f, n = True, False, None
    a = [t, t, t, f, f, f, n, n, n]
    b = [t, f, n, t, f, n, t, f, n]
    data = pd.DataFrame({"a": pd.array(a, dtype="boolean"), "b": pd.array(b, dtype="boolean")})
    assert values("a and b", data) == [t, f, n, f, f, f, n, f, n]
    assert values("a or b", data) == [t, t, t, t, f, n, t, n, n]
    assert values("not a", data) == [f, f, f, t, t, t, n, n, n]
    assert values("not a or is_missing(a)", data) == [f, f, f, t, t, t, t, t, t]


def test_dates_and_datetimes_compare_in_utc() -> None:
    assert values('t >= "2024-03-01T05:00:00Z"') == [True, True, None, False, False]
    assert values('t >= "2024-03-01 06:00+01:00"') == [True, True, None, False, False]  # the same instant
    assert values('t < "2024-03-01"') == [False, False, None, True, False]
    # d = 2024-03-01, 2024-03-02, null, 2023-12-31, 2024-03-01 (days since the epoch)
    assert values('d == "2024-03-01"') == [True, False, None, False, True]
    assert values("t > d") == [True, False, None, True, True]
    out = ex.evaluate(ex.parse("coalesce(t, d)", "x"), frame())
    assert str(out.dtype) == "datetime64[ns, UTC]" and str(out[2]) == "NaT"


def test_parse_records_columns_in_order_and_boolean_results() -> None:
    e = ex.parse("distance / air_time + `col name` - distance", "derived[0].expression")
    assert e.columns == ("distance", "air_time", "col name") and not e.is_boolean
    assert ex.parse("a > 1 and not is_missing(b)", "r").is_boolean
    assert ex.parse("coalesce(a > 1, false)", "r").is_boolean
    assert not ex.parse("a", "r").is_boolean
    assert ex.parse("abs", "r").columns == ("abs",)  # a name without '(' is a column


@pytest.mark.parametrize(("text", "message"), [
    ("distance / ", "expected a number, a column, a string or '(', got the end of the expression at position 12"),
    ('a + "x"', "'+' needs numbers, got a string at position 3"),
    ("1 < 2 < 3", "comparisons cannot be chained (use 'and') at position 7"),
    ("foo(1)", "unknown function 'foo' (allowed: abs, round, min, max, log, sqrt, coalesce, is_missing) at position 1"),
    ("`abc", "unterminated backquoted column name at position 1"),
    ('"abc', "unterminated string literal at position 1"),
    ("(a", "expected ')', got the end of the expression at position 3"),
    ("a and 1", "'and' needs true/false operands, got a number at position 3"),
    ("not 2", "'not' needs a true/false operand, got a number at position 1"),
    ("round(a, b)", "round() needs a whole-number literal as its second argument at position 1"),
    ("round(a, 1.5)", "round() needs a whole-number literal as its second argument at position 1"),
    ("a ? b", "unexpected character '?' at position 3"),
    ("", "empty expression at position 1"),
    ("abs(1, 2)", "abs() takes 1 argument, got 2 at position 1"),
    ("a b", "expected an operator or the end, got 'b' at position 3"),
    ("true < false", "'<' cannot order true/false values (use == or !=) at position 6"),
    ('1 == "1"', "'==' compares a number with a string at position 3"),
    ("``", "empty backquoted column name at position 1"),
    ("-(a > 1)", "'-' needs a number, got a boolean at position 1"),
    ('coalesce(1, "a")', "coalesce() needs arguments of one kind, got a number and a string at position 1"),
    ("(" * 70 + "1" + ")" * 70, "nested deeper than 64 levels"),
])
def test_parse_errors_name_the_path_the_position_and_the_expression(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ex.parse(text, "derived[2].expression")
    assert str(err.value).startswith(f"derived[2].expression: {message}")
    if "nested" not in message:
        assert str(err.value).endswith(f"in expression {text!r}")


def test_parse_refuses_non_text() -> None:
    with pytest.raises(ConfigError, match=r"^rules\[0\]\.expression: expected an expression string, got int$"):
        ex.parse(3, "rules[0].expression")  # type: ignore[arg-type]


KINDS = {"distance": ex.NUMBER, "dept": ex.STRING, "active": ex.BOOL, "t": ex.TIME}


@pytest.mark.parametrize(("text", "kind"), [
    ("distance * 2", ex.NUMBER), ('dept == "HR"', ex.BOOL), ("active", ex.BOOL), ('coalesce(dept, "x")', ex.STRING),
    ('t > "2024-01-01"', ex.BOOL), ("coalesce(t, t)", ex.TIME),
])
def test_check_returns_the_kind(text: str, kind: str) -> None:
    assert ex.check(ex.parse(text, "x"), KINDS) == kind


@pytest.mark.parametrize(("text", "message"), [
    ("speed * 2", "unknown column 'speed' (declare it, extract it or derive it earlier) at position 1"),
    ("dept * 2", "'*' needs numbers, got 'dept' (string) at position 6"),
    ("abs(active)", "abs() needs numbers, got 'active' (boolean) at position 1"),
    ("distance and active", "'and' needs true/false values, got 'distance' (number) at position 10"),
    ("dept > 3", "'>' compares a string with a number at position 6"),
    ('t > "yesterday"', "'yesterday' is not an ISO-8601 date or datetime at position 5"),
    ("t > dept", "'>' compares a date/datetime with a text column at position 3"),
    ("not dept", "'not' needs a boolean, got 'dept' (string) at position 1"),
])
def test_check_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ex.check(ex.parse(text, "derived[0].expression"), KINDS)
    assert str(err.value) == f"derived[0].expression: {message} in expression {text!r}"


def test_evaluate_refuses_absent_columns_and_wrong_kinds() -> None:
    with pytest.raises(ConfigError, match=r"^x: unknown column 'nope' at position 1"):
        ex.evaluate(ex.parse("nope + 1", "x"), frame())
    with pytest.raises(ConfigError, match=r"^x: expected a number here, got a string at position 6"):
        ex.evaluate(ex.parse("dept * 2", "x"), frame())


def test_time_literals() -> None:
    assert ex.time_literal_micros("1970-01-01") == 0
    assert ex.time_literal_micros("1970-01-01T00:00:01.5Z") == 1_500_000
    assert ex.time_literal_micros("1970-01-01T01:00:00+01:00") == 0
    assert ex.time_literal_micros("2024-03-01 05:00") == 1_709_269_200_000_000
    assert ex.time_literal_micros("1.3.2024") is None


def test_parser_imports_only_the_standard_library() -> None:
    code = ("import sys\nfrom processing import expressions\nexpressions.check(expressions.parse('a + 1', 'x'), "
            "{'a': 'number'})\nbad = sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules)\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
