"""Reading inputs (CSV, gzip CSV, Parquet) as string tables with per-row parse failures, and writing outputs."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from processing import csvout, metricsdoc
from processing.errors import EmptyInputError, InputError
from processing.rawfile import file_digest, read_header

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
        rows: int = self.table.num_rows  # (pyarrow is untyped)
        return rows + len(self.parse_errors)


def _read_csv(path: Path, compressed: bool, utf8_ok: bool) -> FileRead:
    names = read_header(path, compressed)
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
            with _quiet_undecodable_invalid_rows(on_invalid):
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


@contextlib.contextmanager
def _quiet_undecodable_invalid_rows(handler: Any) -> Iterator[None]:
    """The UTF-8 parse is speculative (the UTF-8 check runs at the same time): when a row with the wrong field
    count holds non-UTF-8 bytes, pyarrow cannot build the text it passes to ``handler``, reports that as an
    "unraisable" exception and fails the read; the file is then re-read on the non-UTF-8 path, which rejects such
    rows with a reason. Only that report is silenced here; any other unraisable exception goes to the previous hook."""
    previous = sys.unraisablehook

    def hook(args: Any) -> None:
        if not (isinstance(args.exc_value, UnicodeDecodeError) and args.object is handler):
            previous(args)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


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
    for name, col in zip(table.column_names, table.columns, strict=True):
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


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def is_parquet(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == PARQUET_MAGIC


def read_file(path: Path) -> FileRead:
    """Read one input file (format by magic bytes) with every column as strings, never modifying it."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InputError(f"{path.name}: cannot open ({exc.strerror or exc})") from exc
    if not magic and path.stat().st_size == 0:
        raise EmptyInputError(f"{path.name}: empty file (0 bytes)")
    result: FileRead | None
    if magic == PARQUET_MAGIC:
        result = _read_parquet(path)
        result.sha256, _ = file_digest(path)
    else:
        compressed = magic[:2] == GZIP_MAGIC
        # The digest pass (sha256 + UTF-8 check) runs on a thread while pyarrow parses the file optimistically as
        # valid UTF-8; only a file that fails the check is parsed again on the slow (marking) path.
        with ThreadPoolExecutor(max_workers=1) as pool:
            digest = pool.submit(file_digest, path, check_utf8=True, compressed=compressed)
            try:
                result = _read_csv(path, compressed, True)
                failure: Exception | None = None
            except Exception as exc:  # noqa: BLE001 - re-raised below unless the file is not UTF-8
                result, failure = None, exc
            sha, utf8_ok = digest.result()
        if not utf8_ok:
            result = _read_csv(path, compressed, False)
        elif failure is not None:
            raise failure
        assert result is not None
        result.sha256 = sha
    assert result is not None
    result.size = path.stat().st_size
    return result


def write_table(table: pa.Table, folder: Path, stem: str, fmt: str) -> Path:
    """Write ``table`` as ``folder/stem.parquet`` or ``.csv`` and return the path."""
    writer = TableWriter(folder, stem, fmt)
    try:
        writer.write(table)
    finally:
        path = writer.close()
    return path


class TableWriter:
    """``folder/stem.parquet`` or ``.csv`` written table by table: the first table fixes the schema (and the Parquet
    options, ``parquet_options``), later ones are cast to it."""

    def __init__(self, folder: Path, stem: str, fmt: str):
        self.path = folder / f"{stem}.{'csv' if fmt == 'csv' else 'parquet'}"
        self.fmt = fmt
        self.writer: Any = None
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.schema = table.schema
            # CSV: Arrow's layout, but floats keep a decimal and datetimes are ISO text (processing/csvout.py)
            self.writer = (csvout.CsvWriter(self.path, table.schema) if self.fmt == "csv"
                           else pq.ParquetWriter(str(self.path), table.schema, **parquet_options(table)))
        self.writer.write_table(table if table.schema.equals(self.schema) else table.cast(self.schema))

    def close(self) -> Path:
        if self.writer is not None:
            self.writer.close()
        return self.path


DICTIONARY_SAMPLE_ROWS = 10_000


def parquet_options(table: pa.Table) -> dict[str, Any]:
    """Parquet writer options for ``table``: snappy, and dictionary encoding only for categoricals and columns whose
    first ``DICTIONARY_SAMPLE_ROWS`` rows repeat (at most one distinct value per ten rows). Arrow would otherwise try
    a dictionary for every column and give up once it grows too large, which costs time on unique text (names, JSON)
    for nothing; the data are the same either way."""
    head = table.slice(0, DICTIONARY_SAMPLE_ROWS)
    dictionary = []
    for name, col in zip(head.column_names, head.columns, strict=True):
        if pa.types.is_dictionary(col.type) or (
                len(col) and pc.count_distinct(col, mode="all").as_py() <= max(1, len(col) // 10)):
            dictionary.append(name)
    return {"compression": "snappy", "use_dictionary": dictionary}


write_json = metricsdoc.write_json  # one JSON writer for both engines (processing/metricsdoc.py)
