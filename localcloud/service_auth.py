"""Authorization of what services do *with a role* in the local cloud (issue 12 item 1), from the deployed IAM roles'
policies (moto keeps ``AWS::IAM::Policy`` as role inline policies), the destinations' resource policies and the KMS
key policies, evaluated by :mod:`localcloud.iam_eval`. Each check returns a :class:`~localcloud.iam_eval.DeliveryCheck`
(allowed, the reason AWS would give); the callers record refusals where AWS records them.

* SQS -> Lambda event source mapping (Lambda DG "Using Lambda with Amazon SQS", execution role permissions): the
  function's execution role needs ``sqs:ReceiveMessage``, ``sqs:DeleteMessage``, ``sqs:GetQueueAttributes`` on the
  queue and ``kms:Decrypt`` on its key (``kms:ViaService`` sqs): :func:`event_source_mapping_check`.
* Lambda async -> dead-letter queue / destination (Lambda DG "Capturing records of Lambda asynchronous invocations":
  the execution role needs ``sqs:SendMessage`` / ``sns:Publish``; SQS DG "Key management": a producer needs
  ``kms:GenerateDataKey`` and ``kms:Decrypt``): :func:`destination_check`.
* CreateProcessingJob ``RoleArn`` (IAM User Guide "Grant a user permissions to pass a role to an AWS service"): the
  caller needs ``iam:PassRole`` on it with ``iam:PassedToService`` = sagemaker.amazonaws.com: :func:`pass_role_check`.
* The processing job's role on its inputs and outputs (SageMaker DG "How to use SageMaker AI execution roles",
  CreateProcessingJob: ``s3:GetObject`` / ``s3:PutObject``; S3 UG "Using server-side encryption with AWS KMS keys":
  ``kms:Decrypt`` to read, ``kms:GenerateDataKey`` to write): :func:`s3_object_check`.

AWS managed keys (``alias/aws/...``) are usable by every principal of the account through their service (KMS DG
"AWS managed keys"): not checked.
"""

from __future__ import annotations

from typing import Any

from localcloud.iam_eval import DeliveryCheck, authorize_key_use, authorize_role

SQS_EVENT_SOURCE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
OK = DeliveryCheck(True, "")


def _customer_key(key_id: str | None) -> str | None:
    return None if not key_id or key_id.startswith("alias/aws/") else key_id


def event_source_mapping_check(account: str, region: str, role_arn: str, queue: Any) -> DeliveryCheck:
    """May Lambda's poller, with the function's execution role, read and delete `queue`'s (a moto Queue) messages?"""
    for action in SQS_EVENT_SOURCE_ACTIONS:
        check = authorize_role(account=account, role_arn=role_arn, action=action, resource=queue.queue_arn,
                               resource_policy=queue.policy or None)
        if not check.allowed:
            return check
    key = _customer_key(queue.kms_master_key_id)
    if key:
        return authorize_key_use(account=account, region=region, role_arn=role_arn, key_id=key,
                                 actions=("kms:Decrypt",), via_service="sqs",
                                 context={"kms:EncryptionContext:aws:sqs:arn": queue.queue_arn})
    return OK


def destination_check(account: str, region: str, role_arn: str, destination_arn: str) -> DeliveryCheck:
    """May the function's execution role send to its dead-letter queue / destination (SQS queue or SNS topic)?"""
    service = destination_arn.split(":")[2]
    if service == "sqs":
        from moto.sqs.models import sqs_backends

        queue = sqs_backends[account][region].queues.get(destination_arn.split(":")[-1])
        if queue is None:
            return DeliveryCheck(False, f"queue {destination_arn} does not exist "
                                        "(AWS.SimpleQueueService.NonExistentQueue)")
        policy, key, action = queue.policy or None, queue.kms_master_key_id, "sqs:SendMessage"
        context_key = "kms:EncryptionContext:aws:sqs:arn"
    elif service == "sns":
        from moto.sns.models import sns_backends

        topic = sns_backends[account][region].topics.get(destination_arn)
        if topic is None:
            return DeliveryCheck(False, f"topic {destination_arn} does not exist (SNS.NotFound)")
        policy, key, action = topic.policy or None, topic.kms_master_key_id, "sns:Publish"
        context_key = "kms:EncryptionContext:aws:sns:topicArn"
    else:
        return DeliveryCheck(False, f"unsupported destination {destination_arn}")
    check = authorize_role(account=account, role_arn=role_arn, action=action, resource=destination_arn,
                           resource_policy=policy)
    if check.allowed and _customer_key(key):
        check = authorize_key_use(account=account, region=region, role_arn=role_arn, key_id=str(key),
                                  actions=("kms:GenerateDataKey", "kms:Decrypt"), via_service=service,
                                  context={context_key: destination_arn})
    return check


def pass_role_check(account: str, caller_role_arn: str, role_arn: str, service: str) -> DeliveryCheck:
    """May the caller pass `role_arn` to `service` (``iam:PassRole``, ``iam:PassedToService``)?"""
    return authorize_role(account=account, role_arn=caller_role_arn, action="iam:PassRole", resource=role_arn,
                          context={"iam:PassedToService": service})


def _bucket(account: str, bucket: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[account]["aws"].buckets.get(bucket)


def bucket_default_key(account: str, bucket: str) -> str | None:
    """The KMS key of the bucket's default encryption (SSE-KMS), if any."""
    b = _bucket(account, bucket)
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "KMSMasterKeyID" and isinstance(v, str):
                    found.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(getattr(b, "encryption", None))
    return found[0] if found else None


def bucket_key_enabled(account: str, bucket: str) -> bool:
    """True when the bucket's default encryption uses an S3 Bucket Key (``BucketKeyEnabled``)."""
    found: list[object] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "BucketKeyEnabled":
                    found.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(getattr(_bucket(account, bucket), "encryption", None))
    return any(v is True or str(v).lower() == "true" for v in found)


def s3_object_check(account: str, region: str, role_arn: str, action: str, bucket: str, key: str,
                    kms_key_id: str | None = None) -> DeliveryCheck:
    """May the role ``s3:GetObject`` / ``s3:PutObject`` s3://bucket/key, including the KMS key S3 uses for it
    (`kms_key_id`, else the bucket's default key): ``kms:Decrypt`` to read, ``kms:GenerateDataKey`` to write?

    The KMS request carries S3's encryption context (S3 UG "Encryption context" under SSE-KMS): ``aws:s3:arn`` = the
    bucket's ARN when the bucket uses an S3 Bucket Key, else the object's ARN, so a key statement conditioned on
    ``kms:EncryptionContext:aws:s3:arn`` is evaluated as in AWS. Which key a write under another bucket key uses is
    the bucket's setting, not checked per request."""
    b = _bucket(account, bucket)
    if b is None:
        return DeliveryCheck(False, f"bucket {bucket} does not exist (NoSuchBucket)")
    policy = b.policy.decode() if isinstance(b.policy, bytes) else b.policy
    check = authorize_role(account=account, role_arn=role_arn, action=action, resource=f"arn:aws:s3:::{bucket}/{key}",
                           resource_policy=policy)
    kms = _customer_key(kms_key_id or bucket_default_key(account, bucket))
    if check.allowed and kms:
        arn = f"arn:aws:s3:::{bucket}" if bucket_key_enabled(account, bucket) else f"arn:aws:s3:::{bucket}/{key}"
        check = authorize_key_use(account=account, region=region, role_arn=role_arn, key_id=kms,
                                  actions=("kms:Decrypt",) if action == "s3:GetObject" else ("kms:GenerateDataKey",),
                                  via_service="s3", context={"kms:EncryptionContext:aws:s3:arn": arn})
    return check

