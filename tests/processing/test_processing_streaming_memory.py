"""Streaming mode: peak memory does not grow with the input (a file >= 5x the memory budget is processed).

Runs the job in subprocesses (fresh interpreters) on a small and a large file and compares their peak RSS
(``ru_maxrss`` of the child). The config has no global statistics that keep per-row state (no imputation, group
statistics, numeric or drift columns), so everything the job holds is block-bounded except the 64-bit row signature
of the exact-duplicate check (8 bytes per row). With the default config the exact statistics read their columns
back at the end and that part grows ~0.125 GB per million rows (docs/processing.md "Performance and sizing"): at
the 100k rows used here it hides under the run's fixed part, so a default-config variant of this test could not
fail and is not kept. No timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv

from processing.sample import generate

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 256 << 10
DOC = {
    "columns": {"id": "string", "name": "string", "age": "string", "salary": "string", "profile": "json",
                "department": "string"},
    "required_columns": ["id", "name", "profile"],
    "reject_rows_missing": ["id"],
    "json_columns": {"profile": {"fields": {"address": "address", "phone": "phone"}}},
    "categorical_fills": {"department": "Unknown"},
    "duplicates": {"key_columns": [], "drop": "none"},
}
CHILD = """
import json, resource, sys
from pathlib import Path
from processing import config as config_mod, pipeline
cfg = config_mod.validate(json.loads(sys.argv[3]))
r = pipeline.run([Path(sys.argv[1])], Path(sys.argv[2]), cfg, mode="streaming", block_size=int(sys.argv[4]))
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rows": r.metrics["summary"]["rows_in"],
                  "mode": r.metrics["mode"]}))
"""


def _peak(path: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), json.dumps(DOC), str(BLOCK)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_streaming_peak_memory_does_not_grow_with_input(tmp_path: Path) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    pacsv.write_csv(generate(4_000, seed=1), str(small))
    pacsv.write_csv(generate(100_000, seed=2), str(large))
    a, b = _peak(small, tmp_path / "a"), _peak(large, tmp_path / "b")
    assert a["mode"] == b["mode"] == "streaming" and b["rows"] == 100_000
    growth = large.stat().st_size - small.stat().st_size
    budget_kb = growth / 5 / 1024  # the memory budget: a fifth of the extra input
    extra_kb = b["peak_kb"] - a["peak_kb"]
    print(f"input +{growth / 2**20:.1f} MiB, peak RSS {a['peak_kb'] / 1024:.0f} -> {b['peak_kb'] / 1024:.0f} MiB "
          f"(+{extra_kb / 1024:.1f} MiB, budget {budget_kb / 1024:.1f} MiB)")
    assert extra_kb <= budget_kb
