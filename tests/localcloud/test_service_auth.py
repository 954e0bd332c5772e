"""The local cloud authorizes what services do for the stack as AWS does (issue 12 item 1, the rest): EventBridge ->
Lambda against the function's resource policy; SQS -> Lambda polling, and Lambda -> its dead-letter queue, with the
function's execution role (and the queue's key); iam:PassRole on CreateProcessingJob; the processing job's role on
its inputs, outputs and the bucket key. For each path one request AWS would refuse is refused and recorded, and one
it would allow goes through. (The deployed stack's own paths are exercised by the e2e suite.)"""
from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import pytest

from localcloud import moto_patches
from localcloud.cloud import LocalCloud
from localcloud.server import ACCOUNT_ID

POLL = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]


@pytest.fixture(scope="module")
def base_cloud(tmp_path_factory):
    with LocalCloud(workdir=tmp_path_factory.mktemp("service-auth")) as c:
        yield c


@pytest.fixture()
def cloud(base_cloud):
    base_cloud.server.reset()
    moto_patches.ASYNC_INVOCATIONS.clear()
    moto_patches.EVENTBRIDGE_FAILED_INVOCATIONS.clear()
    base_cloud._async_queue.clear()
    base_cloud.authorization_refusals.clear()
    base_cloud.metrics.start()
    return base_cloud


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", source)
    return buf.getvalue()


def _role(cloud, name: str, statements: list[dict]) -> str:
    iam = cloud.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    if statements:
        iam.put_role_policy(RoleName=name, PolicyName="p",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return arn


def _allow(actions, resource="*", **condition) -> dict:
    st = {"Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


def _queue(cloud, name: str, **attributes) -> tuple[str, str]:
    url = cloud.sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
    return url, cloud.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _key(cloud) -> str:
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*",
                                                      "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}
    return cloud.client("kms").create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]


def _function(cloud, name: str, role: str, source: str = "def handler(event, context):\n    return 'ok'\n",
              **kwargs) -> str:
    return cloud.lambda_.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
                                         Code={"ZipFile": _zip(source)}, Timeout=30, **kwargs)["FunctionArn"]


def _lambda_metric(cloud, name: str, function: str) -> float:
    now = cloud.clock.datetime()
    points = cloud.cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda", MetricName=name, Dimensions=[{"Name": "FunctionName", "Value": function}],
        StartTime=now - timedelta(hours=2), EndTime=now + timedelta(minutes=1), Period=7200, Statistics=["Sum"],
    )["Datapoints"]
    return sum(p["Sum"] for p in points)


# --------------------------------------------------------------------------- EventBridge -> Lambda


@pytest.mark.parametrize("permission", ["none", "other-rule", "this-rule"])
def test_eventbridge_invokes_a_function_only_if_its_resource_policy_lets_the_rule_in(cloud, permission):
    fn = _function(cloud, "target", _role(cloud, "fn-role", []))
    rule = cloud.events.put_rule(Name="r", EventPattern=json.dumps({"source": ["my.app"]}))["RuleArn"]
    cloud.events.put_targets(Rule="r", Targets=[{"Id": "t", "Arn": fn}])
    if permission != "none":  # what AWS::Lambda::Permission deploys (CDK's LambdaFunction target)
        source = rule if permission == "this-rule" else rule.replace("rule/r", "rule/other")
        cloud.lambda_.add_permission(FunctionName="target", StatementId="events", Action="lambda:InvokeFunction",
                                     Principal="events.amazonaws.com", SourceArn=source)
    before = len(cloud.invocations("target"))
    cloud.events.put_events(Entries=[{"Source": "my.app", "DetailType": "x", "Detail": "{}"}])
    cloud.run_until_idle()
    invoked = len(cloud.invocations("target")) - before
    if permission == "this-rule":
        assert invoked == 1 and cloud.eventbridge_failed_invocations() == []
        return
    assert invoked == 0
    ((rule_arn, target, reason),) = cloud.eventbridge_failed_invocations()
    assert (rule_arn, target) == (rule, fn)
    assert reason.startswith("User: events.amazonaws.com is not authorized to perform: lambda:InvokeFunction")
    metrics = cloud.cloudwatch.list_metrics(Namespace="AWS/Events", MetricName="FailedInvocations")["Metrics"]
    assert metrics and metrics[0]["Dimensions"] == [{"Name": "RuleName", "Value": "r"}]


# --------------------------------------------------------------------------- SQS -> Lambda event source mapping


@pytest.mark.parametrize("grant", ["nothing", "poll-without-key", "poll-and-key"])
def test_an_event_source_mapping_polls_only_with_the_execution_roles_permissions(cloud, grant):
    key = _key(cloud)
    url, arn = _queue(cloud, "work", KmsMasterKeyId=key, VisibilityTimeout=60)
    statements = {"nothing": [], "poll-without-key": [_allow(POLL, arn)],
                  "poll-and-key": [_allow(POLL, arn), _allow("kms:Decrypt", key)]}[grant]
    _function(cloud, "consumer", _role(cloud, "consumer-role", statements))
    cloud.lambda_.create_event_source_mapping(EventSourceArn=arn, FunctionName="consumer", BatchSize=1)
    cloud.sqs.send_message(QueueUrl=url, MessageBody="m")
    before = len(cloud.invocations("consumer"))
    cloud.run_until_idle(max_horizon=None)
    invoked = len(cloud.invocations("consumer")) - before
    if grant == "poll-and-key":
        assert invoked == 1 and cloud.authorization_refusals == []
        return
    assert invoked == 0
    (refusal,) = cloud.authorization_refusals
    assert refusal["path"] == "event-source-mapping" and refusal["resource"] == arn
    expected = "sqs:ReceiveMessage" if grant == "nothing" else "kms:Decrypt"
    assert f"is not authorized to perform: {expected}" in refusal["reason"]
    # the message is still in the queue, untouched
    attrs = cloud.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"


# --------------------------------------------------------------------------- Lambda async -> its DLQ

FAILS = "def handler(event, context):\n    raise RuntimeError('no')\n"


@pytest.mark.parametrize("may_send", [False, True])
def test_a_failed_async_event_reaches_the_dlq_only_if_the_execution_role_may_send(cloud, may_send):
    key = _key(cloud)
    dlq_url, dlq = _queue(cloud, "fn-dlq", KmsMasterKeyId=key)
    statements = [_allow("sqs:SendMessage", dlq), _allow(["kms:GenerateDataKey", "kms:Decrypt"], key)] if may_send \
        else [_allow("sqs:SendMessage", dlq)]  # no key permissions: SQS cannot encrypt the message for the role
    fn = _function(cloud, "failing", _role(cloud, "failing-role", statements), FAILS,
                   DeadLetterConfig={"TargetArn": dlq})
    cloud.lambda_.put_function_event_invoke_config(FunctionName="failing", MaximumRetryAttempts=0)
    moto_patches.ASYNC_INVOCATIONS.append((fn, {"detail": {}}, {}, cloud.clock.now()))
    cloud.run_until_idle()
    messages = cloud.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    if may_send:
        assert len(messages) == 1 and cloud.authorization_refusals == []
        assert _lambda_metric(cloud, "DeadLetterErrors", "failing") == 0
        return
    assert messages == []
    (refusal,) = cloud.authorization_refusals
    assert refusal["path"] == "dead-letter-queue" and "kms:GenerateDataKey" in refusal["reason"]
    assert _lambda_metric(cloud, "DeadLetterErrors", "failing") == 1


# --------------------------------------------------------------------------- iam:PassRole on CreateProcessingJob

CREATE_JOB = """
import boto3, os
def handler(event, context):
    try:
        boto3.client("sagemaker").create_processing_job(
            ProcessingJobName=event["name"], RoleArn=os.environ["JOB_ROLE"],
            AppSpecification={"ImageUri": "img", "ContainerEntrypoint": ["python3", "-c", "pass"]},
            ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.t3.medium",
                                                   "VolumeSizeInGB": 1}})
        return "created"
    except Exception as exc:
        return {"code": exc.response["Error"]["Code"], "message": exc.response["Error"]["Message"]}
"""


@pytest.mark.parametrize("grant", ["none", "any-service", "sagemaker"])
def test_create_processing_job_needs_pass_role_for_sagemaker(cloud, grant):
    job_role = _role(cloud, "job-role", [])
    statements = {"none": [], "any-service": [_allow("iam:PassRole", job_role,
                                                     StringEquals={"iam:PassedToService": "lambda.amazonaws.com"})],
                  "sagemaker": [_allow("iam:PassRole", job_role,
                                       StringEquals={"iam:PassedToService": "sagemaker.amazonaws.com"})]}[grant]
    _function(cloud, "trigger", _role(cloud, "trigger-role", statements), CREATE_JOB,
              Environment={"Variables": {"JOB_ROLE": job_role}})
    out = json.loads(cloud.lambda_.invoke(FunctionName="trigger", Payload=json.dumps({"name": f"dq-{grant}"}))[
        "Payload"].read())
    if grant == "sagemaker":
        assert out == "created"
        return
    assert out["code"] == "AccessDeniedException"
    assert out["message"].startswith(f"User: arn:aws:iam::{ACCOUNT_ID}:role/trigger-role is not authorized to "
                                     f"perform: iam:PassRole on resource: {job_role}")
    assert cloud.processing_jobs() == []


# --------------------------------------------------------------------------- the processing job's role

JOB = ("import os, pathlib\nroot = pathlib.Path(os.environ['OPT_ML_ROOT'])\n"
       "(root / 'processing/output/out/r.txt').write_text((root / 'processing/input/data/in.csv').read_text())\n")


@pytest.mark.parametrize("grant", ["no-read", "no-key", "no-write", "all"])
def test_a_processing_job_reads_and_writes_only_what_its_role_allows(cloud, grant):
    key = _key(cloud)
    s3 = cloud.s3
    s3.create_bucket(Bucket="data")
    s3.put_bucket_encryption(Bucket="data", ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
    s3.put_object(Bucket="data", Key="staging/in.csv", Body=b"a\n1\n")
    s3.put_object(Bucket="data", Key="code/job.py", Body=JOB.encode())
    read = _allow("s3:GetObject", ["arn:aws:s3:::data/staging/*", "arn:aws:s3:::data/code/*"])
    write = _allow("s3:PutObject", "arn:aws:s3:::data/output/*")
    use_key = _allow(["kms:Decrypt", "kms:GenerateDataKey"], key)
    statements = {"no-read": [write, use_key], "no-key": [read, write], "no-write": [read, use_key],
                  "all": [read, write, use_key]}[grant]
    role = _role(cloud, "job-role", statements)
    name = f"dq-{grant}"
    cloud.sagemaker.create_processing_job(
        ProcessingJobName=name, RoleArn=role,
        AppSpecification={"ImageUri": "img",
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.t3.medium",
                                               "VolumeSizeInGB": 1}},
        ProcessingInputs=[
            {"InputName": "code", "S3Input": {"S3Uri": "s3://data/code/job.py", "S3DataType": "S3Prefix",
                                              "LocalPath": "/opt/ml/processing/input/code", "S3InputMode": "File"}},
            {"InputName": "data", "S3Input": {"S3Uri": "s3://data/staging/in.csv", "S3DataType": "S3Prefix",
                                              "LocalPath": "/opt/ml/processing/input/data", "S3InputMode": "File"}}],
        ProcessingOutputConfig={"Outputs": [{"OutputName": "out", "S3Output": {
            "S3Uri": f"s3://data/output/{name}", "LocalPath": "/opt/ml/processing/output/out",
            "S3UploadMode": "EndOfJob"}}]})
    cloud.run_until_idle()
    desc = cloud.sagemaker.describe_processing_job(ProcessingJobName=name)
    outputs = s3.list_objects_v2(Bucket="data", Prefix="output/").get("Contents", [])
    if grant == "all":
        assert desc["ProcessingJobStatus"] == "Completed", desc.get("FailureReason")
        assert [o["Key"] for o in outputs] == [f"output/{name}/r.txt"]
        return
    assert desc["ProcessingJobStatus"] == "Failed" and outputs == []
    reason = desc["FailureReason"]
    if grant == "no-write":
        assert reason.startswith(f"ClientError: Failed to upload data. Access denied for s3://data/output/{name}/")
        assert "s3:PutObject" in reason
    else:
        assert reason.startswith("ClientError: Failed to download data. Access denied for s3://data/")
        assert ("kms:Decrypt" if grant == "no-key" else "s3:GetObject") in reason
    assert cloud.authorization_refusals[0]["path"] == "processing-job"
    assert cloud.authorization_refusals[0]["role"] == role


@pytest.mark.parametrize("bucket_key", [True, False])
def test_the_job_roles_key_use_carries_s3s_encryption_context(cloud, bucket_key):
    # GIVEN an SSE-KMS bucket with or without an S3 Bucket Key, and a role allowed kms:Decrypt only for the encryption
    # context of that bucket (the condition the stack's Spark job role has; S3 UG "Encryption context": with a bucket
    # key S3 passes the bucket's ARN as aws:s3:arn, else the object's)
    from localcloud.service_auth import s3_object_check

    key = _key(cloud)
    cloud.s3.create_bucket(Bucket="data")
    cloud.s3.put_bucket_encryption(Bucket="data", ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
        "BucketKeyEnabled": bucket_key}]})
    role = _role(cloud, "context-role", [
        _allow("s3:GetObject", "arn:aws:s3:::data/*"),
        _allow("kms:Decrypt", key, StringEquals={"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::data"})])
    # WHEN the job's read of an object is authorized
    check = s3_object_check(ACCOUNT_ID, cloud.region, role, "s3:GetObject", "data", "staging/in.csv")
    # THEN the bucket-ARN condition holds exactly when the bucket uses a bucket key (before: never, no context)
    assert check.allowed is bucket_key, check.reason
