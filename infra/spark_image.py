"""The prebuilt SageMaker Spark processing image (``sagemaker-spark-processing``), resolved offline from
sagemaker-core's own image-URI config (``image_uri_config/spark.json``, processing scope), as infra/image.py resolves
the scikit-learn one."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnMapping, Fn, Stack, Token
from constructs import Construct

from infra.image import ImageResolutionError, digest_uri_parts

FRAMEWORK = "spark"
IMAGE_SCOPE = "processing"


@lru_cache(maxsize=1)
def _spark_config() -> dict[str, Any]:
    import sagemaker.core

    path = Path(sagemaker.core.__file__).parent / "image_uri_config" / f"{FRAMEWORK}.json"
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return config


def spark_versions() -> dict[str, list[str]]:
    """Spark image version -> its Python versions, from sagemaker-core's processing-scope config."""
    versions = _spark_config()[IMAGE_SCOPE]["versions"]
    return {v: list(info.get("py_versions", [])) for v, info in versions.items()}


def spark_registries(version: str) -> dict[str, str]:
    """Region -> ECR registry account of the Spark image ``version``."""
    versions = _spark_config()[IMAGE_SCOPE]["versions"]
    if version not in versions:
        raise ImageResolutionError(f"Spark image version {version!r} is not in sagemaker-core's config; known: "
                                   f"{sorted(versions)}")
    return dict(sorted(versions[version]["registries"].items()))


def retrieve_spark(region: str, version: str, py_version: str, container_version: str) -> str:
    """The Spark image URI for a concrete region, via ``sagemaker.core.image_uris.retrieve`` (no network call).

    Raises:
        ImageResolutionError: the region, version or Python version has no image.
    """
    from sagemaker.core import image_uris

    try:
        return str(image_uris.retrieve(FRAMEWORK, region=region, version=version, py_version=py_version,
                                       container_version=container_version, image_scope=IMAGE_SCOPE,
                                       instance_type="ml.m5.xlarge"))
    except ValueError as exc:
        raise ImageResolutionError(
            f"No SageMaker Spark processing image {version!r} ({py_version}, {container_version}) for region "
            f"{region!r}: {exc}") from exc


class SparkImage(Construct):
    """The ``sagemaker-spark-processing`` image URI and its repository ARN, resolved like
    :class:`infra.image.SklearnImage`: a literal for a concrete region, a region -> account ``CfnMapping`` for an
    environment-agnostic stack, or ``pinned_uri`` (the ``spark_image_uri`` setting: a digest).

    The tag is ``<version>-cpu-<py>-<container version>`` (``3.5-cpu-py312-v1.3``): the container version pins the
    image's release; the SDK without it would name the floating ``3.5-cpu-py312`` tag.
    """

    def __init__(self, scope: Construct, construct_id: str, *, version: str, py_version: str,
                 container_version: str, pinned_uri: str | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.image_uri: str
        self.registry_account: str
        if pinned_uri:
            account, region, repository = digest_uri_parts(pinned_uri)
            if not Token.is_unresolved(stack.region) and region != stack.region:
                raise ImageResolutionError(f"spark_image_uri {pinned_uri!r} is in region {region!r} but the stack "
                                           f"deploys to {stack.region!r}")
            self.image_uri, self.registry_account, self.tag = pinned_uri, account, None
            self.repository_arn = stack.format_arn(service="ecr", account=account, region=region,
                                                   resource="repository", resource_name=repository)
            return
        registries = spark_registries(version)
        sample_region = "us-east-1" if "us-east-1" in registries else next(iter(registries))
        repository, tag = retrieve_spark(sample_region, version, py_version, container_version).split("/", 1)[1] \
            .split(":", 1)
        self.tag = tag
        if not Token.is_unresolved(stack.region):
            self.image_uri = retrieve_spark(stack.region, version, py_version, container_version)
            self.registry_account = self.image_uri.split(".", 1)[0]
        else:
            mapping = CfnMapping(self, "RegistryAccounts",
                                 mapping={region: {"Account": account} for region, account in registries.items()})
            self.registry_account = mapping.find_in_map(Aws.REGION, "Account")
            self.image_uri = Fn.sub("${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/" + f"{repository}:{tag}",
                                    {"Account": self.registry_account})
        self.repository_arn = stack.format_arn(service="ecr", account=self.registry_account, resource="repository",
                                               resource_name=repository)
