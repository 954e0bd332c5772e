"""Publish CloudWatch metrics for a finished processing job (design.md Contracts 3 and 4).

Invoked directly by an EventBridge rule on "SageMaker Processing Job State Change" (terminal states).
Per job, in this order: complete the event from DescribeProcessingJob when it lacks what we need (the documented
event sample has no ``Environment`` and no ``ExitMessage``), publish the metrics (stamped with the publication time,
so a late delivery still lands in the alarms' current evaluation window), send one notification per failed/stopped
job or quarantined batch, write the ``_SUCCESS`` markers of a passed/warned batch, promote the first baseline, then
write the publish-once marker ``<quality>/_metrics_published``, unless the metrics were unavailable (then a
redelivery after the file is fixed re-reads it). A duplicate event that finds the marker does nothing; a failure
before the marker is written makes the retry do everything again (at worst published twice, never lost).
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient

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
# Publish-once marker, in the job's quality/ folder (never a data folder): written after everything else succeeded.
PUBLISHED_MARKER = "_metrics_published"
# HeadObject of the marker: 404 = absent; 403 = absent too (the role has no s3:ListBucket, so S3 answers 403 for a
# missing key). Anything else raises (retried).
MARKER_ABSENT = frozenset({"404", "403", "NoSuchKey", "NotFound", "AccessDenied", "Forbidden"})
CONDITIONAL_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
SUCCESS_MARKER = "_SUCCESS"
SUCCESS_FOLDERS = ("cleaned", "transformed")  # design.md Contract 4: a passed/warned batch's marker
QUARANTINE_OUTPUT_NAME = "quarantine"
MAX_NOTIFIED_VIOLATIONS = 10  # keep the notification concise; violations.json has all of them
SNS_SUBJECT_MAX = 100
TOPIC_ARN_RE = re.compile(r"arn:aws[a-z\-]*:sns:[a-z0-9\-]+:\d{12}:[A-Za-z0-9_\-]{1,256}")
# Container text (ExitMessage, first 1 KB of /opt/ml/output/message) and FailureReason in notifications and logs:
# printable characters only, one line, at most this many characters.
MAX_EXIT_MESSAGE_CHARS = 300
MAX_FAILURE_REASON_CHARS = 300
DATA_INPUT_NAME = "data"  # the trigger's ProcessingInput with the batch (possibly a per-job staging copy)
# Where the input URI in a notification came from (JobOutcome.input_from).
INPUT_FROM_EVENT = "event-environment"  # Environment.SOURCE_URI in the event: the uploaded object
INPUT_FROM_DESCRIBE = "describe-environment"  # Environment.SOURCE_URI from DescribeProcessingJob: the uploaded object
INPUT_FROM_DATA_INPUT = "job-data-input"  # the job's `data` input: what the job read (may be a staging copy)
# DescribeProcessingJob fields that complete an event lacking them (the documented sample has neither Environment
# nor ExitMessage; a hand-made redelivery may carry only the job name and status).
DESCRIBE_FIELDS = ("Environment", "ExitMessage", "FailureReason", "ProcessingOutputConfig", "ProcessingInputs",
                   "ProcessingEndTime")

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
    data_bucket: str = ""  # "" disables every S3 write: baseline promotion, _SUCCESS and publish-once markers
    baseline_prefix: str = "baselines/"
    alert_topic_arn: str = ""  # "" disables the per-job notifications

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
        alert_topic_arn = environ.get("ALERT_TOPIC_ARN", "").strip()
        if alert_topic_arn and not TOPIC_ARN_RE.fullmatch(alert_topic_arn):
            raise SettingsError(f"environment variable ALERT_TOPIC_ARN={alert_topic_arn!r} is not an SNS topic ARN")
        return cls(namespace=namespace, job_prefix=job_prefix, data_bucket=data_bucket, baseline_prefix=baseline_prefix,
                   alert_topic_arn=alert_topic_arn)


@dataclass(frozen=True)
class JobOutcome:
    """What the state-change event tells us about one finished job."""

    job_name: str
    status: str
    dataset: str
    end_time: datetime
    quality_uri: str | None
    failure_reason: str
    outputs: Mapping[str, str] = field(default_factory=dict)  # OutputName -> S3Uri
    source_uri: str = ""
    source_version_id: str = ""
    exit_message: str = ""  # sanitised ExitMessage (the container's /opt/ml/output/message), "" when none
    input_from: str = ""  # INPUT_FROM_*: where source_uri came from ("" when unknown)


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """Epoch milliseconds (number or numeric string, as EventBridge sends), an ISO-8601 string or a datetime -> UTC."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):  # DescribeProcessingJob through boto3
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
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


def one_line(text: Any, limit: int) -> str:
    """Printable characters only, on one line, at most ``limit`` characters (a trailing ``…`` marks a cut).

    Whitespace (newlines, tabs) becomes one space; control, format, private-use and unassigned characters and the
    U+FFFD replacement character (undecodable bytes) are dropped. Container text is untrusted: random bytes in
    /opt/ml/output/message must not turn into a page of escapes in a notification.
    """
    kept = []
    for ch in str(text or ""):
        if ch.isspace():
            kept.append(" ")
        elif ch.isprintable() and ch != "\ufffd":
            kept.append(ch)
    line = " ".join("".join(kept).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _environment(detail: Mapping[str, Any]) -> dict[str, Any]:
    env = detail.get("Environment")
    return env if isinstance(env, dict) else {}


def _outputs(detail: Mapping[str, Any]) -> list[Any]:
    outputs = (detail.get("ProcessingOutputConfig") or {}).get("Outputs") if isinstance(
        detail.get("ProcessingOutputConfig"), dict) else None
    return outputs if isinstance(outputs, list) else []


def needs_describe(detail: Mapping[str, Any]) -> bool:
    """True when the event lacks what the handler needs and DescribeProcessingJob has it.

    The documented "SageMaker Processing Job State Change" sample carries neither ``Environment`` (the input's URI
    and version, the dataset) nor ``ExitMessage`` (the container's message); a hand-made redelivery may carry only
    the job name and status (then the outputs come from DescribeProcessingJob too).
    """
    status = detail.get("ProcessingJobStatus")
    return (not _environment(detail).get("SOURCE_URI")
            or (status in ("Failed", "Stopped") and "ExitMessage" not in detail)
            or not _outputs(detail))


def complete_detail(detail: Mapping[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    """The event's detail with the fields it lacks (:data:`DESCRIBE_FIELDS`) taken from DescribeProcessingJob.

    What the event has wins, except an ``Environment`` without ``SOURCE_URI`` (then the description's is used).
    """
    merged = dict(detail)
    for name in DESCRIBE_FIELDS:
        if name not in description:
            continue
        missing = name not in detail or detail.get(name) in (None, "", {}, [])
        if name == "Environment":
            missing = not _environment(detail).get("SOURCE_URI")
        elif name == "ProcessingOutputConfig":
            missing = not _outputs(detail)
        if missing:
            merged[name] = description[name]
    return merged


def data_input_uri(detail: Mapping[str, Any]) -> str:
    """S3Uri of the job's ``data`` input ("" when absent): what the job read, possibly a per-job staging copy."""
    inputs = detail.get("ProcessingInputs")
    for item in inputs if isinstance(inputs, list) else []:
        if isinstance(item, dict) and item.get("InputName") == DATA_INPUT_NAME:
            uri = (item.get("S3Input") or {}).get("S3Uri")
            if isinstance(uri, str):
                return uri
    return ""


def parse_outcome(event: Mapping[str, Any], settings: Settings, *,
                  environment_described: bool = False) -> JobOutcome | None:
    """Read the job outcome from the event, or None if it is not a terminal event of one of our jobs.

    Args:
        event: the state-change event; its ``detail`` may have been completed by :func:`complete_detail`.
        settings: the handler's settings.
        environment_described: True when ``detail["Environment"]`` came from DescribeProcessingJob (labels where
            the input URI came from).
    """
    detail = event.get("detail") or {}
    job_name = detail.get("ProcessingJobName")
    status = detail.get("ProcessingJobStatus")
    if not isinstance(job_name, str) or not job_name.startswith(f"{settings.job_prefix}-"):
        return None
    if status not in TERMINAL_STATUSES:
        return None
    env = _environment(detail)
    dataset = env.get("DATASET")
    if not isinstance(dataset, str) or not DATASET_RE.fullmatch(dataset):
        dataset = dataset_from_job_name(job_name, settings.job_prefix)
    end_time = (
        parse_time(detail.get("ProcessingEndTime"))
        or parse_time(detail.get("LastModifiedTime"))
        or parse_time(event.get("time"))
        or datetime.now(timezone.utc)
    )
    uris: dict[str, str] = {}
    for output in _outputs(detail):
        if isinstance(output, dict) and isinstance(output.get("OutputName"), str):
            uri = (output.get("S3Output") or {}).get("S3Uri")
            if isinstance(uri, str) and uri:
                uris[output["OutputName"]] = uri
    quality_uri = uris.get(QUALITY_OUTPUT_NAME)
    source_uri, version_id = str(env.get("SOURCE_URI") or ""), str(env.get("SOURCE_VERSION_ID") or "")
    if source_uri:
        input_from = INPUT_FROM_DESCRIBE if environment_described else INPUT_FROM_EVENT
    else:
        source_uri, version_id = data_input_uri(detail), ""
        input_from = INPUT_FROM_DATA_INPUT if source_uri else ""
    return JobOutcome(
        job_name=job_name,
        status=status,
        dataset=dataset,
        end_time=end_time,
        quality_uri=quality_uri,
        failure_reason=one_line(detail.get("FailureReason"), MAX_FAILURE_REASON_CHARS),
        outputs=uris,
        source_uri=source_uri,
        source_version_id=version_id,
        exit_message=one_line(detail.get("ExitMessage"), MAX_EXIT_MESSAGE_CHARS),
        input_from=input_from,
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix[/]`` -> (bucket, ``prefix/``) (prefix "" for the bucket root)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket")
    prefix = prefix.rstrip("/")
    return bucket, f"{prefix}/" if prefix else ""


def failure_notification(outcome: JobOutcome) -> dict[str, Any]:
    """SNS Publish arguments for a Failed/Stopped job: job, dataset, input, ExitMessage and FailureReason.

    ExitMessage (the container's ``/opt/ml/output/message``: ``ErrorClass: one line``) says what went wrong;
    FailureReason is SageMaker's, generic for a non-zero exit. Both are sanitised (:func:`one_line`).
    """
    reason = outcome.exit_message or outcome.failure_reason or "(no ExitMessage or FailureReason given)"
    body = {
        "event": "job-failed",
        "summary": f"Processing job {outcome.job_name} ({outcome.dataset}) {outcome.status}: {reason}"[:1000],
        "job_name": outcome.job_name,
        "status": outcome.status,
        "dataset": outcome.dataset,
        "input": outcome.source_uri or None,
        "input_version_id": outcome.source_version_id or None,
        "input_from": outcome.input_from or None,
        "exit_message": outcome.exit_message or None,
        "failure_reason": outcome.failure_reason or None,
        "end_time": outcome.end_time.isoformat(),
    }
    return _publish_args(f"Data quality job {outcome.status}: {outcome.job_name}", body, "job-failed", outcome)


def quarantine_notification(outcome: JobOutcome, document: Any) -> dict[str, Any]:
    """SNS Publish arguments for a batch that failed the quality gate: violations summary, quarantine location."""
    gate = document.get("gate") if isinstance(document, dict) else None
    raw = gate.get("violations") if isinstance(gate, dict) else None
    failing = [v for v in raw if isinstance(v, dict) and v.get("action", "fail") == "fail"] if isinstance(raw, list) else []
    shown = [{k: v[k] for k in ("rule", "column", "measured", "threshold") if k in v}
             for v in failing[:MAX_NOTIFIED_VIOLATIONS]]
    quarantine = outcome.outputs.get(QUARANTINE_OUTPUT_NAME)
    where = quarantine.rstrip("/") + "/" if quarantine else None
    rules = ", ".join(sorted({str(v.get("rule")) + (f"[{v['column']}]" if v.get("column") else "") for v in failing}))
    body = {
        "event": "batch-quarantined",
        "summary": (f"Batch {outcome.job_name} ({outcome.dataset}) failed the quality gate: "
                    f"{len(failing)} rule(s) broken ({rules or 'see violations.json'}); data under "
                    f"{where or 'the quarantine prefix'}")[:1000],
        "job_name": outcome.job_name,
        "dataset": outcome.dataset,
        "input": outcome.source_uri or None,
        "input_version_id": outcome.source_version_id or None,
        "input_from": outcome.input_from or None,
        "quarantine": where,
        "violations_file": f"{where}violations.json" if where else None,
        "violations": shown,
        "violations_total": len(failing),
        "end_time": outcome.end_time.isoformat(),
    }
    return _publish_args(f"Data quality batch quarantined: {outcome.job_name}", body, "batch-quarantined", outcome)


def _publish_args(subject: str, body: Mapping[str, Any], event: str, outcome: JobOutcome) -> dict[str, Any]:
    # JSON (like the CloudWatch alarm notifications on the same topic), attributes for subscription filter policies.
    return {
        "Subject": subject[:SNS_SUBJECT_MAX],
        "Message": json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False, default=str),
        "MessageAttributes": {
            "event": {"DataType": "String", "StringValue": event},
            "dataset": {"DataType": "String", "StringValue": outcome.dataset},
        },
    }


def metrics_location(quality_uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix[/]`` -> (bucket, ``prefix/metrics.json``)."""
    try:
        bucket, prefix = split_s3_uri(quality_uri)
    except ValueError as exc:  # "'<uri>' is not an s3:// URI" / "... has no bucket"
        raise MetricsUnavailableError(f"quality output URI {exc}") from None
    return bucket, prefix + METRICS_FILE


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
    outcome: JobOutcome, values: Mapping[str, float], metrics_unavailable: bool | None, timestamp: datetime
) -> list[dict[str, Any]]:
    """All datapoints for one job, each stamped with ``timestamp`` (the publication time, design.md Contract 3).

    Not the job's end time: alarms evaluate only their most recent periods, so a datapoint stamped with an end time
    hours old (a delivery after Lambda's asynchronous retries, a DLQ redrive, a redelivery after metrics.json was
    fixed) would land in periods already evaluated and never alarm. The end time stays in the log and notification.

    Args:
        outcome: the job outcome.
        values: valid summary values (may be empty).
        metrics_unavailable: True/False to publish MetricsUnavailable 1/0, None to leave it out
            (failed or stopped jobs have no metrics file by design).
        timestamp: the publication time (UTC).
    """
    succeeded = outcome.status == "Completed"

    def datum(name: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": [{"Name": "Dataset", "Value": outcome.dataset}],
            "Timestamp": timestamp,
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
sns_client: SNSClient | None = None
sagemaker_client: SageMakerClient | None = None


def now() -> datetime:
    """The publication time of the datapoints (tests replace it with a fixed clock)."""
    return datetime.now(timezone.utc)


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


def get_sns() -> SNSClient:
    global sns_client
    if sns_client is None:
        sns_client = boto3.client("sns", config=_retry_config())
    return sns_client


def get_sagemaker() -> SageMakerClient:
    global sagemaker_client
    if sagemaker_client is None:
        sagemaker_client = boto3.client("sagemaker", config=_retry_config())
    return sagemaker_client


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


def _error_code(exc: ClientError) -> tuple[str, int]:
    return (str(exc.response.get("Error", {}).get("Code", "")),
            int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0))


def marker_location(outcome: JobOutcome, settings: Settings) -> tuple[str, str] | None:
    """(bucket, key) of the publish-once marker ``<quality>/_metrics_published``, or None when it cannot be kept.

    Only in the data bucket (``DATA_BUCKET``; empty disables it) and only when the event names the quality output.
    """
    if not settings.data_bucket or not outcome.quality_uri:
        return None
    try:
        bucket, prefix = split_s3_uri(outcome.quality_uri)
    except ValueError:
        return None
    return (bucket, f"{prefix}{PUBLISHED_MARKER}") if bucket == settings.data_bucket and prefix else None


def already_published(s3: S3Client, marker: tuple[str, str]) -> bool:
    """HeadObject of the marker: True when it exists. 404/403 (no s3:ListBucket) = absent; other errors raise."""
    try:
        s3.head_object(Bucket=marker[0], Key=marker[1])
    except ClientError as exc:
        code, status = _error_code(exc)
        if code in MARKER_ABSENT or status in (403, 404):
            return False
        raise
    return True


def write_published_marker(s3: S3Client, marker: tuple[str, str], outcome: JobOutcome,
                           base: Mapping[str, Any]) -> str:
    """Conditional put (``IfNoneMatch="*"``) of the marker, after everything was published.

    Returns ``written``, ``exists`` (a concurrent duplicate wrote it first: both published, harmless) or ``failed``
    (logged at ERROR, not raised: the work is done; a later duplicate may publish once more).
    """
    body = json.dumps({"job_name": outcome.job_name, "status": outcome.status, "request_id": _request_id,
                       "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode()
    try:
        s3.put_object(Bucket=marker[0], Key=marker[1], Body=body, ContentType="application/json", IfNoneMatch="*")
    except ClientError as exc:
        code, status = _error_code(exc)
        if code in CONDITIONAL_CONFLICT or status in (409, 412):
            log_decision("marker-exists", **base, marker=f"s3://{marker[0]}/{marker[1]}", error_code=code)
            return "exists"
        log_decision("marker-failed", logging.ERROR, **base, marker=f"s3://{marker[0]}/{marker[1]}",
                     error_code=code, error=str(exc))
        return "failed"
    return "written"


def notify(outcome: JobOutcome, values: Mapping[str, float], document: Any, settings: Settings, sns: SNSClient,
           base: Mapping[str, Any]) -> list[str]:
    """One SNS message per Failed/Stopped job and per quarantined batch (ALERT_TOPIC_ARN; empty disables).

    Alarms notify on state transitions only: a second failure while an alarm is already in ALARM sends nothing, so
    each bad job gets its own message here. Errors raise (the asynchronous retry repeats the whole event).
    """
    if not settings.alert_topic_arn:
        return []
    if outcome.status in ("Failed", "Stopped"):
        args = failure_notification(outcome)
    elif outcome.status == "Completed" and values.get("quality_gate_failed", 0.0) >= 1:
        args = quarantine_notification(outcome, document)
    else:
        return []
    event = args["MessageAttributes"]["event"]["StringValue"]
    response = sns.publish(TopicArn=settings.alert_topic_arn, **args)
    log_decision("notified", **base, notification=event, message_id=response.get("MessageId"))
    return [event]


def write_success_markers(outcome: JobOutcome, values: Mapping[str, float], unavailable: bool | None,
                          settings: Settings, s3: S3Client, base: Mapping[str, Any]) -> list[str]:
    """``_SUCCESS`` in ``cleaned/`` and ``transformed/`` of a Completed batch whose gate did not fail.

    Written here, after the job finished, because SageMaker uploads a job's output files in no guaranteed order: a
    marker written by the job itself could appear before the data. Only into the data bucket; metrics unavailable
    or no ``quality_gate_failed`` in the summary = no marker (the verdict is unknown). Errors raise (retried).
    """
    if (outcome.status != "Completed" or unavailable or values.get("quality_gate_failed") != 0.0
            or not settings.data_bucket):
        return []
    written = []
    for folder in SUCCESS_FOLDERS:
        uri = outcome.outputs.get(folder)
        try:
            bucket, prefix = split_s3_uri(uri) if uri else ("", "")
        except ValueError:
            bucket, prefix = "", ""
        if bucket != settings.data_bucket or not prefix:
            log_decision("success-skipped", logging.WARNING, **base, folder=folder, output=uri,
                         reason="output is not in the data bucket or missing from the event")
            continue
        s3.put_object(Bucket=bucket, Key=f"{prefix}{SUCCESS_MARKER}", Body=b"")
        written.append(f"s3://{bucket}/{prefix}{SUCCESS_MARKER}")
    if written:
        log_decision("success-written", **base, markers=written)
    return written


def describe_job(job_name: str, sagemaker: SageMakerClient, base: Mapping[str, Any]) -> dict[str, Any] | None:
    """DescribeProcessingJob, or None (logged) when it fails after botocore's retries.

    Not raised: the event still carries the job's status (and usually its outputs), so the metrics and the
    notification go out with what the event has: the input falls back to the job's ``data`` input, the message to
    FailureReason. Failing the whole event over a missing ExitMessage would delay or lose the JobFailed datapoint.
    """
    try:
        return dict(sagemaker.describe_processing_job(ProcessingJobName=job_name))
    except (ClientError, HTTPClientError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
        log_decision("describe-failed", logging.WARNING, **base, error_code=code, error=str(exc),
                     reason="DescribeProcessingJob failed; using what the event carries")
        return None


def process_event(
    event: Mapping[str, Any], settings: Settings, *, cloudwatch: CloudWatchClient, s3: S3Client,
    sns: SNSClient | None = None, sagemaker: SageMakerClient | None = None,
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

    # Publish once: a marker written after everything below means a duplicate event has nothing left to do.
    marker = marker_location(outcome, settings)
    if marker is not None and already_published(s3, marker):
        log_decision("duplicate", **base, marker=f"s3://{marker[0]}/{marker[1]}",
                     reason="this job's metrics were already published")
        return {"published": 0, "decision": "duplicate"}

    if needs_describe(detail):
        description = describe_job(outcome.job_name, sagemaker or get_sagemaker(), base)
        if description is not None:
            completed = complete_detail(detail, description)
            described_env = not _environment(detail).get("SOURCE_URI") and bool(
                _environment(completed).get("SOURCE_URI"))
            outcome = parse_outcome({**event, "detail": completed}, settings,
                                    environment_described=described_env) or outcome
            base = {**base, "dataset": outcome.dataset, "end_time": outcome.end_time.isoformat()}
            if marker is None:  # the event named no quality output; the description did
                marker = marker_location(outcome, settings)
                if marker is not None and already_published(s3, marker):
                    log_decision("duplicate", **base, marker=f"s3://{marker[0]}/{marker[1]}",
                                 reason="this job's metrics were already published")
                    return {"published": 0, "decision": "duplicate"}

    values: dict[str, float] = {}
    document: Any = None
    unavailable: bool | None = None
    if outcome.status == "Completed":
        try:
            document = read_metrics(outcome.quality_uri, s3)
            values, problems = summary_values(document)
        except MetricsUnavailableError as exc:
            problems = [str(exc)]
        unavailable = bool(problems)
        if problems:
            log_decision("metrics-unavailable", logging.WARNING, **base, quality_uri=outcome.quality_uri,
                         problems=problems)

    published_at = now()
    data = build_metric_data(outcome, values, unavailable, published_at)
    for chunk in chunks(data):
        cloudwatch.put_metric_data(Namespace=settings.namespace, MetricData=chunk)
    log_decision("published", **base, published_at=published_at.isoformat(),
                 metrics=[d["MetricName"] for d in data], failure_reason=outcome.failure_reason or None,
                 exit_message=outcome.exit_message or None)
    result: dict[str, Any] = {"published": len(data), "decision": "published", "metrics_unavailable": unavailable}
    if settings.alert_topic_arn:
        result["notified"] = notify(outcome, values, document, settings, sns or get_sns(), base)
    if outcome.status == "Completed" and settings.data_bucket:  # DATA_BUCKET unset: S3 writes disabled
        result["success_markers"] = write_success_markers(outcome, values, unavailable, settings, s3, base)
        # After publishing: if promotion raises (transient S3 error), the asynchronous retry publishes the same
        # datapoints again (idempotent) and retries the promotion.
        result["baseline"] = promote_baseline(outcome, values, settings, s3, base, unavailable)
    if marker is not None and unavailable:
        # No marker: once metrics.json is fixed, a redelivery of this event re-reads it and publishes the metrics
        # (MetricsUnavailable was published now; publishing it again is harmless: alarms use Maximum).
        log_decision("marker-withheld", logging.WARNING, **base, marker=f"s3://{marker[0]}/{marker[1]}",
                     reason="metrics were unavailable: a redelivery after the file is fixed publishes them")
        result["marker"] = "withheld"
    elif marker is not None:
        result["marker"] = write_published_marker(s3, marker, outcome, base)
    return result


def promote_baseline(outcome: JobOutcome, values: Mapping[str, float], settings: Settings, s3: S3Client,
                     base: Mapping[str, Any], unavailable: bool | None = False) -> str:
    """Copy the job's quality/profile.json to the dataset's baseline key when none exists (first batch wins).

    Only when the gate did not fail (``quality_gate_failed`` == 0 in the summary; files without the key are never
    promoted) and the metrics were complete (``unavailable`` false: like ``_SUCCESS``, a partial metrics.json is no
    verdict; the redelivery after the file is fixed promotes). ``PutObject`` with ``IfNoneMatch="*"``: S3 answers 412 PreconditionFailed when the baseline already
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
    if unavailable or values.get("quality_gate_failed") != 0.0:
        why = ("metrics unavailable" if unavailable else "gate failed" if values.get("quality_gate_failed")
               else "metrics.json has no quality_gate_failed")
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
    settings = get_settings()
    return process_event(event, settings, cloudwatch=get_cloudwatch(), s3=get_s3(),
                         sns=get_sns() if settings.alert_topic_arn else None)
