"""CloudWatch alarms: start INSUFFICIENT_DATA; a state change goes to EventBridge and, if the topic and key policies
let cloudwatch.amazonaws.com publish (:mod:`localcloud.iam_eval`), to the alarm's SNS actions.

:func:`patch_alarm_states`: moto starts alarms OK, sends state changes nowhere and authorizes no action; each action's
outcome is in :data:`ALARM_HISTORY`.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from localcloud import alarms
from localcloud.clock import CLOCK
from localcloud.iam_eval import authorize_delivery
from localcloud.patches.events import event_time, put_event
from localcloud.patches.registry import once, replace

log = logging.getLogger("localcloud")

# Alarm history items of kind "Action" (DescribeAlarmHistory shape; moto has no alarm history API): one per alarm
# action CloudWatch executed or failed to execute (e.g. "Failed to execute action arn:aws:sns:..." when the topic or
# key policy does not let cloudwatch.amazonaws.com publish).
ALARM_HISTORY: list[dict] = []


# --------------------------------------------------------------------------- CloudWatch alarms

def _describe_alarm(alarm) -> dict:
    """A moto ``Alarm`` in DescribeAlarms shape (what :func:`localcloud.alarms.notification` reads)."""

    def query(q) -> dict:
        out = {"Id": q.id, "Label": q.label, "ReturnData": q.return_data, "Expression": q.expression,
               "Period": q.period}
        if q.metric_stat:
            m = q.metric_stat.metric
            out["MetricStat"] = {"Metric": {"Namespace": m.namespace, "MetricName": m.metric_name,
                                            "Dimensions": [{"Name": d.name, "Value": d.value} for d in m.dimensions]},
                                 "Period": q.metric_stat.period, "Stat": q.metric_stat.stat,
                                 "Unit": q.metric_stat.unit}
        return {k: v for k, v in out.items() if v is not None}

    return {
        "AlarmName": alarm.name, "AlarmArn": alarm.alarm_arn, "AlarmDescription": alarm.description,
        "AlarmConfigurationUpdatedTimestamp": alarm.configuration_updated_timestamp,
        "ActionsEnabled": alarm.actions_enabled, "OKActions": alarm.ok_actions or [],
        "AlarmActions": alarm.alarm_actions or [], "InsufficientDataActions": alarm.insufficient_data_actions or [],
        "MetricName": alarm.metric_name, "Namespace": alarm.namespace, "Statistic": alarm.statistic,
        "ExtendedStatistic": alarm.extended_statistic, "Unit": alarm.unit,
        "Dimensions": [{"Name": d.name, "Value": d.value} for d in alarm.dimensions],
        "Period": alarm.period, "EvaluationPeriods": alarm.evaluation_periods,
        "DatapointsToAlarm": alarm.datapoints_to_alarm, "ComparisonOperator": alarm.comparison_operator,
        "Threshold": alarm.threshold, "ThresholdMetricId": alarm.threshold_metric_id,
        "TreatMissingData": alarm.treat_missing_data,
        "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile,
        "Metrics": [query(q) for q in alarm.metric_data_queries or []],
    }


def _iso_ms(ts: Any) -> str:
    return alarms._iso_ms(ts) if isinstance(ts, datetime) else str(ts)


def alarm_state_change_event(desc: dict, previous: dict, alarm) -> dict:
    """The "CloudWatch Alarm State Change" event CloudWatch sends to EventBridge for a state change, in the shape of
    the CloudWatch User Guide's examples ("Alarm events and EventBridge": single-metric and metric-math/Metrics
    Insights alarms): ``detail.alarmName``, ``detail.state`` / ``detail.previousState`` (value, reason, reasonData,
    timestamp), ``detail.configuration`` (description, metrics)."""
    if desc.get("Metrics"):
        metrics = [{k: v for k, v in {"id": q.get("Id"), "expression": q.get("Expression"), "label": q.get("Label"),
                                       "returnData": q.get("ReturnData"), "period": q.get("Period")}.items()
                    if v is not None} for q in desc["Metrics"]]
    else:
        metrics = [{"id": str(uuid.uuid4()), "returnData": True, "metricStat": {
            "metric": {"namespace": desc.get("Namespace"), "name": desc.get("MetricName"),
                       "dimensions": {d["Name"]: d["Value"] for d in desc.get("Dimensions") or []}},
            "period": desc.get("Period"), "stat": desc.get("Statistic") or desc.get("ExtendedStatistic")}}]

    def state(value, reason, reason_data, ts):
        out = {"value": value, "reason": reason, "timestamp": _iso_ms(ts)}
        if reason_data and reason_data != "{}":
            out["reasonData"] = reason_data
        return out

    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": alarm.alarm_arn.split(":")[4],
        "time": event_time(alarm.state_updated_timestamp if alarm.state_updated_timestamp.tzinfo
                            else alarm.state_updated_timestamp.replace(tzinfo=UTC)),
        "region": alarm.region_name, "resources": [alarm.alarm_arn],
        "detail": {
            "alarmName": alarm.name,
            "state": state(alarm.state_value, alarm.state_reason, alarm.state_reason_data,
                           alarm.state_updated_timestamp),
            "previousState": state(previous["value"], previous["reason"], previous["reasonData"],
                                   previous["timestamp"]),
            "configuration": {"description": desc.get("AlarmDescription") or "", "metrics": metrics},
        },
    }


def _execute_sns_alarm_action(alarm, action: str, message: str, subject: str) -> None:
    """Publish an alarm notification as cloudwatch.amazonaws.com, if the topic and key policies let it; record the
    outcome as the alarm history item AWS writes ("Successfully executed action ..." / "Failed to execute action
    ...", HistoryItemType Action)."""
    from moto.sns.models import sns_backends
    from moto.utilities.arns import parse_arn


    arn = parse_arn(action)
    topic = sns_backends[arn.account][arn.region].topics.get(action)
    if topic is None:
        error = f"Topic {action} does not exist (SNS.NotFound)"
    else:
        check = authorize_delivery(account=arn.account, region=arn.region, service="cloudwatch.amazonaws.com",
                                   action="sns:Publish", resource_arn=action, resource_policy=topic.policy,
                                   kms_key_id=topic.kms_master_key_id or None, source_arn=alarm.alarm_arn,
                                   source_account=alarm.alarm_arn.split(":")[4])
        error = check.reason
    if not error:
        try:
            sns_backends[arn.account][arn.region].publish(message=message, arn=action, subject=subject)
        except Exception as exc:
            log.exception("alarm action %s failed", action)
            error = f"{type(exc).__name__}: {exc}"
    ok = not error
    if not ok:
        log.warning("alarm %s: failed to execute action %s: %s", alarm.name, action, error)
    ALARM_HISTORY.append({
        "AlarmName": alarm.name, "AlarmType": "MetricAlarm", "Timestamp": CLOCK.datetime(),
        "HistoryItemType": "Action",
        "HistorySummary": f"{'Successfully executed' if ok else 'Failed to execute'} action {action}",
        "HistoryData": json.dumps({"actionState": "Succeeded" if ok else "Failed",
                                   "stateUpdateTimestamp": _iso_ms(alarm.state_updated_timestamp),
                                   "notificationResource": action, **({} if ok else {"error": error})}),
    })


def patch_alarm_states() -> None:
    """Alarms start INSUFFICIENT_DATA; a state *change* publishes to the alarm's SNS actions."""
    if not once("alarm_states"):
        return
    from moto.cloudwatch.models import Alarm, CloudWatchBackend

    original_init = Alarm.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.state_value = "INSUFFICIENT_DATA"
        self.state_reason = "Unchecked: Initial alarm creation"

    original_put = CloudWatchBackend.put_metric_alarm

    def put_metric_alarm(self, name, *args, **kwargs):
        # PutMetricAlarm on an existing alarm keeps its state (as AWS does)
        old = self.alarms.get(name)
        alarm = original_put(self, name, *args, **kwargs)
        if old is not None:
            alarm.state_value = old.state_value
            alarm.state_reason = old.state_reason
            alarm.state_reason_data = old.state_reason_data
            alarm.state_updated_timestamp = old.state_updated_timestamp
        return alarm

    original_set = CloudWatchBackend.set_alarm_state

    def set_alarm_state(self, alarm_name, reason, reason_data, state_value):
        before = self.alarms.get(alarm_name)
        previous = None if before is None else {
            "value": before.state_value, "reason": before.state_reason, "reasonData": before.state_reason_data,
            "timestamp": before.state_updated_timestamp}
        original_set(self, alarm_name, reason, reason_data, state_value)
        alarm = self.alarms[alarm_name]
        old_state = previous["value"] if previous else None
        if old_state == state_value:
            return
        desc = _describe_alarm(alarm)
        # every state change goes to EventBridge, actions enabled or not ("Alarm events and EventBridge")
        if previous is not None:
            put_event(alarm.alarm_arn.split(":")[4], alarm.region_name, alarm_state_change_event(desc, previous, alarm))
        if not alarm.actions_enabled:
            return
        message = json.dumps(alarms.notification(desc, old_state=old_state, new_state=state_value,
                                                 reason=alarm.state_reason, when=alarm.state_updated_timestamp,
                                                 region=alarm.region_name))
        for action in alarms.action_topics(desc, state_value):
            _execute_sns_alarm_action(alarm, action, message, alarms.subject(state_value, alarm.name,
                                                                             alarm.region_name))

    replace(Alarm, "__init__", __init__)
    replace(CloudWatchBackend, "put_metric_alarm", put_metric_alarm)
    replace(CloudWatchBackend, "set_alarm_state", set_alarm_state)
