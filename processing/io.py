"""Reading inputs (CSV, gzip CSV, Parquet) as string tables with per-row parse failures, and writing outputs."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from processing.errors import EmptyInputError, InputError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
BLOCK_SIZE = 16 << 20  # bytes per CSV block; big blocks keep per-block overhead low


@dataclass
class FileRead:
    """One input file as read: ``table`` holds every parsed row with all columns as strings (raw values)."""

    path: Path
    table: pa.Table
    parse_errors: list[str] = field(default_factory=list)  # raw text of rows with the wrong field count
    invalid_utf8: pa.Array | None = None  # boolean mask over table rows holding non-UTF-8 bytes
    size: int = 0
    sha256: str = ""
    kind: str = "csv"

    @property
    def rows_in(self) -> int:
        return self.table.num_rows + len(self.parse_errors)


def list_inputs(path: Path) -> list[Path]:
    """The input files: ``path`` itself, or every non-hidden regular file below it in sorted order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"input path does not exist: {path}")
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise EmptyInputError(f"no input files under {path}")
    return files


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _header(path: Path, compressed: bool) -> list[str]:
    opener: Any = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            head = f.read(1 << 20)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path.name}: cannot read ({exc})") from exc
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise EmptyInputError(f"{path.name}: empty file (no header row)")
    try:
        row = next(csv.reader(io.StringIO(text)))
    except (StopIteration, csv.Error) as exc:
        raise InputError(f"{path.name}: cannot parse the header row ({exc})") from exc
    names = [n.strip() for n in row]
    if any(not n for n in names):
        raise InputError(f"{path.name}: empty column name in header at position {names.index('') + 1}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path.name}: duplicate column names in header: {', '.join(dupes)}")
    return names


def _read_csv(path: Path, compressed: bool) -> FileRead:
    names = _header(path, compressed)
    bad: list[str] = []

    def on_invalid(row: Any) -> str:
        bad.append(row.text)
        return "skip"

    def read(value_type: pa.DataType) -> pa.Table:
        bad.clear()
        source = pa.input_stream(str(path), compression="gzip" if compressed else None)
        return pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: value_type for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    invalid_utf8 = None
    try:
        try:
            table = read(pa.string())
        except pa.ArrowInvalid as exc:
            if "UTF8" not in str(exc) and "utf8" not in str(exc).lower():
                raise
            table, invalid_utf8 = _decode_lossy(read(pa.binary()))
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path.name}: cannot parse CSV ({exc})") from exc
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise InputError(f"{path.name}: cannot read ({exc})") from exc
    table = table.rename_columns([n.strip().lstrip("\ufeff") for n in table.column_names])
    return FileRead(path, table, list(bad), invalid_utf8, kind="csv.gz" if compressed else "csv")


def _decode_lossy(table: pa.Table) -> tuple[pa.Table, pa.Array]:
    """Binary columns -> strings; cells that are not UTF-8 are decoded with backslash escapes and flagged."""
    bad_rows = pa.array([False] * table.num_rows, pa.bool_()) if table.num_rows else pa.array([], pa.bool_())
    columns = []
    for col in table.columns:
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        try:
            columns.append(col.cast(pa.string()))
            continue
        except pa.ArrowInvalid:
            pass
        # Rare path (only columns holding invalid bytes): decode cell by cell.
        values, flags = [], []
        for v in col.to_pylist():
            try:
                values.append(None if v is None else v.decode("utf-8"))
                flags.append(False)
            except UnicodeDecodeError:
                values.append(v.decode("utf-8", errors="backslashreplace"))
                flags.append(True)
        columns.append(pa.array(values, pa.string()))
        bad_rows = pc.or_(bad_rows, pa.array(flags, pa.bool_()))
    return pa.table(columns, names=table.column_names), bad_rows


def _read_parquet(path: Path) -> FileRead:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path.name}: cannot read Parquet ({exc})") from exc
    columns = []
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            columns.append(col.cast(pa.string()))
            continue
        try:
            columns.append(col.cast(pa.string()))
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
            raise InputError(f"{path.name}: column {name!r} has unsupported Parquet type {col.type}") from exc
    table = pa.table(columns, names=[n.lstrip("\ufeff").strip() for n in table.column_names])
    return FileRead(path, table, kind="parquet")


def read_file(path: Path) -> FileRead:
    """Read one input file (format by magic bytes) with every column as strings, never modifying it."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InputError(f"{path.name}: cannot open ({exc.strerror or exc})") from exc
    if not magic and path.stat().st_size == 0:
        raise EmptyInputError(f"{path.name}: empty file (0 bytes)")
    if magic == PARQUET_MAGIC:
        result = _read_parquet(path)
    else:
        result = _read_csv(path, compressed=magic[:2] == GZIP_MAGIC)
    result.size = path.stat().st_size
    result.sha256 = _digest(path)
    return result


def write_table(table: pa.Table, folder: Path, stem: str, fmt: str) -> Path:
    """Write ``table`` as ``folder/stem.parquet`` or ``.csv`` and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        path = folder / f"{stem}.csv"
        pacsv.write_csv(table, str(path))
    else:
        path = folder / f"{stem}.parquet"
        pq.write_table(table, str(path), compression="snappy")
    return path


def write_json(obj: Any, path: Path) -> None:
    """Write JSON atomically-enough (temp file + rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
