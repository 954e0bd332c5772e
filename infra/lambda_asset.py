"""The Lambda asset: one zip for both functions (design.md "Code layout"), built at synth like the job bundle.

It holds ``contract/`` (the cross-part contract, copied from the repository root), ``lambda_shared/`` (decision log,
S3 error classification, environment parsing, clients) and one package per function (``trigger/``, ``metrics/``).
Each function names its entry in its handler string (``trigger.handler.handler``, ``metrics.handler.handler``). The
functions run from the zip with the standard library and the runtime's boto3 only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Stage
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.code_bundle import package_entries, write_entries

SHARED_PACKAGE = "lambda_shared"
FUNCTION_PACKAGES = ("trigger", "metrics")


def handler_string(function: str) -> str:
    """The Lambda handler string of a function package: ``<function>.handler.handler``."""
    return f"{function}.handler.handler"


def build_lambda_asset_dir(lambdas_dir: Path, contract_dir: Path, staging_dir: Path,
                           functions: Sequence[str] = FUNCTION_PACKAGES) -> str:
    """(Re)build the asset directory: ``contract/``, ``lambda_shared/`` and each function package.

    Args:
        lambdas_dir: ``infra/lambdas`` (holds ``lambda_shared/`` and the function packages).
        contract_dir: the ``contract`` package folder.
        staging_dir: emptied and refilled.
        functions: the function packages.

    Returns:
        A sha256 over the asset's relative paths and contents.

    Raises:
        FileNotFoundError: a package is missing.
    """
    entries = package_entries(contract_dir, "contract") + package_entries(lambdas_dir / SHARED_PACKAGE)
    for function in functions:
        entries += package_entries(lambdas_dir / function)
    return write_entries(entries, staging_dir)


@dataclass(frozen=True)
class LambdaAssetProps:
    """Inputs of :class:`LambdaAsset`.

    Attributes:
        lambdas_dir: ``infra/lambdas``.
        contract_dir: ``contract/``.
        staging_dir: where the asset directory is built; default ``<cloud assembly outdir>/.lambda-asset``.
    """

    lambdas_dir: Path
    contract_dir: Path
    staging_dir: Path | None = None


class LambdaAsset(Construct):
    """Builds the asset directory at synth time.

    Attributes:
        code: ``lambda_.Code.from_asset`` of the directory, shared by both functions (one asset, one hash).
        content_hash: sha256 of the asset content, computed here.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: LambdaAssetProps) -> None:
        super().__init__(scope, construct_id)
        stage = Stage.of(self)
        outdir = stage.outdir if stage else "cdk.out"
        staging_dir = props.staging_dir or Path(outdir) / ".lambda-asset"
        self.content_hash = build_lambda_asset_dir(props.lambdas_dir, props.contract_dir, staging_dir)
        self.code = lambda_.Code.from_asset(str(staging_dir))
