"""The "log group + role + Python Lambda function" trio shared by the trigger and the metrics Lambdas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

import contract

LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14


@dataclass(frozen=True)
class PythonFunction:
    """What :func:`python_function` created: the function, its own role (no managed policies) and log group."""

    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup


def python_function(
    scope: Construct,
    *,
    code: lambda_.Code,
    handler: str,
    role_description: str,
    description: str,
    timeout: Duration,
    memory_size: int,
    environment: dict[str, str],
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    **function_options: Any,
) -> PythonFunction:
    """Create ``LogGroup``, ``Role`` and ``Function`` directly in ``scope`` (so their logical IDs are
    ``<scope>LogGroup...``, ``<scope>Role...``, ``<scope>Function...``, as before this helper existed).

    The role gets only the right to write to the function's own log group; callers add their statements.

    Args:
        scope: the owning construct (e.g. ``Trigger``, ``Metrics``).
        code: the function's code (the shared Lambda asset: infra/lambda_asset.py).
        handler: the handler string (``trigger.handler.handler``).
        role_description / description: of the role and the function.
        timeout / memory_size / environment: of the function.
        log_retention / removal_policy: of the log group.
        function_options: further ``lambda_.Function`` arguments (dead-letter queue, retries, ...).
    """
    log_group = logs.LogGroup(scope, "LogGroup", retention=log_retention, removal_policy=removal_policy)
    role = iam.Role(
        scope,
        "Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=role_description,
    )
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        "Function",
        runtime=LAMBDA_RUNTIME,
        handler=handler,
        code=code,
        role=role,
        timeout=timeout,
        memory_size=memory_size,
        log_group=log_group,
        description=description,
        environment=environment,
        **function_options,
    )
    return PythonFunction(function=function, role=role, log_group=log_group)


def allow_alert_publishing(function: lambda_.Function, role: iam.Role, topic: sns.ITopic, topic_key: kms.IKey, *,
                           what: str) -> None:
    """Let ``function`` publish to the alert ``topic``: its ARN in ``ALERT_TOPIC_ARN``, ``sns:Publish`` on it
    (statement ``Publish<what>``) and, the topic being KMS-encrypted, ``kms:GenerateDataKey`` + ``kms:Decrypt`` on its
    key (``Encrypt<what>``; the key policy delegates to IAM)."""
    function.add_environment(contract.ENV_ALERT_TOPIC_ARN, topic.topic_arn)
    role.add_to_policy(iam.PolicyStatement(sid=f"Publish{what}", actions=["sns:Publish"], resources=[topic.topic_arn]))
    role.add_to_policy(iam.PolicyStatement(sid=f"Encrypt{what}", actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                           resources=[topic_key.key_arn]))
