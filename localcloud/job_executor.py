"""Local stand-in for a SageMaker Processing job: performs what a CreateProcessingJob request describes.

`run_job(request, s3=..., workdir=...)` takes the request dict exactly as the trigger Lambda sent it and:

1. makes a local stand-in for ``/opt/ml`` at ``<workdir>/<job-name>/opt/ml`` (wiped first if it exists);
2. downloads every ``ProcessingInput`` with an ``S3Input`` into its ``LocalPath`` under the stand-in root
   (``S3Prefix``: every object whose key starts with the prefix; ``ManifestFile``: the manifest's entries);
3. writes ``config/processingjobconfig.json`` (the request echoed with its ARN, as SageMaker does) and
   ``config/resourceconfig.json`` (``{"current_host": "algo-1", "hosts": ["algo-1"]}``);
4. creates every ``ProcessingOutput`` ``LocalPath`` and ``output/`` (for ``output/message``);
5. runs ``ContainerEntrypoint + ContainerArguments`` as a subprocess, with the request's ``Environment`` plus
   ``OPT_ML_ROOT=<stand-in>`` (design.md contract 1). Every entrypoint/argument item that starts with
   ``/opt/ml/`` is rewritten to the stand-in root; a leading ``python3``/``python`` is mapped to ``python``;
6. enforces ``StoppingCondition.MaxRuntimeInSeconds`` and the caller's ``timeout``;
7. captures stdout and stderr to one log file (``<workdir>/<job>/logs/algo-1.log``);
8. uploads each output folder to its ``S3Output.S3Uri`` when the job Completed.

An ``smspark-submit`` entrypoint (SageMaker's Spark container) runs as pyspark's ``spark-submit --master local[2]``
with its configuration.json applied and its ``s3://`` arguments staged through the emulated S3
(:mod:`localcloud.spark_submit`).

Choices where the local run has to differ from, or could not confirm, AWS behaviour:

* **Outputs on failure.** AWS documents ``EndOfJob`` as "upload ... after the job completes" and does not say
  whether a Failed/Stopped job's output folders are uploaded. We upload only for ``Completed`` jobs (so a failed
  run leaves nothing half-written under the output prefix), so the product must not rely on a failed job's
  outputs; the failure is carried by ``ExitMessage`` (first 1 KB of ``/opt/ml/output/message``, any terminal status;
  a message file that is not UTF-8 fails the job with a ``ClientError``, as documented), a generic ``FailureReason``
  (``AlgorithmError: See job logs for more information`` for a non-zero exit: AWS does not put the container's
  message there) and the log file. ``Continuous`` mode is treated as
  ``EndOfJob``. Symlinks are not uploaded (as in SageMaker).
* **Timeouts.** Exceeding ``StoppingCondition.MaxRuntimeInSeconds`` stops the job: status ``Stopped`` (the API
  reference: "After the condition is met, the processing job is stopped"), with a reason in ``failure_reason``
  (AWS may leave it empty). Exceeding the caller's ``timeout`` (an emulator guard shorter than the stopping
  condition) gives ``Failed`` with ``InternalServerError: ...``. The process group is sent SIGTERM, then SIGKILL.
* **Network isolation** (``NetworkConfig.EnableNetworkIsolation``) is *not* emulated: the job still runs on this
  host. We only remove every ``AWS_*`` endpoint/credential/profile variable from the job's environment so that it
  cannot reach the (emulated) AWS APIs by the usual SDK route.
* **Environment.** The job inherits this process's environment (PATH etc.; the image's own environment has no
  local equivalent) minus ``PYTHONPATH``/``PYTHONHOME``/``PYTHONSTARTUP`` (the code must run from its bundle, as in
  the container), plus the request's ``Environment``, ``OPT_ML_ROOT`` and ``PYTHONUNBUFFERED=1``. The working
  directory is ``<workdir>/<job>``.
* Pipe mode, ``ShardedByS3Key`` (one instance only), ``Gzip``, ``DatasetDefinition`` and ``FeatureStoreOutput`` are
  not emulated: Pipe/sharded inputs are copied as File/FullyReplicated; DatasetDefinition inputs and FeatureStore
  outputs fail the job with a ``ClientError`` reason.
* Input download follows SageMaker's layout: an object lands under ``LocalPath`` at its key relative to the last
  ``/`` of the prefix (``s3://b/in/a.csv`` -> ``LocalPath/a.csv``; ``s3://b/in/`` + ``in/x/y.csv`` ->
  ``LocalPath/x/y.csv``). An input prefix with no objects fails the job with ``ClientError: No S3 objects found
  under S3 URL ...`` (the wording SageMaker uses).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localcloud import spark_submit

OPT_ML = "/opt/ml"
DEFAULT_MAX_RUNTIME = 86400  # the API's documented default when StoppingCondition is omitted
MESSAGE_LIMIT = 1024
GENERIC_ALGORITHM_ERROR = "AlgorithmError: See job logs for more information"
_PYTHON_NAMES = {"python", "python3", "/usr/bin/python3", "/usr/bin/python", "/usr/local/bin/python3",
                 "/usr/local/bin/python", "/opt/venv/bin/python3", "/opt/venv/bin/python"}
# Stripped from the job's environment under EnableNetworkIsolation (prefix match on AWS_ covers all of them;
# the explicit list documents the ones that matter).
_ISOLATION_DROPPED = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                      "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


class JobSetupError(Exception):
    """A problem SageMaker would report before/after the container runs (FailureReason 'ClientError: ...')."""


@dataclass
class JobResult:
    """Outcome of one local processing job, in DescribeProcessingJob terms."""

    name: str
    arn: str
    status: str  # Completed | Failed | Stopped
    failure_reason: str | None
    exit_message: str | None  # first 1 KB of <stand-in>/output/message, if the job wrote one
    exit_code: int | None  # None when the container never ran or was killed
    log_path: Path
    root: Path  # the local stand-in for /opt/ml
    created_ms: int
    started_ms: int
    ended_ms: int
    uploaded_keys: list[str] = field(default_factory=list)  # "s3://bucket/key" of every uploaded object
    downloaded: list[str] = field(default_factory=list)  # local paths of every downloaded input file
    command: list[str] = field(default_factory=list)  # the command line actually run
    spark: dict[str, Any] | None = None  # smspark-submit jobs: master, InstanceCount, conf applied/not, VPC check

    @property
    def succeeded(self) -> bool:
        return self.status == "Completed"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an S3 URI; the key is taken verbatim (no URL decoding: '?', '#', '%' are key characters)."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
    elif uri.startswith("https://"):  # virtual-hosted style: https://bucket.s3.region.amazonaws.com/key
        host, _, key = uri[len("https://"):].partition("/")
        bucket = host.split(".s3.")[0] if ".s3." in host else host.split(".")[0]
    else:
        bucket, key = "", ""
    if not bucket:
        raise JobSetupError(f"ClientError: unsupported S3 URI {uri!r}")
    return bucket, key


def processing_job_arn(name: str, *, region: str, account: str) -> str:
    # SageMaker lower-cases resource names in ARNs.
    return f"arn:aws:sagemaker:{region}:{account}:processing-job/{name.lower()}"


def _account_from_role(request: dict) -> str:
    parts = str(request.get("RoleArn", "")).split(":")
    return parts[4] if len(parts) > 4 and parts[4] else "123456789012"


def local_path(root: Path, container_path: str) -> Path:
    """Map an absolute container path under /opt/ml to the stand-in root; refuse anything else."""
    if container_path == OPT_ML or container_path == OPT_ML + "/":
        return root
    if not container_path.startswith(OPT_ML + "/"):
        raise JobSetupError(f"ClientError: LocalPath {container_path!r} is not under {OPT_ML}/")
    rel = container_path[len(OPT_ML) + 1:]
    target = (root / rel).resolve()
    if target != root.resolve() and root.resolve() not in target.parents:
        raise JobSetupError(f"ClientError: LocalPath {container_path!r} escapes {OPT_ML}")
    return target


def _rewrite(item: str, root: Path) -> str:
    if item.startswith(OPT_ML + "/"):
        return str(root / item[len(OPT_ML) + 1:])
    return item


def _list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


#: a role check for the job's S3 requests: (action, bucket, key, KMS key or None) -> None if allowed, else the reason
Authorize = Callable[[str, str, str, "str | None"], "str | None"]


def access_denied_download(bucket: str, key: str, reason: str) -> str:
    """FailureReason of a job whose role may not read an input object. The "ClientError: Failed to download data."
    opening is SageMaker's (seen in real failures, e.g. aws-samples/sagemaker-run-notebook issue 32); the rest of the
    sentence is ours (AWS does not document it)."""
    return f"ClientError: Failed to download data. Access denied for s3://{bucket}/{key}: {reason}"


def access_denied_upload(bucket: str, key: str, reason: str) -> str:
    """FailureReason of a job whose role may not write an output object: ours (SageMaker's text is not documented)."""
    return f"ClientError: Failed to upload data. Access denied for s3://{bucket}/{key}: {reason}"


def _download_input(s3, inp: dict, root: Path, authorize: Authorize | None = None) -> list[str]:
    name = inp.get("InputName", "?")
    if "S3Input" not in inp:
        raise JobSetupError(f"ClientError: input {name!r}: only S3Input is emulated locally")
    s3in = inp["S3Input"]
    dest = local_path(root, s3in["LocalPath"])
    dest.mkdir(parents=True, exist_ok=True)
    bucket, prefix = _split_s3(s3in["S3Uri"])
    region = s3.meta.region_name
    no_objects = (f'ClientError: No S3 objects found under S3 URL "{s3in["S3Uri"]}" given in input data source. '
                  f"Please ensure that the bucket exists in the selected region ({region}), that objects exist "
                  "under that S3 prefix, and that the role has \"s3:ListBucket\" permissions on the bucket.")
    pairs: list[tuple[str, str, str]] = []  # (bucket, key, relative path)
    if s3in.get("S3DataType", "S3Prefix") == "ManifestFile":
        body = s3.get_object(Bucket=bucket, Key=prefix)["Body"].read()
        manifest = json.loads(body)
        if not manifest or not isinstance(manifest[0], dict) or "prefix" not in manifest[0]:
            raise JobSetupError(f"ClientError: manifest {s3in['S3Uri']} has no leading {{\"prefix\": ...}} entry")
        mbucket, mprefix = _split_s3(manifest[0]["prefix"])
        pairs.extend((mbucket, mprefix + rel, rel) for rel in manifest[1:])
    else:
        base = prefix[: prefix.rfind("/") + 1]
        for key in _list_keys(s3, bucket, prefix):
            if key.endswith("/"):
                continue  # "folder" placeholder objects
            pairs.append((bucket, key, key[len(base):]))
    if not pairs:
        raise JobSetupError(no_objects)
    done = []
    for b, key, rel in pairs:
        denied = authorize("s3:GetObject", b, key, None) if authorize else None
        if denied:
            raise JobSetupError(access_denied_download(b, key, denied))
        target = (dest / rel).resolve()
        if dest.resolve() not in target.parents:
            raise JobSetupError(f"ClientError: object key {key!r} escapes LocalPath")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(b, key, str(target))
        done.append(str(target))
    return done


def _output_files(request: dict, root: Path) -> list[tuple[Path, str, str, str | None]]:
    """(local file, bucket, key, KMS key) of every file the job's outputs upload at EndOfJob."""
    cfg = request.get("ProcessingOutputConfig") or {}
    kms = cfg.get("KmsKeyId")
    files: list[tuple[Path, str, str, str | None]] = []
    for out in cfg.get("Outputs", []):
        if "S3Output" not in out:
            raise JobSetupError(f"ClientError: output {out.get('OutputName')!r}: only S3Output is emulated")
        s3out = out["S3Output"]
        src = local_path(root, s3out["LocalPath"])
        bucket, prefix = _split_s3(s3out["S3Uri"])
        prefix = prefix.rstrip("/")
        if not src.is_dir():
            continue
        for path in sorted(src.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(src).as_posix()
            files.append((path, bucket, f"{prefix}/{rel}" if prefix else rel, kms))
    return files


def _upload_outputs(s3, request: dict, root: Path, authorize: Authorize | None = None) -> list[str]:
    """Upload every output file; with `authorize`, every object is checked first and nothing is uploaded when one is
    refused (whether SageMaker uploads the other outputs then is not documented)."""
    files = _output_files(request, root)
    for _path, bucket, key, kms in files if authorize else []:
        denied = authorize("s3:PutObject", bucket, key, kms)
        if denied:
            raise JobSetupError(access_denied_upload(bucket, key, denied))
    uploaded: list[str] = []
    for path, bucket, key, kms in files:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms} if kms else None
        s3.upload_file(str(path), bucket, key, ExtraArgs=extra)
        uploaded.append(f"s3://{bucket}/{key}")
    return uploaded


def job_environment(request: dict, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update({str(k): str(v) for k, v in (request.get("Environment") or {}).items()})
    if (request.get("NetworkConfig") or {}).get("EnableNetworkIsolation"):
        for k in list(env):
            if k.startswith("AWS_") or k in _ISOLATION_DROPPED:
                del env[k]
    env["OPT_ML_ROOT"] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def job_command(request: dict, root: Path, python: str) -> list[str]:
    app = request.get("AppSpecification") or {}
    entry = list(app.get("ContainerEntrypoint") or [])
    if not entry:
        raise JobSetupError("ClientError: AppSpecification.ContainerEntrypoint is required for the local executor "
                            "(the image's own ENTRYPOINT cannot be emulated)")
    cmd = [_rewrite(x, root) for x in entry + list(app.get("ContainerArguments") or [])]
    if cmd[0] in _PYTHON_NAMES:
        cmd[0] = python
    return cmd


class MessageNotUtf8(ValueError):
    """``/opt/ml/output/message`` is not UTF-8: SageMaker fails the job with a ClientError (byoc-metadata.html)."""


def _read_message(root: Path) -> str | None:
    """``ExitMessage``: the first 1 KB of ``/opt/ml/output/message`` (SageMaker developer guide, "Save and Access
    Metadata Information About Your Processing Job", byoc-metadata.html), set whatever the terminal status.

    Raises:
        MessageNotUtf8: the file is not UTF-8 ("If the data in this file isn't UTF-8 encoded, the job fails and
            returns a ClientError").
    """
    msg = root / "output" / "message"
    if not msg.is_file():
        return None
    raw = msg.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageNotUtf8(f"ClientError: {OPT_ML}/output/message is not UTF-8 encoded ({exc.reason} at byte "
                             f"{exc.start})") from None
    # 1 KB of bytes; a character cut at the boundary is dropped (AWS does not document this case)
    text = raw[:MESSAGE_LIMIT].decode("utf-8", errors="ignore").strip()
    return text or None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class _StopRequested(Exception):
    pass


def _wait(proc: subprocess.Popen, limit: float, stop: threading.Event | None) -> int:
    """proc.wait(limit), raising _StopRequested as soon as `stop` is set."""
    if stop is None:
        return proc.wait(timeout=limit)
    deadline = time.monotonic() + limit
    while True:
        if stop.is_set():
            raise _StopRequested()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise subprocess.TimeoutExpired(proc.args, limit)
        try:
            return proc.wait(timeout=min(0.2, remaining))
        except subprocess.TimeoutExpired:
            continue


def run_job(request: dict, *, s3, workdir: Path, python: str = sys.executable, timeout: float | None = None,
            region: str | None = None, account: str | None = None, created_ms: int | None = None,
            now_ms: Callable[[], int] | None = None, stop: threading.Event | None = None,
            authorize: Authorize | None = None, ec2: Any | None = None) -> JobResult:
    """Run the processing job a CreateProcessingJob `request` describes, locally; see the module docstring.

    `s3` is a boto3 S3 client for the (emulated) account; `region`/`account` default to the client's region and
    the account in `RoleArn` and are used for the job ARN only. `now_ms` is the time source of the job's start and end
    times (the local cloud's simulated clock; default: wall time). Setting `stop` (StopProcessingJob) ends the job as
    SageMaker documents for a stop: the container gets SIGTERM (then SIGKILL), status ``Stopped``, no outputs
    uploaded. Several jobs may run at once (one thread each). Never raises for job-level failures: they are reported
    in the returned `JobResult` (status Failed/Stopped with a reason). An ``smspark-submit`` entrypoint runs with
    pyspark in local mode (:mod:`localcloud.spark_submit`; `ec2`, when given, verifies ``VpcConfig``'s ids).
    """
    clock_ms = now_ms or _now_ms
    name = request["ProcessingJobName"]
    region = region or s3.meta.region_name or "us-east-1"
    account = account or _account_from_role(request)
    arn = processing_job_arn(name, region=region, account=account)
    created = created_ms if created_ms is not None else clock_ms()
    jobdir = Path(workdir) / name
    root = jobdir / "opt" / "ml"
    if jobdir.exists():
        shutil.rmtree(jobdir)
    root.mkdir(parents=True)
    log_dir = jobdir / "logs"
    log_dir.mkdir()
    log_path = log_dir / "algo-1.log"
    started = clock_ms()
    result = JobResult(name=name, arn=arn, status="InProgress", failure_reason=None, exit_message=None,
                       exit_code=None, log_path=log_path, root=root, created_ms=created, started_ms=started,
                       ended_ms=started)

    def finish(status: str, reason: str | None) -> JobResult:
        result.status, result.failure_reason = status, (reason[:MESSAGE_LIMIT] if reason else None)
        result.ended_ms = clock_ms()
        return result

    # --- set-up: inputs, config files, output folders -------------------------------------------------------
    try:
        for inp in request.get("ProcessingInputs") or []:
            result.downloaded.extend(_download_input(s3, inp, root, authorize))
        (root / "config").mkdir(exist_ok=True)
        config = dict(request)
        config["ProcessingJobArn"] = arn
        (root / "config" / "processingjobconfig.json").write_text(json.dumps(config, indent=2, default=str))
        (root / "config" / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        (root / "output").mkdir(exist_ok=True)
        for out in (request.get("ProcessingOutputConfig") or {}).get("Outputs", []):
            lp = (out.get("S3Output") or {}).get("LocalPath")
            if lp:
                local_path(root, lp).mkdir(parents=True, exist_ok=True)
        cmd = job_command(request, root, python)
        plan = None
        if spark_submit.is_spark(request):
            try:
                plan = spark_submit.prepare(request, cmd, root, jobdir, s3=s3, python=python, authorize=authorize,
                                            ec2=ec2)
            except spark_submit.SparkSetupError as exc:
                raise JobSetupError(f"ClientError: {exc}") from None
            cmd = plan.command
            result.downloaded.extend(plan.downloaded)
            result.spark = plan.record
    except JobSetupError as exc:
        log_path.write_text(f"[local executor] {exc}\n")
        return finish("Failed", str(exc))
    # Any failure setting up the inputs ends the job as Failed with its reason, as SageMaker does.
    except Exception as exc:  # noqa: BLE001 - S3 errors while downloading, bad manifest JSON ...
        log_path.write_text(f"[local executor] input set-up failed: {exc!r}\n")
        return finish("Failed", f"ClientError: {type(exc).__name__}: {exc}")
    result.command = cmd
    if stop is not None and stop.is_set():
        log_path.write_text("[local executor] StopProcessingJob before the container started\n")
        return finish("Stopped", None)

    # --- run the container entrypoint ----------------------------------------------------------------------
    max_runtime = float((request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds") or DEFAULT_MAX_RUNTIME)
    limit, limit_is_stopping = max_runtime, True
    if timeout is not None and timeout < max_runtime:
        limit, limit_is_stopping = float(timeout), False
    env = job_environment(request, root)
    if plan is not None:
        env.update(plan.env)
    with open(log_path, "ab") as log:
        if plan is not None:
            log.write(f"[local executor] smspark-submit as pyspark: {json.dumps(plan.record, default=str)}\n".encode())
        log.write(f"[local executor] job {name}: {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=str(jobdir), start_new_session=True)
        except OSError as exc:
            log.write(f"[local executor] cannot start the entrypoint: {exc}\n".encode())
            return finish("Failed", f"ClientError: cannot start the entrypoint {cmd[0]!r}: {exc}")
        try:
            rc = _wait(proc, limit, stop)
        except _StopRequested:
            _kill_group(proc)
            result.exit_message = _read_message(root)
            log.write(b"[local executor] StopProcessingJob: the job was stopped\n")
            return finish("Stopped", None)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:
                result.exit_message = _read_message(root)
            except MessageNotUtf8:
                result.exit_message = None
            if limit_is_stopping:
                reason = (f"MaxRuntimeExceeded: the job ran longer than StoppingCondition.MaxRuntimeInSeconds "
                          f"({max_runtime:g} s) and was stopped")
                status = "Stopped"
            else:
                reason = f"InternalServerError: the local executor's timeout ({limit:g} s) expired; job killed"
                status = "Failed"
            log.write(f"[local executor] {reason}\n".encode())
            return finish(status, reason)
        result.exit_code = rc
        log.write(f"[local executor] exit code {rc}\n".encode())

    try:
        result.exit_message = _read_message(root)
    except MessageNotUtf8 as exc:
        return finish("Failed", str(exc))
    if rc != 0:
        # FailureReason of a non-zero exit is generic; the container's own words are the ExitMessage
        # (byoc-metadata.html: "For failed processing jobs, you can use this field to communicate information about
        # why the processing container failed"). The text is the one SageMaker prints for algorithm failures.
        return finish("Failed", GENERIC_ALGORITHM_ERROR)

    # --- EndOfJob upload (Completed jobs only) -------------------------------------------------------------
    try:
        result.uploaded_keys = _upload_outputs(s3, request, root, authorize)
        if plan is not None:
            try:
                result.uploaded_keys += spark_submit.upload_outputs(plan, s3, authorize)
            except spark_submit.SparkSetupError as exc:
                raise JobSetupError(f"ClientError: {exc}") from None
    except JobSetupError as exc:
        with open(log_path, "a") as log:
            log.write(f"[local executor] {exc}\n")
        return finish("Failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - any upload failure fails the job with its reason, as SageMaker does
        with open(log_path, "a") as log:
            log.write(f"[local executor] output upload failed: {exc!r}\n")
        return finish("Failed", f"ClientError: uploading outputs failed: {exc}")
    return finish("Completed", None)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_detail(request: dict, result: JobResult, *, region: str, account: str) -> dict[str, Any]:
    """DescribeProcessingJob-shaped dict with times as epoch milliseconds (the event `detail` shape)."""
    arn = processing_job_arn(result.name, region=region, account=account)
    detail: dict[str, Any] = {
        "ProcessingInputs": request.get("ProcessingInputs", []),
        "ProcessingOutputConfig": request.get("ProcessingOutputConfig", {"Outputs": []}),
        "ProcessingJobName": result.name,
        "ProcessingResources": request.get("ProcessingResources", {}),
        "StoppingCondition": request.get("StoppingCondition", {"MaxRuntimeInSeconds": DEFAULT_MAX_RUNTIME}),
        "AppSpecification": request.get("AppSpecification", {}),
        "Environment": request.get("Environment", {}),
        "NetworkConfig": request.get("NetworkConfig", {}),
        "RoleArn": request.get("RoleArn"),
        "ProcessingJobArn": arn,
        "ProcessingJobStatus": result.status,
        "ProcessingEndTime": result.ended_ms,
        "ProcessingStartTime": result.started_ms,
        "LastModifiedTime": result.ended_ms,
        "CreationTime": result.created_ms,
        "Tags": {t["Key"]: t["Value"] for t in request.get("Tags", [])},
    }
    for key in ("ExperimentConfig",):
        if key in request:
            detail[key] = request[key]
    if result.failure_reason:
        detail["FailureReason"] = result.failure_reason
    if result.exit_message:
        detail["ExitMessage"] = result.exit_message
    return detail


#: DescribeProcessingJob fields the documented "SageMaker Processing Job State Change" sample does not carry
#: (automating-sagemaker-with-eventbridge.html: no Environment, no ExitMessage, no Tags). The emulated event leaves
#: them out, so consumers read them with DescribeProcessingJob as they must in AWS (FACTS.md §10).
EVENT_OMITS = ("Environment", "ExitMessage", "Tags")


def state_change_event(request: dict, result: JobResult, *, region: str, account: str) -> dict[str, Any]:
    """The EventBridge event SageMaker emits for this job's state change (FACTS.md §4), shaped like the documented
    sample: the description without :data:`EVENT_OMITS`."""
    detail = {k: v for k, v in job_detail(request, result, region=region, account=account).items()
              if k not in EVENT_OMITS}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "SageMaker Processing Job State Change",
        "source": "aws.sagemaker",
        "account": account,
        "time": _iso(result.ended_ms),
        "region": region,
        "resources": [detail["ProcessingJobArn"]],
        "detail": detail,
    }
