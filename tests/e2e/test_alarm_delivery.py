"""End to end in the local cloud: alarm notifications reach the alert topic as AWS would let them (issue 11 items 1,
7, 8; issue 12 item 1). The local cloud evaluates the deployed topic and key policies for cloudwatch.amazonaws.com
and events.amazonaws.com, so a topic policy without the CloudWatch statement would deliver nothing here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# datasets without a config in processing/configs/: only the Metrics Insights alarms watch them
CLEAN_DATASET, FAILING_DATASET = "clean-ds", "other-ds"


def _bodies(cloud, since: int = 0) -> list[dict]:
    return [json.loads(m["Message"]) for m in cloud.sns_messages(cloud.outputs["AlertTopicArn"])[since:]]


def _run(cloud, key: str, body: bytes) -> list[dict]:
    before = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
    cloud.s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key=key, Body=body)
    cloud.run_until_idle()
    return [j for j in cloud.processing_jobs() if j["ProcessingJobName"] not in before]


def _alarms(cloud) -> dict[str, dict]:
    out = {}
    for page in cloud.cloudwatch.get_paginator("describe_alarms").paginate():
        out.update({a["AlarmName"]: a for a in page["MetricAlarms"]})
    return out


def test_deploy_and_a_clean_batch_send_no_message(cloud, tmp_path):
    # the deploy's first evaluation moved the alarms from INSUFFICIENT_DATA to OK (this used to send 17+ messages)
    assert any(t.old_state == "INSUFFICIENT_DATA" and t.new_state == "OK" for t in cloud.alarm_transitions)
    # ... and no alarm has an action for it (delivered or refused: nothing is even attempted)
    assert [name for name, a in _alarms(cloud).items() if a.get("OKActions") or a.get("InsufficientDataActions")] == []
    n = len(cloud.sns_messages(cloud.outputs["AlertTopicArn"]))
    attempts = len(cloud.alarm_history())
    sample = tmp_path / "clean.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "500", "--out", str(sample)], check=True,
                   cwd=str(REPO))
    (job,) = _run(cloud, f"input/{CLEAN_DATASET}/clean.csv", sample.read_bytes())
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert _bodies(cloud, n) == []  # a clean batch: nothing to say
    assert len(cloud.alarm_history()) == attempts
    # and no INSUFFICIENT_DATA -> OK notification was ever sent, by the deploy or since
    assert not [b for b in _bodies(cloud) if b.get("OldStateValue") == "INSUFFICIENT_DATA"
                and b.get("NewStateValue") == "OK"]


def test_the_deployed_topic_policy_lets_this_stacks_alarms_publish(cloud):
    from localcloud.iam_eval import authorize_delivery

    topic = cloud.outputs["AlertTopicArn"]
    attrs = cloud.sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    alarm_arn = next(iter(_alarms(cloud).values()))["AlarmArn"]
    common = {"account": cloud.account, "region": cloud.region, "service": "cloudwatch.amazonaws.com",
              "action": "sns:Publish", "resource_arn": topic, "resource_policy": attrs["Policy"],
              "kms_key_id": attrs.get("KmsMasterKeyId")}
    assert attrs.get("KmsMasterKeyId"), "the alert topic is KMS-encrypted: its key policy is evaluated too"
    check = authorize_delivery(source_arn=alarm_arn, **common)
    assert check.allowed, check.reason
    # scoped: another stack's alarm (or another account's) may not use the topic
    foreign = alarm_arn.rsplit(":", 1)[0] + ":OtherStack_SomeAlarm"
    assert not authorize_delivery(source_arn=foreign, **common).allowed
    # it is the deployed document (not SNS's default policy), and its CloudWatch statement is what allows:
    # without it (today's main: only the TLS deny) CloudWatch could not publish
    doc = json.loads(attrs["Policy"])
    assert any(st.get("Sid") == "AllowPublishThroughSSLOnly" for st in doc["Statement"])
    without = dict(doc, Statement=[st for st in doc["Statement"]
                                   if st.get("Principal") != {"Service": "cloudwatch.amazonaws.com"}])
    refused = authorize_delivery(source_arn=alarm_arn, **dict(common, resource_policy=json.dumps(without)))
    assert not refused.allowed and "no resource-based policy allows" in refused.reason


def test_a_dataset_without_config_alarms_once_and_recovers_once(cloud):
    from localcloud import alarms

    topic = cloud.outputs["AlertTopicArn"]
    n = len(cloud.sns_messages(topic))
    (job,) = _run(cloud, f"input/{FAILING_DATASET}/missing-columns.csv", b"foo,bar\n1,2\n")
    assert job["ProcessingJobStatus"] == "Failed"
    (name,) = [a for a in _alarms(cloud) if a.endswith("_OtherDatasetsJobFailed")]
    assert _alarms(cloud)[name]["StateValue"] == "ALARM"
    bodies = _bodies(cloud, n)
    # one message per problem: the alarm's notification (delivered: the topic policy allows CloudWatch) and the
    # metrics Lambda's job-failed message naming the dataset
    assert [b["AlarmName"] for b in bodies if "AlarmName" in b] == [name]
    assert [b["dataset"] for b in bodies if b.get("event") == "job-failed"] == [FAILING_DATASET]
    assert [h["HistorySummary"] for h in cloud.alarm_history(name)] == [f"Successfully executed action {topic}"]

    # later, with no new failure: the datapoint leaves the evaluation range (N + 2 periods) -> ALARM -> OK, one
    # recovery message through the EventBridge rule (CloudWatch's state-change event, published as is)
    n = len(cloud.sns_messages(topic))
    later = cloud.clock.now() + 3 * 300  # the local cloud's simulated clock
    transitions = alarms.evaluate_all(cloud.cloudwatch, cloud.sns, now=later, publish=False)
    assert (name, "ALARM", "OK") in [(t.alarm_name, t.old_state, t.new_state) for t in transitions]
    recovered = [b for b in _bodies(cloud, n) if b.get("detail-type") == "CloudWatch Alarm State Change"]
    ours = [b for b in recovered if b["detail"]["alarmName"] == name]
    assert len(ours) == 1
    assert (ours[0]["detail"]["previousState"]["value"], ours[0]["detail"]["state"]["value"]) == ("ALARM", "OK")
    assert cloud.eventbridge_failed_invocations() == []
    # nothing else on the topic: OK transitions of alarms that were not in ALARM send nothing
    assert all(b.get("detail-type") == "CloudWatch Alarm State Change" for b in _bodies(cloud, n))
    # back to the clock's present (the datapoint is still in range there): leave the alarms as the next test expects
    cloud.run_until_idle()
