"""Folder batches (design.md Contract 5): a folder under ``<input_prefix><dataset>/`` completed by a ``_SUCCESS``
marker (the Hadoop/Spark convention) is ONE job over all its files.

- A key in a subfolder of a dataset (``<input_prefix><dataset>/<folder>/.../<file>``) is a **part**: it never starts
  a job of its own (a documented quiet skip, logged ``ignored`` with reason :data:`PART_REASON`).
- ``<input_prefix><dataset>/<folder>/.../_SUCCESS`` is a **marker**: the job is the folder's content *as it was when
  that marker version was written*. :func:`list_batch` pins it with ``ListObjectVersions`` (one request per 1,000
  versions, version ids, sizes and ETags included, no per-object HeadObject): for each key under the folder, the newest
  version whose ``LastModified`` is not after the marker version's (S3's clock for both); a key whose version at that
  time is a delete marker, or that did not exist yet, is not in the batch. So a redelivered marker event lists the same
  versions again even when parts were replaced or added since, and its copies under the same staging keys hold the
  same bytes (the job name comes from the marker's bucket, key and version, as for one object).
  Names with a component starting with ``_`` or ``.`` (``_SUCCESS``, ``_temporary/``, ``.crc`` files: Hadoop's hidden
  files) and zero-byte objects are not parts. Nested folders are parts of every marked folder above them.
- The parts are staged (the single-object copy code, :func:`trigger.staging.stage_source`, 8 at a time) under
  ``<staging_prefix><dataset>/<job-name>/<path relative to the marker's folder>``, and the job reads that folder.
- ``<folder>/_manifest.json`` is the other marker: exactly the files it lists (:func:`parse_manifest`), each at the
  version it names or, without one, as of the manifest version's time (the same rule).
- Refused and told (``KeyRefused`` + the alert topic): a marker not inside a folder of a dataset (``InvalidBatch``),
  a folder without parts (``EmptyBatch``), more than :data:`MAX_BATCH_PARTS` parts (``BatchTooLarge``), a part whose
  key cannot be staged (``InvalidKey``), a manifest that is not valid or lists what the folder does not hold
  (``InvalidManifest``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import contract
from trigger.events import BATCH_MANIFEST, BATCH_MARKER, key_depth
from trigger.refusals import (
    REASON_BATCH_TOO_LARGE,
    REASON_EMPTY_BATCH,
    REASON_INVALID_BATCH,
    REASON_INVALID_MANIFEST,
    REASON_OBJECT_NOT_FOUND,
    RefusedKeyError,
)
from trigger.request import (
    CONTROL_CHARS_RE,
    S3_KEY_MAX_BYTES,
    build_processing_job_request,
    map_key,
    staging_key,
    tag_value,
)
from trigger.settings import DATA_LOCAL_PATH, Settings
from trigger.staging import SourceObject, stage_source

if TYPE_CHECKING:  # pragma: no cover
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker.type_defs import CreateProcessingJobRequestTypeDef

#: Parts one marker may stage. Bounded by the trigger's timeout (300 s for a batch of up to 5 records): measured
#: against the local cloud's S3 (bench/folder_staging.py), listing and staging 1,000 parts of 4 KB 8 at a time took
#: 6.4 s (6.4 ms per part); AWS publishes no CopyObject latency: at an assumed 100 ms per copy, 5 such markers in one
#: batch take about 65 s (infra/lambdas/README.md "Folder batches").
MAX_BATCH_PARTS = 1000
#: Concurrent CopyObject requests while staging one batch (tests set 1: Stubber answers in order).
BATCH_COPY_WORKERS = 8


@dataclass(frozen=True)
class BatchPart:
    """One file of a batch: the pinned object version and its path relative to the marker's folder."""

    source: SourceObject
    relative: str


@dataclass(frozen=True)
class Batch:
    """The files one marker version completes: what the job reads (sparkstack's engine choice reads
    :attr:`total_bytes`)."""

    marker: SourceObject
    folder: str  # key prefix of the marker's folder, ending in "/"
    dataset: str
    parts: tuple[BatchPart, ...]
    skipped_empty: int = 0  # zero-byte objects in the folder (no data: not staged)

    @property
    def total_bytes(self) -> int:
        return sum(p.source.size for p in self.parts)


def marker_folder(key: str, settings: Settings) -> str:
    """The folder (key prefix ending in ``/``) a marker completes.

    Raises:
        RefusedKeyError: ``InvalidBatch``: the marker is not inside a folder of a dataset (directly under the input
            prefix or under ``<input_prefix><dataset>/``, where each file is a job of its own).
    """
    if key_depth(key, settings) < 3:
        raise RefusedKeyError(
            f"a {BATCH_MARKER} or {BATCH_MANIFEST} marker completes a folder inside a dataset: put the parts and the "
            "marker into "
            f"{settings.input_prefix}<dataset>/<folder>/ (files directly under {settings.input_prefix}<dataset>/ are "
            "each a job of their own)", REASON_INVALID_BATCH)
    return key[: key.rfind("/") + 1]


#: A manifest's size limit (bytes): 1,000 entries of long paths and version ids fit easily.
MANIFEST_MAX_BYTES = 1024 * 1024


def parse_manifest(body: bytes) -> dict[str, str | None]:
    """``_manifest.json``: ``{"files": [<path> | {"path": <path>, "version_id": <id>}, ...]}``, paths relative to
    the manifest's folder; returns path -> pinned version (None: the version as of the manifest, like ``_SUCCESS``).

    Raises:
        RefusedKeyError: ``InvalidManifest`` naming what is wrong (not UTF-8 JSON, another shape, an absolute or
            ``..`` path, a marker or hidden name, a duplicate, more than :data:`MAX_BATCH_PARTS` entries).
    """
    def bad(problem: str) -> RefusedKeyError:
        return RefusedKeyError(f"{BATCH_MANIFEST} {problem}; expected {{\"files\": [\"<path in the folder>\" | "
                               "{\"path\": ..., \"version_id\": ...}, ...]}", REASON_INVALID_MANIFEST)

    if len(body) > MANIFEST_MAX_BYTES:
        raise bad(f"is larger than {MANIFEST_MAX_BYTES} bytes")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"is not UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) != {"files"} or not isinstance(doc["files"], list):
        raise bad("must be an object with exactly the key 'files', a list")
    if len(doc["files"]) > MAX_BATCH_PARTS:
        raise RefusedKeyError(f"{BATCH_MANIFEST} lists {len(doc['files'])} files; one batch may have at most "
                              f"{MAX_BATCH_PARTS}", REASON_BATCH_TOO_LARGE)
    wanted: dict[str, str | None] = {}
    for n, item in enumerate(doc["files"]):
        if isinstance(item, str):
            path, version = item, None
        elif isinstance(item, dict) and set(item) <= {"path", "version_id"} and isinstance(item.get("path"), str) \
                and isinstance(item.get("version_id", ""), str):
            path, version = item["path"], item.get("version_id") or None
        else:
            raise bad(f"entry {n} is neither a path nor {{\"path\", \"version_id\"}}")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
            raise bad(f"entry {n} ({path!r}) is not a relative path inside the folder")
        if _hidden(path):
            raise bad(f"entry {n} ({path!r}) names a file starting with '_' or '.' (markers, hidden files)")
        if path in wanted:
            raise bad(f"lists {path!r} twice")
        wanted[path] = version
    if not wanted:
        raise RefusedKeyError(f"{BATCH_MANIFEST} lists no file: nothing to process", REASON_EMPTY_BATCH)
    return wanted


def _hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def _version(entry: dict[str, Any]) -> str:
    version = str(entry.get("VersionId") or "")
    return "" if version == "null" else version


def list_batch(s3: S3Client, marker: SourceObject, settings: Settings, dataset: str, *,
               manifest: dict[str, str | None] | None = None) -> Batch:
    """The batch a marker version completes (module docstring): its folder's files as of that version's time, or
    with a ``manifest`` (:func:`parse_manifest`) exactly the files it lists, each at its pinned version or as of the
    manifest's time.

    Raises:
        RefusedKeyError: ``EmptyBatch``, ``BatchTooLarge``, ``InvalidKey`` (a part's staging key would be too long or
            its key has control characters), ``ObjectNotFound`` (the marker version is no longer listed),
            ``InvalidManifest`` (a listed file or version that does not exist, or a zero-byte one).
        ClientError / BotoCoreError: the listing failed (retried).
    """
    folder = marker_folder(marker.key, settings)
    versions: dict[str, list[dict[str, Any]]] = {}  # key -> its versions and delete markers, newest first
    marker_time: datetime | None = None
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=marker.bucket, Prefix=folder):
        for entry in page.get("Versions", []):
            key = str(entry["Key"])
            if key == marker.key and _version(dict(entry)) == marker.version_id:
                marker_time = entry["LastModified"]
            versions.setdefault(key, []).append({**entry, "deleted": False})
        for deleted in page.get("DeleteMarkers", []):
            versions.setdefault(str(deleted["Key"]), []).append({**deleted, "deleted": True})
    if marker_time is None:
        raise RefusedKeyError(f"the marker {marker.key!r} version {marker.version_id or '(unversioned)'} is not "
                              "listed any more (deleted since it was read)", REASON_OBJECT_NOT_FOUND)
    if manifest is not None:
        return _manifest_batch(marker, folder, dataset, versions, marker_time, manifest)
    parts: list[BatchPart] = []
    skipped_empty = 0
    for key in sorted(versions):
        relative = key[len(folder):]
        if not relative or key.endswith("/") or _hidden(relative):
            continue
        # newest first per key (S3 lists a key's versions newest first; sorted again by time to be independent of it)
        history = sorted(versions[key], key=lambda e: e["LastModified"], reverse=True)
        current = next((e for e in history if e["LastModified"] <= marker_time), None)
        if current is None or current["deleted"]:
            continue  # written after the marker, or deleted before it
        size = int(current.get("Size", 0))
        if size == 0:
            skipped_empty += 1
            continue
        if CONTROL_CHARS_RE.search(key):
            raise RefusedKeyError(f"part {key!r} of the folder {folder!r} has control characters or line breaks")
        parts.append(BatchPart(
            source=SourceObject(bucket=marker.bucket, key=key, version_id=_version(current), size=size,
                                etag=str(current.get("ETag", "")).strip('"')),
            relative=relative))
    if not parts:
        raise RefusedKeyError(
            f"the folder {folder!r} held no data file when its marker was written (zero-byte objects and names "
            f"starting with '_' or '.' are not parts): nothing to process", REASON_EMPTY_BATCH)
    if len(parts) > MAX_BATCH_PARTS:
        raise RefusedKeyError(
            f"the folder {folder!r} has {len(parts)} parts; one batch may have at most {MAX_BATCH_PARTS} (the trigger "
            "stages every part before the job starts, within its timeout): split it into folders with a marker each, "
            "or combine the parts into larger files", REASON_BATCH_TOO_LARGE)
    return Batch(marker=marker, folder=folder, dataset=dataset, parts=tuple(parts), skipped_empty=skipped_empty)


def _manifest_batch(marker: SourceObject, folder: str, dataset: str, versions: dict[str, list[dict[str, Any]]],
                    marker_time: datetime, manifest: dict[str, str | None]) -> Batch:
    parts: list[BatchPart] = []
    missing: list[str] = []
    for relative, pinned in sorted(manifest.items()):
        key = folder + relative
        history = sorted(versions.get(key, []), key=lambda e: e["LastModified"], reverse=True)
        if pinned is not None:
            current = next((e for e in history if _version(e) == pinned), None)
        else:
            current = next((e for e in history if e["LastModified"] <= marker_time), None)
        if current is None or current["deleted"] or int(current.get("Size", 0)) == 0:
            missing.append(relative + (f" (version {pinned})" if pinned else ""))
            continue
        if CONTROL_CHARS_RE.search(key):
            raise RefusedKeyError(f"part {key!r} of the folder {folder!r} has control characters or line breaks")
        parts.append(BatchPart(
            source=SourceObject(bucket=marker.bucket, key=key, version_id=_version(current),
                                size=int(current.get("Size", 0)), etag=str(current.get("ETag", "")).strip('"')),
            relative=relative))
    if missing:
        raise RefusedKeyError(
            f"{BATCH_MANIFEST} of {folder!r} lists files that did not exist (or were empty) when it was written, or "
            f"versions the folder does not have: {missing[:10]}" + (f" and {len(missing) - 10} more"
                                                                     if len(missing) > 10 else ""),
            REASON_INVALID_MANIFEST)
    return Batch(marker=marker, folder=folder, dataset=dataset, parts=tuple(parts))


def staging_folder(settings: Settings, batch: Batch, job_name: str) -> str:
    """``<staging_prefix><dataset>/<job-name>/``: the job's copies of the batch's parts."""
    return f"{settings.staging_prefix}{batch.dataset}/{job_name}/"


def check_staging_keys(settings: Settings, batch: Batch) -> None:
    """Every part's staging key fits S3's 1,024 bytes (job names are at most 63 characters).

    Raises:
        RefusedKeyError: ``InvalidKey`` naming the part.
    """
    for part in batch.parts:
        staged = f"{settings.staging_prefix}{batch.dataset}/{'x' * contract.JOB_NAME_MAX}/{part.relative}"
        if len(staged.encode("utf-8", "surrogatepass")) > S3_KEY_MAX_BYTES:
            raise RefusedKeyError(f"part {part.source.key!r} is too long for its staging key "
                                  f"({S3_KEY_MAX_BYTES} bytes at most)")


def stage_batch(s3: S3Client, batch: Batch, bucket: str, folder: str, *, workers: int | None = None) -> list[str]:
    """Copy every part's pinned version to ``folder + relative path``; returns how each was copied.

    Raises what :func:`trigger.staging.stage_source` raises (the first failure; the record is retried whole: copies
    already made are redone with the same bytes).
    """
    workers = BATCH_COPY_WORKERS if workers is None else workers

    def copy(part: BatchPart) -> str:
        return stage_source(s3, part.source, bucket, folder + part.relative)

    if workers > 1 and len(batch.parts) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(copy, batch.parts))
    return [copy(part) for part in batch.parts]


def _replace_once(items: Sequence[str], old: str, new: str) -> tuple[list[str], int]:
    out = [new if item == old else item for item in items]
    return out, sum(1 for item in items if item == old)


def batch_request(batch: Batch, settings: Settings, *,
                  baseline_uri: str | None = None) -> CreateProcessingJobRequestTypeDef:
    """The CreateProcessingJob request of a batch: the one-object request of the marker version (so the job name,
    outputs, image and settings follow the same rules; the engine is chosen by the batch's ``total_bytes``) with the
    data location turned from the marker's staged file into the batch's staging folder:

    - the ``data`` input's ``S3Uri`` ``s3://<bucket>/<staging_prefix><dataset>/<job>/_SUCCESS`` -> ``.../<job>/``;
    - the ``--input`` argument ``/opt/ml/processing/input/data/_SUCCESS`` -> ``/opt/ml/processing/input/data`` (or,
      for an engine that reads S3 itself, the staged ``s3://`` file URI -> the folder URI);
    - ``SOURCE_SIZE`` -> "" (no single object; the job checks ``BATCH_PARTS`` and ``BATCH_BYTES`` instead),
      ``BATCH_PARTS`` / ``BATCH_BYTES`` added; tag ``dq:staged-input`` -> the folder URI.

    ``SOURCE_URI`` / ``SOURCE_VERSION_ID`` name the marker version: what the user dropped that started the job.

    Raises:
        RefusedKeyError: the marker key can never map to a valid job.
        ValueError: the one-object request no longer has the shape rewritten here (a programming error).
    """
    marker = batch.marker
    request = build_processing_job_request(marker.bucket, marker.key, marker.version_id, settings,
                                           baseline_uri=baseline_uri, etag=marker.etag, total_bytes=batch.total_bytes)
    target = map_key(marker.bucket, marker.key, settings)
    job_name = request["ProcessingJobName"]
    staged_file = f"s3://{settings.data_bucket}/{staging_key(settings, target, job_name)}"
    staged_folder = f"s3://{settings.data_bucket}/{staging_folder(settings, batch, job_name)}"
    replaced = 0
    for inp in request["ProcessingInputs"]:
        s3_input = inp.get("S3Input")
        if s3_input is not None and s3_input["S3Uri"] == staged_file:
            s3_input["S3Uri"] = staged_folder
            replaced += 1
    app = request["AppSpecification"]
    marker_name = marker.key.rsplit("/", 1)[-1]
    arguments, local = _replace_once(app.get("ContainerArguments", []), f"{DATA_LOCAL_PATH}/{marker_name}",
                                     DATA_LOCAL_PATH)
    arguments, _ = _replace_once(arguments, staged_file, staged_folder)
    # The job reads the staging folder: a local copy of it (the data input, downloaded by SageMaker) or, for an engine
    # that reads S3 itself, its s3:// URI. Anything else is a request shape this function does not know.
    where = arguments[arguments.index("--input") + 1] if "--input" in arguments[:-1] else None
    if not ((where == DATA_LOCAL_PATH and local == 1 and replaced == 1) or where == staged_folder):
        raise ValueError(f"the job request reads --input {where!r} (data inputs rewritten: {replaced}), not the "
                         "batch's staging folder: folders.batch_request must follow request.py")
    app["ContainerArguments"] = arguments
    request["Environment"] = {**request["Environment"], contract.ENV_SOURCE_SIZE: "",
                              contract.ENV_BATCH_PARTS: str(len(batch.parts)),
                              contract.ENV_BATCH_BYTES: str(batch.total_bytes)}
    for tag in request.get("Tags", []):
        if tag["Key"] == "dq:staged-input":
            tag["Value"] = tag_value(staged_folder)
    return request
