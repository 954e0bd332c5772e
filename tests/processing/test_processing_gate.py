"""The quality gate: config validation, verdicts, and the output layout of passed, warned and failed batches."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processing import config as config_mod
from processing import gate, pipeline
from processing.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DOC = json.loads((ROOT / "processing" / "configs" / "default.json").read_text(encoding="utf-8"))
DEPTS = ["Engineering", "Finance", "HR", "Marketing", "Sales"]


def employees(path: Path, n: int, seed: int, *, depts: list[str] = DEPTS, salary_shift: float = 0.0,
              bad_ids: int = 0) -> Path:
    """A clean CSV in the reference layout (every value present); ``bad_ids`` rows get a missing id (rejected)."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(20, 65, n)
    salaries = np.round(rng.normal(60000 + salary_shift, 10000, n), 2)
    dept = rng.choice(depts, n)
    lines = ["id,name,age,salary,profile,department"]
    for i in range(n):
        ident = "" if i < bad_ids else str(i + 1)
        profile = f'"{{""address"": ""{i} Main St"", ""phone"": ""555"", ""email"": ""e{i}@x.org""}}"'
        lines.append(f"{ident},Name{i},{ages[i]},{salaries[i]},{profile},{dept[i]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(tmp_path: Path, name: str, data: Path, baseline: Path | None = None, doc: dict | None = None):
    cfg = config_mod.validate(copy.deepcopy(doc or DEFAULT_DOC))
    return pipeline.run([data], tmp_path / name, cfg, baseline=baseline, context={"dataset": "default"})


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("base")
    res = run(tmp, "out", employees(tmp / "in" / "base.csv", 5000, seed=1))
    assert res.metrics["gate"]["status"] == "passed"
    return tmp / "out"


def data_files(out: Path, folder: str) -> list[str]:
    return sorted(p.name for p in (out / folder).iterdir()) if (out / folder).is_dir() else []


def test_first_batch_passes_with_drift_unavailable_and_no_success_marker(base_dir: Path) -> None:
    out = base_dir
    drift_doc = json.loads((out / "quality" / "drift.json").read_text())
    assert drift_doc["status"] == "unavailable" and "no baseline" in drift_doc["reason"]
    gate_doc = json.loads((out / "quality" / "gate.json").read_text())
    assert gate_doc["status"] == "passed" and gate_doc["violations"] == []
    # no _SUCCESS from the job: the metrics Lambda writes it after the job finished (design.md Contract 4)
    assert data_files(out, "cleaned") == ["cleaned.parquet"]
    assert data_files(out, "transformed") == ["transformed.parquet"]
    assert (out / "quarantine").is_dir() and not any((out / "quarantine").iterdir())
    profile = json.loads((out / "quality" / "profile.json").read_text())
    assert set(profile["columns"]) == {"age", "salary", "department"}
    assert set(profile["json_field_presence"]) == {"profile.address", "profile.phone", "profile.email"}
    m = json.loads((out / "quality" / "metrics.json").read_text())
    s = m["summary"]
    assert (s["drift_max_psi"], s["drifted_columns"], s["drift_unavailable"]) == (0.0, 0, 1)
    assert (s["quality_gate_failed"], s["quality_gate_warned"]) == (0, 0)
    assert m["drift"]["status"] == "unavailable" and m["gate"] == {"status": "passed", "violations": []}
    assert "quality/profile.json" in m["outputs"]["quality"]
    assert not any(p.endswith("_SUCCESS") for files in m["outputs"].values() for p in files)


def test_same_distribution_passes_against_the_baseline(tmp_path: Path, base_dir: Path) -> None:
    res = run(tmp_path, "o", employees(tmp_path / "b.csv", 5000, seed=2), base_dir / "quality" / "profile.json")
    assert res.metrics["drift"]["status"] == "computed" and res.metrics["drift"]["drifted_columns"] == []
    assert res.metrics["gate"]["status"] == "passed"
    assert res.metrics["summary"]["drift_unavailable"] == 0 and res.metrics["summary"]["drift_max_psi"] < 0.05


def test_drift_warn_level_warns_and_keeps_outputs_in_place(tmp_path: Path, base_dir: Path) -> None:
    # GIVEN salaries shifted by 0.15 baseline standard deviations (normalised distance ~0.15: warn, not alarm)
    res = run(tmp_path, "o", employees(tmp_path / "b.csv", 5000, seed=3, salary_shift=1500),
              base_dir / "quality" / "profile.json")
    out = tmp_path / "o"
    assert res.metrics["gate"]["status"] == "warned", res.metrics["gate"]
    assert res.metrics["summary"]["quality_gate_warned"] == 1 and res.metrics["summary"]["quality_gate_failed"] == 0
    [v] = res.metrics["gate"]["violations"]
    assert v["rule"] == "drift.distance_warn" and v["column"] == "salary" and v["action"] == "warn"
    assert v["threshold"] == 0.1 and 0.1 <= v["measured"] < 0.25
    assert data_files(out, "cleaned") == ["cleaned.parquet"]
    assert data_files(out, "transformed") == ["transformed.parquet"]
    assert not any((out / "quarantine").iterdir())


def test_drifted_batch_is_quarantined_with_violations(tmp_path: Path, base_dir: Path) -> None:
    # GIVEN a batch where HR vanished and Legal appeared
    depts = [d for d in DEPTS if d != "HR"] + ["Legal"]
    res = run(tmp_path, "o", employees(tmp_path / "b.csv", 5000, seed=4, depts=depts),
              base_dir / "quality" / "profile.json")
    out = tmp_path / "o"
    # THEN the gate fails and every data output sits under quarantine/, nothing in the normal folders, no marker
    assert res.metrics["gate"]["status"] == "failed"
    for folder in gate.DATA_FOLDERS:
        assert data_files(out, folder) == [], folder
        assert data_files(out / "quarantine", folder), folder
    assert data_files(out / "quarantine", "cleaned") == ["cleaned.parquet"]
    violations = json.loads((out / "quarantine" / "violations.json").read_text())
    [v] = violations["violations"]
    assert v == {"rule": "drift.psi_alarm", "column": "department", "level": "alarm",
                 "measured": v["measured"], "threshold": 0.25, "action": "fail"} and v["measured"] > 0.25
    # quality/ stays in place, and metrics point at the moved files
    assert sorted(p.name for p in (out / "quality").iterdir()) == [
        "drift.json", "gate.json", "metrics.json", "profile.json"]
    m = json.loads((out / "quality" / "metrics.json").read_text())
    assert m["outputs"]["cleaned"] == ["quarantine/cleaned/cleaned.parquet"]
    assert m["outputs"]["quarantine"] == ["quarantine/violations.json"]
    assert (out / m["outputs"]["transformed"][0]).is_file()
    assert m["summary"]["quality_gate_failed"] == 1 and m["summary"]["drifted_columns"] == 1
    assert m["drift"]["drifted_columns"] == ["department"]


def test_threshold_breach_fails_and_names_measured_value_and_threshold(tmp_path: Path) -> None:
    # GIVEN 100 of 1000 rows without an id (rejected): rejected_rate 0.1 > 0.01
    res = run(tmp_path, "o", employees(tmp_path / "b.csv", 1000, seed=5, bad_ids=100))
    violations = json.loads((tmp_path / "o" / "quarantine" / "violations.json").read_text())["violations"]
    assert {"rule": "quality_thresholds.max_rejected_rate", "measured": 0.1, "threshold": 0.01,
            "action": "fail"} in violations
    assert res.metrics["gate"]["status"] == "failed"


def test_gate_actions_are_configurable(tmp_path: Path) -> None:
    # GIVEN thresholds configured to only warn
    doc = copy.deepcopy(DEFAULT_DOC)
    doc["gate"] = {"thresholds": "warn"}
    res = run(tmp_path, "o", employees(tmp_path / "b.csv", 1000, seed=5, bad_ids=100), doc=doc)
    assert res.metrics["gate"]["status"] == "warned"
    assert data_files(tmp_path / "o", "cleaned") == ["cleaned.parquet"]  # outputs in place (the Lambda marks them)
    # and drift unavailable configured to fail
    doc["gate"] = {"thresholds": "ignore", "drift_unavailable": "fail"}
    res = run(tmp_path, "o2", employees(tmp_path / "c.csv", 100, seed=6), doc=doc)
    assert res.metrics["gate"]["status"] == "failed"
    assert res.metrics["gate"]["violations"][0]["rule"] == "drift.unavailable"


def test_bad_baseline_completes_with_drift_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "baseline.json"
    bad.write_text('{"schema_version": 1, "columns": {"age": {"kind": "numeric"}}}')
    res = run(tmp_path, "o", employees(tmp_path / "b.csv", 500, seed=7), bad)
    drift_doc = json.loads((tmp_path / "o" / "quality" / "drift.json").read_text())
    assert drift_doc["status"] == "unavailable" and "lacks drift column(s) salary, department" in drift_doc["reason"]
    assert res.metrics["summary"]["drift_unavailable"] == 1 and res.metrics["gate"]["status"] == "passed"


def test_cli_with_baseline(tmp_path: Path, base_dir: Path) -> None:
    # GIVEN the job run as a process with --baseline, on a batch where a department vanished
    data = employees(tmp_path / "in" / "b.csv", 2000, seed=8, depts=DEPTS[:3])
    env = {k: v for k, v in os.environ.items() if k not in ("DATASET", "CODE_VERSION", "OPT_ML_ROOT")}
    env["PYTHONPATH"] = str(ROOT)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "processing", "--input", str(data), "--output", str(out),
                           "--baseline", str(base_dir / "quality" / "profile.json")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    # THEN it exits 0 (the verdict is data), quarantines the batch and says so
    assert proc.returncode == 0, proc.stderr
    assert "quality gate failed" in proc.stderr
    assert json.loads((out / "quality" / "gate.json").read_text())["status"] == "failed"
    assert (out / "quarantine" / "violations.json").is_file()
    # and a missing baseline file is reported, not fatal
    proc = subprocess.run([sys.executable, "-m", "processing", "--input", str(data), "--output", str(tmp_path / "o2"),
                           "--baseline", str(tmp_path / "nope.json")],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    reason = json.loads((tmp_path / "o2" / "quality" / "drift.json").read_text())["reason"]
    assert "nope.json does not exist" in reason


@pytest.mark.parametrize(("patch", "message"), [
    ({"drift": {"numeric": ["department"]}}, "drift.numeric[0]: 'department' must be a declared integer or float"),
    ({"drift": {"categorical": ["profile"]}}, "drift.categorical[0]: 'profile' must be a declared non-JSON column"),
    ({"drift": {"psi_warn": -1}}, "drift.psi_warn: expected a non-negative number or null"),
    ({"drift": {"psi_warn": 0.5}}, "drift.psi_warn: psi_warn (0.5) must not exceed psi_alarm (0.25)"),
    ({"drift": {"columns": {"id": {}}}}, "drift.columns.id: not a drift column"),
    ({"drift": {"columns": {"age": {"psi_alrm": 1}}}}, "drift.columns.age.psi_alrm: unknown key"),
    ({"drift": {"json_fields": ["profile.zip"]}}, "drift.json_fields[0]: 'profile.zip' is not an extracted field"),
    ({"drift": {"bins": 5}}, "drift.bins: unknown key"),
    ({"gate": {"thresholds": "block"}}, "gate.thresholds: expected one of fail, warn, ignore, got 'block'"),
    ({"gate": {"drift": "fail"}}, "gate.drift: unknown key"),
])
def test_config_errors_name_the_bad_key(patch: dict, message: str) -> None:
    doc = copy.deepcopy(DEFAULT_DOC)
    doc.update(patch)
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        config_mod.validate(doc)


def test_default_drift_columns_skip_id_like_names() -> None:
    doc = {"columns": {"id": "integer", "user_id": "integer", "orderId": "integer", "uuid": "string",
                       "qty": "float", "region": "category", "note": "string", "blob": "json"}}
    cfg = config_mod.validate(doc)
    assert cfg.drift.numeric == ("qty",) and cfg.drift.categorical == ("region", "note")
    assert cfg.gate == gate.GateSettings()
