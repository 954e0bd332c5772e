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
# Drift and gate keys (design.md Contract 4): published when present; metrics files written before they existed
# lack them, which is not a reason for MetricsUnavailable.
OPTIONAL_SUMMARY_METRICS: dict[str, tuple[str, str]] = {
    "drift_max_psi": ("DriftMaxPsi", "None"),
    "drifted_columns": ("DriftedColumns", "Count"),
    "drift_unavailable": ("DriftUnavailable", "Count"),
    "quality_gate_failed": ("QualityGateFailed", "Count"),
    "quality_gate_warned": ("QualityGateWarned", "Count"),
}
PROFILE_FILE = "profile.json"
BASELINE_FILE = "baseline.json"
PROFILE_SCHEMA_VERSION = 1
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
    data_bucket: str = ""  # "" disables baseline promotion
    baseline_prefix: str = "baselines/"

    def baseline_key(self, dataset: str) -> str:
        return f"{self.baseline_prefix}{dataset}/{BASELINE_FILE}"

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
        data_bucket = environ.get("DATA_BUCKET", "").strip()
        if "/" in data_bucket or len(data_bucket) > 63:
            raise SettingsError(f"environment variable DATA_BUCKET={data_bucket!r} must be a bucket name")
        baseline_prefix = environ.get("BASELINE_PREFIX", "").strip() or "baselines/"
        if baseline_prefix.startswith("/") or not baseline_prefix.endswith("/") or len(baseline_prefix) > 512:
            raise SettingsError(
                f"environment variable BASELINE_PREFIX={baseline_prefix!r} must not start with '/' and must end with '/'")
        return cls(namespace=namespace, job_prefix=job_prefix, data_bucket=data_bucket, baseline_prefix=baseline_prefix)


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
    for key in OPTIONAL_SUMMARY_METRICS:
        value = summary.get(key)
        if key in summary and not (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or not math.isfinite(value) or value < 0):
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
    for key, (name, unit) in {**SUMMARY_METRICS, **OPTIONAL_SUMMARY_METRICS}.items():
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
    result = {"published": len(data), "decision": "published", "metrics_unavailable": unavailable}
    if outcome.status == "Completed" and settings.data_bucket:  # DATA_BUCKET unset: promotion disabled
        # After publishing: if promotion raises (transient S3 error), the asynchronous retry publishes the same
        # datapoints again (idempotent) and retries the promotion.
        result["baseline"] = promote_baseline(outcome, values, settings, s3, base)
    return result


def promote_baseline(outcome: JobOutcome, values: Mapping[str, float], settings: Settings, s3: S3Client,
                     base: Mapping[str, Any]) -> str:
    """Copy the job's quality/profile.json to the dataset's baseline key when none exists (first batch wins).

    Only when the gate did not fail (``quality_gate_failed`` == 0 in the summary; files without the key are never
    promoted). ``PutObject`` with ``IfNoneMatch="*"``: S3 answers 412 PreconditionFailed when the baseline already
    exists (or 409 ConditionalRequestConflict while another conditional write is in flight): someone else won.

    Returns:
        ``promoted``, ``exists``, ``skipped`` or ``unreadable``.

    Raises:
        ClientError: transient or unexpected S3 errors (throttling, 5xx, access denied on the put).
    """
    key = settings.baseline_key(outcome.dataset)
    if not settings.data_bucket or outcome.dataset == UNKNOWN_DATASET or not outcome.quality_uri:
        reason = "DATA_BUCKET not set" if not settings.data_bucket else "dataset or quality output unknown"
        log_decision("baseline-skipped", **base, reason=reason)
        return "skipped"
    if values.get("quality_gate_failed") != 0.0:
        why = "gate failed" if values.get("quality_gate_failed") else "metrics.json has no quality_gate_failed"
        log_decision("baseline-skipped", **base, reason=why)
        return "skipped"
    bucket, metrics_key = metrics_location(outcome.quality_uri)
    profile_key = metrics_key[: -len(METRICS_FILE)] + PROFILE_FILE
    try:
        response = s3.get_object(Bucket=bucket, Key=profile_key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in UNREADABLE_S3_CODES or code.startswith("KMS.") or status in (403, 404):
            log_decision("baseline-skipped", logging.WARNING, **base, reason=f"s3://{bucket}/{profile_key}: {code}")
            return "unreadable"
        raise
    body = response["Body"]
    try:
        raw = body.read(MAX_METRICS_BYTES + 1)
    finally:
        body.close()
    try:
        profile = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_METRICS_BYTES else None
    except (UnicodeDecodeError, ValueError):
        profile = None
    if not isinstance(profile, dict) or profile.get("schema_version") != PROFILE_SCHEMA_VERSION \
            or not isinstance(profile.get("columns"), dict):
        log_decision("baseline-skipped", logging.WARNING, **base,
                     reason=f"s3://{bucket}/{profile_key} is not a schema-{PROFILE_SCHEMA_VERSION} profile")
        return "unreadable"
    try:
        s3.put_object(Bucket=settings.data_bucket, Key=key, Body=raw, ContentType="application/json",
                      IfNoneMatch="*")
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            log_decision("baseline-exists", **base, baseline_key=key, error_code=code)
            return "exists"
        raise
    log_decision("baseline-promoted", **base, baseline_key=key, profile=f"s3://{bucket}/{profile_key}")
    return "promoted"


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge rule target, asynchronous invocation)."""
    global _request_id
    _request_id = getattr(context, "aws_request_id", "") or ""
    return process_event(event, get_settings(), cloudwatch=get_cloudwatch(), s3=get_s3())
