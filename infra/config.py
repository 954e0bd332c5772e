"""Settings of the CDK app: read once from context in ``app.py``, validated, passed down as frozen dataclasses."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import contract
from contract import ContractError, JobSettings
from processing.config import THRESHOLD_KEYS as JOB_THRESHOLD_KEYS
from processing.config import validate as validate_dataset_config
from processing.config import validate_thresholds
from processing.errors import ConfigError

#: Context keys and their documented defaults (docs/infra.md lists each with its validation).
DEFAULTS: dict[str, Any] = {
    "input_prefix": "input/",
    "output_prefix": "output/",
    "baseline_prefix": "baselines/",
    "quarantine_prefix": "quarantine/",
    "staging_prefix": "staging/",
    "staging_expiration_days": 7,  # days
    "job_prefix": "dq",
    "instance_type": "ml.t3.medium",
    "instance_count": 1,
    "volume_size_gb": 30,
    "max_runtime_seconds": 3600,  # seconds
    "processing_mode": "auto",
    "max_rows_in_memory": None,  # rows; None (or "") = the job derives it from the instance's memory
    "sklearn_image_version": "1.4-2-py312",
    "asset_kms_key_arn": None,  # the CDK bootstrap assets bucket's own KMS key (cdk bootstrap --bootstrap-kms-key-id)
    "sklearn_image_uri": None,  # None (or "") = resolve the tag of sklearn_image_version; else a digest-pinned URI
    "alert_email": None,
    "removal_policy": "retain",
    "noncurrent_version_expiration_days": 30,  # days
    "log_retention_days": 30,  # days
    "quality_thresholds": None,
}
CONTEXT_KEYS = tuple(DEFAULTS)

#: Thresholds used when processing/configs/default.json is absent (only in tests: the job needs default.json).
FALLBACK_THRESHOLDS: dict[str, float] = {
    "max_missing_rate_after": 0.05,
    "max_rejected_rate": 0.1,
    "max_malformed_json_rate": 0.05,
    "max_duplicate_rate": 0.1,
    "min_rows_out": 1,
}
THRESHOLD_KEYS = JOB_THRESHOLD_KEYS  # the job's (processing/config.py); FALLBACK_THRESHOLDS sets each
#: The job's default ``drift.psi_alarm`` (processing/gate.py); a dataset config without one gets this value (the job
#: does not merge a dataset's config with default.json, so neither does the alarm).
DEFAULT_PSI_ALARM = 0.25

MAX_RUNTIME_LIMIT = contract.MAX_RUNTIME_LIMIT
MAX_VOLUME_SIZE_GB = contract.MAX_VOLUME_SIZE_GB
MAX_INSTANCE_COUNT = contract.MAX_INSTANCE_COUNT
#: Processing instance families with local NVMe instance storage. SageMaker rejects ``VolumeKmsKeyId`` for them (their
#: storage is the instance store, encrypted by the hardware), and the trigger always sends it. Source: the SageMaker API
#: reference of ``ProcessingClusterConfig.VolumeKmsKeyId`` / ``ResourceConfig.VolumeKmsKeyId`` ("certain Nitro-based
#: instances include local storage ... dependent on the instance type"), which links to the EC2 instance-store list
#: rather than naming SageMaker types, so this list is our reading of it, not an exhaustive AWS table: any family whose
#: attribute letters contain "d" (ml.m5d, ml.c5d, ml.r5d, ml.g4dn, ml.p3dn, ml.p4d, ml.p4de, ...) plus the ones below
#: whose names don't show it. Newer families (e.g. ml.g7/ml.g7e) are not known here: check before using them.
NVME_INSTANCE_FAMILIES = frozenset({"ml.g5", "ml.g6", "ml.g6e", "ml.p5", "ml.p5e", "ml.p5en"})
_NVME_FAMILY_RE = re.compile(r"^ml\.[a-z]+\d+[a-z]*d[a-z]*$")
#: Values of the job's ``PROCESSING_MODE`` and the row budget's bound: the contract's (contract/__init__.py).
PROCESSING_MODES = contract.PROCESSING_MODES
MAX_ROWS_IN_MEMORY_LIMIT = contract.MAX_ROWS_IN_MEMORY_LIMIT
LOG_RETENTION_CHOICES = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                         3288, 3653)

_PREFIX_RE = re.compile(r"^[a-zA-Z0-9!_.*'()-]+(/[a-zA-Z0-9!_.*'()-]+)*/$")
_DATASET_RE = re.compile(f"^{contract.DATASET_PATTERN}$")
#: A KMS key ARN (not an alias: a key policy or IAM statement on an alias ARN does not cover the key's use via S3).
_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[a-zA-Z0-9-]{1,128}$")
#: A scikit-learn image pinned by digest (docs/infra.md "Pinning the job image"): registry account, region, the
#: ``sagemaker-scikit-learn`` repository, ``@sha256:`` and 64 lower-case hex digits. A tag is refused: tags are rebuilt.
IMAGE_DIGEST_URI_RE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>sagemaker-scikit-learn)@sha256:(?P<digest>[0-9a-f]{64})$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


class SettingsError(ValueError):
    """A context setting is invalid; the message names the context key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(
            f"Invalid context setting '{key}': {problem} (set it with `cdk synth -c {key}=...` or in cdk.json)")
        self.key = key


@dataclass(frozen=True)
class QualityThresholds:
    """Alarm thresholds of one dataset, from that dataset config's ``quality_thresholds`` object.

    Rates are fractions in [0, 1]; ``min_rows_out`` is a row count (alarm when a batch yields fewer rows).
    ``psi_alarm`` comes from the config's ``drift`` section (``DriftMaxPsi`` alarm threshold; ``None`` = off).
    """

    # None = the dataset config sets no such threshold: the job's gate does not check it, so there is no alarm either.
    max_missing_rate_after: float | None = None
    max_rejected_rate: float | None = None
    max_malformed_json_rate: float | None = None
    max_duplicate_rate: float | None = None
    min_rows_out: float | None = None
    psi_alarm: float | None = DEFAULT_PSI_ALARM  # drift.psi_alarm of the config; None = PSI alarm off
    #: names of the config's rules marked ``"alarm": true``: one RuleViolations alarm each (issue 14)
    alarmed_rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """Validated settings of the stack. Defaults are the values of :data:`DEFAULTS`."""

    input_prefix: str = "input/"
    output_prefix: str = "output/"
    baseline_prefix: str = "baselines/"
    quarantine_prefix: str = "quarantine/"
    staging_prefix: str = "staging/"  # each job's copy of its object version (design.md Contract 1)
    staging_expiration_days: int = 7  # days: staged copies expire (lifecycle rule on the staging prefix)
    job_prefix: str = "dq"
    instance_type: str = "ml.t3.medium"
    instance_count: int = 1
    volume_size_gb: int = 30  # GB
    max_runtime_seconds: int = 3600  # seconds
    processing_mode: str = "auto"  # the job's PROCESSING_MODE: auto, memory or streaming
    max_rows_in_memory: int | None = None  # the job's PROCESSING_MAX_ROWS_IN_MEMORY; None = derived from its memory
    sklearn_image_version: str = "1.4-2-py312"
    asset_kms_key_arn: str | None = None  # KMS key of the bootstrap assets bucket when it is the user's own key
    sklearn_image_uri: str | None = None  # digest-pinned image URI; None = the tag of sklearn_image_version
    alert_email: str | None = None
    removal_policy: str = "retain"
    noncurrent_version_expiration_days: int = 30  # days
    log_retention_days: int = 30  # days
    datasets: Mapping[str, QualityThresholds] = field(default_factory=dict)

    @property
    def job(self) -> JobSettings:
        """The job settings (validated by the contract) the trigger passes to every job."""
        return JobSettings(instance_type=self.instance_type, instance_count=self.instance_count,
                           volume_size_gb=self.volume_size_gb, max_runtime_seconds=self.max_runtime_seconds,
                           processing_mode=self.processing_mode, max_rows_in_memory=self.max_rows_in_memory)

    @property
    def destroy_on_delete(self) -> bool:
        """True when stateful resources are deleted with the stack."""
        return self.removal_policy == "destroy"


def _as_int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise SettingsError(key, f"expected an integer, got {value!r}")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise SettingsError(key, f"expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SettingsError(key, f"must be between {lo} and {hi}, got {value}")
    return value


def _as_prefix(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _PREFIX_RE.fullmatch(value):
        raise SettingsError(
            key, "must be an S3 key prefix of safe characters ending in '/', without a leading '/' (e.g. 'input/'), "
            f"got {value!r}"
        )
    return value


def has_local_nvme(instance_type: str) -> bool:
    """True for instance types with local NVMe storage, which reject VolumeKmsKeyId (see NVME_INSTANCE_FAMILIES)."""
    family = instance_type.rsplit(".", 1)[0]
    return family in NVME_INSTANCE_FAMILIES or bool(_NVME_FAMILY_RE.fullmatch(family))


def _processing_instance_types() -> frozenset[str]:
    import botocore.model
    import botocore.session  # synth-time dependency through boto3/cfn-lint; the model is local, no network

    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("ProcessingInstanceType")
    assert isinstance(shape, botocore.model.StringShape), shape  # an enum of strings in the service model
    return frozenset(shape.enum)


def _sklearn_versions() -> frozenset[str]:
    from infra.image import sklearn_versions

    return frozenset(sklearn_versions())


def _contract(key: str, exc: ContractError) -> SettingsError:
    """The contract's verdict on a context value, named by its context key."""
    shown = exc.value if isinstance(exc.value, int) and not isinstance(exc.value, bool) else repr(exc.value)
    return SettingsError(key, f"{shown} {exc.problem}")


def _thresholds(key: str, raw: Any, base: Mapping[str, float]) -> dict[str, float]:
    """``raw`` validated by the job's own rule (processing/config.py: ``validate_thresholds``), over ``base``."""
    try:
        checked = validate_thresholds(raw)
    except ConfigError as exc:
        raise SettingsError(key, str(exc)) from None
    return {**base, **checked}


def _psi_alarm(key: str, document: Any) -> float | None:
    """``drift.psi_alarm`` of a dataset config: a non-negative number, ``null`` (off) or absent (the job's default)."""
    drift = document.get("drift", {}) if isinstance(document, dict) else {}
    if not isinstance(drift, dict):
        raise SettingsError(key, "drift must be a JSON object")
    if "psi_alarm" not in drift:
        return DEFAULT_PSI_ALARM
    value = drift["psi_alarm"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SettingsError(key, f"drift.psi_alarm must be a non-negative number or null, got {value!r}")
    return float(value)


def load_dataset_psi_alarms(configs_dir: Path) -> dict[str, float | None]:
    """``drift.psi_alarm`` of every ``<dataset>.json`` (``default`` always included).

    Unlike ``quality_thresholds``, a dataset without the key gets the job's default (0.25), not ``default.json``'s
    value: the job reads only its own config file, and the alarm must use the threshold the job used. A dataset
    with no config of its own (e.g. one named only in the ``quality_thresholds`` context) runs with default.json.
    """
    result: dict[str, float | None] = {"default": DEFAULT_PSI_ALARM}
    if configs_dir.is_dir():
        for path in sorted(configs_dir.glob("*.json")):
            key = f"drift (from {path.as_posix()})"
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SettingsError(key, f"cannot read dataset config: {exc}") from exc
            result[path.stem] = _psi_alarm(key, document)
    return result


def load_dataset_alarmed_rules(configs_dir: Path) -> dict[str, tuple[str, ...]]:
    """The rules marked ``"alarm": true`` in every ``<dataset>.json`` (validated by the job's own validator, as
    ``load_dataset_thresholds`` does): dataset -> rule names, in config order. A dataset without a config of its own
    runs with default.json, but its RuleViolations carry its own Dataset value: only configured datasets get rule
    alarms."""
    result: dict[str, tuple[str, ...]] = {}
    if configs_dir.is_dir():
        for path in sorted(configs_dir.glob("*.json")):
            try:
                config = validate_dataset_config(json.loads(path.read_text(encoding="utf-8")),
                                                 source=path.as_posix())
            except (OSError, json.JSONDecodeError, ConfigError) as exc:
                raise SettingsError(f"dataset config {path.as_posix()}", str(exc)) from None
            result[path.stem] = tuple(r.name for r in config.rules if r.alarm)
    return result


def load_dataset_thresholds(configs_dir: Path) -> dict[str, dict[str, float]]:
    """Read ``quality_thresholds`` of every ``<dataset>.json`` in the processing configs folder.

    Args:
        configs_dir: ``processing/configs``; may be missing (then only ``default`` with fallback thresholds).

    Returns:
        Dataset name -> the thresholds its config sets. Nothing is inherited from ``default.json``: the job reads only
        its own dataset's config, and an alarm must use the threshold the job's quality gate used.
    """
    raw: dict[str, Mapping[str, Any]] = {}
    if configs_dir.is_dir():
        for path in sorted(configs_dir.glob("*.json")):
            key = f"quality_thresholds (from {path.as_posix()})"
            if not _DATASET_RE.fullmatch(path.stem):
                raise SettingsError(key, f"dataset config name {path.stem!r} must match {_DATASET_RE.pattern}")
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise SettingsError(key, f"cannot read dataset config: {exc}") from exc
            # the job's own validator (pandas-free): a config the job would refuse fails the synth, and the alarms use
            # exactly the thresholds the job's gate reads
            try:
                config = validate_dataset_config(document, source=path.as_posix())
            except ConfigError as exc:
                raise SettingsError(f"dataset config {path.as_posix()}", str(exc)) from None
            raw[path.stem] = config.quality_thresholds
    if "default" not in raw:
        return {"default": dict(FALLBACK_THRESHOLDS)}
    return {name: dict(thresholds) for name, thresholds in raw.items()}


def _instance_count(raw: Any) -> int:
    count = _as_int("instance_count", raw, 1, MAX_INSTANCE_COUNT)
    if count > 1:
        raise SettingsError(
            "instance_count",
            f"must be 1, got {count}: the data input is FullyReplicated, so every instance would process the same "
            "file and upload identical outputs to the same S3 keys, overwriting each other (N times the cost, no "
            "speed-up); the job has no multi-instance mode. Use a larger instance_type instead")
    return count


def settings_from_context(get: Callable[[str], Any], *, configs_dir: Path) -> Settings:
    """Build validated :class:`Settings` from CDK context.

    Args:
        get: ``app.node.try_get_context``; a missing key (``None``) takes its default.
        configs_dir: the processing dataset configs folder (``processing/configs``).

    Returns:
        The settings.

    Raises:
        SettingsError: naming the offending context key.
    """

    def value(key: str) -> Any:
        found = get(key)
        return DEFAULTS[key] if found is None else found

    input_prefix = _as_prefix("input_prefix", value("input_prefix"))
    output_prefix = _as_prefix("output_prefix", value("output_prefix"))
    written: dict[str, str] = {"output_prefix": output_prefix}
    for key in ("baseline_prefix", "quarantine_prefix"):
        written[key] = _as_prefix(key, value(key))
    for key, prefix in written.items():
        if input_prefix.startswith(prefix) or prefix.startswith(input_prefix):
            raise SettingsError(
                key,
                f"{prefix!r} overlaps input_prefix {input_prefix!r}: objects written there would trigger new jobs "
                "(recursion)",
            )

    # The staging prefix is written by the trigger and read by the jobs: under the input prefix a copy would start a
    # job of its own; overlapping an output/baseline/quarantine prefix would mix copies with results (and the
    # lifecycle rule that expires copies would expire those too).
    staging_prefix = _as_prefix("staging_prefix", value("staging_prefix"))
    for key, prefix in {"input_prefix": input_prefix, **written}.items():
        if staging_prefix.startswith(prefix) or prefix.startswith(staging_prefix):
            raise SettingsError(
                "staging_prefix",
                f"{staging_prefix!r} overlaps {key} {prefix!r}: staged copies must live under a prefix of their own",
            )
    staging_expiration_days = _as_int("staging_expiration_days", value("staging_expiration_days"), 1, 365)

    try:
        job_prefix = contract.check_job_prefix(value("job_prefix"))
    except ContractError as exc:
        raise SettingsError("job_prefix", f"{exc.problem}, got {exc.value!r}") from None

    instance_type = value("instance_type")
    allowed_types = _processing_instance_types()
    if instance_type not in allowed_types:
        raise SettingsError("instance_type", f"{instance_type!r} is not a SageMaker processing instance type "
                            "(e.g. ml.t3.medium, ml.m5.xlarge)")
    if has_local_nvme(instance_type):
        raise SettingsError(
            "instance_type",
            f"{instance_type!r} has local NVMe instance storage, and SageMaker rejects VolumeKmsKeyId for such types "
            "while every job of this stack encrypts its volume with the data key (VolumeKmsKeyId): choose a type "
            "without local storage (e.g. ml.m5.xlarge instead of ml.m5d.xlarge)")

    # The job settings: the contract validates them (the trigger and the job apply the same rules to what they read).
    try:
        processing_mode = contract.processing_mode(value("processing_mode"))
    except ContractError as exc:
        raise _contract("processing_mode", exc) from None
    try:
        max_rows_in_memory = contract.max_rows_in_memory(value("max_rows_in_memory"))
    except ContractError as exc:
        raise _contract("max_rows_in_memory", exc) from None

    image_version = value("sklearn_image_version")
    versions = _sklearn_versions()
    if image_version not in versions:
        raise SettingsError("sklearn_image_version",
                            f"{image_version!r} is not in sagemaker-core's sklearn image config; "
                            f"known: {sorted(versions)}")

    asset_kms_key_arn = value("asset_kms_key_arn")
    if asset_kms_key_arn in ("", None):
        asset_kms_key_arn = None
    elif not isinstance(asset_kms_key_arn, str) or not _KMS_KEY_ARN_RE.fullmatch(asset_kms_key_arn):
        raise SettingsError(
            "asset_kms_key_arn",
            f"must be a KMS key ARN arn:<partition>:kms:<region>:<account>:key/<key-id> (not an alias), "
            f"got {asset_kms_key_arn!r}")
    image_uri = value("sklearn_image_uri")
    if image_uri in ("", None):
        image_uri = None
    elif not isinstance(image_uri, str) or not IMAGE_DIGEST_URI_RE.fullmatch(image_uri.strip()):
        raise SettingsError(
            "sklearn_image_uri",
            f"must be a scikit-learn image pinned by digest, "
            "<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn@sha256:<64 hex digits>, got "
            f"{image_uri!r} (a tag is not accepted: tags are rebuilt; see docs/infra.md for how to find the digest)")
    else:
        image_uri = image_uri.strip()
        match = IMAGE_DIGEST_URI_RE.fullmatch(image_uri)
        assert match is not None  # checked above
        china = match.group("region").startswith("cn-")
        if china != image_uri.split("/", 1)[0].endswith(".amazonaws.com.cn"):
            raise SettingsError(
                "sklearn_image_uri", f"{image_uri!r}: China regions (cn-*) use the domain amazonaws.com.cn, the "
                "other regions amazonaws.com")

    alert_email = value("alert_email")
    if alert_email in ("", None):
        alert_email = None
    elif not isinstance(alert_email, str) or len(alert_email) > 254 or not _EMAIL_RE.fullmatch(alert_email):
        raise SettingsError("alert_email", f"not a valid e-mail address: {alert_email!r}")

    removal_policy = value("removal_policy")
    if removal_policy not in ("retain", "destroy"):
        raise SettingsError("removal_policy", f"must be 'retain' or 'destroy', got {removal_policy!r}")

    log_retention_days = _as_int("log_retention_days", value("log_retention_days"), 1, 3653)
    if log_retention_days not in LOG_RETENTION_CHOICES:
        raise SettingsError("log_retention_days",
                            f"must be one of CloudWatch Logs' retention values {LOG_RETENTION_CHOICES}")

    datasets = load_dataset_thresholds(configs_dir)
    psi_alarms = load_dataset_psi_alarms(configs_dir)
    alarmed_rules = load_dataset_alarmed_rules(configs_dir)
    overrides = value("quality_thresholds")
    if overrides is not None:
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides)
            except json.JSONDecodeError as exc:
                raise SettingsError("quality_thresholds", f"not valid JSON: {exc}") from exc
        if not isinstance(overrides, dict):
            raise SettingsError("quality_thresholds", "must be an object {dataset: {threshold: value}}")
        for dataset, thresholds in overrides.items():
            if not isinstance(dataset, str) or not _DATASET_RE.fullmatch(dataset):
                raise SettingsError("quality_thresholds", f"dataset name {dataset!r} must match {_DATASET_RE.pattern}")
            if not isinstance(thresholds, dict):
                raise SettingsError("quality_thresholds", f"thresholds of {dataset!r} must be an object")
            base = datasets.get(dataset, datasets["default"])
            datasets[dataset] = _thresholds("quality_thresholds", thresholds, base)

    return Settings(
        input_prefix=input_prefix,
        output_prefix=output_prefix,
        baseline_prefix=written["baseline_prefix"],
        quarantine_prefix=written["quarantine_prefix"],
        staging_prefix=staging_prefix,
        staging_expiration_days=staging_expiration_days,
        job_prefix=job_prefix,
        instance_type=instance_type,
        instance_count=_instance_count(value("instance_count")),
        volume_size_gb=_as_int("volume_size_gb", value("volume_size_gb"), 1, MAX_VOLUME_SIZE_GB),
        max_runtime_seconds=_as_int("max_runtime_seconds", value("max_runtime_seconds"), 1, MAX_RUNTIME_LIMIT),
        processing_mode=processing_mode,
        max_rows_in_memory=max_rows_in_memory,
        sklearn_image_version=image_version,
        asset_kms_key_arn=asset_kms_key_arn,
        sklearn_image_uri=image_uri,
        alert_email=alert_email,
        removal_policy=removal_policy,
        noncurrent_version_expiration_days=_as_int(
            "noncurrent_version_expiration_days", value("noncurrent_version_expiration_days"), 1, 36500
        ),
        log_retention_days=log_retention_days,
        datasets={
            name: QualityThresholds(**t, psi_alarm=psi_alarms.get(name, psi_alarms["default"]),
                                    alarmed_rules=alarmed_rules.get(name, ()))
            for name, t in sorted(datasets.items())
        },
    )
