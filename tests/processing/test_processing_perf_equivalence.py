"""The fast path (and the streaming path) give exactly the outputs and metrics of the straightforward one.

The reference is the job as it was before the performance work, frozen in ``reference_impl/`` (pandas
``duplicated``, single-block JSON, sequential writes): it imports nothing of the job (test_processing_imports.py), so
a change to the job cannot change the oracle; see docs/processing.md "Tests". Compared on small reference and messy
datasets, with several configs: every metric except the timing/timestamp fields, every output table cell by cell,
and the statistics files byte for byte.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import reference_impl.pipeline as reference
from processing import config as config_mod
from processing import pipeline
from processing.sample import generate

# Read here, not imported from conftest: several test folders have a conftest.py, and `import conftest` would
# pick whichever was imported first.
DEFAULT_DOC = json.loads((Path(__file__).resolve().parents[2] / "processing" / "configs" / "default.json").read_text())
VOLATILE = {"timestamp", "processing_seconds", "mode"}
# Facts about the installed code, not about the data: the frozen oracle does not report them.
INSTALLED = {"package_version", "library_drift"}


def messy_csv() -> bytes:
    """Everything awkward the job handles, in a few dozen rows."""
    rows = [
        'id,name,age,salary,profile,department',
        '1,Ann,30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
        '2,Bob,NA,70000,"{""address"": ""2 Oak Ave"", ""phone"": ""555-2"", ""email"": ""b@x""}",',
        '3,Cy,unknown,100000,"{""address"": ""x"", ""address"": ""last wins""}",HR',
        '4,Di,7.0,0,"[1, 2]",Sales',
        '5,Ed,41,1e3,"{""address"": 5, ""phone"": [""a"", 1]}",Finance',
        '6,Fi,,n/a,"{""address"": NaN}",HR',
        '7,Gu,25,abc,not json,Sales',
        '8,Ha,25, 60000 ,"{""address"": ""multi\nline""}",Marketing',
        ',Io,30,50000,"{}",Sales',
        'x9,Jo,30,50000,"{""a"": }",Sales',
        '10,Ann,30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
        '11,Ann,30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
        '12,Ka,inf,-2.5,"{""address"": ""Ünïcödé ✓""}",None',
        '13,too,many,fields,here,x,y',
        '14,Le,55,70000,"{""address"": {""nested"": true}}",Engineering',
        '15,Mo,35,99999.5,"null",Engineering',
        '16,No,35,,"{""address"": ""a""} {""b"": 1}",<NA>',
        '17,Ol,"",80000,"{""address"": ""q"", ""phone"": null}",Sales',
        '18,Pa,45,80000,"  {""address"": ""lead space""}",Sales',
        '10,Ann,30,50000,"{""address"": ""1 Main St"", ""phone"": ""555-1""}",Sales',
    ]
    return ("\n".join(rows) + "\n").encode("utf-8") + b'19,Qu\xff,30,1,"{}",HR\n20,Ri,31,2,"{}",HR\n'


def reference_csv(tmp: Path, rows: int = 3000) -> Path:
    path = tmp / "reference.csv"
    pacsv.write_csv(generate(rows, seed=7, invalid_rate=0.01), str(path))
    return path


CONFIGS: dict[str, Any] = {
    "default": lambda d: d,
    "drop_key": lambda d: {**d, "duplicates": {**d["duplicates"], "drop": "key"}},
    "drop_exact_mf": lambda d: {
        **d, "duplicates": {"key_columns": ["name"], "drop": "exact"},
        "columns": {**d["columns"], "department": "category", "id": "integer"},
        "imputation": {"age": {"strategy": "most_frequent"}, "salary": {"strategy": "mean"}},
    },
    # statistics over derived and extracted columns: a bins (categorical) key, a string length, a JSON field
    "group_by_derived": lambda d: {
        **d, "group_statistics": [
            *d["group_statistics"],
            {"name": "by_age_group", "group_by": ["age_group", "department"], "values": "imputed",  # as the oracle
             "aggregations": {"address_length": ["mean", "max"], "email": ["nunique", "count"], "salary": ["median"]}}],
    },
}


# Features the frozen oracle predates (issue 14): compared streaming against in-memory only.
MODES_ONLY: dict[str, Any] = {
    "rules_observed_percentiles": lambda d: {
        **d, "duplicates": {**d["duplicates"], "drop": "key"},
        "group_statistics": [{**d["group_statistics"][0], "values": "observed",
                              "aggregations": {"salary": ["count", "missing", "median", "p10", "p90", "std"],
                                               "age": ["p25", "missing"], "email": ["count", "missing"]}}],
        "rules": [
            {"name": "age_range", "type": "range", "column": "age", "min": 20, "max": 60, "action": "reject"},
            {"name": "email_format", "type": "pattern", "column": "email", "pattern": "^[a-m]",
             "action": "reject"},
            {"name": "known", "type": "allowed_values", "column": "department", "values": ["Sales", "HR"],
             "action": "warn", "max_share": 0.5},
            {"name": "name_length", "type": "length", "column": "name", "max": 12, "action": "warn"},
            {"name": "name_unique", "type": "unique", "columns": ["name", "department"], "action": "reject"},
            {"name": "ids", "type": "unique", "columns": ["id"], "action": "warn", "alarm": True},
            {"name": "rich_young", "type": "expression", "expression": "not (salary > 90000 and age < 30)",
             "action": "warn"},
            {"name": "salary_present", "type": "completeness", "column": "salary", "min_share": 0.97},
            {"name": "phone_present", "type": "completeness", "column": "phone", "min_share": 0.5, "action": "warn"},
            {"name": "rows", "type": "row_count", "min": 10, "action": "warn"}]},
}


def _doc(name: str) -> dict[str, Any]:
    return {**CONFIGS, **MODES_ONLY}[name](copy.deepcopy(DEFAULT_DOC))


def _tables(out: Path) -> dict[str, Any]:
    found = {}
    for path in sorted(out.rglob("*")):
        if path.suffix == ".parquet":
            found[str(path.relative_to(out))] = pq.read_table(path)
        elif path.suffix in (".csv", ".json") and "quality" not in path.parts:
            found[str(path.relative_to(out))] = path.read_bytes()
    return found


def _strip(metrics: dict[str, Any], out: Path) -> dict[str, Any]:
    m = json.loads(json.dumps(metrics, default=str))
    for key in VOLATILE:
        m.pop(key, None)
        m["summary"].pop(key, None)
    for key in INSTALLED:
        m.pop(key, None)
    return json.loads(json.dumps(m).replace(str(out), "<out>"))


def _only_reference_keys(got: Any, expected: Any) -> Any:
    """Keep what the reference reports: features added after it (drift, gate, ...) are not its business."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return {k: _only_reference_keys(got[k], expected[k]) if k in expected else got[k]
                for k in got if k in expected or k not in _ADDED}
    return got


_ADDED = {"drift", "gate", "drift_max_psi", "drifted_columns", "drift_unavailable", "quality_gate_failed",
          "quality_gate_warned", "outputs", "statistics_sampling",
          "rules", "rejected_by_rules", "rules_failed", "rules_warned", "rows_rejected_by_rules"}


def assert_same(got: Path, expected: Path) -> None:
    a = _strip(json.loads((got / "quality" / "metrics.json").read_text()), got)
    b = _strip(json.loads((expected / "quality" / "metrics.json").read_text()), expected)
    a, b = _only_reference_keys(a, b), {k: v for k, v in b.items() if k != "outputs"}
    a.pop("outputs", None)
    assert a == b
    tb = _tables(expected)
    # The quality gate (added later) may move data outputs into a quarantine folder: find them by name.
    ta = {name: _tables(got).get(name) for name in tb}
    for name in tb:
        if ta[name] is None:
            moved = [k for k in _tables(got) if k.endswith("/" + name)]
            assert len(moved) == 1, (name, sorted(_tables(got)))
            ta[name] = _tables(got)[moved[0]]
    for name in ta:
        if isinstance(ta[name], bytes):
            assert_same_csv(ta[name], tb[name], name)
        else:
            assert ta[name].schema.equals(tb[name].schema, check_metadata=False), (
                name, ta[name].schema, tb[name].schema)
            assert ta[name].equals(tb[name]), name


_CSV_CELL = re.compile(rb'("(?:[^"]|"")*"|[^,\n"]*)([,\n])')


def _csv_cells(data: bytes) -> list[bytes]:
    """Every cell of a CSV file as its raw bytes (quotes kept), each with the separator after it."""
    cells, pos = [], 0
    while pos < len(data):
        m = _CSV_CELL.match(data, pos)
        assert m is not None and m.end() > pos, data[pos:pos + 80]
        cells.append(m.group(0))
        pos = m.end()
    return cells


def assert_same_csv(got: bytes, expected: bytes, name: str) -> None:
    """Equal bytes, but for the documented fix the oracle predates (docs/processing.md "Output column types"): a
    whole float keeps its decimal (the oracle, Arrow's CSV writer, writes ``65`` where the job writes ``65.0``).
    Cell by cell, raw bytes (quoting and separators included): equal, or the job's cell is the oracle's bare
    integer text followed by ``.0``."""
    if not name.endswith(".csv"):
        assert got == expected, name
        return
    a, b = _csv_cells(got), _csv_cells(expected)
    assert len(a) == len(b), name
    for x, y in zip(a, b, strict=True):
        if x != y:
            assert re.fullmatch(rb"-?[0-9]+[,\n]", y) and x == y[:-1] + b".0" + y[-1:], (name, x, y)


def _run_both(inputs: list[Path], tmp: Path, doc: dict[str, Any], fmt: str = "parquet", **kw: Any) -> tuple[Path, Path]:
    cfg = config_mod.validate(copy.deepcopy(doc))
    new, old = tmp / "new", tmp / "old"
    pipeline.run(inputs, new, cfg, fmt=fmt, **kw)
    reference.run(inputs, old, config_mod.validate(copy.deepcopy(doc)), fmt=fmt)
    return new, old


@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("dataset", ["reference", "messy"])
def test_fast_path_equals_reference(tmp_path: Path, dataset: str, config_name: str) -> None:
    if dataset == "reference":
        inputs = [reference_csv(tmp_path)]
    else:
        (tmp_path / "in").mkdir()
        inputs = [tmp_path / "in" / "a.csv", tmp_path / "in" / "b.csv"]
        inputs[0].write_bytes(messy_csv())
        inputs[1].write_bytes(messy_csv().replace(b"\n1,Ann", b"\n101,Ann"))
    new, old = _run_both(inputs, tmp_path, _doc(config_name))
    assert_same(new, old)


def test_fast_path_equals_reference_csv_format(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(messy_csv())
    new, old = _run_both([tmp_path / "m.csv"], tmp_path, _doc("default"), fmt="csv")
    assert_same(new, old)


def _run_modes(inputs: list[Path], tmp: Path, doc: dict[str, Any], fmt: str = "parquet") -> tuple[Path, Path]:
    stream, memory = tmp / "stream", tmp / "memory"
    # Tiny blocks (64 KiB) so even small files span many blocks and every cross-block path is exercised.
    pipeline.run(inputs, stream, config_mod.validate(copy.deepcopy(doc)), fmt=fmt, mode="streaming",
                 block_size=64 << 10)
    pipeline.run(inputs, memory, config_mod.validate(copy.deepcopy(doc)), fmt=fmt, mode="memory")
    return stream, memory


def _utf8_messy() -> bytes:
    return messy_csv().replace(b"\xff", b"y")  # streaming needs UTF-8 text (auto mode falls back otherwise)


@pytest.mark.parametrize("config_name", ["default", "drop_key", "group_by_derived", *MODES_ONLY])
@pytest.mark.parametrize("dataset", ["reference", "messy"])
def test_streaming_equals_in_memory(tmp_path: Path, dataset: str, config_name: str) -> None:
    if dataset == "reference":
        inputs = [reference_csv(tmp_path, rows=4000)]
    else:
        (tmp_path / "in").mkdir()
        inputs = [tmp_path / "in" / "a.csv", tmp_path / "in" / "b.csv"]
        inputs[0].write_bytes(_utf8_messy() * 1)
        inputs[1].write_bytes(_utf8_messy().replace(b"\n1,Ann", b"\n101,Ann"))
    stream, memory = _run_modes(inputs, tmp_path, _doc(config_name))
    metrics = json.loads((stream / "quality" / "metrics.json").read_text())
    assert metrics["mode"] == "streaming"
    if config_name in MODES_ONLY and dataset == "reference":  # every rule but two had something to find
        assert all(r["violations"] for name, r in metrics["rules"].items() if name not in ("ids", "rows")), (
            metrics["rules"])
    if config_name in MODES_ONLY:
        assert metrics["summary"]["rows_rejected_by_rules"] > 0
    assert_same(stream, memory)


def typed_csv(tmp: Path, rows: int = 4000) -> Path:
    """Issue 14's types with every kind of cell: booleans in several spellings, ISO dates and datetimes with and
    without offsets, invalid texts, missing values, a skipped local hour, repeated keys."""
    rng = np.random.default_rng(5)
    bools = np.array(["true", "False", "yes", "N", "1", "0", "maybe", "", " T "])
    days = np.array([f"2024-{m:02d}-{d:02d}" for m in (1, 2, 3) for d in (1, 15, 28)] + ["2024-02-30", "", "x"])
    stamps = np.array(["2024-03-01 05:00:00", "2024-03-01T05:00:00Z", "2024-03-10 02:30", "2024-11-03 01:30",
                       "2024-06-30T23:59:59.5+02:00", "", "soon", "2024-01-01"])
    lines = ["id,active,day,when,distance,air_time,carrier"]
    for i in range(rows):
        distance = "" if rng.random() < 0.05 else f"{rng.integers(50, 3000)}"
        air = "x" if rng.random() < 0.01 else ("" if rng.random() < 0.05 else f"{rng.integers(0, 400)}")
        lines.append(f"{i},{rng.choice(bools)},{rng.choice(days)},{rng.choice(stamps)},{distance},{air},"
                     f"{rng.choice(['UA', 'AA', 'DL', ''])}")
    path = tmp / "typed.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TYPED_DOC: dict[str, Any] = {
    "columns": {"id": "integer", "active": "boolean", "day": "date",
                "when": {"type": "datetime", "timezone": "America/New_York"}, "distance": "float",
                "air_time": "float", "carrier": "string"},
    "imputation": {"active": {"strategy": "most_frequent"}, "day": {"strategy": "median"},
                   "distance": {"strategy": "median"}},
    "duplicates": {"key_columns": ["active", "day", "carrier"]},
    "derived": [
        {"name": "air_missing", "kind": "missing_indicator", "source": "air_time"},
        {"name": "speed", "kind": "expression", "expression": "round(distance / air_time * 60, 1)"},
        {"name": "hour", "kind": "date_part", "source": "when", "part": "hour"},
        {"name": "month", "kind": "date_part", "source": "day", "part": "month"},
        {"name": "distance_band", "kind": "bins", "source": "distance", "bins": {"quantiles": 4}},
        {"name": "speed_band", "kind": "bins", "source": "speed", "bins": {"quantiles": [0, 0.1, 0.9, 1]}},
        {"name": "air_band", "kind": "bins", "source": "air_time", "bins": {"edges": [0, 60, 180, "inf"]}},
    ],
    "group_statistics": [{"name": "by_carrier", "group_by": ["carrier", "active"],
                          "aggregations": {"speed": ["mean", "median", "max"], "hour": ["min"]}}],
}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_streaming_equals_in_memory_types_and_features(tmp_path: Path, fmt: str) -> None:
    stream, memory = _run_modes([typed_csv(tmp_path)], tmp_path, TYPED_DOC, fmt=fmt)
    metrics = json.loads((stream / "quality" / "metrics.json").read_text())
    assert metrics["mode"] == "streaming" and metrics["invalid_values"]["day"] > 0
    assert metrics["derived"]["distance_band"]["edges_from"] == "all"
    assert_same(stream, memory)


def test_streaming_equals_in_memory_csv_output(tmp_path: Path) -> None:
    path = reference_csv(tmp_path, rows=1500)
    stream, memory = _run_modes([path], tmp_path, _doc("default"), fmt="csv")
    assert_same(stream, memory)


def test_auto_mode_streams_above_the_threshold(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(_utf8_messy())
    cfg = config_mod.validate(copy.deepcopy(DEFAULT_DOC))
    # (cli.py sets streaming_threshold from env PROCESSING_STREAMING_THRESHOLD_BYTES: test_processing_cli.py)
    assert pipeline.run([tmp_path / "m.csv"], tmp_path / "a", cfg,
                        streaming_threshold=100).metrics["mode"] == "streaming"
    assert pipeline.run([tmp_path / "m.csv"], tmp_path / "b", cfg,
                        streaming_threshold=1 << 40).metrics["mode"] == "memory"


def test_auto_mode_falls_back_to_memory_for_non_utf8_and_explicit_streaming_fails(tmp_path: Path) -> None:
    from processing.streaming import StreamingUnsupported

    (tmp_path / "m.csv").write_bytes(messy_csv())  # holds a \xff byte
    cfg = config_mod.validate(copy.deepcopy(DEFAULT_DOC))
    result = pipeline.run([tmp_path / "m.csv"], tmp_path / "a", cfg, streaming_threshold=100)
    assert result.metrics["mode"] == "memory" and result.metrics["rows"]["rejected_by_reason"]["invalid_utf8"] == 1
    with pytest.raises(StreamingUnsupported):
        pipeline.run([tmp_path / "m.csv"], tmp_path / "b", cfg, mode="streaming")
