"""Bad and unusual input: clear errors or counted rejections, never a traceback; nothing lost."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processing.errors import EmptyInputError, InputError, MissingColumnsError

HEADER = "id,name,age,salary,profile,department\n"
ROW1 = '1,Ann,30,50000,"{""address"": ""1 Main St""}",HR\n'
ROW2 = '2,Bob,,70000,,\n'


def _accounting(result) -> None:
    s = result.metrics["summary"]
    assert s["rows_in"] == s["rows_out"] + s["rows_rejected"]
    for f in result.metrics["inputs"]:
        assert f["rows_in"] == f["rows_out"] + f["rows_rejected"]


def test_empty_file_is_a_clear_error(write, run) -> None:
    with pytest.raises(EmptyInputError, match=r"a\.csv: empty file"):
        run(write("a.csv", b""))
    with pytest.raises(EmptyInputError, match="empty file"):
        run(write("b.csv", "\n\n  \n"))


def test_header_only_is_a_clear_error(write, run) -> None:
    with pytest.raises(EmptyInputError, match="no data rows"):
        run(write("a.csv", HEADER))


def test_missing_required_columns_are_named(write, run) -> None:
    with pytest.raises(MissingColumnsError, match=r"a.csv: missing required column\(s\): salary, department"):
        run(write("a.csv", "id,name,age,profile\n1,a,2,{}\n"))


def test_unknown_columns_pass_through(write, run) -> None:
    res = run(write("a.csv", "id,name,age,salary,profile,department,extra\n1,a,3,4,{},HR,keep me\n"))
    assert res.cleaned["extra"].tolist() == ["keep me"]
    assert res.metrics["columns"]["extra"]["declared"] is False


def test_bom_crlf_and_quoted_fields(write, run) -> None:
    content = ("\ufeff" + HEADER + '1,"Smith, ""Jr"" \nJohn",30,50000,"{""address"": ""a, b""}",HR\n'
               + ROW2).replace("\n", "\r\n").replace(" \r\nJohn", " \nJohn")
    res = run(write("a.csv", content.encode("utf-8")))
    assert list(res.cleaned.columns)[:2] == ["id", "name"]
    assert res.cleaned["name"].tolist() == ['Smith, "Jr" \nJohn', "Bob"]
    assert res.transformed["address"].tolist()[0] == "a, b"
    assert res.cleaned["department"].tolist() == ["HR", "Unknown"]
    _accounting(res)


def test_non_utf8_rows_are_rejected_with_escaped_original(write, run) -> None:
    res = run(write("a.csv", HEADER.encode() + ROW1.encode() + b"3,Jos\xe9,40,1,{},HR\n"))
    assert res.metrics["summary"]["rows_rejected"] == 1
    rej = res.rejected.to_pylist()[0]
    assert rej["_reject_reason"] == "invalid_utf8" and rej["name"] == "Jos\\xe9"
    _accounting(res)


def test_wrong_field_count_rows_are_rejected_with_raw_line(write, run) -> None:
    res = run(write("a.csv", HEADER + ROW1 + "9,too,many,fields,{},HR,x,y\n" + ROW2))
    assert res.metrics["summary"]["rows_in"] == 3 and res.metrics["summary"]["rows_rejected"] == 1
    rej = res.rejected.to_pylist()[0]
    assert rej["_reject_reason"] == "parse_error:wrong_field_count"
    assert rej["_raw_line"] == "9,too,many,fields,{},HR,x,y"
    _accounting(res)


def test_numeric_text_is_invalid_then_imputed(write, run) -> None:
    res = run(write("a.csv", HEADER + "1,a,unknown,10,{},HR\n2,b,20,n/a,{},HR\n3,c,40,30,{},HR\n"))
    m = res.metrics
    assert m["columns"]["age"]["invalid"] == 1 and m["columns"]["age"]["missing_before"] == 0
    assert m["columns"]["salary"]["missing_before"] == 1  # n/a is a missing marker, not invalid
    assert res.cleaned["age"].tolist() == [30.0, 20.0, 40.0]
    assert m["summary"]["invalid_values"] == 1


def test_missing_or_invalid_id_rejects_the_row(write, run) -> None:
    res = run(write("a.csv", HEADER + ROW1 + ",x,1,1,{},HR\nabc,y,1,1,{},HR\n"))
    reasons = sorted(r["_reject_reason"] for r in res.rejected.to_pylist())
    assert reasons == ["invalid_value:id", "missing_value:id"]
    assert res.rejected.to_pylist()[1]["id"] == "abc"  # original value kept
    assert res.metrics["rows"]["rejected_by_reason"] == {"invalid_value:id": 1, "missing_value:id": 1}
    _accounting(res)


def test_malformed_and_non_object_json_counted(write, run) -> None:
    res = run(write("a.csv", HEADER + ROW1 + '2,b,1,1,"{bad",HR\n3,c,1,1,"[1]",HR\n4,d,1,1,,HR\n'))
    j = res.metrics["json"]["profile"]
    assert (j["non_missing"], j["invalid_syntax"], j["not_object"]) == (3, 1, 1)
    assert res.metrics["summary"]["malformed_json_rate"] == pytest.approx(2 / 3)
    assert res.transformed["address"].isna().tolist() == [False, True, True, True]


def test_several_files_different_order_gzip_and_parquet(tmp_path: Path, write, run) -> None:
    # GIVEN a folder with a CSV, a gzip CSV in another column order, and a Parquet file
    write("1.csv", HEADER + ROW1)
    write("2.csv.gz", gzip.compress(b"department,profile,salary,age,name,id\nIT,{},1000,50,Cy,3\n"))
    pq.write_table(pa.table({"salary": [2000.0, None], "id": [4, 5], "age": [20, 21], "name": ["Di", "Ed"],
                             "profile": ['{"address": "p"}', None], "department": ["HR", None]}),
                   tmp_path / "in" / "3.parquet")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "in").iterdir()}
    # WHEN processed
    res = run(tmp_path / "in")
    # THEN rows keep file order, columns align by name, and inputs are untouched
    assert res.cleaned["id"].tolist() == [1, 3, 4, 5]
    assert res.cleaned["department"].tolist() == ["HR", "IT", "HR", "Unknown"]
    assert res.transformed["address"].tolist()[3] is pd.NA or pd.isna(res.transformed["address"].tolist()[3])
    assert [f["format"] for f in res.metrics["inputs"]] == ["csv", "csv.gz", "parquet"]
    assert {f["file"]: f["sha256"] for f in res.metrics["inputs"]} == before
    assert before == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "in").iterdir()}
    _accounting(res)


def test_unterminated_quote_swallows_the_rest_into_one_rejected_row(write, run) -> None:
    res = run(write("a.csv", HEADER + ROW1 + '1,"unterminated,3,4,{},HR\n' + ROW2))
    assert res.metrics["summary"]["rows_out"] == 1
    assert res.rejected.to_pylist()[0]["_reject_reason"] == "parse_error:wrong_field_count"
    _accounting(res)


def test_duplicate_header_names_error(write, run) -> None:
    with pytest.raises(InputError, match="duplicate column names in header: id"):
        run(write("a.csv", "id,id,name\n1,2,3\n"))


def test_no_inputs(tmp_path: Path, run) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyInputError, match="no input files"):
        run(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        run(tmp_path / "nope")


def test_duplicates_counted_and_optionally_dropped(write, run, default_doc) -> None:
    path = write("a.csv", HEADER + ROW1 + ROW1.replace("1,", "2,", 1) + ROW1)
    res = run(path)
    s = res.metrics["summary"]
    assert (s["duplicate_rows_exact"], s["duplicate_rows_key"], s["rows_out"]) == (1, 2, 3)
    default_doc["duplicates"]["drop"] = "key"
    res = run(path, default_doc)
    assert res.cleaned["id"].tolist() == [1]
    assert [r["_reject_reason"] for r in res.rejected.to_pylist()] == ["duplicate_key", "duplicate_key"]
    assert res.metrics["duplicates"]["dropped"] == 2
    _accounting(res)


def test_csv_output_format(write, run) -> None:
    res = run(write("a.csv", HEADER + ROW1 + ROW2), fmt="csv")
    assert all(p.endswith((".csv", ".json")) for v in res.metrics["outputs"].values() for p in v)
