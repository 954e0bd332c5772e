"""processing/spark/expressions.py: ``to_spark`` gives ``expressions.evaluate``'s values (nulls, invalid math,
three-valued logic, dates) on the same small frame."""

from __future__ import annotations

import datetime
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from processing import expressions as ex

pytest.importorskip("pyspark")

from processing.spark.expressions import to_spark

pytestmark = pytest.mark.spark

UTC = datetime.UTC
ROWS = [
    # distance, air_time, dept, active, t, d, flag
    (100.0, 50, "HR", True, datetime.datetime(2024, 3, 1, 5, tzinfo=UTC), datetime.date(2024, 3, 1), True),
    (200.0, 0, "IT", False, datetime.datetime(2024, 3, 2, tzinfo=UTC), datetime.date(2024, 3, 2), None),
    (None, 10, None, None, None, None, False),
    (50.0, None, "Ops", True, datetime.datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC), datetime.date(2023, 12, 31),
     None),
    (30.0, 4, "HR", False, datetime.datetime(2024, 3, 1, 4, 59, 59, tzinfo=UTC), datetime.date(2024, 3, 1), True),
    (-4.0, 3, "é", None, datetime.datetime(1969, 12, 31, 23, tzinfo=UTC), datetime.date(1969, 12, 31), False),
]
NAMES = ["distance", "air_time", "dept", "active", "t", "d", "flag"]
KINDS = {"distance": ex.NUMBER, "air_time": ex.NUMBER, "dept": ex.STRING, "active": ex.BOOL, "t": ex.TIME,
         "d": ex.TIME, "flag": ex.BOOL}
EXPRESSIONS = [
    "distance / air_time * 60", "1 + 2 * 3 - distance", "-distance", "abs(distance)", "round(distance / 3, 2)",
    "round(2.5, 0) + round(-0.5, 0)", "round(0.5015, 3)", "round(distance / 7, 3)",
    "round(distance * 3.3, -1)", "min(distance, air_time)", "max(distance, air_time)", "log(distance)",
    "sqrt(distance)", "coalesce(distance, air_time)", "1e308 * distance * 10", "distance / 0",
    'dept == "HR"', 'dept < "I"', "is_missing(dept)", "active and flag", "active or flag", "not active",
    "not flag or is_missing(flag)", 't >= "2024-03-01T05:00:00Z"', 't < "2024-03-01 06:00+01:00"', "t > d",
    'd == "2024-03-01"', "distance >= 50 and air_time != 0", 'coalesce(dept, "none")', "coalesce(t, d)",
    "active == true",
]


@pytest.fixture(scope="module")
def frames(spark: Any) -> Any:
    schema = ("i int, distance double, air_time long, dept string, active boolean, t timestamp, d date, "
              "flag boolean")
    sdf = spark.createDataFrame([(i, *row) for i, row in enumerate(ROWS)], schema)
    pdf = pd.DataFrame(ROWS, columns=NAMES)
    pdf["air_time"] = pdf["air_time"].astype("Int64")
    pdf["dept"] = pdf["dept"].astype("string[pyarrow]")
    pdf["active"] = pdf["active"].astype("boolean")
    pdf["flag"] = pdf["flag"].astype("boolean")
    pdf["t"] = pd.to_datetime(pdf["t"], utc=True)
    pdf["d"] = pd.to_datetime(pdf["d"]).dt.tz_localize("UTC")
    return sdf, pdf


def _norm(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, datetime.datetime) and v.tzinfo is None:
        return v.replace(tzinfo=UTC)  # collected in the session time zone (UTC)
    return v


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_to_spark_matches_evaluate(frames: Any, text: str) -> None:
    sdf, pdf = frames
    expr = ex.parse(text, "x")
    ex.check(expr, KINDS)
    expected = [_norm(v) for v in ex.evaluate(expr, pdf)]
    got = [_norm(r[1]) for r in sdf.select("i", to_spark(expr, KINDS).alias("v")).orderBy("i").collect()]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        if isinstance(e, float) and g is not None:
            assert math.isclose(g, e, rel_tol=1e-12), (text, got, expected)
        else:
            assert g == e, (text, got, expected)
