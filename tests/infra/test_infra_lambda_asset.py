"""The Lambda asset (infra/lambda_asset.py): one directory for both functions, runnable with stdlib + boto3 only."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from infra.lambda_asset import FUNCTION_PACKAGES, build_lambda_asset_dir, handler_string
from infra_testlib import Synth

ROOT = Path(__file__).resolve().parents[2]
# boto3 and what it brings (the Lambda Python runtime ships them)
RUNTIME = {"boto3", "botocore", "jmespath", "dateutil", "urllib3", "s3transfer", "six", "certifi"}


def build(tmp_path: Path) -> Path:
    build_lambda_asset_dir(ROOT / "infra" / "lambdas", ROOT / "contract", tmp_path / "asset")
    return tmp_path / "asset"


def test_asset_holds_the_contract_the_shared_part_and_both_functions(tmp_path: Path) -> None:
    asset = build(tmp_path)
    tops = {p.name for p in asset.iterdir()}
    assert tops == {"contract", "lambda_shared", *FUNCTION_PACKAGES}
    assert (asset / "contract" / "__init__.py").read_bytes() == (ROOT / "contract" / "__init__.py").read_bytes()
    assert not [p for p in asset.rglob("*") if "__pycache__" in p.parts or p.suffix == ".pyc"]
    assert build_lambda_asset_dir(ROOT / "infra" / "lambdas", ROOT / "contract", tmp_path / "again") == \
        build_lambda_asset_dir(ROOT / "infra" / "lambdas", ROOT / "contract", tmp_path / "asset")


def test_each_handler_imports_from_the_zip_with_stdlib_and_boto3_only(tmp_path: Path) -> None:
    # GIVEN the asset zipped (as CDK uploads it) and nothing of the repository on the path
    asset = build(tmp_path)
    archive = tmp_path / "asset.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(asset.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(asset).as_posix())
    for function in FUNCTION_PACKAGES:
        module, _, name = handler_string(function).rpartition(".")
        code = ("import importlib, json, sys; before = set(sys.modules); "
                f"m = importlib.import_module({module!r}); assert callable(getattr(m, {name!r})); "
                "print(json.dumps(sorted({k.split('.')[0] for k in set(sys.modules) - before})))")
        # WHEN the handler module is imported the way the runtime does (its handler string)
        env = {"PYTHONPATH": str(archive), "PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1"}
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env=env)
        assert done.returncode == 0, done.stderr
        # THEN it loaded only the standard library, boto3's packages and the asset's own packages
        loaded = set(json.loads(done.stdout))
        extra = loaded - set(sys.stdlib_module_names) - RUNTIME - {"contract", "lambda_shared", *FUNCTION_PACKAGES}
        assert extra <= {"__main__", "__mp_main__", "_distutils_hack"}, extra


def test_stack_stages_one_lambda_asset(synth: Synth) -> None:
    staged = [p for p in synth.outdir.glob("asset.*") if (p / "lambda_shared").is_dir()]
    assert len(staged) == 1
    assert {p.name for p in staged[0].iterdir()} == {"contract", "lambda_shared", *FUNCTION_PACKAGES}
