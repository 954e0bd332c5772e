"""Publish CloudWatch metrics for a finished processing job (design.md Contract 3).

Invoked directly by an EventBridge rule on "SageMaker Processing Job State Change" (terminal states).
Idempotent: every datapoint is stamped with the job's end time, so a duplicate event publishes the
same datapoints again and alarms on the ``Maximum`` statistic cannot change outcome.
Standard library and boto3 only: this file is deployed as-is with ``Code.from_asset``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client

# summary key -> (metric name, unit). Rates are ratios, published with unit None.
SUMMARY_METRICS: dict[str, tuple[str, str]] = {
    "rows_in": ("RowsIn", "Count"),
    "rows_out": ("RowsOut", "Count"),
    "rows_rejected": ("RowsRejected", "Count"),
    "missing_values_before": ("MissingValuesBefore", "Count"),
    "missing_values_after": ("MissingValuesAfter", "Count"),
    "missing_rate_after": ("MissingRateAfter", "None"),
    "rejected_rate": ("RejectedRate", "None"),
    "duplicate_rows_exact": ("DuplicateRowsExact", "Count"),
    "duplicate_rows_key": ("DuplicateRowsKey", "Count"),
    "duplicate_rate": ("DuplicateRate", "None"),
    "malformed_json": ("MalformedJson", "Count"),
    "malformed_json_rate": ("MalformedJsonRate", "None"),
    "invalid_values": ("InvalidValues", "Count"),
    "processing_seconds": ("ProcessingSeconds", "Seconds"),
}
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
QUALITY_OUTPUT_NAME = "quality"
METRICS_FILE = "metrics.json"
MAX_METRICS_BYTES = 5 * 1024 * 1024  # metrics.json is a few KB; refuse to buffer anything absurd
MAX_DATUMS_PER_CALL = 1000  # PutMetricData limit (and 1 MB per request; ours are tiny)
DATASET_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
JOB_SUFFIX_RE = re.compile(r"-[0-9a-f]{16}$")
UNKNOWN_DATASET = "unknown"
# S3 errors that mean "this file cannot be read" (a MetricsUnavailable datapoint, not a retry).
UNREADABLE_S3_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "AccessDenied", "403", "404", "InvalidObjectState"})

LOGGER = logging.getLogger("dq.metrics")


class SettingsError(ValueError):
    """An environment variable is missing or invalid (names the variable)."""


class MetricsUnavailableError(Exception):
    """metrics.json is missing, unreadable or corrupt; the message says why."""


@dataclass(frozen=True)
class Settings:
    """``NAMESPACE`` (CloudWatch namespace) and ``JOB_PREFIX`` (our jobs are ``<JOB_PREFIX>-*``)."""

    namespace: str
    job_prefix: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate the settings.

        Raises:
            SettingsError: naming the first missing or invalid variable.
        """
        namespace = environ.get("NAMESPACE", "").strip()
        if not namespace or len(namespace) > 255 or namespace.startswith(":") or namespace.startswith("AWS/"):
            raise SettingsError("environment variable NAMESPACE is missing or not a valid custom namespace")
        job_prefix = environ.get("JOB_PREFIX", "").strip()
        if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", job_prefix) or len(job_prefix) > 40:
            raise SettingsError(f"environment variable JOB_PREFIX={job_prefix!r} is missing or invalid")
        return cls(namespace=namespace, job_prefix=job_prefix)


@dataclass(frozen=True)
class JobOutcome:
    """What the state-change event tells us about one finished job."""

    job_name: str
    status: str
    dataset: str
    end_time: datetime
    quality_uri: str | None
    failure_reason: str


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """Epoch milliseconds (number or numeric string, as EventBridge sends) or an ISO-8601 string -> UTC."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc) if math.isfinite(value) else None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return datetime.fromtimestamp(float(text) / 1000, tz=timezone.utc)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def dataset_from_job_name(job_name: str, job_prefix: str) -> str:
    """``<prefix>-<dataset truncated>-<16 hex>`` -> dataset (may be truncated), or ``unknown``."""
    head = f"{job_prefix}-"
    if not job_name.startswith(head) or not JOB_SUFFIX_RE.search(job_name[len(head):]):
        return UNKNOWN_DATASET
    middle = JOB_SUFFIX_RE.sub("", job_name[len(head):], count=1)
    return middle if DATASET_RE.fullmatch(middle) else UNKNOWN_DATASET


def parse_outcome(event: Mapping[str, Any], settings: Settings) -> JobOutcome | None:
    """Read the job outcome from the event, or None if it is not a terminal event of one of our jobs."""
    detail = event.get("detail") or {}
    job_name = detail.get("ProcessingJobName")
    status = detail.get("ProcessingJobStatus")
    if not isinstance(job_name, str) or not job_name.startswith(f"{settings.job_prefix}-"):
        return None
    if status not in TERMINAL_STATUSES:
        return None
    environment = detail.get("Environment") or {}
    dataset = environment.get("DATASET") if isinstance(environment, dict) else None
    if not isinstance(dataset, str) or not DATASET_RE.fullmatch(dataset):
        dataset = dataset_from_job_name(job_name, settings.job_prefix)
    end_time = (
        parse_time(detail.get("ProcessingEndTime"))
        or parse_time(detail.get("LastModifiedTime"))
        or parse_time(event.get("time"))
        or datetime.now(timezone.utc)
    )
    quality_uri = None
    outputs = ((detail.get("ProcessingOutputConfig") or {}).get("Outputs")) or []
    for output in outputs if isinstance(outputs, list) else []:
        if isinstance(output, dict) and output.get("OutputName") == QUALITY_OUTPUT_NAME:
            uri = (output.get("S3Output") or {}).get("S3Uri")
            quality_uri = uri if isinstance(uri, str) and uri else None
    return JobOutcome(
        job_name=job_name,
        status=status,
        dataset=dataset,
        end_time=end_time,
        quality_uri=quality_uri,
        failure_reason=str(detail.get("FailureReason") or ""),
    )


def metrics_location(quality_uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix[/]`` -> (bucket, ``prefix/metrics.json``)."""
    if not quality_uri.startswith("s3://"):
        raise MetricsUnavailableError(f"quality output URI {quality_uri!r} is not an s3:// URI")
    bucket, _, prefix = quality_uri[len("s3://"):].partition("/")
    if not bucket:
        raise MetricsUnavailableError(f"quality output URI {quality_uri!r} has no bucket")
    prefix = prefix.rstrip("/")
    return bucket, f"{prefix}/{METRICS_FILE}" if prefix else METRICS_FILE


def summary_values(document: Any) -> tuple[dict[str, float], list[str]]:
    """The valid summary numbers of a metrics.json document, and the problems found.

    Raises:
        MetricsUnavailableError: the document has no ``summary`` object at all.
    """
    if not isinstance(document, dict) or not isinstance(document.get("summary"), dict):
        raise MetricsUnavailableError("metrics.json has no 'summary' object")
    summary = document["summary"]
    values: dict[str, float] = {}
    problems: list[str] = []
    for key in SUMMARY_METRICS:
        value = summary.get(key)
        if key not in summary:
            problems.append(f"summary.{key} is missing")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            problems.append(f"summary.{key}={value!r} is not a finite non-negative number")
        else:
            values[key] = float(value)
    return values, problems


def build_metric_data(
    outcome: JobOutcome, values: Mapping[str, float], metrics_unavailable: bool | None
) -> list[dict[str, Any]]:
    """All datapoints for one job, each stamped with the job's end time.

    Args:
        outcome: the job outcome.
        values: valid summary values (may be empty).
        metrics_unavailable: True/False to publish MetricsUnavailable 1/0, None to leave it out
            (failed or stopped jobs have no metrics file by design).
    """
    succeeded = outcome.status == "Completed"

    def datum(name: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": [{"Name": "Dataset", "Value": outcome.dataset}],
            "Timestamp": outcome.end_time,
            "Value": value,
            "Unit": unit,
        }

    data = [
        datum("JobSucceeded", 1.0 if succeeded else 0.0, "Count"),
        datum("JobFailed", 0.0 if succeeded else 1.0, "Count"),
    ]
    if metrics_unavailable is not None:
        data.append(datum("MetricsUnavailable", 1.0 if metrics_unavailable else 0.0, "Count"))
    for key, (name, unit) in SUMMARY_METRICS.items():
        if key in values:
            data.append(datum(name, values[key], unit))
    return data


def chunks(items: Sequence[dict[str, Any]], size: int = MAX_DATUMS_PER_CALL) -> list[list[dict[str, Any]]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------
# Side effects: clients, logging, the handler
# --------------------------------------------------------------------------------------------

_settings: Settings | None = None
_request_id = ""
cloudwatch_client: CloudWatchClient | None = None  # tests assign Stubber-wrapped clients here
s3_client: S3Client | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env(os.environ)
    return _settings


def _retry_config() -> Config:
    return Config(retries={"mode": "standard", "max_attempts": 5})


def get_cloudwatch() -> CloudWatchClient:
    global cloudwatch_client
    if cloudwatch_client is None:
        cloudwatch_client = boto3.client("cloudwatch", config=_retry_config())
    return cloudwatch_client


def get_s3() -> S3Client:
    global s3_client
    if s3_client is None:
        s3_client = boto3.client("s3", config=_retry_config())
    return s3_client


def _configure_logger() -> None:
    # One JSON object per line on stdout, whatever the runtime's log format, so Logs Insights parses it.
    if not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False


_configure_logger()


def log_decision(decision: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one decision as a JSON line."""
    record = {"level": logging.getLevelName(level), "decision": decision, "request_id": _request_id, **fields}
    LOGGER.log(level, json.dumps(record, ensure_ascii=False, default=str))


def read_metrics(quality_uri: str | None, s3: S3Client) -> Any:
    """Fetch and parse ``<quality_uri>/metrics.json``.

    Raises:
        MetricsUnavailableError: missing, unreadable, too large or not JSON.
        ClientError: transient or unexpected S3 errors (throttling, 5xx): let the invocation retry.
    """
    if not quality_uri:
        raise MetricsUnavailableError("the event lists no 'quality' output")
    bucket, key = metrics_location(quality_uri)
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in UNREADABLE_S3_CODES or code.startswith("KMS.") or status in (403, 404):
            raise MetricsUnavailableError(f"s3://{bucket}/{key}: {code} {err.get('Message', '')}".strip()) from exc
        raise
    body = response["Body"]
    try:
        if int(response.get("ContentLength") or 0) > MAX_METRICS_BYTES:
            raise MetricsUnavailableError(f"s3://{bucket}/{key} is larger than {MAX_METRICS_BYTES} bytes")
        raw = body.read(MAX_METRICS_BYTES + 1)
    finally:
        body.close()
    if len(raw) > MAX_METRICS_BYTES:
        raise MetricsUnavailableError(f"s3://{bucket}/{key} is larger than {MAX_METRICS_BYTES} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MetricsUnavailableError(f"s3://{bucket}/{key} is not valid JSON: {exc}") from exc


def process_event(
    event: Mapping[str, Any], settings: Settings, *, cloudwatch: CloudWatchClient, s3: S3Client
) -> dict[str, Any]:
    """Publish the metrics for one state-change event and return a summary of what was done."""
    outcome = parse_outcome(event, settings)
    detail = event.get("detail") or {}
    if outcome is None:
        log_decision("ignored", job_name=detail.get("ProcessingJobName"), status=detail.get("ProcessingJobStatus"),
                     reason="not a terminal state change of one of our jobs")
        return {"published": 0, "decision": "ignored"}
    base = {"job_name": outcome.job_name, "status": outcome.status, "dataset": outcome.dataset,
            "end_time": outcome.end_time.isoformat()}

    values: dict[str, float] = {}
    unavailable: bool | None = None
    if outcome.status == "Completed":
        try:
            values, problems = summary_values(read_metrics(outcome.quality_uri, s3))
        except MetricsUnavailableError as exc:
            problems = [str(exc)]
        unavailable = bool(problems)
        if problems:
            log_decision("metrics-unavailable", logging.WARNING, **base, quality_uri=outcome.quality_uri,
                         problems=problems)

    data = build_metric_data(outcome, values, unavailable)
    for chunk in chunks(data):
        cloudwatch.put_metric_data(Namespace=settings.namespace, MetricData=chunk)
    log_decision("published", **base, metrics=[d["MetricName"] for d in data],
                 failure_reason=outcome.failure_reason or None)
    return {"published": len(data), "decision": "published", "metrics_unavailable": unavailable}


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge rule target, asynchronous invocation)."""
    global _request_id
    _request_id = getattr(context, "aws_request_id", "") or ""
    return process_event(event, get_settings(), cloudwatch=get_cloudwatch(), s3=get_s3())
