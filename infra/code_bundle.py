"""The processing code bundle (design.md Contract 1): ``processing/`` plus a root ``__main__.py``, as a zip asset."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Stage
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

PACKAGE = "processing"
MAIN_PY = (
    '"""Entry point of the processing code bundle: `python3 bundle.zip ARGS` runs `python -m processing ARGS`."""\n'
    "import runpy\n"
    "\n"
    'runpy.run_module("processing", run_name="__main__", alter_sys=True)\n'
)
_EXCLUDED_DIRS = frozenset(
    {"tests", "test", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"})
# processing/requirements.txt is bundled (nothing installs it: the job reads its pins to warn about library drift).
_EXCLUDED_FILES = frozenset({".DS_Store"})
_EXCLUDED_SUFFIXES = (".pyc", ".pyo")


def _included(relative: Path) -> bool:
    if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in relative.parts[:-1]):
        return False
    name = relative.name
    return not (
        name in _EXCLUDED_FILES
        or name.startswith(".")
        or name.endswith(_EXCLUDED_SUFFIXES)
        or (name.startswith("test_") and name.endswith(".py"))
        or name == "conftest.py"
    )


def bundle_files(source_dir: Path) -> list[Path]:
    """Files of the package that go into the bundle, relative to ``source_dir``, sorted."""
    files = [p.relative_to(source_dir) for p in source_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted((f for f in files if _included(f)), key=lambda p: p.as_posix())


def build_bundle_dir(source_dir: Path, staging_dir: Path) -> str:
    """(Re)build the staging directory: ``__main__.py`` + ``processing/<files>``.

    Args:
        source_dir: the ``processing`` package folder.
        staging_dir: emptied and refilled.

    Returns:
        A sha256 over the bundle's relative paths and contents (stable across machines and runs).
    """
    if not (source_dir / "__init__.py").is_file():
        raise FileNotFoundError(
            f"{source_dir} is not a Python package (no __init__.py): cannot build the processing code bundle")
    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    (staging_dir / PACKAGE).mkdir(parents=True)
    digest = hashlib.sha256()
    entries: list[tuple[str, bytes]] = [("__main__.py", MAIN_PY.encode())]
    entries += [(f"{PACKAGE}/{rel.as_posix()}", (source_dir / rel).read_bytes()) for rel in bundle_files(source_dir)]
    for relative, content in sorted(entries):
        target = staging_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, 0o644)
        digest.update(relative.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class CodeBundleProps:
    """Inputs of :class:`CodeBundle`.

    Attributes:
        source_dir: the ``processing`` package folder.
        staging_dir: where the bundle directory is built; default ``<cloud assembly outdir>/.processing-bundle``.
    """

    source_dir: Path
    staging_dir: Path | None = None


class CodeBundle(Construct):
    """Builds the bundle directory at synth time and publishes it as a zip ``s3_assets.Asset``.

    Attributes:
        asset: the S3 asset (a ``<hash>.zip`` object in the bootstrap assets bucket).
        s3_uri: ``s3://bucket/<hash>.zip``: the job's ``code`` input.
        code_version: the asset hash, passed to jobs as CODE_VERSION.
        content_hash: sha256 of the bundle content, computed here.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: CodeBundleProps) -> None:
        super().__init__(scope, construct_id)
        stage = Stage.of(self)
        outdir = stage.outdir if stage else "cdk.out"
        staging_dir = props.staging_dir or Path(outdir) / ".processing-bundle"
        self.content_hash = build_bundle_dir(props.source_dir, staging_dir)
        self.asset = s3_assets.Asset(self, "Asset", path=str(staging_dir))
        self.s3_uri = self.asset.s3_object_url
        self.code_version = self.asset.asset_hash
