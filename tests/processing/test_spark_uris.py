"""The Spark engine reads and writes URIs through Hadoop's FileSystem API (issue 13 item 2): on SageMaker ``--input``,
``--output``, ``--quarantine`` and ``--baseline`` are ``s3://`` URIs (EMRFS); here ``file://`` URIs take the same code
path (processing/spark/hadoopfs.py) on Hadoop's local file system, without a network. The results must be those of a
run on local paths: same metrics (inputs' sha256 read through Hadoop streams), same files at the same places."""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from processing import cli
from processing import config as config_mod

pytest.importorskip("pyspark")

from processing import spark as spark_engine

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DOC = json.loads((ROOT / "processing" / "configs" / "default.json").read_text(encoding="utf-8"))
HEADER = "id,name,age,salary,profile,department"
ROWS = [
    '1,Ann,34,52000,"{""address"": ""1 Main St"", ""email"": ""a@x.org""}",HR',
    '2,Bob,,61000,"{""address"": ""2 Side St""}",IT',
    "3,Cy,45,,{bad json,IT",
    '4,Di,29,48000,"{""phone"": ""555""}",',
    "5,Ed,51,75000,{},Ops",
]
VOLATILE = {"processing_seconds", "timestamp", "created", "path"}

pytestmark = pytest.mark.spark


def _inputs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(HEADER + "\n" + "\n".join(ROWS[:3]) + "\n", encoding="utf-8")
    (folder / "b.csv").write_text(HEADER + "\r\n" + "\r\n".join(ROWS[2:]) + "\r\n", encoding="utf-8")
    (folder / ".hidden.csv").write_text("not,an,input\n", encoding="utf-8")
    return folder


def _strip(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(spark: Any, source: Path | str, output: Path | str, doc: dict[str, Any] | None = None,
         **kwargs: Any) -> dict[str, Any]:
    cfg = config_mod.validate(copy.deepcopy(doc or DEFAULT_DOC))
    return spark_engine.run(spark_engine.list_inputs(source), output, cfg, spark=spark, **kwargs)


def test_file_uris_give_the_results_of_local_paths(spark: Any, tmp_path: Path) -> None:
    # GIVEN two CSV files (and a hidden one) in a folder, and a baseline from an earlier run
    folder = _inputs(tmp_path / "in")
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["gate"]["thresholds"] = "warn"  # this small messy batch breaks the reference thresholds: warn, not fail
    _run(spark, folder, tmp_path / "first", doc)
    baseline = tmp_path / "first" / "quality" / "profile.json"
    # WHEN the engine runs once on local paths and once on file:// URIs (output, quarantine, baseline too)
    local = _run(spark, folder, tmp_path / "local", doc, baseline=baseline)
    remote = _run(spark, folder.as_uri() + "/", (tmp_path / "remote").as_uri() + "/", doc, baseline=baseline.as_uri(),
                  quarantine=(tmp_path / "q").as_uri() + "/")
    assert local["gate"]["status"] != "failed"
    # THEN the same metrics (the inputs' sha256 read through Hadoop streams equals hashlib's on the files)
    assert _strip(remote) == _strip(local)
    assert [i["file"] for i in remote["inputs"]] == ["a.csv", "b.csv"]
    for entry in remote["inputs"]:
        assert entry["path"] == (folder / entry["file"]).as_uri().replace("file:///", "file:/")
        assert entry["sha256"] == hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
    assert remote["drift"]["status"] != "unavailable"  # the baseline was read through the URI
    # and the same files at the same paths (Spark's temporary folders gone); data files byte-identical in content
    written, expected = _files(tmp_path / "remote"), _files(tmp_path / "local")
    assert sorted(written) == sorted(expected)
    assert written["statistics/department_statistics.csv"] == expected["statistics/department_statistics.csv"]
    for name in ("quality/gate.json", "quality/profile.json", "quality/drift.json"):
        assert _strip(json.loads(written[name])) == _strip(json.loads(expected[name])), name
    assert json.loads(written["quality/metrics.json"])["summary"]["rows_in"] == local["summary"]["rows_in"]
    assert not (tmp_path / "q").exists() or not _files(tmp_path / "q")  # the gate passed: nothing quarantined


def test_failed_gate_moves_the_written_data_into_the_quarantine_uri(spark: Any, tmp_path: Path) -> None:
    # GIVEN a config whose gate fails (at least a million output rows required)
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["quality_thresholds"]["min_rows_out"] = 1_000_000
    folder = _inputs(tmp_path / "in")
    out, quarantine = tmp_path / "out", tmp_path / "q"
    # WHEN it runs with URI output and quarantine
    metrics = _run(spark, folder.as_uri(), out.as_uri(), doc, quarantine=quarantine.as_uri())
    # THEN the data folders Spark wrote under the output moved to the quarantine URI, with violations.json; the
    # quality folder stays with the output
    assert metrics["gate"]["status"] == "failed"
    moved = _files(quarantine)
    assert {"cleaned/cleaned.parquet", "transformed/transformed.parquet", "rejected/rejected.parquet",
            "statistics/department_statistics.csv", "violations.json"} <= set(moved)
    left = _files(out)
    assert not [n for n in left if n.split("/")[0] in ("cleaned", "transformed", "rejected", "statistics")], left
    assert "quality/metrics.json" in left and metrics["outputs"]["cleaned"] == ["quarantine/cleaned/cleaned.parquet"]


def test_local_output_with_a_quarantine_elsewhere(spark: Any, tmp_path: Path) -> None:
    # The local cloud's executor passes local folders for both (its staging of s3:// arguments).
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["quality_thresholds"]["min_rows_out"] = 1_000_000
    folder = _inputs(tmp_path / "in")
    _run(spark, folder, tmp_path / "out", doc, quarantine=tmp_path / "q")
    assert "cleaned/cleaned.parquet" in _files(tmp_path / "q") and "violations.json" in _files(tmp_path / "q")
    assert not _files(tmp_path / "out" / "quarantine")


def test_cli_takes_uris_and_reports_failures_at_the_output_uri(spark: Any, tmp_path: Path) -> None:
    folder = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert cli.main(["--engine", "spark", "--input", folder.as_uri() + "/", "--output", out.as_uri() + "/",
                     "--format", "csv"]) == 0
    metrics = json.loads((out / "quality" / "metrics.json").read_text(encoding="utf-8"))
    assert (out / metrics["outputs"]["cleaned"][0]).is_file()  # cleaned/ or, the gate failing, quarantine/cleaned/
    # a missing input: an expected failure (exit 2) with quality/error.json written through the URI
    missing = (tmp_path / "nothing").as_uri()
    failed = tmp_path / "failed"
    assert cli.main(["--engine", "spark", "--input", missing, "--output", failed.as_uri()]) == 2
    report = json.loads((failed / "quality" / "error.json").read_text(encoding="utf-8"))
    assert report["error_type"] == "InputError" and missing in report["message"]


def test_default_engine_refuses_uris(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--input", "s3://bucket/staging/x/", "--output", str(tmp_path)])
    assert exc.value.code == 2


def test_uris_survive_the_command_line() -> None:
    # Path("s3://b/k") would be "s3:/b/k": the parser keeps URIs as text, local paths as Path
    args = cli.build_parser().parse_args(["--input", "s3://b/staging/k/", "--output", "out", "--baseline",
                                          "s3://b/baselines/d/baseline.json"])
    assert args.input == "s3://b/staging/k/" and args.output == Path("out")
    assert args.baseline == "s3://b/baselines/d/baseline.json"


def test_entry_script_under_spark_submit_keeps_its_master_and_imports_the_bundle(tmp_path: Path) -> None:
    """What smspark-submit does on SageMaker, locally: ``spark-submit --master ... --py-files <code bundle zip>
    processing/spark/entry.py ARGS``, run from a folder where processing/ is importable only from the zip. The
    session keeps spark-submit's master (a builder master would override it: on SageMaker that is YARN)."""
    import subprocess
    import zipfile

    import pyspark

    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as z:
        for f in sorted([*(ROOT / "processing").rglob("*.py"), *(ROOT / "processing" / "configs").glob("*.json"),
                         *(ROOT / "contract").rglob("*.py")]):
            if "__pycache__" not in f.parts:
                z.write(f, f.relative_to(ROOT).as_posix())
    folder = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_GATEWAY_PORT")}
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    done = subprocess.run([str(submit), "--master", "local[1]", "--py-files", str(bundle),
                           str(ROOT / "processing" / "spark" / "entry.py"), "--engine", "spark",
                           "--input", folder.as_uri() + "/", "--output", out.as_uri() + "/", "--format", "csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr  # spark-submit's PythonRunner passes the driver's stderr on to its stdout
    assert done.returncode == 0, log[-3000:]
    assert "master local[1]" in log, log[-3000:]
    metrics = json.loads((out / "quality" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["mode"] == "spark" and metrics["summary"]["rows_in"] == 6


@pytest.mark.parametrize(("name", "content", "compressed"), [
    ("utf8.csv", ("id,näme\n" + "".join(f"{i},€ž{i}\n" for i in range(50_000))).encode("utf-8"), False),
    ("surrogate.csv", b"a,b\n" + b"x" * 100_000 + b"\xed\xa0\x80\n", False),
    ("overlong.csv", b"a,b\n\xc0\xaf\n", False),
    ("truncated.csv", b"a,b\n\xe2\x82", False),
    ("members.csv.gz", gzip.compress("a,b\n1,ä\n".encode()) + gzip.compress(b"2,3\n"), True),
    ("cut.csv.gz", gzip.compress(b"a,b\n1,2\n" * 1000)[:-6], True),
    ("notgzip.csv.gz", b"a,b\n1,2\n", True),
])
def test_digest_through_hadoop_equals_the_local_digest(spark: Any, tmp_path: Path, name: str, content: bytes,
                                                       compressed: bool) -> None:
    # The sha256 and UTF-8 verdict of a URI input are computed in the JVM (bytes through py4j run at ~12 MB/s);
    # they must be rawfile.file_digest's for the same bytes, so metrics.json and the engine's checks agree.
    from processing.rawfile import file_digest
    from processing.spark import hadoopfs

    path = tmp_path / name
    path.write_bytes(content)
    assert hadoopfs.digest(path.as_uri(), check_utf8=True, compressed=compressed) == \
        file_digest(path, check_utf8=True, compressed=compressed)
    assert hadoopfs.digest(path.as_uri())[0] == hashlib.sha256(content).hexdigest()
