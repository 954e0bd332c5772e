"""A dataset that shares no column names with the reference one, driven purely by its config."""

from __future__ import annotations

FOREIGN = {
    "columns": {"sku": "string", "qty": "integer", "price": "float", "attrs": "json", "region": "category"},
    "required_columns": ["sku", "qty"],
    "reject_rows_missing": ["sku"],
    "imputation": {"qty": {"strategy": "median"}, "price": {"strategy": "mean", "fallback": 0},
                   "region": {"strategy": "most_frequent"}},
    "json_columns": {"attrs": {"fields": {"colour": "look.colour", "tags": ["tags"]}}},
    "derived": [{"name": "colour_len", "kind": "string_length", "source": "colour"},
                {"name": "price_band", "kind": "bins", "source": "price",
                 "bins": {"edges": [0, 10, 100], "labels": ["cheap", "dear"], "closed": "left",
                          "outside": "other"}}],
    "group_statistics": [{"name": "by_region", "group_by": ["region", "price_band"],
                          "aggregations": {"qty": ["sum", "median"], "sku": ["nunique"]}}],
    "duplicates": {"key_columns": ["sku"], "drop": "exact"},
    "quality_thresholds": {"min_rows_out": 10},
}


def test_foreign_dataset(write, run) -> None:
    path = write("stock.csv", "region,sku,qty,price,attrs\n"
                              'EU,a1,3,9.99,"{""look"": {""colour"": ""red""}, ""tags"": [""x""]}"\n'
                              "US,a2,,100,\n"
                              ",a3,4,,{}\n"
                              "EU,,1,1,{}\n"
                              'EU,a1,3,9.99,"{""look"": {""colour"": ""red""}, ""tags"": [""x""]}"\n')
    res = run(path, FOREIGN)
    m = res.metrics
    assert m["summary"]["rows_in"] == 5 and m["summary"]["rows_out"] == 3
    assert m["rows"]["rejected_by_reason"] == {"duplicate_exact": 1, "missing_value:sku": 1}
    assert res.cleaned["qty"].tolist() == [3, 4, 4]  # median of 3 and 4 is 3.5 -> 4 (half to even) in Int64
    assert str(res.cleaned["qty"].dtype) == "Int64"
    assert res.cleaned["region"].tolist() == ["EU", "US", "EU"] and str(res.cleaned["region"].dtype) == "category"
    assert res.transformed["colour"].tolist()[0] == "red" and res.transformed["tags"].tolist()[0] == '["x"]'
    assert res.transformed["price_band"].tolist() == ["cheap", "other", "dear"]  # 100 is outside [0, 100)
    assert m["summary"]["duplicate_rows_key"] == 1 and m["summary"]["duplicate_rows_exact"] == 1
    assert m["quality_gate"]["passed"] is False
    stats = res.statistics["by_region"]
    assert list(stats.columns) == ["region", "price_band", "rows", "qty_sum", "qty_median", "sku_nunique"]
