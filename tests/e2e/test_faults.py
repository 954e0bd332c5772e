"""Failure paths of the deployed stack in the local cloud, on its simulated clock (issue 12, "Done when"):

* a job state-change event the metrics Lambda can never process (every PutMetricData is refused) is retried by
  Lambda's asynchronous invocation (2 retries, 1 and 2 minutes apart), then lands in the function's dead-letter queue;
  the MetricsDlqNotEmpty alarm (AWS/SQS ApproximateNumberOfMessagesVisible) and the metrics function's Errors alarm
  (AWS/Lambda Errors) notify the alert topic;
* a ResourceLimitExceeded storm longer than the trigger's retry budget (the processing-instance quota set to 0) ends
  in the trigger DLQ after exactly the visibility timeouts the trigger chose (trigger.batch.backoff_seconds) for each
  of the queue's maxReceiveCount receives; the TriggerDlqNotEmpty alarm notifies.

Both use the session cloud and restore what they change (fault, quota, DLQ contents). No timed assertions: simulated
durations are checked against the schedule, bounded by the wall time the test took.
"""

from __future__ import annotations

import importlib
import itertools
import json
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SMALL_CSV = (b"id,name,age,salary,profile,department\n"
             + b"".join(f'{i},n{i},{20 + i % 40},{1000 + i},"{{""a"": {i}}}",Sales\n'.encode() for i in range(50)))


def _trigger_handler():
    """The trigger's batch logic (``trigger.batch``: ``backoff_seconds``), imported as the Lambda asset lays it out."""
    for path in (str(REPO), str(REPO / "infra" / "lambdas")):
        if path not in sys.path:
            sys.path.insert(0, path)
    return importlib.import_module("trigger.batch")


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _alarm(cloud, namespace: str, metric: str, dimension: str, value: str) -> dict:
    for page in cloud.cloudwatch.get_paginator("describe_alarms").paginate():
        for alarm in page["MetricAlarms"]:
            dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
            if alarm.get("Namespace") == namespace and alarm.get("MetricName") == metric \
                    and dims.get(dimension) == value:
                return alarm
    raise AssertionError(f"no alarm on {namespace} {metric} {dimension}={value}")


def _receive_all(cloud, url: str) -> list[dict]:
    out: list[dict] = []
    while True:
        batch = cloud.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                          VisibilityTimeout=0).get("Messages", [])
        new = [m for m in batch if m["MessageId"] not in {o["MessageId"] for o in out}]
        if not new:
            return out
        out.extend(new)


def _alarm_notifications(cloud, alarm_name: str, since: int) -> list[dict]:
    bodies = []
    for msg in cloud.sns_messages(cloud.outputs["AlertTopicArn"])[since:]:
        try:
            bodies.append(json.loads(msg["Message"]))
        except ValueError:
            continue
    return [b for b in bodies if b.get("AlarmName") == alarm_name]


def _settle_dlq(cloud, url: str) -> None:
    """Empty a DLQ and let its alarm see it (other e2e tests start from a quiet stack)."""
    cloud.sqs.purge_queue(QueueUrl=url)
    cloud.advance(300)


def test_metrics_event_that_always_fails_lands_in_the_function_dlq_and_alarms(cloud):
    dlq_url, function = cloud.outputs["MetricsDlqUrl"], cloud.outputs["MetricsFunctionName"]
    dlq_alarm = _alarm(cloud, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", _queue_name(dlq_url))
    errors_alarm = _alarm(cloud, "AWS/Lambda", "Errors", "FunctionName", function)
    assert _receive_all(cloud, dlq_url) == []
    n_sns, n_runs = len(cloud.sns_messages(cloud.outputs["AlertTopicArn"])), len(cloud.invocations(function))
    before = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
    denied = ("User: arn:aws:sts::123456789012:assumed-role/metrics/fn is not authorized to perform: "
              "cloudwatch:PutMetricData because no identity-based policy allows the cloudwatch:PutMetricData action")
    try:
        with cloud.faults.injected(service="cloudwatch", operation="PutMetricData", error_code="AccessDenied",
                                   http_status=403, message=denied) as fault:
            cloud.s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key="input/default/faults-metrics.csv",
                                Body=SMALL_CSV)
            wall = time.monotonic()
            cloud.run_until_idle()
            wall = time.monotonic() - wall
        [job] = [j for j in cloud.processing_jobs() if j["ProcessingJobName"] not in before]
        assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
        runs = cloud.invocations(function)[n_runs:]
        # Lambda's asynchronous invocation: the first attempt and MaximumRetryAttempts (2) retries, all refused
        assert len(runs) == 3 and all(not r.ok for r in runs) and fault.hits >= 3
        assert all(r.event["detail"]["ProcessingJobName"] == job["ProcessingJobName"] for r in runs)
        gaps = [b.started_at - (a.started_at + a.duration) for a, b in itertools.pairwise(runs)]
        assert 60 <= gaps[0] <= 60 + wall and 120 <= gaps[1] <= 120 + wall  # 1 min, then 2 min
        [dead] = _receive_all(cloud, dlq_url)
        event = json.loads(dead["Body"])  # the event itself, as EventBridge delivered it
        assert event["detail-type"] == "SageMaker Processing Job State Change"
        assert event["detail"]["ProcessingJobName"] == job["ProcessingJobName"]
        attrs = dead["MessageAttributes"]
        assert attrs["ErrorCode"] == {"StringValue": "200", "DataType": "Number"}
        assert "AccessDenied" in attrs["ErrorMessage"]["StringValue"]
        assert attrs["RequestID"]["StringValue"]
        # the alarms read AWS/SQS and AWS/Lambda datapoints; CloudWatch evaluates them each minute
        cloud.advance(300)
        states = cloud.alarm_states()
        assert states[dlq_alarm["AlarmName"]] == "ALARM"
        assert states[errors_alarm["AlarmName"]] == "ALARM"
        [note] = [b for b in _alarm_notifications(cloud, dlq_alarm["AlarmName"], n_sns)
                  if b["NewStateValue"] == "ALARM"]
        assert note["Trigger"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert note["Trigger"]["Namespace"] == "AWS/SQS"
        assert any(b["NewStateValue"] == "ALARM" for b in _alarm_notifications(cloud, errors_alarm["AlarmName"], n_sns))
    finally:
        _settle_dlq(cloud, dlq_url)


def test_resource_limit_storm_ends_in_the_trigger_dlq_after_the_trigger_backoff(cloud):
    handler = _trigger_handler()
    queue_url, dlq_url = cloud.outputs["TriggerQueueUrl"], cloud.outputs["TriggerDlqUrl"]
    trigger = cloud.outputs["TriggerFunctionName"]
    redrive = json.loads(cloud.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
                         ["Attributes"]["RedrivePolicy"])
    max_receive = int(redrive["maxReceiveCount"])  # as deployed (infra/processing_trigger.py MAX_RECEIVE_COUNT)
    instance_type = cloud.lambda_.get_function_configuration(FunctionName=trigger)["Environment"]["Variables"][
        "INSTANCE_TYPE"]
    dlq_alarm = _alarm(cloud, "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", _queue_name(dlq_url))
    assert _receive_all(cloud, dlq_url) == []
    n_sns, n_runs = len(cloud.sns_messages(cloud.outputs["AlertTopicArn"])), len(cloud.invocations(trigger))
    key = "input/default/faults-storm.csv"
    previous = cloud.set_job_quota(instance_type, 0)  # new accounts often have 0 (FACTS.md section 7)
    try:
        sim_start, wall = cloud.clock.now(), time.monotonic()
        cloud.s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key=key, Body=SMALL_CSV)
        cloud.run_until_idle()
        sim_elapsed, wall = cloud.clock.now() - sim_start, time.monotonic() - wall
        retries = []
        for run in cloud.invocations(trigger)[n_runs:]:
            assert run.ok, run.error
            for line in run.logs.splitlines():
                if line.startswith("{") and json.loads(line).get("decision") == "retry":
                    retries.append(json.loads(line))
        # one retry decision per receive, each with the visibility timeout of the trigger's own backoff schedule
        assert [r["receive_count"] for r in retries] == list(range(1, max_receive + 1))
        assert all(r["error_code"] == "ResourceLimitExceeded" and "visibility_error" not in r for r in retries)
        assert "for processing job usage' is 0 Instances" in retries[0]["error"]
        for r in retries:
            n = r["receive_count"]
            assert handler.backoff_seconds(n, lambda: 0.0) <= r["visibility_timeout"] <= handler.backoff_seconds(
                n, lambda: 1.0), r
        waited = sum(r["visibility_timeout"] for r in retries)
        # the message reached the DLQ at the receive after the last timeout: simulated time = the sum of the
        # trigger's timeouts (plus the wall time the runs took), not the queue's own 360 s
        assert waited <= sim_elapsed <= waited + wall
        [dead] = _receive_all(cloud, dlq_url)
        assert json.loads(dead["Body"])["detail"]["object"]["key"] == key
        assert not [j for j in cloud.processing_jobs() if j["Environment"].get("SOURCE_URI", "").endswith(key)]
        cloud.advance(300)
        assert cloud.alarm_states()[dlq_alarm["AlarmName"]] == "ALARM"
        assert any(b["NewStateValue"] == "ALARM" for b in _alarm_notifications(cloud, dlq_alarm["AlarmName"], n_sns))
    finally:
        cloud.set_job_quota(instance_type, previous)
        _settle_dlq(cloud, dlq_url)


def test_burst_larger_than_the_quota_is_absorbed_by_the_trigger_retries(cloud):
    trigger = cloud.outputs["TriggerFunctionName"]
    instance_type = cloud.lambda_.get_function_configuration(FunctionName=trigger)["Environment"]["Variables"][
        "INSTANCE_TYPE"]
    n_runs = len(cloud.invocations(trigger))
    keys = [f"input/default/faults-burst-{i}.csv" for i in range(2)]
    previous = cloud.set_job_quota(instance_type, 1)  # one instance: the second job of the burst must wait
    try:
        for key in keys:
            cloud.s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key=key, Body=SMALL_CSV)
        cloud.run_until_idle()
    finally:
        cloud.set_job_quota(instance_type, previous)
    jobs = {key: [j for j in cloud.processing_jobs() if j["Environment"].get("SOURCE_URI", "").endswith(key)]
            for key in keys}
    assert all(len(found) == 1 and found[0]["ProcessingJobStatus"] == "Completed" for found in jobs.values()), jobs
    retries = [json.loads(line) for run in cloud.invocations(trigger)[n_runs:] for line in run.logs.splitlines()
               if line.startswith("{") and json.loads(line).get("decision") == "retry"]
    # the second create was refused while the first job held the only instance, then retried after the backoff
    assert retries and all(r["error_code"] == "ResourceLimitExceeded" for r in retries)
    assert "current utilization of 1 Instances" in retries[0]["error"]
    assert _receive_all(cloud, cloud.outputs["TriggerDlqUrl"]) == []
