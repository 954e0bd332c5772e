"""Local job executor: performs a CreateProcessingJob request against in-process moto S3."""
from __future__ import annotations

import json
import sys
import textwrap
import zipfile

import boto3
import pytest
from moto import mock_aws

from localcloud.job_executor import run_job, state_change_event

BUCKET = "data-bucket"
JOB = "dq-default-0123456789abcdef"
ROLE = "arn:aws:iam::123456789012:role/exec-role"

FAKE_JOB = textwrap.dedent(
    """
    import argparse, json, os, pathlib, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--input"); p.add_argument("--output"); p.add_argument("--mode", default="ok")
    a = p.parse_args()
    root = pathlib.Path(os.environ["OPT_ML_ROOT"])
    cfg = json.loads((root / "config" / "processingjobconfig.json").read_text())
    res = json.loads((root / "config" / "resourceconfig.json").read_text())
    if a.mode == "sleep":
        time.sleep(60)
    if a.mode == "fail":
        (root / "output" / "message").write_text("ValueError: column x is missing\\n" + "y" * 3000)
        sys.exit(3)
    if a.mode == "crash":
        sys.exit(7)
    if a.mode == "binary-message":
        (root / "output" / "message").write_bytes(b"ok\\xff\\xfe")
    if a.mode == "multibyte-message":
        (root / "output" / "message").write_text("\\u00e9" * 600, encoding="utf-8")
        sys.exit(4)
    rows = pathlib.Path(a.input).read_text().splitlines()
    out = pathlib.Path(a.output)
    (out / "quality" / "metrics.json").write_text(json.dumps({
        "summary": {"rows_in": len(rows) - 1},
        "job": cfg["ProcessingJobName"], "arn": cfg["ProcessingJobArn"], "host": res["current_host"],
        "dataset": os.environ.get("DATASET"), "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
    }))
    (out / "cleaned" / "sub").mkdir()
    (out / "cleaned" / "sub" / "part-0.csv").write_text("\\n".join(rows))
    print("done", len(rows))
    """
)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="input/default/data.csv", Body=b"a,b\n1,2\n3,4\n")
        client.put_object(Bucket=BUCKET, Key="input/default/data.csv.bak", Body=b"other")
        yield client


def make_request(entrypoint, *, code_uri=f"s3://{BUCKET}/code/job.py", mode="ok", max_runtime=60, extra_env=None,
                 isolation=False):
    env = {"DATASET": "default", "SOURCE_URI": f"s3://{BUCKET}/input/default/data.csv"}
    env.update(extra_env or {})
    args = ["--input", "/opt/ml/processing/input/data/data.csv", "--output", "/opt/ml/processing/output"]
    if mode != "ok":
        args += ["--mode", mode]
    return {
        "ProcessingJobName": JOB,
        "RoleArn": ROLE,
        "ProcessingInputs": [
            {"InputName": "code", "S3Input": {"S3Uri": code_uri, "LocalPath": "/opt/ml/processing/input/code",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File"}},
            {"InputName": "data", "S3Input": {"S3Uri": f"s3://{BUCKET}/input/default/data.csv",
                                              "LocalPath": "/opt/ml/processing/input/data",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File"}},
        ],
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": f, "S3Output": {"S3Uri": f"s3://{BUCKET}/output/default/{JOB}/{f}",
                                           "LocalPath": f"/opt/ml/processing/output/{f}", "S3UploadMode": "EndOfJob"}}
            for f in ("cleaned", "quality")
        ]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        "AppSpecification": {
            "ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "ContainerEntrypoint": entrypoint, "ContainerArguments": args},
        "Environment": env,
        "NetworkConfig": {"EnableNetworkIsolation": isolation},
    }


@pytest.fixture
def script_request(s3):
    s3.put_object(Bucket=BUCKET, Key="code/job.py", Body=FAKE_JOB.encode())
    return lambda **kw: make_request(["python3", "/opt/ml/processing/input/code/job.py"], **kw)


def keys(s3, prefix):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_completed_job_downloads_runs_and_uploads(s3, script_request, tmp_path):
    res = run_job(script_request(), s3=s3, workdir=tmp_path)
    assert res.status == "Completed", res.log_path.read_text()
    assert res.exit_code == 0 and res.failure_reason is None
    # S3Prefix matched the .bak file too: both land under LocalPath by their basename
    data_dir = res.root / "processing" / "input" / "data"
    assert sorted(p.name for p in data_dir.iterdir()) == ["data.csv", "data.csv.bak"]
    assert res.root == tmp_path / JOB / "opt" / "ml"
    out = f"output/default/{JOB}/"
    assert keys(s3, out) == [out + "cleaned/sub/part-0.csv", out + "quality/metrics.json"]
    assert sorted(res.uploaded_keys) == [f"s3://{BUCKET}/{k}" for k in keys(s3, out)]
    metrics = json.loads(s3.get_object(Bucket=BUCKET, Key=out + "quality/metrics.json")["Body"].read())
    assert metrics["summary"]["rows_in"] == 2
    assert metrics["job"] == JOB and metrics["host"] == "algo-1" and metrics["dataset"] == "default"
    assert metrics["arn"] == f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{JOB}"
    assert "done 3" in res.log_path.read_text()
    assert res.command[0] == sys.executable and res.command[1].startswith(str(res.root))
    assert res.created_ms <= res.started_ms <= res.ended_ms


def test_failed_job_reports_message_and_uploads_nothing(s3, script_request, tmp_path):
    res = run_job(script_request(mode="fail"), s3=s3, workdir=tmp_path)
    assert res.status == "Failed" and res.exit_code == 3
    # as in SageMaker: a generic FailureReason; the container's words are the ExitMessage (first 1 KB)
    assert res.failure_reason == "AlgorithmError: See job logs for more information"
    assert res.exit_message.startswith("ValueError: column x is missing") and len(res.exit_message.encode()) <= 1024
    assert keys(s3, "output/") == [] and res.uploaded_keys == []
    # the input is left untouched
    assert s3.get_object(Bucket=BUCKET, Key="input/default/data.csv")["Body"].read() == b"a,b\n1,2\n3,4\n"


def test_failed_job_without_message_gets_generic_reason(s3, script_request, tmp_path):
    res = run_job(script_request(mode="crash"), s3=s3, workdir=tmp_path)
    assert res.status == "Failed" and res.exit_code == 7
    assert res.failure_reason == "AlgorithmError: See job logs for more information"
    assert res.exit_message is None and "exit code 7" in res.log_path.read_text()


def test_message_that_is_not_utf8_fails_the_job_with_a_client_error(s3, script_request, tmp_path):
    # byoc-metadata.html: "If the data in this file isn't UTF-8 encoded, the job fails and returns a ClientError",
    # even when the entrypoint exits 0; nothing is uploaded
    res = run_job(script_request(mode="binary-message"), s3=s3, workdir=tmp_path)
    assert res.exit_code == 0 and res.status == "Failed"
    assert res.failure_reason.startswith("ClientError:") and "not UTF-8" in res.failure_reason
    assert res.exit_message is None and keys(s3, "output/") == []


def test_exit_message_is_the_first_kilobyte_without_a_cut_character(s3, script_request, tmp_path):
    res = run_job(script_request(mode="multibyte-message"), s3=s3, workdir=tmp_path)
    assert res.status == "Failed" and res.exit_message == "\u00e9" * 512  # 1,024 bytes of 2-byte characters


def test_max_runtime_stops_the_job(s3, script_request, tmp_path):
    res = run_job(script_request(mode="sleep", max_runtime=1), s3=s3, workdir=tmp_path)
    assert res.status == "Stopped" and "MaxRuntimeInSeconds" in res.failure_reason
    assert res.exit_code is None and res.ended_ms - res.started_ms < 20_000
    assert keys(s3, "output/") == []


def test_executor_timeout_fails_the_job(s3, script_request, tmp_path):
    res = run_job(script_request(mode="sleep", max_runtime=600), s3=s3, workdir=tmp_path, timeout=1)
    assert res.status == "Failed" and "timeout" in res.failure_reason


def test_missing_input_fails_before_running(s3, script_request, tmp_path):
    req = script_request()
    req["ProcessingInputs"][1]["S3Input"]["S3Uri"] = f"s3://{BUCKET}/input/default/nope.csv"
    res = run_job(req, s3=s3, workdir=tmp_path)
    assert res.status == "Failed" and res.exit_code is None
    assert res.failure_reason.startswith("ClientError: No S3 objects found under S3 URL")


def test_network_isolation_strips_aws_variables(s3, script_request, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:1")
    res = run_job(script_request(), s3=s3, workdir=tmp_path)
    assert res.status == "Completed"
    m = json.loads(s3.get_object(Bucket=BUCKET, Key=f"output/default/{JOB}/quality/metrics.json")["Body"].read())
    assert m["endpoint"] == "http://localhost:1"
    res = run_job(script_request(isolation=True), s3=s3, workdir=tmp_path)
    assert res.status == "Completed"
    m = json.loads(s3.get_object(Bucket=BUCKET, Key=f"output/default/{JOB}/quality/metrics.json")["Body"].read())
    assert m["endpoint"] is None


def test_zip_bundle_runs_from_input_code(s3, tmp_path):
    """A bundle laid out like design.md contract 1: root __main__.py running a package with runpy."""
    bundle = tmp_path / "asset.0123abcd.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("__main__.py", 'import runpy\nrunpy.run_module("fakejob", run_name="__main__")\n')
        z.writestr("fakejob/__init__.py", "")
        z.writestr("fakejob/configs/default.json", '{"name": "default"}')
        z.writestr("fakejob/__main__.py", FAKE_JOB)
    s3.upload_file(str(bundle), BUCKET, "cdk-assets/asset.0123abcd.zip")
    req = make_request(["python3", "/opt/ml/processing/input/code/asset.0123abcd.zip"],
                       code_uri=f"s3://{BUCKET}/cdk-assets/asset.0123abcd.zip")
    res = run_job(req, s3=s3, workdir=tmp_path / "jobs")
    assert res.status == "Completed", res.log_path.read_text()
    assert (res.root / "processing" / "input" / "code" / "asset.0123abcd.zip").is_file()
    assert f"output/default/{JOB}/quality/metrics.json" in keys(s3, "output/")


def test_state_change_event_shape(s3, script_request, tmp_path):
    req = script_request(mode="fail")
    res = run_job(req, s3=s3, workdir=tmp_path)
    ev = state_change_event(req, res, region="us-east-1", account="123456789012")
    assert ev["source"] == "aws.sagemaker"
    assert ev["detail-type"] == "SageMaker Processing Job State Change"
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{JOB}"
    assert ev["resources"] == [arn]
    d = ev["detail"]
    assert d["ProcessingJobName"] == JOB and d["ProcessingJobArn"] == arn
    assert d["ProcessingJobStatus"] == "Failed"
    assert d["FailureReason"] == "AlgorithmError: See job logs for more information"
    assert res.exit_message.startswith("ValueError")
    for k in ("ProcessingStartTime", "ProcessingEndTime", "CreationTime", "LastModifiedTime"):
        assert isinstance(d[k], int) and d[k] > 1_600_000_000_000
    for k in ("ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources", "StoppingCondition",
              "AppSpecification", "NetworkConfig", "RoleArn"):
        assert d[k] == req[k]
    # like AWS's documented sample: no Environment, ExitMessage or Tags (DescribeProcessingJob has them)
    assert not {"Environment", "ExitMessage", "Tags"} & set(d)
    json.dumps(ev)  # serialisable as sent to EventBridge
    ok = run_job(script_request(), s3=s3, workdir=tmp_path)
    d2 = state_change_event(req, ok, region="us-east-1", account="123456789012")["detail"]
    assert d2["ProcessingJobStatus"] == "Completed" and "FailureReason" not in d2


def test_key_with_spaces_non_ascii_and_url_characters(s3, script_request, tmp_path):
    key = "input/default/Gehälter März #1?v=2 & co.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"a,b\n1,2\n")
    req = script_request()
    req["ProcessingInputs"][1]["S3Input"]["S3Uri"] = f"s3://{BUCKET}/{key}"
    req["AppSpecification"]["ContainerArguments"][1] = "/opt/ml/processing/input/data/" + key.rsplit("/", 1)[1]
    res = run_job(req, s3=s3, workdir=tmp_path)
    assert res.status == "Completed", res.log_path.read_text()
    assert (res.root / "processing/input/data" / key.rsplit("/", 1)[1]).is_file()
    m = json.loads(s3.get_object(Bucket=BUCKET, Key=f"output/default/{JOB}/quality/metrics.json")["Body"].read())
    assert m["summary"]["rows_in"] == 1


def test_manifest_file_input(s3, script_request, tmp_path):
    s3.put_object(Bucket=BUCKET, Key="manifests/m.json", Body=json.dumps(
        [{"prefix": f"s3://{BUCKET}/input/default/"}, "data.csv"]).encode())
    req = script_request()
    req["ProcessingInputs"][1]["S3Input"].update(S3Uri=f"s3://{BUCKET}/manifests/m.json", S3DataType="ManifestFile")
    res = run_job(req, s3=s3, workdir=tmp_path)
    assert res.status == "Completed", res.log_path.read_text()
    assert sorted(p.name for p in (res.root / "processing/input/data").iterdir()) == ["data.csv"]
