"""The metrics Lambda's S3 reads and writes: metrics.json, the publish-once marker, _SUCCESS, the baseline."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

import contract
from lambda_shared.logs import decision_log
from lambda_shared.s3errors import UNREADABLE, S3ErrorKind, classify, status_and_code
from metrics.datapoints import METRICS_FILE, MetricsUnavailableError, metrics_location
from metrics.outcome import UNKNOWN_DATASET, JobOutcome, split_s3_uri
from metrics.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client

PROFILE_FILE = contract.PROFILE_FILE
PROFILE_SCHEMA_VERSION = contract.PROFILE_SCHEMA_VERSION
PUBLISHED_MARKER = contract.PUBLISHED_MARKER  # in the job's quality/ folder (never a data folder)
SUCCESS_MARKER = contract.SUCCESS_MARKER
SUCCESS_FOLDERS = contract.SUCCESS_FOLDERS  # design.md Contract 4: a passed/warned batch's marker
MAX_METRICS_BYTES = 5 * 1024 * 1024  # metrics.json is a few KB; refuse to buffer anything absurd
log_decision = decision_log("dq.metrics")


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
        if classify(exc) in UNREADABLE:  # absent, denied, KMS key unusable, archived: a MetricsUnavailable datapoint
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
        if classify(exc) in (S3ErrorKind.ABSENT, S3ErrorKind.DENIED):
            return False
        raise
    return True


def write_published_marker(s3: S3Client, marker: tuple[str, str], outcome: JobOutcome,
                           base: Mapping[str, Any]) -> str:
    """Conditional put (``IfNoneMatch="*"``) of the marker, after everything was published.

    Returns ``written``, ``exists`` (a concurrent duplicate wrote it first: both published, harmless) or ``failed``
    (logged at ERROR, not raised: the work is done; a later duplicate may publish once more).
    """
    body = json.dumps({"job_name": outcome.job_name, "status": outcome.status, "request_id": log_decision.request_id,
                       "published_at": datetime.now(UTC).isoformat(timespec="seconds")}).encode()
    try:
        s3.put_object(Bucket=marker[0], Key=marker[1], Body=body, ContentType="application/json", IfNoneMatch="*")
    except ClientError as exc:
        _, code = status_and_code(exc)
        if classify(exc) is S3ErrorKind.CONFLICT:
            log_decision("marker-exists", **base, marker=f"s3://{marker[0]}/{marker[1]}", error_code=code)
            return "exists"
        log_decision("marker-failed", logging.ERROR, **base, marker=f"s3://{marker[0]}/{marker[1]}",
                     error_code=code, error=str(exc))
        return "failed"
    return "written"


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


def promote_baseline(outcome: JobOutcome, values: Mapping[str, float], settings: Settings, s3: S3Client,
                     base: Mapping[str, Any], unavailable: bool | None = False) -> str:
    """Copy the job's quality/profile.json to the dataset's baseline key when none exists (first batch wins).

    Only when the gate did not fail (``quality_gate_failed`` == 0 in the summary; files without the key are never
    promoted) and the metrics were complete (``unavailable`` false: like ``_SUCCESS``, a partial metrics.json is no
    verdict; the redelivery after the file is fixed promotes). ``PutObject`` with ``IfNoneMatch="*"``: S3 answers 412
    PreconditionFailed when the baseline already exists (or 409 ConditionalRequestConflict while another conditional
    write is in flight): someone else won.

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
        _, code = status_and_code(exc)
        if classify(exc) in UNREADABLE:
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
        _, code = status_and_code(exc)
        if classify(exc) is S3ErrorKind.CONFLICT:  # 412: the baseline exists; 409: a conditional write in flight
            log_decision("baseline-exists", **base, baseline_key=key, error_code=code)
            return "exists"
        raise
    log_decision("baseline-promoted", **base, baseline_key=key, profile=f"s3://{bucket}/{profile_key}")
    return "promoted"
