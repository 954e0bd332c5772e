"""Drift scores: synthetic shifts of known size are detected, an unshifted 1M-row resample is not, bad baselines
give "unavailable" with a reason (never an exception), and the scores are deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from processing import drift
from processing.drift_config import DriftSettings

SETTINGS = DriftSettings(numeric=("salary",), categorical=("department",))
DEPARTMENTS = np.array(["Engineering", "Finance", "HR", "Marketing", "Sales"])


def batch(n: int, seed: int, *, shift_sd: float = 0.0, missing: float = 0.05, departments=DEPARTMENTS,
          dept_p=None) -> pd.DataFrame:
    """Salary ~ N(60000, 10000) shifted by ``shift_sd`` standard deviations, ``missing`` of it missing."""
    rng = np.random.default_rng(seed)
    salary = rng.normal(60000 + shift_sd * 10000, 10000, n)
    salary[rng.random(n) < missing] = np.nan
    dept = pd.Series(rng.choice(departments, n, p=dept_p), dtype="string")
    dept[rng.random(n) < 0.04] = pd.NA
    return pd.DataFrame({"salary": salary, "department": dept})


@pytest.fixture(scope="module")
def baseline() -> dict:
    return drift.build_profile(batch(200_000, seed=1), SETTINGS)


def level(report: dict, column: str) -> str:
    return report["columns"][column]["level"]


def test_unshifted_resample_of_1m_rows_is_not_flagged(baseline) -> None:
    # GIVEN a fresh 1M-row sample of the baseline's distribution
    report = drift.compare(baseline, batch(1_000_000, seed=2), SETTINGS)
    # THEN nothing is flagged: PSI far below 0.1 and the normalised distance near 0
    assert report["status"] == "computed" and report["drifted_columns"] == [] and report["warned_columns"] == []
    assert report["max_psi"] < 0.001
    assert report["columns"]["salary"]["wasserstein_normalised"] < 0.02
    assert level(report, "salary") == level(report, "department") == "ok"


@pytest.mark.parametrize(("shift_sd", "expected"), [(0.2, "warn"), (0.5, "alarm")])
def test_shifted_mean_is_detected(baseline, shift_sd: float, expected: str) -> None:
    # GIVEN the salary mean moved by 0.2 / 0.5 standard deviations
    report = drift.compare(baseline, batch(100_000, seed=3, shift_sd=shift_sd), SETTINGS)
    col = report["columns"]["salary"]
    # THEN the normalised Wasserstein distance measures the shift in baseline standard deviations
    assert col["wasserstein_normalised"] == pytest.approx(shift_sd, abs=0.03)
    assert col["level"] == expected
    assert {b["rule"] for b in col["broken"]} & {f"drift.distance_{expected}"}
    assert level(report, "department") == "ok"


def test_dropped_category_is_an_alarm(baseline) -> None:
    # GIVEN a batch in which HR no longer occurs
    report = drift.compare(baseline, batch(100_000, seed=4, departments=DEPARTMENTS[DEPARTMENTS != "HR"]), SETTINGS)
    col = report["columns"]["department"]
    assert col["level"] == "alarm" and col["psi"] > 1.0
    assert col["vanished_categories"] == ["HR"]
    assert report["drifted_columns"] == ["department"]


def test_new_category_is_an_alarm(baseline) -> None:
    # GIVEN a batch in which a sixth department takes a sixth of the rows
    depts = np.append(DEPARTMENTS, "Legal")
    report = drift.compare(baseline, batch(100_000, seed=5, departments=depts), SETTINGS)
    col = report["columns"]["department"]
    assert col["level"] == "alarm" and col["psi"] > 1.0
    assert col["new_categories"] == ["Legal"]
    assert col["batch"][col["bins"].index(drift.OTHER)] == pytest.approx(1 / 6 * 0.96, abs=0.01)


def test_missing_rate_jump_is_an_alarm(baseline) -> None:
    # GIVEN salary missing in 30% of the rows instead of 5%
    report = drift.compare(baseline, batch(100_000, seed=6, missing=0.30), SETTINGS)
    col = report["columns"]["salary"]
    assert col["level"] == "alarm" and col["psi"] > 0.25
    assert col["bins"][-1] == drift.MISSING and col["batch"][-1] == pytest.approx(0.30, abs=0.01)


def test_json_field_presence_drop_is_detected() -> None:
    settings = DriftSettings(json_fields=("profile.email",))
    base = drift.build_profile(pd.DataFrame({"x": [1]}), settings, presence={"profile.email": 0.97})
    same = drift.compare(base, pd.DataFrame({"x": [1]}), settings, presence={"profile.email": 0.965})
    gone = drift.compare(base, pd.DataFrame({"x": [1]}), settings, presence={"profile.email": 0.5})
    assert same["columns"]["json:profile.email"]["level"] == "ok"
    assert gone["columns"]["json:profile.email"]["level"] == "alarm"


def test_per_column_override_and_disabled_threshold(baseline) -> None:
    # GIVEN salary's distance thresholds disabled and a high PSI alarm for it
    settings = DriftSettings(numeric=("salary",), categorical=("department",),
                             per_column={"salary": {"distance_warn": None, "distance_alarm": None, "psi_alarm": 5.0}})
    report = drift.compare(baseline, batch(100_000, seed=3, shift_sd=0.5), settings)
    col = report["columns"]["salary"]
    # THEN only the PSI thresholds apply: warn (PSI over 0.1, under 5)
    assert col["thresholds"]["distance_alarm"] is None and col["level"] == "warn"


def test_scores_are_deterministic(baseline) -> None:
    df = batch(50_000, seed=7, shift_sd=0.3)
    assert json.dumps(drift.compare(baseline, df, SETTINGS)) == json.dumps(drift.compare(baseline, df, SETTINGS))
    again = drift.build_profile(batch(200_000, seed=1), SETTINGS)
    assert json.dumps(again, sort_keys=True) == json.dumps(baseline, sort_keys=True)


def test_profile_is_small_and_uses_deciles(baseline) -> None:
    col = baseline["columns"]["salary"]
    assert len(col["edges"]) == 9 and len(col["fractions"]) == 11 and len(col["quantiles"]) == 101
    assert col["fractions"][:-1] == pytest.approx([0.095] * 10, abs=0.002)  # 95% present, in ten deciles
    assert len(json.dumps(baseline)) < 20_000


def test_edge_cases_do_not_raise() -> None:
    # an all-missing numeric column, an empty batch, integer and category dtypes
    settings = DriftSettings(numeric=("a", "n"), categorical=("c",))
    df = pd.DataFrame({"a": pd.array([None, None], dtype="Int64"), "n": pd.array([1, 2], dtype="Int64"),
                       "c": pd.Categorical(["x", None])})
    base = drift.build_profile(df, settings)
    assert base["columns"]["a"]["edges"] == [] and base["columns"]["a"]["fractions"] == [0.0, 1.0]
    drift.validate_baseline(json.loads(json.dumps(base)), settings)
    assert drift.compare(base, df, settings)["max_psi"] == 0.0
    empty = drift.compare(base, df.iloc[0:0], settings)
    assert {c["level"] for c in empty["columns"].values()} == {"unavailable"}


@pytest.mark.parametrize(("content", "reason"), [
    (None, "does not exist"),
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe", "cannot be read"),
    (json.dumps([1]).encode(), "expected a JSON object"),
    (json.dumps({"schema_version": 2, "columns": {}}).encode(), "schema_version is 2, expected 1"),
    (json.dumps({"schema_version": 1}).encode(), "'columns' is missing"),
    (json.dumps({"schema_version": 1, "columns": {"salary": {}}}).encode(), "lacks drift column(s) department"),
    (json.dumps({"schema_version": 1, "columns": {
        "salary": {"kind": "categorical", "missing_rate": 0, "frequencies": {}},
        "department": {"kind": "categorical", "missing_rate": 0, "frequencies": {}}}}).encode(),
     "columns.salary: expected kind 'numeric'"),
    (json.dumps({"schema_version": 1, "columns": {
        "salary": {"kind": "numeric", "missing_rate": 0, "edges": [2, 1], "fractions": [1, 0, 0, 0]},
        "department": {"kind": "categorical", "missing_rate": 0, "frequencies": {}}}}).encode(),
     "columns.salary.edges: must be strictly increasing"),
])
def test_bad_baseline_files_make_drift_unavailable(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_bytes(content)
    report = drift.evaluate(path, batch(1000, seed=8), SETTINGS)
    assert report["status"] == "unavailable"
    assert reason in report["reason"] and str(path) in report["reason"]


def test_no_baseline_is_unavailable_with_a_reason() -> None:
    report = drift.evaluate(None, batch(10, seed=9), SETTINGS)
    assert report["status"] == "unavailable" and "no baseline" in report["reason"]


def test_psi_and_js_definitions() -> None:
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * np.log(0.5) * -1 + 0.25 * np.log(1.5))
    assert drift.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert drift.jensen_shannon([0.3, 0.7], [0.3, 0.7]) == 0.0
    assert drift.normalised_wasserstein([0, 1, 2], [1, 2, 3], 2.0) == pytest.approx(0.5)
