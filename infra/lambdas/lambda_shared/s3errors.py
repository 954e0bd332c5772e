"""One classification of S3 errors for both Lambdas (each call site decides what a kind means for it).

HeadObject errors carry no body: their code is the HTTP status as text (``"404"``), so both the code and the status
are read. Kinds:

- ``ABSENT``: no such key, version, or bucket (404), or the version is a delete marker (405).
- ``DENIED``: 403 / AccessDenied / Forbidden. Without s3:ListBucket on the prefix S3 answers 403 for a missing key
  too, so a 403 can mean absent or denied: the site decides.
- ``KEY``: the object's KMS key cannot be used (``KMS.*`` codes: disabled, pending deletion, no access).
- ``ARCHIVED``: InvalidObjectState (an archived storage class).
- ``CONFLICT``: a conditional write lost (412 PreconditionFailed: the object exists; 409 ConditionalRequestConflict:
  another conditional write is in flight).
- ``OTHER``: anything else (throttling, 5xx, ...): callers re-raise so the invocation is retried.
"""

from __future__ import annotations

from enum import Enum

from botocore.exceptions import ClientError


class S3ErrorKind(Enum):
    ABSENT = "absent"
    DENIED = "denied"
    KEY = "key"
    ARCHIVED = "archived"
    CONFLICT = "conflict"
    OTHER = "other"


ABSENT_CODES = frozenset({"404", "405", "NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NotFound", "MethodNotAllowed"})
DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})
CONFLICT_CODES = frozenset({"412", "409", "PreconditionFailed", "ConditionalRequestConflict"})
#: What makes an object unreadable for good (the metrics Lambda: MetricsUnavailable, not a retry).
UNREADABLE = frozenset({S3ErrorKind.ABSENT, S3ErrorKind.DENIED, S3ErrorKind.KEY, S3ErrorKind.ARCHIVED})


def status_and_code(error: ClientError) -> tuple[int, str]:
    """HTTP status and error code of a ClientError (0 and "" when absent)."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    code = str(error.response.get("Error", {}).get("Code", ""))
    return int(status or 0), code


def classify(error: ClientError) -> S3ErrorKind:
    """The kind of an S3 ClientError (module docstring)."""
    status, code = status_and_code(error)
    if code in CONFLICT_CODES or status in (409, 412):
        return S3ErrorKind.CONFLICT
    if code in ABSENT_CODES or status in (404, 405):
        return S3ErrorKind.ABSENT
    if code.startswith("KMS."):
        return S3ErrorKind.KEY
    if code == "InvalidObjectState":  # S3 answers it with 403
        return S3ErrorKind.ARCHIVED
    if code in DENIED_CODES or status == 403:
        return S3ErrorKind.DENIED
    return S3ErrorKind.OTHER


def error_code(error: BaseException) -> str:
    """The error code of a ClientError, else the exception's class name (for the decision log)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return type(error).__name__
