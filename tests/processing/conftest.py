"""Shared fixtures: tiny inputs written to tmp_path and a helper that runs the pipeline in-process."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processing import config as config_mod
from processing import pipeline, rawfile

DEFAULT_DOC = json.loads(
    (Path(__file__).resolve().parents[2] / "processing" / "configs" / "default.json").read_text(encoding="utf-8"))

HEADER = "id,name,age,salary,profile,department\n"


@pytest.fixture
def default_doc() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_DOC)


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., pipeline.Result]:
    counter = {"n": 0}

    def _run(inputs: Path | list[Path], doc: dict[str, Any] | None = None, fmt: str = "parquet") -> pipeline.Result:
        counter["n"] += 1
        cfg = config_mod.validate(copy.deepcopy(doc if doc is not None else DEFAULT_DOC))
        paths = rawfile.list_inputs(inputs) if isinstance(inputs, Path) else inputs
        return pipeline.run(paths, tmp_path / f"out{counter['n']}", cfg, fmt=fmt)

    return _run


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return _write


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for every Spark test of the session (the engine uses the active one)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("processing-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
