"""One SNS message per failed/stopped job and per quarantined batch (alarms notify on transitions only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lambda_shared.logs import decision_log
from metrics.outcome import QUARANTINE_OUTPUT_NAME, JobOutcome
from metrics.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import PublishInputTypeDef

MAX_NOTIFIED_VIOLATIONS = 10  # keep the notification concise; violations.json has all of them
SNS_SUBJECT_MAX = 100
log_decision = decision_log("dq.metrics")


def failure_notification(outcome: JobOutcome) -> PublishInputTypeDef:
    """SNS Publish arguments for a Failed/Stopped job: job, dataset, input, ExitMessage and FailureReason.

    ExitMessage (the container's ``/opt/ml/output/message``: ``ErrorClass: one line``) says what went wrong;
    FailureReason is SageMaker's, generic for a non-zero exit. Both are sanitised (:func:`one_line`).
    """
    reason = outcome.exit_message or outcome.failure_reason or "(no ExitMessage or FailureReason given)"
    body = {
        "event": "job-failed",
        "summary": f"Processing job {outcome.job_name} ({outcome.dataset}) {outcome.status}: {reason}"[:1000],
        "job_name": outcome.job_name,
        "status": outcome.status,
        "dataset": outcome.dataset,
        "input": outcome.source_uri or None,
        "input_version_id": outcome.source_version_id or None,
        "input_from": outcome.input_from or None,
        "exit_message": outcome.exit_message or None,
        "failure_reason": outcome.failure_reason or None,
        "end_time": outcome.end_time.isoformat(),
    }
    return _publish_args(f"Data quality job {outcome.status}: {outcome.job_name}", body, "job-failed", outcome)


def quarantine_notification(outcome: JobOutcome, document: Any) -> PublishInputTypeDef:
    """SNS Publish arguments for a batch that failed the quality gate: violations summary, quarantine location."""
    gate = document.get("gate") if isinstance(document, dict) else None
    raw = gate.get("violations") if isinstance(gate, dict) else None
    failing = [v for v in raw if isinstance(v, dict) and v.get("action", "fail") == "fail"] if isinstance(raw,
                                                                                                          list) else []
    shown = [{k: v[k] for k in ("rule", "column", "measured", "threshold") if k in v}
             for v in failing[:MAX_NOTIFIED_VIOLATIONS]]
    quarantine = outcome.outputs.get(QUARANTINE_OUTPUT_NAME)
    where = quarantine.rstrip("/") + "/" if quarantine else None
    rules = ", ".join(sorted({str(v.get("rule")) + (f"[{v['column']}]" if v.get("column") else "") for v in failing}))
    body = {
        "event": "batch-quarantined",
        "summary": (f"Batch {outcome.job_name} ({outcome.dataset}) failed the quality gate: "
                    f"{len(failing)} rule(s) broken ({rules or 'see violations.json'}); data under "
                    f"{where or 'the quarantine prefix'}")[:1000],
        "job_name": outcome.job_name,
        "dataset": outcome.dataset,
        "input": outcome.source_uri or None,
        "input_version_id": outcome.source_version_id or None,
        "input_from": outcome.input_from or None,
        "quarantine": where,
        "violations_file": f"{where}violations.json" if where else None,
        "violations": shown,
        "violations_total": len(failing),
        "end_time": outcome.end_time.isoformat(),
    }
    return _publish_args(f"Data quality batch quarantined: {outcome.job_name}", body, "batch-quarantined", outcome)


def _publish_args(subject: str, body: Mapping[str, Any], event: str, outcome: JobOutcome) -> PublishInputTypeDef:
    # JSON (like the CloudWatch alarm notifications on the same topic), attributes for subscription filter policies.
    return {
        "Subject": subject[:SNS_SUBJECT_MAX],
        "Message": json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False, default=str),
        "MessageAttributes": {
            "event": {"DataType": "String", "StringValue": event},
            "dataset": {"DataType": "String", "StringValue": outcome.dataset},
        },
    }


def notify(outcome: JobOutcome, values: Mapping[str, float], document: Any, settings: Settings, sns: SNSClient,
           base: Mapping[str, Any]) -> list[str]:
    """One SNS message per Failed/Stopped job and per quarantined batch (ALERT_TOPIC_ARN; empty disables).

    Alarms notify on state transitions only: a second failure while an alarm is already in ALARM sends nothing, so
    each bad job gets its own message here. Errors raise (the asynchronous retry repeats the whole event).
    """
    if not settings.alert_topic_arn:
        return []
    if outcome.status in ("Failed", "Stopped"):
        args = failure_notification(outcome)
    elif outcome.status == "Completed" and values.get("quality_gate_failed", 0.0) >= 1:
        args = quarantine_notification(outcome, document)
    else:
        return []
    event = args["MessageAttributes"]["event"]["StringValue"]
    message: PublishInputTypeDef = {**args, "TopicArn": settings.alert_topic_arn}
    response = sns.publish(**message)
    log_decision("notified", **base, notification=event, message_id=response.get("MessageId"))
    return [event]
