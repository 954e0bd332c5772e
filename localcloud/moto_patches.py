"""Our patches over moto 5.2.5: each closes one gap measured in ../shared/EMULATOR.md.

Every patch is a small function named ``patch_*`` with its own test in
``tests/localcloud/test_core_*.py``; :func:`apply_all` applies them once
(idempotent). They change moto's *in-process* backends, so the server must run
in this process (:mod:`localcloud.server`). Every replaced attribute goes through :func:`_replace`, so
:func:`suspended` can give plain moto back (e.g. to in-process ``mock_aws`` unit tests that run in the same pytest
session as a LocalCloud).

| gap in moto 5.2.5 | patch |
|---|---|
| AWS::CloudWatch::Alarm, S3::BucketPolicy, SNS::TopicPolicy, SQS::QueuePolicy, Lambda::EventInvokeConfig, CDK::Metadata skipped by CloudFormation; bucket policies with Conditions deny everything | :func:`patch_cfn_resource_types` |
| S3::Bucket VersioningConfiguration / NotificationConfiguration (EventBridge) ignored | :func:`patch_s3_bucket_cfn` |
| custom resources (Custom::*) need Docker and a callback route: **not supported**, fail the deploy clearly | :func:`patch_custom_resources` |
| stack outputs empty after a change set; failed change set = HTTP 500; missing change set = ValidationError (update deploy fails) | :func:`patch_change_set_outputs` |
| second deploy: SSM-typed parameter re-resolved from its value | :func:`patch_update_parameters` |
| Lambda invoke needs Docker | :func:`patch_lambda_invoke` (subprocess runner, :mod:`localcloud.lambdas`) |
| a function's DeadLetterConfig dropped | :func:`patch_lambda_dead_letter_config` |
| SQS / CloudWatch / SageMaker read the wall clock | :func:`localcloud.clock.patch_moto_time` (the simulated clock) |
| SQS event source mappings invoked inline at SendMessage | :func:`patch_sqs_inline_esm` (the poller in :mod:`localcloud.cloud` does it) |
| EventBridge -> Lambda / SNS targets raise NotImplementedError | :func:`patch_eventbridge_targets` |
| S3 -> EventBridge events: wrong shape (time, etag, fixed sequencer) | :func:`patch_s3_eventbridge` |
| SageMaker processing jobs: duplicate names accepted, Completed at once, Environment dropped, no instance quota | :func:`patch_sagemaker_processing` (quota: ``JOB_QUOTAS``) |
| alarms start OK; state changes never reach SNS (nor EventBridge); alarm actions not authorized | :func:`patch_alarm_states` (topic + key policy evaluated for cloudwatch.amazonaws.com, :mod:`localcloud.iam_eval`; outcome in :data:`ALARM_HISTORY`) |
| EventBridge -> SQS / SNS targets not authorized | :func:`patch_eventbridge_targets` (queue/topic + key policy for events.amazonaws.com; refusals in :data:`EVENTBRIDGE_FAILED_INVOCATIONS`, AWS/Events FailedInvocations, the target's DLQ) |
"""

from __future__ import annotations

import collections
import contextlib
import copy
import inspect
import itertools
import json
import logging
import random
import string
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("localcloud")

_applied: set[str] = set()
_tls = threading.local()
_lock = threading.RLock()

# Lambda invocations requested asynchronously (EventBridge targets): (function arn, payload, target, simulated epoch
# seconds when Lambda accepted the event), drained by LocalCloud.
ASYNC_INVOCATIONS: "collections.deque[tuple[str, Any, dict, float]]" = collections.deque()
# The CreateProcessingJob requests as sent, by job name.
PROCESSING_JOB_REQUESTS: dict[str, dict] = {}
# Processing-instance quotas, instance type -> instances ("ml.<type> for processing job usage"); a type not listed is
# unlimited. Set by LocalCloud(job_quota=...); CreateProcessingJob beyond it raises ResourceLimitExceeded.
JOB_QUOTAS: dict[str, int] = {}
# Statuses that hold processing instances (count against the quota).
ACTIVE_JOB_STATUSES = ("InProgress", "Stopping")
# Alarm history items of kind "Action" (DescribeAlarmHistory shape; moto has no alarm history API): one per alarm
# action CloudWatch executed or failed to execute (e.g. "Failed to execute action arn:aws:sns:..." when the topic or
# key policy does not let cloudwatch.amazonaws.com publish).
ALARM_HISTORY: list[dict] = []
# EventBridge target deliveries refused by the destination's resource or key policy: (rule ARN, target ARN, reason).
# Each also adds a datapoint to AWS/Events FailedInvocations (dimension RuleName), as EventBridge does.
EVENTBRIDGE_FAILED_INVOCATIONS: list[tuple[str, str, str]] = []


# (owner, attribute, original as stored on the owner, replacement) of every attribute we replaced
_REPLACED: list[tuple[Any, str, Any, Any]] = []


def _replace(owner: Any, name: str, new: Any) -> None:
    """Set ``owner.name = new`` (a classmethod stays a classmethod) and remember the original."""
    original = inspect.getattr_static(owner, name)
    if isinstance(original, classmethod) and not isinstance(new, classmethod):
        new = classmethod(new)
    setattr(owner, name, new)
    _REPLACED.append((owner, name, original, new))


@contextlib.contextmanager
def suspended():
    """Plain moto 5.2.5 inside the block: every replaced attribute is restored, then re-applied on exit.

    For in-process ``mock_aws`` tests that assert moto's own behaviour in a session that also ran a LocalCloud
    (patches are process-wide). Not for use while a LocalCloud is serving. The added CloudFormation resource
    models stay registered (they only add types plain moto would skip).
    """
    with _lock:
        for owner, name, original, _new in reversed(_REPLACED):
            setattr(owner, name, original)
    try:
        yield
    finally:
        with _lock:
            for owner, name, _original, new in _REPLACED:
                setattr(owner, name, new)


def _once(name: str) -> bool:
    with _lock:
        if name in _applied:
            return False
        _applied.add(name)
        return True


def _clock_naive() -> datetime:
    from localcloud.clock import CLOCK

    return CLOCK.utcnow_naive()


def _clock_aware() -> datetime:
    from localcloud.clock import CLOCK

    return CLOCK.datetime()


def _now_iso() -> str:
    from localcloud.clock import CLOCK

    return CLOCK.iso()


def apply_all(endpoint: str | None = None) -> None:
    """Apply every patch (idempotent) and point the Lambda runner at ``endpoint``."""
    if endpoint:
        from localcloud import lambdas

        lambdas.configure(endpoint)
    patch_cfn_resource_types()
    patch_s3_bucket_cfn()
    patch_custom_resources()
    patch_change_set_outputs()
    patch_update_parameters()
    patch_lambda_invoke()
    patch_lambda_dead_letter_config()
    patch_sqs_inline_esm()
    from localcloud.clock import patch_moto_time

    patch_moto_time()
    patch_eventbridge_targets()
    patch_s3_eventbridge()
    patch_sagemaker_processing()
    patch_alarm_states()


# --------------------------------------------------------------------------- CloudFormation types


def _cfn_models():
    from moto.core.common_models import CloudFormationModel

    def _int(v, default=None):
        return default if v is None else int(v)

    class CfnCloudWatchAlarm(CloudFormationModel):
        """AWS::CloudWatch::Alarm via moto's cloudwatch backend (Ref = name, GetAtt Arn)."""

        def __init__(self, name: str, arn: str):
            self.name = name
            self.arn = arn

        @staticmethod
        def cloudformation_name_type() -> str:
            return "AlarmName"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @property
        def physical_resource_id(self) -> str:
            return self.name

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr in ("Arn",)

        def get_cfn_attribute(self, attribute_name: str) -> Any:
            if attribute_name == "Arn":
                return self.arn
            from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

            raise UnformattedGetAttTemplateException()

        @staticmethod
        def _put(name: str, props: dict, account_id: str, region_name: str):
            from moto.cloudwatch.models import cloudwatch_backends
            from moto.cloudwatch.responses import CloudWatchResponse  # noqa: F401 (types)

            backend = cloudwatch_backends[account_id][region_name]
            queries = None
            if props.get("Metrics"):
                from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

                queries = []
                for m in props["Metrics"]:
                    stat = None
                    ms = m.get("MetricStat")
                    if ms:
                        met = ms.get("Metric", {})
                        stat = MetricStat(
                            metric=Metric(
                                metric_name=met.get("MetricName"),
                                namespace=met.get("Namespace"),
                                dimensions=[Dimension(d["Name"], d["Value"]) for d in met.get("Dimensions", [])],
                            ),
                            period=ms.get("Period"),
                            stat=ms.get("Stat"),
                            unit=ms.get("Unit"),
                        )
                    queries.append(
                        MetricDataQuery(
                            query_id=m.get("Id"),
                            label=m.get("Label"),
                            period=m.get("Period"),
                            return_data=m.get("ReturnData"),
                            expression=m.get("Expression"),
                            metric_stat=stat,
                        )
                    )
            threshold = props.get("Threshold")
            alarm = backend.put_metric_alarm(
                name=name,
                namespace=props.get("Namespace"),
                metric_name=props.get("MetricName"),
                metric_data_queries=queries,
                comparison_operator=props.get("ComparisonOperator"),
                evaluation_periods=_int(props.get("EvaluationPeriods")),
                datapoints_to_alarm=_int(props.get("DatapointsToAlarm")),
                period=_int(props.get("Period")),
                threshold=None if threshold is None else float(threshold),
                statistic=props.get("Statistic"),
                extended_statistic=props.get("ExtendedStatistic"),
                description=props.get("AlarmDescription"),
                dimensions=props.get("Dimensions", []),
                alarm_actions=props.get("AlarmActions", []),
                ok_actions=props.get("OKActions", []),
                insufficient_data_actions=props.get("InsufficientDataActions", []),
                unit=props.get("Unit"),
                actions_enabled=str(props.get("ActionsEnabled", True)).lower() != "false",
                treat_missing_data=props.get("TreatMissingData"),
                evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
                threshold_metric_id=props.get("ThresholdMetricId"),
                tags=props.get("Tags"),
            )
            return CfnCloudWatchAlarm(name, alarm.alarm_arn)

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            props = cloudformation_json.get("Properties", {})
            return cls._put(props.get("AlarmName") or resource_name, props, account_id, region_name)

        @classmethod
        def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
            props = cloudformation_json.get("Properties", {})
            name = props.get("AlarmName") or original_resource.name
            if name != original_resource.name:
                original_resource.delete(account_id, region_name)
            return cls._put(name, props, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            from moto.cloudwatch.models import cloudwatch_backends

            cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

        def delete(self, account_id: str, region_name: str) -> None:
            from moto.cloudwatch.models import cloudwatch_backends

            cloudwatch_backends[account_id][region_name].delete_alarms([self.name])

        def is_created(self) -> bool:
            return True

    class _PolicyModel:
        """Base for resource policies: stored on the target; moto enforces none of them.

        (Concrete classes subclass CloudFormationModel *directly*: moto finds models
        with ``CloudFormationModel.__subclasses__()``.)"""

        TYPE = "?"

        def __init__(self, physical_id: str, props: dict):
            self.physical_id = physical_id
            self.props = props

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @property
        def physical_resource_id(self) -> str:
            return self.physical_id

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "Id"

        def get_cfn_attribute(self, attribute_name: str) -> Any:
            return self.physical_id

        @classmethod
        def _apply(cls, props, account_id, region_name, remove=False):  # pragma: no cover - overridden
            raise NotImplementedError

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            props = cloudformation_json.get("Properties", {})
            cls._apply(props, account_id, region_name)
            return cls(resource_name, props)

        @classmethod
        def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
            props = cloudformation_json.get("Properties", {})
            cls._apply(props, account_id, region_name)
            return cls(original_resource.physical_id, props)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            cls._apply(cloudformation_json.get("Properties", {}), account_id, region_name, remove=True)

        def delete(self, account_id: str, region_name: str) -> None:
            try:
                self._apply(self.props, account_id, region_name, remove=True)
            except Exception:  # target already gone
                pass

        def is_created(self) -> bool:
            return True

    class CfnS3BucketPolicy(_PolicyModel, CloudFormationModel):
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::S3::BucketPolicy"

        @classmethod
        def _apply(cls, props, account_id, region_name, remove=False):
            from moto.s3.models import s3_backends

            backend = s3_backends[account_id]["aws"]
            if remove:
                backend.delete_bucket_policy(props["Bucket"])
            else:
                backend.put_bucket_policy(props["Bucket"], json.dumps(props["PolicyDocument"]).encode())

    class CfnSnsTopicPolicy(_PolicyModel, CloudFormationModel):
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SNS::TopicPolicy"

        @classmethod
        def _apply(cls, props, account_id, region_name, remove=False):
            from moto.sns.models import sns_backends

            backend = sns_backends[account_id][region_name]
            for arn in props.get("Topics", []):
                topic = backend.topics.get(arn)
                if topic is None:
                    if remove:
                        continue
                    raise ValueError(f"AWS::SNS::TopicPolicy: topic {arn} does not exist")
                # the ``policy`` property (moto's set_topic_attribute would set an unused ``Policy`` attribute);
                # removing the resource gives the topic SNS's default policy back
                topic.policy = (json.dumps(topic._create_default_topic_policy(region_name, account_id, topic.name))
                                if remove else json.dumps(props["PolicyDocument"]))

    class CfnSqsQueuePolicy(_PolicyModel, CloudFormationModel):
        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::SQS::QueuePolicy"

        @classmethod
        def _apply(cls, props, account_id, region_name, remove=False):
            from moto.sqs.models import sqs_backends

            backend = sqs_backends[account_id][region_name]
            for url in props.get("Queues", []):
                name = url.rstrip("/").split("/")[-1]
                backend.set_queue_attributes(name, {"Policy": "" if remove else json.dumps(props["PolicyDocument"])})

    class CfnLambdaEventInvokeConfig(CloudFormationModel):
        """AWS::Lambda::EventInvokeConfig: kept in EVENT_INVOKE_CONFIGS (function name -> properties) and
        honoured by LocalCloud's async invocations (MaximumRetryAttempts, OnFailure SQS destination)."""

        def __init__(self, function_name: str, props: dict):
            self.function_name = function_name
            self.props = props

        @staticmethod
        def cloudformation_name_type() -> str:
            return ""

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Lambda::EventInvokeConfig"

        @property
        def physical_resource_id(self) -> str:
            return self.function_name

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            props = cloudformation_json.get("Properties", {})
            name = props["FunctionName"].split(":")[-1] if ":function:" not in props["FunctionName"] \
                else props["FunctionName"].split(":function:")[1].split(":")[0]
            EVENT_INVOKE_CONFIGS[name] = props
            return cls(name, props)

        @classmethod
        def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
            EVENT_INVOKE_CONFIGS.pop(original_resource.function_name, None)
            return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            EVENT_INVOKE_CONFIGS.pop(resource_name, None)

        def delete(self, account_id: str, region_name: str) -> None:
            EVENT_INVOKE_CONFIGS.pop(self.function_name, None)

        def is_created(self) -> bool:
            return True

    return [CfnCloudWatchAlarm, CfnS3BucketPolicy, CfnSnsTopicPolicy, CfnSqsQueuePolicy, CfnLambdaEventInvokeConfig]


EVENT_INVOKE_CONFIGS: dict[str, dict] = {}


CFN_MODELS: list = []


def patch_cfn_resource_types() -> None:
    """Register CloudFormation models for AWS::CloudWatch::Alarm and the three resource-policy types."""
    if not _once("cfn_types"):
        return
    from moto.cloudformation import parsing

    CFN_MODELS.extend(_cfn_models())
    for fn in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        fn.cache_clear()
    # CDK's stack metadata resource: nothing to create
    if "AWS::CDK::Metadata" not in parsing.NULL_MODELS:
        parsing.NULL_MODELS.append("AWS::CDK::Metadata")
    _patch_bucket_policy_conditions()


def _patch_bucket_policy_conditions() -> None:
    """moto evaluates bucket policies *ignoring* Condition blocks, so the CDK's TLS-only statement
    (Deny s3:* if aws:SecureTransport is false) denies every request. We evaluate only the statements
    without a Condition (the emulator speaks plain HTTP on loopback; see README: no IAM enforcement)."""
    from moto.s3.models import FakeBucket

    def get_permission(self, action: str, resource: str):
        from moto.iam.access_control import IAMPolicy, PermissionResult

        if self.policy is None:
            return PermissionResult.NEUTRAL
        doc = json.loads(self.policy.decode() if isinstance(self.policy, bytes) else self.policy)
        statements = doc.get("Statement") or []
        if isinstance(statements, dict):
            statements = [statements]
        statements = [st for st in statements if "Condition" not in st]
        if not statements:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps(dict(doc, Statement=statements))).is_action_permitted(action, resource)

    _replace(FakeBucket, "get_permission", get_permission)


# --------------------------------------------------------------------------- S3::Bucket properties


def _cfn_notification_config(props: dict) -> dict | None:
    """CloudFormation NotificationConfiguration -> the dict moto's PutBucketNotificationConfiguration takes."""
    cfg = props.get("NotificationConfiguration")
    if not cfg:
        return None
    out: dict[str, Any] = {}
    if str((cfg.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled", False)).lower() == "true":
        out["EventBridgeConfiguration"] = {"EventBridgeEnabled": "true"}

    def conv(items, arn_key_cfn, arn_key_moto):
        res = []
        for item in items or []:
            entry = {arn_key_moto: item[arn_key_cfn], "Event": [item["Event"]]}
            rules = ((item.get("Filter") or {}).get("S3Key") or {}).get("Rules")
            if rules:
                entry["Filter"] = {"S3Key": {"FilterRule": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
            res.append(entry)
        return res

    if cfg.get("QueueConfigurations"):
        out["QueueConfiguration"] = conv(cfg["QueueConfigurations"], "Queue", "Queue")
    if cfg.get("TopicConfigurations"):
        out["TopicConfiguration"] = conv(cfg["TopicConfigurations"], "Topic", "Topic")
    if cfg.get("LambdaConfigurations"):
        out["CloudFunctionConfiguration"] = conv(cfg["LambdaConfigurations"], "Function", "CloudFunction")
    return out


def patch_s3_bucket_cfn() -> None:
    """AWS::S3::Bucket: also apply VersioningConfiguration and NotificationConfiguration
    (incl. EventBridgeConfiguration), which moto's CloudFormation model ignores."""
    if not _once("s3_bucket_cfn"):
        return
    from moto.s3.models import FakeBucket, s3_backends

    orig_create = FakeBucket.create_from_cloudformation_json.__func__
    orig_update = FakeBucket.update_from_cloudformation_json.__func__  # moto's, via the classmethod

    def _apply(bucket, props, account_id):
        backend = s3_backends[account_id]["aws"]
        status = (props.get("VersioningConfiguration") or {}).get("Status")
        if status:
            backend.put_bucket_versioning(bucket.name, status)
        notif = _cfn_notification_config(props)
        if notif is not None:
            bucket.set_notification_configuration(notif)

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        bucket = orig_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        _apply(bucket, cloudformation_json.get("Properties", {}), account_id)
        return bucket

    def update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        bucket = orig_update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)
        _apply(bucket, cloudformation_json.get("Properties", {}), account_id)
        return bucket

    _replace(FakeBucket, "create_from_cloudformation_json", create)
    _replace(FakeBucket, "update_from_cloudformation_json", update)


# --------------------------------------------------------------------------- custom resources


class CustomResourcesNotSupported(Exception):
    pass


def patch_custom_resources() -> None:
    """``Custom::*`` resources are not supported: creating one fails the stack with a clear reason.

    Plain moto would invoke the provider in a background thread (Docker) and wait for a callback on a route the
    in-process server does not answer, leaving the resource half-made. Our stack has none (a template test
    enforces it; the bucket uses native ``EventBridgeConfiguration``), so we refuse them instead of emulating
    the provider protocol (see README). The failure surfaces as ROLLBACK_COMPLETE with this message
    (:func:`patch_change_set_outputs`), i.e. `cdk deploy` fails.
    """
    if not _once("custom_resources"):
        return
    from moto.cloudformation.custom_model import CustomModel

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        raise CustomResourcesNotSupported(
            f"{kwargs.get('LogicalId', resource_name)} ({kwargs.get('ResourceType', 'Custom::*')}): custom resources "
            "are not supported by localcloud (see localcloud/README.md)")

    _replace(CustomModel, "create_from_cloudformation_json", create)


# --------------------------------------------------------------------------- change sets / updates


def patch_change_set_outputs() -> None:
    """Change sets as the CDK CLI needs them for a first deploy *and* an update.

    * After ExecuteChangeSet: keep the template on the stack and rebuild its outputs (moto: empty);
      then delete the stack's change sets, as CloudFormation does after an execution.
    * A change set that fails to apply leaves the stack in ROLLBACK_COMPLETE / UPDATE_ROLLBACK_COMPLETE with the
      error as status reason (moto: HTTP 500).
    * DescribeChangeSet of a missing change set: ``ChangeSetNotFound`` (moto: ValidationError "Stack with id ...
      does not exist", which the CLI's wait-for-deletion treats as fatal); DeleteChangeSet of a missing one
      succeeds (moto: HTTP 500). Both are what an update deploy runs into first.
    """
    if not _once("change_set_outputs"):
        return
    from moto.cloudformation.exceptions import CloudFormationError
    from moto.cloudformation.models import CloudFormationBackend

    class ChangeSetNotFound(CloudFormationError):
        code = "ChangeSetNotFoundException"  # the shape: query code ChangeSetNotFound, HTTP 404

    def find(self, change_set_name):
        if change_set_name in self.change_sets:  # an ARN
            return self.change_sets[change_set_name]
        return next((cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name), None)

    def describe_change_set(self, change_set_name):
        change_set = find(self, change_set_name)
        if change_set is None:
            raise ChangeSetNotFound(f"ChangeSet [{change_set_name}] does not exist")
        return change_set

    def delete_change_set(self, change_set_name):
        change_set = find(self, change_set_name)
        if change_set is not None:
            self.change_sets.pop(change_set.change_set_id, None)

    original = CloudFormationBackend.execute_change_set

    def execute_change_set(self, change_set_name, stack_name=None):
        change_set = describe_change_set(self, change_set_name)
        stack = self.stacks[change_set.stack_id]
        try:
            original(self, change_set.change_set_id, stack_name)
        except Exception as exc:  # noqa: BLE001 - reported like CloudFormation does
            log.exception("change set %s failed", change_set_name)
            failed = "ROLLBACK_COMPLETE" if change_set.change_set_type == "CREATE" else "UPDATE_ROLLBACK_COMPLETE"
            stack._add_stack_event(failed, resource_status_reason=f"localcloud: {type(exc).__name__}: {exc}")
            stack.status = failed
            stack.status_reason = str(exc)
            change_set.execution_status = "EXECUTE_FAILED"
            return
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.parameters = dict(change_set.parameters or stack.parameters)
        stack.output_map = stack._create_output_map()
        for export in stack.exports:
            self.exports[export.name] = export
        for cs_id in [i for i, cs in self.change_sets.items() if cs.stack_id == change_set.stack_id]:
            del self.change_sets[cs_id]

    _replace(CloudFormationBackend, "describe_change_set", describe_change_set)
    _replace(CloudFormationBackend, "delete_change_set", delete_change_set)
    _replace(CloudFormationBackend, "execute_change_set", execute_change_set)


def patch_update_parameters() -> None:
    """On update, a parameter of type ``AWS::SSM::Parameter::Value<...>`` is re-resolved from SSM.

    moto stores the *resolved* value and on the next change set parses it again as
    an SSM parameter name (the CDK's BootstrapVersion parameter fails). We keep the
    SSM parameter *name* as the parameter's input value.
    """
    if not _once("update_parameters"):
        return
    from moto.cloudformation.parsing import ResourceMap

    original = ResourceMap.load_parameters

    def load_parameters(self):
        params = self._template.get("Parameters", {}) if self._template else {}
        for key, spec in params.items():
            if str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
                value = self.input_parameters.get(key)
                if value is not None and not str(value).startswith("/"):
                    # a resolved value sneaked in (UsePreviousValue): use the default name again
                    if "Default" in spec:
                        self.input_parameters[key] = spec["Default"]
        return original(self)

    _replace(ResourceMap, "load_parameters", load_parameters)


# --------------------------------------------------------------------------- Lambda


def patch_lambda_invoke() -> None:
    """Lambda Invoke runs the deployed code with :mod:`localcloud.lambdas` (no Docker)."""
    if not _once("lambda_invoke"):
        return
    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self, event=None):
        from localcloud import lambdas

        if isinstance(event, (str, bytes)):
            try:
                event = json.loads(event or "{}")
            except ValueError:
                pass
        inv = lambdas.run_moto_function(self, event)
        try:
            self.save_logs(inv.logs)
        except Exception:
            pass
        if inv.error:
            return json.dumps(inv.error), True, inv.logs
        return json.dumps(inv.result), False, inv.logs

    _replace(LambdaFunction, "_invoke_lambda", _invoke_lambda)


def patch_lambda_dead_letter_config() -> None:
    """A function's ``DeadLetterConfig`` (CreateFunction, UpdateFunctionConfiguration, ``AWS::Lambda::Function``) is
    kept as ``fn.dead_letter_config`` and returned by GetFunctionConfiguration; moto 5.2.5 drops it. LocalCloud sends
    failed asynchronous events there (Lambda DG "Capturing records of Lambda asynchronous invocations")."""
    if not _once("lambda_dead_letter_config"):
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

    _replace(LambdaFunction, "__init__", __init__)
    _replace(LambdaFunction, "update_configuration", update_configuration)
    _replace(LambdaFunction, "get_configuration", get_configuration)
    _replace(LambdaFunction, "create_from_cloudformation_json", cfn_create)
    _replace(LambdaFunction, "update_from_cloudformation_json", cfn_update)


def patch_sqs_inline_esm() -> None:
    """SendMessage no longer invokes mapped functions inline; :class:`localcloud.cloud.LocalCloud` polls."""
    if not _once("sqs_inline_esm"):
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

    _replace(Queue, "add_message", add_message)


# --------------------------------------------------------------------------- EventBridge


def _event_time(value: Any) -> str:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value or _now_iso()


def patch_eventbridge_targets() -> None:
    """Rules deliver to Lambda (queued, async invoke semantics) and SNS targets; disabled rules deliver nothing.

    ``time`` is always ISO-8601 (moto passes floats around internally). Constant
    ``Input`` and ``InputPath`` are honoured as well as moto's InputTransformer.
    """
    if not _once("eventbridge_targets"):
        return
    from moto.events.models import EventTemplateParser, Rule
    from moto.utilities.arns import parse_arn

    original = Rule.send_to_targets

    def send_to_targets(self, original_event, transform_input=True):
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        if not self.event_pattern.matches_event(original_event):
            return
        event0 = dict(original_event)
        event0["time"] = _event_time(event0.get("time"))
        ingestion = event0.pop("ingestion-time", None) or datetime.now(timezone.utc).timestamp()
        others = []
        for target in self.targets:
            arn = parse_arn(target["Arn"])
            if arn.service not in ("lambda", "sns", "sqs"):
                others.append(target)
                continue
            if "Input" in target:
                payload: Any = json.loads(target["Input"])
            elif "InputPath" in target:
                payload = event0
                for part in target["InputPath"].lstrip("$").strip(".").split("."):
                    if part:
                        payload = payload.get(part) if isinstance(payload, dict) else None
            elif transform_input and target.get("InputTransformer"):
                tr = target["InputTransformer"]
                payload = EventTemplateParser.parse(
                    input_template=tr.get("InputTemplate"),
                    input_paths_map=tr.get("InputPathsMap", {}),
                    event=dict(event0, **{"ingestion-time": ingestion}),
                )
            else:
                payload = copy.deepcopy(event0)
            body = payload if isinstance(payload, str) else json.dumps(payload)
            if arn.service in ("sqs", "sns") and not _eventbridge_may_deliver(self, target, arn, event0):
                continue
            if arn.service == "lambda":
                from localcloud.clock import CLOCK

                ASYNC_INVOCATIONS.append((target["Arn"], payload, target, CLOCK.now()))
            elif arn.service == "sqs":
                from moto.sqs.models import sqs_backends

                group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
                sqs_backends[arn.account][arn.region].send_message(
                    queue_name=arn.resource_id, message_body=body, group_id=group_id
                )
            else:
                from moto.sns.models import sns_backends

                sns_backends[arn.account][arn.region].publish(message=body, arn=target["Arn"])
        if others:  # logs, archives, buses, API destinations: moto's own code (it wants epoch floats)
            legacy = dict(original_event)
            if isinstance(legacy.get("time"), str):
                legacy["time"] = datetime.strptime(legacy["time"], "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=timezone.utc).timestamp()
            legacy.setdefault("ingestion-time", datetime.now(timezone.utc).timestamp())
            saved = self.targets
            self.targets = others
            try:
                original(self, legacy, transform_input)
            finally:
                self.targets = saved

    _replace(Rule, "send_to_targets", send_to_targets)


def _queue_or_topic_policy(arn, target_arn: str) -> tuple[str | None, str | None, str]:
    """(resource policy, KMS key id, action) of the SQS queue / SNS topic `arn` names (None, None when missing)."""
    if arn.service == "sqs":
        from moto.sqs.models import sqs_backends

        queue = sqs_backends[arn.account][arn.region].queues.get(arn.resource_id)
        policy, key = (queue.policy, queue.kms_master_key_id) if queue is not None else (None, None)
        action = "sqs:SendMessage"
    else:
        from moto.sns.models import sns_backends

        topic = sns_backends[arn.account][arn.region].topics.get(target_arn)
        policy, key = (topic.policy, topic.kms_master_key_id) if topic is not None else (None, None)
        action = "sns:Publish"
    return policy, key or None, action


def _events_authorized(rule, target_arn: str):
    from moto.utilities.arns import parse_arn

    from localcloud.iam_eval import authorize_delivery

    arn = parse_arn(target_arn)
    policy, key, action = _queue_or_topic_policy(arn, target_arn)
    return authorize_delivery(account=arn.account, region=arn.region, service="events.amazonaws.com", action=action,
                              resource_arn=target_arn, resource_policy=policy, kms_key_id=key, source_arn=rule.arn,
                              source_account=rule.account_id)


def _eventbridge_may_deliver(rule, target: dict, arn, event: dict) -> bool:
    """Does the target queue's / topic's resource policy and KMS key policy let events.amazonaws.com deliver for this
    rule (aws:SourceArn = the rule's ARN)? If not, record a FailedInvocations datapoint and the refusal, and send the
    event to the target's dead-letter queue if it has one (and that queue lets EventBridge in), as AWS does
    (EventBridge User Guide: "Monitoring Amazon EventBridge" for FailedInvocations / InvocationsSentToDlq; "Using
    resource-based policies for Amazon EventBridge": SQS and SNS targets need a resource policy; "Using dead-letter
    queues to process undelivered events": errors from missing permissions are not retried and go to the DLQ at once,
    with message attributes RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE)."""
    check = _events_authorized(rule, target["Arn"])
    if check.allowed:
        return True
    from moto.cloudwatch.models import cloudwatch_backends

    log.warning("EventBridge rule %s: delivery to %s refused: %s", rule.name, target["Arn"], check.reason)
    EVENTBRIDGE_FAILED_INVOCATIONS.append((rule.arn, target["Arn"], check.reason))
    metrics = ["FailedInvocations"]
    dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
    if dlq and _events_authorized(rule, dlq).allowed:
        from moto.sqs.models import sqs_backends
        from moto.utilities.arns import parse_arn

        d = parse_arn(dlq)

        def attr(value: str) -> dict:
            return {"DataType": "String", "StringValue": value}

        sqs_backends[d.account][d.region].send_message(
            queue_name=d.resource_id, message_body=json.dumps(event),
            message_attributes={"RULE_ARN": attr(rule.arn), "TARGET_ARN": attr(target["Arn"]),
                                "ERROR_CODE": attr("NO_PERMISSIONS"), "ERROR_MESSAGE": attr(check.reason[:1000])})
        metrics.append("InvocationsSentToDlq")
    cloudwatch_backends[rule.account_id][rule.region_name].put_metric_data("AWS/Events", [{
        "MetricName": name, "Dimensions": [{"Name": "RuleName", "Value": rule.name}], "Value": 1.0,
        "Unit": "Count", "Timestamp": _clock_naive()} for name in metrics])  # naive UTC, as moto stores them
    return False


def put_event(account_id: str, region_name: str, event: dict, bus_name: str = "default") -> None:
    """Route one fully formed event (AWS shape) through the bus's rules."""
    from moto.events.models import events_backends

    backend = events_backends[account_id][region_name]
    bus = backend.event_buses.get(bus_name)
    if bus is None:
        return
    for rule in list(bus.rules.values()):
        rule.send_to_targets(copy.deepcopy(event))  # patched: see patch_eventbridge_targets


_sequencer = itertools.count(int(datetime.now().timestamp() * 1000) << 20)

_S3_REASONS = {  # event name -> detail.reason (AWS: "Amazon S3 event message structure" for EventBridge)
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "PostObject",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
    "s3:ObjectTagging:Put": "PutObjectTagging",
    "s3:ObjectTagging:Delete": "DeleteObjectTagging",
    "s3:ObjectAcl:Put": "PutObjectAcl",
}


def s3_eventbridge_event(account_id: str, bucket, event_name: str, key) -> dict:
    """The EventBridge event S3 sends for ``event_name`` (e.g. ``s3:ObjectCreated:Put``), in AWS's shape."""
    from moto.s3.notifications import _detail_type

    action = event_name.split(":")[-1]
    # The key is sent RAW. AWS does not document whether S3's EventBridge events URL-encode detail.object.key (the
    # classic S3 notification format does); an AWS solutions sample tested with real uploads (medialake, PR 21) says
    # it arrives un-encoded, Powertools' data class decodes it (FACTS.md section 10). The trigger does not rely on
    # either: it asks S3 which of the raw and the decoded key exists at the event's version. Raw is the form the
    # only real-upload evidence shows; the trigger's Stubber tests cover the encoded form.
    obj = {"key": key.name, "size": key.size, "etag": key.etag.replace('"', "")}
    if getattr(bucket, "is_versioned", False) and key.version_id and key.version_id != "null":
        obj["version-id"] = key.version_id
    obj["sequencer"] = format(next(_sequencer), "016X")
    detail = {
        "version": "0",
        "bucket": {"name": bucket.name},
        "object": obj,
        "request-id": "".join(random.choices(string.ascii_uppercase + string.digits, k=16)),
        "requester": account_id,
        "source-ip-address": "127.0.0.1",
        "reason": _S3_REASONS.get(str(getattr(event_name, "value", event_name)), action),
    }
    if "ObjectRemoved" in event_name:
        obj.pop("etag", None)
        obj.pop("size", None)
        detail["deletion-type"] = "Delete Marker Created" if action == "DeleteMarkerCreated" else "Permanently Deleted"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": _detail_type(event_name),
        "source": "aws.s3",
        "account": account_id,
        "time": _now_iso(),
        "region": bucket.region_name,
        "resources": [f"arn:aws:s3:::{bucket.name}"],
        "detail": detail,
    }


def patch_s3_eventbridge() -> None:
    """Buckets with EventBridgeConfiguration send AWS-shaped events to the default bus's rules.

    moto 5.2.5 already calls this hook for PutObject, PostObject, CopyObject,
    CompleteMultipartUpload, tagging and deletes; we replace the event it builds (time was a
    float, ``eTag`` instead of ``etag``, constant sequencer/request-id, version-id
    on unversioned buckets) and route it with :func:`put_event`. A multipart upload
    sends exactly one event (reason ``CompleteMultipartUpload``), as S3 does.
    """
    if not _once("s3_eventbridge"):
        return
    from moto.s3 import notifications

    def _send_event_bridge_message(account_id, bucket, event_name, key):
        try:
            put_event(account_id, bucket.region_name, s3_eventbridge_event(account_id, bucket, event_name, key))
        except Exception:  # async in AWS: never fail the S3 call
            log.exception("S3 -> EventBridge delivery failed")


    # moto's CompleteMultipartUpload stores the object through put_object and put_object_tagging, which send
    # ObjectCreated:Put and ObjectTagging:Put; AWS sends only the one CompleteMultipartUpload event.
    from moto.s3.models import S3Backend

    original_complete = S3Backend.complete_multipart_upload
    original_send = notifications.send_event
    complete_event = notifications.S3NotificationEvent.OBJECT_CREATED_COMPLETE_MULTIPART_UPLOAD_EVENT

    def send_event(account_id, event_name, bucket, key):
        if getattr(_tls, "in_multipart", False) and event_name != complete_event:
            return None
        return original_send(account_id, event_name, bucket, key)

    def complete_multipart_upload(self, *args, **kwargs):
        _tls.in_multipart = True
        try:
            return original_complete(self, *args, **kwargs)
        finally:
            _tls.in_multipart = False

    _replace(notifications, "_send_event_bridge_message", _send_event_bridge_message)
    _replace(notifications, "send_event", send_event)
    _replace(S3Backend, "complete_multipart_upload", complete_multipart_upload)


# --------------------------------------------------------------------------- SageMaker


def patch_sagemaker_processing() -> None:
    """CreateProcessingJob: duplicate names refused (ResourceInUse), jobs start InProgress, the whole
    request (Environment, ProcessingResources ...) is kept and described."""
    if not _once("sagemaker_processing"):
        return
    from moto.sagemaker.exceptions import ResourceInUseException
    from moto.sagemaker.models import FakeProcessingJob, SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    from localcloud.clock import CLOCK

    original_create = SageMakerModelBackend.create_processing_job

    def create_processing_job(self, **kwargs):
        name = kwargs["processing_job_name"]
        if name in self.processing_jobs:
            arn = FakeProcessingJob.arn_formatter(name, self.account_id, self.region_name)
            raise ResourceInUseException(
                message=f"Processing job names must be unique within an AWS account and region, "
                f"and a processing job with this name already exists ({arn})"
            )
        request = kwargs.pop("_request", None) or {}
        _check_job_quota(self, request)
        job = original_create(self, **kwargs)
        now = CLOCK.utcnow_naive()
        job.processing_job_status = "InProgress"
        job.processing_end_time = None
        job.processing_start_time = now
        job.environment = request.get("Environment")
        job.processing_resources = request.get("ProcessingResources")
        job.failure_reason = None
        job.exit_message = None
        PROCESSING_JOB_REQUESTS[name] = dict(request, ProcessingJobArn=job.arn)
        return job

    def response_create(self):
        from moto.core.responses import ActionResult

        request = json.loads(self.body) if self.body else {}
        job = self.sagemaker_backend.create_processing_job(
            app_specification=self._get_param("AppSpecification"),
            experiment_config=self._get_param("ExperimentConfig"),
            network_config=self._get_param("NetworkConfig"),
            processing_inputs=self._get_param("ProcessingInputs"),
            processing_job_name=self._get_param("ProcessingJobName"),
            processing_output_config=self._get_param("ProcessingOutputConfig"),
            role_arn=self._get_param("RoleArn"),
            stopping_condition=self._get_param("StoppingCondition"),
            tags=self._get_param("Tags"),
            _request=request,
        )
        return ActionResult({"ProcessingJobArn": job.arn})

    _replace(SageMakerModelBackend, "create_processing_job", create_processing_job)
    _replace(SageMakerResponse, "create_processing_job", response_create)


def _resource_limit_exceeded(message: str) -> Exception:
    from moto.sagemaker.exceptions import SagemakerClientError

    class ResourceLimitExceeded(SagemakerClientError):
        code = "ResourceLimitExceeded"

    return ResourceLimitExceeded(message)


def quota_message(instance_type: str, quota: int, used: int, delta: int) -> str:
    """SageMaker's ResourceLimitExceeded text for a processing-instance quota (/work/shared/FACTS.md section 7; the
    sentence after "request delta of N Instances." is not quoted there and is left out)."""
    return (f"The account-level service limit '{instance_type} for processing job usage' is {quota} Instances, "
            f"with current utilization of {used} Instances and a request delta of {delta} Instances.")


def _check_job_quota(backend, request: dict) -> None:
    """ResourceLimitExceeded when the job's instances would exceed the instance type's quota (JOB_QUOTAS). AWS counts
    instances of processing jobs that hold them (InProgress, Stopping) per account and Region."""
    cluster = (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    instance_type = cluster.get("InstanceType")
    if instance_type not in JOB_QUOTAS:
        return
    delta = int(cluster.get("InstanceCount") or 1)
    used = 0
    for job_name, job in list(backend.processing_jobs.items()):
        if job.processing_job_status not in ACTIVE_JOB_STATUSES:
            continue
        other = ((PROCESSING_JOB_REQUESTS.get(job_name) or {}).get("ProcessingResources") or {}).get(
            "ClusterConfig") or {}
        if other.get("InstanceType") == instance_type:
            used += int(other.get("InstanceCount") or 1)
    quota = int(JOB_QUOTAS[instance_type])
    if used + delta > quota:
        raise _resource_limit_exceeded(quota_message(instance_type, quota, used, delta))


def _sagemaker_backend(account_id: str, region_name: str):
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[account_id][region_name]


def processing_jobs(account_id: str, region_name: str, status: str | None = None) -> list[dict]:
    """DescribeProcessingJob-like dicts of every job (optionally with one status)."""
    backend = _sagemaker_backend(account_id, region_name)
    out = []
    for name, job in list(backend.processing_jobs.items()):
        if status and job.processing_job_status != status:
            continue
        out.append(describe_processing_job(account_id, region_name, name))
    return out


def describe_processing_job(account_id: str, region_name: str, name: str) -> dict:
    backend = _sagemaker_backend(account_id, region_name)
    desc = dict(backend.processing_jobs[name].response_object)
    desc.pop("ProcessingJobName", None)
    desc["ProcessingJobName"] = name
    return desc


def set_processing_job_status(
    account_id: str,
    region_name: str,
    name: str,
    status: str,
    failure_reason: str | None = None,
    exit_message: str | None = None,
) -> dict:
    """Move a processing job to ``status`` (Completed / Failed / Stopped / InProgress ...).

    Terminal states get ProcessingEndTime; FailureReason/ExitMessage are cut to 1024 chars as in AWS. Returns the
    description. The "SageMaker Processing Job State Change" event is built by ``job_executor.state_change_event``
    and routed by the caller with :func:`put_event`.
    """
    from localcloud.clock import CLOCK

    backend = _sagemaker_backend(account_id, region_name)
    job = backend.processing_jobs[name]
    job.processing_job_status = status
    now = CLOCK.utcnow_naive()
    job.last_modified_time = now
    if status in ("Completed", "Failed", "Stopped"):
        job.processing_end_time = now
    if failure_reason is not None:
        job.failure_reason = failure_reason[:1024]
    if exit_message is not None:
        job.exit_message = exit_message[:1024]
    return describe_processing_job(account_id, region_name, name)


# --------------------------------------------------------------------------- CloudWatch alarms

def _describe_alarm(alarm) -> dict:
    """A moto ``Alarm`` in DescribeAlarms shape (what :func:`localcloud.alarms.notification` reads)."""

    def query(q) -> dict:
        out = {"Id": q.id, "Label": q.label, "ReturnData": q.return_data, "Expression": q.expression,
               "Period": q.period}
        if q.metric_stat:
            m = q.metric_stat.metric
            out["MetricStat"] = {"Metric": {"Namespace": m.namespace, "MetricName": m.metric_name,
                                            "Dimensions": [{"Name": d.name, "Value": d.value} for d in m.dimensions]},
                                 "Period": q.metric_stat.period, "Stat": q.metric_stat.stat,
                                 "Unit": q.metric_stat.unit}
        return {k: v for k, v in out.items() if v is not None}

    return {
        "AlarmName": alarm.name, "AlarmArn": alarm.alarm_arn, "AlarmDescription": alarm.description,
        "AlarmConfigurationUpdatedTimestamp": alarm.configuration_updated_timestamp,
        "ActionsEnabled": alarm.actions_enabled, "OKActions": alarm.ok_actions or [],
        "AlarmActions": alarm.alarm_actions or [], "InsufficientDataActions": alarm.insufficient_data_actions or [],
        "MetricName": alarm.metric_name, "Namespace": alarm.namespace, "Statistic": alarm.statistic,
        "ExtendedStatistic": alarm.extended_statistic, "Unit": alarm.unit,
        "Dimensions": [{"Name": d.name, "Value": d.value} for d in alarm.dimensions],
        "Period": alarm.period, "EvaluationPeriods": alarm.evaluation_periods,
        "DatapointsToAlarm": alarm.datapoints_to_alarm, "ComparisonOperator": alarm.comparison_operator,
        "Threshold": alarm.threshold, "ThresholdMetricId": alarm.threshold_metric_id,
        "TreatMissingData": alarm.treat_missing_data,
        "EvaluateLowSampleCountPercentile": alarm.evaluate_low_sample_count_percentile,
        "Metrics": [query(q) for q in alarm.metric_data_queries or []],
    }


def _iso_ms(ts: Any) -> str:
    from localcloud.alarms import _iso_ms as fmt

    return fmt(ts) if isinstance(ts, datetime) else str(ts)


def alarm_state_change_event(desc: dict, previous: dict, alarm) -> dict:
    """The "CloudWatch Alarm State Change" event CloudWatch sends to EventBridge for a state change, in the shape of
    the CloudWatch User Guide's examples ("Alarm events and EventBridge": single-metric and metric-math/Metrics
    Insights alarms): ``detail.alarmName``, ``detail.state`` / ``detail.previousState`` (value, reason, reasonData,
    timestamp), ``detail.configuration`` (description, metrics)."""
    if desc.get("Metrics"):
        metrics = [{k: v for k, v in {"id": q.get("Id"), "expression": q.get("Expression"), "label": q.get("Label"),
                                       "returnData": q.get("ReturnData"), "period": q.get("Period")}.items()
                    if v is not None} for q in desc["Metrics"]]
    else:
        metrics = [{"id": str(uuid.uuid4()), "returnData": True, "metricStat": {
            "metric": {"namespace": desc.get("Namespace"), "name": desc.get("MetricName"),
                       "dimensions": {d["Name"]: d["Value"] for d in desc.get("Dimensions") or []}},
            "period": desc.get("Period"), "stat": desc.get("Statistic") or desc.get("ExtendedStatistic")}}]

    def state(value, reason, reason_data, ts):
        out = {"value": value, "reason": reason, "timestamp": _iso_ms(ts)}
        if reason_data and reason_data != "{}":
            out["reasonData"] = reason_data
        return out

    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch", "account": alarm.alarm_arn.split(":")[4],
        "time": _event_time(alarm.state_updated_timestamp if alarm.state_updated_timestamp.tzinfo
                            else alarm.state_updated_timestamp.replace(tzinfo=timezone.utc)),
        "region": alarm.region_name, "resources": [alarm.alarm_arn],
        "detail": {
            "alarmName": alarm.name,
            "state": state(alarm.state_value, alarm.state_reason, alarm.state_reason_data,
                           alarm.state_updated_timestamp),
            "previousState": state(previous["value"], previous["reason"], previous["reasonData"],
                                   previous["timestamp"]),
            "configuration": {"description": desc.get("AlarmDescription") or "", "metrics": metrics},
        },
    }


def _execute_sns_alarm_action(alarm, action: str, message: str, subject: str) -> None:
    """Publish an alarm notification as cloudwatch.amazonaws.com, if the topic and key policies let it; record the
    outcome as the alarm history item AWS writes ("Successfully executed action ..." / "Failed to execute action
    ...", HistoryItemType Action)."""
    from moto.sns.models import sns_backends
    from moto.utilities.arns import parse_arn

    from localcloud.iam_eval import authorize_delivery

    arn = parse_arn(action)
    topic = sns_backends[arn.account][arn.region].topics.get(action)
    if topic is None:
        error = f"Topic {action} does not exist (SNS.NotFound)"
    else:
        check = authorize_delivery(account=arn.account, region=arn.region, service="cloudwatch.amazonaws.com",
                                   action="sns:Publish", resource_arn=action, resource_policy=topic.policy,
                                   kms_key_id=topic.kms_master_key_id or None, source_arn=alarm.alarm_arn,
                                   source_account=alarm.alarm_arn.split(":")[4])
        error = check.reason
    if not error:
        try:
            sns_backends[arn.account][arn.region].publish(message=message, arn=action, subject=subject)
        except Exception as exc:  # noqa: BLE001 - recorded, as AWS records a failed action
            log.exception("alarm action %s failed", action)
            error = f"{type(exc).__name__}: {exc}"
    ok = not error
    if not ok:
        log.warning("alarm %s: failed to execute action %s: %s", alarm.name, action, error)
    ALARM_HISTORY.append({
        "AlarmName": alarm.name, "AlarmType": "MetricAlarm", "Timestamp": _clock_aware(),
        "HistoryItemType": "Action",
        "HistorySummary": f"{'Successfully executed' if ok else 'Failed to execute'} action {action}",
        "HistoryData": json.dumps({"actionState": "Succeeded" if ok else "Failed",
                                   "stateUpdateTimestamp": _iso_ms(alarm.state_updated_timestamp),
                                   "notificationResource": action, **({} if ok else {"error": error})}),
    })


def patch_alarm_states() -> None:
    """Alarms start INSUFFICIENT_DATA; a state *change* publishes to the alarm's SNS actions."""
    if not _once("alarm_states"):
        return
    from moto.cloudwatch.models import Alarm, CloudWatchBackend

    original_init = Alarm.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.state_value = "INSUFFICIENT_DATA"
        self.state_reason = "Unchecked: Initial alarm creation"

    original_put = CloudWatchBackend.put_metric_alarm

    def put_metric_alarm(self, name, *args, **kwargs):
        # PutMetricAlarm on an existing alarm keeps its state (as AWS does)
        old = self.alarms.get(name)
        alarm = original_put(self, name, *args, **kwargs)
        if old is not None:
            alarm.state_value = old.state_value
            alarm.state_reason = old.state_reason
            alarm.state_reason_data = old.state_reason_data
            alarm.state_updated_timestamp = old.state_updated_timestamp
        return alarm

    original_set = CloudWatchBackend.set_alarm_state

    def set_alarm_state(self, alarm_name, reason, reason_data, state_value):
        before = self.alarms.get(alarm_name)
        previous = None if before is None else {
            "value": before.state_value, "reason": before.state_reason, "reasonData": before.state_reason_data,
            "timestamp": before.state_updated_timestamp}
        original_set(self, alarm_name, reason, reason_data, state_value)
        alarm = self.alarms[alarm_name]
        old_state = previous["value"] if previous else None
        if old_state == state_value:
            return
        from localcloud import alarms

        desc = _describe_alarm(alarm)
        # every state change goes to EventBridge, actions enabled or not ("Alarm events and EventBridge")
        if previous is not None:
            put_event(alarm.alarm_arn.split(":")[4], alarm.region_name, alarm_state_change_event(desc, previous, alarm))
        if not alarm.actions_enabled:
            return
        message = json.dumps(alarms.notification(desc, old_state=old_state, new_state=state_value,
                                                 reason=alarm.state_reason, when=alarm.state_updated_timestamp,
                                                 region=alarm.region_name))
        for action in alarms.action_topics(desc, state_value):
            _execute_sns_alarm_action(alarm, action, message, alarms.subject(state_value, alarm.name,
                                                                             alarm.region_name))

    _replace(Alarm, "__init__", __init__)
    _replace(CloudWatchBackend, "put_metric_alarm", put_metric_alarm)
    _replace(CloudWatchBackend, "set_alarm_state", set_alarm_state)
