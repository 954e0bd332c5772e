"""Helpers shared by the Lambda handler tests (a uniquely named module: test dirs are not packages)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

LAMBDAS_DIR = Path(__file__).resolve().parents[2] / "infra" / "lambdas"
REGION = "eu-west-1"
ACCOUNT = "123456789012"


def load_handler(name: str) -> ModuleType:
    """Import ``infra/lambdas/<name>/handler.py`` as module ``lambda_<name>_handler`` (handler dirs are not packages)."""
    module_name = f"lambda_{name}_handler"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LAMBDAS_DIR / name / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
