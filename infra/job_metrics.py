"""From finished job to metrics: SageMaker job state change (terminal, our prefix) -> metrics Lambda -> CloudWatch."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

import contract
from infra.lambda_asset import handler_string
from infra.python_function import allow_alert_publishing, python_function

METRICS_NAMESPACE = contract.METRICS_NAMESPACE
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
METRICS_TIMEOUT = 60  # seconds
MEMORY_SIZE = 256  # MB
RETRY_ATTEMPTS = 2  # async-invoke retries (Lambda's maximum) before the event goes to the DLQ
MAX_EVENT_AGE = 6  # hours (Lambda's maximum for async events)
DLQ_RETENTION = 14  # days
# The files and markers the function reads and writes (contract/__init__.py; design.md Contracts 3 and 4).
QUALITY_FOLDER = contract.QUALITY
QUALITY_FILES_READ = (contract.METRICS_FILE, contract.PROFILE_FILE)
BASELINE_FILE = contract.BASELINE_FILE
PUBLISHED_MARKER = contract.PUBLISHED_MARKER
SUCCESS_MARKER = contract.SUCCESS_MARKER
SUCCESS_FOLDERS = contract.SUCCESS_FOLDERS


@dataclass(frozen=True)
class JobMetricsProps:
    """Inputs of :class:`JobMetrics`.

    Attributes:
        bucket: the data bucket (the function reads ``<output_prefix>.../quality/metrics.json``).
        key: the bucket's KMS key.
        code: the Lambda asset (infra/lambda_asset.py); the function runs ``metrics.handler.handler``.
        output_prefix / baseline_prefix / job_prefix: see :class:`infra.config.Settings`; the function promotes a
            batch's ``quality/profile.json`` to ``<baseline_prefix><dataset>/baseline.json`` (design.md Contract 4).
        namespace: CloudWatch namespace (design.md Contract 3).
        log_retention / removal_policy: of the function's log group.
    """

    bucket: s3.IBucket
    key: kms.IKey
    code: lambda_.Code
    output_prefix: str
    baseline_prefix: str
    job_prefix: str
    namespace: str = METRICS_NAMESPACE
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN


class JobMetrics(Construct):
    """Publishes each finished job's quality metrics (and its outcome) as CloudWatch custom metrics.

    Attributes:
        rule: EventBridge rule on terminal "SageMaker Processing Job State Change" events of our jobs.
        function: the metrics Lambda.
        dlq: receives events whose invocation kept failing (async retries exhausted or delivery failed).
        log_group: the function's log group.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: JobMetricsProps) -> None:
        super().__init__(scope, construct_id)
        self.namespace = props.namespace
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=props.key,
            enforce_ssl=True,
            retention_period=Duration.days(DLQ_RETENTION),
        )
        created = python_function(
            self,
            code=props.code,
            handler=handler_string("metrics"),
            role_description="Metrics Lambda: publishes data quality metrics of finished processing jobs",
            description="Publishes quality/metrics.json of finished processing jobs as CloudWatch metrics",
            timeout=Duration.seconds(METRICS_TIMEOUT),
            memory_size=MEMORY_SIZE,
            log_retention=props.log_retention,
            removal_policy=props.removal_policy,
            environment={
                "NAMESPACE": props.namespace,
                "JOB_PREFIX": props.job_prefix,
                "DATA_BUCKET": props.bucket.bucket_name,
                "OUTPUT_PREFIX": props.output_prefix,
                "BASELINE_PREFIX": props.baseline_prefix,
            },
            dead_letter_queue=self.dlq,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=Duration.hours(MAX_EVENT_AGE),
        )
        self.log_group, self.role, self.function = created.log_group, created.role, created.function
        # Exactly what the handler reads and writes (design.md Contract 4): the finished job's quality/metrics.json
        # and quality/profile.json, and the dataset's baseline key (a conditional PutObject: no GetObject or
        # ListBucket needed). Without ListBucket a missing metrics.json is AccessDenied: also MetricsUnavailable.
        quality = f"{props.output_prefix}*/{QUALITY_FOLDER}/"
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadJobOutputs",
                actions=["s3:GetObject"],
                resources=[props.bucket.arn_for_objects(f"{quality}{name}") for name in QUALITY_FILES_READ],
            )
        )
        # Publish once (HeadObject = s3:GetObject, then a conditional put) and the _SUCCESS markers of passed batches.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishOnceMarker",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[props.bucket.arn_for_objects(f"{quality}{PUBLISHED_MARKER}")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteSuccessMarkers",
                actions=["s3:PutObject"],
                resources=[props.bucket.arn_for_objects(f"{props.output_prefix}*/{folder}/{SUCCESS_MARKER}")
                           for folder in SUCCESS_FOLDERS],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PromoteBaseline",
                actions=["s3:PutObject"],
                resources=[props.bucket.arn_for_objects(f"{props.baseline_prefix}*/{BASELINE_FILE}")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="DecryptJobOutputs", actions=["kms:Decrypt"], resources=[props.key.key_arn])
        )
        self.role.add_to_policy(
            # SSE-KMS puts: the baseline, the _SUCCESS and publish-once markers
            iam.PolicyStatement(sid="EncryptBaselines", actions=["kms:GenerateDataKey"], resources=[props.key.key_arn])
        )
        # The documented state-change event carries neither Environment (input URI and version) nor ExitMessage (the
        # container's message): the handler reads them with DescribeProcessingJob, on this stack's jobs only.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="DescribeFinishedJobs",
                actions=["sagemaker:DescribeProcessingJob"],
                resources=[Stack.of(self).format_arn(service="sagemaker", resource="processing-job",
                                                     resource_name=f"{props.job_prefix}-*")],
            )
        )
        # cloudwatch:PutMetricData has no resource-level permissions ("*" required); the condition pins the namespace.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishQualityMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": props.namespace}},
            )
        )
        self.rule = events.Rule(
            self,
            "JobStateChangeRule",
            description=f"Terminal state changes of {props.job_prefix}-* processing jobs -> metrics Lambda",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Processing Job State Change"],
                detail={
                    "ProcessingJobStatus": list(TERMINAL_STATUSES),
                    "ProcessingJobName": [{"prefix": f"{props.job_prefix}-"}],
                },
            ),
        )
        self.rule.add_target(
            targets.LambdaFunction(
                self.function,
                dead_letter_queue=self.dlq,
                retry_attempts=RETRY_ATTEMPTS,
                max_event_age=Duration.hours(MAX_EVENT_AGE),
            )
        )

    def send_alerts_to(self, topic: sns.ITopic, topic_key: kms.IKey) -> None:
        """One notification per failed/stopped job and per quarantined batch, published by the function to ``topic``.

        Alarms notify on state transitions only (an alarm already in ALARM sends nothing for a second failure), so the
        function sends its own message per bad job. The topic is KMS-encrypted: publishing needs
        kms:GenerateDataKey and kms:Decrypt on its key (the key policy delegates to IAM).
        """
        allow_alert_publishing(self.function, self.role, topic, topic_key, what="Alerts")
