"""Streaming mode: inputs larger than memory, processed block by block in two passes with exact results.

Pass 0 (per file): sha256 + UTF-8 check (``io._digest``) and the header.
Pass 1 (per block of ``block_size`` bytes, pyarrow's incremental CSV reader): missing markers, typing, rejection
rules; keeps only what global decisions need, for the usable rows: two independent 64-bit hashes of the typed row
for each duplicate check (exact and key; 128 bits together) and the typed values of imputed columns.
Between passes: duplicate masks (pandas ``duplicated`` on the 128-bit hashes), fill values (the same
``transform.impute_value`` as the in-memory path, on the same values, so medians and means are identical).
Pass 2 (re-reads the blocks): the same per-row transforms as the in-memory path (imports ``transform`` and
``jsonx``), block outputs appended with ``ParquetWriter``/``CSVWriter``; per-column counts are summed; the columns
needed by group statistics, numeric summaries and drift are kept (compactly) for exact statistics.

Memory: blocks (pyarrow reads ahead up to ~32 blocks), plus per usable row ~16 bytes per duplicate check and
8 bytes per imputed/aggregated/summarised column, plus the rejected rows (kept to build ``rejected/`` in the
in-memory order). Duplicates are exact up to a 128-bit hash collision (probability below n^2 / 2^129).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from processing import io, jsonx, transform
from processing.config import NUMERIC_TYPES, DatasetConfig
from processing.errors import EmptyInputError, InputError, MissingColumnsError, ProcessingError

log = logging.getLogger("processing")

BLOCK_SIZE = 4 << 20
_KEYS = (b"processing-dup-0", b"processing-dup-1")  # two siphash keys -> 128-bit row identity
_NULL = np.uint64(0x9E3779B97F4A7C15)
_MULS = (np.uint64(0x100000001B3), np.uint64(0xC2B2AE3D27D4EB4F))  # a different combination per key


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
    sha256: str
    size: int
    parse_errors: list[str] = field(default_factory=list)
    rows: int = 0


def _open(f: _File, block_size: int) -> Iterator[pa.Table]:
    """The file's parsed records, block by block (all columns as strings, names as the in-memory reader has them)."""
    f.parse_errors.clear()

    def on_invalid(row: Any) -> str:
        f.parse_errors.append(row.text)
        return "skip"

    source = pa.input_stream(str(f.path), compression="gzip" if f.compressed else None)
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in f.names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        clean = [n.strip().lstrip("\ufeff") for n in reader.schema.names]
        for batch in reader:
            yield pa.Table.from_batches([batch]).rename_columns(clean)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{f.path.name}: cannot parse CSV ({exc})") from exc
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise InputError(f"{f.path.name}: cannot read ({exc})") from exc


def _hash(columns: list[pa.Array], which: int, n: int) -> np.ndarray:
    key, mul = _KEYS[which], _MULS[which]
    h = np.zeros(n, dtype=np.uint64)
    for arr in columns:
        if pa.types.is_floating(arr.type):
            arr = pc.add(arr, pa.scalar(0.0, arr.type))  # -0.0 == 0.0, as in pandas
        valid = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            values = pc.fill_null(arr, "").to_numpy(zero_copy_only=False)
            hc = pd.util.hash_array(values, hash_key=key.decode(), categorize=False)
        else:
            values = pc.fill_null(arr, pa.scalar(0, arr.type)).to_numpy(zero_copy_only=False)
            hc = pd.util.hash_array(values, hash_key=key.decode(), categorize=False)
        hc = np.where(valid, hc, _NULL)
        with np.errstate(over="ignore"):
            h = h * mul + hc.astype(np.uint64)
    return h


class _Block:
    """One block through the row-level steps shared with the in-memory path (same functions, same order)."""

    def __init__(self, table: pa.Table, names: list[str], config: DatasetConfig, kinds: dict[str, str]):
        from processing import pipeline

        n = table.num_rows
        self.n = n
        self.raw = {c: (transform.to_array(table.column(c)) if c in table.column_names
                        else pa.nulls(n, pa.string())) for c in names}
        marked = {c: transform.mark_missing(self.raw[c], config.missing_values) for c in names}
        self.typed: dict[str, pa.Array] = {}
        self.invalid: dict[str, np.ndarray] = {}
        for c in names:
            if kinds[c] in NUMERIC_TYPES:
                self.typed[c], inv = transform.coerce(marked[c], kinds[c])
                self.invalid[c] = inv.to_numpy(zero_copy_only=False)
            else:
                self.typed[c] = marked[c]
        rules: list[tuple[np.ndarray, str]] = []
        for c in config.reject_rows_missing:
            rules.append((pc.is_null(marked[c]).to_numpy(zero_copy_only=False), f"missing_value:{c}"))
            if c in self.invalid:
                rules.append((self.invalid[c], f"invalid_value:{c}"))
        self.rejected, self.reasons = pipeline._reasons(n, rules)


def process(inputs: list[Path], output_dir: Path, config: DatasetConfig, *, fmt: str, context: dict[str, Any],
            baseline: Path | None, started: float, block_size: int | None = None) -> Any:
    """Run the job in streaming mode; returns ``pipeline.Parts`` (metrics are assembled by ``pipeline._finish``)."""
    from processing import pipeline

    block_size = block_size or BLOCK_SIZE
    t0 = time.perf_counter()
    files: list[_File] = []
    for p in inputs:
        compressed = io.is_gzip(p)
        if p.stat().st_size == 0:
            raise EmptyInputError(f"{p.name}: empty file (0 bytes)")
        sha, utf8_ok = io._digest(p, check_utf8=True, compressed=compressed)
        if not utf8_ok:
            raise StreamingUnsupported(f"{p.name} is not valid UTF-8: streaming mode needs UTF-8 text "
                                       "(the in-memory path rejects such rows)")
        names = [n.lstrip("\ufeff").strip() for n in io._header(p, compressed)]
        missing = [c for c in config.required_columns if c not in names]
        if missing:
            raise MissingColumnsError(f"{p.name}: missing required column(s): {', '.join(missing)}"
                                      f" (found: {', '.join(names) or 'none'})")
        files.append(_File(p, io._header(p, compressed), compressed, sha, p.stat().st_size))
    names: list[str] = []
    for f in files:
        names.extend(n for n in (x.lstrip("\ufeff").strip() for x in f.names) if n not in names)
    names.extend(c for c in config.columns if c not in names)
    kinds = {c: config.columns.get(c, "string") for c in names}
    key_cols = [c for c in config.duplicate_key_columns if c in names]
    imputed = [r.column for r in config.imputations]

    # Pass 1: row identities for the duplicate checks and the values the fill statistics need.
    hashes: dict[str, list[list[np.ndarray]]] = {"exact": [[], []], "key": [[], []]}
    impute_values: dict[str, list[pa.Array]] = {c: [] for c in imputed}
    for f in files:
        for table in _open(f, block_size):
            b = _Block(table, names, config, kinds)
            usable = pa.array(np.flatnonzero(~b.rejected))
            typed = {c: b.typed[c].take(usable) for c in names}
            for kind, cols in (("exact", names), ("key", key_cols)):
                if cols:
                    for i, key in enumerate(_KEYS):
                        hashes[kind][i].append(_hash([typed[c] for c in cols], i, len(usable)))
            for c in imputed:
                impute_values[c].append(typed[c])
    rows_in = 0
    dups: dict[str, tuple[int, np.ndarray]] = {}
    for kind in ("exact", "key"):
        h1, h2 = (np.concatenate(h) if h else np.zeros(0, np.uint64) for h in hashes[kind])
        if len(h1) == 0 or (kind == "key" and not key_cols):
            dups[kind] = (0, np.zeros(len(h1), dtype=bool))
            continue
        mask = pd.DataFrame({"a": h1, "b": h2}).duplicated(keep="first").to_numpy()
        dups[kind] = (int(mask.sum()), mask)
    del hashes
    n_usable = len(dups["exact"][1]) if names else 0
    drop_mask = np.zeros(n_usable, dtype=bool)
    dropped = 0
    if config.duplicate_drop != "none":
        drop_mask = dups["exact" if config.duplicate_drop == "exact" else "key"][1]
        dropped = int(drop_mask.sum())
    imputation: dict[str, Any] = {}
    for rule in config.imputations:
        kind = kinds[rule.column]
        arr = pa.concat_arrays(impute_values.pop(rule.column)) if n_usable else pa.array([], _arrow_type(kind))
        series = transform.to_series(arr, kind)[~drop_mask].reset_index(drop=True)
        info = transform.impute_value(series, rule, kind)
        info["filled"] = int(series.isna().sum()) if info["value"] is not None else 0
        imputation[rule.column] = info
    log.info("streaming pass 1: %d usable rows in %.2fs", n_usable, time.perf_counter() - t0)

    # Pass 2: the row outputs, block by block.
    output_dir = Path(output_dir)
    for folder in pipeline.OUTPUT_FOLDERS:
        (output_dir / folder).mkdir(parents=True, exist_ok=True)
    writers = _Writers(output_dir, fmt)
    col_metrics = {c: {"type": kinds[c], "declared": c in config.columns, "missing_before": 0, "invalid": 0,
                       "missing_after": 0} for c in names}
    json_acc = {jc.column: {"non_missing": 0, "malformed": 0, "invalid_syntax": 0, "not_object": 0,
                            "fields": {f.name: {"path": ".".join(f.path), "extracted": 0, "missing": 0}
                                       for f in jc.fields}} for jc in config.json_columns}
    derived_acc: dict[str, Any] = {}
    group_cols = sorted({c for g in config.group_statistics for c in g.group_by})
    numeric_cols = [c for c in names if kinds[c] in NUMERIC_TYPES]
    numeric_cols += [d.name for d in config.derived if d.kind == "string_length"]
    keep_cols = list(dict.fromkeys([*group_cols, *(c for g in config.group_statistics for c, _ in g.aggregations),
                                    *numeric_cols]))
    drift_cols = [c for c in (*config.drift.numeric, *config.drift.categorical) if c in names]
    kept_parts: dict[str, list[pd.Series]] = {c: [] for c in keep_cols}
    drift_parts: dict[str, list[pd.Series]] = {c: [] for c in drift_cols}
    presence_parts: dict[str, list[pd.Series]] = {f.name: [] for jc in config.json_columns for f in jc.fields}
    rejected_parts: list[pa.Table] = []
    per_file = []
    usable_pos = 0
    rows_out = 0
    last_empty: tuple[pd.DataFrame, pd.DataFrame] | None = None
    for fi, f in enumerate(files):
        file_rows = file_out = 0
        for table in _open(f, block_size):
            b = _Block(table, names, config, kinds)
            usable_idx = np.flatnonzero(~b.rejected)
            drop_here = drop_mask[usable_pos:usable_pos + len(usable_idx)]
            usable_pos += len(usable_idx)
            rejected, reasons = b.rejected, b.reasons
            if drop_here.any():
                full = np.zeros(b.n, dtype=bool)
                full[usable_idx[drop_here]] = True
                more, more_reasons = pipeline._reasons(b.n, [(full, f"duplicate_{config.duplicate_drop}")])
                reasons = np.where(more, more_reasons, reasons)
                rejected = rejected | more
            kept_idx = np.flatnonzero(~rejected)
            kept = pa.array(kept_idx)
            rej_idx = np.flatnonzero(rejected)
            if len(rej_idx):
                ridx = pa.array(rej_idx)
                cols = {pipeline.FILE_COL: pa.array(np.full(len(rej_idx), fi, dtype=np.int32)),
                        pipeline.ROW_COL: pa.array(rej_idx + 1 + file_rows, pa.int64())}
                cols.update({c: b.raw[c].take(ridx) for c in names})
                rejected_parts.append((pa.table(cols), reasons[rej_idx]))
            file_rows += b.n
            file_out += len(kept_idx)
            rows_out += len(kept_idx)

            pre = pd.DataFrame({c: transform.to_series(b.typed[c].take(kept), kinds[c]) for c in names})
            for c in names:
                inv = int(b.invalid[c][kept_idx].sum()) if c in b.invalid else 0
                col_metrics[c]["missing_before"] += int(pre[c].isna().sum()) - inv
                col_metrics[c]["invalid"] += inv
            for c in drift_cols:
                drift_parts[c].append(pre[c].copy())
            cleaned = pre
            for rule in config.imputations:
                info = imputation[rule.column]
                cleaned[rule.column] = transform.fill(cleaned[rule.column], info["value"], kinds[rule.column])
            for c in names:
                col_metrics[c]["missing_after"] += int(cleaned[c].isna().sum())
            transformed = cleaned.copy()
            for jc in config.json_columns:
                ext = jsonx.extract(pa.array(cleaned[jc.column].astype(transform.STRING_DTYPE)), jc.fields)
                acc = json_acc[jc.column]
                for name, arr in ext.fields.items():
                    transformed[name] = transform.to_series(arr, "string")
                    present = transformed[name].notna()
                    acc["fields"][name]["extracted"] += int(present.sum())
                    acc["fields"][name]["missing"] += int((~present).sum())
                    presence_parts[name].append(present)
                for k in ("non_missing", "malformed", "invalid_syntax", "not_object"):
                    acc[k] += getattr(ext, k)
            for d in config.derived:
                if d.kind == "string_length":
                    transformed[d.name] = transform.string_length(transformed[d.source].astype(transform.STRING_DTYPE))
                    acc_d = derived_acc.setdefault(d.name, {"kind": d.kind, "source": d.source, "missing": 0})
                    acc_d["missing"] += int(transformed[d.name].isna().sum())
                else:
                    assert d.bins is not None
                    transformed[d.name], outside = transform.bin_values(transformed[d.source], d.bins)
                    counts = transformed[d.name].value_counts(dropna=False, sort=False)
                    acc_d = derived_acc.setdefault(d.name, {"kind": d.kind, "source": d.source, "outside_bins": 0,
                                                            "missing": 0, "counts": {}})
                    acc_d["outside_bins"] += outside
                    acc_d["missing"] += int(transformed[d.name].isna().sum())
                    for k, v in counts.items():
                        if not pd.isna(k):
                            acc_d["counts"][str(k)] = acc_d["counts"].get(str(k), 0) + int(v)
            for c in keep_cols:
                kept_parts[c].append(transformed[c])
            if len(kept_idx):
                writers.write(cleaned, transformed)
            else:
                last_empty = (cleaned, transformed)
        per_file.append({"file": f.path.name, "path": str(f.path), "format": "csv.gz" if f.compressed else "csv",
                         "size_bytes": f.size, "sha256": f.sha256, "rows_in": file_rows + len(f.parse_errors),
                         "rows_out": file_out, "rows_rejected": file_rows + len(f.parse_errors) - file_out,
                         "parse_errors": len(f.parse_errors)})
        rows_in += file_rows + len(f.parse_errors)
        f.rows = file_rows
    if rows_in == 0:
        writers.close()
        raise EmptyInputError("no data rows in the input (header only): " + ", ".join(f.path.name for f in files))
    if not writers.started and last_empty is not None:
        writers.write(*last_empty)
    outputs = writers.close()

    rejected_table = _rejected(rejected_parts, names, files)
    outputs["rejected"] = [str(io.write_table(rejected_table, output_dir / "rejected", "rejected", fmt)
                               .relative_to(output_dir))]
    json_metrics = {}
    for col, acc in json_acc.items():
        malformed = acc["invalid_syntax"] + acc["not_object"]
        json_metrics[col] = {"non_missing": acc["non_missing"], "malformed": malformed,
                             "invalid_syntax": acc["invalid_syntax"], "not_object": acc["not_object"],
                             "malformed_rate": pipeline._rate(malformed, acc["non_missing"]), "fields": acc["fields"]}
    for d in config.derived:  # key order as in the in-memory path
        if d.kind == "bins" and d.name in derived_acc:
            a = derived_acc[d.name]
            derived_acc[d.name] = {"kind": a["kind"], "source": a["source"], "outside_bins": a["outside_bins"],
                                   "missing": a["missing"], "counts": a["counts"]}
    frame = pd.DataFrame({c: _concat(kept_parts[c]) for c in keep_cols})
    statistics = {g.name: transform.group_statistics(frame, g) for g in config.group_statistics}
    group_metrics = {c: {"distinct": int(frame[c].nunique(dropna=True)), "missing": int(frame[c].isna().sum())}
                     for c in group_cols}
    numeric = {c: transform.numeric_summary(frame[c]) for c in numeric_cols}
    for name, fr in statistics.items():
        outputs.setdefault("statistics", [])
        path = io.write_table(pipeline._to_arrow(fr), output_dir / "statistics", name, "csv")
        outputs["statistics"].append(str(path.relative_to(output_dir)))
        jpath = output_dir / "statistics" / f"{name}.json"
        records = [{k: pipeline._json_value(v) for k, v in row.items()} for row in fr.to_dict(orient="records")]
        io.write_json({"name": name, "rows": records}, jpath)
        outputs["statistics"].append(str(jpath.relative_to(output_dir)))
    outputs.setdefault("statistics", [])
    outputs["quality"] = ["quality/metrics.json"]
    outputs = {k: outputs[k] for k in ("cleaned", "transformed", "rejected", "statistics", "quality")}
    drift_batch = pd.DataFrame({c: _concat(drift_parts[c]) for c in drift_cols})
    presence = pd.DataFrame({k: _concat(v) for k, v in presence_parts.items()})
    presence = presence.where(presence, None) if len(presence.columns) else presence
    log.info("streaming done: %d rows in, %d out in %.2fs", rows_in, rows_out, time.perf_counter() - t0)
    return pipeline.Parts(
        started=started, context=context, output_dir=output_dir, config=config, fmt=fmt, baseline=baseline,
        rows_in=rows_in, rows_out=rows_out, names=names, col_metrics=col_metrics, json_metrics=json_metrics,
        rejected_table=rejected_table, per_file=per_file, dup_exact=dups["exact"][0], dup_key=dups["key"][0],
        key_cols=key_cols, dropped=dropped, imputation=imputation, derived_metrics=derived_acc,
        group_metrics=group_metrics, numeric=numeric, outputs=outputs, drift_batch=drift_batch,
        cleaned=pd.DataFrame(), transformed=presence, statistics=statistics, mode="streaming")


def _arrow_type(kind: str) -> pa.DataType:
    return {"integer": pa.int64(), "float": pa.float64()}.get(kind, pa.string())


def _concat(parts: list[pd.Series]) -> pd.Series:
    return pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype=object)


def _rejected(parts: list[tuple[pa.Table, np.ndarray]], names: list[str], files: list[_File]) -> pa.Table:
    from processing import pipeline

    reads = [io.FileRead(f.path, pa.table({}), list(f.parse_errors)) for f in files]
    if parts:
        raw = pa.concat_tables([t for t, _ in parts])
        reasons = np.concatenate([r for _, r in parts])
    else:
        cols = {pipeline.FILE_COL: pa.array([], pa.int32()), pipeline.ROW_COL: pa.array([], pa.int64())}
        cols.update({c: pa.array([], pa.string()) for c in names})
        raw, reasons = pa.table(cols), np.zeros(0, dtype=object)
    return pipeline._rejected_table(raw, names, np.ones(raw.num_rows, dtype=bool), reasons, reads)


class _Writers:
    """Append block frames to cleaned/ and transformed/ (Parquet or CSV), one file each."""

    def __init__(self, output_dir: Path, fmt: str):
        self.output_dir, self.fmt = output_dir, fmt
        self.writers: dict[str, Any] = {}
        self.schemas: dict[str, pa.Schema] = {}
        self.started = False

    def write(self, cleaned: pd.DataFrame, transformed: pd.DataFrame) -> None:
        from processing import pipeline

        self.started = True
        for stem, frame in (("cleaned", cleaned), ("transformed", transformed)):
            table = pipeline._to_arrow(frame)
            w = self.writers.get(stem)
            if w is None:
                path = self.output_dir / stem / f"{stem}.{self.fmt}"
                w = (pacsv.CSVWriter(str(path), table.schema) if self.fmt == "csv"
                     else pq.ParquetWriter(str(path), table.schema, compression="snappy"))
                self.writers[stem] = w
                self.schemas[stem] = table.schema
            w.write_table(table if table.schema.equals(self.schemas[stem]) else table.cast(self.schemas[stem]))

    def close(self) -> dict[str, list[str]]:
        for w in self.writers.values():
            w.close()
        return {stem: [f"{stem}/{stem}.{self.fmt}"] for stem in ("cleaned", "transformed")}
