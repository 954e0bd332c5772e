"""Issue 11 items 2, 3 and 5 in the local cloud: each job processes exactly the object version its event names (the
trigger's staged copy), keys are resolved against S3 whatever their characters, and a refused upload is told on the
alert topic. No timing assertions."""

from __future__ import annotations

import hashlib
import json

import pytest

pytestmark = pytest.mark.e2e


def _jobs(cloud) -> dict[str, dict]:
    return {j["ProcessingJobName"]: j for j in cloud.processing_jobs()}


def _csv(variant: int, rows: int = 60) -> bytes:
    """A valid batch whose bytes depend on ``variant`` (0..9) while its size does not."""
    lines = ['"id","name","age","salary","profile","department"']
    lines += [f'"{i}","Name {i:03d}","{30 + i % 30}","5{variant}{i:03d}.50","{{""k"": {i}}}","Sales"'
              for i in range(1, rows + 1)]
    return ("\n".join(lines) + "\n").encode()


def _metrics(cloud, job: dict) -> dict:
    bucket = cloud.outputs["DataBucketName"]
    key = f"output/{job['Environment']['DATASET']}/{job['ProcessingJobName']}/quality/metrics.json"
    return json.loads(cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_quick_same_size_overwrites_each_process_their_own_bytes(cloud):
    # GIVEN three uploads of the same size to one key, made before any job runs (each replaces the previous one)
    bucket, key = cloud.outputs["DataBucketName"], "input/versions/batch.csv"
    bodies = [_csv(v) for v in (1, 2, 3)]
    assert len({len(b) for b in bodies}) == 1 and len(set(bodies)) == 3
    before = set(_jobs(cloud))
    versions = {cloud.s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]: hashlib.sha256(body).hexdigest()
                for body in bodies}
    # WHEN the events are delivered and the jobs run
    cloud.run_until_idle()
    new = [j for name, j in _jobs(cloud).items() if name not in before]
    # THEN three jobs, one per version, each Completed on exactly its version's bytes (before: all three processed
    # whatever was current when they started, the third version)
    assert len(new) == 3, [j["ProcessingJobName"] for j in new]
    assert all(job["ProcessingJobStatus"] == "Completed" for job in new), [j.get("FailureReason") for j in new]
    seen = {job["Environment"]["SOURCE_VERSION_ID"]: [i["sha256"] for i in _metrics(cloud, job)["inputs"]]
            for job in new}
    assert seen == {version: [digest] for version, digest in versions.items()}
    for job in new:
        # the job's data input is its own staged copy; SOURCE_URI stays the object the user dropped
        assert job["Environment"]["SOURCE_URI"] == f"s3://{bucket}/{key}"
        [data] = [i for i in job["ProcessingInputs"] if i["InputName"] == "data"]
        assert data["S3Input"]["S3Uri"] == f"s3://{bucket}/staging/versions/{job['ProcessingJobName']}/batch.csv"
    # and the input object is untouched: its current version is still the third upload
    current = cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert current == bodies[-1]


def test_refused_key_reaches_the_alert_topic(cloud):
    # GIVEN an upload under a folder that is no valid dataset name (before: a WARNING log line, nothing else)
    bucket, topic = cloud.outputs["DataBucketName"], cloud.outputs["AlertTopicArn"]
    n_sns = len(cloud.sns_messages(topic))
    before = set(_jobs(cloud))
    put = cloud.s3.put_object(Bucket=bucket, Key="input/Bad_DS/x.csv", Body=_csv(4))
    # WHEN it is delivered
    cloud.run_until_idle()
    # THEN no job, and the alert topic hears about it: bucket, key, version and the reason
    assert set(_jobs(cloud)) == before
    bodies = [json.loads(m["Message"]) for m in cloud.sns_messages(topic)[n_sns:]]
    refused = [b for b in bodies if b.get("event") == "key-refused"]
    assert len(refused) == 1, bodies
    [body] = refused
    assert (body["bucket"], body["key"], body["version_id"]) == (bucket, "input/Bad_DS/x.csv", put["VersionId"])
    assert body["reason_code"] == "InvalidDataset" and "Bad_DS" in body["reason"]
    # and the KeyRefused metric (by reason) was published in the stack's namespace
    from datetime import timedelta

    now = cloud.clock.datetime()  # the local cloud's simulated clock (other e2e tests may have advanced it)
    points = cloud.cloudwatch.get_metric_statistics(
        Namespace="DataQualityPipeline", MetricName="KeyRefused",
        Dimensions=[{"Name": "Reason", "Value": "InvalidDataset"}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=60, Statistics=["Sum"])
    assert sum(p["Sum"] for p in points["Datapoints"]) >= 1


def test_key_with_plus_percent_spaces_equals_and_non_ascii_is_processed_with_its_exact_bytes(cloud):
    # GIVEN a key whose raw and URL-decoded readings differ ('+', '%2B', '%20', spaces, '=', non-ASCII)
    bucket = cloud.outputs["DataBucketName"]
    key = "input/default/a+b %2B c=d %20 ü€ 100%.csv"
    body = _csv(5)
    before = set(_jobs(cloud))
    put = cloud.s3.put_object(Bucket=bucket, Key=key, Body=body)
    # WHEN it is delivered (the local cloud sends the key raw)
    cloud.run_until_idle()
    new = [j for name, j in _jobs(cloud).items() if name not in before]
    # THEN one job, on exactly that object's bytes
    assert len(new) == 1
    job = new[0]
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["Environment"]["SOURCE_URI"] == f"s3://{bucket}/{key}"
    assert job["Environment"]["SOURCE_VERSION_ID"] == put["VersionId"]
    [digest] = [i["sha256"] for i in _metrics(cloud, job)["inputs"]]
    assert digest == hashlib.sha256(body).hexdigest()
