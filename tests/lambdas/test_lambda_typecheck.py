"""`make lint` type-checks the Lambda asset's packages, under the module names the zip gives them (issue 15).

mypy reads its sources from pyproject.toml (``files``, ``mypy_path``): every module of ``trigger``, ``metrics`` and
``lambda_shared`` must be among them, named ``trigger.handler`` (as the zip, these tests and the Lambda runtime
import it), never ``infra.lambdas.trigger.handler``, and under the strict settings of the rest of the project.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy.main import process_options

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = ROOT / "infra" / "lambdas"
PACKAGES = ("trigger", "metrics", "lambda_shared")


def lambda_modules() -> dict[str, Path]:
    """Module name (as in the zip) -> file, for every module of the Lambda asset's packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((LAMBDAS_DIR / package).rglob("*.py")):
            parts = path.relative_to(LAMBDAS_DIR).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


@pytest.fixture(scope="module")
def mypy_sources() -> tuple[dict[str, Path], object]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)  # mypy reads pyproject.toml from the working directory
        sources, options = process_options([])
    return {s.module: Path(s.path).resolve() for s in sources if s.path}, options


def test_every_lambda_module_is_checked_under_its_zip_name(mypy_sources: tuple[dict[str, Path], object]) -> None:
    checked, _ = mypy_sources
    expected = lambda_modules()
    assert set(expected) >= {"trigger.handler", "metrics.handler", "lambda_shared.clients"}
    missing = {name: str(path) for name, path in expected.items() if checked.get(name) != path.resolve()}
    assert not missing, f"mypy does not check these Lambda modules under their zip names: {missing}"
    misnamed = sorted(name for name in checked if name.startswith("infra.lambdas"))
    assert not misnamed, f"mypy names Lambda modules by their repository path, not the zip's: {misnamed}"


def test_contract_is_checked_and_the_settings_are_strict(mypy_sources: tuple[dict[str, Path], object]) -> None:
    checked, options = mypy_sources
    assert checked.get("contract") == (ROOT / "contract" / "__init__.py").resolve()
    # --strict's flags, for the Lambdas as for the rest (no per-module override relaxes them).
    for flag in ("disallow_untyped_defs", "disallow_any_generics", "warn_return_any", "strict_equality"):
        assert getattr(options, flag) is True, flag
    assert not any(pattern.startswith(PACKAGES) or "lambdas" in pattern
                   for pattern in getattr(options, "per_module_options", {}))
