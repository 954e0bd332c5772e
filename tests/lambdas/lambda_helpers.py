"""Helpers shared by the Lambda handler tests (a uniquely named module: test dirs are not packages)."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "infra" / "lambdas"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


ROOT = LAMBDAS_DIR.parents[1]
for _path in (str(ROOT), str(LAMBDAS_DIR)):  # the Lambda asset's layout: contract/, lambda_shared/, trigger/, metrics/
    if _path not in sys.path:
        sys.path.insert(0, _path)


class FunctionModules:
    """The modules of one function package (``trigger`` / ``metrics``) seen as one namespace, for the tests.

    Reading a name finds it in the package's modules (the handler entry first); assigning one (monkeypatch) sets it
    in the module that defines it: the one whose function or class it is, else the first module holding it.
    """

    __slots__ = ("_modules",)

    def __init__(self, modules: list[ModuleType]) -> None:
        object.__setattr__(self, "_modules", modules)

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        """Every name the namespace resolves (pytest's monkeypatch reads the old value here)."""
        names = {n for m in self._modules for n in vars(m)}
        return {n: getattr(self, n) for n in names}

    def _owner(self, name: str) -> ModuleType:
        holders = [m for m in self._modules if name in vars(m)]
        if not holders:
            raise AttributeError(name)
        value = vars(holders[0])[name]
        defined = getattr(value, "__module__", None)
        return next((m for m in holders if m.__name__ == defined), holders[0])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._owner(name), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._owner(name), name, value)


def load_handler(name: str) -> Any:
    """The function package ``infra/lambdas/<name>/`` as one namespace (:class:`FunctionModules`), entry first."""
    package = importlib.import_module(name)
    entry = importlib.import_module(f"{name}.handler")
    others = sorted(p.stem for p in (LAMBDAS_DIR / name).glob("*.py") if p.stem not in ("__init__", "handler"))
    return FunctionModules([entry, *(importlib.import_module(f"{name}.{m}") for m in others), package])


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


# Trigger environment as the CDK construct sets it.
ENV: dict[str, str] = {
    "DATA_BUCKET": "dq-data-bucket",
    "INPUT_PREFIX": "input/",
    "OUTPUT_PREFIX": "output/",
    "JOB_PREFIX": "dq",
    "ROLE_ARN": "arn:aws:iam::123456789012:role/dq-processing-job-role",
    "IMAGE_URI": "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3",
    "CODE_S3_URI": "s3://cdk-assets-bucket/0123456789abcdef.zip",
    "CODE_VERSION": "0123456789abcdef",
    "INSTANCE_TYPE": "ml.t3.medium",
    "INSTANCE_COUNT": "1",
    "VOLUME_SIZE_GB": "30",
    "MAX_RUNTIME_SECONDS": "3600",
    "PROCESSING_MODE": "auto",
    "KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "STAGING_PREFIX": "staging/",
    "ALERT_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:dq-alerts",
    "METRICS_NAMESPACE": "DataQualityPipeline",
}
EVENT_SIZE = 1234  # detail.object.size of s3_event_body's default
EVENT_ETAG = "b1946ac92492d2347c6235b4d2611184"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dq-trigger-queue"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/dq-trigger-queue"


def s3_event_body(raw_key: str, size: int = EVENT_SIZE, version_id: str | None = "v1",
                  bucket: str = ENV["DATA_BUCKET"]) -> str:
    obj: dict = {"key": raw_key, "size": size, "etag": EVENT_ETAG, "sequencer": "617f08299329d189"}
    if version_id is not None:
        obj["version-id"] = version_id
    return json.dumps({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2021-11-12T00:00:00Z", "region": "eu-west-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "request-id": "N4N7GDK58NMKJ12R",
                   "requester": "123456789012", "source-ip-address": "1.2.3.4", "reason": "PutObject"},
    })


def sqs_record(body: str, message_id: str = "msg-1", receive_count: int = 1) -> dict[str, Any]:
    """One record of an SQS event source batch."""
    return {
        "messageId": message_id,
        "receiptHandle": f"receipt-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1700000000000",
                       "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1700000000001"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    }
