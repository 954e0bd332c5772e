"""Streaming mode internals: row signatures (collisions never make duplicates), the CSV reader's paced read-ahead,
and the work file (removed after success and failure). Equality with the in-memory path on whole datasets is in
test_processing_perf_equivalence.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from processing import config as config_mod
from processing import pipeline, rawfile, streaming
from processing.sample import generate
from processing.streaming import reader

DEFAULT_DOC = json.loads((Path(__file__).resolve().parents[2] / "processing" / "configs" / "default.json").read_text())


def _config(**changes: Any) -> config_mod.DatasetConfig:
    return config_mod.validate({**copy.deepcopy(DEFAULT_DOC), **changes})


def _profile(middle: str) -> str:
    """100 characters: the four signature windows (0-8, 33-41, 66-74, 92-100) are the same for every ``middle``."""
    text = '{"address": "' + middle + '", "note": "' + "x" * 100
    return (text[:98] + '"}')


def test_signature_equal_for_equal_values_and_nulls_across_slices() -> None:
    arr = pa.array(["abc", None, "a" * 40, "abc", "", "a" * 40, None])
    sig = streaming.row_signature([arr], len(arr))
    assert sig[0] == sig[3] and sig[2] == sig[5] and sig[1] == sig[6]
    assert len({int(sig[i]) for i in (0, 1, 2, 4)}) == 4
    sliced = arr.slice(3)  # a non-zero offset must not change a value's signature
    assert list(streaming.row_signature([sliced], len(sliced))) == list(sig[3:])
    nums = pa.array([0.0, -0.0, None, 1.5])
    ns = streaming.row_signature([nums], 4)
    assert ns[0] == ns[1] and len({int(x) for x in ns}) == 3  # -0.0 == 0.0 as pandas compares


def test_signature_collisions_are_checked_exactly(tmp_path: Path) -> None:
    # Rows 1 and 2 differ only outside the signature windows: same signature, not duplicates. Row 3 repeats row 1.
    a, b = _profile("11 Main Street"), _profile("22 Main Street")
    assert len(a) == len(b) == 100 and a != b
    sigs = streaming.row_signature([pa.array([a, b])], 2)
    assert sigs[0] == sigs[1]
    lines = ["id,name,age,salary,profile,department"]
    for i, prof in enumerate([a, b, a], start=1):
        lines.append(f'{i},Ann,30,50000,"{prof.replace(chr(34), chr(34) * 2)}",Sales')
    path = tmp_path / "c.csv"
    path.write_text("\n".join(lines) + "\n")
    cfg = _config(duplicates={"key_columns": ["name", "profile"], "drop": "key"})
    stream = pipeline.run([path], tmp_path / "s", cfg, mode="streaming")
    memory = pipeline.run([path], tmp_path / "m", cfg, mode="memory")
    assert stream.metrics["duplicates"] == memory.metrics["duplicates"]
    assert stream.metrics["duplicates"]["key"] == 1 and stream.metrics["duplicates"]["dropped"] == 1
    assert stream.metrics["rows"]["rejected_by_reason"] == {"duplicate_key": 1}
    assert stream.rejected.column("_source_row").to_pylist() == [3]


def test_reader_stays_within_its_read_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(generate(3000, seed=3), str(path))
    seen: list[int] = []

    class Recording(reader.Paced):
        def consumed_one(self) -> None:
            seen.append(self.reads - self.consumed)
            super().consumed_one()

    monkeypatch.setattr(reader, "Paced", Recording)
    f = reader.SourceFile(path, rawfile.read_header(path, False), False, path.stat().st_size)
    rows = sum(t.num_rows for t in reader.open_blocks(f, 16 << 10))
    assert rows == 3000 and len(seen) > 20
    assert max(seen) <= reader.READ_AHEAD + 1  # the block being handed over, plus the read-ahead


def test_unparsable_blocks_neither_stall_the_reader_nor_loosen_its_pacing(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Leading blocks of unparsable lines give open_csv no batch: it must read on without a 5 s pacing timeout per
    # block; and a file with unparsable lines in every block is still read at most READ_AHEAD blocks ahead.
    import pyarrow.csv as pacsv

    sources: list[reader.Paced] = []
    seen: list[int] = []

    class Recording(reader.Paced):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            sources.append(self)

        def consumed_one(self) -> None:
            seen.append(self.reads - self.consumed)
            super().consumed_one()

    monkeypatch.setattr(reader, "Paced", Recording)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,age,salary,profile,department\n" + "".join(f"{i};x;1;2;{{}};S\n" for i in range(3000))
                   + "".join(f"{i},x,1,2,{{}},S\n" for i in range(10)))
    f = reader.SourceFile(bad, rawfile.read_header(bad, False), False, bad.stat().st_size)
    assert sum(t.num_rows for t in reader.open_blocks(f, 4 << 10)) == 10 and len(f.parse_errors) == 3000
    assert sources[-1].reads > 10 and sources[-1].timeouts == 0

    mixed = tmp_path / "mixed.csv"
    pacsv.write_csv(generate(3000, seed=4), str(mixed))
    header, *rows = mixed.read_text().splitlines()
    mixed.write_text("\n".join([header, *(r + ",extra" if i % 25 == 0 else r for i, r in enumerate(rows))]) + "\n")
    seen.clear()
    f = reader.SourceFile(mixed, rawfile.read_header(mixed, False), False, mixed.stat().st_size)
    rows = sum(t.num_rows for t in reader.open_blocks(f, 16 << 10))
    assert rows + len(f.parse_errors) == 3000 and len(f.parse_errors) > 100 and len(seen) > 20
    assert max(seen) <= reader.READ_AHEAD + 1 and sources[-1].timeouts == 0


def test_work_file_is_removed_after_success_and_failure(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(generate(500, seed=4), str(good))
    work = tmp_path / "work"
    result = pipeline.run([good], tmp_path / "out", _config(), mode="streaming", work_dir=work)
    assert result.metrics["mode"] == "streaming" and list(work.iterdir()) == []
    bad = tmp_path / "bad.csv"
    bad.write_bytes(good.read_bytes() + b'9999,Bad\xff,30,1,"{}",HR\n')
    with pytest.raises(streaming.StreamingUnsupported):
        pipeline.run([bad], tmp_path / "out2", _config(), mode="streaming", work_dir=work)
    assert list(work.iterdir()) == []


def test_header_only_input_fails_before_writing_outputs(tmp_path: Path) -> None:
    from processing.errors import EmptyInputError

    path = tmp_path / "h.csv"
    path.write_text("id,name,age,salary,profile,department\n")
    with pytest.raises(EmptyInputError, match="header only"):
        pipeline.run([path], tmp_path / "out", _config(), mode="streaming", work_dir=tmp_path / "work")
    assert not (tmp_path / "out" / "cleaned").exists() and list((tmp_path / "work").iterdir()) == []


def test_gzip_input_streams_with_the_same_results(tmp_path: Path) -> None:
    import gzip

    import pyarrow.csv as pacsv

    from test_processing_perf_equivalence import assert_same

    plain = tmp_path / "p.csv"
    pacsv.write_csv(generate(3000, seed=5, invalid_rate=0.01), str(plain))
    packed = tmp_path / "in" / "p.csv.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    stream = pipeline.run([packed], tmp_path / "s", _config(), mode="streaming", block_size=32 << 10)
    pipeline.run([packed], tmp_path / "m", _config(), mode="memory")
    assert stream.metrics["mode"] == "streaming" and stream.metrics["inputs"][0]["format"] == "csv.gz"
    assert_same(tmp_path / "s", tmp_path / "m")
