"""The metrics Lambda's configuration, parsed once from the environment (names: ``contract``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import contract
from contract import ContractError
from lambda_shared.env import Environment, SettingsError, from_contract

__all__ = ["Settings", "SettingsError"]

TOPIC_ARN_RE = re.compile(r"arn:aws[a-z\-]*:sns:[a-z0-9\-]+:\d{12}:[A-Za-z0-9_\-]{1,256}")


@dataclass(frozen=True)
class Settings:
    """``NAMESPACE`` (CloudWatch namespace) and ``JOB_PREFIX`` (our jobs are ``<JOB_PREFIX>-*``), plus the data
    bucket, the baseline prefix and the alert topic."""

    namespace: str
    job_prefix: str
    data_bucket: str = ""  # "" disables every S3 write: baseline promotion, _SUCCESS and publish-once markers
    baseline_prefix: str = "baselines/"
    alert_topic_arn: str = ""  # "" disables the per-job notifications

    def baseline_key(self, dataset: str) -> str:
        return f"{self.baseline_prefix}{dataset}/{contract.BASELINE_FILE}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate the settings.

        Raises:
            SettingsError: naming the first missing or invalid variable.
        """
        env = Environment(environ)
        namespace = env.optional(contract.ENV_NAMESPACE)
        if not namespace or len(namespace) > 255 or namespace.startswith((":", "AWS/")):
            raise SettingsError("environment variable NAMESPACE is missing or not a valid custom namespace")
        try:
            job_prefix = contract.check_job_prefix(env.optional(contract.ENV_JOB_PREFIX))
        except ContractError as exc:
            raise from_contract(exc) from None
        alert_topic_arn = env.optional(contract.ENV_ALERT_TOPIC_ARN)
        if alert_topic_arn and not TOPIC_ARN_RE.fullmatch(alert_topic_arn):
            raise SettingsError(f"environment variable ALERT_TOPIC_ARN={alert_topic_arn!r} is not an SNS topic ARN")
        return cls(namespace=namespace, job_prefix=job_prefix,
                   data_bucket=env.bucket(contract.ENV_DATA_BUCKET, required=False),
                   baseline_prefix=env.prefix(contract.ENV_BASELINE_PREFIX, "baselines/"),
                   alert_topic_arn=alert_topic_arn)
