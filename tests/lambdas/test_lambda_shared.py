"""lambda_shared: the one S3 error classification both Lambdas use, the environment readers, the decision log."""

from __future__ import annotations

import json
import logging

import pytest
from botocore.exceptions import ClientError

from lambda_helpers import ENV, load_handler
from lambda_shared.env import Environment, SettingsError
from lambda_shared.logs import decision_log
from lambda_shared.s3errors import UNREADABLE, S3ErrorKind, classify, error_code


def s3_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "HeadObject")


@pytest.mark.parametrize(("code", "status", "kind"), [
    ("404", 404, S3ErrorKind.ABSENT), ("NoSuchKey", 404, S3ErrorKind.ABSENT), ("NoSuchVersion", 404,
                                                                               S3ErrorKind.ABSENT),
    ("NoSuchBucket", 404, S3ErrorKind.ABSENT), ("405", 405, S3ErrorKind.ABSENT),  # a delete marker
    ("MethodNotAllowed", 405, S3ErrorKind.ABSENT), ("NotFound", 0, S3ErrorKind.ABSENT),
    ("403", 403, S3ErrorKind.DENIED), ("AccessDenied", 403, S3ErrorKind.DENIED), ("Forbidden", 0, S3ErrorKind.DENIED),
    ("KMS.DisabledException", 400, S3ErrorKind.KEY), ("KMS.NotFoundException", 403, S3ErrorKind.KEY),
    ("InvalidObjectState", 403, S3ErrorKind.ARCHIVED),
    ("InvalidObjectState", 400, S3ErrorKind.ARCHIVED),
    ("PreconditionFailed", 412, S3ErrorKind.CONFLICT), ("ConditionalRequestConflict", 409, S3ErrorKind.CONFLICT),
    ("412", 412, S3ErrorKind.CONFLICT),
    ("SlowDown", 503, S3ErrorKind.OTHER), ("InternalError", 500, S3ErrorKind.OTHER), ("", 0, S3ErrorKind.OTHER),
])
def test_one_classification_of_s3_errors(code: str, status: int, kind: S3ErrorKind) -> None:
    assert classify(s3_error(code, status)) is kind


def test_unreadable_is_everything_but_conflicts_and_transient_errors() -> None:
    assert {S3ErrorKind.ABSENT, S3ErrorKind.DENIED, S3ErrorKind.KEY, S3ErrorKind.ARCHIVED} == UNREADABLE
    assert error_code(s3_error("SlowDown", 503)) == "SlowDown"
    assert error_code(TimeoutError("t")) == "TimeoutError"


@pytest.mark.parametrize(("environ", "message"), [
    ({}, "environment variable P is missing or empty"),
    ({"P": "a"}, "environment variable P='a' must not start with '/' and must end with '/'"),
    ({"P": "/a/"}, "environment variable P='/a/' must not start with '/' and must end with '/'"),
])
def test_prefix_errors_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Environment(environ).prefix("P")
    assert str(info.value) == message
    assert Environment({}).prefix("P", "d/") == "d/"


def test_decision_log_writes_one_json_line_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    log = decision_log("dq.test-shared")
    assert decision_log("dq.test-shared") is log
    log.request_id = "r-1"
    log("started", logging.WARNING, key="k")
    line = capsys.readouterr().out.strip()
    assert json.loads(line) == {"level": "WARNING", "decision": "started", "request_id": "r-1", "key": "k"}


def test_job_prefix_is_one_rule_for_the_cdk_app_and_both_lambdas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the CDK app used [a-z0-9]{1,10}; both Lambdas accepted up to 40 characters with dashes: now contract's one rule
    from infra.config import SettingsError as ContextError
    from infra.config import settings_from_context

    trigger, metrics = load_handler("trigger"), load_handler("metrics")
    for prefix, valid in (("dq", True), ("abcdefghij", True), ("dq-x", False), ("abcdefghijk", False), ("DQ", False),
                          ("x" * 40, False)):
        outcomes = []
        try:
            settings_from_context(lambda k, p=prefix: p if k == "job_prefix" else None, configs_dir=tmp_path)
            outcomes.append(True)
        except ContextError:
            outcomes.append(False)
        for parse, env in ((trigger.Settings.from_env, {**ENV, "JOB_PREFIX": prefix}),
                           (metrics.Settings.from_env, {"NAMESPACE": "DataQualityPipeline", "JOB_PREFIX": prefix})):
            try:
                parse(env)
                outcomes.append(True)
            except SettingsError:
                outcomes.append(False)
        assert outcomes == [valid] * 3, prefix


@pytest.mark.parametrize(("code", "status", "found"), [
    ("404", 404, None), ("403", 403, None), ("KMS.DisabledException", 400, None),
])
def test_trigger_baseline_lookup_reads_the_one_classification(code: str, status: int, found: None) -> None:
    # absent, denied or an unusable key: no baseline (the job runs, DriftUnavailable shows it); anything else raises
    from botocore.stub import Stubber

    from lambda_helpers import client

    trigger = load_handler("trigger")
    settings = trigger.Settings.from_env(ENV)
    s3 = client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("head_object", service_error_code=code, http_status_code=status)
        assert trigger.find_baseline(s3, "sales", settings, {}) is found
        stub.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(ClientError):
            trigger.find_baseline(s3, "sales", settings, {})


@pytest.mark.parametrize(("code", "status", "published"), [
    ("404", 404, False), ("403", 403, False), ("NoSuchKey", 404, False),
])
def test_metrics_marker_lookup_reads_the_one_classification(code: str, status: int, published: bool) -> None:
    from botocore.stub import Stubber

    from lambda_helpers import client

    metrics = load_handler("metrics")
    s3 = client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("head_object", service_error_code=code, http_status_code=status)
        assert metrics.already_published(s3, ("b", "k")) is published
        stub.add_client_error("head_object", service_error_code="InternalError", http_status_code=500)
        with pytest.raises(ClientError):
            metrics.already_published(s3, ("b", "k"))
