"""The boolean, date and datetime column types (docs/processing.md "Config format", "Output column types"): config
validation naming the key path, parsing (accepted texts, invalid values counted), time zones, imputation, output
types in Parquet and CSV, Parquet inputs, both modes; and the CSV float fix (whole floats keep a decimal)."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processing import config as config_mod
from processing import pipeline, types
from processing.errors import ConfigError

UTC = datetime.UTC
CSV = """id,active,day,when,birthday,amount
1,true,2024-03-01,2024-03-01 05:00:00,01/02/1990,100.5
2,No,2024-03-02,2024-03-01T06:00:00Z,31/02/1990,200
3,maybe,2024-02-30,2024-03-10 02:30,15/06/1985,
4,,,,,300
5, Y ,2024-03-02,2024-11-03 01:30,15/06/1985,50
6,0,2024-3-1,2024-03-01T01:00:00-05:00,1/6/1985,3750
"""
DOC: dict[str, Any] = {
    "columns": {"id": "integer", "active": "boolean", "day": "date",
                "when": {"type": "datetime", "timezone": "America/New_York"},
                "birthday": {"type": "date", "format": "%d/%m/%Y"}, "amount": "float"},
}


def _run(tmp_path: Path, doc: dict[str, Any], fmt: str = "parquet", mode: str = "memory", name: str = "out",
         data: str = CSV) -> tuple[dict[str, Any], Path]:
    src = tmp_path / "in.csv"
    src.write_text(data, encoding="utf-8")
    out = tmp_path / f"{name}-{mode}-{fmt}"
    pipeline.run([src], out, config_mod.validate(copy.deepcopy(doc)), fmt=fmt, mode=mode)
    return json.loads((out / "quality" / "metrics.json").read_text()), out


def test_values_invalid_counts_and_output_types_hand_checked(tmp_path: Path) -> None:
    metrics, out = _run(tmp_path, DOC)
    table = pq.read_table(out / "cleaned" / "cleaned.parquet")
    assert str(table.schema.field("active").type) == "bool"
    assert str(table.schema.field("day").type) == "date32[day]"
    assert str(table.schema.field("when").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("birthday").type) == "date32[day]"
    rows = table.to_pylist()
    # "maybe" invalid; "" missing; " Y " and "0" accepted (case-insensitive, spaces stripped)
    assert [r["active"] for r in rows] == [True, False, None, None, True, False]
    # 2024-02-30 is not a date (no roll-over to March 1st); 2024-3-1 is not ISO-8601
    d = datetime.date
    assert [r["day"] for r in rows] == [d(2024, 3, 1), d(2024, 3, 2), None, None, d(2024, 3, 2), None]
    t = datetime.datetime
    assert [r["when"] for r in rows] == [
        t(2024, 3, 1, 10, tzinfo=UTC),  # 05:00 in New York (EST, -5) is 10:00 UTC
        t(2024, 3, 1, 6, tzinfo=UTC),  # an explicit Z wins over the column's zone
        None,  # 02:30 on 2024-03-10 does not exist in New York (clocks jump from 02:00 to 03:00): invalid
        None,
        t(2024, 11, 3, 5, 30, tzinfo=UTC),  # 01:30 on 2024-11-03 happens twice: the earlier one (EDT, -4)
        t(2024, 3, 1, 6, tzinfo=UTC),  # an explicit offset
    ]
    # %d/%m/%Y: 31/02 is invalid; one-digit day and month are accepted as strptime accepts them
    assert [r["birthday"] for r in rows] == [d(1990, 2, 1), None, d(1985, 6, 15), None, d(1985, 6, 15),
                                             d(1985, 6, 1)]
    cols = metrics["columns"]
    assert {c: (cols[c]["missing_before"], cols[c]["invalid"]) for c in ("active", "day", "when", "birthday")} == {
        "active": (1, 1), "day": (1, 2), "when": (1, 1), "birthday": (1, 1)}
    assert cols["when"]["type"] == "datetime"
    assert metrics["invalid_values"] == {"id": 0, "active": 1, "day": 2, "when": 1, "birthday": 1, "amount": 0}
    assert metrics["summary"]["invalid_values"] == 5


def test_csv_output_text_forms_and_floats_keep_a_decimal(tmp_path: Path) -> None:
    _, out = _run(tmp_path, DOC, fmt="csv")
    lines = (out / "cleaned" / "cleaned.csv").read_text().splitlines()
    assert lines[0] == '"id","active","day","when","birthday","amount"'
    assert lines[1] == "1,true,2024-03-01,2024-03-01T10:00:00Z,1990-02-01,100.5"
    assert lines[2] == "2,false,2024-03-02,2024-03-01T06:00:00Z,,200.0"
    assert lines[4] == "4,,,,,300.0"
    assert lines[6] == "6,false,,2024-03-01T06:00:00Z,1985-06-01,3750.0"


def test_csv_statistics_floats_keep_a_decimal(tmp_path: Path) -> None:
    doc = {**DOC, "group_statistics": [{"name": "by_active", "group_by": ["active"],
                                        "aggregations": {"amount": ["sum", "mean"]}}]}
    _, out = _run(tmp_path, doc)
    lines = (out / "statistics" / "by_active.csv").read_text().splitlines()
    # groups sorted (false, true), the missing key last: false = 200 + 3750, true = 100.5 + 50
    assert lines[1:] == ["false,2,3950.0,1975.0", "true,2,150.5,75.25", ",2,300.0,300.0"]


def test_fractional_seconds_and_sub_microsecond_digits(tmp_path: Path) -> None:
    data = "id,when\n1,2024-03-01T05:00:00.5Z\n2,2024-03-01 05:00:00.123456789\n3,1969-12-31T23:59:59.25Z\n"
    doc = {"columns": {"id": "integer", "when": "datetime"}}
    _, out = _run(tmp_path, doc, fmt="csv", data=data)
    assert (out / "cleaned" / "cleaned.csv").read_text().splitlines()[1:] == [
        "1,2024-03-01T05:00:00.500000Z", "2,2024-03-01T05:00:00.123456Z", "3,1969-12-31T23:59:59.250000Z"]


@pytest.mark.parametrize("mode", ["memory", "streaming"])
def test_imputation_of_the_new_types(tmp_path: Path, mode: str) -> None:
    doc = {**DOC, "imputation": {
        "active": {"strategy": "most_frequent"},  # true 2, false 2: the tie goes to the smallest, false
        "day": {"strategy": "median"},  # 03-01, 03-02, 03-02 -> 03-02
        "when": {"strategy": "constant", "value": "2024-01-01 00:00"},  # no offset: the column's zone
        "birthday": {"strategy": "median"},  # 1985-06-01, 1985-06-15, 1985-06-15, 1990-02-01 -> 1985-06-15
    }}
    metrics, out = _run(tmp_path, doc, mode=mode)
    imp = metrics["imputation"]
    assert imp["active"] | {} == {"strategy": "most_frequent", "value": False, "computed": False,
                                  "source": "statistic", "filled": 2}
    assert imp["day"]["value"] == "2024-03-02" and imp["day"]["filled"] == 3
    assert imp["when"] == {"strategy": "constant", "value": "2024-01-01T05:00:00Z", "computed": None,
                           "source": "constant", "filled": 2}
    assert imp["birthday"]["value"] == "1985-06-15"
    rows = pq.read_table(out / "cleaned" / "cleaned.parquet").to_pylist()
    assert [r["active"] for r in rows] == [True, False, False, False, True, False]
    assert rows[3]["when"] == datetime.datetime(2024, 1, 1, 5, tzinfo=UTC)
    assert metrics["columns"]["day"]["missing_after"] == 0


def test_date_median_between_two_days_rounds_half_to_even(tmp_path: Path) -> None:
    data = "id,day\n1,2024-03-01\n2,2024-03-02\n3,\n4,2024-03-03\n5,2024-03-04\n"
    doc = {"columns": {"id": "integer", "day": "date"}, "imputation": {"day": {"strategy": "median"}}}
    metrics, _ = _run(tmp_path, doc, data=data)
    # median of 19783, 19784, 19785, 19786 (days) = 19784.5 -> 19784 (even) = 2024-03-02
    assert metrics["imputation"]["day"] == {"strategy": "median", "value": "2024-03-02",
                                            "computed": "2024-03-02T12:00:00Z", "source": "statistic", "filled": 1}


def test_rejection_duplicates_and_drift_on_the_new_types(tmp_path: Path) -> None:
    data = ("id,active,day\n1,true,2024-03-01\n2,true,2024-03-01\n3,bad,2024-03-01\n4,false,2024-03-01\n"
            "5,TRUE,2024-03-01\n6,f,\n")
    doc = {"columns": {"id": "integer", "active": "boolean", "day": "date"},
           "required_columns": ["id", "active", "day"], "reject_rows_missing": ["active"],
           "duplicates": {"key_columns": ["active", "day"], "drop": "key"}}
    metrics, out = _run(tmp_path, doc, data=data)
    assert metrics["rows"]["rejected_by_reason"] == {"duplicate_key": 2, "invalid_value:active": 1}
    kept = pq.read_table(out / "cleaned" / "cleaned.parquet").to_pylist()
    assert [r["id"] for r in kept] == [1, 4, 6]
    profile = json.loads((out / "quality" / "profile.json").read_text())
    assert profile["columns"]["active"]["kind"] == "categorical"  # booleans drift as categories by default
    assert set(profile["columns"]["active"]["frequencies"]) == {"True", "False"}


def test_parquet_inputs_read_as_is(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "active": pa.array([True, None, False]),
        "day": pa.array([datetime.date(2024, 3, 1), None, datetime.date(1999, 12, 31)], pa.date32()),
        # naive timestamps (no zone in the file): milliseconds since 2024-03-01 05:00 and 2024-07-01 05:00
        "naive": pa.array([1709269200000, None, 1719810000000], pa.int64()).cast(pa.timestamp("ms")),
        "aware": pa.array([datetime.datetime(2024, 3, 1, 5, tzinfo=UTC), None, None], pa.timestamp("ns", tz="UTC")),
    }), src)
    doc = {"columns": {"id": "integer", "active": "boolean", "day": "date",
                       "naive": {"type": "datetime", "timezone": "Europe/Paris"}, "aware": "datetime"}}
    out = tmp_path / "out"
    metrics = pipeline.run([src], out, config_mod.validate(doc)).metrics
    rows = pq.read_table(out / "cleaned" / "cleaned.parquet").to_pylist()
    t = datetime.datetime
    assert rows[0] == {"id": 1, "active": True, "day": datetime.date(2024, 3, 1),
                       "naive": t(2024, 3, 1, 4, tzinfo=UTC),  # Paris, winter: +1
                       "aware": t(2024, 3, 1, 5, tzinfo=UTC)}
    assert rows[2]["naive"] == t(2024, 7, 1, 3, tzinfo=UTC)  # Paris, summer: +2
    assert rows[1] == {"id": 2, "active": None, "day": None, "naive": None, "aware": None}
    assert metrics["invalid_values"] == {"id": 0, "active": 0, "day": 0, "naive": 0, "aware": 0}


@pytest.mark.parametrize(("columns", "imputation", "message"), [
    ({"t": "datetim"}, {}, "columns.t: unknown type 'datetim'"),
    ({"t": {"type": "datetime", "timezone": "Mars/Base"}}, {}, "columns.t.timezone: unknown time zone 'Mars/Base'"),
    ({"t": {"type": "datetime", "zone": "UTC"}}, {}, "columns.t.zone: unknown key (allowed: type, format, timezone)"),
    ({"t": {"type": "date", "timezone": "UTC"}}, {}, "columns.t.timezone: only datetime columns take a time zone"),
    ({"t": {"type": "string", "format": "%Y"}}, {}, "columns.t.format: only date and datetime columns take a format"),
    ({"t": {"type": "date", "format": "%Y-%m-%d %H"}}, {},
     "columns.t.format: a date format cannot hold a time of day or an offset"),
    ({"t": {"type": "date", "format": "%Y-%q"}}, {}, "columns.t.format: unsupported directive %q"),
    ({"t": {"type": "date", "format": "%m/%d"}}, {}, "columns.t.format: format '%m/%d' needs a year"),
    ({"t": {"type": "date", "format": "%Y %Y"}}, {}, "columns.t.format: directive %Y appears twice"),
    ({"t": {"type": "datetime", "format": "%Y %I"}}, {}, "columns.t.format: format '%Y %I': use %H, or %I with %p"),
    ({"t": {"type": "dates"}}, {}, "columns.t.type: unknown type 'dates'"),
    ({"t": "boolean"}, {"t": {"strategy": "constant", "value": "maybe"}},
     "imputation.t.value: expected true or false for a boolean column, got 'maybe'"),
    ({"t": "date"}, {"t": {"strategy": "constant", "value": "01/02/2024"}},
     "imputation.t.value: '01/02/2024' is not an ISO-8601 date"),
    ({"t": "datetime"}, {"t": {"strategy": "median", "fallback": 5}},
     "imputation.t.fallback: expected an ISO-8601 datetime text, got int"),
    ({"t": "boolean"}, {"t": {"strategy": "median"}},
     "imputation.t.strategy: median needs a numeric column (or a date/datetime one), 't' is boolean"),
    ({"t": "date"}, {"t": {"strategy": "mean"}}, "imputation.t.strategy: mean needs a numeric column, 't' is date"),
])
def test_config_errors_name_the_key_path(columns: dict[str, Any], imputation: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.validate({"columns": columns, "imputation": imputation})
    assert str(err.value).startswith(message)


def test_fill_values_are_stored_in_their_canonical_form() -> None:
    cfg = config_mod.validate({"columns": {"a": "boolean", "d": "date", "t": {"type": "datetime",
                                                                              "timezone": "Asia/Kolkata"}},
                               "imputation": {"a": {"strategy": "constant", "value": "Yes"},
                                              "d": {"strategy": "most_frequent", "fallback": "2024-01-05"},
                                              "t": {"strategy": "constant", "value": "2024-01-01T05:30"}}})
    assert [(i.value, i.fallback) for i in cfg.imputations] == [(True, None), (None, "2024-01-05"),
                                                                ("2024-01-01T00:00:00Z", None)]
    assert cfg.column_options["t"] == types.TypeOptions(None, "Asia/Kolkata")


@pytest.mark.parametrize(("text", "kind", "options", "expected"), [
    ("2024-03-01", "date", types.TypeOptions(), "2024-03-01"),
    ("2024-02-29", "date", types.TypeOptions(), "2024-02-29"),
    ("2023-02-29", "date", types.TypeOptions(), None),
    ("2024-03-01T05:00", "datetime", types.TypeOptions(), "2024-03-01T05:00:00Z"),
    ("2024-03-01 05:00:00+05:30", "datetime", types.TypeOptions(), "2024-02-29T23:30:00Z"),
    ("2024-03-01T05:00:00-0800", "datetime", types.TypeOptions(), "2024-03-01T13:00:00Z"),
    ("2024-03-01", "datetime", types.TypeOptions(None, "Europe/Paris"), "2024-02-29T23:00:00Z"),
    ("2024-03-31 02:30", "datetime", types.TypeOptions(None, "Europe/Paris"), None),  # skipped hour
    ("2024-10-27 02:30", "datetime", types.TypeOptions(None, "Europe/Paris"), "2024-10-27T00:30:00Z"),  # earlier
    ("2024-03-01T24:00", "datetime", types.TypeOptions(), None),
    ("March 5, 24 7:05 pm", "datetime", types.TypeOptions("%B %d, %y %I:%M %p"), "2024-03-05T19:05:00Z"),
    ("5 dec 1968", "date", types.TypeOptions("%d %b %Y"), "1968-12-05"),
    ("05.12.68", "date", types.TypeOptions("%d.%m.%y"), "2068-12-05"),  # %y: 69-99 -> 19xx, 00-68 -> 20xx
    ("05.12.69", "date", types.TypeOptions("%d.%m.%y"), "1969-12-05"),
    ("2024-03-01T05:00:00.999999999Z", "datetime", types.TypeOptions(), "2024-03-01T05:00:00.999999Z"),
])
def test_parse_text_standard_library_version(text: str, kind: str, options: types.TypeOptions,
                                             expected: str | None) -> None:
    micros = types.parse_text(text, kind, options)
    assert (None if micros is None else types.format_micros(micros, kind)) == expected


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_both_modes_give_the_same_outputs(tmp_path: Path, fmt: str) -> None:
    doc = {**DOC, "imputation": {"day": {"strategy": "median"}, "active": {"strategy": "most_frequent"}},
           "duplicates": {"key_columns": ["active", "day"]}}
    m1, memory = _run(tmp_path, doc, fmt=fmt, mode="memory")
    m2, stream = _run(tmp_path, doc, fmt=fmt, mode="streaming")
    for key in ("columns", "imputation", "invalid_values", "duplicates", "rows", "summary"):
        if key == "summary":
            m1[key].pop("processing_seconds")
            m2[key].pop("processing_seconds")
        assert m1[key] == m2[key], key
    for folder in ("cleaned", "transformed"):
        a, b = (p / folder / f"{folder}.{fmt}" for p in (memory, stream))
        if fmt == "csv":
            assert a.read_bytes() == b.read_bytes()
        else:
            assert pq.read_table(a).equals(pq.read_table(b))
