"""Streaming mode: inputs larger than memory, processed block by block; the per-row state held in memory at once
is bounded by ``max_rows`` rows (``RunOptions.max_rows``: env ``PROCESSING_MAX_ROWS_IN_MEMORY`` read by cli.py,
default from the available memory), and every result is exact while the output rows fit it.

Pass A (per block of ``block_size`` bytes, pyarrow's incremental CSV reader, at most ``READ_AHEAD`` blocks read
ahead): missing markers, typing, rejection rules. Rejected rows and unparsable lines go to work files for
``rejected/`` (``Rejects``: written at the end, in the in-memory path's order); the usable rows
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
group statistics, numeric summaries and drift need are appended to a second work file (``Spill``). At the end
(``Statistics``), while the rows fit ``max_rows`` each statistic reads back only its own columns and is computed as
in memory (exact, identical); above, the spill is scanned batch by batch: exact aggregates merged per batch, order
statistics and drift from a deterministic uniform sample of about ``max_rows`` rows, with the rank-error bound
recorded in metrics ``statistics_sampling`` (``batchstats``).

Memory: ``(READ_AHEAD + 2)`` blocks and their working copies; between the passes the signatures and positions of at
most about ``max_rows`` rows per duplicate check (one partition; more only if one signature value is that common)
with the candidate rows of that partition, then 8 bytes per duplicate found; at the end the columns of one statistic
at a time (at most ``max_rows`` rows; above, the sample, one batch and one row per group), the rejected rows while
at most ``max_rows`` (for ``Result.rejected``), and the Parquet writers' footer (a few KB per row group, one row group
per block). Work-file scans read only their columns into buffers (``scan``; no memory map). Disk: the work files
(about 1.1x the usable input plus 8 bytes per row per duplicate check, the statistics columns, the rejected rows;
1.4x the input at 1M reference rows), removed at the end (``work_dir``, default: the output folder's
parent). Each partition reads the signature columns and then the candidates' columns of the work file once.

Modules (each imports only those listed before it): ``reader`` (blocks of a CSV input), ``signature`` (row
signatures, the statistics sample), ``workfiles`` (work files, rejected rows, output writers), ``statistics`` (the
end-of-run statistics), ``passes`` (``process``: the checks, pass A, duplicates, pass B). The shared row logic is
``processing/rows.py``; this package does not import ``processing.pipeline``
(``tests/processing/test_processing_imports.py``).
"""

from __future__ import annotations

from processing.streaming.passes import (
                                         BLOCK_SIZE,
                                         MIN_MAX_ROWS,
                                         ROW_STATE_BYTES,
                                         StreamingUnsupported,
                                         default_max_rows,
                                         process,
                                         unsupported,
)
from processing.streaming.reader import READ_AHEAD
from processing.streaming.signature import row_signature, sample_mask

__all__ = ["BLOCK_SIZE", "MIN_MAX_ROWS", "READ_AHEAD", "ROW_STATE_BYTES", "StreamingUnsupported", "default_max_rows",
           "process", "row_signature", "sample_mask", "unsupported"]
