"""``localcloud/`` imports downward only: no import cycle among its modules, counting the imports inside functions.

Same walk as tests/processing/test_processing_imports.py: each module of the package is parsed with ``ast`` (not
imported) and every ``import``/``from ... import`` anywhere in it (module level, functions, methods) that names a
module of the package is an edge (``from p import m`` to ``p.m`` when that is a module, else to ``p``). A parent
package's ``__init__`` running first is no edge. A cycle is reported with its modules, e.g.
``localcloud.moto_patches -> localcloud.lambdas -> localcloud.server -> localcloud.moto_patches`` (main before the
split of moto_patches, issue 12 item 9).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "localcloud"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package, one level up per extra dot
                    base = mod.split(".") if is_package else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            for target in targets:
                while target and target not in files:  # the named module, else the nearest package of ours above
                    target = target.rpartition(".")[0]
                if target and target != mod and target.split(".")[0] == package:
                    graph[mod].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_localcloud_has_no_import_cycle() -> None:
    graph = import_graph(ROOT)
    # the walk found the package, its subpackage and their imports (inside functions too: server -> moto_patches)
    assert graph["localcloud.cloud"] and "localcloud.moto_patches" in graph["localcloud.server"], graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_endpoint_constants_and_the_patch_registry_are_at_the_bottom() -> None:
    graph = import_graph(ROOT)
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
    assert find_cycle(import_graph(tmp_path)) == [
        "localcloud.lambdas", "localcloud.server", "localcloud.moto_patches", "localcloud.lambdas"]
    (pkg / "lambdas.py").write_text("from localcloud.endpoints import client_env\n")
    (pkg / "endpoints.py").write_text("def client_env(endpoint):\n    return {}\n")
    assert find_cycle(import_graph(tmp_path)) is None
