"""``localcloud/`` imports downward only: no import cycle among its modules, counting the imports inside functions.

Same walk as tests/processing/test_processing_imports.py: each module of the package is parsed with ``ast`` (not
imported) and every ``import``/``from ... import`` anywhere in it (module level, functions, methods) that names a
module of the package is an edge (``from p import m`` to ``p.m`` when that is a module, else to ``p``). A parent
package's ``__init__`` running first is no edge. A cycle is reported with its modules, e.g.
``localcloud.moto_patches -> localcloud.lambdas -> localcloud.server -> localcloud.moto_patches`` (main before the
split of moto_patches, issue 12 item 9).
"""

from __future__ import annotations

from pathlib import Path

from import_walk import find_cycle, import_graph

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "localcloud"


def test_localcloud_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, PACKAGE)
    # the walk found the package, its subpackage and their imports (inside functions too: server -> moto_patches)
    assert graph["localcloud.cloud"] and "localcloud.moto_patches" in graph["localcloud.server"], graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_endpoint_constants_and_the_patch_registry_are_at_the_bottom() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert graph.get("localcloud.endpoints") == set()
    assert graph.get("localcloud.patches.registry") == set()
    assert graph.get("localcloud.patches") == set()  # importing one patch module does not import the others
    # nothing in the patches imports the facade that applies them
    assert not [m for m, deps in graph.items() if "localcloud.moto_patches" in deps and m.startswith("localcloud.p")]


def test_the_walk_sees_imports_inside_functions_and_would_report_a_cycle(tmp_path: Path) -> None:
    # GIVEN the cycle main had: moto_patches -> lambdas (inside a function) -> server -> moto_patches (inside a method)
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "moto_patches.py").write_text("def apply_all():\n    from localcloud import lambdas\n")
    (pkg / "lambdas.py").write_text("from localcloud.server import client_env\n")
    (pkg / "server.py").write_text("class S:\n    def start(self):\n        from localcloud import moto_patches\n")
    assert find_cycle(import_graph(tmp_path, PACKAGE)) == [
        "localcloud.lambdas", "localcloud.server", "localcloud.moto_patches", "localcloud.lambdas"]
    (pkg / "lambdas.py").write_text("from localcloud.endpoints import client_env\n")
    (pkg / "endpoints.py").write_text("def client_env(endpoint):\n    return {}\n")
    assert find_cycle(import_graph(tmp_path, PACKAGE)) is None
