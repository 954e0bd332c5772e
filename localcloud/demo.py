"""`make demo`: the whole pipeline on this machine, no AWS account, no Docker, no network beyond loopback.

    python -m localcloud.demo --out demo-output

1. generates the 20,000-row reference dataset (``python -m processing.sample --rows 20000 --seed 42``);
2. starts the local cloud (moto server on a free loopback port + our layer, ``localcloud.cloud.LocalCloud``) and
   runs the real ``cdk bootstrap`` and ``cdk deploy`` of this app into it;
3. uploads the file to ``input/default/<file>.csv`` in the deployed bucket and pumps events until idle:
   S3 -> EventBridge -> SQS -> trigger Lambda -> CreateProcessingJob -> local job executor -> state-change event ->
   metrics Lambda -> CloudWatch datapoints -> alarm evaluation -> SNS;
4. prints the job, row counts, key quality metrics and alarm states; copies the job's outputs to
   ``<out>/<job-name>/`` and writes ``<out>/report.html``;
5. re-delivers the S3 "Object Created" event of the same object version (S3 and EventBridge deliver at least once)
   and shows that no second job starts. (A second PutObject of the same bytes would be a *new* object version in
   the versioned bucket and, by design, a new job.)

Everything is started and stopped here; nothing is left running.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUT_KEY = "input/default/employees.csv"


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if pct:
        return f"{float(v) * 100:.2f}%"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.3f}"
    return f"{int(v):,}" if isinstance(v, (int, float)) else str(v)


def generate_dataset(path: Path, rows: int, seed: int) -> None:
    subprocess.run([sys.executable, "-m", "processing.sample", "--rows", str(rows), "--seed", str(seed),
                    "--out", str(path)], cwd=str(REPO_ROOT), check=True)


def download_prefix(s3, bucket: str, prefix: str, dest: Path) -> list[Path]:
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            files.append(target)
    return files


def redeliver_object_created(cloud, bucket: str, key: str, version_id: str | None) -> dict:
    """Send S3's "Object Created" EventBridge event for this exact object version again (a duplicate delivery)."""
    from moto.s3.models import s3_backends

    from localcloud import moto_patches

    backend = s3_backends[cloud.account]["aws"]
    fake_bucket = backend.get_bucket(bucket)
    fake_key = backend.get_object(bucket, key, version_id=version_id)
    event = moto_patches.s3_eventbridge_event(cloud.account, fake_bucket, "s3:ObjectCreated:Put", fake_key)
    moto_patches.put_event(cloud.account, cloud.region, event)
    return event


def _read_cleaned(folder: Path):
    import pandas as pd

    files = sorted(folder.glob("*.parquet")) or sorted(folder.glob("*.csv*"))
    if not files:
        return None
    frames = [pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f) for f in files]
    return pd.concat(frames, ignore_index=True)


def _statistics(folder: Path) -> dict:
    out = {}
    for f in sorted(folder.glob("*.json")):
        doc = json.loads(f.read_text())
        out[doc.get("name", f.stem)] = doc
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--app-dir", type=Path, default=REPO_ROOT, help="CDK app to deploy (default: this repo)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*AWS::CDK::Metadata.*")  # moto: CDK metadata is not a resource

    from localcloud import moto_patches
    from localcloud.alarms import effective_state
    from localcloud.cloud import LocalCloud
    from localcloud.report import write_report

    started = time.monotonic()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix="dq-demo-"))
    try:
        data = scratch / "employees.csv"
        _say(f"[1/5] generating the reference dataset ({args.rows:,} rows, seed {args.seed})")
        generate_dataset(data, args.rows, args.seed)

        with LocalCloud(workdir=scratch / "cloud") as cloud:
            _say(f"[2/5] local cloud on {cloud.endpoint}: cdk bootstrap + cdk deploy (the real CLI, unchanged app)")
            outputs = cloud.bootstrap_and_deploy(args.app_dir)
            bucket, topic = outputs["DataBucketName"], outputs.get("AlertTopicArn")
            _say(f"      deployed in {time.monotonic() - started:.0f} s: bucket {bucket}")

            _say(f"[3/5] uploading {data.name} to s3://{bucket}/{INPUT_KEY} and running the pipeline")
            put = cloud.s3.put_object(Bucket=bucket, Key=INPUT_KEY, Body=data.read_bytes())
            version_id = put.get("VersionId")
            t_run = time.monotonic()
            cloud.run_until_idle()
            _say(f"      pipeline idle after {time.monotonic() - t_run:.0f} s")

            jobs = cloud.processing_jobs()
            if not jobs:
                _say("FAILED: no processing job was started; trigger Lambda output:")
                for inv in cloud.invocations():
                    _say(f"  {inv.function_name}: error={inv.error} logs={inv.logs[-1500:]}")
                return 1
            job = jobs[-1]
            name = job["ProcessingJobName"]
            result = cloud.job_results.get(name)
            status = job.get("ProcessingJobStatus")
            local = out / name
            files = []
            request = moto_patches.PROCESSING_JOB_REQUESTS.get(name) or {}
            for o in (request.get("ProcessingOutputConfig") or {}).get("Outputs", []):
                uri = (o.get("S3Output") or {}).get("S3Uri", "")
                o_bucket, _, o_prefix = uri[len("s3://"):].partition("/")
                if o_bucket:  # each ProcessingOutput -> <out>/<job>/<OutputName>/
                    prefix = o_prefix.rstrip("/") + "/"
                    files += download_prefix(cloud.s3, o_bucket, prefix, local / o["OutputName"])
            if not request:
                files = download_prefix(cloud.s3, bucket, f"output/default/{name}/", local)
            local.mkdir(parents=True, exist_ok=True)
            if result is not None and result.log_path.exists():
                shutil.copy(result.log_path, local / "job.log")  # the container's stdout/stderr

            alarms = []
            for page in cloud.cloudwatch.get_paginator("describe_alarms").paginate():
                alarms.extend(page.get("MetricAlarms", []))
            for a in alarms:  # never-evaluated alarms show the state AWS would report
                a["StateValue"] = effective_state(a)
            notifications = cloud.sns_messages(topic) if topic else []

            _say("[4/5] re-delivering the same S3 event (same object version) to show idempotency")
            trigger_fn = outputs.get("TriggerFunctionName") or "Trigger"
            before = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
            seen = len(cloud.invocations(trigger_fn))
            redeliver_object_created(cloud, bucket, INPUT_KEY, version_id)
            cloud.run_until_idle()
            after = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
            new_jobs = sorted(after - before)
            reruns = cloud.invocations(trigger_fn)[seen:]
            decisions = sorted({d for inv in reruns for d in ("already-exists", "started") if d in (inv.logs or "")})

        def _doc(rel: str) -> dict | None:
            p = local / rel
            try:
                return json.loads(p.read_text()) if p.exists() else None
            except ValueError:
                return None

        metrics = _doc("quality/metrics.json") or {}
        drift, gate = _doc("quality/drift.json"), _doc("quality/gate.json")
        if not (local / "cleaned").is_dir() and (local / "quarantine" / "cleaned").is_dir():
            cleaned_dir = local / "quarantine" / "cleaned"  # the gate failed: data went to quarantine
        else:
            cleaned_dir = local / "cleaned"
        cleaned = _read_cleaned(cleaned_dir) if cleaned_dir.is_dir() else None
        report_job = {"ProcessingJobName": name, "ProcessingJobStatus": status,
                      "FailureReason": job.get("FailureReason"), "Environment": job.get("Environment") or {},
                      "source": f"s3://{bucket}/{INPUT_KEY}" + (f" (version {version_id})" if version_id else "")}
        report = write_report(out / "report.html", metrics=metrics, statistics=_statistics(local / "statistics"),
                              cleaned_sample=cleaned, alarms=alarms, job=report_job, drift=drift, gate=gate)

        s = metrics.get("summary", {})
        _say("[5/5] summary")
        _say(f"  job            {name}: {status}" + (f" ({job.get('FailureReason')})" if job.get("FailureReason")
                                                       else ""))
        _say(f"  rows           in {_fmt(s.get('rows_in'))}, out {_fmt(s.get('rows_out'))}, "
             f"rejected {_fmt(s.get('rows_rejected'))}")
        _say(f"  missing values before {_fmt(s.get('missing_values_before'))}, after "
             f"{_fmt(s.get('missing_values_after'))} (rate after {_fmt(s.get('missing_rate_after'), True)})")
        _say(f"  duplicates     {_fmt(s.get('duplicate_rows_key'))} by key ({_fmt(s.get('duplicate_rate'), True)}), "
             f"malformed JSON {_fmt(s.get('malformed_json'))} ({_fmt(s.get('malformed_json_rate'), True)}), "
             f"rejected rate {_fmt(s.get('rejected_rate'), True)}")
        if gate:
            viol = ", ".join(str(v.get("rule")) for v in gate.get("violations") or [])
            _say(f"  quality gate   {gate.get('status', 'n/a')}" + (f" ({viol})" if viol else ""))
        if drift:
            _say(f"  drift          {drift.get('status', 'n/a')}"
                 + (f": max PSI {drift.get('max_psi')}" if drift.get("max_psi") is not None else "")
                 + (f" ({drift.get('reason')})" if drift.get("reason") else ""))
        states: dict[str, int] = {}
        for a in alarms:
            states[a["StateValue"]] = states.get(a["StateValue"], 0) + 1
        _say(f"  alarms         {', '.join(f'{n} {st}' for st, n in sorted(states.items())) or 'none'}")
        for a in sorted(alarms, key=lambda a: a["AlarmName"]):
            if a["StateValue"] == "ALARM":
                _say(f"    ALARM  {a['AlarmName']}: {a.get('StateReason', '')[:160]}")
        by_state: dict[str, int] = {}
        for n in notifications:
            try:
                st = json.loads(n["Message"]).get("NewStateValue", "?")
            except (ValueError, AttributeError):
                st = "?"
            by_state[st] = by_state.get(st, 0) + 1
        _say(f"  SNS messages   {len(notifications)} alarm notifications on the alert topic"
             + (f" ({', '.join(f'{n} -> {st}' for st, n in sorted(by_state.items()))}; the first evaluation "
                "moves each alarm out of INSUFFICIENT_DATA, as in AWS)" if by_state else ""))
        _say(f"  outputs        {len(files)} files copied to {local}")
        _say(f"  report         {report}")
        if new_jobs:
            _say(f"  duplicate      re-delivered event STARTED {len(new_jobs)} new job(s): {new_jobs}  <-- unexpected")
        else:
            _say(f"  duplicate      re-delivered the same S3 event (same object version): the trigger Lambda ran "
                 f"{len(reruns)} more time(s) (decision: {', '.join(decisions) or 'n/a'}) and started no second job;")
            _say(f"                 the job name is derived from bucket/key/version ({name}) and SageMaker refuses a "
                 "duplicate name")
        _say(f"done in {time.monotonic() - started:.0f} s")
        if status != "Completed":
            _say(f"the job did not complete: see {local / 'job.log'}")
        return 0 if status == "Completed" and not new_jobs else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
