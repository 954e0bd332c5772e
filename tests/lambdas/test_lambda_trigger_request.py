"""Pure functions of the trigger Lambda: settings, key handling, job names, the CreateProcessingJob request."""

from __future__ import annotations

import json
import re
import unicodedata
from urllib.parse import quote_plus

import botocore.session
import pytest
from botocore.validate import validate_parameters
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from lambda_helpers import ENV, load_handler, s3_event_body

trigger = load_handler("trigger")

SETTINGS = trigger.Settings.from_env(ENV)
BUCKET = ENV["DATA_BUCKET"]
CREATE_JOB_SHAPE = (
    botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateProcessingJob").input_shape
)
JOB_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def tag_pattern_ok(value: str) -> bool:
    # The service pattern [\p{L}\p{Z}\p{N}_.:/=+\-@]* in Python terms
    return all(unicodedata.category(ch)[0] in "LNZ" or ch in "_.:/=+-@" for ch in value)


def utf16_len(value: str) -> int:
    return len(value.encode("utf-16-le", "surrogatepass")) // 2


def assert_valid_request(request: dict) -> None:
    """botocore's own validation plus the service-side patterns botocore does not check."""
    validate_parameters(request, CREATE_JOB_SHAPE)
    assert JOB_NAME_PATTERN.fullmatch(request["ProcessingJobName"])
    assert len(request["ProcessingJobName"]) <= 63
    for item in request["AppSpecification"]["ContainerArguments"] + request["AppSpecification"]["ContainerEntrypoint"]:
        assert utf16_len(item) <= 256 and "\n" not in item
    for value in request["Environment"].values():
        assert utf16_len(value) <= 256
    for tag in request["Tags"]:
        assert tag_pattern_ok(tag["Key"]) and tag_pattern_ok(tag["Value"]), tag
        assert utf16_len(tag["Value"]) <= 256


# --- settings -------------------------------------------------------------------------------


def test_settings_parse_all_variables() -> None:
    # GIVEN a complete environment / WHEN parsed / THEN every field is typed and set
    job = SETTINGS.job  # the contract's JobSettings, read with JobSettings.from_env
    assert job.instance_count == 1 and job.volume_size_gb == 30 and job.max_runtime_seconds == 3600
    assert SETTINGS.code_file_name == "0123456789abcdef.zip"
    with pytest.raises(AttributeError):
        SETTINGS.job_prefix = "x"  # frozen


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATA_BUCKET", None, "DATA_BUCKET is missing"),
        ("ROLE_ARN", "not-an-arn", "ROLE_ARN"),
        ("INSTANCE_COUNT", "two", "INSTANCE_COUNT='two' is not a whole number"),
        ("INSTANCE_COUNT", "0", "INSTANCE_COUNT=0 is outside"),
        ("VOLUME_SIZE_GB", "20000", "VOLUME_SIZE_GB"),
        ("MAX_RUNTIME_SECONDS", "777601", "MAX_RUNTIME_SECONDS"),
        ("INPUT_PREFIX", "input", "INPUT_PREFIX"),
        ("OUTPUT_PREFIX", "input/out/", "overlap"),
        ("BASELINE_PREFIX", "input/baselines/", "INPUT_PREFIX='input/' and BASELINE_PREFIX='input/baselines/' overlap"),
        ("QUARANTINE_PREFIX", "in", "QUARANTINE_PREFIX"),
        ("QUARANTINE_PREFIX", "/", "QUARANTINE_PREFIX"),
        ("JOB_PREFIX", "dq_jobs", "JOB_PREFIX"),
        ("JOB_PREFIX", "x" * 41, "JOB_PREFIX"),
        ("CODE_S3_URI", "https://bucket/code.zip", "CODE_S3_URI"),
        ("INSTANCE_TYPE", "t3.medium", "INSTANCE_TYPE"),
        ("KMS_KEY_ARN", "", "KMS_KEY_ARN is missing"),
        ("PROCESSING_MODE", "fast", "PROCESSING_MODE='fast' must be one of auto, memory, streaming"),
        ("PROCESSING_MODE", "Memory", "PROCESSING_MODE='Memory' must be one of"),
        ("PROCESSING_MAX_ROWS_IN_MEMORY", "0",
         "environment variable PROCESSING_MAX_ROWS_IN_MEMORY=0 is outside 1..9223372036854775807"),
        ("PROCESSING_MAX_ROWS_IN_MEMORY", "-5", "PROCESSING_MAX_ROWS_IN_MEMORY=-5 is outside 1..9223372036854775807"),
        ("PROCESSING_MAX_ROWS_IN_MEMORY", "9223372036854775808",
         "PROCESSING_MAX_ROWS_IN_MEMORY=9223372036854775808 is outside 1..9223372036854775807"),
        ("PROCESSING_MAX_ROWS_IN_MEMORY", "1.5",
         "environment variable PROCESSING_MAX_ROWS_IN_MEMORY='1.5' is not a whole number"),
        ("PROCESSING_MAX_ROWS_IN_MEMORY", "5e6", "PROCESSING_MAX_ROWS_IN_MEMORY='5e6' is not a whole number"),
        ("PROCESSING_MAX_ROWS_IN_MEMORY", "lots", "PROCESSING_MAX_ROWS_IN_MEMORY='lots' is not a whole number"),
        ("STAGING_PREFIX", "input/staging/", "STAGING_PREFIX='input/staging/' and INPUT_PREFIX='input/' overlap"),
        ("STAGING_PREFIX", "output/", "STAGING_PREFIX='output/' and OUTPUT_PREFIX='output/' overlap"),
        ("STAGING_PREFIX", "staging", "STAGING_PREFIX"),
        ("ALERT_TOPIC_ARN", "alerts", "ALERT_TOPIC_ARN='alerts' is not an SNS topic ARN"),
        ("METRICS_NAMESPACE", "AWS/Lambda", "METRICS_NAMESPACE"),
    ],
)
def test_settings_errors_name_the_variable(name: str, value: str | None, message: str) -> None:
    # GIVEN an environment with one bad variable
    env = dict(ENV)
    if value is None:
        env.pop(name)
    else:
        env[name] = value
    # WHEN parsed / THEN the error names it
    with pytest.raises(trigger.SettingsError, match=re.escape(message)):
        trigger.Settings.from_env(env)


# --- key decoding and filtering -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("input/sales/red+flower.csv", "input/sales/red flower.csv"),  # space arrives as '+'
        ("input/sales/a%2Bb.csv", "input/sales/a+b.csv"),  # literal '+' arrives as %2B
        ("input/sales/a%2520b.csv", "input/sales/a%20b.csv"),  # literal '%20' arrives as %2520
        ("input/sales/caf%C3%A9.csv", "input/sales/café.csv"),
        ("input/sales/2024%3A01%3A01.csv", "input/sales/2024:01:01.csv"),
    ],
)
def test_event_keys_are_kept_raw_and_the_decoded_form_is_the_second_candidate(raw: str, decoded: str) -> None:
    # GIVEN the key as the EventBridge detail may carry it (AWS does not document whether it is URL-encoded)
    obj = trigger.parse_object_created(s3_event_body(raw))
    # WHEN parsed / THEN the key is kept exactly as it arrived, and S3 is asked for it first, then for its decoding
    assert obj.key == raw
    assert trigger.key_candidates(raw) == [raw, decoded]


@pytest.mark.parametrize("raw", ["input/sales/plain.csv", "input/sales/bad%FF.csv", "input/sales/100%.csv"])
def test_keys_without_a_different_decoding_have_one_candidate(raw: str) -> None:
    # GIVEN a key whose decoding is itself, or is no valid UTF-8 percent-encoding / THEN only the raw key is tried
    assert trigger.key_candidates(raw) == [raw]


def test_literal_plus_and_percent20_survive_the_round_trip() -> None:
    # GIVEN a real key holding a literal '+', a literal '%20' and a space, encoded the way S3 notifications encode it
    real_key = "input/sales/c++ 100%20off+more.csv"
    raw = quote_plus(real_key, safe="/")
    # WHEN the trigger parses the event / THEN the decoded candidate is exactly the real key
    obj = trigger.parse_object_created(s3_event_body(raw))
    assert trigger.key_candidates(obj.key)[1] == real_key
    # and a raw event key (what the local cloud sends) is its own first candidate
    assert trigger.key_candidates(real_key)[0] == real_key
    request = trigger.build_processing_job_request(obj.bucket, real_key, obj.version_id, SETTINGS)
    assert request["Environment"]["SOURCE_URI"] == f"s3://{BUCKET}/{real_key}"
    arguments = request["AppSpecification"]["ContainerArguments"]
    assert arguments[1] == "/opt/ml/processing/input/data/c++ 100%20off+more.csv"
    assert request["ProcessingInputs"][1]["S3Input"]["S3Uri"].endswith("/c++ 100%20off+more.csv")


@given(st.text(min_size=1, max_size=200))
def test_any_key_is_a_candidate_raw_or_encoded(key: str) -> None:
    # GIVEN any key / WHEN the event carries it raw or encoded like S3 notifications / THEN it is among the keys the
    # trigger asks S3 about (so whichever AWS sends, the real key is found)
    assert key in trigger.key_candidates(key)
    assert key in trigger.key_candidates(quote_plus(key, safe="/"))


def test_missing_version_id_and_null_become_empty() -> None:
    assert trigger.parse_object_created(s3_event_body("input/a.csv", version_id=None)).version_id == ""
    assert trigger.parse_object_created(s3_event_body("input/a.csv", version_id="null")).version_id == ""


@pytest.mark.parametrize(
    "body",
    ["not json", "[]", json.dumps({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}),
     json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}})],
)
def test_unparseable_bodies_raise_value_error(body: str) -> None:
    with pytest.raises(ValueError):
        trigger.parse_object_created(body)


@pytest.mark.parametrize(
    ("key", "size", "bucket", "reason"),
    [
        ("input/sales/", 0, BUCKET, "folder marker"),
        ("input/sales/sub/", None, BUCKET, "folder marker"),
        ("input/sales/empty.csv", 0, BUCKET, "zero-byte object"),
        ("output/sales/dq-sales-0123/cleaned/part.csv", 10, BUCKET, "key is under the output prefix"),
        ("elsewhere/sales/a.csv", 10, BUCKET, "key is outside the input prefix"),
        ("inputs/a.csv", 10, BUCKET, "key is outside the input prefix"),
        ("input/sales/a.csv", 10, "other-bucket", "bucket is not the data bucket"),
    ],
)
def test_ignored_objects(key: str, size: int | None, bucket: str, reason: str) -> None:
    # GIVEN an object that is not ours to process / WHEN filtered / THEN the reason says why
    obj = trigger.ObjectRef(bucket=bucket, key=key, version_id="v", size=size)
    assert trigger.ignore_reason(obj, SETTINGS) == reason


def test_input_object_is_not_ignored() -> None:
    assert trigger.ignore_reason(trigger.ObjectRef(BUCKET, "input/sales/a.csv", "v", 10), SETTINGS) is None


# --- key -> dataset -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "dataset", "basename"),
    [
        ("input/file.csv", "default", "file.csv"),
        ("input/sales/file.csv", "sales", "file.csv"),
        ("input/Sales-EU/file.csv", "sales-eu", "file.csv"),  # lower-cased
        ("input/sales/2024/01/file.csv", "sales", "file.csv"),  # nested: dataset is the first segment
        ("input/" + "a" * 32 + "/f.csv", "a" * 32, "f.csv"),
    ],
)
def test_keys_map_to_dataset_and_file(key: str, dataset: str, basename: str) -> None:
    assert trigger.map_key(BUCKET, key, SETTINGS) == trigger.JobTarget(dataset, basename)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("input/sales_eu/file.csv", "dataset name"),
        ("input/-sales/file.csv", "dataset name"),
        ("input/" + "a" * 33 + "/f.csv", "dataset name"),
        ("input/ventes été/f.csv", "dataset name"),
        ("input//f.csv", "dataset name"),
        ("input/sales/" + "f" * 227, "file name is 227 characters"),
        ("input/sales/" + "d/" * 120 + "f.csv", "SOURCE_URI must fit 256"),
        ("input/sales/line\nbreak.csv", "control characters"),
    ],
)
def test_keys_that_can_never_become_a_job_are_refused(key: str, reason: str) -> None:
    with pytest.raises(trigger.RefusedKeyError, match=re.escape(reason)):
        trigger.build_processing_job_request(BUCKET, key, "v1", SETTINGS)


def test_longest_allowed_file_name_is_accepted() -> None:
    # GIVEN a basename of exactly 256 - len('/opt/ml/processing/input/data/') characters
    request = trigger.build_processing_job_request(BUCKET, "input/" + "f" * 226, "v1", SETTINGS)
    # THEN the argument is exactly at the limit and the request is valid
    assert len(request["AppSpecification"]["ContainerArguments"][1]) == 256
    assert_valid_request(request)


# --- job names ------------------------------------------------------------------------------


def test_job_name_layout_and_determinism() -> None:
    # GIVEN one object version / WHEN named twice / THEN the same name, prefix-dataset-16hex
    a = trigger.job_name_for("dq", "sales", BUCKET, "input/sales/a.csv", "v1")
    assert a == trigger.job_name_for("dq", "sales", BUCKET, "input/sales/a.csv", "v1")
    assert re.fullmatch(r"dq-sales-[0-9a-f]{16}", a)
    # AND another version, key or bucket gives another name
    assert a != trigger.job_name_for("dq", "sales", BUCKET, "input/sales/a.csv", "v2")
    assert a != trigger.job_name_for("dq", "sales", BUCKET, "input/sales/a.csv ", "v1")
    assert a != trigger.job_name_for("dq", "sales", "other", "input/sales/a.csv", "v1")


def test_job_name_hash_separates_fields() -> None:
    # bucket \0 key \0 version: moving characters between fields changes the name
    assert trigger.object_digest("b", "ka", "") != trigger.object_digest("bk", "a", "")


def test_long_dataset_is_truncated_to_63_chars() -> None:
    name = trigger.job_name_for("dq-pipeline-production", "a" * 32, BUCKET, "input/x/y.csv", "v")
    assert len(name) == 63 and JOB_NAME_PATTERN.fullmatch(name)


@given(
    job_prefix=st.from_regex(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,39}", fullmatch=True).filter(lambda p: len(p) <= 40),
    dataset=st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True),
    key=st.text(max_size=1100),
    version_id=st.text(max_size=64),
)
def test_job_name_is_always_valid(job_prefix: str, dataset: str, key: str, version_id: str) -> None:
    name = trigger.job_name_for(job_prefix, dataset, "bucket", key, version_id)
    assert len(name) <= 63
    assert JOB_NAME_PATTERN.fullmatch(name)
    assert name.startswith(f"{job_prefix}-")


@hsettings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    relative=st.one_of(
        st.text(min_size=1, max_size=300),
        st.builds(lambda d, f: f"{d}/{f}", st.text(min_size=0, max_size=40), st.text(min_size=1, max_size=260)),
    ),
    version_id=st.one_of(st.just(""), st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789._", max_size=32)),
)
def test_any_input_key_yields_a_valid_request_or_a_refusal(relative: str, version_id: str) -> None:
    # GIVEN an arbitrary unicode key under the input prefix (any length, any characters)
    key = "input/" + relative
    obj = trigger.ObjectRef(BUCKET, key, version_id, 10)
    if trigger.ignore_reason(obj, SETTINGS):
        return
    # WHEN the request is built
    try:
        request = trigger.build_processing_job_request(BUCKET, key, version_id, SETTINGS)
    except trigger.RefusedKeyError:
        return  # THEN either refused with a reason ...
    # ... or valid against botocore's model and the service patterns, and still pointing at the exact key
    assert_valid_request(request)
    assert request["Environment"]["SOURCE_URI"] == f"s3://{BUCKET}/{key}"


# --- tags -----------------------------------------------------------------------------------


def test_tag_values_are_verbatim_when_allowed() -> None:
    assert trigger.tag_value("input/sales/a-b_c.csv") == "input/sales/a-b_c.csv"


@given(st.text(max_size=600))
def test_tag_values_are_always_valid_and_distinct(value: str) -> None:
    tagged = trigger.tag_value(value)
    assert utf16_len(tagged) <= 256 and tag_pattern_ok(tagged)
    if tagged != value:
        assert re.search(r"@[0-9a-f]{16}$", tagged)


def test_long_key_tag_is_truncated_with_hash() -> None:
    key = "input/sales/" + "x" * 300 + ".csv"
    tagged = trigger.tag_value(key)
    assert len(tagged) == 256 and tagged.startswith("input/sales/xxx")
    assert tagged != trigger.tag_value(key.replace(".csv", ".tsv"))


# --- the full request -----------------------------------------------------------------------


def test_request_matches_contracts_1_and_2() -> None:
    # GIVEN an object under input/sales/
    key = "input/sales/orders 2024.csv"
    # WHEN the request is built
    request = trigger.build_processing_job_request(BUCKET, key, "v1", SETTINGS)
    # THEN it is exactly what design.md Contracts 1 and 2 describe
    job = request["ProcessingJobName"]
    assert job == trigger.job_name_for("dq", "sales", BUCKET, key, "v1")
    assert request["ProcessingInputs"] == [
        {"InputName": "code", "AppManaged": False, "S3Input": {
            "S3Uri": "s3://cdk-assets-bucket/0123456789abcdef.zip", "LocalPath": "/opt/ml/processing/input/code",
            "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}},
        # the job's own staged copy of this version, never the input key (whose current version may be newer)
        {"InputName": "data", "AppManaged": False, "S3Input": {
            "S3Uri": f"s3://{BUCKET}/staging/sales/{job}/orders 2024.csv", "LocalPath": "/opt/ml/processing/input/data",
            "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}},
    ]
    assert request["AppSpecification"] == {
        "ImageUri": ENV["IMAGE_URI"],
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/0123456789abcdef.zip"],
        "ContainerArguments": ["--input", "/opt/ml/processing/input/data/orders 2024.csv",
                               "--output", "/opt/ml/processing/output", "--dataset", "sales"],
    }
    assert request["Environment"] == {"DATASET": "sales", "SOURCE_URI": f"s3://{BUCKET}/{key}",
                                      "SOURCE_VERSION_ID": "v1", "SOURCE_SIZE": "", "SOURCE_ETAG": "",
                                      "CODE_VERSION": "0123456789abcdef", "PROCESSING_MODE": "auto"}
    sized = trigger.build_processing_job_request(BUCKET, key, "v1", SETTINGS, size=456, etag="abc-2")
    assert {k: sized["Environment"][k] for k in ("SOURCE_SIZE", "SOURCE_ETAG")} == {"SOURCE_SIZE": "456",
                                                                                    "SOURCE_ETAG": "abc-2"}
    outputs = request["ProcessingOutputConfig"]["Outputs"]
    assert [o["OutputName"] for o in outputs] == ["cleaned", "transformed", "statistics", "quality", "rejected",
                                                  "quarantine"]
    assert outputs.pop()["S3Output"] == {"S3Uri": f"s3://{BUCKET}/quarantine/sales/{job}/",  # Contract 4
                                         "LocalPath": "/opt/ml/processing/output/quarantine",
                                         "S3UploadMode": "EndOfJob"}
    for o in outputs:
        folder = o["OutputName"]
        assert o["S3Output"] == {"S3Uri": f"s3://{BUCKET}/output/sales/{job}/{folder}/",
                                 "LocalPath": f"/opt/ml/processing/output/{folder}", "S3UploadMode": "EndOfJob"}
    assert request["ProcessingOutputConfig"]["KmsKeyId"] == ENV["KMS_KEY_ARN"]
    assert request["ProcessingResources"] == {"ClusterConfig": {
        "InstanceCount": 1, "InstanceType": "ml.t3.medium", "VolumeSizeInGB": 30, "VolumeKmsKeyId": ENV["KMS_KEY_ARN"]}}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert request["NetworkConfig"] == {"EnableNetworkIsolation": True}
    assert request["RoleArn"] == ENV["ROLE_ARN"]
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["dq:job-name"] == job and tags["dq:input-bucket"] == BUCKET
    assert tags["dq:input-key"] == key and tags["dq:input-version-id"] == "v1"
    assert tags["dq:code-version"] == "0123456789abcdef" and tags["dq:dataset"] == "sales"
    assert tags["dq:staged-input"] == f"s3://{BUCKET}/staging/sales/{job}/orders 2024.csv"
    assert_valid_request(request)


def test_outputs_never_land_under_the_input_prefix() -> None:
    request = trigger.build_processing_job_request(BUCKET, "input/file.csv", "", SETTINGS)
    for output in request["ProcessingOutputConfig"]["Outputs"]:
        assert output["S3Output"]["S3Uri"].startswith((f"s3://{BUCKET}/output/default/",
                                                       f"s3://{BUCKET}/quarantine/default/"))
    assert request["Environment"]["SOURCE_VERSION_ID"] == ""
    assert_valid_request(request)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    # GIVEN no jitter (rand -> 1.0, the ceiling) / THEN 30, 60, 120 ... capped at 900
    assert [trigger.backoff_seconds(n, lambda: 1.0) for n in (1, 2, 3, 4, 5, 6, 7, 50)] == [
        30, 60, 120, 240, 480, 900, 900, 900]
    # AND jitter keeps at least half of the ceiling
    assert trigger.backoff_seconds(3, lambda: 0.0) == 60


@pytest.mark.parametrize(
    ("arn", "url"),
    [
        ("arn:aws:sqs:eu-west-1:123456789012:dq-trigger", "https://sqs.eu-west-1.amazonaws.com/123456789012/dq-trigger"),
        ("arn:aws-cn:sqs:cn-north-1:123456789012:q", "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q"),
    ],
)
def test_queue_url_from_arn(arn: str, url: str) -> None:
    assert trigger.queue_url_from_arn(arn) == url


def test_baseline_and_quarantine_prefixes_default_and_parse() -> None:
    assert (SETTINGS.baseline_prefix, SETTINGS.quarantine_prefix) == ("baselines/", "quarantine/")
    custom = trigger.Settings.from_env({**ENV, "BASELINE_PREFIX": "dq/baselines/", "QUARANTINE_PREFIX": "dq/q/"})
    assert custom.baseline_key("sales") == "dq/baselines/sales/baseline.json"
    assert custom.quarantine_prefix == "dq/q/"


@pytest.mark.parametrize("mode", ["auto", "memory", "streaming"])
def test_processing_mode_parses_and_reaches_the_job_environment(mode: str) -> None:
    # GIVEN PROCESSING_MODE=<mode> / WHEN the request is built / THEN the job's Environment carries it
    settings = trigger.Settings.from_env({**ENV, "PROCESSING_MODE": mode})
    assert settings.processing_mode == mode
    request = trigger.build_processing_job_request(BUCKET, "input/sales/a.csv", "v1", settings)
    assert request["Environment"]["PROCESSING_MODE"] == mode
    assert_valid_request(request)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_processing_mode_defaults_to_auto(value: str | None) -> None:
    # GIVEN a function deployed before PROCESSING_MODE existed (no variable) or an empty one
    env = {k: v for k, v in ENV.items() if k != "PROCESSING_MODE"}
    if value is not None:
        env["PROCESSING_MODE"] = value
    # WHEN parsed / THEN "auto": what the job did without the variable
    settings = trigger.Settings.from_env(env)
    assert settings.processing_mode == "auto"
    request = trigger.build_processing_job_request(BUCKET, "input/a.csv", "v1", settings)
    assert request["Environment"]["PROCESSING_MODE"] == "auto"


@pytest.mark.parametrize("value", ["+7", "1_000"])
def test_max_rows_in_memory_is_the_jobs_plain_whole_number(value: str) -> None:
    # the contract's one rule (the job's own check never accepted a sign or '_'; the trigger used to)
    with pytest.raises(trigger.SettingsError,
                       match=re.escape(f"PROCESSING_MAX_ROWS_IN_MEMORY='{value}' is not a whole number")):
        trigger.Settings.from_env({**ENV, "PROCESSING_MAX_ROWS_IN_MEMORY": value})


@pytest.mark.parametrize(("value", "rows"), [
    ("1", 1), ("5000000", 5_000_000), (" 42 ", 42), ("0042", 42),
])
def test_max_rows_in_memory_parses_and_reaches_the_job_environment(value: str, rows: int) -> None:
    # GIVEN PROCESSING_MAX_ROWS_IN_MEMORY=<value>  WHEN parsed and the request is built
    settings = trigger.Settings.from_env({**ENV, "PROCESSING_MAX_ROWS_IN_MEMORY": value})
    assert settings.processing_max_rows_in_memory == rows
    request = trigger.build_processing_job_request(BUCKET, "input/sales/a.csv", "v1", settings)
    # THEN the job's Environment carries the number as plain digits (the job's own check rejects '+' and '_')
    assert request["Environment"]["PROCESSING_MAX_ROWS_IN_MEMORY"] == str(rows)
    assert_valid_request(request)


def test_request_with_a_baseline_adds_the_input_and_argument() -> None:
    # GIVEN the dataset has a baseline (design.md Contract 4)
    uri = f"s3://{BUCKET}/baselines/sales/baseline.json"
    request = trigger.build_processing_job_request(BUCKET, "input/sales/a.csv", "v1", SETTINGS, baseline_uri=uri)
    # THEN input "baseline" and --baseline are added; without one, neither is
    assert request["ProcessingInputs"][2] == {"InputName": "baseline", "AppManaged": False, "S3Input": {
        "S3Uri": uri, "LocalPath": "/opt/ml/processing/input/baseline", "S3DataType": "S3Prefix",
        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
    assert request["AppSpecification"]["ContainerArguments"][-2:] == [
        "--baseline", "/opt/ml/processing/input/baseline/baseline.json"]
    plain = trigger.build_processing_job_request(BUCKET, "input/sales/a.csv", "v1", SETTINGS)
    assert [i["InputName"] for i in plain["ProcessingInputs"]] == ["code", "data"]
    assert "--baseline" not in plain["AppSpecification"]["ContainerArguments"]
    assert plain["ProcessingJobName"] == request["ProcessingJobName"]  # the name never depends on the baseline
    assert_valid_request(request)
