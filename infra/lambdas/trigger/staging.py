"""S3 before the job: which key the event names, the job's staged copy of that version, the dataset's baseline."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_shared.logs import decision_log
from lambda_shared.s3errors import S3ErrorKind, classify, status_and_code
from trigger.events import ObjectRef, key_candidates
from trigger.refusals import REASON_ACCESS_DENIED, REASON_OBJECT_NOT_FOUND, REASON_VERSION_MISMATCH, RefusedKeyError
from trigger.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CopyObjectRequestTypeDef,
        CopySourceTypeDef,
        HeadObjectRequestTypeDef,
        UploadPartCopyRequestTypeDef,
    )

log_decision = decision_log("dq.trigger")


# Staging (design.md Contract 1): CopyObject copies at most 5 GB in one request; above that, a multipart copy.
MULTIPART_COPY_THRESHOLD = 5 * 1000**3  # bytes: the decimal 5 GB, below the 5 GiB limit whichever AWS means
COPY_PART_SIZE = 512 * 1024**2  # bytes per UploadPartCopy (S3: 5 MiB..5 GiB per part)
MAX_PARTS = 10_000  # S3's limit on parts per upload
COPY_WORKERS = 8  # concurrent UploadPartCopy requests of one multipart copy


@dataclass(frozen=True)
class SourceObject:
    """The object version S3 confirmed for an event (HeadObject): the real key, its size and ETag.

    ``encoded`` is True when the event's key was URL-encoded (the decoded form is the one that exists).
    """

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    encoded: bool = False


def copy_part_size(size: int) -> int:
    """Part size of a multipart copy of ``size`` bytes: :data:`COPY_PART_SIZE`, larger when 10,000 parts need it."""
    needed = -(-size // MAX_PARTS)
    mib = 1024**2
    return max(COPY_PART_SIZE, -(-needed // mib) * mib)


def copy_ranges(size: int, part_size: int) -> list[str]:
    """``CopySourceRange`` values (``bytes=first-last``, inclusive) covering ``0..size-1`` in order, one per part."""
    return [f"bytes={start}-{min(start + part_size, size) - 1}" for start in range(0, size, part_size)]


def find_baseline(s3: S3Client, dataset: str, settings: Settings, base: Mapping[str, Any]) -> str | None:
    """``s3://`` URI of the dataset's baseline.json if HeadObject finds it, else None.

    404 means no baseline. The role has ``s3:ListBucket`` on the baseline prefix, so a missing key should be a 404;
    a 403 therefore most likely means the baseline exists but cannot be read (IAM, bucket policy, KMS). It is still
    treated as "no baseline" rather than retried (retrying would block every job of the dataset until someone fixes
    the permission), and logged at ERROR as ``baseline-unreadable``; the job then reports drift as unavailable and
    the DriftUnavailable metric (alarm after 3 hours) shows it. Any other error (throttling, 5xx, network, after
    botocore's retries) raises: the record is retried like any other transient failure.
    """
    key = settings.baseline_key(dataset)
    try:
        s3.head_object(Bucket=settings.data_bucket, Key=key)
    except ClientError as exc:
        kind = classify(exc)
        if kind in (S3ErrorKind.ABSENT, S3ErrorKind.DENIED, S3ErrorKind.KEY):
            if kind is not S3ErrorKind.ABSENT:  # denied (IAM, bucket policy) or the KMS key is unusable
                _, code = status_and_code(exc)
                log_decision("baseline-unreadable", logging.ERROR, **base, baseline_key=key, error_code=code,
                             reason="HeadObject returned 403 (access denied: IAM, bucket policy or KMS): "
                                    "the job runs without a baseline, drift unavailable")
            return None
        raise
    return f"s3://{settings.data_bucket}/{key}"


def resolve_source(s3: S3Client, obj: ObjectRef, settings: Settings) -> SourceObject:
    """Ask S3 which key the event names: HeadObject of the event's version, the raw key first, then the decoded one.

    Unversioned events (no ``version-id``, or ``"null"``) head the current object instead, and the event's size and
    ETag must match it (else a newer upload replaced the bytes this event named; that upload has its own event).
    Only candidates under the input prefix are tried.

    Raises:
        RefusedKeyError: ``ObjectNotFound`` (404/NoSuchKey/NoSuchVersion/405 for every candidate),
            ``VersionMismatch`` (the object differs from the event), or ``AccessDenied`` with ``retry`` (a 403 for
            a candidate and no candidate found: the role has s3:ListBucket on the input prefix, so S3 should answer
            404 for a missing key, but a 403 can still mean "absent" as well as "denied" (IAM, bucket policy, KMS),
            and the two cannot be told apart; the event is kept and retried rather than dropped).
        ClientError / BotoCoreError: anything else (throttling, 5xx, network): the record is retried.
    """
    tried: list[str] = []
    denied: list[str] = []
    for key in key_candidates(obj.key):
        if not key.startswith(settings.input_prefix) or key.endswith("/"):
            continue
        params: HeadObjectRequestTypeDef = {"Bucket": obj.bucket, "Key": key}
        if obj.version_id:
            params["VersionId"] = obj.version_id
        try:
            head = s3.head_object(**params)
        except ClientError as exc:
            kind = classify(exc)  # 404/405/NoSuchKey/NoSuchVersion: no such key or version
            if kind is S3ErrorKind.ABSENT:
                tried.append(key)
                continue
            if kind in (S3ErrorKind.DENIED, S3ErrorKind.KEY):  # a 403 or an unusable KMS key: absent or denied?
                denied.append(key)
                continue
            raise
        size = int(head.get("ContentLength", -1))
        etag = str(head.get("ETag", "")).strip('"')
        if obj.size is not None and size != obj.size:
            raise RefusedKeyError(
                f"S3 has {size} bytes for {key!r} version {obj.version_id or '(unversioned, current)'}, the event says "
                f"{obj.size}: not the object the event names (a newer upload has its own event)",
                REASON_VERSION_MISMATCH)
        if not obj.version_id and obj.etag and etag and etag != obj.etag:
            raise RefusedKeyError(
                f"the current object {key!r} has ETag {etag}, the event's has {obj.etag}: it was replaced before it "
                f"could be staged (unversioned bucket; the newer upload has its own event)", REASON_VERSION_MISMATCH)
        return SourceObject(bucket=obj.bucket, key=key, version_id=obj.version_id, size=size, etag=etag,
                            encoded=key != obj.key)
    version = f"version {obj.version_id}" if obj.version_id else "the current version (unversioned event)"
    if denied:
        raise RefusedKeyError(
            f"HeadObject of {version} answered 403 for {denied!r}"
            + (f" and 404 for {tried!r}" if tried else "")
            + ": the object is absent or the trigger may not read it (IAM, bucket policy, KMS); cannot tell which",
            REASON_ACCESS_DENIED, retry=True)
    raise RefusedKeyError(
        f"no object at {version} under the event's key, raw or URL-decoded ({tried!r}): deleted, or an "
        f"event key encoding this trigger does not know", REASON_OBJECT_NOT_FOUND)


def stage_source(s3: S3Client, source: SourceObject, bucket: str, key: str, *, workers: int | None = None) -> str:
    """Server-side copy of exactly ``source``'s version to ``key`` (the job's staging key); returns how.

    CopyObject up to :data:`MULTIPART_COPY_THRESHOLD`, else CreateMultipartUpload + UploadPartCopy (ranges covering
    every byte, in order) + CompleteMultipartUpload (aborted on failure). Each copy names the source version
    (``VersionId``; unversioned: ``CopySourceIfMatch`` with the ETag HeadObject saw). The copy is verified: S3
    reports the source version it copied (``CopySourceVersionId``), and it must be the event's.

    Raises:
        RefusedKeyError: ``VersionMismatch`` when S3 reports another source version.
        ClientError / BotoCoreError: the copy failed (retried like any transient failure; a 404/412 of the source
            here means it was deleted or replaced since HeadObject, and the retry's HeadObject tells).
    """
    copy_source: CopySourceTypeDef = {"Bucket": source.bucket, "Key": source.key}
    if_match: str | None = None  # CopySourceIfMatch, on every copy request
    if source.version_id:
        copy_source["VersionId"] = source.version_id
    elif source.etag:
        if_match = f'"{source.etag}"'

    def check(reported: str | None) -> None:
        if source.version_id and reported and reported != source.version_id:
            raise RefusedKeyError(
                f"S3 copied version {reported} of {source.key!r} to {key!r}, not the event's {source.version_id}",
                REASON_VERSION_MISMATCH)

    if source.size <= MULTIPART_COPY_THRESHOLD:
        # TaggingDirective REPLACE (no tags): the copy needs no s3:GetObjectTagging/PutObjectTagging, and it carries
        # no tags, like a multipart copy (UploadPartCopy copies bytes only). Metadata (Content-Type, ...) is copied.
        request: CopyObjectRequestTypeDef = {"Bucket": bucket, "Key": key, "CopySource": copy_source,
                                             "TaggingDirective": "REPLACE"}
        if if_match is not None:
            request["CopySourceIfMatch"] = if_match
        response = s3.copy_object(**request)
        check(response.get("CopySourceVersionId"))
        return "copy-object"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    ranges = copy_ranges(source.size, copy_part_size(source.size))

    def copy_part(number: int) -> CompletedPartTypeDef:
        part_request: UploadPartCopyRequestTypeDef = {
            "Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number, "CopySource": copy_source,
            "CopySourceRange": ranges[number - 1]}
        if if_match is not None:
            part_request["CopySourceIfMatch"] = if_match
        response = s3.upload_part_copy(**part_request)
        check(response.get("CopySourceVersionId"))
        return {"ETag": response["CopyPartResult"]["ETag"], "PartNumber": number}

    workers = COPY_WORKERS if workers is None else workers
    try:
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(copy_part, range(1, len(ranges) + 1)))
        else:
            parts = [copy_part(n) for n in range(1, len(ranges) + 1)]
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:  # the lifecycle rule aborts it after 7 days anyway
            log_decision("abort-failed", logging.WARNING, staging_key=key, upload_id=upload_id, error=str(exc))
        raise
    return f"multipart-copy ({len(ranges)} parts)"
