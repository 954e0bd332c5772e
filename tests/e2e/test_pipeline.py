"""End to end in the local cloud: upload -> EventBridge -> SQS -> trigger Lambda -> processing job ->
state-change event -> metrics Lambda -> CloudWatch -> alarms -> SNS. No timing assertions."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

QUALITY_METRICS = ("MissingRateAfter", "RejectedRate", "MalformedJsonRate", "DuplicateRate", "RowsOut")


def _sample_csv(tmp_path, rows=1000) -> bytes:
    out = tmp_path / "sample.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", str(rows), "--out", str(out)], check=True,
                   cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    return out.read_bytes()


def _jobs(cloud) -> dict[str, dict]:
    return {j["ProcessingJobName"]: j for j in cloud.processing_jobs()}


def _upload_and_run(cloud, key: str, body: bytes) -> tuple[dict, list[dict]]:
    before = set(_jobs(cloud))
    put = cloud.s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key=key, Body=body)
    cloud.run_until_idle()
    new = [j for name, j in _jobs(cloud).items() if name not in before]
    return put, new


def _alarms(cloud) -> list[dict]:
    out = []
    for page in cloud.cloudwatch.get_paginator("describe_alarms").paginate():
        out.extend(page["MetricAlarms"])
    return out


def _alarm_for(cloud, metric: str) -> dict:
    found = [a for a in _alarms(cloud) if a.get("MetricName") == metric]
    assert found, f"no alarm on {metric}"
    return found[0]


def _metric_values(cloud, name: str, dataset="default") -> list[float]:
    from datetime import timedelta

    now = cloud.clock.datetime()  # the local cloud's simulated clock (other e2e tests may have advanced it)
    resp = cloud.cloudwatch.get_metric_statistics(
        Namespace="DataQualityPipeline", MetricName=name, Dimensions=[{"Name": "Dataset", "Value": dataset}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=60, Statistics=["Maximum"])
    return [p["Maximum"] for p in resp["Datapoints"]]


def test_happy_path(cloud, tmp_path):
    _, new = _upload_and_run(cloud, "input/default/sample.csv", _sample_csv(tmp_path))
    assert len(new) == 1
    job = new[0]
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    prefix = f"output/default/{job['ProcessingJobName']}/"
    keys = [o["Key"] for o in cloud.s3.list_objects_v2(Bucket=cloud.outputs["DataBucketName"],
                                                       Prefix=prefix).get("Contents", [])]
    for folder in ("cleaned", "transformed", "statistics", "quality"):
        assert any(k.startswith(prefix + folder + "/") for k in keys), (folder, keys)
    # written by the metrics Lambda after the job finished: the _SUCCESS markers and the publish-once marker
    for marker in ("cleaned/_SUCCESS", "transformed/_SUCCESS", "quality/_metrics_published"):
        assert prefix + marker in keys, (marker, keys)
    assert _metric_values(cloud, "RowsIn") and _metric_values(cloud, "JobSucceeded")
    for metric in QUALITY_METRICS:
        assert _alarm_for(cloud, metric)["StateValue"] != "ALARM", metric
    # the stack's processing_mode (default auto) reaches the job, which keeps a 1,000-row file in memory
    assert job["Environment"]["PROCESSING_MODE"] == "auto"
    # max_rows_in_memory is unset by default: no variable, so the job derives its row budget from its memory
    assert "PROCESSING_MAX_ROWS_IN_MEMORY" not in job["Environment"]
    metrics = json.loads(cloud.s3.get_object(Bucket=cloud.outputs["DataBucketName"],
                                             Key=prefix + "quality/metrics.json")["Body"].read())
    assert metrics["mode"] == "memory" and metrics["summary"]["rows_in"] == 1000


def test_duplicate_event_starts_no_second_job(cloud):
    trigger = cloud.invocations(cloud.outputs.get("TriggerFunctionName", "Trigger"))
    assert trigger, "the trigger Lambda never ran"
    record_body = trigger[0].event["Records"][0]["body"]
    before = set(_jobs(cloud))
    n_inv = len(trigger)
    cloud.sqs.send_message(QueueUrl=cloud.outputs["TriggerQueueUrl"], MessageBody=record_body)
    cloud.run_until_idle()
    assert len(cloud.invocations(cloud.outputs.get("TriggerFunctionName", "Trigger"))) == n_inv + 1
    assert set(_jobs(cloud)) == before


def test_upload_outside_input_prefix_starts_nothing(cloud):
    n_inv = len(cloud.invocations(cloud.outputs.get("TriggerFunctionName", "Trigger")))
    _, new = _upload_and_run(cloud, "elsewhere/default/sample.csv", b"id,name\n1,a\n")
    assert new == []
    assert len(cloud.invocations(cloud.outputs.get("TriggerFunctionName", "Trigger"))) == n_inv


def test_key_with_spaces_and_non_ascii(cloud, tmp_path):
    # a literal "+" and "%20" in the key: the trigger resolves the event key against S3 (raw first, then decoded)
    _, new = _upload_and_run(cloud, "input/default/my data+ü é%20100.csv", _sample_csv(tmp_path, rows=300))
    assert len(new) == 1
    assert new[0]["ProcessingJobStatus"] == "Completed", new[0].get("FailureReason")
    assert new[0]["Environment"]["SOURCE_URI"].endswith("/input/default/my data+ü é%20100.csv")


def test_bad_quality_breaches_a_quality_alarm(cloud):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "name", "age", "salary", "profile", "department"])
    for i in range(200):
        ident = "" if i % 2 else str(i)  # half the rows lack the id -> rejected
        w.writerow([ident, f"n{i}", "", "", "not json", ""])
    _, new = _upload_and_run(cloud, "input/default/bad-quality.csv", buf.getvalue().encode())
    assert len(new) == 1 and new[0]["ProcessingJobStatus"] == "Completed", new[0].get("FailureReason")
    breached = [m for m in QUALITY_METRICS if _alarm_for(cloud, m)["StateValue"] == "ALARM"]
    assert breached, {m: _alarm_for(cloud, m)["StateValue"] for m in QUALITY_METRICS}


def test_failing_file_gives_failed_metric_alarm_sns_and_keeps_input(cloud):
    bucket, key = cloud.outputs["DataBucketName"], "input/default/missing-columns.csv"
    n_sns = len(cloud.sns_messages(cloud.outputs["AlertTopicArn"]))
    body = b"foo,bar\n1,2\n3,4\n"  # required columns missing -> the job fails
    put, new = _upload_and_run(cloud, key, body)
    assert len(new) == 1 and new[0]["ProcessingJobStatus"] == "Failed"
    assert new[0].get("FailureReason")
    assert 1.0 in _metric_values(cloud, "JobFailed")
    alarm = _alarm_for(cloud, "JobFailed")
    assert alarm["StateValue"] == "ALARM"
    msgs = cloud.sns_messages(cloud.outputs["AlertTopicArn"])[n_sns:]
    bodies = [json.loads(m["Message"]) for m in msgs]
    # the metrics Lambda's own message for this job (sent whatever the alarm's state was): exactly one
    job_name = new[0]["ProcessingJobName"]
    [failed] = [b for b in bodies if b.get("event") == "job-failed" and b.get("job_name") == job_name]
    assert failed["input"] == f"s3://{bucket}/{key}" and failed["input_version_id"] == put["VersionId"]
    assert failed["dataset"] == "default" and failed["failure_reason"] == new[0]["FailureReason"]
    # the container's message (ExitMessage: "ErrorClass: one line"), read with DescribeProcessingJob because the
    # state-change event, like AWS's sample, carries neither ExitMessage nor Environment (issue 11 item 4)
    assert failed["exit_message"] == new[0]["ExitMessage"]
    assert failed["exit_message"].startswith("MissingColumnsError: ") and "{" not in failed["exit_message"]
    assert failed["input_from"] == "describe-environment"
    assert [b for b in bodies if b.get("event") == "job-failed"] == [failed]
    assert all(b.get("event") != "batch-quarantined" for b in bodies)
    assert any(b.get("AlarmName") == alarm["AlarmName"] and b.get("NewStateValue") == "ALARM" for b in bodies)
    head = cloud.s3.head_object(Bucket=bucket, Key=key)
    assert head["VersionId"] == put["VersionId"]
    assert cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    versions = cloud.s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    assert [v["VersionId"] for v in versions if v["Key"] == key] == [put["VersionId"]]
