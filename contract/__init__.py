"""The contract between the CDK app, the two Lambdas and the processing job (docs/design.md "Contracts").

Every name or rule that more than one part of the pipeline must agree on is defined here, once: dataset and job-name
patterns, output folder and marker names, the environment variables passed to the Lambdas and to the job, the
summary-key -> (metric name, unit) table, the processing modes, the profile schema version and the typed job settings
(:class:`JobSettings`, validated here and nowhere else).

Standard library only: the CDK app imports it, the job bundle and the Lambda asset carry a copy of this package
(infra/code_bundle.py, infra/lambda_asset.py), and the Lambdas run from their zip with nothing but boto3 beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

# --------------------------------------------------------------------------------------------
# Names: datasets and jobs (design.md Contracts 1 and 2)
# --------------------------------------------------------------------------------------------

#: A dataset name: the first folder under the input prefix (lower-cased by the trigger), a config file's stem.
DATASET_PATTERN: Final = r"[a-z0-9][a-z0-9-]{0,31}"
DATASET_RE: Final = re.compile(DATASET_PATTERN)
DEFAULT_DATASET: Final = "default"  # an upload directly under the input prefix
UNKNOWN_DATASET: Final = "unknown"  # the metrics Lambda's dimension when a job name does not tell its dataset

#: ``job_prefix``: one rule for the CDK app and both Lambdas. Job names are ``<prefix>-<dataset>-<16 hex>``.
JOB_PREFIX_PATTERN: Final = r"[a-z0-9]{1,10}"
JOB_PREFIX_RE: Final = re.compile(JOB_PREFIX_PATTERN)
#: SageMaker's ProcessingJobName pattern and length.
JOB_NAME_RE: Final = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
JOB_NAME_MAX: Final = 63
JOB_HASH_HEX_CHARS: Final = 16
JOB_SUFFIX_RE: Final = re.compile(r"-[0-9a-f]{16}$")


def job_name(job_prefix: str, dataset: str, digest: str) -> str:
    """``<job_prefix>-<dataset truncated>-<first 16 hex of digest>`` (at most 63 characters, ``[a-zA-Z0-9-]``)."""
    suffix = digest[:JOB_HASH_HEX_CHARS]
    room = JOB_NAME_MAX - len(job_prefix) - len(suffix) - 2
    return f"{job_prefix}-{dataset[:max(room, 0)]}-{suffix}"


def dataset_from_job_name(name: str, job_prefix: str) -> str:
    """The dataset of a job name made by :func:`job_name` (possibly truncated), or :data:`UNKNOWN_DATASET`."""
    head = f"{job_prefix}-"
    if not name.startswith(head) or not JOB_SUFFIX_RE.search(name[len(head):]):
        return UNKNOWN_DATASET
    middle = JOB_SUFFIX_RE.sub("", name[len(head):], count=1)
    return middle if DATASET_RE.fullmatch(middle) else UNKNOWN_DATASET


# --------------------------------------------------------------------------------------------
# Folders and files (design.md Contracts 3 and 4)
# --------------------------------------------------------------------------------------------

CLEANED: Final = "cleaned"
TRANSFORMED: Final = "transformed"
STATISTICS: Final = "statistics"
QUALITY: Final = "quality"
REJECTED: Final = "rejected"
#: The job's output folders (each a ProcessingOutput of the same name under ``<output_prefix><dataset>/<job>/``).
OUTPUT_FOLDERS: Final = (CLEANED, TRANSFORMED, STATISTICS, QUALITY, REJECTED)
#: The data folders moved to quarantine when the gate fails.
DATA_FOLDERS: Final = (CLEANED, TRANSFORMED, STATISTICS, REJECTED)
#: The quarantine output (``<quarantine_prefix><dataset>/<job>/``).
QUARANTINE: Final = "quarantine"
#: The job's ``data`` input (its staged copy) and ``baseline`` input.
DATA_INPUT: Final = "data"
CODE_INPUT: Final = "code"
BASELINE_INPUT: Final = "baseline"
METRICS_FILE: Final = "metrics.json"  # <quality>/metrics.json: the summary the metrics Lambda publishes
PROFILE_FILE: Final = "profile.json"  # <quality>/profile.json: promoted to the dataset's baseline
BASELINE_FILE: Final = "baseline.json"  # <baseline_prefix><dataset>/baseline.json
SUCCESS_MARKER: Final = "_SUCCESS"  # written by the metrics Lambda into SUCCESS_FOLDERS of a passed/warned batch
SUCCESS_FOLDERS: Final = (CLEANED, TRANSFORMED)
PUBLISHED_MARKER: Final = "_metrics_published"  # <quality>/_metrics_published: the metrics Lambda's publish-once marker
#: ``schema_version`` of profile.json / baseline.json.
PROFILE_SCHEMA_VERSION: Final = 1

# --------------------------------------------------------------------------------------------
# Environment variables
# --------------------------------------------------------------------------------------------

# Passed to the job (CreateProcessingJob Environment), read by processing/cli.py.
ENV_DATASET: Final = "DATASET"
ENV_SOURCE_URI: Final = "SOURCE_URI"
ENV_SOURCE_VERSION_ID: Final = "SOURCE_VERSION_ID"
ENV_SOURCE_SIZE: Final = "SOURCE_SIZE"
ENV_SOURCE_ETAG: Final = "SOURCE_ETAG"
ENV_CODE_VERSION: Final = "CODE_VERSION"
ENV_PROCESSING_MODE: Final = "PROCESSING_MODE"
ENV_MAX_ROWS_IN_MEMORY: Final = "PROCESSING_MAX_ROWS_IN_MEMORY"
# Set on the Lambdas by the CDK app (infra/processing_trigger.py, infra/job_metrics.py).
ENV_DATA_BUCKET: Final = "DATA_BUCKET"
ENV_INPUT_PREFIX: Final = "INPUT_PREFIX"
ENV_OUTPUT_PREFIX: Final = "OUTPUT_PREFIX"
ENV_BASELINE_PREFIX: Final = "BASELINE_PREFIX"
ENV_QUARANTINE_PREFIX: Final = "QUARANTINE_PREFIX"
ENV_STAGING_PREFIX: Final = "STAGING_PREFIX"
ENV_JOB_PREFIX: Final = "JOB_PREFIX"
ENV_METRICS_NAMESPACE: Final = "METRICS_NAMESPACE"  # the trigger's (KeyRefused)
ENV_NAMESPACE: Final = "NAMESPACE"  # the metrics Lambda's
ENV_ALERT_TOPIC_ARN: Final = "ALERT_TOPIC_ARN"
ENV_ROLE_ARN: Final = "ROLE_ARN"
ENV_IMAGE_URI: Final = "IMAGE_URI"
ENV_CODE_S3_URI: Final = "CODE_S3_URI"
ENV_KMS_KEY_ARN: Final = "KMS_KEY_ARN"
ENV_INSTANCE_TYPE: Final = "INSTANCE_TYPE"
ENV_INSTANCE_COUNT: Final = "INSTANCE_COUNT"
ENV_VOLUME_SIZE_GB: Final = "VOLUME_SIZE_GB"
ENV_MAX_RUNTIME_SECONDS: Final = "MAX_RUNTIME_SECONDS"

# --------------------------------------------------------------------------------------------
# Metrics (design.md Contract 3)
# --------------------------------------------------------------------------------------------

METRICS_NAMESPACE: Final = "DataQualityPipeline"
DATASET_DIMENSION: Final = "Dataset"
#: Published by the metrics Lambda for every terminal job (MetricsUnavailable for Completed jobs only).
JOB_SUCCEEDED: Final = "JobSucceeded"
JOB_FAILED: Final = "JobFailed"
METRICS_UNAVAILABLE: Final = "MetricsUnavailable"
OUTCOME_METRICS: Final = (JOB_SUCCEEDED, JOB_FAILED, METRICS_UNAVAILABLE)
#: Published by the trigger per refused upload, with dimension ``Reason`` and once without dimensions.
KEY_REFUSED: Final = "KeyRefused"
#: The gate's verdict metric (quarantined batch), also watched for datasets without a config.
QUALITY_GATE_FAILED: Final = "QualityGateFailed"
REASON_DIMENSION: Final = "Reason"

#: The CloudWatch units (PutMetricData ``Unit``) the contract's metrics use: a subset of CloudWatch's StandardUnit, so
#: the Lambdas' datapoints type-check against the boto3 stubs' ``MetricDatumTypeDef``.
MetricUnit = Literal["Count", "None", "Seconds"]

#: metrics.json ``summary`` key -> (metric name, unit). Rates are ratios, published with unit ``None``. Every key is
#: required: a metrics.json lacking one is MetricsUnavailable.
SUMMARY_METRICS: Final[Mapping[str, tuple[str, MetricUnit]]] = {
    "rows_in": ("RowsIn", "Count"),
    "rows_out": ("RowsOut", "Count"),
    "rows_rejected": ("RowsRejected", "Count"),
    "missing_values_before": ("MissingValuesBefore", "Count"),
    "missing_values_after": ("MissingValuesAfter", "Count"),
    "missing_rate_after": ("MissingRateAfter", "None"),
    "rejected_rate": ("RejectedRate", "None"),
    "duplicate_rows_exact": ("DuplicateRowsExact", "Count"),
    "duplicate_rows_key": ("DuplicateRowsKey", "Count"),
    "duplicate_rate": ("DuplicateRate", "None"),
    "malformed_json": ("MalformedJson", "Count"),
    "malformed_json_rate": ("MalformedJsonRate", "None"),
    "invalid_values": ("InvalidValues", "Count"),
    "processing_seconds": ("ProcessingSeconds", "Seconds"),
}
#: Drift and gate keys (design.md Contract 4): published when present; metrics files written before they existed
#: lack them, which is not a reason for MetricsUnavailable.
OPTIONAL_SUMMARY_METRICS: Final[Mapping[str, tuple[str, MetricUnit]]] = {
    "drift_max_psi": ("DriftMaxPsi", "None"),
    "drifted_columns": ("DriftedColumns", "Count"),
    "drift_unavailable": ("DriftUnavailable", "Count"),
    "quality_gate_failed": (QUALITY_GATE_FAILED, "Count"),
    "quality_gate_warned": ("QualityGateWarned", "Count"),
    # The dataset config's rules (issue 14): broken fail / warn rules, rows rejected by reject rules.
    "rules_failed": ("RulesFailed", "Count"),
    "rules_warned": ("RulesWarned", "Count"),
    "rows_rejected_by_rules": ("RowsRejectedByRules", "Count"),
}
#: Per-rule metric, dimensions Dataset + Rule, published only for rules marked ``"alarm": true`` (bounded by the
#: dataset configs): the rule's violations when it broke, else 0. The CDK app creates one alarm per such rule.
RULE_VIOLATIONS: Final = "RuleViolations"
RULE_DIMENSION: Final = "Rule"


#: The summary keys the job's gate adds (processing/gate.py), after the pipeline's own.
SUMMARY_KEYS_GATE: Final = tuple(OPTIONAL_SUMMARY_METRICS)


def published_metric_names() -> frozenset[str]:
    """Every metric name the pipeline publishes in its namespace (what alarms and dashboards may read)."""
    summary = {name for name, _ in SUMMARY_METRICS.values()} | {name for name, _ in OPTIONAL_SUMMARY_METRICS.values()}
    return frozenset(summary | set(OUTCOME_METRICS) | {KEY_REFUSED, RULE_VIOLATIONS})


# --------------------------------------------------------------------------------------------
# Job settings (cdk.json -> CDK app -> trigger's environment -> job's Environment -> processing/cli.py)
# --------------------------------------------------------------------------------------------

PROCESSING_MODES: Final = ("auto", "memory", "streaming")
DEFAULT_PROCESSING_MODE: Final = "auto"
#: ``max_rows_in_memory``: the job numbers rows with 64-bit integers; a budget at or above the row count only means
#: every statistic is exact, so nothing larger matters.
MAX_ROWS_IN_MEMORY_LIMIT: Final = 2**63 - 1
MAX_INSTANCE_COUNT: Final = 100
MAX_VOLUME_SIZE_GB: Final = 16_384  # SageMaker's VolumeSizeInGB upper bound
MAX_RUNTIME_LIMIT: Final = 777_600  # seconds: SageMaker's MaxRuntimeInSeconds upper bound (9 days)
INSTANCE_TYPE_MAX: Final = 64
_WHOLE_NUMBER_RE: Final = re.compile(r"-?\d+")


class ContractError(ValueError):
    """A setting breaks the contract. ``setting`` is the field name (``max_rows_in_memory``), ``env`` its
    environment variable, ``value`` what was given and ``problem`` what is wrong with it (``is outside 1..10``).

    ``str()`` reads ``<ENV>=<value> <problem>``; callers that speak of context keys use ``value`` and ``problem``.
    """

    def __init__(self, setting: str, env: str, value: object, problem: str) -> None:
        self.setting, self.env, self.value, self.problem = setting, env, value, problem
        shown = value if isinstance(value, int) and not isinstance(value, bool) else repr(value)
        super().__init__(f"{env}={shown} {problem}")


def whole_number(setting: str, env: str, raw: object, low: int, high: int) -> int:
    """``raw`` (an int, or text of decimal digits with an optional ``-`` and spaces around) within ``low..high``.

    Raises:
        ContractError: not a whole number (floats, ``1e6``, ``1_000``, ``+5`` and booleans are not), or out of range.
    """
    if isinstance(raw, str) and _WHOLE_NUMBER_RE.fullmatch(raw.strip()):
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ContractError(setting, env, raw, "is not a whole number")
    if not low <= raw <= high:
        raise ContractError(setting, env, raw, f"is outside {low}..{high}")
    return raw


def processing_mode(raw: object) -> str:
    """One of :data:`PROCESSING_MODES`.

    Raises:
        ContractError: anything else (case matters: the job compares exactly).
    """
    if raw not in PROCESSING_MODES:
        raise ContractError("processing_mode", ENV_PROCESSING_MODE, raw,
                            f"must be one of {', '.join(PROCESSING_MODES)}")
    return str(raw)


def max_rows_in_memory(raw: object) -> int | None:
    """The row budget: ``None`` for unset (``None`` or blank text: the job derives it from its memory), else a whole
    number within ``1..MAX_ROWS_IN_MEMORY_LIMIT``.

    Raises:
        ContractError: not a whole number, or out of range.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return whole_number("max_rows_in_memory", ENV_MAX_ROWS_IN_MEMORY, raw, 1, MAX_ROWS_IN_MEMORY_LIMIT)


@dataclass(frozen=True)
class JobSettings:
    """How each processing job runs: validated when built, whoever builds it (the CDK app from context, the trigger
    from its environment, the job from its Environment).

    Attributes:
        instance_type / instance_count / volume_size_gb / max_runtime_seconds: the job's resources (the trigger's
            CreateProcessingJob request).
        processing_mode: the job's ``PROCESSING_MODE``.
        max_rows_in_memory: the job's ``PROCESSING_MAX_ROWS_IN_MEMORY`` (``None``: not passed, derived by the job).
    """

    instance_type: str = "ml.t3.medium"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 3600
    processing_mode: str = DEFAULT_PROCESSING_MODE
    max_rows_in_memory: int | None = None

    def __post_init__(self) -> None:
        if (not isinstance(self.instance_type, str) or not self.instance_type.startswith("ml.")
                or len(self.instance_type) > INSTANCE_TYPE_MAX):
            raise ContractError("instance_type", ENV_INSTANCE_TYPE, self.instance_type,
                                f"must start with 'ml.' and have at most {INSTANCE_TYPE_MAX} characters")
        whole_number("instance_count", ENV_INSTANCE_COUNT, self.instance_count, 1, MAX_INSTANCE_COUNT)
        whole_number("volume_size_gb", ENV_VOLUME_SIZE_GB, self.volume_size_gb, 1, MAX_VOLUME_SIZE_GB)
        whole_number("max_runtime_seconds", ENV_MAX_RUNTIME_SECONDS, self.max_runtime_seconds, 1, MAX_RUNTIME_LIMIT)
        processing_mode(self.processing_mode)
        if self.max_rows_in_memory is not None:
            max_rows_in_memory(self.max_rows_in_memory)

    def job_env(self) -> dict[str, str]:
        """The job's share: its Environment entries (``PROCESSING_MAX_ROWS_IN_MEMORY`` only when set)."""
        env = {ENV_PROCESSING_MODE: self.processing_mode}
        if self.max_rows_in_memory is not None:
            env[ENV_MAX_ROWS_IN_MEMORY] = str(self.max_rows_in_memory)
        return env

    def to_env(self) -> dict[str, str]:
        """The trigger's environment entries for these settings (:meth:`from_env` reads them back)."""
        return {
            ENV_INSTANCE_TYPE: self.instance_type,
            ENV_INSTANCE_COUNT: str(self.instance_count),
            ENV_VOLUME_SIZE_GB: str(self.volume_size_gb),
            ENV_MAX_RUNTIME_SECONDS: str(self.max_runtime_seconds),
            **self.job_env(),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> JobSettings:
        """Read :meth:`to_env`'s variables. ``PROCESSING_MODE`` and ``PROCESSING_MAX_ROWS_IN_MEMORY`` may be missing
        or blank (a function deployed before they existed): ``auto`` and unset.

        Raises:
            ContractError: a variable is missing or invalid (named, with its value).
        """

        def required(env: str, setting: str) -> str:
            value = environ.get(env, "").strip()
            if not value:
                raise ContractError(setting, env, value, "is missing or empty")
            return value

        return cls(
            instance_type=required(ENV_INSTANCE_TYPE, "instance_type"),
            instance_count=whole_number("instance_count", ENV_INSTANCE_COUNT,
                                        required(ENV_INSTANCE_COUNT, "instance_count"), 1, MAX_INSTANCE_COUNT),
            volume_size_gb=whole_number("volume_size_gb", ENV_VOLUME_SIZE_GB,
                                        required(ENV_VOLUME_SIZE_GB, "volume_size_gb"), 1, MAX_VOLUME_SIZE_GB),
            max_runtime_seconds=whole_number("max_runtime_seconds", ENV_MAX_RUNTIME_SECONDS,
                                             required(ENV_MAX_RUNTIME_SECONDS, "max_runtime_seconds"), 1,
                                             MAX_RUNTIME_LIMIT),
            processing_mode=processing_mode(environ.get(ENV_PROCESSING_MODE, "").strip() or DEFAULT_PROCESSING_MODE),
            max_rows_in_memory=max_rows_in_memory(environ.get(ENV_MAX_ROWS_IN_MEMORY)),
        )


def check_job_prefix(raw: object, env: str = ENV_JOB_PREFIX) -> str:
    """``job_prefix`` / ``JOB_PREFIX``: :data:`JOB_PREFIX_PATTERN`.

    Raises:
        ContractError: anything else.
    """
    if not isinstance(raw, str) or not JOB_PREFIX_RE.fullmatch(raw):
        raise ContractError("job_prefix", env, raw, f"must match {JOB_PREFIX_PATTERN}")
    return raw
