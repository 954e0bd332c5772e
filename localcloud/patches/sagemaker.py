"""SageMaker processing jobs: unique names, InProgress at start, the whole request kept, the instance quota.

:func:`patch_sagemaker_processing`: moto accepts duplicate names, completes jobs at once, drops Environment and has
no instance quota (:data:`JOB_QUOTAS`).
"""

from __future__ import annotations

import json

from localcloud.clock import CLOCK
from localcloud.endpoints import access_key_of, role_of_access_key
from localcloud.patches.registry import once, replace
from localcloud.service_auth import pass_role_check

# The CreateProcessingJob requests as sent, by job name.
PROCESSING_JOB_REQUESTS: dict[str, dict] = {}
# Processing-instance quotas, instance type -> instances ("ml.<type> for processing job usage"); a type not listed is
# unlimited. Set by LocalCloud(job_quota=...); CreateProcessingJob beyond it raises ResourceLimitExceeded.
JOB_QUOTAS: dict[str, int] = {}
# Statuses that hold processing instances (count against the quota).
ACTIVE_JOB_STATUSES = ("InProgress", "Stopping")


# --------------------------------------------------------------------------- SageMaker


def patch_sagemaker_processing() -> None:
    """CreateProcessingJob: duplicate names refused (ResourceInUse), jobs start InProgress, the whole
    request (Environment, ProcessingResources ...) is kept and described."""
    if not once("sagemaker_processing"):
        return
    from moto.sagemaker.exceptions import ResourceInUseException
    from moto.sagemaker.models import FakeProcessingJob, SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    original_create = SageMakerModelBackend.create_processing_job

    def create_processing_job(self, **kwargs):
        name = kwargs["processing_job_name"]
        if name in self.processing_jobs:
            arn = FakeProcessingJob.arn_formatter(name, self.account_id, self.region_name)
            raise ResourceInUseException(
                message=f"Processing job names must be unique within an AWS account and region, "
                f"and a processing job with this name already exists ({arn})"
            )
        request = kwargs.pop("_request", None) or {}
        _check_pass_role(self, kwargs.pop("_caller_role", None), request.get("RoleArn") or kwargs.get("role_arn"))
        _check_job_quota(self, request)
        job = original_create(self, **kwargs)
        now = CLOCK.utcnow_naive()
        job.processing_job_status = "InProgress"
        job.processing_end_time = None
        job.processing_start_time = now
        job.environment = request.get("Environment")
        job.processing_resources = request.get("ProcessingResources")
        job.failure_reason = None
        job.exit_message = None
        PROCESSING_JOB_REQUESTS[name] = dict(request, ProcessingJobArn=job.arn)
        return job

    def response_create(self):
        from moto.core.responses import ActionResult

        request = json.loads(self.body) if self.body else {}
        job = self.sagemaker_backend.create_processing_job(
            app_specification=self._get_param("AppSpecification"),
            experiment_config=self._get_param("ExperimentConfig"),
            network_config=self._get_param("NetworkConfig"),
            processing_inputs=self._get_param("ProcessingInputs"),
            processing_job_name=self._get_param("ProcessingJobName"),
            processing_output_config=self._get_param("ProcessingOutputConfig"),
            role_arn=self._get_param("RoleArn"),
            stopping_condition=self._get_param("StoppingCondition"),
            tags=self._get_param("Tags"),
            _request=request,
            _caller_role=role_of_access_key(access_key_of(self.headers.get("Authorization"))),
        )
        return ActionResult({"ProcessingJobArn": job.arn})

    replace(SageMakerModelBackend, "create_processing_job", create_processing_job)
    replace(SageMakerResponse, "create_processing_job", response_create)


def _access_denied(message: str) -> Exception:
    from moto.sagemaker.exceptions import SagemakerClientError

    class AccessDeniedException(SagemakerClientError):
        code = "AccessDeniedException"

    return AccessDeniedException(message)


def _check_pass_role(backend, caller_role: str | None, role_arn: str | None) -> None:
    """CreateProcessingJob passes ``RoleArn`` to SageMaker: the caller needs ``iam:PassRole`` on it with
    ``iam:PassedToService`` = sagemaker.amazonaws.com (IAM User Guide, "Grant a user permissions to pass a role to an
    AWS service"; SageMaker DG, "How to use SageMaker AI execution roles"), else AccessDeniedException with IAM's
    "User: ... is not authorized to perform: iam:PassRole on resource: ..." text. Only calls signed as a role (a
    Lambda function's, :func:`localcloud.endpoints.role_access_key`) are checked; tests' own calls have no role."""
    if not caller_role or not role_arn:
        return
    check = pass_role_check(backend.account_id, caller_role, role_arn, "sagemaker.amazonaws.com")
    if not check.allowed:
        raise _access_denied(check.reason)


def _resource_limit_exceeded(message: str) -> Exception:
    from moto.sagemaker.exceptions import SagemakerClientError

    class ResourceLimitExceeded(SagemakerClientError):
        code = "ResourceLimitExceeded"

    return ResourceLimitExceeded(message)


def quota_message(instance_type: str, quota: int, used: int, delta: int) -> str:
    """SageMaker's ResourceLimitExceeded text for a processing-instance quota (/work/shared/FACTS.md section 7; the
    sentence after "request delta of N Instances." is not quoted there and is left out)."""
    return (f"The account-level service limit '{instance_type} for processing job usage' is {quota} Instances, "
            f"with current utilization of {used} Instances and a request delta of {delta} Instances.")


def _check_job_quota(backend, request: dict) -> None:
    """ResourceLimitExceeded when the job's instances would exceed the instance type's quota (JOB_QUOTAS). AWS counts
    instances of processing jobs that hold them (InProgress, Stopping) per account and Region."""
    cluster = (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    instance_type = cluster.get("InstanceType")
    if instance_type not in JOB_QUOTAS:
        return
    delta = int(cluster.get("InstanceCount") or 1)
    used = 0
    for job_name, job in list(backend.processing_jobs.items()):
        if job.processing_job_status not in ACTIVE_JOB_STATUSES:
            continue
        other = ((PROCESSING_JOB_REQUESTS.get(job_name) or {}).get("ProcessingResources") or {}).get(
            "ClusterConfig") or {}
        if other.get("InstanceType") == instance_type:
            used += int(other.get("InstanceCount") or 1)
    quota = int(JOB_QUOTAS[instance_type])
    if used + delta > quota:
        raise _resource_limit_exceeded(quota_message(instance_type, quota, used, delta))


def _sagemaker_backend(account_id: str, region_name: str):
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[account_id][region_name]


def processing_jobs(account_id: str, region_name: str, status: str | None = None) -> list[dict]:
    """DescribeProcessingJob-like dicts of every job (optionally with one status)."""
    backend = _sagemaker_backend(account_id, region_name)
    out = []
    for name, job in list(backend.processing_jobs.items()):
        if status and job.processing_job_status != status:
            continue
        out.append(describe_processing_job(account_id, region_name, name))
    return out


def describe_processing_job(account_id: str, region_name: str, name: str) -> dict:
    backend = _sagemaker_backend(account_id, region_name)
    desc = dict(backend.processing_jobs[name].response_object)
    desc.pop("ProcessingJobName", None)
    desc["ProcessingJobName"] = name
    return desc


def set_processing_job_status(
    account_id: str,
    region_name: str,
    name: str,
    status: str,
    failure_reason: str | None = None,
    exit_message: str | None = None,
) -> dict:
    """Move a processing job to ``status`` (Completed / Failed / Stopped / InProgress ...).

    Terminal states get ProcessingEndTime; FailureReason/ExitMessage are cut to 1024 chars as in AWS. Returns the
    description. The "SageMaker Processing Job State Change" event is built by ``job_executor.state_change_event``
    and routed by the caller with :func:`put_event`.
    """
    backend = _sagemaker_backend(account_id, region_name)
    job = backend.processing_jobs[name]
    job.processing_job_status = status
    now = CLOCK.utcnow_naive()
    job.last_modified_time = now
    if status in ("Completed", "Failed", "Stopped"):
        job.processing_end_time = now
    if failure_reason is not None:
        job.failure_reason = failure_reason[:1024]
    if exit_message is not None:
        job.exit_message = exit_message[:1024]
    return describe_processing_job(account_id, region_name, name)
