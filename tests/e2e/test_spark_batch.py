"""Issue 13's Done-when in the local cloud: three part files and a ``_SUCCESS`` marker in one folder of a dataset
configured for Spark give exactly one job, whose request names the Spark image, ``smspark-submit`` and an
``InstanceCount`` of 2 or more, that completes with the default engine's metrics on the concatenated data.
The suite's only Spark job (Spark start-up is slow). No timing assertions."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
DATASET = "sparkbatch"  # engine spark in the deployed stack's context (cdk.json)
#: metrics.json sections both engines compute the same way (tests/processing/test_spark_engine.py compares them too)
SAME = ("rows", "duplicates", "imputation", "columns", "json", "derived", "numeric", "group_columns")


def _jobs(cloud) -> dict[str, dict]:
    return {j["ProcessingJobName"]: j for j in cloud.processing_jobs()}


def _sample(tmp_path: Path, rows: int, seed: int) -> tuple[list[str], list[list[str]]]:
    out = tmp_path / "sample.csv"
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", str(rows), "--out", str(out),
                    "--seed", str(seed), "--invalid-rate", "0.02"], check=True, cwd=str(REPO))
    with out.open(newline="", encoding="utf-8") as f:
        header, *records = list(csv.reader(f))
    return header, records


def _csv(header: list[str], records: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(records)
    return buf.getvalue().encode()


def _same(a: Any, b: Any, path: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{path}: keys differ: {sorted(set(a) ^ set(b))}"
        for key in a:
            _same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), \
            f"{path}: {a!r} != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _read(cloud, key: str) -> Any:
    return json.loads(cloud.s3.get_object(Bucket=cloud.outputs["DataBucketName"], Key=key)["Body"].read())


def test_a_spark_folder_batch_is_one_spark_job_with_the_default_engines_metrics(cloud, tmp_path):
    bucket, folder = cloud.outputs["DataBucketName"], f"input/{DATASET}/day=2026-12-07/"
    header, records = _sample(tmp_path, 1500, seed=20261207)
    # GIVEN three parts (one in a nested partition folder), each with the header, as Spark writes them
    chunks = [records[0:500], records[500:1000], records[1000:]]
    keys = [folder + "part-00000.csv", folder + "part-00001.csv", folder + "region=eu/part-00002.csv"]
    before = set(_jobs(cloud))
    for key, chunk in zip(keys, chunks, strict=True):
        cloud.s3.put_object(Bucket=bucket, Key=key, Body=_csv(header, chunk))
    cloud.run_until_idle()
    assert set(_jobs(cloud)) == before  # the parts alone start nothing
    # WHEN the folder is completed with _SUCCESS
    cloud.s3.put_object(Bucket=bucket, Key=folder + "_SUCCESS", Body=b"")
    cloud.run_until_idle(timeout=900)
    # THEN exactly one job, a Spark job on at least two instances
    new = [j for name, j in _jobs(cloud).items() if name not in before]
    assert len(new) == 1, [j["ProcessingJobName"] for j in new]
    job = new[0]
    name = job["ProcessingJobName"]
    app = job["AppSpecification"]
    assert "/sagemaker-spark-processing:" in app["ImageUri"], app["ImageUri"]
    assert app["ContainerEntrypoint"][0] == "smspark-submit"
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceCount"] >= 2
    # that completed (run by the local executor with pyspark, which records the count it could not emulate)
    result = cloud.job_results[name]
    assert job["ProcessingJobStatus"] == "Completed", (job.get("FailureReason"), job.get("ExitMessage"),
                                                        result.log_path.read_text()[-4000:])
    assert result.spark is not None and result.spark["instance_count"] >= 2
    assert result.spark["vpc"] == "verified"  # the request's subnets and security group exist (the stack's VPC)
    spark = _read(cloud, f"output/{DATASET}/{name}/quality/metrics.json")
    assert spark["mode"] == "spark"
    # and whose metrics equal the default engine's on the concatenated parts (in the folder's sorted order)
    concatenated = tmp_path / "concatenated.csv"
    concatenated.write_bytes(_csv(header, [r for chunk in chunks for r in chunk]))
    subprocess.run([sys.executable, "-m", "processing", "--input", str(concatenated), "--output",
                    str(tmp_path / "default"), "--dataset", DATASET], check=True, cwd=str(REPO), capture_output=True)
    default = json.loads((tmp_path / "default" / "quality" / "metrics.json").read_text())
    summary = {k: v for k, v in default["summary"].items() if k != "processing_seconds"}
    _same(summary, {k: spark["summary"][k] for k in summary}, "summary")
    assert spark["summary"]["rows_in"] == 1500
    for key in SAME:
        _same(default[key], spark[key], key)
    for stats in sorted((tmp_path / "default" / "statistics").glob("*.json")):  # group statistics among them
        _same(json.loads(stats.read_text()), _read(cloud, f"output/{DATASET}/{name}/statistics/{stats.name}"),
              stats.name)
    # the batch's row accounting: three inputs, their rows adding up
    assert sorted(i["rows_in"] for i in spark["inputs"]) == [500, 500, 500]
