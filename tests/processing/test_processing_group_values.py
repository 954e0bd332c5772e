"""Group statistics of issue 14: percentiles (p01..p99), `missing`, and `values: observed | imputed`, on small
hand-checked data, identical in memory and streaming mode (exact and beyond the row budget)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from processing import config as config_mod
from processing import pipeline
from processing.errors import ConfigError

# dept A: salary 10, 20, missing, "abc" (invalid), 40; dept B: 5, missing. Median of the present values
# (5, 10, 20, 40) is 15: the three missing/invalid cells (two in A) are filled with 15.
CSV = "id,dept,salary\n1,A,10\n2,A,20\n3,A,\n4,A,abc\n5,A,40\n6,B,5\n7,B,\n"


def _doc(values: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "by_dept", "group_by": ["dept"],
                            "aggregations": {"salary": ["count", "missing", "mean", "median", "p10", "p90", "p50"],
                                             "id": ["missing"]}}
    if values is not None:
        spec["values"] = values
    return {"columns": {"id": "integer", "dept": "string", "salary": "float"},
            "imputation": {"salary": {"strategy": "median"}}, "group_statistics": [spec]}


def _run(tmp_path: Path, doc: dict[str, Any], name: str, **settings: Any) -> pipeline.Result:
    src = tmp_path / "in.csv"
    src.write_text(CSV)
    cfg = config_mod.validate(copy.deepcopy(doc))
    return pipeline.run([src], tmp_path / name, cfg, **settings)


def _rows(result: pipeline.Result) -> list[dict[str, Any]]:
    return json.loads((result.output_dir / "statistics" / "by_dept.json").read_text())["rows"]


OBSERVED = [
    # A: present 10, 20, 40: p10 = 10 + 0.2 * 10 = 12, p90 = 20 + 0.8 * 20 = 36, median 20
    {"dept": "A", "rows": 5, "salary_count": 3, "salary_missing": 2, "salary_mean": 70 / 3, "salary_median": 20.0,
     "salary_p10": 12.0, "salary_p90": 36.0, "salary_p50": 20.0, "id_missing": 0},
    {"dept": "B", "rows": 2, "salary_count": 1, "salary_missing": 1, "salary_mean": 5.0, "salary_median": 5.0,
     "salary_p10": 5.0, "salary_p90": 5.0, "salary_p50": 5.0, "id_missing": 0},
]
IMPUTED = [
    # A: 10, 20, 15, 15, 40 -> sorted 10 15 15 20 40: p10 = 10 + 0.4 * 5 = 12, p90 = 20 + 0.6 * 20 = 32
    {"dept": "A", "rows": 5, "salary_count": 5, "salary_missing": 2, "salary_mean": 20.0, "salary_median": 15.0,
     "salary_p10": 12.0, "salary_p90": 32.0, "salary_p50": 15.0, "id_missing": 0},
    # B: 5, 15: p10 = 6, p90 = 14
    {"dept": "B", "rows": 2, "salary_count": 2, "salary_missing": 1, "salary_mean": 10.0, "salary_median": 10.0,
     "salary_p10": 6.0, "salary_p90": 14.0, "salary_p50": 10.0, "id_missing": 0},
]


@pytest.mark.parametrize(("values", "expected"), [(None, OBSERVED), ("observed", OBSERVED), ("imputed", IMPUTED)])
def test_percentiles_missing_and_values_by_hand(tmp_path: Path, values: str | None,
                                                expected: list[dict[str, Any]]) -> None:
    doc = _doc(values)
    memory = _run(tmp_path, doc, "m", mode="memory")
    assert memory.metrics["imputation"]["salary"]["value"] == 15.0
    got = _rows(memory)
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        assert row == pytest.approx(want)
    exact = _run(tmp_path, doc, "s", mode="streaming")
    assert exact.metrics["statistics_sampling"] is None
    assert (exact.output_dir / "statistics" / "by_dept.csv").read_bytes() == \
        (memory.output_dir / "statistics" / "by_dept.csv").read_bytes()
    assert _rows(exact) == _rows(memory)


def test_beyond_the_row_budget_missing_and_count_stay_exact(tmp_path: Path) -> None:
    """max_rows 1: every order statistic comes from a sample; `missing` and `count` are summed exactly, and the
    observed values are what is sampled (a percentile is one of the group's present values or between them)."""
    got = _run(tmp_path, _doc("observed"), "b", mode="streaming", max_rows=1)
    assert got.metrics["statistics_sampling"] is not None
    rows = {r["dept"]: r for r in _rows(got)}
    for want in OBSERVED:
        row = rows[want["dept"]]
        for key in ("rows", "salary_count", "salary_missing", "id_missing"):
            assert row[key] == want[key], key
        for key in ("salary_p10", "salary_p90", "salary_median"):
            assert row[key] is None or 5 <= row[key] <= 40


def test_reference_config_aggregates_imputed_values_explicitly() -> None:
    cfg = config_mod.load(None, "default")
    assert [g.values for g in cfg.group_statistics] == ["imputed"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.update(values="raw"), "group_statistics[0].values: expected one of observed, imputed, got 'raw'"),
    (lambda s: s["aggregations"].update(dept=["p90"]), "group_statistics[0].aggregations.dept[0]: p90 needs a numeric"),
    (lambda s: s["aggregations"].update(salary=["p100"]),
     "group_statistics[0].aggregations.salary[0]: unknown aggregation 'p100'"),
    (lambda s: s["aggregations"].update(salary=["p5"]),
     "group_statistics[0].aggregations.salary[0]: unknown aggregation 'p5'"),
])
def test_validation_names_the_key(mutate: Any, message: str) -> None:
    doc = _doc(None)
    mutate(doc["group_statistics"][0])
    with pytest.raises(ConfigError) as err:
        config_mod.validate(doc)
    assert str(err.value).startswith(message)
