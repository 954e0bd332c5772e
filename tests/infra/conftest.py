"""Shared fixtures: synthesize the stack once per session (environment-agnostic, with cdk-nag) from fixture configs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from infra.config import settings_from_context
from infra.stack import DataQualityStack
from infra_testlib import Synth, cdk_json_context, source_paths, write_configs


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    root = tmp_path_factory.mktemp("synth")
    context = cdk_json_context()
    app = cdk.App(outdir=str(root / "cdk.out"), context=context)
    settings = settings_from_context(app.node.try_get_context, configs_dir=write_configs(root / "configs"))
    stack = DataQualityStack(app, "DataQualityTest", settings=settings, paths=source_paths(root))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    nag_error: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # noqa: BLE001  (reported by test_cdk_nag)
        nag_error = exc
    template_json = json.loads((root / "cdk.out" / f"{stack.artifact_id}.template.json").read_text())
    yield Synth(settings, stack, Template.from_json(template_json), template_json, nag_error, root / "cdk.out")


