"""The local cloud authorizes service deliveries as AWS does (issue 12 item 1): alarm actions -> SNS as
cloudwatch.amazonaws.com, EventBridge targets -> SQS/SNS as events.amazonaws.com, each against the destination's
resource policy and its KMS key policy; refusals are dropped and recorded where AWS records them."""
from __future__ import annotations

import json
import re

import boto3
import pytest

from localcloud import moto_patches
from localcloud.server import ACCOUNT_ID, REGION, MotoServer

ALARM_ARN_PATTERN = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:Stack_*"


@pytest.fixture(scope="module")
def server():
    with MotoServer() as srv:
        yield srv


@pytest.fixture()
def aws(server):
    server.reset()
    moto_patches.ALARM_HISTORY.clear()
    moto_patches.EVENTBRIDGE_FAILED_INVOCATIONS.clear()

    def client(name):
        return boto3.client(name, endpoint_url=server.endpoint, region_name=REGION,
                            aws_access_key_id="t", aws_secret_access_key="t")
    return client


def _sent(topic_arn):
    from moto.sns.models import sns_backends

    return [json.loads(m[1]) for m in sns_backends[ACCOUNT_ID][REGION].topics[topic_arn].sent_notifications]


def _tls_deny(resource):
    return {"Sid": "AllowPublishThroughSSLOnly", "Effect": "Deny", "Principal": "*", "Action": "sns:Publish",
            "Resource": resource, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def _cloudwatch_allow(resource, action="sns:Publish"):
    return {"Sid": "AllowCloudWatchAlarmsToPublish", "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": action, "Resource": resource,
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
                          "ArnLike": {"aws:SourceArn": ALARM_ARN_PATTERN}}}


def _root(account=ACCOUNT_ID):
    return {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"}


def _topic(aws, statements, key_statements=None):
    sns = aws("sns")
    attrs = {}
    if key_statements is not None:
        key = aws("kms").create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": key_statements}))
        attrs["KmsMasterKeyId"] = key["KeyMetadata"]["Arn"]
    arn = sns.create_topic(Name="alerts", Attributes=attrs)["TopicArn"]
    sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy",
                             AttributeValue=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return arn


def _alarm(aws, topic, name="Stack_DefaultJobFailed"):
    aws("cloudwatch").put_metric_alarm(
        AlarmName=name, Namespace="NS", MetricName="JobFailed", Statistic="Maximum", Period=300,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[topic])
    aws("cloudwatch").set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="bad batch")


def test_alarm_to_a_topic_with_only_the_tls_deny_delivers_nothing_and_records_the_failed_action(aws):
    # what enforce_ssl=True alone deploys (today's main): the topic policy replaces SNS's default one
    topic = _topic(aws, [_tls_deny(f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:alerts")])
    _alarm(aws, topic)
    assert _sent(topic) == []
    (item,) = moto_patches.ALARM_HISTORY
    assert item["HistoryItemType"] == "Action"
    assert item["HistorySummary"] == f"Failed to execute action {topic}"
    data = json.loads(item["HistoryData"])
    assert data["actionState"] == "Failed"
    assert "not authorized to perform: SNS:Publish" in data["error"] and "no resource-based policy" in data["error"]


def test_alarm_to_a_topic_whose_policy_allows_cloudwatch_delivers(aws):
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:alerts"
    topic = _topic(aws, [_tls_deny(arn), _cloudwatch_allow(arn)])
    _alarm(aws, topic)
    assert [m["NewStateValue"] for m in _sent(topic)] == ["ALARM"]
    assert moto_patches.ALARM_HISTORY[-1]["HistorySummary"] == f"Successfully executed action {topic}"


def test_the_allow_is_scoped_to_the_stacks_alarms(aws):
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:alerts"
    topic = _topic(aws, [_tls_deny(arn), _cloudwatch_allow(arn)])
    _alarm(aws, topic, name="SomeoneElses_Alarm")
    assert _sent(topic) == []
    assert moto_patches.ALARM_HISTORY[-1]["HistorySummary"].startswith("Failed to execute action")


@pytest.mark.parametrize("key_allows,delivered", [(False, False), (True, True)])
def test_the_topic_key_policy_must_let_cloudwatch_use_the_key(aws, key_allows, delivered):
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:alerts"
    key_statements = [_root()] + ([_cloudwatch_allow("*", ["kms:Decrypt", "kms:GenerateDataKey*"])] if key_allows
                                  else [])
    topic = _topic(aws, [_tls_deny(arn), _cloudwatch_allow(arn)], key_statements)
    _alarm(aws, topic)
    assert bool(_sent(topic)) is delivered
    data = json.loads(moto_patches.ALARM_HISTORY[-1]["HistoryData"])
    assert data["actionState"] == ("Succeeded" if delivered else "Failed")
    if not delivered:
        assert "kms:GenerateDataKey" in data["error"]


def _queue_with_key(aws, key_allows_events: bool, key_condition: dict | None = None):
    rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/r"
    events_stmt = {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                   "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
                   **({"Condition": key_condition} if key_condition else {})}
    key = aws("kms").create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [_root()] + (
        [events_stmt] if key_allows_events else [])}))["KeyMetadata"]["Arn"]
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName="q", Attributes={"KmsMasterKeyId": key})["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": qarn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
    events = aws("events")
    events.put_rule(Name="r", EventPattern=json.dumps({"source": ["my.app"]}))
    events.put_targets(Rule="r", Targets=[{"Id": "1", "Arn": qarn}])
    events.put_events(Entries=[{"Source": "my.app", "DetailType": "x", "Detail": "{}"}])
    return url, qarn, rule_arn


def test_eventbridge_to_a_queue_whose_cmk_refuses_events_delivers_nothing_and_counts_failed_invocations(aws):
    url, qarn, rule_arn = _queue_with_key(aws, key_allows_events=False)
    assert aws("sqs").receive_message(QueueUrl=url).get("Messages", []) == []
    ((rule, target, reason),) = moto_patches.EVENTBRIDGE_FAILED_INVOCATIONS
    assert (rule, target) == (rule_arn, qarn) and "kms:GenerateDataKey" in reason
    stats = aws("cloudwatch").list_metrics(Namespace="AWS/Events", MetricName="FailedInvocations")["Metrics"]
    assert stats and stats[0]["Dimensions"] == [{"Name": "RuleName", "Value": "r"}]


def test_eventbridge_to_a_queue_whose_cmk_allows_events_delivers(aws):
    url, _, _ = _queue_with_key(aws, key_allows_events=True)
    assert len(aws("sqs").receive_message(QueueUrl=url).get("Messages", [])) == 1
    assert moto_patches.EVENTBRIDGE_FAILED_INVOCATIONS == []


def test_alarm_state_changes_reach_eventbridge_in_the_documented_shape(aws):
    # a recovery rule like the stack's: ALARM -> OK only
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:alerts"
    rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/recovered"
    topic = _topic(aws, [_tls_deny(arn), _cloudwatch_allow(arn), {
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish", "Resource": arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}, "StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}}])
    events = aws("events")
    events.put_rule(Name="recovered", EventPattern=json.dumps({
        "source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": "Stack_"}], "previousState": {"value": ["ALARM"]},
                   "state": {"value": ["OK"]}}}))
    events.put_targets(Rule="recovered", Targets=[{"Id": "1", "Arn": topic}])
    cw = aws("cloudwatch")
    cw.put_metric_alarm(AlarmName="Stack_A", Namespace="NS", MetricName="M", Statistic="Maximum", Period=300,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
                        AlarmActions=[topic], AlarmDescription="d")
    cw.set_alarm_state(AlarmName="Stack_A", StateValue="OK", StateReason="deploy")  # INSUFFICIENT_DATA -> OK
    assert _sent(topic) == []
    cw.set_alarm_state(AlarmName="Stack_A", StateValue="ALARM", StateReason="bad")
    cw.set_alarm_state(AlarmName="Stack_A", StateValue="OK", StateReason="recovered")
    alarm_msg, event = _sent(topic)
    assert alarm_msg["NewStateValue"] == "ALARM"
    assert (event["source"], event["detail-type"]) == ("aws.cloudwatch", "CloudWatch Alarm State Change")
    assert event["resources"] == [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:Stack_A"]
    assert (event["account"], event["region"]) == (ACCOUNT_ID, REGION)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", event["detail"]["state"]["timestamp"])
    d = event["detail"]
    assert d["alarmName"] == "Stack_A"
    assert (d["previousState"]["value"], d["state"]["value"], d["state"]["reason"]) == ("ALARM", "OK", "recovered")
    assert d["configuration"]["description"] == "d"
    (metric,) = d["configuration"]["metrics"]
    assert metric["metricStat"]["metric"] == {"namespace": "NS", "name": "M", "dimensions": {}}


def test_a_refused_eventbridge_delivery_goes_to_the_targets_dead_letter_queue(aws):
    # EventBridge UG "Using dead-letter queues": permission errors are not retried; the event goes to the target's DLQ
    sqs, events = aws("sqs"), aws("events")
    rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/r"
    target_url = sqs.create_queue(QueueName="no-policy")["QueueUrl"]  # no queue policy: refused
    target = sqs.get_queue_attributes(QueueUrl=target_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    dlq_url = sqs.create_queue(QueueName="rule-dlq")["QueueUrl"]
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": dlq, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
    events.put_rule(Name="r", EventPattern=json.dumps({"source": ["my.app"]}))
    events.put_targets(Rule="r", Targets=[{"Id": "1", "Arn": target, "DeadLetterConfig": {"Arn": dlq}}])
    events.put_events(Entries=[{"Source": "my.app", "DetailType": "x", "Detail": json.dumps({"k": 1})}])
    assert sqs.receive_message(QueueUrl=target_url).get("Messages", []) == []
    (msg,) = sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(msg["Body"])["detail"] == {"k": 1}
    attrs = {k: v["StringValue"] for k, v in msg["MessageAttributes"].items()}
    assert (attrs["RULE_ARN"], attrs["TARGET_ARN"], attrs["ERROR_CODE"]) == (rule_arn, target, "NO_PERMISSIONS")
    assert "not authorized" in attrs["ERROR_MESSAGE"]
    names = {m["MetricName"] for m in aws("cloudwatch").list_metrics(Namespace="AWS/Events")["Metrics"]}
    assert names == {"FailedInvocations", "InvocationsSentToDlq"}
