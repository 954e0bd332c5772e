"""Helpers of the infra tests: fixture files, template queries."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT_FOR_PATH = Path(__file__).resolve().parents[2]
if str(ROOT_FOR_PATH) not in sys.path:
    sys.path.insert(0, str(ROOT_FOR_PATH))

from aws_cdk.assertions import Template  # noqa: E402

from infra.config import Settings  # noqa: E402
from infra.stack import DataQualityStack, SourcePaths  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "infra" / "lambdas"

#: Thresholds of the fixture configs (distinct values, so assertions can tell where a threshold came from).
DEFAULT_THRESHOLDS = {
    "max_missing_rate_after": 0.02,
    "max_rejected_rate": 0.1,
    "max_malformed_json_rate": 0.05,
    "max_duplicate_rate": 0.15,
    "min_rows_out": 1,
}
ORDERS_THRESHOLDS = {"max_missing_rate_after": 0.01, "max_rejected_rate": 0.25, "min_rows_out": 100}
#: drift.psi_alarm of the fixture configs: default.json has no drift section (-> the job's default 0.25).
ORDERS_PSI_ALARM = 0.4
#: rules of the orders fixture: one marked for alarming (one RuleViolations alarm), one not
ORDERS_RULES = [{"name": "order_id.unique", "type": "unique", "columns": ["order_id"], "alarm": True},
                {"name": "enough", "type": "row_count", "min": 1, "action": "warn"}]
DEFAULT_PSI_ALARM = 0.25


def write_configs(directory: Path) -> Path:
    """Fixture dataset configs: default.json and orders.json (orders overrides some thresholds)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.json").write_text(json.dumps({"quality_thresholds": DEFAULT_THRESHOLDS}))
    (directory / "orders.json").write_text(json.dumps(
        {"quality_thresholds": ORDERS_THRESHOLDS, "drift": {"psi_alarm": ORDERS_PSI_ALARM, "psi_warn": 0.2},
         "columns": {"order_id": "integer"}, "rules": ORDERS_RULES}))
    return directory


def write_processing_package(directory: Path) -> Path:
    """A tiny stand-in for processing/ with files the bundle must leave out (tests, caches) and requirements.txt."""
    (directory / "tests").mkdir(parents=True, exist_ok=True)
    (directory / "__pycache__").mkdir(exist_ok=True)
    (directory / "__init__.py").write_text('"""Fixture processing package."""\n')
    (directory / "__main__.py").write_text("import sys\nprint('bundle-ran', sys.argv[1:])\n")
    (directory / "transform.py").write_text("def f():\n    return 1\n")
    (directory / "requirements.txt").write_text("pandas\n")
    (directory / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    (directory / "__pycache__" / "transform.cpython-311.pyc").write_bytes(b"\0cache")
    (directory / ".hidden").write_text("x")
    write_configs(directory / "configs")
    return directory


def cdk_json_context() -> dict[str, Any]:
    """The context of cdk.json (feature flags and documented defaults)."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


def source_paths(root: Path) -> SourcePaths:
    return SourcePaths(
        processing_dir=write_processing_package(root / "processing"),
        lambda_staging_dir=root / "lambda-asset",
        bundle_staging_dir=root / "bundle",
    )


@dataclass
class Synth:
    """The session's synthesized stack."""

    settings: Settings
    stack: DataQualityStack
    template: Template
    template_json: dict[str, Any]
    nag_error: Exception | None
    outdir: Path


def resources(template_json: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical ID -> resource of one type."""
    return {k: v for k, v in template_json["Resources"].items() if v["Type"] == resource_type}


def only(template_json: dict[str, Any], resource_type: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """The single resource of a type whose logical ID starts with ``prefix``."""
    found = [(k, v) for k, v in resources(template_json, resource_type).items() if k.startswith(prefix)]
    assert len(found) == 1, f"expected one {resource_type} starting with {prefix}, got {[k for k, _ in found]}"
    return found[0]


def statements(template_json: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    """All identity-policy statements attached to the role whose logical ID starts with ``role_prefix``."""
    role_id, role = only(template_json, "AWS::IAM::Role", role_prefix)
    result: list[dict[str, Any]] = []
    for policy in role["Properties"].get("Policies", []):
        result += policy["PolicyDocument"]["Statement"]
    for policy in resources(template_json, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            result += policy["Properties"]["PolicyDocument"]["Statement"]
    return result


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
