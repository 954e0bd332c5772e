"""``python -m processing suggest``: the inference functions on hand-made columns, and end to end on the reference
data, a messy file and the generated flights dataset: the suggested config validates, the job runs it on that file
in both modes, and the file passes its own gate (also against its own profile as the drift baseline)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from processing import config as config_mod
from processing import pipeline, sample, sample_flights, suggest

ROOT = Path(__file__).resolve().parents[2]


def messy_csv() -> bytes:
    """Everything awkward in a few dozen rows: a BOM, CRLF line ends, quoted commas and newlines, malformed and
    non-object JSON, invalid numbers, missing markers, a row with too many fields, a non-UTF-8 byte, a missing and
    a non-numeric id, duplicated rows."""
    rows = [
        'id,name,age,salary,profile,department',
        '1,"Ann, Jr.",30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
        '2,Bob,NA,70000,"{""address"": ""2 Oak Ave"", ""phone"": ""555-2"", ""email"": ""b@x""}",',
        '3,Cy,unknown,100000,"{""address"": ""x"", ""address"": ""last wins""}",HR',
        '4,Di,7.0,0,"[1, 2]",Sales',
        '5,Ed,41,1e3,"{""address"": 5, ""phone"": [""a"", 1]}",Finance',
        '6,Fi,,n/a,"{""address"": NaN}",HR',
        '7,Gu,25,abc,not json,Sales',
        '8,"Ha\nHo",25, 60000 ,"{""address"": ""multi, line""}",Marketing',
        ',Io,30,50000,"{}",Sales',
        'x9,Jo,30,50000,"{""a"": }",Sales',
        '10,"Ann, Jr.",30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
        '11,"Ann, Jr.",30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
        '12,Ka,inf,-2.5,"{""address"": ""Ünïcödé ✓""}",None',
        '13,too,many,fields,here,x,y',
        '14,Le,55,70000,"{""address"": {""nested"": true}}",Engineering',
        '15,Mo,35,99999.5,"null",Engineering',
        '16,No,35,,"{""address"": ""a""} {""b"": 1}",<NA>',
        '17,Ol,"",80000,"{""address"": ""q"", ""phone"": null}",Sales',
        '18,Pa,45,80000,"  {""address"": ""lead space""}",Sales',
        '10,"Ann, Jr.",30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
        '19,Qu\xff,30,1,"{}",HR',
        '20,Ri,31,2,"{""phone"": ""555-20""}",HR',
    ]
    text = "\r\n".join(rows) + "\r\n"
    return b"\xef\xbb\xbf" + text.encode("utf-8").replace("\xff".encode(), b"\xff")


# ------------------------------------------------------------------------------------------------ inference, unit
@pytest.mark.parametrize(("values", "expected"), [
    (["1", "2", " 3", "7.0", "NA", None, "-4"], ("integer", None)),
    (["1", "2", "3", "4", "5", "6", "7", "8", "9", "unknown"], ("integer", None)),  # 10% invalid: still numbers
    (["1.5", "2", "1e3", ".5", ""], ("float", None)),
    (["7", "7.5", "8"], ("float", None)),
    (["1", "2", "a", "b", "c"], ("string", None)),  # 40% numbers: text
    (["007", "012", "123"], ("string", None)),  # codes with leading zeros are not quantities
    (["true", "False", "YES", "n", " t "], ("boolean", None)),
    (["0", "1", "1", "0"], ("integer", None)),  # 0/1 alone: a number
    (["true", "false", "1", "0"], ("boolean", None)),
    (["2024-03-01", "2024-02-29", "2023-12-31"], ("date", None)),
    (["2024-03-01T05:00:00Z", "2024-03-01 05:00", "2024-03-01T05:00:00.25+01:00", "2024-03-01T23:59:59"],
     ("datetime", None)),
    (["2024-03-01 25:00:00", "2024-03-01 26:00:00"], ("string", None)),  # no such hour
    (["2023-02-29", "2023-02-30", "2023-02-31"], ("string", None)),  # no such days: not dates
    (["31/12/2024", "01/02/2024", "15/06/2023"], ("date", "%d/%m/%Y")),
    (["12/31/2024", "02/01/2024", "06/15/2023"], ("date", "%m/%d/%Y")),
    (["31/12/2024 13:45", "01/02/2024 00:00", "15/06/2023 08:30"], ("datetime", "%d/%m/%Y %H:%M")),
    (['{"a": 1}', '{"a": 2, "b": 3}', ' {"c": null}', '{"a": }'], ("json", None)),
    (["[1]", "[2]", "[3]"], ("string", None)),  # JSON, but not objects: the job's json columns hold objects
    (["NA", "", None, "null"], ("string", None)),  # nothing present
    (["Sales", "HR", "Sales"], ("string", None)),
])
def test_infer_type(values: list[str | None], expected: tuple[str, str | None]) -> None:
    assert suggest.infer_type(values) == expected


def test_profile_counts_missing_invalid_and_distinct_typed_values() -> None:
    p = suggest.profile_column("n", ["1", "1.0", " 2", "x", "NA", None, "3"], "integer")
    assert (p.rows, p.missing, p.invalid, p.distinct, p.valid) == (7, 2, 1, 3, 4)
    assert (p.minimum, p.maximum) == (1.0, 3.0)
    d = suggest.profile_column("d", ["2013-02-28", "2013-02-30", "2013-03-01"], "date")
    assert (d.invalid, d.distinct) == (1, 2)  # Arrow would roll 02-30 over to March 2: not a date
    b = suggest.profile_column("b", ["yes", "no", "maybe", "Y"], "boolean")
    assert (b.invalid, b.distinct) == (1, 2)  # yes and Y are one value
    j = suggest.profile_column("j", ['{"a": 1, "b": 2}', '{"b": 3}', '{"b": 1', "[]"], "json")
    assert (j.json_objects, j.invalid, j.json_keys) == (2, 2, [("b", 2), ("a", 1)])


def test_low_cardinality_and_unique() -> None:
    dept = suggest.profile_column("d", ["a", "b", "a", "b", "c", "a"], "string")
    assert dept.low_cardinality and not dept.unique and dept.values == ["a", "b", "c"]
    names = suggest.profile_column("n", ["x", "y", "z", "w"], "string")
    assert not names.low_cardinality and names.unique  # each value once: not a category
    with_null = suggest.profile_column("n", ["x", "y", None], "string")
    assert not with_null.unique  # a unique rule counts missing values as equal to each other
    many = suggest.profile_column("m", [str(i % 60) for i in range(600)], "string")
    assert not many.low_cardinality  # 60 distinct > LOW_CARDINALITY


@pytest.mark.parametrize(("kind", "values", "expected"), [
    ("integer", ["0", "100"], (0, 110)),  # never below 0 when no value is
    ("integer", ["-5", "5"], (-6, 6)),
    ("integer", ["5", "5"], (4, 6)),
    ("integer", ["2013", "2013"], (1992, 2034)),  # constant: +-1% of the value
    ("float", ["0.5", "0.7"], (0.48, 0.72)),
    ("float", ["1000.5", "1999.5"], (900, 2100)),
])
def test_range_bounds(kind: str, values: list[str], expected: tuple[float, float]) -> None:
    assert suggest.range_bounds(suggest.profile_column("c", values, kind)) == pytest.approx(expected)


def test_shape_pattern() -> None:
    tails = ["N123AB", "N456CD", "N7890E"] * 10 + ["n123ab"]
    pattern, misses = suggest.shape_pattern(pa.array(tails)) or ("", 0.0)
    assert pattern == r"^(?:[A-Z]\d{3}[A-Z]{2}|[A-Z]\d{4}[A-Z])$" and misses == pytest.approx(1 / 31)
    assert re.search(pattern, "N999ZZ") and not re.search(pattern, "n123ab") and not re.search(pattern, "XN123AB")
    codes = suggest.shape_pattern(pa.array([f"AB-{i:02d}.x" for i in range(25)]))
    assert codes == (r"^(?:[A-Z]{2}\x2d\d{2}\x2e[a-z])$", 0.0)
    free_text = [f"{'word ' * (i % 7)}end{i}" for i in range(40)]  # many shapes: no pattern
    assert suggest.shape_pattern(pa.array(free_text)) is None
    assert suggest.shape_pattern(pa.array(["N123AB"] * 19)) is None  # too few values to call it a format


def test_thresholds_rates_round_up_with_a_margin() -> None:
    assert suggest._ceil_rate(0.0, 100, True) == 0.01
    assert suggest._ceil_rate(0.05, 100, True) == 0.07
    assert suggest._ceil_rate(0.05, 100, False) > 0.07  # a partial sample gets room for sampling error
    assert suggest._ceil_rate(0.95, 100, True) == 1.0


def test_read_sample_stops_at_rows_and_knows_it(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    sample.write(sample.generate(1000, seed=1), path)
    part = suggest.read_sample([path], rows=300)
    assert (part.rows, part.complete) == (300, False)
    assert part.table.column("id").to_pylist()[:3] == ["1", "2", "3"]
    whole = suggest.read_sample([path], rows=1000)
    assert (whole.rows, whole.complete) == (1000, True)


def test_read_sample_of_the_messy_file(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(messy_csv())
    got = suggest.read_sample([path])
    assert got.names == ["id", "name", "age", "salary", "profile", "department"]  # BOM stripped
    assert (got.parse_errors, got.invalid_utf8, got.rows) == (1, 1, 20)  # both left out, as the job rejects them
    assert got.table.column("name").to_pylist()[7] == "Ha\nHo"  # quoted newline
    assert got.table.column("name").to_pylist()[0] == "Ann, Jr."  # quoted comma
    assert got.table.column("department").to_pylist()[0] == "Sales"  # CRLF: no trailing \r


# -------------------------------------------------------------------------------------------- end to end
def _suggested(path: Path, rows: int = suggest.DEFAULT_ROWS) -> dict[str, Any]:
    doc = suggest.suggest(suggest.read_sample([path], rows), source=path.name)
    config_mod.validate(copy.deepcopy(doc))  # validates as it is
    return doc


def _runs_and_passes(path: Path, doc: dict[str, Any], tmp: Path, modes: tuple[str, ...] = ("memory", "streaming"),
                     ) -> dict[str, dict[str, Any]]:
    """The job runs ``doc`` on ``path`` in each mode and the file passes its own gate (no violation at all: not
    even a warning); then again against the first run's profile as the baseline (drift computed, still passed)."""
    cfg = config_mod.validate(copy.deepcopy(doc))
    metrics = {}
    for mode in modes:
        result = pipeline.run([path], tmp / mode, cfg, fmt="csv" if mode == "memory" else "parquet", mode=mode)
        gate = json.loads((tmp / mode / "quality" / "gate.json").read_text())
        assert gate["status"] == "passed", (mode, gate["violations"])
        assert result.metrics["quality_gate"]["passed"], result.metrics["quality_gate"]
        assert result.metrics["mode"] == mode
        metrics[mode] = result.metrics
    baseline = tmp / modes[0] / "quality" / "profile.json"
    again = pipeline.run([path], tmp / "again", cfg, baseline=baseline, mode=modes[0])
    assert again.metrics["drift"]["status"] == "computed"
    gate = json.loads((tmp / "again" / "quality" / "gate.json").read_text())
    assert gate["status"] == "passed", gate["violations"]
    return metrics


def test_reference_data(tmp_path: Path) -> None:
    path = tmp_path / "reference.csv"
    sample.write(sample.generate(4000, seed=11, invalid_rate=0.01), path)
    doc = _suggested(path)
    assert doc["columns"] == {"id": "integer", "name": "string", "age": "integer", "salary": "float",
                              "profile": "json", "department": "string"}
    assert doc["reject_rows_missing"] == ["id"]
    assert doc["duplicates"]["key_columns"] == ["name", "age", "salary", "profile", "department"]
    assert doc["imputation"] == {"age": {"strategy": "median"}, "salary": {"strategy": "median"}}
    assert doc["categorical_fills"] == {"department": "Unknown"}
    assert list(doc["json_columns"]["profile"]["fields"]) == ["email", "phone", "preferences", "skills", "address"]
    assert doc["group_statistics"][0]["group_by"] == ["department"]
    assert doc["drift"] == {"numeric": ["age", "salary"], "categorical": ["department"], "json_fields": True}
    if suggest.SUGGEST_INDICATORS:  # age and salary miss ~5%: imputed, and flagged first
        assert [d["source"] for d in doc["derived"]] == ["age", "salary", "profile", "department"]
    metrics = _runs_and_passes(path, doc, tmp_path)
    m = metrics["memory"]
    assert m["summary"]["duplicate_rows_key"] > 0 and m["summary"]["malformed_json"] > 0  # the gate had work
    assert m["summary"]["invalid_values"] > 0
    if suggest.SUGGEST_RULES:
        assert m["rules"]["id_unique"]["passed"] and m["rules"]["department_allowed"]["violations"] == 0


def test_messy_file(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_bytes(messy_csv())
    doc = _suggested(path)
    assert doc["columns"] == {"id": "integer", "name": "string", "age": "integer", "salary": "float",
                              "profile": "json", "department": "string"}
    assert "reject_rows_missing" not in doc  # id has a gap, a text and a repeat: not a row identifier
    assert "id" not in doc.get("imputation", {})  # an identifier is never made up
    metrics = _runs_and_passes(path, doc, tmp_path, modes=("memory",))  # not UTF-8: memory mode only
    s = metrics["memory"]["summary"]
    assert s["rows_rejected"] == 2 and s["malformed_json"] >= 4 and s["duplicate_rows_key"] == 1
    utf8 = tmp_path / "messy_utf8.csv"  # streaming needs UTF-8 text: the same file without its \xff byte
    utf8.write_bytes(messy_csv().replace(b"\xff", b"y"))
    _runs_and_passes(utf8, _suggested(utf8), tmp_path / "utf8")


@pytest.fixture(scope="module")
def flights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flights") / "flights.csv"
    sample.write(sample_flights.generate(6000, seed=21), path)
    return path


def test_flights_inferred_types(flights_file: Path) -> None:
    table = suggest.read_sample([flights_file]).table
    types = {name: suggest.infer_type(table.column(name)) for name in table.column_names}
    assert types["time_hour"] == ("datetime", None) and types["flight_date"] == ("date", None)
    assert types["cancelled"] == ("boolean", None)
    assert {n for n, t in types.items() if t == ("integer", None)} == {
        "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
        "arr_delay", "flight", "air_time", "distance"}
    assert {n for n, t in types.items() if t == ("string", None)} == {"carrier", "tailnum", "origin", "dest"}


def test_flights_dataset(flights_file: Path, tmp_path: Path) -> None:
    doc = _suggested(flights_file)
    new = suggest.SUGGEST_NEW_TYPES
    assert doc["columns"]["cancelled"] == ("boolean" if new else "string")
    assert doc["columns"]["time_hour"] == ("datetime" if new else "string")
    assert "reject_rows_missing" not in doc and doc["duplicates"]["key_columns"] == list(sample_flights.COLUMNS)
    for col in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "distance"):
        assert doc["imputation"][col] == {"strategy": "median"}, col
    assert doc["group_statistics"][0]["group_by"] == ["carrier"]
    assert "year" not in doc["drift"]["numeric"]  # constant on the sample
    assert set(doc["drift"]["categorical"]) == {"carrier", "origin", "dest", "cancelled"}  # low cardinality
    if suggest.SUGGEST_INDICATORS:  # cancelled flights: their delays are imputed, and flagged first
        indicators = {d["source"] for d in doc["derived"] if d["kind"] == "missing_indicator"}
        assert {"dep_delay", "arr_delay", "tailnum"} <= indicators
    metrics = _runs_and_passes(flights_file, doc, tmp_path)
    s = metrics["memory"]["summary"]
    assert s["duplicate_rows_exact"] > 0 and s["invalid_values"] > 0
    if suggest.SUGGEST_RULES:
        rules = {r["name"]: r for r in doc["rules"]}
        assert {"XX", "ZZ"} <= set(rules["carrier_allowed"]["values"]) <= {*sample_flights.CARRIERS, "XX", "ZZ"}
        assert rules["distance_range"]["min"] < 0  # the sample holds negative distances: the rule describes it
        tail = rules["tailnum_pattern"]  # the malformed tail numbers are the shapes left out, and their share
        assert tail["pattern"] == r"^(?:[A-Z]\d{3}[A-Z]{2})$" and tail["max_share"] == 0.01
        checked = metrics["memory"]["rules"]["tailnum_pattern"]
        assert checked["violations"] > 0 and checked["passed"]


def test_partial_sample(flights_file: Path, tmp_path: Path) -> None:
    """From the first 2,000 of 6,000 rows: nothing fails on the whole file (thresholds and completeness leave room
    for sampling error), the description says it was a sample, and only warn rules fire: ranges that the rows
    beyond the sample exceed (the planted negative distances among them)."""
    doc = _suggested(flights_file, rows=2000)
    assert "first 2000 rows" in doc["description"]
    result = pipeline.run([flights_file], tmp_path / "out", config_mod.validate(copy.deepcopy(doc)), mode="memory")
    assert result.metrics["quality_gate"]["passed"]
    gate = json.loads((tmp_path / "out" / "quality" / "gate.json").read_text())
    if not suggest.SUGGEST_RULES:
        assert gate["status"] == "passed", gate["violations"]
        return
    assert gate["status"] == "warned"
    assert {v["action"] for v in gate["violations"]} == {"warn"}
    assert {v["type"] for v in gate["violations"]} == {"range"}
    distance = next(v for v in gate["violations"] if v["column"] == "distance")
    assert any(float(x) < 0 for x in distance["examples"])


def test_command_line(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_bytes(messy_csv())
    done = subprocess.run([sys.executable, "-m", "processing", "suggest", "--input", str(path), "--rows", "50",
                           "--dataset", "messy"], cwd=ROOT, capture_output=True, text=True, check=True)
    doc = json.loads(done.stdout)  # stdout holds the config only
    assert "for dataset messy" in doc["description"]
    assert "read 20 usable rows" in done.stderr and "profile: json" in done.stderr
    cfg = tmp_path / "suggested.json"
    cfg.write_text(done.stdout)
    run = subprocess.run([sys.executable, "-m", "processing", "--input", str(path), "--output", str(tmp_path / "o"),
                          "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "o" / "quality" / "gate.json").read_text())["status"] == "passed"
    bad = subprocess.run([sys.executable, "-m", "processing", "suggest", "--input", str(tmp_path / "nope.csv")],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and "does not exist" in bad.stderr


def test_parquet_input(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"n": pa.array([1, 2, None, 4], pa.int64()), "x": [0.5, 1.5, 2.5, None],
                             "s": ["a", "b", "a", None]}), path)
    doc = suggest.suggest(suggest.read_sample([path]))
    assert doc["columns"] == {"n": "integer", "x": "float", "s": "string"}
    _runs_and_passes(path, doc, tmp_path, modes=("memory",))  # streaming reads CSV only


def test_folder_of_gzip_and_plain_files_in_the_jobs_order(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    table = sample.generate(500, seed=4)
    sample.write(table.slice(0, 200), folder / "a.csv.gz")
    sample.write(table.slice(200), folder / "b.csv")
    (folder / ".hidden.csv").write_text("other,columns\n1,2\n")
    got = suggest.read_sample(suggest.rawfile.list_inputs(folder), rows=450)
    assert (got.rows, got.complete, got.files) == (450, False, ["a.csv.gz", "b.csv"])
    assert got.table.column("id").to_pylist()[199:201] == ["200", "201"]
    header_only = tmp_path / "h.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(suggest.EmptyInputError, match="header only"):
        suggest.read_sample([header_only])


def test_dates_formats_booleans_and_codes_end_to_end(tmp_path: Path) -> None:
    """Inferred strptime formats (day first, unpadded cells too), ISO datetimes with offsets and fractions, yes/no
    booleans and zero-padded codes: the job reads them as suggested (its invalid values are the ones the suggestion
    counted: the completeness rules at the observed level hold exactly)."""
    path = tmp_path / "typed.csv"
    path.write_text(
        "code,when,stamp,local,flag,score\n"
        "007,31/12/2024,2024-03-01T05:00:00Z,01/02/2024 13:45,yes,1.5\n"
        "012,1/2/2024,2024-03-01 06:30,02/02/2024 08:00,no,2.5\n"
        "123,15/06/2023,2024-03-01T07:00:00+01:00,3/2/2024 9:05,Y,\n"
        "044,29/02/2024,2024-03-01T08:00:00.5Z,04/02/2024 10:00,N,4\n"
        "045,30/02/2024,not a time,05/02/2024 11:00,maybe,5\n")
    doc = _suggested(path)
    if suggest.SUGGEST_NEW_TYPES:
        assert doc["columns"] == {"code": "string", "when": {"type": "date", "format": "%d/%m/%Y"},
                                  "stamp": "datetime", "local": {"type": "datetime", "format": "%d/%m/%Y %H:%M"},
                                  "flag": "boolean", "score": "float"}
    metrics = _runs_and_passes(path, doc, tmp_path)["memory"]
    if suggest.SUGGEST_NEW_TYPES:
        invalid = {c: m["invalid"] for c, m in metrics["columns"].items()}
        assert invalid == {"code": 0, "when": 1, "stamp": 1, "local": 0, "flag": 1, "score": 0}
    if suggest.SUGGEST_RULES:
        shares = {r["column"]: r["min_share"] for r in doc["rules"] if r["type"] == "completeness"}
        assert shares == {"code": 1.0, "when": 0.8, "stamp": 0.8, "local": 1.0, "flag": 0.8, "score": 0.8}


def test_same_rows_same_config(flights_file: Path) -> None:
    """Byte for byte (ordering of keys, fields, values and rules included), as the docs promise."""
    first = json.dumps(suggest.suggest(suggest.read_sample([flights_file])))
    assert json.dumps(suggest.suggest(suggest.read_sample([flights_file]))) == first
