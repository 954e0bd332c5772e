"""The data quality pipeline stack: composes the constructs, wires grants, outputs and cdk-nag acknowledgements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aws_cdk import CfnElement, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.code_bundle import CodeBundle, CodeBundleProps
from infra.config import LOG_RETENTION_CHOICES, Settings
from infra.dashboard import DashboardProps, PipelineDashboard
from infra.data_bucket import DataBucket, DataBucketProps
from infra.image import SklearnImage
from infra.job_metrics import METRICS_NAMESPACE, JobMetrics, JobMetricsProps
from infra.lambda_asset import LambdaAsset, LambdaAssetProps
from infra.nag import acknowledge_findings, acknowledgements, nag_arn_parts
from infra.processing_job import ProcessingJob, ProcessingJobProps
from infra.processing_trigger import ProcessingTrigger, ProcessingTriggerProps
from infra.quality_alarms import MonitoredFunction, QualityAlarms, QualityAlarmsProps
from infra.spark_image import SparkImage
from infra.spark_job import SparkJob, SparkJobProps, spark_acknowledgements, spark_trigger_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SourcePaths:
    """Where the stack finds code that it packages (defaults: this repository)."""

    processing_dir: Path = PROJECT_ROOT / "processing"
    contract_dir: Path = PROJECT_ROOT / "contract"  # the cross-part contract: in the job bundle and the Lambda asset
    lambdas_dir: Path = PROJECT_ROOT / "infra" / "lambdas"  # lambda_shared/, trigger/, metrics/: one asset
    bundle_staging_dir: Path | None = None
    lambda_staging_dir: Path | None = None


class DataQualityStack(Stack):
    """S3 upload -> SageMaker Processing data quality job -> metrics, alarms, SNS and a dashboard.

    Attributes:
        data / code / image / job / trigger / metrics / alarms / dashboard: the composed constructs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        paths: SourcePaths | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        paths = paths or SourcePaths()
        removal = RemovalPolicy.DESTROY if settings.destroy_on_delete else RemovalPolicy.RETAIN
        retention = _retention(settings.log_retention_days)

        self.data = DataBucket(
            self,
            "Data",
            props=DataBucketProps(
                removal_policy=removal, noncurrent_version_expiration_days=settings.noncurrent_version_expiration_days,
                staging_prefix=settings.staging_prefix, staging_expiration_days=settings.staging_expiration_days,
            ),
        )
        self.code = CodeBundle(
            self,
            "ProcessingCode",
            props=CodeBundleProps(source_dir=paths.processing_dir, staging_dir=paths.bundle_staging_dir,
                                  packages=(paths.contract_dir,)),
        )
        self.lambda_asset = LambdaAsset(
            self,
            "LambdaAsset",
            props=LambdaAssetProps(lambdas_dir=paths.lambdas_dir, contract_dir=paths.contract_dir,
                                   staging_dir=paths.lambda_staging_dir),
        )
        self.image = SklearnImage(self, "SklearnImage", version=settings.sklearn_image_version,
                                  pinned_uri=settings.sklearn_image_uri)
        self.job = ProcessingJob(
            self,
            "ProcessingJob",
            props=ProcessingJobProps(
                bucket=self.data.bucket,
                key=self.data.key,
                input_prefix=settings.input_prefix,
                output_prefix=settings.output_prefix,
                baseline_prefix=settings.baseline_prefix,
                quarantine_prefix=settings.quarantine_prefix,
                staging_prefix=settings.staging_prefix,
                job_prefix=settings.job_prefix,
                image=self.image,
                code=self.code,
                settings=settings.job,
                asset_kms_key_arn=settings.asset_kms_key_arn,
            ),
        )
        # The Spark engine's job: only when some dataset can run Spark (settings.engines).
        self.spark: SparkJob | None = None
        if settings.spark_enabled:
            self.spark_image = SparkImage(self, "SparkImage", version=settings.spark_image_version,
                                          py_version=settings.spark_py_version,
                                          container_version=settings.spark_container_version,
                                          pinned_uri=settings.spark_image_uri)
            self.spark = SparkJob(self, "SparkJob", props=SparkJobProps(
                bucket=self.data.bucket, key=self.data.key, staging_prefix=settings.staging_prefix,
                output_prefix=settings.output_prefix, quarantine_prefix=settings.quarantine_prefix,
                baseline_prefix=settings.baseline_prefix, job_prefix=settings.job_prefix,
                datasets=settings.spark_datasets, code=self.code, image=self.spark_image,
                network=settings.spark_network, subnet_ids=tuple(settings.spark_subnet_ids),
                security_group_ids=tuple(settings.spark_security_group_ids),
                asset_kms_key_arn=settings.asset_kms_key_arn, log_retention=retention, removal_policy=removal))
        self.trigger = ProcessingTrigger(
            self,
            "Trigger",
            props=ProcessingTriggerProps(
                bucket=self.data.bucket,
                key=self.data.key,
                job=self.job,
                code=self.lambda_asset.code,
                input_prefix=settings.input_prefix,
                output_prefix=settings.output_prefix,
                baseline_prefix=settings.baseline_prefix,
                quarantine_prefix=settings.quarantine_prefix,
                job_prefix=settings.job_prefix,
                staging_prefix=settings.staging_prefix,
                namespace=METRICS_NAMESPACE,
                log_retention=retention,
                removal_policy=removal,
                spark=self.spark,
                spark_env=spark_trigger_env(settings),
            ),
        )
        self.metrics = JobMetrics(
            self,
            "Metrics",
            props=JobMetricsProps(
                bucket=self.data.bucket,
                key=self.data.key,
                code=self.lambda_asset.code,
                output_prefix=settings.output_prefix,
                baseline_prefix=settings.baseline_prefix,
                job_prefix=settings.job_prefix,
                namespace=METRICS_NAMESPACE,
                log_retention=retention,
                removal_policy=removal,
            ),
        )
        # The key policy statement for events.amazonaws.com (added by the trigger rule's SQS target) also covers
        # EventBridge delivering to the metrics DLQ, which uses the same key.
        functions = [
            MonitoredFunction("TriggerFunction", self.trigger.function),
            MonitoredFunction("MetricsFunction", self.metrics.function),
        ]
        dlqs = {"TriggerDlq": self.trigger.dlq, "MetricsDlq": self.metrics.dlq}
        self.alarms = QualityAlarms(
            self,
            "Alarms",
            props=QualityAlarmsProps(
                namespace=METRICS_NAMESPACE,
                datasets=settings.datasets,
                dead_letter_queues=dlqs,
                functions=functions,
                alert_email=settings.alert_email,
                removal_policy=removal,
                refused_keys=self.trigger.refused_keys_metric,
            ),
        )
        self.metrics.send_alerts_to(self.alarms.topic, self.alarms.key)
        self.trigger.send_alerts_to(self.alarms.topic, self.alarms.key)
        self.dashboard = PipelineDashboard(
            self,
            "Dashboard",
            props=DashboardProps(
                namespace=METRICS_NAMESPACE,
                datasets=sorted(settings.datasets),
                queue=self.trigger.queue,
                dlqs=dlqs,
                functions=functions,
                alarms=self.alarms.all_alarms,
            ),
        )

        outputs = {
            "DataBucketName": (self.data.bucket.bucket_name, "Data bucket: upload to <input_prefix><dataset>/<file>"),
            "AlertTopicArn": (self.alarms.topic.topic_arn,
                              "SNS topic: alarm/OK notifications and one message per failed job or quarantined batch"),
            "TriggerQueueUrl": (self.trigger.queue.queue_url, "Queue buffering upload events for the trigger Lambda"),
            "TriggerDlqUrl": (self.trigger.dlq.queue_url, "Upload events that kept failing"),
            "MetricsDlqUrl": (self.metrics.dlq.queue_url,
                              "Job state-change events whose metrics could not be published"),
            "DashboardName": (self.dashboard.dashboard.dashboard_name, "CloudWatch dashboard"),
            "JobRoleArn": (self.job.role.role_arn, "Execution role of the processing jobs"),
            "TriggerFunctionName": (self.trigger.function.function_name, "Trigger Lambda"),
            "MetricsFunctionName": (self.metrics.function.function_name, "Metrics Lambda"),
            "CodeS3Uri": (self.code.s3_uri, "Processing code bundle (zip)"),
            "ImageUri": (self.image.image_uri, "SageMaker scikit-learn image"),
        }
        if self.spark is not None:
            outputs["SparkJobRoleArn"] = (self.spark.role.role_arn, "Execution role of the Spark processing jobs")
            outputs["SparkImageUri"] = (self.spark_image.image_uri, "SageMaker Spark processing image")
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)

        self.nag_acknowledgements = acknowledgements(
            input_prefix=settings.input_prefix,
            output_prefix=settings.output_prefix,
            baseline_prefix=settings.baseline_prefix,
            quarantine_prefix=settings.quarantine_prefix,
            staging_prefix=settings.staging_prefix,
            job_prefix=settings.job_prefix,
            data_bucket_ref=self.get_logical_id(cast(CfnElement, self.data.bucket.node.default_child)),  # the CfnBucket
            **nag_arn_parts(self),
        )
        if self.spark is not None:
            self.nag_acknowledgements += spark_acknowledgements(
                settings, data_bucket_ref=self.get_logical_id(cast(CfnElement, self.data.bucket.node.default_child)),
                **nag_arn_parts(self))
        acknowledge_findings(self, self.nag_acknowledgements)



def _retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a validated number of days (the enum lists the same values in the same order)."""
    members = [m for m in logs.RetentionDays if m.name != "INFINITE"]
    return dict(zip(LOG_RETENTION_CHOICES, members, strict=True))[days]
