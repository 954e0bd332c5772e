"""``processing/`` imports downward only: no import cycle among its modules, counting the imports inside functions.

Each module of the package is parsed with ``ast`` (not imported), and every ``import``/``from ... import`` anywhere
in it (module level, functions, methods, ``if TYPE_CHECKING`` blocks) that names a module of the package is an edge:
``from p import m`` to ``p.m`` when that is a module, else to ``p``; ``import p.m`` and ``from p.m import x`` to
``p.m``. (A parent package's ``__init__`` runs first on any import of its submodules; that implicit step is no edge,
as in other import-graph tools.)
A cycle is reported with its modules, e.g. ``processing.pipeline -> processing.streaming -> processing.pipeline``.
Also: no module takes another module's private (``_name``) names; what modules share is public.
"""

from __future__ import annotations

import ast
from pathlib import Path

from import_walk import find_cycle, import_graph, module_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "processing"


def test_processing_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert len(graph) > 10 and graph["processing.cli"], graph  # the walk found the package and its imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def private_uses(root: Path, package: str = PACKAGE) -> list[str]:
    """``module: other._name`` for every private name (one underscore, not a dunder) a module of the package takes
    from another one: ``from p.other import _name``, or ``other._name`` where ``other`` is bound by an import of
    ``p.other`` (``from p import other``, ``import p.other as other``)."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        mod = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == package and not node.level:
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{mod}: {node.module}.{a.name}")
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == package and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{mod}: {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    assert private_uses(ROOT) == []


def test_the_walk_sees_imports_inside_functions_and_would_report_a_cycle(tmp_path: Path) -> None:
    # GIVEN a package whose only cycle is closed by an import inside a function (and one by a relative import)
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from processing import b\n")
    (pkg / "b.py").write_text("def f():\n    from processing.c import thing\n    return thing\n")
    (pkg / "c.py").write_text("import processing.a\nthing = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from . import d\n")
    (pkg / "sub" / "d.py").write_text("class K:\n    def m(self):\n        from .. import sub\n")
    graph = import_graph(tmp_path, PACKAGE)
    assert graph["processing.b"] == {"processing.c"} and graph["processing.sub.d"] == {"processing.sub"}
    assert find_cycle(graph) == ["processing.a", "processing.b", "processing.c", "processing.a"]
    (pkg / "c.py").write_text("thing = 1\n")
    assert find_cycle(import_graph(tmp_path, PACKAGE)) == ["processing.sub", "processing.sub.d", "processing.sub"]
    # and the private-name check sees both spellings
    (pkg / "e.py").write_text("from processing import c\nfrom processing.c import _hidden\nc._other()\nc.__name__\n")
    assert private_uses(tmp_path) == ["processing.e: processing.c._hidden", "processing.e: processing.c._other"]


# The job's package and the top-level folders of this repository the oracle must not reach.
_LIVE = ("processing", "infra", "localcloud", "bench")


def oracle_imports(oracle: Path) -> list[str]:
    """Every absolute import (module level or inside functions) in the oracle's files, as ``file: module``."""
    found = []
    for path in sorted(oracle.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found += [f"{path.name}: {a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.append(f"{path.name}: {node.module}")
    return found


def test_the_frozen_oracle_imports_nothing_of_the_live_code() -> None:
    """``tests/processing/reference_impl/`` (the oracle of test_processing_perf_equivalence.py) is frozen: a change
    to the job cannot change what it computes (docs/processing.md "Tests")."""
    live = [i for i in oracle_imports(ROOT / "tests" / "processing" / "reference_impl")
            if i.split(": ")[1].split(".")[0] in _LIVE]
    assert live == []


def test_the_oracle_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import numpy\n\ndef f():\n    from processing.config import JsonField\n")
    assert oracle_imports(tmp_path) == ["m.py: numpy", "m.py: processing.config"]
