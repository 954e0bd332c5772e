"""Start one SageMaker Processing job per S3 object version dropped under the input prefix.

Invoked by an SQS event source (partial batch responses on) whose message bodies are EventBridge
"Object Created" events from S3. Per record: resolve the event's key against S3 (the raw key first, then its
URL-decoded form: AWS does not document the key encoding of these events), copy exactly the event's object version to
an immutable per-job staging key, then start the job on that copy. A key that can never become a job is refused and
told (metric ``KeyRefused`` by reason + a message on the alert topic). See ``infra/lambdas/README.md`` and
``docs/design.md`` (Contracts 1, 2).
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient
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
# The job's PROCESSING_MAX_ROWS_IN_MEMORY (read by processing/cli.py: run_options): streaming's row budget, a
# positive whole number; missing or empty = not set, so the job derives it from the instance's memory
# (processing/streaming: default_max_rows). Bounded like
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

# Key resolution (HeadObject of the event's version): these answers mean "no such key or version".
# 405 = the version is a delete marker. Anything else but a 403 is retried like any transient failure.
NOT_FOUND_STATUS = frozenset({404, 405})
NOT_FOUND_CODES = frozenset({"404", "405", "NoSuchKey", "NoSuchVersion", "NotFound", "MethodNotAllowed"})
DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})

# Staging (design.md Contract 1): CopyObject copies at most 5 GB in one request; above that, a multipart copy.
MULTIPART_COPY_THRESHOLD = 5 * 1000**3  # bytes: the decimal 5 GB, below the 5 GiB limit whichever AWS means
COPY_PART_SIZE = 512 * 1024**2  # bytes per UploadPartCopy (S3: 5 MiB..5 GiB per part)
MAX_PARTS = 10_000  # S3's limit on parts per upload
COPY_WORKERS = 8  # concurrent UploadPartCopy requests of one multipart copy
SNS_SUBJECT_MAX = 99  # SNS: fewer than 100 characters

# Telling (issue 11 item 5): metric KeyRefused with dimension Reason (one of these) and once without dimensions (the
# alarm's metric), in the stack's namespace, plus one message on the alert topic.
DEFAULT_METRICS_NAMESPACE = "DataQualityPipeline"
REFUSED_METRIC = "KeyRefused"
REASON_DIMENSION = "Reason"
REASON_UNREADABLE_EVENT = "UnreadableEvent"  # the message is not an S3 "Object Created" event
REASON_OBJECT_NOT_FOUND = "ObjectNotFound"  # neither the raw nor the decoded key exists at the event's version
REASON_ACCESS_DENIED = "AccessDenied"  # 403 for every candidate: absent or unreadable, cannot tell (retried)
REASON_INVALID_DATASET = "InvalidDataset"  # the folder under the input prefix is not a valid dataset name
REASON_INVALID_KEY = "InvalidKey"  # no file name, control characters, or too long for the job's request
REASON_VERSION_MISMATCH = "VersionMismatch"  # S3's object (or the staged copy) is not the version the event names
REFUSAL_REASONS = (REASON_UNREADABLE_EVENT, REASON_OBJECT_NOT_FOUND, REASON_ACCESS_DENIED, REASON_INVALID_DATASET,
                   REASON_INVALID_KEY, REASON_VERSION_MISMATCH)
S3_KEY_MAX_BYTES = 1024

LOGGER = logging.getLogger("dq.trigger")


class SettingsError(ValueError):
    """An environment variable is missing or invalid (names the variable)."""


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
    staging_prefix: str = "staging/"  # per-job copies of the event's object version (design.md Contract 1)
    alert_topic_arn: str = ""  # "" (a function deployed before it existed): refusals are logged and counted only
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE

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
        # The staging prefix is written by this function and read by the jobs: it must overlap no other prefix (a
        # copy under the input prefix would start a job of its own; under the others it would mix with outputs).
        staging_prefix = prefix("STAGING_PREFIX", "staging/")
        for name, value in (("INPUT_PREFIX", input_prefix), ("OUTPUT_PREFIX", output_prefix),
                            ("BASELINE_PREFIX", baseline_prefix), ("QUARANTINE_PREFIX", quarantine_prefix)):
            if staging_prefix.startswith(value) or value.startswith(staging_prefix):
                raise SettingsError(
                    f"environment variables STAGING_PREFIX={staging_prefix!r} and {name}={value!r} overlap"
                )
        alert_topic_arn = optional("ALERT_TOPIC_ARN")
        if alert_topic_arn and (not alert_topic_arn.startswith("arn:") or ":sns:" not in alert_topic_arn):
            raise SettingsError(f"environment variable ALERT_TOPIC_ARN={alert_topic_arn!r} is not an SNS topic ARN")
        metrics_namespace = optional("METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE
        if len(metrics_namespace) > 255 or metrics_namespace.startswith("AWS/"):
            raise SettingsError(f"environment variable METRICS_NAMESPACE={metrics_namespace!r} is not a custom namespace")

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
            staging_prefix=staging_prefix,
            alert_topic_arn=alert_topic_arn,
            metrics_namespace=metrics_namespace,
        )


@dataclass(frozen=True)
class ObjectRef:
    """One dropped object version as the event names it: ``key`` is ``detail.object.key`` exactly as it arrived."""

    bucket: str
    key: str
    version_id: str
    size: int | None
    etag: str = ""


@dataclass(frozen=True)
class SourceObject:
    """The object version S3 confirmed for an event (HeadObject): the real key, its size and ETag.

    ``encoded`` is True when the event's key was URL-encoded (the decoded form is the one that exists).
    """

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    encoded: bool = False


@dataclass(frozen=True)
class JobTarget:
    """Where a key maps to: its dataset and file name."""

    dataset: str
    basename: str


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def decode_event_key(raw_key: str) -> str:
    """The form-URL-decoded reading of ``detail.object.key`` (``+`` -> space, ``%2B`` -> ``+``).

    AWS does not document whether S3's EventBridge events URL-encode the key (the classic S3 notification format
    does; evidence for EventBridge conflicts: docs/design.md Contract 2). So this is only a candidate: the trigger
    asks S3 which of the raw key and this one exists at the event's version (:func:`key_candidates`).
    """
    return unquote_plus(raw_key, encoding="utf-8", errors="strict")


def key_candidates(raw_key: str) -> list[str]:
    """The keys an event's ``detail.object.key`` may stand for, in the order they are tried: raw, then decoded.

    A raw key that is no valid percent-encoding of UTF-8 (e.g. a literal ``%FF``) has only its raw reading.
    """
    try:
        decoded = decode_event_key(raw_key)
    except UnicodeDecodeError:
        return [raw_key]
    return [raw_key] if decoded == raw_key else [raw_key, decoded]


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
        key=raw_key,
        version_id=version_id if isinstance(version_id, str) and version_id != "null" else "",
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        etag=etag.strip('"')[:API_STRING_MAX] if isinstance(etag, str) else "",
    )


def ignore_reason(obj: ObjectRef, settings: Settings) -> str | None:
    """Why this object is not ours to process, or None if it is: the documented quiet skips (logged, not told).

    Folder markers (key ending in ``/``) and zero-byte objects hold no data; the other cases cannot happen through
    the stack's EventBridge rule (bucket and input prefix are in its pattern). Checked on the event's key: URL
    encoding keeps ``/`` and never changes the input prefix (safe characters only, infra/config.py).
    """
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
            raise RefusedKeyError(
                f"dataset name {raw_dataset!r} does not match [a-z0-9][a-z0-9-]{{0,31}} after lower-casing",
                REASON_INVALID_DATASET)
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
    # the staged copy <staging_prefix><dataset>/<job-name>/<basename> must be a valid key too (job names <= 63)
    staged = f"{settings.staging_prefix}{dataset}/{'x' * JOB_NAME_MAX}/{basename}"
    if len(staged.encode("utf-8", "surrogatepass")) > S3_KEY_MAX_BYTES:
        raise RefusedKeyError(f"file name is too long for its staging key ({S3_KEY_MAX_BYTES} bytes at most)")
    return JobTarget(dataset=dataset, basename=basename)


def staging_key(settings: Settings, target: JobTarget, job_name: str) -> str:
    """``<staging_prefix><dataset>/<job-name>/<basename>``: the job's own copy of its object version.

    One per job name, and the job name is one per (bucket, key, version): a redelivered event copies the same
    version to the same key again (same bytes), so the copy is idempotent (design.md Contract 1).
    """
    return f"{settings.staging_prefix}{target.dataset}/{job_name}/{target.basename}"


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
        key: the object key S3 confirmed for the event (raw or decoded), under ``settings.input_prefix``.
        version_id: the object's version id, or "" on an unversioned bucket.
        settings: the trigger's settings.
        baseline_uri: ``s3://`` URI of the dataset's baseline.json when it exists: adds input ``baseline`` and
            ``--baseline``.
        size: bytes of this version (HeadObject's ContentLength), passed as ``SOURCE_SIZE`` ("" when unknown). The
            ``data`` input is the job's staged copy of exactly this version, so the job's size check is a
            verification: a difference fails the job with ``SourceChangedError`` (design.md Contract 1).
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
    staged_uri = f"s3://{settings.data_bucket}/{staging_key(settings, target, job_name)}"

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
        "dq:staged-input": staged_uri,
        "dq:code-version": settings.code_version,
    }
    return {
        "ProcessingJobName": job_name,
        "ProcessingInputs": [
            s3_input("code", settings.code_s3_uri, CODE_LOCAL_PATH),
            s3_input("data", staged_uri, DATA_LOCAL_PATH),
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


def copy_part_size(size: int) -> int:
    """Part size of a multipart copy of ``size`` bytes: :data:`COPY_PART_SIZE`, larger when 10,000 parts need it."""
    needed = -(-size // MAX_PARTS)
    mib = 1024**2
    return max(COPY_PART_SIZE, -(-needed // mib) * mib)


def copy_ranges(size: int, part_size: int) -> list[str]:
    """``CopySourceRange`` values (``bytes=first-last``, inclusive) covering ``0..size-1`` in order, one per part."""
    return [f"bytes={start}-{min(start + part_size, size) - 1}" for start in range(0, size, part_size)]


def status_and_code(error: ClientError) -> tuple[int, str]:
    """HTTP status and error code of a ClientError (HeadObject errors have no body: the code is the status)."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = str(error.response.get("Error", {}).get("Code", ""))
    return int(status or 0), code


def refusal_metric_data(reason_code: str) -> list[dict[str, Any]]:
    """``KeyRefused`` = 1 with dimension ``Reason`` (for the dashboard and diagnosis) and without (the alarm's)."""
    return [
        {"MetricName": REFUSED_METRIC, "Dimensions": [{"Name": REASON_DIMENSION, "Value": reason_code}],
         "Value": 1.0, "Unit": "Count"},
        {"MetricName": REFUSED_METRIC, "Value": 1.0, "Unit": "Count"},
    ]


def refusal_notification(bucket: str, key: str, version_id: str, reason_code: str, reason: str, *,
                         event_key: str | None = None, retried: bool = False) -> dict[str, Any]:
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
        "summary": f"Upload {where} (version {version_id or 'none'}) refused, {reason_code}: {reason}; {outcome}"[:1000],
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


# --------------------------------------------------------------------------------------------
# Side effects: clients, logging, the handler
# --------------------------------------------------------------------------------------------

_settings: Settings | None = None
_request_id = ""
sagemaker_client: SageMakerClient | None = None  # tests assign Stubber-wrapped clients here
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


def get_cloudwatch() -> CloudWatchClient:
    global cloudwatch_client
    if cloudwatch_client is None:
        cloudwatch_client = boto3.client("cloudwatch", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    return cloudwatch_client


def get_sns() -> SNSClient:
    global sns_client
    if sns_client is None:
        sns_client = boto3.client("sns", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    return sns_client


@dataclass(frozen=True)
class Clients:
    """The AWS clients one invocation uses (tests pass Stubber-wrapped ones)."""

    sagemaker: SageMakerClient
    sqs: SQSClient
    s3: S3Client
    cloudwatch: CloudWatchClient
    sns: SNSClient


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


def resolve_source(s3: S3Client, obj: ObjectRef, settings: Settings) -> SourceObject:
    """Ask S3 which key the event names: HeadObject of the event's version, the raw key first, then the decoded one.

    Unversioned events (no ``version-id``, or ``"null"``) head the current object instead, and the event's size and
    ETag must match it (else a newer upload replaced the bytes this event named; that upload has its own event).
    Only candidates under the input prefix are tried.

    Raises:
        RefusedKeyError: ``ObjectNotFound`` (404/NoSuchKey/NoSuchVersion/405 for every candidate),
            ``VersionMismatch`` (the object differs from the event), or ``AccessDenied`` with ``retry`` (a 403 for
            a candidate and no candidate found: the role has s3:ListBucket on the input prefix, so S3 should answer
            404 for a missing key, but a 403 can still mean "absent" as well as "denied" (IAM, bucket policy, KMS),
            and the two cannot be told apart; the event is kept and retried rather than dropped).
        ClientError / BotoCoreError: anything else (throttling, 5xx, network): the record is retried.
    """
    tried: list[str] = []
    denied: list[str] = []
    for key in key_candidates(obj.key):
        if not key.startswith(settings.input_prefix) or key.endswith("/"):
            continue
        params: dict[str, Any] = {"Bucket": obj.bucket, "Key": key}
        if obj.version_id:
            params["VersionId"] = obj.version_id
        try:
            head = s3.head_object(**params)
        except ClientError as exc:
            status, code = status_and_code(exc)
            if status in NOT_FOUND_STATUS or code in NOT_FOUND_CODES:
                tried.append(key)
                continue
            if status == 403 or code in DENIED_CODES:
                denied.append(key)
                continue
            raise
        size = int(head.get("ContentLength", -1))
        etag = str(head.get("ETag", "")).strip('"')
        if obj.size is not None and size != obj.size:
            raise RefusedKeyError(
                f"S3 has {size} bytes for {key!r} version {obj.version_id or '(unversioned, current)'}, the event says "
                f"{obj.size}: not the object the event names (a newer upload has its own event)",
                REASON_VERSION_MISMATCH)
        if not obj.version_id and obj.etag and etag and etag != obj.etag:
            raise RefusedKeyError(
                f"the current object {key!r} has ETag {etag}, the event's has {obj.etag}: it was replaced before it "
                f"could be staged (unversioned bucket; the newer upload has its own event)", REASON_VERSION_MISMATCH)
        return SourceObject(bucket=obj.bucket, key=key, version_id=obj.version_id, size=size, etag=etag,
                            encoded=key != obj.key)
    version = f"version {obj.version_id}" if obj.version_id else "the current version (unversioned event)"
    if denied:
        raise RefusedKeyError(
            f"HeadObject of {version} answered 403 for {denied!r}"
            + (f" and 404 for {tried!r}" if tried else "")
            + ": the object is absent or the trigger may not read it (IAM, bucket policy, KMS); cannot tell which",
            REASON_ACCESS_DENIED, retry=True)
    raise RefusedKeyError(
        f"no object at {version} under the event's key, raw or URL-decoded ({tried!r}): deleted, or an "
        f"event key encoding this trigger does not know", REASON_OBJECT_NOT_FOUND)


def stage_source(s3: S3Client, source: SourceObject, bucket: str, key: str, *, workers: int | None = None) -> str:
    """Server-side copy of exactly ``source``'s version to ``key`` (the job's staging key); returns how.

    CopyObject up to :data:`MULTIPART_COPY_THRESHOLD`, else CreateMultipartUpload + UploadPartCopy (ranges covering
    every byte, in order) + CompleteMultipartUpload (aborted on failure). Each copy names the source version
    (``VersionId``; unversioned: ``CopySourceIfMatch`` with the ETag HeadObject saw). The copy is verified: S3
    reports the source version it copied (``CopySourceVersionId``), and it must be the event's.

    Raises:
        RefusedKeyError: ``VersionMismatch`` when S3 reports another source version.
        ClientError / BotoCoreError: the copy failed (retried like any transient failure; a 404/412 of the source
            here means it was deleted or replaced since HeadObject, and the retry's HeadObject tells).
    """
    copy_source: dict[str, str] = {"Bucket": source.bucket, "Key": source.key}
    condition: dict[str, str] = {}
    if source.version_id:
        copy_source["VersionId"] = source.version_id
    elif source.etag:
        condition["CopySourceIfMatch"] = f'"{source.etag}"'

    def check(reported: str | None) -> None:
        if source.version_id and reported and reported != source.version_id:
            raise RefusedKeyError(
                f"S3 copied version {reported} of {source.key!r} to {key!r}, not the event's {source.version_id}",
                REASON_VERSION_MISMATCH)

    if source.size <= MULTIPART_COPY_THRESHOLD:
        # TaggingDirective REPLACE (no tags): the copy needs no s3:GetObjectTagging/PutObjectTagging, and it carries
        # no tags, like a multipart copy (UploadPartCopy copies bytes only). Metadata (Content-Type, ...) is copied.
        response = s3.copy_object(Bucket=bucket, Key=key, CopySource=copy_source, TaggingDirective="REPLACE",
                                  **condition)
        check(response.get("CopySourceVersionId"))
        return "copy-object"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    ranges = copy_ranges(source.size, copy_part_size(source.size))

    def copy_part(number: int) -> dict[str, Any]:
        response = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                       CopySource=copy_source, CopySourceRange=ranges[number - 1],
                                       **condition)
        check(response.get("CopySourceVersionId"))
        return {"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number}

    workers = COPY_WORKERS if workers is None else workers
    try:
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(copy_part, range(1, len(ranges) + 1)))
        else:
            parts = [copy_part(n) for n in range(1, len(ranges) + 1)]
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:  # the lifecycle rule aborts it after 7 days anyway
            log_decision("abort-failed", logging.WARNING, staging_key=key, upload_id=upload_id, error=str(exc))
        raise
    return f"multipart-copy ({len(ranges)} parts)"


def tell_refusal(clients: Clients, settings: Settings, *, bucket: str, key: str, version_id: str,
                 reason_code: str, reason: str, event_key: str | None = None, retried: bool = False) -> None:
    """Count (``KeyRefused`` by reason) and tell (one message on the alert topic) that an upload is refused.

    Raises:
        ClientError / BotoCoreError: either call failed: the caller retries the record, so nothing is lost.
    """
    clients.cloudwatch.put_metric_data(Namespace=settings.metrics_namespace, MetricData=refusal_metric_data(reason_code))
    if settings.alert_topic_arn:
        clients.sns.publish(TopicArn=settings.alert_topic_arn,
                            **refusal_notification(bucket, key, version_id, reason_code, reason, event_key=event_key,
                                                   retried=retried))


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
        tell_refusal(clients, settings, bucket=bucket, key=key, version_id=version_id, reason_code=error.reason_code,
                     reason=str(error), event_key=event_key, retried=error.retry)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
        log_decision("failed", logging.ERROR, **base, error_code=code,
                     error=f"telling the refusal ({error.reason_code}) failed: {exc}")
        return True
    return error.retry


def _receive_count(record: Mapping[str, Any]) -> int:
    try:
        return int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
    except ValueError:
        return 1


def _failed(base: Mapping[str, Any], exc: Exception, what: str) -> bool:
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__
    log_decision("failed", logging.ERROR, **base, error_code=code, error=f"{what}: {exc}")
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
    try:
        baseline_uri = find_baseline(s3, target.dataset, settings, base)
    except (ClientError, BotoCoreError) as exc:
        base["dataset"] = target.dataset
        return _failed(base, exc, f"HeadObject {settings.baseline_key(target.dataset)}")
    request = build_processing_job_request(source.bucket, source.key, source.version_id, settings,
                                           baseline_uri=baseline_uri, size=source.size, etag=obj.etag)
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


def handler(event: Mapping[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    """Lambda entry point (SQS event source with ``ReportBatchItemFailures``)."""
    global _request_id
    _request_id = getattr(context, "aws_request_id", "") or ""
    clients = Clients(sagemaker=get_sagemaker(), sqs=get_sqs(), s3=get_s3(), cloudwatch=get_cloudwatch(),
                      sns=get_sns())
    return process_batch(event, get_settings(), clients)
