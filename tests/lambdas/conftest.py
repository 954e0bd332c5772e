"""Fixtures for the Lambda handler tests: a LambdaContext, offline AWS settings, the decision log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from lambda_helpers import REGION, LambdaContext


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials or config from the machine; nothing may reach AWS."""
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class DecisionLog:
    """Collects the JSON decision lines a handler logs."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def decisions(self) -> list[str]:
        return [r["decision"] for r in self.records]


class _Collector(logging.Handler):
    def __init__(self, log: DecisionLog) -> None:
        super().__init__(logging.DEBUG)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.records.append(json.loads(record.getMessage()))


@pytest.fixture
def decision_log() -> Iterator[DecisionLog]:
    log = DecisionLog()
    collector = _Collector(log)
    loggers = [logging.getLogger("dq.trigger"), logging.getLogger("dq.metrics")]
    for logger in loggers:
        logger.addHandler(collector)
    yield log
    for logger in loggers:
        logger.removeHandler(collector)
