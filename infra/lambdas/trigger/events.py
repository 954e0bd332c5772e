"""The message: an S3 "Object Created" EventBridge event in an SQS body, and which keys it may name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

import contract
from trigger.settings import API_STRING_MAX, Settings

#: The file that completes a folder batch (design.md Contract 5; Hadoop's FileOutputCommitter writes it last; the same
#: name as the job's own output marker, contract.SUCCESS_MARKER).
BATCH_MARKER = contract.SUCCESS_MARKER
#: The other marker: a JSON list of the folder's files (optionally with versions) that make the batch.
BATCH_MANIFEST = "_manifest.json"
PART_REASON = ("part of a folder batch: processed with its folder when the folder's _SUCCESS marker arrives "
               "(design.md Contract 5)")


@dataclass(frozen=True)
class ObjectRef:
    """One dropped object version as the event names it: ``key`` is ``detail.object.key`` exactly as it arrived."""

    bucket: str
    key: str
    version_id: str
    size: int | None
    etag: str = ""


def decode_event_key(raw_key: str) -> str:
    """The form-URL-decoded reading of ``detail.object.key`` (``+`` -> space, ``%2B`` -> ``+``).

    AWS does not document whether S3's EventBridge events URL-encode the key (the classic S3 notification format
    does; evidence for EventBridge conflicts: docs/design.md Contract 2). So this is only a candidate: the trigger
    asks S3 which of the raw key and this one exists at the event's version (:func:`key_candidates`).
    """
    return unquote_plus(raw_key, encoding="utf-8", errors="strict")


def key_candidates(raw_key: str) -> list[str]:
    """The keys an event's ``detail.object.key`` may stand for, in the order they are tried: raw, then decoded.

    A raw key that is no valid percent-encoding of UTF-8 (e.g. a literal ``%FF``) has only its raw reading.
    """
    try:
        decoded = decode_event_key(raw_key)
    except UnicodeDecodeError:
        return [raw_key]
    return [raw_key] if decoded == raw_key else [raw_key, decoded]


def parse_object_created(body: str) -> ObjectRef:
    """Extract the object reference from an SQS message body holding an S3 "Object Created" event.

    Raises:
        ValueError: the body is not such an event (never retried: it would never parse).
    """
    event = json.loads(body)
    if not isinstance(event, dict):
        raise ValueError("message body is not a JSON object")
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        raise ValueError(
            f"not an S3 'Object Created' event (source={event.get('source')!r}, "
            f"detail-type={event.get('detail-type')!r})"
        )
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    raw_key = obj.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(raw_key, str) or not raw_key:
        raise ValueError("event has no detail.bucket.name or detail.object.key")
    size = obj.get("size")
    version_id = obj.get("version-id")
    etag = obj.get("etag")
    return ObjectRef(
        bucket=bucket,
        key=raw_key,
        version_id=version_id if isinstance(version_id, str) and version_id != "null" else "",
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        etag=etag.strip('"')[:API_STRING_MAX] if isinstance(etag, str) else "",
    )


def key_depth(key: str, settings: Settings) -> int:
    """Number of ``/``-separated components of ``key`` below the input prefix."""
    return len(key[len(settings.input_prefix):].split("/"))


def is_marker(key: str) -> bool:
    """True for a folder batch's ``_SUCCESS`` or ``_manifest.json`` marker (:func:`trigger.folders.marker_folder`
    checks where)."""
    return key.rsplit("/", 1)[-1] in (BATCH_MARKER, BATCH_MANIFEST)


def is_part(key: str, settings: Settings) -> bool:
    """True for a key inside a folder of a dataset (``<input_prefix><dataset>/<folder>/.../<file>``) that is no
    marker: such a key waits for its folder's marker instead of starting a job (design.md Contract 5)."""
    return key.startswith(settings.input_prefix) and key_depth(key, settings) >= 3 and not is_marker(key)


def ignore_reason(obj: ObjectRef, settings: Settings) -> str | None:
    """Why this object is not ours to process, or None if it is: the documented quiet skips (logged, not told).

    Folder markers (key ending in ``/``) and zero-byte objects hold no data (a ``_SUCCESS`` batch marker is not
    skipped: it starts its folder's job); parts of a folder batch wait for their folder's marker (design.md Contract
    5: :func:`trigger.folders.is_part`); the other cases cannot happen through
    the stack's EventBridge rule (bucket and input prefix are in its pattern). Checked on the event's key: URL
    encoding keeps ``/`` and never changes the input prefix (safe characters only, infra/config.py).
    """
    if obj.bucket != settings.data_bucket:
        return "bucket is not the data bucket"
    if obj.key.endswith("/"):
        return "folder marker"
    if obj.key.startswith(settings.output_prefix):
        return "key is under the output prefix"
    if not obj.key.startswith(settings.input_prefix):
        return "key is outside the input prefix"
    if is_part(obj.key, settings):
        return PART_REASON
    if obj.size == 0 and not is_marker(obj.key):  # a _SUCCESS marker is empty by convention
        return "zero-byte object"
    return None
