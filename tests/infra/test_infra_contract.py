"""The cross-part contract (contract/__init__.py): one definition, every part agreeing with it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import contract
from contract import ContractError, JobSettings

ROOT = Path(__file__).resolve().parents[2]


def test_contract_imports_only_the_standard_library() -> None:
    # GIVEN a fresh interpreter WHEN the contract is imported THEN it loaded nothing outside the standard library
    code = ("import sys; before = set(sys.modules); import contract; "
            "base = set(sys.stdlib_module_names) | {'contract'}; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - base))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("settings", [
    JobSettings(),
    JobSettings(instance_type="ml.m5.xlarge", volume_size_gb=100, max_runtime_seconds=7200, processing_mode="streaming",
                max_rows_in_memory=5_000_000),
    JobSettings(processing_mode="memory", max_rows_in_memory=contract.MAX_ROWS_IN_MEMORY_LIMIT),
])
def test_job_settings_round_trip_through_the_environment(settings: JobSettings) -> None:
    assert JobSettings.from_env(settings.to_env()) == settings
    assert settings.job_env().items() <= settings.to_env().items()
    assert (contract.ENV_MAX_ROWS_IN_MEMORY in settings.job_env()) == (settings.max_rows_in_memory is not None)


@pytest.mark.parametrize(("fields", "message"), [
    ({"instance_count": 0}, "INSTANCE_COUNT=0 is outside 1..100"),
    ({"volume_size_gb": 16_385}, "VOLUME_SIZE_GB=16385 is outside 1..16384"),
    ({"max_runtime_seconds": True}, "MAX_RUNTIME_SECONDS=True is not a whole number"),
    ({"instance_type": "t3.medium"}, "INSTANCE_TYPE='t3.medium' must start with 'ml.'"),
    ({"processing_mode": "Memory"}, "PROCESSING_MODE='Memory' must be one of auto, memory, streaming"),
    ({"max_rows_in_memory": 0}, "PROCESSING_MAX_ROWS_IN_MEMORY=0 is outside 1..9223372036854775807"),
])
def test_invalid_job_settings_are_refused_naming_the_variable(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ContractError) as info:
        JobSettings(**fields)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(("raw", "rows"), [(None, None), ("", None), ("  ", None), (" 300 ", 300), (7, 7)])
def test_row_budget_blank_is_unset(raw: object, rows: int | None) -> None:
    assert contract.max_rows_in_memory(raw) == rows


@pytest.mark.parametrize("raw", ["1e6", "1_000", "+5", "1.5", 1.5, True, "lots"])
def test_row_budget_is_a_plain_whole_number(raw: object) -> None:
    with pytest.raises(ContractError, match="is not a whole number"):
        contract.max_rows_in_memory(raw)


def test_job_names_carry_their_dataset_back() -> None:
    name = contract.job_name("dq", "orders", "0123456789abcdef" * 4)
    assert name == "dq-orders-0123456789abcdef" and contract.JOB_NAME_RE.fullmatch(name)
    assert contract.dataset_from_job_name(name, "dq") == "orders"
    long = contract.job_name("abcdefghij", "d" * 32, "f" * 64)  # the longest: 10 + 1 + 32 + 1 + 16 characters
    assert len(long) == 60 <= contract.JOB_NAME_MAX and contract.JOB_NAME_RE.fullmatch(long)
    assert len(contract.job_name("x" * 40, "d" * 32, "f" * 64)) == contract.JOB_NAME_MAX  # truncates the dataset
    assert contract.dataset_from_job_name("other-orders-0123456789abcdef", "dq") == contract.UNKNOWN_DATASET


def test_the_job_and_the_cdk_app_agree_on_quality_thresholds(tmp_path: Path) -> None:
    # GIVEN max_missing_rate_after 1.5: before the contract the job's check let it pass and the CDK app's refused it
    from infra.config import SettingsError, load_dataset_thresholds
    from processing.config import validate
    from processing.errors import ConfigError

    for thresholds, valid in (({"max_missing_rate_after": 1.5}, False), ({"max_missing_rate_after": 0.5}, True),
                              ({"min_rows_out": 5}, True), ({"min_rows_out": -1}, False),
                              ({"max_rejected_rate": "inf"}, False), ({"min_rows_out": "inf"}, False),
                              ({"max_typo": 0.1}, False)):
        configs = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        configs.mkdir()
        (configs / "default.json").write_text(json.dumps({"quality_thresholds": thresholds}))
        try:
            validate({"quality_thresholds": thresholds})
            job = True
        except ConfigError:
            job = False
        try:
            load_dataset_thresholds(configs)
            cdk = True
        except SettingsError as exc:
            assert "quality_thresholds." in str(exc)  # the job's message, naming the key path
            cdk = False
        assert (job, cdk) == (valid, valid), thresholds


def test_every_summary_key_is_a_metric_and_the_job_writes_exactly_them() -> None:
    from processing.gate import SUMMARY_KEYS as GATE_KEYS
    from processing.pipeline import SUMMARY_KEYS

    assert tuple(SUMMARY_KEYS) == tuple(contract.SUMMARY_METRICS)
    assert tuple(GATE_KEYS) == tuple(contract.OPTIONAL_SUMMARY_METRICS)
    names = [name for name, _ in (*contract.SUMMARY_METRICS.values(), *contract.OPTIONAL_SUMMARY_METRICS.values())]
    assert len(names) == len(set(names))
    units = {unit for _, unit in (*contract.SUMMARY_METRICS.values(), *contract.OPTIONAL_SUMMARY_METRICS.values())}
    assert units <= {"Count", "None", "Seconds"}


def _alarm_metric_names(template: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(alarm logical id, namespace, metric name) of every metric each alarm reads, Metrics Insights included."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        if "MetricName" in props:
            found.append((logical_id, props.get("Namespace", ""), props["MetricName"]))
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                found.append((logical_id, metric.get("Namespace", ""), metric["MetricName"]))
            expression = query.get("Expression")
            if isinstance(expression, str) and expression.lstrip().upper().startswith("SELECT"):
                match = re.match(r'\s*SELECT\s+\w+\((\w+)\)\s+FROM\s+SCHEMA\("([^"]+)"', expression)
                assert match, expression
                found.append((logical_id, match.group(2), match.group(1)))
    return found


def test_every_alarm_reads_a_published_metric(synth) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the synthesized stack  THEN each alarm on our namespace reads a metric the metrics Lambda or the trigger
    # publishes (contract.published_metric_names), and every kind of alarm is covered
    metrics = _alarm_metric_names(synth.template_json)
    ours = [(alarm, name) for alarm, namespace, name in metrics if not namespace.startswith("AWS/")]
    assert ours, "no alarm on the pipeline's namespace"
    unknown = [(alarm, name) for alarm, name in ours if name not in contract.published_metric_names()]
    assert unknown == []
    names = {name for _, name in ours}
    assert {contract.KEY_REFUSED, contract.JOB_FAILED, contract.METRICS_UNAVAILABLE} <= names
    assert any("SELECT" in json.dumps(r) for r in synth.template_json["Resources"].values()
               if r["Type"] == "AWS::CloudWatch::Alarm"), "the Metrics Insights alarms are checked too"


def test_the_cdk_app_validates_configs_without_loading_pandas() -> None:
    # the CDK app imports the job's validator (processing/config.py): it must not pull the job's libraries in
    code = ("import sys, infra.config; "
            "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
