"""Issue 13 item 4 in the local cloud: a folder completed by ``_SUCCESS`` is one job over all its files, its parts
alone start none (design.md Contract 5). No timing assertions."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _jobs(cloud) -> dict[str, dict]:
    return {j["ProcessingJobName"]: j for j in cloud.processing_jobs()}


def _parts(tmp_path: Path, rows: int, n: int = 3, seed: int = 7) -> list[bytes]:
    """The sample generator's rows split into ``n`` CSV parts, each with the header (as Spark writes them)."""
    out = tmp_path / "sample.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", str(rows), "--out", str(out),
                    "--seed", str(seed)], check=True, cwd=str(REPO))
    with out.open(newline="", encoding="utf-8") as f:
        header, *records = list(csv.reader(f))
    parts = []
    for i in range(n):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(records[i::n])
        parts.append(buf.getvalue().encode())
    return parts


def _trigger_decisions(cloud, since: int) -> list[dict]:
    runs = cloud.invocations(cloud.outputs["TriggerFunctionName"])[since:]
    return [json.loads(line) for run in runs for line in (run.logs or "").splitlines() if line.startswith("{")
            and "decision" in line]


def _metrics(cloud, job: dict) -> dict:
    bucket = cloud.outputs["DataBucketName"]
    key = f"output/{job['Environment']['DATASET']}/{job['ProcessingJobName']}/quality/metrics.json"
    return json.loads(cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_parts_alone_start_no_job_and_their_marker_starts_exactly_one(cloud, tmp_path):
    bucket, folder = cloud.outputs["DataBucketName"], "input/folders/day=2026-12-07/"
    keys = [folder + "part-00000.csv", folder + "part-00001.csv", folder + "region=eu/part-00002.csv"]
    bodies = _parts(tmp_path, 600)
    runs = len(cloud.invocations(cloud.outputs["TriggerFunctionName"]))
    before = set(_jobs(cloud))
    # GIVEN three parts uploaded into one folder of a dataset (one in a nested folder), no marker yet
    for key, body in zip(keys, bodies, strict=True):
        cloud.s3.put_object(Bucket=bucket, Key=key, Body=body)
    cloud.run_until_idle()
    # THEN no job (before: one job per part); each part is a logged quiet skip naming the folder batch
    assert set(_jobs(cloud)) == before
    decisions = _trigger_decisions(cloud, runs)
    assert [(d["decision"], d["key"]) for d in decisions] == [("ignored", k) for k in keys]
    assert all("folder batch" in d["reason"] for d in decisions)

    # WHEN the writer completes the folder with an empty _SUCCESS marker (the Hadoop/Spark convention)
    marker = cloud.s3.put_object(Bucket=bucket, Key=folder + "_SUCCESS", Body=b"")
    cloud.run_until_idle()
    # THEN exactly one job, named from the marker's version, over the three staged parts, Completed
    new = [j for name, j in _jobs(cloud).items() if name not in before]
    assert len(new) == 1, [j["ProcessingJobName"] for j in new]
    job = new[0]
    assert job["ProcessingJobStatus"] == "Completed", (job.get("FailureReason"), job.get("ExitMessage"))
    env = job["Environment"]
    assert (env["SOURCE_URI"], env["SOURCE_VERSION_ID"]) == (f"s3://{bucket}/{folder}_SUCCESS", marker["VersionId"])
    assert (env["BATCH_PARTS"], env["BATCH_BYTES"]) == ("3", str(sum(len(b) for b in bodies)))
    [data] = [i for i in job["ProcessingInputs"] if i["InputName"] == "data"]
    staged = f"staging/folders/{job['ProcessingJobName']}/"
    assert data["S3Input"]["S3Uri"] == f"s3://{bucket}/{staged}"
    listed = sorted(o["Key"] for o in cloud.s3.list_objects_v2(Bucket=bucket, Prefix=staged)["Contents"])
    assert listed == sorted(staged + k[len(folder):] for k in keys)  # no marker among the staged files
    # and the row accounting holds per file and in total: each part once, with its own bytes
    metrics = _metrics(cloud, job)
    inputs = metrics["inputs"]
    assert sorted(i["sha256"] for i in inputs) == sorted(hashlib.sha256(b).hexdigest() for b in bodies)
    per_part = {hashlib.sha256(b).hexdigest(): len(list(csv.reader(io.StringIO(b.decode())))) - 1 for b in bodies}
    assert {i["sha256"]: i["rows_in"] for i in inputs} == per_part
    assert all(i["rows_out"] + i["rows_rejected"] == i["rows_in"] for i in inputs)
    summary = metrics["summary"]
    assert summary["rows_in"] == sum(i["rows_in"] for i in inputs) == 600
    assert summary["rows_out"] + summary["rows_rejected"] == summary["rows_in"]
    # the trigger's decision names the batch
    [started] = [d for d in _trigger_decisions(cloud, runs) if d["decision"] == "started"]
    assert (started["parts"], started["folder"]) == (3, folder)


def test_an_empty_folder_marker_is_refused_and_told(cloud):
    bucket, topic = cloud.outputs["DataBucketName"], cloud.outputs["AlertTopicArn"]
    before, told = set(_jobs(cloud)), len(cloud.sns_messages(topic))
    # GIVEN a marker in a folder that holds no data file
    cloud.s3.put_object(Bucket=bucket, Key="input/folders/empty/_SUCCESS", Body=b"")
    # WHEN it is delivered
    cloud.run_until_idle()
    # THEN no job, and the refusal is told on the alert topic
    assert set(_jobs(cloud)) == before
    bodies = [json.loads(m["Message"]) for m in cloud.sns_messages(topic)[told:]]
    refused = [b for b in bodies if b.get("event") == "key-refused"]
    assert [(b["reason_code"], b["key"]) for b in refused] == [("EmptyBatch", "input/folders/empty/_SUCCESS")]
