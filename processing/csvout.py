"""The CSV writer of every CSV output (cleaned/, transformed/, rejected/, statistics/): Arrow's CSV layout (header
and text values in double quotes, ``"`` doubled, numbers, booleans and dates bare, null empty, ``\\n`` line ends),
except that floats keep a decimal (``3750.0``, as Python and Spark write them: Arrow writes ``3750``, which readers
take for an integer) and datetimes are ISO-8601 UTC text (``2024-03-01T05:00:00Z``). Each cell's text is built by
Arrow kernels and rows are joined by Arrow, so writing stays vectorised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from processing import typecast

SLICE_ROWS = 65_536


def _quoted(text: pa.Array) -> pa.Array:
    escaped = pc.replace_substring(text, '"', '""')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def cell_text(arr: pa.Array) -> pa.Array:
    """Each value's CSV cell text ("" for null)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out = _quoted(pc.cast(arr, pa.string()))
    elif pa.types.is_floating(t):
        out = typecast.float_text(arr)
    elif pa.types.is_timestamp(t):
        out = typecast.timestamp_text(arr)
    elif pa.types.is_null(t):
        out = pa.nulls(len(arr), pa.string())
    else:
        out = pc.cast(arr, pa.string())
    return pc.fill_null(out, "")


class CsvWriter:
    """``path`` written table by table (the header once, from ``schema``)."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.file: Any = path.open("wb")
        header = ",".join('"' + name.replace('"', '""') + '"' for name in schema.names)
        self.file.write((header + "\n").encode("utf-8"))

    def write_table(self, table: pa.Table) -> None:
        for start in range(0, table.num_rows, SLICE_ROWS):  # string offsets are 32-bit: bounded slices
            part = table.slice(start, SLICE_ROWS)
            cells = [cell_text(col.combine_chunks()) for col in part.columns]
            if not cells:
                self.file.write(b"\n" * part.num_rows)
                continue
            rows = pc.binary_join_element_wise(*cells, ",") if len(cells) > 1 else cells[0]
            lines = pc.binary_join_element_wise(rows, "\n", "")
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset: lines.offset + len(lines) + 1]
            first, last = int(offsets[0]), int(offsets[-1])
            if last > first:
                self.file.write(memoryview(lines.buffers()[2])[first:last])

    def close(self) -> None:
        self.file.close()
