"""Reading inputs (CSV, gzip CSV, Parquet) as string tables with per-row parse failures, and writing outputs."""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import EmptyInputError, InputError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
BLOCK_SIZE = 16 << 20  # bytes per CSV block; big blocks keep per-block overhead low
MARK = "\ufffe"  # a noncharacter placed before each escaped non-UTF-8 byte; removed again after parsing


def _mark_undecodable(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)
    bad = err.object[err.start:err.end]
    return "".join(f"{MARK}\\x{b:02x}" for b in bad), err.end


codecs.register_error("processing-mark", _mark_undecodable)


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


def _digest(path: Path, *, check_utf8: bool = False, compressed: bool = False) -> tuple[str, bool]:
    """sha256 of the file and, in the same pass, whether its (decompressed) text is valid UTF-8."""
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if compressed else None
    ok = check_utf8
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
            if ok:
                try:
                    data = chunk
                    while inflater is not None and data:  # concatenated gzip members
                        out = inflater.decompress(data)
                        decoder.decode(out)
                        data = inflater.unused_data
                        if data:
                            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    if inflater is None:
                        decoder.decode(chunk)
                except (UnicodeDecodeError, zlib.error):
                    ok = False
    if ok:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            ok = False
    return h.hexdigest(), ok


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


def _read_csv(path: Path, compressed: bool, utf8_ok: bool) -> FileRead:
    names = _header(path, compressed)
    bad: list[str] = []

    def on_invalid(row: Any) -> str:
        bad.append(row.text)
        return "skip"

    def read(source: Any) -> pa.Table:
        bad.clear()
        return pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    invalid_utf8 = None
    try:
        if utf8_ok:
            table = read(pa.input_stream(str(path), compression="gzip" if compressed else None))
        else:
            # Rare path: mark undecodable bytes (kept as \xNN escapes), so the rows holding them can be rejected.
            data = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
            text = data.decode("utf-8", errors="processing-mark")
            table = read(pa.BufferReader(text.encode("utf-8")))
            table, invalid_utf8 = _unmark(table)
            bad[:] = [line.replace(MARK, "") for line in bad]
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path.name}: cannot parse CSV ({exc})") from exc
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise InputError(f"{path.name}: cannot read ({exc})") from exc
    table = table.rename_columns([n.strip().lstrip("\ufeff") for n in table.column_names])
    return FileRead(path, table, list(bad), invalid_utf8, kind="csv.gz" if compressed else "csv")


def _unmark(table: pa.Table) -> tuple[pa.Table, pa.Array]:
    flagged = pa.array(np.zeros(table.num_rows, dtype=bool))
    columns = []
    for col in table.columns:
        col = col.combine_chunks() if col.num_chunks else pa.array([], pa.string())
        hit = pc.fill_null(pc.match_substring(col, MARK), False)
        flagged = pc.or_(flagged, hit)
        columns.append(pc.replace_substring(col, MARK, ""))
    return pa.table(columns, names=table.column_names), flagged


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
        result.sha256, _ = _digest(path)
    else:
        compressed = magic[:2] == GZIP_MAGIC
        sha, utf8_ok = _digest(path, check_utf8=True, compressed=compressed)
        result = _read_csv(path, compressed, utf8_ok)
        result.sha256 = sha
    result.size = path.stat().st_size
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
