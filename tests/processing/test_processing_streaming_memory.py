"""Streaming mode: with the default config, peak memory does not grow with the input once the rows outnumber the
configured budget (``max_rows``; the job's env ``PROCESSING_MAX_ROWS_IN_MEMORY``, read by cli.py).

Runs the job in subprocesses (fresh interpreters) on a small and a large file and compares their peak RSS (the
child's ``VmHWM``; not ``ru_maxrss``, which Linux carries over from the forking pytest process across exec). The
large file has 10x the rows of the budget. With the budget, duplicates are found
partition by partition and the statistics are merged batch by batch plus a sample (processing/batchstats.py), so
what remains per row is a 1-byte mask at most; the peak may grow by a tenth of the extra input at most. The same
files with a budget above their row count (every statistic exact, the columns read back whole) must break that
bound, or this test could not tell the two apart. No timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from processing.sample import generate

ROOT = Path(__file__).resolve().parents[2]
SMALL, LARGE, BUDGET_ROWS = 60_000, 400_000, 40_000
BLOCK = 1 << 20  # small blocks: the small file already runs at the steady state of blocks in flight
CHILD = """
import json, sys
from pathlib import Path
from processing import config as config_mod, pipeline
cfg = config_mod.validate(json.loads((Path(sys.argv[3]) / "processing/configs/default.json").read_text()))
r = pipeline.run([Path(sys.argv[1])], Path(sys.argv[2]), cfg, mode="streaming", block_size=int(sys.argv[4]),
                 max_rows=int(sys.argv[5]))
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
print(json.dumps({"peak_kb": int(hwm.split()[1]), "rows": r.metrics["summary"]["rows_in"],
                  "sampled": r.metrics["statistics_sampling"] is not None}))
"""


def _peak(path: Path, out: Path, max_rows: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), str(ROOT), str(BLOCK), str(max_rows)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("memory")
    small, large = folder / "small.csv", folder / "large.csv"
    pacsv.write_csv(generate(SMALL, seed=1), str(small))
    pacsv.write_csv(generate(LARGE, seed=2), str(large))
    return small, large


def test_streaming_peak_memory_does_not_grow_with_input(files: tuple[Path, Path], tmp_path: Path) -> None:
    small, large = files
    growth_kb = (large.stat().st_size - small.stat().st_size) / 1024
    allowed_kb = growth_kb / 10
    extra = {}
    for label, max_rows in (("budget", BUDGET_ROWS), ("exact", 10 * LARGE)):
        a, b = _peak(small, tmp_path / f"{label}-a", max_rows), _peak(large, tmp_path / f"{label}-b", max_rows)
        assert b["rows"] == LARGE and a["sampled"] == b["sampled"] == (label == "budget")
        extra[label] = b["peak_kb"] - a["peak_kb"]
        print(f"{label}: input +{growth_kb / 1024:.1f} MiB, peak RSS {a['peak_kb'] / 1024:.0f} -> "
              f"{b['peak_kb'] / 1024:.0f} MiB (+{extra[label] / 1024:.1f} MiB, allowed {allowed_kb / 1024:.1f} MiB)")
    assert extra["budget"] <= allowed_kb
    assert extra["exact"] > allowed_kb  # without the budget the same files do grow: the bound above means something
