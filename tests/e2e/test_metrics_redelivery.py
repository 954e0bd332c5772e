"""End to end in the local cloud (issue 11 item 6): a metrics.json that was corrupt when the job's state event was
handled does not block its batch; after the file is fixed, a redelivery of the event publishes the metrics.
No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DATASET = "redelivery"  # a dataset of its own: its MetricsUnavailable datapoint touches no other test's alarms


def _metric_values(cloud, name: str, statistic: str = "Maximum") -> list[float]:
    now = cloud.clock.datetime()  # the local cloud's simulated clock (other e2e tests may have advanced it)
    resp = cloud.cloudwatch.get_metric_statistics(
        Namespace="DataQualityPipeline", MetricName=name, Dimensions=[{"Name": "Dataset", "Value": DATASET}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=60, Statistics=[statistic])
    return [p[statistic] for p in resp["Datapoints"]]


def _samples(cloud, name: str) -> int:
    return int(sum(_metric_values(cloud, name, "SampleCount")))


def _deliver_state_event(cloud, job_name: str) -> None:
    """Route the job's state-change event through the default bus again, as LocalCloud.run_job does."""
    from localcloud import job_executor, moto_patches

    request = dict(moto_patches.PROCESSING_JOB_REQUESTS[job_name])
    request.pop("ProcessingJobArn", None)
    event = job_executor.state_change_event(request, cloud.job_results[job_name], region=cloud.region,
                                            account=cloud.account)
    moto_patches.put_event(cloud.account, cloud.region, event)
    cloud.run_until_idle()


def _metrics_results(cloud, job_name: str) -> list[dict]:
    function = cloud.outputs["MetricsFunctionName"]
    return [inv.result for inv in cloud.invocations(function)
            if inv.ok and (inv.event.get("detail") or {}).get("ProcessingJobName") == job_name]


def _exists(cloud, bucket: str, key: str) -> bool:
    return bool(cloud.s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))


def test_fixed_metrics_json_publishes_on_redelivery(cloud, tmp_path):
    bucket = cloud.outputs["DataBucketName"]
    sample = tmp_path / "sample.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "300", "--out", str(sample)], check=True,
                   cwd=str(REPO))
    before = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
    cloud.s3.put_object(Bucket=bucket, Key=f"input/{DATASET}/sample.csv", Body=sample.read_bytes())
    cloud.run_until_idle()
    [job] = [j for j in cloud.processing_jobs() if j["ProcessingJobName"] not in before]
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    name = job["ProcessingJobName"]
    quality = f"output/{DATASET}/{name}/quality/"
    good = cloud.s3.get_object(Bucket=bucket, Key=quality + "metrics.json")["Body"].read()
    assert json.loads(good)["library_drift"] == []  # the local job runs on the pinned libraries (item 10)

    # GIVEN the job's metrics.json is corrupt when its state event is handled (the marker of the first, good
    # delivery removed: this is the state a corrupt file left behind)
    cloud.s3.put_object(Bucket=bucket, Key=quality + "metrics.json", Body=b"{corrupt")
    cloud.s3.delete_object(Bucket=bucket, Key=quality + "_metrics_published")
    _deliver_state_event(cloud, name)
    # THEN MetricsUnavailable fires and the batch is NOT marked published
    first = _metrics_results(cloud, name)[-1]
    assert first["metrics_unavailable"] is True and first["marker"] == "withheld", first
    assert 1.0 in _metric_values(cloud, "MetricsUnavailable")
    assert not _exists(cloud, bucket, quality + "_metrics_published")
    rows_in_samples = _samples(cloud, "RowsIn")

    # WHEN the file is fixed and the event redelivered
    cloud.s3.put_object(Bucket=bucket, Key=quality + "metrics.json", Body=good)
    _deliver_state_event(cloud, name)
    # THEN the metrics are published and the batch is marked published
    second = _metrics_results(cloud, name)[-1]
    assert second["metrics_unavailable"] is False and second["marker"] == "written", second
    assert second["published"] > 3  # the summary metrics, not only the job outcome
    assert _samples(cloud, "RowsIn") == rows_in_samples + 1
    assert 0.0 in _metric_values(cloud, "MetricsUnavailable", "Minimum")
    assert _exists(cloud, bucket, quality + "_metrics_published")
    # and a further duplicate publishes nothing
    _deliver_state_event(cloud, name)
    assert _metrics_results(cloud, name)[-1] == {"published": 0, "decision": "duplicate"}
