"""The processing code bundle (design.md Contract 1): ``processing/``, ``contract/`` and a root ``__main__.py``,
as a zip asset."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
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


def package_entries(source_dir: Path, name: str | None = None) -> list[tuple[str, bytes]]:
    """``(<name>/<relative path>, content)`` of every file of the package at ``source_dir`` that is bundled.

    Raises:
        FileNotFoundError: ``source_dir`` is not a Python package.
    """
    if not (source_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"{source_dir} is not a Python package (no __init__.py): cannot bundle it")
    name = name or source_dir.name
    return [(f"{name}/{rel.as_posix()}", (source_dir / rel).read_bytes()) for rel in bundle_files(source_dir)]


def write_entries(entries: Sequence[tuple[str, bytes]], staging_dir: Path) -> str:
    """Empty ``staging_dir`` and write ``entries`` into it (mode 0644).

    Returns:
        A sha256 over the relative paths and contents (stable across machines and runs).
    """
    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    staging_dir.mkdir(parents=True)
    digest = hashlib.sha256()
    for relative, content in sorted(entries):
        target = staging_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, 0o644)
        digest.update(relative.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def build_bundle_dir(source_dir: Path, staging_dir: Path, *, packages: Sequence[Path] = ()) -> str:
    """(Re)build the staging directory: ``__main__.py`` + ``processing/<files>`` + each of ``packages``.

    Args:
        source_dir: the ``processing`` package folder.
        staging_dir: emptied and refilled.
        packages: further packages the job imports, bundled under their folder names (the stack passes
            ``contract/``, the cross-part contract: design.md).

    Returns:
        A sha256 over the bundle's relative paths and contents (stable across machines and runs).
    """
    entries: list[tuple[str, bytes]] = [("__main__.py", MAIN_PY.encode())]
    entries += package_entries(source_dir, PACKAGE)
    for package in packages:
        entries += package_entries(package)
    return write_entries(entries, staging_dir)


@dataclass(frozen=True)
class CodeBundleProps:
    """Inputs of :class:`CodeBundle`.

    Attributes:
        source_dir: the ``processing`` package folder.
        staging_dir: where the bundle directory is built; default ``<cloud assembly outdir>/.processing-bundle``.
        packages: further packages bundled beside ``processing/`` (``contract/``).
    """

    source_dir: Path
    staging_dir: Path | None = None
    packages: tuple[Path, ...] = ()


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
        self.content_hash = build_bundle_dir(props.source_dir, staging_dir, packages=props.packages)
        self.asset = s3_assets.Asset(self, "Asset", path=str(staging_dir))
        self.s3_uri = self.asset.s3_object_url
        self.code_version = self.asset.asset_hash
