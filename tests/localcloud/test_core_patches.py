"""One test per moto patch in localcloud.moto_patches (fast: a tiny template via boto3 create_stack)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from localcloud import job_executor, lambdas, moto_patches
from localcloud.alarms import notification
from localcloud.server import ACCOUNT_ID, REGION, MotoServer


@pytest.fixture(scope="module")
def server():
    with MotoServer() as srv:
        yield srv


@pytest.fixture()
def aws(server):
    server.reset()
    moto_patches.ASYNC_INVOCATIONS.clear()

    def client(name):
        return boto3.client(name, endpoint_url=server.endpoint, region_name=REGION,
                            aws_access_key_id="t", aws_secret_access_key="t")
    return client


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", source)
    return buf.getvalue()


def _stack(aws, resources: dict, outputs: dict | None = None, name="t") -> dict:
    cf = aws("cloudformation")
    tpl = {"Resources": resources}
    if outputs:
        tpl["Outputs"] = outputs
    cf.create_stack(StackName=name, TemplateBody=json.dumps(tpl))
    return cf.describe_stacks(StackName=name)["Stacks"][0]


def _allow_events(aws, target_arn: str, rule: str = "r") -> None:
    """The resource policy AWS requires before EventBridge delivers to a queue or topic (scoped to the rule)."""
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage" if ":sqs:" in target_arn else "sns:Publish", "Resource": target_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}"}}}]})
    if ":sqs:" in target_arn:
        url = aws("sqs").get_queue_url(QueueName=target_arn.split(":")[-1])["QueueUrl"]
        aws("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": doc})
    else:
        aws("sns").set_topic_attributes(TopicArn=target_arn, AttributeName="Policy", AttributeValue=doc)


def test_alarm_resource_created_with_ref_getatt_and_insufficient_data(aws):
    aws("sns").create_topic(Name="alerts")
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:alerts"
    stack = _stack(aws, {
        "A": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmName": "rows-low", "Namespace": "NS", "MetricName": "RowsOut", "Statistic": "Maximum",
            "Period": "300", "EvaluationPeriods": "1", "Threshold": "1", "ComparisonOperator": "LessThanThreshold",
            "Dimensions": [{"Name": "Dataset", "Value": "default"}], "AlarmActions": [topic], "OKActions": [topic]}},
    }, outputs={"Name": {"Value": {"Ref": "A"}}, "Arn": {"Value": {"Fn::GetAtt": ["A", "Arn"]}}})
    outs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outs["Name"] == "rows-low"
    assert outs["Arn"].endswith(":alarm:rows-low")
    alarm = aws("cloudwatch").describe_alarms(AlarmNames=["rows-low"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["Dimensions"] == [{"Name": "Dataset", "Value": "default"}]
    aws("cloudformation").delete_stack(StackName="t")
    assert aws("cloudwatch").describe_alarms(AlarmNames=["rows-low"])["MetricAlarms"] == []


def test_alarm_state_change_publishes_to_sns_actions(aws, server):
    from moto.sns.models import sns_backends

    arn = aws("sns").create_topic(Name="alerts")["TopicArn"]
    cw = aws("cloudwatch")
    cw.put_metric_alarm(AlarmName="a", Namespace="NS", MetricName="M", Statistic="Maximum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                        AlarmActions=[arn])
    cw.set_alarm_state(AlarmName="a", StateValue="ALARM", StateReason="test")
    desc = cw.describe_alarms(AlarmNames=["a"])["MetricAlarms"][0]
    cw.set_alarm_state(AlarmName="a", StateValue="ALARM", StateReason="again")  # no change: no message
    sent = sns_backends[ACCOUNT_ID][REGION].topics[arn].sent_notifications
    assert len(sent) == 1
    msg = json.loads(sent[0][1])
    assert (msg["AlarmName"], msg["OldStateValue"], msg["NewStateValue"]) == ("a", "INSUFFICIENT_DATA", "ALARM")
    assert sent[0][2].startswith('ALARM: "a"')
    # one builder for both paths: the same message evaluate_all(publish=True) would build from DescribeAlarms
    assert msg == notification(desc, old_state="INSUFFICIENT_DATA", new_state="ALARM", reason="test",
                               when=desc["StateUpdatedTimestamp"], region=REGION)


def test_resource_policies_applied(aws):
    aws("s3").create_bucket(Bucket="bucket-one")
    q = aws("sqs").create_queue(QueueName="q1")["QueueUrl"]
    topic = aws("sns").create_topic(Name="t1")["TopicArn"]
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                    "Action": "*", "Resource": "*"}]}
    tls_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
               "Resource": ["arn:aws:s3:::bucket-one", "arn:aws:s3:::bucket-one/*"],
               "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
    _stack(aws, {
        "BP": {"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": "bucket-one", "PolicyDocument": tls_only}},
        "QP": {"Type": "AWS::SQS::QueuePolicy", "Properties": {"Queues": [q], "PolicyDocument": doc}},
        "TP": {"Type": "AWS::SNS::TopicPolicy", "Properties": {"Topics": [topic], "PolicyDocument": doc}},
    })
    assert json.loads(aws("s3").get_bucket_policy(Bucket="bucket-one")["Policy"]) == tls_only
    # the conditional TLS-only Deny must not deny plain-HTTP emulator calls
    aws("s3").put_object(Bucket="bucket-one", Key="k", Body=b"x")
    assert "Policy" in aws("sqs").get_queue_attributes(QueueUrl=q, AttributeNames=["Policy"])["Attributes"]
    # the deployed document itself, not moto's default policy (which the topic always has)
    assert json.loads(aws("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"]) == doc
    aws("cloudformation").delete_stack(StackName="t")
    default = json.loads(aws("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    assert default["Id"] == "__default_policy_ID"


def test_bucket_versioning_and_eventbridge_from_template(aws):
    _stack(aws, {"B": {"Type": "AWS::S3::Bucket", "Properties": {
        "BucketName": "vb-bucket", "VersioningConfiguration": {"Status": "Enabled"},
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}}}})
    assert aws("s3").get_bucket_versioning(Bucket="vb-bucket")["Status"] == "Enabled"
    from moto.s3.models import s3_backends

    assert s3_backends[ACCOUNT_ID]["aws"].get_bucket("vb-bucket").notification_configuration.event_bridge is not None


def test_bucket_key_from_template(aws):
    # GIVEN an SSE-KMS bucket with an S3 Bucket Key in a template (CDK's bucket_key_enabled=True)
    _stack(aws, {"B": {"Type": "AWS::S3::Bucket", "Properties": {
        "BucketName": "bk-bucket", "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/k"},
            "BucketKeyEnabled": True}]}}}})
    # THEN the bucket keeps it (moto's CloudFormation dropped it), as GetBucketEncryption shows in AWS
    from localcloud.service_auth import bucket_key_enabled

    assert bucket_key_enabled(ACCOUNT_ID, "bk-bucket")
    rule = aws("s3").get_bucket_encryption(Bucket="bk-bucket")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BucketKeyEnabled"] is True


def test_s3_object_created_event_shape_and_rule_routing(aws):
    s3, sqs, events = aws("s3"), aws("sqs"), aws("events")
    s3.create_bucket(Bucket="eb-bucket")
    s3.put_bucket_versioning(Bucket="eb-bucket", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(Bucket="eb-bucket",
                                             NotificationConfiguration={"EventBridgeConfiguration": {}})
    url = sqs.create_queue(QueueName="in")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"],
                                                       "detail": {"object": {"key": [{"prefix": "input/"}]}}}))
    events.put_targets(Rule="r", Targets=[{"Id": "1", "Arn": qarn}])
    _allow_events(aws, qarn)
    put = s3.put_object(Bucket="eb-bucket", Key="input/a b ü.csv", Body=b"abc")
    s3.put_object(Bucket="eb-bucket", Key="other/x.csv", Body=b"abc")  # not matched by the rule
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(msgs) == 1
    ev = json.loads(msgs[0]["Body"])
    assert ev["detail-type"] == "Object Created" and ev["source"] == "aws.s3"
    assert ev["resources"] == ["arn:aws:s3:::eb-bucket"]
    assert ev["time"].endswith("Z")
    d = ev["detail"]
    assert d["version"] == "0" and d["bucket"] == {"name": "eb-bucket"} and d["reason"] == "PutObject"
    # raw: AWS does not document the encoding of this key; the only real-upload evidence shows it raw (FACTS.md 10)
    assert d["object"]["key"] == "input/a b ü.csv" and d["object"]["size"] == 3
    assert d["object"]["etag"] == put["ETag"].strip('"')
    assert d["object"]["version-id"] == put["VersionId"]
    assert len(d["object"]["sequencer"]) == 16 and d["request-id"] and d["requester"] == ACCOUNT_ID


def test_multipart_upload_sends_complete_multipart_event(aws):
    s3, sqs, events = aws("s3"), aws("sqs"), aws("events")
    s3.create_bucket(Bucket="mp-bucket")
    s3.put_bucket_notification_configuration(Bucket="mp-bucket",
                                             NotificationConfiguration={"EventBridgeConfiguration": {}})
    url = sqs.create_queue(QueueName="mpq")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="r", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule="r", Targets=[{"Id": "1", "Arn": qarn}])
    _allow_events(aws, qarn)
    up = s3.create_multipart_upload(Bucket="mp-bucket", Key="big.bin")["UploadId"]
    part = s3.upload_part(Bucket="mp-bucket", Key="big.bin", UploadId=up, PartNumber=1, Body=b"x" * 10)
    s3.complete_multipart_upload(Bucket="mp-bucket", Key="big.bin", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(msgs) == 1, [json.loads(m["Body"])["detail"]["reason"] for m in msgs]  # no PutObject/tagging event
    ev = json.loads(msgs[0]["Body"])
    assert ev["detail-type"] == "Object Created"
    assert ev["detail"]["reason"] == "CompleteMultipartUpload"
    assert ev["detail"]["object"]["key"] == "big.bin" and ev["detail"]["object"]["size"] == 10
    assert "version-id" not in ev["detail"]["object"]  # unversioned bucket


def test_eventbridge_lambda_and_sns_targets(aws):
    from moto.sns.models import sns_backends

    events, sns = aws("events"), aws("sns")
    topic = sns.create_topic(Name="evt")["TopicArn"]
    fn_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:f"
    events.put_rule(Name="r", EventPattern=json.dumps({"source": ["my.app"], "detail": {"s": ["Failed"]}}))
    events.put_targets(Rule="r", Targets=[{"Id": "1", "Arn": fn_arn}, {"Id": "2", "Arn": topic}])
    _allow_events(aws, topic)
    events.put_rule(Name="off", EventPattern=json.dumps({"source": ["my.app"]}), State="DISABLED")
    events.put_targets(Rule="off", Targets=[{"Id": "1", "Arn": topic}])
    resp = events.put_events(Entries=[
        {"Source": "my.app", "DetailType": "x", "Detail": json.dumps({"s": "Failed"})},
        {"Source": "my.app", "DetailType": "x", "Detail": json.dumps({"s": "Completed"})},
    ])
    assert resp["FailedEntryCount"] == 0
    assert len(moto_patches.ASYNC_INVOCATIONS) == 1
    arn, payload, _target, _accepted = moto_patches.ASYNC_INVOCATIONS.popleft()
    assert arn == fn_arn and payload["detail"] == {"s": "Failed"} and payload["time"].endswith("Z")
    assert len(sns_backends[ACCOUNT_ID][REGION].topics[topic].sent_notifications) == 1


def test_processing_job_starts_in_progress_refuses_duplicates_and_completes(aws, server):
    sm, sqs, events = aws("sagemaker"), aws("sqs"), aws("events")
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="r", EventPattern=json.dumps({
        "source": ["aws.sagemaker"], "detail-type": ["SageMaker Processing Job State Change"],
        "detail": {"ProcessingJobStatus": ["Completed", "Failed", "Stopped"]}}))
    events.put_targets(Rule="r", Targets=[{"Id": "1", "Arn": qarn}])
    _allow_events(aws, qarn)
    req = dict(
        ProcessingJobName="dq-default-0123456789abcdef",
        RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/job",
        AppSpecification={"ImageUri": "img", "ContainerEntrypoint": ["python3", "x.py"]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.t3.medium",
                                               "VolumeSizeInGB": 30}},
        Environment={"DATASET": "default"},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    sm.create_processing_job(**req)
    with pytest.raises(ClientError) as err:
        sm.create_processing_job(**req)
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    desc = sm.describe_processing_job(ProcessingJobName=req["ProcessingJobName"])
    assert desc["ProcessingJobStatus"] == "InProgress" and "ProcessingEndTime" not in desc
    assert desc["Environment"] == {"DATASET": "default"}
    assert moto_patches.PROCESSING_JOB_REQUESTS[req["ProcessingJobName"]]["Environment"] == {"DATASET": "default"}
    moto_patches.set_processing_job_status(ACCOUNT_ID, REGION, req["ProcessingJobName"], "Failed",
                                           failure_reason="AlgorithmError: boom")
    desc = sm.describe_processing_job(ProcessingJobName=req["ProcessingJobName"])
    assert desc["ProcessingJobStatus"] == "Failed" and desc["FailureReason"] == "AlgorithmError: boom"
    assert "ProcessingEndTime" in desc
    # the executor's state-change event, routed through EventBridge, matches the rule on terminal states
    now_ms = 1_700_000_000_000
    result = job_executor.JobResult(
        name=req["ProcessingJobName"], arn=desc["ProcessingJobArn"], status="Failed",
        failure_reason="AlgorithmError: boom", exit_message=None, exit_code=1, log_path=Path("job.log"),
        root=Path("opt/ml"), created_ms=now_ms, started_ms=now_ms, ended_ms=now_ms + 1000)
    moto_patches.put_event(ACCOUNT_ID, REGION, job_executor.state_change_event(req, result, region=REGION,
                                                                             account=ACCOUNT_ID))
    ev = json.loads(sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert ev["detail"]["ProcessingJobStatus"] == "Failed"
    assert isinstance(ev["detail"]["ProcessingEndTime"], int)  # epoch milliseconds


def test_lambda_invoke_runs_deployed_code_with_environment(aws):
    lam = aws("lambda")
    iam = aws("iam")
    role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    src = ("import os, boto3\n"
           "def handler(event, context):\n"
           "    print('hello from', context.function_name)\n"
           "    boto3.client('s3').create_bucket(Bucket='made-by-lambda')\n"
           "    return "
           "{'got': event['x'], 'env': os.environ['MY_VAR'], 'left': context.get_remaining_time_in_millis() > 0}\n")
    lam.create_function(FunctionName="f", Runtime="python3.12", Role=role, Handler="index.handler",
                        Code={"ZipFile": _zip(src)}, Environment={"Variables": {"MY_VAR": "v"}}, Timeout=10)
    out = lam.invoke(FunctionName="f", Payload=json.dumps({"x": 1}))
    assert json.loads(out["Payload"].read()) == {"got": 1, "env": "v", "left": True}
    assert "hello from f" in lambdas.invocations("f")[-1].logs
    assert "made-by-lambda" in [b["Name"] for b in aws("s3").list_buckets()["Buckets"]]


def test_lambda_errors_and_timeouts_are_reported(aws):
    lam = aws("lambda")
    role = aws("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    src = ("import time\ndef boom(event, context):\n    raise ValueError('bad input')\n"
           "def slow(event, context):\n    time.sleep(60)\n")
    lam.create_function(FunctionName="boom", Runtime="python3.12", Role=role, Handler="index.boom",
                        Code={"ZipFile": _zip(src)})
    out = lam.invoke(FunctionName="boom", Payload=b"{}")
    assert out.get("FunctionError")
    assert json.loads(out["Payload"].read())["errorType"] == "ValueError"
    inv = lambdas.run(function_name="slow", handler="index.slow", code_bytes=_zip(src), event={}, timeout=0.1)
    assert inv.timed_out and inv.error["errorType"] == "Sandbox.Timedout"


def test_custom_resources_are_refused_with_a_clear_reason(aws):
    """Custom::* is not supported (README): the stack fails with the reason instead of hanging half-made."""
    cf = aws("cloudformation")
    tpl = {"Resources": {"C": {"Type": "Custom::Thing", "Properties": {
        "ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:provider"}}}}
    cf.create_change_set(StackName="cr", ChangeSetName="c1", ChangeSetType="CREATE", TemplateBody=json.dumps(tpl))
    cf.execute_change_set(ChangeSetName="c1", StackName="cr")
    stack = cf.describe_stacks(StackName="cr")["Stacks"][0]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "custom resources are not supported" in stack["StackStatusReason"]


def test_change_set_fills_outputs(aws):
    cf = aws("cloudformation")
    tpl = {"Resources": {"T": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"Arn": {"Value": {"Ref": "T"}}}}
    cf.create_change_set(StackName="cs", ChangeSetName="c1", ChangeSetType="CREATE", TemplateBody=json.dumps(tpl))
    cf.execute_change_set(ChangeSetName="c1", StackName="cs")
    stack = cf.describe_stacks(StackName="cs")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert stack["Outputs"][0]["OutputValue"].startswith("arn:aws:sns:")
    tpl["Resources"]["Q"] = {"Type": "AWS::SQS::Queue"}
    tpl["Outputs"]["Q"] = {"Value": {"Fn::GetAtt": ["Q", "Arn"]}}
    cf.create_change_set(StackName="cs", ChangeSetName="c2", ChangeSetType="UPDATE", TemplateBody=json.dumps(tpl))
    cf.execute_change_set(ChangeSetName="c2", StackName="cs")
    outs = {o["OutputKey"] for o in cf.describe_stacks(StackName="cs")["Stacks"][0]["Outputs"]}
    assert outs == {"Arn", "Q"}


def test_sqs_send_does_not_invoke_mapped_function_inline(aws):
    lam, sqs = aws("lambda"), aws("sqs")
    role = aws("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(FunctionName="c", Runtime="python3.12", Role=role, Handler="index.h",
                        Code={"ZipFile": _zip("def h(e, c):\n    return None\n")})
    url = sqs.create_queue(QueueName="m")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(EventSourceArn=qarn, FunctionName="c")
    before = len(lambdas.invocations("c"))
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert len(lambdas.invocations("c")) == before
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "1"
