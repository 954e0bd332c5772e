"""The trigger handler end to end, every AWS request checked against botocore's model with Stubber."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest
from botocore.stub import Stubber

from lambda_helpers import (
    ENV,
    EVENT_ETAG,
    EVENT_SIZE,
    QUEUE_URL,
    client,
    load_handler,
    s3_event_body,
    sqs_record,
)

trigger = load_handler("trigger")
SETTINGS = trigger.Settings.from_env(ENV)
BUCKET = ENV["DATA_BUCKET"]
JOB_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/"


class Stubs(tuple):
    """(SageMaker, SQS) stubbers, plus ``cloudwatch`` and ``sns`` for the told refusals."""

    cloudwatch: Stubber
    sns: Stubber


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubs]:
    """Stubbed SageMaker, SQS, CloudWatch and SNS clients injected into the handler module; all stubs must be
    consumed (a refusal a test does not expect fails it: no response queued for PutMetricData)."""
    sagemaker, sqs, cloudwatch, sns = client("sagemaker"), client("sqs"), client("cloudwatch"), client("sns")
    monkeypatch.setattr(trigger, "sagemaker_client", sagemaker)
    monkeypatch.setattr(trigger, "sqs_client", sqs)
    monkeypatch.setattr(trigger, "cloudwatch_client", cloudwatch)
    monkeypatch.setattr(trigger, "sns_client", sns)
    monkeypatch.setattr(trigger, "_settings", SETTINGS)
    with Stubber(sagemaker) as sm_stub, Stubber(sqs) as sqs_stub, Stubber(cloudwatch) as cw_stub, \
            Stubber(sns) as sns_stub:
        out = Stubs((sm_stub, sqs_stub))
        out.cloudwatch, out.sns = cw_stub, sns_stub
        yield out
        for stub in (sm_stub, sqs_stub, cw_stub, sns_stub):
            stub.assert_no_pending_responses()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """Stubbed S3 client for the baseline HeadObject (design.md Contract 4); all stubs must be consumed."""
    s3_client = client("s3")
    monkeypatch.setattr(trigger, "s3_client", s3_client)
    with Stubber(s3_client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def no_baseline(s3: Stubber, dataset: str | None = None) -> None:
    """HeadObject of the dataset's baseline answers 404 (params checked when ``dataset`` is given)."""
    params = {"Bucket": BUCKET, "Key": f"baselines/{dataset}/baseline.json"} if dataset else None
    s3.add_client_error("head_object", "404", "Not Found", 404, expected_params=params)


def found(s3: Stubber, key: str, version_id: str = "v1", size: int = EVENT_SIZE) -> None:
    """HeadObject of ``key`` at the event's version finds it (resolution, design.md Contract 2)."""
    s3.add_response("head_object", {"ContentLength": size, "ETag": f'"{EVENT_ETAG}"', "VersionId": version_id},
                    {"Bucket": BUCKET, "Key": key, "VersionId": version_id})


def staged_key(key: str, version_id: str = "v1") -> str:
    request = request_for(key, version_id)
    return request["ProcessingInputs"][1]["S3Input"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")


def copied(s3: Stubber, key: str, version_id: str = "v1") -> None:
    """CopyObject of exactly that version to the job's staging key (design.md Contract 1)."""
    s3.add_response("copy_object", {"CopySourceVersionId": version_id, "VersionId": "staged-v",
                                    "CopyObjectResult": {"ETag": '"e"'}},
                    {"Bucket": BUCKET, "Key": staged_key(key, version_id),
                     "CopySource": {"Bucket": BUCKET, "Key": key, "VersionId": version_id},
                     "TaggingDirective": "REPLACE"})


def ready(s3: Stubber, key: str, dataset: str | None = None) -> None:
    """The S3 calls before CreateProcessingJob of an upload found under its raw key: resolve, baseline, stage."""
    found(s3, key)
    no_baseline(s3, dataset)
    copied(s3, key)


def request_for(key: str, version_id: str = "v1") -> dict:
    return trigger.build_processing_job_request(BUCKET, key, version_id, SETTINGS, size=EVENT_SIZE, etag=EVENT_ETAG)


def test_object_created_starts_one_job(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN an upload under input/sales/ whose key has a space, its event carrying the key URL-encoded ('+'): S3 has
    # no object at that version under the raw key, and has it under the decoded one
    sm, _ = stubs
    key = "input/sales/orders 2024.csv"
    request = request_for(key)
    s3.add_client_error("head_object", "404", "Not Found", 404,
                        expected_params={"Bucket": BUCKET, "Key": "input/sales/orders+2024.csv", "VersionId": "v1"})
    found(s3, key)
    no_baseline(s3)
    copied(s3, key)
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + request["ProcessingJobName"]}, request)
    event = {"Records": [sqs_record(s3_event_body(quote_plus(key, safe="/")))]}
    # WHEN the handler runs
    result = trigger.handler(event, lambda_context)
    # THEN exactly that request was sent (with the event's size and ETag in the job's Environment, Contract 1),
    # nothing is retried, and the decision is logged with context
    assert result == {"batchItemFailures": []}
    assert request["Environment"]["SOURCE_SIZE"] == str(EVENT_SIZE)
    assert request["Environment"]["SOURCE_ETAG"] == EVENT_ETAG
    [log] = decision_log.records
    assert log["decision"] == "started" and log["key"] == key and log["version_id"] == "v1"
    assert log["event_key"] == "input/sales/orders+2024.csv" and log["staged_key"] == staged_key(key)
    assert log["bucket"] == BUCKET and log["job_name"] == request["ProcessingJobName"]
    assert log["request_id"] == lambda_context.aws_request_id


def start_job_with_environment(monkeypatch, stubs, s3, lambda_context, env: dict[str, str | None],
                               job_env: dict[str, str]) -> dict:
    """Run the handler on one upload with the function's environment ``ENV`` changed by ``env`` (``None``: the
    variable is absent) and expect CreateProcessingJob to get the default request (returned) with only ``job_env``
    added to its ``Environment``; Stubber checks the request against botocore's model and fails on any difference."""
    sm, _ = stubs
    monkeypatch.setattr(trigger, "_settings", None)
    for name, value in {**ENV, **env}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    key = "input/sales/a.csv"
    default = request_for(key)
    expected = {**default, "Environment": {**default["Environment"], **job_env}}
    ready(s3, key, "sales")
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + expected["ProcessingJobName"]}, expected)
    # WHEN the handler runs  THEN the job was created with exactly that request
    result = trigger.handler({"Records": [sqs_record(s3_event_body(key))]}, lambda_context)
    assert result == {"batchItemFailures": []}
    return default


def test_processing_mode_reaches_create_processing_job(monkeypatch, stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN the function's environment sets PROCESSING_MODE=memory (as the stack does for -c processing_mode=memory)
    # THEN the job gets the default request with only Environment.PROCESSING_MODE changed
    default = start_job_with_environment(monkeypatch, stubs, s3, lambda_context, {"PROCESSING_MODE": "memory"},
                                         {"PROCESSING_MODE": "memory"})
    assert default["Environment"]["PROCESSING_MODE"] == "auto"
    assert decision_log.decisions() == ["started"]


def test_max_rows_in_memory_reaches_create_processing_job(monkeypatch, stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN PROCESSING_MAX_ROWS_IN_MEMORY=5000000 (as the stack sets it for -c max_rows_in_memory=5000000)
    # THEN the job gets the default request plus Environment.PROCESSING_MAX_ROWS_IN_MEMORY, the job's row budget
    default = start_job_with_environment(monkeypatch, stubs, s3, lambda_context,
                                         {"PROCESSING_MAX_ROWS_IN_MEMORY": "5000000"},
                                         {"PROCESSING_MAX_ROWS_IN_MEMORY": "5000000"})
    assert "PROCESSING_MAX_ROWS_IN_MEMORY" not in default["Environment"]
    assert decision_log.decisions() == ["started"]


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_max_rows_in_memory_is_not_passed_to_the_job(monkeypatch, stubs, s3, lambda_context, decision_log,
                                                          value: str | None) -> None:
    # GIVEN no PROCESSING_MAX_ROWS_IN_MEMORY (the stack's default, or a function deployed before it existed) or an
    # empty one  THEN the job's Environment has no such variable, so the job derives its budget from its memory
    default = start_job_with_environment(monkeypatch, stubs, s3, lambda_context,
                                         {"PROCESSING_MAX_ROWS_IN_MEMORY": value}, {})
    assert "PROCESSING_MAX_ROWS_IN_MEMORY" not in default["Environment"]
    assert decision_log.decisions() == ["started"]


def test_multipart_upload_is_processed_like_a_put(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN a CompleteMultipartUpload event
    sm, _ = stubs
    body = s3_event_body("input/sales/big.csv").replace('"PutObject"', '"CompleteMultipartUpload"')
    request = request_for("input/sales/big.csv")
    ready(s3, "input/sales/big.csv")
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request)
    # WHEN / THEN one job is started
    assert trigger.handler({"Records": [sqs_record(body)]}, lambda_context) == {"batchItemFailures": []}
    assert decision_log.decisions() == ["started"]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ResourceInUse", "Job name already in use"),
        ("ValidationException", "Processing job with name dq-sales-0123456789abcdef already exists"),
    ],
)
def test_duplicate_event_finds_the_job_and_succeeds(stubs, s3, lambda_context, decision_log, code, message) -> None:
    # GIVEN the job for this object version was already created (a duplicate or retried event)
    sm, _ = stubs
    request = request_for("input/sales/a.csv")
    ready(s3, "input/sales/a.csv")
    sm.add_client_error("create_processing_job", code, message, 400, expected_params=request)
    # WHEN the handler runs
    result = trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"))]}, lambda_context)
    # THEN it is a success (no retry, no second job) and says so
    assert result == {"batchItemFailures": []}
    assert decision_log.decisions() == ["already-exists"]
    assert decision_log.records[0]["job_name"] == request["ProcessingJobName"]


@pytest.mark.parametrize(
    ("code", "receive_count", "visibility"),
    [
        ("ThrottlingException", 1, 22),  # ceiling 30 s, jitter 0.5 -> 15 + 7.5
        ("ResourceLimitExceeded", 3, 90),  # ceiling 120 s -> 60 + 30
        ("ThrottlingException", 12, 675),  # capped: ceiling 900 s -> 450 + 225
    ],
)
def test_throttling_and_quota_back_off_then_retry(stubs, s3, lambda_context, decision_log, code, receive_count,
                                                  visibility,
                                                  monkeypatch) -> None:
    # GIVEN SageMaker keeps refusing (after botocore's own retries) and this is receive number N
    sm, sqs = stubs
    monkeypatch.setattr(trigger.random, "random", lambda: 0.5)
    request = request_for("input/sales/a.csv")
    ready(s3, "input/sales/a.csv")
    sm.add_client_error("create_processing_job", code, "Rate exceeded", 400, expected_params=request)
    sqs.add_response("change_message_visibility", {}, {
        "QueueUrl": QUEUE_URL, "ReceiptHandle": "receipt-m1", "VisibilityTimeout": visibility})
    event = {"Records": [sqs_record(s3_event_body("input/sales/a.csv"), "m1", receive_count)]}
    # WHEN the handler runs
    result = trigger.handler(event, lambda_context)
    # THEN the message is hidden for an exponentially growing time and reported for retry (DLQ after maxReceiveCount)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    [log] = decision_log.records
    assert log["decision"] == "retry" and log["error_code"] == code and log["visibility_timeout"] == visibility


def test_visibility_change_failure_still_reports_the_retry(stubs, s3, lambda_context, decision_log,
                                                           monkeypatch) -> None:
    # GIVEN the receipt handle expired before we could change the visibility
    sm, sqs = stubs
    monkeypatch.setattr(trigger.random, "random", lambda: 0.0)
    ready(s3, "input/a.csv")
    sm.add_client_error("create_processing_job", "ThrottlingException", "Rate exceeded", 400,
                        expected_params=request_for("input/a.csv"))
    sqs.add_client_error("change_message_visibility", "ReceiptHandleIsInvalid", "expired", 400, expected_params={
        "QueueUrl": QUEUE_URL, "ReceiptHandle": "receipt-m1", "VisibilityTimeout": 15})
    # WHEN / THEN the record is still a batch item failure
    result = trigger.handler({"Records": [sqs_record(s3_event_body("input/a.csv"), "m1")]}, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert "expired" in decision_log.records[0]["visibility_error"]


def test_unexpected_error_is_retried_without_backoff(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN an error that is neither a duplicate nor throttling (e.g. missing permission)
    sm, _ = stubs
    ready(s3,
          "input/a.csv")
    sm.add_client_error("create_processing_job", "AccessDeniedException",
                        "not authorized to perform: sagemaker:AddTags",
                        400, expected_params=request_for("input/a.csv"))
    # WHEN / THEN the record is reported for retry (ends in the DLQ if it keeps failing), nothing else is called
    result = trigger.handler({"Records": [sqs_record(s3_event_body("input/a.csv"), "m1")]}, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert decision_log.decisions() == ["failed"]


def test_mixed_batch_reports_only_the_records_to_retry(stubs, s3, lambda_context, decision_log, monkeypatch) -> None:
    # GIVEN a batch: a new object, a folder marker, a bad dataset name, an output key, a throttled object, garbage
    sm, sqs = stubs
    monkeypatch.setattr(trigger.random, "random", lambda: 1.0)
    ready(s3, "input/sales/a.csv")
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "a"}, request_for("input/sales/a.csv"))
    found(s3, "input/sales_eu/a.csv")
    ready(s3, "input/sales/b.csv")
    sm.add_client_error("create_processing_job", "ThrottlingException", "Rate exceeded", 400,
                        expected_params=request_for("input/sales/b.csv"))
    sqs.add_response("change_message_visibility", {}, {
        "QueueUrl": QUEUE_URL, "ReceiptHandle": "receipt-5", "VisibilityTimeout": 60})
    for reason in ("InvalidDataset", "UnreadableEvent"):  # the two refusals are counted and told, in order
        stubs.cloudwatch.add_response("put_metric_data", {}, {
            "Namespace": "DataQualityPipeline", "MetricData": trigger.refusal_metric_data(reason)})
        stubs.sns.add_response("publish", {"MessageId": reason})
    records = [
        sqs_record(s3_event_body("input/sales/a.csv"), "1"),
        sqs_record(s3_event_body("input/sales/", size=0), "2"),
        sqs_record(s3_event_body("input/sales_eu/a.csv"), "3"),
        sqs_record(s3_event_body("output/sales/dq-sales-0123456789abcdef/quality/metrics.json"), "4"),
        sqs_record(s3_event_body("input/sales/b.csv"), "5", receive_count=2),
        sqs_record("{not json", "6"),
        sqs_record(s3_event_body("input/sales/empty.csv", size=0), "7"),
    ]
    # WHEN the handler runs
    result = trigger.handler({"Records": records}, lambda_context)
    # THEN only the throttled record is retried; every record's decision is logged
    assert result == {"batchItemFailures": [{"itemIdentifier": "5"}]}
    assert decision_log.decisions() == ["started", "ignored", "refused", "ignored", "retry", "refused", "ignored"]
    assert "dataset name" in decision_log.records[2]["reason"]


def test_settings_error_fails_the_whole_invocation(monkeypatch, lambda_context) -> None:
    # GIVEN a missing variable / WHEN invoked / THEN the invocation fails loudly (the batch is retried, then DLQ)
    monkeypatch.setattr(trigger, "_settings", None)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ROLE_ARN")
    with pytest.raises(trigger.SettingsError, match="ROLE_ARN"):
        trigger.handler({"Records": []}, lambda_context)


def test_settings_are_read_once(monkeypatch) -> None:
    monkeypatch.setattr(trigger, "_settings", None)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    first = trigger.get_settings()
    monkeypatch.setenv("JOB_PREFIX", "changed")
    assert trigger.get_settings() is first


def test_default_sagemaker_client_uses_standard_retries(monkeypatch) -> None:
    # GIVEN no injected client / WHEN created lazily / THEN botocore standard retry mode with a few attempts
    monkeypatch.setattr(trigger, "sagemaker_client", None)
    sagemaker = trigger.get_sagemaker()
    # botocore normalises retries["max_attempts"] (retries) to total_max_attempts (calls, including the first)
    assert sagemaker.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert trigger.get_sagemaker() is sagemaker


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object):
        yield self.body


@pytest.mark.parametrize(("code", "calls"), [("ThrottlingException", 4), ("ResourceLimitExceeded", 1)])
def test_botocore_retries_throttling_inside_the_invocation(monkeypatch, s3, lambda_context, decision_log, code,
                                                           calls) -> None:
    # GIVEN the real lazily created SageMaker client (standard retry mode), answering every call with `code`
    from botocore.awsrequest import AWSResponse

    monkeypatch.setattr(trigger, "sagemaker_client", None)
    monkeypatch.setattr(trigger, "_settings", SETTINGS)
    monkeypatch.setattr(trigger.random, "random", lambda: 0.0)
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _s: None)  # botocore's backoff sleep
    sagemaker = trigger.get_sagemaker()
    sent: list[dict] = []

    def answer(request, **_: object) -> AWSResponse:
        sent.append(json.loads(request.body))
        body = json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, {"x-amzn-requestid": "r"}, _Raw(body))

    sagemaker.meta.events.register("before-send.sagemaker.CreateProcessingJob", answer)
    sqs = client("sqs")
    monkeypatch.setattr(trigger, "sqs_client", sqs)
    ready(s3, "input/a.csv", "default")
    with Stubber(sqs) as sqs_stub:
        sqs_stub.add_response("change_message_visibility", {}, {
            "QueueUrl": QUEUE_URL, "ReceiptHandle": "receipt-m1", "VisibilityTimeout": 15})
        # WHEN the handler runs
        result = trigger.handler({"Records": [sqs_record(s3_event_body("input/a.csv"), "m1")]}, lambda_context)
    # THEN throttling was retried by botocore (4 identical calls), quota errors were not, and the record backs off
    assert len(sent) == calls
    assert all(body == sent[0] for body in sent)
    assert sent[0]["ProcessingJobName"] == request_for("input/a.csv")["ProcessingJobName"]
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert decision_log.decisions() == ["retry"]


def test_existing_baseline_is_given_to_the_job(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN HeadObject finds baselines/sales/baseline.json
    sm, _ = stubs
    found(s3, "input/sales/a.csv")
    s3.add_response("head_object", {"ContentLength": 2048, "ETag": '"abc"'},
                    {"Bucket": BUCKET, "Key": "baselines/sales/baseline.json"})
    copied(s3, "input/sales/a.csv")
    uri = f"s3://{BUCKET}/baselines/sales/baseline.json"
    request = trigger.build_processing_job_request(BUCKET, "input/sales/a.csv", "v1", SETTINGS, baseline_uri=uri,
                                                   size=EVENT_SIZE, etag=EVENT_ETAG)
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request)
    # WHEN the handler runs / THEN the job gets input "baseline" and --baseline
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"))]}, lambda_context) == {
        "batchItemFailures": []}
    assert decision_log.records[-1]["decision"] == "started" and decision_log.records[-1]["baseline"] == uri


@pytest.mark.parametrize(("status", "code", "decisions"), [
    (404, "404", ["started"]),
    (403, "403", ["baseline-unreadable", "started"]),
])
def test_missing_or_invisible_baseline_starts_the_job_without_one(stubs, s3, lambda_context, decision_log,
                                                                   status, code, decisions) -> None:
    # GIVEN HeadObject answers 404 (absent) or 403 (absent without s3:ListBucket, or denied)
    sm, _ = stubs
    found(s3, "input/sales/a.csv")
    s3.add_client_error("head_object", code, "", status,
                        expected_params={"Bucket": BUCKET, "Key": "baselines/sales/baseline.json"})
    copied(s3, "input/sales/a.csv")
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request_for("input/sales/a.csv"))
    # WHEN / THEN the job starts without a baseline input (drift is then reported as unavailable)
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"))]}, lambda_context) == {
        "batchItemFailures": []}
    assert decision_log.decisions() == decisions
    if status == 403:  # the role has s3:ListBucket on the prefix: a 403 is most likely a real denial
        assert decision_log.records[0]["level"] == "ERROR"


def test_baseline_lookup_error_retries_the_record(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN HeadObject keeps failing with a 503 (after botocore's retries)
    found(s3, "input/sales/a.csv")
    s3.add_client_error("head_object", "503", "Slow Down", 503,
                        expected_params={"Bucket": BUCKET, "Key": "baselines/sales/baseline.json"})
    # WHEN / THEN no job is created and the record is retried later
    result = trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"), "m1")]}, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    [log] = decision_log.records
    assert log["decision"] == "failed" and "baselines/sales/baseline.json" in log["error"]


def test_default_s3_client_uses_standard_retries(monkeypatch) -> None:
    monkeypatch.setattr(trigger, "s3_client", None)
    assert trigger.get_s3().meta.config.retries == {"mode": "standard", "total_max_attempts": 4}


# --- key resolution, staging and told refusals (issue 11 items 2, 3 and 5) ----------------------------------------


def expect_told(stubs, reason: str, *, publish_error: str | None = None) -> None:
    """PutMetricData of KeyRefused (by reason and in total) then one Publish to the alert topic."""
    stubs.cloudwatch.add_response("put_metric_data", {}, {
        "Namespace": "DataQualityPipeline", "MetricData": [
            {"MetricName": "KeyRefused", "Dimensions": [{"Name": "Reason", "Value": reason}], "Value": 1.0,
             "Unit": "Count"},
            {"MetricName": "KeyRefused", "Value": 1.0, "Unit": "Count"}]})
    if publish_error:
        stubs.sns.add_client_error("publish", publish_error, "boom", 500)
    else:
        stubs.sns.add_response("publish", {"MessageId": "m"})


def published(stubs) -> dict:
    """The body of the Publish the handler sent (captured through the stub's expected-params hook)."""
    return json.loads(stubs.sns_sent[-1]["Message"])


@pytest.fixture
def sns_sent(stubs, monkeypatch) -> list[dict]:
    sent: list[dict] = []
    stubs.sns.client.meta.events.register_first("before-parameter-build.sns.Publish",
                                                lambda params, **_: sent.append(dict(params)))
    stubs.sns_sent = sent
    return sent


def test_raw_key_found_is_processed_without_trying_the_decoded_one(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN the event carries the key raw (as the local cloud and, per an AWS sample, AWS do) and it holds a '+'
    sm, _ = stubs
    key = "input/sales/a+b=c%.csv"
    request = request_for(key)
    ready(s3, key)  # HeadObject of the raw key finds the version: no second HeadObject
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request)
    # WHEN / THEN the job reads the staged copy of exactly that key's version
    assert trigger.handler({"Records": [sqs_record(s3_event_body(key))]}, lambda_context) == {"batchItemFailures": []}
    assert decision_log.records[-1]["key"] == key and "event_key" not in decision_log.records[-1]
    assert request["Environment"]["SOURCE_URI"] == f"s3://{BUCKET}/{key}"


def test_raw_key_missing_and_decoded_found(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN an event carrying the key URL-encoded (the classic S3 notification form): '+' for a space, %2B for '+'
    sm, _ = stubs
    key = "input/sales/my file+1.csv"
    raw = quote_plus(key, safe="/")
    s3.add_client_error("head_object", "NoSuchVersion", "", 404,
                        expected_params={"Bucket": BUCKET, "Key": raw, "VersionId": "v1"})
    found(s3, key)
    no_baseline(s3, "sales")
    copied(s3, key)
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request_for(key))
    # WHEN / THEN the decoded key is the one processed, and the log says which form the event used
    assert trigger.handler({"Records": [sqs_record(s3_event_body(raw))]}, lambda_context) == {"batchItemFailures": []}
    log = decision_log.records[-1]
    assert log["decision"] == "started" and log["key"] == key and log["event_key"] == raw


def test_neither_key_exists_is_refused_and_told(stubs, s3, sns_sent, lambda_context, decision_log) -> None:
    # GIVEN neither the raw nor the decoded key exists at the event's version (deleted, or an unknown encoding)
    raw = "input/sales/x+y.csv"
    for key in (raw, "input/sales/x y.csv"):
        s3.add_client_error("head_object", "404", "Not Found", 404,
                            expected_params={"Bucket": BUCKET, "Key": key, "VersionId": "v7"})
    expect_told(stubs, "ObjectNotFound")
    # WHEN the handler runs
    result = trigger.handler({"Records": [sqs_record(s3_event_body(raw, version_id="v7"), "m1")]}, lambda_context)
    # THEN no job, no retry (it would never resolve), and the alert topic names bucket, key, version and reason
    assert result == {"batchItemFailures": []}
    assert decision_log.decisions() == ["refused"]
    body = published(stubs)
    assert body["event"] == "key-refused" and body["reason_code"] == "ObjectNotFound"
    assert (body["bucket"], body["key"], body["version_id"]) == (BUCKET, raw, "v7")
    assert "x y.csv" in body["reason"] and body["retried"] is False
    assert sns_sent[0]["TopicArn"] == ENV["ALERT_TOPIC_ARN"]
    assert sns_sent[0]["MessageAttributes"]["reason"]["StringValue"] == "ObjectNotFound"


def test_refused_dataset_is_told(stubs, s3, sns_sent, lambda_context, decision_log) -> None:
    # GIVEN input/Bad_DS/x.csv: the object exists, but 'bad_ds' is no valid dataset name (before: a WARNING line only)
    found(s3, "input/Bad_DS/x.csv")
    expect_told(stubs, "InvalidDataset")
    # WHEN / THEN refused (not retried) and told with the reason
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/Bad_DS/x.csv"))]}, lambda_context) == {
        "batchItemFailures": []}
    body = published(stubs)
    assert body["key"] == "input/Bad_DS/x.csv" and "Bad_DS" in body["reason"]
    assert sns_sent[0]["Subject"] == "Data quality upload refused: InvalidDataset"


def test_failed_alert_keeps_the_event(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN a refusal whose SNS publish fails
    found(s3, "input/Bad_DS/x.csv")
    expect_told(stubs, "InvalidDataset", publish_error="InternalError")
    # WHEN / THEN the record is retried (nothing lost: the next delivery tells again, or it ends in the DLQ)
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/Bad_DS/x.csv"), "m1")]}, lambda_context) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert decision_log.decisions() == ["refused", "failed"]


@pytest.mark.parametrize(("receive_count", "told"), [(1, True), (2, False)])
def test_access_denied_is_told_once_and_retried(stubs, s3, sns_sent, lambda_context, decision_log,
                                                receive_count, told) -> None:
    # GIVEN HeadObject answers 403 for the (only) candidate: absent or not readable, S3 does not say which
    s3.add_client_error("head_object", "403", "Forbidden", 403,
                        expected_params={"Bucket": BUCKET, "Key": "input/sales/a.csv", "VersionId": "v1"})
    if told:
        expect_told(stubs, "AccessDenied")
    # WHEN the handler runs
    result = trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"), "m1", receive_count)]},
                             lambda_context)
    # THEN the event is kept (retried, DLQ in the end), told on its first delivery only
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    if told:
        assert published(stubs)["retried"] is True


def test_transient_head_error_is_retried_without_telling(stubs, s3, lambda_context, decision_log) -> None:
    s3.add_client_error("head_object", "503", "Slow Down", 503,
                        expected_params={"Bucket": BUCKET, "Key": "input/sales/a.csv", "VersionId": "v1"})
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"), "m1")]}, lambda_context) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert decision_log.decisions() == ["failed"]


def test_size_differing_from_the_event_is_refused(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN S3's object at the event's version has another size than the event says
    found(s3, "input/sales/a.csv", size=EVENT_SIZE + 1)
    expect_told(stubs, "VersionMismatch")
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"))]}, lambda_context) == {
        "batchItemFailures": []}


def test_copy_reporting_another_source_version_is_refused(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN CopyObject reports that it copied another version than the one asked for
    key = "input/sales/a.csv"
    found(s3, key)
    no_baseline(s3)
    s3.add_response("copy_object", {"CopySourceVersionId": "v2", "CopyObjectResult": {"ETag": '"e"'}},
                    {"Bucket": BUCKET, "Key": staged_key(key),
                     "CopySource": {"Bucket": BUCKET, "Key": key, "VersionId": "v1"}, "TaggingDirective": "REPLACE"})
    expect_told(stubs, "VersionMismatch")
    # WHEN / THEN no job is started on the wrong bytes, and it is told
    assert trigger.handler({"Records": [sqs_record(s3_event_body(key))]}, lambda_context) == {"batchItemFailures": []}
    assert decision_log.decisions() == ["refused"]


def test_unversioned_event_heads_and_copies_the_current_object_pinned_by_etag(stubs, s3, lambda_context,
                                                                              decision_log) -> None:
    # GIVEN an unversioned event ("null" version id) / THEN HeadObject and the copy carry no VersionId, and the copy
    # only succeeds if the object is still the one HeadObject saw (CopySourceIfMatch)
    sm, _ = stubs
    key = "input/sales/a.csv"
    s3.add_response("head_object", {"ContentLength": EVENT_SIZE, "ETag": f'"{EVENT_ETAG}"'},
                    {"Bucket": BUCKET, "Key": key})
    no_baseline(s3)
    s3.add_response("copy_object", {"CopyObjectResult": {"ETag": '"e"'}},
                    {"Bucket": BUCKET, "Key": staged_key(key, ""), "CopySource": {"Bucket": BUCKET, "Key": key},
                     "CopySourceIfMatch": f'"{EVENT_ETAG}"', "TaggingDirective": "REPLACE"})
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request_for(key, ""))
    assert trigger.handler({"Records": [sqs_record(s3_event_body(key, version_id="null"))]}, lambda_context) == {
        "batchItemFailures": []}


def test_unversioned_object_replaced_since_the_event_is_refused(stubs, s3, lambda_context, decision_log) -> None:
    s3.add_response("head_object", {"ContentLength": EVENT_SIZE, "ETag": '"other"'},
                    {"Bucket": BUCKET, "Key": "input/sales/a.csv"})
    expect_told(stubs, "VersionMismatch")
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv", version_id=None))]},
                           lambda_context) == {"batchItemFailures": []}


def test_copy_failure_retries_the_record(stubs, s3, lambda_context, decision_log) -> None:
    key = "input/sales/a.csv"
    found(s3, key)
    no_baseline(s3)
    s3.add_client_error("copy_object", "InternalError", "try again", 500)
    assert trigger.handler({"Records": [sqs_record(s3_event_body(key), "m1")]}, lambda_context) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert decision_log.decisions() == ["failed"] and staged_key(key) in decision_log.records[0]["error"]


def test_large_object_is_staged_by_multipart_copy_with_exact_ranges(stubs, s3, lambda_context, decision_log,
                                                                    monkeypatch) -> None:
    # GIVEN an upload above CopyObject's 5 GB limit (one byte more than the threshold + 1 GiB)
    sm, _ = stubs
    monkeypatch.setattr(trigger, "COPY_WORKERS", 1)  # one part after the other: the Stubber answers in order
    key = "input/sales/huge.csv"
    size = trigger.MULTIPART_COPY_THRESHOLD + 1024**3 + 1
    part = trigger.COPY_PART_SIZE
    found(s3, key, size=size)
    no_baseline(s3)
    target = staged_key(key)
    s3.add_response("create_multipart_upload", {"UploadId": "up-1", "Bucket": BUCKET, "Key": target},
                    {"Bucket": BUCKET, "Key": target})
    n_parts = -(-size // part)
    expected_ranges = []
    for n in range(1, n_parts + 1):
        first, last = (n - 1) * part, min(n * part, size) - 1
        expected_ranges.append((first, last))
        s3.add_response("upload_part_copy", {"CopySourceVersionId": "v1", "CopyPartResult": {"ETag": f'"p{n}"'}},
                        {"Bucket": BUCKET, "Key": target, "UploadId": "up-1", "PartNumber": n,
                         "CopySource": {"Bucket": BUCKET, "Key": key, "VersionId": "v1"},
                         "CopySourceRange": f"bytes={first}-{last}"})
    s3.add_response("complete_multipart_upload", {"Bucket": BUCKET, "Key": target, "VersionId": "staged"},
                    {"Bucket": BUCKET, "Key": target, "UploadId": "up-1",
                     "MultipartUpload": {"Parts": [{"ETag": f'"p{n}"', "PartNumber": n}
                                                   for n in range(1, n_parts + 1)]}})
    request = trigger.build_processing_job_request(BUCKET, key, "v1", SETTINGS, size=size, etag=EVENT_ETAG)
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request)
    # WHEN the handler runs
    body = s3_event_body(key, size=size)
    assert trigger.handler({"Records": [sqs_record(body)]}, lambda_context) == {"batchItemFailures": []}
    # THEN the ranges cover every byte exactly once, in order, and the job verifies the full size
    assert expected_ranges[0][0] == 0 and expected_ranges[-1][1] == size - 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(expected_ranges))
    assert request["Environment"]["SOURCE_SIZE"] == str(size)
    assert decision_log.records[-1]["staged_by"] == f"multipart-copy ({n_parts} parts)"


def test_failed_multipart_copy_is_aborted_and_retried(stubs, s3, lambda_context, decision_log, monkeypatch) -> None:
    monkeypatch.setattr(trigger, "COPY_WORKERS", 1)
    key = "input/sales/huge.csv"
    size = trigger.MULTIPART_COPY_THRESHOLD + 1
    found(s3, key, size=size)
    no_baseline(s3)
    target = staged_key(key)
    s3.add_response("create_multipart_upload", {"UploadId": "up-1"}, {"Bucket": BUCKET, "Key": target})
    s3.add_client_error("upload_part_copy", "InternalError", "boom", 500)
    s3.add_response("abort_multipart_upload", {}, {"Bucket": BUCKET, "Key": target, "UploadId": "up-1"})
    assert trigger.handler({"Records": [sqs_record(s3_event_body(key, size=size), "m1")]}, lambda_context) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_copy_part_size_keeps_within_10000_parts() -> None:
    assert trigger.copy_part_size(6 * 1024**3) == trigger.COPY_PART_SIZE
    five_tb = 5 * 1024**4
    size = trigger.copy_part_size(five_tb)
    assert -(-five_tb // size) <= 10_000 and size % 1024**2 == 0 and size <= 5 * 1024**3


def test_parallel_multipart_copy_in_moto_copies_exactly_the_old_version(monkeypatch) -> None:
    # GIVEN (moto, in process) a 12 MiB version v1, then a newer version of the same key, and a copy threshold and
    # part size made small so the parallel multipart path runs: 3 parts, 8 workers
    from moto import mock_aws

    monkeypatch.setattr(trigger, "MULTIPART_COPY_THRESHOLD", 1024)
    monkeypatch.setattr(trigger, "COPY_PART_SIZE", 5 * 1024**2)
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        old = bytes(range(256)) * (12 * 4096)
        v1 = s3.put_object(Bucket=BUCKET, Key="input/sales/big.csv", Body=old)["VersionId"]
        s3.put_object(Bucket=BUCKET, Key="input/sales/big.csv", Body=b"newer")
        obj = trigger.ObjectRef(BUCKET, "input/sales/big.csv", v1, len(old))
        source = trigger.resolve_source(s3, obj, SETTINGS)
        # WHEN staged
        how = trigger.stage_source(s3, source, BUCKET, "staging/sales/job/big.csv")
        # THEN the staged object is byte for byte the old version
        staged = s3.get_object(Bucket=BUCKET, Key="staging/sales/job/big.csv")["Body"].read()
    assert how == "multipart-copy (3 parts)"
    assert staged == old
