"""The CreateProcessingJob request for one object version (design.md Contracts 1, 2 and 4). Pure functions."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import contract
from trigger.refusals import REASON_INVALID_DATASET, RefusedKeyError
from trigger.settings import (
    API_STRING_MAX,
    BASELINE_LOCAL_PATH,
    CODE_LOCAL_PATH,
    DATA_LOCAL_PATH,
    OUTPUT_LOCAL_PATH,
    Settings,
)
from trigger.spark import UnsafeArgumentError, choose_engine, spark_request

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_sagemaker.literals import ProcessingInstanceTypeType
    from mypy_boto3_sagemaker.type_defs import (
        CreateProcessingJobRequestTypeDef,
        ProcessingInputTypeDef,
        ProcessingOutputTypeDef,
    )

DATASET_RE = contract.DATASET_RE
JOB_NAME_MAX = contract.JOB_NAME_MAX
HASH_HEX_CHARS = contract.JOB_HASH_HEX_CHARS
TAG_VALUE_MAX = 256
S3_KEY_MAX_BYTES = 1024
# Printable characters only: the service-side patterns of S3Uri, LocalPath and ContainerArgument are `.*`,
# which does not match line breaks, and control characters in paths are never intended.
CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


@dataclass(frozen=True)
class JobTarget:
    """Where a key maps to: its dataset and file name."""

    dataset: str
    basename: str


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
                f"dataset name {raw_dataset!r} does not match {contract.DATASET_PATTERN} after lower-casing",
                REASON_INVALID_DATASET)
    else:
        dataset = contract.DEFAULT_DATASET
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
    return contract.job_name(job_prefix, dataset, object_digest(bucket, key, version_id))


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
                                 etag: str = "", total_bytes: int | None = None) -> CreateProcessingJobRequestTypeDef:
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
        total_bytes: the batch's input bytes, which pick the engine (``trigger.spark.choose_engine``: the dataset's
            ``engine`` setting, ``auto`` by ``SPARK_MIN_INPUT_BYTES``); default ``size``.

    Returns:
        Keyword arguments for ``sagemaker.create_processing_job``.

    Raises:
        RefusedKeyError: the key can never map to a valid job.
    """
    target = map_key(bucket, key, settings)
    job_name = job_name_for(settings.job_prefix, target.dataset, bucket, key, version_id)
    source_uri = f"s3://{bucket}/{key}"
    staged_uri = f"s3://{settings.data_bucket}/{staging_key(settings, target, job_name)}"

    def s3_input(name: str, uri: str, local_path: str) -> ProcessingInputTypeDef:
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
    outputs: list[ProcessingOutputTypeDef] = [
        {
            "OutputName": folder,
            "AppManaged": False,
            "S3Output": {
                "S3Uri": f"{output_root}/{folder}/",
                "LocalPath": f"{OUTPUT_LOCAL_PATH}/{folder}",
                "S3UploadMode": "EndOfJob",
            },
        }
        for folder in contract.OUTPUT_FOLDERS
    ]
    outputs.append({
        "OutputName": contract.QUARANTINE,
        "AppManaged": False,
        "S3Output": {
            "S3Uri": f"s3://{settings.data_bucket}/{settings.quarantine_prefix}{target.dataset}/{job_name}/",
            "LocalPath": f"{OUTPUT_LOCAL_PATH}/{contract.QUARANTINE}",
            "S3UploadMode": "EndOfJob",
        },
    })
    # The stubs type InstanceType as the service model's enum; ours is a setting (str): the CDK app checks it against
    # that enum at synth time (infra/config.py), and SageMaker validates it on CreateProcessingJob.
    instance_type = cast("ProcessingInstanceTypeType", settings.job.instance_type)
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
    request: CreateProcessingJobRequestTypeDef = {
        "ProcessingJobName": job_name,
        "ProcessingInputs": [
            s3_input(contract.CODE_INPUT, settings.code_s3_uri, CODE_LOCAL_PATH),
            s3_input(contract.DATA_INPUT, staged_uri, DATA_LOCAL_PATH),
            *([s3_input(contract.BASELINE_INPUT, baseline_uri, BASELINE_LOCAL_PATH)] if baseline_uri else []),
        ],
        "ProcessingOutputConfig": {
            "Outputs": outputs,
            "KmsKeyId": settings.kms_key_arn,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": settings.job.instance_count,
                "InstanceType": instance_type,
                "VolumeSizeInGB": settings.job.volume_size_gb,
                "VolumeKmsKeyId": settings.kms_key_arn,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.job.max_runtime_seconds},
        "AppSpecification": {
            "ImageUri": settings.image_uri,
            "ContainerEntrypoint": ["python3", f"{CODE_LOCAL_PATH}/{settings.code_file_name}"],
            "ContainerArguments": [
                "--input", f"{DATA_LOCAL_PATH}/{target.basename}",
                "--output", OUTPUT_LOCAL_PATH,
                "--dataset", target.dataset,
                *(["--baseline", f"{BASELINE_LOCAL_PATH}/{contract.BASELINE_FILE}"] if baseline_uri else []),
            ],
        },
        "Environment": {
            contract.ENV_DATASET: target.dataset,
            contract.ENV_SOURCE_URI: source_uri,
            contract.ENV_SOURCE_VERSION_ID: version_id,
            contract.ENV_SOURCE_SIZE: str(size) if size is not None else "",
            contract.ENV_SOURCE_ETAG: etag,
            contract.ENV_CODE_VERSION: settings.code_version,
            # PROCESSING_MODE and (when set) PROCESSING_MAX_ROWS_IN_MEMORY, as the contract writes them
            **settings.job.job_env(),
        },
        "NetworkConfig": {"EnableNetworkIsolation": True},
        "RoleArn": settings.role_arn,
        "Tags": [{"Key": k, "Value": tag_value(v)} for k, v in tags.items()],
    }
    if choose_engine(settings.spark, target.dataset, size if total_bytes is None else total_bytes) == "spark":
        staged_prefix = staging_key(settings, target, job_name).rsplit("/", 1)[0]
        try:
            return spark_request(
                request, settings.spark, data_bucket=settings.data_bucket, staging_prefix=settings.staging_prefix,
                dataset=target.dataset, code_s3_uri=settings.code_s3_uri,
                input_uri=f"s3://{settings.data_bucket}/{staged_prefix}/", output_uri=f"{output_root}/",
                quarantine_uri=f"s3://{settings.data_bucket}/{settings.quarantine_prefix}{target.dataset}/{job_name}/",
                baseline_uri=baseline_uri)
        except UnsafeArgumentError as exc:
            raise RefusedKeyError(str(exc)) from None
    return request
