"""The upload trigger: S3 Object Created (input prefix) -> EventBridge -> SQS (+DLQ) -> trigger Lambda ->
CreateProcessingJob."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

import contract
from infra.job_metrics import METRICS_NAMESPACE
from infra.lambda_asset import handler_string
from infra.processing_job import SAGEMAKER_PRINCIPAL, ProcessingJob
from infra.python_function import allow_alert_publishing, python_function
from infra.spark_job import SparkJob

# seconds: one batch of up to BATCH_SIZE records, each a HeadObject, a server-side copy of the object version to its
# staging key (CopyObject up to 5 GB, parallel UploadPartCopy above) and CreateProcessingJob, retried by botocore.
# S3 does not publish copy throughput; a batch whose copies outlast this times out and is retried whole.
TRIGGER_TIMEOUT = 300
VISIBILITY_TIMEOUT = 6 * TRIGGER_TIMEOUT  # seconds: AWS guidance for SQS event sources is >= 6x the function timeout
# Deliveries before a message moves to the DLQ. With the handler's backoff on ThrottlingException/ResourceLimitExceeded
# (visibility min(900, 30 x 2^(n-1)) s, equal jitter) 10 receives wait about 38-75 min in total, i.e. roughly an hour
# for a processing-instance quota to free up (infra/lambdas/README.md "Retry and backoff"); 5 gave only 8-15 min.
MAX_RECEIVE_COUNT = 10
DLQ_RETENTION = 14  # days (the SQS maximum)
QUEUE_RETENTION = 4  # days
BATCH_SIZE = 5  # messages per invocation
MAX_CONCURRENCY = 2  # concurrent invocations (SQS minimum); CreateProcessingJob is rate limited per region
MEMORY_SIZE = 256  # MB
BASELINE_FILE = contract.BASELINE_FILE  # the trigger heads <baseline_prefix><dataset>/baseline.json (Contract 4)
REFUSED_METRIC = contract.KEY_REFUSED  # published with dimension Reason and without dimensions
REFUSED_PERIOD = 300  # seconds
# Staging (infra/lambdas/trigger/staging.py: stage_source): CopyObject / multipart copy. s3:PutObject authorizes
# CreateMultipartUpload, UploadPartCopy and CompleteMultipartUpload; GetObject/GetObjectVersion on the source
# authorize the copy's read.
STAGING_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload")
SOURCE_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")


@dataclass(frozen=True)
class ProcessingTriggerProps:
    """Inputs of :class:`ProcessingTrigger`.

    Attributes:
        bucket: the data bucket (EventBridge notifications on).
        key: the KMS key for the queues (and the job's outputs/volume).
        job: the processing job (role and settings passed to the handler).
        code: the Lambda asset (infra/lambda_asset.py); the function runs ``trigger.handler.handler``.
        input_prefix / output_prefix / job_prefix / staging_prefix: see :class:`infra.config.Settings`.
        namespace: CloudWatch namespace of the ``KeyRefused`` metric (the stack's metrics namespace).
        log_retention: retention of the function's log group.
        removal_policy: of the log group.
    """

    bucket: s3.IBucket
    key: kms.IKey
    job: ProcessingJob
    code: lambda_.Code
    input_prefix: str
    output_prefix: str
    baseline_prefix: str
    quarantine_prefix: str
    job_prefix: str
    staging_prefix: str = "staging/"
    namespace: str = METRICS_NAMESPACE
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN
    spark: SparkJob | None = None  # the Spark engine's job, when some dataset can run Spark
    spark_env: Mapping[str, str] = field(default_factory=dict)  # ENGINES, SPARK_INSTANCE_*, ... (infra/stack.py)


class ProcessingTrigger(Construct):
    """Buffers upload events in SQS and starts one processing job per object version.

    Attributes:
        rule: the EventBridge rule on Object Created under the input prefix of the data bucket.
        queue / dlq: the trigger queue and its dead-letter queue.
        function: the trigger Lambda.
        log_group: the function's log group.
        refused_keys_metric: ``KeyRefused`` (Sum, all reasons): uploads refused by the trigger (alarmed).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: ProcessingTriggerProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        job = props.job.props
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=props.key,
            enforce_ssl=True,
            retention_period=Duration.days(DLQ_RETENTION),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=props.key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(VISIBILITY_TIMEOUT),
            retention_period=Duration.days(QUEUE_RETENTION),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=MAX_RECEIVE_COUNT),
        )
        self.rule = events.Rule(
            self,
            "ObjectCreatedRule",
            description=f"Object Created under {props.input_prefix} of the data bucket -> trigger queue",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [props.bucket.bucket_name]},
                    "object": {"key": [{"prefix": props.input_prefix}]},
                },
            ),
        )
        self.rule.add_target(targets.SqsQueue(self.queue))

        created = python_function(
            self,
            code=props.code,
            handler=handler_string("trigger"),
            role_description="Trigger Lambda: starts data quality processing jobs",
            description="Starts one SageMaker Processing job per uploaded object version",
            timeout=Duration.seconds(TRIGGER_TIMEOUT),
            memory_size=MEMORY_SIZE,
            log_retention=props.log_retention,
            removal_policy=props.removal_policy,
            environment={
                "DATA_BUCKET": props.bucket.bucket_name,
                "INPUT_PREFIX": props.input_prefix,
                "OUTPUT_PREFIX": props.output_prefix,
                "BASELINE_PREFIX": props.baseline_prefix,
                "QUARANTINE_PREFIX": props.quarantine_prefix,
                "STAGING_PREFIX": props.staging_prefix,
                "METRICS_NAMESPACE": props.namespace,
                "JOB_PREFIX": props.job_prefix,
                "ROLE_ARN": props.job.role.role_arn,
                "IMAGE_URI": job.image.image_uri,
                "CODE_S3_URI": job.code.s3_uri,
                "CODE_VERSION": job.code.code_version,
                # INSTANCE_*, VOLUME_SIZE_GB, MAX_RUNTIME_SECONDS, PROCESSING_MODE and (when set) the row budget:
                # the contract writes them and the trigger reads them back (contract.JobSettings.from_env)
                **job.settings.to_env(),
                "KMS_KEY_ARN": props.key.key_arn,
                # the engine choice and the Spark job (infra/lambdas/trigger/spark.py), when Spark is on
                **({**props.spark.engine_env, **props.spark_env} if props.spark else {}),
            },
        )
        self.log_group, self.role, self.function = created.log_group, created.role, created.function
        self.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=BATCH_SIZE,
                max_concurrency=MAX_CONCURRENCY,
                report_batch_item_failures=True,
            )
        )
        # The event source grants consume rights, incl. sqs:ChangeMessageVisibility used by the handler to back off.
        # design.md Contract 4: HeadObject on <baseline_prefix><dataset>/baseline.json. ListBucket (limited by
        # s3:prefix) is meant to make a missing baseline a 404 instead of a 403; the handler still treats 403 as
        # "no baseline" (logged at ERROR as baseline-unreadable) because a 403 can also be a real denial (IAM, KMS,
        # bucket policy).
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="CheckBaseline",
                actions=["s3:GetObject"],
                resources=[props.bucket.arn_for_objects(f"{props.baseline_prefix}*/{BASELINE_FILE}")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListBaselines",
                actions=["s3:ListBucket"],
                resources=[props.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{props.baseline_prefix}*"]}},
            )
        )
        # design.md Contract 2: which key the event names (HeadObject of its version, raw then URL-decoded key), and
        # Contract 1: the server-side copy of that version (source read: GetObject + GetObjectVersion). ListBucket
        # (s3:prefix-limited) is meant to make a missing key a 404 instead of a 403; the handler still treats a 403
        # as "absent or denied, cannot tell": told once and retried (infra/lambdas/README.md).
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadInputVersions",
                actions=list(SOURCE_READ_ACTIONS),
                resources=[props.bucket.arn_for_objects(f"{props.input_prefix}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListInputPrefix",
                # ListBucketVersions: a folder batch's marker lists the folder's versions (ListObjectVersions with
                # Prefix=<input_prefix><dataset>/<folder>/, design.md Contract 5); s3:prefix limits both actions.
                actions=["s3:ListBucket", "s3:ListBucketVersions"],
                resources=[props.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{props.input_prefix}*"]}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteStagedCopies",
                actions=list(STAGING_WRITE_ACTIONS),
                resources=[props.bucket.arn_for_objects(f"{props.staging_prefix}*")],
            )
        )
        # SSE-KMS copy: decrypt the source, encrypt the copy (the bucket key). Only through S3 in this region.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="CopyWithDataKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[props.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}"}},
            )
        )
        # cloudwatch:PutMetricData has no resource-level permissions ("*" required); the condition pins the namespace.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="CountRefusedKeys",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": props.namespace}},
            )
        )
        self.refused_keys_metric = cw.Metric(
            namespace=props.namespace,
            metric_name=REFUSED_METRIC,
            statistic="Sum",
            period=Duration.seconds(REFUSED_PERIOD),
        )
        processing_jobs = stack.format_arn(
            service="sagemaker", resource="processing-job", resource_name=f"{props.job_prefix}-*"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="StartProcessingJobs",
                actions=["sagemaker:CreateProcessingJob", "sagemaker:AddTags"],
                resources=[processing_jobs],
            )
        )
        # Written by hand: Role.grant_pass_role omits the iam:PassedToService condition (FACTS.md section 6).
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PassJobRoleToSageMaker",
                actions=["iam:PassRole"],
                resources=[props.job.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
            )
        )
        if props.spark is not None:
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="PassSparkJobRoleToSageMaker",
                    actions=["iam:PassRole"],
                    resources=[props.spark.role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER_PRINCIPAL}},
                )
            )
        # VolumeKmsKeyId: SageMaker creates a grant on the key for the job's volume, on behalf of the caller.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="VolumeKeyGrant",
                actions=["kms:CreateGrant"],
                resources=[props.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="DescribeJobKey", actions=["kms:DescribeKey"], resources=[props.key.key_arn])
        )

    def send_alerts_to(self, topic: sns.ITopic, topic_key: kms.IKey) -> None:
        """One message per refused upload (issue 11 item 5), published by the function to ``topic``.

        The topic is KMS-encrypted: publishing needs kms:GenerateDataKey and kms:Decrypt on its key (the key policy
        delegates to IAM), as for :meth:`infra.job_metrics.JobMetrics.send_alerts_to`.
        """
        allow_alert_publishing(self.function, self.role, topic, topic_key, what="Refusals")
