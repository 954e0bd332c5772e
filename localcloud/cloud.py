"""LocalCloud: the emulator plus the event-delivery loop that makes a deployed stack run end to end.

    with LocalCloud() as cloud:
        cloud.bootstrap_and_deploy(".")            # the real `cdk bootstrap` + `cdk deploy`
        cloud.s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key="input/default/a.csv", Body=b"...")
        cloud.run_until_idle()                     # S3 -> EventBridge -> SQS -> trigger Lambda -> job -> ...
        cloud.sns_messages(cloud.outputs["AlertTopicArn"])

``run_until_idle`` pumps, round after round, until a round moves nothing:

1. EventBridge -> Lambda targets (queued by the rule, run here: async invoke, 2 retries on error);
2. SQS event source mappings (poll, real SQS event shape, ReportBatchItemFailures, redrive to DLQ);
3. processing jobs that are InProgress: ``localcloud.job_executor.run_job`` performs the request, the job's
   status is set in the emulator and the "SageMaker Processing Job State Change" event is routed;
4. ``localcloud.alarms.evaluate_all`` evaluates the deployed alarms on the recorded datapoints; state
   changes publish to the alarm's SNS actions (moto_patches.patch_alarm_states).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from localcloud import alarms, job_executor, lambdas, moto_patches
from localcloud.server import ACCOUNT_ID, REGION, MotoServer, client_env

log = logging.getLogger("localcloud")

REPO_ROOT = Path(__file__).resolve().parent.parent
ASYNC_RETRIES = 2  # Lambda async invoke: 2 retries after the first attempt (AWS default)


class DeployError(RuntimeError):
    pass


def _find_cdk(app_dir: Path) -> str:
    for base in (app_dir, REPO_ROOT):
        cand = base / "node_modules" / ".bin" / "cdk"
        if cand.exists():
            return str(cand)
    found = shutil.which("cdk")
    if not found:
        raise DeployError("CDK CLI not found (node_modules/.bin/cdk); run `make install`")
    return found


class LocalCloud:
    """Context manager: moto server in-process + patches + delivery loop. See module docstring."""

    def __init__(self, workdir: str | os.PathLike | None = None, keep_workdir: bool = False):
        self.account = ACCOUNT_ID
        self.region = REGION
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="localcloud-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir
        self.server = MotoServer()
        self.outputs: dict[str, str] = {}
        self.stack_outputs: dict[str, dict[str, str]] = {}
        self.deploy_logs: list[str] = []
        self.job_results: dict[str, Any] = {}
        self.alarm_transitions: list[Any] = []
        self.async_failures: list[lambdas.Invocation] = []
        self._jobs_started: set[str] = set()
        self._clients: dict[str, Any] = {}
        self._procs: set[subprocess.Popen] = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalCloud":
        self.server.start()
        return self

    def stop(self) -> None:
        for proc in list(self._procs):
            _kill_tree(proc)
        self._procs.clear()
        lambdas.cleanup()
        lambdas.clear_invocations()
        moto_patches.ASYNC_INVOCATIONS.clear()
        moto_patches.ALARM_HISTORY.clear()
        moto_patches.EVENTBRIDGE_FAILED_INVOCATIONS.clear()
        self.server.stop()
        self._clients.clear()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (CDK CLI, scripts) that should talk to this cloud."""
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("AWS_") and key not in ("AWS_ENDPOINT_URL",):
                env.pop(key)
        env.update(client_env(self.endpoint))
        # the CDK app (`python3 app.py`) must run with this interpreter's packages
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        return env

    # ------------------------------------------------------------------ clients
    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 2, "mode": "standard"}),
            )
        return self._clients[service]

    s3 = property(lambda self: self.client("s3"))
    sqs = property(lambda self: self.client("sqs"))
    sns = property(lambda self: self.client("sns"))
    sagemaker = property(lambda self: self.client("sagemaker"))
    cloudwatch = property(lambda self: self.client("cloudwatch"))
    cloudformation = property(lambda self: self.client("cloudformation"))
    lambda_ = property(lambda self: self.client("lambda"))
    events = property(lambda self: self.client("events"))

    # ------------------------------------------------------------------ deploy
    def _cdk(self, cwd: Path, args: list[str], timeout: float) -> str:
        cmd = [_find_cdk(cwd), *args]
        log_path = self.workdir / f"cdk-{len(self.deploy_logs)}-{args[0]}.log"
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(cmd, cwd=str(cwd), env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            self._procs.add(proc)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(proc)
                rc = -9
            finally:
                self._procs.discard(proc)
        text = log_path.read_text(errors="replace")
        self.deploy_logs.append(text)
        if rc != 0:
            raise DeployError(f"`cdk {' '.join(args)}` failed (exit {rc}):\n{text[-4000:]}")
        return text

    def bootstrap(self, app_dir: str | os.PathLike = ".", timeout: float = 240) -> None:
        """The real `cdk bootstrap aws://123456789012/us-east-1` against the emulator.

        Runs outside `app_dir` (kept for compatibility): bootstrapping needs no synth of the app."""
        del app_dir
        self._cdk(self.workdir, ["bootstrap", f"aws://{self.account}/{self.region}",
                                            "--output", str(self.workdir / "cdk.out.bootstrap")], timeout)

    def deploy(self, app_dir: str | os.PathLike = ".", timeout: float = 300, extra_args: list[str] | None = None
               ) -> dict[str, str]:
        """The real `cdk deploy --require-approval never --outputs-file F`; returns (and stores) the outputs."""
        app_dir = Path(app_dir).resolve()
        outputs_file = self.workdir / "outputs.json"
        outputs_file.unlink(missing_ok=True)
        self._cdk(app_dir, ["deploy", "--all", "--require-approval", "never", "--outputs-file", str(outputs_file),
                            "--output", str(self.workdir / "cdk.out"), *(extra_args or [])], timeout)
        data = json.loads(outputs_file.read_text()) if outputs_file.exists() else {}
        self.stack_outputs = data
        flat: dict[str, str] = {}
        for values in data.values():
            flat.update(values)
        self.outputs = flat
        return flat

    def bootstrap_and_deploy(self, app_dir: str | os.PathLike = ".") -> dict[str, str]:
        self.bootstrap(app_dir)
        return self.deploy(app_dir)

    # ------------------------------------------------------------------ backends (in-process)
    def _lambda_backend(self):
        from moto.awslambda.utils import get_backend

        return get_backend(self.account, self.region)

    def _sqs_backend(self):
        from moto.sqs.models import sqs_backends

        return sqs_backends[self.account][self.region]

    # ------------------------------------------------------------------ delivery loop
    def run_until_idle(self, timeout: float = 180.0, evaluate_alarms: bool = True) -> dict[str, int]:
        """Pump events until one full round moves nothing; returns counters of what was done.

        Raises TimeoutError if the system is still busy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        totals = {"async_invocations": 0, "sqs_batches": 0, "jobs": 0, "alarm_transitions": 0}
        while True:
            moved = {
                "async_invocations": self._drain_async_invocations(),
                "sqs_batches": self._poll_event_source_mappings(),
                "jobs": self._run_pending_jobs(),
            }
            moved["alarm_transitions"] = self._evaluate_alarms() if evaluate_alarms else 0
            for key, value in moved.items():
                totals[key] += value
            if not any(moved.values()):
                return totals
            if time.monotonic() > deadline:
                raise TimeoutError(f"local cloud still busy after {timeout} s: {totals}")

    def _drain_async_invocations(self) -> int:
        """EventBridge -> Lambda: async invoke with the function's retry setting (EventInvokeConfig,
        default 2 retries); exhausted events go to its OnFailure SQS destination; events for a
        function that does not exist go to the target's DeadLetterConfig queue."""
        count = 0
        backend = self._lambda_backend()
        while moto_patches.ASYNC_INVOCATIONS:
            arn, payload, target = moto_patches.ASYNC_INVOCATIONS.popleft()
            count += 1
            try:
                fn = backend.get_function(arn)
            except Exception:
                log.warning("EventBridge target %s does not exist", arn)
                dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
                if dlq:
                    self._send_to_sqs_arn(dlq, json.dumps(payload))
                continue
            config = moto_patches.EVENT_INVOKE_CONFIGS.get(fn.function_name, {})
            retries = int(config.get("MaximumRetryAttempts", ASYNC_RETRIES))
            for _attempt in range(1 + retries):
                inv = lambdas.run_moto_function(fn, payload)
                if inv.ok:
                    break
            else:
                self.async_failures.append(inv)
                log.warning("async invoke of %s failed %d times: %s", fn.function_name, 1 + retries, inv.error)
                dest = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                if dest and ":sqs:" in dest:
                    self._send_to_sqs_arn(dest, json.dumps({
                        "version": "1.0",
                        "requestContext": {"requestId": inv.request_id, "functionArn": fn.function_arn,
                                           "condition": "RetriesExhausted", "approximateInvokeCount": 1 + retries},
                        "requestPayload": payload,
                        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                            "functionError": "Unhandled"},
                        "responsePayload": inv.error,
                    }))
        return count

    def _send_to_sqs_arn(self, queue_arn: str, body: str) -> None:
        sqs = self._sqs_backend()
        for q in sqs.queues.values():
            if q.queue_arn == queue_arn:
                sqs.send_message(q.name, body)
                return

    def _poll_event_source_mappings(self) -> int:
        batches = 0
        lambda_backend = self._lambda_backend()
        sqs = self._sqs_backend()
        queues_by_arn = {q.queue_arn: q for q in sqs.queues.values()}
        for esm in list(lambda_backend._event_source_mappings.values()):
            queue = queues_by_arn.get(esm.event_source_arn)
            if queue is None or not esm.enabled:
                continue
            messages = sqs.receive_message(queue.name, int(esm.batch_size or 10), 0,
                                           int(queue.visibility_timeout), ["All"])
            if not messages:
                continue
            batches += 1
            fn = lambda_backend.get_function(esm.function_arn)
            records = [self._sqs_record(m, queue) for m in messages]
            inv = lambdas.run_moto_function(fn, {"Records": records})
            failed: set[str] = set()
            if not inv.ok:
                failed = {m.id for m in messages}
            elif "ReportBatchItemFailures" in (esm.function_response_types or []):
                failed = _batch_item_failures(inv.result, {m.id for m in messages})
            for m in messages:
                if m.id in failed:  # back for redelivery (AWS: after the visibility timeout; here at once)
                    sqs.change_message_visibility(queue.name, m.receipt_handle, 0)
                else:
                    sqs.delete_message(queue.name, m.receipt_handle)
        return batches

    def _sqs_record(self, m, queue) -> dict:
        attrs = {
            "ApproximateReceiveCount": str(m.approximate_receive_count),
            "SentTimestamp": str(m.sent_timestamp),
            "SenderId": "AROAEXAMPLELOCALCLOUD",
            "ApproximateFirstReceiveTimestamp": str(m.approximate_first_receive_timestamp),
        }
        if getattr(m, "group_id", None):
            attrs["MessageGroupId"] = m.group_id
            attrs["MessageDeduplicationId"] = m.deduplication_id
        return {
            "messageId": m.id,
            "receiptHandle": m.receipt_handle,
            "body": m.body,
            "attributes": attrs,
            "messageAttributes": {
                k: {"stringValue": v.get("string_value"), "binaryValue": v.get("binary_value"),
                    "stringListValues": [], "binaryListValues": [], "dataType": v.get("data_type")}
                for k, v in (m.message_attributes or {}).items()
            },
            "md5OfBody": m.body_md5,
            "eventSource": "aws:sqs",
            "eventSourceARN": queue.queue_arn,
            "awsRegion": self.region,
        }

    def _run_pending_jobs(self) -> int:
        count = 0
        for desc in moto_patches.processing_jobs(self.account, self.region, status="InProgress"):
            name = desc["ProcessingJobName"]
            if name in self._jobs_started:
                continue
            self._jobs_started.add(name)
            count += 1
            self.run_job(name)
        return count

    def run_job(self, name: str) -> Any:
        """Hand one InProgress job to ``localcloud.job_executor.run_job`` and record its outcome."""
        request = dict(moto_patches.PROCESSING_JOB_REQUESTS[name])
        request.pop("ProcessingJobArn", None)
        created = moto_patches.describe_processing_job(self.account, self.region, name).get("CreationTime")
        created_ms = int(created.timestamp() * 1000) if hasattr(created, "timestamp") else None
        result = job_executor.run_job(request, s3=self.s3, workdir=self.workdir / "jobs", region=self.region,
                                      account=self.account, created_ms=created_ms)
        self.job_results[name] = result
        moto_patches.set_processing_job_status(self.account, self.region, name, result.status,
                                               failure_reason=result.failure_reason,
                                               exit_message=result.exit_message)
        event = job_executor.state_change_event(request, result, region=self.region, account=self.account)
        moto_patches.put_event(self.account, self.region, event)
        return result

    def _evaluate_alarms(self) -> int:
        # publish=False: state changes reach SNS through moto_patches.patch_alarm_states (any SetAlarmState does)
        transitions = alarms.evaluate_all(self.cloudwatch, self.sns, publish=False)
        self.alarm_transitions.extend(transitions)
        return len(transitions)

    # ------------------------------------------------------------------ observations
    def sns_messages(self, topic_arn: str) -> list[dict[str, Any]]:
        """Every message published to the topic so far: MessageId, Subject, Message (str), MessageAttributes."""
        from moto.sns.models import sns_backends

        topic = sns_backends[self.account][self.region].topics[topic_arn]
        return [
            {"MessageId": mid, "Message": msg, "Subject": subject, "MessageAttributes": attrs or {}}
            for (mid, msg, subject, attrs, _group) in list(topic.sent_notifications)
        ]

    def processing_jobs(self) -> list[dict]:
        return moto_patches.processing_jobs(self.account, self.region)

    def invocations(self, function_name: str | None = None) -> list[lambdas.Invocation]:
        return lambdas.invocations(function_name)

    def alarm_history(self, alarm_name: str | None = None) -> list[dict[str, Any]]:
        """Alarm history items of type Action (DescribeAlarmHistory shape): executed and failed alarm actions."""
        return [h for h in moto_patches.ALARM_HISTORY if alarm_name in (None, h["AlarmName"])]

    def eventbridge_failed_invocations(self) -> list[tuple[str, str, str]]:
        """(rule ARN, target ARN, reason) of every EventBridge delivery the target's policies refused."""
        return list(moto_patches.EVENTBRIDGE_FAILED_INVOCATIONS)

    def alarm_states(self) -> dict[str, str]:
        out = {}
        for page in self.cloudwatch.get_paginator("describe_alarms").paginate():
            for a in page.get("MetricAlarms", []):
                out[a["AlarmName"]] = a["StateValue"]
        return out


def _batch_item_failures(result: Any, ids: set[str]) -> set[str]:
    """Message ids to retry from a ReportBatchItemFailures response (AWS: malformed response = whole batch)."""
    if result is None or result == {} or result == "":
        return set()
    if not isinstance(result, dict):
        return set()
    items = result.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return set(ids)
    failed = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in ids:
            return set(ids)
        failed.add(ident)
    return failed


def _kill_tree(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except Exception:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except Exception:
            pass
