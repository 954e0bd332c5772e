"""Staging time of a folder batch (design.md Contract 5) against the local cloud's S3 (moto server on loopback):
ListObjectVersions of the folder + one CopyObject per part, 8 at a time, as the trigger does it.

    .venv/bin/python bench/folder_staging.py --parts 100 1000

Prints seconds per batch size. AWS publishes no CopyObject latency: this measures our code path and the emulator,
not S3 (infra/lambdas/README.md "Folder batches" says how the cap MAX_BATCH_PARTS was set from it)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "infra" / "lambdas")]

from trigger import folders  # noqa: E402
from trigger.settings import Settings  # noqa: E402
from trigger.staging import SourceObject  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--part-bytes", type=int, default=4096)
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        _host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://localhost:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="data")
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        settings = Settings(data_bucket="data", input_prefix="input/", output_prefix="output/", job_prefix="dq",
                            role_arn="arn:aws:iam::123456789012:role/r", image_uri="i", code_s3_uri="s3://a/b.zip",
                            code_version="c", kms_key_arn="k")
        body = b"x" * args.part_bytes
        for n in args.parts:
            folder = f"input/bench/{n}/"
            for i in range(n):
                s3.put_object(Bucket="data", Key=f"{folder}part-{i:05d}.csv", Body=body)
            marker = s3.put_object(Bucket="data", Key=folder + "_SUCCESS", Body=b"")
            source = SourceObject(bucket="data", key=folder + "_SUCCESS", version_id=marker["VersionId"], size=0,
                                  etag="")
            start = time.perf_counter()
            batch = folders.list_batch(s3, source, settings, "bench")
            listed = time.perf_counter() - start
            folders.stage_batch(s3, batch, "data", f"staging/bench/job-{n}/")
            total = time.perf_counter() - start
            print(f"{n} parts of {args.part_bytes} bytes: list {listed:.2f} s, list + stage {total:.2f} s "
                  f"({total / n * 1000:.1f} ms per part)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
