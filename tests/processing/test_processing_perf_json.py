"""jsonx.extract (pyarrow for candidate cells, json.loads for the rest) == json.loads on every cell."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from processing import jsonx
from processing.config import JsonField

CELLS = [
    '{"a": "x", "b": {"c": "y"}}', '{"a": "x",}', '{"a": }', '{"a": "x"} {"a": "y"}', '{\n"a": "multi"}',
    '{"a": "x\\ny"}', '{"a": "x"}\r', '{"a": 1, "b": [1, 2]}', '{"a": NaN}', '{"a": "x", "a": "last"}',
    '{"b": {"c": 1, "c": 2}}', '{"b": []}', '{"b": [,1]}', '  {"a": "lead"}', '{"a": "\\ud800"}', '{}',
    'null', '[1]', '"s"', 'not json', '', '{"a": "ü ✓"}', '{"a": {"n": true}}', '{"a": null}', '{"a": 1e999}',
    None,
]
FIELDS = (JsonField("a", ("a",)), JsonField("c", ("b", "c")))


@pytest.mark.parametrize("seed", range(4))
def test_extract_equals_json_loads(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonx, "CHUNK_ROWS", 64)
    monkeypatch.setattr(jsonx, "MIN_CHUNK_ROWS", 4)
    rng = np.random.default_rng(seed)
    # Mostly clean cells (so pyarrow parses whole chunks) with the odd ones sprinkled in.
    picks = np.where(rng.random(600) < 0.9, 0, rng.integers(0, len(CELLS), 600))
    cells = [CELLS[i] for i in picks]
    got = jsonx.extract(pa.array(cells, pa.string()), FIELDS)
    present = [c for c in cells if c is not None]
    values, invalid, not_object = jsonx._python_path(present, FIELDS)
    it = [iter(v) for v in values]
    want = {f.name: [None if c is None else next(it[i]) for c in cells] for i, f in enumerate(FIELDS)}
    assert {k: v.to_pylist() for k, v in got.fields.items()} == want
    assert (got.invalid_syntax, got.not_object, got.non_missing) == (invalid, not_object, len(present))
