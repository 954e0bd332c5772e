"""The prebuilt SageMaker scikit-learn image, resolved offline from sagemaker-core's own image-URI config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnMapping, Fn, Stack, Token
from constructs import Construct

FRAMEWORK = "sklearn"
IMAGE_SCOPE = "training"  # processing jobs use the training-scope images; sagemaker-core refuses "processing"


class ImageResolutionError(ValueError):
    """The configured image cannot be resolved for the stack's region."""


@lru_cache(maxsize=1)
def _sklearn_config() -> dict[str, Any]:
    import sagemaker.core

    path = Path(sagemaker.core.__file__).parent / "image_uri_config" / f"{FRAMEWORK}.json"
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return config


def sklearn_versions() -> list[str]:
    """Versions of the scikit-learn image that sagemaker-core knows in the training scope."""
    return list(_sklearn_config()[IMAGE_SCOPE]["versions"])


def registries(version: str) -> dict[str, str]:
    """Region -> ECR registry account of the scikit-learn image ``version`` (from sagemaker-core's JSON)."""
    versions = _sklearn_config()[IMAGE_SCOPE]["versions"]
    if version not in versions:
        raise ImageResolutionError(
            f"scikit-learn image version {version!r} is not in sagemaker-core's config; known: {sorted(versions)}")
    return dict(sorted(versions[version]["registries"].items()))


def retrieve(region: str, version: str) -> str:
    """The image URI for a concrete region, via ``sagemaker.core.image_uris.retrieve`` (no network call).

    Raises:
        ImageResolutionError: the region (or version) has no image.
    """
    from sagemaker.core import image_uris

    try:
        return str(image_uris.retrieve(FRAMEWORK, region=region, version=version))
    except ValueError as exc:
        raise ImageResolutionError(
            f"No SageMaker scikit-learn image {version!r} for region {region!r}: {exc} "
            "Deploy to a supported region or choose another sklearn_image_version."
        ) from exc


@dataclass(frozen=True)
class _Parts:
    repository: str
    tag: str


def _parts(version: str) -> _Parts:
    """Repository and tag, taken from a URI the SDK resolves (never hand-built)."""
    region = "us-east-1" if "us-east-1" in registries(version) else next(iter(registries(version)))
    uri = retrieve(region, version)
    repository, tag = uri.split("/", 1)[1].split(":", 1)
    return _Parts(repository=repository, tag=tag)


def digest_uri_parts(uri: str) -> tuple[str, str, str]:
    """(account, region, repository) of ``<account>.dkr.ecr.<region>.<domain>/<repository>@sha256:<hex>``."""
    registry, _, rest = uri.partition("/")
    account, _, host = registry.partition(".dkr.ecr.")
    return account, host.split(".", 1)[0], rest.split("@", 1)[0]


class SklearnImage(Construct):
    """Resolves the scikit-learn image URI and its ECR repository ARN for the enclosing stack.

    A stack with a concrete region gets the literal URI from the SDK. An environment-agnostic stack gets a
    ``CfnMapping`` region -> registry account generated from the SDK's JSON config, joined with the deploy-time
    region and URL suffix. ``pinned_uri`` (the ``sklearn_image_uri`` setting, validated by :mod:`infra.config`)
    replaces both: the image by digest, immutable where a tag is rebuilt (docs/infra.md "Pinning the job image").

    Attributes:
        image_uri: the image URI (a literal or a CloudFormation expression; the pinned URI when given).
        tag: the image tag, None when pinned by digest.
        repository_arn: ARN of the image's ECR repository (for least-privilege pull permissions).
        registry_account: the registry account (literal or token).
    """

    def __init__(self, scope: Construct, construct_id: str, *, version: str, pinned_uri: str | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.tag: str | None
        self.image_uri: str
        self.registry_account: str
        self.region_mapping: CfnMapping | None
        if pinned_uri:
            account, region, repository = digest_uri_parts(pinned_uri)
            if not Token.is_unresolved(stack.region) and region != stack.region:
                raise ImageResolutionError(
                    f"sklearn_image_uri {pinned_uri!r} is in region {region!r} but the stack deploys to "
                    f"{stack.region!r}: SageMaker pulls the job image from the job's own region")
            self.repository, self.tag = repository, None
            self.image_uri = pinned_uri
            self.registry_account = account
            self.region_mapping = None
            self.repository_arn = stack.format_arn(service="ecr", account=account, region=region,
                                                   resource="repository", resource_name=repository)
            return
        parts = _parts(version)
        self.repository = parts.repository
        self.tag = parts.tag
        if not Token.is_unresolved(stack.region):
            self.image_uri = retrieve(stack.region, version)
            self.registry_account = self.image_uri.split(".", 1)[0]
            self.region_mapping = None
        else:
            self.region_mapping = CfnMapping(
                self,
                "RegistryAccounts",
                mapping={region: {"Account": account} for region, account in registries(version).items()},
            )
            self.registry_account = self.region_mapping.find_in_map(Aws.REGION, "Account")
            self.image_uri = Fn.sub(
                "${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/" + f"{parts.repository}:{parts.tag}",
                {"Account": self.registry_account},
            )
        self.repository_arn = stack.format_arn(
            service="ecr", account=self.registry_account, resource="repository", resource_name=parts.repository
        )
