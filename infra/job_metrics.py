"""From finished job to metrics: SageMaker job state change (terminal, our prefix) -> metrics Lambda -> CloudWatch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.processing_trigger import LAMBDA_RUNTIME

METRICS_NAMESPACE = "DataQualityPipeline"
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
METRICS_TIMEOUT = 60  # seconds
MEMORY_SIZE = 256  # MB
RETRY_ATTEMPTS = 2  # async-invoke retries (Lambda's maximum) before the event goes to the DLQ
MAX_EVENT_AGE = 6  # hours (Lambda's maximum for async events)
DLQ_RETENTION = 14  # days


@dataclass(frozen=True)
class JobMetricsProps:
    """Inputs of :class:`JobMetrics`.

    Attributes:
        bucket: the data bucket (the function reads ``<output_prefix>.../quality/metrics.json``).
        key: the bucket's KMS key.
        handler_dir: the metrics handler's folder (``infra/lambdas/metrics``).
        output_prefix / baseline_prefix / job_prefix: see :class:`infra.config.Settings`; the function promotes a
            batch's ``quality/profile.json`` to ``<baseline_prefix><dataset>/baseline.json`` (design.md Contract 4).
        namespace: CloudWatch namespace (design.md Contract 3).
        log_retention / removal_policy: of the function's log group.
    """

    bucket: s3.IBucket
    key: kms.IKey
    handler_dir: Path
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
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=props.log_retention, removal_policy=props.removal_policy
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Metrics Lambda: publishes data quality metrics of finished processing jobs",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=LAMBDA_RUNTIME,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(props.handler_dir)),
            role=self.role,
            timeout=Duration.seconds(METRICS_TIMEOUT),
            memory_size=MEMORY_SIZE,
            log_group=self.log_group,
            description="Publishes quality/metrics.json of finished processing jobs as CloudWatch metrics",
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
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadJobOutputs",
                actions=["s3:GetObject"],
                resources=[props.bucket.arn_for_objects(f"{props.output_prefix}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PromoteBaseline",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[props.bucket.arn_for_objects(f"{props.baseline_prefix}*")],
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
        self.role.add_to_policy(
            iam.PolicyStatement(sid="DecryptJobOutputs", actions=["kms:Decrypt"], resources=[props.key.key_arn])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="EncryptBaselines", actions=["kms:GenerateDataKey"], resources=[props.key.key_arn])
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
