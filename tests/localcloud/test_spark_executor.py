"""The local executor runs ``smspark-submit`` requests with pyspark in local mode (issue 13 item 5), from a
hand-built request against in-process moto (S3 and EC2)."""
from __future__ import annotations

import io
import json
import textwrap
import zipfile

import boto3
import pytest
from moto import mock_aws

from localcloud import spark_submit
from localcloud.job_executor import run_job

BUCKET = "data-bucket"
JOB = "dq-sales-0123456789abcdef"
ROLE = "arn:aws:iam::123456789012:role/spark-role"
STAGED = f"staging/sales/{JOB}/"

APP = textwrap.dedent(
    """
    import argparse, json, os, pathlib
    import helper  # from the --py-files zip
    from pyspark.sql import SparkSession
    p = argparse.ArgumentParser()
    p.add_argument("--engine"); p.add_argument("--input"); p.add_argument("--output")
    p.add_argument("--baseline"); p.add_argument("--dataset")
    a = p.parse_args()
    spark = SparkSession.builder.getOrCreate()
    rows = spark.read.option("header", "true").option("recursiveFileLookup", "true").csv(a.input).count()
    out = pathlib.Path(a.output) / "quality"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({
        "rows": rows, "master": spark.sparkContext.master, "helper": helper.VALUE,
        "shuffle": spark.conf.get("spark.sql.shuffle.partitions"), "foo": os.environ.get("FOO"),
        "baseline": pathlib.Path(a.baseline).read_text(), "input_is_dir": pathlib.Path(a.input).is_dir()}))
    spark.stop()
    """
)
CONFIGURATION = [
    {"Classification": "spark-defaults", "Properties": {"spark.sql.shuffle.partitions": "3", "spark.master": "yarn"}},
    {"Classification": "spark-env", "Properties": {},
     "Configurations": [{"Classification": "export", "Properties": {"FOO": "bar"}}]},
    {"Classification": "yarn-site", "Properties": {"yarn.nodemanager.vmem-check-enabled": "false"}},
]


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ec2 = boto3.client("ec2", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="code/entry.py", Body=APP.encode())
        s3.put_object(Bucket=BUCKET, Key="code/bundle.zip", Body=_zip({"helper.py": "VALUE = 42\n"}))
        s3.put_object(Bucket=BUCKET, Key=f"staging/sales/{JOB}.conf/configuration.json",
                      Body=json.dumps(CONFIGURATION).encode())
        s3.put_object(Bucket=BUCKET, Key=STAGED + "part-0.csv", Body=b"a,b\n1,2\n3,4\n")
        s3.put_object(Bucket=BUCKET, Key=STAGED + "part-1.csv", Body=b"a,b\n5,6\n")
        s3.put_object(Bucket=BUCKET, Key=STAGED + "region=eu/part-2.csv", Body=b"a,b\n7,8\n9,10\n11,12\n")
        s3.put_object(Bucket=BUCKET, Key="baselines/sales/baseline.json", Body=b'{"schema_version": 1}')
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="spark", Description="spark", VpcId=vpc)["GroupId"]
        yield s3, ec2, subnet, group


def spark_request(subnet: str, group: str, *, instance_count: int = 2) -> dict:
    def s3_input(name: str, uri: str, path: str) -> dict:
        return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": path, "S3DataType": "S3Prefix",
                                                "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
    return {
        "ProcessingJobName": JOB,
        "RoleArn": ROLE,
        "ProcessingInputs": [
            s3_input("code", f"s3://{BUCKET}/code/entry.py", "/opt/ml/processing/input/code"),
            s3_input("py-files", f"s3://{BUCKET}/code/bundle.zip", "/opt/ml/processing/input/py-files"),
            s3_input("conf", f"s3://{BUCKET}/staging/sales/{JOB}.conf/configuration.json",
                     "/opt/ml/processing/input/conf"),
        ],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "quality", "S3Output": {
            "S3Uri": f"s3://{BUCKET}/output/sales/{JOB}/quality/", "LocalPath": "/opt/ml/processing/output/quality",
            "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": instance_count, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        "AppSpecification": {
            "ImageUri": "173754725891.dkr.ecr.us-east-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312-v1.3",
            "ContainerEntrypoint": ["smspark-submit", "--py-files", "/opt/ml/processing/input/py-files",
                                    "/opt/ml/processing/input/code/entry.py"],
            "ContainerArguments": ["--engine", "spark", "--input", f"s3://{BUCKET}/{STAGED}",
                                   "--output", f"s3://{BUCKET}/output/sales/{JOB}/",
                                   "--baseline", f"s3://{BUCKET}/baselines/sales/baseline.json",
                                   "--dataset", "sales"],
        },
        "Environment": {"DATASET": "sales"},
        "NetworkConfig": {"EnableNetworkIsolation": False, "EnableInterContainerTrafficEncryption": True,
                          "VpcConfig": {"Subnets": [subnet], "SecurityGroupIds": [group]}},
    }


def test_an_smspark_submit_request_runs_with_pyspark_and_stages_s3_arguments(aws, tmp_path) -> None:
    # GIVEN a Spark job request (smspark-submit, py-files, configuration.json, s3:// input folder of three parts, a
    # baseline object, an s3:// output root, InstanceCount 2, a VPC that exists); the role's checks are recorded
    s3, ec2, subnet, group = aws
    checked: list[tuple[str, str]] = []

    def authorize(action, bucket, key, kms):
        checked.append((action, key))

    # WHEN the local executor runs it
    result = run_job(spark_request(subnet, group), s3=s3, workdir=tmp_path, authorize=authorize, ec2=ec2, timeout=300)
    # THEN it completes; the app read the three parts from a local copy of the input prefix and wrote its output,
    # uploaded under the s3:// output root; py-files on the path; spark-defaults and spark-env applied locally
    assert result.status == "Completed", (result.failure_reason, result.log_path.read_text()[-3000:])
    metrics = json.loads(s3.get_object(Bucket=BUCKET, Key=f"output/sales/{JOB}/quality/metrics.json")["Body"].read())
    assert metrics == {"rows": 6, "master": "local[2]", "helper": 42, "shuffle": "3", "foo": "bar",
                       "baseline": '{"schema_version": 1}', "input_is_dir": True}
    # what cannot be shown locally is recorded: the instance count, the classifications not applied, the VPC check
    assert result.spark is not None
    assert (result.spark["instance_count"], result.spark["master"], result.spark["vpc"]) == (2, "local[2]", "verified")
    assert result.spark["not_applied"] == ["spark-defaults spark.master (the local master is local[2])", "yarn-site"]
    # every S3 object the job read or wrote was authorized against the job's role
    assert ("s3:GetObject", STAGED + "region=eu/part-2.csv") in checked
    assert ("s3:GetObject", "baselines/sales/baseline.json") in checked
    assert ("s3:PutObject", f"output/sales/{JOB}/quality/metrics.json") in checked


def _failed_before_start(result) -> str:
    assert result.status == "Failed" and result.exit_code is None, result
    return str(result.failure_reason)


def test_an_unknown_classification_fails_the_job_before_it_starts(aws, tmp_path) -> None:
    # GIVEN a configuration.json with a classification smspark does not know
    s3, ec2, subnet, group = aws
    s3.put_object(Bucket=BUCKET, Key=f"staging/sales/{JOB}.conf/configuration.json",
                  Body=json.dumps([{"Classification": "spark-default", "Properties": {}}]).encode())
    # WHEN the job runs THEN it fails loudly, naming it, and Spark never starts
    reason = _failed_before_start(run_job(spark_request(subnet, group), s3=s3, workdir=tmp_path, ec2=ec2))
    assert reason.startswith("ClientError: configuration.json [0]: invalid classification 'spark-default'")


@pytest.mark.parametrize("vpc, expected", [
    ({"Subnets": ["subnet-0123456789abcdef0"], "SecurityGroupIds": ["GROUP"]}, "subnet-0123456789abcdef0"),
    ({"Subnets": [], "SecurityGroupIds": ["GROUP"]}, "VpcConfig needs 1-16 Subnets and 1-5 SecurityGroupIds"),
])
def test_a_vpc_config_the_emulator_does_not_have_fails_the_job(aws, tmp_path, vpc, expected) -> None:
    s3, ec2, subnet, group = aws
    request = spark_request(subnet, group)
    request["NetworkConfig"]["VpcConfig"] = {k: [group if x == "GROUP" else x for x in v] for k, v in vpc.items()}
    reason = _failed_before_start(run_job(request, s3=s3, workdir=tmp_path, ec2=ec2))
    assert expected in reason


def test_an_input_the_role_may_not_read_fails_the_job(aws, tmp_path) -> None:
    s3, ec2, subnet, group = aws

    def deny_staging(action, bucket, key, kms):
        return "no identity-based policy allows the s3:GetObject action" if key.startswith("staging/sales/dq") \
            and key.endswith(".csv") else None

    reason = _failed_before_start(run_job(spark_request(subnet, group), s3=s3, workdir=tmp_path, ec2=ec2,
                                          authorize=deny_staging))
    assert reason == (f"ClientError: Failed to download data. Access denied for s3://{BUCKET}/{STAGED}part-0.csv: "
                      "no identity-based policy allows the s3:GetObject action")


def test_smspark_submit_command_line_is_parsed_as_smspark_does() -> None:
    assert spark_submit.parse_smspark(["--py-files", "/p", "-v", "app.py", "--input", "x"]) == (
        {"py-files": "/p", "verbose": True}, "app.py", ["--input", "x"])
    with pytest.raises(spark_submit.SparkSetupError, match="no option '--conf'"):
        spark_submit.parse_smspark(["--conf", "a=b", "app.py"])
    with pytest.raises(spark_submit.SparkSetupError, match="needs the application"):
        spark_submit.parse_smspark(["--py-files", "/p"])
