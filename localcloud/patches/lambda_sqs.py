"""Lambda and SQS: functions run without Docker, their DeadLetterConfig kept, SQS event source mappings polled by
:class:`localcloud.cloud.LocalCloud` instead of invoked inline, the asynchronous-invocation queue.

* :func:`patch_lambda_invoke`: Invoke runs the deployed code in a subprocess (:mod:`localcloud.lambdas`).
* :func:`patch_lambda_dead_letter_config`: a function's DeadLetterConfig is kept (moto drops it).
* :func:`patch_sqs_inline_esm`: SendMessage no longer invokes mapped functions inline.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
from typing import Any

from localcloud import lambdas
from localcloud.patches.registry import once, replace

# Lambda invocations requested asynchronously (EventBridge targets): (function arn, payload, target, simulated epoch
# seconds when Lambda accepted the event), drained by LocalCloud.
ASYNC_INVOCATIONS: collections.deque[tuple[str, Any, dict, float]] = collections.deque()
# AWS::Lambda::EventInvokeConfig properties by function name (kept by the CloudFormation model in
# :mod:`localcloud.patches.cfn`, honoured by LocalCloud's async invocations).
EVENT_INVOKE_CONFIGS: dict[str, dict] = {}


# --------------------------------------------------------------------------- Lambda


def patch_lambda_invoke() -> None:
    """Lambda Invoke runs the deployed code with :mod:`localcloud.lambdas` (no Docker)."""
    if not once("lambda_invoke"):
        return
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self, event=None):
        if isinstance(event, (str, bytes)):
            with contextlib.suppress(ValueError):  # not JSON: the function gets the raw payload, as in AWS
                event = json.loads(event or "{}")
        inv = lambdas.run_moto_function(self, event)
        # moto's log store is best effort here: the invocation's logs are kept on `inv` whatever happens
        with contextlib.suppress(Exception):
            self.save_logs(inv.logs)
        if inv.error:
            return json.dumps(inv.error), True, inv.logs
        return json.dumps(inv.result), False, inv.logs

    replace(LambdaFunction, "_invoke_lambda", _invoke_lambda)


def patch_lambda_dead_letter_config() -> None:
    """A function's ``DeadLetterConfig`` (CreateFunction, UpdateFunctionConfiguration, ``AWS::Lambda::Function``) is
    kept as ``fn.dead_letter_config`` and returned by GetFunctionConfiguration; moto 5.2.5 drops it. LocalCloud sends
    failed asynchronous events there (Lambda DG "Capturing records of Lambda asynchronous invocations")."""
    if not once("lambda_dead_letter_config"):
        return
    from moto.awslambda.models import LambdaFunction

    original_init = LambdaFunction.__init__
    original_update = LambdaFunction.update_configuration
    original_get = LambdaFunction.get_configuration
    original_cfn_create = LambdaFunction.create_from_cloudformation_json.__func__
    original_cfn_update = LambdaFunction.update_from_cloudformation_json.__func__

    def __init__(self, account_id, spec, region, version=1):
        original_init(self, account_id, spec, region, version)
        self.dead_letter_config = dict(spec.get("DeadLetterConfig") or {})

    def update_configuration(self, config_updates):
        if "DeadLetterConfig" in config_updates:
            self.dead_letter_config = dict(config_updates.get("DeadLetterConfig") or {})
        return original_update(self, config_updates)

    def get_configuration(self, *args, **kwargs):
        config = original_get(self, *args, **kwargs)
        if getattr(self, "dead_letter_config", None):
            config["DeadLetterConfig"] = dict(self.dead_letter_config)
        return config

    def cfn_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        fn = original_cfn_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        fn.dead_letter_config = dict(cloudformation_json.get("Properties", {}).get("DeadLetterConfig") or {})
        return fn

    def cfn_update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        fn = original_cfn_update(cls, original_resource, new_resource_name, cloudformation_json, account_id,
                                 region_name)
        fn.dead_letter_config = dict(cloudformation_json.get("Properties", {}).get("DeadLetterConfig") or {})
        return fn

    replace(LambdaFunction, "__init__", __init__)
    replace(LambdaFunction, "update_configuration", update_configuration)
    replace(LambdaFunction, "get_configuration", get_configuration)
    replace(LambdaFunction, "create_from_cloudformation_json", cfn_create)
    replace(LambdaFunction, "update_from_cloudformation_json", cfn_update)


def patch_sqs_inline_esm() -> None:
    """SendMessage no longer invokes mapped functions inline; :class:`localcloud.cloud.LocalCloud` polls."""
    if not once("sqs_inline_esm"):
        return
    from moto.sqs.models import Queue

    original = Queue.add_message
    add_lock = threading.Lock()

    def add_message(self, message):
        with add_lock:
            saved = self.lambda_event_source_mappings
            self.lambda_event_source_mappings = {}
            try:
                return original(self, message)
            finally:
                self.lambda_event_source_mappings = saved

    replace(Queue, "add_message", add_message)
