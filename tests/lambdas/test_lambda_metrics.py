"""The metrics Lambda: event parsing, metrics.json handling, PutMetricData and GetObject checked with Stubber."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from lambda_helpers import client, load_handler

metrics = load_handler("metrics")
SETTINGS = metrics.Settings(namespace="DataQualityPipeline", job_prefix="dq")
JOB = "dq-sales-0123456789abcdef"
BUCKET = "dq-data-bucket"
QUALITY_URI = f"s3://{BUCKET}/output/sales/{JOB}/quality/"
END_MS = 1_700_000_123_456
END = datetime.fromtimestamp(END_MS / 1000, tz=UTC)
# The handler's clock (metrics.now) in these tests: the datapoints' Timestamp is the publication time, not END.
PUBLISHED = datetime(2023, 11, 14, 22, 20, 0, tzinfo=UTC)
EXIT_MESSAGE = "MissingColumnsError: required column(s) missing: id, name"
SUMMARY = {
    "rows_in": 1000, "rows_out": 950, "rows_rejected": 50, "missing_values_before": 120, "missing_values_after": 3,
    "missing_rate_after": 0.0005, "rejected_rate": 0.05, "duplicate_rows_exact": 4, "duplicate_rows_key": 6,
    "duplicate_rate": 0.006, "malformed_json": 2, "malformed_json_rate": 0.01, "invalid_values": 7,
    "processing_seconds": 12.5,
}
DIMS = [{"Name": "Dataset", "Value": "sales"}]


def state_change(status: str = "Completed", job: str = JOB, **detail_overrides: Any) -> dict[str, Any]:
    """A "SageMaker Processing Job State Change" event (times in epoch milliseconds, FACTS.md §4)."""
    detail = {
        "ProcessingJobName": job,
        "ProcessingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:processing-job/{job}",
        "ProcessingJobStatus": status,
        "ProcessingEndTime": END_MS,
        "LastModifiedTime": END_MS + 5000,
        "CreationTime": END_MS - 600_000,
        "Environment": {"DATASET": "sales", "SOURCE_URI": f"s3://{BUCKET}/input/sales/a.csv"},
        "ProcessingOutputConfig": {"Outputs": [
            {"OutputName": name, "S3Output": {"S3Uri": f"s3://{BUCKET}/output/sales/{job}/{name}/",
                                              "LocalPath": f"/opt/ml/processing/output/{name}",
                                              "S3UploadMode": "EndOfJob"}, "AppManaged": False}
            for name in ("cleaned", "transformed", "statistics", "quality", "rejected")
        ], "KmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/abc"},
    }
    if status == "Failed":
        detail["FailureReason"] = "AlgorithmError: see job logs"
        detail["ExitMessage"] = EXIT_MESSAGE
    if status == "Stopped":
        detail["ExitMessage"] = ""  # known to be empty: no DescribeProcessingJob needed
    detail.update(detail_overrides)
    return {"version": "0", "id": "7e1b", "detail-type": "SageMaker Processing Job State Change",
            "source": "aws.sagemaker", "account": "123456789012", "time": "2023-11-14T22:15:30Z",
            "region": "eu-west-1", "resources": [detail["ProcessingJobArn"]], "detail": detail}


def description(status: str = "Completed", job: str = JOB, **fields: Any) -> dict[str, Any]:
    """A DescribeProcessingJob response (validated by Stubber against botocore's model): the event's detail with
    datetimes instead of epoch milliseconds, Environment included (the documented event sample lacks it)."""
    detail = state_change(status, job)["detail"]
    response = {k: v for k, v in detail.items() if k not in ("ProcessingEndTime", "LastModifiedTime", "CreationTime")}
    response.update({
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.t3.medium",
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:x"},
        "ProcessingInputs": [{"InputName": "data", "AppManaged": False, "S3Input": {
            "S3Uri": f"s3://{BUCKET}/staging/sales/{job}/a.csv", "LocalPath": "/opt/ml/processing/input/data",
            "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}],
        "ProcessingEndTime": END, "LastModifiedTime": END, "CreationTime": END,
    })
    response.update(fields)
    return response


def datum(name: str, value: float, unit: str = "Count", ts: datetime = PUBLISHED) -> dict[str, Any]:
    return {"MetricName": name, "Dimensions": DIMS, "Timestamp": ts, "Value": value, "Unit": unit}


def object_body(payload: bytes) -> dict[str, Any]:
    return {"Body": StreamingBody(io.BytesIO(payload), len(payload)), "ContentLength": len(payload)}


def all_summary_datums() -> list[dict[str, Any]]:
    return [datum(name, float(SUMMARY[key]), unit) for key, (name, unit) in metrics.SUMMARY_METRICS.items()]


@pytest.fixture
def sagemaker_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """DescribeProcessingJob, checked against botocore's model; no call is expected unless a test adds one."""
    sagemaker = client("sagemaker")
    monkeypatch.setattr(metrics, "sagemaker_client", sagemaker)
    with Stubber(sagemaker) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch, sagemaker_stub: Stubber) -> Iterator[tuple[Stubber, Stubber]]:
    cloudwatch, s3 = client("cloudwatch"), client("s3")
    monkeypatch.setattr(metrics, "cloudwatch_client", cloudwatch)
    monkeypatch.setattr(metrics, "s3_client", s3)
    monkeypatch.setattr(metrics, "_settings", SETTINGS)
    monkeypatch.setattr(metrics, "now", lambda: PUBLISHED)
    with Stubber(cloudwatch) as cw_stub, Stubber(s3) as s3_stub:
        yield cw_stub, s3_stub
        cw_stub.assert_no_pending_responses()
        s3_stub.assert_no_pending_responses()


def expect_metrics_json(s3: Stubber, payload: bytes) -> None:
    s3.add_response("get_object", object_body(payload),
                    {"Bucket": BUCKET, "Key": f"output/sales/{JOB}/quality/metrics.json"})


def test_completed_job_publishes_every_summary_metric(stubs, lambda_context, decision_log) -> None:
    # GIVEN a completed job whose metrics.json holds the full summary
    cw, s3 = stubs
    expect_metrics_json(s3, json.dumps({"summary": SUMMARY, "columns": {}}).encode())
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 0.0),
        *all_summary_datums()]})
    # WHEN the handler runs
    result = metrics.handler(state_change(), lambda_context)
    # THEN one PutMetricData with every metric, the right units, stamped with the job's end time
    assert result == {"published": 17, "decision": "published", "metrics_unavailable": False}
    assert decision_log.decisions() == ["published"]


def test_units_follow_contract_3() -> None:
    units = dict(metrics.SUMMARY_METRICS.values())
    assert units["ProcessingSeconds"] == "Seconds"
    assert {n for n, u in units.items() if u == "None"} == {
        "MissingRateAfter", "RejectedRate", "DuplicateRate", "MalformedJsonRate"}
    assert len(metrics.SUMMARY_METRICS) == 14


def test_duplicate_event_publishes_identical_datapoints(stubs, lambda_context) -> None:
    # GIVEN the same event delivered twice
    cw, s3 = stubs
    expected = {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 0.0), *all_summary_datums()]}
    for _ in range(2):
        expect_metrics_json(s3, json.dumps({"summary": SUMMARY}).encode())
        cw.add_response("put_metric_data", {}, expected)
    # WHEN handled twice (no DATA_BUCKET: no publish-once marker) / THEN both publish the same values; at the
    # publication time, so Maximum/Minimum over any period are unchanged by the repeat
    metrics.handler(state_change(), lambda_context)
    metrics.handler(state_change(), lambda_context)


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_failed_or_stopped_job_counts_as_failed(stubs, lambda_context, decision_log, status) -> None:
    # GIVEN a job that failed or was stopped / WHEN handled / THEN JobFailed=1, JobSucceeded=0, no S3 read
    cw, _ = stubs
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    result = metrics.handler(state_change(status), lambda_context)
    assert result["published"] == 2
    if status == "Failed":
        assert decision_log.records[0]["failure_reason"] == "AlgorithmError: see job logs"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (json.dumps({"rows": 3}).encode(), "no 'summary' object"),
        (json.dumps({"summary": []}).encode(), "no 'summary' object"),
    ],
)
def test_corrupt_metrics_json_becomes_metrics_unavailable(stubs, lambda_context, decision_log, payload,
                                                          problem) -> None:
    # GIVEN a completed job whose metrics.json is corrupt
    cw, s3 = stubs
    expect_metrics_json(s3, payload)
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 1.0)]})
    # WHEN handled / THEN MetricsUnavailable=1 and the reason is logged; nothing raises
    assert metrics.handler(state_change(), lambda_context)["metrics_unavailable"] is True
    assert decision_log.decisions() == ["metrics-unavailable", "published"]
    assert problem in decision_log.records[0]["problems"][0]


@pytest.mark.parametrize(("code", "status"), [("NoSuchKey", 404), ("AccessDenied", 403), ("KMS.DisabledException",
                                                                                          400)])
def test_missing_or_unreadable_metrics_json_becomes_metrics_unavailable(stubs, lambda_context, decision_log,
                                                                         code, status) -> None:
    # GIVEN metrics.json is missing or cannot be read
    cw, s3 = stubs
    s3.add_client_error("get_object", code, "nope", status,
                        expected_params={"Bucket": BUCKET, "Key": f"output/sales/{JOB}/quality/metrics.json"})
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 1.0)]})
    # WHEN / THEN
    assert metrics.handler(state_change(), lambda_context)["metrics_unavailable"] is True
    assert code in decision_log.records[0]["problems"][0]


def test_missing_summary_keys_publish_the_rest_and_flag_unavailable(stubs, lambda_context, decision_log) -> None:
    # GIVEN a summary missing one key and holding one non-number
    cw, s3 = stubs
    summary = {k: v for k, v in SUMMARY.items() if k != "invalid_values"} | {"rows_out": "950"}
    expect_metrics_json(s3, json.dumps({"summary": summary}).encode())
    kept = [d for d in all_summary_datums() if d["MetricName"] not in ("InvalidValues", "RowsOut")]
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 1.0), *kept]})
    # WHEN / THEN the valid values are published, MetricsUnavailable=1, both problems logged
    metrics.handler(state_change(), lambda_context)
    problems = decision_log.records[0]["problems"]
    assert any("summary.invalid_values is missing" in p for p in problems)
    assert any("summary.rows_out='950'" in p for p in problems)


def test_no_quality_output_in_event_is_metrics_unavailable(stubs, sagemaker_stub, lambda_context,
                                                           decision_log) -> None:
    # GIVEN neither the event nor DescribeProcessingJob names a quality output
    cw, _ = stubs
    sagemaker_stub.add_response("describe_processing_job", description(ProcessingOutputConfig={"Outputs": []}),
                                {"ProcessingJobName": JOB})
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 1.0)]})
    metrics.handler(state_change(ProcessingOutputConfig={"Outputs": []}), lambda_context)
    assert "no 'quality' output" in decision_log.records[0]["problems"][0]


def test_transient_s3_error_raises_for_async_retry(stubs, lambda_context) -> None:
    # GIVEN S3 keeps failing with a server error / WHEN handled / THEN it raises so Lambda retries the event
    _, s3 = stubs
    s3.add_client_error("get_object", "InternalError", "try again", 500,
                        expected_params={"Bucket": BUCKET, "Key": f"output/sales/{JOB}/quality/metrics.json"})
    with pytest.raises(metrics.ClientError):
        metrics.handler(state_change(), lambda_context)


def test_cloudwatch_throttling_raises_for_async_retry(stubs, lambda_context) -> None:
    cw, _ = stubs
    cw.add_client_error("put_metric_data", "Throttling", "Rate exceeded", 400, expected_params={
        "Namespace": "DataQualityPipeline", "MetricData": [datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    with pytest.raises(metrics.ClientError):
        metrics.handler(state_change("Failed"), lambda_context)


@pytest.mark.parametrize(
    "event",
    [
        state_change(job="other-sales-0123456789abcdef"),
        state_change(job="dqx-sales-0123456789abcdef"),
        state_change("InProgress"),
        state_change("Stopping"),
        {"detail": {}},
    ],
)
def test_foreign_or_non_terminal_events_are_ignored(stubs, lambda_context, decision_log, event) -> None:
    # GIVEN an event for a job that is not ours or not finished / WHEN handled / THEN no AWS call at all
    assert metrics.handler(event, lambda_context) == {"published": 0, "decision": "ignored"}
    assert decision_log.decisions() == ["ignored"]


def test_dataset_falls_back_to_the_job_name(stubs, sagemaker_stub, lambda_context) -> None:
    # GIVEN an event without Environment, and DescribeProcessingJob denied
    cw, _ = stubs
    sagemaker_stub.add_client_error("describe_processing_job", "AccessDeniedException", "no", 400,
                                    expected_params={"ProcessingJobName": JOB})
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    # THEN the dataset comes from <prefix>-<dataset>-<16 hex>
    metrics.handler(state_change("Failed", Environment=None), lambda_context)


@pytest.mark.parametrize(
    ("job", "dataset"),
    [("dq-sales-0123456789abcdef", "sales"), ("dq-sales-eu-0123456789abcdef", "sales-eu"),
     ("dq-0123456789abcdef", "unknown"), ("dq-Sales_x-0123456789abcdef", "unknown")],
)
def test_dataset_from_job_name(job: str, dataset: str) -> None:
    assert metrics.dataset_from_job_name(job, "dq") == dataset


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (END_MS, END),
        (str(END_MS), END),
        ("2023-11-14T22:15:23.456Z", END),
        ("2023-11-14T22:15:23.456+00:00", END),
        ("2023-11-14T22:15:23.456", END),
        (None, None),
        ("garbage", None),
        (True, None),
    ],
)
def test_parse_time_accepts_epoch_ms_and_iso(value: Any, expected: datetime | None) -> None:
    assert metrics.parse_time(value) == expected


def test_end_time_falls_back_to_last_modified_then_event_time() -> None:
    outcome = metrics.parse_outcome(state_change(ProcessingEndTime=None), SETTINGS)
    assert outcome.end_time == datetime.fromtimestamp((END_MS + 5000) / 1000, tz=UTC)
    outcome = metrics.parse_outcome(state_change(ProcessingEndTime=None, LastModifiedTime=None), SETTINGS)
    assert outcome.end_time == datetime(2023, 11, 14, 22, 15, 30, tzinfo=UTC)


def test_metric_data_is_chunked_to_the_api_limit(monkeypatch, stubs, lambda_context) -> None:
    # GIVEN a per-call limit smaller than the datapoint count
    cw, s3 = stubs
    monkeypatch.setattr(metrics, "MAX_DATUMS_PER_CALL", 10)
    monkeypatch.setattr(metrics.chunks, "__defaults__", (10,))
    expect_metrics_json(s3, json.dumps({"summary": SUMMARY}).encode())
    data = [datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 0.0),
            *all_summary_datums()]
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": data[:10]})
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": data[10:]})
    # WHEN / THEN two calls, in order
    assert metrics.handler(state_change(), lambda_context)["published"] == 17


def test_metrics_location() -> None:
    assert metrics.metrics_location("s3://b/output/x/quality/") == ("b", "output/x/quality/metrics.json")
    assert metrics.metrics_location("s3://b/output/x/quality") == ("b",
                                                                   "output/x/quality/metrics.json")
    with pytest.raises(metrics.MetricsUnavailableError,
                       match=r"^quality output URI 'https://b/x' is not an s3:// URI$"):
        metrics.metrics_location("https://b/x")
    with pytest.raises(metrics.MetricsUnavailableError, match=r"^quality output URI 's3:///x' has no bucket$"):
        metrics.metrics_location("s3:///x")
    assert metrics.metrics_location("s3://b") == ("b", "metrics.json")


@pytest.mark.parametrize(("env", "name"), [({"JOB_PREFIX": "dq"}, "NAMESPACE"),
                                           ({"NAMESPACE": "DataQualityPipeline"}, "JOB_PREFIX"),
                                           ({"NAMESPACE": "AWS/Lambda", "JOB_PREFIX": "dq"}, "NAMESPACE")])
def test_settings_errors_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(metrics.SettingsError, match=name):
        metrics.Settings.from_env(env)


# --- drift, gate and baseline promotion (design.md Contract 4) --------------------------------

GATE_SUMMARY = {**SUMMARY, "drift_max_psi": 0.31, "drifted_columns": 2, "drift_unavailable": 0,
                "quality_gate_failed": 0, "quality_gate_warned": 1}
PROMOTING = metrics.Settings(namespace="DataQualityPipeline", job_prefix="dq", data_bucket=BUCKET,
                             baseline_prefix="baselines/")
PROFILE = json.dumps({"schema_version": 1, "rows": 950, "columns": {"salary": {"kind": "numeric"}}}).encode()
PROFILE_KEY = f"output/sales/{JOB}/quality/profile.json"


def gate_datums(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [datum(name, float(summary[key]), unit) for key, (name, unit) in metrics.OPTIONAL_SUMMARY_METRICS.items()
            if key in summary]


def test_drift_and_gate_metrics_are_published() -> None:
    outcome = metrics.parse_outcome(state_change(), SETTINGS)
    values, problems = metrics.summary_values({"summary": GATE_SUMMARY})
    assert problems == []
    names = {d["MetricName"]: (d["Value"], d["Unit"])
             for d in metrics.build_metric_data(outcome, values, False, PUBLISHED)}
    assert names["DriftMaxPsi"] == (0.31, "None") and names["DriftedColumns"] == (2.0, "Count")
    assert names["DriftUnavailable"] == (0.0, "Count") and names["QualityGateFailed"] == (0.0, "Count")
    assert names["QualityGateWarned"] == (1.0, "Count") and names["MetricsUnavailable"] == (0.0, "Count")


def test_older_metrics_without_gate_keys_are_not_unavailable() -> None:
    # GIVEN a metrics.json written before Contract 4 (only the Contract 3 keys)
    values, problems = metrics.summary_values({"summary": SUMMARY})
    # THEN nothing is missing (MetricsUnavailable stays 0) and no drift/gate datapoint is invented
    assert problems == [] and not set(values) & set(metrics.OPTIONAL_SUMMARY_METRICS)
    # and a partial file publishes what exists
    values, problems = metrics.summary_values({"summary": {"drift_max_psi": 0.2, "quality_gate_failed": "x"}})
    assert values == {"drift_max_psi": 0.2} and len(problems) == 14


def test_settings_read_data_bucket_and_baseline_prefix() -> None:
    env = {"NAMESPACE": "DataQualityPipeline", "JOB_PREFIX": "dq"}
    assert metrics.Settings.from_env(env).data_bucket == ""  # promotion disabled
    parsed = metrics.Settings.from_env({**env, "DATA_BUCKET": BUCKET, "BASELINE_PREFIX": "b/"})
    assert parsed.baseline_key("sales") == "b/sales/baseline.json"
    with pytest.raises(metrics.SettingsError, match="BASELINE_PREFIX"):
        metrics.Settings.from_env({**env, "BASELINE_PREFIX": "b"})


@pytest.fixture
def promoting(stubs, monkeypatch: pytest.MonkeyPatch) -> tuple[Stubber, Stubber]:
    monkeypatch.setattr(metrics, "_settings", PROMOTING)
    return stubs


MARKER_KEY = f"output/sales/{JOB}/quality/_metrics_published"
MARKER_PUT = {"Bucket": BUCKET, "Key": MARKER_KEY, "Body": ANY, "ContentType": "application/json", "IfNoneMatch": "*"}


def expect_marker_absent(s3: Stubber, status: int = 404) -> None:
    """HeadObject of the publish-once marker: absent (404; 403 without s3:ListBucket)."""
    s3.add_client_error("head_object", str(status), "", status, expected_params={"Bucket": BUCKET, "Key": MARKER_KEY})


def expect_success_markers(s3: Stubber) -> None:
    for folder in ("cleaned", "transformed"):
        s3.add_response("put_object", {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"'},
                        {"Bucket": BUCKET, "Key": f"output/sales/{JOB}/{folder}/_SUCCESS", "Body": b""})


def expect_marker_put(s3: Stubber) -> None:
    s3.add_response("put_object", {"ETag": '"m"'}, MARKER_PUT)


def expect_publish(cw: Stubber, summary: dict[str, Any]) -> None:
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 0.0),
        *all_summary_datums(), *gate_datums(summary)]})


def expect_profile_and_put(s3: Stubber) -> None:
    s3.add_response("get_object", object_body(PROFILE), {"Bucket": BUCKET, "Key": PROFILE_KEY})


PUT_PARAMS = {"Bucket": BUCKET, "Key": "baselines/sales/baseline.json", "Body": PROFILE,
              "ContentType": "application/json", "IfNoneMatch": "*"}


def expect_good_batch_promoted(cw: Stubber, s3: Stubber) -> None:
    """The calls for a completed job whose gate did not fail and no baseline yet, in order: metrics published,
    _SUCCESS markers, profile.json put conditionally as the baseline, then the publish-once marker."""
    expect_marker_absent(s3)
    expect_metrics_json(s3, json.dumps({"summary": GATE_SUMMARY}).encode())
    expect_publish(cw, GATE_SUMMARY)
    expect_success_markers(s3)
    expect_profile_and_put(s3)
    s3.add_response("put_object", {"ETag": '"e"'}, PUT_PARAMS)
    expect_marker_put(s3)


def test_first_good_batch_becomes_the_baseline(promoting, lambda_context, decision_log) -> None:
    # GIVEN a completed job whose gate did not fail, and no baseline yet
    cw, s3 = promoting
    expect_good_batch_promoted(cw, s3)
    # WHEN handled / THEN metrics are published, the _SUCCESS markers written, then profile.json is put
    # conditionally to the baseline key, and last the publish-once marker
    result = metrics.handler(state_change(),
                             lambda_context)
    assert result["baseline"] == "promoted" and result["marker"] == "written"
    assert result["success_markers"] == [f"s3://{BUCKET}/output/sales/{JOB}/{f}/_SUCCESS" for f in ("cleaned",
                                                                                                    "transformed")]
    assert decision_log.decisions() == ["published", "success-written", "baseline-promoted"]


@pytest.mark.parametrize(("code", "status"), [("PreconditionFailed", 412), ("ConditionalRequestConflict", 409)])
def test_existing_baseline_is_kept(promoting, lambda_context, decision_log, code, status) -> None:
    # GIVEN a baseline already exists (or another job is writing it right now)
    cw, s3 = promoting
    expect_marker_absent(s3)
    expect_metrics_json(s3, json.dumps({"summary": GATE_SUMMARY}).encode())
    expect_publish(cw, GATE_SUMMARY)
    expect_success_markers(s3)
    expect_profile_and_put(s3)
    s3.add_client_error("put_object", code, "At least one of the pre-conditions you specified did not hold", status,
                        expected_params=PUT_PARAMS)
    expect_marker_put(s3)
    # WHEN / THEN that is fine: someone else won, nothing raises
    assert metrics.handler(state_change(), lambda_context)["baseline"] == "exists"
    assert decision_log.decisions() == ["published", "success-written", "baseline-exists"]


@pytest.mark.parametrize("summary", [
    {**GATE_SUMMARY, "quality_gate_failed": 1},  # the gate failed
    SUMMARY,  # an older metrics.json without gate keys
])
def test_failed_or_unknown_gate_is_never_promoted(promoting, lambda_context, decision_log, summary) -> None:
    cw, s3 = promoting
    expect_marker_absent(s3)
    expect_metrics_json(s3, json.dumps({"summary": summary}).encode())
    expect_publish(cw, summary)
    expect_marker_put(s3)
    # WHEN / THEN no profile is read, no _SUCCESS and no baseline are put (only the publish-once marker)
    result = metrics.handler(state_change(), lambda_context)
    assert result["baseline"] == "skipped" and result["success_markers"] == []
    assert decision_log.decisions() == ["published", "baseline-skipped"]


@pytest.mark.parametrize("payload", [None, b"{bad", json.dumps({"schema_version": 2, "columns": {}}).encode()])
def test_missing_or_bad_profile_is_not_promoted(promoting, lambda_context, decision_log, payload) -> None:
    cw, s3 = promoting
    expect_marker_absent(s3)
    expect_metrics_json(s3, json.dumps({"summary": GATE_SUMMARY}).encode())
    expect_publish(cw,
                   GATE_SUMMARY)
    expect_success_markers(s3)
    if payload is None:
        s3.add_client_error("get_object", "NoSuchKey", "gone", 404, expected_params={"Bucket": BUCKET,
                                                                                     "Key": PROFILE_KEY})
    else:
        s3.add_response("get_object", object_body(payload), {"Bucket": BUCKET, "Key": PROFILE_KEY})
    expect_marker_put(s3)
    assert metrics.handler(state_change(), lambda_context)["baseline"] == "unreadable"
    assert decision_log.decisions() == ["published", "success-written", "baseline-skipped"]


def test_transient_put_error_raises_for_the_async_retry(promoting, lambda_context) -> None:
    cw, s3 = promoting
    expect_marker_absent(s3)
    expect_metrics_json(s3, json.dumps({"summary": GATE_SUMMARY}).encode())
    expect_publish(cw, GATE_SUMMARY)
    expect_success_markers(s3)
    expect_profile_and_put(s3)
    s3.add_client_error("put_object", "InternalError", "oops", 500, expected_params=PUT_PARAMS)
    # THEN it raises before the publish-once marker: the retry publishes again (at worst twice), nothing is lost
    with pytest.raises(ClientError):
        metrics.handler(state_change(), lambda_context)


def test_failed_job_never_promotes(promoting, lambda_context) -> None:
    cw, s3 = promoting
    expect_marker_absent(s3)
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    expect_marker_put(s3)
    result = metrics.handler(state_change("Failed"), lambda_context)
    assert "baseline" not in result and "success_markers" not in result and result["marker"] == "written"



# --- publish once: the _metrics_published marker ---------------------------------------------------------------


def test_duplicate_event_finds_the_marker_and_publishes_nothing(promoting, lambda_context, decision_log) -> None:
    # GIVEN the marker written after an earlier delivery of this event
    _, s3 = promoting
    s3.add_response("head_object", {"ContentLength": 80}, {"Bucket": BUCKET, "Key": MARKER_KEY})
    # WHEN the duplicate is handled / THEN no metrics, no notification, no marker, no baseline: nothing else at all
    assert metrics.handler(state_change(), lambda_context) == {"published": 0, "decision": "duplicate"}
    assert decision_log.decisions() == ["duplicate"]


@pytest.mark.parametrize(("code", "status"), [("PreconditionFailed", 412), ("ConditionalRequestConflict", 409)])
def test_concurrent_duplicate_loses_the_marker_race_harmlessly(promoting, lambda_context, decision_log,
                                                               code, status) -> None:
    # GIVEN two deliveries ran at once: both found no marker (403: absent without s3:ListBucket) and both published
    cw, s3 = promoting
    expect_marker_absent(s3, 403)
    expect_metrics_json(s3, json.dumps({"summary": SUMMARY}).encode())
    expect_publish(cw, SUMMARY)
    s3.add_client_error("put_object", code, "At least one of the pre-conditions you specified did not hold", status,
                        expected_params=MARKER_PUT)
    # WHEN this one's conditional put of the marker fails / THEN that is logged, nothing raises (published twice)
    assert metrics.handler(state_change(), lambda_context)["marker"] == "exists"
    assert decision_log.decisions() == ["published", "baseline-skipped", "marker-exists"]


def test_marker_put_failure_is_logged_not_raised(promoting, lambda_context, decision_log) -> None:
    # GIVEN everything was published, then the marker put is denied
    cw, s3 = promoting
    expect_marker_absent(s3)
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    s3.add_client_error("put_object", "AccessDenied", "denied", 403, expected_params=MARKER_PUT)
    # WHEN / THEN no raise (a retry would publish everything again for nothing); an ERROR line says so
    assert metrics.handler(state_change("Stopped"), lambda_context)["marker"] == "failed"
    assert decision_log.records[-1]["decision"] == "marker-failed" and decision_log.records[-1]["level"] == "ERROR"


def test_marker_lookup_error_raises_before_publishing(promoting, lambda_context) -> None:
    _, s3 = promoting
    s3.add_client_error("head_object", "503", "Slow Down", 503, expected_params={"Bucket": BUCKET, "Key": MARKER_KEY})
    with pytest.raises(ClientError):
        metrics.handler(state_change(), lambda_context)


def test_no_marker_without_data_bucket_or_quality_output() -> None:
    outcome = metrics.parse_outcome(state_change(), PROMOTING)
    assert metrics.marker_location(outcome, PROMOTING) == (BUCKET, MARKER_KEY)
    assert metrics.marker_location(outcome, SETTINGS) is None  # DATA_BUCKET unset
    other = metrics.parse_outcome(state_change(ProcessingOutputConfig={"Outputs": []}), PROMOTING)
    assert metrics.marker_location(other, PROMOTING) is None


# --- one notification per failed job and per quarantined batch ---------------------------------------------------

TOPIC = "arn:aws:sns:eu-west-1:123456789012:dq-alerts"
NOTIFYING = metrics.Settings(namespace="DataQualityPipeline", job_prefix="dq", data_bucket=BUCKET,
                             baseline_prefix="baselines/", alert_topic_arn=TOPIC)
QUARANTINE_URI = f"s3://{BUCKET}/quarantine/sales/{JOB}/"
VIOLATIONS = [
    {"rule": "drift.psi_alarm", "column": "salary", "level": "alarm", "measured": 0.9, "threshold": 0.25,
     "action": "fail"},
    {"rule": "quality_thresholds.max_rejected_rate", "measured": 0.3, "threshold": 0.1, "action": "fail"},
    {"rule": "drift.psi_warn", "column": "age", "level": "warn", "measured": 0.12, "threshold": 0.1, "action": "warn"},
]


@pytest.fixture
def notifying(promoting, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, Stubber, Stubber]]:
    sns = client("sns")
    monkeypatch.setattr(metrics, "sns_client", sns)
    monkeypatch.setattr(metrics, "_settings", NOTIFYING)
    cw, s3 = promoting
    with Stubber(sns) as sns_stub:
        yield cw, s3, sns_stub
        sns_stub.assert_no_pending_responses()


def with_quarantine(**overrides: Any) -> dict[str, Any]:
    event = state_change(**overrides)
    event["detail"]["ProcessingOutputConfig"]["Outputs"].append(
        {"OutputName": "quarantine", "S3Output": {"S3Uri": QUARANTINE_URI,
                                                  "LocalPath": "/opt/ml/processing/output/quarantine",
                                                  "S3UploadMode": "EndOfJob"}, "AppManaged": False})
    event["detail"]["Environment"]["SOURCE_VERSION_ID"] = "v7"
    return event


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_each_failed_job_sends_one_notification(notifying, lambda_context, decision_log, status) -> None:
    # GIVEN a failed or stopped job (an alarm already in ALARM would send nothing for it)
    cw, s3, sns = notifying
    expect_marker_absent(s3)
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    outcome = metrics.parse_outcome(with_quarantine(status=status), NOTIFYING)
    args = metrics.failure_notification(outcome)
    sns.add_response("publish", {"MessageId": "m-1"}, {"TopicArn": TOPIC, **args})
    expect_marker_put(s3)
    # WHEN handled
    result = metrics.handler(with_quarantine(status=status), lambda_context)
    # THEN one concise message: job, dataset, input (with version), FailureReason
    assert result["notified"] == ["job-failed"]
    body = json.loads(args["Message"])
    assert args["Subject"] == f"Data quality job {status}: {JOB}"
    assert body["event"] == "job-failed" and body["job_name"] == JOB and body["dataset"] == "sales"
    assert body["input"] == f"s3://{BUCKET}/input/sales/a.csv" and body["input_version_id"] == "v7"
    if status == "Failed":
        # the container's message (ExitMessage) leads; SageMaker's generic FailureReason is kept beside it
        assert body["failure_reason"] == "AlgorithmError: see job logs" and body["exit_message"] == EXIT_MESSAGE
        assert body["summary"] == f"Processing job {JOB} (sales) Failed: {EXIT_MESSAGE}"
    assert body["input_from"] == "event-environment"
    assert args["MessageAttributes"]["event"] == {"DataType": "String", "StringValue": "job-failed"}
    assert decision_log.decisions() == ["published", "notified"]


def test_each_quarantined_batch_sends_one_notification(notifying, lambda_context, decision_log) -> None:
    # GIVEN a completed batch whose gate failed
    cw, s3, sns = notifying
    summary = {**GATE_SUMMARY, "quality_gate_failed": 1, "quality_gate_warned": 0}
    document = {"summary": summary, "gate": {"status": "failed", "violations": VIOLATIONS}}
    expect_marker_absent(s3)
    expect_metrics_json(s3, json.dumps(document).encode())
    expect_publish(cw, summary)
    args = metrics.quarantine_notification(metrics.parse_outcome(with_quarantine(), NOTIFYING), document)
    sns.add_response("publish", {"MessageId": "m-2"}, {"TopicArn": TOPIC, **args})
    expect_marker_put(s3)
    # WHEN handled
    result = metrics.handler(with_quarantine(), lambda_context)
    # THEN one message naming the broken rules (fail only) and where the data went; no _SUCCESS, no promotion
    assert result["notified"] == ["batch-quarantined"] and result["success_markers"] == []
    assert result["baseline"] == "skipped"
    body = json.loads(args["Message"])
    assert args["Subject"] == f"Data quality batch quarantined: {JOB}"
    assert body["quarantine"] == QUARANTINE_URI and body["violations_file"] == QUARANTINE_URI + "violations.json"
    assert body["violations_total"] == 2 and body["violations"] == [
        {"rule": "drift.psi_alarm", "column": "salary", "measured": 0.9, "threshold": 0.25},
        {"rule": "quality_thresholds.max_rejected_rate", "measured": 0.3, "threshold": 0.1}]
    assert body["summary"] == (f"Batch {JOB} (sales) failed the quality gate: 2 rule(s) broken "
                               f"(drift.psi_alarm[salary], quality_thresholds.max_rejected_rate); "
                               f"data under {QUARANTINE_URI}")
    assert decision_log.decisions() == ["published", "notified", "baseline-skipped"]


def test_passed_batch_sends_no_notification(notifying, lambda_context, decision_log) -> None:
    cw, s3, _ = notifying
    expect_good_batch_promoted(cw, s3)
    assert metrics.handler(with_quarantine(), lambda_context)["notified"] == []


def test_sns_error_raises_before_the_marker(notifying, lambda_context) -> None:
    # GIVEN SNS keeps failing / THEN the invocation raises: no marker, the asynchronous retry sends it again
    cw, s3, sns = notifying
    expect_marker_absent(s3)
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    sns.add_client_error("publish", "KMSAccessDenied", "no", 400)
    with pytest.raises(ClientError):
        metrics.handler(state_change("Failed"), lambda_context)


def test_settings_read_alert_topic_arn() -> None:
    env = {"NAMESPACE": "DataQualityPipeline", "JOB_PREFIX": "dq"}
    assert metrics.Settings.from_env(env).alert_topic_arn == ""  # notifications disabled
    assert metrics.Settings.from_env({**env, "ALERT_TOPIC_ARN": TOPIC}).alert_topic_arn == TOPIC
    with pytest.raises(metrics.SettingsError, match="ALERT_TOPIC_ARN"):
        metrics.Settings.from_env({**env, "ALERT_TOPIC_ARN": "arn:aws:sqs:eu-west-1:123456789012:q"})


# --- issue 11 item 6: unavailable metrics do not mark the batch published ---------------------------------------


def test_unavailable_metrics_withhold_the_marker_and_a_redelivery_publishes(promoting, lambda_context,
                                                                            decision_log) -> None:
    # GIVEN a completed job whose metrics.json is corrupt
    cw, s3 = promoting
    expect_marker_absent(s3)
    expect_metrics_json(s3, b"{corrupt")
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 1.0)]})
    # WHEN the event is handled
    first = metrics.handler(state_change(), lambda_context)
    # THEN MetricsUnavailable fires and no publish-once marker is written (no put_object was stubbed)
    assert first["metrics_unavailable"] is True and first["marker"] == "withheld"
    assert decision_log.decisions()[-1] == "marker-withheld"
    # GIVEN the file is fixed / WHEN the same event is redelivered
    expect_good_batch_promoted(cw, s3)
    second = metrics.handler(state_change(), lambda_context)
    # THEN it finds no marker, publishes every metric, and now marks the batch published
    assert second["published"] == 22 and second["metrics_unavailable"] is False and second["marker"] == "written"


@pytest.mark.parametrize("summary", [{k: v for k, v in GATE_SUMMARY.items() if k != "rows_out"}])
def test_partly_unavailable_metrics_also_withhold_the_marker(promoting, lambda_context, summary) -> None:
    # GIVEN a summary missing one key (published as far as valid, MetricsUnavailable=1)
    cw, s3 = promoting
    expect_marker_absent(s3)
    expect_metrics_json(s3, json.dumps({"summary": summary}).encode())
    kept = [d for d in all_summary_datums() if d["MetricName"] != "RowsOut"]
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 1.0), *kept,
        *gate_datums(summary)]})
    # WHEN handled / THEN no publish-once marker, and (although the gate passed) no _SUCCESS and no baseline
    # promotion: a partial metrics.json is no verdict; the redelivery after the fix does both
    result = metrics.handler(state_change(), lambda_context)
    assert result["marker"] == "withheld" and result["success_markers"] == [] and result["baseline"] == "skipped"


# --- issue 11 item 9: late deliveries are stamped inside the alarms' evaluation window ---------------------------


def test_late_redelivery_lands_in_every_alarms_current_evaluation_window(stubs, lambda_context, monkeypatch) -> None:
    from infra.quality_alarms import DATASET_ALARMS

    # GIVEN the real clock, and an event redelivered 5 hours after the job ended (async retries, a DLQ redrive)
    cw, s3 = stubs
    real_now = datetime.now(UTC)
    end_ms = int((real_now.timestamp() - 5 * 3600) * 1000)
    captured: list[dict[str, Any]] = []
    cw.client.meta.events.register("provide-client-params.cloudwatch.PutMetricData",
                                   lambda params, **_: captured.append(params))
    expect_metrics_json(s3, json.dumps({"summary": {**SUMMARY, "rejected_rate": 0.9}}).encode())
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": ANY})
    # WHEN handled with the handler's own clock
    monkeypatch.setattr(metrics, "now", lambda: datetime.now(UTC))
    before = datetime.now(UTC)
    metrics.handler(state_change(ProcessingEndTime=end_ms), lambda_context)
    after = datetime.now(UTC)
    # THEN every datapoint carries the publication time, so each alarm evaluating now (its most recent
    # evaluation_periods x period seconds) sees the bad batch; the job end time would be 5 hours outside all of them
    stamps = {d["Timestamp"] for d in captured[0]["MetricData"]}
    assert len(stamps) == 1
    [stamp] = stamps
    assert before <= stamp <= after
    for alarm in DATASET_ALARMS:
        window = alarm.period * alarm.evaluation_periods
        assert (after - stamp).total_seconds() < window, alarm.metric_name
        assert (after - datetime.fromtimestamp(end_ms / 1000, tz=UTC)).total_seconds() > window


# --- issue 11 item 4: failure messages a person can act on -------------------------------------------------------


def documented_failed_event(**overrides: Any) -> dict[str, Any]:
    """Shaped like the documented sample: no Environment, no ExitMessage, no Tags."""
    event = state_change("Failed", **overrides)
    for name in ("Environment", "ExitMessage"):
        event["detail"].pop(name, None)
    return event


def test_failed_job_without_environment_or_exit_message_is_completed_from_describe(
        notifying, sagemaker_stub, lambda_context, decision_log) -> None:
    # GIVEN a Failed event shaped like AWS's sample (no Environment, no ExitMessage)
    cw, s3, sns = notifying
    expect_marker_absent(s3)
    described = description("Failed")
    described["Environment"]["SOURCE_VERSION_ID"] = "v9"
    sagemaker_stub.add_response("describe_processing_job", described, {"ProcessingJobName": JOB})
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    sns.add_response("publish", {"MessageId": "m-3"}, {"TopicArn": TOPIC, "Subject": f"Data quality job Failed: {JOB}",
                                                       "Message": ANY, "MessageAttributes": ANY})
    expect_marker_put(s3)
    captured: list[dict[str, Any]] = []
    sns.client.meta.events.register("provide-client-params.sns.Publish", lambda params, **_: captured.append(params))
    # WHEN handled
    metrics.handler(documented_failed_event(), lambda_context)
    # THEN the notification carries the container's message and the uploaded object from DescribeProcessingJob
    body = json.loads(captured[0]["Message"])
    assert body["exit_message"] == EXIT_MESSAGE and body["failure_reason"] == "AlgorithmError: see job logs"
    assert body["summary"].endswith(f"Failed: {EXIT_MESSAGE}")
    assert body["input"] == f"s3://{BUCKET}/input/sales/a.csv" and body["input_version_id"] == "v9"
    assert body["input_from"] == "describe-environment"


def test_describe_failure_falls_back_to_the_jobs_data_input(notifying, sagemaker_stub, lambda_context,
                                                           decision_log) -> None:
    # GIVEN a sample-shaped Failed event and DescribeProcessingJob throttled beyond botocore's retries
    cw, s3, sns = notifying
    event = documented_failed_event()
    event["detail"]["ProcessingInputs"] = description()["ProcessingInputs"]
    expect_marker_absent(s3)
    sagemaker_stub.add_client_error("describe_processing_job", "ThrottlingException", "Rate exceeded", 400,
                                    expected_params={"ProcessingJobName": JOB})
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 0.0), datum("JobFailed", 1.0)]})
    outcome = metrics.parse_outcome(event, NOTIFYING)
    args = metrics.failure_notification(outcome)
    sns.add_response("publish", {"MessageId": "m-4"}, {"TopicArn": TOPIC, **args})
    expect_marker_put(s3)
    # WHEN handled / THEN the metrics and the message still go out, the input labelled as the job's data input
    assert metrics.handler(event, lambda_context)["notified"] == ["job-failed"]
    body = json.loads(args["Message"])
    assert body["input"] == f"s3://{BUCKET}/staging/sales/{JOB}/a.csv" and body["input_from"] == "job-data-input"
    assert body["input_version_id"] is None and body["exit_message"] is None
    assert body["summary"].endswith("Failed: AlgorithmError: see job logs")
    assert decision_log.decisions()[:2] == ["describe-failed", "published"]


def test_hand_made_redelivery_with_only_name_and_status_is_completed_from_describe(
        promoting, sagemaker_stub, lambda_context) -> None:
    # GIVEN an operator's redelivery carrying only the job's name and status
    cw, s3 = promoting
    event = {"source": "aws.sagemaker", "detail-type": "SageMaker Processing Job State Change",
             "detail": {"ProcessingJobName": JOB, "ProcessingJobStatus": "Completed"}}
    sagemaker_stub.add_response("describe_processing_job", description(), {"ProcessingJobName": JOB})
    # WHEN handled / THEN the outputs come from DescribeProcessingJob: marker looked up, metrics.json read
    expect_good_batch_promoted(cw, s3)
    assert metrics.handler(event, lambda_context)["marker"] == "written"


RANDOM_BYTES = bytes((i * 197 + 89) % 256 for i in range(1024))


@pytest.mark.parametrize("raw", [
    RANDOM_BYTES.decode("utf-8", errors="replace"),
    RANDOM_BYTES.decode("latin-1"),
    "ValueError: bad\nTraceback (most recent call last):\n  File \"/opt/ml/processing/input/code/x.py\"\x00\x1b[31m",
])
def test_exit_message_is_one_bounded_printable_line(raw: str) -> None:
    outcome = metrics.parse_outcome(state_change("Failed", ExitMessage=raw), SETTINGS)
    text = outcome.exit_message
    assert text and len(text) <= metrics.MAX_EXIT_MESSAGE_CHARS and text.isprintable() and "\n" not in text
    assert "\ufffd" not in text
    # in the JSON notification it stays short: no escape sequences
    body = json.loads(metrics.failure_notification(outcome)["Message"])
    escaped = text.count('"') + text.count("\\")  # JSON's only escapes left: quote and backslash
    assert len(json.dumps(body["exit_message"], ensure_ascii=False)) == len(text) + 2 + escaped
    assert "\\u" not in metrics.failure_notification(outcome)["Message"]


def test_one_line() -> None:
    assert metrics.one_line("A:\tb\r\n  c ", 100) == "A: b c"
    assert metrics.one_line("x" * 20, 10) == "x" * 9 + "…"
    assert metrics.one_line(None, 10) == ""


# --- declarative rules (issue 14): RuleViolations only for rules marked "alarm": true ----------------------------

RULES_DOC = {
    "id_unique": {"type": "unique", "action": "fail", "alarm": True, "violations": 3, "passed": False},
    "fresh": {"type": "freshness", "action": "warn", "alarm": True, "violations": 1, "passed": True},
    "no_alarm": {"type": "range", "action": "fail", "alarm": False, "violations": 9, "passed": False},
    "bad name!": {"type": "range", "action": "fail", "alarm": True, "violations": 9, "passed": False},
    "odd": {"type": "range", "action": "fail", "alarm": True, "violations": "x", "passed": False},
}


def rule_datum(rule: str, value: float) -> dict[str, Any]:
    return {"MetricName": "RuleViolations", "Dimensions": [*DIMS, {"Name": "Rule", "Value": rule}],
            "Timestamp": PUBLISHED, "Value": value, "Unit": "Count"}


def test_rule_violations_only_for_alarmed_rules_checked_by_stubber(stubs, lambda_context) -> None:
    # GIVEN a completed job whose metrics.json reports five rules, two of them valid and marked for alarming
    cw, s3 = stubs
    summary = {**SUMMARY, "rules_failed": 2, "rules_warned": 0, "rows_rejected_by_rules": 4}
    expect_metrics_json(s3, json.dumps({"summary": summary, "rules": RULES_DOC}).encode())
    cw.add_response("put_metric_data", {}, {"Namespace": "DataQualityPipeline", "MetricData": [
        datum("JobSucceeded", 1.0), datum("JobFailed", 0.0), datum("MetricsUnavailable", 0.0),
        *all_summary_datums(), datum("RulesFailed", 2.0), datum("RulesWarned", 0.0),
        datum("RowsRejectedByRules", 4.0), rule_datum("id_unique", 3.0), rule_datum("fresh", 0.0)]})
    # WHEN the handler runs, THEN one RuleViolations datapoint per alarmed rule (broken: its violations; held: 0),
    # with dimensions Dataset and Rule, validated against botocore's PutMetricData model
    result = metrics.handler(state_change(), lambda_context)
    assert result["published"] == 22


def test_rule_values_ignore_what_is_not_an_alarmed_rule() -> None:
    assert metrics.rule_values({"rules": RULES_DOC}) == {"id_unique": 3.0, "fresh": 0.0}
    assert metrics.rule_values({"rules": []}) == {} and metrics.rule_values(None) == {}
    many = {f"r{i}": {"alarm": True, "passed": False, "violations": 1} for i in range(500)}
    assert len(metrics.rule_values({"rules": many})) == metrics.MAX_ALARMED_RULES
