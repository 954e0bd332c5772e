"""Golden test on the generated 20k reference dataset: figures recomputed independently with csv/json/numpy."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from processing import sample

MISSING = {"", "NA", "N/A", "NULL", "NaN", "None", "n/a", "nan", "null", "<NA>"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "employees.csv"
    sample.write(sample.generate(20000, seed=42), path)
    return path


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def test_golden_reference(reference: Path, run) -> None:
    # Independent expectations from the raw file
    with reference.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20000
    ages = [_number(r["age"]) for r in rows if r["age"] not in MISSING]
    salaries = [_number(r["salary"]) for r in rows if r["salary"] not in MISSING]
    age_median = float(np.median([a for a in ages if a is not None]))
    salary_median = float(np.median([s for s in salaries if s is not None]))
    invalid = sum(v is None for v in ages) + sum(v is None for v in salaries)
    malformed, profiles, addresses = 0, 0, []
    for r in rows:
        if r["profile"] in MISSING:
            addresses.append(None)
            continue
        profiles += 1
        try:
            obj = json.loads(r["profile"])
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            malformed += 1
            obj = {}
        addresses.append(obj.get("address"))
    keys = [tuple(r[c] for c in ("name", "age", "salary", "profile", "department")) for r in rows]
    key_dups = len(keys) - len(set(keys))
    departments = Counter(r["department"] if r["department"] not in MISSING else "Unknown" for r in rows)
    salary_filled = [s if s is not None else salary_median for s in
                     (_number(r["salary"]) if r["salary"] not in MISSING else None for r in rows)]
    cut = pd.cut(pd.Series(salary_filled), [0, 50000, 70000, 100000], labels=["low", "medium", "high"],
                 include_lowest=True)

    res = run(reference)
    m = res.metrics
    s = m["summary"]
    assert (s["rows_in"], s["rows_out"], s["rows_rejected"]) == (20000, 20000, 0)
    assert m["imputation"]["age"]["value"] == age_median
    assert m["imputation"]["salary"]["value"] == pytest.approx(salary_median, abs=1e-9)
    assert s["invalid_values"] == invalid > 0
    assert s["malformed_json"] == malformed > 0
    assert s["malformed_json_rate"] == pytest.approx(malformed / profiles)
    assert s["duplicate_rows_key"] == key_dups > 0
    assert s["duplicate_rows_exact"] == 0  # every row has its own id
    assert s["missing_values_after"] == m["columns"]["profile"]["missing_before"]  # JSON text is never imputed
    assert m["group_columns"]["department"]["distinct"] == len(departments)
    assert Counter(res.transformed["department"].tolist()) == departments
    got_addresses = [None if pd.isna(a) else a for a in res.transformed["address"].tolist()]
    assert got_addresses == addresses
    lengths = [None if a is None else len(a) for a in addresses]
    assert [None if pd.isna(v) else int(v) for v in res.transformed["address_length"].tolist()] == lengths
    assert m["derived"]["salary_category"]["counts"] == {k: int(v) for k, v in cut.value_counts(sort=False).items()}
    assert m["derived"]["salary_category"]["outside_bins"] == int(cut.isna().sum())
    assert sum(m["derived"]["age_group"]["counts"].values()) == 20000  # every age lands in a bin

    # The written outputs hold the same data, with the documented types
    out = Path(m["outputs"]["transformed"][0])
    table = pq.read_table(res_path(res, "transformed"))
    assert table.schema.field("id").type == "int64" and table.schema.field("age").type == "double"
    assert str(table.schema.field("salary_category").type).startswith("dictionary<values=string")
    assert table.schema.field("address_length").type == "int64"
    stats = json.loads(res_path(res, "statistics", ".json").read_text())
    by_dept = {r["department"]: r for r in stats["rows"]}
    assert {d: r["rows"] for d, r in by_dept.items()} == dict(departments)
    assert out.name == "transformed.parquet"


def res_path(res, folder: str, suffix: str = "") -> Path:
    rel = next(p for p in res.metrics["outputs"][folder] if p.endswith(suffix))
    return res.output_dir / rel


def test_summary_has_exactly_the_contract_keys(reference: Path, run) -> None:
    m = run(reference).metrics
    assert list(m["summary"]) == [
        "rows_in", "rows_out", "rows_rejected", "missing_values_before", "missing_values_after",
        "missing_rate_after", "rejected_rate", "duplicate_rows_exact", "duplicate_rows_key", "duplicate_rate",
        "malformed_json", "malformed_json_rate", "invalid_values", "processing_seconds",
        "drift_max_psi", "drifted_columns", "drift_unavailable", "quality_gate_failed", "quality_gate_warned",
        "rules_failed", "rules_warned", "rows_rejected_by_rules"]
    assert all(isinstance(v, (int, float)) for v in m["summary"].values())
