"""LocalCloud: the emulator plus the event-delivery loop that makes a deployed stack run end to end.

    with LocalCloud() as cloud:
        cloud.bootstrap_and_deploy(".")            # the real `cdk bootstrap` + `cdk deploy`
        cloud.s3.put_object(Bucket=cloud.outputs["DataBucketName"], Key="input/default/a.csv", Body=b"...")
        cloud.run_until_idle()                     # S3 -> EventBridge -> SQS -> trigger Lambda -> job -> ...
        cloud.sns_messages(cloud.outputs["AlertTopicArn"])

``run_until_idle`` pumps, round after round, until a round moves nothing:

1. AWS/SQS metric samples for the simulated minutes passed (``service_metrics``);
2. EventBridge -> Lambda targets (queued by the rule, run here: asynchronous invocation with Lambda's documented
   retries, event age, dead-letter queue and destinations, on the simulated clock);
3. SQS event source mappings (poll, real SQS event shape, ReportBatchItemFailures; a failed record comes back when its
   visibility timeout ends, redrive to the DLQ after maxReceiveCount);
4. processing jobs that are InProgress: each runs in its own thread (``localcloud.job_executor.run_job``), a finished
   job's status is set in the emulator and its "SageMaker Processing Job State Change" event is routed;
5. ``localcloud.alarms.evaluate_all`` evaluates the deployed alarms at the simulated time; state changes publish to
   the alarm's SNS actions (moto_patches.patch_alarm_states).

When nothing moves but something waits for a time (an invisible message, an async retry), the simulated clock
(``cloud.clock``, localcloud/clock.py) jumps to it. ``cloud.faults`` injects AWS errors (localcloud/faults.py);
``job_quota`` / ``set_job_quota`` set processing-instance quotas; ``stop_job`` stops a job. See README.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from localcloud import alarms, job_executor, lambdas, moto_patches
from localcloud.clock import CLOCK
from localcloud.faults import FaultInjector, signing_name
from localcloud.server import ACCOUNT_ID, REGION, MotoServer, client_env
from localcloud.service_auth import destination_check, event_source_mapping_check, s3_object_check
from localcloud.service_metrics import ServiceMetrics

log = logging.getLogger("localcloud")

REPO_ROOT = Path(__file__).resolve().parent.parent
ASYNC_RETRIES = 2  # Lambda async invoke: 2 retries after the first attempt (AWS default)
ASYNC_RETRY_DELAYS = (60.0, 120.0)  # "a one-minute wait between the first two attempts, and two minutes between the
#                                     second and third attempts" (Lambda DG invocation-async-error-handling)
ASYNC_MAX_EVENT_AGE = 6 * 3600  # default MaximumEventAgeInSeconds (and its maximum)
ASYNC_THROTTLE_MAX_DELAY = 300.0  # throttled async events: "from 1 second after the first attempt to a maximum of
#                                   5 minutes" (Lambda DG invocation-async-error-handling)
DEFAULT_HORIZON = 6 * 3600.0  # run_until_idle: how far (simulated seconds) the clock may jump per call
TIMER_EPSILON = 0.001  # moto: a message is visible when now > visible_at (strictly)
MAX_CONCURRENT_JOBS = 8  # threads running local jobs; the instance quota (job_quota) is the AWS-side limit


@dataclass
class AsyncEvent:
    """An event in a function's asynchronous queue (accepted/due: simulated epoch seconds)."""

    function_arn: str
    payload: Any
    accepted: float
    due: float
    attempts: int = 0
    throttles: int = 0
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last: Any = None  # the last lambdas.Invocation


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

    def __init__(self, workdir: str | os.PathLike | None = None, keep_workdir: bool = False,
                 job_quota: dict[str, int] | None = None):
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
        #: service actions refused by the role's policies (localcloud/service_auth.py): dicts with "path"
        #: ("event-source-mapping" | "dead-letter-queue" | "destination" | "processing-job"), "role", "resource",
        #: "reason"
        self.authorization_refusals: list[dict[str, str]] = []
        self._jobs_started: set[str] = set()
        self._clients: dict[str, Any] = {}
        self._procs: set[subprocess.Popen] = set()
        #: the simulated clock (localcloud/clock.py): cloud.clock.advance(seconds); see also advance()
        self.clock = CLOCK
        #: fault injection (localcloud/faults.py): cloud.faults.add(service=..., operation=..., error_code=...)
        self.faults = FaultInjector()
        #: AWS/SQS and AWS/Lambda datapoints (localcloud/service_metrics.py)
        self.metrics = ServiceMetrics(self.account, self.region, self.clock)
        #: processing-instance quotas, instance type -> instances (CreateProcessingJob: ResourceLimitExceeded beyond)
        self.job_quota = dict(job_quota or {})
        self._async_queue: list[AsyncEvent] = []
        self._job_pool = futures.ThreadPoolExecutor(max_workers=MAX_CONCURRENT_JOBS, thread_name_prefix="job")
        self._job_futures: dict[str, futures.Future] = {}
        self._job_stops: dict[str, threading.Event] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalCloud:
        self.server.start()
        self.server.wrap_app(self.faults.wrap)
        moto_patches.JOB_QUOTAS.clear()
        moto_patches.JOB_QUOTAS.update(self.job_quota)
        self.metrics.start()
        self.clock.on_advance(self._on_clock_advance)
        return self

    def _on_clock_advance(self, old: float, new: float) -> None:
        self.metrics.sample_sqs(new)

    def stop(self) -> None:
        for stop in self._job_stops.values():
            stop.set()
        self._job_pool.shutdown(wait=True, cancel_futures=True)
        self._job_futures.clear()
        for proc in list(self._procs):
            _kill_tree(proc)
        self._procs.clear()
        self.faults.clear()
        moto_patches.JOB_QUOTAS.clear()
        self.clock.remove_listener(self._on_clock_advance)
        self.clock.reset()
        self._async_queue.clear()
        lambdas.cleanup()
        lambdas.clear_invocations()
        moto_patches.ASYNC_INVOCATIONS.clear()
        moto_patches.ALARM_HISTORY.clear()
        moto_patches.EVENTBRIDGE_FAILED_INVOCATIONS.clear()
        self.authorization_refusals.clear()
        self.server.stop()
        self._clients.clear()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCloud:
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
            if key.startswith("AWS_") and key != "AWS_ENDPOINT_URL":
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
    def run_until_idle(self, timeout: float = 180.0, evaluate_alarms: bool = True,
                       max_horizon: float | None = DEFAULT_HORIZON) -> dict[str, float]:
        """Pump events until nothing moves; returns counters of what was done.

        When nothing can move *now* but something is waiting for a time (an SQS message invisible until its
        visibility timeout or delay ends, an asynchronous Lambda retry), the simulated clock jumps to the earliest
        such time, as long as that is at most ``max_horizon`` simulated seconds after this call started (None or 0:
        never advance the clock). Running jobs are waited for before the clock jumps (a job runs "now").

        Raises TimeoutError if the system is still busy after ``timeout`` wall-clock seconds.
        """
        deadline = time.monotonic() + timeout
        horizon = None if not max_horizon else self.clock.now() + float(max_horizon)
        totals: dict[str, float] = {"async_invocations": 0, "sqs_batches": 0, "jobs": 0, "alarm_transitions": 0,
                                    "clock_advanced": 0.0}
        while True:
            self.metrics.sample_sqs()
            moved = {
                "async_invocations": self._drain_async_invocations(),
                "sqs_batches": self._poll_event_source_mappings(),
                "jobs": self._run_pending_jobs() + self._collect_finished_jobs(),
            }
            moved["alarm_transitions"] = self._evaluate_alarms() if evaluate_alarms else 0
            for key, value in moved.items():
                totals[key] += value
            if time.monotonic() > deadline:
                raise TimeoutError(f"local cloud still busy after {timeout} s: {totals}")
            if any(moved.values()):
                continue
            if self._job_futures:  # jobs still running: wait for one to finish
                futures.wait(list(self._job_futures.values()), timeout=max(0.0, deadline - time.monotonic()),
                             return_when=futures.FIRST_COMPLETED)
                continue
            due = self.next_due_time()
            if due is None or horizon is None or due > horizon:
                return totals
            before = self.clock.now()
            self.clock.advance_to(due + TIMER_EPSILON)
            totals["clock_advanced"] += self.clock.now() - before

    def advance(self, seconds: float, timeout: float = 180.0) -> dict[str, float]:
        """Let ``seconds`` of simulated time pass: the clock moves minute by minute (and to every due timer in
        between); at each step AWS/SQS metrics are sampled, everything due is pumped and the alarms are evaluated
        (CloudWatch evaluates alarms every minute)."""
        target = self.clock.now() + float(seconds)
        totals: dict[str, float] = {}
        while True:
            for key, value in self.run_until_idle(timeout=timeout, max_horizon=None).items():
                totals[key] = totals.get(key, 0) + value
            now = self.clock.now()
            if now >= target:
                return totals
            step = min(target, (math.floor(now / 60) + 1) * 60)
            due = self.next_due_time()
            if due is not None and now < due < step:
                step = due + TIMER_EPSILON
            self.clock.advance_to(min(step, target))

    def next_due_time(self) -> float | None:
        """Earliest simulated time at which something waiting becomes deliverable: an invisible or delayed message
        of a queue some event-source mapping polls, or an asynchronous invocation retry. None: nothing waits."""
        candidates = [ev.due for ev in self._async_queue]
        lambda_backend = self._lambda_backend()
        polled = {esm.event_source_arn for esm in lambda_backend._event_source_mappings.values() if esm.enabled}
        now_ms = self.clock.now() * 1000.0
        for q in self._sqs_backend().queues.values():
            if q.queue_arn not in polled:
                continue
            for m in list(q._messages):
                if m.delayed_until and m.delayed_until > now_ms:
                    candidates.append(m.delayed_until / 1000.0)
                elif m.visible_at >= now_ms:
                    candidates.append(m.visible_at / 1000.0)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ Lambda (async + SQS)
    def _invoke(self, fn, payload) -> lambdas.Invocation | None:
        """Run the function and record its AWS/Lambda metrics at the simulated time it started.

        None: the invocation was refused by an injected fault on ``lambda`` ``Invoke`` (the function did not run):
        a 429 (``TooManyRequestsException``) is a throttle and counts in AWS/Lambda ``Throttles``; other statuses are
        Lambda system errors. Lambda DG: throttles and system errors are retried by the caller (async queue, SQS
        poller), not counted as function errors."""
        at = self.clock.now()
        fault = self.faults.match(signing_name("lambda"), "Invoke")
        if fault is not None:
            if fault.http_status == 429:
                self.metrics.record_throttle(fn.function_name, at=at)
            log.warning("invocation of %s refused by an injected fault: %s", fn.function_name, fault.error_code)
            return None
        inv = lambdas.run_moto_function(fn, payload)
        inv.started_at = at
        self.metrics.record_invocation(fn.function_name, error=not inv.ok, duration_s=inv.duration, at=at)
        return inv

    def _async_settings(self, fn) -> dict[str, Any]:
        """The function's asynchronous-invocation configuration: EventInvokeConfig (CloudFormation or the API)
        merged over Lambda's defaults, plus the function's DeadLetterConfig."""
        config = dict(moto_patches.EVENT_INVOKE_CONFIGS.get(fn.function_name) or {})
        if not config and getattr(fn, "event_invoke_config", None):
            config = dict(fn.event_invoke_config[0].config)
        return {
            "retries": int(config.get("MaximumRetryAttempts", ASYNC_RETRIES)),
            "max_age": int(config.get("MaximumEventAgeInSeconds", ASYNC_MAX_EVENT_AGE)),
            "on_failure": ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"),
            "on_success": ((config.get("DestinationConfig") or {}).get("OnSuccess") or {}).get("Destination"),
            "dlq": (getattr(fn, "dead_letter_config", None) or {}).get("TargetArn"),
        }

    def _drain_async_invocations(self) -> int:
        """Asynchronous invocations (EventBridge -> Lambda) as the Lambda DG documents them
        ("How Lambda handles errors and retries with asynchronous invocation", "Capturing records of Lambda
        asynchronous invocations"):

        * a function error is retried ``MaximumRetryAttempts`` times (default 2), one minute after the first attempt
          and two minutes after the second, on the simulated clock;
        * an event older than ``MaximumEventAgeInSeconds`` (default 6 h) when its next attempt is due is discarded;
        * a discarded event (retries exhausted or too old) goes to the OnFailure destination (SQS or SNS) as an
          invocation record, and to the function's dead-letter queue (``DeadLetterConfig.TargetArn``, SQS or SNS) as
          the event itself with the attributes ``RequestID``, ``ErrorCode`` (3-digit HTTP status: 200 for a function
          error) and ``ErrorMessage`` (first 1 KB);
        * a success goes to the OnSuccess destination, if any.

        An EventBridge target whose function does not exist is a delivery failure: the event goes to the target's
        ``DeadLetterConfig`` queue with EventBridge's attributes.
        """
        count = 0
        backend = self._lambda_backend()
        while moto_patches.ASYNC_INVOCATIONS:
            item = moto_patches.ASYNC_INVOCATIONS.popleft()
            arn, payload, target = item[:3]
            accepted = item[3] if len(item) > 3 else self.clock.now()
            try:
                backend.get_function(arn)
            except Exception:  # noqa: BLE001 - moto raises its own not-found types; any miss is "no such function"
                log.warning("EventBridge target %s does not exist", arn)
                count += 1
                dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
                if dlq:
                    self._deliver(dlq, json.dumps(payload), {
                        "ERROR_CODE": "RESOURCE_NOT_FOUND", "ERROR_MESSAGE": f"Function not found: {arn}",
                        "EXHAUSTED_RETRY_CONDITION": "NonRetryable", "RETRY_ATTEMPTS": "0",
                        "TARGET_ARN": arn}, numeric=())
                continue
            self._async_queue.append(AsyncEvent(function_arn=arn, payload=payload, accepted=accepted, due=accepted))
        now = self.clock.now()
        for ev in sorted([e for e in self._async_queue if e.due <= now], key=lambda e: e.due):
            self._async_queue.remove(ev)
            count += 1
            try:
                fn = backend.get_function(ev.function_arn)
            except Exception:  # noqa: BLE001 - deleted since the event was accepted (moto's not-found types vary)
                continue
            settings = self._async_settings(fn)
            if self.clock.now() - ev.accepted > settings["max_age"]:
                self._async_discard(fn, ev, settings, "EventAgeExceeded")
                continue
            inv = self._invoke(fn, ev.payload)
            if inv is None:  # throttled / system error: back to the queue, 1 s doubling to 5 min, until max age
                ev.throttles += 1
                ev.due = self.clock.now() + min(ASYNC_THROTTLE_MAX_DELAY, 2.0 ** (ev.throttles - 1))
                self._async_queue.append(ev)
                continue
            ev.attempts += 1
            ev.last = inv
            if inv.ok:
                if settings["on_success"] and self._function_may_send(fn, settings["on_success"], "destination"):
                    self._deliver(settings["on_success"], json.dumps(self._invocation_record(fn, ev, "Success")))
                continue
            if ev.attempts <= settings["retries"]:
                ev.due = self.clock.now() + (ASYNC_RETRY_DELAYS[min(ev.attempts, len(ASYNC_RETRY_DELAYS)) - 1])
                self._async_queue.append(ev)
                continue
            self._async_discard(fn, ev, settings, "RetriesExhausted")
        return count

    def _invocation_record(self, fn, ev: AsyncEvent, condition: str) -> dict[str, Any]:
        """The invocation record Lambda sends to a destination (Lambda DG "Capturing records of Lambda asynchronous
        invocations", example invocation record)."""
        inv = ev.last
        record: dict[str, Any] = {
            "version": "1.0",
            "timestamp": self.clock.datetime().strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.clock.now() % 1:.3f}"[2:] + "Z",
            "requestContext": {"requestId": ev.request_id, "functionArn": f"{fn.function_arn}:$LATEST",
                               "condition": condition, "approximateInvokeCount": ev.attempts},
            "requestPayload": ev.payload,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        }
        if inv is not None and not inv.ok:
            record["responseContext"]["functionError"] = "Unhandled"
            record["responsePayload"] = inv.error
        elif inv is not None:
            record["responsePayload"] = inv.result
        return record

    def _async_discard(self, fn, ev: AsyncEvent, settings: dict[str, Any], condition: str) -> None:
        inv = ev.last
        failure = lambdas.Invocation(function_name=fn.function_name, event=ev.payload,
                                     error=(inv.error if inv is not None and inv.error else
                                            {"errorType": condition, "errorMessage": f"event discarded: {condition}"}))
        failure.request_id = ev.request_id
        self.async_failures.append(failure)
        log.warning("async invoke of %s discarded (%s after %d attempts): %s", fn.function_name, condition,
                    ev.attempts, failure.error)
        if settings["on_failure"] and self._function_may_send(fn, settings["on_failure"], "destination"):
            self._deliver(settings["on_failure"], json.dumps(self._invocation_record(fn, ev, condition)))
        if settings["dlq"] and self._function_may_send(fn, settings["dlq"], "dead-letter-queue"):
            message = str((failure.error or {}).get("errorMessage", ""))
            self._deliver(settings["dlq"], json.dumps(ev.payload),
                          {"RequestID": ev.request_id, "ErrorCode": "200" if inv is not None else "429",
                           "ErrorMessage": message[:1024]},
                          numeric=("ErrorCode",))

    def _role_allows(self, path: str, role: str, resource: str, check: Any) -> bool:
        """Record a refusal (once per path, role, resource and reason) and say whether the action may go on."""
        if check.allowed:
            return True
        entry = {"path": path, "role": role, "resource": resource, "reason": check.reason}
        if entry not in self.authorization_refusals:
            log.warning("%s: %s refused on %s: %s", path, role, resource, check.reason)
            self.authorization_refusals.append(entry)
        return False

    def _function_may_send(self, fn, arn: str, path: str) -> bool:
        """May the function's execution role send to its DLQ / destination (localcloud/service_auth.py)? If not,
        the record is dropped and counted as Lambda does (Lambda DG "Monitoring functions": AWS/Lambda
        ``DeadLetterErrors`` for a DLQ, ``DestinationDeliveryFailures`` for a destination)."""
        if self._role_allows(path, fn.role, arn, destination_check(self.account, self.region, fn.role, arn)):
            return True
        metric = "DeadLetterErrors" if path == "dead-letter-queue" else "DestinationDeliveryFailures"
        self.metrics.record_count(fn.function_name, metric, at=self.clock.now())
        return False

    def _deliver(self, arn: str, body: str, attributes: dict[str, str] | None = None,
                 numeric: tuple[str, ...] = ()) -> bool:
        """Send to an SQS queue or SNS topic by ARN (in-process, as the service would); False if it does not exist."""
        attributes = attributes or {}
        if ":sqs:" in arn:
            sqs = self._sqs_backend()
            for q in sqs.queues.values():
                if q.queue_arn == arn:
                    attrs = {k: {"DataType": "Number" if k in numeric else "String", "StringValue": v}
                             for k, v in attributes.items()}
                    sqs.send_message(q.name, body, message_attributes=attrs)
                    return True
        elif ":sns:" in arn:
            from moto.sns.models import sns_backends

            attrs = {k: {"DataType": "Number" if k in numeric else "String", "StringValue": v}
                     for k, v in attributes.items()}
            try:
                sns_backends[self.account][self.region].publish(message=body, arn=arn, message_attributes=attrs)
                return True
            except Exception:
                log.exception("delivery to %s failed", arn)
        log.warning("destination %s does not exist; record dropped", arn)
        return False

    def _send_to_sqs_arn(self, queue_arn: str, body: str) -> None:
        self._deliver(queue_arn, body)

    def _poll_event_source_mappings(self) -> int:
        """SQS event-source mappings: receive a batch (the queue's VisibilityTimeout applies, as Lambda's poller
        uses the queue's setting), invoke, delete what succeeded. A failed record is *not* touched: it becomes
        visible again when its visibility timeout ends on the simulated clock, i.e. the queue's VisibilityTimeout or
        whatever the function set with ChangeMessageVisibility (Lambda DG "Handling errors for an SQS event source";
        SQS DG "Amazon SQS visibility timeout"); the queue's RedrivePolicy moves it after maxReceiveCount."""
        batches = 0
        lambda_backend = self._lambda_backend()
        sqs = self._sqs_backend()
        queues_by_arn = {q.queue_arn: q for q in sqs.queues.values()}
        for esm in list(lambda_backend._event_source_mappings.values()):
            queue = queues_by_arn.get(esm.event_source_arn)
            if queue is None or not esm.enabled:
                continue
            fn = lambda_backend.get_function(esm.function_arn)
            if not self._role_allows("event-source-mapping", fn.role, queue.queue_arn,
                                     event_source_mapping_check(self.account, self.region, fn.role, queue)):
                continue  # Lambda's poller cannot read the queue: the messages stay (and age) in it
            messages = sqs.receive_message(queue.name, int(esm.batch_size or 10), 0,
                                           int(queue.visibility_timeout), ["All"])
            if not messages:
                continue
            batches += 1
            records = [self._sqs_record(m, queue) for m in messages]
            inv = self._invoke(fn, {"Records": records})
            if inv is None:  # throttled: the batch is left as it is and comes back after its visibility timeout
                continue
            failed: set[str] = set()
            if not inv.ok:
                failed = {m.id for m in messages}
            elif "ReportBatchItemFailures" in (esm.function_response_types or []):
                failed = _batch_item_failures(inv.result, {m.id for m in messages})
            for m in messages:
                if m.id not in failed:
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
            "messageAttributes": {  # moto keeps the API shape (DataType/StringValue/BinaryValue)
                k: {"stringValue": v.get("StringValue", v.get("string_value")),
                    "binaryValue": v.get("BinaryValue", v.get("binary_value")),
                    "stringListValues": [], "binaryListValues": [], "dataType": v.get("DataType", v.get("data_type"))}
                for k, v in (m.message_attributes or {}).items()
            },
            "md5OfBody": m.body_md5,
            "eventSource": "aws:sqs",
            "eventSourceARN": queue.queue_arn,
            "awsRegion": self.region,
        }

    # ------------------------------------------------------------------ processing jobs
    def _run_pending_jobs(self) -> int:
        """Start every new InProgress job in its own thread (jobs run concurrently; how many can be InProgress at
        once is the instance quota's business, enforced by CreateProcessingJob: ``job_quota``)."""
        count = 0
        for desc in moto_patches.processing_jobs(self.account, self.region):
            name = desc["ProcessingJobName"]
            if desc["ProcessingJobStatus"] not in moto_patches.ACTIVE_JOB_STATUSES or name in self._jobs_started:
                continue
            self._jobs_started.add(name)
            count += 1
            _ = self.s3, self.client("ec2")  # created here: boto3's default session is not thread-safe for that
            self._job_futures[name] = self._job_pool.submit(self._execute_job, name)
        return count

    def _execute_job(self, name: str) -> Any:
        request = dict(moto_patches.PROCESSING_JOB_REQUESTS[name])
        request.pop("ProcessingJobArn", None)
        created = moto_patches.describe_processing_job(self.account, self.region, name).get("CreationTime")
        created_ms = int(created.timestamp() * 1000) if hasattr(created, "timestamp") else None
        stop = self._job_stops.setdefault(name, threading.Event())
        role = request.get("RoleArn") or ""

        def authorize(action: str, bucket: str, key: str, kms_key_id: str | None) -> str | None:
            check = s3_object_check(self.account, self.region, role, action, bucket, key, kms_key_id)
            self._role_allows("processing-job", role, f"arn:aws:s3:::{bucket}/{key}", check)
            return None if check.allowed else check.reason

        return job_executor.run_job(request, s3=self.s3, workdir=self.workdir / "jobs", region=self.region,
                                    account=self.account, created_ms=created_ms, now_ms=self.clock.now_ms, stop=stop,
                                    authorize=authorize, ec2=self.client("ec2"))

    def _collect_finished_jobs(self) -> int:
        count = 0
        for name, future in list(self._job_futures.items()):
            if future.done():
                del self._job_futures[name]
                self._finish_job(name, future.result())
                count += 1
        return count

    def _finish_job(self, name: str, result: Any) -> Any:
        request = dict(moto_patches.PROCESSING_JOB_REQUESTS[name])
        request.pop("ProcessingJobArn", None)
        self.job_results[name] = result
        moto_patches.set_processing_job_status(self.account, self.region, name, result.status,
                                               failure_reason=result.failure_reason,
                                               exit_message=result.exit_message)
        event = job_executor.state_change_event(request, result, region=self.region, account=self.account)
        moto_patches.put_event(self.account, self.region, event)
        return result

    def run_job(self, name: str) -> Any:
        """Run one InProgress job now (blocking) with ``localcloud.job_executor.run_job`` and record its outcome."""
        self._jobs_started.add(name)
        return self._finish_job(name, self._execute_job(name))

    def stop_job(self, name: str) -> None:
        """StopProcessingJob: a running job's process group gets SIGTERM (then SIGKILL) and the job ends
        ``Stopped`` (its state-change event is routed like any other); a job not started yet ends Stopped too."""
        self._job_stops.setdefault(name, threading.Event()).set()
        status = moto_patches.describe_processing_job(self.account, self.region, name)["ProcessingJobStatus"]
        if status == "InProgress":
            moto_patches.set_processing_job_status(self.account, self.region, name, "Stopping")

    def set_job_quota(self, instance_type: str, instances: int | None) -> int | None:
        """Set (None: remove) the processing-instance quota of ``instance_type``; returns the previous value."""
        previous = moto_patches.JOB_QUOTAS.get(instance_type)
        if instances is None:
            moto_patches.JOB_QUOTAS.pop(instance_type, None)
        else:
            moto_patches.JOB_QUOTAS[instance_type] = int(instances)
        return previous

    def _evaluate_alarms(self) -> int:
        # publish=False: state changes reach SNS through moto_patches.patch_alarm_states (any SetAlarmState does)
        transitions = alarms.evaluate_all(self.cloudwatch, self.sns, now=self.clock.now(), publish=False)
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
    except (OSError, subprocess.TimeoutExpired):  # gone already, or still running after 5 s
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
