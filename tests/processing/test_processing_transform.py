"""Unit tests per transform on tiny inputs, including the documented semantics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from processing import transform
from processing.config import Bins, GroupStatistics, Imputation


def test_mark_missing_uses_exact_markers() -> None:
    arr = pa.array(["", "NA", "None", "x", None, " NA"])
    out = transform.mark_missing(arr, ("", "NA", "None"))
    assert out.to_pylist() == [None, None, None, "x", None, " NA"]


def test_coerce_float_counts_text_as_invalid() -> None:
    values, invalid = transform.coerce(pa.array(["1", " 2.5 ", "unknown", None, "1e3", "inf", "1,000", ".5", "-3."]),
                                       "float")
    assert values.to_pylist() == [1.0, 2.5, None, None, 1000.0, None, None, 0.5, -3.0]
    assert invalid.to_pylist() == [False, False, True, False, False, True, True, False, False]


def test_coerce_integer_rejects_fractions_and_overflow() -> None:
    values, invalid = transform.coerce(pa.array(["7", "7.0", "7.5", "99999999999999999999", "-3", None]), "integer")
    assert values.type == pa.int64()
    assert values.to_pylist() == [7, 7, None, None, -3, None]
    assert invalid.to_pylist() == [False, False, True, True, False, False]


def test_median_interpolates_and_integer_columns_round_half_even() -> None:
    s = pd.Series([1.0, 2.0, np.nan])
    info = transform.impute_value(s, Imputation("x", "median"), "float")
    assert info["value"] == 1.5
    assert transform.fill(s, info["value"], "float").tolist() == [1.0, 2.0, 1.5]
    ints = pd.Series([1, 2, None], dtype="Int64")
    info = transform.impute_value(ints, Imputation("x", "median"), "integer")
    assert (info["computed"], info["value"]) == (1.5, 2)
    assert transform.fill(ints, info["value"], "integer").dtype == "Int64"


def test_all_missing_column_uses_fallback_or_stays_missing() -> None:
    s = pd.Series([np.nan, np.nan])
    assert transform.impute_value(s, Imputation("x", "median"), "float") == {
        "strategy": "median", "value": None, "computed": None, "source": "none"}
    info = transform.impute_value(s, Imputation("x", "mean", fallback=0), "float")
    assert (info["value"], info["source"]) == (0, "fallback")
    assert transform.fill(s, None, "float").isna().all()


def test_most_frequent_breaks_ties_by_smallest_value() -> None:
    s = pd.Series(["b", "a", "b", "a", None], dtype=transform.STRING_DTYPE)
    assert transform.impute_value(s, Imputation("x", "most_frequent"), "string")["value"] == "a"


def test_mean_and_constant() -> None:
    s = pd.Series([1.0, 2.0, 6.0, None])
    assert transform.impute_value(s, Imputation("x", "mean"), "float")["value"] == 3.0
    assert transform.impute_value(s, Imputation("x", "constant", value=-1), "float")["value"] == -1


def test_string_length_of_missing_is_missing_not_four() -> None:
    out = transform.string_length(pa.array(["abc", None, "", "é日"]))
    assert out.dtype == "Int64"
    assert out.tolist()[0] == 3 and out.isna().tolist() == [False, True, False, False]
    assert out.tolist()[2:] == [0, 2]  # characters, not bytes


SALARY_BINS = Bins((0, 50000, 70000, 100000), ("low", "medium", "high"))


def test_bins_are_right_closed_and_include_lowest() -> None:
    s = pd.Series([0, 50000, 50000.01, 70000, 100000, 100000.5, -1, np.nan])
    out, outside = transform.bin_values(s, SALARY_BINS)
    assert out.astype(object).where(out.notna(), None).tolist() == [
        "low", "low", "medium", "medium", "high", None, None, None]
    assert outside == 2
    assert out.dtype == pd.CategoricalDtype(["low", "medium", "high"], ordered=True)
    # same as pd.cut, which is what a data scientist would compare with
    ref = pd.cut(s, [0, 50000, 70000, 100000], labels=["low", "medium", "high"], include_lowest=True)
    assert out.astype(object).equals(ref.astype(object))


def test_bins_outside_label_and_left_closed() -> None:
    s = pd.Series([0, 50000, 100000, 200000])
    bins = Bins((0, 50000, 70000, 100000), ("low", "medium", "high"), closed="left", outside="out of range")
    out, outside = transform.bin_values(s, bins)
    assert out.tolist() == ["low", "medium", "out of range", "out of range"]
    assert outside == 2
    assert list(out.cat.categories) == ["low", "medium", "high", "out of range"]


def test_infinite_edge() -> None:
    out, _ = transform.bin_values(pd.Series([0.0, 25.0, 25.5, 1e9]), Bins((0, 25, math.inf), ("young", "old")))
    assert out.tolist() == ["young", "young", "old", "old"]


def test_duplicate_count_is_rows_minus_distinct_with_nulls_equal() -> None:
    frame = pd.DataFrame({"id": [1, 2, 3, 4], "a": ["x", "x", None, None], "b": [1.0, 1.0, np.nan, np.nan]})
    assert transform.duplicate_count(frame, ["id", "a", "b"])[0] == 0  # a unique id makes exact duplicates impossible
    count, mask = transform.duplicate_count(frame, ["a", "b"])
    assert count == 2 and mask.tolist() == [False, True, False, True]
    assert transform.duplicate_count(frame, [])[0] == 0


def test_group_statistics_sorted_with_missing_group() -> None:
    frame = pd.DataFrame({"dept": pd.Series(["b", "a", "b", None], dtype=transform.STRING_DTYPE),
                          "pay": [1.0, 2.0, 3.0, 4.0]})
    out = transform.group_statistics(frame, GroupStatistics("s", ("dept",), (("pay", ("mean", "max", "count")),)))
    assert out["dept"].tolist()[:2] == ["a", "b"] and pd.isna(out["dept"].tolist()[2])
    assert out["rows"].tolist() == [1, 2, 1]
    assert out["pay_mean"].tolist() == [2.0, 2.0, 4.0]
    assert list(out.columns) == ["dept", "rows", "pay_mean", "pay_max", "pay_count"]


def test_numeric_summary_empty() -> None:
    assert transform.numeric_summary(pd.Series([np.nan]))["min"] is None
    assert transform.numeric_summary(pd.Series([1, 3]))["mean"] == 2.0


@pytest.mark.parametrize("kind", ["float", "integer"])
def test_coerce_empty(kind: str) -> None:
    values, invalid = transform.coerce(pa.array([], pa.string()), kind)
    assert len(values) == 0 and len(invalid) == 0


@pytest.mark.parametrize("closed", ["right", "left"])
@pytest.mark.parametrize("include_lowest", [True, False])
@pytest.mark.parametrize("outside", [None, "other"])
def test_bin_values_equals_pd_cut(closed: str, include_lowest: bool, outside: str | None) -> None:
    """bin_values re-implements pd.cut's binning (searchsorted on the edges): pd.cut is the oracle, on edge values,
    values outside every bin, NaN and infinities."""
    from processing.config import Bins

    rng = np.random.default_rng(0)
    values = pd.Series(np.concatenate([
        rng.choice([0, 25, 35, 45, 55, 50000, 70000, 100000, -1, 1e9, np.nan, np.inf, -np.inf], 400),
        rng.normal(50, 30, 400)]))
    for edges, labels in [((0, 25, 35, 45, 55, float("inf")), ("Young", "Early", "Mid", "Senior", "Experienced")),
                          ((0, 50000, 70000, 100000), ("low", "medium", "high"))]:
        bins = Bins(edges=edges, labels=labels, closed=closed, include_lowest=include_lowest, outside=outside)
        got, outside_count = transform.bin_values(values, bins)
        expected = pd.cut(values, bins=list(edges), labels=list(labels), right=closed == "right",
                          include_lowest=include_lowest, ordered=True)
        outside_mask = values.notna() & expected.isna()
        if outside is not None:
            expected = expected.cat.add_categories([outside])
            expected[outside_mask] = outside
        pd.testing.assert_series_equal(got, pd.Series(expected, index=values.index))
        assert outside_count == int(outside_mask.sum()) > 0
