"""Entry point of the trigger Lambda (``trigger.handler.handler``): parse, delegate, answer.

Invoked by an SQS event source (partial batch responses on) whose message bodies are EventBridge "Object Created"
events from S3. :func:`trigger.batch.process_batch` does the work per record: resolve the event's key against S3,
copy exactly the event's object version to an immutable per-job staging key, start the job on that copy, or refuse
and tell. See ``infra/lambdas/README.md`` and ``docs/design.md`` (Contracts 1, 2).
Standard library, boto3 and the asset's own packages (``contract``, ``lambda_shared``) only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lambda_shared.clients import client
from lambda_shared.logs import decision_log
from trigger.batch import SAGEMAKER_MAX_ATTEMPTS, Clients, process_batch
from trigger.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

# Created once per execution environment (tests assign Stubber-wrapped clients and settings here).
_settings: Settings | None = None
sagemaker_client: SageMakerClient | None = None
sqs_client: SQSClient | None = None
s3_client: S3Client | None = None
cloudwatch_client: CloudWatchClient | None = None
sns_client: SNSClient | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env(os.environ)
    return _settings


def get_sagemaker() -> SageMakerClient:
    global sagemaker_client
    if sagemaker_client is None:
        sagemaker_client = client("sagemaker", SAGEMAKER_MAX_ATTEMPTS)
    return sagemaker_client


def get_sqs() -> SQSClient:
    global sqs_client
    if sqs_client is None:
        sqs_client = client("sqs", 3)
    return sqs_client


def get_s3() -> S3Client:
    global s3_client
    if s3_client is None:
        s3_client = client("s3", 3)
    return s3_client


def get_cloudwatch() -> CloudWatchClient:
    global cloudwatch_client
    if cloudwatch_client is None:
        cloudwatch_client = client("cloudwatch", 3)
    return cloudwatch_client


def get_sns() -> SNSClient:
    global sns_client
    if sns_client is None:
        sns_client = client("sns", 3)
    return sns_client


def handler(event: Mapping[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Lambda entry point (SQS event source with ``ReportBatchItemFailures``)."""
    decision_log("dq.trigger").request_id = getattr(context, "aws_request_id", "") or ""
    clients = Clients(sagemaker=get_sagemaker(), sqs=get_sqs(), s3=get_s3(), cloudwatch=get_cloudwatch(),
                      sns=get_sns())
    return process_batch(event, get_settings(), clients)
