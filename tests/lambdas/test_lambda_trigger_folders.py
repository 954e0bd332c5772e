"""Folder batches (design.md Contract 5): a folder completed by ``_SUCCESS`` is one job; its parts start none.
Every AWS request is checked against botocore's model with Stubber."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber

from lambda_helpers import ENV, client, load_handler, s3_event_body, sqs_record

trigger = load_handler("trigger")
SETTINGS = trigger.Settings.from_env(ENV)
BUCKET = ENV["DATA_BUCKET"]
JOB_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/"
FOLDER = "input/sales/2024-01-01/"
MARKER = FOLDER + "_SUCCESS"
T0 = datetime(2026, 12, 7, 5, 0, 0, tzinfo=UTC)


class Clients:
    def __init__(self, sm: Stubber, s3: Stubber, cw: Stubber, sns: Stubber) -> None:
        self.sm, self.s3, self.cw, self.sns = sm, s3, cw, sns
        self.published: list[dict] = []


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    """Stubbed clients injected into the handler; every queued response must be consumed. Copies one at a time
    (Stubber answers in order)."""
    sagemaker, sqs, s3, cloudwatch, sns = (client(n) for n in ("sagemaker", "sqs", "s3", "cloudwatch", "sns"))
    for name, value in (("sagemaker_client", sagemaker), ("sqs_client", sqs), ("s3_client", s3),
                        ("cloudwatch_client", cloudwatch), ("sns_client", sns), ("_settings", SETTINGS),
                        ("BATCH_COPY_WORKERS", 1)):
        monkeypatch.setattr(trigger, name, value)
    with Stubber(sagemaker) as sm, Stubber(sqs), Stubber(s3) as s3s, Stubber(cloudwatch) as cw, Stubber(sns) as sn:
        out = Clients(sm, s3s, cw, sn)
        sns.meta.events.register_first("before-parameter-build.sns.Publish",
                                       lambda params, **_: out.published.append(dict(params)))
        yield out
        for stub in (sm, s3s, cw, sn):
            stub.assert_no_pending_responses()


def version(key: str, vid: str, size: int, at: datetime, latest: bool = True) -> dict:
    return {"Key": key, "VersionId": vid, "Size": size, "ETag": f'"etag-{vid}"', "LastModified": at,
            "IsLatest": latest, "StorageClass": "STANDARD"}


def head_marker(aws: Clients, vid: str = "m1", key: str = MARKER) -> None:
    aws.s3.add_response("head_object", {"ContentLength": 0, "ETag": '"d41d8cd98f00b204e9800998ecf8427e"',
                                        "VersionId": vid}, {"Bucket": BUCKET, "Key": key, "VersionId": vid})


def listing(aws: Clients, versions: list[dict], delete_markers: list[dict] | None = None,
            prefix: str = FOLDER) -> None:
    aws.s3.add_response("list_object_versions", {"Versions": versions, "DeleteMarkers": delete_markers or [],
                                                 "IsTruncated": False},
                        {"Bucket": BUCKET, "Prefix": prefix})


def no_baseline(aws: Clients) -> None:
    aws.s3.add_client_error("head_object", "404", "Not Found", 404,
                            expected_params={"Bucket": BUCKET, "Key": "baselines/sales/baseline.json"})


def copies(aws: Clients, job_name: str, parts: list[tuple[str, str]]) -> None:
    for key, vid in parts:
        aws.s3.add_response("copy_object", {"CopySourceVersionId": vid, "CopyObjectResult": {"ETag": '"e"'}},
                            {"Bucket": BUCKET, "Key": f"staging/sales/{job_name}/{key[len(FOLDER):]}",
                             "CopySource": {"Bucket": BUCKET, "Key": key, "VersionId": vid},
                             "TaggingDirective": "REPLACE"})


def expect_told(aws: Clients, reason: str) -> None:
    aws.cw.add_response("put_metric_data", {}, {
        "Namespace": "DataQualityPipeline", "MetricData": [
            {"MetricName": "KeyRefused", "Dimensions": [{"Name": "Reason", "Value": reason}], "Value": 1.0,
             "Unit": "Count"},
            {"MetricName": "KeyRefused", "Value": 1.0, "Unit": "Count"}]})
    aws.sns.add_response("publish", {"MessageId": "m"})


def marker_event(key: str = MARKER, vid: str = "m1") -> dict:
    return {"Records": [sqs_record(s3_event_body(key, size=0, version_id=vid))]}


def folder_versions() -> tuple[list[dict], list[dict]]:
    """Three parts (one nested), written before the marker; plus what must not be in the batch."""
    before, marker_at, after = T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    versions = [
        version(FOLDER + "part-0.csv", "p0-new", 999, after),  # replaced after the marker: the older version counts
        version(FOLDER + "part-0.csv", "p0", 100, before, latest=False),
        version(FOLDER + "part-1.csv", "p1", 200, before),
        version(FOLDER + "region=eu/part-2.csv", "p2", 300, before),  # nested folder: a part too
        version(FOLDER + "late.csv", "l1", 50, after),  # written after the marker: not in this batch
        version(FOLDER + "gone.csv", "g1", 70, before, latest=False),  # deleted before the marker
        version(FOLDER + "_temporary/0/part-9.csv", "t1", 10, before),  # Hadoop's hidden files: not parts
        version(FOLDER + ".part-1.csv.crc", "c1", 12, before),
        version(FOLDER + "empty.csv", "e1", 0, before),  # zero bytes: no data, not staged
        version(MARKER, "m1", 0, marker_at),
    ]
    deleted = [{"Key": FOLDER + "gone.csv", "VersionId": "g2", "IsLatest": True,
                "LastModified": before + timedelta(seconds=5)}]
    return versions, deleted


def test_a_part_in_a_folder_starts_no_job(aws, lambda_context, decision_log) -> None:
    # GIVEN parts uploaded into a folder of a dataset, no marker yet (before: each part started a job of its own)
    event = {"Records": [sqs_record(s3_event_body(FOLDER + "part-0.csv"), "a"),
                         sqs_record(s3_event_body(FOLDER + "region=eu/part-2.csv"), "b")]}
    # WHEN the trigger receives their events
    result = trigger.handler(event, lambda_context)
    # THEN no AWS call at all (every stub would fail an unexpected call), nothing retried: a logged quiet skip
    assert result == {"batchItemFailures": []}
    assert decision_log.decisions() == ["ignored", "ignored"]
    assert all("folder batch" in r["reason"] for r in decision_log.records)


def test_a_marker_starts_one_job_over_its_folder_as_it_was_at_the_marker(aws, lambda_context, decision_log) -> None:
    # GIVEN a folder with three parts (one nested) and a _SUCCESS marker, plus a part replaced and one added after
    # the marker, one deleted before it, Hadoop's hidden files and a zero-byte file
    versions, deleted = folder_versions()
    head_marker(aws)
    listing(aws, versions, deleted)
    no_baseline(aws)
    name = trigger.job_name_for("dq", "sales", BUCKET, MARKER, "m1")
    parts = [(FOLDER + "part-0.csv", "p0"), (FOLDER + "part-1.csv", "p1"), (FOLDER + "region=eu/part-2.csv", "p2")]
    copies(aws, name, parts)
    sent: list[dict] = []
    aws.sm.client.meta.events.register_first("before-parameter-build.sagemaker.CreateProcessingJob",
                                             lambda params, **_: sent.append(dict(params)))
    aws.sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + name})
    # WHEN the marker's event arrives (a zero-byte object: not skipped)
    result = trigger.handler(marker_event(), lambda_context)
    # THEN exactly one job, named from the marker's bucket/key/version, reading the staged folder
    assert result == {"batchItemFailures": []}
    assert decision_log.decisions() == ["started"]
    (request,) = sent
    assert request["ProcessingJobName"] == name
    data = next(i for i in request["ProcessingInputs"] if i["InputName"] == "data")
    assert data["S3Input"]["S3Uri"] == f"s3://{BUCKET}/staging/sales/{name}/"
    args = request["AppSpecification"]["ContainerArguments"]
    assert args[args.index("--input") + 1] == "/opt/ml/processing/input/data"
    env = request["Environment"]
    assert (env["SOURCE_URI"], env["SOURCE_VERSION_ID"], env["SOURCE_SIZE"]) == (f"s3://{BUCKET}/{MARKER}", "m1", "")
    assert (env["BATCH_PARTS"], env["BATCH_BYTES"]) == ("3", "600")
    record = decision_log.records[0]
    assert (record["parts"], record["total_bytes"], record["skipped_empty"]) == (3, 600, 1)


def test_the_same_marker_version_gives_the_same_job(aws, lambda_context, decision_log) -> None:
    # GIVEN the marker's event delivered twice; between the deliveries a part was replaced (listed as latest)
    versions, deleted = folder_versions()
    name = trigger.job_name_for("dq", "sales", BUCKET, MARKER, "m1")
    parts = [(FOLDER + "part-0.csv", "p0"), (FOLDER + "part-1.csv", "p1"), (FOLDER + "region=eu/part-2.csv", "p2")]
    for attempt in range(2):
        head_marker(aws)
        listing(aws, versions, deleted)
        no_baseline(aws)
        copies(aws, name, parts)  # the same versions to the same keys: the same bytes
        if attempt == 0:
            aws.sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + name})
        else:
            aws.sm.add_client_error("create_processing_job", "ResourceInUse", f"Job {name} already exists", 400)
    # WHEN both are handled
    first = trigger.handler(marker_event(), lambda_context)
    second = trigger.handler(marker_event(), lambda_context)
    # THEN one job: the second is "already-exists", nothing retried
    assert first == second == {"batchItemFailures": []}
    assert decision_log.decisions() == ["started", "already-exists"]
    assert {r["job_name"] for r in decision_log.records} == {name}


def test_an_empty_folder_marker_is_refused_and_told(aws, lambda_context, decision_log) -> None:
    # GIVEN a marker alone in its folder (and only a hidden file beside it)
    head_marker(aws)
    listing(aws, [version(MARKER, "m1", 0, T0), version(FOLDER + "_temporary/x", "t", 5, T0)])
    expect_told(aws, "EmptyBatch")
    # WHEN its event arrives
    result = trigger.handler(marker_event(), lambda_context)
    # THEN no job; the refusal is counted and told on the alert topic, not retried
    assert result == {"batchItemFailures": []}
    assert decision_log.decisions() == ["refused"]
    body = json.loads(aws.published[0]["Message"])
    assert (body["reason_code"], body["key"]) == ("EmptyBatch", MARKER)


def test_a_marker_outside_a_folder_is_refused_and_told(aws, lambda_context, decision_log) -> None:
    # GIVEN a marker directly under the dataset folder, where every file is a job of its own
    key = "input/sales/_SUCCESS"
    head_marker(aws, key=key)
    expect_told(aws, "InvalidBatch")
    # WHEN its event arrives
    result = trigger.handler(marker_event(key), lambda_context)
    # THEN refused and told (no listing, no job)
    assert result == {"batchItemFailures": []}
    assert json.loads(aws.published[0]["Message"])["reason_code"] == "InvalidBatch"


def test_more_parts_than_the_cap_are_refused_and_told(aws, lambda_context, decision_log, monkeypatch) -> None:
    # GIVEN a cap of 2 parts and a folder of 3
    monkeypatch.setattr(trigger, "MAX_BATCH_PARTS", 2)
    head_marker(aws)
    listing(aws, [version(FOLDER + f"part-{i}.csv", f"p{i}", 10, T0) for i in range(3)]
            + [version(MARKER, "m1", 0, T0 + timedelta(seconds=1))])
    expect_told(aws, "BatchTooLarge")
    # WHEN the marker's event arrives
    result = trigger.handler(marker_event(), lambda_context)
    # THEN no copy, no job; refused and told with the count and the cap
    assert result == {"batchItemFailures": []}
    body = json.loads(aws.published[0]["Message"])
    assert body["reason_code"] == "BatchTooLarge" and "3 parts" in body["reason"] and "at most 2" in body["reason"]


def test_a_failed_listing_is_retried(aws, lambda_context, decision_log) -> None:
    # GIVEN ListObjectVersions throttled (after botocore's retries)
    head_marker(aws)
    aws.s3.add_client_error("list_object_versions", "SlowDown", "Reduce your request rate", 503)
    # WHEN the marker's event arrives
    result = trigger.handler(marker_event(), lambda_context)
    # THEN the record is retried (nothing lost), no job
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert decision_log.decisions() == ["failed"]


MANIFEST = FOLDER + "_manifest.json"


def manifest_read(aws: Clients, body: dict | bytes, vid: str = "mf1") -> bytes:
    """HeadObject (key resolution) and GetObject of the manifest's version; returns its bytes."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    aws.s3.add_response("head_object", {"ContentLength": len(raw), "ETag": '"mf"', "VersionId": vid},
                        {"Bucket": BUCKET, "Key": MANIFEST, "VersionId": vid})
    aws.s3.add_response("get_object", {"Body": io.BytesIO(raw), "ContentLength": len(raw)},
                        {"Bucket": BUCKET, "Key": MANIFEST, "VersionId": vid})
    return raw


def test_a_manifest_starts_one_job_over_exactly_the_files_and_versions_it_lists(aws, lambda_context,
                                                                               decision_log) -> None:
    # GIVEN a folder of three parts, and a _manifest.json listing two of them, one pinned to its older version
    versions, deleted = folder_versions()
    versions.append(version(MANIFEST, "mf1", 80, T0 + timedelta(seconds=30)))
    body = {"files": [{"path": "part-0.csv", "version_id": "p0"}, "region=eu/part-2.csv"]}
    raw = manifest_read(aws, body)
    listing(aws, versions, deleted)
    no_baseline(aws)
    name = trigger.job_name_for("dq", "sales", BUCKET, MANIFEST, "mf1")
    copies(aws, name, [(FOLDER + "part-0.csv", "p0"), (FOLDER + "region=eu/part-2.csv", "p2")])
    sent: list[dict] = []
    aws.sm.client.meta.events.register_first("before-parameter-build.sagemaker.CreateProcessingJob",
                                             lambda params, **_: sent.append(dict(params)))
    aws.sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + name})
    # WHEN the manifest's event arrives (the pinned part-0 version is older than its latest, p0-new)
    result = trigger.handler({"Records": [sqs_record(s3_event_body(MANIFEST, size=len(raw), version_id="mf1"))]},
                             lambda_context)
    # THEN one job over exactly those two files and versions (part-1 is in the folder but not listed)
    assert result == {"batchItemFailures": []} and decision_log.decisions() == ["started"]
    (request,) = sent
    args = request["AppSpecification"]["ContainerArguments"]
    assert args[args.index("--input") + 1] == "/opt/ml/processing/input/data"
    assert (request["Environment"]["BATCH_PARTS"], request["Environment"]["BATCH_BYTES"]) == ("2", "400")


@pytest.mark.parametrize("body, reason, words", [
    ({"files": ["part-1.csv", "nope.csv"]}, "InvalidManifest", "nope.csv"),  # not in the folder
    ({"files": [{"path": "part-1.csv", "version_id": "v-unknown"}]}, "InvalidManifest", "version v-unknown"),
    ({"files": ["late.csv"]}, "InvalidManifest", "late.csv"),  # written after the manifest
    ({"files": ["../other/x.csv"]}, "InvalidManifest", "not a relative path inside the folder"),
    ({"files": ["_SUCCESS"]}, "InvalidManifest", "starting with '_' or '.'"),
    ({"files": ["a.csv", "a.csv"]}, "InvalidManifest", "twice"),
    ({"parts": []}, "InvalidManifest", "exactly the key 'files'"),
    (b"\xff not json", "InvalidManifest", "not UTF-8 JSON"),
    ({"files": []}, "EmptyBatch", "lists no file"),
])
def test_an_invalid_manifest_is_refused_and_told(aws, lambda_context, decision_log, body, reason, words) -> None:
    versions, deleted = folder_versions()
    versions.append(version(MANIFEST, "mf1", 80, T0 + timedelta(seconds=15)))
    raw = manifest_read(aws, body)
    parsed_ok = reason == "InvalidManifest" and isinstance(body, dict) and words in ("nope.csv", "version v-unknown",
                                                                                     "late.csv")
    if parsed_ok:
        listing(aws, versions, deleted)
    expect_told(aws, reason)
    result = trigger.handler({"Records": [sqs_record(s3_event_body(MANIFEST, size=len(raw), version_id="mf1"))]},
                             lambda_context)
    assert result == {"batchItemFailures": []} and decision_log.decisions() == ["refused"]
    told = json.loads(aws.published[0]["Message"])
    assert told["reason_code"] == reason and words in told["reason"], told["reason"]


def test_a_folder_batch_of_an_auto_dataset_runs_on_spark_by_its_total_bytes(aws, lambda_context, decision_log,
                                                                            monkeypatch) -> None:
    # GIVEN a dataset whose engine is auto (Spark from 500 input bytes): each part alone is below the threshold, the
    # batch's total (600 bytes) is not
    import botocore.session
    from botocore.validate import validate_parameters

    env = {**ENV, "ENGINES": json.dumps({"*": "pandas", "sales": "auto"}),
           "SPARK_IMAGE_URI":
               "571004829621.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312-v1.3",
           "SPARK_ROLE_ARN": "arn:aws:iam::123456789012:role/dq-spark-job-role",
           "SPARK_ENTRY_S3_URI": "s3://cdk-assets-bucket/fedcba9876543210.py", "SPARK_INSTANCE_TYPE": "ml.m5.xlarge",
           "SPARK_INSTANCE_COUNT": "2", "SPARK_MIN_INPUT_BYTES": "500"}
    settings = trigger.Settings.from_env(env)
    monkeypatch.setattr(trigger, "_settings", settings)
    versions, deleted = folder_versions()
    head_marker(aws)
    listing(aws, versions, deleted)
    no_baseline(aws)
    name = trigger.job_name_for("dq", "sales", BUCKET, MARKER, "m1")
    copies(aws, name, [(FOLDER + "part-0.csv", "p0"), (FOLDER + "part-1.csv", "p1"),
                       (FOLDER + "region=eu/part-2.csv", "p2")])
    aws.s3.add_response("put_object", {}, {"Bucket": BUCKET, "Key": f"staging/sales/{name}.conf/configuration.json",
                                           "Body": b"[]\n", "ContentType": "application/json"})
    sent: list[dict] = []
    aws.sm.client.meta.events.register_first("before-parameter-build.sagemaker.CreateProcessingJob",
                                             lambda params, **_: sent.append(dict(params)))
    aws.sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + name})
    # WHEN the marker's event arrives
    result = trigger.handler(marker_event(), lambda_context)
    # THEN one Spark job on two instances reading the batch's staging folder itself (s3://), with the batch's counts
    assert result == {"batchItemFailures": []} and decision_log.decisions() == ["started"]
    (request,) = sent
    validate_parameters(request, botocore.session.get_session().get_service_model("sagemaker")
                        .operation_model("CreateProcessingJob").input_shape)
    assert request["AppSpecification"]["ContainerEntrypoint"][0] == "smspark-submit"
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    args = request["AppSpecification"]["ContainerArguments"]
    assert args[args.index("--input") + 1] == f"s3://{BUCKET}/staging/sales/{name}/"
    assert (request["Environment"]["BATCH_PARTS"], request["Environment"]["BATCH_BYTES"]) == ("3", "600")
    assert decision_log.records[0]["engine"] == "spark"
