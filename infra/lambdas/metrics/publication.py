"""One state-change event, in order: describe when needed, publish, notify, mark, promote (design.md Contracts 3, 4).

Per job: complete the event from DescribeProcessingJob when it lacks what we need (the documented event sample has no
``Environment`` and no ``ExitMessage``), publish the metrics (stamped with the publication time, so a late delivery
still lands in the alarms' current evaluation window), send one notification per failed/stopped job or quarantined
batch, write the ``_SUCCESS`` markers of a passed/warned batch, promote the first baseline, then write the
publish-once marker ``<quality>/_metrics_published``, unless the metrics were unavailable (then a redelivery after
the file is fixed re-reads it). A duplicate event that finds the marker does nothing; a failure before the marker is
written makes the retry do everything again (at worst published twice, never lost). Clients are injected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, HTTPClientError

from lambda_shared.logs import decision_log
from lambda_shared.s3errors import error_code
from metrics.datapoints import MetricsUnavailableError, build_metric_data, chunks, rule_values, summary_values
from metrics.notifications import notify
from metrics.outcome import _environment, complete_detail, needs_describe, parse_outcome
from metrics.s3io import (
    already_published,
    marker_location,
    promote_baseline,
    read_metrics,
    write_published_marker,
    write_success_markers,
)
from metrics.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient

log_decision = decision_log("dq.metrics")


def now() -> datetime:
    """The publication time of the datapoints (tests replace it with a fixed clock)."""
    return datetime.now(UTC)


def describe_job(job_name: str, sagemaker: SageMakerClient, base: Mapping[str, Any]) -> dict[str, Any] | None:
    """DescribeProcessingJob, or None (logged) when it fails after botocore's retries.

    Not raised: the event still carries the job's status (and usually its outputs), so the metrics and the
    notification go out with what the event has: the input falls back to the job's ``data`` input, the message to
    FailureReason. Failing the whole event over a missing ExitMessage would delay or lose the JobFailed datapoint.
    """
    try:
        return dict(sagemaker.describe_processing_job(ProcessingJobName=job_name))
    except (ClientError, HTTPClientError) as exc:
        log_decision("describe-failed", logging.WARNING, **base, error_code=error_code(exc), error=str(exc),
                     reason="DescribeProcessingJob failed; using what the event carries")
        return None


def process_event(
    event: Mapping[str, Any], settings: Settings, *, cloudwatch: CloudWatchClient, s3: S3Client,
    sns: SNSClient | None = None, sagemaker: SageMakerClient | None = None,
) -> dict[str, Any]:
    """Publish the metrics for one state-change event and return a summary of what was done."""
    outcome = parse_outcome(event, settings)
    detail = event.get("detail") or {}
    if outcome is None:
        log_decision("ignored", job_name=detail.get("ProcessingJobName"), status=detail.get("ProcessingJobStatus"),
                     reason="not a terminal state change of one of our jobs")
        return {"published": 0, "decision": "ignored"}
    base: dict[str, Any] = {"job_name": outcome.job_name, "status": outcome.status, "dataset": outcome.dataset,
            "end_time": outcome.end_time.isoformat()}

    # Publish once: a marker written after everything below means a duplicate event has nothing left to do.
    marker = marker_location(outcome, settings)
    if marker is not None and already_published(s3, marker):
        log_decision("duplicate", **base, marker=f"s3://{marker[0]}/{marker[1]}",
                     reason="this job's metrics were already published")
        return {"published": 0, "decision": "duplicate"}

    if needs_describe(detail) and sagemaker is not None:
        description = describe_job(outcome.job_name, sagemaker, base)
        if description is not None:
            completed = complete_detail(detail, description)
            described_env = not _environment(detail).get("SOURCE_URI") and bool(
                _environment(completed).get("SOURCE_URI"))
            outcome = parse_outcome({**event, "detail": completed}, settings,
                                    environment_described=described_env) or outcome
            base = {**base, "dataset": outcome.dataset, "end_time": outcome.end_time.isoformat()}
            if marker is None:  # the event named no quality output; the description did
                marker = marker_location(outcome, settings)
                if marker is not None and already_published(s3, marker):
                    log_decision("duplicate", **base, marker=f"s3://{marker[0]}/{marker[1]}",
                                 reason="this job's metrics were already published")
                    return {"published": 0, "decision": "duplicate"}

    values: dict[str, float] = {}
    rules: dict[str, float] = {}
    document: Any = None
    unavailable: bool | None = None
    if outcome.status == "Completed":
        try:
            document = read_metrics(outcome.quality_uri, s3)
            values, problems = summary_values(document)
            rules = rule_values(document)
        except MetricsUnavailableError as exc:
            problems = [str(exc)]
        unavailable = bool(problems)
        if problems:
            log_decision("metrics-unavailable", logging.WARNING, **base, quality_uri=outcome.quality_uri,
                         problems=problems)

    published_at = now()
    data = build_metric_data(outcome, values, unavailable, published_at, rules)
    for chunk in chunks(data):
        cloudwatch.put_metric_data(Namespace=settings.namespace, MetricData=chunk)
    log_decision("published", **base, published_at=published_at.isoformat(),
                 metrics=[d["MetricName"] for d in data], failure_reason=outcome.failure_reason or None,
                 exit_message=outcome.exit_message or None)
    result: dict[str, Any] = {"published": len(data), "decision": "published", "metrics_unavailable": unavailable}
    if settings.alert_topic_arn and sns is not None:
        result["notified"] = notify(outcome, values, document, settings, sns, base)
    if outcome.status == "Completed" and settings.data_bucket:  # DATA_BUCKET unset: S3 writes disabled
        result["success_markers"] = write_success_markers(outcome, values, unavailable, settings, s3, base)
        # After publishing: if promotion raises (transient S3 error), the asynchronous retry publishes the same
        # datapoints again (idempotent) and retries the promotion.
        result["baseline"] = promote_baseline(outcome, values, settings, s3, base, unavailable)
    if marker is not None and unavailable:
        # No marker: once metrics.json is fixed, a redelivery of this event re-reads it and publishes the metrics
        # (MetricsUnavailable was published now; publishing it again is harmless: alarms use Maximum).
        log_decision("marker-withheld", logging.WARNING, **base, marker=f"s3://{marker[0]}/{marker[1]}",
                     reason="metrics were unavailable: a redelivery after the file is fixed publishes them")
        result["marker"] = "withheld"
    elif marker is not None:
        result["marker"] = write_published_marker(s3, marker, outcome, base)
    return result
