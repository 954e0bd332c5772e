"""The job as a process: SageMaker folder layout via OPT_ML_ROOT, the zip bundle, error reports, version pins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy
import pandas
import pyarrow
import pytest

from processing.cli import run_options
from processing.errors import ProcessingError
from processing.options import RunOptions

ROOT = Path(__file__).resolve().parents[2]
REF = "id,name,age,salary,profile,department\n1,Ann,30,50000,\"{\"\"address\"\": \"\"x\"\"}\",HR\n2,Bob,,,,\n"


def _env(opt_ml: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATASET", "CODE_VERSION")}
    env.update(OPT_ML_ROOT=str(opt_ml), PYTHONPATH=str(ROOT), **extra)
    return env


def _layout(tmp_path: Path) -> Path:
    opt_ml = tmp_path / "opt" / "ml"
    data = opt_ml / "processing" / "input" / "data"
    data.mkdir(parents=True)
    (data / "employees.csv").write_text(REF)
    (opt_ml / "config").mkdir()
    (opt_ml / "config" / "resourceconfig.json").write_text('{"current_host": "algo-1", "hosts": ["algo-1"]}')
    (opt_ml / "config" / "processingjobconfig.json").write_text('{"ProcessingJobName": "dq-default-0123"}')
    return opt_ml


def test_module_run_with_sagemaker_defaults(tmp_path: Path) -> None:
    # GIVEN a folder laid out like /opt/ml with OPT_ML_ROOT pointing at it, and no --input/--output
    opt_ml = _layout(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "processing"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(opt_ml, CODE_VERSION="abc123", DATASET="default"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pandas=2.3.2" in proc.stderr and "pyarrow=17.0.0" in proc.stderr
    out = opt_ml / "processing" / "output"
    metrics = json.loads((out / "quality" / "metrics.json").read_text())
    assert metrics["summary"]["rows_in"] == 2 and metrics["code_version"] == "abc123"
    assert metrics["sagemaker"]["resourceconfig"]["current_host"] == "algo-1"
    assert metrics["sagemaker"]["processingjobconfig"]["ProcessingJobName"] == "dq-default-0123"
    # two rows, one mostly missing: the quality gate fails, so the data outputs sit under quarantine/
    assert json.loads((out / "quality" / "gate.json").read_text())["status"] == "failed"
    for folder in ("cleaned", "transformed", "statistics", "rejected"):
        assert any((out / "quarantine" / folder).iterdir()), folder
    assert any((out / "quality").iterdir())
    assert not (opt_ml / "output" / "message").exists()


def test_streaming_run_in_sagemaker_layout_keeps_its_work_file_off_the_uploaded_output(tmp_path: Path) -> None:
    # GIVEN the SageMaker layout and PROCESSING_MODE=streaming (what auto picks for large inputs)
    opt_ml = _layout(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "processing"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(opt_ml, PROCESSING_MODE="streaming"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = opt_ml / "processing" / "output"
    assert json.loads((out / "quality" / "metrics.json").read_text())["mode"] == "streaming"
    # THEN the work file went beside the output folder (SageMaker uploads the output folder) and is gone
    assert not [p for p in (opt_ml / "processing").rglob("*") if "processing-work" in p.name]
    assert sorted(p.name for p in (opt_ml / "processing").iterdir()) == ["input", "output"]


def test_row_budget_and_work_folder_from_the_environment_reach_the_streaming_run(tmp_path: Path) -> None:
    # GIVEN PROCESSING_MODE=streaming, a row budget below the input's two rows and a work folder of our choosing
    opt_ml = _layout(tmp_path)
    work = tmp_path / "work-here"
    proc = subprocess.run([sys.executable, "-m", "processing"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(opt_ml, PROCESSING_MODE="streaming", PROCESSING_MAX_ROWS_IN_MEMORY=" 1 ",
                                   PROCESSING_WORK_DIR=str(work), CODE_VERSION="v9"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((opt_ml / "processing" / "output" / "quality" / "metrics.json").read_text())
    # THEN the statistics were sampled (more output rows than the budget), the work folder was used and emptied
    assert metrics["mode"] == "streaming" and metrics["statistics_sampling"]["rows"] == 2
    assert metrics["code_version"] == "v9"
    assert work.is_dir() and not list(work.iterdir())


def test_a_bad_row_budget_fails_the_job_with_its_name(tmp_path: Path) -> None:
    opt_ml = _layout(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "processing"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(opt_ml, PROCESSING_MODE="streaming", PROCESSING_MAX_ROWS_IN_MEMORY="1e6"),
                          timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (opt_ml / "output" / "message").read_text().splitlines()[0] == (
        "ProcessingError: PROCESSING_MAX_ROWS_IN_MEMORY='1e6' is not a whole number")


@pytest.mark.parametrize(("value", "problem"), [
    ("0", "=0 is outside 1..9223372036854775807"), ("-5", "=-5 is outside 1..9223372036854775807"),
    ("1e6", "='1e6' is not a whole number"), ("many", "='many' is not a whole number"),
])
def test_a_bad_row_budget_fails_with_its_name(value: str, problem: str) -> None:
    # the contract's rule (contract.max_rows_in_memory), the same the CDK app and the trigger apply
    with pytest.raises(ProcessingError) as info:
        run_options("auto", {"PROCESSING_MAX_ROWS_IN_MEMORY": value})
    assert str(info.value) == f"PROCESSING_MAX_ROWS_IN_MEMORY{problem}"


@pytest.mark.parametrize(("flag", "env", "mode"), [
    ("auto", None, "auto"), ("auto", "streaming", "streaming"), ("auto", "memory", "memory"),
    ("auto", "auto", "auto"), ("auto", "", "auto"), ("auto", "fast", "auto"),  # an unknown value is auto
    ("memory", "streaming", "memory"), ("streaming", "memory", "streaming"), ("streaming", None, "streaming"),
])
def test_mode_flag_wins_over_processing_mode_unless_auto(flag: str, env: str | None, mode: str) -> None:
    assert run_options(flag, {} if env is None else {"PROCESSING_MODE": env}).mode == mode


def test_run_options_from_the_environment() -> None:
    assert run_options("auto", {}) == RunOptions()
    assert run_options("auto", {"PROCESSING_MAX_ROWS_IN_MEMORY": "", "PROCESSING_STREAMING_THRESHOLD_BYTES": "",
                                "PROCESSING_WORK_DIR": "", "CODE_VERSION": ""}) == RunOptions()
    assert run_options("memory", {"PROCESSING_MAX_ROWS_IN_MEMORY": " 2500 ",
                                  "PROCESSING_STREAMING_THRESHOLD_BYTES": "100",
                                  "PROCESSING_WORK_DIR": "/scratch", "CODE_VERSION": "abc"}) == RunOptions(
        mode="memory", streaming_threshold=100, max_rows=2500, work_dir=Path("/scratch"), code_version="abc")
    with pytest.raises(ValueError):  # as before: not a number is an unexpected failure (exit 1)
        run_options("auto", {"PROCESSING_STREAMING_THRESHOLD_BYTES": "lots"})


def test_only_cli_reads_the_environment() -> None:
    for f in sorted((ROOT / "processing").rglob("*.py")):
        if f.name != "cli.py":
            assert not re.search(r"\bos\.(environ|getenv)|\benviron\b|\bgetenv\b", f.read_text()), f.name


def _bundle(tmp_path: Path) -> Path:
    zpath = tmp_path / "bundle.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("__main__.py", 'import runpy\nrunpy.run_module("processing", run_name="__main__")\n')
        for f in sorted([*(ROOT / "processing").rglob("*"), *(ROOT / "contract").rglob("*")]):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(ROOT).as_posix())
    return zpath


def test_zip_bundle_runs_and_finds_bundled_config(tmp_path: Path) -> None:
    # GIVEN the bundle layout of design.md Contract 1, run from a folder where processing/ is not importable
    zpath = _bundle(tmp_path)
    opt_ml = _layout(tmp_path)
    env = _env(opt_ml)
    env.pop("PYTHONPATH")
    data = opt_ml / "processing" / "input" / "data" / "employees.csv"
    proc = subprocess.run([sys.executable, str(zpath), "--input", str(data), "--output", str(tmp_path / "o"),
                           "--dataset", "default", "--format", "csv"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "o" / "quality" / "metrics.json").read_text())
    assert metrics["config"]["source"] == "processing/configs/default.json"
    assert (tmp_path / "o" / "quarantine" / "cleaned" / "cleaned.csv").exists()  # gate failed (see above)


def test_failure_writes_error_json_and_message_without_traceback(tmp_path: Path) -> None:
    opt_ml = _layout(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,a\n")
    proc = subprocess.run([sys.executable, "-m", "processing", "--input", str(bad), "--output", str(tmp_path / "o")],
                          cwd=tmp_path, capture_output=True, text=True, env=_env(opt_ml), timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "o" / "quality" / "error.json").read_text())
    assert report["error_type"] == "MissingColumnsError" and report["input"] == str(bad)
    assert "age, salary, profile, department" in report["message"]
    # the message SageMaker reports as ExitMessage: exactly one line, the error class and its message; no JSON
    # report, no container paths (those stay in error.json)
    message = (opt_ml / "output" / "message").read_text()
    assert message == f"MissingColumnsError: {report['message']}\n"
    assert message.startswith("MissingColumnsError: bad.csv: missing required column(s): age")
    assert "{" not in message and str(tmp_path) not in message
    assert not (tmp_path / "o" / "quality" / "metrics.json").exists()


@pytest.mark.parametrize(("exc", "expected"), [
    (ValueError("first line\nsecond line with /opt/ml/processing/input/data/x.csv"), "ValueError: first line"),
    (KeyError(), "KeyError"),
    (RuntimeError("\n\n  tab\there \x00 ctl"), "RuntimeError: tab here ctl"),
])
def test_exit_message_is_the_error_class_and_one_line(exc: BaseException, expected: str) -> None:
    from processing.cli import exit_message

    assert exit_message(exc) == expected


def test_exit_message_fits_the_first_kilobyte() -> None:
    from processing.cli import EXIT_MESSAGE_BYTES, exit_message

    text = exit_message(ValueError("é" * 2000))
    assert len(text.encode("utf-8")) <= EXIT_MESSAGE_BYTES <= 1024 and text.endswith("...")


def test_replaced_source_fails_with_source_changed_error(tmp_path: Path) -> None:
    # GIVEN the event's version was 456 bytes, but the file the job got is not (the staged copy is another version)
    opt_ml = _layout(tmp_path)
    env = _env(opt_ml, SOURCE_SIZE="456", SOURCE_URI="s3://bucket/input/x.csv", SOURCE_VERSION_ID="v1",
               SOURCE_ETAG="0123abcd")
    # WHEN the job runs with the exact file, as the trigger starts it (design.md Contract 1)
    data = opt_ml / "processing" / "input" / "data" / "employees.csv"
    proc = subprocess.run([sys.executable, "-m", "processing", "--input", str(data)], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=60)
    # THEN it fails as an expected error (exit 2), reported in error.json and /opt/ml/output/message, with no outputs
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    size = len(REF.encode())
    expected = (f"input/x.csv is {size} bytes as downloaded, the event's version v1 was 456 bytes: the job's staged "
                "copy is not that version")
    out = opt_ml / "processing" / "output"
    report = json.loads((out / "quality" / "error.json").read_text())
    assert report["error_type"] == "SourceChangedError" and report["expected"] is True
    assert report["message"] == expected
    assert (opt_ml / "output" / "message").read_text().splitlines()[0] == f"SourceChangedError: {expected}"
    assert not (out / "quality" / "metrics.json").exists()


def test_source_check_passes_on_equal_size_and_skips_without_size(tmp_path: Path) -> None:
    from processing.cli import SourceChangedError, check_source

    data = tmp_path / "x.csv"
    data.write_text(REF)
    check_source(data, {"SOURCE_SIZE": str(len(REF.encode()))})  # the event's version: fine
    check_source(data, {})  # local run, no SOURCE_SIZE: no check
    check_source(tmp_path, {"SOURCE_SIZE": "1"})  # a folder input: no check
    try:
        check_source(data, {"SOURCE_SIZE": "1", "SOURCE_URI": "s3://b/input/x.csv"})
    except SourceChangedError as exc:
        assert str(exc).startswith("input/x.csv is ") and "version (unversioned) was 1 bytes" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("no SourceChangedError")


def test_bad_config_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text('{"derived": [{"name": "x", "kind": "bins", "source": "y"}]}')
    data = tmp_path / "d.csv"
    data.write_text(REF)
    proc = subprocess.run([sys.executable, "-m", "processing", "--input", str(data), "--output", str(tmp_path / "o"),
                           "--config", str(cfg)], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(tmp_path / "no-opt-ml"), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "o" / "quality" / "error.json").read_text())
    assert report["error_type"] == "ConfigError" and report["message"].startswith("derived[0].source:")
    assert not (tmp_path / "no-opt-ml").exists()  # no OPT_ML_ROOT folder: no message file is invented


def test_job_runs_against_the_pinned_library_versions() -> None:
    pins = dict(re.findall(r"^([a-z]+)==(\S+)$", (ROOT / "processing" / "requirements.txt").read_text(), re.MULTILINE))
    assert pins == {"pandas": pandas.__version__, "numpy": numpy.__version__, "pyarrow": pyarrow.__version__}


def test_job_code_imports_only_allowed_modules() -> None:
    allowed = {"pandas", "numpy", "pyarrow", "processing", "contract"}  # contract/: bundled beside processing/
    stdlib = set(sys.stdlib_module_names)
    for f in (ROOT / "processing").rglob("*.py"):
        extra = {"pyspark"} if "spark" in f.relative_to(ROOT / "processing").parts else set()  # --engine spark only
        for mod in re.findall(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", f.read_text(), re.MULTILINE):
            assert mod in allowed | extra or mod in stdlib or mod == "__future__", f"{f.name} imports {mod}"


def test_sample_generator_cli_is_deterministic(tmp_path: Path) -> None:
    outs = []
    for name in ("a.csv", "b.csv"):
        subprocess.run([sys.executable, "-m", "processing.sample", "--rows", "500", "--seed", "7", "--out",
                        str(tmp_path / name)], check=True, env=_env(tmp_path), timeout=60)
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 501


# --- issue 11 item 10: the job warns when the image's libraries differ from processing/requirements.txt ---------


def test_library_drift_compares_loaded_versions_with_the_pins() -> None:
    from processing.pipeline import library_drift, parse_pins

    pins = parse_pins("# comment\npandas==2.3.2\nnumpy == 2.1.0  # the image's\npyarrow==17.0.0\nscipy>=1\n")
    assert pins == {"pandas": "2.3.2", "numpy": "2.1.0", "pyarrow": "17.0.0"}
    loaded = {"python": "3.12.3", "pandas": "2.3.2", "numpy": "2.1.0", "pyarrow": "17.0.0"}
    assert library_drift(loaded, pins) == []
    assert library_drift({**loaded, "pyarrow": "23.0.1"}, pins) == [
        {"library": "pyarrow", "expected": "17.0.0", "loaded": "23.0.1"}]
    assert library_drift({k: v for k, v in loaded.items() if k != "numpy"}, pins) == [
        {"library": "numpy", "expected": "2.1.0", "loaded": "not loaded"}]
    assert library_drift(loaded, {}) == []


def test_metrics_json_records_no_drift_against_the_repository_pins(tmp_path: Path) -> None:
    opt_ml = _layout(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "processing"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(opt_ml, DATASET="default"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((opt_ml / "processing" / "output" / "quality" / "metrics.json").read_text())
    assert metrics["library_drift"] == [] and "library drift" not in proc.stderr


def test_bundled_job_with_other_pins_warns_and_records_the_drift(tmp_path: Path) -> None:
    # GIVEN the job's code bundle (as deployed: the zip) whose requirements.txt pins a pandas the image lacks
    from infra.code_bundle import build_bundle_dir

    source = tmp_path / "src" / "processing"
    import shutil
    shutil.copytree(ROOT / "processing", source, ignore=shutil.ignore_patterns("__pycache__"))
    pins = (source / "requirements.txt").read_text().replace(f"pandas=={pandas.__version__}", "pandas==0.0.1")
    (source / "requirements.txt").write_text(pins)
    build_bundle_dir(source, tmp_path / "bundle", packages=(ROOT / "contract",))
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((tmp_path / "bundle").rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(tmp_path / "bundle").as_posix())
    opt_ml = _layout(tmp_path)
    env = _env(opt_ml, DATASET="default")
    env.pop("PYTHONPATH")
    # WHEN it runs
    proc = subprocess.run([sys.executable, str(archive)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=60)
    # THEN a warning names the library, and metrics.json records it
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"WARNING processing: library drift: pandas {re.escape(pandas.__version__)} is loaded, "
                     r"processing/requirements.txt pins 0\.0\.1", proc.stderr), proc.stderr
    metrics = json.loads((opt_ml / "processing" / "output" / "quality" / "metrics.json").read_text())
    assert metrics["library_drift"] == [{"library": "pandas", "expected": "0.0.1", "loaded": pandas.__version__}]


def test_dataset_is_the_config_files_name_when_no_dataset_is_given(tmp_path: Path) -> None:
    # issue 14: with --config and neither --dataset nor $DATASET, metrics.json said "default"
    cfg = tmp_path / "flights.json"
    cfg.write_text((ROOT / "processing" / "configs" / "default.json").read_text())
    data = tmp_path / "d.csv"
    data.write_text(REF)
    proc = subprocess.run([sys.executable, "-m", "processing", "--input", str(data), "--output", str(tmp_path / "o"),
                           "--config", str(cfg)], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(tmp_path / "no-opt-ml"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "o" / "quality" / "metrics.json").read_text())["dataset"] == "flights"


@pytest.mark.parametrize(("flag", "env", "config", "expected"), [
    ("sales", {"DATASET": "hr"}, "flights.json", "sales"),  # --dataset first
    (None, {"DATASET": "hr"}, "flights.json", "hr"),  # then $DATASET (the stack sets it)
    (None, {}, "configs/flights.json", "flights"),  # then the config file's stem
    (None, {}, "My Flights.json", "default"),  # not a dataset name ([a-z0-9][a-z0-9-]{0,31})
    (None, {"DATASET": ""}, None, "default"),
])
def test_dataset_name_precedence(flag: str | None, env: dict[str, str], config: str | None, expected: str) -> None:
    from processing.cli import dataset_name

    assert dataset_name(flag, env, Path(config) if config else None) == expected
