"""Property tests: every row is accounted for, and the same input gives the same output."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processing import config as config_mod
from processing import pipeline

CONFIG = config_mod.load(None, "default")
COLUMNS = ["id", "name", "age", "salary", "profile", "department"]
cell = st.one_of(
    st.sampled_from(["", "NA", "unknown", "1", "42.5", "-7", "1e3", "{}", '{"address": "x"}', "[1]", "{bad",
                     'a,"b"', "line\nbreak", "HR", "  ", "é"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)
row = st.fixed_dictionaries(dict.fromkeys(COLUMNS, cell))


def _csv(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=12), extra=st.binary(max_size=20))
def test_rows_in_equals_rows_out_plus_rejected(rows: list[dict[str, str]], extra: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        path.write_bytes(_csv(rows) + extra)  # arbitrary trailing bytes: broken rows, bad UTF-8
        res = pipeline.run([path], Path(tmp) / "out", CONFIG)
        s = res.metrics["summary"]
        assert s["rows_in"] == s["rows_out"] + s["rows_rejected"]
        assert len(res.cleaned) == s["rows_out"] and res.rejected.num_rows == s["rows_rejected"]
        assert s["rows_in"] >= len(rows) - sum(r["id"].count("\n") for r in rows)
        assert s["missing_values_after"] <= s["missing_values_before"] + s["invalid_values"]


@settings(max_examples=10, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=12))
def test_same_input_same_output(rows: list[dict[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        path.write_bytes(_csv(rows))
        outs = []
        for i in range(2):
            res = pipeline.run([path], Path(tmp) / f"out{i}", CONFIG)
            m = res.metrics
            for volatile in ("timestamp", "processing_seconds"):
                m.pop(volatile)
            m["summary"].pop("processing_seconds")
            data = {f: pq.read_table(res.output_dir / m["outputs"][f][0]).to_pylist()  # may be under quarantine/
                    for f in ("cleaned", "transformed", "rejected")}
            outs.append(json.dumps([m, data], default=str, sort_keys=True))
        assert outs[0] == outs[1]


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=12))
def test_every_record_is_counted_exactly_once(rows: list[dict[str, str]]) -> None:
    # GIVEN a well-formed CSV (no trailing garbage) with every field quoted, so each dict is exactly one CSV record
    # (unquoted, a bare "\r" in a value is a record break for every CSV reader, and the file has more records)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)
        path.write_bytes(buf.getvalue().encode("utf-8"))
        res = pipeline.run([path], Path(tmp) / "out", CONFIG)
        s = res.metrics["summary"]
        # THEN every record is either kept or rejected, none dropped or invented
        assert s["rows_in"] == len(rows)
        assert s["rows_out"] + s["rows_rejected"] == len(rows)
        assert len(res.cleaned) == s["rows_out"] and res.rejected.num_rows == s["rows_rejected"]
