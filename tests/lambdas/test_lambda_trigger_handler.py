"""The trigger handler end to end, every AWS request checked against botocore's model with Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest
from botocore.stub import Stubber

from lambda_helpers import ENV, EVENT_ETAG, EVENT_SIZE, QUEUE_URL, client, load_handler, s3_event_body, sqs_record

trigger = load_handler("trigger")
SETTINGS = trigger.Settings.from_env(ENV)
BUCKET = ENV["DATA_BUCKET"]
JOB_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:processing-job/"


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stubber, Stubber]]:
    """Stubbed SageMaker and SQS clients injected into the handler module; all stubs must be consumed."""
    sagemaker, sqs = client("sagemaker"), client("sqs")
    monkeypatch.setattr(trigger, "sagemaker_client", sagemaker)
    monkeypatch.setattr(trigger, "sqs_client", sqs)
    monkeypatch.setattr(trigger, "_settings", SETTINGS)
    with Stubber(sagemaker) as sm_stub, Stubber(sqs) as sqs_stub:
        yield sm_stub, sqs_stub
        sm_stub.assert_no_pending_responses()
        sqs_stub.assert_no_pending_responses()


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


def request_for(key: str, version_id: str = "v1") -> dict:
    return trigger.build_processing_job_request(BUCKET, key, version_id, SETTINGS, size=EVENT_SIZE, etag=EVENT_ETAG)


def test_object_created_starts_one_job(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN an upload under input/sales/ whose key has a space (arrives as '+')
    sm, _ = stubs
    key = "input/sales/orders 2024.csv"
    request = request_for(key)
    no_baseline(s3)
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
    no_baseline(s3, "sales")
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
    no_baseline(s3)
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
    no_baseline(s3)
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
def test_throttling_and_quota_back_off_then_retry(stubs, s3, lambda_context, decision_log, code, receive_count, visibility,
                                                  monkeypatch) -> None:
    # GIVEN SageMaker keeps refusing (after botocore's own retries) and this is receive number N
    sm, sqs = stubs
    monkeypatch.setattr(trigger.random, "random", lambda: 0.5)
    request = request_for("input/sales/a.csv")
    no_baseline(s3)
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


def test_visibility_change_failure_still_reports_the_retry(stubs, s3, lambda_context, decision_log, monkeypatch) -> None:
    # GIVEN the receipt handle expired before we could change the visibility
    sm, sqs = stubs
    monkeypatch.setattr(trigger.random, "random", lambda: 0.0)
    no_baseline(s3)
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
    no_baseline(s3)
    sm.add_client_error("create_processing_job", "AccessDeniedException", "not authorized to perform: sagemaker:AddTags",
                        400, expected_params=request_for("input/a.csv"))
    # WHEN / THEN the record is reported for retry (ends in the DLQ if it keeps failing), nothing else is called
    result = trigger.handler({"Records": [sqs_record(s3_event_body("input/a.csv"), "m1")]}, lambda_context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert decision_log.decisions() == ["failed"]


def test_mixed_batch_reports_only_the_records_to_retry(stubs, s3, lambda_context, decision_log, monkeypatch) -> None:
    # GIVEN a batch: a new object, a folder marker, a bad dataset name, an output key, a throttled object, garbage
    sm, sqs = stubs
    monkeypatch.setattr(trigger.random, "random", lambda: 1.0)
    no_baseline(s3)
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "a"}, request_for("input/sales/a.csv"))
    no_baseline(s3)
    sm.add_client_error("create_processing_job", "ThrottlingException", "Rate exceeded", 400,
                        expected_params=request_for("input/sales/b.csv"))
    sqs.add_response("change_message_visibility", {}, {
        "QueueUrl": QUEUE_URL, "ReceiptHandle": "receipt-5", "VisibilityTimeout": 60})
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
def test_botocore_retries_throttling_inside_the_invocation(monkeypatch, s3, lambda_context, decision_log, code, calls) -> None:
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
        body = ('{"__type": "%s", "message": "Rate exceeded"}' % code).encode()
        return AWSResponse(request.url, 400, {"x-amzn-requestid": "r"}, _Raw(body))

    sagemaker.meta.events.register("before-send.sagemaker.CreateProcessingJob", answer)
    sqs = client("sqs")
    monkeypatch.setattr(trigger, "sqs_client", sqs)
    no_baseline(s3, "default")
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
    s3.add_response("head_object", {"ContentLength": 2048, "ETag": '"abc"'},
                    {"Bucket": BUCKET, "Key": "baselines/sales/baseline.json"})
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
    s3.add_client_error("head_object", code, "", status,
                        expected_params={"Bucket": BUCKET, "Key": "baselines/sales/baseline.json"})
    sm.add_response("create_processing_job", {"ProcessingJobArn": JOB_ARN + "x"}, request_for("input/sales/a.csv"))
    # WHEN / THEN the job starts without a baseline input (drift is then reported as unavailable)
    assert trigger.handler({"Records": [sqs_record(s3_event_body("input/sales/a.csv"))]}, lambda_context) == {
        "batchItemFailures": []}
    assert decision_log.decisions() == decisions
    if status == 403:  # the role has s3:ListBucket on the prefix: a 403 is most likely a real denial
        assert decision_log.records[0]["level"] == "ERROR"


def test_baseline_lookup_error_retries_the_record(stubs, s3, lambda_context, decision_log) -> None:
    # GIVEN HeadObject keeps failing with a 503 (after botocore's retries)
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
