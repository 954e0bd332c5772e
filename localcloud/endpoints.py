"""The emulated account, Region and the environment that points SDKs at the emulator: the bottom of localcloud's
dependency order (imports nothing from localcloud), used by the server, the Lambda runner and the cloud."""

from __future__ import annotations

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def client_env(endpoint: str) -> dict[str, str]:
    """Environment variables that point AWS SDKs and the CDK CLI at the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "CDK_DEFAULT_ACCOUNT": ACCOUNT_ID,
        "CDK_DEFAULT_REGION": REGION,
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        # moto: never try Docker, never call out
        "MOTO_DOCKER_NETWORK_MODE": "",
    }


# Which role a request comes from. A Lambda function's SDK calls are signed with an access key id derived from its
# execution role (``role_access_key``), so the emulator can tell whose identity policies apply to a call it
# authorizes (``iam:PassRole`` on CreateProcessingJob). moto accepts any access key (it maps unknown keys to the
# default account). Calls signed with other keys (tests, the CDK CLI) have no role: not authorized by identity.
_ROLES_BY_KEY: dict[str, str] = {}


def role_access_key(role_arn: str) -> str:
    """The access key id a session of `role_arn` signs with (stable per role; prefix ASIA as for STS sessions)."""
    import hashlib

    key = "ASIA" + hashlib.sha256(role_arn.encode()).hexdigest()[:16].upper()
    _ROLES_BY_KEY[key] = role_arn
    return key


def role_of_access_key(access_key: str | None) -> str | None:
    """The role whose session signs with `access_key`, or None (not a function's call)."""
    return _ROLES_BY_KEY.get(access_key or "")


def access_key_of(authorization: str | None) -> str | None:
    """The access key id in a SigV4 ``Authorization`` header (``... Credential=<key>/<date>/...``)."""
    marker = "Credential="
    if not authorization or marker not in authorization:
        return None
    return authorization.split(marker, 1)[1].split("/", 1)[0]
