"""The Spark engine: reads the inputs with Spark's CSV reader, applies the dataset config in native Spark SQL (no
Python or Arrow UDFs, no ``toPandas``: the SageMaker Spark image has no pyarrow) and writes the default engine's
folders, metrics.json keys, drift profile and gate (``gate.finish``).

Order: rows are numbered by input order (file order, then position in the file), as the default engine does, so the
same rows are "first" among duplicates and the outputs keep the input order. A CSV is read with ``multiLine`` (quoted
values may hold newlines), so Spark reads each file whole in one task: the parallelism is across files and across the
stages after the read.

Exact: counts, rejected rows and reasons, duplicates, min/max/sum/count/nunique, bins, string lengths, median
imputation and group medians by Spark's exact ``percentile`` (interpolates like numpy's median) while the output rows
fit the row budget (``RunOptions.max_rows``); beyond it ``percentile_approx`` with ``APPROX_ACCURACY``, whose rank
error is at most ``1 / APPROX_ACCURACY`` of the rows (deterministic: delta 0), recorded in metrics.json
``statistics_sampling`` with the streaming path's keys. Means and standard deviations are exact up to floating-point
rounding (summation order differs).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from contract import METRICS_FILE, OUTPUT_FOLDERS, QUALITY
from processing import gate, metricsdoc
from processing.config import NUMERIC_TYPES, DatasetConfig, observed_columns
from processing.errors import EmptyInputError, InputError, MissingColumnsError, ProcessingError
from processing.metricsdoc import rate, write_json
from processing.options import RunOptions, available_memory
from processing.rawfile import file_digest, read_header
from processing.rules_config import Tally, results
from processing.spark import features as spark_features
from processing.spark import hadoopfs
from processing.spark import rules as spark_rules
from processing.spark.hadoopfs import HadoopFile
from processing.spark.session import session
from processing.types import NEW_TYPES, TypeOptions

log = logging.getLogger("processing")

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
# The default engine's number rules (processing/transform.py FLOAT_RE/INT_RE; Java regexes read them alike).
FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$"
INT_RE = r"^[+-]?\d{1,18}(\.0*)?$"
TRIM_RE = r"(?U)^\s+|\s+$"  # Unicode whitespace, as Arrow's utf8_trim_whitespace
JSON_WS = r"^[ \t\n\r]*"
APPROX_ACCURACY = 100_000  # percentile_approx: rank error <= 1/accuracy of the rows (Spark docs)
NON_FINITE = ('"NaN"', '"Infinity"', '"-Infinity"')
END_KEY = "__processing_spark_end__"  # closes the JSON validity wrapper (JSON fields, in _run)
FILE_COL, ROW_COL, REASON_COL, RAW_LINE_COL = "_source_file", "_source_row", "_reject_reason", "_raw_line"


class SparkUnsupported(ProcessingError):
    """The Spark engine cannot (yet) give the default engine's result for this input or config; the message names
    the config key or the file. Exit 2: use the default engine."""


# ---------------------------------------------------------------------------------------------------------------
# What the engine supports
# ---------------------------------------------------------------------------------------------------------------


def unsupported(config: DatasetConfig) -> str | None:
    """Why the Spark engine cannot match the default engine for ``config`` (naming the key), or None."""
    for col, kind in config.columns.items():
        if kind == "category":
            return (f"columns.{col}: type 'category' is not supported by the Spark engine yet (its Parquet dictionary "
                    f"type and category order are not reproduced); use the default engine or type 'string'")
    # issue 14's rules (processing/spark/rules.py)
    return spark_rules.unsupported(config)


# ---------------------------------------------------------------------------------------------------------------
# Inputs (standard library: headers, digests, checks)
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class InputFile:
    path: Path | HadoopFile
    names: list[str]
    kind: str
    size: int
    sha256: str


def list_inputs(source: Path | str) -> list[Path | HadoopFile]:
    """The input files of ``--input``: a local file or folder (``rawfile.list_inputs``), or a URI (``s3://``,
    ``file://``) listed through Hadoop's FileSystem API, with the same rules."""
    from processing.rawfile import list_inputs as list_local

    if hadoopfs.is_uri(source):
        return list(hadoopfs.list_inputs(str(source)))
    return list(list_local(Path(source)))


def inspect(path: Path | HadoopFile, config: DatasetConfig) -> InputFile:
    """Check one input the way the default engine does, and refuse what the Spark engine does not read alike."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InputError(f"{path.name}: cannot open ({exc.strerror or exc})") from exc
    size = path.stat().st_size
    if size == 0:
        raise EmptyInputError(f"{path.name}: empty file (0 bytes)")
    if magic == PARQUET_MAGIC:
        raise SparkUnsupported(f"{path.name}: Parquet inputs are not supported by the Spark engine yet")
    compressed = magic[:2] == GZIP_MAGIC
    if compressed and not path.name.endswith(".gz"):
        raise SparkUnsupported(f"{path.name}: gzip content without a .gz suffix (Spark decompresses by file name)")
    names = read_header(path, compressed)
    missing = [c for c in config.required_columns if c not in names]
    if missing:
        raise MissingColumnsError(f"{path.name}: missing required column(s): {', '.join(missing)}"
                                  f" (found: {', '.join(names) or 'none'})")
    sha, utf8_ok = (hadoopfs.digest(path.uri, check_utf8=True, compressed=compressed) if isinstance(path, HadoopFile)
                    else file_digest(path, check_utf8=True, compressed=compressed))
    if not utf8_ok:
        raise SparkUnsupported(f"{path.name}: not valid UTF-8; the default engine rejects such rows with reason "
                               f"invalid_utf8, the Spark engine does not yet")
    return InputFile(path, names, "csv.gz" if compressed else "csv", size, sha)


# ---------------------------------------------------------------------------------------------------------------
# Session
# ---------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


def run(inputs: list[Path] | list[Path | HadoopFile], output_dir: Path | str, config: DatasetConfig, *,
        fmt: str = "parquet", context: dict[str, Any] | None = None, baseline: Path | str | None = None,
        options: RunOptions | None = None, spark: Any = None, quarantine: Path | str | None = None) -> dict[str, Any]:
    """Process ``inputs`` with ``config`` on Spark and write every output folder under ``output_dir``.

    ``output_dir``, ``baseline`` and ``quarantine`` may be URIs (``s3://``, ``file://``): then the data folders
    (cleaned, transformed, rejected) are written there by Spark's writers, from every executor, and the small files
    (statistics, quality) are written locally by the driver and copied there at the end, quality/ last
    (:func:`_publish`). ``quarantine`` (default ``<output_dir>/quarantine``) receives a failed batch's data folders
    and violations.json.

    Returns the metrics document (also written to quality/metrics.json).

    Raises:
        SparkUnsupported: a config feature or input the engine does not handle alike (named).
        ProcessingError: the default engine's expected input problems.
    """
    started = time.perf_counter()
    opts = options or RunOptions()
    reason = unsupported(config)
    if reason:
        raise SparkUnsupported(reason)
    own = spark is None and _no_active_session()
    spark = spark or session()
    try:
        files = [inspect(p, config) for p in inputs]
        with tempfile.TemporaryDirectory(prefix="processing-spark-") as work:
            remote = str(output_dir) if hadoopfs.is_uri(output_dir) else None
            local_out = Path(work) / "output" if remote else Path(output_dir)
            if hadoopfs.is_uri(baseline):
                baseline = hadoopfs.download(str(baseline), Path(work) / "baseline" / "baseline.json")
            metrics = _run(spark, files, local_out, config, fmt, dict(context or {}),
                           Path(baseline) if baseline is not None else None, opts, started, data_root=remote)
            _publish(local_out, remote, quarantine, failed=metrics["gate"]["status"] == "failed")
            return metrics
    finally:
        if own:
            spark.stop()


def _publish(local_out: Path, remote: str | None, quarantine: Path | str | None, *, failed: bool) -> None:
    """Put the driver's local files where they belong: with a URI output, every local file to the same path below it
    (quality/ last, so metrics.json appears once everything else is there) and, for a failed batch, the data folders
    Spark wrote there into the quarantine; a quarantine elsewhere than ``<output>/quarantine`` receives that folder."""
    from contract import DATA_FOLDERS, QUARANTINE

    local_q = local_out / QUARANTINE
    if remote is None:
        if quarantine is None:
            return
        if hadoopfs.is_uri(quarantine):
            hadoopfs.upload_tree(local_q, str(quarantine))
            shutil.rmtree(local_q)
            local_q.mkdir()
        elif Path(quarantine).resolve() != local_q.resolve():
            for path in sorted(p for p in local_q.rglob("*") if p.is_file()):
                target = Path(quarantine) / path.relative_to(local_q)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
        return
    q_root = str(quarantine) if quarantine is not None else hadoopfs.join(remote, QUARANTINE)
    if failed:
        for folder in DATA_FOLDERS:
            hadoopfs.move_children(hadoopfs.join(remote, folder), hadoopfs.join(q_root, folder))
    if hadoopfs.is_uri(q_root):
        hadoopfs.upload_tree(local_q, q_root)
    else:
        for path in sorted(p for p in local_q.rglob("*") if p.is_file()):
            target = Path(q_root) / path.relative_to(local_q)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    hadoopfs.upload_tree(local_out, remote, skip=(QUARANTINE, QUALITY))
    hadoopfs.upload_tree(local_out / QUALITY, hadoopfs.join(remote, QUALITY))


def _no_active_session() -> bool:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession() is None


def _run(spark: Any, files: list[InputFile], output_dir: Path, config: DatasetConfig, fmt: str,
         context: dict[str, Any], baseline: Path | None, opts: RunOptions, started: float, *,
         data_root: str | None = None) -> dict[str, Any]:
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    names: list[str] = []
    for f in files:
        names.extend(n for n in f.names if n not in names)
    names.extend(c for c in config.columns if c not in names)
    kinds = {c: config.columns.get(c, "string") for c in names}
    max_rows = opts.max_rows or max(100_000, available_memory() // 4 // 128)

    # --- read: every file with its own header as an all-string schema, plus the corrupt-record column --------------
    corrupt = "_corrupt_record_"
    frames = []
    for i, f in enumerate(files):
        schema = T.StructType([T.StructField(f"_c{j}", T.StringType()) for j in range(len(f.names))]
                              + [T.StructField(corrupt, T.StringType())])
        df = (spark.read.option("header", "true").option("multiLine", "true").option("escape", '"')
              .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", corrupt)
              .option("nullValue", "\u0000\u0001<null>").option("emptyValue", "")
              .option("ignoreLeadingWhiteSpace", "false").option("ignoreTrailingWhiteSpace", "false")
              .option("encoding", "UTF-8").option("enforceSchema", "true")
              .schema(schema).csv(str(f.path)))
        # One file, not splittable with multiLine: one partition, so the id is the position in the file.
        df = df.withColumn("_pos", F.monotonically_increasing_id())
        cols = [F.coalesce(F.col(f"_c{f.names.index(n)}"), F.lit("")).alias(n) if n in f.names
                else F.lit(None).cast("string").alias(n) for n in names]
        frames.append(df.select(F.lit(i).alias("_file"), "_pos", F.col(corrupt).alias("_corrupt"), *cols))
    raw = frames[0]
    for df in frames[1:]:
        raw = raw.unionByName(df)
    raw = raw.persist(StorageLevel.MEMORY_AND_DISK)

    parsed = raw.filter(F.col("_corrupt").isNull())
    parsed = parsed.withColumn("_row", F.row_number().over(Window.partitionBy("_file").orderBy("_pos")).cast("long"))

    # --- missing markers, typing, rejection rules ----------------------------------------------------------------
    markers = list(config.missing_values)
    typed_cols, invalid_cols = {}, {}
    for c in names:
        marked = F.when(F.col(c).isin(markers), F.lit(None).cast("string")).otherwise(F.col(c)) if markers else F.col(c)
        if kinds[c] in NUMERIC_TYPES:
            trimmed = F.regexp_replace(marked, TRIM_RE, "")
            if kinds[c] == "integer":
                ok = trimmed.rlike(INT_RE)
                value = F.when(ok, F.regexp_replace(trimmed, r"^\+|\.0*$", "").cast("long"))
            else:
                ok = trimmed.rlike(FLOAT_RE)
                number = trimmed.cast("double")
                value = F.when(ok & ~F.isnan(number) & (F.abs(number) != float("inf")), number)
            typed_cols[c] = value
            invalid_cols[c] = marked.isNotNull() & value.isNull()
        elif kinds[c] in NEW_TYPES:  # boolean, date, datetime (processing/spark/features.py)
            typed_cols[c] = spark_features.typed(F, marked, kinds[c], config.column_options.get(c, TypeOptions()))
            invalid_cols[c] = marked.isNotNull() & typed_cols[c].isNull()
        else:
            typed_cols[c] = marked
    rules = []
    for c in config.reject_rows_missing:
        rules.append(F.when(typed_cols[c].isNull() & ~invalid_cols.get(c, F.lit(False)), F.lit(f"missing_value:{c}")))
        if c in invalid_cols:
            rules.append(F.when(invalid_cols[c], F.lit(f"invalid_value:{c}")))
    reason = F.concat_ws(";", *rules) if rules else F.lit("")
    rows = parsed.select(
        "_file", "_row", *[F.col(c).alias(f"_raw_{j}") for j, c in enumerate(names)],
        *[typed_cols[c].alias(c) for c in names],
        *[invalid_cols[c].alias(f"_inv_{c}") for c in invalid_cols],
        reason.alias("_reason"))
    rows = rows.withColumn("_usable", F.col("_reason") == "")
    # the rules, before the duplicates (processing/rules.py); extracted JSON fields they read, from the typed text
    ruled = {c for r in config.rules for c in r.columns}
    rule_fields = {f.name: _json_field(F, T, _json_object(F, F.col(jc.column))[1], F.col(jc.column), f)
                   for jc in config.json_columns for f in jc.fields if f.name in ruled}
    rows = spark_rules.apply(F, Window, rows, config, kinds, rule_fields)

    # --- duplicates among the usable rows, "first" by input order --------------------------------------------------
    key_cols = [c for c in config.duplicate_key_columns if c in names]
    order = [F.col("_file"), F.col("_row")]
    first = F.row_number().over(Window.partitionBy("_usable", *names).orderBy(*order))
    rows = rows.withColumn("_dup_exact", F.col("_usable") & (first > 1))
    if key_cols:
        first_key = F.row_number().over(Window.partitionBy("_usable", *key_cols).orderBy(*order))
        rows = rows.withColumn("_dup_key", F.col("_usable") & (first_key > 1))
    else:
        rows = rows.withColumn("_dup_key", F.lit(False))
    if config.duplicate_drop != "none":
        drop = F.col(f"_dup_{config.duplicate_drop}")
        rows = rows.withColumn("_reason", F.when(drop, F.lit(f"duplicate_{config.duplicate_drop}"))
                               .otherwise(F.col("_reason")))
    rows = rows.withColumn("_kept", F.col("_reason") == "").persist(StorageLevel.MEMORY_AND_DISK)

    # One pass for every count: per file and reject reason, summed here (the groups are few).
    by_file_reason = [r.asDict() for r in rows.groupBy("_file", "_reason").agg(
        F.count(F.lit(1)).alias("parsed"),
        F.sum(F.col("_kept").cast("long")).alias("kept"),
        F.sum(F.col("_dup_exact").cast("long")).alias("dup_exact"),
        F.sum(F.col("_dup_key").cast("long")).alias("dup_key"),
        *[F.sum((F.col("_kept") & F.col(c).isNull()).cast("long")).alias(f"null_{j}") for j, c in enumerate(names)],
        *[F.sum((F.col("_kept") & F.col(f"_inv_{c}")).cast("long")).alias(f"inv_{c}") for c in invalid_cols],
    ).collect()]
    counts: dict[str, int] = {}
    per_file_parsed: dict[int, tuple[int, int]] = {}
    reason_counts: dict[str, int] = {}
    for r in by_file_reason:
        for key, value in r.items():
            if key not in ("_file", "_reason"):
                counts[key] = counts.get(key, 0) + int(value or 0)
        n_parsed, n_kept = per_file_parsed.get(r["_file"], (0, 0))
        per_file_parsed[r["_file"]] = (n_parsed + int(r["parsed"]), n_kept + int(r["kept"] or 0))
        if r["_reason"]:
            for part in r["_reason"].split(";"):
                reason_counts[part] = reason_counts.get(part, 0) + int(r["parsed"])
    unparsed_per_file = dict(raw.filter(F.col("_corrupt").isNotNull()).groupBy("_file").count().collect())
    if unparsed_per_file:
        reason_counts["parse_error:wrong_field_count"] = sum(unparsed_per_file.values())
    reason_counts = dict(sorted(reason_counts.items()))
    counts.setdefault("parsed", 0)
    counts.setdefault("kept", 0)
    counts.setdefault("dup_exact", 0)
    counts.setdefault("dup_key", 0)
    rows_in = counts["parsed"] + sum(unparsed_per_file.values())
    if rows_in == 0:
        raise EmptyInputError("no data rows in the input (header only): " + ", ".join(f.path.name for f in files))
    rows_out = int(counts["kept"] or 0)
    dup_exact, dup_key = int(counts["dup_exact"] or 0), int(counts["dup_key"] or 0)
    dropped = 0 if config.duplicate_drop == "none" else (dup_exact if config.duplicate_drop == "exact" else dup_key)
    exact = rows_out <= max_rows
    sampling: dict[str, Any] | None = None if exact else {
        "rows": rows_out, "sample_rows": rows_out, "rate": 1.0, "delta": 0.0,
        "rank_error": 1.0 / APPROX_ACCURACY, "method": "percentile_approx", "accuracy": APPROX_ACCURACY,
        "groups": {}, "imputation": {}}

    col_metrics: dict[str, dict[str, Any]] = {}
    for j, c in enumerate(names):
        inv = int(counts.get(f"inv_{c}") or 0)
        col_metrics[c] = {"type": kinds[c], "declared": c in config.columns,
                          "missing_before": int(counts.get(f"null_{j}") or 0) - inv, "invalid": inv}

    kept = rows.filter(F.col("_kept"))
    pre = kept.select("_file", "_row", *names)

    # --- imputation ------------------------------------------------------------------------------------------------
    def median_of(col: Any) -> Any:
        return F.percentile(col, 0.5) if exact else F.percentile_approx(col, 0.5, APPROX_ACCURACY)

    imputation: dict[str, Any] = {}
    present = {r.column: int(rows_out - col_metrics[r.column]["missing_before"] - col_metrics[r.column]["invalid"])
               for r in config.imputations}
    stats = [(spark_features.imputation_statistic(F, r.column, kinds[r.column], median_of)
              if r.strategy == "median" and kinds[r.column] in NEW_TYPES
              else median_of(F.col(r.column).cast("double")) if r.strategy == "median"
              else F.avg(F.col(r.column).cast("double"))).alias(f"stat_{j}")
             for j, r in enumerate(config.imputations) if r.strategy in ("median", "mean") and present[r.column]]
    stat_values = pre.agg(*stats).collect()[0].asDict() if stats else {}
    for j, rule in enumerate(config.imputations):
        c, kind = rule.column, kinds[rule.column]
        info: dict[str, Any]
        if rule.strategy == "constant":
            info = {"strategy": "constant", "value": rule.value, "computed": None, "source": "constant"}
        elif present[c] == 0:
            info = {"strategy": rule.strategy, "value": rule.fallback, "computed": None,
                    "source": "fallback" if rule.fallback is not None else "none"}
        else:
            if rule.strategy in ("median", "mean"):
                computed: Any = float(stat_values[f"stat_{j}"])
                if rule.strategy == "median" and sampling is not None:
                    sampling["imputation"][c] = present[c]
            else:  # most frequent; ties go to the smallest value
                value_of = spark_features.most_frequent_value(F, c, kind).alias("_value")
                top = (pre.filter(F.col(c).isNotNull()).select(value_of).groupBy("_value").count()
                       .orderBy(F.col("count").desc(), F.col("_value").asc()).limit(1).collect()[0])
                computed = top["_value"]
            fill_value = round(computed) if kind == "integer" and isinstance(computed, float) else computed
            info = {"strategy": rule.strategy, "value": fill_value, "computed": computed, "source": "statistic"}
            if kind in NEW_TYPES:
                info = spark_features.imputation_info(rule.strategy, kind, computed)
        missing = col_metrics[c]["missing_before"] + col_metrics[c]["invalid"]
        info["filled"] = missing if info["value"] is not None else 0
        imputation[c] = info

    cleaned = spark_features.missing_flags(F, pre, config)  # the missing indicators' view: before imputation
    # group statistics read imputed columns' values before imputation (values: observed, or `missing`)
    cleaned = cleaned.select("*", *[F.col(c).alias(f"_obs_{c}") for c in observed_columns(config)])
    for rule in config.imputations:
        value = imputation[rule.column]["value"]
        if value is not None:
            kind = kinds[rule.column]
            lit = F.lit(int(value)).cast("long") if kind == "integer" else (
                F.lit(float(value)) if kind == "float" else spark_features.fill_literal(F, kind, value)
                if kind in NEW_TYPES else F.lit(str(value)))
            cleaned = cleaned.withColumn(rule.column, F.coalesce(F.col(rule.column), lit))

    # --- JSON fields and derived features ------------------------------------------------------------------------
    transformed = cleaned
    for jc in config.json_columns:
        text = F.col(jc.column)
        valid, is_object = _json_object(F, text)
        transformed = (transformed.withColumn(f"_json_valid_{jc.column}", valid)
                       .withColumn(f"_json_object_{jc.column}", is_object))
        for field in jc.fields:
            transformed = transformed.withColumn(field.name, _json_field(F, T, F.col(f"_json_object_{jc.column}"),
                                                                         text, field))
    bin_edges: dict[str, list[float]] = {}  # quantile bins' edges (processing/spark/features.py)
    configured = {d.name: d.bins for d in config.derived}
    for d in config.derived:
        if d.kind == "string_length":
            transformed = transformed.withColumn(d.name, F.length(F.col(d.source)).cast("long"))
        elif d.kind == "bins" and d.bins is not None and d.bins.quantiles is None:
            assert d.bins is not None
            transformed = transformed.withColumn(d.name, _bins_expr(F, F.col(d.source).cast("double"), d.bins))
            transformed = transformed.withColumn(f"_outside_{d.name}", _outside_expr(F, F.col(d.source).cast("double"),
                                                                                       d.bins))
        else:  # issue 14's kinds, quantile bins (their edges computed here, after the features before them)
            transformed = spark_features.derive(F, transformed, d, config, _bins_expr, _outside_expr, bin_edges,
                                                exact, APPROX_ACCURACY)
    config = spark_features.resolved_config(config, bin_edges)
    transformed = transformed.persist(StorageLevel.MEMORY_AND_DISK)

    aggs = [F.sum(F.col(c).isNull().cast("long")).alias(f"after_{j}") for j, c in enumerate(names)]
    for jc in config.json_columns:
        aggs += [F.sum(F.col(jc.column).isNotNull().cast("long")).alias(f"jnm_{jc.column}"),
                 F.sum((F.col(jc.column).isNotNull() & ~F.col(f"_json_valid_{jc.column}")).cast("long"))
                 .alias(f"jinv_{jc.column}"),
                 F.sum((F.col(f"_json_valid_{jc.column}") & ~F.col(f"_json_object_{jc.column}")).cast("long"))
                 .alias(f"jno_{jc.column}")]
        aggs += [F.sum(F.col(f.name).isNotNull().cast("long")).alias(f"jf_{f.name}") for f in jc.fields]
    for d in config.derived:
        aggs.append(F.sum(F.col(d.name).isNull().cast("long")).alias(f"dm_{d.name}"))
        if d.kind == "missing_indicator":
            aggs.append(F.sum(F.col(d.name).cast("long")).alias(f"dt_{d.name}"))
        if d.kind == "bins":
            assert d.bins is not None
            aggs.append(F.sum(F.col(f"_outside_{d.name}").cast("long")).alias(f"do_{d.name}"))
            labels = [*d.bins.labels, *([d.bins.outside] if d.bins.outside is not None else [])]
            aggs += [F.sum((F.col(d.name) == F.lit(lab)).cast("long")).alias(f"dl_{d.name}_{k}")
                     for k, lab in enumerate(labels)]
    group_cols = sorted({c for g in config.group_statistics for c in g.group_by})
    numeric_cols = [c for c in names if kinds[c] in NUMERIC_TYPES] + spark_features.numeric_features(config)
    for c in group_cols:
        aggs += [F.countDistinct(F.col(c)).alias(f"gd_{c}"), F.sum(F.col(c).isNull().cast("long")).alias(f"gm_{c}")]
    for c in numeric_cols:
        x = F.col(c).cast("double")
        aggs += [F.count(x).alias(f"nc_{c}"), F.min(x).alias(f"nmin_{c}"), F.max(x).alias(f"nmax_{c}"),
                 F.avg(x).alias(f"nmean_{c}")]
    agg = transformed.agg(*aggs).collect()[0].asDict() if aggs else {}

    def n(key: str) -> int:
        return int(agg.get(key) or 0)

    for j, c in enumerate(names):
        col_metrics[c]["missing_after"] = n(f"after_{j}")
    json_metrics: dict[str, Any] = {}
    for jc in config.json_columns:
        inv, no = n(f"jinv_{jc.column}"), n(f"jno_{jc.column}")
        json_metrics[jc.column] = {
            "non_missing": n(f"jnm_{jc.column}"), "malformed": inv + no, "invalid_syntax": inv, "not_object": no,
            "malformed_rate": rate(inv + no, n(f"jnm_{jc.column}")),
            "fields": {f.name: {"path": ".".join(f.path), "extracted": n(f"jf_{f.name}"),
                                "missing": rows_out - n(f"jf_{f.name}")} for f in jc.fields}}
    derived_metrics: dict[str, Any] = {}
    for d in config.derived:
        extra = spark_features.derived_metrics(d, configured[d.name], n, bin_edges, not exact)
        if d.kind == "string_length":
            derived_metrics[d.name] = {"kind": d.kind, "source": d.source, "missing": n(f"dm_{d.name}")}
        elif d.kind != "bins" and extra is not None:
            derived_metrics[d.name] = extra
        else:
            assert d.bins is not None
            label_order = [*d.bins.labels, *([d.bins.outside] if d.bins.outside is not None else [])]
            derived_metrics[d.name] = {"kind": d.kind, "source": d.source, "outside_bins": n(f"do_{d.name}"),
                                       "missing": n(f"dm_{d.name}"),
                                       "counts": {lab: n(f"dl_{d.name}_{k}") for k, lab in enumerate(label_order)}}
            derived_metrics[d.name].update(extra or {})
            if extra is not None and not exact:
                sampling = sampling or {}
                sampling.setdefault("bins", {})[d.name] = {"values": n(f"nc_{d.source}"),
                                                           "rank_error": 1.0 / APPROX_ACCURACY}
    group_metrics = {c: {"distinct": n(f"gd_{c}"), "missing": n(f"gm_{c}")} for c in group_cols}
    numeric: dict[str, Any] = {}
    for c in numeric_cols:
        count = n(f"nc_{c}")
        numeric[c] = ({"count": 0, "min": None, "max": None, "mean": None} if count == 0 else
                      {"count": count, "min": _finite(agg[f"nmin_{c}"]), "max": _finite(agg[f"nmax_{c}"]),
                       "mean": _finite(agg[f"nmean_{c}"])})

    # --- group statistics ------------------------------------------------------------------------------------------
    statistics = {}
    for g in config.group_statistics:
        statistics[g.name] = _group_statistics(F, transformed, g, config, kinds, median_of, exact)
        if sampling is not None:
            sizes = statistics[g.name]
            sampling["groups"][g.name] = [{"group": {k: r[k] for k in g.group_by}, "rows": r["rows"],
                                           "sampled": r["rows"], "rank_error": 1.0 / APPROX_ACCURACY}
                                          for r in sizes]

    # --- outputs ---------------------------------------------------------------------------------------------------
    for folder in OUTPUT_FOLDERS:
        (output_dir / folder).mkdir(parents=True, exist_ok=True)
    file_names = [f.path.name for f in files]
    file_name = F.element_at(F.array(*[F.lit(x) for x in file_names]), F.col("_file") + 1)
    derived_names = [f.name for jc in config.json_columns for f in jc.fields] + [d.name for d in config.derived]
    written = {
        "cleaned": [_write(cleaned.select("_file", "_row", *names), output_dir, "cleaned", fmt, root=data_root)],
        "transformed": [_write(transformed.select("_file", "_row", *names, *derived_names), output_dir,
                               "transformed", fmt, root=data_root)],
    }
    rejected_parsed = rows.filter(~F.col("_kept")).select(
        file_name.alias(FILE_COL), F.col("_row").alias(ROW_COL), F.col("_reason").alias(REASON_COL),
        F.lit(None).cast("string").alias(RAW_LINE_COL),
        *[F.col(f"_raw_{j}").alias(c) for j, c in enumerate(names)],
        F.col("_file"), F.lit(0).alias("_unparsed"), F.col("_row").alias("_order"))
    unparsed = raw.filter(F.col("_corrupt").isNotNull()).select(
        file_name.alias(FILE_COL), F.lit(None).cast("long").alias(ROW_COL),
        F.lit("parse_error:wrong_field_count").alias(REASON_COL), F.col("_corrupt").alias(RAW_LINE_COL),
        *[F.lit(None).cast("string").alias(c) for c in names],
        F.col("_file"), F.lit(1).alias("_unparsed"), F.col("_pos").alias("_order"))
    rejected = rejected_parsed.unionByName(unparsed)
    # Input order; with unparsable lines, files by name, each file's parsed rows before its unparsable lines.
    sort = ([FILE_COL, "_file", "_unparsed", "_order"] if unparsed_per_file else ["_file", "_order"])
    written["rejected"] = [_write(rejected, output_dir, "rejected", fmt, order=sort,
                                  drop=["_file", "_unparsed", "_order"], root=data_root)]
    headers = {g.name: [*g.group_by, "rows", *(f"{col}_{fn}" for col, fns in g.aggregations for fn in fns)]
               for g in config.group_statistics}
    written["statistics"] = _write_statistics(output_dir, statistics, headers)
    written[QUALITY] = [output_dir / QUALITY / METRICS_FILE]
    outputs = {k: [str(p.relative_to(output_dir)) for p in v] for k, v in written.items()}

    per_file = []
    for i, f in enumerate(files):
        parsed_n, kept_n = per_file_parsed.get(i, (0, 0))
        errors = int(unparsed_per_file.get(i, 0))
        entry = {"file": f.path.name, "path": str(f.path), "format": f.kind, "size_bytes": f.size,
                 "sha256": f.sha256, "rows_in": int(parsed_n) + errors, "rows_out": int(kept_n or 0),
                 "rows_rejected": int(parsed_n) + errors - int(kept_n or 0), "parse_errors": errors}
        per_file.append(entry)

    drift_batch = _drift_batch(F, pre, config, kinds, rows_out, max_rows, sampling)
    rule_tally = spark_rules.tally(F, rows, config, kinds)
    raw.unpersist()
    rows.unpersist()
    transformed.unpersist()
    return _finish(spark, output_dir, config, fmt, context, baseline, opts, started, rows_in, rows_out, names,
                   col_metrics, json_metrics, per_file, dup_exact, dup_key, key_cols, dropped, imputation,
                   derived_metrics, group_metrics, numeric, outputs, drift_batch, reason_counts, sampling,
                   rule_tally)


# ---------------------------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------------------------


def _json_object(F: Any, text: Any) -> tuple[Any, Any]:
    """(valid JSON, a JSON object) of a JSON column's text, as ``json.loads`` judges it."""
    wrapped = F.concat(F.lit('{"v":'), text, F.lit(f',"{END_KEY}":1}}'))
    check = F.from_json(wrapped, f"struct<v:string,{END_KEY}:int>", {"allowSingleQuotes": "false"})
    valid = text.isNotNull() & check[END_KEY].isNotNull()
    return valid, valid & text.rlike(JSON_WS + r"\{")


def _json_field(F: Any, T: Any, is_object: Any, text: Any, field: Any) -> Any:
    """An extracted JSON field (``JsonField``) of a JSON column's text, as ``jsonx.extract`` gives it."""
    found = F.when(is_object, text)
    for key in field.path:
        found = F.from_json(found, T.StructType([T.StructField(key, T.StringType())]),
                            {"allowSingleQuotes": "false"})[key]
    # Jackson writes a bare NaN/Infinity as a quoted string where json.dumps writes it bare.
    return F.when(found.isin(*NON_FINITE), F.regexp_replace(found, '^"|"$', "")).otherwise(found)


def _finite(value: Any) -> Any:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _bin_index(F: Any, x: Any, bins: Any) -> Any:
    """numpy ``searchsorted`` as ``transform.bin_values`` uses it: the edge index each value falls before."""
    edges = list(bins.edges)
    expr = F.lit(len(edges))
    for i in range(len(edges) - 1, -1, -1):  # first i with edges[i] >= x (right-closed) / > x (left-closed)
        cond = (F.lit(edges[i]) >= x) if bins.closed == "right" else (F.lit(edges[i]) > x)
        expr = F.when(cond, F.lit(i)).otherwise(expr)
    if bins.include_lowest:
        expr = F.when(x == F.lit(edges[0]), F.lit(1)).otherwise(expr)
    return expr


def _inside(F: Any, x: Any, bins: Any) -> Any:
    idx = _bin_index(F, x, bins)
    return x.isNotNull() & (idx != 0) & (idx != len(bins.edges))


def _bins_expr(F: Any, x: Any, bins: Any) -> Any:
    idx = _bin_index(F, x, bins)
    labels = F.array(*[F.lit(label) for label in bins.labels])
    outside = F.lit(bins.outside) if bins.outside is not None else F.lit(None).cast("string")
    return (F.when(x.isNull(), F.lit(None).cast("string"))
            .when(_inside(F, x, bins), F.element_at(labels, idx))
            .otherwise(outside))


def _outside_expr(F: Any, x: Any, bins: Any) -> Any:
    return x.isNotNull() & ~_inside(F, x, bins)


def _group_statistics(F: Any, frame: Any, g: Any, config: DatasetConfig, kinds: dict[str, str],
                      median_of: Any, exact: bool) -> list[dict[str, Any]]:
    """``transform.group_statistics`` in Spark: rows per group, then ``<column>_<aggregation>``; groups sorted by key
    (bins features by label order), a missing key last. ``values: observed`` reads the ``_obs_<column>`` copies of
    imputed columns (their values before imputation); percentiles ``pNN`` as medians are computed."""
    aggs = [F.count(F.lit(1)).alias("rows")]
    int_like = {c for c, k in kinds.items() if k == "integer"} | spark_features.int_features(config)
    observed = set(observed_columns(config))
    for col, funcs in g.aggregations:
        before = F.col(f"_obs_{col}") if col in observed else F.col(col)
        for fn in funcs:
            x = before if g.values == "observed" and col not in g.group_by else F.col(col)
            name = f"{col}_{fn}"
            if fn == "missing":
                aggs.append(F.sum(before.isNull().cast("long")).alias(name))
            elif fn[0] == "p" and fn[1:].isdigit():
                q = int(fn[1:]) / 100
                aggs.append((F.percentile(x.cast("double"), q) if exact
                             else F.percentile_approx(x.cast("double"), q, APPROX_ACCURACY)).alias(name))
            elif fn == "count":
                aggs.append(F.count(x).alias(name))
            elif fn == "size":
                aggs.append(F.count(F.lit(1)).alias(name))
            elif fn == "sum":
                aggs.append(F.coalesce(F.sum(x), F.lit(0)).alias(name))
            elif fn == "mean":
                aggs.append(F.avg(x.cast("double")).alias(name))
            elif fn == "median":
                aggs.append(median_of(x.cast("double")).alias(name))
            elif fn in ("min", "max"):
                aggs.append((F.min(x) if fn == "min" else F.max(x)).alias(name))
            elif fn == "std":
                aggs.append(F.stddev_samp(x.cast("double")).alias(name))
            elif fn == "nunique":
                aggs.append(F.countDistinct(x).alias(name))
    keys = list(g.group_by)
    result = [r.asDict() for r in frame.groupBy(*keys).agg(*aggs).collect()]
    bins_order = {d.name: [*d.bins.labels, *([d.bins.outside] if d.bins.outside is not None else [])]
                  for d in config.derived if d.kind == "bins" and d.bins is not None}

    def sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for k in keys:
            v = row[k]
            if v is None:
                out.append((1, 0))
            elif k in bins_order:
                out.append((0, bins_order[k].index(v)))
            else:
                out.append((0, v))
        return tuple(out)

    result.sort(key=sort_key)
    order = [*keys, "rows", *(f"{col}_{fn}" for col, fns in g.aggregations for fn in fns)]
    result = [{k: row[k] for k in order} for row in result]
    for row in result:
        for col, funcs in g.aggregations:
            if col in int_like:
                for fn in ("sum", "min", "max"):
                    if f"{col}_{fn}" in row and row[f"{col}_{fn}"] is not None:
                        row[f"{col}_{fn}"] = int(row[f"{col}_{fn}"])
            for fn in funcs:
                v = row[f"{col}_{fn}"]
                if isinstance(v, float) and not math.isfinite(v):
                    row[f"{col}_{fn}"] = None
    return result


def _write_statistics(output_dir: Path, statistics: dict[str, list[dict[str, Any]]],
                      headers: dict[str, list[str]]) -> list[Path]:
    written = []
    for name, rows in statistics.items():
        folder = output_dir / "statistics"
        path = folder / f"{name}.csv"
        header = headers[name]
        lines = [",".join(_csv_cell(h) for h in header)]
        lines += [",".join(_csv_cell(row[h]) for h in header) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
        jpath = folder / f"{name}.json"
        write_json({"name": name, "rows": [{k: spark_features.statistics_value(v) for k, v in row.items()}
                                           for row in rows]}, jpath)
        written.append(jpath)
    return written


def _csv_cell(value: Any) -> str:
    """A statistics CSV cell as the default engine writes it (processing/csvout.py): text quoted, numbers bare (a
    whole float with its ``.0``), null empty."""
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date):  # dates and datetimes bare, as the default engine's CSV writer
        return str(spark_features.statistics_value(value))
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e14:
        return f"{int(value)}.0"  # a whole float keeps its decimal (the default engine's processing/csvout.py)
    return repr(value)


def _write(frame: Any, output_dir: Path, stem: str, fmt: str, *, order: list[str] | None = None,
           drop: list[str] | None = None, root: str | None = None) -> Path:
    """One file ``<stem>/<stem>.<fmt>`` in input order (one partition, sorted), as the default engine writes.

    ``root``: a URI: the file is written there (``<root>/<stem>/<stem>.<fmt>``) through Spark's writer and Hadoop's
    FileSystem API; the returned local path (under ``output_dir``) only names it."""
    order = order or ["_file", "_row"]
    drop = drop or ["_file", "_row"]
    out = frame.repartition(1).sortWithinPartitions(*order).drop(*drop)
    if fmt == "csv":  # datetimes as the default engine writes them (processing/spark/features.py)
        from pyspark.sql import functions as F

        out = spark_features.csv_ready(F, out)
    else:  # Parquet timestamps as timestamp[us, tz=UTC] (Spark's default, INT96, reads back without a zone)
        out.sparkSession.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    if root is not None:
        tmp_uri = hadoopfs.join(root, stem, f"_{stem}.spark")
        remote_writer = out.write.mode("overwrite")
        if fmt == "csv":
            remote_writer.option("header", "true").option("escape", '"').csv(tmp_uri)
        else:
            remote_writer.parquet(tmp_uri)
        remote_parts = [u for u in hadoopfs.list_files(tmp_uri) if u.rsplit("/", 1)[-1].startswith("part-")]
        if len(remote_parts) != 1:  # pragma: no cover - one partition writes one part
            raise RuntimeError(f"{stem}: expected one part file, got {len(remote_parts)}")
        hadoopfs.rename(remote_parts[0], hadoopfs.join(root, stem, f"{stem}.{fmt}"))
        hadoopfs.delete(tmp_uri)
        return output_dir / stem / f"{stem}.{fmt}"
    tmp = output_dir / stem / f"_{stem}.spark"
    writer = out.write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", "true").option("escape", '"').csv(str(tmp))
    else:
        writer.parquet(str(tmp))
    parts = sorted(p for p in tmp.iterdir() if p.name.startswith("part-"))
    target = output_dir / stem / f"{stem}.{fmt}"
    if len(parts) != 1:  # pragma: no cover - one partition writes one part
        raise RuntimeError(f"{stem}: expected one part file, got {len(parts)}")
    parts[0].replace(target)
    shutil.rmtree(tmp)
    return target


def _drift_batch(F: Any, pre: Any, config: DatasetConfig, kinds: dict[str, str], rows_out: int, max_rows: int,
                 sampling: dict[str, Any] | None) -> Any:
    """The drift columns' values before imputation, in input order, as the small pandas frame ``gate.finish``
    profiles: all output rows while they fit the row budget; beyond it a deterministic uniform sample of about
    budget rows (a hash of the row position, as the streaming path samples). Collected as rows, not with Arrow."""
    import pandas as pd

    cols = [c for c in (*config.drift.numeric, *config.drift.categorical) if c in kinds]
    frame = pre.select("_file", "_row", *cols)
    if sampling is not None:
        rate = min(1.0, max_rows / rows_out)
        bucket = F.pmod(F.xxhash64(F.col("_file"), F.col("_row")), F.lit(1 << 30)) / float(1 << 30)
        frame = frame.filter(bucket < rate)
        sampling["rate"] = rate
    data = frame.orderBy("_file", "_row").select(*cols).collect()
    out = {}
    for j, c in enumerate(cols):
        values = [r[j] for r in data]
        if kinds[c] == "integer":
            out[c] = pd.array(values, dtype="Int64")
        elif kinds[c] == "float":
            out[c] = pd.array([float("nan") if v is None else v for v in values], dtype="float64")
        else:
            out[c] = pd.array(values, dtype="object")
    batch = pd.DataFrame(out, columns=cols)
    if sampling is not None:
        sampling["sample_rows"] = len(batch)
    return batch


def library_versions() -> dict[str, str]:
    import pyspark

    return {"python": platform.python_version(), "pyspark": pyspark.__version__}


def _finish(spark: Any, output_dir: Path, config: DatasetConfig, fmt: str, context: dict[str, Any],
            baseline: Path | None, opts: RunOptions, started: float, rows_in: int, rows_out: int, names: list[str],
            col_metrics: dict[str, Any], json_metrics: dict[str, Any], per_file: list[dict[str, Any]], dup_exact: int,
            dup_key: int, key_cols: list[str], dropped: int, imputation: dict[str, Any],
            derived_metrics: dict[str, Any],
            group_metrics: dict[str, Any], numeric: dict[str, Any], outputs: dict[str, list[str]], drift_batch: Any,
            reason_counts: dict[str, int], sampling: dict[str, Any] | None,
            rule_tally: Tally | None = None) -> dict[str, Any]:
    """metrics.json built by ``processing.metricsdoc`` as for the default engine (same keys), then ``gate.finish``."""
    metrics = metricsdoc.build(
        started=started, context=context, config=config, fmt=fmt, code_version=opts.code_version,
        libraries={**library_versions(), "spark": spark.version},
        library_drift=[],  # processing/requirements.txt pins the default engine's libraries, not Spark's
        rows_in=rows_in, rows_out=rows_out, names=names, col_metrics=col_metrics, json_metrics=json_metrics,
        per_file=per_file, reason_counts=reason_counts, dup_exact=dup_exact, dup_key=dup_key, key_cols=key_cols,
        dropped=dropped, imputation=imputation, derived_metrics=derived_metrics, group_metrics=group_metrics,
        numeric=numeric, outputs=outputs, mode="spark", sampling=sampling)
    rule_tally = rule_tally or Tally(config.rules)
    metrics["rows"]["rejected_by_rules"] = rule_tally.rejected_rows
    metrics["rules"] = results(rule_tally, rows_out, col_metrics, json_metrics, config.rules)
    gate.finish(metrics, output_dir, config, drift_batch, metricsdoc.json_presence(json_metrics, rows_out), baseline)
    write_json(metrics, output_dir / QUALITY / METRICS_FILE)
    return metrics
