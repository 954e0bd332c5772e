#!/usr/bin/env python3
"""CDK app: read settings once from context, build the data quality stack, run cdk-nag AwsSolutions as validation."""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import SettingsError, settings_from_context
from infra.stack import DataQualityStack

STACK_NAME = "DataQualityPipeline"


def main() -> None:
    app = cdk.App()
    try:
        settings = settings_from_context(
            app.node.try_get_context, configs_dir=Path(__file__).resolve().parent / "processing" / "configs"
        )
    except SettingsError as exc:
        raise SystemExit(f"cdk synth failed: {exc}") from None
    # Account/region come from the CLI's environment (CDK_DEFAULT_*) when set, so the image URI is a literal for
    # that region; without them the stack is environment-agnostic and resolves the image per region at deploy.
    account, region = os.getenv("CDK_DEFAULT_ACCOUNT"), os.getenv("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    DataQualityStack(app, STACK_NAME, settings=settings, env=env,
                     description="S3 -> SageMaker Processing data quality pipeline")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
