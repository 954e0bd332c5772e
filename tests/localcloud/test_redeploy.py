"""A second `cdk deploy` (update) of the same app into the same local cloud, with the real CDK CLI.

A tiny CDK app is written into tmp_path (not the product app: this stays fast): an EventBridge-enabled bucket
whose ``input/`` events reach an SQS queue through a rule, and a Python Lambda with an environment variable.
Deploy 1, check the wiring (a multipart upload under ``input/`` gives exactly one event); deploy 2 with a
changed environment variable and an added SNS topic + output; check both took effect and the bucket wiring
still works.
"""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

from localcloud.cloud import LocalCloud

pytestmark = pytest.mark.e2e  # real CDK CLI: bootstrap + two deploys (~30 s)

APP = textwrap.dedent('''
    import os
    import aws_cdk as cdk
    from aws_cdk import aws_events as events, aws_events_targets as targets, aws_lambda as lambda_
    from aws_cdk import aws_s3 as s3, aws_sns as sns, aws_sqs as sqs

    app = cdk.App()
    stack = cdk.Stack(app, "RedeployProbe", env=cdk.Environment(account="123456789012", region="us-east-1"))
    bucket = s3.Bucket(stack, "Bucket")  # EventBridge on the resource itself, as infra/data_bucket.py does
    bucket.node.default_child.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
        event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True))
    queue = sqs.Queue(stack, "Inbox")
    events.Rule(stack, "InputRule", event_pattern=events.EventPattern(
        source=["aws.s3"], detail_type=["Object Created"],
        detail={"bucket": {"name": [bucket.bucket_name]}, "object": {"key": [{"prefix": "input/"}]}}),
        targets=[targets.SqsQueue(queue)])
    fn = lambda_.Function(stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
                          code=lambda_.Code.from_asset("fn"), environment={"GREETING": os.environ["GREETING"]})
    cdk.CfnOutput(stack, "BucketName", value=bucket.bucket_name)
    cdk.CfnOutput(stack, "QueueUrl", value=queue.queue_url)
    cdk.CfnOutput(stack, "FunctionName", value=fn.function_name)
    if os.environ.get("WITH_TOPIC") == "1":
        cdk.CfnOutput(stack, "TopicArn", value=sns.Topic(stack, "Added").topic_arn)
    app.synth()
''')


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "cdk.json").write_text(json.dumps({"app": f"{sys.executable} app.py"}))
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "index.py").write_text("import os\n\ndef handler(event, context):\n"
                                              "    return {'greeting': os.environ['GREETING']}\n")
    return tmp_path


def _greeting(cloud) -> str:
    out = cloud.lambda_.invoke(FunctionName=cloud.outputs["FunctionName"], Payload=b"{}")
    assert not out.get("FunctionError"), out["Payload"].read()
    return json.loads(out["Payload"].read())["greeting"]


def _multipart(cloud, key: str) -> None:
    s3, bucket = cloud.s3, cloud.outputs["BucketName"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n,
                                                      Body=body)["ETag"]}
             for n, body in ((1, b"a" * 5 * 1024 * 1024), (2, b"b" * 10))]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def _events(cloud) -> list[dict]:
    """The events waiting in the probe queue, deleted once read (so none comes back after its visibility timeout,
    however long the next deploy takes)."""
    url = cloud.outputs["QueueUrl"]
    msgs = cloud.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for m in msgs:
        cloud.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in msgs]


def test_second_deploy_updates_the_stack(app_dir, monkeypatch):
    with LocalCloud() as cloud:
        monkeypatch.setenv("GREETING", "hello")
        cloud.bootstrap_and_deploy(app_dir)
        assert "TopicArn" not in cloud.outputs
        assert _greeting(cloud) == "hello"
        _multipart(cloud, "input/big.csv")
        first = _events(cloud)
        assert [(e["detail-type"], e["detail"]["reason"]) for e in first] == [("Object Created",
                                                                              "CompleteMultipartUpload")]
        assert first[0]["detail"]["object"]["size"] == 5 * 1024 * 1024 + 10

        monkeypatch.setenv("GREETING", "hello again")
        monkeypatch.setenv("WITH_TOPIC", "1")
        cloud.deploy(app_dir)  # the update: a change set on the existing stack
        stack = cloud.cloudformation.describe_stacks(StackName="RedeployProbe")["Stacks"][0]
        assert stack["StackStatus"] == "UPDATE_COMPLETE"
        assert cloud.outputs["TopicArn"].startswith("arn:aws:sns:us-east-1:123456789012:")
        assert cloud.outputs["TopicArn"] in [t["TopicArn"] for t in cloud.sns.list_topics()["Topics"]]
        assert _greeting(cloud) == "hello again"
        cloud.s3.put_object(Bucket=cloud.outputs["BucketName"], Key="input/small.csv", Body=b"x")
        cloud.s3.put_object(Bucket=cloud.outputs["BucketName"], Key="other/small.csv", Body=b"x")
        assert [e["detail"]["object"]["key"] for e in _events(cloud)] == ["input/small.csv"]
