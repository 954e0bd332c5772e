"""EventBridge: rules deliver to Lambda (queued asynchronous invocations), SQS and SNS targets, authorized as AWS
does (:mod:`localcloud.iam_eval`); :func:`put_event` routes one event through a bus's rules.

:func:`patch_eventbridge_targets`: moto raises NotImplementedError for Lambda / SNS targets and authorizes nothing;
refusals are recorded in :data:`EVENTBRIDGE_FAILED_INVOCATIONS`, AWS/Events FailedInvocations and the target's DLQ.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime
from typing import Any

from localcloud.clock import CLOCK
from localcloud.iam_eval import authorize_delivery
from localcloud.patches.lambda_sqs import ASYNC_INVOCATIONS
from localcloud.patches.registry import once, replace

log = logging.getLogger("localcloud")

# EventBridge target deliveries refused by the destination's resource or key policy: (rule ARN, target ARN, reason).
# Each also adds a datapoint to AWS/Events FailedInvocations (dimension RuleName), as EventBridge does.
EVENTBRIDGE_FAILED_INVOCATIONS: list[tuple[str, str, str]] = []


# --------------------------------------------------------------------------- EventBridge


def event_time(value: Any) -> str:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value or CLOCK.iso()


def patch_eventbridge_targets() -> None:
    """Rules deliver to Lambda (queued, async invoke semantics) and SNS targets; disabled rules deliver nothing.

    ``time`` is always ISO-8601 (moto passes floats around internally). Constant
    ``Input`` and ``InputPath`` are honoured as well as moto's InputTransformer.
    """
    if not once("eventbridge_targets"):
        return
    from moto.events.models import EventTemplateParser, Rule
    from moto.utilities.arns import parse_arn

    original = Rule.send_to_targets

    def send_to_targets(self, original_event, transform_input=True):
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        if not self.event_pattern.matches_event(original_event):
            return
        event0 = dict(original_event)
        event0["time"] = event_time(event0.get("time"))
        ingestion = event0.pop("ingestion-time", None) or datetime.now(UTC).timestamp()
        others = []
        for target in self.targets:
            arn = parse_arn(target["Arn"])
            if arn.service not in ("lambda", "sns", "sqs"):
                others.append(target)
                continue
            if "Input" in target:
                payload: Any = json.loads(target["Input"])
            elif "InputPath" in target:
                payload = event0
                for part in target["InputPath"].lstrip("$").strip(".").split("."):
                    if part:
                        payload = payload.get(part) if isinstance(payload, dict) else None
            elif transform_input and target.get("InputTransformer"):
                tr = target["InputTransformer"]
                payload = EventTemplateParser.parse(
                    input_template=tr.get("InputTemplate"),
                    input_paths_map=tr.get("InputPathsMap", {}),
                    event=dict(event0, **{"ingestion-time": ingestion}),
                )
            else:
                payload = copy.deepcopy(event0)
            body = payload if isinstance(payload, str) else json.dumps(payload)
            if not _eventbridge_may_deliver(self, target, arn, event0):
                continue
            if arn.service == "lambda":
                ASYNC_INVOCATIONS.append((target["Arn"], payload, target, CLOCK.now()))
            elif arn.service == "sqs":
                from moto.sqs.models import sqs_backends

                group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
                sqs_backends[arn.account][arn.region].send_message(
                    queue_name=arn.resource_id, message_body=body, group_id=group_id
                )
            else:
                from moto.sns.models import sns_backends

                sns_backends[arn.account][arn.region].publish(message=body, arn=target["Arn"])
        if others:  # logs, archives, buses, API destinations: moto's own code (it wants epoch floats)
            legacy = dict(original_event)
            if isinstance(legacy.get("time"), str):
                legacy["time"] = datetime.strptime(legacy["time"], "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=UTC).timestamp()
            legacy.setdefault("ingestion-time", datetime.now(UTC).timestamp())
            saved = self.targets
            self.targets = others
            try:
                original(self, legacy, transform_input)
            finally:
                self.targets = saved

    replace(Rule, "send_to_targets", send_to_targets)


def _function_policy(target_arn: str) -> tuple[bool, str | None]:
    """(the function exists, its resource-based policy JSON or None) for a Lambda target. moto keeps
    ``AWS::Lambda::Permission`` / AddPermission as statements (Principal Service, ``ArnLike AWS:SourceArn``)."""
    from moto.awslambda.utils import get_backend
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target_arn)
    try:
        fn = get_backend(arn.account, arn.region).get_function(target_arn)
    except Exception:  # noqa: BLE001 - missing function: a delivery failure LocalCloud records (RESOURCE_NOT_FOUND)
        return False, None
    statements = list(getattr(fn.policy, "statements", []) or [])
    return True, (json.dumps({"Version": "2012-10-17", "Statement": statements}) if statements else None)


def _queue_or_topic_policy(arn, target_arn: str) -> tuple[str | None, str | None, str]:
    """(resource policy, KMS key id, action) of the SQS queue / SNS topic `arn` names (None, None when missing)."""
    if arn.service == "lambda":  # a function's resource-based policy; no key on the invocation path
        return _function_policy(target_arn)[1], None, "lambda:InvokeFunction"
    if arn.service == "sqs":
        from moto.sqs.models import sqs_backends

        queue = sqs_backends[arn.account][arn.region].queues.get(arn.resource_id)
        policy, key = (queue.policy, queue.kms_master_key_id) if queue is not None else (None, None)
        action = "sqs:SendMessage"
    else:
        from moto.sns.models import sns_backends

        topic = sns_backends[arn.account][arn.region].topics.get(target_arn)
        policy, key = (topic.policy, topic.kms_master_key_id) if topic is not None else (None, None)
        action = "sns:Publish"
    return policy, key or None, action


def _events_authorized(rule, target_arn: str):
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target_arn)
    policy, key, action = _queue_or_topic_policy(arn, target_arn)
    return authorize_delivery(account=arn.account, region=arn.region, service="events.amazonaws.com", action=action,
                              resource_arn=target_arn, resource_policy=policy, kms_key_id=key, source_arn=rule.arn,
                              source_account=rule.account_id)


def _eventbridge_may_deliver(rule, target: dict, arn, event: dict) -> bool:
    """Does the target's resource policy (queue / topic policy, or the function's resource-based policy: Lambda DG
    "Using resource-based policies in Lambda", EventBridge User Guide "Amazon EventBridge permissions" for Lambda
    targets: AWS::Lambda::Permission / AddPermission for events.amazonaws.com) and the queue's / topic's KMS key
    policy let events.amazonaws.com deliver for this rule (aws:SourceArn = the rule's ARN)? If not, record a
    FailedInvocations datapoint and the refusal, and send the event to the target's dead-letter queue if it has one
    (and that queue lets EventBridge in), as AWS does
    (EventBridge User Guide: "Monitoring Amazon EventBridge" for FailedInvocations / InvocationsSentToDlq; "Using
    resource-based policies for Amazon EventBridge": SQS and SNS targets need a resource policy; "Using dead-letter
    queues to process undelivered events": errors from missing permissions are not retried and go to the DLQ at once,
    with message attributes RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE)."""
    if arn.service == "lambda" and not _function_policy(target["Arn"])[0]:
        return True  # no such function: LocalCloud sends the event to the target's DLQ (RESOURCE_NOT_FOUND)
    check = _events_authorized(rule, target["Arn"])
    if check.allowed:
        return True
    from moto.cloudwatch.models import cloudwatch_backends

    log.warning("EventBridge rule %s: delivery to %s refused: %s", rule.name, target["Arn"], check.reason)
    EVENTBRIDGE_FAILED_INVOCATIONS.append((rule.arn, target["Arn"], check.reason))
    metrics = ["FailedInvocations"]
    dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
    if dlq and _events_authorized(rule, dlq).allowed:
        from moto.sqs.models import sqs_backends
        from moto.utilities.arns import parse_arn

        d = parse_arn(dlq)

        def attr(value: str) -> dict:
            return {"DataType": "String", "StringValue": value}

        sqs_backends[d.account][d.region].send_message(
            queue_name=d.resource_id, message_body=json.dumps(event),
            message_attributes={"RULE_ARN": attr(rule.arn), "TARGET_ARN": attr(target["Arn"]),
                                "ERROR_CODE": attr("NO_PERMISSIONS"), "ERROR_MESSAGE": attr(check.reason[:1000])})
        metrics.append("InvocationsSentToDlq")
    cloudwatch_backends[rule.account_id][rule.region_name].put_metric_data("AWS/Events", [{
        "MetricName": name, "Dimensions": [{"Name": "RuleName", "Value": rule.name}], "Value": 1.0,
        "Unit": "Count", "Timestamp": CLOCK.utcnow_naive()} for name in metrics])  # naive UTC, as moto stores them
    return False


def put_event(account_id: str, region_name: str, event: dict, bus_name: str = "default") -> None:
    """Route one fully formed event (AWS shape) through the bus's rules."""
    from moto.events.models import events_backends

    backend = events_backends[account_id][region_name]
    bus = backend.event_buses.get(bus_name)
    if bus is None:
        return
    for rule in list(bus.rules.values()):
        rule.send_to_targets(copy.deepcopy(event))  # patched: see patch_eventbridge_targets
