"""Which engine runs a batch, and the Spark job's CreateProcessingJob request (issue 13 items 2 and 3). Pure functions.

A Spark job runs the same code on SageMaker Processing's prebuilt Spark container (``sagemaker-spark-processing``):
``smspark-submit`` forms a YARN cluster across ``InstanceCount`` instances and runs the entry script on the primary
(aws/sagemaker-spark-container src/smspark). It differs from the default engine's request in:

- ``AppSpecification``: the Spark image, ``ContainerEntrypoint = ["smspark-submit", "--py-files", <py-files>,
  <entry script>]`` (what the SDK's PySparkProcessor sends), and ``--engine spark`` with ``s3://`` URIs for
  ``--input`` (the job's staging prefix), ``--output``, ``--quarantine`` and ``--baseline``: the engine reads and
  writes S3 directly (EMRFS), on every instance, so the data is not a ProcessingInput.
- ``ProcessingInputs``: ``code`` (the entry script), ``py-files`` (the processing code bundle: a zip holding
  ``processing/`` and ``contract/``) and ``conf`` (``configuration.json``: EMR-style classifications, e.g.
  spark-defaults; written by the trigger next to the job's staging prefix, :func:`conf_object`).
- ``ProcessingOutputs``: the same outputs, same URIs, as the default engine's, so the job's description names where
  its results are (the metrics Lambda reads the ``quality`` output's URI); the driver writes there itself and the
  local folders stay empty.
- ``ClusterConfig``: the Spark instance type and count (``SPARK_INSTANCE_TYPE``, ``SPARK_INSTANCE_COUNT``).
- ``NetworkConfig``: no network isolation (the container calls S3), the stack's VPC (private subnets, S3 gateway
  endpoint, no internet) and encrypted traffic between the instances.
- ``RoleArn``: the Spark job role (S3 access of its own; the default engine's role never touches S3 itself).

``smspark-submit`` joins its arguments with spaces and runs them through a shell (``subprocess.run(cmd,
shell=True)`` in smspark/job.py), so every argument must be shell-safe: :data:`SHELL_SAFE_RE` (checked here; the
CDK app refuses prefixes that could break it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import contract
from lambda_shared.env import Environment, SettingsError

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_sagemaker.literals import ProcessingInstanceTypeType
    from mypy_boto3_sagemaker.type_defs import CreateProcessingJobRequestTypeDef, ProcessingInputTypeDef

# Environment variables of the trigger (set by infra/processing_trigger.py).
ENV_ENGINES = "ENGINES"  # JSON {"<dataset>": "pandas|spark|auto", "*": <the stack's default>}
ENV_SPARK_IMAGE_URI = "SPARK_IMAGE_URI"  # empty: Spark is off (every dataset runs pandas)
ENV_SPARK_ROLE_ARN = "SPARK_ROLE_ARN"
ENV_SPARK_ENTRY_S3_URI = "SPARK_ENTRY_S3_URI"  # s3://<assets>/<hash>.py: the entry script
ENV_SPARK_INSTANCE_TYPE = "SPARK_INSTANCE_TYPE"
ENV_SPARK_INSTANCE_COUNT = "SPARK_INSTANCE_COUNT"
ENV_SPARK_MIN_INPUT_BYTES = "SPARK_MIN_INPUT_BYTES"  # engine auto: Spark from this many input bytes
ENV_SPARK_SUBNET_IDS = "SPARK_SUBNET_IDS"  # comma-separated; empty: no VpcConfig (an explicit stack setting)
ENV_SPARK_SECURITY_GROUP_IDS = "SPARK_SECURITY_GROUP_IDS"
ENV_SPARK_CONFIGURATION = "SPARK_CONFIGURATION"  # JSON list of EMR classifications (configuration.json)

ENGINES = ("pandas", "spark", "auto")
DEFAULT_ENGINE_KEY = "*"
CONTAINER_ROOT = "/opt/ml/processing"
SPARK_CODE_LOCAL_PATH = f"{CONTAINER_ROOT}/input/code"
PY_FILES_LOCAL_PATH = f"{CONTAINER_ROOT}/input/py-files"
CONF_LOCAL_PATH = f"{CONTAINER_ROOT}/input/conf"
CONF_FILE = "configuration.json"  # smspark reads exactly /opt/ml/processing/input/conf/configuration.json
PY_FILES_INPUT, CONF_INPUT = "py-files", "conf"
#: Characters a shell leaves alone in an unquoted word (smspark-submit runs the command through a shell).
SHELL_SAFE_RE = re.compile(r"[A-Za-z0-9_./:=@%+,-]+")
_SUBNET_RE = re.compile(r"subnet-[0-9a-f]{1,17}")
_SG_RE = re.compile(r"sg-[0-9a-f]{1,17}")
_ROLE_ARN_RE = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
MAX_MIN_INPUT_BYTES = 2**63 - 1


class UnsafeArgumentError(ValueError):
    """A Spark job argument a shell would change (the trigger refuses the key: ``trigger.request``)."""


@dataclass(frozen=True)
class SparkSettings:
    """The trigger's Spark settings (environment variables above). ``image_uri == ""``: Spark is off."""

    image_uri: str = ""
    role_arn: str = ""
    entry_s3_uri: str = ""
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 2
    min_input_bytes: int = 1 << 30
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    configuration: tuple[Mapping[str, Any], ...] = ()
    engines: Mapping[str, str] = field(default_factory=lambda: {DEFAULT_ENGINE_KEY: "pandas"})

    @property
    def enabled(self) -> bool:
        return bool(self.image_uri)

    @property
    def entry_file_name(self) -> str:
        return self.entry_s3_uri.rsplit("/", 1)[1]

    def engine_setting(self, dataset: str) -> str:
        """The dataset's ``engine`` setting (``pandas``, ``spark`` or ``auto``), else the stack's default."""
        return self.engines.get(dataset) or self.engines.get(DEFAULT_ENGINE_KEY) or "pandas"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SparkSettings:
        """Parse and check the Spark variables. All absent (a function deployed before them): Spark off.

        Raises:
            SettingsError: naming the first invalid variable.
        """
        env = Environment(environ)
        engines = _engines(env.optional(ENV_ENGINES))
        image_uri = env.optional(ENV_SPARK_IMAGE_URI)
        if not image_uri:
            wanting = sorted(k for k, v in engines.items() if v != "pandas")
            if wanting:
                raise SettingsError(f"environment variable {ENV_ENGINES} names engine spark/auto for {wanting} but "
                                    f"{ENV_SPARK_IMAGE_URI} is empty")
            return cls(engines=engines)
        if len(image_uri) > 255:
            raise SettingsError(f"environment variable {ENV_SPARK_IMAGE_URI} is longer than 255 characters")
        role_arn = env.text(ENV_SPARK_ROLE_ARN)
        if not _ROLE_ARN_RE.fullmatch(role_arn):
            raise SettingsError(f"environment variable {ENV_SPARK_ROLE_ARN}={role_arn!r} is not an IAM role ARN")
        entry = env.text(ENV_SPARK_ENTRY_S3_URI, 1024)
        if not entry.startswith("s3://") or not entry.endswith(".py") or entry.count("/") < 3:
            raise SettingsError(f"environment variable {ENV_SPARK_ENTRY_S3_URI}={entry!r} must look like "
                                "s3://<bucket>/<key>.py")
        if not SHELL_SAFE_RE.fullmatch(f"{SPARK_CODE_LOCAL_PATH}/{entry.rsplit('/', 1)[1]}"):
            raise SettingsError(f"environment variable {ENV_SPARK_ENTRY_S3_URI}: file name is not shell-safe")
        instance_type = env.text(ENV_SPARK_INSTANCE_TYPE, contract.INSTANCE_TYPE_MAX)
        if not instance_type.startswith("ml."):
            raise SettingsError(f"environment variable {ENV_SPARK_INSTANCE_TYPE}={instance_type!r} must start "
                                "with 'ml.'")
        try:
            count = contract.whole_number("spark_instance_count", ENV_SPARK_INSTANCE_COUNT,
                                          env.text(ENV_SPARK_INSTANCE_COUNT), 1, contract.MAX_INSTANCE_COUNT)
            min_bytes = contract.whole_number("spark_min_input_bytes", ENV_SPARK_MIN_INPUT_BYTES,
                                              env.text(ENV_SPARK_MIN_INPUT_BYTES), 0, MAX_MIN_INPUT_BYTES)
        except contract.ContractError as exc:
            raise SettingsError(f"environment variable {exc}") from None
        subnets = _ids(env.optional(ENV_SPARK_SUBNET_IDS), _SUBNET_RE, ENV_SPARK_SUBNET_IDS, 16)
        groups = _ids(env.optional(ENV_SPARK_SECURITY_GROUP_IDS), _SG_RE, ENV_SPARK_SECURITY_GROUP_IDS, 5)
        if bool(subnets) != bool(groups):
            raise SettingsError(f"environment variables {ENV_SPARK_SUBNET_IDS} and {ENV_SPARK_SECURITY_GROUP_IDS} "
                                "must both be set or both be empty")
        return cls(image_uri=image_uri, role_arn=role_arn, entry_s3_uri=entry, instance_type=instance_type,
                   instance_count=count, min_input_bytes=min_bytes, subnet_ids=subnets, security_group_ids=groups,
                   configuration=_configuration(env.optional(ENV_SPARK_CONFIGURATION)), engines=engines)


def _engines(raw: str) -> dict[str, str]:
    if not raw:
        return {DEFAULT_ENGINE_KEY: "pandas"}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"environment variable {ENV_ENGINES} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"environment variable {ENV_ENGINES} must be a JSON object")
    for name, engine in value.items():
        if name != DEFAULT_ENGINE_KEY and not contract.DATASET_RE.fullmatch(name):
            raise SettingsError(f"environment variable {ENV_ENGINES}: {name!r} is not a dataset name")
        if engine not in ENGINES:
            raise SettingsError(f"environment variable {ENV_ENGINES}: engine of {name!r} must be one of "
                                f"{', '.join(ENGINES)}, got {engine!r}")
    return {str(k): str(v) for k, v in value.items()}


def _ids(raw: str, pattern: re.Pattern[str], name: str, most: int) -> tuple[str, ...]:
    ids = tuple(i.strip() for i in raw.split(",") if i.strip())
    bad = [i for i in ids if not pattern.fullmatch(i)]
    if bad or len(ids) > most:
        raise SettingsError(f"environment variable {name}={raw!r}: at most {most} ids matching {pattern.pattern}")
    return ids


def _configuration(raw: str) -> tuple[Mapping[str, Any], ...]:
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"environment variable {ENV_SPARK_CONFIGURATION} is not JSON: {exc}") from None
    if not isinstance(value, list) or not all(
            isinstance(c, dict) and isinstance(c.get("Classification"), str)
            and isinstance(c.get("Properties"), dict) for c in value):
        raise SettingsError(f"environment variable {ENV_SPARK_CONFIGURATION} must be a JSON list of "
                            '{"Classification": ..., "Properties": {...}}')
    return tuple(value)


# --------------------------------------------------------------------------------------------
# The engine of a batch
# --------------------------------------------------------------------------------------------


def choose_engine(spark: SparkSettings, dataset: str, total_bytes: int | None) -> str:
    """``pandas`` or ``spark`` for a batch of ``dataset`` holding ``total_bytes`` of input.

    ``spark``: always Spark; ``auto``: Spark when the total is known and at least ``min_input_bytes``; ``pandas`` (or
    Spark off): the default engine.
    """
    setting = spark.engine_setting(dataset)
    if not spark.enabled or setting == "pandas":
        return "pandas"
    if setting == "spark":
        return "spark"
    return "spark" if total_bytes is not None and total_bytes >= spark.min_input_bytes else "pandas"


def conf_key(staging_prefix: str, dataset: str, job_name: str) -> str:
    """``<staging_prefix><dataset>/<job-name>.conf/configuration.json``: beside the job's staging prefix
    (``.../<job-name>/``), never inside it (the engine reads every object there as input), expiring with it."""
    return f"{staging_prefix}{dataset}/{job_name}.conf/{CONF_FILE}"


def conf_body(spark: SparkSettings) -> bytes:
    """The job's ``configuration.json``: the configured classifications (an empty list: smspark's defaults)."""
    return (json.dumps(list(spark.configuration), indent=2, sort_keys=True) + "\n").encode("utf-8")


def _input(name: str, uri: str, local_path: str) -> ProcessingInputTypeDef:
    return {"InputName": name, "AppManaged": False,
            "S3Input": {"S3Uri": uri, "LocalPath": local_path, "S3DataType": "S3Prefix", "S3InputMode": "File",
                        "S3DataDistributionType": "FullyReplicated"}}


def spark_request(request: CreateProcessingJobRequestTypeDef, spark: SparkSettings, *, data_bucket: str,
                  staging_prefix: str, dataset: str, code_s3_uri: str, input_uri: str, output_uri: str,
                  quarantine_uri: str, baseline_uri: str | None) -> CreateProcessingJobRequestTypeDef:
    """The default engine's ``request`` turned into the Spark job's (module docstring): same name, outputs,
    environment, tags, volume, key and stopping condition.

    Args:
        request: the default engine's request for this batch.
        spark: the Spark settings (enabled).
        data_bucket / staging_prefix / dataset: where the job's ``configuration.json`` goes (:func:`conf_key`).
        code_s3_uri: the processing code bundle (processing/ + contract/ at the zip's root): the py-files.
        input_uri: ``s3://<bucket>/<staging prefix of this job>/``, every object below it is the batch.
        output_uri / quarantine_uri: the job's output and quarantine roots (``s3://.../``).
        baseline_uri: the dataset's baseline.json, or None.

    Raises:
        UnsafeArgumentError: an argument is not shell-safe (smspark-submit runs the command through a shell).
    """
    job_name = request["ProcessingJobName"]
    arguments = ["--engine", "spark", "--input", input_uri, "--output", output_uri, "--quarantine", quarantine_uri,
                 "--dataset", dataset, *(["--baseline", baseline_uri] if baseline_uri else [])]
    entry = f"{SPARK_CODE_LOCAL_PATH}/{spark.entry_file_name}"
    unsafe = [a for a in arguments if not SHELL_SAFE_RE.fullmatch(a)]
    if unsafe:
        raise UnsafeArgumentError(f"Spark job argument(s) {unsafe} are not shell-safe ({SHELL_SAFE_RE.pattern}): "
                                  "smspark-submit runs its command through a shell")
    cluster = dict(request["ProcessingResources"]["ClusterConfig"])
    cluster["InstanceType"] = cast("ProcessingInstanceTypeType", spark.instance_type)
    cluster["InstanceCount"] = spark.instance_count
    network: dict[str, Any] = {"EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": True}
    if spark.subnet_ids:
        network["VpcConfig"] = {"Subnets": list(spark.subnet_ids), "SecurityGroupIds": list(spark.security_group_ids)}
    out: dict[str, Any] = dict(request)
    out.update({
        "ProcessingInputs": [
            _input(contract.CODE_INPUT, spark.entry_s3_uri, SPARK_CODE_LOCAL_PATH),
            _input(PY_FILES_INPUT, code_s3_uri, PY_FILES_LOCAL_PATH),
            _input(CONF_INPUT, f"s3://{data_bucket}/{conf_key(staging_prefix, dataset, job_name)}", CONF_LOCAL_PATH),
        ],
        "ProcessingResources": {"ClusterConfig": cluster},
        "AppSpecification": {
            "ImageUri": spark.image_uri,
            "ContainerEntrypoint": ["smspark-submit", "--py-files", PY_FILES_LOCAL_PATH, entry],
            "ContainerArguments": arguments,
        },
        "NetworkConfig": network,
        "RoleArn": spark.role_arn,
    })
    return cast("CreateProcessingJobRequestTypeDef", out)


def is_spark_request(request: Mapping[str, Any]) -> bool:
    """True for a request made by :func:`spark_request`."""
    return bool((request.get("AppSpecification") or {}).get("ContainerEntrypoint", [""])[0] == "smspark-submit")
