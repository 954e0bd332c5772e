"""One streaming run: the job's checks of the inputs (``process``), pass A (parse, type, reject, work file), the
duplicates and fill values between the passes, pass B (clean, transform, write). See the package docstring."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract import CLEANED, METRICS_FILE, OUTPUT_FOLDERS, QUALITY, REJECTED, STATISTICS, TRANSFORMED
from processing import batchstats, io, jsonx, options, rawfile, rules, transform, typecast
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.errors import EmptyInputError, InputError, MissingColumnsError, ProcessingError
from processing.options import RunOptions
from processing.rows import (
    Parts,
    add_counts,
    derived_metrics_of,
    json_metrics_of,
    reject_reasons,
    summarised_columns,
    transform_rows,
    type_and_reject,
    write_statistics,
)
from processing.streaming import binedges
from processing.streaming.reader import SourceFile, open_blocks
from processing.streaming.signature import row_signature, sample_mask
from processing.streaming.statistics import Statistics
from processing.streaming.workfiles import Rejects, Spill, Writers, read_columns, rejected_part, scan
from processing.types import NEW_TYPES

log = logging.getLogger("processing")

BLOCK_SIZE = 6 << 20

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


class _Block:
    """One block through the row-level steps shared with the in-memory path (same functions, same order)."""

    def __init__(self, table: pa.Table, names: list[str], config: DatasetConfig, kinds: dict[str, str],
                 tally: rules.Tally | None = None):
        n = table.num_rows
        self.n = n
        self.raw = {c: (transform.to_array(table.column(c)) if c in table.column_names
                        else pa.nulls(n, pa.string())) for c in names}
        rows = type_and_reject(self.raw.__getitem__, n, names, kinds, config)
        self.typed, self.invalid, self.rejected, self.reasons = rows.typed, rows.invalid, rows.rejected, rows.reasons
        if tally is not None:  # the row-local rules (processing/rules.py), as the in-memory path runs them
            self.rejected, self.reasons = rules.check_block(self.typed, kinds, self.rejected, self.reasons, config,
                                                            tally)


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
    files: list[SourceFile] = []
    for p in inputs:
        compressed = io.is_gzip(p)
        if p.stat().st_size == 0:
            raise EmptyInputError(f"{p.name}: empty file (0 bytes)")
        header = rawfile.read_header(p, compressed)
        clean = [n.lstrip("\ufeff").strip() for n in header]
        missing = [c for c in config.required_columns if c not in clean]
        if missing:
            raise MissingColumnsError(f"{p.name}: missing required column(s): {', '.join(missing)}"
                                      f" (found: {', '.join(clean) or 'none'})")
        files.append(SourceFile(p, header, compressed, p.stat().st_size))
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

    def __init__(self, files: list[SourceFile], output_dir: Path, config: DatasetConfig, fmt: str, block_size: int,
                 work_file: Path, max_rows: int):
        self.files, self.output_dir, self.config, self.fmt = files, output_dir, config, fmt
        self.block_size, self.work_file, self.max_rows = block_size, work_file, max_rows
        names: list[str] = []
        for f in files:
            names.extend(n for n in (x.lstrip("\ufeff").strip() for x in f.names) if n not in names)
        names.extend(c for c in config.columns if c not in names)
        self.names = names
        self.kinds = {c: config.columns.get(c, "string") for c in names}
        self.numeric = [c for c in names if self.kinds[c] in (*NUMERIC_TYPES, *NEW_TYPES)]  # parsed from text
        self.key_cols = [c for c in config.duplicate_key_columns if c in names]
        # Duplicate checks that have columns; each gets a signature column in the work file.
        self.checks = {kind: cols for kind, cols in (("exact", names), ("key", self.key_cols)) if cols}
        # unique rules reuse the duplicate machinery: one signature check each, run before the duplicate checks
        self.unique = {rules.REASON_PREFIX + r.name: r for r in rules.unique_rules(config)}
        self.checks.update({kind: list(r.columns) for kind, r in self.unique.items()})
        self.tally = rules.Tally(config.rules)
        self.drop_reasons = np.zeros(0, dtype=object)  # the reason of each dropped usable row (``run``)
        self.schema = pa.schema([*(pa.field(c, pa.string()) for c in names),
                                 *(pa.field(TYPED + c, _arrow_type(self.kinds[c])) for c in self.numeric),
                                 *(pa.field(INVALID + c, pa.bool_()) for c in self.numeric),
                                 *(pa.field(MARKER + c, pa.string()) for c in names if c not in self.numeric),
                                 pa.field(FILE_IDX, pa.int32()), pa.field(ROW_NO, pa.int64()),
                                 *(pa.field(SIG + kind, pa.uint64()) for kind in self.checks)])
        self.rejects = Rejects(work_file.parent, names)
        self.n_usable = 0
        self.bin_edges: dict[str, list[float]] = {}  # quantile bins' edges (binedges.py)
        self.bin_sampling: dict[str, Any] | None = None

    def run(self, *, context: dict[str, Any], baseline: Path | None, started: float) -> Parts:
        t0, c0 = time.perf_counter(), time.process_time()
        self._pass_a()
        if not any(f.rows or f.unparsed for f in self.files):
            raise EmptyInputError("no data rows in the input (header only): "
                                  + ", ".join(f.path.name for f in self.files))
        config = self.config
        by_rules, rule_reasons = self._unique_rules()  # usable-row positions rejected by unique rules (sorted)
        dups = self._duplicates(["exact", "key"], exclude=by_rules if len(by_rules) else None)
        dup_drop = np.zeros(0, dtype=np.int64)  # usable-row positions of the duplicates dropped (sorted)
        if config.duplicate_drop != "none":
            dup_drop = dups["exact" if config.duplicate_drop == "exact" else "key"][1]
        dropped = len(dup_drop)
        # every usable row that does not reach the outputs, with its reason (the two sets are disjoint)
        drop = np.concatenate([by_rules, dup_drop]).astype(np.int64)
        why = np.concatenate([rule_reasons, np.full(dropped, f"duplicate_{config.duplicate_drop}", dtype=object)])
        order = np.argsort(drop, kind="stable")
        drop, self.drop_reasons = drop[order], why[order]
        rate = self._sample_rate(self.n_usable - len(drop))
        imputation: dict[str, Any] = {}
        for rule in config.imputations:  # one column at a time, read back from the work file
            kind = self.kinds[rule.column]
            name = TYPED + rule.column if rule.column in self.numeric else rule.column
            if rate == 1.0:  # all of it, as the in-memory path computes it
                arr = read_columns(self.work_file, [name])[name]
                series = transform.to_series(arr, kind)[_kept(drop, 0, len(arr))].reset_index(drop=True)
                del arr
                info = transform.impute_value(series, rule, kind)
                info["filled"] = int(series.isna().sum()) if info["value"] is not None else 0
            else:  # more rows than max_rows: batch by batch (batchstats; a median from a sample if it must)
                info = batchstats.imputation_of(functools.partial(self._column_batches, name, kind, drop), rule, kind,
                                                self.max_rows, sample_mask)
            imputation[rule.column] = info
        log.info("streaming pass A: %d usable rows in %.2fs (cpu %.2fs)", self.n_usable, time.perf_counter() - t0,
                 time.process_time() - c0)
        if binedges.quantile_bins(config):  # quantile bins need their edges before pass B writes (binedges.py)
            self.bin_edges, self.bin_sampling = binedges.compute(
                self._frames(drop), config, self.names, self.kinds, imputation, rate)
        _release_unused_memory()  # pass A's blocks and per-row values are gone
        parts = self._pass_b(drop, imputation)
        log.info("streaming done: %d rows in, %d out in %.2fs (cpu %.2fs)", parts["rows_in"], parts["rows_out"],
                 time.perf_counter() - t0, time.process_time() - c0)
        return Parts(
            started=started, context=context, output_dir=self.output_dir, config=config, fmt=self.fmt,
            baseline=baseline, names=self.names, dup_exact=dups["exact"][0], dup_key=dups["key"][0],
            key_cols=self.key_cols, dropped=dropped, imputation=imputation, cleaned=pd.DataFrame(),
            transformed=pd.DataFrame(), mode="streaming", rule_tally=self.tally, **parts)

    def _unique_rules(self) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """The ``unique`` rules over the usable rows (duplicate signatures, ``_duplicates``): counts and examples
        into the tally; returns the usable-row positions the ``reject`` ones reject (sorted) and their reasons."""
        if not self.unique:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
        found = self._duplicates(list(self.unique))
        rejecting: list[tuple[npt.NDArray[Any], str]] = []
        for kind, rule in self.unique.items():
            count, pos = found[kind]
            self.tally.add(rule.name, self.n_usable, count, self._unique_examples(pos, rule))
            if rule.action == "reject" and count:
                rejecting.append((pos, kind))
        if not rejecting:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
        positions = np.unique(np.concatenate([pos for pos, _ in rejecting]))
        masks = [(np.isin(positions, pos), why) for pos, why in rejecting]
        _, reasons = reject_reasons(len(positions), masks)
        self.tally.rejected_rows += len(positions)
        return positions.astype(np.int64), reasons

    def _unique_examples(self, pos: npt.NDArray[Any], rule: Any) -> list[str]:
        """The first distinct keys among the violating rows ``pos`` (sorted), read back in chunks until enough."""
        examples: list[str] = []
        names = [TYPED + c if c in self.numeric else c for c in rule.columns]
        for start in range(0, len(pos), 256):
            rows = self._read_rows(pos[start:start + 256], names)
            cols = {c: transform.to_array(rows.column(n)) for c, n in zip(rule.columns, names, strict=True)}
            for e in rules.first_distinct(rules.row_texts(cols, rule.columns, False)):
                if e not in examples:
                    examples.append(e)
            if len(examples) >= rules.EXAMPLES:
                break
        return examples[:rules.EXAMPLES]

    def _sample_rate(self, rows: int) -> float:
        """The share of ``rows`` output rows that the order statistics sample: 1 (every row, statistics exact and
        computed as in memory) while they fit ``max_rows``; above, about ``max_rows`` rows (batchstats)."""
        return min(1.0, self.max_rows / rows) if rows else 1.0

    def _column_batches(self, name: str, kind: str, drop: npt.NDArray[Any]) -> Iterator[pd.Series]:
        """Work-file column ``name`` batch by batch, without the dropped duplicates (``drop``: sorted usable-row
        positions)."""
        usable = 0
        for batch in scan(self.work_file, [name]):
            arr = batch.column(name)
            keep = _kept(drop, usable, len(arr))
            usable += len(arr)
            yield transform.to_series(arr, kind)[keep].reset_index(drop=True)

    def _frames(self, drop: npt.NDArray[Any]) -> Iterator[pd.DataFrame]:
        """The output rows' typed input columns (before imputation), batch by batch, as pass B builds them."""
        usable = 0
        for batch in scan(self.work_file, self.schema.names):
            keep = _kept(drop, usable, batch.num_rows)
            usable += batch.num_rows
            typed, _ = self._typed(batch.filter(pa.array(keep)) if not keep.all() else batch)
            yield pd.DataFrame({c: transform.to_series(typed[c], self.kinds[c]) for c in self.names})

    def _pass_a(self) -> None:
        """Parse, type and reject block by block; write the usable rows and their duplicate signatures to the work
        file (see the module doc)."""
        names, config = self.names, self.config
        # sha256 + UTF-8 check of each file on a thread while pyarrow parses (hashlib and zlib release the GIL).
        with ThreadPoolExecutor(max_workers=1) as digests:
            futures = [digests.submit(rawfile.file_digest, f.path, check_utf8=True, compressed=f.compressed)
                       for f in self.files]
            try:
                with pa.OSFile(str(self.work_file), "wb") as sink, pa.ipc.new_file(sink, self.schema) as cache:
                    for fi, f in enumerate(self.files):
                        blocks = open_blocks(f, self.block_size)
                        try:
                            for table in blocks:
                                self._block_a(_Block(table, names, config, self.kinds, self.tally), fi, f, cache)
                                self._flush_unparsed(fi, f)
                        finally:
                            blocks.close()
                        self._flush_unparsed(fi, f)
            except InputError:
                for f, fut in zip(self.files, futures, strict=True):
                    if not fut.result()[1]:
                        raise self._not_utf8(f) from None
                raise
            for f, fut in zip(self.files, futures, strict=True):
                f.sha256, utf8_ok = fut.result()
                if not utf8_ok:
                    raise self._not_utf8(f)

    def _flush_unparsed(self, fi: int, f: SourceFile) -> None:
        """Move the unparsable lines found so far (the reader's handler appends them to ``f.parse_errors``, maybe on
        its own thread: only the lines present now are taken) to the rejected rows' work files."""
        n = len(f.parse_errors)
        if n:
            lines = f.parse_errors[:n]
            del f.parse_errors[:n]
            self.rejects.add_unparsed(fi, lines)
            f.unparsed += n

    @staticmethod
    def _not_utf8(f: SourceFile) -> StreamingUnsupported:
        return StreamingUnsupported(f"{f.path.name} is not valid UTF-8: streaming mode needs UTF-8 text "
                                    "(the in-memory path rejects such rows)")

    def _block_a(self, b: _Block, fi: int, f: SourceFile, cache: Any) -> None:
        usable_idx = np.flatnonzero(~b.rejected)
        rej_idx = np.flatnonzero(b.rejected)
        if len(rej_idx):
            self.rejects.add("a", rejected_part(b.raw, self.names, rej_idx, fi, rej_idx + 1 + f.rows,
                                                 b.reasons[rej_idx]))
        all_usable = len(usable_idx) == b.n
        usable = pa.array(usable_idx)

        def pick(a: pa.Array) -> pa.Array:
            return a if all_usable else a.take(usable)

        typed = {c: pick(b.typed[c]) for c in self.names}
        column_sigs: dict[int, npt.NDArray[Any]] = {}  # the key check reuses the exact check's column signatures
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

    def _typed(self, batch: pa.RecordBatch | pa.Table) -> tuple[dict[str, pa.Array], dict[str, npt.NDArray[Any]]]:
        """Typed values (as ``_Block`` made them) and invalid-value masks of work-file rows."""
        typed: dict[str, pa.Array] = {}
        invalid: dict[str, npt.NDArray[Any]] = {}
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

    def _duplicates(self, kinds: list[str],
                    exclude: npt.NDArray[Any] | None = None) -> dict[str, tuple[int, npt.NDArray[Any]]]:
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
        result = {kind: (0, np.zeros(0, dtype=np.int64)) for kind in kinds}
        checks = {kind: self.checks[kind] for kind in kinds if kind in self.checks}
        if not checks or not self.n_usable:
            return result
        n_parts = -(-self.n_usable // self.max_rows)
        found: dict[str, list[npt.NDArray[Any]]] = {kind: [] for kind in checks}
        n_candidates = dict.fromkeys(checks, 0)
        for part in range(n_parts):
            candidates: dict[str, npt.NDArray[Any]] = {}
            signatures = self._partition(part, n_parts, checks, exclude)
            for kind in checks:
                pos, sig = signatures.pop(kind)  # freed once this check's candidates are known
                repeats = pd.Series(sig, copy=False).duplicated(keep=False).to_numpy()
                candidates[kind] = np.flatnonzero(repeats) if pos is None else pos[repeats]
                del pos, sig, repeats
            union = np.unique(np.concatenate(list(candidates.values())))
            if not len(union):
                continue
            cols = [c for c in self.names if any(c in checks[kind] for kind in candidates)]
            rows = self._read_rows(union, [TYPED + c if c in self.numeric else c for c in cols])
            typed = {c: transform.to_array(rows.column(TYPED + c if c in self.numeric else c)) for c in cols}
            del rows
            for kind, idx in candidates.items():
                if len(idx):
                    at = pa.array(np.searchsorted(union, idx))
                    checked = checks[kind]
                    ((_, sub),) = transform.duplicate_masks({c: typed[c].take(at) for c in checked}, [checked],
                                                            len(idx))
                    found[kind].append(idx[sub])
                    n_candidates[kind] += len(idx)
            del typed, candidates, union
        for kind, cols in checks.items():
            positions = np.sort(np.concatenate(found[kind])) if found[kind] else np.zeros(0, dtype=np.int64)
            result[kind] = (len(positions), positions.astype(np.int64, copy=False))
            log.info("duplicates (%s, %d column(s)): %d partition(s), %d signature candidate(s), %d duplicate(s)",
                     kind, len(cols), n_parts, n_candidates[kind], len(positions))
        return result

    def _partition(self, part: int, n_parts: int, checks: dict[str, list[str]], exclude: npt.NDArray[Any] | None,
                   ) -> dict[str, tuple[npt.NDArray[Any] | None, npt.NDArray[Any]]]:
        """Per duplicate check, the usable-row positions (ascending; None when ``n_parts`` is 1: all rows) and the
        signatures of the rows whose signature is in partition ``part`` (``sig % n_parts == part``). Reads only the
        signature columns of the work file, batch by batch (``scan``)."""
        pos_parts: dict[str, list[npt.NDArray[Any]]] = {kind: [] for kind in checks}
        sig_parts: dict[str, list[npt.NDArray[Any]]] = {kind: [] for kind in checks}
        whole = n_parts == 1 and exclude is None  # every row: positions are implied
        modulus = np.uint64(n_parts)
        start = 0
        for batch in scan(self.work_file, [SIG + kind for kind in checks]):
            keep = None if exclude is None else _kept(exclude, start, batch.num_rows)
            for kind in checks:
                sig = batch.column(SIG + kind).to_numpy()
                if whole:
                    sig_parts[kind].append(sig)
                else:
                    in_part = sig % modulus == part
                    hit = np.flatnonzero(in_part if keep is None else in_part & keep)
                    pos_parts[kind].append(hit + start)
                    sig_parts[kind].append(sig[hit])
            start += batch.num_rows
        out: dict[str, tuple[npt.NDArray[Any] | None, npt.NDArray[Any]]] = {}
        for kind in checks:
            sig = np.concatenate(sig_parts.pop(kind)) if sig_parts[kind] else np.zeros(0, dtype=np.uint64)
            pos = None if whole else (np.concatenate(pos_parts.pop(kind)) if pos_parts[kind]
                                      else np.zeros(0, dtype=np.int64))
            out[kind] = (pos, sig)
        return out

    def _read_rows(self, idx: npt.NDArray[Any], columns: list[str] | None = None) -> pa.Table:
        """Work-file rows at usable-row positions ``idx`` (sorted), in that order, with ``columns`` (default: all).
        Batch by batch, each read whole (only ``columns``) and the wanted rows taken: memory is one batch plus the
        rows taken; the batches after the last wanted row are not read."""
        names = [c for c in self.schema.names if columns is None or c in columns]
        parts = []
        pos = 0
        if len(idx):
            for batch in scan(self.work_file, names):
                a, b = (int(x) for x in np.searchsorted(idx, [pos, pos + batch.num_rows]))
                if a < b:
                    parts.append(pa.Table.from_batches([batch]).take(pa.array(idx[a:b] - pos)))
                pos += batch.num_rows
                if pos > idx[-1]:
                    break
        return (pa.concat_tables(parts).combine_chunks() if parts
                else pa.schema([self.schema.field(c) for c in names]).empty_table())

    def _prepare(self, batches: Iterator[pa.RecordBatch], drop: npt.NDArray[Any], file_out: npt.NDArray[Any],
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
                lo = int(np.searchsorted(drop, usable_pos - batch.num_rows))
                self.rejects.add("b", rejected_part(
                    {c: self._raw(rows, c) for c in names}, names, np.arange(len(d_idx)),
                    rows.column(FILE_IDX), rows.column(ROW_NO), self.drop_reasons[lo:lo + len(d_idx)]))
                batch = batch.filter(pa.array(keep))
            file_out += np.bincount(batch.column(FILE_IDX).to_numpy(zero_copy_only=False), minlength=len(self.files))
            typed, invalid = self._typed(batch)
            early = {jc.column: json_pool.submit(jsonx.extract, typed[jc.column], jc.fields)
                     for jc in config.json_columns if jc.column not in imputed}
            yield batch, typed, invalid, early

    def _pass_b(self, drop: npt.NDArray[Any], imputation: dict[str, Any]) -> dict[str, Any]:
        """Clean, transform and write the work-file rows batch by batch; sum counts, keep statistics columns."""
        config, names, kinds, output_dir = self.config, self.names, self.kinds, self.output_dir
        for folder in OUTPUT_FOLDERS:
            (output_dir / folder).mkdir(parents=True, exist_ok=True)
        col_metrics: dict[str, dict[str, Any]] = {
            c: {"type": kinds[c], "declared": c in config.columns, "missing_before": 0, "invalid": 0} for c in names}
        totals: dict[str, Any] = {}  # transform_rows counts, summed over the batches
        group_cols, numeric_cols = summarised_columns(config, names, kinds)
        keep_cols = list(dict.fromkeys([*group_cols, *(c for g in config.group_statistics for c, _ in g.aggregations),
                                        *numeric_cols]))
        drift_cols = [c for c in (*config.drift.numeric, *config.drift.categorical) if c in names]
        # Input columns are kept once, before imputation (drift profiles them so; statistics fill them at the end,
        # elementwise, as the in-memory path does per row); derived columns as transformed.
        pre_cols = [c for c in dict.fromkeys([*drift_cols, *keep_cols]) if c in names]
        derived_keep = [c for c in keep_cols if c not in pre_cols]
        spill = Spill(self.work_file.with_name("statistics.arrow"))
        file_out = np.zeros(len(self.files), dtype=np.int64)
        last_empty: tuple[pd.DataFrame, pd.DataFrame] | None = None
        writers = Writers(output_dir, self.fmt)
        json_pool = ThreadPoolExecutor(max_workers=1)
        try:
            with pa.OSFile(str(self.work_file)) as source:
                reader = pa.ipc.open_file(source)
                batches: Iterator[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
                if reader.num_record_batches == 0:  # every row rejected: one empty batch gives the outputs their schema
                    batches = iter([pa.RecordBatch.from_pylist([], schema=self.schema)])
                for _batch, typed, invalid, early_json in _one_ahead(self._prepare(batches, drop, file_out,
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
                                                         extractions, self.bin_edges)
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
        # (rebinding the typed names to None is the point: their assignment-type check is off here)
        typed = invalid = pre = None  # type: ignore[assignment]
        _batch = early_json = cleaned = transformed = extractions = last_empty = None  # type: ignore[assignment]
        spill_now = None  # type: ignore[assignment]
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
        derived_metrics = derived_metrics_of(totals, config, self.bin_edges, self.bin_sampling is not None)
        stats = Statistics(config, kinds, imputation, spill, group_cols, numeric_cols, drift_cols)
        rows_out = int(file_out.sum())
        rate = self._sample_rate(rows_out)  # the rate the imputation used: same rows, same sample
        if rate == 1.0:
            statistics, group_metrics, numeric, drift_batch = stats.exact()
            sampling = None
        else:
            statistics, group_metrics, numeric, drift_batch, sampling = stats.bounded(rate, rows_out)
            sampling["imputation"] = {c: info["sampled_values"] for c, info in imputation.items()
                                      if "sampled_values" in info}
            if self.bin_sampling is not None:
                sampling["bins"] = self.bin_sampling
        outputs[STATISTICS] = [str(p.relative_to(output_dir)) for p in write_statistics(output_dir, statistics)]
        outputs[QUALITY] = [f"{QUALITY}/{METRICS_FILE}"]
        outputs = {k: outputs[k] for k in (CLEANED, TRANSFORMED, REJECTED, STATISTICS, QUALITY)}  # metrics.json order
        return {"rows_in": rows_in, "rows_out": rows_out, "col_metrics": col_metrics,
                "json_metrics": json_metrics, "rejected_table": rejected_table,
                "reason_counts": reason_counts, "per_file": per_file,
                "derived_metrics": derived_metrics, "group_metrics": group_metrics, "numeric": numeric,
                "outputs": outputs, "drift_batch": drift_batch, "statistics": statistics, "sampling": sampling}


def _kept(drop: npt.NDArray[Any], start: int, n: int) -> npt.NDArray[Any]:
    """Which of the usable rows ``start .. start + n - 1`` stay: not in ``drop`` (sorted usable-row positions)."""
    keep = np.ones(n, dtype=bool)
    lo, hi = np.searchsorted(drop, [start, start + n])
    keep[drop[lo:hi] - start] = False
    return keep


def _arrow_type(kind: str) -> pa.DataType:
    if kind in NEW_TYPES:
        return typecast.arrow_type(kind)
    return {"integer": pa.int64(), "float": pa.float64()}.get(kind, pa.string())


def _release_unused_memory() -> None:
    """Return freed memory to the OS (Arrow's pool and glibc's heap keep it for reuse otherwise), so peak RSS is
    what is live, not what was once used."""
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _one_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """Yield each item once the next one has been produced (so work the producer starts overlaps the consumer's)."""
    previous = None
    for i, item in enumerate(items):
        if i:
            yield previous
        previous = item
    if previous is not None:
        yield previous
