"""End to end in the local cloud: baseline, drift and the quality gate (design.md Contract 4).

Three batches of the ``default`` dataset (the only one with a config, hence with alarms), in order:

1. a reference batch (``processing.sample``, 2,000 rows): Completed, gate passed; the metrics Lambda promotes its
   ``quality/profile.json`` to ``baselines/default/baseline.json`` if no earlier batch of the session did (first
   batch wins). The test then sets the baseline explicitly to this batch's profile by copying the file, which is the
   documented promotion path, so the result does not depend on which other e2e test ran first;
2. a shifted batch (salaries x1.5, department "Engineering" dropped): Completed, gate failed, data under
   ``quarantine/default/<job>/`` with ``violations.json``, no data and no ``_SUCCESS`` under ``output/``,
   DriftMaxPsi/DriftedColumns/QualityGateFailed alarms in ALARM with SNS notifications, the baseline unchanged;
3. an unshifted resample (another seed): drift computed against the same baseline, nothing flagged, gate passed.

Input objects are never modified (same bytes, one version each). No timing assertions.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DATASET = "default"
BASELINE_KEY = f"baselines/{DATASET}/baseline.json"
KEYS = {
    "reference": f"input/{DATASET}/drift-e2e-reference.csv",
    "shifted": f"input/{DATASET}/drift-e2e-shifted.csv",
    "unshifted": f"input/{DATASET}/drift-e2e-unshifted.csv",
}
ROWS = 2000
SALARY_FACTOR = 1.5
DROPPED_DEPARTMENT = "Engineering"
DRIFT_ALARMS = ("DriftMaxPsi", "DriftedColumns", "QualityGateFailed")


def _sample(tmp: Path, seed: int) -> bytes:
    out = tmp / f"sample-{seed}.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", str(ROWS), "--seed", str(seed),
                    "--out", str(out)], check=True, cwd=str(REPO))
    return out.read_bytes()


def _shift(body: bytes) -> bytes:
    """Salaries x1.5 (text cells such as 'unknown' kept), rows of one department dropped."""
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    for row in rows:
        if row["department"] == DROPPED_DEPARTMENT:
            continue
        with contextlib.suppress(ValueError):
            row["salary"] = f"{float(row['salary']) * SALARY_FACTOR:.2f}"
        writer.writerow(row)
    return buf.getvalue().encode("utf-8")


@dataclass
class Batch:
    key: str
    body: bytes
    put: dict
    job: dict
    keys: list[str] = field(default_factory=list)  # every object of the job under output/ and quarantine/

    @property
    def name(self) -> str:
        return self.job["ProcessingJobName"]


@dataclass
class DriftRun:
    bucket: str
    topic: str
    baseline_before: bytes | None  # baselines/default/baseline.json before the reference batch (None: absent)
    baseline_after_reference: bytes | None
    baseline_after_shifted: bytes | None
    batches: dict[str, Batch]
    states_before_shifted: dict[str, str]
    alarms_after_shifted: dict[str, dict]
    sns_after_shifted: list[dict]  # messages published while the shifted batch ran
    sns_all: list[dict]
    metrics_logs: str


def _get(cloud, bucket: str, key: str) -> bytes | None:
    try:
        return cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except cloud.s3.exceptions.NoSuchKey:
        return None


def _json(cloud, bucket: str, key: str) -> dict:
    raw = _get(cloud, bucket, key)
    assert raw is not None, f"s3://{bucket}/{key} is missing"
    return json.loads(raw)


def _keys(cloud, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for page in cloud.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def _dataset_alarms(cloud) -> dict[str, dict]:
    """Metric name -> the deployed alarm on it for Dataset=default."""
    found: dict[str, dict] = {}
    for page in cloud.cloudwatch.get_paginator("describe_alarms").paginate():
        for a in page["MetricAlarms"]:
            if a.get("Dimensions") == [{"Name": "Dataset", "Value": DATASET}]:
                found[a["MetricName"]] = a
    return found


def _run(cloud, bucket: str, key: str, body: bytes) -> Batch:
    before = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
    put = cloud.s3.put_object(Bucket=bucket, Key=key, Body=body)
    cloud.run_until_idle()
    new = [j for j in cloud.processing_jobs() if j["ProcessingJobName"] not in before]
    assert len(new) == 1, [j["ProcessingJobName"] for j in new]
    batch = Batch(key, body, put, new[0])
    batch.keys = _keys(cloud, bucket, f"output/{DATASET}/{batch.name}/") + \
        _keys(cloud, bucket, f"quarantine/{DATASET}/{batch.name}/")
    return batch


@pytest.fixture(scope="module")
def drift_run(cloud, tmp_path_factory) -> DriftRun:
    tmp = tmp_path_factory.mktemp("drift")
    bucket, topic = cloud.outputs["DataBucketName"], cloud.outputs["AlertTopicArn"]
    batches: dict[str, Batch] = {}

    baseline_before = _get(cloud, bucket, BASELINE_KEY)
    batches["reference"] = _run(cloud, bucket, KEYS["reference"], _sample(tmp, seed=7))
    baseline_after_reference = _get(cloud, bucket, BASELINE_KEY)
    # The documented promotion: copy the batch's quality/profile.json to the baseline key.
    cloud.s3.copy_object(Bucket=bucket, Key=BASELINE_KEY, CopySource={
        "Bucket": bucket, "Key": f"output/{DATASET}/{batches['reference'].name}/quality/profile.json"})

    states_before = {m: a["StateValue"] for m, a in _dataset_alarms(cloud).items()}
    n_sns = len(cloud.sns_messages(topic))
    batches["shifted"] = _run(cloud, bucket, KEYS["shifted"], _shift(_sample(tmp, seed=8)))
    alarms_after = _dataset_alarms(cloud)
    sns_after = cloud.sns_messages(topic)[n_sns:]
    baseline_after_shifted = _get(cloud, bucket, BASELINE_KEY)

    batches["unshifted"] = _run(cloud, bucket, KEYS["unshifted"], _sample(tmp, seed=9))
    metrics_fn = cloud.outputs.get("MetricsFunctionName", "Metrics")
    return DriftRun(bucket, topic, baseline_before, baseline_after_reference, baseline_after_shifted, batches,
                    states_before, alarms_after, sns_after, cloud.sns_messages(topic),
                    "\n".join(inv.logs or "" for inv in cloud.invocations(metrics_fn)))


def test_reference_batch_passes_and_becomes_the_baseline(cloud, drift_run):
    ref = drift_run.batches["reference"]
    assert ref.job["ProcessingJobStatus"] == "Completed", ref.job.get("FailureReason")
    quality = f"output/{DATASET}/{ref.name}/quality/"
    gate = _json(cloud, drift_run.bucket, quality + "gate.json")
    assert gate["status"] == "passed", gate["violations"]
    profile = _get(cloud, drift_run.bucket, quality + "profile.json")
    assert json.loads(profile)["columns"]
    for folder in ("cleaned", "transformed"):  # the marker downstream jobs wait for (written by the metrics Lambda)
        assert f"output/{DATASET}/{ref.name}/{folder}/_SUCCESS" in ref.keys
    assert "success-written" in drift_run.metrics_logs
    if drift_run.baseline_before is None:
        # no earlier batch of this dataset set a baseline: the metrics Lambda promoted this one (first batch wins)
        assert drift_run.baseline_after_reference == profile
        assert "baseline-promoted" in drift_run.metrics_logs
    else:
        # an earlier batch won; automatic promotion never overwrites an existing baseline
        assert drift_run.baseline_after_reference == drift_run.baseline_before
    # after the documented copy, the baseline is this batch's profile, and the failed batch did not replace it
    assert drift_run.baseline_after_shifted == profile
    assert _get(cloud, drift_run.bucket, BASELINE_KEY) == profile


def test_shifted_batch_is_detected_and_quarantined(cloud, drift_run):
    shifted, ref = drift_run.batches["shifted"], drift_run.batches["reference"]
    assert shifted.job["ProcessingJobStatus"] == "Completed", shifted.job.get("FailureReason")  # a verdict, not a crash
    # the trigger gave the job the baseline input
    inputs = {i["InputName"]: i for i in shifted.job.get("ProcessingInputs", [])}
    assert inputs["baseline"]["S3Input"]["S3Uri"] == f"s3://{drift_run.bucket}/{BASELINE_KEY}"
    quality = f"output/{DATASET}/{shifted.name}/quality/"
    drift = _json(cloud, drift_run.bucket, quality + "drift.json")
    assert drift["status"] == "computed", drift.get("reason")
    # computed against the reference batch's profile (its source is the reference file's digest)
    assert drift["baseline"]["rows"] == ROWS
    assert drift["baseline"]["source"]["inputs"][0]["sha256"] == hashlib.sha256(ref.body).hexdigest()
    assert {"salary", "department"} <= set(drift["drifted_columns"])
    assert drift["max_psi"] >= 0.25
    assert DROPPED_DEPARTMENT in drift["columns"]["department"]["vanished_categories"]
    assert drift["columns"]["salary"]["batch_mean"] > drift["columns"]["salary"]["baseline_mean"] * 1.3

    gate = _json(cloud, drift_run.bucket, quality + "gate.json")
    assert gate["status"] == "failed"
    metrics = _json(cloud, drift_run.bucket, quality + "metrics.json")["summary"]
    assert metrics["quality_gate_failed"] == 1 and metrics["drifted_columns"] >= 2

    quarantine = f"quarantine/{DATASET}/{shifted.name}/"
    violations = _json(cloud, drift_run.bucket, quarantine + "violations.json")
    assert violations["status"] == "failed"
    broken = {(v["rule"], v["column"]) for v in violations["violations"]}
    assert {("drift.psi_alarm", "salary"), ("drift.psi_alarm", "department")} <= broken
    for v in violations["violations"]:
        assert v["measured"] >= v["threshold"] and v["action"] == "fail"
    for folder in ("cleaned", "transformed", "statistics", "rejected"):
        assert any(k.startswith(f"{quarantine}{folder}/") for k in shifted.keys), folder
    assert not any(k.endswith("_SUCCESS") for k in shifted.keys)
    # under output/ only quality/: no data, no marker
    normal = [k for k in shifted.keys if k.startswith(f"output/{DATASET}/{shifted.name}/")]
    assert normal and all(k.startswith(quality) for k in normal), normal


def test_shifted_batch_raises_drift_and_gate_alarms_with_sns(drift_run):
    for metric in DRIFT_ALARMS:
        alarm = drift_run.alarms_after_shifted[metric]
        assert alarm["StateValue"] == "ALARM", (metric, alarm.get("StateReason"))
        # a notification for the transition; if an earlier test had already left the alarm in ALARM, there was no
        # transition, so the earlier notification is the one to find
        messages = drift_run.sns_after_shifted if drift_run.states_before_shifted.get(metric) != "ALARM" \
            else drift_run.sns_all
        bodies = [json.loads(m["Message"]) for m in messages]
        assert any(b.get("AlarmName") == alarm["AlarmName"] and b.get("NewStateValue") == "ALARM"
                   for b in bodies), metric
    # and exactly one notification from the metrics Lambda for the quarantined batch, naming the rules and the place
    shifted = drift_run.batches["shifted"]
    own = [json.loads(m["Message"]) for m in drift_run.sns_after_shifted]
    own = [b for b in own if b.get("event") in ("batch-quarantined", "job-failed")]
    assert [b["job_name"] for b in own] == [shifted.name] and own[0]["event"] == "batch-quarantined"
    assert own[0]["quarantine"] == f"s3://{drift_run.bucket}/quarantine/{DATASET}/{shifted.name}/"
    assert {(v["rule"], v.get("column")) for v in own[0]["violations"]} >= {
        ("drift.psi_alarm", "salary"), ("drift.psi_alarm", "department")}
    assert own[0]["input"] == f"s3://{drift_run.bucket}/{shifted.key}"
    # the passing batches send none
    names = {json.loads(m["Message"]).get("job_name") for m in drift_run.sns_all}
    assert not names & {drift_run.batches["reference"].name, drift_run.batches["unshifted"].name}
    # one batch without drift (the first of a dataset) never pages DriftUnavailable (3 of 3 hourly datapoints)
    assert drift_run.alarms_after_shifted["DriftUnavailable"]["StateValue"] != "ALARM"


def test_unshifted_resample_is_not_flagged(cloud, drift_run):
    ok = drift_run.batches["unshifted"]
    assert ok.job["ProcessingJobStatus"] == "Completed", ok.job.get("FailureReason")
    quality = f"output/{DATASET}/{ok.name}/quality/"
    drift = _json(cloud, drift_run.bucket, quality + "drift.json")
    assert drift["status"] == "computed", drift.get("reason")
    assert drift["baseline"]["source"]["inputs"][0]["sha256"] == hashlib.sha256(
        drift_run.batches["reference"].body).hexdigest()
    assert drift["drifted_columns"] == [] and drift["max_psi"] < 0.25
    assert _json(cloud, drift_run.bucket, quality + "gate.json")["status"] in ("passed", "warned")
    assert f"output/{DATASET}/{ok.name}/cleaned/_SUCCESS" in ok.keys
    assert not any(k.startswith("quarantine/") and not k.endswith("/") for k in ok.keys)


def test_inputs_are_untouched(cloud, drift_run):
    for batch in drift_run.batches.values():
        head = cloud.s3.head_object(Bucket=drift_run.bucket, Key=batch.key)
        assert head["VersionId"] == batch.put["VersionId"]
        assert _get(cloud, drift_run.bucket, batch.key) == batch.body
        versions = cloud.s3.list_object_versions(Bucket=drift_run.bucket, Prefix=batch.key).get("Versions", [])
        assert [v["VersionId"] for v in versions if v["Key"] == batch.key] == [batch.put["VersionId"]]
