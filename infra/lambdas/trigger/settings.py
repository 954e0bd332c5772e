"""The trigger's configuration, parsed once from the environment (names: ``contract``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import contract
from contract import ContractError, JobSettings
from lambda_shared.env import Environment, SettingsError, from_contract, no_overlap
from trigger.spark import SparkSettings

__all__ = ["Settings", "SettingsError"]

CONTAINER_ROOT = "/opt/ml/processing"
CODE_LOCAL_PATH = f"{CONTAINER_ROOT}/input/code"
DATA_LOCAL_PATH = f"{CONTAINER_ROOT}/input/data"
OUTPUT_LOCAL_PATH = f"{CONTAINER_ROOT}/output"
BASELINE_LOCAL_PATH = f"{CONTAINER_ROOT}/input/baseline"
API_STRING_MAX = 256  # ContainerArgument, ContainerEntrypoint item, Environment value, Tag value
S3_URI_MAX = 1024
ROLE_ARN_RE = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
KMS_KEY_RE = re.compile(r"[a-zA-Z0-9:/_-]+")


@dataclass(frozen=True)
class Settings:
    """The trigger's configuration. Every field maps to the environment variable of the same name in upper case
    (``data_bucket`` <- ``DATA_BUCKET``); ``job`` holds the contract's job settings (``INSTANCE_TYPE``, ...,
    ``PROCESSING_MODE``, ``PROCESSING_MAX_ROWS_IN_MEMORY``). See :meth:`from_env` for the rules.
    """

    data_bucket: str
    input_prefix: str
    output_prefix: str
    job_prefix: str
    role_arn: str
    image_uri: str
    code_s3_uri: str
    code_version: str
    kms_key_arn: str
    job: JobSettings = field(default_factory=JobSettings)
    baseline_prefix: str = "baselines/"
    quarantine_prefix: str = "quarantine/"
    staging_prefix: str = "staging/"  # per-job copies of the event's object version (design.md Contract 1)
    alert_topic_arn: str = ""  # "" (a function deployed before it existed): refusals are logged and counted only
    metrics_namespace: str = contract.METRICS_NAMESPACE
    spark: SparkSettings = field(default_factory=SparkSettings)  # the Spark engine's job (off by default)

    @property
    def processing_mode(self) -> str:
        return self.job.processing_mode

    @property
    def processing_max_rows_in_memory(self) -> int | None:
        """None: not passed on, the job derives its row budget."""
        return self.job.max_rows_in_memory

    def baseline_key(self, dataset: str) -> str:
        """``<BASELINE_PREFIX><dataset>/baseline.json`` (design.md Contract 4)."""
        return f"{self.baseline_prefix}{dataset}/{contract.BASELINE_FILE}"

    @property
    def code_file_name(self) -> str:
        """The asset's file name: the code input lands at ``<CODE_LOCAL_PATH>/<code_file_name>``."""
        return self.code_s3_uri.rsplit("/", 1)[1]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate the settings.

        Raises:
            SettingsError: naming the first missing or invalid variable.
        """
        env = Environment(environ)
        input_prefix = env.prefix(contract.ENV_INPUT_PREFIX)
        output_prefix = env.prefix(contract.ENV_OUTPUT_PREFIX)
        no_overlap((contract.ENV_INPUT_PREFIX, input_prefix), (contract.ENV_OUTPUT_PREFIX, output_prefix))
        baseline_prefix = env.prefix(contract.ENV_BASELINE_PREFIX, "baselines/")
        quarantine_prefix = env.prefix(contract.ENV_QUARANTINE_PREFIX, "quarantine/")
        for name, value in ((contract.ENV_BASELINE_PREFIX, baseline_prefix),
                            (contract.ENV_QUARANTINE_PREFIX, quarantine_prefix)):
            no_overlap((contract.ENV_INPUT_PREFIX, input_prefix), (name, value))
        # The staging prefix is written by this function and read by the jobs: it must overlap no other prefix (a
        # copy under the input prefix would start a job of its own; under the others it would mix with outputs).
        staging_prefix = env.prefix(contract.ENV_STAGING_PREFIX, "staging/")
        for name, value in ((contract.ENV_INPUT_PREFIX, input_prefix), (contract.ENV_OUTPUT_PREFIX, output_prefix),
                            (contract.ENV_BASELINE_PREFIX, baseline_prefix),
                            (contract.ENV_QUARANTINE_PREFIX, quarantine_prefix)):
            no_overlap((contract.ENV_STAGING_PREFIX, staging_prefix), (name, value))
        alert_topic_arn = env.optional(contract.ENV_ALERT_TOPIC_ARN)
        if alert_topic_arn and (not alert_topic_arn.startswith("arn:") or ":sns:" not in alert_topic_arn):
            raise SettingsError(f"environment variable ALERT_TOPIC_ARN={alert_topic_arn!r} is not an SNS topic ARN")
        metrics_namespace = env.optional(contract.ENV_METRICS_NAMESPACE) or contract.METRICS_NAMESPACE
        if len(metrics_namespace) > 255 or metrics_namespace.startswith("AWS/"):
            raise SettingsError(
                f"environment variable METRICS_NAMESPACE={metrics_namespace!r} is not a custom namespace")
        try:
            job_prefix = contract.check_job_prefix(environ.get(contract.ENV_JOB_PREFIX, "").strip())
            job = JobSettings.from_env(environ)
        except ContractError as exc:
            raise from_contract(exc) from None

        role_arn = env.text(contract.ENV_ROLE_ARN)
        if not ROLE_ARN_RE.fullmatch(role_arn):
            raise SettingsError(f"environment variable ROLE_ARN={role_arn!r} is not an IAM role ARN")
        code_s3_uri = env.text(contract.ENV_CODE_S3_URI, S3_URI_MAX)
        bucket_and_key = code_s3_uri.removeprefix("s3://")
        if (
            not code_s3_uri.startswith("s3://")
            or "/" not in bucket_and_key
            or not bucket_and_key.split("/", 1)[0]
            or not code_s3_uri.endswith(".zip")
        ):
            raise SettingsError(f"environment variable CODE_S3_URI={code_s3_uri!r} must look like s3://<bucket>/<key>.zip")
        if len(f"{CODE_LOCAL_PATH}/{code_s3_uri.rsplit('/', 1)[1]}") > API_STRING_MAX:
            raise SettingsError(
                "environment variable CODE_S3_URI has a file name too long for the container entrypoint")
        kms_key_arn = env.text(contract.ENV_KMS_KEY_ARN)
        if not KMS_KEY_RE.fullmatch(kms_key_arn):
            raise SettingsError(f"environment variable KMS_KEY_ARN={kms_key_arn!r} is not a KMS key id or ARN")
        return cls(
            data_bucket=env.bucket(contract.ENV_DATA_BUCKET),
            input_prefix=input_prefix,
            output_prefix=output_prefix,
            job_prefix=job_prefix,
            role_arn=role_arn,
            image_uri=env.text(contract.ENV_IMAGE_URI, 255),
            code_s3_uri=code_s3_uri,
            code_version=env.text(contract.ENV_CODE_VERSION, API_STRING_MAX),
            kms_key_arn=kms_key_arn,
            job=job,
            baseline_prefix=baseline_prefix,
            quarantine_prefix=quarantine_prefix,
            staging_prefix=staging_prefix,
            alert_topic_arn=alert_topic_arn,
            metrics_namespace=metrics_namespace,
            spark=SparkSettings.from_env(environ),
        )
