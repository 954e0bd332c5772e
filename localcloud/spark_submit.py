"""``smspark-submit`` jobs in the local executor (issue 13 item 5): what SageMaker's Spark processing container does
with a request, done with pyspark in local mode on this host.

The container (aws/sagemaker-spark-container, src/smspark) runs ``smspark-submit [--class C] [--jars J] [--py-files P]
[--files F] [-v] APP ARGS...``: it applies ``/opt/ml/processing/input/conf/configuration.json`` (EMR classifications),
forms a YARN cluster over the ``InstanceCount`` hosts and runs ``spark-submit --master yarn --deploy-mode client`` on
the primary, with ``--jars``/``--py-files``/``--files`` directories expanded to their top-level files. The app reads
and writes ``s3://`` itself (EMRFS). Locally (:func:`prepare`, :func:`upload_outputs`):

* **Command.** pyspark's own ``spark-submit`` (the venv's, ``pyspark==3.5.6``: the image's Spark 3.5.6) with
  ``--master local[2]`` (:data:`LOCAL_MASTER`), the same ``--jars``/``--py-files``/``--files`` expansion, and
  ``PYSPARK_PYTHON``/``PYSPARK_DRIVER_PYTHON`` = this interpreter (the workers need its libraries). ``InstanceCount``
  and ``InstanceType`` are **recorded** (``JobResult.spark``) but not emulated: one local process, two cores, no
  YARN; a cluster across instances cannot be shown here. Options smspark-submit does not accept fail the job.
* **configuration.json.** Each entry must be ``{"Classification": <one of smspark's>, "Properties": {str: str},
  "Configurations": [...]?}`` (no other keys); ``*-env`` classifications need ``export`` sub-configurations, as
  smspark requires. Applied: ``spark-defaults`` (each property as ``--conf k=v``, except ``spark.master`` and
  ``spark.submit.deployMode``, which stay local) and ``spark-env`` ``export`` entries (the job's environment). The
  others (Hadoop, YARN, Hive, log4j, metrics) are valid but have no local equivalent: recorded as not applied. An
  unknown classification or shape fails the job (``ClientError: configuration.json ...``) before the app runs
  (smspark fails on it too; the wording is ours).
* **S3 arguments.** Every application argument that is an ``s3://``/``s3a://`` URI is staged through the emulated S3
  with the job role's authorization (as the ProcessingInputs are): the value of ``--output`` or ``--quarantine``
  (:data:`OUTPUT_FLAGS`, our job's output options) becomes an empty local folder whose files are uploaded under the
  URI after a successful run (``s3:PutObject`` per object, the bucket's default key); any other URI is an input: a key
  that exists is downloaded as that file, otherwise every object under the prefix is downloaded into a folder (keys
  relative to the prefix), each ``s3:GetObject``-authorized. The argument is rewritten to the local path. Not shown:
  EMRFS itself, partial writes of a failed Spark job (AWS leaves what the driver wrote; locally nothing is uploaded),
  the ``s3:ListBucket`` check of the listing.
* **VpcConfig** (``NetworkConfig``): 1-16 subnets and 1-5 security groups (the API's limits); with an EC2 client the
  ids must exist in the emulator (moto models subnets and security groups); without one it is recorded as
  unverified. Network isolation, routes and the S3 gateway endpoint are not emulated (the job runs on this host).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMSPARK = "smspark-submit"
LOCAL_MASTER = "local[2]"
#: Application options whose ``s3://`` value is written by the job (uploaded after it), not read.
OUTPUT_FLAGS = ("--output", "--quarantine")
CONF_PATH = "processing/input/conf/configuration.json"  # under /opt/ml: where smspark reads it
#: smspark's classifications (src/smspark/config.py ``Configuration.classification_data``).
CLASSIFICATIONS = ("core-site", "hadoop-env", "hadoop-log4j", "hive-env", "hive-log4j", "hive-exec-log4j", "hive-site",
                   "spark-defaults", "spark-env", "spark-log4j", "spark-hive-site", "spark-metrics", "yarn-env",
                   "yarn-site")
_LOCAL_ONLY_CONF = ("spark.master", "spark.submit.deployMode")
_VALUE_OPTIONS = {"--class": "class", "--jars": "jars", "--py-files": "py-files", "--files": "files",
                  "--spark-event-logs-s3-uri": "spark-event-logs-s3-uri",
                  "--local-spark-event-logs-dir": "local-spark-event-logs-dir"}
_LIST_OPTIONS = ("jars", "py-files", "files")
#: SageMaker's NetworkConfig.VpcConfig limits (botocore model: Subnets 1-16, SecurityGroupIds 1-5).
MAX_SUBNETS, MAX_SECURITY_GROUPS = 16, 5


class SparkSetupError(Exception):
    """The Spark job cannot start as requested: the job fails with this ``ClientError`` reason."""


@dataclass
class SparkPlan:
    """What the executor runs for an ``smspark-submit`` request, and what it uploads afterwards."""

    command: list[str]
    env: dict[str, str]
    outputs: list[tuple[Path, str, str]] = field(default_factory=list)  # (local folder, bucket, key prefix)
    downloaded: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # JobResult.spark


def is_spark(request: dict) -> bool:
    entry = (request.get("AppSpecification") or {}).get("ContainerEntrypoint") or [""]
    return bool(entry) and entry[0] == SMSPARK


def parse_smspark(argv: list[str]) -> tuple[dict[str, Any], str, list[str]]:
    """smspark-submit's command line (click, ``allow_interspersed_args=False``): options, then APP, then its
    arguments verbatim.

    Raises:
        SparkSetupError: an option smspark-submit does not have, an option without its value, or no APP.
    """
    options: dict[str, Any] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        item = argv[i]
        name, eq, inline = item.partition("=")
        if name in ("-v", "--verbose") and not eq:
            options["verbose"] = True
            i += 1
            continue
        if name not in _VALUE_OPTIONS:
            raise SparkSetupError(f"smspark-submit has no option {name!r} (it accepts --class, --jars, --py-files, "
                                  "--files, --spark-event-logs-s3-uri, --local-spark-event-logs-dir, -v)")
        if eq:
            options[_VALUE_OPTIONS[name]] = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                raise SparkSetupError(f"smspark-submit option {name} needs a value")
            options[_VALUE_OPTIONS[name]] = argv[i + 1]
            i += 2
    if i >= len(argv):
        raise SparkSetupError("smspark-submit needs the application (a .py or .jar file) after its options")
    return options, argv[i], list(argv[i + 1:])


def expand_files(value: str) -> str:
    """smspark's ``--jars``/``--py-files``/``--files`` rendering: a directory becomes its top-level files (sorted
    here; smspark takes them in directory order), comma-separated; files and ``s3://`` URIs stay as given.

    Raises:
        SparkSetupError: a path that does not exist, or a directory without files (smspark: "Found zero files").
    """
    out: list[str] = []
    for item in value.split(","):
        if item.startswith(("s3://", "s3a://")):
            out.append(item)
            continue
        path = Path(item.removeprefix("file://"))
        if path.is_dir():
            files = sorted(str(f.resolve()) for f in path.iterdir() if f.is_file())
            if not files:
                raise SparkSetupError(f"Found zero files in {item}")
            out.extend(files)
        elif path.is_file():
            out.append(str(path.resolve()))
        else:
            raise SparkSetupError(f"file path {item} does not exist")
    return ",".join(out)


def _check_configuration(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise SparkSetupError(f"configuration.json {where} is not an object")
    extra = set(entry) - {"Classification", "Properties", "Configurations"}
    if extra:
        raise SparkSetupError(f"configuration.json {where} has unknown keys {sorted(extra)}")
    classification = entry.get("Classification")
    props = entry.get("Properties", {})
    if not isinstance(props, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        raise SparkSetupError(f"configuration.json {where}: Properties must map strings to strings")
    subs = entry.get("Configurations", [])
    if not isinstance(subs, list):
        raise SparkSetupError(f"configuration.json {where}: Configurations must be a list")
    if classification == "export":
        if subs:
            raise SparkSetupError(f"configuration.json {where}: an export entry has no Configurations")
        return
    if classification not in CLASSIFICATIONS:
        raise SparkSetupError(f"configuration.json {where}: invalid classification {classification!r}, must be one "
                              f"of {', '.join(CLASSIFICATIONS)}")
    if classification.endswith("-env"):
        if not subs or any(not isinstance(s, dict) or s.get("Classification") != "export" for s in subs):
            raise SparkSetupError(f"configuration.json {where}: {classification} needs 'export' sub-configurations")
    elif subs:
        raise SparkSetupError(f"configuration.json {where}: only *-env classifications have Configurations")
    for n, sub in enumerate(subs):
        _check_configuration(sub, f"{where}.Configurations[{n}]")


def read_configuration(path: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``(spark conf, environment, classifications not applied locally)`` of a ``configuration.json`` (a list of
    classifications, or one), or empty when the file does not exist (smspark: "No file at ... skipping").

    Raises:
        SparkSetupError: not JSON, or an entry of an unknown classification or shape.
    """
    if not path.is_file():
        return {}, {}, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SparkSetupError(f"configuration.json is not UTF-8 JSON: {exc}") from None
    entries = data if isinstance(data, list) else [data]
    conf: dict[str, str] = {}
    env: dict[str, str] = {}
    not_applied: list[str] = []
    for n, entry in enumerate(entries):
        _check_configuration(entry, f"[{n}]")
        classification = entry["Classification"]
        if classification == "export":
            raise SparkSetupError(f"configuration.json [{n}]: 'export' is only a sub-configuration of *-env")
        if classification == "spark-defaults":
            for key, value in entry.get("Properties", {}).items():
                if key in _LOCAL_ONLY_CONF:
                    not_applied.append(f"spark-defaults {key} (the local master is {LOCAL_MASTER})")
                else:
                    conf[key] = value
        elif classification == "spark-env":
            for sub in entry["Configurations"]:
                env.update(sub.get("Properties", {}))
        else:
            not_applied.append(classification)
    return conf, env, not_applied


def check_vpc(request: dict, ec2: Any | None) -> str:
    """``NetworkConfig.VpcConfig``: its shape (the API's limits), and with ``ec2`` that its subnets and security
    groups exist in the emulator. Returns what was checked (``none``, ``verified``, ``unverified: ...``).

    Raises:
        SparkSetupError: a shape outside the limits, or ids the emulator does not have.
    """
    vpc = (request.get("NetworkConfig") or {}).get("VpcConfig")
    if vpc is None:
        return "none"
    subnets, groups = list(vpc.get("Subnets") or []), list(vpc.get("SecurityGroupIds") or [])
    if not 1 <= len(subnets) <= MAX_SUBNETS or not 1 <= len(groups) <= MAX_SECURITY_GROUPS:
        raise SparkSetupError(f"VpcConfig needs 1-{MAX_SUBNETS} Subnets and 1-{MAX_SECURITY_GROUPS} SecurityGroupIds, "
                              f"got {len(subnets)} and {len(groups)}")
    if ec2 is None:
        return "unverified: no EC2 client"
    from botocore.exceptions import ClientError

    try:
        found_subnets = {s["SubnetId"] for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]}
        found_groups = {g["GroupId"] for g in ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]}
    except ClientError as exc:
        raise SparkSetupError(f"VpcConfig: {exc.response.get('Error', {}).get('Message', exc)}") from None
    missing = sorted((set(subnets) - found_subnets) | (set(groups) - found_groups))
    if missing:
        raise SparkSetupError(f"VpcConfig names {missing}, which do not exist")
    return "verified"


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not bucket:
        raise SparkSetupError(f"unsupported S3 URI {uri!r}")
    return bucket, key


Authorize = Callable[[str, str, str, "str | None"], "str | None"]


def _stage_input(s3: Any, uri: str, dest: Path, authorize: Authorize | None) -> tuple[Path, list[str]]:
    bucket, key = _split(uri)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    if not keys:
        raise SparkSetupError(f"no S3 objects under {uri} (the job's input argument)")

    def fetch(object_key: str, target: Path) -> str:
        denied = authorize("s3:GetObject", bucket, object_key, None) if authorize else None
        if denied:
            raise SparkSetupError(f"Failed to download data. Access denied for s3://{bucket}/{object_key}: {denied}")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, object_key, str(target))
        return str(target)

    if key in keys and not key.endswith("/"):  # one object: the argument names a file
        target = dest / key.rsplit("/", 1)[-1]
        return target, [fetch(key, target)]
    base = key if key.endswith("/") or not key else key + "/"
    done = []
    for object_key in keys:
        if object_key.endswith("/") or not object_key.startswith(base):
            continue
        target = (dest / object_key[len(base):]).resolve()
        if dest.resolve() not in target.parents:
            raise SparkSetupError(f"object key {object_key!r} escapes the local folder")
        done.append(fetch(object_key, target))
    if not done:
        raise SparkSetupError(f"no S3 objects under {uri} (the job's input argument)")
    return dest, done


def spark_submit_path(python: str) -> str:
    """pyspark's ``spark-submit`` beside ``python`` (the venv's), else on PATH."""
    beside = Path(python).parent / "spark-submit"
    found = str(beside) if beside.is_file() else shutil.which("spark-submit")
    if not found:
        raise SparkSetupError("spark-submit not found: install pyspark==3.5.6 (requirements-dev.txt)")
    return found


def prepare(request: dict, cmd: list[str], root: Path, jobdir: Path, *, s3: Any, python: str,
            authorize: Authorize | None = None, ec2: Any | None = None) -> SparkPlan:
    """The local command for an smspark-submit request whose ``cmd`` (entrypoint + arguments) has its ``/opt/ml/``
    paths already rewritten to the stand-in ``root`` (module docstring). Inputs are downloaded here.

    Raises:
        SparkSetupError: the job fails before it starts, with this reason.
    """
    options, app, app_args = parse_smspark(cmd[1:])
    conf, conf_env, not_applied = read_configuration(root / CONF_PATH)
    vpc = check_vpc(request, ec2)
    staged = jobdir / "s3"
    args: list[str] = []
    outputs: list[tuple[Path, str, str]] = []
    downloaded: list[str] = []
    for n, arg in enumerate(app_args):
        if not arg.startswith(("s3://", "s3a://")):
            args.append(arg)
            continue
        flag = app_args[n - 1] if n else ""
        if flag in OUTPUT_FLAGS:
            local = staged / f"out-{n}"
            local.mkdir(parents=True, exist_ok=True)
            bucket, key = _split(arg)
            outputs.append((local, bucket, key))
            args.append(str(local))
        else:
            local, files = _stage_input(s3, arg, staged / f"in-{n}", authorize)
            downloaded.extend(files)
            args.append(str(local))
    submit = [spark_submit_path(python), "--master", LOCAL_MASTER]
    if options.get("class"):
        submit += ["--class", options["class"]]
    for name in _LIST_OPTIONS:
        if options.get(name):
            submit += [f"--{name}", expand_files(options[name])]
    if options.get("verbose"):
        submit.append("--verbose")
    for key, value in {"spark.ui.enabled": "false", **conf}.items():
        submit += ["--conf", f"{key}={value}"]
    cluster = (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    record = {"master": LOCAL_MASTER, "instance_count": cluster.get("InstanceCount", 1),
              "instance_type": cluster.get("InstanceType"), "conf": conf, "env": sorted(conf_env),
              "not_applied": not_applied, "vpc": vpc, "app": app, "arguments": args}
    env = {**conf_env, "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python, "SPARK_LOCAL_IP": "127.0.0.1"}
    return SparkPlan(command=[*submit, app, *args], env=env, outputs=outputs, downloaded=downloaded, record=record)


def upload_outputs(plan: SparkPlan, s3: Any, authorize: Authorize | None = None) -> list[str]:
    """Upload every file the job wrote into an output argument's local folder under its ``s3://`` URI (all checked
    first: nothing is uploaded when one is refused).

    Raises:
        SparkSetupError: the role may not write one of them.
    """
    files: list[tuple[Path, str, str]] = []
    for local, bucket, prefix in plan.outputs:
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        for path in sorted(local.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files.append((path, bucket, base + path.relative_to(local).as_posix()))
    for _path, bucket, key in files if authorize else []:
        denied = authorize("s3:PutObject", bucket, key, None)  # type: ignore[misc]
        if denied:
            raise SparkSetupError(f"Failed to upload data. Access denied for s3://{bucket}/{key}: {denied}")
    uploaded = []
    for path, bucket, key in files:
        s3.upload_file(str(path), bucket, key)
        uploaded.append(f"s3://{bucket}/{key}")
    return uploaded
