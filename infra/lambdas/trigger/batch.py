"""One SQS batch: per record, parse, resolve, stage, start the job or refuse; answer with the records to retry."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_shared.logs import decision_log
from lambda_shared.s3errors import error_code
from trigger.events import BATCH_MANIFEST, ignore_reason, is_marker, parse_object_created
from trigger.folders import (
    MANIFEST_MAX_BYTES,
    batch_request,
    check_staging_keys,
    list_batch,
    parse_manifest,
    stage_batch,
    staging_folder,
)
from trigger.refusals import REASON_UNREADABLE_EVENT, RefusedKeyError, tell_refusal
from trigger.request import build_processing_job_request, map_key, staging_key
from trigger.settings import Settings
from trigger.spark import conf_body, conf_key, is_spark_request
from trigger.staging import SourceObject, find_baseline, resolve_source, stage_source

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectRequestTypeDef
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker.type_defs import CreateProcessingJobRequestTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

log_decision = decision_log("dq.trigger")


# botocore's retries["max_attempts"] counts retries after the first call: 3 -> at most 4 calls, standard mode
# (jittered exponential backoff, retries ThrottlingException but not ResourceLimitExceeded).
SAGEMAKER_MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 900  # 15 min; SQS allows up to 12 h
RETRY_LATER_CODES = frozenset({"ThrottlingException", "ResourceLimitExceeded"})


@dataclass(frozen=True)
class Clients:
    """The AWS clients one invocation uses (tests pass Stubber-wrapped ones)."""

    sagemaker: SageMakerClient
    sqs: SQSClient
    s3: S3Client
    cloudwatch: CloudWatchClient
    sns: SNSClient


def is_already_exists(error: ClientError) -> bool:
    """True if CreateProcessingJob failed only because a job with this name exists (our idempotency)."""
    err = error.response.get("Error", {})
    code = err.get("Code", "")
    message = err.get("Message", "") or ""
    return code == "ResourceInUse" or (code == "ValidationException" and "already exists" in message.lower())


def backoff_seconds(receive_count: int, rand: Callable[[], float] | None = None) -> int:
    """Visibility timeout before the next attempt: exponential in the receive count, capped, jittered.

    ``min(cap, base * 2**(n-1))`` with "equal jitter" (half fixed, half random) so a throttled burst
    does not come back all at once.
    """
    exponent = max(receive_count, 1) - 1
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(exponent, 20))
    return int(ceiling / 2 + (rand or random.random)() * ceiling / 2)


def queue_url_from_arn(arn: str) -> str:
    """``arn:<partition>:sqs:<region>:<account>:<name>`` -> the queue URL."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    _, partition, _, region, account, name = parts
    domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{domain}/{account}/{name}"


def _refuse(record: Mapping[str, Any], clients: Clients, settings: Settings, base: Mapping[str, Any],
            error: RefusedKeyError, *, bucket: str = "", key: str = "", version_id: str = "",
            event_key: str | None = None) -> bool:
    """Log, count and tell one refusal. Returns True (retry) when telling failed or the refusal is retried.

    A refusal that is retried (``AccessDenied``) is told on its first delivery only: its retries then end in the
    DLQ (whose alarm tells again) instead of sending one message per delivery.
    """
    log_decision("refused", logging.WARNING, **base, reason_code=error.reason_code, reason=str(error),
                 retried=error.retry)
    if error.retry and _receive_count(record) > 1:
        return True
    try:
        tell_refusal(clients.cloudwatch, clients.sns, settings, bucket=bucket, key=key, version_id=version_id,
                     reason_code=error.reason_code,
                     reason=str(error), event_key=event_key, retried=error.retry)
    except (ClientError, BotoCoreError) as exc:
        log_decision("failed", logging.ERROR, **base, error_code=error_code(exc),
                     error=f"telling the refusal ({error.reason_code}) failed: {exc}")
        return True
    return error.retry


def _receive_count(record: Mapping[str, Any]) -> int:
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
    except ValueError:
        return 1


def _failed(base: Mapping[str, Any], exc: Exception, what: str) -> bool:
    log_decision("failed", logging.ERROR, **base, error_code=error_code(exc), error=f"{what}: {exc}")
    return True


def _process_record(record: Mapping[str, Any], settings: Settings, clients: Clients,
                    rand: Callable[[], float]) -> bool:
    """Handle one SQS record. Returns True when it must be retried (reported as a batch item failure)."""
    message_id = record.get("messageId", "")
    base: dict[str, Any] = {"message_id": message_id}
    try:
        obj = parse_object_created(record.get("body", ""))
    except (ValueError, UnicodeDecodeError) as exc:
        base["body"] = str(record.get("body", ""))[:1000]
        return _refuse(record, clients, settings, base,
                       RefusedKeyError(f"unreadable message: {exc}", REASON_UNREADABLE_EVENT))
    base.update(bucket=obj.bucket, key=obj.key, version_id=obj.version_id, size=obj.size)
    told = {"bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id}

    reason = ignore_reason(obj, settings)
    if reason:
        log_decision("ignored", **base, reason=reason)
        return False
    s3 = clients.s3
    try:
        source = resolve_source(s3, obj, settings)
    except RefusedKeyError as exc:
        return _refuse(record, clients, settings, base, exc, **told)
    except (ClientError, BotoCoreError) as exc:
        return _failed(base, exc, "HeadObject of the event's object version")
    if source.encoded:
        base.update(key=source.key, event_key=obj.key)
    told.update(key=source.key, event_key=obj.key)
    try:
        target = map_key(source.bucket, source.key, settings)
    except RefusedKeyError as exc:
        return _refuse(record, clients, settings, base, exc, **told)
    if is_marker(source.key):
        return _process_marker(record, settings, clients, rand, source, target.dataset, base, told)
    try:
        baseline_uri = find_baseline(s3, target.dataset, settings, base)
    except (ClientError, BotoCoreError) as exc:
        base["dataset"] = target.dataset
        return _failed(base, exc, f"HeadObject {settings.baseline_key(target.dataset)}")
    try:
        request = build_processing_job_request(source.bucket, source.key, source.version_id, settings,
                                               baseline_uri=baseline_uri, size=source.size, etag=obj.etag)
    except RefusedKeyError as exc:  # e.g. a Spark job argument a shell would change (trigger/spark.py)
        return _refuse(record, clients, settings, base, exc, **told)
    job_name = request["ProcessingJobName"]
    staged_key = staging_key(settings, target, job_name)
    base.update(job_name=job_name, dataset=target.dataset, baseline=baseline_uri, staged_key=staged_key)

    # Staged before the job exists, every delivery: a redelivery copies the same version to the same key (same
    # bytes), so a job that already exists, whether waiting or reading, sees identical content.
    try:
        how = stage_source(s3, source, settings.data_bucket, staged_key)
    except RefusedKeyError as exc:
        return _refuse(record, clients, settings, base, exc, **told)
    except (ClientError, BotoCoreError) as exc:
        return _failed(base, exc, f"copying the object version to {staged_key}")
    base["staged_by"] = how
    return _create_job(record, settings, clients, rand, base, request, target.dataset)


def _process_marker(record: Mapping[str, Any], settings: Settings, clients: Clients, rand: Callable[[], float],
                    marker: SourceObject, dataset: str, base: dict[str, Any], told: Mapping[str, Any]) -> bool:
    """A folder's ``_SUCCESS`` marker (design.md Contract 5): pin the folder's versions as of the marker, stage them,
    start one job over them (or refuse and tell)."""
    s3 = clients.s3
    base["dataset"] = dataset
    try:
        manifest = None
        if marker.key.endswith("/" + BATCH_MANIFEST):
            params: GetObjectRequestTypeDef = {"Bucket": marker.bucket, "Key": marker.key}
            if marker.version_id:
                params["VersionId"] = marker.version_id
            else:
                params["IfMatch"] = f'"{marker.etag}"'
            manifest = parse_manifest(s3.get_object(**params)["Body"].read(MANIFEST_MAX_BYTES + 1))
        batch = list_batch(s3, marker, settings, dataset, manifest=manifest)
        check_staging_keys(settings, batch)
    except RefusedKeyError as exc:
        return _refuse(record, clients, settings, base, exc, **told)
    except (ClientError, BotoCoreError) as exc:
        return _failed(base, exc, f"reading the marker's folder {marker.key.rsplit('/', 1)[0]}/")
    base.update(folder=batch.folder, parts=len(batch.parts), total_bytes=batch.total_bytes,
                skipped_empty=batch.skipped_empty)
    try:
        baseline_uri = find_baseline(s3, dataset, settings, base)
    except (ClientError, BotoCoreError) as exc:
        return _failed(base, exc, f"HeadObject {settings.baseline_key(dataset)}")
    try:
        request = batch_request(batch, settings, baseline_uri=baseline_uri)
    except RefusedKeyError as exc:
        return _refuse(record, clients, settings, base, exc, **told)
    job_name = request["ProcessingJobName"]
    folder = staging_folder(settings, batch, job_name)
    base.update(job_name=job_name, baseline=baseline_uri, staged_key=folder)
    # Every delivery stages again: the same marker version lists the same part versions (pinned by the marker's
    # time), so the same keys get the same bytes and an existing job is not affected.
    try:
        stage_batch(s3, batch, settings.data_bucket, folder)
    except RefusedKeyError as exc:
        return _refuse(record, clients, settings, base, exc, **told)
    except (ClientError, BotoCoreError) as exc:
        return _failed(base, exc, f"copying the batch's parts to {folder}")
    base["staged_by"] = f"batch ({len(batch.parts)} parts)"
    return _create_job(record, settings, clients, rand, base, request, dataset)


def _create_job(record: Mapping[str, Any], settings: Settings, clients: Clients, rand: Callable[[], float],
                base: dict[str, Any], request: CreateProcessingJobRequestTypeDef, dataset: str) -> bool:
    """CreateProcessingJob (a Spark job's configuration.json first); ``already-exists`` is success, throttling/quota
    is retried with backoff."""
    if is_spark_request(request):  # its configuration.json input, beside the staging prefix (same bytes every time)
        conf = conf_key(settings.staging_prefix, dataset, request["ProcessingJobName"])
        try:
            clients.s3.put_object(Bucket=settings.data_bucket, Key=conf, Body=conf_body(settings.spark),
                                  ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            return _failed(base, exc, f"writing the Spark job's {conf}")
        base["engine"] = "spark"
    try:
        response = clients.sagemaker.create_processing_job(**request)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        if is_already_exists(exc):
            log_decision("already-exists", **base, error_code=code)
            return False
        if code in RETRY_LATER_CODES:
            _delay_retry(record, clients.sqs, rand, base, code, err.get("Message", ""))
            return True
        log_decision("failed", logging.ERROR, **base, error_code=code, error=err.get("Message", str(exc)))
        return True
    except BotoCoreError as exc:
        log_decision("failed", logging.ERROR, **base, error_code=type(exc).__name__, error=str(exc))
        return True
    log_decision("started", **base, job_arn=response.get("ProcessingJobArn", ""))
    return False


def _delay_retry(
    record: Mapping[str, Any],
    sqs: SQSClient,
    rand: Callable[[], float],
    base: Mapping[str, Any],
    code: str,
    message: str,
) -> None:
    receive_count = _receive_count(record)
    delay = backoff_seconds(receive_count, rand)
    fields = {**base, "error_code": code, "error": message, "receive_count": receive_count, "visibility_timeout": delay}
    try:
        sqs.change_message_visibility(
            QueueUrl=queue_url_from_arn(record.get("eventSourceARN", "")),
            ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=delay,
        )
    except (ClientError, BotoCoreError, KeyError, ValueError) as exc:
        # The message still comes back after the queue's own visibility timeout.
        log_decision("retry", logging.WARNING, **fields, visibility_error=str(exc))
        return
    log_decision("retry", logging.WARNING, **fields)


def process_batch(
    event: Mapping[str, Any],
    settings: Settings,
    clients: Clients,
    *,
    rand: Callable[[], float] | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Process an SQS batch and return the partial batch response."""
    rand = rand or random.random
    failures = []
    for record in event.get("Records", []):
        try:
            retry = _process_record(record, settings, clients, rand)
        except Exception as exc:  # noqa: BLE001 - one bad record must not fail (and re-run) the whole batch
            log_decision("failed", logging.ERROR, message_id=record.get("messageId", ""), error=repr(exc))
            retry = True
        if retry:
            failures.append({"itemIdentifier": record.get("messageId", "")})
    return {"batchItemFailures": failures}
