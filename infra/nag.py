"""cdk-nag (3.x) acknowledgements: each names one finding on one construct and says why it is acceptable."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, Stack, Token, Validations

import contract


@dataclass(frozen=True)
class Ack:
    """One acknowledged finding: construct path below the stack, finding id, and the specific reason."""

    path: str
    finding: str
    reason: str


_IAM5 = "AwsSolutions-IAM5"


def acknowledgements(
    *, input_prefix: str, output_prefix: str, baseline_prefix: str, quarantine_prefix: str, job_prefix: str,
    data_bucket_ref: str, staging_prefix: str = "staging/", partition: str = "<AWS::Partition>",
    region: str = "<AWS::Region>",
    account: str = "<AWS::AccountId>",
) -> tuple[Ack, ...]:
    """The acknowledged findings for the given settings (finding ids embed the prefixes and CFN references).

    Args:
        input_prefix / output_prefix / baseline_prefix / quarantine_prefix / job_prefix / staging_prefix: from
            :class:`infra.config.Settings`.
        data_bucket_ref: the data bucket's logical ID as cdk-nag prints it (``<LogicalId.Arn>``).
        partition / region / account: as cdk-nag prints them in ARNs: the ``<AWS::...>`` pseudo parameters for an
            environment-agnostic stack, literals when the stack has a concrete environment (what `cdk deploy`
            into a real account gives, since the CLI sets CDK_DEFAULT_ACCOUNT/REGION): see :func:`nag_arn_parts`.
    """
    logs_group = f"arn:{partition}:logs:{region}:{account}:log-group:/aws/sagemaker/ProcessingJobs"
    return (
        Ack(
            "ProcessingJob/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{staging_prefix}*]",
            f"The job reads its staged copy <staging_prefix><dataset>/<job-name>/<file> of the uploaded object version "
            "(design.md Contract 1), whose name is known only at run time; s3:GetObject is scoped to "
            f"'{staging_prefix}' and never reaches the input prefix.",
        ),
        Ack(
            "ProcessingJob/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{output_prefix}*]",
            "The job writes <output_prefix><dataset>/<job-name>/... whose names are generated per run; s3:PutObject "
            f"is limited to '{output_prefix}', which never overlaps the trigger's input prefix.",
        ),
        Ack(
            "ProcessingJob/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{baseline_prefix}*]",
            f"The job reads its dataset's baseline <baseline_prefix><dataset>/baseline.json (design.md Contract 4); "
            f"s3:GetObject is limited to '{baseline_prefix}' (read only).",
        ),
        Ack(
            "ProcessingJob/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{quarantine_prefix}*]",
            f"Batches failing the quality gate are written to <quarantine_prefix><dataset>/<job-name>/ with per-run "
            f"names; s3:PutObject is limited to '{quarantine_prefix}', which never overlaps the input prefix.",
        ),
        Ack(
            "ProcessingJob/Role",
            f"{_IAM5}[Resource::{logs_group}:*]",
            "SageMaker writes job logs to the fixed log group /aws/sagemaker/ProcessingJobs; the ':*' form of the "
            "group ARN is what logs:CreateLogGroup/DescribeLogStreams authorize against. No other log group is "
            "reachable.",
        ),
        Ack(
            "ProcessingJob/Role",
            f"{_IAM5}[Resource::{logs_group}:log-stream:{job_prefix}-*]",
            f"Log streams are named <job-name>/algo-N by SageMaker; job names start with '{job_prefix}-', so streams "
            "of other jobs in the account are excluded.",
        ),
        Ack(
            "ProcessingJob/Role",
            f"{_IAM5}[Resource::*]",
            "Two actions without resource-level permissions: ecr:GetAuthorizationToken (IAM requires '*'; image layer "
            "pulls are limited to the sagemaker-scikit-learn repository) and cloudwatch:PutMetricData, restricted by "
            "the cloudwatch:namespace condition to /aws/sagemaker/ProcessingJobs.",
        ),
        *(
            Ack(
                "Metrics/Role",
                f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{output_prefix}*/quality/{name}]",
                f"The metrics Lambda reads <output_prefix><dataset>/<job-name>/quality/{name} of whichever job "
                f"finished (dataset and job name are known only at run time); s3:GetObject only, on that file name "
                f"under '{output_prefix}'.",
            )
            for name in (contract.METRICS_FILE, contract.PROFILE_FILE)
        ),
        Ack(
            "Metrics/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{output_prefix}*/quality/_metrics_published]",
            f"The metrics Lambda's publish-once marker <output_prefix><dataset>/<job-name>/quality/_metrics_published "
            f"of whichever job finished: s3:GetObject (HeadObject) and a conditional s3:PutObject on that one file "
            f"name under '{output_prefix}'.",
        ),
        *(
            Ack(
                "Metrics/Role",
                f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{output_prefix}*/{folder}/_SUCCESS]",
                "The metrics Lambda writes the empty _SUCCESS marker into "
                f"<output_prefix><dataset>/<job-name>/{folder}/ after a passed/warned job finished "
                "(design.md Contract 4); s3:PutObject only, on that file name "
                f"under '{output_prefix}'.",
            )
            for folder in ("cleaned", "transformed")
        ),
        Ack(
            "Metrics/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{baseline_prefix}*/baseline.json]",
            f"The metrics Lambda promotes a batch profile to <baseline_prefix><dataset>/baseline.json when none exists "
            f"(design.md Contract 4); s3:PutObject only, on baseline.json keys under '{baseline_prefix}', which never "
            f"overlaps the input prefix.",
        ),
        Ack(
            "Trigger/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{baseline_prefix}*/baseline.json]",
            "The trigger checks (HeadObject) whether <baseline_prefix><dataset>/baseline.json exists before starting "
            f"a job; read-only s3:GetObject on baseline.json keys under '{baseline_prefix}'.",
        ),
        Ack(
            "Trigger/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{input_prefix}*]",
            "The trigger asks S3 which key an event names (HeadObject of the event's version) and copies that "
            f"version: s3:GetObject and s3:GetObjectVersion on uploads under '{input_prefix}', whose keys are known "
            "only at run time; read only.",
        ),
        Ack(
            "Trigger/Role",
            f"{_IAM5}[Resource::<{data_bucket_ref}.Arn>/{staging_prefix}*]",
            "The trigger writes each job's copy <staging_prefix><dataset>/<job-name>/<file> (CopyObject or a "
            f"multipart copy): s3:PutObject and s3:AbortMultipartUpload on '{staging_prefix}' only, which overlaps "
            "no other prefix.",
        ),
        Ack(
            "Trigger/Role",
            f"{_IAM5}[Resource::*]",
            "cloudwatch:PutMetricData (the KeyRefused count) has no resource-level permissions; the "
            "cloudwatch:namespace condition limits it to the stack's DataQualityPipeline namespace.",
        ),
        Ack(
            "Metrics/Role",
            f"{_IAM5}[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; the cloudwatch:namespace condition limits it "
            "to the DataQualityPipeline namespace.",
        ),
        Ack(
            "Trigger/Role",
            f"{_IAM5}[Resource::arn:{partition}:sagemaker:{region}:{account}:processing-job/{job_prefix}-*]",
            f"Job names are derived per uploaded object version; CreateProcessingJob and AddTags are limited to jobs "
            f"named '{job_prefix}-*' in this account and region (iam:PassRole separately limited to the job role).",
        ),
        Ack(
            "Metrics/Role",
            f"{_IAM5}[Resource::arn:{partition}:sagemaker:{region}:{account}:processing-job/{job_prefix}-*]",
            f"The metrics Lambda reads the finished job's Environment and ExitMessage with DescribeProcessingJob (the "
            f"state-change event lacks them); read only, limited to jobs named '{job_prefix}-*' in this account and "
            f"region.",
        ),
    )


def nag_arn_parts(stack: Stack) -> dict[str, str]:
    """Partition, region and account of ``stack`` as they appear in cdk-nag finding ids."""

    def shown(value: str, pseudo: str) -> str:
        return f"<{pseudo}>" if Token.is_unresolved(value) else value

    return {
        "partition": shown(stack.partition, "AWS::Partition"),
        "region": shown(stack.region, "AWS::Region"),
        "account": shown(stack.account, "AWS::AccountId"),
    }


def acknowledge_findings(stack: Stack, acks: tuple[Ack, ...]) -> None:
    """Apply ``acks`` to the constructs of ``stack`` (a missing path is a bug: raise)."""
    for ack in acks:
        construct = stack.node.find_child(ack.path.split("/")[0])
        for part in ack.path.split("/")[1:]:
            construct = construct.node.find_child(part)
        Validations.of(construct).acknowledge(Acknowledgment(id=ack.finding, reason=ack.reason))
