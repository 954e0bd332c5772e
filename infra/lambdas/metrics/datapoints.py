"""From metrics.json's summary to CloudWatch datapoints (design.md Contract 3: the contract's summary table)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import contract
from metrics.outcome import JobOutcome, split_s3_uri

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

SUMMARY_METRICS = contract.SUMMARY_METRICS
OPTIONAL_SUMMARY_METRICS = contract.OPTIONAL_SUMMARY_METRICS
METRICS_FILE = contract.METRICS_FILE
MAX_DATUMS_PER_CALL = 1000  # PutMetricData limit (and 1 MB per request; ours are tiny)


class MetricsUnavailableError(Exception):
    """metrics.json is missing, unreadable or corrupt; the message says why."""


def metrics_location(quality_uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix[/]`` -> (bucket, ``prefix/metrics.json``)."""
    try:
        bucket, prefix = split_s3_uri(quality_uri)
    except ValueError as exc:  # "'<uri>' is not an s3:// URI" / "... has no bucket"
        raise MetricsUnavailableError(f"quality output URI {exc}") from None
    return bucket, prefix + METRICS_FILE


def summary_values(document: Any) -> tuple[dict[str, float], list[str]]:
    """The valid summary numbers of a metrics.json document, and the problems found.

    Raises:
        MetricsUnavailableError: the document has no ``summary`` object at all.
    """
    if not isinstance(document, dict) or not isinstance(document.get("summary"), dict):
        raise MetricsUnavailableError("metrics.json has no 'summary' object")
    summary = document["summary"]
    values: dict[str, float] = {}
    problems: list[str] = []
    for key in SUMMARY_METRICS:
        value = summary.get(key)
        if key not in summary:
            problems.append(f"summary.{key} is missing")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            problems.append(f"summary.{key}={value!r} is not a finite non-negative number")
        else:
            values[key] = float(value)
    for key in OPTIONAL_SUMMARY_METRICS:
        value = summary.get(key)
        if key in summary and not (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or not math.isfinite(value) or value < 0):
            values[key] = float(value)
    return values, problems


RULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # processing/rules_config.py: a rule's name
MAX_ALARMED_RULES = 100  # per batch: bounds the Rule dimension's values whatever a metrics.json holds


def rule_values(document: Any) -> dict[str, float]:
    """``RuleViolations`` per rule marked ``"alarm": true`` in metrics.json ``rules`` (the job copies the flag from
    the dataset config): the rule's violations when it broke, else 0. Only those rules, so the Rule dimension's values
    are bounded by the dataset configs, not by the data. Malformed entries are skipped."""
    rules = document.get("rules") if isinstance(document, dict) else None
    out: dict[str, float] = {}
    if not isinstance(rules, dict):
        return out
    for name, rule in rules.items():
        if len(out) >= MAX_ALARMED_RULES:
            break
        if not (isinstance(name, str) and RULE_NAME.fullmatch(name) and isinstance(rule, dict)
                and rule.get("alarm") is True and isinstance(rule.get("passed"), bool)):
            continue
        violations = rule.get("violations", 0)
        if isinstance(violations, bool) or not isinstance(violations, (int, float)) or not math.isfinite(violations):
            continue
        out[name] = 0.0 if rule["passed"] else float(max(violations, 1))
    return out


def build_metric_data(
    outcome: JobOutcome, values: Mapping[str, float], metrics_unavailable: bool | None, timestamp: datetime,
    rules: Mapping[str, float] | None = None,
) -> list[MetricDatumTypeDef]:
    """All datapoints for one job, each stamped with ``timestamp`` (the publication time, design.md Contract 3).

    Not the job's end time: alarms evaluate only their most recent periods, so a datapoint stamped with an end time
    hours old (a delivery after Lambda's asynchronous retries, a DLQ redrive, a redelivery after metrics.json was
    fixed) would land in periods already evaluated and never alarm. The end time stays in the log and notification.

    Args:
        outcome: the job outcome.
        values: valid summary values (may be empty).
        metrics_unavailable: True/False to publish MetricsUnavailable 1/0, None to leave it out
            (failed or stopped jobs have no metrics file by design).
        timestamp: the publication time (UTC).
        rules: ``rule_values``: one ``RuleViolations`` datapoint per rule, dimensions Dataset and Rule.
    """
    succeeded = outcome.status == "Completed"

    def datum(name: str, value: float, unit: contract.MetricUnit) -> MetricDatumTypeDef:
        return {
            "MetricName": name,
            "Dimensions": [{"Name": "Dataset", "Value": outcome.dataset}],
            "Timestamp": timestamp,
            "Value": value,
            "Unit": unit,
        }

    data = [
        datum("JobSucceeded", 1.0 if succeeded else 0.0, "Count"),
        datum("JobFailed", 0.0 if succeeded else 1.0, "Count"),
    ]
    if metrics_unavailable is not None:
        data.append(datum("MetricsUnavailable", 1.0 if metrics_unavailable else 0.0, "Count"))
    for key, (name, unit) in {**SUMMARY_METRICS, **OPTIONAL_SUMMARY_METRICS}.items():
        if key in values:
            data.append(datum(name, values[key], unit))
    for rule, value in (rules or {}).items():
        data.append({"MetricName": contract.RULE_VIOLATIONS,
                     "Dimensions": [{"Name": "Dataset", "Value": outcome.dataset},
                                    {"Name": contract.RULE_DIMENSION, "Value": rule}],
                     "Timestamp": timestamp, "Value": value, "Unit": "Count"})
    return data


def chunks(items: Sequence[MetricDatumTypeDef], size: int = MAX_DATUMS_PER_CALL) -> list[list[MetricDatumTypeDef]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
