"""Run a deployed Lambda function as a local Python subprocess (no Docker).

What is real: the function's code (the zip moto stored at deploy time, i.e. the
CDK asset), its ``Handler``, its deployed ``Environment`` and its ``Timeout``.
The function's clock is the local cloud's simulated clock (``LOCALCLOUD_CLOCK_OFFSET``: ``time.time`` and
``datetime.now/utcnow/today`` are shifted in the subprocess), as a Lambda's clock is the same as the services'.
What is emulated: the runtime. The handler runs under *this* interpreter
(``sys.executable``, Python 3.11 with boto3) instead of the function's declared
runtime; a small bootstrap imports the handler, passes the event and a
``LambdaContext``-like object, and writes the result or the error as JSON.
AWS SDK calls inside the handler go to the emulator (``AWS_ENDPOINT_URL``).

Every invocation is recorded (:func:`invocations`) with its logs, so tests and
the demo can show what a function printed.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

from localcloud.clock import CLOCK
from localcloud.endpoints import ACCOUNT_ID, REGION, client_env, role_access_key

#: seconds allowed on top of the function's Timeout for interpreter start-up
STARTUP_ALLOWANCE = 5.0

_state: dict[str, Any] = {"endpoint": None, "workdir": None}
_lock = threading.Lock()
_invocations: list[Invocation] = []
_running: set[subprocess.Popen] = set()


@dataclass
class Invocation:
    function_name: str
    event: Any
    result: Any = None
    error: dict | None = None  # {"errorType", "errorMessage", "stackTrace"}
    logs: str = ""
    duration: float = 0.0
    timed_out: bool = False
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float | None = None  # simulated epoch seconds, set by LocalCloud (localcloud/clock.py)

    @property
    def ok(self) -> bool:
        return self.error is None


def configure(endpoint: str) -> None:
    """Point every function run by this module at the emulator endpoint."""
    _state["endpoint"] = endpoint


def invocations(function_name: str | None = None) -> list[Invocation]:
    """Recorded invocations, oldest first (optionally those whose name contains function_name)."""
    with _lock:
        items = list(_invocations)
    if function_name:
        items = [i for i in items if function_name in i.function_name]
    return items


def clear_invocations() -> None:
    with _lock:
        _invocations.clear()


def _workdir() -> str:
    with _lock:
        if not _state["workdir"]:
            _state["workdir"] = tempfile.mkdtemp(prefix="localcloud-lambda-")
        return _state["workdir"]


def cleanup() -> None:
    """Kill running function processes and remove unpacked code."""
    with _lock:
        procs = list(_running)
    for proc in procs:
        _kill(proc)
    with _lock:
        workdir, _state["workdir"] = _state["workdir"], None
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


atexit.register(cleanup)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def unpack_code(code_bytes: bytes) -> str:
    """Unpack a function's zip once per content hash; returns the directory."""
    digest = hashlib.sha256(code_bytes).hexdigest()[:20]
    target = os.path.join(_workdir(), digest)
    if not os.path.isdir(target):
        tmp = target + f".tmp{uuid.uuid4().hex[:6]}"
        with zipfile.ZipFile(io.BytesIO(code_bytes)) as zf:
            zf.extractall(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another thread won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return target


_BOOTSTRAP = r'''
import importlib, json, logging, os, sys, time, traceback
code_dir, handler_spec, event_path, result_path, deadline = sys.argv[1:6]
deadline = float(deadline)
_real_time = time.time
# The function's clock is the local cloud's simulated clock (localcloud/clock.py), as a Lambda's clock is AWS's: the
# parent passes the offset; time.time()/time.time_ns() and datetime.now()/utcnow()/today() are shifted by it.
_offset = float(os.environ.get("LOCALCLOUD_CLOCK_OFFSET") or 0)
if _offset:
    import datetime as _dt

    time.time = lambda: _real_time() + _offset
    time.time_ns = lambda: int((_real_time() + _offset) * 1e9)

    class _SimDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(_real_time() + _offset, tz)

        @classmethod
        def utcnow(cls):
            return cls.fromtimestamp(_real_time() + _offset, _dt.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls):
            return cls.fromtimestamp(_real_time() + _offset)

    _dt.datetime = _SimDatetime
sys.path.insert(0, code_dir)
os.chdir(code_dir)
# like the Lambda Python runtime: one handler on the root logger, level WARNING unless the code changes it
logging.basicConfig(format="[%(levelname)s]\t%(asctime)s\t%(name)s\t%(message)s", level=logging.WARNING)

class LambdaContext:
    def __init__(self):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ["LOCALCLOUD_FUNCTION_ARN"]
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = os.environ["LOCALCLOUD_REQUEST_ID"]
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
    def get_remaining_time_in_millis(self):
        return max(0, int((deadline - _real_time()) * 1000))

def _out(obj):
    with open(result_path, "w") as fh:
        json.dump(obj, fh, default=str)

try:
    module_name, func_name = handler_spec.rsplit(".", 1)
    module = importlib.import_module(module_name.replace("/", "."))
    func = getattr(module, func_name)
    with open(event_path) as fh:
        event = json.load(fh)
    result = func(event, LambdaContext())
    _out({"ok": True, "result": result})
except Exception as exc:
    tb = traceback.format_exc()
    print(tb, file=sys.stderr)
    _out({"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc),
          "stackTrace": tb.splitlines()})
'''


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {k: os.environ[k] for k in keep if k in os.environ}


def run(
    *,
    function_name: str,
    handler: str,
    code_bytes: bytes,
    event: Any,
    environment: dict[str, str] | None = None,
    timeout: float = 3,
    memory_size: int = 128,
    function_arn: str | None = None,
    endpoint: str | None = None,
    role_arn: str | None = None,
) -> Invocation:
    """Run ``handler`` from ``code_bytes`` (a zip) with ``event``; never raises for handler errors."""
    endpoint = endpoint or _state["endpoint"]
    if not endpoint:
        raise RuntimeError("localcloud.lambdas.configure(endpoint) was not called")
    inv = Invocation(function_name=function_name, event=event)
    code_dir = unpack_code(code_bytes)
    function_arn = function_arn or f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
    with tempfile.TemporaryDirectory(prefix="inv-", dir=_workdir()) as tmp:
        event_path = os.path.join(tmp, "event.json")
        result_path = os.path.join(tmp, "result.json")
        with open(event_path, "w") as fh:
            json.dump(event, fh)
        env = _base_env()
        env.update({k: str(v) for k, v in (environment or {}).items()})
        env.update(client_env(endpoint))
        if role_arn:  # the function's calls are signed as its execution role (localcloud.endpoints.role_access_key)
            env["AWS_ACCESS_KEY_ID"] = role_access_key(role_arn)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{inv.request_id}",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python_localcloud",
                "LAMBDA_TASK_ROOT": code_dir,
                "LOCALCLOUD_FUNCTION_ARN": function_arn,
                "LOCALCLOUD_REQUEST_ID": inv.request_id,
                "LOCALCLOUD_CLOCK_OFFSET": repr(CLOCK.offset),
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        started = time.time()
        deadline = started + float(timeout) + STARTUP_ALLOWANCE
        proc = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, code_dir, handler, event_path, result_path, str(deadline)],
            cwd=code_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with _lock:
            _running.add(proc)
        try:
            out, _ = proc.communicate(timeout=float(timeout) + STARTUP_ALLOWANCE)
        except subprocess.TimeoutExpired:
            _kill(proc)
            out = proc.stdout.read() if proc.stdout else b""
            inv.timed_out = True
        finally:
            with _lock:
                _running.discard(proc)
        inv.duration = time.time() - started
        inv.logs = (out or b"").decode("utf-8", "replace")
        if inv.timed_out:
            inv.error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {float(timeout):.2f} seconds",
            }
        elif os.path.exists(result_path):
            with open(result_path) as fh:
                res = json.load(fh)
            if res.pop("ok"):
                inv.result = res["result"]
            else:
                inv.error = res
        else:
            inv.error = {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"process exited with status {proc.returncode} before returning",
            }
    with _lock:
        _invocations.append(inv)
    return inv


def run_moto_function(fn: Any, event: Any) -> Invocation:
    """Run a moto ``LambdaFunction`` (as deployed) with ``event``."""
    runtime = fn.run_time or ""
    if not runtime.startswith("python"):
        inv = Invocation(function_name=fn.function_name, event=event)
        inv.error = {
            "errorType": "Runtime.Unsupported",
            "errorMessage": f"localcloud runs Python functions only (runtime {runtime!r})",
        }
        with _lock:
            _invocations.append(inv)
        return inv
    return run(
        function_name=fn.function_name,
        handler=fn.handler,
        code_bytes=fn.code_bytes,
        event=event,
        environment=fn.environment_vars,
        timeout=float(fn.timeout or 3),
        memory_size=int(fn.memory_size or 128),
        function_arn=fn.function_arn,
        role_arn=getattr(fn, "role", None),
    )
