"""Our patches over moto 5.2.5, applied together: each closes one gap measured in ../shared/EMULATOR.md.

The patches live in :mod:`localcloud.patches`, one module per service (table in localcloud/README.md):
:mod:`~localcloud.patches.cfn` (CloudFormation resource models, change sets), :mod:`~localcloud.patches.lambda_sqs`
(Lambda invoke, DeadLetterConfig, SQS event source mappings, the async-invocation queue),
:mod:`~localcloud.patches.events` (EventBridge targets and their authorization, :func:`put_event`),
:mod:`~localcloud.patches.s3_events` (S3 -> EventBridge events), :mod:`~localcloud.patches.sagemaker` (processing
jobs, quotas), :mod:`~localcloud.patches.cloudwatch` (alarm states and actions), plus the simulated clock
(:func:`localcloud.clock.patch_moto_time`). Every replaced attribute is recorded by
:mod:`localcloud.patches.registry`, so :func:`suspended` gives plain moto back.

:func:`apply_all` applies them once (idempotent). They change moto's *in-process* backends, so the server must run in
this process (:mod:`localcloud.server`). This module is the top of the patches' dependency order: it imports them,
nothing in them imports it. The names below are re-exported for callers (same objects, not copies).
"""

from __future__ import annotations

from localcloud import lambdas
from localcloud.clock import patch_moto_time
from localcloud.patches.cfn import (
    CustomResourcesNotSupported,
    patch_cfn_resource_types,
    patch_change_set_outputs,
    patch_custom_resources,
    patch_s3_bucket_cfn,
    patch_update_parameters,
)
from localcloud.patches.cloudwatch import ALARM_HISTORY, alarm_state_change_event, patch_alarm_states
from localcloud.patches.events import EVENTBRIDGE_FAILED_INVOCATIONS, patch_eventbridge_targets, put_event
from localcloud.patches.lambda_sqs import (
    ASYNC_INVOCATIONS,
    EVENT_INVOKE_CONFIGS,
    patch_lambda_dead_letter_config,
    patch_lambda_invoke,
    patch_sqs_inline_esm,
)
from localcloud.patches.registry import suspended
from localcloud.patches.s3_events import patch_s3_eventbridge, s3_eventbridge_event
from localcloud.patches.sagemaker import (
    ACTIVE_JOB_STATUSES,
    JOB_QUOTAS,
    PROCESSING_JOB_REQUESTS,
    describe_processing_job,
    patch_sagemaker_processing,
    processing_jobs,
    quota_message,
    set_processing_job_status,
)

__all__ = [
    "ACTIVE_JOB_STATUSES", "ALARM_HISTORY", "ASYNC_INVOCATIONS", "EVENTBRIDGE_FAILED_INVOCATIONS",
    "EVENT_INVOKE_CONFIGS", "JOB_QUOTAS", "PROCESSING_JOB_REQUESTS", "CustomResourcesNotSupported",
    "alarm_state_change_event", "apply_all", "describe_processing_job", "processing_jobs", "put_event",
    "quota_message", "s3_eventbridge_event", "set_processing_job_status", "suspended",
]


def apply_all(endpoint: str | None = None) -> None:
    """Apply every patch (idempotent) and point the Lambda runner at ``endpoint``."""
    if endpoint:
        lambdas.configure(endpoint)
    patch_cfn_resource_types()
    patch_s3_bucket_cfn()
    patch_custom_resources()
    patch_change_set_outputs()
    patch_update_parameters()
    patch_lambda_invoke()
    patch_lambda_dead_letter_config()
    patch_sqs_inline_esm()
    patch_moto_time()
    patch_eventbridge_targets()
    patch_s3_eventbridge()
    patch_sagemaker_processing()
    patch_alarm_states()
