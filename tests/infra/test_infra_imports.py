"""``infra/`` and the Lambda asset's packages import downward only: no import cycle, counting imports inside
functions (issue 15; the walk is tests/import_walk.py, the same as for processing/ and localcloud/)."""

from __future__ import annotations

from pathlib import Path

from import_walk import find_cycle, import_graph

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "infra" / "lambdas"


def test_infra_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, "infra")
    assert graph["infra.stack"] >= {"infra.config", "infra.quality_alarms", "infra.dashboard"}, graph["infra.stack"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_lambda_packages_have_no_import_cycle() -> None:
    # the asset's packages (trigger/, metrics/, lambda_shared/) are top-level packages inside the Lambda zip
    for package in ("trigger", "metrics", "lambda_shared"):
        graph = import_graph(LAMBDAS, package)
        assert graph, package
        cycle = find_cycle(graph)
        assert cycle is None, f"{package}: import cycle: " + " -> ".join(cycle or [])
