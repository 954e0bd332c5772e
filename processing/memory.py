"""The in-memory path: every row at once (the quickest single pass; memory grows with the input, ~0.9 GB per million
reference rows). Reads the inputs whole (``io.read_file``), types and rejects (``rows.type_and_reject``), finds and
drops duplicates, imputes, transforms (``rows.transform_rows``), computes the statistics and writes every output
folder; returns ``rows.Parts`` for ``pipeline._finish``. The streaming path (``processing/streaming``) produces the
same outputs block by block."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contract import METRICS_FILE, OUTPUT_FOLDERS, QUALITY
from processing import io, rules, transform
from processing.config import DatasetConfig, observed_columns
from processing.errors import EmptyInputError, MissingColumnsError
from processing.rows import (
    FILE_COL,
    ROW_COL,
    Parts,
    derived_metrics_of,
    group_column_metrics,
    json_metrics_of,
    reject_reasons,
    rejected_rows,
    summarised_columns,
    to_arrow,
    transform_rows,
    type_and_reject,
    unparsed_rows,
    write_statistics,
)


def process(inputs: list[Path], output_dir: Path, config: DatasetConfig, *, fmt: str, context: dict[str, Any],
            baseline: Path | None, started: float) -> Parts:
    """Run the job in memory: ``pipeline.run``'s arguments; returns the parts metrics.json is assembled from.

    Raises:
        ProcessingError: for expected input problems (named files and columns).
    """
    reads = [io.read_file(p) for p in inputs]
    for r in reads:
        missing = [c for c in config.required_columns if c not in r.table.column_names]
        if missing:
            raise MissingColumnsError(
                f"{r.path.name}: missing required column(s): {', '.join(missing)}"
                f" (found: {', '.join(r.table.column_names) or 'none'})")
    rows_in = sum(r.rows_in for r in reads)
    if rows_in == 0:
        raise EmptyInputError("no data rows in the input (header only): " + ", ".join(r.path.name for r in reads))

    raw, names, bad_utf8 = _combine(reads, config)
    for r in reads:  # the combined copy is all we need: free the per-file tables (keeping their row counts)
        r.table = pa.table({"_rows": pa.nulls(r.table.num_rows)})
    n = raw.num_rows
    kinds = {c: config.columns.get(c, "string") for c in names}
    # Column by column on two threads (Arrow kernels release the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = type_and_reject(lambda c: raw.column(c).combine_chunks(), n, names, kinds, config,
                               [(bad_utf8, "invalid_utf8")], pool)
    typed, invalid, rejected, reasons = rows.typed, rows.invalid, rows.rejected, rows.reasons
    # The rules (processing/rules.py): row-local ones, then unique ones over the rows still usable.
    tally = rules.Tally(config.rules)
    rejected, reasons = rules.check_block(typed, kinds, rejected, reasons, config, tally)
    if rules.unique_rules(config):
        rejected, reasons = rules.reject_unique(typed, np.flatnonzero(~rejected), config, tally, rejected, reasons)

    # Duplicates are counted among the usable rows, on typed values before imputation (nulls compare equal).
    usable_idx = np.flatnonzero(~rejected)
    usable = pa.array(usable_idx)
    all_usable = len(usable_idx) == n  # the common case: no copy of the columns
    usable_typed = {c: typed[c] if all_usable else typed[c].take(usable) for c in names}
    pre = pd.DataFrame({c: transform.to_series(usable_typed[c], kinds[c]) for c in names})
    key_cols = [c for c in config.duplicate_key_columns if c in names]
    (dup_exact, exact_mask), (dup_key, key_mask) = transform.duplicate_masks(
        usable_typed, [names, key_cols], len(usable_idx))
    del usable_typed
    dropped = 0
    if config.duplicate_drop != "none":
        drop_mask = exact_mask if config.duplicate_drop == "exact" else key_mask
        full = np.zeros(n, dtype=bool)
        full[usable_idx[drop_mask]] = True
        more, more_reasons = reject_reasons(n, [(full, f"duplicate_{config.duplicate_drop}")])
        reasons = np.where(more, more_reasons, reasons)
        rejected |= more
        dropped = int(drop_mask.sum())
        pre = pre.loc[~drop_mask].reset_index(drop=True)
    kept_idx = np.flatnonzero(~rejected)
    rows_out = len(kept_idx)

    # Per-column quality counts are over the rows that reach cleaned/.
    col_metrics: dict[str, dict[str, Any]] = {}
    for c in names:
        col_metrics[c] = {
            "type": kinds[c], "declared": c in config.columns,
            "missing_before": int(pre[c].isna().sum()) - (_count(invalid[c][kept_idx]) if c in invalid else 0),
            "invalid": _count(invalid[c][kept_idx]) if c in invalid else 0,
        }

    drift_batch = pre[[c for c in (*config.drift.numeric, *config.drift.categorical) if c in pre.columns]].copy()
    cleaned = pre
    imputation: dict[str, Any] = {}
    for rule in config.imputations:
        info = transform.impute_value(cleaned[rule.column], rule, kinds[rule.column])
        info["filled"] = int(cleaned[rule.column].isna().sum()) if info["value"] is not None else 0
        imputation[rule.column] = info
    # group statistics aggregate observed values (before imputation) unless they say "imputed": keep those columns
    observed = {c: cleaned[c].copy() for c in observed_columns(config)}
    bin_edges: dict[str, Any] = {}  # quantile bins' edges, computed from all rows (derive.py)
    transformed, counts = transform_rows(cleaned, config, names, kinds, imputation, bin_edges=bin_edges)
    for c in names:
        col_metrics[c]["missing_after"] = counts["missing_after"][c]
    json_metrics = json_metrics_of(counts, config)
    derived_metrics = derived_metrics_of(counts, config, bin_edges)

    statistics = {g.name: transform.group_statistics(transform.group_frame(g, transformed, observed), g)
                  for g in config.group_statistics}
    group_cols, numeric_cols = summarised_columns(config, names, kinds)
    group_metrics = {c: group_column_metrics(transformed[c]) for c in group_cols}
    numeric = {c: transform.numeric_summary(transformed[c]) for c in numeric_cols}

    rejected_table = _rejected_table(raw, names, rejected, reasons, reads)
    per_file = _per_file(reads, raw, rejected)

    outputs = _write(output_dir, fmt, cleaned, transformed, rejected_table, statistics)
    return Parts(
        started=started, context=context, output_dir=output_dir, config=config, fmt=fmt, baseline=baseline,
        rows_in=rows_in, rows_out=rows_out, names=names, col_metrics=col_metrics, json_metrics=json_metrics,
        rejected_table=rejected_table, per_file=per_file, dup_exact=dup_exact, dup_key=dup_key, key_cols=key_cols,
        dropped=dropped, imputation=imputation, derived_metrics=derived_metrics, group_metrics=group_metrics,
        numeric=numeric, outputs=outputs, drift_batch=drift_batch, cleaned=cleaned, transformed=transformed,
        statistics=statistics, rule_tally=tally)


def _count(mask: pa.Array | npt.NDArray[Any]) -> int:
    if isinstance(mask, np.ndarray):
        return int(mask.sum())
    return int(pc.sum(mask).as_py() or 0)


def _combine(reads: list[io.FileRead], config: DatasetConfig) -> tuple[pa.Table, list[str], npt.NDArray[Any]]:
    names: list[str] = []
    for r in reads:
        names.extend(n for n in r.table.column_names if n not in names)
    names.extend(c for c in config.columns if c not in names)  # declared but absent everywhere: all missing
    parts, utf8 = [], []
    for i, r in enumerate(reads):
        t = r.table
        cols = [t.column(n) if n in t.column_names else pa.chunked_array([pa.nulls(t.num_rows, pa.string())])
                for n in names]
        cols.append(pa.chunked_array([pa.array(np.full(t.num_rows, i, dtype=np.int32))]))
        cols.append(pa.chunked_array([pa.array(np.arange(1, t.num_rows + 1, dtype=np.int64))]))
        parts.append(pa.table(cols, names=[*names, FILE_COL, ROW_COL]))
        mask = r.invalid_utf8.to_numpy(zero_copy_only=False) if r.invalid_utf8 is not None else None
        utf8.append(mask if mask is not None else np.zeros(t.num_rows, dtype=bool))
    table = pa.concat_tables(parts).combine_chunks()
    return table, names, np.concatenate(utf8) if utf8 else np.zeros(0, dtype=bool)


def _rejected_table(raw: pa.Table, names: list[str], rejected: npt.NDArray[Any], reasons: npt.NDArray[Any],
                    reads: list[io.FileRead]) -> pa.Table:
    """The rejected rows as rejected/ holds them: parsed rows in input order (file, then row); when some lines could
    not be parsed, files in name order instead (a stable sort), each file's rows before its unparsable lines."""
    file_names = [r.path.name for r in reads]
    idx = np.flatnonzero(rejected)
    table = rejected_rows(raw.take(pa.array(idx, pa.int64())), reasons[idx], names, file_names)
    extra = [unparsed_rows(r.path.name, r.parse_errors, names) for r in reads if r.parse_errors]
    if extra:
        table = pa.concat_tables([table, *extra]).combine_chunks()
        order = pc.sort_indices(table, sort_keys=[(FILE_COL, "ascending")])  # stable: parsed rows first per file
        table = table.take(order)
    return table


def _per_file(reads: list[io.FileRead], raw: pa.Table, rejected: npt.NDArray[Any]) -> list[dict[str, Any]]:
    file_idx = raw.column(FILE_COL).to_numpy()
    out_counts = np.bincount(file_idx[~rejected], minlength=len(reads))
    rows = []
    for i, r in enumerate(reads):
        entry: dict[str, Any] = {"file": r.path.name, "path": str(r.path), "format": r.kind, "size_bytes": r.size,
                 "sha256": r.sha256, "rows_in": r.rows_in, "rows_out": int(out_counts[i]),
                 "rows_rejected": r.rows_in - int(out_counts[i]), "parse_errors": len(r.parse_errors)}
        if entry["rows_out"] + entry["rows_rejected"] != entry["rows_in"]:  # pragma: no cover - invariant
            raise RuntimeError(f"row accounting broken for {r.path.name}: {entry}")
        rows.append(entry)
    return rows


def _write(output_dir: Path, fmt: str, cleaned: pd.DataFrame, transformed: pd.DataFrame, rejected: pa.Table,
           statistics: dict[str, pd.DataFrame]) -> dict[str, list[str]]:
    for folder in OUTPUT_FOLDERS:
        (output_dir / folder).mkdir(parents=True, exist_ok=True)
    # Parquet/CSV writers release the GIL: the three row outputs are written concurrently.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            "rejected": pool.submit(io.write_table, rejected, output_dir / "rejected", "rejected", fmt),
            "cleaned": pool.submit(io.write_table, to_arrow(cleaned), output_dir / "cleaned", "cleaned", fmt),
            "transformed": pool.submit(io.write_table, to_arrow(transformed), output_dir / "transformed",
                                       "transformed", fmt),
        }
        written = {k: [futures[k].result()] for k in ("cleaned", "transformed", "rejected")}
    written["statistics"] = write_statistics(output_dir, statistics)
    written[QUALITY] = [output_dir / QUALITY / METRICS_FILE]
    return {k: [str(p.relative_to(output_dir)) for p in v] for k, v in written.items()}
