"""Vectorised extraction of fields from a JSON text column.

Cells that are certainly single-line JSON objects go to multi-threaded ``pyarrow.json.read_json`` with an explicit
schema of just the wanted fields; everything else (and any chunk pyarrow refuses) goes to ``json.loads``. The
result follows ``json.loads`` semantics in both paths: pyarrow refuses what json.loads would treat differently
(duplicate keys, type mismatches, NaN), and such chunks fall back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

# Frozen: the oracle imports nothing of the job's code (tests/processing/test_processing_imports.py checks it).
# Config objects arrive as input, built by the job's validator from the same document (the config format is an
# input like the CSV files); the oracle reads their attributes and nothing else.
JsonField = Any

# Starts with {" or {} and ends with }, no CR/LF, no `} {` (two objects on a line), no trailing comma, no empty value.
_CANDIDATE = r'^\{\s*["}][^\r\n]*\}$'
_SUSPICIOUS = r"\}\s*\{|,\s*[}\]]|:\s*[,}\]]|\[\s*[,\]]"
CHUNK_ROWS = 262_144
MIN_CHUNK_ROWS = 4_096


@dataclass
class Extraction:
    """Extracted fields (string arrays aligned with the input) and per-cell outcome counts."""

    fields: dict[str, pa.Array]
    non_missing: int
    invalid_syntax: int
    not_object: int

    @property
    def malformed(self) -> int:
        return self.invalid_syntax + self.not_object


def _schema(fields: tuple[JsonField, ...]) -> pa.Schema:
    tree: dict[str, Any] = {}
    for f in fields:
        node = tree
        for key in f.path[:-1]:
            node = node.setdefault(key, {})
        node.setdefault(f.path[-1], None)

    def build(node: dict[str, Any]) -> list[pa.Field]:
        return [pa.field(k, pa.string() if v is None else pa.struct(build(v))) for k, v in node.items()]

    return pa.schema(build(tree))


def _leaf_conflict(fields: tuple[JsonField, ...]) -> bool:
    paths = {f.path for f in fields}
    return any(f.path[:i] in paths for f in fields for i in range(1, len(f.path)))


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from \ud800-style escapes
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _walk(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _python_path(texts: list[str], fields: tuple[JsonField, ...]) -> tuple[list[list[str | None]], int, int]:
    out: list[list[str | None]] = [[] for _ in fields]
    invalid = not_object = 0
    for text in texts:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj, invalid = None, invalid + 1
        else:
            if not isinstance(obj, dict):
                obj, not_object = None, not_object + 1
        for i, f in enumerate(fields):
            out[i].append(_to_text(_walk(obj, f.path)) if obj is not None else None)
    return out, invalid, not_object


def _arrow_path(chunk: pa.Array, fields: tuple[JsonField, ...], schema: pa.Schema) -> list[pa.Array] | None:
    lines = pc.binary_join_element_wise(chunk, "", "\n")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset: lines.offset + len(lines) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    buf = lines.buffers()[2].slice(start, end - start)
    try:
        table = pajson.read_json(
            pa.BufferReader(buf),
            read_options=pajson.ReadOptions(block_size=max(1 << 20, min(end - start + 1, 64 << 20))),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(chunk):
        return None
    result = []
    for f in fields:
        col: Any = table.column(f.path[0]).combine_chunks()
        for key in f.path[1:]:
            col = pc.struct_field(col, key)
        result.append(col.cast(pa.string()))
    return result


def _extract_candidates(
    cands: pa.Array, fields: tuple[JsonField, ...], schema: pa.Schema
) -> tuple[list[pa.Array], int, int]:
    """Extract from candidate cells, splitting chunks pyarrow refuses until they are small enough for json.loads."""
    parts: list[list[pa.Array]] = [[] for _ in fields]
    invalid = not_object = 0
    stack = [(start, min(CHUNK_ROWS, len(cands) - start)) for start in range(0, len(cands), CHUNK_ROWS)]
    stack.reverse()
    while stack:
        start, length = stack.pop()
        chunk = cands.slice(start, length)
        got = _arrow_path(chunk, fields, schema)
        if got is None and length > MIN_CHUNK_ROWS:
            quarter = -(-length // 4)
            subs = [(s, min(quarter, start + length - s)) for s in range(start, start + length, quarter)]
            stack.extend(reversed(subs))
            continue
        if got is None:
            values, inv, no = _python_path(chunk.to_pylist(), fields)
            invalid, not_object = invalid + inv, not_object + no
            got = [pa.array(v, pa.string()) for v in values]
        for i, arr in enumerate(got):
            parts[i].append(arr)
    return [pa.concat_arrays(p) if p else pa.array([], pa.string()) for p in parts], invalid, not_object


def extract(column: pa.Array | pa.ChunkedArray, fields: tuple[JsonField, ...]) -> Extraction:
    """Extract ``fields`` from a string column of JSON texts.

    Args:
        column: JSON text per row; nulls are missing (not malformed).
        fields: output names and key paths.

    Returns:
        String arrays per field (null where the cell is missing, malformed, not an object or lacks the path;
        non-string values as compact JSON text) and counts of invalid-syntax and non-object cells.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.string())
    column = column.cast(pa.string())
    n = len(column)
    present = pc.is_valid(column)
    non_missing = int(pc.sum(present).as_py() or 0)
    if _leaf_conflict(fields):
        candidate = pa.array(np.zeros(n, dtype=bool))
    else:
        candidate = pc.and_(
            pc.match_substring_regex(column, _CANDIDATE),
            pc.invert(pc.match_substring_regex(column, _SUSPICIOUS)),
        )
        candidate = pc.fill_null(candidate, False)
    others = pc.and_(present, pc.invert(candidate))
    cand_idx = np.flatnonzero(candidate.to_numpy(zero_copy_only=False))
    other_idx = np.flatnonzero(others.to_numpy(zero_copy_only=False))

    if len(cand_idx):
        cands = column.take(pa.array(cand_idx, pa.int64()))
        fast, invalid, not_object = _extract_candidates(cands, fields, _schema(fields))
    else:
        fast, invalid, not_object = [pa.array([], pa.string()) for _ in fields], 0, 0
    slow, inv2, no2 = _python_path(column.take(pa.array(other_idx, pa.int64())).to_pylist(), fields)
    invalid, not_object = invalid + inv2, not_object + no2

    # Scatter both parts back into row order with one take per field.
    order = np.concatenate([cand_idx, other_idx, np.flatnonzero(~present.to_numpy(zero_copy_only=False))])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n, dtype=np.int64)
    missing_count = n - len(cand_idx) - len(other_idx)
    result = {}
    for i, f in enumerate(fields):
        combined = pa.concat_arrays([fast[i], pa.array(slow[i], pa.string()), pa.nulls(missing_count, pa.string())])
        result[f.name] = combined.take(pa.array(inverse))
    return Extraction(result, non_missing, invalid, not_object)
