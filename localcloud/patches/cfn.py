"""CloudFormation: resource models moto 5.2.5 lacks and the change-set behaviour the CDK CLI needs.

* :func:`patch_cfn_resource_types`: AWS::CloudWatch::Alarm, S3::BucketPolicy, SNS::TopicPolicy, SQS::QueuePolicy,
  Lambda::EventInvokeConfig (moto skips them), CDK::Metadata ignored; bucket policies with Conditions no longer deny
  everything.
* :func:`patch_s3_bucket_cfn`: S3::Bucket VersioningConfiguration / NotificationConfiguration (EventBridge) applied,
  BucketEncryption's BucketKeyEnabled kept.
* :func:`patch_custom_resources`: Custom::* **not supported**, the deploy fails clearly (moto needs Docker).
* :func:`patch_change_set_outputs`: outputs after a change set, failed change set -> ROLLBACK_COMPLETE, missing
  change set -> ChangeSetNotFound (an update deploy needs it).
* :func:`patch_update_parameters`: a second deploy keeps the SSM-typed parameter's name.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from localcloud.patches.lambda_sqs import EVENT_INVOKE_CONFIGS
from localcloud.patches.registry import once, replace

log = logging.getLogger("localcloud")


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
            return attr == "Arn"

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
        def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id,
                                        region_name):
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
        def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id,
                                        region_name):
            props = cloudformation_json.get("Properties", {})
            cls._apply(props, account_id, region_name)
            return cls(original_resource.physical_id, props)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            cls._apply(cloudformation_json.get("Properties", {}), account_id, region_name, remove=True)

        def delete(self, account_id: str, region_name: str) -> None:
            # the target may already be gone (deleted before its policy): nothing left to remove
            with contextlib.suppress(Exception):
                self._apply(self.props, account_id, region_name, remove=True)

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
        def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id,
                                        region_name):
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


CFN_MODELS: list = []


def patch_cfn_resource_types() -> None:
    """Register CloudFormation models for AWS::CloudWatch::Alarm and the three resource-policy types."""
    if not once("cfn_types"):
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

    replace(FakeBucket, "get_permission", get_permission)


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
    (incl. EventBridgeConfiguration) and keep BucketEncryption's BucketKeyEnabled, which moto's CloudFormation model
    ignores."""
    if not once("s3_bucket_cfn"):
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
        # BucketEncryption's BucketKeyEnabled (moto's CloudFormation keeps only the algorithm and key): the S3 Bucket
        # Key decides the encryption context of S3's KMS requests (service_auth.s3_object_check)
        rules = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or []
        if rules and isinstance(bucket.encryption, dict) and isinstance(bucket.encryption.get("Rule"), dict):
            enabled = rules[0].get("BucketKeyEnabled")
            if enabled is not None:
                bucket.encryption["Rule"]["BucketKeyEnabled"] = str(enabled).lower() == "true"

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        bucket = orig_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        _apply(bucket, cloudformation_json.get("Properties", {}), account_id)
        return bucket

    def update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        bucket = orig_update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)
        _apply(bucket, cloudformation_json.get("Properties", {}), account_id)
        return bucket

    replace(FakeBucket, "create_from_cloudformation_json", create)
    replace(FakeBucket, "update_from_cloudformation_json", update)


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
    if not once("custom_resources"):
        return
    from moto.cloudformation.custom_model import CustomModel

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        raise CustomResourcesNotSupported(
            f"{kwargs.get('LogicalId', resource_name)} ({kwargs.get('ResourceType', 'Custom::*')}): custom resources "
            "are not supported by localcloud (see localcloud/README.md)")

    replace(CustomModel, "create_from_cloudformation_json", create)


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
    if not once("change_set_outputs"):
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
        except Exception as exc:
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

    replace(CloudFormationBackend, "describe_change_set", describe_change_set)
    replace(CloudFormationBackend, "delete_change_set", delete_change_set)
    replace(CloudFormationBackend, "execute_change_set", execute_change_set)


def patch_update_parameters() -> None:
    """On update, a parameter of type ``AWS::SSM::Parameter::Value<...>`` is re-resolved from SSM.

    moto stores the *resolved* value and on the next change set parses it again as
    an SSM parameter name (the CDK's BootstrapVersion parameter fails). We keep the
    SSM parameter *name* as the parameter's input value.
    """
    if not once("update_parameters"):
        return
    from moto.cloudformation.parsing import ResourceMap

    original = ResourceMap.load_parameters

    def load_parameters(self):
        params = self._template.get("Parameters", {}) if self._template else {}
        for key, spec in params.items():
            if str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
                value = self.input_parameters.get(key)
                # a resolved value sneaked in (UsePreviousValue): use the default name again
                if value is not None and not str(value).startswith("/") and "Default" in spec:
                    self.input_parameters[key] = spec["Default"]
        return original(self)

    replace(ResourceMap, "load_parameters", load_parameters)
