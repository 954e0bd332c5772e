"""The local cloud's clock, Lambda asynchronous invocation, AWS service metrics, fault injection, job quotas and
concurrency (issue 12 items 2-6). A LocalCloud without a CDK deploy: resources are made with boto3 (fast)."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
import zipfile
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from localcloud import moto_patches
from localcloud.cloud import LocalCloud
from localcloud.server import ACCOUNT_ID


@pytest.fixture(scope="module")
def base_cloud(tmp_path_factory):
    with LocalCloud(workdir=tmp_path_factory.mktemp("fidelity")) as c:
        yield c


@pytest.fixture()
def cloud(base_cloud):
    base_cloud.server.reset()
    moto_patches.ASYNC_INVOCATIONS.clear()
    moto_patches.EVENT_INVOKE_CONFIGS.clear()
    base_cloud._async_queue.clear()
    base_cloud.faults.clear()
    base_cloud.metrics.start()
    yield base_cloud
    base_cloud.faults.clear()
    moto_patches.JOB_QUOTAS.clear()


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", source)
    return buf.getvalue()


# what the functions here need (the local cloud authorizes event-source polling and DLQ/destination sends with the
# execution role, as Lambda does: localcloud/service_auth.py)
EXECUTION_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Resource": "*", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                  "sqs:GetQueueAttributes", "sqs:SendMessage", "sns:Publish"]}]}


def _role(cloud) -> str:
    iam = cloud.client("iam")
    try:
        return iam.get_role(RoleName="r")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        iam.put_role_policy(RoleName="r", PolicyName="execution", PolicyDocument=json.dumps(EXECUTION_POLICY))
        return arn


def _queue(cloud, name: str, **attributes) -> tuple[str, str]:
    url = cloud.sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
    arn = cloud.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _all_messages(cloud, url: str) -> list[dict]:
    return cloud.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                     AttributeNames=["All"]).get("Messages", [])


def _metric_sum(cloud, namespace: str, name: str, dims: dict[str, str], stat: str = "Sum") -> float | None:
    now = cloud.clock.datetime()
    points = cloud.cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName=name, Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=now - timedelta(hours=2), EndTime=now + timedelta(minutes=1), Period=7200, Statistics=[stat],
    )["Datapoints"]
    return max(p[stat] for p in points) if points else None


# --------------------------------------------------------------------------- clock + SQS visibility


def test_visibility_timeouts_run_on_the_simulated_clock(cloud):
    url, _ = _queue(cloud, "q", VisibilityTimeout=30)
    cloud.sqs.send_message(QueueUrl=url, MessageBody="m")
    [_msg] = cloud.sqs.receive_message(QueueUrl=url)["Messages"]
    assert cloud.sqs.receive_message(QueueUrl=url).get("Messages") is None  # in flight for 30 s
    cloud.clock.advance(31)
    [again] = cloud.sqs.receive_message(QueueUrl=url)["Messages"]
    cloud.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=3600)
    cloud.clock.advance(3599)
    assert cloud.sqs.receive_message(QueueUrl=url).get("Messages") is None
    cloud.clock.advance(2)
    assert cloud.sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "m"
    with pytest.raises(ValueError):
        cloud.clock.advance(-1)


FAIL_WITH_BACKOFF = """
import boto3, json
def handler(event, context):
    sqs = boto3.client("sqs")
    failures = []
    for r in event["Records"]:
        name = r["eventSourceARN"].split(":")[-1]
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=r["receiptHandle"], VisibilityTimeout=600)
        print(json.dumps({"receive_count": r["attributes"]["ApproximateReceiveCount"]}))
        failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
"""


def test_failed_sqs_record_waits_for_the_visibility_timeout_the_function_set(cloud):
    dlq_url, dlq_arn = _queue(cloud, "dlq")
    url, arn = _queue(cloud, "work", VisibilityTimeout=60,
                      RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}))
    cloud.lambda_.create_function(FunctionName="backoff", Runtime="python3.12", Role=_role(cloud),
                                  Handler="index.handler", Code={"ZipFile": _zip(FAIL_WITH_BACKOFF)}, Timeout=30)
    cloud.lambda_.create_event_source_mapping(EventSourceArn=arn, FunctionName="backoff", BatchSize=1,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    cloud.sqs.send_message(QueueUrl=url, MessageBody="never works")
    n_before = len(cloud.invocations("backoff"))
    sim_start, wall_start = cloud.clock.now(), time.monotonic()
    # without letting simulated time pass, the failed message stays invisible: one invocation only
    cloud.run_until_idle(max_horizon=None)
    assert len(cloud.invocations("backoff")) == n_before + 1
    assert _all_messages(cloud, dlq_url) == []
    totals = cloud.run_until_idle()
    sim_elapsed, wall = cloud.clock.now() - sim_start, time.monotonic() - wall_start
    runs = cloud.invocations("backoff")[n_before:]
    assert [json.loads(i.logs.strip().splitlines()[-1])["receive_count"] for i in runs] == ["1", "2", "3"]
    # the function's 600 s after each of the three receives (not the queue's 60 s), then the 4th receive moves it
    assert 1800 <= sim_elapsed <= 1800 + wall
    assert totals["clock_advanced"] > 1800 - wall
    [dead] = _all_messages(cloud, dlq_url)
    assert dead["Body"] == "never works"


# --------------------------------------------------------------------------- Lambda async invocation

ALWAYS_FAILS = "def handler(event, context):\n    raise RuntimeError('cannot publish ' + event['detail']['job'])\n"


def _async_function(cloud, name: str, **kwargs) -> str:
    fn = cloud.lambda_.create_function(FunctionName=name, Runtime="python3.12", Role=_role(cloud),
                                       Handler="index.handler", Code={"ZipFile": _zip(ALWAYS_FAILS)}, Timeout=10,
                                       **kwargs)
    events = cloud.events
    rule = events.put_rule(Name=f"to-{name}", EventPattern=json.dumps({"source": ["my.app"]}))["RuleArn"]
    events.put_targets(Rule=f"to-{name}", Targets=[{"Id": "t", "Arn": fn["FunctionArn"]}])
    cloud.lambda_.add_permission(FunctionName=name, StatementId="events", Action="lambda:InvokeFunction",
                                 Principal="events.amazonaws.com", SourceArn=rule)
    return fn["FunctionArn"]


def _put_event(cloud, job: str) -> None:
    resp = cloud.events.put_events(Entries=[{"Source": "my.app", "DetailType": "x",
                                             "Detail": json.dumps({"job": job})}])
    assert resp["FailedEntryCount"] == 0


def test_async_failure_retries_twice_then_lands_in_the_function_dlq(cloud):
    dlq_url, dlq_arn = _queue(cloud, "fn-dlq")
    _async_function(cloud, "metricsish", DeadLetterConfig={"TargetArn": dlq_arn})
    assert cloud.lambda_.get_function_configuration(FunctionName="metricsish")["DeadLetterConfig"] == {
        "TargetArn": dlq_arn}
    n_before = len(cloud.invocations("metricsish"))
    _put_event(cloud, "job-1")
    wall = time.monotonic()
    cloud.run_until_idle()
    wall = time.monotonic() - wall
    runs = cloud.invocations("metricsish")[n_before:]
    assert len(runs) == 3  # first attempt + MaximumRetryAttempts 2 (the default)
    # Lambda waits 1 minute after the first failure, 2 minutes after the second (simulated clock)
    gaps = [b.started_at - (a.started_at + a.duration) for a, b in itertools.pairwise(runs)]
    assert 60 <= gaps[0] <= 60 + wall and 120 <= gaps[1] <= 120 + wall
    [dead] = _all_messages(cloud, dlq_url)
    assert json.loads(dead["Body"])["detail"] == {"job": "job-1"}  # the event itself
    attrs = dead["MessageAttributes"]
    assert attrs["ErrorCode"] == {"StringValue": "200", "DataType": "Number"}
    assert attrs["ErrorMessage"]["StringValue"] == "cannot publish job-1"
    assert attrs["RequestID"]["StringValue"] == cloud.async_failures[-1].request_id
    # AWS/Lambda: 3 invocations, 3 errors
    dims = {"FunctionName": "metricsish"}
    assert _metric_sum(cloud, "AWS/Lambda", "Invocations", dims) == 3
    assert _metric_sum(cloud, "AWS/Lambda", "Errors", dims) == 3
    # AWS/SQS: the DLQ's visible count is sampled each simulated minute
    cloud.advance(120)
    assert _metric_sum(cloud, "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": "fn-dlq"},
                       "Maximum") == 1


def test_async_on_failure_destination_gets_the_invocation_record(cloud):
    dest_url, dest_arn = _queue(cloud, "on-failure")
    _async_function(cloud, "nodlq")
    cloud.lambda_.put_function_event_invoke_config(
        FunctionName="nodlq", MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": dest_arn}})
    n_before = len(cloud.invocations("nodlq"))
    _put_event(cloud, "job-2")
    cloud.run_until_idle()
    assert len(cloud.invocations("nodlq")) == n_before + 1
    [msg] = _all_messages(cloud, dest_url)
    record = json.loads(msg["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"]["detail"] == {"job": "job-2"}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorMessage"] == "cannot publish job-2"


def test_async_event_older_than_maximum_event_age_is_discarded(cloud):
    dest_url, dest_arn = _queue(cloud, "too-old")
    _async_function(cloud, "aged")
    cloud.lambda_.put_function_event_invoke_config(
        FunctionName="aged", MaximumRetryAttempts=2, MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": dest_arn}})
    n_before = len(cloud.invocations("aged"))
    _put_event(cloud, "job-3")
    cloud.run_until_idle()
    assert len(cloud.invocations("aged")) == n_before + 1  # the retry one minute later is past the 60 s age
    [msg] = _all_messages(cloud, dest_url)
    assert json.loads(msg["Body"])["requestContext"]["condition"] == "EventAgeExceeded"


# --------------------------------------------------------------------------- fault injection


def test_faults_reach_every_protocol_as_real_errors(cloud):
    cloud.s3.create_bucket(Bucket="fault-bucket")
    cloud.s3.put_object(Bucket="fault-bucket", Key="k", Body=b"x")
    url, _ = _queue(cloud, "fq")
    topic = cloud.sns.create_topic(Name="t")["TopicArn"]
    cases = [
        ("sagemaker", "ListProcessingJobs", "ThrottlingException", 400, lambda: cloud.sagemaker.list_processing_jobs()),
        ("sqs", "SendMessage", "KMS.AccessDeniedException", 400,
         lambda: cloud.sqs.send_message(QueueUrl=url, MessageBody="x")),
        ("sns", "Publish", "AuthorizationError", 403, lambda: cloud.sns.publish(TopicArn=topic, Message="x")),
        ("cloudwatch", "PutMetricData", "AccessDenied", 403,
         lambda: cloud.cloudwatch.put_metric_data(Namespace="N", MetricData=[{"MetricName": "m", "Value": 1}])),
        ("s3", "GetObject", "SlowDown", 503, lambda: cloud.s3.get_object(Bucket="fault-bucket", Key="k")),
        ("s3", "PutObject", "AccessDenied", 403,
         lambda: cloud.s3.put_object(Bucket="fault-bucket", Key="k2", Body=b"y")),
        ("lambda", "ListFunctions", "TooManyRequestsException", 429, lambda: cloud.lambda_.list_functions()),
    ]
    for service, operation, code, status, call in cases:
        with cloud.faults.injected(service=service, operation=operation, error_code=code, http_status=status,
                                   message=f"injected {code}") as fault, pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == code, (service, operation)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert err.value.response["Error"]["Message"] == f"injected {code}"
        assert fault.hits >= 1  # botocore retries throttling codes and 5xx: every attempt is a call
        call()  # fault removed: the same call passes
    # times=N: the next N calls fail
    fault = cloud.faults.add(service="sqs", operation="SendMessage", error_code="InvalidMessageContents", times=2)
    for _ in range(2):
        with pytest.raises(ClientError):
            cloud.sqs.send_message(QueueUrl=url, MessageBody="x")
    cloud.sqs.send_message(QueueUrl=url, MessageBody="x")
    assert fault.hits == 2 and fault.exhausted
    # HEAD has no body: the status code is all botocore gets (as from S3)
    with cloud.faults.injected(service="s3", operation="HeadObject", error_code="Forbidden", http_status=403):
        with pytest.raises(ClientError) as err:
            cloud.s3.head_object(Bucket="fault-bucket", Key="k")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    cloud.s3.head_object(Bucket="fault-bucket", Key="k")
    # other operations of the same service are untouched; a probability of 1 always fails
    with cloud.faults.injected(service="s3", operation="CopyObject", error_code="AccessDenied", http_status=403,
                               probability=1.0):
        cloud.s3.put_object(Bucket="fault-bucket", Key="k3", Body=b"z")
        with pytest.raises(ClientError):
            cloud.s3.copy_object(Bucket="fault-bucket", Key="k4", CopySource={"Bucket": "fault-bucket", "Key": "k"})
    assert cloud.faults.active == []


# --------------------------------------------------------------------------- jobs: quota, concurrency, stop


def _job_request(name: str, code: str, instance_type="ml.t3.medium", count=1, max_runtime=60) -> dict:
    return {
        "ProcessingJobName": name,
        "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/r",
        "AppSpecification": {"ImageUri": "img", "ContainerEntrypoint": ["python3", "-c", code]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": count, "InstanceType": instance_type,
                                                  "VolumeSizeInGB": 1}},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
    }


def test_job_quota_refuses_with_resource_limit_exceeded(cloud):
    cloud.set_job_quota("ml.t3.medium", 2)
    cloud.sagemaker.create_processing_job(**_job_request("q1", "pass"))
    with pytest.raises(ClientError) as err:
        cloud.sagemaker.create_processing_job(**_job_request("q2", "pass", count=2))
    assert err.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert err.value.response["Error"]["Message"] == (
        "The account-level service limit 'ml.t3.medium for processing job usage' is 2 Instances, with current "
        "utilization of 1 Instances and a request delta of 2 Instances.")
    cloud.sagemaker.create_processing_job(**_job_request("q3", "pass"))  # 1 + 1 fits
    cloud.sagemaker.create_processing_job(**_job_request("other", "pass", instance_type="ml.m5.xlarge"))
    cloud.run_until_idle()
    assert cloud.sagemaker.describe_processing_job(ProcessingJobName="q1")["ProcessingJobStatus"] == "Completed"
    cloud.sagemaker.create_processing_job(**_job_request("q4", "pass", count=2))  # instances freed
    assert cloud.set_job_quota("ml.t3.medium", None) == 2


def test_jobs_run_concurrently(cloud, tmp_path):
    # each job announces itself, then waits for the other one: only concurrent runs can both complete
    code = ("import pathlib, sys, time\n"
            f"d = pathlib.Path({str(tmp_path)!r})\n"
            "(d / sys.argv[1]).touch()\n"
            "for _ in range(300):\n"
            "    if (d / sys.argv[2]).exists(): sys.exit(0)\n"
            "    time.sleep(0.1)\n"
            "sys.exit(1)\n")
    for me, other in (("a", "b"), ("b", "a")):
        req = _job_request(f"pair-{me}", code)
        req["AppSpecification"]["ContainerArguments"] = [me, other]
        cloud.sagemaker.create_processing_job(**req)
    cloud.run_until_idle()
    for me in "ab":
        desc = cloud.sagemaker.describe_processing_job(ProcessingJobName=f"pair-{me}")
        assert desc["ProcessingJobStatus"] == "Completed", desc.get("FailureReason")


def test_stop_job_kills_a_running_job(cloud, tmp_path):
    started = tmp_path / "started"
    code = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(600)\n"
    cloud.sagemaker.create_processing_job(**_job_request("long", code, max_runtime=900))

    def stop_when_started():
        while not started.exists():
            time.sleep(0.05)
        cloud.stop_job("long")

    stopper = threading.Thread(target=stop_when_started, daemon=True)
    stopper.start()
    cloud.run_until_idle()
    stopper.join(timeout=30)
    assert cloud.sagemaker.describe_processing_job(ProcessingJobName="long")["ProcessingJobStatus"] == "Stopped"
    assert cloud.job_results["long"].status == "Stopped"
    # stopped before it ever ran
    cloud.sagemaker.create_processing_job(**_job_request("never", f"open({str(tmp_path / 'ran')!r}, 'w')"))
    cloud.stop_job("never")
    cloud.run_until_idle()
    assert cloud.sagemaker.describe_processing_job(ProcessingJobName="never")["ProcessingJobStatus"] == "Stopped"
    assert not (tmp_path / "ran").exists()


def test_sqs_metrics_sample_each_minute_with_visibility_at_that_minute(cloud):
    url, _ = _queue(cloud, "sampled", VisibilityTimeout=150)
    cloud.sqs.send_message(QueueUrl=url, MessageBody="m")
    cloud.sqs.receive_message(QueueUrl=url)  # in flight for 150 s
    start = cloud.clock.now()
    visible_at = cloud._sqs_backend().queues["sampled"]._messages[0].visible_at / 1000.0
    cloud.clock.advance(300)  # one jump: the samples in between still see the message turn visible at 150 s
    now = cloud.clock.datetime()
    points = {}
    for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"):
        resp = cloud.cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS", MetricName=metric, Dimensions=[{"Name": "QueueName", "Value": "sampled"}],
            StartTime=now - timedelta(seconds=400), EndTime=now + timedelta(seconds=1), Period=60,
            Statistics=["Maximum"])
        points[metric] = {int(p["Timestamp"].timestamp()): p["Maximum"] for p in resp["Datapoints"]}
    minutes = sorted(points["ApproximateNumberOfMessagesVisible"])
    assert len([t for t in minutes if t > start]) == 5  # one datapoint per simulated minute
    for t in minutes:
        if t <= start:
            continue
        visible = t > visible_at
        assert points["ApproximateNumberOfMessagesVisible"][t] == (1 if visible else 0), t - start
        assert points["ApproximateNumberOfMessagesNotVisible"][t] == (0 if visible else 1), t - start


PRINTS_RECEIVE_COUNT = """
import json
def handler(event, context):
    for r in event["Records"]:
        print(json.dumps({"receive_count": r["attributes"]["ApproximateReceiveCount"]}))
    return {"batchItemFailures": []}
"""


def test_throttled_invocations_count_as_throttles_and_are_retried(cloud):
    # asynchronous: two throttles, then the three function attempts (throttles do not use MaximumRetryAttempts)
    dlq_url, dlq_arn = _queue(cloud, "thr-dlq")
    _async_function(cloud, "throttled", DeadLetterConfig={"TargetArn": dlq_arn})
    fault = cloud.faults.add(service="lambda", operation="Invoke", error_code="TooManyRequestsException",
                             http_status=429, times=2)
    n_before = len(cloud.invocations("throttled"))
    _put_event(cloud, "job-4")
    cloud.run_until_idle()
    assert fault.hits == 2 and len(cloud.invocations("throttled")) == n_before + 3
    dims = {"FunctionName": "throttled"}
    assert _metric_sum(cloud, "AWS/Lambda", "Throttles", dims) == 2
    assert _metric_sum(cloud, "AWS/Lambda", "Errors", dims) == 3
    assert len(_all_messages(cloud, dlq_url)) == 1
    # SQS event source: a throttled batch stays in the queue and comes back after the visibility timeout
    url, arn = _queue(cloud, "thr-src", VisibilityTimeout=30)
    cloud.lambda_.create_function(FunctionName="sqs-throttled", Runtime="python3.12", Role=_role(cloud),
                                  Handler="index.handler", Code={"ZipFile": _zip(PRINTS_RECEIVE_COUNT)}, Timeout=10)
    cloud.lambda_.create_event_source_mapping(EventSourceArn=arn, FunctionName="sqs-throttled", BatchSize=1,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    cloud.faults.add(service="lambda", operation="Invoke", error_code="TooManyRequestsException", http_status=429,
                     times=1)
    cloud.sqs.send_message(QueueUrl=url, MessageBody="m")
    start = cloud.clock.now()
    cloud.run_until_idle()
    [run] = [i for i in cloud.invocations("sqs-throttled") if i.function_name == "sqs-throttled"]
    assert json.loads(run.logs.strip().splitlines()[-1]) == {"receive_count": "2"}
    assert run.started_at - start >= 30
    assert _metric_sum(cloud, "AWS/Lambda", "Throttles", {"FunctionName": "sqs-throttled"}) == 1
    assert _all_messages(cloud, url) == []


def test_the_job_executor_s3_calls_get_injected_faults(cloud):
    cloud.s3.create_bucket(Bucket="job-inputs")
    cloud.s3.put_object(Bucket="job-inputs", Key="in/a.csv", Body=b"x\n1\n")
    req = _job_request("reads-input", "pass")
    req["ProcessingInputs"] = [{"InputName": "data", "S3Input": {
        "S3Uri": "s3://job-inputs/in/", "LocalPath": "/opt/ml/processing/input", "S3DataType": "S3Prefix",
        "S3InputMode": "File"}}]
    cloud.sagemaker.create_processing_job(**req)
    with cloud.faults.injected(service="s3", operation="ListObjectsV2", error_code="AccessDenied", http_status=403,
                               message="Access Denied"):
        cloud.run_until_idle()
    desc = cloud.sagemaker.describe_processing_job(ProcessingJobName="reads-input")
    assert desc["ProcessingJobStatus"] == "Failed"
    assert "AccessDenied" in desc["FailureReason"]


def test_a_function_sees_the_simulated_clock(cloud):
    src = ("import time\nfrom datetime import datetime, timezone\n"
           "def handler(event, context):\n"
           "    return {'time': time.time(), 'now': datetime.now(timezone.utc).timestamp(),\n"
           "            'utcnow': datetime.utcnow().replace(tzinfo=timezone.utc).timestamp(),\n"
           "            'left_ms': context.get_remaining_time_in_millis()}\n")
    cloud.lambda_.create_function(FunctionName="clock", Runtime="python3.12", Role=_role(cloud),
                                  Handler="index.handler", Code={"ZipFile": _zip(src)}, Timeout=30)
    cloud.clock.advance(7200)
    before = cloud.clock.now()
    out = json.loads(cloud.lambda_.invoke(FunctionName="clock")["Payload"].read())
    after = cloud.clock.now()
    for key in ("time", "now", "utcnow"):
        assert before - 1 <= out[key] <= after + 1, (key, out[key] - before)
    assert 0 < out["left_ms"] <= 35_000  # the deadline is still real time
