"""Template assertions for each requirement of the stack (issue 3), on the session's synthesized template."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from aws_cdk.assertions import Match

from infra.processing_trigger import MAX_RECEIVE_COUNT, TRIGGER_TIMEOUT
from infra_testlib import (
    DEFAULT_PSI_ALARM,
    DEFAULT_THRESHOLDS,
    ORDERS_PSI_ALARM,
    ORDERS_THRESHOLDS,
    ROOT,
    Synth,
    as_list,
    only,
    resources,
    statements,
)

TRIGGER_ENV = (
    "DATA_BUCKET", "INPUT_PREFIX", "OUTPUT_PREFIX", "JOB_PREFIX", "ROLE_ARN", "IMAGE_URI", "CODE_S3_URI",
    "CODE_VERSION", "BASELINE_PREFIX", "QUARANTINE_PREFIX", "INSTANCE_TYPE", "INSTANCE_COUNT", "VOLUME_SIZE_GB",
    "MAX_RUNTIME_SECONDS", "KMS_KEY_ARN",
    "PROCESSING_MODE", "STAGING_PREFIX", "METRICS_NAMESPACE", "ALERT_TOPIC_ARN",
)


def ids(synth: Synth) -> dict[str, str]:
    t = synth.template_json
    return {
        "bucket": only(t, "AWS::S3::Bucket", "DataBucket")[0],
        "log_bucket": only(t, "AWS::S3::Bucket", "DataAccessLogBucket")[0],
        "key": only(t, "AWS::KMS::Key", "DataKey")[0],
        "topic_key": only(t, "AWS::KMS::Key", "AlarmsTopicKey")[0],
        "queue": only(t, "AWS::SQS::Queue", "TriggerQueue")[0],
        "dlq": only(t, "AWS::SQS::Queue", "TriggerDlq")[0],
        "metrics_dlq": only(t, "AWS::SQS::Queue", "MetricsDlq")[0],
        "trigger_fn": only(t, "AWS::Lambda::Function", "TriggerFunction")[0],
        "metrics_fn": only(t, "AWS::Lambda::Function", "MetricsFunction")[0],
        "job_role": only(t, "AWS::IAM::Role", "ProcessingJobRole")[0],
        "topic": only(t, "AWS::SNS::Topic", "AlarmsTopic")[0],
    }


def trigger_env(synth: Synth) -> dict[str, Any]:
    fn = only(synth.template_json, "AWS::Lambda::Function", "TriggerFunction")[1]
    return fn["Properties"]["Environment"]["Variables"]


def s3_rule_pattern(synth: Synth) -> dict[str, Any]:
    return only(synth.template_json, "AWS::Events::Rule", "TriggerObjectCreatedRule")[1]["Properties"]["EventPattern"]


def object_suffix(resource: Any, bucket_id: str) -> str | None:
    """'input/*' for {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/input/*"]]}, else None."""
    if isinstance(resource, dict) and "Fn::Join" in resource:
        parts = resource["Fn::Join"][1]
        if parts[:1] == [{"Fn::GetAtt": [bucket_id, "Arn"]}] and len(parts) == 2 and isinstance(parts[1], str):
            return parts[1].removeprefix("/")
    return None


# --- data bucket ---------------------------------------------------------------------------------------------------

def test_data_bucket_is_kms_encrypted_versioned_private_logged(synth: Synth) -> None:
    i = ids(synth)
    synth.template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like({
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [{
                    "BucketKeyEnabled": True,
                    "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                      "KMSMasterKeyID": {"Fn::GetAtt": [i["key"], "Arn"]}},
                }]},
                "VersioningConfiguration": {"Status": "Enabled"},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "LoggingConfiguration": {"DestinationBucketName": {"Ref": i["log_bucket"]},
                                         "LogFilePrefix": "data-bucket/"},
                "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
                "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({
                    "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                })])},
            }),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    synth.template.has_resource_properties("AWS::KMS::Key",
                                           {"EnableKeyRotation": True,
                                            "Description": Match.string_like_regexp("data bucket")})
    synth.template.has_resource("AWS::KMS::Key", {"DeletionPolicy": "Retain"})


def test_access_log_bucket_uses_s3_managed_encryption(synth: Synth) -> None:
    log_bucket = synth.template_json["Resources"][ids(synth)["log_bucket"]]
    (rule,) = log_bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert log_bucket["DeletionPolicy"] == "Retain"


def test_every_bucket_denies_plain_http(synth: Synth) -> None:
    policies = resources(synth.template_json, "AWS::S3::BucketPolicy")
    buckets = {p["Properties"]["Bucket"]["Ref"] for p in policies.values()}
    assert buckets == {ids(synth)["bucket"], ids(synth)["log_bucket"]}
    for policy in policies.values():
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            and s["Action"] == "s3:*"
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )


def test_no_custom_resources(synth: Synth) -> None:
    # The emulator can't run custom-resource Lambdas; nothing here needs one (EventBridge is set on the bucket).
    types = {r["Type"] for r in synth.template_json["Resources"].values()}
    assert not [t for t in types if t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource"]


# --- upload trigger ------------------------------------------------------------------------------------------------

def test_s3_rule_matches_this_bucket_and_input_prefix(synth: Synth) -> None:
    assert s3_rule_pattern(synth) == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [{"Ref": ids(synth)["bucket"]}]}, "object": {"key": [{"prefix": "input/"}]}},
    }
    rule = only(synth.template_json, "AWS::Events::Rule", "TriggerObjectCreatedRule")[1]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [ids(synth)["queue"], "Arn"]}


def test_queue_and_dlq(synth: Synth) -> None:
    i = ids(synth)
    queue = synth.template_json["Resources"][i["queue"]]["Properties"]
    dlq = synth.template_json["Resources"][i["dlq"]]["Properties"]
    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": [i["key"], "Arn"]}
    assert dlq["KmsMasterKeyId"] == {"Fn::GetAtt": [i["key"], "Arn"]}
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [i["dlq"], "Arn"]},
                                      "maxReceiveCount": MAX_RECEIVE_COUNT}
    assert MAX_RECEIVE_COUNT == 10  # about an hour of backoff on quota errors (infra/lambdas/README.md)
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    timeout = synth.template_json["Resources"][i["trigger_fn"]]["Properties"]["Timeout"]
    assert timeout == TRIGGER_TIMEOUT and queue["VisibilityTimeout"] >= 6 * timeout


def test_every_queue_is_tls_only(synth: Synth) -> None:
    policies = resources(synth.template_json, "AWS::SQS::QueuePolicy").values()
    covered = set()
    for p in policies:
        if any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in p["Properties"]["PolicyDocument"]["Statement"]):
            covered |= {q["Ref"] for q in p["Properties"]["Queues"]}
    assert covered == set(resources(synth.template_json, "AWS::SQS::Queue"))


def test_event_source_reports_batch_item_failures(synth: Synth) -> None:
    i = ids(synth)
    synth.template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "EventSourceArn": {"Fn::GetAtt": [i["queue"], "Arn"]},
        "FunctionName": {"Ref": i["trigger_fn"]},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BatchSize": Match.any_value(),
        "ScalingConfig": {"MaximumConcurrency": Match.any_value()},
    })
    mapping = next(iter(resources(synth.template_json, "AWS::Lambda::EventSourceMapping").values()))["Properties"]
    assert 1 <= mapping["BatchSize"] <= 10


def test_trigger_function(synth: Synth) -> None:
    fn = synth.template_json["Resources"][ids(synth)["trigger_fn"]]["Properties"]
    assert fn["Runtime"] == "python3.14" and fn["Handler"] == "trigger.handler.handler"
    env = fn["Environment"]["Variables"]
    # exactly what the handler reads (it derives the queue URL from each record's eventSourceARN: no QUEUE_URL)
    assert set(env) == set(TRIGGER_ENV)
    assert env["INPUT_PREFIX"] == "input/" and env["OUTPUT_PREFIX"] == "output/" and env["JOB_PREFIX"] == "dq"
    assert env["INSTANCE_TYPE"] == "ml.t3.medium" and env["INSTANCE_COUNT"] == "1"
    assert env["VOLUME_SIZE_GB"] == "30" and env["MAX_RUNTIME_SECONDS"] == "3600"
    assert env["PROCESSING_MODE"] == "auto"  # the documented default: streams from 64 MiB of input
    assert "PROCESSING_MAX_ROWS_IN_MEMORY" not in env  # unset by default: the job derives it from its memory
    assert env["ROLE_ARN"] == {"Fn::GetAtt": [ids(synth)["job_role"], "Arn"]}
    assert env["KMS_KEY_ARN"] == {"Fn::GetAtt": [ids(synth)["key"], "Arn"]}
    assert env["CODE_S3_URI"]["Fn::Sub"].endswith(f"/{env['CODE_VERSION']}.zip")
    # issue 11 items 3 and 5: where the job's copy goes, where refusals are counted and told
    assert env["STAGING_PREFIX"] == "staging/" and env["METRICS_NAMESPACE"] == "DataQualityPipeline"
    assert env["ALERT_TOPIC_ARN"] == {"Ref": ids(synth)["topic"]}
    log_group_id = fn["LoggingConfig"]["LogGroup"]["Ref"]
    assert synth.template_json["Resources"][log_group_id]["Properties"]["RetentionInDays"] == 30


def trigger_env_with_context(tmp_path, **context: Any) -> dict[str, Any]:
    """The trigger Lambda's environment of a second, smaller synthesis with cdk.json's context plus ``context`` (no
    cdk-nag; the session template has the defaults)."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import settings_from_context
    from infra.stack import DataQualityStack
    from infra_testlib import cdk_json_context, source_paths, write_configs

    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context={**cdk_json_context(), **context})
    settings = settings_from_context(app.node.try_get_context, configs_dir=write_configs(tmp_path / "configs"))
    stack = DataQualityStack(app, "ContextTest", settings=settings, paths=source_paths(tmp_path))
    functions = Template.from_stack(stack).find_resources("AWS::Lambda::Function", {
        "Properties": {"Description": Match.string_like_regexp("SageMaker Processing job")},
    })
    [function] = functions.values()
    return function["Properties"]["Environment"]["Variables"]


def test_processing_mode_from_context_reaches_the_trigger(tmp_path) -> None:
    # GIVEN -c processing_mode=memory  WHEN synthesized
    env = trigger_env_with_context(tmp_path, processing_mode="memory")
    # THEN the trigger Lambda passes it on to every job as PROCESSING_MODE
    assert env["PROCESSING_MODE"] == "memory" and env["INSTANCE_TYPE"] == "ml.t3.medium"


def test_max_rows_in_memory_from_context_reaches_the_trigger(tmp_path) -> None:
    # GIVEN -c max_rows_in_memory=5000000 (a string, as the command line gives it)  WHEN synthesized
    env = trigger_env_with_context(tmp_path, max_rows_in_memory="5000000")
    # THEN the trigger Lambda gets it as PROCESSING_MAX_ROWS_IN_MEMORY (it passes it on to every job);
    # everything else is the default environment
    assert env["PROCESSING_MAX_ROWS_IN_MEMORY"] == "5000000"
    assert set(env) == {*TRIGGER_ENV, "PROCESSING_MAX_ROWS_IN_MEMORY"}
    assert env["PROCESSING_MODE"] == "auto"


def test_trigger_iam_is_exact(synth: Synth) -> None:
    i = ids(synth)
    by_sid = {s.get("Sid"): s for s in statements(synth.template_json, "TriggerRole")}
    start = by_sid["StartProcessingJobs"]
    assert sorted(as_list(start["Action"])) == ["sagemaker:AddTags", "sagemaker:CreateProcessingJob"]
    assert start["Resource"]["Fn::Join"][1][-1] == ":processing-job/dq-*"
    assert "Condition" not in start
    assert by_sid["PassJobRoleToSageMaker"] == {
        "Sid": "PassJobRoleToSageMaker",
        "Action": "iam:PassRole",
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [i["job_role"], "Arn"]},
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    }
    assert by_sid["VolumeKeyGrant"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert by_sid["VolumeKeyGrant"]["Resource"] == {"Fn::GetAtt": [i["key"], "Arn"]}
    all_statements = statements(synth.template_json, "TriggerRole")
    assert object_suffix(by_sid["CheckBaseline"]["Resource"], i["bucket"]) == "baselines/*/baseline.json"
    assert by_sid["CheckBaseline"]["Action"] == "s3:GetObject"
    # ListBucket (prefix-conditioned) turns a missing baseline into a 404 instead of an ambiguous 403
    assert by_sid["ListBaselines"]["Action"] == "s3:ListBucket"
    assert by_sid["ListBaselines"]["Resource"] == {"Fn::GetAtt": [i["bucket"], "Arn"]}
    assert by_sid["ListBaselines"]["Condition"] == {"StringLike": {"s3:prefix": ["baselines/*"]}}
    s3_actions = sorted({a for s in all_statements for a in as_list(s["Action"]) if a.startswith("s3:")})
    assert s3_actions == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
                          "s3:PutObject"]
    # issue 11 items 2 and 3: reads (HeadObject/copy source) only under the input prefix, writes only its staging
    # copies; the KMS use for the copy only through S3; refusals counted in the stack's namespace and told
    assert sorted(as_list(by_sid["ReadInputVersions"]["Action"])) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert object_suffix(by_sid["ReadInputVersions"]["Resource"], i["bucket"]) == "input/*"
    assert by_sid["ListInputPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["input/*"]}}
    assert sorted(as_list(by_sid["WriteStagedCopies"]["Action"])) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert object_suffix(by_sid["WriteStagedCopies"]["Resource"], i["bucket"]) == "staging/*"
    writes = [s for s in all_statements if {"s3:PutObject", "s3:AbortMultipartUpload"} & set(as_list(s["Action"]))]
    assert writes == [by_sid["WriteStagedCopies"]]
    copy_key = by_sid["CopyWithDataKey"]
    assert sorted(as_list(copy_key["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert copy_key["Resource"] == {"Fn::GetAtt": [i["key"], "Arn"]}
    assert copy_key["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".", {"Ref": "AWS::URLSuffix"}]]}
    assert by_sid["CountRefusedKeys"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "DataQualityPipeline"}}
    assert by_sid["PublishRefusals"] == {"Sid": "PublishRefusals", "Action": "sns:Publish", "Effect": "Allow",
                                         "Resource": {"Ref": i["topic"]}}
    assert by_sid["EncryptRefusals"]["Resource"] == {"Fn::GetAtt": [i["topic_key"], "Arn"]}
    assert any("sqs:ChangeMessageVisibility" in as_list(s["Action"])
               and s["Resource"] == {"Fn::GetAtt": [i["queue"], "Arn"]} for s in all_statements)
    # PassRole appears exactly once, and only for the job role
    passes = [s for s in all_statements if "iam:PassRole" in as_list(s["Action"])]
    assert len(passes) == 1
    sagemaker = [a for s in all_statements for a in as_list(s["Action"]) if a.startswith("sagemaker:")]
    assert sorted(sagemaker) == ["sagemaker:AddTags", "sagemaker:CreateProcessingJob"]


# --- least privilege everywhere ------------------------------------------------------------------------------------

STAR_REASONS = {
    "EcrAuthorizationToken": "ecr:GetAuthorizationToken has no resource-level permissions",
    "ProcessingJobInstanceMetrics": "cloudwatch:PutMetricData has no resource-level permissions",
    "PublishQualityMetrics": "cloudwatch:PutMetricData has no resource-level permissions",
    "CountRefusedKeys": "cloudwatch:PutMetricData has no resource-level permissions",
}


def test_no_star_resource_without_a_written_reason(synth: Synth) -> None:
    for policy in resources(synth.template_json, "AWS::IAM::Policy").values():
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert not any("*" in a for a in as_list(s["Action"])), s
            if "*" in as_list(s["Resource"]):
                assert s.get("Sid") in STAR_REASONS, s
                if "cloudwatch:PutMetricData" in as_list(s["Action"]):
                    assert "cloudwatch:namespace" in s["Condition"]["StringEquals"]
                else:
                    assert as_list(s["Action"]) == ["ecr:GetAuthorizationToken"]


def test_job_role(synth: Synth) -> None:
    i = ids(synth)
    role = synth.template_json["Resources"][i["job_role"]]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert "ManagedPolicyArns" not in role
    by_sid = {s.get("Sid"): s for s in statements(synth.template_json, "ProcessingJobRole")}
    # the job reads its staged copy and the baselines, never the input prefix (issue 11 item 3: its current version
    # may be a newer upload than the job's)
    assert by_sid["ReadInputObjects"]["Action"] == "s3:GetObject"
    assert sorted(object_suffix(r, i["bucket"]) for r in by_sid["ReadInputObjects"]["Resource"]) == [
        "baselines/*", "staging/*"]
    assert sorted(by_sid["ListInputPrefix"]["Condition"]["StringLike"]["s3:prefix"]) == ["baselines/*", "staging/*"]
    job_reads = {object_suffix(r, i["bucket"]) for st in statements(synth.template_json, "ProcessingJobRole")
                 for r in as_list(st["Resource"]) if "s3:GetObject" in as_list(st["Action"])}
    assert not any(r and r.startswith("input/") for r in job_reads), job_reads
    assert sorted(object_suffix(r, i["bucket"]) for r in by_sid["WriteOutputObjects"]["Resource"]) == [
        "output/*", "quarantine/*"]
    assert by_sid["ReadCodeBundle"]["Action"] == "s3:GetObject"
    assert by_sid["ReadCodeBundle"]["Resource"]["Fn::Join"][1][-1].endswith(".zip")
    assert by_sid["PullImage"]["Resource"]["Fn::Join"][1][-1] == ":repository/sagemaker-scikit-learn"
    assert by_sid["ProcessingJobLogStreams"]["Resource"]["Fn::Join"][1][-1].endswith(
        ":log-group:/aws/sagemaker/ProcessingJobs:log-stream:dq-*")
    assert by_sid["ProcessingJobInstanceMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/ProcessingJobs"}}
    assert by_sid["UseDataKey"]["Resource"] == {"Fn::GetAtt": [i["key"], "Arn"]}


def test_no_recursion_outputs_never_under_the_input_prefix(synth: Synth) -> None:
    """From the template: the rule's key prefix, the jobs' output prefix and every S3 write of the stack are
    disjoint."""
    i = ids(synth)
    (rule_prefix,) = [p["prefix"] for p in s3_rule_pattern(synth)["detail"]["object"]["key"]]
    output_prefix = trigger_env(synth)["OUTPUT_PREFIX"]
    assert trigger_env(synth)["INPUT_PREFIX"] == rule_prefix
    assert not output_prefix.startswith(rule_prefix) and not rule_prefix.startswith(output_prefix)
    # every write to the data bucket anywhere in the stack targets objects under the output prefix only
    write_actions = {"s3:PutObject", "s3:PutObject*", "s3:Put*", "s3:*", "s3:CopyObject", "s3:RestoreObject"}
    writes = []
    for policy in resources(synth.template_json, "AWS::IAM::Policy").values():
        for s in policy["Properties"]["PolicyDocument"]["Statement"]:
            if s["Effect"] == "Allow" and write_actions & set(as_list(s["Action"])):
                for resource in as_list(s["Resource"]):
                    if resource == "*" or (json.dumps(resource).find(i["bucket"]) >= 0):
                        writes.append(object_suffix(resource, i["bucket"]))
    assert sorted(writes) == ["baselines/*/baseline.json", "output/*", "output/*/cleaned/_SUCCESS",
                              "output/*/quality/_metrics_published", "output/*/transformed/_SUCCESS",
                              "quarantine/*", "staging/*"], writes
    for prefix in writes:
        assert not prefix.startswith(rule_prefix) and not rule_prefix.startswith(prefix.rstrip("*"))
    # and the job role in particular cannot write under the input prefix
    job_writes = [s for s in statements(synth.template_json, "ProcessingJobRole")
                  if write_actions & set(as_list(s["Action"]))]
    for s in job_writes:
        for resource in as_list(s["Resource"]):
            suffix = object_suffix(resource, i["bucket"])
            assert suffix is not None and not suffix.startswith(rule_prefix)
            assert not rule_prefix.startswith(suffix.rstrip("*"))


# --- metrics -------------------------------------------------------------------------------------------------------

def test_metrics_rule_and_function(synth: Synth) -> None:
    i = ids(synth)
    rule = only(synth.template_json, "AWS::Events::Rule", "MetricsJobStateChangeRule")[1]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Processing Job State Change"],
        "detail": {"ProcessingJobStatus": ["Completed", "Failed", "Stopped"], "ProcessingJobName": [{"prefix": "dq-"}]},
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [i["metrics_fn"], "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [i["metrics_dlq"], "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    fn = synth.template_json["Resources"][i["metrics_fn"]]["Properties"]
    assert fn["Runtime"] == "python3.14"
    assert fn["Environment"]["Variables"]["NAMESPACE"] == "DataQualityPipeline"
    assert fn["Environment"]["Variables"]["JOB_PREFIX"] == "dq"
    assert fn["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [i["metrics_dlq"], "Arn"]}}
    synth.template.has_resource_properties("AWS::Lambda::EventInvokeConfig",
                                           {"FunctionName": {"Ref": i["metrics_fn"]}, "MaximumRetryAttempts": 2})
    assert fn["Environment"]["Variables"]["BASELINE_PREFIX"] == "baselines/"
    assert fn["Environment"]["Variables"]["OUTPUT_PREFIX"] == "output/"
    assert fn["Environment"]["Variables"]["DATA_BUCKET"] == {"Ref": i["bucket"]}
    assert fn["Environment"]["Variables"]["ALERT_TOPIC_ARN"] == {"Ref": i["topic"]}


def test_metrics_iam_is_exact_for_metrics_and_baseline_promotion(synth: Synth) -> None:
    # design.md Contract 4: read quality/metrics.json + quality/profile.json, conditional put of the baseline, the
    # publish-once marker (HeadObject + conditional put), the _SUCCESS markers, the data key to decrypt the reads and
    # encrypt the puts (SSE-KMS), PutMetricData in our namespace, Publish to the alert topic with its key. Nothing else.
    i = ids(synth)
    key = {"Fn::GetAtt": [i["key"], "Arn"]}
    all_statements = statements(synth.template_json, "MetricsRole")
    by_sid = {s.get("Sid"): s for s in all_statements}
    assert by_sid["ReadJobOutputs"]["Action"] == "s3:GetObject"
    assert sorted(object_suffix(r, i["bucket"]) for r in by_sid["ReadJobOutputs"]["Resource"]) == [
        "output/*/quality/metrics.json", "output/*/quality/profile.json"]
    assert by_sid["PromoteBaseline"]["Action"] == "s3:PutObject"
    assert object_suffix(by_sid["PromoteBaseline"]["Resource"], i["bucket"]) == "baselines/*/baseline.json"
    assert by_sid["DecryptJobOutputs"] == {"Sid": "DecryptJobOutputs", "Action": "kms:Decrypt", "Effect": "Allow",
                                           "Resource": key}
    assert by_sid["EncryptBaselines"] == {"Sid": "EncryptBaselines", "Action": "kms:GenerateDataKey", "Effect": "Allow",
                                          "Resource": key}
    assert by_sid["PublishQualityMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "DataQualityPipeline"}}
    s3_grants = sorted((a, object_suffix(r, i["bucket"])) for s in all_statements for a in as_list(s["Action"])
                       if a.startswith("s3:") for r in as_list(s["Resource"]))
    assert s3_grants == [("s3:GetObject", "output/*/quality/_metrics_published"),
                         ("s3:GetObject", "output/*/quality/metrics.json"),
                         ("s3:GetObject", "output/*/quality/profile.json"),
                         ("s3:PutObject", "baselines/*/baseline.json"), ("s3:PutObject", "output/*/cleaned/_SUCCESS"),
                         ("s3:PutObject", "output/*/quality/_metrics_published"),
                         ("s3:PutObject", "output/*/transformed/_SUCCESS")]
    assert by_sid["PublishOnceMarker"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    kms_grants = sorted((a, json.dumps(s["Resource"])) for s in all_statements for a in as_list(s["Action"])
                        if a.startswith("kms:"))
    topic_key = {"Fn::GetAtt": [i["topic_key"], "Arn"]}
    assert kms_grants == sorted([("kms:Decrypt", json.dumps(key)), ("kms:GenerateDataKey", json.dumps(key)),
                                 ("kms:Decrypt", json.dumps(topic_key)),
                                 ("kms:GenerateDataKey", json.dumps(topic_key))])
    assert by_sid["PublishAlerts"] == {"Sid": "PublishAlerts", "Action": "sns:Publish", "Effect": "Allow",
                                       "Resource": {"Ref": i["topic"]}}
    assert by_sid["EncryptAlerts"]["Resource"] == topic_key
    sns_actions = [a for s in all_statements for a in as_list(s["Action"]) if a.startswith("sns:")]
    assert sns_actions == ["sns:Publish"]


def test_job_role_reads_baselines_and_writes_quarantine(synth: Synth) -> None:
    i = ids(synth)
    all_statements = statements(synth.template_json, "ProcessingJobRole")
    reads = {object_suffix(r, i["bucket"]) for s in all_statements if "s3:GetObject" in as_list(s["Action"])
             for r in as_list(s["Resource"])}
    writes = {object_suffix(r, i["bucket"]) for s in all_statements if "s3:PutObject" in as_list(s["Action"])
              for r in as_list(s["Resource"])}
    assert "baselines/*" in reads and "baselines/*" not in writes
    assert writes == {"output/*", "quarantine/*"}
    (use_key,) = [s for s in all_statements if s.get("Sid") == "UseDataKey"]
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= set(as_list(use_key["Action"]))


def test_lambda_logical_ids_are_stable(synth: Synth) -> None:
    # infra/python_function.py builds both functions in their owning construct: the logical IDs (and so the deployed
    # resources) are the ones from before the helper existed. A change here replaces functions, roles and log groups.
    expected = {
        "TriggerLogGroupF6CAAB54": "AWS::Logs::LogGroup", "TriggerRoleC1CF476C": "AWS::IAM::Role",
        "TriggerRoleDefaultPolicy2CC3CF8D": "AWS::IAM::Policy", "TriggerFunctionAD2A6013": "AWS::Lambda::Function",
        "MetricsLogGroup39EF0C8F": "AWS::Logs::LogGroup", "MetricsRole0C3E22AD": "AWS::IAM::Role",
        "MetricsRoleDefaultPolicyFD198FC3": "AWS::IAM::Policy", "MetricsFunctionB5D3CECE": "AWS::Lambda::Function",
    }
    found = {k: v["Type"] for k, v in synth.template_json["Resources"].items() if k in expected}
    assert found == expected
    codes = []
    for fn_id, role_id, log_id in (("TriggerFunctionAD2A6013", "TriggerRoleC1CF476C", "TriggerLogGroupF6CAAB54"),
                                   ("MetricsFunctionB5D3CECE", "MetricsRole0C3E22AD", "MetricsLogGroup39EF0C8F")):
        fn = synth.template_json["Resources"][fn_id]["Properties"]
        codes.append(fn["Code"])
        assert fn["Role"] == {"Fn::GetAtt": [role_id, "Arn"]}
        assert fn["LoggingConfig"]["LogGroup"] == {"Ref": log_id}
        assert (fn["Runtime"], fn["Handler"]) == ("python3.14", f"{fn_id.split('Function')[0].lower()}.handler.handler")
        role = synth.template_json["Resources"][role_id]["Properties"]
        assert "ManagedPolicyArns" not in role
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    # one asset for both functions (infra/lambda_asset.py): the same code, different handler strings
    assert codes[0] == codes[1]


# --- alarms, topic, dashboard --------------------------------------------------------------------------------------

def alarms_named(synth: Synth, dataset: str, metric: str) -> list[dict[str, Any]]:
    return [
        r["Properties"] for r in resources(synth.template_json, "AWS::CloudWatch::Alarm").values()
        if r["Properties"].get("MetricName") == metric
        and r["Properties"].get("Dimensions") == [{"Name": "Dataset", "Value": dataset}]
    ]


def alarm(synth: Synth, dataset: str, metric: str) -> dict[str, Any]:
    found = alarms_named(synth, dataset, metric)
    assert len(found) == 1, (dataset, metric)
    return found[0]


def test_dataset_alarms_take_thresholds_from_configs(synth: Synth) -> None:
    topic = {"Ref": ids(synth)["topic"]}
    expected = {
        "MissingRateAfter": ("max_missing_rate_after", "GreaterThanThreshold", "Maximum"),
        "RejectedRate": ("max_rejected_rate", "GreaterThanThreshold", "Maximum"),
        "MalformedJsonRate": ("max_malformed_json_rate", "GreaterThanThreshold", "Maximum"),
        "DuplicateRate": ("max_duplicate_rate", "GreaterThanThreshold", "Maximum"),
        "RowsOut": ("min_rows_out", "LessThanThreshold", "Minimum"),
    }
    for dataset, configured in (("default", DEFAULT_THRESHOLDS), ("orders", ORDERS_THRESHOLDS)):
        for metric, (key, comparison, statistic) in expected.items():
            if key not in configured:
                # a threshold the dataset config does not set is not checked by the job's gate: no alarm
                assert not alarms_named(synth, dataset, metric), (dataset, metric)
                continue
            a = alarm(synth, dataset, metric)
            assert a["Namespace"] == "DataQualityPipeline"
            assert a["Threshold"] == configured[key], (dataset, metric)
            assert a["ComparisonOperator"] == comparison and a["Statistic"] == statistic
            assert a["TreatMissingData"] == "notBreaching"
            assert a["AlarmActions"] == [topic] and "OKActions" not in a
        for metric in ("JobFailed", "MetricsUnavailable", "QualityGateFailed", "DriftedColumns"):
            a = alarm(synth, dataset, metric)
            assert (a["Threshold"], a["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
            assert (a["Statistic"], a["Period"], a["EvaluationPeriods"], a["DatapointsToAlarm"]) == (
                "Maximum", 300, 1, 1)
            assert a["AlarmActions"] == [topic] and "OKActions" not in a


def test_drift_alarms(synth: Synth) -> None:
    topic = {"Ref": ids(synth)["topic"]}
    for dataset, psi_alarm in (("default", DEFAULT_PSI_ALARM), ("orders", ORDERS_PSI_ALARM)):
        # DriftMaxPsi >= the dataset config's drift.psi_alarm, one batch is enough
        a = alarm(synth, dataset, "DriftMaxPsi")
        assert a["Threshold"] == psi_alarm, dataset
        assert (a["ComparisonOperator"], a["Statistic"], a["Period"]) == (
            "GreaterThanOrEqualToThreshold", "Maximum", 300)
        assert (a["EvaluationPeriods"], a["DatapointsToAlarm"], a["TreatMissingData"]) == (1, 1, "notBreaching")
        assert a["AlarmActions"] == [topic] and "OKActions" not in a
        # DriftUnavailable >= 1 in 3 of 3 hourly periods: the first batch of a dataset (no baseline yet) never pages
        a = alarm(synth, dataset, "DriftUnavailable")
        assert (a["Threshold"], a["ComparisonOperator"], a["Statistic"]) == (
            1, "GreaterThanOrEqualToThreshold", "Maximum")
        assert (a["Period"], a["EvaluationPeriods"], a["DatapointsToAlarm"]) == (3600, 3, 3)
        assert a["TreatMissingData"] == "notBreaching"
        assert "first batch" in a["AlarmDescription"]
        assert a["AlarmActions"] == [topic] and "OKActions" not in a


def test_psi_alarm_null_turns_the_psi_alarm_off(tmp_path) -> None:
    # a dataset config with "drift": {"psi_alarm": null} gets no DriftMaxPsi alarm (the job's PSI alarm is off too)
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import QualityThresholds
    from infra.quality_alarms import QualityAlarms, QualityAlarmsProps

    stack = cdk.Stack(cdk.App(), "AlarmsOnly")
    base = dict.fromkeys(("max_missing_rate_after", "max_rejected_rate", "max_malformed_json_rate",
                          "max_duplicate_rate"), 0.1)
    alarms = QualityAlarms(stack, "Alarms", props=QualityAlarmsProps(
        namespace="DataQualityPipeline", dead_letter_queues={}, functions=[],
        datasets={"views": QualityThresholds(**base, min_rows_out=1, psi_alarm=None),
                  "clicks": QualityThresholds(**base, min_rows_out=1, psi_alarm=0.3)}))
    assert "DriftMaxPsi" not in alarms.dataset_alarms["views"]
    assert {"DriftedColumns", "DriftUnavailable", "QualityGateFailed"} <= set(alarms.dataset_alarms["views"])
    body = Template.from_stack(stack).find_resources("AWS::CloudWatch::Alarm")
    psi = [r["Properties"] for r in body.values() if r["Properties"].get("MetricName") == "DriftMaxPsi"]
    assert [(p["Dimensions"][0]["Value"], p["Threshold"]) for p in psi] == [("clicks", 0.3)]


def test_one_alarm_per_rule_marked_for_alarming(synth: Synth) -> None:
    """issue 14: the orders config marks rule order_id.unique with "alarm": true: one RuleViolations alarm with the
    Dataset and Rule dimensions the metrics Lambda publishes; its other rule and the default dataset get none."""
    topic = {"Ref": ids(synth)["topic"]}
    found = [r["Properties"] for r in resources(synth.template_json, "AWS::CloudWatch::Alarm").values()
             if r["Properties"].get("MetricName") == "RuleViolations"]
    assert len(found) == 1
    (a,) = found
    assert a["Namespace"] == "DataQualityPipeline"
    assert a["Dimensions"] == [{"Name": "Dataset", "Value": "orders"}, {"Name": "Rule", "Value": "order_id.unique"}]
    assert (a["Statistic"], a["Period"], a["Threshold"], a["ComparisonOperator"]) == (
        "Maximum", 300, 1, "GreaterThanOrEqualToThreshold")
    assert (a["EvaluationPeriods"], a["DatapointsToAlarm"], a["TreatMissingData"]) == (1, 1, "notBreaching")
    assert a["AlarmActions"] == [topic] and "OKActions" not in a
    assert "order_id.unique" in a["AlarmDescription"] and a["AlarmName"].endswith("OrdersRule-order_id.unique")


def test_operational_alarms(synth: Synth) -> None:
    i = ids(synth)
    topic = {"Ref": i["topic"]}
    alarms = [r["Properties"] for r in resources(synth.template_json, "AWS::CloudWatch::Alarm").values()]
    # 11 per dataset for default; orders.json sets 3 of the 5 quality thresholds, so 2 fewer, and marks one rule for
    # alarming (+1); 3 Metrics Insights alarms over the datasets without a config; + 7 operational
    assert len(alarms) == 11 + (11 - 2 + 1) + 3 + 7
    # refused uploads (issue 11 item 5): the trigger's KeyRefused, all reasons, in the stack's namespace
    (refused,) = [a for a in alarms if a.get("MetricName") == "KeyRefused"]
    assert refused["Namespace"] == "DataQualityPipeline" and "Dimensions" not in refused
    assert (refused["Statistic"], refused["Threshold"], refused["ComparisonOperator"]) == (
        "Sum", 1, "GreaterThanOrEqualToThreshold")
    assert refused["AlarmActions"] == [topic] and "OKActions" not in refused
    for queue in (i["dlq"], i["metrics_dlq"]):
        (a,) = [a for a in alarms if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
                and a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]]
        assert (a["Threshold"], a["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert a["AlarmActions"] == [topic] and "OKActions" not in a
    for fn in (i["trigger_fn"], i["metrics_fn"]):
        for metric in ("Errors", "Throttles"):
            (a,) = [a for a in alarms if a.get("MetricName") == metric
                    and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fn}}]]
            assert a["Namespace"] == "AWS/Lambda" and a["Threshold"] == 1
            assert a["AlarmActions"] == [topic] and "OKActions" not in a
    assert all(a["TreatMissingData"] == "notBreaching" for a in alarms)


def test_topic_is_kms_encrypted_and_tls_only(synth: Synth) -> None:
    i = ids(synth)
    topic = synth.template_json["Resources"][i["topic"]]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [i["topic_key"], "Arn"]}
    (policy,) = resources(synth.template_json, "AWS::SNS::TopicPolicy").values()
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy["Properties"]["PolicyDocument"]["Statement"])
    key = synth.template_json["Resources"][i["topic_key"]]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"} for s in key["KeyPolicy"]["Statement"])
    # no alert_email in the fixture settings -> no subscription
    assert not resources(synth.template_json, "AWS::SNS::Subscription")


def _joined(value: Any) -> str:
    """A template string value with Fn::Join flattened and pseudo parameters written as ${Name}."""
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_joined(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"] + "}"
    return value


def test_topic_policy_lets_this_stacks_alarms_publish(synth: Synth) -> None:
    # enforce_ssl's topic policy replaces SNS's default one: without an Allow for cloudwatch.amazonaws.com every alarm
    # action fails in AWS (issue 11 item 1)
    i = ids(synth)
    (policy,) = resources(synth.template_json, "AWS::SNS::TopicPolicy").values()
    (allow,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert (allow["Effect"], allow["Action"], allow["Resource"]) == ("Allow", "sns:Publish", {"Ref": i["topic"]})
    assert set(allow["Condition"]) == {"StringEquals", "ArnLike"}
    assert set(allow["Condition"]["StringEquals"]) == {"aws:SourceAccount"}
    source_arn = _joined(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert source_arn == (f"arn:${{AWS::Partition}}:cloudwatch:${{AWS::Region}}:${{AWS::AccountId}}:alarm:"
                          f"{synth.stack.stack_name}_*")
    # and every alarm's name falls under that ARN pattern
    for a in resources(synth.template_json, "AWS::CloudWatch::Alarm").values():
        assert a["Properties"]["AlarmName"].startswith(f"{synth.stack.stack_name}_"), a["Properties"]["AlarmName"]
    # the key side: CloudWatch may use the topic key for this account's alarms
    key = synth.template_json["Resources"][i["topic_key"]]["Properties"]["KeyPolicy"]["Statement"]
    (kallow,) = [s for s in key if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert set(kallow["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert set(kallow["Condition"]) == {"StringEquals"}


def test_no_ok_actions_and_a_recovery_rule_for_alarm_to_ok(synth: Synth) -> None:
    # a deploy (INSUFFICIENT_DATA -> OK for every alarm) must send nothing: no OK actions; ALARM -> OK is one message
    # through an EventBridge rule on CloudWatch's state-change events (issue 11 item 8)
    i = ids(synth)
    for a in resources(synth.template_json, "AWS::CloudWatch::Alarm").values():
        assert "OKActions" not in a["Properties"] and "InsufficientDataActions" not in a["Properties"]
    (_rule_id, rule) = only(synth.template_json, "AWS::Events::Rule", "AlarmsRecoveryRule")
    props = rule["Properties"]
    assert props["EventPattern"] == {
        "source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": [{"prefix": f"{synth.stack.stack_name}_"}], "previousState": {"value": ["ALARM"]},
                   "state": {"value": ["OK"]}},
    }
    assert props["Targets"] == [{"Arn": {"Ref": i["topic"]}, "Id": "Target0"}]
    rule_arn = f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{props['Name']}"
    (policy,) = resources(synth.template_json, "AWS::SNS::TopicPolicy").values()
    key = synth.template_json["Resources"][i["topic_key"]]["Properties"]["KeyPolicy"]["Statement"]
    (allow,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert _joined(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_arn
    assert set(allow["Condition"]["StringEquals"]) == {"aws:SourceAccount"}
    # the key: no aws:Source* condition (undocumented whether EventBridge's KMS request carries them; see docs/infra.md)
    (kallow,) = [s for s in key if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert set(kallow["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"} and "Condition" not in kallow


def test_datasets_without_a_config_are_covered_by_metrics_insights_alarms(synth: Synth) -> None:
    # input/other-ds/ publishes metrics that no per-dataset alarm watches (issue 11 item 7)
    topic = {"Ref": ids(synth)["topic"]}
    query_alarms = {a["Properties"]["AlarmName"]: a["Properties"]
                    for a in resources(synth.template_json, "AWS::CloudWatch::Alarm").values()
                    if "Metrics" in a["Properties"]}
    for metric in ("JobFailed", "QualityGateFailed", "MetricsUnavailable"):
        a = query_alarms[f"{synth.stack.stack_name}_OtherDatasets{metric}"]
        (query,) = a["Metrics"]
        assert query["Expression"] == (f'SELECT MAX({metric}) FROM SCHEMA("DataQualityPipeline", Dataset) '
                                       "WHERE Dataset != 'default' AND Dataset != 'orders'")
        assert (query["Period"], query["ReturnData"]) == (300, True)
        assert (a["Threshold"], a["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert (a["EvaluationPeriods"], a["DatapointsToAlarm"], a["TreatMissingData"]) == (1, 1, "notBreaching")
        assert a["AlarmActions"] == [topic] and "OKActions" not in a
    assert len(query_alarms) == 3


def test_dashboard_shows_metrics_and_alarms(synth: Synth) -> None:
    (dashboard,) = resources(synth.template_json, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for name in ("MissingRateAfter", "RejectedRate", "RowsOut", "JobFailed", "ProcessingSeconds",
                 "ApproximateNumberOfMessagesVisible", "Errors",
                 "DriftMaxPsi", "DriftedColumns", "DriftUnavailable", "QualityGateFailed", "QualityGateWarned"):
        assert name in body
    for alarm_id in resources(synth.template_json, "AWS::CloudWatch::Alarm"):
        assert alarm_id in body, alarm_id


def test_outputs(synth: Synth) -> None:
    outputs = synth.template_json["Outputs"]
    for name in ("DataBucketName", "AlertTopicArn", "TriggerQueueUrl", "TriggerDlqUrl", "DashboardName", "JobRoleArn"):
        assert name in outputs
    assert outputs["DataBucketName"]["Value"] == {"Ref": ids(synth)["bucket"]}


# --- staging (issue 11 item 3) -------------------------------------------------------------------------------------


def test_staged_copies_expire(synth: Synth) -> None:
    bucket = synth.template_json["Resources"][ids(synth)["bucket"]]["Properties"]
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireStagedCopies"] == {
        "Id": "ExpireStagedCopies", "Prefix": "staging/", "Status": "Enabled", "ExpirationInDays": 7,
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}
    # the bucket-wide rule still removes the expired delete markers (and aborts incomplete multipart copies)
    assert rules["ExpireNoncurrentVersions"]["ExpiredObjectDeleteMarker"] is True
    assert rules["ExpireNoncurrentVersions"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_staging_settings_reach_bucket_trigger_and_job_role(tmp_path) -> None:
    # GIVEN -c staging_prefix=copies/ -c staging_expiration_days=3
    import aws_cdk as cdk

    from infra.config import settings_from_context
    from infra.stack import DataQualityStack
    from infra_testlib import cdk_json_context, source_paths, write_configs

    context = {**cdk_json_context(), "staging_prefix": "copies/", "staging_expiration_days": "3"}
    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context=context)
    settings = settings_from_context(app.node.try_get_context, configs_dir=write_configs(tmp_path / "configs"))
    template = DataQualityStack(app, "StagingTest", settings=settings, paths=source_paths(tmp_path))
    t = cdk.assertions.Template.from_stack(template).to_json()
    # THEN the trigger stages there, the copies expire after 3 days, and the job role reads there
    assert only(t, "AWS::Lambda::Function", "TriggerFunction")[1]["Properties"]["Environment"]["Variables"][
        "STAGING_PREFIX"] == "copies/"
    bucket = only(t, "AWS::S3::Bucket", "DataBucket")[1]["Properties"]
    [rule] = [r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Id"] == "ExpireStagedCopies"]
    assert (rule["Prefix"], rule["ExpirationInDays"]) == ("copies/", 3)
    reads = {s["Sid"]: s for s in statements(t, "ProcessingJobRole")}["ReadInputObjects"]["Resource"]
    assert "/copies/*" in json.dumps(reads) and "/staging/*" not in json.dumps(reads)


def test_refused_metric_name_is_the_handlers() -> None:
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "lambdas"))
    from infra.processing_trigger import REFUSED_METRIC
    from lambda_helpers import load_handler

    assert load_handler("trigger").REFUSED_METRIC == REFUSED_METRIC


# ---- the code bundle under a customer-managed bootstrap key (issue 11 item 11) ---------------------------------------

KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def job_role_statements_with_context(tmp_path, **context: Any) -> dict[str | None, dict[str, Any]]:
    """The job role's policy statements, by Sid, of a second synthesis with ``context`` (no cdk-nag)."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import settings_from_context
    from infra.stack import DataQualityStack
    from infra_testlib import cdk_json_context, source_paths, write_configs

    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context={**cdk_json_context(), **context})
    settings = settings_from_context(app.node.try_get_context, configs_dir=write_configs(tmp_path / "configs"))
    stack = DataQualityStack(app, "AssetKeyTest", settings=settings, paths=source_paths(tmp_path))
    return {s.get("Sid"): s for s in statements(Template.from_stack(stack).to_json(), "ProcessingJobRole")}


def test_job_role_has_no_asset_key_grant_by_default(synth: Synth) -> None:
    # The default bootstrap uses the AWS-managed S3 key; --bootstrap-customer-key's key policy lets the account's
    # principals use the key through S3 (test below): no KMS grant on a key the stack does not know.
    by_sid = {s.get("Sid"): s for s in statements(synth.template_json, "ProcessingJobRole")}
    assert "DecryptCodeBundle" not in by_sid


def test_own_bootstrap_key_lets_the_job_decrypt_only_the_code_bundle_through_s3(tmp_path) -> None:
    # GIVEN cdk bootstrap --bootstrap-kms-key-id <own key>, told to the stack as asset_kms_key_arn
    by_sid = job_role_statements_with_context(tmp_path, asset_kms_key_arn=KEY_ARN)
    # THEN the job role may kms:Decrypt with exactly that key, only through S3, only for the code bundle's object
    # (or its bucket, the context S3 uses with S3 Bucket Keys)
    grant = by_sid["DecryptCodeBundle"]
    assert grant["Action"] == "kms:Decrypt" and grant["Resource"] == KEY_ARN and grant["Effect"] == "Allow"
    equals = grant["Condition"]["StringEquals"]
    assert equals["kms:ViaService"] == {
        "Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".", {"Ref": "AWS::URLSuffix"}]]}
    bucket_ctx, object_ctx = (json.dumps(v) for v in equals["kms:EncryptionContext:aws:s3:arn"])
    assert "cdk-hnb659fds-assets-" in bucket_ctx and object_ctx.rstrip('"]}').endswith(".zip")
    assert object_ctx.startswith(bucket_ctx[:-3])  # the object ARN is under the bucket ARN


def test_bootstrap_customer_key_policy_lets_account_principals_decrypt_through_s3() -> None:
    # `cdk bootstrap --bootstrap-customer-key` creates the assets key with a key policy that allows any principal of
    # the account to use it through S3 (kms:CallerAccount + kms:ViaService): the job role needs no grant of its own.
    # This reads the CLI's own bootstrap template (node_modules), so a CLI upgrade that changes it fails here.
    import yaml

    template_path = next((ROOT / "node_modules" / "aws-cdk").rglob("bootstrap-template.yaml"))
    loader = type("CfnLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda _l, tag, node: {
        tag: _l.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else _l.construct_sequence(node)})
    key = yaml.load(template_path.read_text(), Loader=loader)["Resources"]["FileAssetsBucketEncryptionKey"]
    assert key["Condition"] == "CreateNewKey"
    [account_via_s3] = [
        s for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"] == {"AWS": "*"} and "kms:Decrypt" in s["Action"]
    ]
    assert account_via_s3["Effect"] == "Allow"
    assert set(account_via_s3["Condition"]["StringEquals"]) == {"kms:CallerAccount", "kms:ViaService"}
    assert account_via_s3["Condition"]["StringEquals"]["kms:CallerAccount"] == {"Ref": "AWS::AccountId"}


def test_metrics_role_describes_only_this_stacks_jobs(synth: Synth) -> None:
    # issue 11 item 4: the state-change event lacks Environment and ExitMessage; DescribeProcessingJob has them
    all_statements = statements(synth.template_json, "MetricsRole")
    by_sid = {s.get("Sid"): s for s in all_statements}
    describe = by_sid["DescribeFinishedJobs"]
    assert describe["Action"] == "sagemaker:DescribeProcessingJob"
    assert describe["Resource"]["Fn::Join"][1][-1] == ":processing-job/dq-*"
    sagemaker = [a for s in all_statements for a in as_list(s["Action"]) if a.startswith("sagemaker:")]
    assert sagemaker == ["sagemaker:DescribeProcessingJob"]


def dashboard_widgets(synth: Synth) -> list[dict[str, Any]]:
    """The deployed dashboard's widgets, with the template's intrinsics (Region, ARNs) replaced by placeholders."""
    (dashboard,) = resources(synth.template_json, "AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "X" for p in parts))["widgets"]


def test_dashboard_charts_every_dataset_with_one_metrics_insights_query_per_widget(synth: Synth) -> None:
    # A dataset without a config of its own (input/other-ds/) must show up without a redeploy: widgets over every
    # Dataset value are Metrics Insights queries grouped by Dataset, one query per widget (CloudWatch runs one
    # Metrics Insights query per GetMetricData call, so a widget cannot hold two).
    queries = {}
    for widget in dashboard_widgets(synth):
        for row in widget.get("properties", {}).get("metrics", []):
            expression = next(
                (item["expression"] for item in row if isinstance(item, dict) and "expression" in item), "")
            if expression.startswith("SELECT"):
                assert len(widget["properties"]["metrics"]) == 1, widget["properties"]["title"]
                queries[expression] = widget["properties"]["title"]
    for name in ("RejectedRate", "MissingRateAfter", "RowsOut", "JobFailed", "MetricsUnavailable", "QualityGateFailed",
                 "DriftMaxPsi", "RulesFailed", "RowsRejectedByRules"):
        assert any(
            q.endswith(f'({name}) FROM SCHEMA("DataQualityPipeline", Dataset) GROUP BY Dataset') for q in queries
        ), name


def test_every_dashboard_widget_can_be_rendered_offline(synth: Synth) -> None:
    # The local cloud renders the deployed dashboard widget by widget (localcloud/dashboard_render.py) and refuses
    # what it cannot show: every widget of the synthesized body must be of a kind it renders.
    from datetime import datetime

    from localcloud.dashboard_render import panels

    (dashboard,) = resources(synth.template_json, "AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = json.loads("".join(p if isinstance(p, str) else f"X{i}" for i, p in enumerate(parts)))
    alarm_arns = [arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]]
    rendered = panels(body, samples=[], alarm_states={arn: (arn, "OK") for arn in alarm_arns},
                      now=datetime.now(UTC))
    assert len(rendered) == len(body["widgets"]) and {p.kind for p in rendered} == {"metric", "alarm"}
