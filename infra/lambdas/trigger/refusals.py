"""Refusals: an upload that can never become a job is counted (``KeyRefused`` by reason) and told (the alert topic)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import contract
from trigger.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import PublishInputTypeDef

SNS_SUBJECT_MAX = 99  # SNS: fewer than 100 characters
REFUSED_METRIC = contract.KEY_REFUSED
REASON_DIMENSION = contract.REASON_DIMENSION


REASON_UNREADABLE_EVENT = "UnreadableEvent"  # the message is not an S3 "Object Created" event
REASON_OBJECT_NOT_FOUND = "ObjectNotFound"  # neither the raw nor the decoded key exists at the event's version
REASON_ACCESS_DENIED = "AccessDenied"  # 403 for every candidate: absent or unreadable, cannot tell (retried)
REASON_INVALID_DATASET = "InvalidDataset"  # the folder under the input prefix is not a valid dataset name
REASON_INVALID_KEY = "InvalidKey"  # no file name, control characters, or too long for the job's request
REASON_VERSION_MISMATCH = "VersionMismatch"  # S3's object (or the staged copy) is not the version the event names
# Folder batches (design.md Contract 5, trigger/folders.py)
REASON_INVALID_BATCH = "InvalidBatch"  # a _SUCCESS marker outside a folder under <input_prefix><dataset>/
REASON_EMPTY_BATCH = "EmptyBatch"  # a _SUCCESS marker whose folder held no data file when it was written
REASON_BATCH_TOO_LARGE = "BatchTooLarge"  # more parts than one trigger invocation may stage (folders.MAX_BATCH_PARTS)
REASON_INVALID_MANIFEST = "InvalidManifest"  # a _manifest.json that is no valid list of the folder's files
REFUSAL_REASONS = (REASON_UNREADABLE_EVENT, REASON_OBJECT_NOT_FOUND, REASON_ACCESS_DENIED, REASON_INVALID_DATASET,
                   REASON_INVALID_KEY, REASON_VERSION_MISMATCH, REASON_INVALID_BATCH, REASON_EMPTY_BATCH,
                   REASON_BATCH_TOO_LARGE, REASON_INVALID_MANIFEST)


class RefusedKeyError(ValueError):
    """The object key can never map to a valid processing job; retrying would not help.

    Attributes:
        reason_code: one of :data:`REFUSAL_REASONS` (the ``Reason`` dimension of the ``KeyRefused`` metric).
        retry: True when the record must still be retried (``AccessDenied``: maybe a permission someone fixes).
    """

    def __init__(self, message: str, reason_code: str = REASON_INVALID_KEY, *, retry: bool = False) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.retry = retry


def refusal_metric_data(reason_code: str) -> list[MetricDatumTypeDef]:
    """``KeyRefused`` = 1 with dimension ``Reason`` (for the dashboard and diagnosis) and without (the alarm's)."""
    return [
        {"MetricName": REFUSED_METRIC, "Dimensions": [{"Name": REASON_DIMENSION, "Value": reason_code}],
         "Value": 1.0, "Unit": "Count"},
        {"MetricName": REFUSED_METRIC, "Value": 1.0, "Unit": "Count"},
    ]


def refusal_notification(bucket: str, key: str, version_id: str, reason_code: str, reason: str, *,
                         event_key: str | None = None, retried: bool = False) -> PublishInputTypeDef:
    """SNS Publish arguments (without ``TopicArn``) telling that an upload will not be processed, and why.

    JSON body like the metrics Lambda's messages; ``event`` = ``key-refused`` and ``reason`` are also message
    attributes (for subscription filter policies). ``event_key`` is the key as the event carried it, when it
    differs from ``key``; ``retried`` says that the event is kept and retried (``AccessDenied``).
    """
    where = f"s3://{bucket}/{key}" if bucket and key else "(unknown object)"
    outcome = ("the event is retried and ends in the trigger's dead-letter queue if it keeps failing" if retried
               else "no job was started")
    body = {
        "event": "key-refused",
        "summary": (f"Upload {where} (version {version_id or 'none'}) refused, {reason_code}: {reason}; "
                    f"{outcome}")[:1000],
        "bucket": bucket or None,
        "key": key or None,
        "event_key": event_key if event_key is not None and event_key != key else None,
        "version_id": version_id or None,
        "reason_code": reason_code,
        "reason": reason,
        "retried": retried,
    }
    return {
        "Subject": f"Data quality upload refused: {reason_code}"[:SNS_SUBJECT_MAX],
        "Message": json.dumps(body, indent=2, ensure_ascii=False, default=str),
        "MessageAttributes": {
            "event": {"DataType": "String", "StringValue": "key-refused"},
            "reason": {"DataType": "String", "StringValue": reason_code},
        },
    }


def tell_refusal(cloudwatch: CloudWatchClient, sns: SNSClient, settings: Settings, *, bucket: str, key: str,
                 version_id: str, reason_code: str, reason: str, event_key: str | None = None,
                 retried: bool = False) -> None:
    """Count (``KeyRefused`` by reason) and tell (one message on the alert topic) that an upload is refused.

    Raises:
        ClientError / BotoCoreError: either call failed: the caller retries the record, so nothing is lost.
    """
    cloudwatch.put_metric_data(Namespace=settings.metrics_namespace, MetricData=refusal_metric_data(reason_code))
    if settings.alert_topic_arn:
        message: PublishInputTypeDef = {
            **refusal_notification(bucket, key, version_id, reason_code, reason, event_key=event_key, retried=retried),
            "TopicArn": settings.alert_topic_arn}
        sns.publish(**message)
