"""The SageMaker Processing job's execution role and request settings (least privilege)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from contract import JobSettings
from infra.code_bundle import CodeBundle
from infra.image import SklearnImage

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
PROCESSING_METRICS_NAMESPACE = "/aws/sagemaker/ProcessingJobs"
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")


@dataclass(frozen=True)
class ProcessingJobProps:
    """Inputs of :class:`ProcessingJob`.

    Attributes:
        bucket: the data bucket (inputs and outputs).
        key: the bucket's KMS key, also used for job outputs and the job's volume.
        input_prefix: where uploads land (``input/``); the job never reads it: its data input is the staged copy.
        staging_prefix: the trigger's per-job copies of the event's object version (``staging/``), read by the job.
        output_prefix: the job writes only under it (e.g. ``output/``) and the quarantine prefix.
        baseline_prefix: dataset baselines (``baselines/``), read by the job (design.md Contract 4).
        quarantine_prefix: outputs of batches failing the quality gate (``quarantine/``), written by the job.
        job_prefix: job names start with ``<job_prefix>-``.
        image: the scikit-learn image.
        code: the processing code bundle.
        settings: the job's resources, ``PROCESSING_MODE`` and row budget (``contract.JobSettings``, validated
            there; the trigger passes them on with ``to_env()``).
        asset_kms_key_arn: the bootstrap assets bucket's KMS key when it is the user's own key
            (``cdk bootstrap --bootstrap-kms-key-id``): the role may decrypt the code bundle with it, through S3 only.
            ``None``: the AWS-managed S3 key (default bootstrap) or the key ``--bootstrap-customer-key`` creates,
            whose key policy already lets principals of the account use it through S3 (docs/infra.md).
    """

    bucket: s3.IBucket
    key: kms.IKey
    input_prefix: str
    output_prefix: str
    baseline_prefix: str
    quarantine_prefix: str
    job_prefix: str
    image: SklearnImage
    code: CodeBundle
    staging_prefix: str = "staging/"
    settings: JobSettings = field(default_factory=JobSettings)
    asset_kms_key_arn: str | None = None


class ProcessingJob(Construct):
    """The execution role a processing job runs as, plus the settings the trigger puts into each request.

    Attributes:
        role: the execution role (trusted by sagemaker.amazonaws.com only).
        props: the job settings (the trigger passes them on as environment variables).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: ProcessingJobProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                SAGEMAKER_PRINCIPAL,
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
            description="Execution role of the data quality processing jobs",
        )
        bucket = props.bucket
        # The job's inputs: its staged copy (design.md Contract 1: the trigger copies the event's object version to
        # <staging_prefix><dataset>/<job-name>/<file>) and its dataset's baseline. Never the input prefix itself,
        # whose current version may be a newer upload than the job's.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadInputObjects",
                actions=["s3:GetObject"],
                resources=[
                    bucket.arn_for_objects(f"{props.staging_prefix}*"),
                    bucket.arn_for_objects(f"{props.baseline_prefix}*"),
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListInputPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{props.staging_prefix}*", f"{props.baseline_prefix}*"]}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOutputObjects",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[
                    bucket.arn_for_objects(f"{props.output_prefix}*"),
                    bucket.arn_for_objects(f"{props.quarantine_prefix}*"),
                ],
            )
        )
        # The code asset: exactly its object (SageMaker lists the S3Prefix, so ListBucket limited to that key).
        asset = props.code.asset
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadCodeBundle",
                actions=["s3:GetObject"],
                resources=[f"arn:{stack.partition}:s3:::{asset.s3_bucket_name}/{asset.s3_object_key}"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListCodeBundle",
                actions=["s3:ListBucket"],
                resources=[f"arn:{stack.partition}:s3:::{asset.s3_bucket_name}"],
                conditions={"StringEquals": {"s3:prefix": [asset.s3_object_key]}},
            )
        )
        if props.asset_kms_key_arn:
            # The user's own bootstrap key: only to decrypt the code bundle object, only through S3 (the encryption
            # context is the object's ARN, or the bucket's with S3 Bucket Keys: S3 user guide "Encryption context").
            asset_bucket_arn = f"arn:{stack.partition}:s3:::{asset.s3_bucket_name}"
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="DecryptCodeBundle",
                    actions=["kms:Decrypt"],
                    resources=[props.asset_kms_key_arn],
                    conditions={
                        "StringEquals": {
                            "kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}",
                            "kms:EncryptionContext:aws:s3:arn": [
                                asset_bucket_arn, f"{asset_bucket_arn}/{asset.s3_object_key}",
                            ],
                        }
                    },
                )
            )
        # Inputs are SSE-KMS; outputs are encrypted with OutputConfig.KmsKeyId and the volume with VolumeKmsKeyId.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="UseDataKey",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[props.key.key_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="VolumeKeyGrant",
                actions=["kms:CreateGrant"],
                resources=[props.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        log_group_arn = stack.format_arn(service="logs", resource="log-group", resource_name=PROCESSING_LOG_GROUP,
                                         arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ProcessingJobLogGroup",
                actions=["logs:CreateLogGroup", "logs:DescribeLogStreams"],
                resources=[log_group_arn, f"{log_group_arn}:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ProcessingJobLogStreams",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{log_group_arn}:log-stream:{props.job_prefix}-*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PullImage",
                actions=list(ECR_PULL_ACTIONS),
                resources=[props.image.repository_arn],
            )
        )
        # ecr:GetAuthorizationToken has no resource-level permissions: IAM requires Resource "*".
        self.role.add_to_policy(
            iam.PolicyStatement(sid="EcrAuthorizationToken", actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        # cloudwatch:PutMetricData has no resource-level permissions ("*" required); the condition pins the namespace
        # to SageMaker's own processing-job instance metrics.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ProcessingJobInstanceMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": PROCESSING_METRICS_NAMESPACE}},
            )
        )

