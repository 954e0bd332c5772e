"""Issue 14 Done-when: every new type, derived feature, group statistic and rule on the generated real-world-shaped
flights table (dates, a zoned datetime, a boolean, structured missingness, planted rule violations), with the example
config users read (docs/examples/flights.json), checked against an independent pandas/numpy computation from the raw
text, in memory and streaming modes."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from processing import config as config_mod
from processing import pipeline
from processing.sample_flights import generate

ROOT = Path(__file__).resolve().parents[2]
DOC = json.loads((ROOT / "docs" / "examples" / "flights.json").read_text(encoding="utf-8"))
KNOWN = set(DOC["rules"][1]["values"])
NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flights") / "flights.csv"
    table = generate(4000, seed=11)
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, path)
    return path


def _number(text: str) -> float | None:
    return float(text) if text and NUMBER.match(text) else None


def _run(src: Path, out: Path, doc: dict[str, Any], **settings: Any) -> dict[str, Any]:
    pipeline.run([src], out, config_mod.validate(copy.deepcopy(doc)), **settings)
    metrics: dict[str, Any] = json.loads((out / "quality" / "metrics.json").read_text(encoding="utf-8"))
    return metrics


def _expected(src: Path) -> dict[str, Any]:
    """The job's results computed independently from the raw text (pandas reads every cell as text)."""
    raw = pd.read_csv(src, dtype=str, keep_default_na=False)
    local = pd.to_datetime(raw["time_hour"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    # America/New_York: a skipped local hour is invalid, a repeated one is the earlier instant (docs)
    utc = local.dt.tz_localize("America/New_York", ambiguous=np.ones(len(local), dtype=bool),
                               nonexistent="NaT").dt.tz_convert("UTC")
    invalid_time = utc.isna()
    distance = raw["distance"].map(_number)
    rule_reject = ~invalid_time & distance.notna() & (distance < 1)
    survivors = raw[~invalid_time & ~rule_reject]
    duplicate = survivors.duplicated(keep="first")
    kept = survivors[~duplicate].copy()
    checked = raw[~invalid_time]  # rules check the rows that passed reject_rows_missing
    tail = checked["tailnum"]
    return {
        "raw": raw, "kept": kept, "utc": utc[kept.index],
        "invalid_time": int(invalid_time.sum()), "rule_reject": int(rule_reject.sum()),
        "duplicates": int(duplicate.sum()),
        "unknown_carrier": int((~checked["carrier"].isin(KNOWN)).sum()),
        "bad_tailnum": int(((tail != "") & ~tail.str.fullmatch(r"N[0-9A-Z]{2,5}")).sum()),
        "rows_checked": len(checked),
    }


def test_flights_config_against_an_independent_computation(flights: Path, tmp_path: Path) -> None:
    exp = _expected(flights)
    m = _run(flights, tmp_path / "m", DOC, mode="memory")
    kept = exp["kept"]
    # rows: accounted for, each rejection with its reason
    assert m["rows"]["in"] == len(exp["raw"]) == m["rows"]["out"] + m["rows"]["rejected"]
    assert m["rows"]["out"] == len(kept)
    by_reason = m["rows"]["rejected_by_reason"]
    assert by_reason.get("invalid_value:time_hour", 0) == exp["invalid_time"]
    assert by_reason["rule:distance_positive"] == exp["rule_reject"] > 0
    assert by_reason["duplicate_exact"] == exp["duplicates"] > 0
    # rules: counts on the rows they check, actions, and the gate's verdict (warn rules broke, fail rules held)
    rules = m["rules"]
    assert rules["known_carrier"]["violations"] == exp["unknown_carrier"] > 0
    assert rules["known_carrier"]["rows_checked"] == exp["rows_checked"]
    assert set(rules["known_carrier"]["examples"]) <= {"ZZ", "XX"}
    assert rules["tailnum_format"]["violations"] == exp["bad_tailnum"] > 0
    assert rules["tailnum_format"]["passed"] == (exp["bad_tailnum"] / exp["rows_checked"] <= 0.01)
    assert rules["arrives_after_departure"]["passed"] and rules["enough_rows"]["measured"] == len(kept)
    dep_missing = int((kept["dep_delay"].map(_number).isna()).sum())
    assert rules["dep_delay_present"]["violations"] == dep_missing > 0
    assert m["summary"]["rules_failed"] == 0 and m["summary"]["rules_warned"] >= 1
    assert m["summary"]["rows_rejected_by_rules"] == exp["rule_reject"]
    assert json.loads((tmp_path / "m" / "quality" / "gate.json").read_text())["status"] == "warned"

    out = pq.read_table(tmp_path / "m" / "transformed" / "transformed.parquet").to_pandas()
    # types: the zoned datetime in UTC, the date, the boolean (invalid 'maybe' -> missing)
    assert (out["time_hour"].dt.tz_convert("UTC").to_numpy() == exp["utc"].to_numpy()).all()
    flight_date = pd.to_datetime(kept["flight_date"], format="%Y-%m-%d", errors="coerce")
    assert [None if pd.isna(v) else v for v in out["flight_date"]] == [
        None if pd.isna(v) else v.date() for v in flight_date]
    cancelled = kept["cancelled"].str.lower().map({"true": True, "false": False})
    assert [None if pd.isna(v) else bool(v) for v in out["cancelled"]] == [
        None if pd.isna(v) else bool(v) for v in cancelled]
    # missing indicators: before imputation, missing OR invalid ('unknown' air times)
    dep = kept["dep_delay"].map(_number)
    air = kept["air_time"].map(_number)
    assert out["dep_delay_missing"].tolist() == dep.isna().tolist()
    assert out["air_time_missing"].tolist() == air.isna().tolist() and (kept["air_time"] == "unknown").any()
    # imputation (median of the present values), then features see the filled values
    air_median = float(np.median(air.dropna()))
    assert m["imputation"]["air_time"]["value"] == pytest.approx(air_median)
    air_filled = air.fillna(air_median).to_numpy()
    dist = kept["distance"].map(_number).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = dist / air_filled * 60
    speed[~np.isfinite(speed)] = np.nan
    np.testing.assert_allclose(out["speed_mph"].to_numpy(dtype=float), speed, rtol=1e-12, equal_nan=True)
    # date parts: hour of the UTC instant, weekday of the date (Monday = 0)
    assert out["dep_hour"].tolist() == exp["utc"].dt.hour.tolist()
    assert [None if pd.isna(v) else int(v) for v in out["weekday"]] == [
        None if pd.isna(v) else int(v) for v in flight_date.dt.weekday]
    # quantile bins: edges are numpy's linear quantiles of the present values, recorded for reuse
    edges = np.quantile(dist[~np.isnan(dist)], [0, 0.25, 0.5, 0.75, 1]).tolist()
    assert m["derived"]["distance_band"]["edges"] == pytest.approx(edges)
    labels = m["derived"]["distance_band"]["labels"]
    assert labels[0].startswith("[") and len(labels) == 4
    counts = pd.cut(pd.Series(dist), edges, labels=labels, include_lowest=True).value_counts()
    assert m["derived"]["distance_band"]["counts"] == {k: int(counts[k]) for k in labels}
    # fixed-edge bins with generated labels
    assert list(m["derived"]["delay_band"]["counts"]) == ["[-inf, 0]", "(0, 15]", "(15, 60]", "(60, inf]"]
    # group statistics on observed values: count + missing = rows; median and p90 by numpy's interpolation
    stats = {r["carrier"]: r for r in json.loads(
        (tmp_path / "m" / "statistics" / "carrier_delays.json").read_text())["rows"]}
    for carrier, group in kept.groupby("carrier"):
        row = stats[carrier]
        observed = group["dep_delay"].map(_number).dropna().to_numpy(dtype=float)
        assert row["rows"] == len(group) == row["dep_delay_count"] + row["dep_delay_missing"]
        assert row["dep_delay_count"] == len(observed)
        if len(observed):
            assert row["dep_delay_median"] == pytest.approx(float(np.median(observed)))
            assert row["dep_delay_p90"] == pytest.approx(float(np.quantile(observed, 0.9)))
        air_obs = group["air_time"].map(_number).dropna()
        if len(air_obs):
            assert row["air_time_mean"] == pytest.approx(float(air_obs.mean()))


def test_streaming_equals_memory_and_a_fail_rule_quarantines(flights: Path, tmp_path: Path) -> None:
    memory = _run(flights, tmp_path / "m", DOC, mode="memory")
    streaming = _run(flights, tmp_path / "s", DOC, mode="streaming", block_size=64 * 1024)
    for key in ("rows", "rules", "derived", "imputation", "columns", "duplicates", "summary"):
        a, b = copy.deepcopy(memory[key]), copy.deepcopy(streaming[key])
        if key == "summary":
            for volatile in ("processing_seconds",):
                a.pop(volatile, None)
                b.pop(volatile, None)
        assert a == b, key
    for name in ("transformed/transformed.parquet", "rejected/rejected.parquet", "statistics/carrier_delays.csv"):
        if name.endswith(".parquet"):
            assert pq.read_table(tmp_path / "m" / name).equals(pq.read_table(tmp_path / "s" / name)), name
        else:
            assert (tmp_path / "m" / name).read_bytes() == (tmp_path / "s" / name).read_bytes(), name
    # a completeness the data cannot meet: the gate fails and the data goes to quarantine/
    doc = copy.deepcopy(DOC)
    doc["rules"][5]["min_share"] = 0.999
    failed = _run(flights, tmp_path / "f", doc, mode="memory")
    assert failed["summary"]["rules_failed"] == 1 and not failed["rules"]["dep_delay_present"]["passed"]
    assert json.loads((tmp_path / "f" / "quality" / "gate.json").read_text())["status"] == "failed"
    assert (tmp_path / "f" / "quarantine" / "transformed" / "transformed.parquet").is_file()
    assert not (tmp_path / "f" / "transformed" / "transformed.parquet").exists()
    violations = json.loads((tmp_path / "f" / "quarantine" / "violations.json").read_text())
    assert "rules.dep_delay_present" in json.dumps(violations)
