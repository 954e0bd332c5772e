"""The processing code bundle: contents, exclusions, determinism, and that `python3 bundle.zip` runs the package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from aws_cdk import FileSystem

from infra.code_bundle import MAIN_PY, build_bundle_dir
from infra_testlib import ROOT, Synth, write_processing_package


def files(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def zip_dir(directory: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files(directory)):
            archive.write(directory / name, name)
    return target


def test_bundle_holds_main_and_package_without_tests_or_caches(tmp_path: Path) -> None:
    source = write_processing_package(tmp_path / "processing")
    build_bundle_dir(source, tmp_path / "bundle")
    assert files(tmp_path / "bundle") == {
        "__main__.py",
        "processing/__init__.py",
        "processing/__main__.py",
        "processing/requirements.txt",  # the pins the job compares with its loaded libraries
        "processing/transform.py",
        "processing/configs/default.json",
        "processing/configs/orders.json",
    }
    assert (tmp_path / "bundle" / "__main__.py").read_text() == MAIN_PY
    assert 'runpy.run_module("processing", run_name="__main__", alter_sys=True)' in MAIN_PY


def test_bundle_is_deterministic(tmp_path: Path) -> None:
    source = write_processing_package(tmp_path / "processing")
    first = build_bundle_dir(source, tmp_path / "a")
    os.utime(source / "transform.py", (1, 1))  # timestamps must not matter
    second = build_bundle_dir(source, tmp_path / "b")
    assert first == second
    assert FileSystem.fingerprint(str(tmp_path / "a")) == FileSystem.fingerprint(str(tmp_path / "b"))
    (source / "transform.py").write_text("def f():\n    return 2\n")
    assert build_bundle_dir(source, tmp_path / "c") != first


def test_zipped_bundle_runs_the_package(tmp_path: Path) -> None:
    # GIVEN the bundle zipped as CDK does  WHEN `python3 bundle.zip ARGS` runs  THEN processing.__main__ gets ARGS
    source = write_processing_package(tmp_path / "processing")
    build_bundle_dir(source, tmp_path / "bundle")
    archive = zip_dir(tmp_path / "bundle", tmp_path / "bundle.zip")
    done = subprocess.run([sys.executable, str(archive), "--input", "x.csv"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "bundle-ran ['--input', 'x.csv']" in done.stdout


def test_real_processing_package_bundles(tmp_path: Path) -> None:
    source = ROOT / "processing"
    if not (source / "__init__.py").is_file():
        pytest.skip("processing/ not there yet")
    build_bundle_dir(source, tmp_path / "bundle")
    names = files(tmp_path / "bundle")
    assert {"__main__.py", "processing/__init__.py", "processing/configs/default.json"} <= names
    # the pins travel with the job: it compares them with the libraries it loaded (library_drift in metrics.json)
    assert "processing/requirements.txt" in names
    assert not [n for n in names if "/tests/" in n or "__pycache__" in n or n.endswith(".pyc")]


def test_stack_asset_is_the_bundle(synth: Synth) -> None:
    staged = [p for p in synth.outdir.glob("asset.*") if (p / "__main__.py").is_file() and (p / "processing").is_dir()]
    assert len(staged) == 1
    assert synth.stack.code.code_version in staged[0].name
    assert (staged[0] / "__main__.py").read_text() == MAIN_PY
