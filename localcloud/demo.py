"""`make demo`: the whole pipeline on this machine, no AWS account, no Docker, no network beyond loopback.

    python -m localcloud.demo --out demo-output

1. generates the 20,000-row reference dataset (``python -m processing.sample --rows 20000 --seed 42``) and a
   drifted batch (another seed, salaries +30 %, department "Engineering" missing);
2. starts the local cloud (moto server on a free loopback port + our layer, ``localcloud.cloud.LocalCloud``) and
   runs the real ``cdk bootstrap`` and ``cdk deploy`` of this app into it;
3. uploads the reference file to ``input/default/<file>.csv`` in the deployed bucket and pumps events until idle:
   S3 -> EventBridge -> SQS -> trigger Lambda -> CreateProcessingJob -> local job executor -> state-change event ->
   metrics Lambda -> CloudWatch datapoints (+ baseline promotion) -> alarm evaluation -> SNS;
4. re-delivers the S3 "Object Created" event of the same object version (S3 and EventBridge deliver at least once)
   and shows that no second job starts. (A second PutObject of the same bytes would be a *new* object version in
   the versioned bucket and, by design, a new job.)
5. uploads the drifted batch: the job compares it with the baseline the first batch became, the quality gate fails,
   the data goes to ``quarantine/default/<job>/`` with ``violations.json``, and the drift and gate alarms notify SNS;
6. prints both runs (rows, quality, drift, gate, alarms, notifications), copies each job's outputs to
   ``<out>/<job-name>/`` and writes ``<out>/report.html`` (reference batch) and ``<out>/report-drift.html``
   (drifted batch, with the per-column baseline vs batch distributions), and ``<out>/dashboard.html``: the deployed
   CloudWatch dashboard (its body read from the stack), widget by widget, with this run's metrics and alarm states
   (``localcloud/dashboard_render.py``).

Everything is started and stopped here; nothing is left running.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUT_KEY = "input/default/employees.csv"
DRIFT_KEY = "input/default/employees-drifted.csv"
BASELINE_KEY = "baselines/default/baseline.json"
SALARY_SHIFT = 1.3  # the drifted batch's salaries x1.3
DROPPED_DEPARTMENT = "Engineering"


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


def make_drifted(source: Path, dest: Path) -> None:
    """The drifted batch: salaries x SALARY_SHIFT (text cells kept), rows of DROPPED_DEPARTMENT left out."""
    import csv

    with source.open(newline="", encoding="utf-8") as f_in, dest.open("w", newline="", encoding="utf-8") as f_out:
        reader = csv.DictReader(f_in)
        writer = csv.DictWriter(f_out, fieldnames=reader.fieldnames or [], quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for row in reader:
            if row.get("department") == DROPPED_DEPARTMENT:
                continue
            with contextlib.suppress(KeyError, ValueError):
                row["salary"] = f"{float(row['salary']) * SALARY_SHIFT:.2f}"
            writer.writerow(row)


def fetch_job(cloud, bucket: str, name: str, out: Path) -> tuple[Path, list[Path]]:
    """Copy every ProcessingOutput of job `name` (incl. quarantine) to ``<out>/<name>/<OutputName>/``."""
    from localcloud import moto_patches

    local = out / name
    files: list[Path] = []
    request = moto_patches.PROCESSING_JOB_REQUESTS.get(name) or {}
    for o in (request.get("ProcessingOutputConfig") or {}).get("Outputs", []):
        uri = (o.get("S3Output") or {}).get("S3Uri", "")
        o_bucket, _, o_prefix = uri[len("s3://"):].partition("/")
        if o_bucket:
            files += download_prefix(cloud.s3, o_bucket, o_prefix.rstrip("/") + "/", local / o["OutputName"])
    if not request:
        files = download_prefix(cloud.s3, bucket, f"output/default/{name}/", local)
    local.mkdir(parents=True, exist_ok=True)
    result = cloud.job_results.get(name)
    if result is not None and result.log_path.exists():
        shutil.copy(result.log_path, local / "job.log")  # the container's stdout/stderr
    return local, files


def alarm_snapshot(cloud) -> list[dict]:
    from localcloud.alarms import effective_state

    alarms = []
    for page in cloud.cloudwatch.get_paginator("describe_alarms").paginate():
        alarms.extend(page.get("MetricAlarms", []))
    for a in alarms:  # never-evaluated alarms show the state AWS would report
        a["StateValue"] = effective_state(a)
    return alarms


def run_batch(cloud, bucket: str, key: str, path: Path) -> tuple[dict | None, str | None, float]:
    """Upload `path` to `key`, pump until idle; (the new job or None, the object version, seconds)."""
    before = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
    put = cloud.s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    t_run = time.monotonic()
    cloud.run_until_idle()
    new = [j for j in cloud.processing_jobs() if j["ProcessingJobName"] not in before]
    return (new[-1] if new else None), put.get("VersionId"), time.monotonic() - t_run


@dataclass
class Run:
    """One batch's outcome as the demo reports it."""

    key: str
    version_id: str | None
    job: dict
    local: Path
    files: list[Path]
    alarms: list[dict]
    notifications: list[dict]  # SNS messages published while this batch ran

    @property
    def name(self) -> str:
        return self.job["ProcessingJobName"]

    def doc(self, rel: str) -> dict | None:
        p = self.local / rel
        try:
            return json.loads(p.read_text()) if p.exists() else None
        except ValueError:
            return None


def write_run_report(run: Run, bucket: str, path: Path) -> Path:
    from localcloud.report import write_report

    if not (run.local / "cleaned").is_dir() and (run.local / "quarantine" / "cleaned").is_dir():
        cleaned_dir = run.local / "quarantine" / "cleaned"  # the gate failed: data went to quarantine
    else:
        cleaned_dir = run.local / "cleaned"
    cleaned = _read_cleaned(cleaned_dir) if cleaned_dir.is_dir() else None
    statistics_dir = run.local / "statistics"
    if not any(statistics_dir.glob("*.json")) and (run.local / "quarantine" / "statistics").is_dir():
        statistics_dir = run.local / "quarantine" / "statistics"
    job = run.job
    report_job = {"ProcessingJobName": run.name, "ProcessingJobStatus": job.get("ProcessingJobStatus"),
                  "FailureReason": job.get("FailureReason"), "Environment": job.get("Environment") or {},
                  "source": f"s3://{bucket}/{run.key}" + (f" (version {run.version_id})" if run.version_id else "")}
    return write_report(path, metrics=run.doc("quality/metrics.json") or {}, statistics=_statistics(statistics_dir),
                        cleaned_sample=cleaned, alarms=run.alarms, job=report_job,
                        drift=run.doc("quality/drift.json"), gate=run.doc("quality/gate.json"))


def _notification_states(notifications: list[dict]) -> list[tuple[str, str]]:
    out = []
    for n in notifications:
        try:
            body = json.loads(n["Message"])
        except (ValueError, KeyError, TypeError):
            continue
        if "AlarmName" in body:
            out.append((str(body["AlarmName"]), str(body.get("NewStateValue", "?"))))
        elif body.get("detail-type") == "CloudWatch Alarm State Change":  # the recovery rule's message
            detail = body.get("detail") or {}
            out.append((str(detail.get("alarmName", "?")), str((detail.get("state") or {}).get("value", "?"))))
        else:  # the metrics Lambda's own per-batch message (job-failed / batch-quarantined)
            out.append((str(body.get("job_name", "?")), str(body.get("event", "message"))))
    return out


def _short_alarm(name: str) -> str:
    """The readable part of an alarm name: ``<stack>_<id>`` (infra.quality_alarms names them) -> ``<id>``; a
    CloudFormation-generated '<stack>-<construct path + 8-hex hash>-<suffix>' -> the construct path
    (``DataQualityPipeline-AlarmsDefaultDriftMaxPsiF1D11318-ABC`` -> ``DefaultDriftMaxPsi``)."""
    if "_" in name:
        return name.split("_", 1)[1] or name
    parts = name.split("-")
    logical = parts[1] if len(parts) >= 3 else name
    if len(logical) > 8 and all(c in "0123456789ABCDEF" for c in logical[-8:]):
        logical = logical[:-8]
    return logical.removeprefix("Alarms") or name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--app-dir", type=Path, default=REPO_ROOT, help="CDK app to deploy (default: this repo)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*AWS::CDK::Metadata.*")  # moto: CDK metadata is not a resource

    from localcloud.cloud import LocalCloud

    started = time.monotonic()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scratch = Path(tempfile.mkdtemp(prefix="dq-demo-"))
    try:
        data = scratch / "employees.csv"
        drifted = scratch / "employees-drifted.csv"
        _say(f"[1/6] generating the reference dataset ({args.rows:,} rows, seed {args.seed}) and a drifted batch "
             f"(seed {args.seed + 1}, salaries x{SALARY_SHIFT}, no {DROPPED_DEPARTMENT})")
        generate_dataset(data, args.rows, args.seed)
        generate_dataset(scratch / "other.csv", args.rows, args.seed + 1)
        make_drifted(scratch / "other.csv", drifted)

        with LocalCloud(workdir=scratch / "cloud") as cloud:
            _say(f"[2/6] local cloud on {cloud.endpoint}: cdk bootstrap + cdk deploy (the real CLI, unchanged app)")
            outputs = cloud.bootstrap_and_deploy(args.app_dir)
            bucket, topic = outputs["DataBucketName"], outputs.get("AlertTopicArn")
            _say(f"      deployed in {time.monotonic() - started:.0f} s: bucket {bucket}")

            def sns_count() -> int:
                return len(cloud.sns_messages(topic)) if topic else 0

            _say(f"[3/6] uploading {data.name} to s3://{bucket}/{INPUT_KEY} and running the pipeline")
            n_sns = sns_count()
            job, version_id, took = run_batch(cloud, bucket, INPUT_KEY, data)
            _say(f"      pipeline idle after {took:.0f} s")
            if job is None:
                _say("FAILED: no processing job was started; trigger Lambda output:")
                for inv in cloud.invocations():
                    _say(f"  {inv.function_name}: error={inv.error} logs={inv.logs[-1500:]}")
                return 1
            local, files = fetch_job(cloud, bucket, job["ProcessingJobName"], out)
            first = Run(INPUT_KEY, version_id, job, local, files, alarm_snapshot(cloud),
                        cloud.sns_messages(topic)[n_sns:] if topic else [])
            try:
                baseline = json.loads(cloud.s3.get_object(Bucket=bucket, Key=BASELINE_KEY)["Body"].read())
            except Exception:  # noqa: BLE001  (shown as "not promoted")
                baseline = None

            _say("[4/6] re-delivering the same S3 event (same object version) to show idempotency")
            trigger_fn = outputs.get("TriggerFunctionName") or "Trigger"
            before = {j["ProcessingJobName"] for j in cloud.processing_jobs()}
            seen = len(cloud.invocations(trigger_fn))
            redeliver_object_created(cloud, bucket, INPUT_KEY, version_id)
            cloud.run_until_idle()
            new_jobs = sorted({j["ProcessingJobName"] for j in cloud.processing_jobs()} - before)
            reruns = cloud.invocations(trigger_fn)[seen:]
            decisions = sorted({d for inv in reruns for d in ("already-exists", "started") if d in (inv.logs or "")})

            _say(f"[5/6] uploading the drifted batch to s3://{bucket}/{DRIFT_KEY}")
            n_sns = sns_count()
            job2, version2, took = run_batch(cloud, bucket, DRIFT_KEY, drifted)
            _say(f"      pipeline idle after {took:.0f} s")
            second = None
            if job2 is not None:
                local2, files2 = fetch_job(cloud, bucket, job2["ProcessingJobName"], out)
                second = Run(DRIFT_KEY, version2, job2, local2, files2, alarm_snapshot(cloud),
                             cloud.sns_messages(topic)[n_sns:] if topic else [])
            # the deployed dashboard (its own body from the stack), with this run's metrics and alarm states
            from localcloud.dashboard_render import render

            # AWS/SQS publishes queue metrics once a minute (SQS developer guide): let two simulated minutes pass, as
            # before looking at a real dashboard, so the queue widgets have their datapoints
            cloud.advance(120)
            dashboard_panels = render(cloud, out / "dashboard.html")

        report = write_run_report(first, bucket, out / "report.html")
        report2 = write_run_report(second, bucket, out / "report-drift.html") if second else None

        _say("[6/6] summary")
        _say(f"  -- batch 1 (reference): s3://{bucket}/{INPUT_KEY}")
        _print_run(first)
        _say("  baseline       " + (f"s3://{bucket}/{BASELINE_KEY}: this batch's quality/profile.json "
                                     f"({_fmt((baseline or {}).get('rows'))} rows), promoted by the metrics Lambda "
                                     "(first batch wins)" if baseline else "NOT promoted  <-- unexpected"))
        _say(f"  outputs        {len(first.files)} files copied to {first.local}")
        _say(f"  report         {report}")
        if new_jobs:
            _say(f"  duplicate      re-delivered event STARTED {len(new_jobs)} new job(s): {new_jobs}  <-- unexpected")
        else:
            _say(f"  duplicate      re-delivered the same S3 event (same object version): the trigger Lambda ran "
                 f"{len(reruns)} more time(s) (decision: {', '.join(decisions) or 'n/a'}) and started no second job;")
            _say(f"                 the job name is derived from bucket/key/version ({first.name}) and SageMaker "
                 "refuses a duplicate name")
        drift_ok = False
        if second is None:
            _say("  -- batch 2 (drifted): no job was started  <-- unexpected")
        else:
            _say(f"  -- batch 2 (drifted: salaries x{SALARY_SHIFT}, no {DROPPED_DEPARTMENT}): s3://{bucket}/{DRIFT_KEY}")
            _print_run(second, drift_columns=True)
            gate = second.doc("quality/gate.json") or {}
            if gate.get("status") == "failed":
                _say(f"  quarantined    s3://{bucket}/quarantine/default/{second.name}/ (cleaned/ transformed/ "
                     "statistics/ rejected/ violations.json); output/ holds only quality/, no _SUCCESS")
            _say(f"  outputs        {len(second.files)} files copied to {second.local}")
            _say(f"  report         {report2} (drift section: baseline vs batch per column)")
            drift = second.doc("quality/drift.json") or {}
            drift_ok = (second.job.get("ProcessingJobStatus") == "Completed" and gate.get("status") == "failed"
                        and bool(drift.get("drifted_columns")))
            if not drift_ok:
                _say("  the drifted batch was not flagged  <-- unexpected")
        without_data = [p.title for p in dashboard_panels if not p.has_data]
        _say(f"  dashboard      {out / 'dashboard.html'}: the deployed dashboard, {len(dashboard_panels)} widgets, "
             f"{len(dashboard_panels) - len(without_data)} with data"
             + (f"; WITHOUT data: {', '.join(without_data)}  <-- unexpected" if without_data else ""))
        _say(f"done in {time.monotonic() - started:.0f} s")
        if first.job.get("ProcessingJobStatus") != "Completed":
            _say(f"the job did not complete: see {first.local / 'job.log'}")
        return 0 if first.job.get("ProcessingJobStatus") == "Completed" and not new_jobs and drift_ok else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _print_run(run: Run, drift_columns: bool = False) -> None:
    metrics = run.doc("quality/metrics.json") or {}
    drift, gate = run.doc("quality/drift.json"), run.doc("quality/gate.json")
    job = run.job
    s = metrics.get("summary", {})
    _say(f"  job            {run.name}: {job.get('ProcessingJobStatus')}"
         + (f" ({job.get('FailureReason')})" if job.get("FailureReason") else ""))
    _say(f"  rows           in {_fmt(s.get('rows_in'))}, out {_fmt(s.get('rows_out'))}, "
         f"rejected {_fmt(s.get('rows_rejected'))}")
    _say(f"  missing values before {_fmt(s.get('missing_values_before'))}, after "
         f"{_fmt(s.get('missing_values_after'))} (rate after {_fmt(s.get('missing_rate_after'), True)})")
    _say(f"  duplicates     {_fmt(s.get('duplicate_rows_key'))} by key ({_fmt(s.get('duplicate_rate'), True)}), "
         f"malformed JSON {_fmt(s.get('malformed_json'))} ({_fmt(s.get('malformed_json_rate'), True)}), "
         f"rejected rate {_fmt(s.get('rejected_rate'), True)}")
    if drift:
        _say(f"  drift          {drift.get('status', 'n/a')}"
             + (f": max PSI {_fmt(drift.get('max_psi'))}, drifted columns "
                f"{', '.join(drift.get('drifted_columns') or []) or 'none'}" if drift.get("status") == "computed"
                else "")
             + (f" ({drift.get('reason')})" if drift.get("reason") else ""))
        if drift_columns:
            for col, c in (drift.get("columns") or {}).items():
                if c.get("level") in ("alarm", "warn"):
                    distance = c.get("wasserstein_normalised", c.get("jensen_shannon"))
                    extra = []
                    if c.get("baseline_mean") is not None and c.get("batch_mean") is not None:
                        extra.append(f"mean {c['baseline_mean']:,.0f} -> {c['batch_mean']:,.0f}")
                    if c.get("vanished_categories"):
                        extra.append("vanished " + ", ".join(c["vanished_categories"]))
                    if c.get("new_categories"):
                        extra.append("new " + ", ".join(c["new_categories"]))
                    _say(f"    {c['level'].upper():<5}  {col}: PSI {_fmt(c.get('psi'))}, distance {_fmt(distance)}"
                         + (f" ({'; '.join(extra)})" if extra else ""))
    if gate:
        rules = sorted({f"{v.get('rule')}[{v.get('column')}]" if v.get("column") else str(v.get("rule"))
                        for v in gate.get("violations") or []})
        _say(f"  quality gate   {gate.get('status', 'n/a')}" + (f": {', '.join(rules)}" if rules else ""))
    states: dict[str, int] = {}
    for a in run.alarms:
        states[a["StateValue"]] = states.get(a["StateValue"], 0) + 1
    _say(f"  alarms         {', '.join(f'{n} {st}' for st, n in sorted(states.items())) or 'none'}")
    for a in sorted(run.alarms, key=lambda a: a["AlarmName"]):
        if a["StateValue"] == "ALARM":
            _say(f"    ALARM  {_short_alarm(a['AlarmName'])}: {a.get('StateReason', '')[:120]}")
    sent = _notification_states(run.notifications)
    by_state: dict[str, int] = {}
    for _, st in sent:
        by_state[st] = by_state.get(st, 0) + 1
    _say(f"  SNS messages   {len(run.notifications)} message(s) on the alert topic during this batch"
         + (f" ({', '.join(f'{n} -> {st}' for st, n in sorted(by_state.items()))})" if by_state else ""))
    alarm_msgs = [name for name, st in sent if st == "ALARM"]
    if alarm_msgs:
        _say(f"    -> ALARM     {', '.join(_short_alarm(n) for n in alarm_msgs)}")
    recovered = [name for name, st in sent if st == "OK"]
    if recovered:
        _say(f"    -> OK        {', '.join(_short_alarm(n) for n in recovered)} (recovered: ALARM -> OK)")


if __name__ == "__main__":
    sys.exit(main())
