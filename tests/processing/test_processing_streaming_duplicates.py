"""Streaming duplicates above ``max_rows``: signatures are read back from the work file partition by partition
(``sig % P``) and the results (counts, which rows are "first", dropped rows, outputs) are those of the in-memory path
and of one partition. Also with signatures forced to collide, so only the exact check can tell rows apart."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from processing import config as config_mod
from processing import pipeline, streaming
from processing.sample import generate
from processing.streaming import passes
from test_processing_perf_equivalence import assert_same

DEFAULT_DOC = json.loads((Path(__file__).resolve().parents[2] / "processing" / "configs" / "default.json").read_text())
ROWS = 8000
SMALL = 1000  # max_rows: ~9 partitions of the ~8,400 usable rows
BLOCK = 16 << 10  # ~60 rows per block: the spread groups below cross well over 100 blocks
GROUP_EXACT, GROUP_KEY = 3, 10  # source rows of the two spread groups


def _dataset(path: Path, seed: int = 21) -> tuple[Path, int, dict[str, list[int]]]:
    """``generate``'s messy rows (its duplicates copy an earlier row with a new id: key duplicates), plus exact
    copies (id too) and id-changed copies of random earlier rows at random later places, plus two groups spread
    over the whole file: row ``GROUP_EXACT`` copied exactly every 97 rows and row ``GROUP_KEY`` with a new id every
    131 rows. Returns the path, the number of rows and the groups' source rows (1-based, in file order)."""
    base = generate(ROWS, seed=seed, invalid_rate=0.01)
    rng = np.random.default_rng(seed)
    exact_src, key_src = rng.integers(0, ROWS, 120), rng.integers(0, ROWS, 120)
    g_exact, g_key = np.arange(GROUP_EXACT + 0.5, ROWS, 97.0), np.arange(GROUP_KEY + 0.5, ROWS, 131.0)
    src = np.concatenate([np.arange(ROWS), exact_src, key_src, np.full(len(g_exact), GROUP_EXACT),
                          np.full(len(g_key), GROUP_KEY)])
    place = np.concatenate([np.arange(ROWS, dtype=float), rng.uniform(exact_src + 0.5, ROWS),
                            rng.uniform(key_src + 0.5, ROWS), g_exact, g_key])
    new_id = np.full(len(src), -1)
    new_id[ROWS + 120: ROWS + 240] = ROWS + 1 + np.arange(120)
    new_id[ROWS + 240 + len(g_exact):] = ROWS + 1000 + np.arange(len(g_key))
    order = np.argsort(place, kind="stable")
    table = base.take(pa.array(src[order]))
    ids = pc.if_else(pa.array(new_id[order] >= 0), pc.cast(pa.array(new_id[order]), pa.string()), table.column("id"))
    pacsv.write_csv(table.set_column(0, "id", ids), str(path))
    kind = np.zeros(len(src), dtype=int)  # 1: the exact group, 2: the key group (the source rows included)
    kind[ROWS + 240: ROWS + 240 + len(g_exact)], kind[GROUP_EXACT] = 1, 1
    kind[ROWS + 240 + len(g_exact):], kind[GROUP_KEY] = 2, 2
    groups = {"exact": (np.flatnonzero(kind[order] == 1) + 1).tolist(),
              "key": (np.flatnonzero(kind[order] == 2) + 1).tolist()}
    return path, len(src), groups


def _config(drop: str) -> config_mod.DatasetConfig:
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["duplicates"] = {**doc["duplicates"], "drop": drop}
    return config_mod.validate(doc)


def _record_partitions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, dict[str, int]]]:
    """Calls of ``_Run._partition``: (part, n_parts, signatures returned per check). Also keeps the statistics exact
    (no sample) although the rows outnumber ``max_rows``, so the outputs can be compared with the in-memory path
    exactly; sampled statistics are test_processing_streaming_bounded.py's subject."""
    monkeypatch.setattr(passes._Run, "_sample_rate", lambda self, rows: 1.0)
    calls: list[tuple[int, int, dict[str, int]]] = []
    original = passes._Run._partition

    def recording(self: Any, part: int, n_parts: int, *args: Any) -> Any:
        out = original(self, part, n_parts, *args)
        calls.append((part, n_parts, {kind: len(sig) for kind, (_, sig) in out.items()}))
        return out

    monkeypatch.setattr(passes._Run, "_partition", recording)
    return calls


def _stream(path: Path, out: Path, drop: str, max_rows: int) -> pipeline.Result:
    return pipeline.run([path], out, _config(drop), mode="streaming", block_size=BLOCK, max_rows=max_rows)


def _assert_same_rejected(a: pipeline.Result, b: pipeline.Result) -> None:
    assert a.rejected.num_rows == b.rejected.num_rows
    assert a.rejected.equals(b.rejected)


@pytest.mark.parametrize("drop", ["none", "exact", "key"])
def test_partitioned_duplicates_equal_in_memory_and_one_partition(tmp_path: Path, drop: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path, usable, groups = _dataset(tmp_path / "d.csv")  # every row is usable (ids are all present)
    memory = pipeline.run([path], tmp_path / "memory", _config(drop), mode="memory")
    one = _stream(path, tmp_path / "one", drop, max_rows=10 * ROWS)
    calls = _record_partitions(monkeypatch)
    parts = _stream(path, tmp_path / "parts", drop, max_rows=SMALL)

    assert memory.metrics["summary"]["rows_in"] == usable
    n_parts = -(-usable // SMALL)
    assert n_parts >= 8 and [(p, n) for p, n, _ in calls] == [(p, n_parts) for p in range(n_parts)]
    # Each partition holds about max_rows signatures per check, not all of them (hash spread plus the groups).
    assert all(0 < size <= 1.5 * SMALL for _, _, sizes in calls for size in sizes.values())
    assert sum(sizes["exact"] for _, _, sizes in calls) == usable

    dups = memory.metrics["duplicates"]
    assert dups["exact"] >= len(groups["exact"]) - 1 + 100 and dups["key"] > dups["exact"] + 200
    assert parts.metrics["duplicates"] == one.metrics["duplicates"] == dups
    assert dups["dropped"] == {"none": 0, "exact": dups["exact"], "key": dups["key"]}[drop]
    for result in (parts, one):
        _assert_same_rejected(result, memory)
        assert result.metrics["rows"] == memory.metrics["rows"]
    # A group's first row stays; every later one is rejected when its check drops (both groups are key duplicates).
    rejected = set(parts.rejected.column("_source_row").to_pylist())
    for group, rows in groups.items():
        dropped = drop == "key" or drop == group == "exact"
        assert rows[0] not in rejected and (set(rows[1:]) <= rejected if dropped else not rejected & set(rows))
    assert_same(tmp_path / "parts", tmp_path / "memory")
    assert_same(tmp_path / "parts", tmp_path / "one")


@pytest.mark.parametrize("coarse", [False, True], ids=["constant", "eight_values"])
def test_colliding_signatures_over_several_partitions_give_exact_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, coarse: bool) -> None:
    # A constant signature makes every row a candidate of partition 0; eight values (a valid signature: equal rows
    # still agree) spread collisions over several partitions. Only the exact check can find the duplicates.
    path, usable, _ = _dataset(tmp_path / "d.csv", seed=5)
    memory = pipeline.run([path], tmp_path / "memory", _config("key"), mode="memory")
    real = streaming.row_signature

    def colliding(columns: list[pa.Array], n: int, cache: dict[int, np.ndarray] | None = None) -> np.ndarray:
        return real(columns, n, cache) & np.uint64(7) if coarse else np.zeros(n, dtype=np.uint64)

    monkeypatch.setattr(passes, "row_signature", colliding)  # where pass A looks it up
    calls = _record_partitions(monkeypatch)
    parts = _stream(path, tmp_path / "parts", "key", max_rows=SMALL)
    n_parts = -(-usable // SMALL)
    assert n_parts >= 8 and [(p, n) for p, n, _ in calls] == [(p, n_parts) for p in range(n_parts)]
    non_empty = sum(1 for _, _, sizes in calls if sizes["exact"])
    assert non_empty == (8 if coarse else 1)
    assert parts.metrics["duplicates"] == memory.metrics["duplicates"]
    assert memory.metrics["duplicates"]["key"] > 0
    _assert_same_rejected(parts, memory)
    assert_same(tmp_path / "parts", tmp_path / "memory")
