"""S3 -> EventBridge: AWS-shaped "Object Created" (etc.) events routed through the default bus's rules.

:func:`patch_s3_eventbridge`: moto's event has the wrong shape (float time, ``eTag``, fixed sequencer) and a multipart
upload sends three events instead of one.
"""

from __future__ import annotations

import itertools
import logging
import random
import string
import threading
import uuid
from datetime import UTC, datetime

from localcloud.clock import CLOCK
from localcloud.patches.events import put_event
from localcloud.patches.registry import once, replace

log = logging.getLogger("localcloud")
_tls = threading.local()
_sequencer = itertools.count(int(datetime.now(UTC).timestamp() * 1000) << 20)


_S3_REASONS = {  # event name -> detail.reason (AWS: "Amazon S3 event message structure" for EventBridge)
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "PostObject",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
    "s3:ObjectTagging:Put": "PutObjectTagging",
    "s3:ObjectTagging:Delete": "DeleteObjectTagging",
    "s3:ObjectAcl:Put": "PutObjectAcl",
}


def s3_eventbridge_event(account_id: str, bucket, event_name: str, key) -> dict:
    """The EventBridge event S3 sends for ``event_name`` (e.g. ``s3:ObjectCreated:Put``), in AWS's shape."""
    from moto.s3.notifications import _detail_type

    action = event_name.split(":")[-1]
    # The key is sent RAW. AWS does not document whether S3's EventBridge events URL-encode detail.object.key (the
    # classic S3 notification format does); an AWS solutions sample tested with real uploads (medialake, PR 21) says
    # it arrives un-encoded, Powertools' data class decodes it (FACTS.md section 10). The trigger does not rely on
    # either: it asks S3 which of the raw and the decoded key exists at the event's version. Raw is the form the
    # only real-upload evidence shows; the trigger's Stubber tests cover the encoded form.
    obj = {"key": key.name, "size": key.size, "etag": key.etag.replace('"', "")}
    if getattr(bucket, "is_versioned", False) and key.version_id and key.version_id != "null":
        obj["version-id"] = key.version_id
    obj["sequencer"] = format(next(_sequencer), "016X")
    detail = {
        "version": "0",
        "bucket": {"name": bucket.name},
        "object": obj,
        "request-id": "".join(random.choices(string.ascii_uppercase + string.digits, k=16)),
        "requester": account_id,
        "source-ip-address": "127.0.0.1",
        "reason": _S3_REASONS.get(str(getattr(event_name, "value", event_name)), action),
    }
    if "ObjectRemoved" in event_name:
        obj.pop("etag", None)
        obj.pop("size", None)
        detail["deletion-type"] = "Delete Marker Created" if action == "DeleteMarkerCreated" else "Permanently Deleted"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": _detail_type(event_name),
        "source": "aws.s3",
        "account": account_id,
        "time": CLOCK.iso(),
        "region": bucket.region_name,
        "resources": [f"arn:aws:s3:::{bucket.name}"],
        "detail": detail,
    }


def patch_s3_eventbridge() -> None:
    """Buckets with EventBridgeConfiguration send AWS-shaped events to the default bus's rules.

    moto 5.2.5 already calls this hook for PutObject, PostObject, CopyObject,
    CompleteMultipartUpload, tagging and deletes; we replace the event it builds (time was a
    float, ``eTag`` instead of ``etag``, constant sequencer/request-id, version-id
    on unversioned buckets) and route it with :func:`put_event`. A multipart upload
    sends exactly one event (reason ``CompleteMultipartUpload``), as S3 does.
    """
    if not once("s3_eventbridge"):
        return
    from moto.s3 import notifications

    def _send_event_bridge_message(account_id, bucket, event_name, key):
        try:
            put_event(account_id, bucket.region_name, s3_eventbridge_event(account_id, bucket, event_name, key))
        except Exception:  # async in AWS: never fail the S3 call
            log.exception("S3 -> EventBridge delivery failed")


    # moto's CompleteMultipartUpload stores the object through put_object and put_object_tagging, which send
    # ObjectCreated:Put and ObjectTagging:Put; AWS sends only the one CompleteMultipartUpload event.
    from moto.s3.models import S3Backend

    original_complete = S3Backend.complete_multipart_upload
    original_send = notifications.send_event
    complete_event = notifications.S3NotificationEvent.OBJECT_CREATED_COMPLETE_MULTIPART_UPLOAD_EVENT

    def send_event(account_id, event_name, bucket, key):
        if getattr(_tls, "in_multipart", False) and event_name != complete_event:
            return None
        return original_send(account_id, event_name, bucket, key)

    def complete_multipart_upload(self, *args, **kwargs):
        _tls.in_multipart = True
        try:
            return original_complete(self, *args, **kwargs)
        finally:
            _tls.in_multipart = False

    replace(notifications, "_send_event_bridge_message", _send_event_bridge_message)
    replace(notifications, "send_event", send_event)
    replace(S3Backend, "complete_multipart_upload", complete_multipart_upload)
