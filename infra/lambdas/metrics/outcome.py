"""What a "SageMaker Processing Job State Change" event (completed from DescribeProcessingJob) says about one job."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import contract
from metrics.settings import Settings

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
QUALITY_OUTPUT_NAME = contract.QUALITY
QUARANTINE_OUTPUT_NAME = contract.QUARANTINE
DATA_INPUT_NAME = contract.DATA_INPUT  # the trigger's ProcessingInput with the batch (possibly a per-job staging copy)
DATASET_RE = contract.DATASET_RE
UNKNOWN_DATASET = contract.UNKNOWN_DATASET


# Container text (ExitMessage, first 1 KB of /opt/ml/output/message) and FailureReason in notifications and logs:
# printable characters only, one line, at most this many characters.
MAX_EXIT_MESSAGE_CHARS = 300
MAX_FAILURE_REASON_CHARS = 300


# Where the input URI in a notification came from (JobOutcome.input_from).
INPUT_FROM_EVENT = "event-environment"  # Environment.SOURCE_URI in the event: the uploaded object
INPUT_FROM_DESCRIBE = "describe-environment"  # Environment.SOURCE_URI from DescribeProcessingJob: the uploaded object
INPUT_FROM_DATA_INPUT = "job-data-input"  # the job's `data` input: what the job read (may be a staging copy)
# DescribeProcessingJob fields that complete an event lacking them (the documented sample has neither Environment
# nor ExitMessage; a hand-made redelivery may carry only the job name and status).
DESCRIBE_FIELDS = ("Environment", "ExitMessage", "FailureReason", "ProcessingOutputConfig", "ProcessingInputs",
                   "ProcessingEndTime")


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


def parse_time(value: Any) -> datetime | None:
    """Epoch milliseconds (number or numeric string, as EventBridge sends), an ISO-8601 string or a datetime -> UTC."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):  # DescribeProcessingJob through boto3
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=UTC) if math.isfinite(value) else None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return datetime.fromtimestamp(float(text) / 1000, tz=UTC)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text)  # Python 3.11+ reads a trailing "Z" as UTC
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def dataset_from_job_name(job_name: str, job_prefix: str) -> str:
    """``<prefix>-<dataset truncated>-<16 hex>`` -> dataset (may be truncated), or ``unknown``."""
    return contract.dataset_from_job_name(job_name, job_prefix)


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
        or datetime.now(UTC)
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
