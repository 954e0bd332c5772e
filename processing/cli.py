"""Command line: resolves SageMaker paths from OPT_ML_ROOT, runs the pipeline, writes the error report on failure.

The only module of the job that reads the environment: it turns flags and variables into arguments and one
``RunOptions`` (``run_options``) that ``pipeline.run`` passes down."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import contract
from processing import config as config_mod
from processing import rawfile
from processing.errors import ProcessingError
from processing.options import RunOptions

log = logging.getLogger("processing")
EXIT_MESSAGE_BYTES = 1000  # SageMaker keeps the first 1 KB (1024 bytes) of /opt/ml/output/message as ExitMessage


class SourceChangedError(ProcessingError):
    """The downloaded input is not the object version the job was started for (design.md Contract 1)."""


def check_source(input_path: Path, environ: Any = None) -> None:
    """Verify that the downloaded input has the size of the object version the job was started for (``SOURCE_SIZE``).

    The ``data`` input is the trigger's staged copy of exactly that version (design.md Contract 1), under a key of its
    own that nothing else writes, so the sizes always agree; a difference means the copy is not that version, and the
    job refuses to process it. Size only: the bucket uses SSE-KMS, and an SSE-KMS (or multipart) ETag is not the MD5
    of the content, so ``SOURCE_ETAG`` cannot be verified here. No ``SOURCE_SIZE`` (local runs) or a folder input: no
    check.

    Raises:
        SourceChangedError: the sizes differ.
    """
    env = os.environ if environ is None else environ
    _check_batch(input_path, env)
    expected = (env.get("SOURCE_SIZE") or "").strip()
    if not expected.isdigit() or not input_path.is_file():
        return
    actual = input_path.stat().st_size
    if actual != int(expected):
        uri = env.get("SOURCE_URI") or str(input_path)
        key = uri.split("/", 3)[3] if uri.startswith("s3://") and uri.count("/") >= 3 else uri
        version = env.get("SOURCE_VERSION_ID") or "(unversioned)"
        raise SourceChangedError(
            f"{key} is {actual} bytes as downloaded, the event's version {version} was {expected} bytes: the job's "
            f"staged copy is not that version")


def _check_batch(input_path: Path, env: Any) -> None:
    """A folder batch (design.md Contract 5): the input folder holds exactly the ``BATCH_PARTS`` files and
    ``BATCH_BYTES`` bytes the trigger staged (unset, or ``--input`` not a local folder, e.g. ``s3://``: no check).

    Raises:
        SourceChangedError: the count or the bytes differ.
    """
    parts = (env.get(contract.ENV_BATCH_PARTS) or "").strip()
    total = (env.get(contract.ENV_BATCH_BYTES) or "").strip()
    if not parts.isdigit() or not total.isdigit() or not input_path.is_dir():
        return
    files = rawfile.list_inputs(input_path)
    size = sum(f.stat().st_size for f in files)
    if len(files) != int(parts) or size != int(total):
        uri = env.get("SOURCE_URI") or str(input_path)
        raise SourceChangedError(
            f"the batch of {uri} is {len(files)} files and {size} bytes as downloaded, the trigger staged {parts} "
            f"files and {total} bytes: the job's input is not the staged batch")


def run_options(mode: str = "auto", environ: Mapping[str, str] | None = None) -> RunOptions:
    """How the run works, from the ``--mode`` flag and the environment (default ``os.environ``):

    - mode: ``--mode memory`` or ``--mode streaming`` wins; with ``--mode auto`` (the default) ``PROCESSING_MODE``
      decides when it is ``memory`` or ``streaming``; any other value of it (unset, empty, ``auto``, unknown) is
      ``auto``.
    - ``PROCESSING_STREAMING_THRESHOLD_BYTES``: ``auto``'s input-size threshold, an integer (unset or empty:
      derived from the memory available; not a number: ``ValueError``, an unexpected failure, exit 1).
    - ``PROCESSING_MAX_ROWS_IN_MEMORY``: streaming's row budget, a positive whole number, spaces around it ignored
      (unset or empty: derived from the memory available; anything else: ``ProcessingError``, exit 2). The rule is
      the contract's (``contract.max_rows_in_memory``), the one the CDK app and the trigger apply.
    - ``PROCESSING_WORK_DIR``: streaming's work folder (unset or empty: the output folder's parent).
    - ``CODE_VERSION``: recorded in metrics.json.

    Raises:
        ProcessingError: ``PROCESSING_MAX_ROWS_IN_MEMORY`` is not a positive whole number (named, with the value).
    """
    env = os.environ if environ is None else environ
    if mode == "auto":
        mode = env.get(contract.ENV_PROCESSING_MODE, "")
    threshold = env.get("PROCESSING_STREAMING_THRESHOLD_BYTES")
    try:  # the contract's one rule, also applied by the CDK app and the trigger
        budget = contract.max_rows_in_memory(env.get(contract.ENV_MAX_ROWS_IN_MEMORY))
    except contract.ContractError as exc:
        raise ProcessingError(str(exc)) from None
    return RunOptions(mode=mode if mode in contract.PROCESSING_MODES else contract.DEFAULT_PROCESSING_MODE,
                      streaming_threshold=int(threshold) if threshold else None,
                      max_rows=budget,
                      work_dir=Path(env["PROCESSING_WORK_DIR"]) if env.get("PROCESSING_WORK_DIR") else None,
                      code_version=env.get("CODE_VERSION") or None)


URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def path_or_uri(text: str) -> Path | str:
    """A local path, or a URI (``s3://...``, ``file://...``, any Hadoop file system) kept as text: only the Spark
    engine reads URIs (through Hadoop's FileSystem API); ``Path`` would fold ``s3://`` into ``s3:/``."""
    return text if URI_RE.match(text) else Path(text)


def opt_ml_root() -> Path:
    return Path(os.environ.get("OPT_ML_ROOT") or "/opt/ml")


def build_parser() -> argparse.ArgumentParser:
    root = opt_ml_root()
    parser = argparse.ArgumentParser(prog="python -m processing", description=__doc__)
    parser.add_argument("--input", type=path_or_uri, default=root / "processing" / "input" / "data",
                        help="input file or folder (CSV, gzip CSV, Parquet); "
                             "default $OPT_ML_ROOT/processing/input/data")
    parser.add_argument("--output", type=path_or_uri, default=root / "processing" / "output",
                        help="output folder; default $OPT_ML_ROOT/processing/output")
    parser.add_argument("--config", type=Path, default=None,
                        help="dataset config JSON; default processing/configs/<dataset>.json, else default.json")
    parser.add_argument("--dataset", default=None,
                        help="dataset name (selects the bundled config; recorded in metrics.json); default $DATASET, "
                             "else the --config file's name without .json, else 'default'")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet",
                        help="format of cleaned/, transformed/ and rejected/ (statistics are always CSV and JSON)")
    parser.add_argument("--mode", choices=contract.PROCESSING_MODES, default=contract.DEFAULT_PROCESSING_MODE,
                        help="memory, streaming (block by block, bounded memory) or auto "
                             "(streaming from 64 MiB of input, or sooner when memory is short); memory or streaming "
                             "here wins over env PROCESSING_MODE, "
                             "auto defers to it; see docs/processing.md")
    parser.add_argument("--baseline", type=path_or_uri, default=None,
                        help="baseline profile (an earlier run's quality/profile.json) to score drift against; "
                             "without it drift is reported as unavailable")
    parser.add_argument("--quarantine", type=path_or_uri, default=None,
                        help="where a batch failing the quality gate moves its data folders; default "
                             "<output>/quarantine (the default engine always uses that)")
    parser.add_argument("--engine", choices=("default", "spark"), default="default",
                        help="default (pandas/pyarrow, this machine) or spark (pyspark, local[*] here; needs "
                             "pyspark); see docs/processing.md \"The Spark engine\"")
    return parser


def dataset_name(flag: str | None, env: Mapping[str, str], config: Path | None) -> str:
    """The dataset's name: ``--dataset``, else ``$DATASET``, else the ``--config`` file's stem (the stack names a
    dataset's config ``<dataset>.json``) when it is a valid name, else ``default``."""
    if flag:
        return flag
    if env.get("DATASET"):
        return env["DATASET"]
    if config is not None and config_mod.DATASET_NAME.fullmatch(config.stem):
        return config.stem
    if config is not None:
        log.warning("dataset name: the config file's name %r is not a dataset name (%s); recorded as 'default'",
                    config.stem, config_mod.DATASET_NAME.pattern)
    return "default"


def _read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"unreadable": str(exc)}


def sagemaker_context() -> dict[str, Any]:
    """What the platform told the job: processingjobconfig.json and resourceconfig.json when present."""
    cfg = opt_ml_root() / "config"
    return {
        "sagemaker": {
            "opt_ml_root": str(opt_ml_root()),
            "processingjobconfig": _read_json_file(cfg / "processingjobconfig.json"),
            "resourceconfig": _read_json_file(cfg / "resourceconfig.json"),
        },
        "source": {"uri": os.environ.get("SOURCE_URI") or None,
                   "version_id": os.environ.get("SOURCE_VERSION_ID") or None},
    }


def write_error(output: Path | str, exc: BaseException, input_path: Path | str, dataset: str) -> None:
    """Write quality/error.json and, when the OPT_ML_ROOT folder exists, $OPT_ML_ROOT/output/message (one line)."""
    report = {
        "status": "failed",
        "error_type": type(exc).__name__,
        "expected": isinstance(exc, ProcessingError),
        "message": str(exc),
        "input": str(input_path),
        "dataset": dataset,
        "code_version": os.environ.get("CODE_VERSION") or None,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(report, indent=2, allow_nan=False, default=str) + "\n"
    try:
        if isinstance(output, str):  # a URI: only the Spark engine takes one, through Hadoop's FileSystem API
            from processing.spark import hadoopfs

            hadoopfs.write_text(f"{output.rstrip('/')}/{contract.QUALITY}/error.json", text)
        else:
            path = output / contract.QUALITY / "error.json"  # standard library only: the Spark image has no pyarrow
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except Exception as err:  # noqa: BLE001 - the report is best effort; the exit status and message still tell
        log.error("could not write error.json: %s", err)
    root = opt_ml_root()
    if root.is_dir():
        try:
            (root / "output").mkdir(parents=True, exist_ok=True)
            (root / "output" / "message").write_text(exit_message(exc) + "\n", encoding="utf-8")
        except OSError as err:
            log.error("could not write %s/output/message: %s", root, err)


def exit_message(exc: BaseException) -> str:
    """``ErrorClass: first line of the message``: what SageMaker reports as the job's ExitMessage.

    SageMaker keeps the first 1 KB of ``/opt/ml/output/message`` as ``ExitMessage`` (DescribeProcessingJob), and the
    metrics Lambda puts it into the failure notification. One line a person can act on: the error class and the
    first line of its message, whitespace collapsed, printable characters only, at most :data:`EXIT_MESSAGE_BYTES`
    bytes of UTF-8. The full report (input, dataset, code version, time) stays in ``quality/error.json``.
    """
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    encoded = text.encode("utf-8")
    if len(encoded) > EXIT_MESSAGE_BYTES:
        text = encoded[: EXIT_MESSAGE_BYTES - 3].decode("utf-8", errors="ignore") + "..."
    return text


def main_spark(args: argparse.Namespace) -> int:
    """``--engine spark``: the same config, checks, outputs and error reports, run by ``processing.spark`` (which
    imports pyspark; the default engine never imports it). ``--mode`` does not apply."""
    def run() -> dict[str, Any]:
        options = run_options("auto")
        cfg = config_mod.load(args.config, args.dataset)
        log.info("config %s (sha256 %s), engine spark", cfg.source, cfg.sha256[:12])
        if isinstance(args.input, Path):
            check_source(args.input)
        from processing import spark

        # Started by spark-submit (smspark-submit on SageMaker): PySpark connects to its JVM through this variable,
        # and the session must keep spark-submit's master and settings.
        session = spark.session(submitted=bool(os.environ.get("PYSPARK_GATEWAY_PORT")))
        log.info("spark %s, master %s", session.version, session.sparkContext.master)
        inputs = spark.list_inputs(args.input)  # local paths, or URIs listed through Hadoop's FileSystem API
        log.info("inputs: %s", ", ".join(str(p) for p in inputs))
        metrics: dict[str, Any] = spark.run(inputs, args.output, cfg, fmt=args.format,
                                            context={"dataset": args.dataset, **sagemaker_context()},
                                            baseline=args.baseline, options=options, quarantine=args.quarantine)
        return metrics

    return _reported(args, run, "done (spark)")


def _reported(args: argparse.Namespace, run: Callable[[], dict[str, Any]], done: str) -> int:
    """Run one engine; an error is logged and reported (quality/error.json and the SageMaker message file) and
    becomes the exit status (its own for an expected failure, 1 otherwise); success logs the summary and returns 0."""
    try:
        metrics = run()
    except ProcessingError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        write_error(args.output, exc, args.input, args.dataset)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - last resort: report, then fail the job
        log.error("unexpected failure:\n%s", traceback.format_exc())
        write_error(args.output, exc, args.input, args.dataset)
        return 1
    s = metrics["summary"]
    log.info("drift %s, quality gate %s", metrics["drift"]["status"], metrics["gate"]["status"])
    log.info("%s: rows_in=%d rows_out=%d rows_rejected=%d in %.2fs -> %s", done, s["rows_in"], s["rows_out"],
             s["rows_rejected"], s["processing_seconds"], args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the job (or, with ``suggest`` first, ``processing.suggest``); returns the exit status (0 ok, 2 expected
    failure, 1 unexpected failure)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["suggest"]:  # python -m processing suggest ...: a config suggested from the data
        from processing import suggest

        return suggest.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.dataset = dataset_name(args.dataset, os.environ, args.config)
    if args.engine == "spark":
        return main_spark(args)
    uris = [f"--{k} {v}" for k, v in vars(args).items() if k in ("input", "output", "baseline", "quarantine")
            and isinstance(v, str)]
    if uris or args.quarantine is not None:
        parser.error(f"{', '.join(uris) or '--quarantine'}: URIs and --quarantine are for --engine spark only; the "
                     "default engine reads and writes local folders (SageMaker copies them from and to S3)")
    from processing import pipeline  # imported after logging is set up: pandas import takes a moment

    log.info("library versions: %s", " ".join(f"{k}={v}" for k, v in pipeline.library_versions().items()))
    for drift in pipeline.library_drift():
        log.warning("library drift: %s %s is loaded, processing/requirements.txt pins %s; the image's libraries "
                    "changed (a rebuilt tag?): pin the image by digest (docs/infra.md) or update the pins",
                    drift["library"], drift["loaded"], drift["expected"])
    def run() -> dict[str, Any]:
        options = run_options(args.mode)
        cfg = config_mod.load(args.config, args.dataset)
        log.info("config %s (sha256 %s)", cfg.source, cfg.sha256[:12])
        check_source(args.input)
        inputs = rawfile.list_inputs(args.input)
        log.info("inputs: %s", ", ".join(str(p) for p in inputs))
        result = pipeline.run(inputs, args.output, cfg, fmt=args.format,
                              context={"dataset": args.dataset, **sagemaker_context()}, baseline=args.baseline,
                              options=options)
        return result.metrics

    return _reported(args, run, "done")
