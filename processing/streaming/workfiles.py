"""The streaming path's files: Arrow IPC work files read back column by column (``scan``, ``read_columns``), the
statistics columns (``Spill``), the rejected rows on their way to rejected/ (``Rejects``) and the writers of
cleaned/ and transformed/ (``Writers``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing import io, transform
from processing.rows import FILE_COL, RAW_LINE_COL, ROW_COL, count_reasons, rejected_rows, to_arrow, unparsed_rows
from processing.streaming.reader import SourceFile

WRITES_IN_FLIGHT = 2  # output blocks queued for the writer thread


def scan(path: Path, names: list[str]) -> Iterator[pa.RecordBatch]:
    """Columns ``names`` of an Arrow IPC file, batch by batch, reading only their bytes. Not memory-mapped: mapped
    pages that were touched count in the process's RSS until the map is closed, so a scan would grow it by the
    columns' size; read into buffers, each batch is freed when the next one is read."""
    with pa.OSFile(str(path)) as source:
        schema = pa.ipc.open_file(source).schema
        fields = [schema.get_field_index(c) for c in names]
        reader = pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(included_fields=fields))
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def read_columns(path: Path, names: list[str]) -> dict[str, pa.Array]:
    """Columns of an Arrow IPC file, every batch, concatenated (a copy: the batches are freed)."""
    parts: dict[str, list[pa.Array]] = {c: [] for c in names}
    for batch in scan(path, names):
        for c in names:
            parts[c].append(batch.column(c))
    with pa.OSFile(str(path)) as source:
        schema = pa.ipc.open_file(source).schema
    return {c: pa.concat_arrays(parts[c]) if parts[c] else pa.array([], schema.field(c).type) for c in names}


class Spill:
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
        batch = [a if a.type == f.type else a.cast(f.type) for a, f in zip(arrays.values(), self.schema, strict=True)]
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
        return {c: self._series(c, arr) for c, arr in read_columns(self.path, names).items()}

    def batches(self, names: list[str]) -> Iterator[pd.DataFrame]:
        """``names``, one frame per written batch (only their bytes are read; ``scan``)."""
        if self.schema is None or not names:
            return
        for batch in scan(self.path, names):
            yield pd.DataFrame({c: self._series(c, batch.column(c)) for c in names}, copy=False)

    def _series(self, c: str, arr: pa.Array) -> pd.Series:
        dtype = self.dtypes[c]
        if isinstance(dtype, pd.CategoricalDtype):
            return pd.Series(pd.Categorical.from_codes(arr.to_numpy(zero_copy_only=False), dtype=dtype))
        if isinstance(dtype, pd.StringDtype):
            return pd.Series(pd.array(arr, dtype=dtype))
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            return pd.Series(arr.to_pandas(types_mapper={arr.type: dtype}.get), dtype=dtype)
        series: pd.Series = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=dtype)
        return series


def rejected_part(raw: dict[str, Any], names: list[str], idx: npt.NDArray[Any], file_idx: Any, rows: Any,
                   reasons: npt.NDArray[Any]) -> tuple[pa.Table, npt.NDArray[Any]]:
    take = pa.array(idx, pa.int64())
    n = len(idx)
    if isinstance(file_idx, int):
        file_idx = pa.array(np.full(n, file_idx, dtype=np.int32))
    cols = {FILE_COL: transform.to_array(file_idx).cast(pa.int32()),
            ROW_COL: transform.to_array(pa.array(rows, pa.int64()) if isinstance(rows, np.ndarray) else rows)}
    cols.update({c: transform.to_array(raw[c]).take(take) for c in names})
    return pa.table(cols), reasons


class Rejects:
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

    def add(self, run: str, part: tuple[pa.Table, npt.NDArray[Any]]) -> None:
        """Rejected parsed rows (``rejected_part``) to run ``a`` or ``b``."""
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

    def write(self, output_dir: Path, fmt: str, files: list[SourceFile], keep_rows: int
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
                    for part in merge_by_row(runs, ROW_COL):
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
        for batch in scan(self.paths[run], self.schemas[run].names):
            table = pa.Table.from_batches([batch])
            mask = pc.equal(table.column(FILE_COL), fi)
            if pc.any(mask).as_py():
                yield table.filter(mask)


def merge_by_row(streams: list[Iterator[pa.Table]], key: str) -> Iterator[pa.Table]:
    """Tables from ``streams``, each stream sorted by ``key`` (keys distinct across streams), merged into ``key``
    order a part at a time: each step emits every buffered row up to the smallest last key of the streams that may
    still yield rows."""
    buffers: list[Any] = [None] * len(streams)  # pa.Table or None (pyarrow is untyped: mypy cannot narrow)
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


class Writers:
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
