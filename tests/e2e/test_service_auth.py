"""The deployed stack's own role-based service paths are allowed by its deployed policies (and only those): the local
cloud evaluates them (localcloud/service_auth.py, issue 12 item 1), so a policy the stack needs but lacks would fail
the pipeline here. Each check is also shown to refuse a neighbouring request, so it is not vacuous."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def _fn(cloud, output: str):
    from moto.awslambda.utils import get_backend

    return get_backend(cloud.account, cloud.region).get_function(cloud.outputs[output])


def _queue(cloud, url: str):
    from moto.sqs.models import sqs_backends

    return sqs_backends[cloud.account][cloud.region].queues[url.rstrip("/").split("/")[-1]]


def test_the_trigger_may_poll_its_queue_and_pass_only_the_job_role_to_sagemaker(cloud):
    from localcloud.service_auth import event_source_mapping_check, pass_role_check

    trigger = _fn(cloud, "TriggerFunctionName")
    queue = _queue(cloud, cloud.outputs["TriggerQueueUrl"])
    assert queue.kms_master_key_id, "the trigger queue is KMS-encrypted: kms:Decrypt is checked too"
    check = event_source_mapping_check(cloud.account, cloud.region, trigger.role, queue)
    assert check.allowed, check.reason
    # not the DLQ (the role has no ReceiveMessage there)
    dlq = _queue(cloud, cloud.outputs["TriggerDlqUrl"])
    assert not event_source_mapping_check(cloud.account, cloud.region, trigger.role, dlq).allowed
    job_role = cloud.outputs["JobRoleArn"]
    assert pass_role_check(cloud.account, trigger.role, job_role, "sagemaker.amazonaws.com").allowed
    assert not pass_role_check(cloud.account, trigger.role, job_role, "lambda.amazonaws.com").allowed
    assert not pass_role_check(cloud.account, trigger.role, trigger.role, "sagemaker.amazonaws.com").allowed


def test_the_metrics_function_may_send_to_its_dlq_and_only_its_rule_may_invoke_it(cloud):
    from localcloud.iam_eval import authorize_delivery
    from localcloud.service_auth import destination_check

    metrics = _fn(cloud, "MetricsFunctionName")
    dlq_arn = _queue(cloud, cloud.outputs["MetricsDlqUrl"]).queue_arn
    assert metrics.dead_letter_config["TargetArn"] == dlq_arn
    check = destination_check(cloud.account, cloud.region, metrics.role, dlq_arn)
    assert check.allowed, check.reason
    trigger_dlq = _queue(cloud, cloud.outputs["TriggerDlqUrl"]).queue_arn
    assert not destination_check(cloud.account, cloud.region, metrics.role, trigger_dlq).allowed
    # the function's resource policy (AWS::Lambda::Permission) names the job state-change rule
    policy = json.dumps({"Version": "2012-10-17", "Statement": metrics.policy.statements})
    rules = [s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in metrics.policy.statements]
    assert rules, "the deployed function has a resource-based policy for EventBridge"
    common = {"account": cloud.account, "region": cloud.region, "service": "events.amazonaws.com",
              "action": "lambda:InvokeFunction", "resource_arn": metrics.function_arn, "resource_policy": policy,
              "kms_key_id": None}
    assert authorize_delivery(source_arn=rules[0], **common).allowed
    assert not authorize_delivery(source_arn=rules[0] + "Other", **common).allowed


def test_the_job_role_reads_staging_and_writes_output_only(cloud):
    from localcloud.service_auth import bucket_default_key, s3_object_check

    bucket, role = cloud.outputs["DataBucketName"], cloud.outputs["JobRoleArn"]
    assert bucket_default_key(cloud.account, bucket), "the data bucket's default key is checked too"

    def allowed(action: str, key: str) -> bool:
        return s3_object_check(cloud.account, cloud.region, role, action, bucket, key).allowed

    assert allowed("s3:GetObject", "staging/default/x.csv") and allowed("s3:PutObject", "output/default/j/a.csv")
    assert not allowed("s3:GetObject", "input/default/x.csv")  # the job reads the trigger's staged copy only
    assert not allowed("s3:PutObject", "input/default/x.csv")
