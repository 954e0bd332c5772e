"""The Spark engine's job on SageMaker Processing (issue 13 item 2): the prebuilt Spark image, resolved offline; the
entry script asset; the network (a VPC of private isolated subnets with an S3 gateway endpoint, no internet); and the
Spark job's own least-privilege execution role. Synthesized only when some dataset can run Spark (infra/config.py
``engines``).

Why a role of its own: the default engine's job never calls AWS itself (network isolation; SageMaker copies its
inputs and outputs), while the Spark job's code reads and writes S3 directly from every instance (EMRFS) and runs in a
VPC (ENI permissions). Keeping those grants off the default engine's role keeps that role as small as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import ArnFormat, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.code_bundle import CodeBundle
from infra.nag import Ack
from infra.processing_job import (
    ECR_PULL_ACTIONS,
    PROCESSING_LOG_GROUP,
    PROCESSING_METRICS_NAMESPACE,
    SAGEMAKER_PRINCIPAL,
)
from infra.spark_image import SparkImage

if TYPE_CHECKING:  # pragma: no cover
    from infra.config import Settings

ENTRY_SCRIPT = Path(__file__).resolve().parent.parent / "processing" / "spark" / "entry.py"
#: The ec2 actions SageMaker needs on the execution role to attach a VPC job's network interfaces (SageMaker
#: developer guide, "CreateProcessingJob API: Execution Role Permissions", VPC variant: Resource "*").
VPC_ACTIONS = ("ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
               "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
               "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups")
#: What Spark (EMRFS) does with S3 objects: read, write (multipart too), and rename = copy + delete (the engine moves
#: its part files into place and a failed batch's data into the quarantine).
S3_WRITE_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject",
                    "s3:DeleteObject")


@dataclass(frozen=True)
class SparkJobProps:
    """Inputs of :class:`SparkJob`.

    Attributes:
        bucket / key: the data bucket and its KMS key (SSE-KMS with S3 Bucket Keys: the encryption context of S3's
            calls to KMS is the bucket ARN).
        staging_prefix / output_prefix / quarantine_prefix / baseline_prefix / job_prefix: as for the default job.
        datasets: the datasets that can run Spark (their staging folders are readable), or ``None`` for every
            dataset (the stack-wide engine is spark or auto).
        code: the processing code bundle (the job's py-files).
        image: the Spark image.
        network: ``vpc`` (a VPC of the stack), ``existing`` (``subnet_ids`` and ``security_group_ids`` given) or
            ``open`` (no VPC; only with a written reason, checked by infra/config.py).
        asset_kms_key_arn: the bootstrap assets bucket's own KMS key, if any (as :class:`ProcessingJobProps`).
        log_retention / removal_policy: of the VPC flow log's log group.
    """

    bucket: s3.IBucket
    key: kms.IKey
    staging_prefix: str
    output_prefix: str
    quarantine_prefix: str
    baseline_prefix: str
    job_prefix: str
    datasets: tuple[str, ...] | None
    code: CodeBundle
    image: SparkImage
    network: str = "vpc"
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    asset_kms_key_arn: str | None = None
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    removal_policy: RemovalPolicy = RemovalPolicy.RETAIN


class SparkNetwork(Construct):
    """A VPC for the Spark jobs: two private isolated subnets (no NAT, no internet gateway), an S3 gateway endpoint
    whose policy admits only the data bucket and the code assets bucket, a flow log, and a security group allowing
    only traffic among its members (the YARN cluster of one job) plus HTTPS out (which, with no route but the S3
    endpoint's prefix list, reaches only S3).

    Attributes:
        vpc / security_group / endpoint / subnet_ids.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.IBucket, assets_bucket_name: str,
                 log_retention: logs.RetentionDays, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.vpc = ec2.Vpc(
            self, "Vpc", max_azs=2, nat_gateways=0,
            # The default security group is never used; CDK's feature flag would strip its rules with a custom
            # resource (a Lambda function): jobs get the security group below.
            restrict_default_security_group=False,
            subnet_configuration=[ec2.SubnetConfiguration(name="Jobs", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                                                          cidr_mask=20)])
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=log_retention, removal_policy=removal_policy)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                              traffic_type=ec2.FlowLogTrafficType.ALL)
        self.endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3,
            subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
        # The endpoint admits requests for our buckets only (SageMaker downloads the job's inputs through it; the job
        # reads and writes the data bucket): an exfiltration path to other buckets is closed even for a principal
        # allowed elsewhere. Whether the Spark image calls S3 for anything else (none found) stays unverified.
        assets_arn = f"arn:{stack.partition}:s3:::{assets_bucket_name}"
        self.endpoint.add_to_policy(iam.PolicyStatement(
            sid="OurBucketsOnly", principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                     "s3:ListMultipartUploadParts", "s3:ListBucket", "s3:GetBucketLocation"],
            resources=[bucket.bucket_arn, bucket.arn_for_objects("*"), assets_arn, f"{assets_arn}/*"]))
        self.security_group = ec2.SecurityGroup(
            self, "JobSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Spark processing jobs: traffic among the instances of a job (YARN, Spark) and HTTPS to S3")
        self.security_group.connections.allow_internally(ec2.Port.all_traffic(),
                                                         "instances of a Spark job talk to each other (YARN)")
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443),
                                            "HTTPS: with no internet route, only the S3 gateway endpoint answers")
        self.subnet_ids = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids


class SparkJob(Construct):
    """The Spark job's execution role, entry script asset and network.

    Attributes:
        role: the execution role (trusted by sagemaker.amazonaws.com from this account only).
        entry: the entry script asset (``processing/spark/entry.py``: the job's ``code`` input).
        network: the stack's VPC, or None (``existing`` / ``open``).
        subnet_ids / security_group_ids: the job's VpcConfig (empty: none).
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: SparkJobProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.props = props
        self.entry = s3_assets.Asset(self, "EntryScript", path=str(ENTRY_SCRIPT))
        self.network: SparkNetwork | None = None
        self.subnet_ids: list[str] = list(props.subnet_ids)
        self.security_group_ids: list[str] = list(props.security_group_ids)
        if props.network == "vpc":
            self.network = SparkNetwork(self, "Network", bucket=props.bucket,
                                        assets_bucket_name=props.code.asset.s3_bucket_name,
                                        log_retention=props.log_retention, removal_policy=props.removal_policy)
            self.subnet_ids = list(self.network.subnet_ids)
            self.security_group_ids = [self.network.security_group.security_group_id]
        self.role = iam.Role(
            self, "Role",
            assumed_by=iam.ServicePrincipal(SAGEMAKER_PRINCIPAL,
                                            conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
            description="Execution role of the Spark data quality processing jobs")
        bucket = props.bucket
        staging = ([f"{props.staging_prefix}{d}/*" for d in props.datasets] if props.datasets is not None
                   else [f"{props.staging_prefix}*"])
        # Read: the batch's staged objects and its configuration.json (beside them), and the dataset's baseline.
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadStagedBatches", actions=["s3:GetObject"],
            resources=[*(bucket.arn_for_objects(p) for p in staging),
                       bucket.arn_for_objects(f"{props.baseline_prefix}*")]))
        # Write: the job's outputs and quarantine (EMRFS renames are copy + delete; multipart uploads).
        self.role.add_to_policy(iam.PolicyStatement(
            sid="WriteOutputs", actions=list(S3_WRITE_ACTIONS),
            resources=[bucket.arn_for_objects(f"{props.output_prefix}*"),
                       bucket.arn_for_objects(f"{props.quarantine_prefix}*")]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ListOwnPrefixes", actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [*staging, f"{props.baseline_prefix}*", f"{props.output_prefix}*",
                                                     f"{props.quarantine_prefix}*"]}}))
        # SageMaker downloads the code inputs with this role: exactly the entry script and the code bundle objects.
        assets = [(self.entry.s3_bucket_name, self.entry.s3_object_key),
                  (props.code.asset.s3_bucket_name, props.code.asset.s3_object_key)]
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadCodeAssets", actions=["s3:GetObject"],
            resources=[f"arn:{stack.partition}:s3:::{b}/{k}" for b, k in assets]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ListCodeAssets", actions=["s3:ListBucket"],
            resources=[f"arn:{stack.partition}:s3:::{props.code.asset.s3_bucket_name}"],
            conditions={"StringEquals": {"s3:prefix": [k for _, k in assets]}}))
        if props.asset_kms_key_arn:
            asset_bucket_arn = f"arn:{stack.partition}:s3:::{props.code.asset.s3_bucket_name}"
            self.role.add_to_policy(iam.PolicyStatement(
                sid="DecryptCodeAssets", actions=["kms:Decrypt"], resources=[props.asset_kms_key_arn],
                conditions={"StringEquals": {
                    "kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}",
                    "kms:EncryptionContext:aws:s3:arn": [asset_bucket_arn,
                                                         *(f"{asset_bucket_arn}/{k}" for _, k in assets)]}}))
        # The data key through S3 only, for this bucket only (S3 Bucket Keys: the context is the bucket ARN).
        self.role.add_to_policy(iam.PolicyStatement(
            sid="UseDataKeyViaS3", actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[props.key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.{stack.url_suffix}",
                                         "kms:EncryptionContext:aws:s3:arn": bucket.bucket_arn}}))
        self.role.add_to_policy(iam.PolicyStatement(sid="DescribeDataKey", actions=["kms:DescribeKey"],
                                                    resources=[props.key.key_arn]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="VolumeKeyGrant", actions=["kms:CreateGrant"], resources=[props.key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))
        log_group_arn = stack.format_arn(service="logs", resource="log-group", resource_name=PROCESSING_LOG_GROUP,
                                         arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ProcessingJobLogGroup", actions=["logs:CreateLogGroup", "logs:DescribeLogStreams"],
            resources=[log_group_arn, f"{log_group_arn}:*"]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ProcessingJobLogStreams", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[f"{log_group_arn}:log-stream:{props.job_prefix}-*"]))
        self.role.add_to_policy(iam.PolicyStatement(sid="PullImage", actions=list(ECR_PULL_ACTIONS),
                                                    resources=[props.image.repository_arn]))
        # No resource-level permissions for these two: IAM requires "*".
        self.role.add_to_policy(iam.PolicyStatement(sid="EcrAuthorizationToken",
                                                    actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ProcessingJobInstanceMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": PROCESSING_METRICS_NAMESPACE}}))
        if props.network != "open":
            # SageMaker attaches the job's network interfaces with this role. The Describe* actions have no
            # resource-level permissions; for the Create/Delete actions AWS documents only Resource "*" for SageMaker
            # jobs (which ENI, subnet and security-group resources each call is authorized against is not
            # documented), so no narrower resource or condition is claimed here.
            self.role.add_to_policy(iam.PolicyStatement(sid="JobNetworkInterfaces", actions=list(VPC_ACTIONS),
                                                        resources=["*"]))

    @property
    def engine_env(self) -> dict[str, str]:
        """The trigger's Spark variables that come from this construct (infra/lambdas/trigger/spark.py)."""
        return {
            "SPARK_IMAGE_URI": self.props.image.image_uri,
            "SPARK_ROLE_ARN": self.role.role_arn,
            "SPARK_ENTRY_S3_URI": self.entry.s3_object_url,
            "SPARK_SUBNET_IDS": Fn.join(",", self.subnet_ids) if self.subnet_ids else "",
            "SPARK_SECURITY_GROUP_IDS": Fn.join(",", self.security_group_ids) if self.security_group_ids else "",
        }


def spark_trigger_env(settings: Settings) -> dict[str, str]:
    """The trigger's settings-born Spark variables (the construct adds image, role, entry script and network):
    nothing when no dataset can run Spark, so such a stack's trigger is exactly as before."""
    if not settings.spark_enabled:
        return {}
    return {
        "ENGINES": json.dumps(dict(settings.engines), separators=(",", ":"), sort_keys=True),
        "SPARK_INSTANCE_TYPE": settings.spark_instance_type,
        "SPARK_INSTANCE_COUNT": str(settings.spark_instance_count),
        "SPARK_MIN_INPUT_BYTES": str(settings.spark_min_input_bytes),
        "SPARK_CONFIGURATION": json.dumps(settings.spark_configuration, separators=(",", ":"), sort_keys=True),
    }


def spark_acknowledgements(settings: Settings, *, data_bucket_ref: str, partition: str, region: str,
                           account: str) -> tuple[Ack, ...]:
    """The cdk-nag findings of the Spark job, each with its reason (as :func:`infra.nag.acknowledgements`)."""
    role = "SparkJob/Role"
    iam5 = "AwsSolutions-IAM5"
    bucket = f"<{data_bucket_ref}.Arn>"
    logs_group = f"arn:{partition}:logs:{region}:{account}:log-group:{PROCESSING_LOG_GROUP}"
    datasets = settings.spark_datasets
    staging = ([f"{settings.staging_prefix}{d}/*" for d in datasets] if datasets is not None
               else [f"{settings.staging_prefix}*"])
    return (
        *(Ack(role, f"{iam5}[Resource::{bucket}/{prefix}]",
              f"A Spark job reads the batch staged for it under {prefix[:-1]}<job-name>/ (and its configuration.json "
              "beside it), names known only at run time; s3:GetObject only, limited to the staging folder of a "
              "dataset that may run Spark.") for prefix in staging),
        Ack(role, f"{iam5}[Resource::{bucket}/{settings.baseline_prefix}*]",
            f"A Spark job reads its dataset's baseline <baseline_prefix><dataset>/baseline.json (design.md Contract "
            f"4); s3:GetObject only, limited to '{settings.baseline_prefix}'."),
        Ack(role, f"{iam5}[Resource::{bucket}/{settings.output_prefix}*]",
            "A Spark job writes its outputs to <output_prefix><dataset>/<job-name>/ itself (EMRFS, from every "
            "instance): put, multipart, and the get + delete of a rename (part files moved into place); limited to "
            f"'{settings.output_prefix}', which never overlaps the input prefix."),
        Ack(role, f"{iam5}[Resource::{bucket}/{settings.quarantine_prefix}*]",
            "A Spark job moves a batch failing the quality gate to <quarantine_prefix><dataset>/<job-name>/ itself; "
            f"limited to '{settings.quarantine_prefix}', which never overlaps the input prefix."),
        Ack(role, f"{iam5}[Resource::{logs_group}:*]",
            "SageMaker writes job logs to the fixed log group /aws/sagemaker/ProcessingJobs; the ':*' form of the "
            "group ARN is what logs:CreateLogGroup/DescribeLogStreams authorize against."),
        Ack(role, f"{iam5}[Resource::{logs_group}:log-stream:{settings.job_prefix}-*]",
            f"Log streams are named <job-name>/algo-N by SageMaker; job names start with '{settings.job_prefix}-'."),
        Ack(role, f"{iam5}[Resource::*]",
            "Actions without resource-level permissions: ecr:GetAuthorizationToken (image layer pulls are limited "
            "to the sagemaker-spark-processing repository), cloudwatch:PutMetricData (condition: namespace "
            "/aws/sagemaker/ProcessingJobs), and the ec2 network-interface actions SageMaker performs with this "
            "role to attach a VPC job's ENIs, for which AWS documents Resource '*' (the Describe* actions have no "
            "resource-level permissions)."),
    )
