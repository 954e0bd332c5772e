"""Entry point of the metrics Lambda (``metrics.handler.handler``): parse, delegate, answer.

Invoked directly by an EventBridge rule on "SageMaker Processing Job State Change" (terminal states), asynchronously.
:func:`metrics.publication.process_event` does the work (design.md Contracts 3 and 4).
Standard library, boto3 and the asset's own packages (``contract``, ``lambda_shared``) only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lambda_shared.clients import client
from lambda_shared.logs import decision_log
from metrics.publication import process_event
from metrics.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient

MAX_ATTEMPTS = 5  # botocore standard retries after the first call
# Created once per execution environment (tests assign Stubber-wrapped clients and settings here).
_settings: Settings | None = None
cloudwatch_client: CloudWatchClient | None = None
s3_client: S3Client | None = None
sns_client: SNSClient | None = None
sagemaker_client: SageMakerClient | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env(os.environ)
    return _settings


def get_cloudwatch() -> CloudWatchClient:
    global cloudwatch_client
    if cloudwatch_client is None:
        cloudwatch_client = client("cloudwatch", MAX_ATTEMPTS)
    return cloudwatch_client


def get_s3() -> S3Client:
    global s3_client
    if s3_client is None:
        s3_client = client("s3", MAX_ATTEMPTS)
    return s3_client


def get_sns() -> SNSClient:
    global sns_client
    if sns_client is None:
        sns_client = client("sns", MAX_ATTEMPTS)
    return sns_client


def get_sagemaker() -> SageMakerClient:
    global sagemaker_client
    if sagemaker_client is None:
        sagemaker_client = client("sagemaker", MAX_ATTEMPTS)
    return sagemaker_client


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (EventBridge rule target, asynchronous invocation)."""
    decision_log("dq.metrics").request_id = getattr(context, "aws_request_id", "") or ""
    settings = get_settings()
    return process_event(event, settings, cloudwatch=get_cloudwatch(), s3=get_s3(), sagemaker=get_sagemaker(),
                         sns=get_sns() if settings.alert_topic_arn else None)
