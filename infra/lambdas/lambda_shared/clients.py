"""boto3 clients with botocore's standard retry mode."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client(service: str, max_attempts: int) -> Any:
    """A boto3 client for ``service``: standard retries (jittered exponential backoff), ``max_attempts`` retries
    after the first call (botocore's meaning)."""
    make: Any = boto3.client  # one factory for every service (boto3-stubs types it per literal service name)
    return make(service, config=Config(retries={"mode": "standard", "max_attempts": max_attempts}))
