"""Derived features of issue 14 (docs/processing.md "Config format" ``derived``): missing indicators, expressions,
date parts, quantile bins (edges recorded, reusable), generated bin labels; hand-checked on small data, validation
naming the key path, both modes equal, and quantile edges beyond the row budget within their recorded bound."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from processing import config as config_mod
from processing import features, pipeline
from processing.errors import ConfigError

CSV = """id,dep_delay,distance,air_time,time_hour,day,carrier,age
1,5,100,50,2024-03-01 05:00:00,2024-03-04,UA,20
2,,200,0,2024-03-02T23:30:00Z,2024-12-31,AA,35
3,x,300,,2024-03-03 10:15:00,,UA,
4,-3,400,100,,2023-01-01,DL,61
5,12,500,125,2024-12-31 23:59:59,2024-02-29,UA,45
"""
COLUMNS = {"id": "integer", "dep_delay": "float", "distance": "float", "air_time": "float",
           "time_hour": "datetime", "day": "date", "carrier": "string", "age": "integer"}
DERIVED = [
    {"name": "dep_delay_missing", "kind": "missing_indicator", "source": "dep_delay"},
    {"name": "speed", "kind": "expression", "expression": "distance / air_time * 60"},
    {"name": "dep_hour", "kind": "date_part", "source": "time_hour", "part": "hour"},
    {"name": "weekday", "kind": "date_part", "source": "day", "part": "weekday"},
    {"name": "doy", "kind": "date_part", "source": "day", "part": "dayofyear"},
    {"name": "distance_band", "kind": "bins", "source": "distance", "bins": {"quantiles": 4}},
    {"name": "age_band", "kind": "bins", "source": "age", "bins": {"edges": [0, 30, 60, "inf"]}},
    {"name": "speed_band", "kind": "bins", "source": "speed",
     "bins": {"quantiles": [0, 0.5, 1], "labels": ["slow", "fast"]}},
]
DOC: dict[str, Any] = {"columns": COLUMNS, "imputation": {"dep_delay": {"strategy": "median"}}, "derived": DERIVED}


def _run(tmp_path: Path, doc: dict[str, Any], data: str = CSV, fmt: str = "parquet", mode: str = "memory",
         **settings: Any) -> tuple[dict[str, Any], Path]:
    src = tmp_path / "in.csv"
    if not src.exists():
        src.write_text(data, encoding="utf-8")
    out = tmp_path / f"out-{mode}-{fmt}-{len(list(tmp_path.iterdir()))}"
    pipeline.run([src], out, config_mod.validate(copy.deepcopy(doc)), fmt=fmt, mode=mode, **settings)
    return json.loads((out / "quality" / "metrics.json").read_text()), out


def test_features_hand_checked(tmp_path: Path) -> None:
    metrics, out = _run(tmp_path, DOC)
    table = pq.read_table(out / "transformed" / "transformed.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert (types["dep_delay_missing"], types["speed"], types["dep_hour"], types["weekday"]) == (
        "bool", "double", "int64", "int64")
    rows = table.to_pylist()
    col = {k: [r[k] for r in rows] for k in rows[0]}
    # missing ("") and invalid ("x") before imputation are both flagged; the imputed value (median 5) is in place
    assert col["dep_delay_missing"] == [False, True, True, False, False]
    assert col["dep_delay"] == [5.0, 5.0, 5.0, -3.0, 12.0]
    # 100/50*60 = 120; division by zero and a missing air_time give null; 400/100*60 = 240; 500/125*60 = 240
    assert col["speed"] == [120.0, None, None, 240.0, 240.0]
    assert col["dep_hour"] == [5, 23, 10, None, 23]  # UTC hours
    # 2024-03-04 is a Monday (0), 2024-12-31 a Tuesday, 2023-01-01 a Sunday, 2024-02-29 a Thursday
    assert col["weekday"] == [0, 1, None, 6, 3]
    assert col["doy"] == [64, 366, None, 1, 60]
    # quartiles of 100..500: 100, 200, 300, 400, 500; the first bin holds its lowest edge
    assert col["distance_band"] == ["[100, 200]", "[100, 200]", "(200, 300]", "(300, 400]", "(400, 500]"]
    assert col["age_band"] == ["[0, 30]", "(30, 60]", None, "(60, inf]", "(30, 60]"]
    # speed 120, 240, 240: the median equals the maximum, the two quantile bins merge into one (as
    # pd.qcut(duplicates="drop")): the configured two labels no longer fit, so labels are generated
    assert col["speed_band"] == ["[120, 240]", None, None, "[120, 240]", "[120, 240]"]
    d = metrics["derived"]
    assert d["dep_delay_missing"] == {"kind": "missing_indicator", "source": "dep_delay", "missing": 0, "true": 2}
    assert d["speed"] == {"kind": "expression", "expression": "distance / air_time * 60",
                          "columns": ["distance", "air_time"], "missing": 2}
    assert d["dep_hour"] == {"kind": "date_part", "source": "time_hour", "part": "hour", "missing": 1}
    assert d["distance_band"] == {
        "kind": "bins", "source": "distance", "outside_bins": 0, "missing": 0,
        "counts": {"[100, 200]": 2, "(200, 300]": 1, "(300, 400]": 1, "(400, 500]": 1},
        "quantiles": [0.0, 0.25, 0.5, 0.75, 1.0], "edges": [100.0, 200.0, 300.0, 400.0, 500.0],
        "edges_from": "all", "labels": ["[100, 200]", "(200, 300]", "(300, 400]", "(400, 500]"]}
    assert d["speed_band"]["edges"] == [120.0, 240.0] and d["speed_band"]["labels"] == ["[120, 240]"]
    assert "edges" not in d["age_band"]  # configured edges are not repeated
    assert metrics["numeric"]["speed"] == {"count": 3, "min": 120.0, "max": 240.0, "mean": 200.0}


def test_quantile_edges_match_pandas_qcut_and_can_be_reused(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.lognormal(5, 1, 400), 2)
    values[::7] = values[3]  # repeated values
    data = "id,x\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values))
    doc = {"columns": {"id": "integer", "x": "float"},
           "derived": [{"name": "band", "kind": "bins", "source": "x", "bins": {"quantiles": 5}},
                       {"name": "deciles", "kind": "bins", "source": "x",
                        "bins": {"quantiles": [0, 0.1, 0.5, 0.9, 1]}}]}
    metrics, out = _run(tmp_path, doc, data=data)
    got = pq.read_table(out / "transformed" / "transformed.parquet").column("band").to_pylist()
    expected = pd.qcut(pd.Series(values), 5, duplicates="drop")
    assert metrics["derived"]["band"]["edges"] == pytest.approx(list(expected.cat.categories.right.insert(
        0, values.min())), rel=1e-12)
    # the same bins (pd.qcut's codes), under our labels
    labels = metrics["derived"]["band"]["labels"]
    assert [labels.index(g) for g in got] == list(expected.cat.codes)
    # a later batch reuses the recorded edges and labels: the same bins
    doc2 = {"columns": doc["columns"], "derived": [{"name": "band", "kind": "bins", "source": "x", "bins": {
        "edges": metrics["derived"]["band"]["edges"], "labels": labels}}]}
    _, out2 = _run(tmp_path, doc2)
    assert pq.read_table(out2 / "transformed" / "transformed.parquet").column("band").to_pylist() == got


def test_quantile_bins_of_an_all_missing_or_constant_column(tmp_path: Path) -> None:
    data = "id,x,y\n1,,7\n2,,7\n3,,7\n"
    doc = {"columns": {"id": "integer", "x": "float", "y": "float"},
           "derived": [{"name": "bx", "kind": "bins", "source": "x", "bins": {"quantiles": 4}},
                       {"name": "by", "kind": "bins", "source": "y", "bins": {"quantiles": 4, "outside": "other"}}]}
    metrics, out = _run(tmp_path, doc, data=data)
    rows = pq.read_table(out / "transformed" / "transformed.parquet").to_pylist()
    assert [(r["bx"], r["by"]) for r in rows] == [(None, "other")] * 3
    assert metrics["derived"]["bx"]["edges"] == [] and metrics["derived"]["by"]["edges"] == [7.0]
    assert metrics["derived"]["by"]["outside_bins"] == 3


def test_generated_labels() -> None:
    assert features.generated_labels((0, 50000, 70000.5, math.inf), "right", True) == (
        "[0, 50000]", "(50000, 70000.5]", "(70000.5, inf]")
    assert features.generated_labels((-math.inf, 0, 1e3), "right", False) == ("(-inf, 0]", "(0, 1000]")
    assert features.generated_labels((0.25, 0.5, 1), "left", True) == ("[0.25, 0.5)", "[0.5, 1)")


def test_bins_without_labels_hand_checked(tmp_path: Path) -> None:
    doc = {"columns": COLUMNS, "derived": [
        {"name": "b", "kind": "bins", "source": "distance", "bins": {"edges": [0, 250, 500], "closed": "left",
                                                                     "outside": "beyond"}}]}
    _, out = _run(tmp_path, doc)
    assert pq.read_table(out / "transformed" / "transformed.parquet").column("b").to_pylist() == [
        "[0, 250)", "[0, 250)", "[250, 500)", "[250, 500)", "beyond"]


def test_features_over_extracted_fields_and_earlier_features(tmp_path: Path) -> None:
    data = 'id,profile\n1,"{""km"": 10}"\n2,"{""km"": ""x""}"\n3,"{}"\n4,"{""km"": 30}"\n'
    doc = {"columns": {"id": "integer", "profile": "json"},
           "json_columns": {"profile": {"fields": {"km": "km"}}},
           "derived": [{"name": "km_len", "kind": "string_length", "source": "km"},
                       {"name": "km_missing", "kind": "missing_indicator", "source": "km"},
                       {"name": "twice", "kind": "expression", "expression": "km_len * 2 + id"},
                       {"name": "band", "kind": "bins", "source": "twice", "bins": {"quantiles": 2}}]}
    for mode in ("memory", "streaming"):
        metrics, out = _run(tmp_path, doc, data=data, mode=mode)
        rows = pq.read_table(out / "transformed" / "transformed.parquet").to_pylist()
        assert [r["km_missing"] for r in rows] == [False, False, True, False]
        assert [r["twice"] for r in rows] == [5.0, 4.0, None, 8.0]
        # median of 4, 5, 8 is 5: [4, 5], (5, 8]
        assert [r["band"] for r in rows] == ["[4, 5]", "[4, 5]", None, "(5, 8]"]
        assert metrics["derived"]["band"]["edges"] == [4.0, 5.0, 8.0]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_both_modes_give_the_same_outputs(tmp_path: Path, fmt: str) -> None:
    m1, memory = _run(tmp_path, DOC, fmt=fmt, mode="memory")
    m2, stream = _run(tmp_path, DOC, fmt=fmt, mode="streaming", block_size=64)
    for key in ("derived", "numeric", "columns", "imputation"):
        assert m1[key] == m2[key], key
    for folder in ("cleaned", "transformed"):
        a, b = (p / folder / f"{folder}.{fmt}" for p in (memory, stream))
        assert (a.read_bytes() == b.read_bytes()) if fmt == "csv" else pq.read_table(a).equals(pq.read_table(b))


def test_streaming_quantile_edges_beyond_the_row_budget_are_within_the_recorded_bound(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 30_000
    values = rng.normal(100, 15, n).round(3)
    data = "id,x\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values))
    doc = {"columns": {"id": "integer", "x": "float"},
           "derived": [{"name": "band", "kind": "bins", "source": "x", "bins": {"quantiles": 4}}]}
    exact, _ = _run(tmp_path, doc, data=data, mode="streaming", max_rows=n)
    sampled, _ = _run(tmp_path, doc, data=data, mode="streaming", max_rows=3_000)
    assert exact["derived"]["band"]["edges_from"] == "all" and exact["statistics_sampling"] is None
    assert exact["derived"]["band"]["edges"] == pytest.approx(list(np.quantile(values, [0, .25, .5, .75, 1])),
                                                               rel=1e-12)
    record = sampled["statistics_sampling"]["bins"]["band"]
    assert sampled["derived"]["band"]["edges_from"] == "sample"
    assert 2_500 < record["values"] < 3_500 and record["rank_error"] == pytest.approx(
        math.sqrt(math.log(2 / 1e-6) / (2 * record["values"])))
    ordered = np.sort(values)
    for q, edge in zip([0.25, 0.5, 0.75], sampled["derived"]["band"]["edges"][1:-1], strict=True):
        rank = np.searchsorted(ordered, edge) / n  # the edge's rank among all values
        assert abs(rank - q) <= record["rank_error"], (q, edge, rank)
    # every row is still binned (values beyond the sample's extremes fall outside: counted)
    total = sum(sampled["derived"]["band"]["counts"].values()) + sampled["derived"]["band"]["outside_bins"]
    assert total == n


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "m", "kind": "missing_indicator", "source": "nope"}, "derived[0].source: unknown column 'nope'"),
    ({"name": "m", "kind": "missing_indicator", "source": "age", "part": "year"},
     "derived[0].part: unknown key for kind 'missing_indicator'"),
    ({"name": "e", "kind": "expression", "expression": "distance / "},
     "derived[0].expression: expected a number, a column, a string or '(', got the end of the expression"),
    ({"name": "e", "kind": "expression", "expression": "carrier * 2"},
     "derived[0].expression: '*' needs numbers, got 'carrier' (string) at position 9"),
    ({"name": "e", "kind": "expression", "expression": "age > 3"},
     "derived[0].expression: an expression feature must give a number, this one gives a boolean"),
    ({"name": "e", "kind": "expression", "expression": "speed + 1"}, "derived[0].expression: unknown column 'speed'"),
    ({"name": "e", "kind": "expression"}, "derived[0].expression: expected an expression string, got NoneType"),
    ({"name": "p", "kind": "date_part", "source": "time_hour", "part": "second"},
     "derived[0].part: expected one of year, month, day, weekday, hour, minute, dayofyear, got 'second'"),
    ({"name": "p", "kind": "date_part", "source": "day", "part": "hour"},
     "derived[0].part: 'hour' needs a datetime column, 'day' is a date"),
    ({"name": "p", "kind": "date_part", "source": "age", "part": "year"},
     "derived[0].source: date_part needs a date or datetime column, 'age' is integer"),
    ({"name": "b", "kind": "bins", "source": "age", "bins": {"quantiles": 1}},
     "derived[0].bins.quantiles: expected at least 2 quantiles, got 1"),
    ({"name": "b", "kind": "bins", "source": "age", "bins": {"quantiles": [0.1, 0.5, 1]}},
     "derived[0].bins.quantiles: probabilities must start at 0 and end at 1"),
    ({"name": "b", "kind": "bins", "source": "age", "bins": {"quantiles": [0, 0.5, 0.5, 1]}},
     "derived[0].bins.quantiles[2]: probabilities must be strictly increasing"),
    ({"name": "b", "kind": "bins", "source": "age", "bins": {"quantiles": 4, "edges": [0, 1]}},
     'derived[0].bins: expected exactly one of "edges" or "quantiles"'),
    ({"name": "b", "kind": "bins", "source": "age", "bins": {"quantiles": 4, "labels": ["a", "b"]}},
     "derived[0].bins.labels: expected 4 labels for 4 quantile bins, got 2"),
    ({"name": "b", "kind": "bins", "source": "age", "bins": {"quantiles": "4"}},
     "derived[0].bins.quantiles: expected a number of bins (an integer >= 2) or a list of probabilities, got str"),
    ({"name": "b", "kind": "bins", "source": "carrier", "bins": {"quantiles": 4}},
     "derived[0].source: bins need a numeric column, 'carrier' is string"),
    ({"name": "b", "kind": "bins", "source": "age", "bins": {"edges": [0, 10], "outside": "[0, 10]"}},
     "derived[0].bins.outside: label '[0, 10]' is already a bin label"),
    ({"name": "age", "kind": "missing_indicator", "source": "age"}, "derived[0].name: 'age' collides"),
    ({"name": "s", "kind": "string_length", "source": "day"},
     "derived[0].source: string_length needs a string column, 'day' is date"),
])
def test_validation_errors_name_the_key_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.validate({"columns": COLUMNS, "derived": [spec]})
    assert str(err.value).startswith(message)


def test_group_statistics_accept_numeric_features() -> None:
    cfg = config_mod.validate({"columns": COLUMNS, "derived": DERIVED, "group_statistics": [
        {"name": "g", "group_by": ["carrier", "dep_delay_missing"], "aggregations": {"speed": ["mean", "max"],
                                                                                      "dep_hour": ["median"]}}]})
    assert cfg.group_statistics[0].aggregations[0] == ("speed", ("mean", "max"))
