"""The Spark engine (``--engine spark``, processing/spark) against the default engine: the same counts, rejected rows
and reasons, duplicates, bins, imputation values and output rows; group statistics within 1e-9 relative; the same
drift profile and drift scores (floats within 1e-9 relative). One local[2] SparkSession for the whole test session.

Also: the default engine never imports pyspark, the Spark engine imports none of the default engine's pyarrow
modules and runs with pyarrow blocked (the SageMaker Spark image has none), and what it cannot match fails loudly."""

from __future__ import annotations

import ast
import copy
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from processing import config as config_mod
from processing import io, metricsdoc, pipeline, rawfile

pytest.importorskip("pyspark")

from processing import spark as spark_engine
from processing.spark import rules as spark_rules

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DOC = json.loads((ROOT / "processing" / "configs" / "default.json").read_text(encoding="utf-8"))
HEADER = "id,name,age,salary,profile,department"
REL = 1e-9
# Differ by nature between runs or engines: times, library names, the mode label.
VOLATILE = {"processing_seconds", "timestamp", "created", "libraries", "mode", "library_drift"}

pytestmark = pytest.mark.spark


def _run_both(spark: Any, inputs: list[Path], out: Path, doc: dict[str, Any] | None = None, fmt: str = "parquet",
              baseline: Path | None = None, **settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = config_mod.validate(copy.deepcopy(doc if doc is not None else DEFAULT_DOC))
    default = pipeline.run(inputs, out / "default", cfg, fmt=fmt, baseline=baseline).metrics
    default = json.loads((out / "default" / "quality" / "metrics.json").read_text(encoding="utf-8"))
    from processing.options import RunOptions

    spark_engine.run(inputs, out / "spark", cfg, fmt=fmt, baseline=baseline, spark=spark,
                     options=RunOptions(**settings))
    other = json.loads((out / "spark" / "quality" / "metrics.json").read_text(encoding="utf-8"))
    return default, other


def assert_same(a: Any, b: Any, path: str = "", rel: float = REL) -> None:
    """Equal documents: same keys, equal values; floats within ``rel`` relative (summation order differs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{path}: keys differ: {sorted(set(a) ^ set(b))}"
        for k in a:
            if k not in VOLATILE:
                assert_same(a[k], b[k], f"{path}.{k}", rel)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            assert_same(x, y, f"{path}[{i}]", rel)
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{path}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=rel, abs_tol=1e-12), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _rows(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    # The default engine writes bins as Arrow dictionaries (ordered categories), Spark as strings: compare values.
    return [dict(row.items()) for row in table.to_pylist()]


def _data_file(out: Path, folder: str) -> Path:
    """``<folder>/<folder>.parquet``, or its quarantined copy when the gate failed."""
    path = out / folder / f"{folder}.parquet"
    return path if any((out / folder).iterdir()) else out / "quarantine" / folder / f"{folder}.parquet"


def assert_same_outputs(out: Path) -> None:
    """Every output of the two engines: metrics, row files, statistics, profile, drift, gate."""
    a, b = out / "default", out / "spark"
    ma = json.loads((a / "quality" / "metrics.json").read_text())
    mb = json.loads((b / "quality" / "metrics.json").read_text())
    assert_same(ma, mb)
    for column, info in ma["imputation"].items():  # medians, most frequent values, constants: identical
        if info["strategy"] != "mean":
            assert (info["value"], info["computed"]) == (mb["imputation"][column]["value"],
                                                         mb["imputation"][column]["computed"]), column
    for folder in ("cleaned", "transformed", "rejected"):
        src_a, src_b = _data_file(a, folder), _data_file(b, folder)
        assert ("quarantine" in src_a.parts) == ("quarantine" in src_b.parts), folder  # both quarantined, or neither
        ta, tb = pq.read_table(src_a), pq.read_table(src_b)
        assert ta.column_names == tb.column_names, folder
        for name in ta.column_names:
            ca, cb = ta.column(name), tb.column(name)
            if str(ca.type).startswith("dictionary") or str(ca.type) == "large_string":
                ca = ca.cast("string")  # Parquet stores both as UTF-8 strings; Arrow metadata differs
            assert ca.type == cb.type, f"{folder}.{name}: {ca.type} != {cb.type}"
        # Exact but for cells filled with a mean (summation order: within 1e-12 relative).
        assert_same(_rows(src_a), _rows(src_b), folder, rel=1e-12)
    stats_a = _data_file(a, "statistics").parent
    stats_b = _data_file(b, "statistics").parent
    assert sorted(p.name for p in stats_a.iterdir()) == sorted(p.name for p in stats_b.iterdir())
    for stats in sorted(stats_a.glob("*.csv")):  # same text but for the last digits of means and deviations
        text_a, text_b = stats.read_text().splitlines(), (stats_b / stats.name).read_text().splitlines()
        assert text_a[0] == text_b[0] and len(text_a) == len(text_b), stats.name
        for line_a, line_b in zip(text_a[1:], text_b[1:], strict=False):
            cells = [(x, y) for x, y in zip(line_a.split(","), line_b.split(","), strict=False) if x != y]
            assert all(math.isclose(float(x), float(y), rel_tol=REL) for x, y in cells), (line_a, line_b)
    for stats in sorted(stats_a.glob("*.json")):
        assert_same(json.loads(stats.read_text()), json.loads((stats_b / stats.name).read_text()))
    for name in ("profile.json", "drift.json", "gate.json"):
        assert_same(json.loads((a / "quality" / name).read_text()), json.loads((b / "quality" / name).read_text()))


def test_reference_data(spark: Any, tmp_path: Path) -> None:
    data = tmp_path / "ref.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "3000", "--seed", "42", "--out", str(data),
                    "--invalid-rate", "0.01"], check=True, cwd=ROOT)
    default, _ = _run_both(spark, [data], tmp_path / "first")
    assert default["summary"]["rows_in"] == 3000 and default["summary"]["duplicate_rows_key"] > 0
    assert default["json"]["profile"]["malformed"] > 0 and default["summary"]["invalid_values"] > 0
    assert_same_outputs(tmp_path / "first")
    # Drift against a baseline: the default engine's profile of another sample, scored by both engines.
    other_data = tmp_path / "other.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "2000", "--seed", "5", "--out",
                    str(other_data)], check=True, cwd=ROOT)
    baseline = tmp_path / "first" / "default" / "quality" / "profile.json"
    default, _other = _run_both(spark, [other_data], tmp_path / "drift", baseline=baseline)
    assert default["drift"]["status"] == "computed"
    assert_same_outputs(tmp_path / "drift")


def test_rules_on_extracted_json_fields(spark: Any, tmp_path: Path) -> None:
    """Rules read extracted JSON fields (the reference data's email, address) as the default engine extracts them."""
    data = tmp_path / "ref.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "1500", "--seed", "3", "--out", str(data),
                    "--invalid-rate", "0.01"], check=True, cwd=ROOT)
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["rules"] = [
        {"name": "email_a_m", "type": "pattern", "column": "email", "pattern": "^[a-m]", "action": "reject"},
        {"name": "address_len", "type": "length", "column": "address", "max": 18, "action": "warn"},
        {"name": "phone_present", "type": "completeness", "column": "phone", "min_share": 0.99, "action": "warn"},
        {"name": "email_or_phone", "type": "expression", "expression": "not (is_missing(email) and age > 40)",
         "action": "warn"},
        {"name": "name_dept", "type": "unique", "columns": ["name", "department"], "action": "reject"}]
    default, other = _run_both(spark, [data], tmp_path / "out", doc)
    assert all(r["violations"] for r in default["rules"].values()), default["rules"]
    assert other["rules"] == default["rules"] and other["rows"] == default["rows"]
    assert_same_outputs(tmp_path / "out")


MESSY_A = ("\ufeff" + HEADER + "\n"
           + '1,"Smith, ""Jr"" \nJohn",30,50000,"{""address"": ""a, b"", ""phone"": 5}",HR\n'
           + "2,Ann,abc,60000,{bad json,IT\n"
           + '3,Bob,40,not a number,"[1, 2]",IT\n'
           + "4,Ann,abc,60000,{bad json,IT\n"
           + ",NoId,20,1000,,HR\n"
           + "x7,BadId,20,1000,,HR\n"
           + "5,Too,many,fields,here,x,y\n"
           + '6,Eve,,,"{""address"": null, ""email"": ""e@x""}",\n'
           + '7,Eve,,,"{""address"": null, ""email"": ""e@x""}",\n'
           + '8,Gus,55.5,1e3,"{""address"": ""\u00e9"", ""address"": ""last""}",NA\n'
           + '9,Hal, 41 ,"70000","""just a string""",Sales\n'
           + '10,Ivy,25,100000,"{""a"":1} trailing",Sales\n'
           + '11,Jo,35,0,"{""address"": [1, 2.0, 1e3], ""phone"": true, ""email"": {""x"": null}}",HR\n'
           + "\n"
           + "12,Kim,inf,-5,{},HR\n"
           + "13,Lee,7.0,+12.5e1,\"{'address': 1}\",\"\"\n"
           + '14,Max,1,2,"{""address"": NaN, ""email"": ""\\u00e9""}",n/a\n'
           + "15,Ned,60,1,{\"address\": 1},HR\n").replace("\n", "\r\n").replace(" \r\nJohn", " \nJohn")
MESSY_B = ("department,profile,salary,age,name,id\n"
            "IT,,50000,30,Ann,abc\n"
            "IT,{bad json,60000,abc,Ann,20\n"
            "HR,{},,,Zed,21\n")


def test_messy_files(spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_bytes(MESSY_A.encode("utf-8"))
    (folder / "b.csv").write_bytes(MESSY_B.encode("utf-8"))
    default, _ = _run_both(spark, rawfile.list_inputs(folder), tmp_path / "out")
    s = default["summary"]
    assert s["rows_rejected"] >= 4 and s["duplicate_rows_key"] >= 3 and s["malformed_json"] >= 4
    assert default["inputs"][0]["parse_errors"] == 1
    assert_same_outputs(tmp_path / "out")
    # Dropping key duplicates: the same rows go to rejected/ (the later copies, by file then line).
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["duplicates"]["drop"] = "key"
    default, _ = _run_both(spark, rawfile.list_inputs(folder), tmp_path / "drop", doc)
    assert default["duplicates"]["dropped"] >= 3
    assert_same_outputs(tmp_path / "drop")


def test_every_row_rejected(spark: Any, tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text(HEADER + "\nx,a,1,1,{},HR\n,b,2,2,{},IT\n1,too,many,fields,{},HR,x\n", encoding="utf-8")
    default, _ = _run_both(spark, [data], tmp_path / "out")
    assert default["summary"]["rows_out"] == 0 and default["summary"]["rows_rejected"] == 3
    assert_same_outputs(tmp_path / "out")


OTHER_DOC = {
    "description": "Store sales: other columns, a config of its own",
    "columns": {"sku": "integer", "store": "string", "qty": "integer", "price": "float", "meta": "json",
                "region": "string"},
    "required_columns": ["sku", "store", "qty"],
    "reject_rows_missing": ["sku"],
    "missing_values": ["", "-", "?"],
    "imputation": {"qty": {"strategy": "median"}, "price": {"strategy": "mean"},
                   "region": {"strategy": "most_frequent"}, "store": {"strategy": "constant", "value": "none"}},
    "json_columns": {"meta": {"fields": {"color": "color", "size": ["dims", "size"], "tag": "tag"}}},
    "derived": [
        {"name": "store_len", "kind": "string_length", "source": "store"},
        {"name": "price_band", "kind": "bins", "source": "price",
         "bins": {"edges": [0, 10, 100, 1000], "labels": ["cheap", "mid", "dear"], "closed": "left",
                  "include_lowest": False, "outside": "other"}},
        {"name": "qty_band", "kind": "bins", "source": "qty", "bins": {"edges": ["-inf", 2, 5, "inf"],
                                                                      "labels": ["few", "some", "many"]}},
    ],
    "group_statistics": [
        {"name": "by_region", "group_by": ["region"],
         "aggregations": {"qty": ["sum", "median", "count", "size", "nunique", "min", "max", "missing", "p10"],
                          "price": ["mean", "median", "std", "min", "max", "sum", "p01", "p90", "missing"],
                          "store_len": ["mean", "p75"]}},
        {"name": "by_band", "group_by": ["price_band", "region"], "values": "imputed",
         "aggregations": {"qty": ["median", "mean", "p25", "missing", "count"]}},
    ],
    "duplicates": {"key_columns": ["store", "qty", "price"], "drop": "exact"},
    "quality_thresholds": {"max_rejected_rate": 0.5, "min_rows_out": 1},
    # issue 14's rules: every row-level type, each action, unique before the exact-duplicate drop
    "rules": [
        {"name": "qty_range", "type": "range", "column": "qty", "min": 0, "max": 8, "action": "reject"},
        {"name": "regions", "type": "allowed_values", "column": "region", "values": ["eu", "us"], "action": "warn"},
        {"name": "store_code", "type": "pattern", "column": "store", "pattern": "^[a-z]+(-[0-9]+)?$",
         "action": "warn", "max_share": 0.5},
        {"name": "store_len", "type": "length", "column": "store", "max": 5, "action": "warn", "alarm": True},
        {"name": "sku_unique", "type": "unique", "columns": ["sku"], "action": "reject"},
        {"name": "store_qty", "type": "unique", "columns": ["store", "qty"], "action": "warn"},
        {"name": "cheap", "type": "expression", "expression": "price < 1000 or is_missing(price)", "action": "warn"},
        {"name": "prices", "type": "allowed_values", "column": "price", "values": [10, 100, 0], "action": "warn"},
        {"name": "price_present", "type": "completeness", "column": "price", "min_share": 0.9, "action": "warn"},
        {"name": "enough", "type": "row_count", "min": 10, "max": 100000, "action": "fail"},
    ],
}


def _other_dataset(path: Path, rows: int, seed: int) -> None:
    rnd = random.Random(seed)
    lines = ["region,sku,store,qty,price,meta,extra"]
    for i in range(rows):
        sku = rnd.choice([str(i), str(i), str(i), "", "?", f"s{i}"]) if rnd.random() < 0.05 else str(i)
        store = rnd.choice(["north-1", "south-22", "east", "w", "-", "", "zentral-\u00fc"])
        qty = rnd.choice([str(rnd.randint(0, 9)), "", "many", "3.0", " 4 ", "2.5"])
        price = rnd.choice([f"{rnd.uniform(0, 1200):.2f}", "", "?", "\"1,5\"", "10", "100", "0", "1e2", "-3"])
        meta = rnd.choice(['"{""color"": ""red"", ""dims"": {""size"": 3}}"', '"{""color"": null, ""tag"": [1]}"',
                           '"{""dims"": ""flat""}"', "not json", "", '"[""x""]"', '"{""tag"": ""t"", ""tag"": 2}"'])
        region = rnd.choice(["eu", "us", "apac", "", "-"])
        lines.append(",".join([region, sku, store, qty, price, meta, rnd.choice(["a", "b", ""])]))
        if rnd.random() < 0.05:  # an exact copy of the row, and a key copy
            lines.append(lines[-1])
            parts = lines[-1].split(",")
            parts[1] = str(rows + i)
            lines.append(",".join(parts))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("unique_action", ["reject", "warn"])
def test_other_dataset_with_its_own_config(spark: Any, tmp_path: Path, unique_action: str) -> None:
    data = tmp_path / "sales.csv"
    _other_dataset(data, 600, seed=3)
    doc = copy.deepcopy(OTHER_DOC)
    doc["rules"][4]["action"] = unique_action
    default, other = _run_both(spark, [data], tmp_path / "out", doc)
    assert default["derived"]["price_band"]["outside_bins"] > 0
    if unique_action == "reject":
        # the exact copies repeat their sku: sku_unique rejects them before the duplicate drop, which finds none
        assert default["duplicates"]["dropped"] == 0 and default["summary"]["duplicate_rows_key"] > 0
        assert default["rows"]["rejected_by_reason"]["rule:sku_unique"] > 0
    else:
        assert default["duplicates"]["dropped"] > 0 and "rule:sku_unique" not in default["rows"]["rejected_by_reason"]
    rules = default["rules"]
    assert all(rules[r]["violations"] > 0 for r in ("qty_range", "regions", "store_code", "store_len",
                                                     "sku_unique", "store_qty", "cheap", "prices")), rules
    assert default["rows"]["rejected_by_reason"]["rule:qty_range"] > 0
    assert other["rules"] == rules and other["rows"] == default["rows"]
    assert_same_outputs(tmp_path / "out")


TYPED_DOC: dict[str, Any] = {
    "columns": {"id": "integer", "active": "boolean", "day": "date",
                "when": {"type": "datetime", "timezone": "America/New_York"},
                "logged": {"type": "datetime", "format": "%d %b %y %I:%M %p"},
                "born": {"type": "date", "format": "%d/%m/%Y"}, "distance": "float", "air_time": "float",
                "carrier": "string"},
    "imputation": {"active": {"strategy": "most_frequent"}, "day": {"strategy": "median"},
                   "when": {"strategy": "most_frequent"}, "born": {"strategy": "constant", "value": "2000-01-01"},
                   "distance": {"strategy": "median"}},
    "duplicates": {"key_columns": ["active", "day", "carrier"]},
    "derived": [
        {"name": "air_missing", "kind": "missing_indicator", "source": "air_time"},
        {"name": "speed", "kind": "expression", "expression": "round(distance / air_time * 60, 1)"},
        {"name": "late", "kind": "expression", "expression": "coalesce(max(distance - 1000, 0), -1) / 3"},
        {"name": "hour", "kind": "date_part", "source": "when", "part": "hour"},
        {"name": "weekday", "kind": "date_part", "source": "day", "part": "weekday"},
        {"name": "doy", "kind": "date_part", "source": "logged", "part": "dayofyear"},
        {"name": "distance_band", "kind": "bins", "source": "distance", "bins": {"quantiles": 4}},
        {"name": "speed_band", "kind": "bins", "source": "speed", "bins": {"quantiles": [0, 0.1, 0.9, 1]}},
        {"name": "air_band", "kind": "bins", "source": "air_time", "bins": {"edges": [0, 60, 180, "inf"]}},
    ],
    "group_statistics": [{"name": "by_carrier", "group_by": ["carrier", "active"],
                          "aggregations": {"speed": ["mean", "median", "max"], "hour": ["min", "max"]}},
                         {"name": "by_time", "group_by": ["day", "when", "air_missing"],
                          "aggregations": {"distance": ["sum", "count"], "logged": ["nunique"]}}],
}


def _typed_dataset(path: Path, rows: int, seed: int) -> None:
    rnd = random.Random(seed)
    lines = ["id,active,day,when,logged,born,distance,air_time,carrier"]
    for i in range(rows):
        active = rnd.choice(["true", "False", "yes", "N", "1", "0", "maybe", "", " T "])
        day = rnd.choice(["2024-01-01", "2024-02-29", "2024-03-15", "2023-12-31", "2024-02-30", "", "x"])
        when = rnd.choice(["2024-03-01 05:00:00", "2024-03-01T05:00:00Z", "2024-03-10 02:30", "2024-11-03 01:30",
                           "2024-06-30T23:59:59.5+02:00", "", "soon", "2024-01-01", "2024-07-04T12:00:00-0330"])
        logged = rnd.choice(["05 Mar 24 7:05 PM", "5 march 99 12:00 am", "31 Feb 24 1:00 AM", "", "1 Jan 00 9:59 am"])
        born = rnd.choice(["01/02/1990", "1/2/1990", "31/02/1990", "", "15/06/1985"])
        distance = rnd.choice([str(rnd.randint(50, 3000)), "", "abc"])
        air = rnd.choice([str(rnd.randint(0, 400)), "", "x", "0"])
        lines.append(f"{i},{active},{day},{when},{logged},{born},{distance},{air},"
                     f"{rnd.choice(['UA', 'AA', 'DL', ''])}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_types_and_features(spark: Any, tmp_path: Path) -> None:
    data = tmp_path / "typed.csv"
    _typed_dataset(data, 800, seed=4)
    default, _ = _run_both(spark, [data], tmp_path / "out", TYPED_DOC)
    assert default["invalid_values"]["when"] > 0 and default["invalid_values"]["logged"] > 0
    assert default["derived"]["distance_band"]["edges_from"] == "all"
    assert_same_outputs(tmp_path / "out")
    # beyond the row budget: quantile edges from percentile_approx, recorded as sampled
    _run_both(spark, [data], tmp_path / "budget", TYPED_DOC, max_rows=100)
    budget = json.loads((tmp_path / "budget" / "spark" / "quality" / "metrics.json").read_text())
    assert budget["derived"]["distance_band"]["edges_from"] == "sample"
    assert budget["statistics_sampling"]["bins"]["distance_band"]["rank_error"] == 1e-5
    # CSV: the same text for booleans, dates, datetimes and floats (Spark quotes text only when needed)
    _run_both(spark, [data], tmp_path / "csv", TYPED_DOC, fmt="csv")
    import csv as csv_mod

    texts = [list(csv_mod.reader((tmp_path / "csv" / e / "transformed" / "transformed.csv").open()))
             for e in ("default", "spark")]
    assert texts[0] == texts[1]


def test_freshness_rules_take_the_same_newest_value(spark: Any, tmp_path: Path) -> None:
    """Freshness on date and zoned datetime columns: the same newest value (UTC) and verdict as the default engine
    (the age itself is measured against each run's own clock, so only the verdicts of clearly stale and clearly fresh
    limits are compared)."""
    data = tmp_path / "typed.csv"
    _typed_dataset(data, 300, seed=7)
    doc = copy.deepcopy(TYPED_DOC)
    doc["rules"] = [{"name": "day_recent", "type": "freshness", "column": "day", "max_age_hours": 1, "action": "warn"},
                    {"name": "when_recent", "type": "freshness", "column": "when", "max_age_hours": 1e9,
                     "action": "warn"},
                    {"name": "logged_recent", "type": "freshness", "column": "logged", "max_age_hours": 1e9,
                     "action": "warn"}]
    default, other = _run_both(spark, [data], tmp_path / "out", doc)
    assert spark_rules.unsupported(config_mod.validate(doc)) is None
    for name in ("day_recent", "when_recent", "logged_recent"):
        a, b = default["rules"][name], other["rules"][name]
        assert a["newest"] is not None and a["newest"] == b["newest"], (name, a, b)
        assert a["passed"] == b["passed"], (name, a, b)
    assert not default["rules"]["day_recent"]["passed"] and default["rules"]["when_recent"]["passed"]
    # 2024-11-03 01:30 in New York is repeated (DST ends): the earlier instant, 05:30 UTC, the newest of the values
    assert default["rules"]["when_recent"]["newest"] == "2024-11-03T05:30:00+00:00"
    assert default["rules"]["day_recent"]["newest"] == "2024-03-15"


def test_fresh_file_from_the_command_line_without_pyarrow(tmp_path: Path) -> None:
    """Done when: ``python -m processing --engine spark`` gives the default engine's counts, medians and group
    statistics on a file it has never seen (a new seed each run, printed on failure), here with pyarrow made
    unimportable, as in the SageMaker Spark image."""
    seed = random.SystemRandom().randrange(1, 10**6)
    data = tmp_path / "fresh.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "2500", "--seed", str(seed), "--out",
                    str(data), "--invalid-rate", "0.02"], check=True, cwd=ROOT)
    block = ("import sys, runpy\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'pyarrow' or name.startswith('pyarrow.'):\n"
             "            raise ImportError('pyarrow blocked: the SageMaker Spark image has none')\n"
             "sys.meta_path.insert(0, Block())\n"
             "sys.argv = ['processing'] + sys.argv[1:]\n"
             "runpy.run_module('processing', run_name='__main__')\n")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("PROCESSING_MAX_ROWS_IN_MEMORY", None)
    done = subprocess.run([sys.executable, "-c", block, "--engine", "spark", "--input", str(data), "--output",
                           str(tmp_path / "spark")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"seed {seed}: {done.stderr[-3000:]}"
    subprocess.run([sys.executable, "-m", "processing", "--input", str(data), "--output", str(tmp_path / "default")],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    a = json.loads((tmp_path / "default" / "quality" / "metrics.json").read_text())
    b = json.loads((tmp_path / "spark" / "quality" / "metrics.json").read_text())
    assert b["mode"] == "spark" and "pyarrow" not in b["libraries"], seed
    for key in ("summary", "rows", "duplicates", "imputation", "columns", "json", "derived", "numeric"):
        assert_same(a[key], b[key], f"seed {seed}: {key}")
    assert b["imputation"]["salary"]["computed"] == a["imputation"]["salary"]["computed"], seed
    for stats in sorted((tmp_path / "default" / "statistics").glob("*.json")):
        assert_same(json.loads(stats.read_text()), json.loads((tmp_path / "spark" / "statistics" / stats.name)
                                                                  .read_text()), f"seed {seed}: {stats.name}")
    assert_same(json.loads((tmp_path / "default" / "quality" / "profile.json").read_text()),
                json.loads((tmp_path / "spark" / "quality" / "profile.json").read_text()), f"seed {seed}: profile")


def test_beyond_the_row_budget_medians_are_approximate_within_the_recorded_bound(spark: Any, tmp_path: Path) -> None:
    data = tmp_path / "ref.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "3000", "--seed", "11", "--out", str(data)],
                   check=True, cwd=ROOT)
    default, other = _run_both(spark, [data], tmp_path / "out", max_rows=1000)
    s = other["statistics_sampling"]
    assert s["method"] == "percentile_approx" and s["rows"] == other["summary"]["rows_out"]
    assert s["rank_error"] == pytest.approx(1 / spark_engine.engine.APPROX_ACCURACY) and s["delta"] == 0.0
    assert s["imputation"]["salary"] > 0 and s["groups"]["department_statistics"]
    # Everything but the order statistics and the drift sample stays exact.
    for key in ("rows", "duplicates", "columns", "json", "group_columns"):  # numeric: after imputation
        assert_same(default[key], other[key], key)
    assert_same(default["numeric"]["age"], other["numeric"]["age"])  # rounding of the median moves nothing here
    assert other["numeric"]["salary"]["count"] == default["numeric"]["salary"]["count"]
    # An approximate median is a value whose rank is within rank_error x rows of the middle (ties: any rank of the
    # tied block). Checked against the Spark run's own rows (filled with its own approximate imputation value).
    import pandas as pd

    def within(values: list[float], x: float, slack: float) -> bool:
        below, upto = sum(v < x for v in values), sum(v <= x for v in values)
        return below - slack <= len(values) / 2 <= upto + slack

    out = tmp_path / "out" / "spark"
    transformed = pd.read_parquet(_data_file(out, "transformed"))
    approx = other["imputation"]["salary"]["computed"]
    filled = other["imputation"]["salary"]["filled"]
    before = [v for v in transformed["salary"] if v != approx]  # the present values (and the few equal to it)
    assert within(before, approx, s["rank_error"] * len(before) + filled + 1)
    stats = json.loads((_data_file(out, "statistics").parent / "department_statistics.json").read_text())["rows"]
    for row in stats:
        group = transformed[transformed["department"] == row["department"]]["salary"].tolist()
        assert within(group, row["salary_median"], s["rank_error"] * len(group) + 1), row
    assert other["drift"]["status"] == "unavailable" and json.loads(
        (tmp_path / "out" / "spark" / "quality" / "profile.json").read_text())["source"]["sampled"]["rows"] == s["rows"]


def test_unsupported_config_fails_naming_the_key(tmp_path: Path) -> None:
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["columns"]["department"] = "category"
    cfg = config_mod.validate(doc)
    data = tmp_path / "a.csv"
    data.write_text(HEADER + "\n1,a,1,1,{},HR\n", encoding="utf-8")
    with pytest.raises(spark_engine.SparkUnsupported, match=r"columns\.department: type 'category'"):
        spark_engine.run([data], tmp_path / "out", cfg)
    assert spark_engine.SparkUnsupported("x").exit_code == 2


def test_unsupported_inputs_fail_naming_the_file(tmp_path: Path) -> None:
    cfg = config_mod.validate(copy.deepcopy(DEFAULT_DOC))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + b"\n1,Jos\xe9,1,1,{},HR\n")
    with pytest.raises(spark_engine.SparkUnsupported, match=r"latin\.csv: not valid UTF-8"):
        spark_engine.run([latin], tmp_path / "out", cfg)
    parquet = tmp_path / "a.parquet"
    pq.write_table(io.read_file(_ok_csv(tmp_path)).table, parquet)
    with pytest.raises(spark_engine.SparkUnsupported, match=r"a\.parquet: Parquet inputs"):
        spark_engine.run([parquet], tmp_path / "out", cfg)
    with pytest.raises(Exception, match=r"missing required column\(s\): department"):
        short = tmp_path / "short.csv"
        short.write_text("id,name,age,salary,profile\n1,a,1,1,{}\n", encoding="utf-8")
        spark_engine.run([short], tmp_path / "out", cfg)


def _ok_csv(tmp_path: Path) -> Path:
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + "\n1,a,1,1,{},HR\n", encoding="utf-8")
    return path


def test_cli_spark_failure_writes_the_error_report(tmp_path: Path) -> None:
    from processing import cli

    doc = copy.deepcopy(DEFAULT_DOC)
    doc["columns"]["department"] = "category"
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(doc), encoding="utf-8")
    status = cli.main(["--engine", "spark", "--input", str(_ok_csv(tmp_path)), "--output", str(tmp_path / "out"),
                       "--config", str(config_file)])
    report = json.loads((tmp_path / "out" / "quality" / "error.json").read_text())
    assert status == 2 and report["error_type"] == "SparkUnsupported" and "columns.department" in report["message"]


def test_quality_gate_is_one_rule_for_both_engines() -> None:
    summary = {"missing_rate_after": 0.1, "rejected_rate": 0.0, "malformed_json_rate": 0.05, "duplicate_rate": 0.2,
               "rows_out": 0}
    thresholds = {"max_missing_rate_after": 0.05, "max_rejected_rate": 0.01, "max_malformed_json_rate": 0.05,
                  "max_duplicate_rate": 0.05, "min_rows_out": 1}
    # one rule for both engines (processing/metricsdoc.py), checked by hand: missing 0.1 > 0.05, duplicates 0.2 > 0.05
    # and 0 rows < 1 fail; 0.0 <= 0.01 and 0.05 <= 0.05 pass
    assert pipeline.quality_gate is metricsdoc.quality_gate and spark_engine.engine.metricsdoc is metricsdoc
    gate = pipeline.quality_gate(summary, thresholds)
    assert {k: c["passed"] for k, c in gate["checks"].items()} == {
        "max_missing_rate_after": False, "max_rejected_rate": True, "max_malformed_json_rate": True,
        "max_duplicate_rate": False, "min_rows_out": False}
    assert gate["passed"] is False


def test_default_engine_never_imports_pyspark(tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    data.write_text(HEADER + "\n1,a,1,1,{},HR\n", encoding="utf-8")
    code = ("import sys\nfrom processing import cli\n"
            f"assert cli.main(['--input', {str(data)!r}, '--output', {str(tmp_path / 'out')!r}]) == 0\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('pyspark', 'py4j', 'processing.spark')))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)


def test_spark_engine_imports_only_the_shared_standard_library_modules() -> None:
    """processing/spark imports config, drift_config, gate, errors, options, rawfile, metricsdoc (and drift through
    gate.finish), none of the pyarrow modules; outside it only cli.py imports it, inside ``main_spark``."""
    allowed = {"processing", "processing.config", "processing.drift_config", "processing.gate", "processing.errors",
               "processing.options", "processing.rawfile", "processing.metricsdoc", "processing.spark",
               "processing.spark.engine", "processing.spark.hadoopfs", "processing.spark.session",
               "processing.expressions",
               "processing.spark.expressions", "processing.types", "processing.spark.features",
               "processing.features", "processing.rules_config", "processing.spark.rules",
               "processing.cli"}  # processing/spark/entry.py: the SageMaker entry script runs the command line
    for path in sorted((ROOT / "processing").rglob("*.py")):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules |= ({f"processing.{a.name}" for a in node.names} if node.module == "processing"
                            else {node.module})
            elif isinstance(node, ast.Import):
                modules |= {a.name for a in node.names}
        if "spark" in path.relative_to(ROOT / "processing").parts:
            ours = {m for m in modules if m.startswith("processing")}
            assert ours <= allowed, (path, ours - allowed)
            assert not any(m.split(".")[0] == "pyarrow" for m in modules), path
        elif path.name != "cli.py":
            assert not any(m.startswith(("pyspark", "processing.spark")) for m in modules), path


def test_flights_example_config_matches_the_default_engine(spark: Any, tmp_path: Path) -> None:
    """Issue 14 on the Spark engine: the generated flights table with docs/examples/flights.json (every new type, a
    zoned datetime, missing indicators, an expression, date parts, quantile and fixed bins, observed percentiles and
    every rule action) gives the default engine's outputs, metrics, rule results and gate."""
    import pyarrow.csv as pacsv

    from processing.sample_flights import generate

    data = tmp_path / "flights.csv"
    pacsv.write_csv(generate(4000, seed=11), data)
    doc = json.loads((ROOT / "docs" / "examples" / "flights.json").read_text(encoding="utf-8"))
    default, other = _run_both(spark, [data], tmp_path / "out", doc)
    assert default["rows"]["rejected_by_reason"]["rule:distance_positive"] > 0
    assert default["rules"]["known_carrier"]["violations"] > 0
    assert other["summary"]["rules_warned"] == default["summary"]["rules_warned"] >= 1
    assert_same_outputs(tmp_path / "out")
