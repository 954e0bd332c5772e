"""JSON extraction: json.loads semantics in both the pyarrow fast path and the fallback."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from processing import jsonx
from processing.config import JsonField

FIELDS = (JsonField("address", ("address",)), JsonField("theme", ("prefs", "theme")), JsonField("n", ("n",)))


def _reference(texts: list[str | None]) -> dict[str, list[str | None]]:
    """Independent per-cell json.loads implementation of the documented semantics."""
    out: dict[str, list[str | None]] = {f.name: [] for f in FIELDS}
    for text in texts:
        try:
            obj = json.loads(text) if text is not None else None
        except ValueError:
            obj = None
        for f in FIELDS:
            v = obj
            for key in f.path:
                v = v.get(key) if isinstance(v, dict) else None
            if v is not None and not isinstance(v, str):
                v = json.dumps(v, separators=(",", ":"))
            out[f.name].append(v)
    return out


CELLS = [
    '{"address": "1 Main St", "prefs": {"theme": "dark", "x": [1, {"y": 2}]}, "other": 1}',
    '{"address": "a", "address": "b"}',  # duplicate key: json.loads keeps the last
    '{"address": 5, "n": {"a": 1}}',  # non-string values become compact JSON text
    '{"address": "x",}',  # trailing comma: malformed
    '{"address": "no end"',
    "[1, 2]",  # valid JSON but not an object
    '"just a string"',
    "null",
    "{}",
    '{"prefs": "not an object"}',
    '{\n "address": "multi\\nline"\n}',
    '{"address": NaN}',
    '{"address": "\\u00e9t\\u00e9"}',
    '{"a": 1} {"b": 2}',
    None,
    "{'address': 'single'}",
    '{"address": "x"}  ',
]


def test_extract_matches_json_loads_semantics() -> None:
    ext = jsonx.extract(pa.array(CELLS, pa.string()), FIELDS)
    expected = _reference(CELLS)
    assert {k: v.to_pylist() for k, v in ext.fields.items()} == expected
    assert ext.non_missing == len(CELLS) - 1
    assert ext.not_object == 3  # [1, 2], "just a string", null
    assert ext.invalid_syntax == 4  # trailing comma, no end, two objects, single quotes (NaN is accepted)
    assert ext.malformed == 7


def test_fast_path_chunks_fall_back_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN many well-formed lines with a few that pyarrow refuses but json.loads accepts or rejects
    monkeypatch.setattr(jsonx, "CHUNK_ROWS", 64)
    monkeypatch.setattr(jsonx, "MIN_CHUNK_ROWS", 8)
    cells = [f'{{"address": "a{i}", "prefs": {{"theme": "t{i % 3}"}}}}' for i in range(500)]
    cells[7] = '{"address": 1}'
    cells[300] = '{"address": "x", "address": "y"}'
    cells[301] = '{"address": "x" "oops"}'
    ext = jsonx.extract(pa.array(cells), FIELDS)
    # THEN the result equals the per-cell reference and only the broken cell is malformed
    assert {k: v.to_pylist() for k, v in ext.fields.items()} == _reference(cells)
    assert (ext.invalid_syntax, ext.not_object) == (1, 0)


def test_leaf_and_branch_on_same_path_uses_fallback() -> None:
    fields = (JsonField("p", ("prefs",)), JsonField("t", ("prefs", "theme")))
    ext = jsonx.extract(pa.array(['{"prefs": {"theme": "dark"}}']), fields)
    assert ext.fields["p"].to_pylist() == ['{"theme":"dark"}']
    assert ext.fields["t"].to_pylist() == ["dark"]


def test_empty_and_all_missing() -> None:
    assert jsonx.extract(pa.array([], pa.string()), FIELDS).non_missing == 0
    ext = jsonx.extract(pa.array([None, None], pa.string()), FIELDS)
    assert ext.fields["address"].to_pylist() == [None, None] and ext.malformed == 0


def test_lone_surrogate_does_not_crash() -> None:
    ext = jsonx.extract(pa.array(['{"address": "\\ud800x"}']), FIELDS)
    assert ext.fields["address"].to_pylist() == ["?x"]
