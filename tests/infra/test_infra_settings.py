"""Settings validation: defaults, dataset configs, and a bad setting fails naming its context key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.config import (
    DEFAULTS,
    FALLBACK_THRESHOLDS,
    MAX_ROWS_IN_MEMORY_LIMIT,
    PROCESSING_MODES,
    THRESHOLD_KEYS,
    SettingsError,
    has_local_nvme,
    load_dataset_psi_alarms,
    load_dataset_thresholds,
    settings_from_context,
)
from infra_testlib import (
    DEFAULT_PSI_ALARM,
    DEFAULT_THRESHOLDS,
    ORDERS_PSI_ALARM,
    ORDERS_THRESHOLDS,
    ROOT,
    write_configs,
)


def settings(tmp_path: Path, **context: Any):
    return settings_from_context(context.get, configs_dir=write_configs(tmp_path / "configs"))


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    # GIVEN no context  WHEN settings are read  THEN every value is its documented default
    s = settings(tmp_path)
    for key, default in DEFAULTS.items():
        if key != "quality_thresholds":
            assert getattr(s, key) == default, key
    assert s.removal_policy == "retain" and not s.destroy_on_delete


def test_cdk_json_holds_the_defaults() -> None:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    for key, default in DEFAULTS.items():
        if key in context:
            assert context[key] in (default, "" if default is None else default), key
    assert json.loads((ROOT / "cdk.json").read_text())["app"] == "python3 app.py"


def test_dataset_configs_give_per_dataset_thresholds(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert set(s.datasets) == {"default", "orders"}
    assert s.datasets["default"].max_duplicate_rate == DEFAULT_THRESHOLDS["max_duplicate_rate"]
    assert s.datasets["orders"].max_rejected_rate == ORDERS_THRESHOLDS["max_rejected_rate"]
    # keys orders.json leaves out are NOT inherited from default.json: the job's gate does not check them either
    assert s.datasets["orders"].max_duplicate_rate is None
    assert s.datasets["orders"].max_malformed_json_rate is None


def test_psi_alarm_comes_from_each_configs_drift_section(tmp_path: Path) -> None:
    # GIVEN orders.json with drift.psi_alarm 0.4 and default.json without a drift section
    s = settings(tmp_path)
    # THEN orders gets its own value, default the job's default (0.25)
    assert s.datasets["orders"].psi_alarm == ORDERS_PSI_ALARM
    assert s.datasets["default"].psi_alarm == DEFAULT_PSI_ALARM


def test_psi_alarm_is_not_inherited_from_default_json(tmp_path: Path) -> None:
    # the job reads only its own dataset config, so a dataset without drift.psi_alarm gets 0.25, not default.json's
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "default.json").write_text(json.dumps({"drift": {"psi_alarm": 0.5}}))
    (configs / "clicks.json").write_text(json.dumps({"drift": {"psi_warn": 0.1}}))
    (configs / "views.json").write_text(json.dumps({"drift": {"psi_alarm": None}}))
    assert load_dataset_psi_alarms(configs) == {"default": 0.5, "clicks": 0.25, "views": None}
    s = settings_from_context({"quality_thresholds": {"other": {"min_rows_out": 3}}}.get, configs_dir=configs)
    # a dataset with no config file of its own runs with default.json, so it gets default.json's value
    assert s.datasets["other"].psi_alarm == 0.5
    assert s.datasets["views"].psi_alarm is None


@pytest.mark.parametrize("drift", [{"psi_alarm": -0.1}, {"psi_alarm": "high"}, {"psi_alarm": True}, [1]])
def test_bad_psi_alarm_is_named(tmp_path: Path, drift: Any) -> None:
    configs = write_configs(tmp_path / "configs")
    (configs / "broken.json").write_text(json.dumps({"drift": drift}))
    with pytest.raises(SettingsError, match=r"broken\.json.*drift"):
        load_dataset_psi_alarms(configs)


def test_context_overrides_thresholds(tmp_path: Path) -> None:
    s = settings(tmp_path, quality_thresholds={"orders": {"max_rejected_rate": 0.5}, "clicks": {"min_rows_out": 5}})
    assert s.datasets["orders"].max_rejected_rate == 0.5
    assert s.datasets["clicks"].min_rows_out == 5
    assert s.datasets["clicks"].max_rejected_rate == DEFAULT_THRESHOLDS["max_rejected_rate"]


def test_missing_configs_dir_falls_back(tmp_path: Path) -> None:
    assert load_dataset_thresholds(tmp_path / "absent") == {"default": FALLBACK_THRESHOLDS}


def test_real_default_config_when_present() -> None:
    configs = ROOT / "processing" / "configs"
    if not (configs / "default.json").is_file():
        pytest.skip("processing/configs/default.json not there yet")
    thresholds = load_dataset_thresholds(configs)
    assert set(thresholds["default"]) == set(THRESHOLD_KEYS)
    raw = json.loads((configs / "default.json").read_text())["quality_thresholds"]
    assert set(raw) == set(THRESHOLD_KEYS), "default.json must set every threshold the alarms use"
    drift = json.loads((configs / "default.json").read_text()).get("drift") or {}
    assert load_dataset_psi_alarms(configs)["default"] == drift.get("psi_alarm", 0.25)


def test_numbers_given_as_strings_on_the_command_line(tmp_path: Path) -> None:
    s = settings(tmp_path, instance_count="1", volume_size_gb="50", max_runtime_seconds="600")
    assert (s.instance_count, s.volume_size_gb, s.max_runtime_seconds) == (1, 50, 600)


@pytest.mark.parametrize(
    ("key", "value", "extra"),
    [
        ("input_prefix", "/input/", {}),
        ("input_prefix", "input", {}),
        ("output_prefix", "", {}),
        ("output_prefix", "input/results/", {}),
        ("output_prefix", "data/", {"input_prefix": "data/incoming/"}),
        ("baseline_prefix", "input/baselines/", {}),
        ("baseline_prefix", "baselines", {}),
        ("quarantine_prefix", "in/", {"input_prefix": "in/q/", "output_prefix": "out/"}),
        ("staging_prefix", "input/staging/", {}),  # a copy under the input prefix would start a job of its own
        ("staging_prefix", "output/", {}),
        ("staging_prefix", "baselines/staged/", {}),
        ("staging_prefix", "quarantine/", {}),
        ("staging_prefix", "staging", {}),
        ("staging_expiration_days", 0, {}),
        ("staging_expiration_days", 366, {}),
        ("job_prefix", "DQ", {}),
        ("job_prefix", "abcdefghijk", {}),
        ("job_prefix", "dq-x", {}),
        ("instance_type", "ml.nope.large", {}),
        ("instance_count", 0, {}),
        ("instance_count", 2, {}),  # FullyReplicated input: copies would overwrite each other's outputs
        ("instance_type", "ml.m5d.xlarge", {}),  # local NVMe storage rejects VolumeKmsKeyId
        ("instance_type", "ml.g4dn.xlarge", {}),
        ("instance_type", "ml.g5.xlarge", {}),
        ("instance_count", "two", {}),
        ("volume_size_gb", 0, {}),
        ("max_runtime_seconds", 0, {}),
        ("max_runtime_seconds", 777601, {}),
        ("processing_mode", "fast", {}),
        ("processing_mode", "Memory", {}),
        ("processing_mode", "", {}),
        ("max_rows_in_memory", 0, {}),
        ("max_rows_in_memory", "1.5", {}),
        ("sklearn_image_version", "9.9-9", {}),
        # issue 11 item 10: only a digest-pinned scikit-learn image URI
        ("sklearn_image_uri", "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3",
         {}),
        ("sklearn_image_uri", "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn@sha256:abc", {}),
        ("sklearn_image_uri", "141502667606.dkr.ecr.eu-west-1.amazonaws.com/my-image@sha256:" + "a" * 64, {}),
        ("sklearn_image_uri", "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn@sha256:" + "A" * 64,
         {}),
        ("sklearn_image_uri", "1415026676.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn@sha256:" + "a" * 64,
         {}),
        ("sklearn_image_uri", "450853457545.dkr.ecr.cn-north-1.amazonaws.com/sagemaker-scikit-learn@sha256:" + "a" * 64,
         {}),
        ("sklearn_image_uri", 42, {}),
        ("alert_email", "not-an-email", {}),
        ("asset_kms_key_arn", "alias/cdk-assets", {}),
        ("asset_kms_key_arn", "arn:aws:kms:eu-west-1:111122223333:alias/cdk-assets", {}),
        ("removal_policy", "delete", {}),
        ("noncurrent_version_expiration_days", 0, {}),
        ("log_retention_days", 31, {}),
        ("quality_thresholds", {"default": {"max_rejected_rate": 2}}, {}),
        ("quality_thresholds", {"Bad Name": {}}, {}),
        ("quality_thresholds", {"orders": {"max_speed": 1}}, {}),
        ("quality_thresholds", "{not json", {}),
    ],
)
def test_bad_setting_names_its_key(tmp_path: Path, key: str, value: Any, extra: dict[str, Any]) -> None:
    # GIVEN one bad context value  WHEN settings are read  THEN the error names that key
    with pytest.raises(SettingsError) as info:
        settings(tmp_path, **{key: value, **extra})
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)


@pytest.mark.parametrize("mode", ["auto", "memory", "streaming"])
def test_processing_mode_accepts_the_jobs_modes(tmp_path: Path, mode: str) -> None:
    # GIVEN -c processing_mode=<mode>  WHEN settings are read  THEN it is carried as given
    assert settings(tmp_path, processing_mode=mode).processing_mode == mode


def test_sklearn_image_uri_accepts_a_digest_and_defaults_to_unset(tmp_path: Path) -> None:
    uri = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn@sha256:" + "0a" * 32
    assert settings(tmp_path).sklearn_image_uri is None
    assert settings(tmp_path, sklearn_image_uri="").sklearn_image_uri is None
    assert settings(tmp_path, sklearn_image_uri=uri).sklearn_image_uri == uri
    china = "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn@sha256:" + "b" * 64
    assert settings(tmp_path, sklearn_image_uri=china).sklearn_image_uri == china
    with pytest.raises(SettingsError, match=r"sklearn_image_uri.*tags are rebuilt"):
        settings(tmp_path, sklearn_image_uri=uri.replace("@sha256:" + "0a" * 32, ":1.4-2-py312-cpu-py3"))


def test_processing_mode_error_lists_the_allowed_values(tmp_path: Path) -> None:
    assert PROCESSING_MODES == ("auto", "memory", "streaming")
    with pytest.raises(SettingsError, match=r"'processing_mode': 'fast' must be one of auto, memory, streaming"):
        settings(tmp_path, processing_mode="fast")


def test_max_rows_in_memory_is_unset_by_default(tmp_path: Path) -> None:
    # GIVEN no context, or cdk.json's "" (also what `-c max_rows_in_memory=` gives)
    # THEN it is unset: the job derives its row budget from the instance's memory
    assert DEFAULTS["max_rows_in_memory"] is None
    assert settings(tmp_path).max_rows_in_memory is None
    assert settings(tmp_path, max_rows_in_memory="").max_rows_in_memory is None


@pytest.mark.parametrize(("value", "rows"), [
    (1, 1), (5_000_000, 5_000_000), ("2000000", 2_000_000), (" 300 ", 300), (MAX_ROWS_IN_MEMORY_LIMIT, 2**63 - 1),
])
def test_max_rows_in_memory_accepts_positive_whole_numbers(tmp_path: Path, value: Any, rows: int) -> None:
    # GIVEN -c max_rows_in_memory=<value> (a number in cdk.json, a string on the command line)
    # WHEN settings are read  THEN it is carried as that number
    assert settings(tmp_path, max_rows_in_memory=value).max_rows_in_memory == rows


@pytest.mark.parametrize(("value", "message"), [
    # the contract's rule and words (contract.max_rows_in_memory), the trigger's and the job's too
    (0, "0 is outside 1..9223372036854775807"),
    (-5, "-5 is outside 1..9223372036854775807"),
    ("-5", "-5 is outside 1..9223372036854775807"),
    (2**63, "9223372036854775808 is outside 1..9223372036854775807"),
    (1.5, "1.5 is not a whole number"),
    (1e6, "1000000.0 is not a whole number"),
    ("1e6", "'1e6' is not a whole number"),
    ("lots", "'lots' is not a whole number"),
    (True, "True is not a whole number"),
    (False, "False is not a whole number"),
])
def test_bad_max_rows_in_memory_is_named_with_its_value(tmp_path: Path, value: Any, message: str) -> None:
    # GIVEN a row budget that is not a positive whole number  WHEN settings are read  THEN synth fails saying why
    with pytest.raises(SettingsError) as info:
        settings(tmp_path, max_rows_in_memory=value)
    assert str(info.value) == (f"Invalid context setting 'max_rows_in_memory': {message} "
                               "(set it with `cdk synth -c max_rows_in_memory=...` or in cdk.json)")


@pytest.mark.parametrize(("instance_type", "nvme"), [
    ("ml.m5d.xlarge", True), ("ml.c5d.large", True), ("ml.r5d.large", True), ("ml.g4dn.xlarge", True),
    ("ml.g5.xlarge", True), ("ml.g6.xlarge", True), ("ml.p3dn.24xlarge", True), ("ml.p4d.24xlarge", True),
    ("ml.p4de.24xlarge", True), ("ml.p5.48xlarge", True),
    ("ml.t3.medium", False), ("ml.m5.xlarge", False), ("ml.c5.xlarge", False), ("ml.p3.2xlarge", False),
    ("ml.c7i-flex.large", False), ("ml.m6i.large", False),
])
def test_local_nvme_instance_types_are_recognised(instance_type: str, nvme: bool) -> None:
    assert has_local_nvme(instance_type) is nvme


def test_nvme_and_instance_count_messages_say_why(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="VolumeKmsKeyId"):
        settings(tmp_path, instance_type="ml.r5d.large")
    with pytest.raises(SettingsError, match="overwriting each other"):
        settings(tmp_path, instance_count=3)


def test_bad_dataset_config_file_is_named(tmp_path: Path) -> None:
    configs = write_configs(tmp_path / "configs")
    (configs / "broken.json").write_text("{")
    with pytest.raises(SettingsError, match=r"broken\.json"):
        load_dataset_thresholds(configs)


def test_cdk_synth_fails_naming_the_key(tmp_path: Path) -> None:
    # GIVEN the real app and a bad -c setting  WHEN it runs  THEN it exits non-zero naming the key
    env = dict(os.environ, CDK_CONTEXT_JSON=json.dumps({"job_prefix": "NOT_VALID"}), CDK_OUTDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "job_prefix" in done.stderr
