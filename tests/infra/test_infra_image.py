"""The scikit-learn image: literal per concrete region, a generated region mapping when environment-agnostic."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

from infra.config import Settings
from infra.image import ImageResolutionError, SklearnImage, registries, retrieve
from infra.stack import DataQualityStack
from infra_testlib import Synth, cdk_json_context, source_paths


def test_agnostic_stack_maps_regions_to_registry_accounts(synth: Synth) -> None:
    mappings = synth.template_json["Mappings"]
    (mapping,) = [m for m in mappings.values() if "us-east-1" in m]
    assert mapping["us-east-1"] == {"Account": "683313688378"}
    assert mapping["us-west-2"] == {"Account": "246618743249"}
    assert mapping == {region: {"Account": account} for region, account in registries("1.4-2-py312").items()}


def test_agnostic_image_uri_is_resolved_per_region_at_deploy(synth: Synth) -> None:
    (fn,) = [r for k, r in synth.template_json["Resources"].items() if k.startswith("TriggerFunction")
             and r["Type"] == "AWS::Lambda::Function"]
    uri = fn["Properties"]["Environment"]["Variables"]["IMAGE_URI"]
    template, params = uri["Fn::Sub"]
    assert template == "${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
    assert params["Account"]["Fn::FindInMap"][1] == {"Ref": "AWS::Region"}


def test_agnostic_uri_matches_the_sdk_for_each_region() -> None:
    for region, account in registries("1.4-2-py312").items():
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else None
        uri = retrieve(region, "1.4-2-py312")
        assert uri.startswith(f"{account}.dkr.ecr.{region}."), region
        if suffix:
            assert uri.split("/")[0].endswith(suffix)
        assert uri.endswith("/sagemaker-scikit-learn:1.4-2-py312-cpu-py3")


def test_concrete_region_gets_the_sdk_uri() -> None:
    stack = cdk.Stack(cdk.App(context=cdk_json_context()), "S",
                      env=cdk.Environment(account="111111111111", region="eu-west-1"))
    image = SklearnImage(stack, "Image", version="1.4-2-py312")
    assert image.image_uri == "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
    assert image.region_mapping is None
    assert stack.resolve(image.repository_arn) == "arn:aws:ecr:eu-west-1:141502667606:repository/sagemaker-scikit-learn"


def test_unknown_concrete_region_fails_clearly(tmp_path: Path) -> None:
    # GIVEN a stack pinned to a region with no scikit-learn image  WHEN it is built  THEN synth stops, naming it
    app = cdk.App(outdir=str(tmp_path / "out"), context=cdk_json_context())
    with pytest.raises(ImageResolutionError,
                       match=r"No SageMaker scikit-learn image '1.4-2-py312' for region 'xx-nowhere-1'"):
        DataQualityStack(
            app, "Nowhere", settings=Settings(), paths=source_paths(tmp_path),
            env=cdk.Environment(account="111111111111", region="xx-nowhere-1"),
        )


# --- issue 11 item 10: pin the job image by digest --------------------------------------------------------------

DIGEST = "0123456789abcdef" * 4
PINNED = f"141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn@sha256:{DIGEST}"


def _stack_with_pinned_image(tmp_path: Path, region: str | None, uri: str = PINNED) -> dict:
    from infra.config import settings_from_context
    from infra_testlib import write_configs

    context = {**cdk_json_context(), "sklearn_image_uri": uri}
    app = cdk.App(outdir=str(tmp_path / "out"), context=context)
    settings = settings_from_context(app.node.try_get_context, configs_dir=write_configs(tmp_path / "configs"))
    env = cdk.Environment(account="111111111111", region=region) if region else None
    stack = DataQualityStack(app, "Pinned", settings=settings, paths=source_paths(tmp_path), env=env)
    return cdk.assertions.Template.from_stack(stack).to_json()


@pytest.mark.parametrize("region", [None, "eu-west-1"])
def test_pinned_image_uri_reaches_the_trigger_and_the_pull_permission(tmp_path: Path, region: str | None) -> None:
    # GIVEN sklearn_image_uri set to a digest  WHEN the stack is synthesized (agnostic or in the URI's region)
    template = _stack_with_pinned_image(tmp_path, region)
    # THEN the trigger starts jobs with exactly that URI (no tag, no region mapping) ...
    (fn,) = [r for k, r in template["Resources"].items()
             if k.startswith("TriggerFunction") and r["Type"] == "AWS::Lambda::Function"]
    assert fn["Properties"]["Environment"]["Variables"]["IMAGE_URI"] == PINNED
    assert not [m for m in template.get("Mappings", {}).values() if "us-east-1" in m]
    # ... and the job role may pull from that URI's repository only
    pulls = [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
             for s in r["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "PullImage"]
    (pull,) = pulls
    resource = pull["Resource"]
    joined = resource if isinstance(resource, str) else "".join(
        p if isinstance(p, str) else "aws" for p in resource["Fn::Join"][1])  # {"Ref": "AWS::Partition"}
    assert joined == "arn:aws:ecr:eu-west-1:141502667606:repository/sagemaker-scikit-learn"


def test_pinned_image_in_another_region_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ImageResolutionError, match=r"sklearn_image_uri .* is in region 'eu-west-1' but the stack "
                                                   r"deploys to 'us-east-1'"):
        _stack_with_pinned_image(tmp_path, "us-east-1")
