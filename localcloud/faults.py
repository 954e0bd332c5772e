"""Fault injection: make chosen AWS calls fail with a real error response, whoever makes them.

    f = cloud.faults.add(service="sagemaker", operation="CreateProcessingJob", error_code="ResourceLimitExceeded",
                         message="...", times=3)                  # the next 3 calls fail (times=None: every call)
    cloud.faults.add(service="s3", operation="GetObject", error_code="SlowDown", http_status=503, probability=0.5)
    f.hits                                                        # how many calls it failed so far
    cloud.faults.remove(f); cloud.faults.clear()
    with cloud.faults.injected(service="cloudwatch", operation="PutMetricData", error_code="AccessDenied",
                               http_status=403):
        cloud.run_until_idle()                                    # the fault is removed on exit

The faults are applied by a WSGI middleware in front of the in-process moto server (:meth:`FaultInjector.wrap`), so
they reach every client of the emulator: the Lambda subprocesses (the trigger, the metrics function), the job
executor's S3 calls, boto3 clients in tests. The emulator's own in-process bookkeeping (moto backends called directly:
event routing, SQS polling for event-source mappings, AWS/* service metrics) is not affected.

A request is identified as AWS identifies it, from the request itself:

* **service**: the SigV4 signing name in the ``Authorization`` header's credential scope (or ``X-Amz-Credential`` of
  a presigned URL). ``service`` is given as the botocore client name (``cloudwatch``, ``sqs``, ``s3`` ...) and mapped
  to its signing name with botocore's service model (``cloudwatch`` signs as ``monitoring``).
* **operation**: ``X-Amz-Target`` (JSON protocols: SQS, SageMaker, EventBridge, KMS), the ``Action`` form parameter
  (query protocol: SNS, STS), the ``/operation/<Name>`` path (Smithy RPC v2 CBOR: CloudWatch), or, for REST protocols
  (S3, Lambda), the method + path + query matched against each operation's ``http.requestUri`` in botocore's model
  (the most specific template wins; ``x-amz-copy-source`` tells CopyObject/UploadPartCopy from PutObject/UploadPart).

The error response is written in the request's wire protocol, so botocore parses the code as it would AWS's:
JSON ``{"__type": code, "message": ...}``; query ``<ErrorResponse><Error><Type/><Code/><Message/>``; CBOR
``{"__type", "message"}`` with ``smithy-protocol: rpc-v2-cbor``; rest-xml ``<Error><Code/><Message/>`` (no body for
HEAD, as S3 does); rest-json ``x-amzn-ErrorType`` header + ``{"message"}``. ``http_status`` defaults to 400; codes
botocore treats as retryable (throttling codes, 5xx) are retried by the caller's SDK as against AWS.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote


@dataclass
class Fault:
    """One injected fault; ``times`` counts down (None = unlimited), ``hits`` counts failed calls."""

    service: str  # botocore client name, e.g. "sagemaker"
    operation: str  # API operation name, e.g. "CreateProcessingJob"
    error_code: str
    message: str = ""
    http_status: int = 400
    times: int | None = None
    probability: float | None = None
    hits: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.times <= 0


@cache
def signing_name(service: str) -> str:
    """The SigV4 signing name of a botocore client name (``cloudwatch`` -> ``monitoring``)."""
    import botocore.session

    try:
        return botocore.session.get_session().get_service_model(service).signing_name
    except Exception:  # noqa: BLE001 - an unknown name (whatever botocore raises): take it as a signing name
        return service


@cache
def _rest_operations(signing: str) -> list[tuple[str, re.Pattern, list[tuple[str, str | None]], int, str]]:
    """(method, path regex, required query items, specificity, operation) for a REST service's operations."""
    import botocore.session

    session = botocore.session.get_session()
    names = {"s3": "s3", "lambda": "lambda"}
    service = names.get(signing, signing)
    try:
        model = session.get_service_model(service)
    except Exception:  # noqa: BLE001 - no model for the name (whatever botocore raises): no REST operations
        return []
    out = []
    for op_name in model.operation_names:
        http = model.operation_model(op_name).http
        uri = http.get("requestUri", "/")
        path, _, query = uri.partition("?")
        regex = ""
        literal = 0
        for part in re.split(r"(\{[^}]+\})", path):
            if part.startswith("{") and part.endswith("}"):
                regex += "(.+)" if part.endswith("+}") else "([^/]+)"
            else:
                regex += re.escape(part)
                literal += len(part)
        required = []
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            required.append((key, value if eq else None))
        out.append((http.get("method", "GET"), re.compile(regex + "/?"), required, literal + 100 * len(required),
                    op_name))
    return out


def rest_operation(signing: str, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
                   ) -> str | None:
    """The operation a REST request (S3, Lambda) calls, from botocore's ``requestUri`` templates."""
    best: tuple[int, str] | None = None
    copy = "x-amz-copy-source" in headers
    for op_method, regex, required, score, name in _rest_operations(signing):
        if op_method != method or not regex.fullmatch(path):
            continue
        if any(key not in query or (value is not None and value not in query[key]) for key, value in required):
            continue
        if name in ("CopyObject", "UploadPartCopy"):
            if not copy:
                continue
            score += 1000
        if best is None or score > best[0]:
            best = (score, name)
    return best[1] if best else None


def _cbor_text(s: str) -> bytes:
    data = s.encode("utf-8")
    n = len(data)
    if n < 24:
        head = bytes([0x60 | n])
    elif n < 256:
        head = bytes([0x78, n])
    elif n < 65536:
        head = bytes([0x79]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x7A]) + n.to_bytes(4, "big")
    return head + data


def cbor_error_body(code: str, message: str) -> bytes:
    """CBOR map {"__type": code, "message": message} (RFC 8949: a map of two text strings)."""
    return bytes([0xA2]) + _cbor_text("__type") + _cbor_text(code) + _cbor_text("message") + _cbor_text(message)


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class RequestInfo:
    service: str  # signing name
    operation: str | None
    protocol: str  # json | query | cbor | rest-xml | rest-json
    method: str
    content_type: str


def identify(environ: dict[str, Any], body: bytes) -> RequestInfo:
    """Signing name, operation and wire protocol of a WSGI request (see the module docstring)."""
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    content_type = environ.get("CONTENT_TYPE", "") or ""
    method = environ.get("REQUEST_METHOD", "GET")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    auth = headers.get("authorization", "")
    match = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", auth)
    service = match.group(1) if match else ""
    if not service and "X-Amz-Credential" in query:
        parts = query["X-Amz-Credential"][0].split("/")
        service = parts[3] if len(parts) > 3 else ""
    path = unquote(environ.get("PATH_INFO", "/") or "/")
    target = headers.get("x-amz-target")
    if target:
        return RequestInfo(service, target.rsplit(".", 1)[-1], "json", method, content_type)
    if "cbor" in content_type or headers.get("smithy-protocol") == "rpc-v2-cbor":
        op = path.rstrip("/").rsplit("/operation/", 1)[-1] if "/operation/" in path else None
        return RequestInfo(service, op, "cbor", method, content_type)
    if content_type.startswith("application/x-www-form-urlencoded") and method == "POST":
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        action = (form.get("Action") or query.get("Action") or [None])[0]
        if action:
            return RequestInfo(service, action, "query", method, content_type)
    if "Action" in query and service != "s3":
        return RequestInfo(service, query["Action"][0], "query", method, content_type)
    if service == "s3":
        host = headers.get("host", "")
        hostname = host.split(":")[0]
        if hostname.endswith(".localhost"):  # virtual-hosted style: bucket.localhost
            path = "/" + hostname[: -len(".localhost")] + path
        return RequestInfo(service, rest_operation("s3", method, path, query, headers), "rest-xml", method,
                           content_type)
    return RequestInfo(service, rest_operation(service, method, path, query, headers) if service else None,
                       "rest-json", method, content_type)


def error_response(info: RequestInfo, fault: Fault) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of the fault's error in the request's wire protocol."""
    request_id = str(uuid.uuid4())
    status = f"{fault.http_status} {_REASONS.get(fault.http_status, 'Error')}"
    sender = "Sender" if fault.http_status < 500 else "Receiver"
    message = fault.message or f"injected fault: {fault.error_code}"
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if info.protocol == "json":
        ctype = info.content_type if info.content_type.startswith("application/x-amz-json") else \
            "application/x-amz-json-1.1"
        body = json.dumps({"__type": fault.error_code, "message": message}).encode()
        headers.append(("Content-Type", ctype))
    elif info.protocol == "cbor":
        body = cbor_error_body(fault.error_code, message)
        headers += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
    elif info.protocol == "query":
        body = (f'<ErrorResponse><Error><Type>{sender}</Type><Code>{_xml_escape(fault.error_code)}</Code>'
                f"<Message>{_xml_escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
                "</ErrorResponse>").encode()
        headers.append(("Content-Type", "text/xml"))
    elif info.protocol == "rest-xml":
        body = b"" if info.method == "HEAD" else (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{_xml_escape(fault.error_code)}</Code><Message>{_xml_escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>").encode()
        headers.append(("Content-Type", "application/xml"))
    else:  # rest-json
        body = json.dumps({"Type": "User" if sender == "Sender" else "Service", "message": message}).encode()
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", fault.error_code)]
    headers.append(("Content-Length", str(len(body))))
    return status, headers, body


class FaultInjector:
    """The registry of active faults and the WSGI middleware that applies them (module docstring)."""

    def __init__(self, seed: int | None = None):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected_calls: list[tuple[str, str, str]] = []  # (service, operation, error code) of each failed call

    # ------------------------------------------------------------------ API
    def add(self, *, service: str, operation: str, error_code: str, message: str = "", http_status: int = 400,
            times: int | None = None, probability: float | None = None) -> Fault:
        """Fail calls of ``service``'s ``operation`` with ``error_code``: the next ``times`` calls (None: all), each
        with ``probability`` (None: always). Returns the fault (``hits`` counts the calls it failed)."""
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for every call)")
        if probability is not None and not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        if not 400 <= int(http_status) <= 599:
            raise ValueError("http_status must be a 4xx or 5xx status")
        fault = Fault(service=service, operation=operation, error_code=error_code, message=message,
                      http_status=int(http_status), times=times, probability=probability)
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    @contextlib.contextmanager
    def injected(self, **kwargs: Any) -> Iterator[Fault]:
        """``add(**kwargs)`` for the duration of the block."""
        fault = self.add(**kwargs)
        try:
            yield fault
        finally:
            self.remove(fault)

    def match(self, service_signing_name: str, operation: str | None) -> Fault | None:
        """The first active fault for this call, consuming one of its ``times`` (thread-safe)."""
        if not operation:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or fault.operation != operation:
                    continue
                if signing_name(fault.service) != service_signing_name:
                    continue
                if fault.probability is not None and self._random.random() >= fault.probability:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                fault.hits += 1
                self.injected_calls.append((fault.service, operation, fault.error_code))
                return fault
        return None

    # ------------------------------------------------------------------ WSGI
    def wrap(self, app: Callable) -> Callable:
        """A WSGI app that answers matching requests with the fault's error and passes the rest to ``app``."""

        def middleware(environ: dict[str, Any], start_response: Callable) -> Any:
            if not self._faults:
                return app(environ, start_response)
            body = b""
            if (environ.get("CONTENT_TYPE") or "").startswith("application/x-www-form-urlencoded"):
                # query protocol: the operation is the Action form field; read the body and hand a copy on
                try:
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                except ValueError:
                    length = 0
                body = environ["wsgi.input"].read(length) if length > 0 else b""
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
            info = identify(environ, body)
            fault = self.match(info.service, info.operation)
            if fault is None:
                return app(environ, start_response)
            status, headers, payload = error_response(info, fault)
            start_response(status, headers)
            return [payload]

        return middleware
