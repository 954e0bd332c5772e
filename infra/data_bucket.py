"""The data bucket: SSE-KMS with a rotating customer-managed key, TLS-only, versioned, access-logged."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

STAGING_NONCURRENT_DAYS = 1  # days: a staged copy's older versions (a redelivery copied the same bytes again)


@dataclass(frozen=True)
class DataBucketProps:
    """Inputs of :class:`DataBucket`.

    Attributes:
        removal_policy: what happens to the buckets and key on stack delete (default RETAIN).
        noncurrent_version_expiration_days: old object versions expire after this many days (default 30).
        access_log_expiration_days: server access log objects expire after this many days (default 365).
        staging_prefix: where the trigger stages each job's copy of its object version (default ``staging/``).
        staging_expiration_days: staged copies expire after this many days (default 7); their noncurrent versions
            (a redelivered event copies again) after :data:`STAGING_NONCURRENT_DAYS`.
    """

    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN
    noncurrent_version_expiration_days: int = 30  # days
    access_log_expiration_days: int = 365  # days
    staging_prefix: str = "staging/"
    staging_expiration_days: int = 7  # days


class DataBucket(Construct):
    """The pipeline's data bucket, its KMS key and its server-access-log bucket.

    Attributes:
        key: the customer-managed KMS key (rotation on) used by the bucket, the queues and the job.
        bucket: the data bucket (EventBridge notifications on).
        access_log_bucket: receives the data bucket's server access logs (SSE-S3: log delivery can't use SSE-KMS).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: DataBucketProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="Data quality pipeline: data bucket, queues and processing job outputs/volumes",
            enable_key_rotation=True,
            removal_policy=props.removal_policy,
        )
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=False,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireAccessLogs", expiration=Duration.days(props.access_log_expiration_days))
            ],
            removal_policy=props.removal_policy,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireNoncurrentVersions",
                    noncurrent_version_expiration=Duration.days(props.noncurrent_version_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                    expired_object_delete_marker=True,
                ),
                # Each job's staged copy (design.md Contract 1) is read once, when the job starts: it expires after
                # staging_expiration_days (a delete marker; the copy becomes noncurrent and goes a day later). The
                # whole-bucket rule above removes the expired delete markers.
                s3.LifecycleRule(
                    id="ExpireStagedCopies",
                    prefix=props.staging_prefix,
                    expiration=Duration.days(props.staging_expiration_days),
                    noncurrent_version_expiration=Duration.days(STAGING_NONCURRENT_DAYS),
                ),
            ],
            removal_policy=props.removal_policy,
        )
        # EventBridge notifications set on the bucket resource itself: `event_bridge_enabled=True` would add the
        # Custom::S3BucketNotifications Lambda (an AWS-managed-policy role, and a custom resource local emulators
        # can't run).
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )
