"""The trigger's Spark job (issue 13 items 2, 3): the engine choice per dataset and input size, the request for
SageMaker's Spark container, its configuration.json, all checked against botocore's SageMaker and S3 models."""

from __future__ import annotations

import json
from collections.abc import Iterator

import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from lambda_helpers import ENV, EVENT_ETAG, EVENT_SIZE, client, load_handler, s3_event_body, sqs_record

trigger = load_handler("trigger")
BUCKET = ENV["DATA_BUCKET"]
SPARK_IMAGE = "571004829621.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312-v1.3"
SPARK_ENV = {
    **ENV,
    "ENGINES": json.dumps({"*": "pandas", "big": "spark", "logs": "auto"}),
    "SPARK_IMAGE_URI": SPARK_IMAGE,
    "SPARK_ROLE_ARN": "arn:aws:iam::123456789012:role/dq-spark-job-role",
    "SPARK_ENTRY_S3_URI": "s3://cdk-assets-bucket/fedcba9876543210.py",
    "SPARK_INSTANCE_TYPE": "ml.m5.xlarge",
    "SPARK_INSTANCE_COUNT": "3",
    "SPARK_MIN_INPUT_BYTES": "1000000",
    "SPARK_SUBNET_IDS": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "SPARK_SECURITY_GROUP_IDS": "sg-0123456789abcdef0",
    "SPARK_CONFIGURATION": json.dumps([{"Classification": "spark-defaults",
                                        "Properties": {"spark.driver.memory": "4g"}}]),
}
SETTINGS = trigger.Settings.from_env(SPARK_ENV)
SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")
JOB_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/"


def build(key: str, size: int = EVENT_SIZE, settings=SETTINGS, baseline: str | None = None, total: int | None = None):
    request = trigger.build_processing_job_request(BUCKET, key, "v1", settings, size=size, etag=EVENT_ETAG,
                                                   baseline_uri=baseline, total_bytes=total)
    validate_parameters(request, SAGEMAKER.operation_model("CreateProcessingJob").input_shape)
    return request


# --- engine choice ------------------------------------------------------------------------------


@pytest.mark.parametrize(("dataset", "total", "engine"), [
    ("big", 10, "spark"),  # engine spark: always
    ("logs", 999_999, "pandas"),  # auto below SPARK_MIN_INPUT_BYTES
    ("logs", 1_000_000, "spark"),  # auto at the threshold
    ("logs", None, "pandas"),  # auto, size unknown: the default engine
    ("sales", 10**12, "pandas"),  # the stack default (*) pandas, whatever the size
])
def test_engine_choice_by_dataset_and_total_input_bytes(dataset, total, engine) -> None:
    assert trigger.choose_engine(SETTINGS.spark, dataset, total) == engine


def test_spark_off_runs_every_dataset_on_the_default_engine() -> None:
    # GIVEN the environment of a stack without Spark (the existing tests' ENV)  THEN Spark is off, all pandas
    plain = trigger.Settings.from_env(ENV)
    assert not plain.spark.enabled
    assert trigger.choose_engine(plain.spark, "big", 10**15) == "pandas"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("ENGINES", '{"big": "dask"}', "must be one of pandas, spark, auto"),
    ("ENGINES", '{"Big_Data": "spark"}', "not a dataset name"),
    ("ENGINES", "[]", "JSON object"),
    ("SPARK_INSTANCE_COUNT", "0", "SPARK_INSTANCE_COUNT=0 is outside 1..100"),
    ("SPARK_MIN_INPUT_BYTES", "-1", "SPARK_MIN_INPUT_BYTES=-1 is outside"),
    ("SPARK_ENTRY_S3_URI", "s3://bucket/entry.zip", "SPARK_ENTRY_S3_URI"),
    ("SPARK_ROLE_ARN", "role", "SPARK_ROLE_ARN"),
    ("SPARK_SUBNET_IDS", "", "must both be set or both be empty"),
    ("SPARK_SUBNET_IDS", "vpc-123", "SPARK_SUBNET_IDS"),
    ("SPARK_CONFIGURATION", '{"spark.driver.memory": "4g"}', "JSON list"),
])
def test_invalid_spark_settings_name_the_variable(name, value, message) -> None:
    with pytest.raises(trigger.SettingsError, match=message):
        trigger.Settings.from_env({**SPARK_ENV, name: value})


def test_engines_asking_for_spark_without_the_image_are_refused() -> None:
    env = {**ENV, "ENGINES": '{"big": "spark"}'}
    with pytest.raises(trigger.SettingsError, match="SPARK_IMAGE_URI is empty"):
        trigger.Settings.from_env(env)


# --- the request ----------------------------------------------------------------------------------


def test_spark_request_runs_smspark_submit_on_the_staged_prefix() -> None:
    # GIVEN an upload of dataset "big" (engine spark) and a baseline
    baseline = f"s3://{BUCKET}/baselines/big/baseline.json"
    pandas_like = trigger.build_processing_job_request(BUCKET, "input/big/part-0.csv", "v1",
                                                       trigger.Settings.from_env(ENV), size=EVENT_SIZE,
                                                       etag=EVENT_ETAG, baseline_uri=baseline)
    request = build("input/big/part-0.csv", baseline=baseline)
    job = request["ProcessingJobName"]
    # THEN the Spark image, smspark-submit with the code bundle as py-files and the entry script, s3:// arguments
    app = request["AppSpecification"]
    assert app["ImageUri"] == SPARK_IMAGE
    assert app["ContainerEntrypoint"] == ["smspark-submit", "--py-files", "/opt/ml/processing/input/py-files",
                                          "/opt/ml/processing/input/code/fedcba9876543210.py"]
    assert app["ContainerArguments"] == [
        "--engine", "spark",
        "--input", f"s3://{BUCKET}/staging/big/{job}/",
        "--output", f"s3://{BUCKET}/output/big/{job}/",
        "--quarantine", f"s3://{BUCKET}/quarantine/big/{job}/",
        "--dataset", "big",
        "--baseline", baseline,
    ]
    # the inputs are code, py-files and conf; never the data (read from S3 by every instance)
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs == {
        "code": {"S3Uri": "s3://cdk-assets-bucket/fedcba9876543210.py", "LocalPath": "/opt/ml/processing/input/code",
                 "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"},
        "py-files": {"S3Uri": ENV["CODE_S3_URI"], "LocalPath": "/opt/ml/processing/input/py-files",
                     "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"},
        "conf": {"S3Uri": f"s3://{BUCKET}/staging/big/{job}.conf/configuration.json",
                 "LocalPath": "/opt/ml/processing/input/conf", "S3DataType": "S3Prefix", "S3InputMode": "File",
                 "S3DataDistributionType": "FullyReplicated"},
    }
    # the staged copy is under the input prefix the job lists (the conf beside it, not inside it)
    staged = pandas_like["ProcessingInputs"][1]["S3Input"]["S3Uri"]
    assert staged.startswith(app["ContainerArguments"][3])
    assert not inputs["conf"]["S3Uri"].startswith(app["ContainerArguments"][3])
    # Spark instances from the settings; no isolation, the stack's VPC, encrypted traffic between instances
    cluster = request["ProcessingResources"]["ClusterConfig"]
    assert (cluster["InstanceType"], cluster["InstanceCount"]) == ("ml.m5.xlarge", 3)
    assert cluster["VolumeKmsKeyId"] == ENV["KMS_KEY_ARN"]
    assert request["NetworkConfig"] == {
        "EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": {"Subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
                      "SecurityGroupIds": ["sg-0123456789abcdef0"]}}
    assert request["RoleArn"] == SPARK_ENV["SPARK_ROLE_ARN"]
    # the same name, outputs (the metrics Lambda reads the quality output's URI), environment and tags
    for same in ("ProcessingJobName", "ProcessingOutputConfig", "Environment", "Tags", "StoppingCondition"):
        assert request[same] == pandas_like[same], same


def test_small_batch_of_an_auto_dataset_keeps_the_default_request() -> None:
    # GIVEN dataset "logs" (auto) below the threshold  THEN exactly the default engine's request
    plain = trigger.Settings.from_env(ENV)
    expected = trigger.build_processing_job_request(BUCKET, "input/logs/a.csv", "v1", plain, size=999_999,
                                                    etag=EVENT_ETAG)
    assert build("input/logs/a.csv", size=999_999) == expected
    assert build("input/logs/a.csv", size=10, total=5_000_000)["AppSpecification"]["ImageUri"] == SPARK_IMAGE


def test_without_subnets_the_spark_job_has_no_vpc_config() -> None:
    settings = trigger.Settings.from_env({**SPARK_ENV, "SPARK_SUBNET_IDS": "", "SPARK_SECURITY_GROUP_IDS": ""})
    assert build("input/big/a.csv", settings=settings)["NetworkConfig"] == {
        "EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": True}


def test_shell_unsafe_arguments_are_refused() -> None:
    # smspark-submit joins the arguments with spaces and runs them through a shell: a quote would break the command
    settings = trigger.Settings.from_env({**SPARK_ENV, "OUTPUT_PREFIX": "out'put/"})
    with pytest.raises(trigger.RefusedKeyError, match="not shell-safe"):
        build("input/big/a.csv", settings=settings)


# --- the handler --------------------------------------------------------------------------------


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, Stubber, Stubber, Stubber]]:
    """Stubbed SageMaker, S3, CloudWatch and SNS clients (every queued response must be consumed; an unexpected
    call fails)."""
    sagemaker, s3, cloudwatch, sns = client("sagemaker"), client("s3"), client("cloudwatch"), client("sns")
    for name, value in (("sagemaker_client", sagemaker), ("s3_client", s3), ("_settings", SETTINGS),
                        ("sqs_client", client("sqs")), ("cloudwatch_client", cloudwatch), ("sns_client", sns)):
        monkeypatch.setattr(trigger, name, value)
    with Stubber(sagemaker) as sm, Stubber(s3) as s3_stub, Stubber(cloudwatch) as cw, Stubber(sns) as sns_stub:
        yield sm, s3_stub, cw, sns_stub
        for stub in (sm, s3_stub, cw, sns_stub):
            stub.assert_no_pending_responses()


def _resolved_and_staged(s3: Stubber, key: str, job: str) -> None:
    s3.add_response("head_object", {"ContentLength": EVENT_SIZE, "ETag": f'"{EVENT_ETAG}"', "VersionId": "v1"},
                    {"Bucket": BUCKET, "Key": key, "VersionId": "v1"})
    s3.add_client_error("head_object", "404", "Not Found", 404,
                        expected_params={"Bucket": BUCKET, "Key": "baselines/big/baseline.json"})
    s3.add_response("copy_object", {"CopySourceVersionId": "v1", "VersionId": "staged-v",
                                    "CopyObjectResult": {"ETag": '"e"'}},
                    {"Bucket": BUCKET, "Key": f"staging/big/{job}/{key.rsplit('/', 1)[1]}",
                     "CopySource": {"Bucket": BUCKET, "Key": key, "VersionId": "v1"}, "TaggingDirective": "REPLACE"})


def test_handler_writes_the_configuration_then_starts_the_spark_job(clients, lambda_context, decision_log) -> None:
    sm, s3, _, _ = clients
    key = "input/big/part-0.csv"
    request = build(key)
    job = request["ProcessingJobName"]
    _resolved_and_staged(s3, key, job)
    conf = [{"Classification": "spark-defaults", "Properties": {"spark.driver.memory": "4g"}}]
    s3.add_response("put_object", {}, {"Bucket": BUCKET, "Key": f"staging/big/{job}.conf/configuration.json",
                                       "Body": (json.dumps(conf, indent=2, sort_keys=True) + "\n").encode(),
                                       "ContentType": "application/json"})
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + job}, request)
    result = trigger.handler({"Records": [sqs_record(s3_event_body(key))]}, lambda_context)
    assert result == {"batchItemFailures": []}
    [log] = decision_log.records
    assert log["decision"] == "started" and log["engine"] == "spark"


def test_configuration_write_failure_retries_without_starting_the_job(clients, lambda_context, decision_log) -> None:
    # GIVEN the configuration.json PutObject fails  THEN no job (it would start without its settings), retried
    _, s3, _, _ = clients
    key = "input/big/part-1.csv"
    job = build(key)["ProcessingJobName"]
    _resolved_and_staged(s3, key, job)
    s3.add_client_error("put_object", "InternalError", "boom", 500)
    result = trigger.handler({"Records": [sqs_record(s3_event_body(key), "m-1")]}, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert decision_log.decisions() == ["failed"]


def test_unsafe_spark_argument_is_refused_and_told(monkeypatch, clients, lambda_context, decision_log) -> None:
    # GIVEN a function whose OUTPUT_PREFIX a shell would change (the CDK app refuses it; a hand-set environment)
    _, s3, cw, sns = clients
    settings = trigger.Settings.from_env({**SPARK_ENV, "OUTPUT_PREFIX": "out'put/"})
    monkeypatch.setattr(trigger, "_settings", settings)
    key = "input/big/part-2.csv"
    s3.add_response("head_object", {"ContentLength": EVENT_SIZE, "ETag": f'"{EVENT_ETAG}"', "VersionId": "v1"},
                    {"Bucket": BUCKET, "Key": key, "VersionId": "v1"})
    s3.add_client_error("head_object", "404", "Not Found", 404)
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline",
                                            "MetricData": trigger.refusal_metric_data("InvalidKey")})
    sns.add_response("publish", {"MessageId": "m"})
    # WHEN the handler runs  THEN the upload is refused (counted and told), not crashed on, and no job starts
    result = trigger.handler({"Records": [sqs_record(s3_event_body(key))]}, lambda_context)
    assert result == {"batchItemFailures": []}
    assert decision_log.decisions() == ["refused"]
