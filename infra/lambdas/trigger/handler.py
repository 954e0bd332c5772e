"""Start one SageMaker Processing job per S3 object version dropped under the input prefix.

Invoked by an SQS event source (partial batch responses on) whose message bodies are EventBridge
"Object Created" events from S3. See ``infra/lambdas/README.md`` and ``docs/design.md`` (Contracts 1, 2).
Standard library and boto3 only: this file is deployed as-is with ``Code.from_asset``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sqs import SQSClient

OUTPUT_FOLDERS = ("cleaned", "transformed", "statistics", "quality", "rejected")
CONTAINER_ROOT = "/opt/ml/processing"
CODE_LOCAL_PATH = f"{CONTAINER_ROOT}/input/code"
DATA_LOCAL_PATH = f"{CONTAINER_ROOT}/input/data"
OUTPUT_LOCAL_PATH = f"{CONTAINER_ROOT}/output"
BASELINE_LOCAL_PATH = f"{CONTAINER_ROOT}/input/baseline"
BASELINE_FILE = "baseline.json"
QUARANTINE_OUTPUT = "quarantine"
# HeadObject answers: 404 = no baseline (the role has s3:ListBucket on the baseline prefix, so a missing key is 404);
# 403 = access denied (IAM, bucket policy, KMS) or a missing key if ListBucket does not apply: treated as no baseline
# too, logged at ERROR (baseline-unreadable), so the job still runs and DriftUnavailable shows it. Anything else is
# retried.
BASELINE_ABSENT_STATUS = frozenset({403, 404})
DEFAULT_DATASET = "default"
# The job's PROCESSING_MODE values (processing/pipeline.py: choose_mode). A function deployed before the variable
# existed has none: it defaults to "auto", which is what the job did without it.
PROCESSING_MODES = ("auto", "memory", "streaming")
DEFAULT_PROCESSING_MODE = "auto"
# The job's PROCESSING_MAX_ROWS_IN_MEMORY (processing/streaming.py: max_rows_in_memory): streaming's row budget, a
# positive whole number; missing or empty = not set, so the job derives it from the instance's memory. Bounded like
# the stack setting (infra/config.py: MAX_ROWS_IN_MEMORY_LIMIT).
MAX_ROWS_IN_MEMORY_LIMIT = 2**63 - 1

DATASET_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
ROLE_ARN_RE = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
KMS_KEY_RE = re.compile(r"[a-zA-Z0-9:/_-]+")
# Printable characters only: the service-side patterns of S3Uri, LocalPath and ContainerArgument are `.*`,
# which does not match line breaks, and control characters in paths are never intended.
CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")

JOB_NAME_MAX = 63
HASH_HEX_CHARS = 16
JOB_PREFIX_MAX = 40  # leaves room for "-<dataset>-<16 hex>" within 63 chars
API_STRING_MAX = 256  # ContainerArgument, ContainerEntrypoint item, Environment value, Tag value
S3_URI_MAX = 1024
TAG_VALUE_MAX = 256

# botocore's retries["max_attempts"] counts retries after the first call: 3 -> at most 4 calls, standard mode
# (jittered exponential backoff, retries ThrottlingException but not ResourceLimitExceeded).
SAGEMAKER_MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 900  # 15 min; SQS allows up to 12 h
RETRY_LATER_CODES = frozenset({"ThrottlingException", "ResourceLimitExceeded"})

LOGGER = logging.getLogger("dq.trigger")


class SettingsError(ValueError):
    """An environment variable is missing or invalid (names the variable)."""


class RefusedKeyError(ValueError):
    """The object key can never map to a valid processing job; retrying would not help."""


@dataclass(frozen=True)
class Settings:
    """The trigger's configuration, parsed once from the environment.

    Every field maps to one environment variable of the same name in upper case
    (``data_bucket`` <- ``DATA_BUCKET``); see ``from_env`` for the validation rules.
    """

    data_bucket: str
    input_prefix: str
    output_prefix: str
    job_prefix: str
    role_arn: str
    image_uri: str
    code_s3_uri: str
    code_version: str
    instance_type: str
    instance_count: int
    volume_size_gb: int
    max_runtime_seconds: int
    kms_key_arn: str
    baseline_prefix: str = "baselines/"
    quarantine_prefix: str = "quarantine/"
    processing_mode: str = DEFAULT_PROCESSING_MODE
    processing_max_rows_in_memory: int | None = None  # None: not passed on, the job derives its row budget

    def baseline_key(self, dataset: str) -> str:
        """``<BASELINE_PREFIX><dataset>/baseline.json`` (design.md Contract 4)."""
        return f"{self.baseline_prefix}{dataset}/{BASELINE_FILE}"

    @property
    def code_file_name(self) -> str:
        """The asset's file name: the code input lands at ``<CODE_LOCAL_PATH>/<code_file_name>``."""
        return self.code_s3_uri.rsplit("/", 1)[1]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate the settings.

        Args:
            environ: the environment (``os.environ`` in Lambda).

        Returns:
            The validated settings.

        Raises:
            SettingsError: naming the first missing or invalid variable.
        """

        def text(name: str, max_len: int = 2048) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise SettingsError(f"environment variable {name} is missing or empty")
            if len(value) > max_len:
                raise SettingsError(f"environment variable {name} is longer than {max_len} characters")
            return value

        def optional(name: str) -> str:
            """A variable a function deployed before it existed lacks: missing or blank reads as ``""``."""
            return environ.get(name, "").strip()

        def integer(name: str, low: int, high: int, raw: str | None = None) -> int:
            """``raw`` (default: the required variable ``name``) as an integer within ``low..high``."""
            raw = text(name) if raw is None else raw
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"environment variable {name}={raw!r} is not an integer") from None
            if not low <= value <= high:
                raise SettingsError(f"environment variable {name}={value} is outside {low}..{high}")
            return value

        def prefix(name: str, default: str | None = None) -> str:
            value = (environ.get(name, "").strip() or default) if default is not None else text(name, 512)
            if len(value) > 512:
                raise SettingsError(f"environment variable {name} is longer than 512 characters")
            if value.startswith("/") or not value.endswith("/"):
                raise SettingsError(f"environment variable {name}={value!r} must not start with '/' and must end with '/'")
            return value

        input_prefix = prefix("INPUT_PREFIX")
        output_prefix = prefix("OUTPUT_PREFIX")
        if input_prefix.startswith(output_prefix) or output_prefix.startswith(input_prefix):
            raise SettingsError(
                f"environment variables INPUT_PREFIX={input_prefix!r} and OUTPUT_PREFIX={output_prefix!r} overlap"
            )

        baseline_prefix = prefix("BASELINE_PREFIX", "baselines/")
        quarantine_prefix = prefix("QUARANTINE_PREFIX", "quarantine/")
        for name, value in (("BASELINE_PREFIX", baseline_prefix), ("QUARANTINE_PREFIX", quarantine_prefix)):
            if input_prefix.startswith(value) or value.startswith(input_prefix):
                raise SettingsError(
                    f"environment variables INPUT_PREFIX={input_prefix!r} and {name}={value!r} overlap"
                )

        job_prefix = text("JOB_PREFIX", JOB_PREFIX_MAX)
        if not JOB_NAME_RE.fullmatch(job_prefix):
            raise SettingsError(
                f"environment variable JOB_PREFIX={job_prefix!r} must match [a-zA-Z0-9](-*[a-zA-Z0-9])*"
            )

        role_arn = text("ROLE_ARN")
        if not ROLE_ARN_RE.fullmatch(role_arn):
            raise SettingsError(f"environment variable ROLE_ARN={role_arn!r} is not an IAM role ARN")

        code_s3_uri = text("CODE_S3_URI", S3_URI_MAX)
        bucket_and_key = code_s3_uri.removeprefix("s3://")
        if (
            not code_s3_uri.startswith("s3://")
            or "/" not in bucket_and_key
            or not bucket_and_key.split("/", 1)[0]
            or not code_s3_uri.endswith(".zip")
        ):
            raise SettingsError(f"environment variable CODE_S3_URI={code_s3_uri!r} must look like s3://<bucket>/<key>.zip")
        entrypoint = f"{CODE_LOCAL_PATH}/{code_s3_uri.rsplit('/', 1)[1]}"
        if len(entrypoint) > API_STRING_MAX:
            raise SettingsError("environment variable CODE_S3_URI has a file name too long for the container entrypoint")

        instance_type = text("INSTANCE_TYPE", 64)
        if not instance_type.startswith("ml."):
            raise SettingsError(f"environment variable INSTANCE_TYPE={instance_type!r} must start with 'ml.'")

        kms_key_arn = text("KMS_KEY_ARN")
        if not KMS_KEY_RE.fullmatch(kms_key_arn):
            raise SettingsError(f"environment variable KMS_KEY_ARN={kms_key_arn!r} is not a KMS key id or ARN")

        processing_mode = optional("PROCESSING_MODE") or DEFAULT_PROCESSING_MODE
        if processing_mode not in PROCESSING_MODES:
            raise SettingsError(
                f"environment variable PROCESSING_MODE={processing_mode!r} must be one of {', '.join(PROCESSING_MODES)}"
            )
        max_rows = optional("PROCESSING_MAX_ROWS_IN_MEMORY")
        max_rows_in_memory = (
            integer("PROCESSING_MAX_ROWS_IN_MEMORY", 1, MAX_ROWS_IN_MEMORY_LIMIT, max_rows) if max_rows else None
        )

        data_bucket = text("DATA_BUCKET", 63)
        if "/" in data_bucket:
            raise SettingsError(f"environment variable DATA_BUCKET={data_bucket!r} must be a bucket name")

        return cls(
            data_bucket=data_bucket,
            input_prefix=input_prefix,
            output_prefix=output_prefix,
            job_prefix=job_prefix,
            role_arn=role_arn,
            image_uri=text("IMAGE_URI", 255),
            code_s3_uri=code_s3_uri,
            code_version=text("CODE_VERSION", API_STRING_MAX),
            instance_type=instance_type,
            instance_count=integer("INSTANCE_COUNT", 1, 100),
            volume_size_gb=integer("VOLUME_SIZE_GB", 1, 16384),
            max_runtime_seconds=integer("MAX_RUNTIME_SECONDS", 1, 777600),
            kms_key_arn=kms_key_arn,
            baseline_prefix=baseline_prefix,
            quarantine_prefix=quarantine_prefix,
            processing_mode=processing_mode,
            processing_max_rows_in_memory=max_rows_in_memory,
        )


@dataclass(frozen=True)
class ObjectRef:
    """One dropped object version, with the key already decoded."""

    bucket: str
    key: str
    version_id: str
    size: int | None
    etag: str = ""


@dataclass(frozen=True)
class JobTarget:
    """Where a key maps to: its dataset and file name."""

    dataset: str
    basename: str


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def decode_event_key(raw_key: str) -> str:
    """Decode ``detail.object.key`` of an S3 EventBridge event to the real object key.

    S3 URL-encodes keys in its notifications, form-style: a space arrives as ``+``, a literal ``+``
    as ``%2B`` and a literal ``%`` as ``%25``. The EventBridge "Object Created" detail carries the key
    the same way (AWS Lambda Powertools' ``S3EventBridgeNotificationObject.key`` and OpenSearch
    Data Prepper's ``S3EventBridgeNotification.getUrlDecodedKey`` both decode it), so
    ``unquote_plus`` restores it exactly.
    """
    return unquote_plus(raw_key, encoding="utf-8", errors="strict")


def parse_object_created(body: str) -> ObjectRef:
    """Extract the object reference from an SQS message body holding an S3 "Object Created" event.

    Raises:
        ValueError: the body is not such an event (never retried: it would never parse).
    """
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("message body is not a JSON object")
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        raise ValueError(
            f"not an S3 'Object Created' event (source={event.get('source')!r}, detail-type={event.get('detail-type')!r})"
        )
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    raw_key = obj.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(raw_key, str) or not raw_key:
        raise ValueError("event has no detail.bucket.name or detail.object.key")
    size = obj.get("size")
    version_id = obj.get("version-id")
    etag = obj.get("etag")
    return ObjectRef(
        bucket=bucket,
        key=decode_event_key(raw_key),
        version_id=version_id if isinstance(version_id, str) and version_id != "null" else "",
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        etag=etag.strip('"')[:API_STRING_MAX] if isinstance(etag, str) else "",
    )


def ignore_reason(obj: ObjectRef, settings: Settings) -> str | None:
    """Why this object is not ours to process, or None if it is (silently skipped, not an error)."""
    if obj.bucket != settings.data_bucket:
        return "bucket is not the data bucket"
    if obj.key.endswith("/"):
        return "folder marker"
    if obj.size == 0:
        return "zero-byte object"
    if obj.key.startswith(settings.output_prefix):
        return "key is under the output prefix"
    if not obj.key.startswith(settings.input_prefix):
        return "key is outside the input prefix"
    return None


def api_len(value: str) -> int:
    """Length as the service counts it (UTF-16 code units, like Java), never less than ``len``."""
    return len(value.encode("utf-16-le", "surrogatepass")) // 2


def map_key(bucket: str, key: str, settings: Settings) -> JobTarget:
    """Map ``<input_prefix><dataset>/<...>/<file>`` (or ``<input_prefix><file>``) to dataset and file name.

    Raises:
        RefusedKeyError: the key can never become a valid job.
    """
    relative = key[len(settings.input_prefix):]
    if "/" in relative:
        raw_dataset, _ = relative.split("/", 1)
        dataset = raw_dataset.lower()
        if not DATASET_RE.fullmatch(dataset):
            raise RefusedKeyError(f"dataset name {raw_dataset!r} does not match [a-z0-9][a-z0-9-]{{0,31}} after lower-casing")
    else:
        dataset = DEFAULT_DATASET
    basename = relative.rsplit("/", 1)[-1]
    if not basename:
        raise RefusedKeyError("key has no file name")
    if CONTROL_CHARS_RE.search(key):
        raise RefusedKeyError("key contains control characters or line breaks")
    if api_len(f"{DATA_LOCAL_PATH}/{basename}") > API_STRING_MAX:
        raise RefusedKeyError(
            f"file name is {len(basename)} characters; the container argument "
            f"'{DATA_LOCAL_PATH}/<file>' must fit {API_STRING_MAX}"
        )
    source_uri = f"s3://{bucket}/{key}"
    if api_len(source_uri) > API_STRING_MAX:
        raise RefusedKeyError(
            f"s3://bucket/key is {len(source_uri)} characters; the job's SOURCE_URI must fit {API_STRING_MAX}"
        )
    return JobTarget(dataset=dataset, basename=basename)


def object_digest(bucket: str, key: str, version_id: str) -> str:
    """sha256 hex of ``bucket \\0 key \\0 versionId``: the identity of one object version."""
    material = "\0".join((bucket, key, version_id)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()


def job_name_for(job_prefix: str, dataset: str, bucket: str, key: str, version_id: str) -> str:
    """Deterministic job name ``<job_prefix>-<dataset truncated>-<16 hex>`` (≤ 63 chars, ``[a-zA-Z0-9-]``)."""
    digest = object_digest(bucket, key, version_id)[:HASH_HEX_CHARS]
    room = JOB_NAME_MAX - len(job_prefix) - len(digest) - 2
    return f"{job_prefix}-{dataset[:max(room, 0)]}-{digest}"


def _tag_safe(value: str) -> str:
    # SageMaker tag values: [\p{L}\p{Z}\p{N}_.:/=+\-@]*
    return "".join(
        ch if unicodedata.category(ch)[0] in "LNZ" or ch in "_.:/=+-@" else "_" for ch in value
    )


def tag_value(value: str) -> str:
    """A valid tag value for ``value``: verbatim if allowed, else sanitised and suffixed with a hash.

    A truncated or sanitised value keeps a ``@<16 hex>`` suffix (sha256 of the original) so it stays unique.
    """
    safe = _tag_safe(value)
    if safe == value and api_len(value) <= TAG_VALUE_MAX:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX_CHARS]
    head = safe[: TAG_VALUE_MAX - HASH_HEX_CHARS - 1]
    while api_len(head) > TAG_VALUE_MAX - HASH_HEX_CHARS - 1:
        head = head[:-1]
    return f"{head}@{digest}"


def build_processing_job_request(bucket: str, key: str, version_id: str, settings: Settings, *,
                                 baseline_uri: str | None = None, size: int | None = None,
                                 etag: str = "") -> dict[str, Any]:
    """Build the CreateProcessingJob request for one object version (design.md Contracts 1, 2 and 4).

    Args:
        bucket: the data bucket.
        key: the decoded object key, under ``settings.input_prefix``.
        version_id: the object's version id, or "" on an unversioned bucket.
        settings: the trigger's settings.
        baseline_uri: ``s3://`` URI of the dataset's baseline.json when it exists: adds input ``baseline`` and
            ``--baseline``.
        size: the event's ``detail.object.size`` (bytes of this version), passed as ``SOURCE_SIZE`` ("" when
            unknown). The ``data`` input is an S3Prefix, so SageMaker downloads whatever version is current when
            the job starts; the job compares the file's size with this one and fails with ``SourceChangedError``
            when a newer upload replaced the object (design.md Contract 1).
        etag: the event's ``detail.object.etag``, passed as ``SOURCE_ETAG`` for the record only: with SSE-KMS
            (our bucket) or multipart uploads the ETag is not the MD5 of the content, so the job cannot verify it.

    Returns:
        Keyword arguments for ``sagemaker.create_processing_job``.

    Raises:
        RefusedKeyError: the key can never map to a valid job.
    """
    target = map_key(bucket, key, settings)
    job_name = job_name_for(settings.job_prefix, target.dataset, bucket, key, version_id)
    source_uri = f"s3://{bucket}/{key}"

    def s3_input(name: str, uri: str, local_path: str) -> dict[str, Any]:
        return {
            "InputName": name,
            "AppManaged": False,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": local_path,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    output_root = f"s3://{settings.data_bucket}/{settings.output_prefix}{target.dataset}/{job_name}"
    tags = {
        "dq:job-name": job_name,
        "dq:dataset": target.dataset,
        "dq:input-bucket": bucket,
        "dq:input-key": key,
        "dq:input-key-sha256": hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest(),
        "dq:input-version-id": version_id or "none",
        "dq:code-version": settings.code_version,
    }
    return {
        "ProcessingJobName": job_name,
        "ProcessingInputs": [
            s3_input("code", settings.code_s3_uri, CODE_LOCAL_PATH),
            s3_input("data", source_uri, DATA_LOCAL_PATH),
            *([s3_input("baseline", baseline_uri, BASELINE_LOCAL_PATH)] if baseline_uri else []),
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": folder,
                    "AppManaged": False,
                    "S3Output": {
                        "S3Uri": f"{output_root}/{folder}/",
                        "LocalPath": f"{OUTPUT_LOCAL_PATH}/{folder}",
                        "S3UploadMode": "EndOfJob",
                    },
                }
                for folder in OUTPUT_FOLDERS
            ]
            + [
                {
                    "OutputName": QUARANTINE_OUTPUT,
                    "AppManaged": False,
                    "S3Output": {
                        "S3Uri": f"s3://{settings.data_bucket}/{settings.quarantine_prefix}{target.dataset}/{job_name}/",
                        "LocalPath": f"{OUTPUT_LOCAL_PATH}/{QUARANTINE_OUTPUT}",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
            "KmsKeyId": settings.kms_key_arn,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": settings.instance_count,
                "InstanceType": settings.instance_type,
                "VolumeSizeInGB": settings.volume_size_gb,
                "VolumeKmsKeyId": settings.kms_key_arn,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "AppSpecification": {
            "ImageUri": settings.image_uri,
            "ContainerEntrypoint": ["python3", f"{CODE_LOCAL_PATH}/{settings.code_file_name}"],
            "ContainerArguments": [
                "--input", f"{DATA_LOCAL_PATH}/{target.basename}",
                "--output", OUTPUT_LOCAL_PATH,
                "--dataset", target.dataset,
                *(["--baseline", f"{BASELINE_LOCAL_PATH}/{BASELINE_FILE}"] if baseline_uri else []),
            ],
        },
        "Environment": {
            "DATASET": target.dataset,
            "SOURCE_URI": source_uri,
            "SOURCE_VERSION_ID": version_id,
            "SOURCE_SIZE": str(size) if size is not None else "",
            "SOURCE_ETAG": etag,
            "CODE_VERSION": settings.code_version,
            "PROCESSING_MODE": settings.processing_mode,
            # the parsed number, not the variable's text: the job's own check wants plain digits (no sign, '_')
            **({} if settings.processing_max_rows_in_memory is None
               else {"PROCESSING_MAX_ROWS_IN_MEMORY": str(settings.processing_max_rows_in_memory)}),
        },
        "NetworkConfig": {"EnableNetworkIsolation": True},
        "RoleArn": settings.role_arn,
        "Tags": [{"Key": k, "Value": tag_value(v)} for k, v in tags.items()],
    }


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


# --------------------------------------------------------------------------------------------
# Side effects: clients, logging, the handler
# --------------------------------------------------------------------------------------------

_settings: Settings | None = None
_request_id = ""
sagemaker_client: SageMakerClient | None = None  # tests assign Stubber-wrapped clients here
sqs_client: SQSClient | None = None
s3_client: S3Client | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env(os.environ)
    return _settings


def get_sagemaker() -> SageMakerClient:
    global sagemaker_client
    if sagemaker_client is None:
        sagemaker_client = boto3.client(
            "sagemaker",
            config=Config(retries={"mode": "standard", "max_attempts": SAGEMAKER_MAX_ATTEMPTS}),
        )
    return sagemaker_client


def get_sqs() -> SQSClient:
    global sqs_client
    if sqs_client is None:
        sqs_client = boto3.client("sqs", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    return sqs_client


def get_s3() -> S3Client:
    global s3_client
    if s3_client is None:
        s3_client = boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    return s3_client


def find_baseline(s3: S3Client, dataset: str, settings: Settings, base: Mapping[str, Any]) -> str | None:
    """``s3://`` URI of the dataset's baseline.json if HeadObject finds it, else None.

    404 means no baseline. The role has ``s3:ListBucket`` on the baseline prefix, so a missing key should be a 404;
    a 403 therefore most likely means the baseline exists but cannot be read (IAM, bucket policy, KMS). It is still
    treated as "no baseline" rather than retried (retrying would block every job of the dataset until someone fixes
    the permission), and logged at ERROR as ``baseline-unreadable``; the job then reports drift as unavailable and
    the DriftUnavailable metric (alarm after 3 hours) shows it. Any other error (throttling, 5xx, network, after
    botocore's retries) raises: the record is retried like any other transient failure.
    """
    key = settings.baseline_key(dataset)
    try:
        s3.head_object(Bucket=settings.data_bucket, Key=key)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if status in BASELINE_ABSENT_STATUS or code in ("404", "403", "NoSuchKey", "NotFound", "AccessDenied", "Forbidden"):
            if status == 403 or code in ("403", "AccessDenied", "Forbidden"):
                log_decision("baseline-unreadable", logging.ERROR, **base, baseline_key=key, error_code=code,
                             reason="HeadObject returned 403 (access denied: IAM, bucket policy or KMS): "
                                    "the job runs without a baseline, drift unavailable")
            return None
        raise
    return f"s3://{settings.data_bucket}/{key}"


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
    """Log one decision (started, already-exists, ignored, refused, retry, failed) as a JSON line."""
    record = {"level": logging.getLevelName(level), "decision": decision, "request_id": _request_id, **fields}
    LOGGER.log(level, json.dumps(record, ensure_ascii=False, default=str))


def _process_record(
    record: Mapping[str, Any],
    settings: Settings,
    sagemaker: SageMakerClient,
    sqs: SQSClient,
    rand: Callable[[], float],
    s3: S3Client | None = None,
) -> bool:
    """Handle one SQS record. Returns True when it must be retried (reported as a batch item failure)."""
    message_id = record.get("messageId", "")
    base: dict[str, Any] = {"message_id": message_id}
    try:
        obj = parse_object_created(record.get("body", ""))
    except (ValueError, UnicodeDecodeError) as exc:
        log_decision("refused", logging.ERROR, **base, reason=f"unparseable message: {exc}",
                     body=str(record.get("body", ""))[:1000])
        return False
    base.update(bucket=obj.bucket, key=obj.key, version_id=obj.version_id, size=obj.size)

    reason = ignore_reason(obj, settings)
    if reason:
        log_decision("ignored", **base, reason=reason)
        return False
    try:
        target = map_key(obj.bucket, obj.key, settings)
    except RefusedKeyError as exc:
        log_decision("refused", logging.WARNING, **base, reason=str(exc))
        return False
    try:
        baseline_uri = find_baseline(s3, target.dataset, settings, base) if s3 is not None else None
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
        log_decision("failed", logging.ERROR, **base, dataset=target.dataset, error_code=code,
                     error=f"HeadObject {settings.baseline_key(target.dataset)}: {exc}")
        return True
    request = build_processing_job_request(obj.bucket, obj.key, obj.version_id, settings, baseline_uri=baseline_uri,
                                           size=obj.size, etag=obj.etag)
    job_name = request["ProcessingJobName"]
    base.update(job_name=job_name, dataset=request["Environment"]["DATASET"], baseline=baseline_uri)

    try:
        response = sagemaker.create_processing_job(**request)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        if is_already_exists(exc):
            log_decision("already-exists", **base, error_code=code)
            return False
        if code in RETRY_LATER_CODES:
            _delay_retry(record, sqs, rand, base, code, err.get("Message", ""))
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
    try:
        receive_count = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
    except ValueError:
        receive_count = 1
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
    *,
    sagemaker: SageMakerClient,
    sqs: SQSClient,
    s3: S3Client | None = None,
    rand: Callable[[], float] | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Process an SQS batch and return the partial batch response."""
    rand = rand or random.random
    failures = []
    for record in event.get("Records", []):
        try:
            retry = _process_record(record, settings, sagemaker, sqs, rand, s3)
        except Exception as exc:  # noqa: BLE001 - one bad record must not fail (and re-run) the whole batch
            log_decision("failed", logging.ERROR, message_id=record.get("messageId", ""), error=repr(exc))
            retry = True
        if retry:
            failures.append({"itemIdentifier": record.get("messageId", "")})
    return {"batchItemFailures": failures}


def handler(event: Mapping[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Lambda entry point (SQS event source with ``ReportBatchItemFailures``)."""
    global _request_id
    _request_id = getattr(context, "aws_request_id", "") or ""
    return process_batch(event, get_settings(), sagemaker=get_sagemaker(), sqs=get_sqs(), s3=get_s3())
