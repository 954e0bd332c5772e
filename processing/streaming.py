"""Streaming mode: inputs larger than memory, processed block by block; the per-row state held in memory at once
is bounded by ``max_rows`` rows (``RunOptions.max_rows``: env ``PROCESSING_MAX_ROWS_IN_MEMORY`` read by cli.py,
default from the available memory), and every result is exact while the output rows fit it.

Pass A (per block of ``block_size`` bytes, pyarrow's incremental CSV reader, at most ``READ_AHEAD`` blocks read
ahead): missing markers, typing, rejection rules. Rejected rows and unparsable lines go to work files for
``rejected/`` (``_Rejects``: written at the end, in the in-memory path's order); the usable rows
go to a work file on local disk (Arrow IPC: text after missing markers, the text a marker emptied, typed numbers,
invalid flags, source file and row, and a 64-bit *signature* per duplicate check). The sha256 and UTF-8 check of each
file run on a thread at the same time.
Between the passes: duplicates. Equal rows have equal signatures, so only rows whose signature repeats can be
duplicates; the signatures are read back from the work file (above ``max_rows`` usable rows in partitions by
signature value, one at a time), and the candidates are read back and checked exactly (the in-memory
``transform.duplicate_masks``, in row order, so "first occurrence" is the same). No hash is trusted: a signature
collision only adds a candidate. Duplicates are kept as sorted row positions. Then the fill values, one imputed
column at a time read back from the work file: while the rows fit ``max_rows``, ``transform.impute_value`` on the
same values as the in-memory path (medians and means identical); above, batch by batch (``batchstats``: means and
most frequent values exact, a median exact while the present values fit ``max_rows``, else from a sample).
Pass B (per work-file batch): the same per-row steps as the in-memory path (``transform``, ``jsonx``), block
outputs appended by a writer thread (``ParquetWriter``/``CSVWriter``); counts are summed, and the columns that
group statistics, numeric summaries and drift need are appended to a second work file (``_Spill``). At the end
(``_Statistics``), while the rows fit ``max_rows`` each statistic reads back only its own columns and is computed as
in memory (exact, identical); above, the spill is scanned batch by batch: exact aggregates merged per batch, order
statistics and drift from a deterministic uniform sample of about ``max_rows`` rows, with the rank-error bound
recorded in metrics ``statistics_sampling`` (``batchstats``).

Memory: ``(READ_AHEAD + 2)`` blocks and their working copies; between the passes the signatures and positions of at
most about ``max_rows`` rows per duplicate check (one partition; more only if one signature value is that common)
with the candidate rows of that partition, then 8 bytes per duplicate found; at the end the columns of one statistic
at a time (at most ``max_rows`` rows; above, the sample, one batch and one row per group), the rejected rows while
at most ``max_rows`` (for ``Result.rejected``), and the Parquet writers' footer (a few KB per row group, one row group
per block). Work-file scans read only their columns into buffers (``_scan``; no memory map). Disk: the work files
(about 1.1x the usable input plus 8 bytes per row per duplicate check, the statistics columns, the rejected rows;
1.4x the input at 1M reference rows), removed at the end (``work_dir``, default: the output folder's
parent). Each partition reads the signature columns and then the candidates' columns of the work file once.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from processing import batchstats, io, jsonx, options, transform
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.errors import EmptyInputError, InputError, MissingColumnsError, ProcessingError
from processing.options import RunOptions
from processing.rows import (FILE_COL, OUTPUT_FOLDERS, RAW_LINE_COL, ROW_COL, Parts, add_counts, count_reasons,
                             derived_metrics_of, group_column_metrics, json_metrics_of, rejected_rows,
                             summarised_columns, to_arrow, transform_rows, type_and_reject, unparsed_rows,
                             write_statistics)

log = logging.getLogger("processing")

BLOCK_SIZE = 6 << 20
READ_AHEAD = 3  # CSV blocks the reader thread may read beyond the one being processed
WRITES_IN_FLIGHT = 2  # output blocks queued for the writer thread
# Work-file columns besides one per input column (raw text for numeric columns, text after missing markers for the
# others): source file index, row number (1-based, parsed rows), typed values and invalid flags of numeric columns,
# and the raw text of cells a missing marker emptied (so rejected/ can show the input as it was).
# ``SIG`` + check: the row's 64-bit duplicate signature for that check ("exact", "key"; see ``_duplicates``).
FILE_IDX, ROW_NO, TYPED, INVALID, MARKER = "__file", "__row", "__typed:", "__invalid:", "__marker:"
SIG = "__sig:"
# Per-row state held in memory at once (duplicate signatures, statistics columns): at most ``max_rows`` rows.
# Above it, duplicates are found partition by partition and order statistics come from a sample (docs "Modes").
ROW_STATE_BYTES = 128  # measured: the default config's exact end-of-run statistics hold ~0.125 GB per million rows
MIN_MAX_ROWS = 100_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL_SIG = np.uint64(0x5851F42D4C957F2D)


class StreamingUnsupported(ProcessingError):
    """The inputs or config need the in-memory path."""


def unsupported(inputs: list[Path], config: DatasetConfig) -> str | None:
    """Why the streaming path cannot process this job (None when it can)."""
    cats = [c for c, k in config.columns.items() if k == "category"]
    if cats:
        return f"category columns need the in-memory path ({', '.join(cats)})"
    for p in inputs:
        try:
            if io.is_parquet(p):
                return f"{p.name} is Parquet (streaming reads CSV)"
        except OSError:
            return None  # the in-memory reader reports unreadable files
    return None


@dataclass
class _File:
    path: Path
    names: list[str]
    compressed: bool
    size: int
    sha256: str = ""
    parse_errors: list[str] = field(default_factory=list)  # unparsable lines not yet moved to the work folder
    unparsed: int = 0  # unparsable lines moved to the work folder (``_Run._flush_unparsed``)
    rows: int = 0


class _Paced:
    """File-like source for pyarrow's CSV reader, whose background thread would otherwise read up to ~32 blocks ahead
    of the consumer (32 x block size of memory): a read waits while ``READ_AHEAD`` blocks are already ahead (a block
    of unparsable lines still gives a batch, an empty one, so it counts as consumed). While the reader is being
    opened (``opening``), ``open_csv`` reads on until it has a batch with rows, through every leading block of
    unparsable lines, before the consumer can take anything: then a read also goes ahead when at least half a block
    of unparsable lines was reported since the previous read (``invalid_row``), or such a file would wait for the
    timeout at every block.
    The wait has a timeout, so a record longer than several blocks still makes progress (the pacing is then loose;
    ``timeouts`` counts them)."""

    def __init__(self, raw: Any, ahead: int, block_size: int):
        self.raw, self.ahead, self.block_size = raw, ahead, block_size
        self.reads = self.consumed = 0
        self.stopped, self.opening = False, True
        self.invalid = self.invalid_at_read = 0  # bytes of unparsable lines reported: in all, at the last read
        self.timeouts = 0
        self.cv = threading.Condition()

    def read(self, n: int = -1) -> bytes:
        with self.cv:
            if not self.cv.wait_for(lambda: self.stopped or self.reads <= self.consumed + self.ahead
                                    or (self.opening and 2 * (self.invalid - self.invalid_at_read) >= self.block_size),
                                    timeout=5.0):
                self.timeouts += 1
            if self.stopped:
                return b""
            self.reads += 1
            self.invalid_at_read = self.invalid
        return self.raw.read(n)

    def invalid_row(self, size: int) -> None:
        with self.cv:
            self.invalid += size
            self.cv.notify_all()

    def opened(self) -> None:
        with self.cv:
            self.opening = False
            self.cv.notify_all()

    def consumed_one(self) -> None:
        with self.cv:
            self.consumed += 1
            self.cv.notify_all()

    def stop(self) -> None:
        """Let the reader thread finish (it sees end of input), e.g. when the consumer gives up early."""
        with self.cv:
            self.stopped = True
            self.cv.notify_all()

    @property
    def closed(self) -> bool:
        return False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.raw.close()


def _open(f: _File, block_size: int) -> Iterator[pa.Table]:
    """The file's parsed records, block by block (all columns as strings, names as the in-memory reader has them)."""
    f.parse_errors.clear()

    def on_invalid(row: Any) -> str:
        f.parse_errors.append(row.text)
        source.invalid_row(len(row.text) + 1)
        return "skip"

    source = _Paced(pa.input_stream(str(f.path), compression="gzip" if f.compressed else None), READ_AHEAD, block_size)
    try:
        reader = pacsv.open_csv(
            pa.PythonFile(source, mode="r"),
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in f.names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        source.opened()
        clean = [n.strip().lstrip("\ufeff") for n in reader.schema.names]
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            source.consumed_one()
            yield pa.Table.from_batches([batch]).rename_columns(clean)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{f.path.name}: cannot parse CSV ({exc})") from exc
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise InputError(f"{f.path.name}: cannot read ({exc})") from exc
    finally:
        source.stop()


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads every input bit over the output (uint64 in, uint64 out, wraps)."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def _words(data: np.ndarray) -> np.ndarray:
    """Every 8-byte little-endian word of ``data`` by start byte (an overlapping view; 8 zero bytes appended)."""
    padded = np.concatenate([data, np.zeros(8, np.uint8)])
    return np.ndarray(shape=(len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))


def _window(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The 8 bytes of each string from offset ``at`` (0 <= at <= length) as a uint64, bytes past the string's end
    zeroed, so the value depends on the string alone."""
    remaining = np.minimum(lengths - at, 8).astype(np.uint64)
    keep = np.where(remaining >= 8, np.uint64(0xFFFFFFFFFFFFFFFF),
                    (np.uint64(1) << (np.uint64(8) * np.minimum(remaining, np.uint64(7)))) - np.uint64(1))
    return words[starts + at] & keep


def _column_signature(arr: pa.Array) -> np.ndarray:
    """A 64-bit value per row that equal values (and nulls) share: fixed-width values themselves; strings their
    byte length and four 8-byte windows (start, one third, two thirds, end)."""
    n = len(arr)
    valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
    if pa.types.is_string(arr.type):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + n + 1].astype(np.int64)
        data_buf = arr.buffers()[2]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        words = _words(data[offsets[0]: offsets[-1]])
        starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
        sig = _mix(lengths.astype(np.uint64) + _GOLDEN)
        for k, at in enumerate((np.zeros(n, np.int64), lengths // 3, 2 * lengths // 3, np.maximum(lengths - 8, 0))):
            with np.errstate(over="ignore"):
                sig = _mix(sig * np.uint64(31 + 2 * k) + _window(words, starts, lengths, at))
    else:
        if pa.types.is_floating(arr.type):
            arr = pc.add(arr, pa.scalar(0.0, arr.type))  # -0.0 + 0.0 == +0.0, as pandas compares
        values = pc.fill_null(arr, pa.scalar(0, arr.type)).to_numpy(zero_copy_only=False)
        sig = _mix(np.ascontiguousarray(values).view(np.uint64) + _GOLDEN)
    return np.where(valid, sig, _NULL_SIG)


def row_signature(columns: list[pa.Array], n: int, cache: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Signature of each row over ``columns`` (equal rows, nulls equal, have equal signatures); ``cache`` keeps
    column signatures by array identity for the next call on the same block."""
    cache = {} if cache is None else cache
    sig = np.full(n, _GOLDEN, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for arr in columns:
            if id(arr) not in cache:
                cache[id(arr)] = _column_signature(arr)
            sig = _mix(sig * np.uint64(0x100000001B3) + cache[id(arr)])
    return sig


class _Block:
    """One block through the row-level steps shared with the in-memory path (same functions, same order)."""

    def __init__(self, table: pa.Table, names: list[str], config: DatasetConfig, kinds: dict[str, str]):
        n = table.num_rows
        self.n = n
        self.raw = {c: (transform.to_array(table.column(c)) if c in table.column_names
                        else pa.nulls(n, pa.string())) for c in names}
        rows = type_and_reject(self.raw.__getitem__, n, names, kinds, config)
        self.typed, self.invalid, self.rejected, self.reasons = rows.typed, rows.invalid, rows.rejected, rows.reasons


def default_max_rows() -> int:
    """Rows whose per-row state streaming may hold in memory at once when ``RunOptions.max_rows`` is not given: a
    quarter of the available memory at ``ROW_STATE_BYTES`` per row (at least ``MIN_MAX_ROWS``)."""
    return max(MIN_MAX_ROWS, options.available_memory() // 4 // ROW_STATE_BYTES)


def process(inputs: list[Path], output_dir: Path, config: DatasetConfig, *, fmt: str, context: dict[str, Any],
            baseline: Path | None, started: float, options: RunOptions) -> Parts:
    """Run the job in streaming mode; returns ``rows.Parts`` (metrics are assembled by ``pipeline._finish``).

    ``options.work_dir`` holds the temporary work file (default: the output folder's parent, which on SageMaker is
    the job's storage volume); it is removed before returning, also on failure. ``options.max_rows``: per-row state
    held in memory at once (default ``default_max_rows()``); ``options.block_size``: CSV block bytes.
    """
    output_dir = Path(output_dir)
    files: list[_File] = []
    for p in inputs:
        compressed = io.is_gzip(p)
        if p.stat().st_size == 0:
            raise EmptyInputError(f"{p.name}: empty file (0 bytes)")
        header = io._header(p, compressed)
        clean = [n.lstrip("\ufeff").strip() for n in header]
        missing = [c for c in config.required_columns if c not in clean]
        if missing:
            raise MissingColumnsError(f"{p.name}: missing required column(s): {', '.join(missing)}"
                                      f" (found: {', '.join(clean) or 'none'})")
        files.append(_File(p, header, compressed, p.stat().st_size))
    base = Path(options.work_dir or output_dir.resolve().parent)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".processing-work-", dir=base))
    try:
        return _Run(files, output_dir, config, fmt, options.block_size or BLOCK_SIZE, work / "usable.arrow",
                    options.max_rows or default_max_rows()).run(
            context=context, baseline=baseline, started=started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Run:
    """One streaming run: pass A (``_pass_a``), duplicates and fill values, pass B (``_pass_b``)."""

    def __init__(self, files: list[_File], output_dir: Path, config: DatasetConfig, fmt: str, block_size: int,
                 work_file: Path, max_rows: int):
        self.files, self.output_dir, self.config, self.fmt = files, output_dir, config, fmt
        self.block_size, self.work_file, self.max_rows = block_size, work_file, max_rows
        names: list[str] = []
        for f in files:
            names.extend(n for n in (x.lstrip("\ufeff").strip() for x in f.names) if n not in names)
        names.extend(c for c in config.columns if c not in names)
        self.names = names
        self.kinds = {c: config.columns.get(c, "string") for c in names}
        self.numeric = [c for c in names if self.kinds[c] in NUMERIC_TYPES]
        self.key_cols = [c for c in config.duplicate_key_columns if c in names]
        # Duplicate checks that have columns; each gets a signature column in the work file.
        self.checks = {kind: cols for kind, cols in (("exact", names), ("key", self.key_cols)) if cols}
        self.schema = pa.schema([*(pa.field(c, pa.string()) for c in names),
                                 *(pa.field(TYPED + c, _arrow_type(self.kinds[c])) for c in self.numeric),
                                 *(pa.field(INVALID + c, pa.bool_()) for c in self.numeric),
                                 *(pa.field(MARKER + c, pa.string()) for c in names if c not in self.numeric),
                                 pa.field(FILE_IDX, pa.int32()), pa.field(ROW_NO, pa.int64()),
                                 *(pa.field(SIG + kind, pa.uint64()) for kind in self.checks)])
        self.rejects = _Rejects(work_file.parent, names)
        self.n_usable = 0

    def run(self, *, context: dict[str, Any], baseline: Path | None, started: float) -> Parts:
        t0, c0 = time.perf_counter(), time.process_time()
        self._pass_a()
        if not any(f.rows or f.unparsed for f in self.files):
            raise EmptyInputError("no data rows in the input (header only): "
                                  + ", ".join(f.path.name for f in self.files))
        dups = self._duplicates()
        config = self.config
        drop = np.zeros(0, dtype=np.int64)  # usable-row positions of the duplicates dropped (sorted)
        if config.duplicate_drop != "none":
            drop = dups["exact" if config.duplicate_drop == "exact" else "key"][1]
        dropped = len(drop)
        rate = self._sample_rate(self.n_usable - dropped)
        imputation: dict[str, Any] = {}
        for rule in config.imputations:  # one column at a time, read back from the work file
            kind = self.kinds[rule.column]
            name = TYPED + rule.column if rule.column in self.numeric else rule.column
            if rate == 1.0:  # all of it, as the in-memory path computes it
                arr = _read_columns(self.work_file, [name])[name]
                series = transform.to_series(arr, kind)[_kept(drop, 0, len(arr))].reset_index(drop=True)
                del arr
                info = transform.impute_value(series, rule, kind)
                info["filled"] = int(series.isna().sum()) if info["value"] is not None else 0
            else:  # more rows than max_rows: batch by batch (batchstats; a median from a sample if it must)
                info = batchstats.imputation_of(lambda: self._column_batches(name, kind, drop), rule, kind,
                                                self.max_rows, sample_mask)
            imputation[rule.column] = info
        log.info("streaming pass A: %d usable rows in %.2fs (cpu %.2fs)", self.n_usable, time.perf_counter() - t0,
                 time.process_time() - c0)
        _release_unused_memory()  # pass A's blocks and per-row values are gone
        parts = self._pass_b(drop, imputation)
        log.info("streaming done: %d rows in, %d out in %.2fs (cpu %.2fs)", parts["rows_in"], parts["rows_out"],
                 time.perf_counter() - t0, time.process_time() - c0)
        return Parts(
            started=started, context=context, output_dir=self.output_dir, config=config, fmt=self.fmt,
            baseline=baseline, names=self.names, dup_exact=dups["exact"][0], dup_key=dups["key"][0],
            key_cols=self.key_cols, dropped=dropped, imputation=imputation, cleaned=pd.DataFrame(),
            transformed=pd.DataFrame(), mode="streaming", **parts)

    def _sample_rate(self, rows: int) -> float:
        """The share of ``rows`` output rows that the order statistics sample: 1 (every row, statistics exact and
        computed as in memory) while they fit ``max_rows``; above, about ``max_rows`` rows (batchstats)."""
        return min(1.0, self.max_rows / rows) if rows else 1.0

    def _column_batches(self, name: str, kind: str, drop: np.ndarray) -> Iterator[pd.Series]:
        """Work-file column ``name`` batch by batch, without the dropped duplicates (``drop``: sorted usable-row
        positions)."""
        usable = 0
        for batch in _scan(self.work_file, [name]):
            arr = batch.column(name)
            keep = _kept(drop, usable, len(arr))
            usable += len(arr)
            yield transform.to_series(arr, kind)[keep].reset_index(drop=True)

    def _pass_a(self) -> None:
        """Parse, type and reject block by block; write the usable rows and their duplicate signatures to the work
        file (see the module doc)."""
        names, config = self.names, self.config
        # sha256 + UTF-8 check of each file on a thread while pyarrow parses (hashlib and zlib release the GIL).
        with ThreadPoolExecutor(max_workers=1) as digests:
            futures = [digests.submit(io._digest, f.path, check_utf8=True, compressed=f.compressed) for f in self.files]
            try:
                with pa.OSFile(str(self.work_file), "wb") as sink, pa.ipc.new_file(sink, self.schema) as cache:
                    for fi, f in enumerate(self.files):
                        blocks = _open(f, self.block_size)
                        try:
                            for table in blocks:
                                self._block_a(_Block(table, names, config, self.kinds), fi, f, cache)
                                self._flush_unparsed(fi, f)
                        finally:
                            blocks.close()
                        self._flush_unparsed(fi, f)
            except InputError:
                for f, fut in zip(self.files, futures):
                    if not fut.result()[1]:
                        raise self._not_utf8(f) from None
                raise
            for f, fut in zip(self.files, futures):
                f.sha256, utf8_ok = fut.result()
                if not utf8_ok:
                    raise self._not_utf8(f)

    def _flush_unparsed(self, fi: int, f: _File) -> None:
        """Move the unparsable lines found so far (the reader's handler appends them to ``f.parse_errors``, maybe on
        its own thread: only the lines present now are taken) to the rejected rows' work files."""
        n = len(f.parse_errors)
        if n:
            lines = f.parse_errors[:n]
            del f.parse_errors[:n]
            self.rejects.add_unparsed(fi, lines)
            f.unparsed += n

    @staticmethod
    def _not_utf8(f: _File) -> StreamingUnsupported:
        return StreamingUnsupported(f"{f.path.name} is not valid UTF-8: streaming mode needs UTF-8 text "
                                    "(the in-memory path rejects such rows)")

    def _block_a(self, b: _Block, fi: int, f: _File, cache: Any) -> None:
        usable_idx = np.flatnonzero(~b.rejected)
        rej_idx = np.flatnonzero(b.rejected)
        if len(rej_idx):
            self.rejects.add("a", _rejected_part(b.raw, self.names, rej_idx, fi, rej_idx + 1 + f.rows,
                                                 b.reasons[rej_idx]))
        all_usable = len(usable_idx) == b.n
        usable = pa.array(usable_idx)

        def pick(a: pa.Array) -> pa.Array:
            return a if all_usable else a.take(usable)

        typed = {c: pick(b.typed[c]) for c in self.names}
        column_sigs: dict[int, np.ndarray] = {}  # the key check reuses the exact check's column signatures
        sigs = [pa.array(row_signature([typed[c] for c in cols], len(usable_idx), column_sigs), pa.uint64())
                for cols in self.checks.values()]
        markers = []
        for c in self.names:
            if c not in self.numeric:
                raw = pick(b.raw[c])
                hit = pc.and_(pc.is_valid(raw), pc.is_null(typed[c]))
                empty = pa.nulls(len(raw), pa.string())
                # replace_with_mask sizes the text buffer to the replaced cells (if_else would copy the whole column)
                markers.append(pc.replace_with_mask(empty, hit, raw.filter(hit)) if pc.any(hit).as_py() else empty)
        arrays = [*(pick(b.raw[c]) if c in self.numeric else typed[c] for c in self.names),
                  *(typed[c] for c in self.numeric),
                  *(pa.array(b.invalid[c] if all_usable else b.invalid[c][usable_idx]) for c in self.numeric),
                  *markers, pa.array(np.full(len(usable_idx), fi, dtype=np.int32)),
                  pa.array(usable_idx + 1 + f.rows, pa.int64()), *sigs]
        cache.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.n_usable += len(usable_idx)
        f.rows += b.n

    def _typed(self, batch: pa.RecordBatch | pa.Table) -> tuple[dict[str, pa.Array], dict[str, np.ndarray]]:
        """Typed values (as ``_Block`` made them) and invalid-value masks of work-file rows."""
        typed: dict[str, pa.Array] = {}
        invalid: dict[str, np.ndarray] = {}
        for c in self.names:
            if c in self.numeric:
                typed[c] = transform.to_array(batch.column(TYPED + c))
                invalid[c] = transform.to_array(batch.column(INVALID + c)).to_numpy(zero_copy_only=False)
            else:
                typed[c] = transform.to_array(batch.column(c))
        return typed, invalid

    def _raw(self, rows: pa.Table, c: str) -> pa.Array:
        """Work-file rows' input text of column ``c``, as read."""
        if c in self.numeric:
            return transform.to_array(rows.column(c))
        return pc.coalesce(transform.to_array(rows.column(MARKER + c)), transform.to_array(rows.column(c)))

    def _duplicates(self) -> dict[str, tuple[int, np.ndarray]]:
        """``duplicated(keep="first")`` over the usable rows for the exact and the key check: per check the number of
        duplicates and their usable-row positions (sorted int64), not a mask, so memory follows the duplicates.

        Candidates are the rows whose signature (written by pass A) repeats; they are read back from the work file
        and checked exactly with the in-memory algorithm, in row order. Up to ``max_rows`` usable rows this is one
        partition. Above it the rows are split into ``P = ceil(n_usable / max_rows)`` partitions by signature
        (``sig % P``) and handled one at a time, so memory holds the positions and signatures of about ``max_rows``
        rows (plus one partition's candidate rows), not of all rows. Equal rows have equal signatures, hence share a
        partition, and each partition's candidates are checked in row order: the same rows are "first" as with one
        partition. (A signature repeated by more than ``max_rows`` rows, e.g. one key shared by most rows, still
        lands in a single partition with all its rows.)
        """
        result = {kind: (0, np.zeros(0, dtype=np.int64)) for kind in ("exact", "key")}
        if not self.checks or not self.n_usable:
            return result
        n_parts = -(-self.n_usable // self.max_rows)
        found: dict[str, list[np.ndarray]] = {kind: [] for kind in self.checks}
        n_candidates = dict.fromkeys(self.checks, 0)
        for part in range(n_parts):
            candidates: dict[str, np.ndarray] = {}
            signatures = self._partition(part, n_parts)
            for kind in self.checks:
                pos, sig = signatures.pop(kind)  # freed once this check's candidates are known
                repeats = pd.Series(sig, copy=False).duplicated(keep=False).to_numpy()
                candidates[kind] = np.flatnonzero(repeats) if pos is None else pos[repeats]
                del pos, sig, repeats
            union = np.unique(np.concatenate(list(candidates.values())))
            if not len(union):
                continue
            cols = [c for c in self.names if any(c in self.checks[kind] for kind in candidates)]
            rows = self._read_rows(union, [TYPED + c if c in self.numeric else c for c in cols])
            typed = {c: transform.to_array(rows.column(TYPED + c if c in self.numeric else c)) for c in cols}
            del rows
            for kind, idx in candidates.items():
                if len(idx):
                    at = pa.array(np.searchsorted(union, idx))
                    checked = self.checks[kind]
                    ((_, sub),) = transform.duplicate_masks({c: typed[c].take(at) for c in checked}, [checked],
                                                            len(idx))
                    found[kind].append(idx[sub])
                    n_candidates[kind] += len(idx)
            del typed, candidates, union
        for kind, cols in self.checks.items():
            positions = np.sort(np.concatenate(found[kind])) if found[kind] else np.zeros(0, dtype=np.int64)
            result[kind] = (len(positions), positions.astype(np.int64, copy=False))
            log.info("duplicates (%s, %d column(s)): %d partition(s), %d signature candidate(s), %d duplicate(s)",
                     kind, len(cols), n_parts, n_candidates[kind], len(positions))
        return result

    def _partition(self, part: int, n_parts: int) -> dict[str, tuple[np.ndarray | None, np.ndarray]]:
        """Per duplicate check, the usable-row positions (ascending; None when ``n_parts`` is 1: all rows) and the
        signatures of the rows whose signature is in partition ``part`` (``sig % n_parts == part``). Reads only the
        signature columns of the work file, batch by batch (``_scan``)."""
        pos_parts: dict[str, list[np.ndarray]] = {kind: [] for kind in self.checks}
        sig_parts: dict[str, list[np.ndarray]] = {kind: [] for kind in self.checks}
        modulus = np.uint64(n_parts)
        start = 0
        for batch in _scan(self.work_file, [SIG + kind for kind in self.checks]):
            for kind in self.checks:
                sig = batch.column(SIG + kind).to_numpy()
                if n_parts == 1:
                    sig_parts[kind].append(sig)
                else:
                    hit = np.flatnonzero(sig % modulus == part)
                    pos_parts[kind].append(hit + start)
                    sig_parts[kind].append(sig[hit])
            start += batch.num_rows
        out: dict[str, tuple[np.ndarray | None, np.ndarray]] = {}
        for kind in self.checks:
            sig = np.concatenate(sig_parts.pop(kind)) if sig_parts[kind] else np.zeros(0, dtype=np.uint64)
            pos = None if n_parts == 1 else (np.concatenate(pos_parts.pop(kind)) if pos_parts[kind]
                                             else np.zeros(0, dtype=np.int64))
            out[kind] = (pos, sig)
        return out

    def _read_rows(self, idx: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """Work-file rows at usable-row positions ``idx`` (sorted), in that order, with ``columns`` (default: all).
        Batch by batch, each read whole (only ``columns``) and the wanted rows taken: memory is one batch plus the
        rows taken; the batches after the last wanted row are not read."""
        names = [c for c in self.schema.names if columns is None or c in columns]
        parts = []
        pos = 0
        if len(idx):
            for batch in _scan(self.work_file, names):
                a, b = (int(x) for x in np.searchsorted(idx, [pos, pos + batch.num_rows]))
                if a < b:
                    parts.append(pa.Table.from_batches([batch]).take(pa.array(idx[a:b] - pos)))
                pos += batch.num_rows
                if pos > idx[-1]:
                    break
        return (pa.concat_tables(parts).combine_chunks() if parts
                else pa.schema([self.schema.field(c) for c in names]).empty_table())

    def _prepare(self, batches: Iterator[pa.RecordBatch], drop: np.ndarray, file_out: np.ndarray,
                 json_pool: ThreadPoolExecutor) -> Iterator[tuple[Any, ...]]:
        """Pass B's input, batch by batch: duplicates to drop (``drop``: sorted usable-row positions) moved to the
        rejected rows, typed values, and the JSON extraction of columns that imputation does not touch started on
        ``json_pool`` (it runs while the previous batch is cleaned; ``_one_ahead``)."""
        config, names = self.config, self.names
        imputed = {r.column for r in config.imputations}
        usable_pos = 0
        for batch in batches:
            keep = _kept(drop, usable_pos, batch.num_rows)
            usable_pos += batch.num_rows
            if not keep.all():
                d_idx = np.flatnonzero(~keep)
                rows = pa.Table.from_batches([batch]).take(pa.array(d_idx))
                self.rejects.add("b", _rejected_part(
                    {c: self._raw(rows, c) for c in names}, names, np.arange(len(d_idx)),
                    rows.column(FILE_IDX), rows.column(ROW_NO),
                    np.full(len(d_idx), f"duplicate_{config.duplicate_drop}", dtype=object)))
                batch = batch.filter(pa.array(keep))
            file_out += np.bincount(batch.column(FILE_IDX).to_numpy(zero_copy_only=False), minlength=len(self.files))
            typed, invalid = self._typed(batch)
            early = {jc.column: json_pool.submit(jsonx.extract, typed[jc.column], jc.fields)
                     for jc in config.json_columns if jc.column not in imputed}
            yield batch, typed, invalid, early

    def _pass_b(self, drop: np.ndarray, imputation: dict[str, Any]) -> dict[str, Any]:
        """Clean, transform and write the work-file rows batch by batch; sum counts, keep statistics columns."""
        config, names, kinds, output_dir = self.config, self.names, self.kinds, self.output_dir
        for folder in OUTPUT_FOLDERS:
            (output_dir / folder).mkdir(parents=True, exist_ok=True)
        col_metrics = {c: {"type": kinds[c], "declared": c in config.columns, "missing_before": 0, "invalid": 0}
                       for c in names}
        totals: dict[str, Any] = {}  # transform_rows counts, summed over the batches
        group_cols, numeric_cols = summarised_columns(config, names, kinds)
        keep_cols = list(dict.fromkeys([*group_cols, *(c for g in config.group_statistics for c, _ in g.aggregations),
                                        *numeric_cols]))
        drift_cols = [c for c in (*config.drift.numeric, *config.drift.categorical) if c in names]
        # Input columns are kept once, before imputation (drift profiles them so; statistics fill them at the end,
        # elementwise, as the in-memory path does per row); derived columns as transformed.
        pre_cols = [c for c in dict.fromkeys([*drift_cols, *keep_cols]) if c in names]
        derived_keep = [c for c in keep_cols if c not in pre_cols]
        spill = _Spill(self.work_file.with_name("statistics.arrow"))
        file_out = np.zeros(len(self.files), dtype=np.int64)
        last_empty: tuple[pd.DataFrame, pd.DataFrame] | None = None
        writers = _Writers(output_dir, self.fmt)
        json_pool = ThreadPoolExecutor(max_workers=1)
        try:
            with pa.OSFile(str(self.work_file)) as source:
                reader = pa.ipc.open_file(source)
                batches: Iterator[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
                if reader.num_record_batches == 0:  # every row rejected: one empty batch gives the outputs their schema
                    batches = iter([pa.RecordBatch.from_pylist([], schema=self.schema)])
                for batch, typed, invalid, early_json in _one_ahead(self._prepare(batches, drop, file_out,
                                                                                  json_pool)):
                    pre = pd.DataFrame({c: transform.to_series(typed[c], kinds[c]) for c in names})
                    for c in names:
                        inv = int(invalid[c].sum()) if c in invalid else 0
                        col_metrics[c]["missing_before"] += int(pre[c].isna().sum()) - inv
                        col_metrics[c]["invalid"] += inv
                    spill_now = {c: pre[c] for c in pre_cols}
                    cleaned = pre
                    extractions = {c: f.result() for c, f in early_json.items()}
                    transformed, counts = transform_rows(cleaned, config, names, kinds, imputation,
                                                                  extractions)
                    add_counts(totals, counts)
                    for c in derived_keep:
                        spill_now[c] = transformed[c]
                    spill.write(spill_now)
                    if len(pre):
                        writers.write(cleaned, transformed)
                    else:
                        last_empty = (cleaned, transformed)
            if not writers.started and last_empty is not None:
                writers.write(*last_empty)
        finally:
            json_pool.shutdown(wait=True, cancel_futures=True)
            outputs = writers.close()

        # The last batch's frames are still bound to the loop's names: drop them, then give the pages back before
        # the statistics allocate.
        batch = typed = invalid = early_json = pre = cleaned = transformed = extractions = last_empty = None  # noqa: F841
        spill_now = None  # noqa: F841
        spill.close()
        _release_unused_memory()
        rows_in = sum(f.rows + f.unparsed for f in self.files)
        per_file = []
        for fi, f in enumerate(self.files):
            f_in = f.rows + f.unparsed
            per_file.append({"file": f.path.name, "path": str(f.path), "format": "csv.gz" if f.compressed else "csv",
                             "size_bytes": f.size, "sha256": f.sha256, "rows_in": f_in,
                             "rows_out": int(file_out[fi]), "rows_rejected": f_in - int(file_out[fi]),
                             "parse_errors": f.unparsed})
        path, reason_counts, rejected_table = self.rejects.write(output_dir, self.fmt, self.files, self.max_rows)
        outputs["rejected"] = [path]
        for c in names:
            col_metrics[c]["missing_after"] = totals["missing_after"][c]
        json_metrics = json_metrics_of(totals, config)
        derived_metrics = derived_metrics_of(totals, config)
        stats = _Statistics(config, kinds, imputation, spill, group_cols, numeric_cols, drift_cols)
        rows_out = int(file_out.sum())
        rate = self._sample_rate(rows_out)  # the rate the imputation used: same rows, same sample
        if rate == 1.0:
            statistics, group_metrics, numeric, drift_batch = stats.exact()
            sampling = None
        else:
            statistics, group_metrics, numeric, drift_batch, sampling = stats.bounded(rate, rows_out)
            sampling["imputation"] = {c: info["sampled_values"] for c, info in imputation.items()
                                      if "sampled_values" in info}
        outputs["statistics"] = [str(p.relative_to(output_dir)) for p in write_statistics(output_dir, statistics)]
        outputs["quality"] = ["quality/metrics.json"]
        outputs = {k: outputs[k] for k in ("cleaned", "transformed", "rejected", "statistics", "quality")}
        return {"rows_in": rows_in, "rows_out": rows_out, "col_metrics": col_metrics,
                "json_metrics": json_metrics, "rejected_table": rejected_table,
                "reason_counts": reason_counts, "per_file": per_file,
                "derived_metrics": derived_metrics, "group_metrics": group_metrics, "numeric": numeric,
                "outputs": outputs, "drift_batch": drift_batch, "statistics": statistics, "sampling": sampling}


class _Statistics:
    """The end-of-run statistics from the spilled columns (``_Spill``): group statistics, group-column metrics,
    numeric summaries and the drift rows. ``exact`` reads each statistic's columns back whole (the in-memory path's
    functions on the same values); ``bounded`` scans the spill batch by batch (``batchstats``: exact merged
    aggregates, order statistics and drift from a uniform sample), for more rows than ``max_rows``."""

    def __init__(self, config: DatasetConfig, kinds: dict[str, str], imputation: dict[str, Any], spill: _Spill,
                 group_cols: list[str], numeric_cols: list[str], drift_cols: list[str]):
        self.config, self.kinds, self.imputation, self.spill = config, kinds, imputation, spill
        self.group_cols, self.numeric_cols, self.drift_cols = group_cols, numeric_cols, drift_cols

    def _filled(self, frame: dict[str, pd.Series] | pd.DataFrame) -> pd.DataFrame:
        """Spilled columns as the transformed frame has them: input columns filled as the rows were."""
        return pd.DataFrame({c: transform.fill(v, self.imputation[c]["value"], self.kinds[c]) if c in self.imputation
                             else v for c, v in frame.items()}, copy=False)

    def exact(self) -> tuple[dict[str, pd.DataFrame], dict[str, Any], dict[str, Any], pd.DataFrame]:
        # One statistic at a time, each reading only its columns back (memory: those columns, not all of them).
        spill = self.spill
        statistics = {g.name: transform.group_statistics(self._filled(spill.read(_spec_columns(g))), g)
                      for g in self.config.group_statistics}
        group_metrics = {c: group_column_metrics(self._filled(spill.read([c]))[c]) for c in self.group_cols}
        numeric = {c: transform.numeric_summary(self._filled(spill.read([c]))[c]) for c in self.numeric_cols}
        drift_batch = pd.DataFrame(spill.read(self.drift_cols), copy=False)  # before imputation, as profiled in memory
        return statistics, group_metrics, numeric, drift_batch

    def bounded(self, rate: float, rows: int) -> tuple[dict[str, pd.DataFrame], dict[str, Any], dict[str, Any],
                                                       pd.DataFrame, dict[str, Any]]:
        config = self.config
        groups = {g.name: batchstats.GroupStats(g) for g in config.group_statistics}
        summaries = {c: batchstats.Summary() for c in self.numeric_cols}
        distinct: dict[str, set[Any]] = {c: set() for c in self.group_cols}
        missing = dict.fromkeys(self.group_cols, 0)
        median_cols = [c for g in groups.values() for c in g.medians]
        sample_cols = list(dict.fromkeys([*self.drift_cols, *self.group_cols, *median_cols]))
        names = list(dict.fromkeys([*sample_cols, *self.numeric_cols,
                                    *(c for g in config.group_statistics for c, _ in g.aggregations)]))
        sample_parts, start = [], 0
        for raw in self.spill.batches(names):
            frame = self._filled(raw)
            for g in config.group_statistics:
                groups[g.name].add(frame[_spec_columns(g)])
            for c in self.group_cols:
                distinct[c].update(frame[c].dropna().unique().tolist())
                missing[c] += int(frame[c].isna().sum())
            for c, summary in summaries.items():
                summary.add(frame[c])
            picked = sample_mask(start, len(raw), rate)
            start += len(raw)
            sample_parts.append(raw.loc[picked, sample_cols].reset_index(drop=True).copy())
        sample = pd.concat(sample_parts, ignore_index=True) if sample_parts else pd.DataFrame(columns=sample_cols)
        del sample_parts
        filled = self._filled(sample)
        statistics = {name: g.result(filled) for name, g in groups.items()}
        group_metrics = {c: {"distinct": len(distinct[c]), "missing": missing[c]} for c in self.group_cols}
        numeric = {c: s.result() for c, s in summaries.items()}
        sampling = {"rows": rows, "sample_rows": len(sample), "rate": rate, "delta": batchstats.DELTA,
                    "rank_error": batchstats.rank_error(len(sample)),
                    "groups": {name: g.sample_sizes(filled) for name, g in groups.items()}}
        log.info("statistics over %d rows: exact aggregates, order statistics and drift from a sample of %d rows "
                 "(rank error <= %.4f with probability %.6f)", rows, len(sample), sampling["rank_error"] or 0,
                 1 - batchstats.DELTA)
        return statistics, group_metrics, numeric, sample[self.drift_cols], sampling


def _spec_columns(spec: Any) -> list[str]:
    """The columns a ``group_statistics`` spec reads: its keys, then its aggregated columns."""
    return list(dict.fromkeys([*spec.group_by, *(c for c, _ in spec.aggregations)]))


def sample_mask(start: int, n: int, rate: float) -> np.ndarray:
    """Rows ``start .. start + n - 1`` of a uniform Bernoulli sample at ``rate``, chosen by a hash of the row's
    position (so the same input gives the same sample)."""
    if rate >= 1:
        return np.ones(n, dtype=bool)
    with np.errstate(over="ignore"):
        h = _mix(np.arange(start, start + n, dtype=np.uint64) * _GOLDEN)
    return h < np.uint64(min(int(rate * 2.0**64), 2**64 - 1))


def _scan(path: Path, names: list[str]) -> Iterator[pa.RecordBatch]:
    """Columns ``names`` of an Arrow IPC file, batch by batch, reading only their bytes. Not memory-mapped: mapped
    pages that were touched count in the process's RSS until the map is closed, so a scan would grow it by the
    columns' size; read into buffers, each batch is freed when the next one is read."""
    with pa.OSFile(str(path)) as source:
        schema = pa.ipc.open_file(source).schema
        fields = [schema.get_field_index(c) for c in names]
        reader = pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(included_fields=fields))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _read_columns(path: Path, names: list[str]) -> dict[str, pa.Array]:
    """Columns of an Arrow IPC file, every batch, concatenated (a copy: the batches are freed)."""
    parts: dict[str, list[pa.Array]] = {c: [] for c in names}
    for batch in _scan(path, names):
        for c in names:
            parts[c].append(batch.column(c))
    with pa.OSFile(str(path)) as source:
        schema = pa.ipc.open_file(source).schema
    return {c: pa.concat_arrays(parts[c]) if parts[c] else pa.array([], schema.field(c).type) for c in names}


class _Spill:
    """The per-row columns the statistics need, appended batch by batch to an Arrow IPC file in the work folder
    instead of being kept in memory; read back whole column by column (``read``) or batch by batch (``batches``),
    with their pandas dtypes. Categorical columns are stored as their codes (an IPC file cannot change a dictionary
    between batches)."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: Any = None
        self.sink: Any = None
        self.schema: pa.Schema | None = None
        self.dtypes: dict[str, Any] = {}

    def write(self, columns: dict[str, pd.Series]) -> None:
        if not columns:
            return
        arrays = {c: pa.array(s.cat.codes.to_numpy()) if isinstance(s.dtype, pd.CategoricalDtype)
                  else pa.Array.from_pandas(s) for c, s in columns.items()}
        if self.schema is None:
            self.dtypes = {c: s.dtype for c, s in columns.items()}
            self.schema = pa.schema([pa.field(c, a.type) for c, a in arrays.items()])
            self.sink = pa.OSFile(str(self.path), "wb")
            self.writer = pa.ipc.new_file(self.sink, self.schema)
        batch = [a if a.type == f.type else a.cast(f.type) for a, f in zip(arrays.values(), self.schema)]
        self.writer.write_batch(pa.RecordBatch.from_arrays(batch, schema=self.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()
            self.writer = None

    def read(self, names: list[str]) -> dict[str, pd.Series]:
        """``names`` as pandas Series with the dtypes they were written with."""
        if not names:
            return {}
        return {c: self._series(c, arr) for c, arr in _read_columns(self.path, names).items()}

    def batches(self, names: list[str]) -> Iterator[pd.DataFrame]:
        """``names``, one frame per written batch (only their bytes are read; ``_scan``)."""
        if self.schema is None or not names:
            return
        for batch in _scan(self.path, names):
            yield pd.DataFrame({c: self._series(c, batch.column(c)) for c in names}, copy=False)

    def _series(self, c: str, arr: pa.Array) -> pd.Series:
        dtype = self.dtypes[c]
        if isinstance(dtype, pd.CategoricalDtype):
            return pd.Series(pd.Categorical.from_codes(arr.to_numpy(zero_copy_only=False), dtype=dtype))
        if isinstance(dtype, pd.StringDtype):
            return pd.Series(pd.array(arr, dtype=dtype))
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            return pd.Series(arr.to_pandas(types_mapper={arr.type: dtype}.get), dtype=dtype)
        return pd.Series(arr.to_numpy(zero_copy_only=False), dtype=dtype)


def _rejected_part(raw: dict[str, Any], names: list[str], idx: np.ndarray, file_idx: Any, rows: Any,
                   reasons: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    take = pa.array(idx, pa.int64())
    n = len(idx)
    if isinstance(file_idx, int):
        file_idx = pa.array(np.full(n, file_idx, dtype=np.int32))
    cols = {FILE_COL: transform.to_array(file_idx).cast(pa.int32()),
            ROW_COL: transform.to_array(pa.array(rows, pa.int64()) if isinstance(rows, np.ndarray) else rows)}
    cols.update({c: transform.to_array(raw[c]).take(take) for c in names})
    return pa.table(cols), reasons

def _kept(drop: np.ndarray, start: int, n: int) -> np.ndarray:
    """Which of the usable rows ``start .. start + n - 1`` stay: not in ``drop`` (sorted usable-row positions)."""
    keep = np.ones(n, dtype=bool)
    lo, hi = np.searchsorted(drop, [start, start + n])
    keep[drop[lo:hi] - start] = False
    return keep


def _arrow_type(kind: str) -> pa.DataType:
    return {"integer": pa.int64(), "float": pa.float64()}.get(kind, pa.string())


def _release_unused_memory() -> None:
    """Return freed memory to the OS (Arrow's pool and glibc's heap keep it for reuse otherwise), so peak RSS is
    what is live, not what was once used."""
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _one_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """Yield each item once the next one has been produced (so work the producer starts overlaps the consumer's)."""
    previous = None
    for i, item in enumerate(items):
        if i:
            yield previous
        previous = item
    if previous is not None:
        yield previous


class _Rejects:
    """Rejected rows on their way to rejected/, held on disk: appended as they are found to work files (run ``a``:
    the rejection rules of pass A; run ``b``: the duplicates pass B drops; run ``p``: the lines that could not be
    parsed; each in input order), then written in the in-memory path's order (a file's rows by number, then its
    unparsable lines; see ``write``), merging runs ``a`` and ``b`` batch by batch. Memory: a batch of each run, plus
    the rows kept for ``Result.rejected`` while there are at most ``keep_rows`` of them."""

    REASON = "__reason"

    def __init__(self, folder: Path, names: list[str]):
        self.names = names
        self.schema = pa.schema([pa.field(FILE_COL, pa.int32()), pa.field(ROW_COL, pa.int64()),
                                 *(pa.field(c, pa.string()) for c in names), pa.field(self.REASON, pa.string())])
        self.schemas = {"a": self.schema, "b": self.schema,
                         "p": pa.schema([pa.field(FILE_COL, pa.int32()),
                                         pa.field(RAW_LINE_COL, pa.string())])}
        self.paths = {run: folder / f"rejected-{run}.arrow" for run in self.schemas}
        self.sinks: dict[str, Any] = {}
        self.writers: dict[str, Any] = {}
        self.rows = 0

    def add(self, run: str, part: tuple[pa.Table, np.ndarray]) -> None:
        """Rejected parsed rows (``_rejected_part``) to run ``a`` or ``b``."""
        table, reasons = part
        self._append(run, table.append_column(self.REASON, pa.array(list(reasons), pa.string())))

    def add_unparsed(self, fi: int, lines: list[str]) -> None:
        self._append("p", pa.table({FILE_COL: pa.array(np.full(len(lines), fi, dtype=np.int32)),
                                    RAW_LINE_COL: pa.array(lines, pa.string())}))

    def _append(self, run: str, table: pa.Table) -> None:
        if run not in self.writers:
            self.sinks[run] = pa.OSFile(str(self.paths[run]), "wb")
            self.writers[run] = pa.ipc.new_file(self.sinks[run], self.schemas[run])
        self.writers[run].write_table(table.cast(self.schemas[run]))
        self.rows += table.num_rows

    def write(self, output_dir: Path, fmt: str, files: list[_File], keep_rows: int
              ) -> tuple[str, dict[str, int], pa.Table | None]:
        """Write rejected/; returns its path (relative to ``output_dir``), the rows per reason and the rejected
        table (None when more than ``keep_rows`` rows were rejected)."""
        for run in list(self.writers):
            self.writers.pop(run).close()
            self.sinks.pop(run).close()
        names, file_names = self.names, [f.path.name for f in files]
        keep = self.rows <= keep_rows
        kept: list[pa.Table] = []
        counts: dict[str, int] = {}
        out = io.TableWriter(output_dir / "rejected", "rejected", fmt)
        try:
            def emit(table: pa.Table) -> None:
                nonlocal counts
                counts = count_reasons(table, counts)
                out.write(table)
                if keep:
                    kept.append(table)

            # The in-memory order (memory._rejected_table): files in input order, or, when some lines could not be
            # parsed, files by name (a stable sort), each name's parsed rows before its unparsable lines.
            if any(f.unparsed for f in files):
                groups = [[i for i, n in enumerate(file_names) if n == name] for name in sorted(set(file_names))]
            else:
                groups = [[i] for i in range(len(files))]
            for group in groups:
                for fi in group:
                    runs = [self._rows_of(run, fi) for run in "ab" if self.paths[run].exists()]
                    for part in _merge_by_row(runs, ROW_COL):
                        emit(rejected_rows(part, part.column(self.REASON).to_pylist(), names, file_names))
                for fi in group:
                    if files[fi].unparsed:
                        for part in self._rows_of("p", fi):
                            emit(unparsed_rows(file_names[fi], part.column(RAW_LINE_COL).to_pylist(),
                                                        names))
            if out.writer is None:  # nothing rejected: an empty file with the columns
                empty = rejected_rows(self.schema.empty_table(), [], names, file_names)
                out.write(empty)
                kept.append(empty)
        finally:
            path = out.close()
        table = (pa.concat_tables(kept).combine_chunks() if kept else None) if keep else None
        return str(path.relative_to(output_dir)), counts, table

    def _rows_of(self, run: str, fi: int) -> Iterator[pa.Table]:
        """Run ``run``'s rows of file ``fi``, batch by batch (in row order)."""
        for batch in _scan(self.paths[run], self.schemas[run].names):
            table = pa.Table.from_batches([batch])
            mask = pc.equal(table.column(FILE_COL), fi)
            if pc.any(mask).as_py():
                yield table.filter(mask)


def _merge_by_row(streams: list[Iterator[pa.Table]], key: str) -> Iterator[pa.Table]:
    """Tables from ``streams``, each stream sorted by ``key`` (keys distinct across streams), merged into ``key``
    order a part at a time: each step emits every buffered row up to the smallest last key of the streams that may
    still yield rows."""
    buffers: list[pa.Table | None] = [None] * len(streams)
    done = [False] * len(streams)
    while True:
        for i, stream in enumerate(streams):
            while not done[i] and (buffers[i] is None or buffers[i].num_rows == 0):
                buffers[i] = next(stream, None)
                done[i] = buffers[i] is None
        live = [i for i, b in enumerate(buffers) if b is not None and b.num_rows]
        if not live:
            return
        open_ends = [buffers[i].column(key)[-1].as_py() for i in live if not done[i]]
        bound = min(open_ends) if open_ends else None
        parts = []
        for i in live:
            table = buffers[i]
            cut = table.num_rows if bound is None else int(np.searchsorted(table.column(key).to_numpy(), bound,
                                                                           side="right"))
            parts.append(table.slice(0, cut))
            buffers[i] = table.slice(cut)
        merged = pa.concat_tables(parts)
        yield merged.take(pc.sort_indices(merged, sort_keys=[(key, "ascending")]))


class _Writers:
    """Append block frames to cleaned/ and transformed/ (Parquet or CSV), one file each, on a writer thread (the
    Parquet/CSV writers release the GIL, so writing overlaps the next block's work); at most
    ``WRITES_IN_FLIGHT`` blocks wait for it."""

    def __init__(self, output_dir: Path, fmt: str):
        self.output_dir, self.fmt = output_dir, fmt
        self.writers = {stem: io.TableWriter(output_dir / stem, stem, fmt) for stem in ("cleaned", "transformed")}
        self.started = False
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: deque[Future[None]] = deque()

    def write(self, cleaned: pd.DataFrame, transformed: pd.DataFrame) -> None:
        self.started = True
        while len(self.pending) >= WRITES_IN_FLIGHT:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, cleaned, transformed))

    def _write(self, cleaned: pd.DataFrame, transformed: pd.DataFrame) -> None:
        for stem, frame in (("cleaned", cleaned), ("transformed", transformed)):
            self.writers[stem].write(to_arrow(frame))

    def close(self) -> dict[str, list[str]]:
        """Wait for the queued blocks (re-raising a write error) and close the files."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)
            for w in self.writers.values():
                w.close()
        return {stem: [f"{stem}/{stem}.{self.fmt}"] for stem in ("cleaned", "transformed")}
