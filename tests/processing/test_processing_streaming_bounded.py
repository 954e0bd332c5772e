"""Streaming statistics over more rows than ``max_rows``: exact merged aggregates, order statistics from a sample
within the documented rank-error bound (processing/batchstats.py), and exactness while the rows fit."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from processing import batchstats, options, pipeline, streaming
from processing import config as config_mod
from processing.config import GroupStatistics
from processing.streaming import workfiles

DEFAULT_DOC = json.loads((Path(__file__).resolve().parents[2] / "processing" / "configs" / "default.json").read_text())
ROWS = 40_000


def _config(**changes: Any) -> config_mod.DatasetConfig:
    return config_mod.validate({**copy.deepcopy(DEFAULT_DOC), **changes})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Every row usable (no rejects, no markers besides empty cells): the true values are the frame's."""
    rng = np.random.default_rng(11)
    age = rng.integers(18, 70, ROWS).astype("float64")
    salary = np.round(rng.lognormal(11, 0.4, ROWS), 2)
    age[rng.random(ROWS) < 0.1] = np.nan
    salary[rng.random(ROWS) < 0.1] = np.nan
    dept = rng.choice(np.array(["Sales", "HR", "Engineering", "Tiny", None], dtype=object), ROWS,
                      p=[0.4, 0.3, 0.24, 0.01, 0.05])
    frame = pd.DataFrame({"id": np.arange(1, ROWS + 1), "name": [f"n{i % 997}" for i in range(ROWS)], "age": age,
                          "salary": salary, "profile": [f'{{"address": "{i % 50} Main St"}}' for i in range(ROWS)],
                          "department": dept})
    path = tmp_path_factory.mktemp("bounded") / "in.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _rank_ok(value: float, present: np.ndarray, q: float, eps: float) -> bool:
    """``value`` sits at a rank within ``eps`` (share of ``present``) of quantile ``q``, ties counted either way."""
    below, at_most = np.mean(present < value), np.mean(present <= value)
    return below <= q + eps and at_most >= q - eps


def test_bounded_statistics_are_exact_or_within_the_bound(data: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, frame = data
    cfg = _config(group_statistics=[{"name": "by_dept", "group_by": ["department"], "values": "imputed",
                                     "aggregations": {
        "salary": ["count", "sum", "mean", "median", "min", "max", "std"], "name": ["nunique", "size"]}}])
    r = pipeline.run([path], tmp_path / "s", cfg, mode="streaming", max_rows=4_000, block_size=256 << 10)
    sampling = r.metrics["statistics_sampling"]
    assert sampling["rows"] == ROWS and 3_000 < sampling["sample_rows"] < 5_000
    eps = batchstats.rank_error(sampling["sample_rows"])
    assert sampling["rank_error"] == eps and 0.03 < eps < 0.05

    # Imputation: the fill value is a median of the column's present values within the bound.
    for col in ("age", "salary"):
        info = r.metrics["imputation"][col]
        present = frame[col].dropna().to_numpy()
        assert info["filled"] == ROWS - len(present) and info["sampled_values"] < len(present)
        assert _rank_ok(info["computed"], present, 0.5, batchstats.rank_error(info["sampled_values"]))

    # Group statistics against pandas on the job's own filled values: exact but the median (and mean/std rounding).
    filled = frame.assign(salary=frame["salary"].fillna(r.metrics["imputation"]["salary"]["value"]),
                          department=frame["department"].fillna("Unknown"))
    truth = filled.groupby("department").agg(rows=("id", "size"), count=("salary", "count"), sum=("salary", "sum"),
                                             mean=("salary", "mean"), low=("salary", "min"), high=("salary", "max"),
                                             std=("salary", "std"), nunique=("name", "nunique"))
    got = r.statistics["by_dept"].set_index("department")
    assert list(got.index) == sorted(truth.index)  # sorted as groupby sorts, every group present
    assert got["rows"].tolist() == truth["rows"].tolist() == got["name_size"].tolist()
    assert got["salary_count"].tolist() == truth["count"].tolist()
    assert got["salary_min"].tolist() == truth["low"].tolist() and got["salary_max"].tolist() == truth["high"].tolist()
    assert got["name_nunique"].tolist() == truth["nunique"].tolist()
    np.testing.assert_allclose(got["salary_sum"], truth["sum"], rtol=1e-12)
    np.testing.assert_allclose(got["salary_mean"], truth["mean"], rtol=1e-12)
    np.testing.assert_allclose(got["salary_std"], truth["std"], rtol=1e-9)
    sizes = {g["group"]["department"]: g for g in sampling["groups"]["by_dept"]}
    assert set(sizes) == set(truth.index)
    for dept, group in filled.groupby("department"):
        k = sizes[dept]["sampled"]
        assert sizes[dept]["rows"] == len(group) and 0 < k < len(group)
        assert _rank_ok(got.loc[dept, "salary_median"], group["salary"].to_numpy(), 0.5, batchstats.rank_error(k))

    # Numeric summaries and group-column metrics: exact.
    assert r.metrics["numeric"]["age"]["count"] == ROWS and r.metrics["numeric"]["id"]["max"] == ROWS
    assert r.metrics["numeric"]["salary"]["min"] == filled["salary"].min()
    assert r.metrics["group_columns"]["department"] == {"distinct": 5, "missing": 0}

    # Drift profile from the sample: says so, and its quantiles are within the bound.
    profile = json.loads((tmp_path / "s" / "quality" / "profile.json").read_text())
    assert profile["source"]["sampled"]["rows"] == ROWS
    assert profile["rows"] == sampling["sample_rows"]
    drift_doc = json.loads((tmp_path / "s" / "quality" / "drift.json").read_text())
    assert drift_doc["sampled"] == profile["source"]["sampled"]  # said even when no baseline makes scores
    quantiles = profile["columns"]["salary"]["quantiles"]
    present = frame["salary"].dropna().to_numpy()
    for q in (0.1, 0.5, 0.9):
        assert _rank_ok(quantiles[round(q * 100)], present, q, 2 * eps)  # sample's present share varies too


def test_statistics_stay_exact_while_the_rows_fit(data: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, _ = data
    cfg = _config()
    memory = pipeline.run([path], tmp_path / "m", cfg, mode="memory")
    fit = pipeline.run([path], tmp_path / "a", cfg, mode="streaming", max_rows=ROWS, block_size=256 << 10)
    over = pipeline.run([path], tmp_path / "b", cfg, mode="streaming", max_rows=ROWS - 1, block_size=256 << 10)
    assert memory.metrics["statistics_sampling"] is None and fit.metrics["statistics_sampling"] is None
    assert over.metrics["statistics_sampling"]["rows"] == ROWS
    for key in ("imputation", "numeric", "group_columns"):
        assert fit.metrics[key] == memory.metrics[key]
    pd.testing.assert_frame_equal(fit.statistics["department_statistics"], memory.statistics["department_statistics"])
    # One row over: group medians come from the sample now, but each column's present values (~90% of the rows)
    # still fit the budget, so the imputation medians are exact.
    assert over.metrics["imputation"] == memory.metrics["imputation"]
    assert over.metrics["statistics_sampling"]["imputation"] == {}


def test_the_sample_is_the_same_on_every_run(data: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, _ = data
    runs = [pipeline.run([path], tmp_path / str(i), _config(), mode="streaming", max_rows=3_000) for i in range(2)]
    assert runs[0].metrics["statistics_sampling"] == runs[1].metrics["statistics_sampling"]
    assert runs[0].metrics["imputation"] == runs[1].metrics["imputation"]
    pd.testing.assert_frame_equal(runs[0].statistics["department_statistics"],
                                  runs[1].statistics["department_statistics"])
    mask = streaming.sample_mask(0, 200_000, 0.25)
    assert abs(mask.mean() - 0.25) < 0.005 and mask[:1000].tolist() == streaming.sample_mask(0, 1000, 0.25).tolist()
    assert mask[500:700].tolist() == streaming.sample_mask(500, 200, 0.25).tolist()  # by position, not by call


@pytest.mark.parametrize("keys", [["g"], ["g", "bin"]])
def test_group_stats_merged_over_batches_equal_one_pass(keys: list[str]) -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    x = rng.normal(100, 15, n)
    x[rng.random(n) < 0.2] = np.nan
    frame = pd.DataFrame({
        "g": pd.array(rng.choice(np.array(["a", "b", "c", None], dtype=object), n), dtype="string[pyarrow]"),
        "bin": pd.Categorical(rng.choice(["lo", "hi"], n), categories=["lo", "mid", "hi"]),
        "x": x, "k": pd.array(rng.integers(0, 40, n), dtype="Int64")})
    frame.loc[frame["g"] == "c", "x"] = np.nan  # a group with no values: mean/std/min/max missing, count 0
    spec = GroupStatistics("s", tuple(keys), (("x", ("count", "size", "sum", "mean", "min", "max", "std")),
                                              ("k", ("nunique", "sum", "count"))))
    stats = batchstats.GroupStats(spec)
    cuts = [0, *np.sort(rng.choice(np.arange(1, n), 30, replace=False)).tolist(), n]
    for a, b in itertools.pairwise(cuts):
        stats.add(frame.iloc[a:b])
    from processing import transform

    got, want = stats.result(frame.iloc[:0]), transform.group_statistics(frame, spec)
    assert got[keys].astype(str).values.tolist() == want[keys].astype(str).values.tolist()
    for col in ("rows", "x_count", "x_size", "k_nunique", "k_sum", "k_count", "x_min", "x_max"):
        assert got[col].astype("float64").fillna(-1).tolist() == want[col].astype("float64").fillna(-1).tolist(), col
    for col in ("x_sum", "x_mean", "x_std"):
        np.testing.assert_allclose(got[col].astype("float64"), want[col].astype("float64"), rtol=1e-12)


def _read_back(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def _messy_file(path: Path, seed: int, rows: int) -> None:
    """Rows where ids are often missing or invalid (rejected), duplicates by key, and lines with a wrong field
    count (unparsable)."""
    rng = np.random.default_rng(seed)
    lines = ["id,name,age,salary,profile,department"]
    for i in range(rows):
        ident = {0: "", 1: "x"}.get(int(rng.integers(0, 4)), str(i))  # half the rows rejected (missing/invalid id)
        name = f"n{int(rng.integers(0, 40))}"  # few names: many key duplicates (name, age, salary, profile, dept)
        lines.append(f'{ident},{name},30,50000,"{{""address"": ""{i % 3} Main St""}}",Sales')
        if i % 97 == 0:
            lines.append(f"{i},too,many,fields,here,x,y")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_rejected_rows_beyond_the_budget_are_written_without_being_held(tmp_path: Path, fmt: str) -> None:
    # Two files whose name order differs from their input order; unparsable lines (name order then applies).
    second, first = tmp_path / "b.csv", tmp_path / "a.csv"
    _messy_file(second, 1, 3_000)
    _messy_file(first, 2, 2_000)
    cfg = _config(duplicates={"key_columns": ["name", "age", "salary", "profile", "department"], "drop": "key"})
    memory = pipeline.run([second, first], tmp_path / "m", cfg, mode="memory", fmt=fmt)
    stream = pipeline.run([second, first], tmp_path / "s", cfg, mode="streaming", fmt=fmt, max_rows=500,
                          block_size=16 << 10)
    reasons = memory.metrics["rows"]["rejected_by_reason"]
    assert reasons["duplicate_key"] > 100 and reasons["missing_value:id"] > 500
    assert reasons["parse_error:wrong_field_count"] == 52
    assert stream.metrics["rows"] == memory.metrics["rows"] and stream.metrics["inputs"] == memory.metrics["inputs"]
    assert stream.rejected is None and memory.rejected.num_rows > 500  # more than the budget: not held
    on_disk = _read_back(tmp_path / "s" / stream.metrics["outputs"]["rejected"][0])
    expected = _read_back(tmp_path / "m" / memory.metrics["outputs"]["rejected"][0])
    assert on_disk.num_rows == memory.rejected.num_rows and on_disk.equals(expected)
    assert on_disk.column("_source_file").to_pylist()[0] == "a.csv"  # by name, as the in-memory path orders them


def test_merge_by_row_interleaves_sorted_streams() -> None:
    rng = np.random.default_rng(5)
    keys = rng.permutation(2_000)
    runs = [np.sort(keys[:700]), np.sort(keys[700:])]

    def chunks(values: np.ndarray) -> Any:
        cuts = [0, *np.sort(rng.choice(np.arange(1, len(values)), 25, replace=False)).tolist(), len(values)]
        for a, b in itertools.pairwise(cuts):
            yield pa.table({"k": values[a:b], "v": values[a:b] * 2})

    merged = pa.concat_tables(workfiles.merge_by_row([chunks(r) for r in runs], "k"))
    assert merged.column("k").to_pylist() == list(range(2_000))
    assert merged.column("v").to_pylist() == [2 * k for k in range(2_000)]
    assert pa.concat_tables(workfiles.merge_by_row([chunks(runs[0]), iter([])], "k")).column("k").to_pylist() \
        == runs[0].tolist()


def test_the_default_row_budget_follows_the_memory_available(monkeypatch: pytest.MonkeyPatch) -> None:
    # (PROCESSING_MAX_ROWS_IN_MEMORY, which replaces this default, is read by cli.py: test_processing_cli.py)
    monkeypatch.setattr(options, "available_memory", lambda: 4 << 30)
    assert streaming.default_max_rows() == (4 << 30) // 4 // streaming.ROW_STATE_BYTES == 8_388_608
    monkeypatch.setattr(options, "available_memory", lambda: 32 << 20)  # 65,536 rows: below the floor
    assert streaming.default_max_rows() == streaming.MIN_MAX_ROWS


def test_a_file_of_unparsable_lines_is_written_to_rejected_not_held(tmp_path: Path) -> None:
    # The header has commas, the rows semicolons: every data line has the wrong field count.
    path = tmp_path / "semi.csv"
    path.write_text("id,name,age,salary,profile,department\n"
                    + "".join(f"{i};n{i};30;50000;{{}};Sales\n" for i in range(3_000)))
    memory = pipeline.run([path], tmp_path / "m", _config(), mode="memory")
    stream = pipeline.run([path], tmp_path / "s", _config(), mode="streaming", max_rows=1_000, block_size=16 << 10)
    assert memory.metrics["rows"]["rejected_by_reason"] == {"parse_error:wrong_field_count": 3_000}
    assert stream.metrics["rows"] == memory.metrics["rows"] and stream.metrics["inputs"] == memory.metrics["inputs"]
    assert stream.rejected is None
    on_disk = _read_back(tmp_path / "s" / stream.metrics["outputs"]["rejected"][0])
    assert on_disk.equals(memory.rejected)
    assert on_disk.column("_raw_line")[2_999].as_py() == "2999;n2999;30;50000;{};Sales"
